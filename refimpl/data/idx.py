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

References
----------
.. [1] LeCun, Y., Cortes, C. and Burges, C. J. C. *The MNIST database of handwritten digits*,
   section "File formats for the MNIST database". http://yann.lecun.com/exdb/mnist/
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

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


def _codes_text() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, decompressed if they start with the gzip magic."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the content, not the suffix.

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
    ValueError
        If the file is not a well-formed IDX file: a bad magic number, an unknown type code,
        zero dimensions, a header cut short, a payload shorter or longer than the dimensions
        say, or corrupt gzip data. The message names the file.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype                        # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    data = _read_bytes(path)
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
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has extra bytes"
        raise ValueError(
            f"{path}: IDX payload {what}: shape {shape} of {dtype.name} needs {expected} bytes "
            f"after the {header_len}-byte header, the file has {actual}"
        )
    flat = np.frombuffer(data, dtype=dtype, offset=header_len)
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
