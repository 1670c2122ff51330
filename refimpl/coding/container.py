r"""The compressed model file: the deployed form of a model, and the size model of the package.

:func:`save_compressed` writes a :class:`~refimpl.nn.Sequential` to one self-contained file and
:func:`load_compressed` rebuilds the model from it, without being given the model: the file
describes the architecture (each layer's type and :meth:`~refimpl.nn.Layer.config`, as JSON)
and holds every tensor the model computes with. The rebuilt model's tensors are bit for bit the
compressed model's effective tensors (chains of parametrizations applied), so its predictions
are equal. See chapter 6 of the book, "The compressed model file".

How a tensor is stored
----------------------
Each tensor is stored in a *layout* and with *values*, the stages of Deep Compression [1]_:

* layout **dense** (every entry) or **sparse**: relative-index entries
  (:mod:`refimpl.coding.sparse`), a gap stream of the nonzero positions with filler entries
  where a gap does not fit in ``index_bits``;
* values as **floats** (one per stored entry, at the tensor's float width) or **deployed** by
  the step of the tensor's parametrization chain that produced them
  (:meth:`refimpl.nn.Parametrization.deploy`): a codebook and one symbol per entry for weight
  sharing, integer codes and scales for uniform quantization, a sign bit per entry for binary
  weights, the buckets and a seed for hashing, codebooks and codes for product quantization.

So a pruned weight is sparse floats, a pruned and shared one sparse with a codebook, a hashed
one dense with nothing stored per entry. Integer arrays (gaps, symbols, codes) are streams,
packed at a fixed width or Huffman-coded (:func:`~refimpl.coding.huffman_encode`, the last stage
of Deep Compression) when that is shorter. The encoder checks that the stored values decode to
exactly the tensor the layer computes with; entries a step cannot express as zero (a filler
under a binary step) are listed and zeroed on reading.

The one size model. :func:`encoded_tensor` encodes one tensor the way the file does and reports
its bytes; the cost model (:func:`refimpl.cost.profile`) counts a parametrized tensor's stored
bytes with it, so the profile of a compressed model and the size of its file differ only by the
file's headers.

File format (version 2)
-----------------------
Integers little-endian. ``u8``/``u16``/``u32``/``u64``: unsigned integers of 1, 2, 4, 8 bytes.

==============  ============  ==================================================================
field           type          meaning
==============  ============  ==================================================================
magic           8 bytes       ``b"\x89RDC\r\n\x1a\n"`` (``\r\n`` and ``\x1a`` catch text-mode
                              mangling, as in PNG)
version         u16           2
arch_len        u32           length of the architecture JSON (at most 1 MiB)
architecture    arch_len      UTF-8 JSON: ``{"format": "refimpl-compressed-model", "model":
                              {"type": "Sequential", "layers": [{"name": "fc1", "type":
                              "Linear", "in_features": 784, ...}, ...]}}``
n_tensors       u32           number of tensor records
records         ...           ``n_tensors`` tensor records (below)
file_len        u64           length of the whole file, trailer included
crc32           u32           CRC-32 (zlib) of every preceding byte
==============  ============  ==================================================================

A tensor record: ``u8`` name length, the UTF-8 dotted name (``"fc1.weight"``), ``u8`` dtype
(0 float32, 1 float64), ``u8`` ndim, ``ndim x u32`` shape, ``u32`` body length, the body. The
body: ``u8`` layout (0 dense, 1 sparse); for sparse, ``u8`` index_bits, ``u32`` entries ``m``
and the gap stream (``m`` values); then ``u8`` values kind: 0 floats (``m`` or ``size`` values),
or 1 deployed: ``u8`` + step name, ``u16`` + config JSON, ``u8`` float-array count and for each
``u8`` + key, ``u8`` dtype, ``u32`` count and the values, ``u8`` int-array count and for each
``u8`` + key, ``u32`` count and a stream, then ``u32`` count and a stream of the entries forced
to zero. A stream of ``c`` non-negative integers is ``u8`` coding (0 fixed width, 1 Huffman),
``u32`` length ``L`` and ``L`` bytes: a ``u8`` width ``w`` and ``ceil(c w / 8)`` bytes of
big-endian packed bits, or a :func:`~refimpl.coding.huffman_encode` stream (with its own
header and CRC-32).

Reading is checked before anything is allocated: the length and the CRC-32 first, then the
magic, version and architecture (size and nesting limits, known layer types, each layer's
tensor shapes computed from its configuration without building it), then every record header
against the bytes present and the shapes the architecture implies, and the total size against
``max_elements``. Only then is the model built and filled. Any inconsistency raises
``ValueError`` naming the problem: a truncated, altered or hostile file never loads as a model.
No pickle is involved anywhere.

References
----------
.. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
   Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn import Deployed, Layer, Parametrization, Sequential, leaf_layers
from ..validation import check_int
from .huffman import _pack_fixed, _unpack_fixed, huffman_decode, huffman_encode
from .sparse import RelativeCSR, decode_relative_csr, encode_relative_csr

__all__ = [
    "MAX_ELEMENTS",
    "MODEL_MAGIC",
    "MODEL_VERSION",
    "TensorInfo",
    "describe_compressed",
    "dumps_compressed",
    "encoded_tensor",
    "load_compressed",
    "loads_compressed",
    "save_compressed",
]

MODEL_MAGIC = b"\x89RDC\r\n\x1a\n"
MODEL_VERSION = 2
_FORMAT = "refimpl-compressed-model"
_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))
#: Auto mode shares a plain weight only if its nonzeros take at most this many distinct values.
AUTO_SHARE_MAX = 256
MAX_CODEBOOK = 65535
#: The largest model (total entries of all its tensors) a file may describe, unless the reader
#: is given another limit: 2**27 entries, 512 MiB of float32.
MAX_ELEMENTS = 2**27
MAX_ARCH_BYTES = 1 << 20
MAX_TENSORS = 1 << 16
MAX_NDIM = 8
_FIXED, _HUFFMAN = 0, 1
_DENSE, _SPARSE = 0, 1
_FLOATS, _DEPLOYED = 0, 1


# -- streams and low-level reading --------------------------------------------------------------
def _stream(values: np.ndarray, huffman: bool) -> bytes:
    """A stream of non-negative ints: packed at a fixed width, or Huffman-coded if asked for
    and smaller (a short stream can cost more in code table than Huffman saves)."""
    values = np.asarray(values).astype(np.uint64)
    width = max(1, int(values.max()).bit_length()) if values.size else 1
    body = bytes([width]) + _pack_fixed(values, width)
    coding = _FIXED
    if huffman and values.size:
        coded = huffman_encode(values)
        if len(coded) < len(body):
            body, coding = coded, _HUFFMAN
    return struct.pack("<BI", coding, len(body)) + body


class _Reader:
    """Bounds-checked reads from a byte string; any overrun is a ``ValueError``."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ValueError(f"compressed model file is truncated or corrupt: cannot read {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))

    def text(self, length_fmt: str, what: str) -> str:
        (n,) = self.unpack(length_fmt, f"the length of {what}")
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"compressed model file is corrupt: {what} is not UTF-8") from None

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * dtype.itemsize, what), dtype=dtype).copy()

    def stream(self, count: int, what: str) -> tuple[np.ndarray, int, int]:
        """Read a stream of ``count`` ints; returns (values, coding, bytes used)."""
        start = self.pos
        coding, length = self.unpack("BI", what)
        body = self.take(length, what)
        if coding == _HUFFMAN:
            values = huffman_decode(body, max_symbols=count)
        elif coding == _FIXED:
            if length < 1 or not 1 <= body[0] <= 64:
                raise ValueError(f"{what}: bad fixed-width stream")
            width = body[0]
            if length != 1 + (count * width + 7) // 8:
                raise ValueError(f"{what}: fixed-width stream has the wrong length")
            pad = (8 - (count * width) % 8) % 8
            if pad and body[-1] & ((1 << pad) - 1):
                raise ValueError(f"{what}: fixed-width stream has nonzero padding bits")
            values = _unpack_fixed(np.frombuffer(body, np.uint8, offset=1), count, width)
        else:
            raise ValueError(f"{what}: unknown stream coding {coding}")
        if values.size != count:
            raise ValueError(f"{what}: {values.size} values where {count} are expected")
        return values.astype(np.uint64), coding, self.pos - start


