r"""The compressed model file: pruned, shared and Huffman-coded layers, plus the architecture.

:func:`save_compressed` writes a :class:`~refimpl.nn.Sequential` to one self-contained file and
:func:`load_compressed` rebuilds the model from it, without being given the model: the file
describes the architecture (layer types and constructor arguments, as JSON) and holds every
tensor the model computes with. The rebuilt model's weights are bit for bit the compressed
model's effective weights (a mask or a codebook already applied), so its predictions are equal.
See chapter 6 of the book, "The compressed model file".

Each weight of a :class:`~refimpl.nn.Linear` or :class:`~refimpl.nn.Conv2d` layer is stored in
one of four encodings, the stages of Deep Compression [1]_:

============  =====================================================================
encoding      what is stored
============  =====================================================================
raw           every value, as float32 (or float64)
sparse        relative-index entries (:mod:`refimpl.coding.sparse`): a gap stream
              and one float value per entry (filler zeros included)
shared        a codebook of ``k`` floats and one symbol per weight
sparse+shared a gap stream, a codebook and one symbol per entry
============  =====================================================================

A *symbol* ``s`` in ``0 .. k-1`` stands for ``codebook[s]``, and ``s = k`` for an exact zero (a
filler, or a pruned weight in the dense layout): Deep Compression does not say which index a
filler zero gets, so we give zero its own symbol. Gap and symbol streams are either packed at a
fixed width (the "after sharing" stage) or Huffman-coded (:func:`~refimpl.coding.huffman_encode`,
the last stage). Biases, batch-normalization parameters and buffers are stored raw.

File format (version 1)
-----------------------
Integers little-endian. ``u8``/``u16``/``u32``/``u64``: unsigned integers of 1, 2, 4, 8 bytes.

==============  ============  ==================================================================
field           type          meaning
==============  ============  ==================================================================
magic           8 bytes       ``b"\x89RDC\r\n\x1a\n"`` (``\r\n`` and ``\x1a`` catch text-mode
                              mangling, as in PNG)
version         u16           1
arch_len        u32           length of the architecture JSON
architecture    arch_len      UTF-8 JSON: ``{"format": "refimpl-compressed-model", "model":
                              {"type": "Sequential", "layers": [{"name": "fc1", "type":
                              "Linear", "in_features": 784, ...}, ...]}}``
n_tensors       u32           number of tensor records
records         ...           ``n_tensors`` tensor records (below)
file_len        u64           length of the whole file, trailer included
crc32           u32           CRC-32 (zlib) of every preceding byte
==============  ============  ==================================================================

A tensor record (the per-tensor header, then its body):

==============  ============  ==================================================================
field           type          meaning
==============  ============  ==================================================================
name_len        u8            length of the name
name            name_len      UTF-8 dotted name, ``"fc1.weight"``, ``"bn1.running_mean"``
encoding        u8            0 raw, 1 sparse, 2 shared, 3 sparse+shared
dtype           u8            0 float32, 1 float64
ndim            u8            number of dimensions
shape           ndim x u32    the dense shape
body_len        u32           length of the body that follows
body (raw)                    the values, C order
body (sparse)                 u8 index_bits, u32 entries ``m``, gap stream (``m`` symbols),
                              ``m`` values
body (shared)                 u16 ``k``, ``k`` codebook values, symbol stream (one per weight)
body (sp.+sh.)                u8 index_bits, u32 ``m``, u16 ``k``, ``k`` codebook values, gap
                              stream (``m``), symbol stream (``m``)
==============  ============  ==================================================================

A stream of ``c`` non-negative integers is ``u8`` coding (0 fixed width, 1 Huffman), ``u32``
length ``L``, then ``L`` bytes: for fixed width, a ``u8`` width ``w`` and ``ceil(c w / 8)``
bytes of big-endian packed bits; for Huffman, a :func:`~refimpl.coding.huffman_encode` stream
(which has its own header and CRC-32).

Reading checks the length and the CRC-32 first, then every field (magic, version, known layer
types, names, shapes, ranges, exact lengths), and raises ``ValueError`` naming the problem:
a truncated or altered file never loads as a model. No pickle is involved anywhere.

References
----------
.. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
   Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from ..nn.layers import Layer
from .huffman import _pack_fixed, _unpack_fixed, huffman_decode, huffman_encode
from .sparse import RelativeCSR, decode_relative_csr, encode_relative_csr

__all__ = [
    "MODEL_MAGIC",
    "MODEL_VERSION",
    "TensorInfo",
    "describe_compressed",
    "dumps_compressed",
    "load_compressed",
    "loads_compressed",
    "save_compressed",
]

MODEL_MAGIC = b"\x89RDC\r\n\x1a\n"
MODEL_VERSION = 1
_FORMAT = "refimpl-compressed-model"
_ENCODINGS = ("raw", "sparse", "shared", "sparse+shared")
_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))
#: Auto mode shares a weight only if its nonzeros take at most this many distinct values.
AUTO_SHARE_MAX = 256
MAX_CODEBOOK = 65535
_FIXED, _HUFFMAN = 0, 1

# -- architecture -------------------------------------------------------------------------------
_SIMPLE = {"ReLU": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid, "Flatten": Flatten}


def _describe(layer: Layer, path: str) -> dict[str, Any]:
    """JSON description (type and constructor arguments) of one layer."""
    kind = type(layer)
    if kind is Sequential:
        return {
            "type": "Sequential",
            "layers": [
                {"name": n, **_describe(sub, f"{path}{n}.")} for n, sub in layer.named_layers()
            ],
        }
    if kind is Linear:
        return {"type": "Linear", "in_features": layer.in_features,
                "out_features": layer.out_features, "bias": layer.bias is not None}
    if kind is Conv2d:
        return {"type": "Conv2d", "in_channels": layer.in_channels,
                "out_channels": layer.out_channels, "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": list(layer.padding),
                "groups": layer.groups, "bias": layer.bias is not None}
    if kind in (MaxPool2d, AvgPool2d):
        return {"type": kind.__name__, "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": list(layer.padding)}
    if kind in (BatchNorm1d, BatchNorm2d):
        return {"type": kind.__name__, "num_features": layer.num_features, "eps": layer.eps,
                "momentum": layer.momentum}
    if kind is Dropout:
        return {"type": "Dropout", "p": layer.p}
    if kind.__name__ in _SIMPLE and _SIMPLE[kind.__name__] is kind:
        return {"type": kind.__name__}
    raise TypeError(
        f"save_compressed cannot describe layer {path.rstrip('.')!r} of type {kind.__name__}; "
        f"supported: Sequential, Linear, Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d, "
        f"BatchNorm2d, Dropout, {', '.join(_SIMPLE)}"
    )


def _pair_arg(spec: Mapping[str, Any], key: str) -> tuple[int, int]:
    v = spec[key]
    if not (isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)):
        raise ValueError(f"{key} must be a pair of ints, got {v!r}")
    return (v[0], v[1])


def _build(spec: Any, path: str = "") -> Layer:
    """Rebuild a layer from its JSON description (checked field by field)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"layer {path or '<model>'!r}: description is not an object with a type")
    kind = spec["type"]
    fields = {k: v for k, v in spec.items() if k not in ("type", "name")}
    try:
        if kind == "Sequential":
            layers = fields.pop("layers")
            if not isinstance(layers, list):
                raise ValueError("layers must be a list")
            items = []
            for sub in layers:
                name = sub.get("name") if isinstance(sub, dict) else None
                if not isinstance(name, str):
                    raise ValueError("every layer needs a name")
                items.append((name, _build(sub, f"{path}{name}.")))
            layer: Layer = Sequential(*items)
        elif kind == "Linear":
            layer = Linear(fields.pop("in_features"), fields.pop("out_features"),
                           bias=bool(fields.pop("bias")), rng=0)
        elif kind == "Conv2d":
            layer = Conv2d(fields.pop("in_channels"), fields.pop("out_channels"),
                           _pair_arg(fields, "kernel_size"), stride=_pair_arg(fields, "stride"),
                           padding=_pair_arg(fields, "padding"), groups=fields.pop("groups"),
                           bias=bool(fields.pop("bias")), rng=0)
            for key in ("kernel_size", "stride", "padding"):
                fields.pop(key)
        elif kind in ("MaxPool2d", "AvgPool2d"):
            cls = MaxPool2d if kind == "MaxPool2d" else AvgPool2d
            layer = cls(_pair_arg(fields, "kernel_size"), _pair_arg(fields, "stride"),
                        _pair_arg(fields, "padding"))
            for key in ("kernel_size", "stride", "padding"):
                fields.pop(key)
        elif kind in ("BatchNorm1d", "BatchNorm2d"):
            cls = BatchNorm1d if kind == "BatchNorm1d" else BatchNorm2d
            layer = cls(fields.pop("num_features"), eps=float(fields.pop("eps")),
                        momentum=float(fields.pop("momentum")))
        elif kind == "Dropout":
            layer = Dropout(float(fields.pop("p")))
        elif kind in _SIMPLE:
            layer = _SIMPLE[kind]()
        else:
            raise ValueError(f"unknown layer type {kind!r}")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"layer {path.rstrip('.') or '<model>'!r}: bad description ({exc})") \
            from None
    if fields:
        raise ValueError(f"layer {path.rstrip('.')!r}: unexpected fields {sorted(fields)}")
    return layer


