"""A small self-describing binary record of named numpy arrays (no pickle), used by the packed dataset.

Layout (little-endian)::

    header   magic b"NNPR" | version u16 | number of arrays u16 | CRC-32 of the body u32 | body length u64
    body     per array: name length u8 | name (ASCII) | dtype code (1 byte) | ndim u8 | shape (ndim x u64)
             | raw data (C order)

Decoding checks the magic, version, length and checksum before it touches the arrays, so a
truncated or corrupted record raises :class:`RecordError` instead of returning wrong numbers.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

RECORD_MAGIC = b"NNPR"
RECORD_VERSION = 1
_HEADER = struct.Struct("<4sHHIQ")
_DTYPES = {b"f": np.dtype("<f8"), b"i": np.dtype("<i8"), b"u": np.dtype("u1"), b"b": np.dtype("?")}
_CODES = {(dtype.kind, dtype.itemsize): code for code, dtype in _DTYPES.items()}


class RecordError(ValueError):
    """A record is truncated, corrupted or not a record of this format."""


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Bytes of ``arrays`` (float64, int64, uint8 or bool; other dtypes raise ``TypeError``)."""
    parts = []
    for name, array in arrays.items():
        array = np.asarray(array)
        code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
        if code is None:
            raise TypeError(f"array {name!r} has dtype {array.dtype}; records hold float64, int64, uint8 or bool")
        label = name.encode("ascii")
        parts.append(struct.pack(f"<B{len(label)}scB{array.ndim}Q", len(label), label, code, array.ndim, *array.shape))
        parts.append(array.astype(_DTYPES[code], copy=False).tobytes(order="C"))
    body = b"".join(parts)
    return _HEADER.pack(RECORD_MAGIC, RECORD_VERSION, len(arrays), zlib.crc32(body), len(body)) + body


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a record made by :func:`encode_arrays` (read-only views into ``data``)."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise RecordError(f"record is {len(data)} bytes, shorter than its {_HEADER.size}-byte header (truncated)")
    magic, version, count, crc, length = _HEADER.unpack_from(data)
    if magic != RECORD_MAGIC:
        raise RecordError(f"record starts with {magic!r}, not {RECORD_MAGIC!r}")
    if version != RECORD_VERSION:
        raise RecordError(f"record version {version}, this nnp reads version {RECORD_VERSION}")
    body = memoryview(data)[_HEADER.size:]
    if len(body) != length:
        raise RecordError(f"record body is {len(body)} bytes, its header says {length} (truncated)")
    if zlib.crc32(body) != crc:
        raise RecordError("record checksum does not match its contents (corrupted bytes)")
    arrays, offset = {}, 0
    try:
        for _ in range(count):
            name, offset = _read_name(body, offset)
            code, ndim = struct.unpack_from("<cB", body, offset)
            shape = struct.unpack_from(f"<{ndim}Q", body, offset + 2)
            offset += 2 + 8 * ndim
            dtype = _DTYPES[code]
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if offset + size > len(body):
                raise RecordError(f"array {name!r} runs past the end of the record")
            arrays[name] = np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=offset).reshape(shape)
            offset += size
    except (struct.error, KeyError, UnicodeDecodeError) as err:
        raise RecordError(f"record layout is damaged ({type(err).__name__}: {err})") from None
    if offset != len(body):
        raise RecordError(f"record has {len(body) - offset} trailing bytes")
    return arrays


def _read_name(body: memoryview, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<B", body, offset)
    name = bytes(body[offset + 1 : offset + 1 + length]).decode("ascii")
    return name, offset + 1 + length