# -- what to store for one tensor -----------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """What one tensor record of a compressed model file holds, and its size in bytes.

    ``nbytes`` is the whole record (header included), ``body_bytes`` its body. ``gap_bytes``,
    ``value_bytes`` and ``codebook_bytes`` split the body: the relative-index stream, the
    per-entry values (floats, or the symbol and code streams of a deployed step), and the
    step's real arrays (codebook, scales, buckets). ``encoding`` names layout and values:
    ``"raw"``, ``"sparse"``, ``"shared"``, ``"sparse+shared"``, ``"uniform"``, ... (the step's
    :attr:`~refimpl.nn.Parametrization.file_name`). ``n_entries`` counts stored entries
    (nonzeros plus ``n_fillers`` filler entries) of a sparse layout, ``n_clusters`` the codebook
    size of a shared weight; ``coding`` is ``"fixed"``, ``"huffman"`` or ``"-"`` (no stream).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str
    coding: str
    index_bits: int
    n_entries: int
    n_fillers: int
    n_clusters: int
    gap_bytes: int
    value_bytes: int
    codebook_bytes: int
    body_bytes: int
    nbytes: int

    @property
    def size(self) -> int:
        """Number of entries of the dense tensor."""
        return math.prod(self.shape)

    @property
    def bits_per_weight(self) -> float:
        """Bits of this record per dense entry (header included)."""
        return 8 * self.nbytes / max(self.size, 1)