def _leaf_layers(model: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    for name, layer in model.named_layers():
        if type(layer) is Sequential:
            yield from _leaf_layers(layer, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", layer


def _tensor_names(layer: Layer) -> tuple[list[str], list[str]]:
    """Effective parameter names (parametrized ones included) and plain buffer names."""
    params = [k for k in layer.params if "." not in k]
    params += [k for k in layer.parametrizations if k not in params]
    buffers = [k for k in layer.buffers if "." not in k]
    return params, buffers


# -- low-level writing and reading ----------------------------------------------------------------
def _stream(values: np.ndarray, huffman: bool) -> bytes:
    """A stream of non-negative ints: packed at a fixed width, or Huffman-coded if asked for
    and smaller (a short stream can cost more in code table than Huffman saves)."""
    width = max(1, int(values.max()).bit_length()) if values.size else 1
    body = bytes([width]) + _pack_fixed(values.astype(np.uint64), width)
    coding = _FIXED
    if huffman:
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

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * dtype.itemsize, what), dtype=dtype).copy()

    def stream(self, count: int, what: str) -> tuple[np.ndarray, int, int]:
        """Read a stream of ``count`` ints; returns (values, coding, bytes used)."""
        start = self.pos
        coding, length = self.unpack("BI", what)
        body = self.take(length, what)
        if coding == _HUFFMAN:
            values = huffman_decode(body)
        elif coding == _FIXED:
            if length < 1 or not 1 <= body[0] <= 64:
                raise ValueError(f"{what}: bad fixed-width stream")
            width = body[0]
            if length != 1 + (count * width + 7) // 8:
                raise ValueError(f"{what}: fixed-width stream has the wrong length")
            values = _unpack_fixed(np.frombuffer(body, np.uint8, offset=1), count, width)
        else:
            raise ValueError(f"{what}: unknown stream coding {coding}")
        if values.size != count:
            raise ValueError(f"{what}: {values.size} values where {count} are expected")
        return values.astype(np.uint64), coding, self.pos - start


