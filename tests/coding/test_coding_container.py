"""The compressed model file: exact reload without the model, four storage stages, damage."""

from __future__ import annotations

import json
import re
import struct
import zlib

import numpy as np
import pytest

from refimpl.coding import (
    MODEL_MAGIC,
    describe_compressed,
    dumps_compressed,
    encode_relative_csr,
    load_compressed,
    loads_compressed,
    save_compressed,
)
from refimpl.models import digits_cnn, digits_mlp
from refimpl.nn import (
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
from refimpl.nn.layers import Layer
from refimpl.pruning import prune_model
from refimpl.quantization import SharedWeights

STAGES = {
    "dense": dict(sparse=False, shared=False, huffman=False),
    "pruned": dict(sparse=True, shared=False, huffman=False),
    "shared": dict(sparse=True, shared=True, huffman=False),
    "huffman": dict(sparse=True, shared=True, huffman=True),
}


def _compress(model: Sequential, sparsity: float = 0.8, bits: int = 4) -> Sequential:
    """Magnitude-prune and k-means-share every Linear/Conv2d weight (no training)."""
    prune_model(model, sparsity)
    for _, layer in model.named_layers():
        if isinstance(layer, (Linear, Conv2d)):
            layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 2**bits))
    return model


def _inputs(shape: tuple[int, ...], n: int = 32) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("make", [digits_mlp, digits_cnn])
def test_reload_gives_bit_exact_logits(make, stage, tmp_path):
    model = _compress(make(rng=1))
    path = tmp_path / "m.rdc"
    nbytes = save_compressed(model, path, **STAGES[stage])
    assert path.stat().st_size == nbytes
    loaded = load_compressed(path)  # rebuilt from the file alone
    assert loaded.names() == model.names()
    assert not any(layer.parametrizations for layer in loaded)
    for name, layer in model.named_layers():
        for key in ("weight", "bias"):
            if key in layer.params or key in layer.parametrizations:
                a, b = layer.get_param(key), loaded[name].get_param(key)
                assert a.dtype == b.dtype and np.array_equal(a, b)
    x = _inputs((1, 8, 8))
    assert np.array_equal(model(x), loaded(x))


def test_stages_shrink_the_file():
    model = _compress(Sequential(("fc", Linear(400, 300, rng=2))), sparsity=0.9, bits=4)
    sizes = [len(dumps_compressed(model, **kw)) for kw in STAGES.values()]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert 4 * (400 * 300 + 300) < sizes[0] < 4 * (400 * 300 + 300) + 300  # floats + header
    # on a tiny model Huffman's code tables would cost more than they save: never larger
    small = _compress(digits_mlp(rng=2), sparsity=0.9, bits=3)
    s_fixed, s_huff = (len(dumps_compressed(small, **STAGES[k])) for k in ("shared", "huffman"))
    assert s_huff <= s_fixed