def _value_step(layer: Layer, name: str) -> tuple[Parametrization, np.ndarray, Any] | None:
    """The chain step whose output values a file stores (the last that is not a mask), with its
    input and own arrays; None for a plain or only masked tensor."""
    chain = layer.chain(name)
    for i in range(len(chain) - 1, -1, -1):
        if not chain[i].keeps_values:
            return chain[i], layer.chain_inputs(name)[i], layer.stored_arrays(name, i)
    return None


def _codebook(w: np.ndarray, keep: np.ndarray, name: str, forced: bool) -> Deployed | None:
    """The value-based codebook of ``w[keep]`` (weight sharing found in the values)."""
    from ..quantization.kmeans import codebook_deploy

    vals = w[keep]
    codebook = np.unique(vals[vals != 0])
    if forced and codebook.size > MAX_CODEBOOK:
        raise ValueError(
            f"shared=True but {name} has {codebook.size} distinct nonzero values "
            f"(at most {MAX_CODEBOOK}); quantize it first (e.g. kmeans_quantize)"
        )
    if not forced:
        k, bits = codebook.size, 8 * w.dtype.itemsize
        if not (k <= AUTO_SHARE_MAX and bits * k + vals.size * k.bit_length() < bits * vals.size):
            return None
    indices = np.searchsorted(codebook, vals)
    indices[vals == 0] = -1
    return codebook_deploy(codebook.astype(w.dtype), indices)


