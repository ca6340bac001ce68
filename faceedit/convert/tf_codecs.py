"""The byte-level codecs of TensorFlow's checkpoint files, with the standard library only: masked crc32c
(``google_crc32c`` when installed), varints, snappy blocks and protobuf wire fields.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

log = logging.getLogger("faceedit")


class _Corrupt(ValueError):
    """Raised deep inside the parsers; turned into one CheckpointError naming the file."""


# ----------------------------------------------------------------------------------------------- crc32c


def _make_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def _crc32c_extend_py(crc: int, data: bytes) -> int:
    """Castagnoli CRC of ``data`` continuing ``crc`` (a finished value): pure Python, ~10 MB/s."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for byte in data:
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


try:  # Google's C library with SSE4.2/ARM CRC instructions: GB/s instead of MB/s
    import google_crc32c as _google_crc32c

    CRC32C_ACCELERATED = _google_crc32c.implementation == "c"
    _crc32c_extend_fast = _google_crc32c.extend
except ImportError:  # pragma: no cover - depends on the environment
    CRC32C_ACCELERATED = False
    _crc32c_extend_fast = None


@functools.cache
def _warn_slow_crc() -> None:
    log.warning(
        "checksumming big tensors in pure Python (~10 MB/s); installing google-crc32c makes it ~1000x faster"
    )


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data`` continuing the finished value ``crc``: ``crc32c(a+b) == crc32c(b, crc32c(a))``."""
    if _crc32c_extend_fast is not None:
        return _crc32c_extend_fast(crc, bytes(data))  # the C extension takes only immutable bytes
    return _crc32c_extend_py(crc, data)


def mask_crc(crc: int) -> int:
    """TensorFlow/LevelDB's stored form of a crc (rotate right 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------ varints, snappy


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a little-endian base-128 varint at ``pos``; returns (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("varint runs past the end of its buffer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint longer than 10 bytes")


def snappy_decompress(data: bytes) -> bytes:
    """Decode one raw-snappy buffer (no framing), as LevelDB tables store compressed blocks."""
    expected, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag & 3 == 0:  # literal: length-1 in the tag, or in 1-4 extra bytes
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > len(data):
                raise _Corrupt("snappy literal runs past the end of the block")
            out += data[pos : pos + length]
            pos += length
            continue
        length, offset, pos = _snappy_copy(tag, data, pos)
        _snappy_apply_copy(out, offset, length)
    if len(out) != expected:
        raise _Corrupt(f"snappy block decodes to {len(out)} bytes, header says {expected}")
    return bytes(out)


def _snappy_copy(tag: int, data: bytes, pos: int) -> tuple[int, int, int]:
    kind = tag & 3
    if kind == 1:  # 1-byte offset: length 4..11, offset has 3 more bits in the tag
        if pos >= len(data):
            raise _Corrupt("snappy copy runs past the end of the block")
        return ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | data[pos], pos + 1
    width = 2 if kind == 2 else 4
    if pos + width > len(data):
        raise _Corrupt("snappy copy runs past the end of the block")
    return (tag >> 2) + 1, int.from_bytes(data[pos : pos + width], "little"), pos + width


def _snappy_apply_copy(out: bytearray, offset: int, length: int) -> None:
    if offset == 0 or offset > len(out):
        raise _Corrupt("snappy copy points before the start of the output")
    start = len(out) - offset
    if offset >= length:
        out += out[start : start + length]
    else:  # overlapping copy: the last `offset` bytes repeat
        pattern = bytes(out[start:])
        out += (pattern * (length // offset + 1))[:length]


# ------------------------------------------------------------------------------------------ protobuf


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) triples of one serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise _Corrupt("fixed-width field runs past the end of its message")
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Corrupt("length-delimited field runs past the end of its message")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _expect(value: int | bytes, kind: type, what: str) -> int | bytes:
    if not isinstance(value, kind):
        raise _Corrupt(f"{what} has the wrong protobuf wire type")
    return value
