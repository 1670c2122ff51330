"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, the dimensions as big-endian unsigned 32-bit integers, and
the array's elements in C order, big-endian. The magic number is two zero bytes, a type code and
the number of dimensions:

========== ======================= ==============
type code  element                 numpy dtype
========== ======================= ==============
``0x08``   unsigned byte           ``uint8``
``0x09``   signed byte             ``int8``
``0x0B``   short (2 bytes)         ``>i2``
``0x0C``   int (4 bytes)           ``>i4``
``0x0D``   float (4 bytes)         ``>f4``
``0x0E``   double (8 bytes)        ``>f8``
========== ======================= ==============

The files are often distributed gzip-compressed; :func:`read_idx` recognises gzip by its magic
bytes (``1f 8b``), not by the file name, so a renamed file still reads.

Reading is checked before anything is allocated from the header: the declared size (computed
exactly, without overflow) must be at most ``max_bytes``; a raw file must hold exactly that many
bytes after the header (known from the file's size before any is read); a gzip file is inflated
only as far as the header declares, plus one byte to prove it ends there, so a small file that
would inflate to gigabytes is refused after reading what its header announced.

References
----------
.. [1] LeCun, Y., Cortes, C. and Burges, C. J. C. *The MNIST database of handwritten digits*,
   section "File formats for the MNIST database". http://yann.lecun.com/exdb/mnist/
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..validation import check_int

__all__ = ["IDX_DTYPES", "MAX_IDX_BYTES", "read_idx", "write_idx"]

#: IDX type code -> big-endian numpy dtype of one element.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 255
_MAX_DIM = 2**32 - 1
#: The largest payload :func:`read_idx` accepts unless told otherwise (2 GiB; Fashion-MNIST's
#: largest file holds 47 MB, EMNIST's about 600 MB).
MAX_IDX_BYTES = 2**31
_CHUNK = 1 << 20  # bytes inflated per read: a gzip member is never inflated all at once


def _codes_text() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _as_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    return Path(path)


def _read(stream: BinaryIO, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes of ``stream`` (fewer at its end), read ``_CHUNK`` bytes at a time so
    that nothing is allocated for bytes the stream does not have; gzip errors name the file."""
    parts, left = [], n
    try:
        while left > 0:
            part = stream.read(min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except (EOFError, OSError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from None
    return b"".join(parts)


def _iter_content(path: str | os.PathLike[str], limit: int) -> Iterator[bytes]:
    """The file's bytes in chunks, inflated if they start with the gzip magic; ``ValueError``
    naming the file past ``limit`` bytes or on corrupt gzip data (memory stays one chunk)."""
    path = _as_path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=f, mode="rb") if gz else f  # type: ignore
        total = 0
        while chunk := _read(stream, _CHUNK, path):
            total += len(chunk)
            if total > limit:
                raise ValueError(f"{path}: more than {limit} bytes of content")
            yield chunk


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the content, not the suffix.
    max_bytes : int
        The largest payload (elements times their size) to accept; a header declaring more is
        refused before anything is read or allocated. Default :data:`MAX_IDX_BYTES`, 2 GiB.

    Returns
    -------
    ndarray, shape (d_1, ..., d_k)
        The array with the file's dimensions, in native byte order, writable and C-contiguous.
        Its dtype is ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``
        according to the type code.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    TypeError
        If ``path`` is not a str or path-like, or ``max_bytes`` not an int.
    ValueError
        If the file is not a well-formed IDX file: a bad magic number, an unknown type code,
        zero dimensions, a header cut short, a declared size above ``max_bytes``, a payload
        shorter or longer than the dimensions say, or corrupt gzip data. The message names
        the file.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype                        # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = _as_path(path)
    max_bytes = check_int(max_bytes, "max_bytes", 0)
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if gz:
            with gzip.GzipFile(fileobj=f, mode="rb") as stream:
                return _parse_idx(stream, path, max_bytes, None)
        return _parse_idx(f, path, max_bytes, os.fstat(f.fileno()).st_size)


def _parse_idx(stream: BinaryIO, path: Path, max_bytes: int, size: int | None) -> np.ndarray:
    """Read an IDX file from ``stream``; ``size`` is the raw file's length (None for gzip)."""
    data = _read(stream, 4, path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the header")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number {data[:4].hex()} does not start with two "
            "zero bytes"
        )
    if code not in IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02X}; allowed codes are {_codes_text()}"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; need 1 to {_MAX_NDIM}")
    header_len = 4 + 4 * ndim
    data += _read(stream, header_len - 4, path)
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # exact: Python ints never overflow
    if expected > max_bytes:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} of {dtype.name}, {expected} bytes, "
            f"more than max_bytes={max_bytes}"
        )
    if size is not None:  # a raw file: its length says everything before a byte is read
        actual = size - header_len
        if actual != expected:
            what = "truncated" if actual < expected else "has extra bytes"
            raise ValueError(
                f"{path}: IDX payload {what}: shape {shape} of {dtype.name} needs {expected} "
                f"bytes after the {header_len}-byte header, the file has {actual}"
            )
    payload = _read(stream, expected, path)
    if len(payload) < expected:
        raise ValueError(
            f"{path}: IDX payload truncated: shape {shape} of {dtype.name} needs {expected} "
            f"bytes after the {header_len}-byte header, the file has {len(payload)}"
        )
    if _read(stream, 1, path):  # inflate one byte more, never the rest
        raise ValueError(
            f"{path}: IDX payload has extra bytes: shape {shape} of {dtype.name} needs "
            f"{expected} bytes after the {header_len}-byte header, the file has more"
        )
    flat = np.frombuffer(payload, dtype=dtype)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> Path:
    """Write an array as an IDX file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; overwritten if it exists. The name is used as given (add ``.gz`` yourself
        when ``compress=True`` if you want the conventional name).
    array : array_like, shape (d_1, ..., d_k)
        Between 1 and 255 dimensions, each below 2**32, of dtype ``uint8``, ``int8``, ``int16``,
        ``int32``, ``float32`` or ``float64`` (either byte order).
    compress : bool
        Gzip the file (deterministically: the gzip header's time stamp is zero).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array has 0 or more than 255 dimensions, or a dimension of 2**32 or more.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder in "<>" else array.dtype
    code = next((c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == native), None)
    if code is None:
        raise TypeError(
            f"array dtype {array.dtype} has no IDX type code; allowed: uint8, int8, int16, "
            "int32, float32, float64"
        )
    if not 1 <= array.ndim <= _MAX_NDIM:
        raise ValueError(f"array must have 1 to {_MAX_NDIM} dimensions, got {array.ndim}")
    if any(d > _MAX_DIM for d in array.shape):
        raise ValueError(f"every dimension must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + payload
    path = Path(path)
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
    return path