def _encode(
    layer: Layer, local: str, *, weighted: bool, sparse: bool | None, shared: bool | None,
    huffman: bool, index_bits: int,
) -> tuple[bytes, dict[str, Any]]:
    """Body of the record of tensor ``local`` of ``layer`` and the figures of its TensorInfo."""
    w = layer.get_param(local) if local in layer.parametrizations or local in layer.params \
        else layer.buffers[local]
    w = np.asarray(w)
    if not np.isfinite(w).all():
        raise ValueError(f"{local} holds NaN or infinite values; cannot store it")
    dt = w.dtype.newbyteorder("<")
    info = {"encoding": "raw", "coding": "-", "index_bits": 0, "n_entries": 0, "n_fillers": 0,
            "n_clusters": 0, "gap_bytes": 0, "value_bytes": 0, "codebook_bytes": 0}
    if not (weighted or local in layer.parametrizations):
        body = struct.pack("<BB", _DENSE, _FLOATS) + w.astype(dt).tobytes()
        info["value_bytes"] = w.nbytes
        return body, info
    step = _value_step(layer, local)
    if sparse is None:  # the shorter of the two layouts, for a tensor with zeros
        dense = _encode(layer, local, weighted=weighted, sparse=False, shared=shared,
                        huffman=huffman, index_bits=index_bits)  # fmt: skip
        if np.count_nonzero(w) == w.size:
            return dense
        pruned = _encode(layer, local, weighted=weighted, sparse=True, shared=shared,
                         huffman=huffman, index_bits=index_bits)  # fmt: skip
        return pruned if len(pruned[0]) < len(dense[0]) else dense
    # layout
    csr = encode_relative_csr(w, index_bits) if sparse else None
    if csr is None:
        keep = np.ones(w.shape, dtype=bool)
        head = struct.pack("<B", _DENSE)
    else:
        keep = np.zeros(w.size, dtype=bool)
        keep[csr.positions()] = True
        keep = keep.reshape(w.shape)
        gaps = _stream(csr.gaps, huffman)
        head = struct.pack("<BBI", _SPARSE, index_bits, csr.n_entries) + gaps
        info.update(index_bits=index_bits, n_entries=csr.n_entries, n_fillers=csr.n_fillers,
                    gap_bytes=len(gaps), coding="huffman" if gaps[0] == _HUFFMAN else "fixed")
    # values
    deployed: Deployed | None = None
    kind = "shared"
    if shared is not False and step is not None:
        p, x, (params, buffers) = step
        deployed = p.deploy(x, w, params, buffers, keep)
        kind = p.file_name
        if deployed is not None:
            source: type[Parametrization] = type(p)
    if deployed is None and shared is not False and (shared or step is None):
        deployed = _codebook(w, keep, local, forced=bool(shared))
        kind = "shared"
        from ..quantization.kmeans import SharedWeights as source  # noqa: N813
    prefix = "sparse+" if csr is not None else ""
    if deployed is None:
        info["encoding"] = "sparse" if csr is not None else "raw"
        vals = w[keep].astype(dt).tobytes()
        info["value_bytes"] = len(vals)
        return head + struct.pack("<B", _FLOATS) + vals, info
    info["encoding"] = prefix + kind
    rebuilt = np.asarray(source.undeploy(deployed, w.shape, keep)).astype(w.dtype)
    target = w[keep]
    zeros = np.flatnonzero((target == 0) & (rebuilt != 0))
    rebuilt[zeros] = 0
    if not np.array_equal(rebuilt, target):
        raise RuntimeError(f"{local}: {source.__name__}.deploy does not reproduce the tensor")
    parts = [struct.pack("<B", _DEPLOYED)]
    name_b = source.__name__.encode()
    conf_b = json.dumps(deployed.config, separators=(",", ":")).encode()
    parts += [struct.pack("<B", len(name_b)), name_b, struct.pack("<H", len(conf_b)), conf_b]
    parts.append(struct.pack("<B", len(deployed.floats)))
    for key, arr in deployed.floats.items():
        arr = np.asarray(arr).ravel()
        adt = _DTYPES[0] if arr.dtype == np.float32 else _DTYPES[1]
        data = arr.astype(adt).tobytes()
        info["codebook_bytes"] += len(data)
        parts += [struct.pack("<B", len(key)), key.encode(),
                  struct.pack("<BI", _DTYPES.index(adt), arr.size), data]
    parts.append(struct.pack("<B", len(deployed.ints)))
    for key, arr in deployed.ints.items():
        arr = np.asarray(arr).ravel()
        data = _stream(arr, huffman)
        info["value_bytes"] += len(data)
        if key == "symbols" and "codebook" in deployed.floats:
            info["n_clusters"] = int(np.size(deployed.floats["codebook"]))
        if info["coding"] == "-" or data[0] == _HUFFMAN:
            info["coding"] = "huffman" if data[0] == _HUFFMAN else "fixed"
        parts += [struct.pack("<B", len(key)), key.encode(), struct.pack("<I", arr.size), data]
    parts.append(struct.pack("<I", zeros.size))
    if zeros.size:  # entries the step cannot express as zero (fillers under a binary step)
        parts.append(_stream(zeros, huffman))
    return head + b"".join(parts), info


def _record(name: str, w: np.ndarray, body: bytes) -> bytes:
    name_b = name.encode()
    if len(name_b) > 255 or w.ndim > MAX_NDIM or max(w.shape, default=0) >= 2**32:
        raise ValueError(f"{name}: name or shape too large for the format")
    dtype_id = 0 if w.dtype == np.float32 else 1
    head = struct.pack(f"<B{len(name_b)}sBB{w.ndim}II", len(name_b), name_b, dtype_id, w.ndim,
                       *w.shape, len(body))  # fmt: skip
    return head + body


def _tensor_names(layer: Layer) -> list[tuple[str, bool]]:
    """The tensors a file stores for a layer: (local name, is a weight a method acts on)."""
    params = [k for k in layer.params if "." not in k]
    params += [k for k in layer.parametrizations if k not in params]
    buffers = [k for k in layer.buffers if "." not in k]
    return [(k, layer.weighted and k == "weight") for k in params] + [(b, False) for b in buffers]


def _bits_for(layer: Layer, lname: str, index_bits: int | Mapping[str, int] | None) -> int:
    """Relative-index width of a layer: given, or 8 for a convolution and 5 otherwise (Han)."""
    has_weight = "weight" in layer.params or "weight" in layer.parametrizations
    default = 8 if has_weight and np.ndim(layer.get_param("weight")) == 4 else 5
    if isinstance(index_bits, Mapping):
        bits = index_bits.get(lname, default)
    else:
        bits = default if index_bits is None else index_bits
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"index_bits for {lname!r} must be an int in 1 .. 16, got {bits!r}")
    return int(bits)


