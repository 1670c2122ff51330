"""Huffman coding: optimal prefix codes, an exact round trip, and a stream that detects damage.

Properties from Huffman (1952): the code is prefix-free, its total length is the least of all
prefix codes (checked against a brute force over every length assignment that satisfies Kraft's
inequality), and the mean length lies in [H, H + 1).
"""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.coding import (
    HUFFMAN_VERSION,
    canonical_code,
    huffman_code,
    huffman_code_lengths,
    huffman_decode,
    huffman_encode,
)
from refimpl.coding import huffman as huffman_module
from refimpl.coding.huffman import (
    _HEADER,
    _auto_block_size,
    _encode,
    _pack_codes,
    _pack_fixed,
    _unpack_fixed,
    max_block_size,
)

counts_st = st.dictionaries(
    st.integers(0, 2**40), st.integers(1, 10**6), min_size=0, max_size=40
)


def _cost(counts: dict[int, int], lengths: dict[int, int]) -> int:
    return sum(c * lengths[s] for s, c in counts.items())


def _brute_force_optimum(weights: list[int]) -> int:
    """Least sum(w_i l_i) over all lengths 1..n-1 with sum 2^-l_i <= 1 (every prefix code)."""
    n = len(weights)
    if n == 1:
        return 0
    grid = np.array(list(itertools.product(range(1, n), repeat=n)), dtype=np.int64)
    kraft = (2.0 ** -grid).sum(axis=1)
    feasible = grid[kraft <= 1 + 1e-12]
    return int((feasible @ np.array(weights, dtype=np.int64)).min())


def test_hand_example():
    counts = {0: 5, 1: 2, 2: 1, 3: 1}
    assert huffman_code_lengths(counts) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert huffman_code(counts) == {0: "0", 1: "10", 2: "110", 3: "111"}
    # the same counts as an array indexed by symbol
    assert huffman_code(np.array([5, 2, 1, 1])) == huffman_code(counts)


def test_empty_single_and_ties():
    assert huffman_code({}) == {} and huffman_code([]) == {}
    assert huffman_code({7: 3}) == {7: ""}
    assert huffman_code([0, 0, 4]) == {2: ""}  # zero counts get no codeword
    # four equal counts: a balanced code, canonical in symbol order
    assert huffman_code([1, 1, 1, 1]) == {0: "00", 1: "01", 2: "10", 3: "11"}
    # deterministic: the same counts always give the same code
    rng = np.random.default_rng(0)
    c = rng.integers(1, 4, size=50)
    assert huffman_code(c) == huffman_code(c.copy())


@settings(max_examples=60, deadline=None)
@given(counts_st)
def test_prefix_free_and_complete(counts):
    code = huffman_code(counts)
    assert set(code) == set(counts)
    words = sorted(code.values())
    for a, b in itertools.pairwise(words):  # sorted: a prefix sorts right before an extension
        assert not b.startswith(a)
    if len(code) >= 2:
        assert sum(2.0 ** -len(w) for w in words) == pytest.approx(1.0)  # Kraft equality


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=6))
def test_optimal_against_brute_force(weights):
    lengths = huffman_code_lengths(weights)
    assert _cost(dict(enumerate(weights)), lengths) == _brute_force_optimum(weights)


@settings(max_examples=80, deadline=None)
@given(counts_st.filter(lambda d: len(d) >= 1))
def test_mean_length_between_entropy_and_entropy_plus_one(counts):
    lengths = huffman_code_lengths(counts)
    c = np.array(list(counts.values()), dtype=np.float64)
    p = c / c.sum()
    entropy = float(-(p * np.log2(p)).sum())
    mean = _cost(counts, lengths) / c.sum()
    assert entropy - 1e-9 <= mean < entropy + 1


def test_canonical_code_checks_kraft():
    assert canonical_code({0: 1, 1: 2, 2: 2}) == {0: "0", 1: "10", 2: "11"}
    with pytest.raises(ValueError, match="Kraft"):
        canonical_code({0: 1, 1: 1, 2: 1})


# -- the stream -------------------------------------------------------------------------------
symbols_st = st.one_of(
    st.lists(st.integers(0, 7), max_size=300),
    st.lists(st.integers(0, 255), max_size=300),
    st.lists(st.integers(0, 2**32), max_size=100),
    st.lists(st.integers(0, 2**64 - 1), max_size=50),
    st.lists(st.sampled_from([0, 1, 2**20, 2**33]), max_size=200),
)


@settings(max_examples=150, deadline=None)
@given(symbols_st, st.one_of(st.none(), st.integers(1, 9)))
def test_decode_inverts_encode(symbols, block_size):
    data = huffman_encode(symbols, block_size=block_size)
    out = huffman_decode(data)
    assert out.tolist() == symbols
    assert np.issubdtype(out.dtype, np.unsignedinteger)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=400))
