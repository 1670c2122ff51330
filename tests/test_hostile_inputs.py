"""Hostile inputs: every file format the package writes, truncated, bit-flipped and edited.

The formats are the compressed model file (:mod:`refimpl.coding.container`), the Huffman stream
(:mod:`refimpl.coding.huffman`), the state file of ``Sequential.save`` and IDX files, raw and
gzip (:mod:`refimpl.data.idx`). For each, a valid sample is damaged in four ways:

* **truncation** at any byte;
* **bit flips** anywhere (one to four);
* **resealed header edits**: a header field (found by watching the reader, or from the format's
  layout) overwritten with an edge value (0, 1, all ones, a power of two, a random number),
  and the checksum recomputed as an attacker would, so that only the format's own consistency
  checks stand between the edit and the reader (the container's length and CRC-32, the Huffman
  CRC-32, the zip members' CRC-32 by rewriting the archive, gzip's CRC by recompressing);
* **garbage**: random bytes, sometimes behind the format's magic.

Every damaged input must either load into something valid (the right shapes, finite values) or
raise ``ValueError`` (whose message names the file, for the readers that take a path); any
other exception fails the test. Each call runs under ``tracemalloc`` (NumPy reports its buffers
to it), and its peak must stay below ``CEILING_BASE + CEILING_FACTOR * len(input)``: an input
that makes the reader allocate from a size it declares (a bomb) fails even if it is refused in
the end.

Number of examples. Each property runs ``REFIMPL_FUZZ_EXAMPLES`` examples (default 25: the
suite takes a few seconds, part of ``make test``). A nightly job runs many more, e.g.::

    REFIMPL_FUZZ_EXAMPLES=20000 python -m pytest tests/test_hostile_inputs.py -p no:randomly

Hypothesis keeps the failing examples it finds in ``.hypothesis/`` and replays them first.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from functools import cache
from unittest import mock

import numpy as np
import pytest
from conftest import measure_peak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl.coding import container as container_module
from refimpl.coding import dumps_compressed, huffman_decode, huffman_encode, load_compressed
from refimpl.coding.huffman import _HEADER
from refimpl.data.idx import read_idx, write_idx
from refimpl.nn import (
    BatchNorm1d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    load_state_file,
)
from refimpl.pruning import prune_model
from refimpl.quantization import HashedWeights, SharedWeights, UniformQuant

EXAMPLES = int(os.environ.get("REFIMPL_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],  # fmt: skip
)
#: Peak bytes a reader may allocate for an input of n bytes: CEILING_BASE + CEILING_FACTOR * n.
CEILING_BASE = 4 << 20
CEILING_FACTOR = 256

EDGE_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 8, 255, 256, 2**15, 2**16 - 1, 2**16, 2**31 - 1, 2**31,
                     2**32 - 1, 2**32, 2**48, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
)  # fmt: skip


def _check_outcome(out, data_len: int, name: str | None = None) -> None:
    """The call either returned or raised ValueError (naming ``name``), within the ceiling."""
    if out.error is not None:
        if not isinstance(out.error, ValueError):
            raise AssertionError(f"expected ValueError, got {out.error!r}") from out.error
        if name is not None:
            assert name in str(out.error), f"{out.error} does not name {name}"
    ceiling = CEILING_BASE + CEILING_FACTOR * data_len
    assert out.peak <= ceiling, f"peak {out.peak:,} bytes for a {data_len:,}-byte input {out}"


def _overwrite(data: bytes, offset: int, size: int, value: int) -> bytes:
    """``data`` with the ``size``-byte little-endian field at ``offset`` set to ``value``."""
    raw = (value % (1 << (8 * size))).to_bytes(size, "little")
    return data[:offset] + raw + data[offset + size :]


def _flip(data: bytes, positions: list[int]) -> bytes:
    buf = bytearray(data)
    for p in positions:
        p %= 8 * len(buf)
        buf[p // 8] ^= 0x80 >> (p % 8)
    return bytes(buf)


# -- the compressed model file --------------------------------------------------------------
@cache
def _model_files() -> tuple[bytes, ...]:
    """Three small files covering the record kinds: pruned and shared with Huffman streams,
    dense floats with a convolution and BatchNorm, deployed uniform and hashed steps."""
    mlp = Sequential(Linear(16, 12, rng=0), ReLU(), BatchNorm1d(12), Linear(12, 4, rng=1))
    prune_model(mlp, 0.7)
    for name in ("fc1", "fc2"):
        layer = mlp[name]
        layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 4))
    cnn = Sequential(Conv2d(1, 3, 3, rng=2), MaxPool2d(2), Flatten(), Linear(27, 2, rng=3))
    mixed = Sequential(Linear(12, 10, rng=4), ReLU(), Linear(10, 6, rng=5))
    mixed["fc1"].parametrize("weight", UniformQuant(4))
    mixed["fc2"].parametrize("weight", HashedWeights(20, seed=1))
    return (
        dumps_compressed(mlp),
        dumps_compressed(cnn, sparse=False, shared=False, huffman=False),
        dumps_compressed(mixed, huffman=True),
    )


@cache
def _model_fields(index: int) -> tuple[tuple[int, int], ...]:
    """(offset, size) of every integer field the container's reader unpacks from a file."""
    data = _model_files()[index]
    seen: list[tuple[int, int]] = []
    original = container_module._Reader.unpack

    def spy(self, fmt, what):
        seen.extend(_split_fields(self.pos, fmt))
        return original(self, fmt, what)

    with mock.patch.object(container_module._Reader, "unpack", spy):
        container_module.loads_compressed(data)
    return tuple(seen) + ((8, 2), (10, 4))  # version and architecture length


