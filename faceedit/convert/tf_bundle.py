"""TensorFlow checkpoint V2 ("tensor bundle") reader with numpy only: no TensorFlow, no protobuf.

Owns the on-disk format (shared/reference/tf-import.md §1): the ``.index`` SSTable (footer, blocks,
prefix-compressed keys), the bundle protos, the ``.data`` shards. Byte codecs (crc32c, snappy, varints)
are in ``tf_codecs``; which prefix a path means is ``tf_prefix``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from faceedit.convert.tf_codecs import (  # crc32c, mask_crc, unmask_crc, snappy_decompress: old import path
    CRC32C_ACCELERATED,
    _Corrupt,
    _expect,
    _proto_fields,
    _varint,
    _warn_slow_crc,
    crc32c,
    mask_crc,
    snappy_decompress,
    unmask_crc,
)
from faceedit.convert.tf_prefix import parse_checkpoint_state as parse_checkpoint_state  # old import path
from faceedit.convert.tf_prefix import resolve_prefix
from faceedit.errors import CheckpointError

log = logging.getLogger("faceedit")

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
READ_CHUNK = 64 << 20  # big tensors are read and checksummed in pieces of this size
_HINT = "the checkpoint is damaged or incomplete: download it again"

# DataType enum (tensorflow/core/framework/types.proto): code, name, numpy dtype of the stored bytes
# ("-" = no fixed-width layout). bfloat16 is stored as 16-bit words and widened to float32 on read.
_DTYPE_TABLE = """
1 float32 <f4    2 float64 <f8     3 int32 <i4     4 uint8 u1     5 int16 <i2      6 int8 i1
7 string -       8 complex64 <c8   9 int64 <i8     10 bool ?      14 bfloat16 <u2  17 uint16 <u2
18 complex128 <c16   19 float16 <f2   20 resource -   21 variant -   22 uint32 <u4   23 uint64 <u8
"""
_fields = _DTYPE_TABLE.split()
_DTYPE_NAMES = {int(c): name for c, name in zip(_fields[::3], _fields[1::3], strict=True)}
_NUMPY_DTYPES = {int(c): np_ for c, np_ in zip(_fields[::3], _fields[2::3], strict=True) if np_ != "-"}
DT_STRING, DT_BFLOAT16 = 7, 14


# ------------------------------------------------------------------------------------- SSTable blocks


def _read_block(buf: bytes, offset: int, size: int, what: str) -> bytes:
    """Block contents at a BlockHandle, trailer checked (masked crc32c of contents + type byte)."""
    end = offset + size
    if end + 5 > len(buf):
        raise _Corrupt(f"{what} block at byte {offset} runs past the end of the file (truncated?)")
    contents, block_type = buf[offset:end], buf[end]
    stored = int.from_bytes(buf[end + 1 : end + 5], "little")
    if unmask_crc(stored) != crc32c(bytes([block_type]), crc32c(contents)):
        raise _Corrupt(f"{what} block at byte {offset} fails its checksum")
    if block_type == 1:
        return snappy_decompress(contents)
    if block_type != 0:
        raise _Corrupt(f"{what} block at byte {offset} has unknown compression type {block_type}")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one block, rebuilding prefix-compressed keys; the restart array is skipped."""
    if len(block) < 4:
        raise _Corrupt("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _Corrupt("block restart array larger than the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _Corrupt("block entry points outside the block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _table_entries(buf: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable, in key order, across all data blocks."""
    if len(buf) < FOOTER_SIZE or int.from_bytes(buf[-8:], "little") != TABLE_MAGIC:
        raise _Corrupt("no table magic number at the end: not a TensorFlow checkpoint index")
    footer = buf[-FOOTER_SIZE:]
    _meta_offset, pos = _varint(footer, 0)
    _meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    index_block = _read_block(buf, index_offset, index_size, "index")
    for _separator, handle in _block_entries(index_block):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        yield from _block_entries(_read_block(buf, offset, size, "data"))


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _proto_fields(buf):
        if field == 2:
            size = 0
            for sub, _, sub_value in _proto_fields(_expect(value, bytes, "shape dim")):
                if sub == 1:
                    size = _expect(sub_value, int, "dim size")
            dims.append(size if size < 1 << 63 else size - (1 << 64))
        elif field == 3 and value:
            raise _Corrupt("tensor of unknown rank")
    if any(d < 0 for d in dims):
        raise _Corrupt(f"tensor shape {dims} has an unknown dimension")
    return tuple(dims)


# ----------------------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: shard, byte range and checksum of its stored bytes, plus dtype and shape."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # unmasked CRC-32C of the stored bytes

    @property
    def dtype(self) -> str:
        """numpy-style name (``float32``, ``int64``, ``string``, ``bfloat16``...)."""
        return _DTYPE_NAMES.get(self.dtype_code, f"dtype#{self.dtype_code}")

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class BundleIndex:
    """A parsed ``.index``: shard count and every tensor's entry, in key (= bytewise name) order."""

    num_shards: int
    entries: dict[str, TensorEntry]
    sha256: str
    nbytes: int


def _parse_header(value: bytes) -> int:
    num_shards, endianness = 0, 0
    for field, _, item in _proto_fields(value):
        if field == 1:
            num_shards = _expect(item, int, "num_shards")
        elif field == 2:
            endianness = _expect(item, int, "endianness")
    if endianness != 0:
        raise _Corrupt("big-endian tensor data is not supported")
    if not 1 <= num_shards < 1 << 20:
        raise _Corrupt(f"header says {num_shards} data shards")
    return num_shards


def _parse_entry(name: str, value: bytes, num_shards: int) -> TensorEntry:
    fields: dict[str, int | bytes] = {"dtype": 0, "shape": b"", "shard": 0, "offset": 0, "size": 0, "crc": 0}
    slots = {
        1: ("dtype", int),
        2: ("shape", bytes),
        3: ("shard", int),
        4: ("offset", int),
        5: ("size", int),
        6: ("crc", int),
    }
    for field, wire, item in _proto_fields(value):
        if field == 7:
            raise _Corrupt(f"tensor {name!r} is a partitioned variable (slices), which is not supported")
        if field in slots:
            key, kind = slots[field]
            if field == 6 and wire != 5:
                raise _Corrupt(f"tensor {name!r}: crc32c is not a fixed32 field")
            fields[key] = _expect(item, kind, f"tensor {name!r} field {field}")
    entry = TensorEntry(
        name,
        fields["dtype"],
        _parse_shape(fields["shape"]),
        fields["shard"],
        fields["offset"],
        fields["size"],
        unmask_crc(fields["crc"]),
    )
    _check_entry(entry, num_shards)
    return entry


def _check_entry(entry: TensorEntry, num_shards: int) -> None:
    if entry.shard >= num_shards:
        raise _Corrupt(f"tensor {entry.name!r} is in shard {entry.shard} of {num_shards}")
    np_dtype = _NUMPY_DTYPES.get(entry.dtype_code)
    if np_dtype is not None:
        expected = int(np.prod(entry.shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        if expected != entry.size:
            raise _Corrupt(
                f"tensor {entry.name!r}: {entry.size} bytes stored for shape {list(entry.shape)} "
                f"of {entry.dtype}"
            )


def parse_index(data: bytes, source: str = "index") -> BundleIndex:
    """Parse the bytes of a ``.index`` file; any damage is one :class:`CheckpointError` naming ``source``."""
    try:
        return _parse_index(data)
    except (_Corrupt, UnicodeDecodeError) as e:
        raise CheckpointError(f"{source}: {e}", _HINT) from None


def _parse_index(data: bytes) -> BundleIndex:
    items = _table_entries(data)
    first = next(items, None)
    if first is None or first[0] != b"":
        raise _Corrupt("first table entry is not the bundle header: not a TensorFlow checkpoint index")
    num_shards = _parse_header(first[1])
    entries: dict[str, TensorEntry] = {}
    previous = b""
    for key, value in items:
        if key <= previous:
            raise _Corrupt("table keys are out of order")
        previous = key
        name = key.decode("utf-8")
        entries[name] = _parse_entry(name, value, num_shards)
    return BundleIndex(num_shards, entries, hashlib.sha256(data).hexdigest(), len(data))


# ------------------------------------------------------------------------------------- tensor values


class TensorAssembler:
    """Collects one tensor's stored bytes in order (in chunks of any size) and decodes them once complete.

    The crc32c is updated chunk by chunk, so a 1 GiB kernel is never held twice; ``finish`` checks the
    byte count and checksum before anything is returned.
    """

    def __init__(self, entry: TensorEntry, source: str = "checkpoint") -> None:
        self.entry, self.source = entry, source
        self.filled = 0
        self.crc = 0
        if entry.size > READ_CHUNK and not CRC32C_ACCELERATED:
            _warn_slow_crc()
        self._buf = np.empty(entry.size, dtype=np.uint8)

    def write(self, chunk: bytes) -> None:
        n = len(chunk)
        if self.filled + n > self.entry.size:
            raise CheckpointError(
                f"{self.source}: more bytes than expected for tensor {self.entry.name!r}", _HINT
            )
        self._buf[self.filled : self.filled + n] = np.frombuffer(chunk, dtype=np.uint8)
        self.crc = crc32c(chunk, self.crc)
        self.filled += n

    def finish(self) -> np.ndarray:
        """The decoded tensor; CheckpointError if bytes are missing or the checksum does not match."""
        entry = self.entry
        if self.filled != entry.size:
            raise CheckpointError(
                f"{self.source}: tensor {entry.name!r} got {self.filled} of {entry.size} bytes", _HINT
            )
        try:
            if entry.dtype_code == DT_STRING:
                array, crc = _decode_strings(entry, self._buf.tobytes())
            else:
                array, crc = _decode_numeric(entry, self._buf), self.crc
        except _Corrupt as e:
            raise CheckpointError(f"{self.source}: tensor {entry.name!r}: {e}", _HINT) from None
        if crc != entry.crc32c:
            raise CheckpointError(
                f"{self.source}: tensor {entry.name!r} fails its crc32c check (data corrupted)", _HINT
            )
        return array


def _decode_numeric(entry: TensorEntry, raw: np.ndarray) -> np.ndarray:
    """Stored bytes (uint8 [size]) -> array of ``entry.shape`` (a view; bfloat16 widened to float32)."""
    np_dtype = _NUMPY_DTYPES.get(entry.dtype_code)
    if np_dtype is None:
        raise _Corrupt(f"dtype {entry.dtype} cannot be read")
    array = raw.view(np_dtype).reshape(entry.shape)
    if entry.dtype_code == DT_BFLOAT16:  # bfloat16 = the top half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _decode_strings(entry: TensorEntry, raw: bytes) -> tuple[np.ndarray, int]:
    """DT_STRING layout: varint lengths, masked crc of the lengths, the bytes. Returns (values, entry crc).

    The entry's crc covers the lengths as uint32 (uint64 when huge), the 4 checksum bytes, then the strings.
    """
    count = int(np.prod(entry.shape, dtype=np.int64))
    lengths, pos = [], 0
    for _ in range(count):
        length, pos = _varint(raw, pos)
        lengths.append(length)
    length_bytes = b"".join(n.to_bytes(8 if n > 0xFFFFFFFF else 4, "little") for n in lengths)
    if pos + 4 > len(raw) or int.from_bytes(raw[pos : pos + 4], "little") != mask_crc(crc32c(length_bytes)):
        raise _Corrupt("string lengths fail their checksum")
    crc = crc32c(raw[pos:], crc32c(length_bytes))
    pos += 4
    if pos + sum(lengths) != len(raw):
        raise _Corrupt("string bytes do not add up to the stored size")
    values = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        values[i] = raw[pos : pos + length]
        pos += length
    return values.reshape(entry.shape), crc


# ------------------------------------------------------------------------------------ checkpoint files


def looks_like_tf_checkpoint(path: Path | str) -> bool:
    """Cheap test (no parsing): does ``path`` resolve to a ``.index`` ending in the table magic number?"""
    try:
        index = resolve_prefix(path)
        index = index.with_name(index.name + ".index")
        with open(index, "rb") as f:
            f.seek(0, 2)
            if f.tell() < FOOTER_SIZE:
                return False
            f.seek(-8, 2)
            return int.from_bytes(f.read(8), "little") == TABLE_MAGIC
    except (CheckpointError, OSError):
        return False


def shard_name(prefix_name: str, shard: int, num_shards: int) -> str:
    return f"{prefix_name}.data-{shard:05d}-of-{num_shards:05d}"


class TFCheckpoint:
    """An opened checkpoint: names/shapes/dtypes come from the index; tensors are read verified."""

    def __init__(self, path: Path | str) -> None:
        self.prefix = resolve_prefix(path)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        try:
            data = self.index_path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {self.index_path}: {e.strerror or e}", _HINT) from e
        self.index = parse_index(data, str(self.index_path))

    @property
    def entries(self) -> dict[str, TensorEntry]:
        return self.index.entries

    def names(self) -> list[str]:
        return list(self.index.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: e.shape for name, e in self.index.entries.items()}

    def dtypes(self) -> dict[str, str]:
        return {name: e.dtype for name, e in self.index.entries.items()}

    def data_path(self, shard: int) -> Path:
        return self.prefix.with_name(shard_name(self.prefix.name, shard, self.index.num_shards))

    def read(self, name: str) -> np.ndarray:
        """One tensor, checksum verified."""
        return self.read_many([name])[name]

    def read_many(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Several tensors, each shard opened once and read in file order; all verified before returning."""
        wanted = list(dict.fromkeys(names))
        missing = [n for n in wanted if n not in self.index.entries]
        if missing:
            raise CheckpointError(
                f"{self.index_path}: no tensor named {', '.join(map(repr, missing[:5]))}"
                + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            )
        by_shard: dict[int, list[TensorEntry]] = {}
        for name in wanted:
            entry = self.index.entries[name]
            by_shard.setdefault(entry.shard, []).append(entry)
        out: dict[str, np.ndarray] = {}
        for shard, entries in sorted(by_shard.items()):
            out.update(self._read_shard(shard, sorted(entries, key=lambda e: e.offset)))
        return {name: out[name] for name in wanted}

    def _read_shard(self, shard: int, entries: list[TensorEntry]) -> dict[str, np.ndarray]:
        path = self.data_path(shard)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                last = max(entries, key=lambda e: e.end)
                if last.end > size:
                    raise CheckpointError(
                        f"{path} is truncated: {size} bytes, but tensor {last.name!r} "
                        f"ends at byte {last.end}",
                        _HINT,
                    )
                return {e.name: read_entry(f, e, str(path)) for e in entries}
        except FileNotFoundError:
            raise CheckpointError(
                f"missing data file {path}", "copy the .data-* files next to the .index"
            ) from None
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror or e}", _HINT) from e


def read_entry(f: BinaryIO, entry: TensorEntry, source: str, at: int | None = None) -> np.ndarray:
    """Read and verify one tensor from an open file, at ``entry.offset`` unless ``at`` is given."""
    f.seek(entry.offset if at is None else at)
    assembler = TensorAssembler(entry, source)
    remaining = entry.size
    while remaining:
        chunk = f.read(min(remaining, READ_CHUNK))
        if not chunk:
            break
        assembler.write(chunk)
        remaining -= len(chunk)
    return assembler.finish()


def open_checkpoint(path: Path | str) -> TFCheckpoint:
    """Open a checkpoint given a prefix, its ``.index`` path, or a folder with a ``checkpoint`` file."""
    return TFCheckpoint(path)