def test_payload_has_exactly_the_optimal_number_of_bits(symbols):
    data = huffman_encode(symbols, block_size=16)
    fields = _HEADER.unpack_from(data)
    total_bits = fields[-1]
    counts = dict(zip(*np.unique(symbols, return_counts=True), strict=True))
    counts = {int(k): int(v) for k, v in counts.items()}
    if len(counts) == 1:  # a lone symbol: the one-bit codeword 0, not the empty one
        assert total_bits == len(symbols)
    else:
        assert total_bits == _cost(counts, huffman_code_lengths(counts))


def test_numpy_inputs_of_any_shape_and_dtype():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 32, size=(40, 30)).astype(np.int16)
    assert np.array_equal(huffman_decode(huffman_encode(x)), x.ravel())
    big = rng.integers(0, 2**63, size=1000, dtype=np.uint64) * np.uint64(2)
    assert np.array_equal(huffman_decode(huffman_encode(big)), big)


def test_skewed_distribution_many_lanes():
    # geometric probabilities: codewords longer than the 14-bit lookup table
    rng = np.random.default_rng(2)
    p = 2.0 ** -np.arange(1, 31)
    x = np.concatenate([rng.choice(30, size=100_000, p=p / p.sum()), np.arange(30)])
    data = huffman_encode(x)
    assert _HEADER.unpack_from(data)[4] > 14  # max_len: the slow path is exercised
    assert np.array_equal(huffman_decode(data), x)


def test_long_codewords_up_to_57_bits():
    # a complete code with lengths 1, 2, ..., 56, 56 (not Huffman-optimal for these counts,
    # but any complete prefix code must decode): exercises the 64-bit packing and the
    # canonical-limit lookup
    lengths = np.array(list(range(1, 57)) + [56], dtype=np.int64)
    rng = np.random.default_rng(3)
    x = np.concatenate([np.arange(57), rng.integers(0, 57, size=500)]).astype(np.uint64)
    for block in (1, 7, 1000):
        data = _encode(x, block, lengths=lengths)
        assert np.array_equal(huffman_decode(data), x)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**57 - 1), st.integers(1, 57)), min_size=1,
                max_size=60))
def test_bit_packing_against_a_string_reference(items):
    codes = np.array([c & ((1 << n) - 1) for c, n in items], dtype=np.uint64)
    lens = np.array([n for _, n in items], dtype=np.uint64)
    bits = "".join(format(int(c), f"0{int(n)}b") for c, n in zip(codes, lens, strict=True))
    packed = _pack_codes(codes, lens, np.arange(len(items)), len(bits))
    ref = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big")
    assert packed == ref


# -- damage -----------------------------------------------------------------------------------
def _stream() -> bytes:
    rng = np.random.default_rng(4)
    return huffman_encode(rng.integers(0, 12, size=300), block_size=32)


def test_every_truncation_raises():
    data = _stream()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            huffman_decode(data[:cut])
    with pytest.raises(ValueError, match="announces"):
        huffman_decode(data + b"\x00")


def test_every_byte_flip_raises():
    data = bytearray(_stream())
    for i in range(len(data)):
        bad = data.copy()
        bad[i] ^= 0x5A
        with pytest.raises(ValueError):
            huffman_decode(bytes(bad))


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_structural_checks_behind_a_valid_crc():
    data = _stream()
    body = bytearray(data[:-4])
    # another version
    v = body.copy()
    v[4] = 3
    with pytest.raises(ValueError, match="version 3"):
        huffman_decode(_recrc(bytes(v)))
    # damage the payload's last byte: the codewords no longer fill the blocks as indexed
    p = body.copy()
    p[-1] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        huffman_decode(_recrc(bytes(p)))
    # lengths that do not form a complete prefix code
    k = body.copy()
    k[_HEADER.size] += 1
    with pytest.raises(ValueError, match="prefix code|range"):
        huffman_decode(_recrc(bytes(k)))


def test_bad_arguments():
    with pytest.raises(ValueError, match=">= 0"):
        huffman_encode([1, -2])
    with pytest.raises(TypeError, match="integers"):
        huffman_encode(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="2\\*\\*64"):
        huffman_encode([2**64])
    with pytest.raises(ValueError, match="block_size"):
        huffman_encode([1, 2], block_size=0)
    with pytest.raises(TypeError, match="block_size"):
        huffman_encode([1, 2], block_size=2.0)
    with pytest.raises(TypeError, match="bytes"):
        huffman_decode("RHUF")
    with pytest.raises(ValueError, match="magic"):
        huffman_decode(b"XXXX" + _stream()[4:])
    with pytest.raises(ValueError, match=">= 0"):
        huffman_code(np.array([1, -1]))
    with pytest.raises(ValueError, match="non-negative"):
        huffman_code({1: -1})
    with pytest.raises(ValueError, match="1-D"):
        huffman_code(np.ones((2, 2), dtype=int))


