"""TF checkpoint V2 reader: every documented value of the shared samples, and clean refusals of damage."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from faceedit.convert import tf_bundle as tfckpt
from faceedit.convert import tf_codecs
from faceedit.convert.tf_bundle import (
    crc32c,
    looks_like_tf_checkpoint,
    mask_crc,
    open_checkpoint,
    parse_checkpoint_state,
    parse_index,
    resolve_prefix,
    snappy_decompress,
    unmask_crc,
)
from faceedit.errors import CheckpointError
from tests.tfbundle import _field, _table, _varint  # the same SSTable writer

# name: (dtype, shape, offset, size, stored masked crc) — fixtures/tf/README.md, basic/
BASIC = {
    "conv/kernel": ("float32", (2, 2, 3, 2), 0, 96, 0x59737313),
    "counter_i32": ("int32", (3,), 96, 12, 0x84027FFA),
    "dense/bias": ("float32", (4,), 108, 16, 0x4CE6CA8F),
    "dense/kernel": ("float32", (3, 4), 124, 48, 0x7D5B09C3),
    "flags": ("bool", (3,), 172, 3, 0x06915975),
    "generator_B/adaptive_resblock0/res1/instance_layer_norm/gamma": ("float32", (3,), 175, 12, 0x5823DD76),
    "generator_B/adaptive_resblock0/res1/instance_layer_norm/rho": ("float32", (3,), 187, 12, 0x4F05E411),
    "generator_B/adaptive_resblock0/res1/instance_layer_norm/rho_with_an_even_longer_suffix_to_exercise_prefix"
    "_compression": ("float32", (1,), 199, 4, 0x1F273806),
    "global_step_i64": ("int64", (), 203, 8, 0xD4BC357F),
    "half_vec": ("float16", (3,), 211, 6, 0xE97F73BF),
    "words": ("string", (3,), 217, 22, 0x33EA66D0),
}
BASIC_VALUES = {
    "conv/kernel": ((np.arange(24) - 12) / 8).reshape(2, 2, 3, 2),
    "counter_i32": [-1, 0, 2147483647],
    "dense/bias": [0.25, -0.5, 1.5, 3.0],
    "dense/kernel": (np.arange(12) * 0.5 - 1).reshape(3, 4),
    "flags": [True, False, True],
    "generator_B/adaptive_resblock0/res1/instance_layer_norm/gamma": [2, 3, 4],
    "generator_B/adaptive_resblock0/res1/instance_layer_norm/rho": [1.0, 0.95, 0.0],
    "global_step_i64": 1234567890123,
    "half_vec": [1.0, -2.5, 65504.0],
}


@pytest.fixture
def tf_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tf"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


@pytest.fixture
def basic_copy(tf_dir: Path, tmp_path: Path) -> Path:
    return _copy(tf_dir / "basic", tmp_path / "basic")


@pytest.fixture
def multiblock_copy(tf_dir: Path, tmp_path: Path) -> Path:
    folder = _copy(tf_dir / "multiblock", tmp_path / "multiblock")
    with gzip.open(folder / "model.ckpt-7.index.gz") as src, open(folder / "model.ckpt-7.index", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return folder


# ---------------------------------------------------------------------------------------- values


def test_basic_sample_every_entry_and_value(tf_dir: Path) -> None:
    ckpt = open_checkpoint(tf_dir / "basic")
    assert ckpt.names() == sorted(BASIC)  # bytewise key order
    for name, (dtype, shape, offset, size, masked) in BASIC.items():
        entry = ckpt.entries[name]
        assert (entry.dtype, entry.shape, entry.shard, entry.offset, entry.size) == (
            dtype,
            shape,
            0,
            offset,
            size,
        )
        assert mask_crc(entry.crc32c) == masked
    values = ckpt.read_many(ckpt.names())
    for name, expected in BASIC_VALUES.items():
        np.testing.assert_array_equal(values[name], np.asarray(expected, dtype=values[name].dtype))
    assert values["conv/kernel"].dtype == np.float32 and values["global_step_i64"].dtype == np.int64
    assert values["half_vec"].dtype == np.float16 and values["flags"].dtype == np.bool_
    assert list(values["words"]) == [b"", b"tf", b"checkpoint-v2"]
    assert ckpt.read("dense/bias").tolist() == [0.25, -0.5, 1.5, 3.0]
    assert ckpt.index.num_shards == 1


def test_multiblock_index_two_data_blocks(multiblock_copy: Path) -> None:
    ckpt = open_checkpoint(multiblock_copy / "model.ckpt-7.index")
    assert len(ckpt.names()) == 300
    assert ckpt.names()[256].startswith("block_256/") and ckpt.entries[ckpt.names()[256]].offset == 4 * 256
    values = ckpt.read_many(ckpt.names())
    for i, name in enumerate(ckpt.names()):
        assert name == f"block_{i:03d}/" + "k" * 1000
        assert values[name].shape == () and values[name] == i + 0.5
        assert ckpt.entries[name].offset == 4 * i


def test_snappy_compressed_index(
    tf_dir: Path, multiblock_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = tfckpt.snappy_decompress
    monkeypatch.setattr(tfckpt, "snappy_decompress", lambda data: calls.append(len(data)) or real(data))
    snappy = open_checkpoint(tf_dir / "snappy_index")
    assert calls, "the snappy sample must go through the snappy decoder"
    plain = open_checkpoint(multiblock_copy)
    assert snappy.entries == plain.entries
    values = snappy.read_many(snappy.names())
    assert [float(v) for v in values.values()] == [i + 0.5 for i in range(300)]


def test_snappy_decoder_literals_and_overlapping_copies() -> None:
    # literal "abcd"; copy-1 len 7 off 4 (overlapping); copy-2 len 3 off 10; 70-byte literal (1 length byte)
    long_literal = bytes(range(70))
    elements = (
        b"\x0cabcd" + bytes([0x0D, 0x04]) + bytes([0x0A, 0x0A, 0x00]) + bytes([60 << 2, 69]) + long_literal
    )
    data = _varint(4 + 7 + 3 + 70) + elements
    out = snappy_decompress(data)
    assert out == b"abcd" + b"abcdabc" + b"bcd" + long_literal
    with pytest.raises(ValueError):
        snappy_decompress(_varint(5) + bytes([0x0D, 0x04]))  # copy before any output


def test_crc32c_known_values_and_fallback_agree() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert crc32c(data[4000:], crc32c(data[:4000])) == crc32c(data)
    assert tf_codecs._crc32c_extend_py(0, data) == crc32c(data)
    assert tf_codecs._crc32c_extend_py(crc32c(data[:123]), data[123:]) == crc32c(data)
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(value)) == value


# --------------------------------------------------------------------------------- finding files


def test_prefix_from_any_path_form(basic_copy: Path) -> None:
    prefix = basic_copy / "model.ckpt-7"
    for given in (prefix, basic_copy, f"{prefix}.index", f"{prefix}.data-00000-of-00001", f"{prefix}.meta"):
        assert resolve_prefix(given) == prefix
    (basic_copy / "checkpoint").write_text('model_checkpoint_path: "/home/author/run/model.ckpt-7"\n')
    assert resolve_prefix(basic_copy) == prefix  # relocated run: found next to the state file
    (basic_copy / "checkpoint").unlink()
    assert resolve_prefix(basic_copy) == prefix  # single .index in the folder
    assert looks_like_tf_checkpoint(basic_copy) and looks_like_tf_checkpoint(f"{prefix}.index")
    assert (
        parse_checkpoint_state('model_checkpoint_path: "a\\"b\\303\\251"\nall_model_checkpoint_paths: "x"')
        == 'a"bé'
    )


def test_not_a_checkpoint_paths(tmp_path: Path) -> None:
    (tmp_path / "photo.index").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert not looks_like_tf_checkpoint(tmp_path / "photo.index")
    assert not looks_like_tf_checkpoint(tmp_path / "missing")
    _assert_one_line(lambda: open_checkpoint(tmp_path / "photo.index"), "not a TensorFlow checkpoint index")
    _assert_one_line(lambda: open_checkpoint(tmp_path / "nothing-here"), "no TensorFlow checkpoint")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "gone"\n')
    _assert_one_line(lambda: open_checkpoint(tmp_path), "gone.index is not in")
    (tmp_path / "empty.index").write_bytes(b"")
    _assert_one_line(lambda: open_checkpoint(tmp_path / "empty.index"), "not a TensorFlow checkpoint index")


# ------------------------------------------------------------------------------------ corruption


def _assert_one_line(call: Callable[[], object], match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return info.value


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("offset", "match"),
    [
        (-1, "no table magic"),  # magic number
        (-8, "no table magic"),
        (-48 + 5, "runs past the end|fails its checksum|varint"),  # index BlockHandle in the footer
        (0, "data block at byte 0 fails its checksum"),  # header entry
        (200, "data block at byte 0 fails its checksum"),  # inside a key
        (462 + 3, "index block at byte 462 fails its checksum"),  # index block contents
        (462 + 15 + 2, "index block at byte 462 fails its checksum"),  # its trailer crc
    ],
)
def test_damaged_index_is_refused(basic_copy: Path, offset: int, match: str) -> None:
    _flip(basic_copy / "model.ckpt-7.index", offset)
    _assert_one_line(lambda: open_checkpoint(basic_copy), match)


def test_damage_in_second_data_block_is_found(multiblock_copy: Path) -> None:
    _flip(multiblock_copy / "model.ckpt-7.index", 262_355 + 100)
    _assert_one_line(lambda: open_checkpoint(multiblock_copy), "data block at byte 262355 fails its checksum")


def test_truncated_index_is_refused(basic_copy: Path) -> None:
    index = basic_copy / "model.ckpt-7.index"
    whole = index.read_bytes()
    for cut in (1, 48, 100, len(whole) - 10):
        index.write_bytes(whole[:-cut])
        _assert_one_line(lambda: open_checkpoint(basic_copy), "no table magic")
    index.write_bytes(whole[:300] + whole[-48:])  # footer intact, blocks gone
    _assert_one_line(lambda: open_checkpoint(basic_copy), "runs past the end of the file")


def test_flipped_tensor_byte_fails_crc_and_returns_nothing(basic_copy: Path) -> None:
    _flip(basic_copy / "model.ckpt-7.data-00000-of-00001", 124 + 5)  # inside dense/kernel
    ckpt = open_checkpoint(basic_copy)
    assert ckpt.read("dense/bias").shape == (4,)  # other tensors stay readable
    _assert_one_line(
        lambda: ckpt.read_many(["dense/bias", "dense/kernel"]), "'dense/kernel' fails its crc32c"
    )
    _flip(basic_copy / "model.ckpt-7.data-00000-of-00001", 124 + 5)
    _flip(basic_copy / "model.ckpt-7.data-00000-of-00001", 217 + 9)  # a string's bytes
    _assert_one_line(lambda: open_checkpoint(basic_copy).read("words"), "'words' fails its crc32c")
    _flip(basic_copy / "model.ckpt-7.data-00000-of-00001", 217 + 9)
    _flip(basic_copy / "model.ckpt-7.data-00000-of-00001", 217 + 4)  # the strings' length checksum
    _assert_one_line(lambda: open_checkpoint(basic_copy).read("words"), "string lengths fail their checksum")


def test_truncated_or_missing_data_file(basic_copy: Path) -> None:
    data = basic_copy / "model.ckpt-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:200])
    ckpt = open_checkpoint(basic_copy)
    assert ckpt.read("dense/kernel").shape == (3, 4)
    _assert_one_line(lambda: ckpt.read_many(ckpt.names()), "is truncated: 200 bytes")
    data.unlink()
    _assert_one_line(lambda: ckpt.read("dense/kernel"), "missing data file")
    _assert_one_line(lambda: ckpt.read("no/such/tensor"), "no tensor named 'no/such/tensor'")


# ------------------------------------------------------------------ hand-built tables (rare cases)


def _entry(dims: list[int], size: int, extra: bytes = b"", shard: int = 0) -> bytes:
    shape = b"".join(_field(2, _field(1, d, 0)) for d in dims)
    return (
        _field(1, 1, 0)
        + _field(2, shape)
        + _field(3, shard, 0)
        + _field(5, size, 0)
        + _field(6, 0, 5)
        + extra
    )


HEADER = _field(1, 1, 0) + _field(3, _field(1, 1, 0))


def test_hand_built_table_parses() -> None:
    index = parse_index(_table([(b"", HEADER), (b"w", _entry([2, 3], 24))]))
    assert index.entries["w"].shape == (2, 3) and index.num_shards == 1


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ([(b"", HEADER), (b"w", _entry([4], 16, _field(7, _field(1, b""))))], "partitioned variable"),
        ([(b"", HEADER), (b"w", _entry([4], 12))], "12 bytes stored for shape"),
        ([(b"", HEADER), (b"w", _entry([4], 16, shard=3))], "shard 3 of 1"),
        ([(b"", HEADER + _field(2, 1, 0)), (b"w", _entry([4], 16))], "big-endian"),
        ([(b"w", _entry([4], 16))], "not the bundle header"),
        ([(b"", HEADER), (b"w", _entry([4], 16)), (b"a", _entry([4], 16))], "out of order"),
        ([(b"", HEADER), (b"w", b"\x0a")], "varint runs past"),
    ],
)
def test_hand_built_table_refusals(items: list[tuple[bytes, bytes]], match: str) -> None:
    _assert_one_line(lambda: parse_index(_table(items), "x.index"), match)