def test_fixed_width_accounting_is_exact():
    model = _compress(digits_mlp(rng=3), sparsity=0.85, bits=3)
    data = dumps_compressed(model, index_bits=3, **STAGES["shared"])
    for info in describe_compressed(data):
        if not info.name.endswith("weight"):
            assert info.encoding == "raw" and info.coding == "-"
            continue
        w = model[info.name.split(".")[0]].weight
        csr = encode_relative_csr(w, 3)
        assert info.encoding == "sparse+shared" and info.coding == "fixed"
        assert (info.n_entries, info.n_fillers) == (csr.n_entries, csr.n_fillers)
        k = np.unique(w[w != 0]).size
        sym_width = k.bit_length()  # symbols 0..k, k meaning zero
        assert info.n_clusters == k
        assert info.gap_bytes == 5 + 1 + -(-csr.n_entries * 3 // 8)
        assert info.value_bytes == 5 + 1 + -(-csr.n_entries * sym_width // 8)
        assert info.codebook_bytes == 4 * k
    # the records plus header and trailer are the whole file
    arch_len = struct.unpack_from("<I", data, 10)[0]
    header = 8 + 2 + 4 + arch_len + 4 + 12
    assert header + sum(i.nbytes for i in describe_compressed(data)) == len(data)


def test_auto_mode_picks_the_encoding():
    model = Sequential(("fc1", Linear(300, 200, rng=4)), ("fc2", Linear(200, 100, rng=5)))
    assert {i.encoding for i in describe_compressed(dumps_compressed(model))} == {"raw"}
    prune_model(model, 0.9)
    infos = describe_compressed(dumps_compressed(model))
    assert {i.encoding for i in infos if i.name.endswith("weight")} == {"sparse"}
    _compress(model, 0.9, 3)
    infos = describe_compressed(dumps_compressed(model))
    assert {(i.encoding, i.coding) for i in infos if i.name.endswith("weight")} == {
        ("sparse+shared", "huffman")
    }
    dense_shared = describe_compressed(dumps_compressed(model, sparse=False))
    assert {i.encoding for i in dense_shared if i.name.endswith("weight")} == {"shared"}


def _zoo() -> Sequential:
    """Every layer type the file supports, with non-default arguments."""
    inner = Sequential(("fc", Linear(16, 12, rng=5)), ("act", Sigmoid()))
    model = Sequential(
        ("conv1", Conv2d(2, 4, (3, 2), stride=(1, 2), padding=(1, 0), rng=1)),
        ("bn1", BatchNorm2d(4, eps=1e-3, momentum=0.2)),
        ("tanh", Tanh()),
        ("dw", Conv2d(4, 4, 3, padding=1, groups=4, bias=False, rng=2)),
        ("pool", MaxPool2d(2)),
        ("avg", AvgPool2d((1, 2), stride=(1, 1))),
        ("flat", Flatten()),
        ("drop", Dropout(0.3, rng=0)),
        ("fc1", Linear(12, 16, bias=False, rng=3)),
        ("bn2", BatchNorm1d(16)),
        ("relu", ReLU()),
        ("block", inner),
        ("out", Linear(12, 3, rng=4)),
    )
    rng = np.random.default_rng(6)
    for layer in (model["bn1"], model["bn2"]):
        layer.buffers["running_mean"] = rng.normal(size=layer.num_features).astype(np.float32)
        layer.buffers["running_var"] = rng.uniform(0.5, 2, layer.num_features).astype(np.float32)
    return model


def test_every_layer_type_round_trips():
    model = _zoo()
    prune_model(model, 0.5, layers=["conv1", "fc1", "out"])
    layer = model["fc1"]
    layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 4))
    data = dumps_compressed(model, index_bits={"conv1": 3, "fc1": 2})
    loaded = loads_compressed(data)
    assert repr(loaded) == re.sub(r" \[weight: [^\]]*\]", "", repr(model))  # plain weights
    x = _inputs((2, 6, 8), n=5)
    assert np.array_equal(model(x), loaded(x))
    arch = json.loads(data[14 : 14 + struct.unpack_from("<I", data, 10)[0]])
    assert arch["model"]["layers"][0] == {
        "name": "conv1", "type": "Conv2d", "in_channels": 2, "out_channels": 4,
        "kernel_size": [3, 2], "stride": [1, 2], "padding": [1, 0], "groups": 1, "bias": True,
    }
    model64 = _zoo().astype(np.float64)
    back = loads_compressed(dumps_compressed(model64))
    assert back["out"].weight.dtype == np.float64
    assert np.array_equal(model64(x.astype(np.float64)), back(x.astype(np.float64)))


def test_truncation_anywhere_raises():
    data = dumps_compressed(_compress(digits_cnn(rng=7)))
    for cut in sorted(set(np.linspace(0, len(data) - 1, 300).astype(int))):
        with pytest.raises(ValueError):
            loads_compressed(data[:cut])
    with pytest.raises(ValueError, match="trailing"):
        loads_compressed(data + b"\0")


def test_altered_bytes_raise(tmp_path):
    data = dumps_compressed(_compress(digits_cnn(rng=8)))
    for i in sorted(set(np.linspace(0, len(data) - 1, 300).astype(int))):
        bad = bytearray(data)
        bad[i] ^= 0x24
        with pytest.raises(ValueError):
            loads_compressed(bytes(bad))
    path = tmp_path / "bad.rdc"
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="bad.rdc"):
        load_compressed(path)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_semantic_checks_behind_a_valid_crc():
    data = dumps_compressed(_compress(digits_mlp(rng=9)))
    body = data[:-4]
    with pytest.raises(ValueError, match="version"):
        loads_compressed(_recrc(body[:8] + b"\x07\x00" + body[10:]))
    arch_len = struct.unpack_from("<I", data, 10)[0]
    arch = body[14 : 14 + arch_len]
    other = arch.replace(b'"out_features":64', b'"out_features":65')
    assert other != arch
    with pytest.raises(ValueError, match="shape"):
        loads_compressed(_recrc(body[:14] + other + body[14 + arch_len :]))
    alien = arch.replace(b'"ReLU"', b'"GELU"')
    with pytest.raises(ValueError, match="GELU"):
        loads_compressed(_recrc(body[:14] + alien + body[14 + arch_len :]))
    with pytest.raises(ValueError, match="magic"):
        loads_compressed(b"PK\x03\x04" + data[4:])