def _check_flags(sparse: Any, shared: Any, huffman: Any) -> None:
    for flag, label in ((sparse, "sparse"), (shared, "shared")):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"{label} must be True, False or None, got {flag!r}")
    if not isinstance(huffman, bool):
        raise TypeError(f"huffman must be True or False, got {huffman!r}")


def encoded_tensor(
    layer: Layer,
    name: str = "weight",
    *,
    sparse: bool | None = None,
    shared: bool | None = None,
    huffman: bool = True,
    index_bits: int | None = None,
) -> TensorInfo:
    """How the compressed model file stores tensor ``name`` of ``layer``, and in how many bytes.

    The record is encoded exactly as :func:`save_compressed` encodes it (same options), so
    ``body_bytes`` is what the file spends on the tensor beyond its record header: the package's
    one size model (:func:`refimpl.cost.profile` reports it as a parametrized tensor's stored
    bytes).
    """
    _check_flags(sparse, shared, huffman)
    names = dict(_tensor_names(layer))
    if name not in names:
        raise ValueError(f"{type(layer).__name__} has no tensor {name!r}; it has {sorted(names)}")
    bits = _bits_for(layer, name, index_bits)
    body, info = _encode(layer, name, weighted=names[name], sparse=sparse, shared=shared,
                         huffman=huffman, index_bits=bits)  # fmt: skip
    w = np.asarray(layer.get_param(name) if name in layer.params or name in
                   layer.parametrizations else layer.buffers[name])  # fmt: skip
    nbytes = len(_record(name, w, body))
    return TensorInfo(name, tuple(w.shape), w.dtype.name, body_bytes=len(body), nbytes=nbytes,
                      **info)  # fmt: skip


def dumps_compressed(
    model: Sequential,
    *,
    sparse: bool | None = None,
    shared: bool | None = None,
    huffman: bool = True,
    index_bits: int | Mapping[str, int] | None = None,
) -> bytes:
    """The bytes :func:`save_compressed` writes (same arguments, without the path)."""
    if type(model) is not Sequential:
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    _check_flags(sparse, shared, huffman)
    arch = json.dumps({"format": _FORMAT, "model": model.describe()},
                      separators=(",", ":")).encode("utf-8")  # fmt: skip
    records = []
    for lname, layer in leaf_layers(model):
        bits = _bits_for(layer, lname, index_bits)
        for local, weighted in _tensor_names(layer):
            full = f"{lname}.{local}"
            w = np.asarray(layer.get_param(local) if local in layer.params or local in
                           layer.parametrizations else layer.buffers[local])  # fmt: skip
            if w.dtype not in (np.float32, np.float64):
                raise TypeError(f"{full} has dtype {w.dtype}; expected float32/64")
            body, _ = _encode(layer, local, weighted=weighted, sparse=sparse, shared=shared,
                              huffman=huffman, index_bits=bits)  # fmt: skip
            records.append(_record(full, w, body))
    parts = [MODEL_MAGIC, struct.pack("<HI", MODEL_VERSION, len(arch)), arch,
             struct.pack("<I", len(records)), *records]  # fmt: skip
    body = b"".join(parts)
    body += struct.pack("<Q", len(body) + 12)
    return body + struct.pack("<I", zlib.crc32(body))