# -- the tensors ---------------------------------------------------------------------------------
def _encode_weight(
    w: np.ndarray, name: str, sparse: bool | None, shared: bool | None, huffman: bool,
    index_bits: int,
) -> tuple[int, bytes]:
    """Encoding id and body of one Linear/Conv2d weight."""
    if not np.isfinite(w).all():
        raise ValueError(f"{name} holds NaN or infinite values; cannot compress it")
    nonzero = w[w != 0]
    codebook = np.unique(nonzero)
    float_bits = 8 * w.dtype.itemsize
    if shared is None:  # share when a codebook plus short symbols beat the floats
        k = int(codebook.size)
        use_shared = k <= AUTO_SHARE_MAX and (
            float_bits * k + nonzero.size * k.bit_length() < float_bits * nonzero.size
        )
    else:
        use_shared = bool(shared)
        if use_shared and codebook.size > MAX_CODEBOOK:
            raise ValueError(
                f"shared=True but {name} has {codebook.size} distinct nonzero values "
                f"(at most {MAX_CODEBOOK}); quantize it first (e.g. kmeans_quantize)"
            )
    k = int(codebook.size)
    value_bits = max(1, k.bit_length()) if use_shared else float_bits
    csr: RelativeCSR | None = None
    if sparse is None or sparse:
        csr = encode_relative_csr(w, index_bits)
        if sparse is None and csr.n_entries * (index_bits + value_bits) >= w.size * value_bits:
            csr = None
    itemsize_dt = w.dtype.newbyteorder("<")
    if csr is None and not use_shared:
        return 0, w.astype(itemsize_dt).tobytes()
    if csr is not None and not use_shared:
        head = struct.pack("<BI", index_bits, csr.n_entries)
        return 1, head + _stream(csr.gaps, huffman) + csr.values.astype(itemsize_dt).tobytes()
    cb = codebook.astype(itemsize_dt).tobytes()
    values = w.ravel() if csr is None else csr.values
    symbols = np.searchsorted(codebook, values)  # index of the value in the codebook
    symbols[values == 0] = k  # exact zero: its own symbol
    if csr is None:
        return 2, struct.pack("<H", k) + cb + _stream(symbols, huffman)
    head = struct.pack("<BIH", index_bits, csr.n_entries, k)
    return 3, head + cb + _stream(csr.gaps, huffman) + _stream(symbols, huffman)