# -- hostile streams: counts the bytes cannot back, blocks the encoder never writes -------------
def _header_stream(version, n, total_bits, block=1, table=b"\x01", max_len=1, payload=b""):
    """A stream with a one-entry dense table, resealed with a valid CRC as an attacker would."""
    body = _HEADER.pack(b"RHUF", version, 1, 1, max_len, 0, n, len(table), block, total_bits)
    return _recrc(body + table + payload)


def test_lone_symbol_costs_one_bit_and_round_trips():
    data = huffman_encode(np.full(1000, 7))
    fields = _HEADER.unpack_from(data)
    assert fields[1] == HUFFMAN_VERSION == 2 and fields[4] == 1 and fields[-1] == 1000
    assert np.array_equal(huffman_decode(data), np.full(1000, 7))
    assert huffman_decode(huffman_encode([5])).tolist() == [5]


def test_stream_cannot_announce_more_symbols_than_payload_bits(peak_memory):
    # version 1 gave a lone symbol the empty codeword: 38 bytes announcing 2**31 symbols made
    # a 2 GiB array. Version 1 is refused, and version 2 needs one payload bit per symbol.
    bomb_v1 = _header_stream(1, 2**31, 0, max_len=0, table=b"\x00")
    assert len(bomb_v1) == 38
    out = peak_memory(huffman_decode, bomb_v1)
    assert isinstance(out.error, ValueError) and "version 1" in str(out.error)
    assert out.peak < 1 << 20
    bomb_v2 = _header_stream(2, 2**31, 8, payload=b"\x00")
    out = peak_memory(huffman_decode, bomb_v2)
    assert isinstance(out.error, ValueError) and "cannot fit in 8 payload bits" in str(out.error)
    assert out.peak < 1 << 20
    # a lone symbol whose payload has a one bit is not the codeword 0
    with pytest.raises(ValueError, match="codeword 0"):
        huffman_decode(_header_stream(2, 8, 8, block=8, payload=b"\x01"))
    assert huffman_decode(_header_stream(2, 8, 8, block=8, payload=b"\x00")).tolist() == [0] * 8


def _counting_range(monkeypatch):
    """Count the iterations of every Python loop of the decoder (its loops use range)."""
    steps = [0]

    def counting(*args):
        r = range(*args)
        steps[0] += len(r)
        return r

    monkeypatch.setattr(huffman_module, "range", counting, raising=False)
    return steps


def test_decoder_steps_grow_like_sqrt_n_not_n(monkeypatch):
    steps = _counting_range(monkeypatch)
    rng = np.random.default_rng(5)
    for n in (10_000, 100_000, 1_000_000):
        x = rng.integers(0, 2, size=n)
        for block in (None, max_block_size(n)):
            data = huffman_encode(x, block_size=block)
            steps[0] = 0
            assert np.array_equal(huffman_decode(data), x)
            assert steps[0] <= max_block_size(n) + 64 + n // 2**16, (n, block, steps[0])
        with pytest.raises(ValueError, match="block_size"):
            huffman_encode(x, block_size=max_block_size(n) + 1)
    # the 125 KB stream of a million 1-bit codewords in one block of 2**32 - 1 symbols took
    # a million decoder steps (23 s); it is refused before the first one
    data = _encode(x.astype(np.uint64), 2**32 - 1)
    assert 120_000 < len(data) < 130_000
    steps[0] = 0
    with pytest.raises(ValueError, match="block size 4294967295"):
        huffman_decode(data)
    assert steps[0] == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40), st.integers(1, 2**20))
def test_the_encoder_never_picks_a_block_the_decoder_refuses(n, bits_per_symbol):
    assert _auto_block_size(n, n * bits_per_symbol) <= max_block_size(n)


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 64), st.lists(st.integers(0, 2**64 - 1), max_size=40))
def test_fixed_width_unpacking_inverts_packing(width, values):
    v = np.array([x & ((1 << width) - 1) for x in values], dtype=np.uint64)
    packed = _pack_fixed(v, width)
    assert np.array_equal(_unpack_fixed(packed, v.size, width), v)
    if v.size:
        with pytest.raises(ValueError, match="bytes"):
            _unpack_fixed(packed[:-1], v.size, width)