def save_compressed(
    model: Sequential,
    path: str | os.PathLike[str],
    *,
    sparse: bool | None = None,
    shared: bool | None = None,
    huffman: bool = True,
    index_bits: int | Mapping[str, int] | None = None,
) -> int:
    """Write ``model`` to a compressed model file (Deep Compression's storage); return its size.

    Parameters
    ----------
    model : Sequential
        Any model whose layers describe themselves (:meth:`~refimpl.nn.Layer.config`): the
        layers of :mod:`refimpl.nn`, nested ``Sequential`` models and the layers of
        :mod:`refimpl.quantization`. Parametrized tensors are stored in their deployed form.
    path : str or path-like
        Where to write.
    sparse : bool or None
        Store weights in the sparse layout: always (True), never (False), or (None) whichever
        of the two takes fewer bytes (sparse for a pruned weight, dense for a full one).
    shared : bool or None
        Values: (None) as the tensor's chain deploys them (a codebook and symbols for a shared
        weight, codes and scales for a quantized one, ...), and for a plain weight a codebook
        when its nonzeros take at most 256 distinct values and that is smaller than floats;
        (True) a codebook of the distinct values in any case (at most 65,535), the chain's own
        deployed form if it has one; (False) floats.
    huffman : bool
        Huffman-code the integer streams (True) or pack them at a fixed width (False). With True
        a stream whose Huffman code (with its header and code table) would be longer than the
        fixed-width packing is packed instead, as happens for a layer of a few hundred weights;
        :func:`describe_compressed` reports which coding each tensor got.
    index_bits : int, dict of layer name to int, or None
        Width of a relative index, 1 .. 16; default 8 for Conv2d and 5 for Linear layers, as in
        Deep Compression.

    Returns
    -------
    nbytes : int
        Size of the file written.

    Notes
    -----
    The four stages of chapter 6 are: a dense model with ``sparse=False, shared=False,
    huffman=False``; the pruned model (a mask in each chain) with ``shared=False,
    huffman=False``; the pruned and shared model with ``huffman=False``; and the default. For a
    sparse shared layer with :math:`m` entries (fillers included), :math:`k` clusters and
    32-bit floats, the fixed-width body takes about :math:`m (b + \\lceil \\log_2 (k + 1)
    \\rceil) + 32 k` bits, as in Deep Compression's accounting; Huffman coding lowers the two
    per-entry terms to the mean codeword lengths. The format is described in the module
    docstring.

    References
    ----------
    .. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.

    See chapter 6 of the book, "The compressed model file".
    """
    data = dumps_compressed(model, sparse=sparse, shared=shared, huffman=huffman,
                            index_bits=index_bits)  # fmt: skip
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)


# -- reading ------------------------------------------------------------------------------------
def _depth(value: Any, limit: int = 32, what: str = "the architecture") -> int:
    """Nesting depth of a JSON value, refusing anything deeper than ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, d = stack.pop()
        if d > limit:
            raise ValueError(f"compressed model file: {what} nests deeper than {limit}")
        deepest = max(deepest, d)
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


@dataclass
class _Header:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    body: _Reader
    start: int
    body_start: int
    end: int


def _read_headers(r: _Reader, shapes: dict[str, tuple[int, ...]]) -> list[_Header]:
    """Every record header, checked against the architecture's shapes and the bytes present."""
    (n_tensors,) = r.unpack("I", "the tensor count")
    if n_tensors != len(shapes):
        raise ValueError(f"compressed model file: {n_tensors} tensor records where the "
                         f"architecture needs {len(shapes)}")  # fmt: skip
    expected = dict(shapes)
    out = []
    for _ in range(n_tensors):
        start = r.pos
        name = r.text("B", "a tensor name")
        dtype_id, ndim = r.unpack("BB", f"the header of {name}")
        if dtype_id >= len(_DTYPES) or ndim > MAX_NDIM:
            raise ValueError(f"{name}: unknown dtype {dtype_id} or {ndim} dimensions")
        shape = tuple(int(s) for s in r.unpack(f"{ndim}I", f"the shape of {name}"))
        if name not in expected:
            raise ValueError(f"compressed model file: tensor {name!r} is not part of the model "
                             "(or appears twice)")  # fmt: skip
        if expected.pop(name) != shape:
            raise ValueError(f"compressed model file: {name} has shape {shape}, the layer "
                             f"needs {shapes[name]}")  # fmt: skip
        (body_len,) = r.unpack("I", f"the body length of {name}")
        if r.pos + body_len > r.end:
            raise ValueError(f"compressed model file is truncated or corrupt: body of {name}")
        body = _Reader(r.data, r.pos, r.pos + body_len)
        out.append(
            _Header(name, _DTYPES[dtype_id], shape, body, start, r.pos, r.pos + body_len)
        )
        r.pos += body_len
    if r.pos != r.end:
        raise ValueError("compressed model file: unexpected bytes after the last tensor")
    return out


