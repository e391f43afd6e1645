"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed, read into numpy arrays.

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension and
the data in C order. Compression is detected from the content (gzip magic), never from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

# type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """The bytes are not a valid IDX file; the message names the file and what is wrong."""


def _raw(data: bytes, name: str) -> bytes:
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"{name}: corrupt or truncated gzip stream ({exc})") from exc


def parse_idx_header(raw: bytes, name: str = "<bytes>") -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of uncompressed IDX bytes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxError(f"{name}: not an IDX file (the first two bytes must be zero)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise IdxError(f"{name}: unknown IDX type code 0x{code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise IdxError(f"{name}: IDX header truncated ({ndim} dimensions declared)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.dtype(IDX_DTYPES[code]), shape, 4 + 4 * ndim


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array stored in IDX ``data`` (gzip or plain), in native byte order; raises IdxError if invalid."""
    raw = _raw(data, name)
    dtype, shape, offset = parse_idx_header(raw, name)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise IdxError(
            f"{name}: IDX header declares shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(raw) - offset}; the file is truncated or corrupt, re-run ingest"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file at ``path`` (``.gz`` or not)."""
    return read_idx_bytes(Path(path).read_bytes(), str(path))


def idx_bytes(array: np.ndarray, compress: bool = True) -> bytes:
    """``array`` encoded as an IDX file (gzip-compressed, reproducibly, when ``compress``)."""
    codes = {np.dtype(v).newbyteorder("=").str: k for k, v in IDX_DTYPES.items()}
    array = np.asarray(array)
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise IdxError(f"dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = True) -> None:
    """Write ``array`` as an IDX file at ``path``; used by tests and tools."""
    Path(path).write_bytes(idx_bytes(array, compress))
