"""Write small TensorFlow checkpoint bundles (``.index`` SSTable + one ``.data`` shard) for tests.

Tensors given as arrays are stored; tensors given as ``(shape, dtype)`` are zeros that cost nothing on
disk (holes of a sparse data file). The layout is TF's: header entry, sorted keys, masked crc32c.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceedit import tfckpt

_DTYPES = {"float32": 1, "int64": 9}
Spec = np.ndarray | tuple[tuple[int, ...], str]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int, wire: int = 2) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 5:
        return key + payload.to_bytes(4, "little")
    return key + _varint(len(payload)) + payload


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in items)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


def _table(items: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()

    def put(block: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(block))
        crc = tfckpt.mask_crc(tfckpt.crc32c(b"\x00", tfckpt.crc32c(block)))
        out.extend(block + b"\x00" + crc.to_bytes(4, "little"))
        return handle

    data_handle = put(_block(items))
    meta_handle = put(_block([]))
    index_handle = put(_block([(b"\xff", data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + tfckpt.TABLE_MAGIC.to_bytes(8, "little")
    return bytes(out) + footer


def _entry(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(_field(2, _field(1, d, 0)) for d in shape)
    return (
        _field(1, dtype, 0)
        + _field(2, dims)
        + (_field(4, offset, 0) if offset else b"")
        + _field(5, size, 0)
        + _field(6, tfckpt.mask_crc(crc), 5)
    )


def write_bundle(prefix: Path, tensors: dict[str, Spec]) -> Path:
    """Write ``prefix.index`` and ``prefix.data-00000-of-00001``; returns the prefix."""
    items, offset = [(b"", _field(1, 1, 0) + _field(3, _field(1, 1, 0)))], 0
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    with open(data, "wb") as f:
        for name in sorted(tensors):
            spec = tensors[name]
            if isinstance(spec, np.ndarray):
                raw = np.ascontiguousarray(spec, dtype=spec.dtype.newbyteorder("<")).tobytes()
                shape, dtype, size = spec.shape, _DTYPES[str(spec.dtype)], len(raw)
                f.seek(offset)
                f.write(raw)
            else:  # zeros: leave a hole in the file
                shape, dtype = spec[0], _DTYPES[spec[1]]
                size = int(np.prod(shape, dtype=np.int64)) * np.dtype(spec[1]).itemsize
                raw = bytes(size)
            items.append((name.encode(), _entry(dtype, tuple(shape), offset, size, tfckpt.crc32c(raw))))
            offset += size
        f.truncate(offset)
    prefix.with_name(prefix.name + ".index").write_bytes(_table(items))
    return prefix