def _read_body(h: _Header) -> tuple[np.ndarray, TensorInfo]:
    """The dense tensor of one record (header already checked) and its TensorInfo."""
    b, name, dtype, shape = h.body, h.name, h.dtype, h.shape
    size = math.prod(shape)
    info = {"encoding": "raw", "coding": "-", "index_bits": 0, "n_entries": 0, "n_fillers": 0,
            "n_clusters": 0, "gap_bytes": 0, "value_bytes": 0, "codebook_bytes": 0}
    (layout,) = b.unpack("B", f"the layout of {name}")
    if layout == _SPARSE:
        index_bits, m = b.unpack("BI", f"the sparse header of {name}")
        if not 1 <= index_bits <= 16:
            raise ValueError(f"{name}: index_bits {index_bits} out of range 1 .. 16")
        if m > size:
            raise ValueError(f"{name}: {m} stored entries in a tensor of {size}")
        gaps, cid, gap_bytes = b.stream(m, f"the gap stream of {name}")
        if gaps.size and gaps.max() >= 1 << index_bits:
            raise ValueError(f"{name}: a gap does not fit in {index_bits} bits")
        positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
        if positions.size and positions[-1] >= size:
            raise ValueError(f"{name}: entries reach beyond the tensor's {size} entries")
        keep = np.zeros(size, dtype=bool)
        keep[positions] = True
        keep = keep.reshape(shape)
        info.update(index_bits=index_bits, n_entries=m, gap_bytes=gap_bytes,
                    coding="huffman" if cid == _HUFFMAN else "fixed")
    elif layout == _DENSE:
        m, keep, gaps = size, None, None
    else:
        raise ValueError(f"{name}: unknown layout {layout}")
    (kind,) = b.unpack("B", f"the values kind of {name}")
    if kind == _FLOATS:
        values = b.array(dtype, m, f"the values of {name}")
        info["value_bytes"] = values.nbytes
        info["encoding"] = "sparse" if layout == _SPARSE else "raw"
    elif kind == _DEPLOYED:
        step = b.text("B", f"the step name of {name}")
        cls = Parametrization.registry.get(step)
        if cls is None:
            raise ValueError(f"{name}: unknown parametrization {step!r}")
        try:
            config = json.loads(b.text("H", f"the step config of {name}"))
        except (json.JSONDecodeError, RecursionError) as exc:  # 32,000 brackets recurse
            raise ValueError(f"{name}: bad step config ({exc})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{name}: the step config is not an object")
        _depth(config, 8, f"the step config of {name}")
        floats, ints = {}, {}
        (n_floats,) = b.unpack("B", f"the float-array count of {name}")
        for _ in range(n_floats):
            key = b.text("B", f"a float-array name of {name}")
            dtype_id, count = b.unpack("BI", f"the float array {key} of {name}")
            if dtype_id >= len(_DTYPES):
                raise ValueError(f"{name}: unknown dtype {dtype_id} of {key}")
            floats[key] = b.array(_DTYPES[dtype_id], count, f"the float array {key} of {name}")
            if not np.isfinite(floats[key]).all():
                raise ValueError(f"{name}: {key} holds NaN or infinite values")
            info["codebook_bytes"] += floats[key].nbytes
        (n_ints,) = b.unpack("B", f"the int-array count of {name}")
        for _ in range(n_ints):
            key = b.text("B", f"an int-array name of {name}")
            (count,) = b.unpack("I", f"the int array {key} of {name}")
            if count > max(size, m) + 65536:
                raise ValueError(f"{name}: int array {key} declares {count} values")
            ints[key], cid, used = b.stream(count, f"the int array {key} of {name}")
            info["value_bytes"] += used
            info["coding"] = "huffman" if cid == _HUFFMAN else "fixed"
        (n_zero,) = b.unpack("I", f"the zero count of {name}")
        if n_zero > m:
            raise ValueError(f"{name}: {n_zero} forced zeros among {m} entries")
        zeros = b.stream(n_zero, f"the zero list of {name}")[0] if n_zero else np.zeros(0)
        if zeros.size and zeros.max() >= m:
            raise ValueError(f"{name}: a forced zero beyond the {m} entries")
        where = keep if keep is not None else np.ones(shape, dtype=bool)
        try:
            values = np.asarray(cls.undeploy(Deployed(config, floats, ints), shape, where))
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise ValueError(f"{name}: {step} cannot rebuild its values ({exc!r})") from None
        if values.shape != (m,):
            raise ValueError(f"{name}: {step} rebuilt {values.shape} values where {m} are needed")
        values = values.astype(dtype)
        values[zeros.astype(np.int64)] = 0
        if "symbols" in ints and "codebook" in floats:
            info["n_clusters"] = int(floats["codebook"].size)
        prefix = "sparse+" if layout == _SPARSE else ""
        info["encoding"] = prefix + cls.file_name
    else:
        raise ValueError(f"{name}: unknown values kind {kind}")
    if b.pos != b.end:
        raise ValueError(f"{name}: {b.end - b.pos} unexpected bytes at the end of its body")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if layout == _SPARSE:
        info["n_fillers"] = int(m - np.count_nonzero(values))
        dense = decode_relative_csr(RelativeCSR(shape, info["index_bits"],
                                                gaps.astype(np.uint16), values))  # fmt: skip
    else:
        dense = values.reshape(shape)
    return dense, TensorInfo(name, shape, dtype.name, body_bytes=h.end - h.body_start,
                             nbytes=h.end - h.start, **info)  # fmt: skip