class _Custom(Layer):
    def __init__(self, scale):  # an argument, and no config(): the file cannot describe it
        super().__init__()
        self.scale = scale

    def forward(self, x, train=False):
        return self.scale * x


def test_bad_arguments():
    model = digits_mlp()
    with pytest.raises(TypeError, match="Sequential"):
        dumps_compressed(model["fc1"])
    with pytest.raises(TypeError, match="_Custom"):
        dumps_compressed(Sequential(("c", _Custom(2.0))))
    with pytest.raises(ValueError, match="distinct"):
        bigger = Sequential(Linear(300, 300, rng=0))
        dumps_compressed(bigger, shared=True)
    with pytest.raises(ValueError, match="index_bits"):
        dumps_compressed(model, index_bits=0)
    with pytest.raises(TypeError, match="sparse"):
        dumps_compressed(model, sparse="yes")
    broken = digits_mlp()
    broken["fc1"].params["weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dumps_compressed(broken)
    assert MODEL_MAGIC[:1] == b"\x89"


# -- hostile files: everything a header declares is checked before anything is allocated -------
def _seal(body: bytes) -> bytes:
    """Trailer (file length and CRC-32) for ``body``, recomputed as an attacker would."""
    body += struct.pack("<Q", len(body) + 12)
    return _recrc(body)


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(architecture JSON, the bytes from the tensor count to the trailer) of a file."""
    arch_len = struct.unpack_from("<I", data, 10)[0]
    return data[14 : 14 + arch_len], data[14 + arch_len : -12]


def _with_arch(data: bytes, arch: bytes) -> bytes:
    return _seal(data[:10] + struct.pack("<I", len(arch)) + arch + _split(data)[1])


def _arch_of(layers: list) -> bytes:
    return json.dumps({"format": "refimpl-compressed-model",
                       "model": {"type": "Sequential", "layers": layers}}).encode()


def test_a_small_file_declaring_a_huge_layer_allocates_nothing(peak_memory):
    # 5 KB declaring Linear(12000, 12000): the reader used to build the model (1.6 GiB of
    # weights) before reading a tensor. Now the shapes are computed from the architecture.
    data = dumps_compressed(Sequential(Linear(30, 40, rng=0)), sparse=False)
    big = _arch_of([{"name": "fc1", "type": "Linear", "in_features": 12000,
                     "out_features": 12000, "bias": True}])  # fmt: skip
    bomb = _with_arch(data, big)
    assert len(bomb) < 6000
    out = peak_memory(loads_compressed, bomb)
    assert isinstance(out.error, ValueError) and "max_elements" in str(out.error)
    assert out.peak < 2 << 20, out
    # below max_elements, the records must still hold the tensors: refused as truncated
    medium = _with_arch(data, big.replace(b"12000", b"8000"))
    out = peak_memory(loads_compressed, medium)
    assert isinstance(out.error, ValueError) and "fc1.weight" in str(out.error), out
    assert out.peak < 2 << 20, out


def test_max_elements_is_honoured(tmp_path):
    model = digits_mlp(rng=0)
    n = sum(v.size for v in model.state_dict().values())
    data = dumps_compressed(model)
    assert loads_compressed(data, max_elements=n) is not None
    with pytest.raises(ValueError, match="max_elements"):
        loads_compressed(data, max_elements=n - 1)
    path = tmp_path / "m.rdc"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"m\.rdc.*max_elements"):
        load_compressed(path, max_elements=1000)
    with pytest.raises(TypeError, match="max_elements must be an int"):
        loads_compressed(data, max_elements="1000")


def test_architecture_size_and_nesting_limits(peak_memory):
    data = dumps_compressed(Sequential(Linear(3, 2, rng=0)))
    nested: dict = {"name": "b", "type": "Sequential", "layers": []}
    inner = nested
    for _ in range(40):
        inner["layers"].append({"name": "b", "type": "Sequential", "layers": []})
        inner = inner["layers"][0]
    with pytest.raises(ValueError, match="nests deeper than 32"):
        loads_compressed(_with_arch(data, _arch_of([nested])))
    brackets = b'{"format": "refimpl-compressed-model", "model": ' + b"[" * 200_000 + b"]" * \
        200_000 + b"}"  # deeper than Python's recursion limit: a RecursionError inside json
    out = peak_memory(loads_compressed, _with_arch(data, brackets))
    assert isinstance(out.error, ValueError) and "architecture" in str(out.error), out
    huge = _arch_of([{"name": "x" * (1 << 20), "type": "ReLU"}])
    with pytest.raises(ValueError, match="architecture"):
        loads_compressed(_with_arch(data, huge))


def _records(data: bytes) -> list[tuple[str, int, int]]:
    """(name, offset of its body-length field, body length) of every tensor record."""
    _, rest = _split(data)
    pos = len(data) - 12 - len(rest) + 4
    out = []
    while pos < len(data) - 12:
        n = data[pos]
        name = data[pos + 1 : pos + 1 + n].decode()
        ndim = data[pos + 2 + n]
        at = pos + 3 + n + 4 * ndim
        (length,) = struct.unpack_from("<I", data, at)
        out.append((name, at, length))
        pos = at + 4 + length
    return out


def test_fixed_width_padding_bits_are_checked():
    # an entry count one lower, the last float removed and the file resealed: the gap stream
    # has the same length, and its last gap now sits in the padding bits
    layer = Linear(10, 1, bias=False, rng=0)
    w = np.zeros((1, 10), np.float32)
    w[0, [1, 4, 8]] = [0.5, -0.25, 2.0]  # gaps 1, 2, 3: three 2-bit values in one byte
    layer.weight = w
    data = dumps_compressed(Sequential(layer), sparse=True, shared=False, huffman=False,
                            index_bits=2)  # fmt: skip
    assert np.array_equal(loads_compressed(data)["fc1"].weight, w)
    (name, at, length), = _records(data)
    body = bytearray(data[at + 4 : at + 4 + length])
    assert body[:2] == b"\x01\x02" and struct.unpack_from("<I", body, 2)[0] == 3
    struct.pack_into("<I", body, 2, 2)
    body = body[:-4]
    forged = _seal(data[:at] + struct.pack("<I", len(body)) + bytes(body))
    with pytest.raises(ValueError, match="padding bits"):
        loads_compressed(forged)


def test_non_finite_weights_in_a_resealed_file_are_refused():
    model = Sequential(Linear(3, 2, rng=0), BatchNorm1d(2))
    data = dumps_compressed(model, sparse=False, shared=False, huffman=False)
    for name, value in [("fc1.weight", np.nan), ("fc1.bias", np.inf),
                        ("bn1.running_var", -1.0)]:  # fmt: skip
        (at, length), = [(a, n) for r, a, n in _records(data) if r == name]
        body = bytearray(data[at + 4 : at + 4 + length])
        struct.pack_into("<f", body, 2, value)  # layout, values kind, then the floats
        forged = _seal(data[: at + 4] + bytes(body) + data[at + 4 + length : -12])
        with pytest.raises(ValueError, match=rf"{name.split('.')[1]} holds (NaN|negative)"):
            loads_compressed(forged)


def test_a_deeply_nested_step_config_is_a_value_error():
    # 30,000 brackets in the config JSON of a deployed step made json raise RecursionError
    layer = Linear(4, 3, rng=0)
    layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 2))
    data = dumps_compressed(Sequential(layer), sparse=False, huffman=False)
    (at, length), = [(a, n) for r, a, n in _records(data) if r == "fc1.weight"]
    body = data[at + 4 : at + 4 + length]
    # dense layout, deployed values, the step name, then the u16-prefixed config JSON
    name_len = body[2]
    start = 3 + name_len
    (config_len,) = struct.unpack_from("<H", body, start)
    deep = b"[" * 30_000 + b"]" * 30_000
    for config in (deep, b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}"):
        forged_body = body[:start] + struct.pack("<H", len(config)) + config + \
            body[start + 2 + config_len :]
        forged = _seal(data[:at] + struct.pack("<I", len(forged_body)) + forged_body +
                       data[at + 4 + length : -12])
        with pytest.raises(ValueError, match="fc1.weight: bad step config|step config of fc1"):
            loads_compressed(forged)


@pytest.mark.parametrize("n_in", [2**62, 10**30, 2**64 // 3 + 1])
def test_declared_sizes_are_counted_exactly(n_in, peak_memory):
    # the int64 product overflowed (10**30) or wrapped below max_elements (3 * 2**62 + 3)
    data = dumps_compressed(Sequential(Linear(3, 2, rng=0)))
    arch = _arch_of([{"name": "fc1", "type": "Linear", "in_features": n_in, "out_features": 3}])
    out = peak_memory(loads_compressed, _with_arch(data, arch))
    assert isinstance(out.error, ValueError) and "max_elements" in str(out.error), out
    assert out.peak < 1 << 20