def _split_fields(pos: int, fmt: str) -> list[tuple[int, int]]:
    """The fields of a struct format (``"BI"``, ``"4I"``) as (offset, size) pairs."""
    out = []
    count = ""
    for ch in fmt:
        if ch.isdigit():
            count += ch
            continue
        size = struct.calcsize("<" + ch)
        for _ in range(int(count or 1)):
            out.append((pos, size))
            pos += size
        count = ""
    return out


def _reseal_model(body: bytes) -> bytes:
    """A file of ``body`` (everything before the trailer) with a valid length and CRC-32."""
    body += struct.pack("<Q", len(body) + 12)
    return body + struct.pack("<I", zlib.crc32(body))


def _load_model_file(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed-model.rdc"
    path.write_bytes(data)
    out = measure_peak(load_compressed, path)
    _check_outcome(out, len(data), "fuzzed-model.rdc")
    if out.error is None:
        for name, value in list(out.value.named_parameters()) + list(out.value.named_buffers()):
            assert np.isfinite(value).all(), name


@FUZZ
@given(index=st.integers(0, 2), cut=st.floats(0, 1, exclude_max=True))
def test_model_file_truncated(tmp_path_factory, index, cut):
    data = _model_files()[index]
    data = data[: int(cut * len(data))]
    _load_model_file(tmp_path_factory, data)


@FUZZ
@given(index=st.integers(0, 2), bits=st.lists(st.integers(0, 2**40), min_size=1, max_size=4))
def test_model_file_bit_flips(tmp_path_factory, index, bits):
    _load_model_file(tmp_path_factory, _flip(_model_files()[index], bits))


@FUZZ
@given(index=st.integers(0, 2), field=st.integers(0, 10**6), value=EDGE_VALUES,
       flips=st.lists(st.integers(0, 2**40), max_size=2))  # fmt: skip
def test_model_file_resealed_header_edits(tmp_path_factory, index, field, value, flips):
    data = _model_files()[index]
    fields = _model_fields(index)
    offset, size = fields[field % len(fields)]
    body = _overwrite(data[:-12], offset, size, value)
    if flips:  # and perhaps a few payload bits, behind the same valid CRC
        body = _flip(body, flips)
    _load_model_file(tmp_path_factory, _reseal_model(body))


@FUZZ
@given(garbage=st.binary(max_size=2000), magic=st.booleans())
def test_model_file_garbage(tmp_path_factory, garbage, magic):
    data = (container_module.MODEL_MAGIC + garbage) if magic else garbage
    if magic and len(data) >= 22:
        data = _reseal_model(data[:-12])
    _load_model_file(tmp_path_factory, data)


def test_model_file_architecture_bombs_are_refused_small(tmp_path_factory):
    """Resealed architectures declaring huge layers (a HashedLinear is never built to find its
    shapes) and deep nesting: refused within the ceiling."""
    data = _model_files()[1]
    arch_len = struct.unpack_from("<I", data, 10)[0]
    rest = data[14 + arch_len : -12]
    for layer in (
        '{"name": "h", "type": "HashedLinear", "in_features": 100000, "out_features": 1000, '
        '"n_buckets": 100000000}',
        '{"name": "h", "type": "HashedLinear", "in_features": 1, "out_features": 1, '
        '"n_buckets": 1099511627776}',
        '{"name": "c", "type": "Conv2d", "in_channels": 4096, "out_channels": 4096, '
        '"kernel_size": [7, 7]}',
        '{"name": "s", "type": "Sequential", "layers": [' * 40 + "]}" * 40,
    ):
        arch = ('{"format": "refimpl-compressed-model", "model": {"type": "Sequential", '
                f'"layers": [{layer}]}}}}').encode()  # fmt: skip
        forged = _reseal_model(data[:10] + struct.pack("<I", len(arch)) + arch + rest)
        _load_model_file(tmp_path_factory, forged)
        with pytest.raises(ValueError):
            load_compressed(tmp_path_factory.getbasetemp() / "fuzzed-model.rdc")


# -- the Huffman stream -----------------------------------------------------------------------
@cache
def _streams() -> tuple[bytes, ...]:
    rng = np.random.default_rng(0)
    p = 2.0 ** -np.arange(1, 21)
    return (
        huffman_encode(rng.choice(20, size=3000, p=p / p.sum()), block_size=64),  # long codes
        huffman_encode(rng.integers(0, 300, size=500)),  # a sparse table, one block
        huffman_encode(np.full(400, 7)),  # a lone symbol
        huffman_encode(rng.integers(0, 2**40, size=60, dtype=np.uint64), block_size=8),
    )


_HUFFMAN_FIELDS = tuple(_split_fields(4, _HEADER.format.lstrip("<")[2:]))  # after the magic


def _decode(data: bytes) -> None:
    out = measure_peak(huffman_decode, data)
    _check_outcome(out, len(data))
    if out.error is None:
        n = _HEADER.unpack_from(data)[6]
        assert out.value.shape == (n,)


def _reseal_stream(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@FUZZ
@given(index=st.integers(0, 3), cut=st.floats(0, 1, exclude_max=True))
def test_huffman_stream_truncated(index, cut):
    data = _streams()[index]
    _decode(data[: int(cut * len(data))])


@FUZZ
@given(index=st.integers(0, 3), bits=st.lists(st.integers(0, 2**40), min_size=1, max_size=4),
       reseal=st.booleans())  # fmt: skip
def test_huffman_stream_bit_flips(index, bits, reseal):
    data = _streams()[index]
    if reseal:  # the payload and tables behind a valid CRC: only the structure checks remain
        _decode(_reseal_stream(_flip(data[:-4], bits)))
    else:
        _decode(_flip(data, bits))


@FUZZ
@given(index=st.integers(0, 3), field=st.integers(0, len(_HUFFMAN_FIELDS) - 1),
       value=EDGE_VALUES, second=st.tuples(st.integers(0, 100), EDGE_VALUES))  # fmt: skip
def test_huffman_stream_resealed_header_edits(index, field, value, second):
    data = _streams()[index][:-4]
    offset, size = _HUFFMAN_FIELDS[field]
    data = _overwrite(data, offset, size, value)
    j, v = second  # a second field, so that related fields can change together
    offset, size = _HUFFMAN_FIELDS[j % len(_HUFFMAN_FIELDS)]
    _decode(_reseal_stream(_overwrite(data, offset, size, v)))


@FUZZ
@given(garbage=st.binary(max_size=600))
def test_huffman_stream_garbage(garbage):
    _decode(b"RHUF" + garbage)
    if len(garbage) >= 33:
        _decode(_reseal_stream(b"RHUF\x02" + garbage[5:]))


# -- the state file ----------------------------------------------------------------------------
def _state_model() -> Sequential:
    return Sequential(Linear(6, 5, rng=0), BatchNorm1d(5), ReLU(), Linear(5, 3, rng=1))


@cache
def _state_members() -> dict[str, bytes]:
    """The ``.npy`` members of a valid state file, by name."""
    model = _state_model()
    buf = io.BytesIO()
    np.savez(buf, __format__=np.array("refimpl-state-dict"), __version__=np.array(1),
             __count__=np.array(len(model.state_dict())), **model.state_dict())  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members: dict[str, bytes], deflate: bool = True) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def _load_state(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed-state.npz"
    path.write_bytes(data)
    model = _state_model()
    before = model.state_dict()
    out = measure_peak(model.load, path)
    _check_outcome(out, len(data), "fuzzed-state.npz")
    state = model.state_dict()
    if out.error is None:
        assert all(np.isfinite(v).all() for v in state.values())
        assert (state["bn1.running_var"] >= 0).all()
    else:  # refused: nothing was assigned
        assert all(np.array_equal(before[k], v) for k, v in state.items())
    out = measure_peak(load_state_file, path, max_elements=10_000)
    _check_outcome(out, len(data), "fuzzed-state.npz")


@FUZZ
@given(deflate=st.booleans(), cut=st.floats(0, 1, exclude_max=True))
def test_state_file_truncated(tmp_path_factory, deflate, cut):
    data = _zip(_state_members(), deflate)
    _load_state(tmp_path_factory, data[: int(cut * len(data))])


@FUZZ
@given(deflate=st.booleans(), bits=st.lists(st.integers(0, 2**40), min_size=1, max_size=4))
def test_state_file_bit_flips(tmp_path_factory, deflate, bits):
    # flips in the zip headers and central directory are "resealed" edits already: a zip has
    # no checksum over them
    _load_state(tmp_path_factory, _flip(_zip(_state_members(), deflate), bits))


_NPY_EDITS = st.one_of(
    st.tuples(st.just("shape"), st.lists(st.integers(0, 2**40), max_size=4)),
    st.tuples(st.just("descr"), st.sampled_from(["<f8", "<f2", ">f4", "<i4", "|b1", "|O", "<U3",
                                                 "<c16", "|V8", "<M8[s]", "bogus"])),
    st.tuples(st.just("fortran"), st.booleans()),
    st.tuples(st.just("payload"), st.lists(st.integers(0, 2**40), min_size=1, max_size=3)),
    st.tuples(st.just("value"), st.sampled_from([np.nan, np.inf, -1.0, 1e300])),
    st.tuples(st.just("drop"), st.just(None)),
    st.tuples(st.just("rename"), st.text(max_size=12)),
)


@FUZZ
@given(member=st.integers(0, 100), edit=_NPY_EDITS, deflate=st.booleans())
def test_state_file_resealed_member_edits(tmp_path_factory, member, edit, deflate):
    """A member's .npy header or values edited and the archive rewritten (CRC-32 recomputed)."""
    members = dict(_state_members())
    name = sorted(members)[member % len(members)]
    payload = members[name]
    kind, arg = edit
    fh = io.BytesIO(payload)
    version = np.lib.format.read_magic(fh)
    assert version == (1, 0)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
              "shape": shape}  # fmt: skip
    body = payload[fh.tell() :]
    if kind == "shape":
        header["shape"] = tuple(arg)
    elif kind == "descr":
        header["descr"] = arg
    elif kind == "fortran":
        header["fortran_order"] = arg
    elif kind == "payload":
        body = _flip(body, arg) if body else body
    elif kind == "value" and dtype.kind == "f" and body:
        with np.errstate(over="ignore"):  # 1e300 as float32 is inf: another non-finite value
            body = np.array([arg], dtype=dtype).tobytes() + body[dtype.itemsize :]
    if kind == "drop":
        del members[name]
    elif kind == "rename":
        del members[name]
        members[arg + ".npy"] = payload
    else:
        out = io.BytesIO()
        out.write(np.lib.format.magic(1, 0))
        text = repr(header).encode("latin1")
        text += b" " * ((-(len(text) + 11)) % 64) + b"\n"
        out.write(struct.pack("<H", len(text)) + text)
        members[name] = out.getvalue() + body
    _load_state(tmp_path_factory, _zip(members, deflate))


@FUZZ
@given(garbage=st.binary(max_size=2000), zip_magic=st.booleans())
def test_state_file_garbage(tmp_path_factory, garbage, zip_magic):
    _load_state(tmp_path_factory, (b"PK\x03\x04" if zip_magic else b"") + garbage)


# -- IDX files ----------------------------------------------------------------------------------
@cache
def _idx_raw() -> tuple[bytes, ...]:
    """Raw IDX files of three types and ranks, as :func:`write_idx` writes them."""
    rng = np.random.default_rng(1)
    out = []
    for array in (rng.integers(0, 256, size=(12, 7, 5), dtype=np.uint8),
                  rng.standard_normal((9, 4)).astype(np.float32),
                  np.arange(30, dtype=np.int16)):  # fmt: skip
        code = {np.uint8: 0x08, np.float32: 0x0D, np.int16: 0x0B}[array.dtype.type]
        header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        out.append(header + array.astype(array.dtype.newbyteorder(">")).tobytes())
    return tuple(out)


def _read(tmp_path_factory, data: bytes, compress: bool) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.idx"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    size = path.stat().st_size
    out = measure_peak(read_idx, path, max_bytes=1 << 20)
    _check_outcome(out, max(size, len(data)) if not compress else size, "fuzzed.idx")
    if out.error is None:
        ndim = data[3]
        assert out.value.shape == struct.unpack_from(f">{ndim}I", data, 4)


@FUZZ
@given(index=st.integers(0, 2), cut=st.floats(0, 1, exclude_max=True), compress=st.booleans())
def test_idx_truncated(tmp_path_factory, index, cut, compress):
    data = _idx_raw()[index]
    data = data[: int(cut * len(data))]
    _read(tmp_path_factory, data, compress)
    if compress:  # the gzip bytes themselves cut short
        gz = gzip.compress(_idx_raw()[index], mtime=0)
        path = tmp_path_factory.getbasetemp() / "fuzzed.idx"
        path.write_bytes(gz[: int(cut * len(gz))])
        _check_outcome(measure_peak(read_idx, path), len(gz), "fuzzed.idx")


@FUZZ
@given(index=st.integers(0, 2), bits=st.lists(st.integers(0, 2**40), min_size=1, max_size=4))
def test_idx_bit_flips(tmp_path_factory, index, bits):
    _read(tmp_path_factory, _flip(_idx_raw()[index], bits), compress=False)
    gz = gzip.compress(_idx_raw()[index], mtime=0)
    path = tmp_path_factory.getbasetemp() / "fuzzed.idx"
    path.write_bytes(_flip(gz, bits))  # gzip's CRC-32 and length catch payload damage
    _check_outcome(measure_peak(read_idx, path), len(gz), "fuzzed.idx")


@FUZZ
@given(index=st.integers(0, 2), field=st.integers(0, 100), value=EDGE_VALUES,
       compress=st.booleans(), extra=st.integers(0, 3000))  # fmt: skip
def test_idx_resealed_header_edits(tmp_path_factory, index, field, value, compress, extra):
    """A header byte or dimension edited (gzip recompressed: its CRC is valid), with or
    without a long run of zeros after the payload, which gzip shrinks to almost nothing."""
    data = _idx_raw()[index]
    ndim = data[3]
    fields = [(2, 1), (3, 1)] + [(4 + 4 * i, 4) for i in range(ndim)]
    offset, size = fields[field % len(fields)]
    raw = (value % (1 << (8 * size))).to_bytes(size, "big")
    data = data[:offset] + raw + data[offset + size :] + b"\0" * (extra * extra)
    _read(tmp_path_factory, data, compress)


def test_idx_gzip_bomb_within_the_ceiling(tmp_path_factory):
    data = _idx_raw()[0]
    path = tmp_path_factory.getbasetemp() / "bomb.idx"
    with gzip.open(path, "wb") as f:
        f.write(data)
        for _ in range(64):
            f.write(b"\0" * (1 << 20))
    out = measure_peak(read_idx, path)
    _check_outcome(out, path.stat().st_size, "bomb.idx")
    assert out.error is not None


@FUZZ
@given(garbage=st.binary(max_size=2000), compress=st.booleans())
def test_idx_garbage(tmp_path_factory, garbage, compress):
    _read(tmp_path_factory, b"\0\0" + garbage if len(garbage) >= 2 else garbage, compress)


def test_samples_are_valid(tmp_path_factory):
    """The undamaged samples load: the suite damages real files."""
    for data in _model_files():
        assert container_module.loads_compressed(data) is not None
    for data in _streams():
        huffman_decode(data)
    path = tmp_path_factory.getbasetemp() / "ok.npz"
    path.write_bytes(_zip(_state_members()))
    _state_model().load(path)
    for data in _idx_raw():
        path = tmp_path_factory.getbasetemp() / "ok.idx"
        path.write_bytes(data)
        read_idx(path)
        write_idx(path, read_idx(path), compress=True)
        read_idx(path)