def _parse(data: bytes, max_elements: int = MAX_ELEMENTS) -> tuple[Sequential, list[TensorInfo]]:
    """Check and read a whole file; returns the rebuilt model (weights loaded) and the records."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    max_elements = check_int(max_elements, "max_elements", 0)
    data = bytes(data)
    if data[:8] != MODEL_MAGIC[: len(data[:8])] or (len(data) >= 8 and data[:8] != MODEL_MAGIC):
        raise ValueError("not a compressed model file (bad magic)")
    if len(data) < len(MODEL_MAGIC) + 6 + 4 + 12:
        raise ValueError(f"compressed model file is truncated ({len(data)} bytes)")
    (file_len,) = struct.unpack_from("<Q", data, len(data) - 12)
    if file_len != len(data):
        raise ValueError(
            f"compressed model file is truncated or has trailing bytes: {len(data)} bytes, "
            f"the trailer says {file_len}"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise ValueError("compressed model file is corrupt: CRC-32 mismatch")
    r = _Reader(data, 8, len(data) - 12)
    version, arch_len = r.unpack("HI", "the version")
    if version != MODEL_VERSION:
        raise ValueError(f"compressed model file version {version}; this reader reads "
                         f"{MODEL_VERSION}")  # fmt: skip
    if arch_len > MAX_ARCH_BYTES:
        raise ValueError(f"compressed model file: a {arch_len}-byte architecture (at most "
                         f"{MAX_ARCH_BYTES})")  # fmt: skip
    try:
        arch = json.loads(r.take(arch_len, "the architecture").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"compressed model file: bad architecture JSON ({exc})") from None
    _depth(arch)
    if not isinstance(arch, dict) or arch.get("format") != _FORMAT:
        raise ValueError("compressed model file: the architecture is not a refimpl model")
    description = arch.get("model")
    if not isinstance(description, dict) or description.get("type") != "Sequential":
        raise ValueError("compressed model file: the model is not a Sequential")
    shapes = Layer.tensor_shapes(description)
    total = sum(math.prod(s) for s in shapes.values())  # exact: never wraps
    if total > max_elements:
        raise ValueError(f"compressed model file: the model has {total:,} entries, more than "
                         f"max_elements={max_elements:,}")  # fmt: skip
    headers = _read_headers(r, shapes)
    tensors = {}
    infos = []
    for h in headers:
        dense, info = _read_body(h)
        tensors[h.name] = dense
        infos.append(info)
    model = Layer.build(description)
    for lname, layer in leaf_layers(model):
        for local, _ in _tensor_names(layer):
            store = layer.params if local in layer.params else layer.buffers
            store[local] = tensors[f"{lname}.{local}"]
    model.check_finite("compressed model file")
    return model, infos


def loads_compressed(
    data: bytes | bytearray | memoryview, *, max_elements: int = MAX_ELEMENTS
) -> Sequential:
    """The model held by the bytes of a compressed model file (see :func:`load_compressed`)."""
    return _parse(data, max_elements)[0]


def load_compressed(
    path: str | os.PathLike[str], *, max_elements: int = MAX_ELEMENTS
) -> Sequential:
    """Rebuild the model stored by :func:`save_compressed`, architecture and weights.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_compressed`.
    max_elements : int
        The largest model (total entries of its tensors) to accept; a file describing a larger
        one is refused before anything is allocated.

    Returns
    -------
    model : Sequential
        A plain model (no parametrizations) whose tensors equal, bit for bit, the effective
        tensors of the saved model; its predictions are therefore the same.

    Raises
    ------
    ValueError
        If the file is truncated, has trailing bytes, fails its CRC-32, has another magic or
        version, describes too large a model, or any field is inconsistent; the message names
        the file.

    See chapter 6 of the book, "The compressed model file".
    """
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return loads_compressed(data, max_elements=max_elements)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r}: {exc}") from None


def describe_compressed(source: str | os.PathLike[str] | bytes) -> list[TensorInfo]:
    """Per-tensor contents and byte counts of a compressed model file (path or bytes).

    Returns one :class:`TensorInfo` per tensor record, in file order; their ``nbytes`` plus the
    file header (magic, version, architecture JSON, counts, trailer) add up to the file size.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as fh:
            data = fh.read()
    return _parse(data)[1]