@dataclass(frozen=True)
class TensorInfo:
    """What one tensor record of a compressed model file holds, and its size in bytes.

    ``nbytes`` is the whole record (header included); ``gap_bytes``, ``value_bytes`` and
    ``codebook_bytes`` split its body: the relative-index stream, the values (floats for raw
    and sparse, the symbol stream for shared), and the codebook. ``n_entries`` counts stored
    entries (nonzeros plus ``n_fillers`` filler zeros) for the sparse encodings, ``n_clusters``
    the codebook size; ``coding`` is ``"fixed"``, ``"huffman"`` or ``"-"`` (no integer stream).
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
    nbytes: int

    @property
    def size(self) -> int:
        """Number of entries of the dense tensor."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def bits_per_weight(self) -> float:
        """Bits of this record per dense entry (header included)."""
        return 8 * self.nbytes / max(self.size, 1)


def _read_tensor(
    r: _Reader, expected: dict[str, tuple[int, ...]]
) -> tuple[str, np.ndarray, TensorInfo]:
    start = r.pos
    (name_len,) = r.unpack("B", "a tensor name length")
    try:
        name = r.take(name_len, "a tensor name").decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("compressed model file is corrupt: a tensor name is not UTF-8") from None
    encoding, dtype_id, ndim = r.unpack("BBB", f"the header of {name}")
    if encoding >= len(_ENCODINGS) or dtype_id >= len(_DTYPES):
        raise ValueError(f"{name}: unknown encoding {encoding} or dtype {dtype_id}")
    shape = tuple(int(s) for s in r.unpack(f"{ndim}I", f"the shape of {name}"))
    if name not in expected:
        raise ValueError(f"compressed model file: tensor {name!r} is not part of the model "
                         "(or appears twice)")
    if expected.pop(name) != shape:
        raise ValueError(f"compressed model file: {name} has shape {shape}, the layer needs "
                         "another")
    size = int(np.prod(shape, dtype=np.int64))
    dtype = _DTYPES[dtype_id]
    (body_len,) = r.unpack("I", f"the body length of {name}")
    body = _Reader(r.data, r.pos, r.pos + body_len)
    if body.end > r.end:
        raise ValueError(f"compressed model file is truncated or corrupt: body of {name}")
    index_bits = n_entries = k = 0
    gap_bytes = cb_bytes = 0
    coding = "-"
    kind = _ENCODINGS[encoding]
    if kind == "raw":
        values = body.array(dtype, size, f"the values of {name}")
        dense = values.reshape(shape)
        value_bytes = values.nbytes
    else:
        if kind in ("sparse", "sparse+shared"):
            index_bits, n_entries = body.unpack("BI", f"the sparse header of {name}")
            if not 1 <= index_bits <= 16:
                raise ValueError(f"{name}: index_bits {index_bits} out of range 1 .. 16")
        if kind in ("shared", "sparse+shared"):
            (k,) = body.unpack("H", f"the codebook size of {name}")
            codebook = body.array(dtype, k, f"the codebook of {name}")
            cb_bytes = k * dtype.itemsize
        if kind in ("sparse", "sparse+shared"):
            gaps, cid, gap_bytes = body.stream(n_entries, f"the gap stream of {name}")
            coding = "huffman" if cid == _HUFFMAN else "fixed"
        if kind == "sparse":
            values = body.array(dtype, n_entries, f"the values of {name}")
            value_bytes = values.nbytes
        else:
            count = n_entries if kind == "sparse+shared" else size
            symbols, cid, value_bytes = body.stream(count, f"the symbol stream of {name}")
            coding = "huffman" if cid == _HUFFMAN else "fixed"
            if symbols.size and symbols.max() > k:
                raise ValueError(f"{name}: a symbol exceeds the codebook size {k}")
            values = np.append(codebook, np.zeros(1, dtype))[symbols]
        if kind == "shared":
            dense = values.reshape(shape)
        else:
            if gaps.size and gaps.max() >= 1 << index_bits:
                raise ValueError(f"{name}: a gap does not fit in {index_bits} bits")
            csr = RelativeCSR(shape, index_bits, gaps.astype(np.uint16), values)
            dense = decode_relative_csr(csr)
    if body.pos != body.end:
        raise ValueError(f"{name}: {body.end - body.pos} unexpected bytes at the end of its body")
    r.pos = body.end
    n_fillers = int(n_entries - np.count_nonzero(values)) if "sparse" in kind else 0
    info = TensorInfo(name, shape, dtype.name, kind, coding, index_bits, n_entries, n_fillers,
                      k, gap_bytes, value_bytes, cb_bytes, r.pos - start)
    return name, dense, info


# -- public API -----------------------------------------------------------------------------------
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
    for flag, label in ((sparse, "sparse"), (shared, "shared")):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"{label} must be True, False or None, got {flag!r}")
    if not isinstance(huffman, bool):
        raise TypeError(f"huffman must be True or False, got {huffman!r}")
    arch = json.dumps({"format": _FORMAT, "model": _describe(model, "")},
                      separators=(",", ":")).encode("utf-8")
    records = []
    for lname, layer in _leaf_layers(model):
        if isinstance(index_bits, Mapping):
            bits = index_bits.get(lname, 8 if isinstance(layer, Conv2d) else 5)
        elif index_bits is None:
            bits = 8 if isinstance(layer, Conv2d) else 5
        else:
            bits = index_bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
            raise ValueError(f"index_bits for {lname!r} must be an int in 1 .. 16, got {bits!r}")
        params, buffers = _tensor_names(layer)
        tensors = [(p, layer.get_param(p)) for p in params] + [(b, layer.buffers[b])
                                                                 for b in buffers]
        for local, value in tensors:
            name = f"{lname}.{local}".encode()
            arr = np.asarray(value)
            if arr.dtype not in (np.float32, np.float64):
                raise TypeError(f"{lname}.{local} has dtype {arr.dtype}; expected float32/64")
            if len(name) > 255 or arr.ndim > 255 or max(arr.shape, default=0) >= 2**32:
                raise ValueError(f"{lname}.{local}: name or shape too large for the format")
            if local == "weight" and type(layer) in (Linear, Conv2d):
                enc, body = _encode_weight(arr, f"{lname}.{local}", sparse, shared, huffman,
                                           int(bits))
            else:
                enc, body = 0, arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            dtype_id = 0 if arr.dtype == np.float32 else 1
            head = struct.pack(f"<B{len(name)}sBBB{arr.ndim}II", len(name), name, enc, dtype_id,
                               arr.ndim, *arr.shape, len(body))
            records.append(head + body)
    parts = [MODEL_MAGIC, struct.pack("<HI", MODEL_VERSION, len(arch)), arch,
             struct.pack("<I", len(records)), *records]
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
        Made of Linear, Conv2d, pooling, activation, Flatten, Dropout, BatchNorm and nested
        Sequential layers. Parametrized weights (a pruning mask, shared weights) are stored as
        the weight the layer computes with.
    path : str or path-like
        Where to write.
    sparse : bool or None
        Store Linear/Conv2d weights as relative-index sparse entries: always (True), never
        (False), or when that takes fewer bits than dense storage (None).
    shared : bool or None
        Store those weights as a codebook plus one symbol per entry: always (True; at most
        65,535 distinct nonzero values), never (False), or when the nonzeros take at most 256
        distinct values and the codebook plus symbols is smaller than the floats, i.e. the
        layer was quantized (None).
    huffman : bool
        Huffman-code the gap and symbol streams (True) or pack them at a fixed width (False).
        With True a stream whose Huffman code (with its header and code table) would be longer
        than the fixed-width packing is packed instead, as happens for a layer of a few hundred
        weights; :func:`describe_compressed` reports which coding each tensor got.
    index_bits : int, dict of layer name to int, or None
        Width of a relative index, 1 .. 16; default 8 for Conv2d and 5 for Linear layers, as in
        Deep Compression.

    Returns
    -------
    nbytes : int
        Size of the file written.

    Notes
    -----
    The four stages of the chapter are ``sparse=False, shared=False, huffman=False`` (dense
    float32), ``sparse=True, shared=False, huffman=False`` (pruned, CSR with relative indices),
    ``sparse=True, shared=True, huffman=False`` (plus weight sharing) and the default with
    ``huffman=True``. For a sparse shared layer with :math:`m` entries (fillers included),
    :math:`k` clusters and 32-bit floats, the fixed-width body takes about
    :math:`m (b + \\lceil \\log_2 (k + 1) \\rceil) + 32 k` bits, as in Deep Compression's
    accounting; Huffman coding lowers the two per-entry terms to the mean codeword lengths.
    The format is described in the module docstring.

    References
    ----------
    .. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.

    See chapter 6 of the book, "The compressed model file".
    """
    data = dumps_compressed(model, sparse=sparse, shared=shared, huffman=huffman,
                            index_bits=index_bits)
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)


def _expected(model: Sequential) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], str]]:
    """Every tensor the model needs: dotted name -> (current value, its store, local key)."""
    out = {}
    for lname, layer in _leaf_layers(model):
        params, buffers = _tensor_names(layer)
        out.update({f"{lname}.{p}": (layer.params[p], layer.params, p) for p in params})
        out.update({f"{lname}.{b}": (layer.buffers[b], layer.buffers, b) for b in buffers})
    return out


def _parse(data: bytes) -> tuple[Sequential, list[TensorInfo]]:
    """Check and read a whole file; returns the rebuilt model (weights loaded) and the records."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
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
                         f"{MODEL_VERSION}")
    try:
        arch = json.loads(r.take(arch_len, "the architecture").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"compressed model file: bad architecture JSON ({exc})") from None
    if not isinstance(arch, dict) or arch.get("format") != _FORMAT:
        raise ValueError("compressed model file: the architecture is not a refimpl model")
    model = _build(arch.get("model"))
    if type(model) is not Sequential:
        raise ValueError("compressed model file: the model is not a Sequential")
    needed = _expected(model)
    shapes = {name: v[0].shape for name, v in needed.items()}
    (n_tensors,) = r.unpack("I", "the tensor count")
    infos = []
    for _ in range(n_tensors):
        name, dense, info = _read_tensor(r, shapes)
        _, store, key = needed[name]
        store[key] = dense
        infos.append(info)
    if shapes:
        raise ValueError(f"compressed model file: tensors missing: {sorted(shapes)}")
    if r.pos != r.end:
        raise ValueError("compressed model file: unexpected bytes after the last tensor")
    return model, infos


def loads_compressed(data: bytes | bytearray | memoryview) -> Sequential:
    """The model held by the bytes of a compressed model file (see :func:`load_compressed`)."""
    return _parse(data)[0]


def load_compressed(path: str | os.PathLike[str]) -> Sequential:
    """Rebuild the model stored by :func:`save_compressed`, architecture and weights.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_compressed`.

    Returns
    -------
    model : Sequential
        A plain model (no parametrizations) whose tensors equal, bit for bit, the effective
        tensors of the saved model; its predictions are therefore the same.

    Raises
    ------
    ValueError
        If the file is truncated, has trailing bytes, fails its CRC-32, has another magic or
        version, or any field is inconsistent.

    See chapter 6 of the book, "The compressed model file".
    """
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return loads_compressed(data)
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
