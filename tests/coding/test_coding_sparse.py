"""Relative-index sparse storage with Deep Compression's filler zeros (Han et al. 2016, Fig. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.coding import RelativeCSR, count_fillers, decode_relative_csr, encode_relative_csr


def _vector(n: int, positions: list[int]) -> np.ndarray:
    w = np.zeros(n, dtype=np.float32)
    w[positions] = np.arange(1, len(positions) + 1)
    return w


def _fillers_by_walking(positions: list[int], bits: int) -> int:
    """Reference: walk the positions and insert a filler whenever the next one is out of reach."""
    reach = 2**bits  # the furthest step one entry can take (a gap of 2**bits - 1 zeros)
    fillers, cur = 0, -1
    for p in positions:
        while p - cur > reach:
            cur += reach
            fillers += 1
        cur = p
    return fillers


@pytest.mark.parametrize(
    ("positions", "bits", "fillers"),
    [
        ([1, 4, 15], 3, 1),  # the paper's figure: a jump of 11 > 8 needs one filler
        ([7], 3, 0),  # gap 7 = 2**3 - 1 fits
        ([8], 3, 1),  # gap 8 does not
        ([0, 16], 3, 1),  # gap 15: one filler, then 7
        ([0, 17], 3, 2),  # gap 16: two fillers, then 0
        ([0, 1, 2, 3], 1, 0),  # contiguous entries never need fillers
        ([99], 2, 24),  # gap 99 with 2 bits: floor(99 / 4) fillers
        ([], 3, 0),
    ],
)
def test_filler_counts_on_hand_made_cases(positions, bits, fillers):
    w = _vector(100, positions)
    csr = encode_relative_csr(w, index_bits=bits)
    assert csr.n_fillers == fillers == count_fillers(positions, bits)
    assert csr.nnz == len(positions)
    assert np.array_equal(csr.to_dense(), w)


def test_paper_figure_layout():
    w = _vector(20, [1, 4, 15])
    csr = encode_relative_csr(w, index_bits=3)
    assert csr.gaps.tolist() == [1, 2, 7, 2]
    assert csr.values.tolist() == [1.0, 2.0, 0.0, 3.0]
    assert csr.positions().tolist() == [1, 4, 12, 15]  # the filler sits 8 past position 4
    assert csr.nbytes() == -(-4 * 3 // 8) + 4 * 4


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9),
        elements=st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.5, -2.25, 3.0]),
    ),
    st.integers(1, 8),
)
def test_round_trip_and_filler_rule(w, bits):
    csr = encode_relative_csr(w, index_bits=bits)
    assert np.array_equal(decode_relative_csr(csr), w)
    assert csr.to_dense().shape == w.shape and csr.to_dense().dtype == w.dtype
    assert (csr.gaps < 2**bits).all()
    positions = np.flatnonzero(w).tolist()
    assert csr.n_fillers == _fillers_by_walking(positions, bits)
    assert csr.n_entries == len(positions) + csr.n_fillers
    # fillers hold exactly zero, and every filler uses the widest gap
    fill = csr.values == 0
    assert (csr.gaps[fill] == 2**bits - 1).all()


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, (6, 11), elements=st.sampled_from([0.0, 0.0, 0.0, 0.5, -1.0])))
def test_row_pointers_match_scipy_csr(w):
    indptr, indices, data = encode_relative_csr(w, index_bits=2).row_pointers()
    ref = sp.csr_matrix(w)
    assert np.array_equal(indptr, ref.indptr)
    assert np.array_equal(indices, ref.indices)
    assert np.array_equal(data, ref.data)


def test_integer_values_and_negative_zero():
    idx = np.array([[0, 3, 0, 0], [0, 0, 0, 1]], dtype=np.int64)
    assert np.array_equal(encode_relative_csr(idx, 2).to_dense(), idx)
    w = np.array([-0.0, 1.0, -0.0], dtype=np.float32)
    csr = encode_relative_csr(w, 4)
    assert csr.n_entries == 1  # -0.0 counts as zero


def test_bad_arguments():
    w = np.zeros((3, 3))
    for bits in (0, 17):
        with pytest.raises(ValueError, match="index_bits"):
            encode_relative_csr(w, bits)
    with pytest.raises(TypeError, match="index_bits"):
        encode_relative_csr(w, True)
    with pytest.raises(TypeError, match="weight"):
        encode_relative_csr(np.array(["a"]), 3)
    with pytest.raises(ValueError, match="position"):
        decode_relative_csr(RelativeCSR((2, 2), 3, np.array([5], np.uint16), np.ones(1)))
    with pytest.raises(ValueError, match="fit"):
        decode_relative_csr(RelativeCSR((20,), 2, np.array([4], np.uint16), np.ones(1)))
    with pytest.raises(TypeError, match="RelativeCSR"):
        decode_relative_csr(w)
    with pytest.raises(ValueError, match="increasing"):
        count_fillers([3, 3], 2)


def test_decode_refuses_negative_and_float_gaps():
    values = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="gaps must be >= 0, got -1"):
        decode_relative_csr(RelativeCSR((4,), 4, np.array([-1, 2]), values))  # gave [0 0 2 1]
    with pytest.raises(TypeError, match="gaps must be an integer array"):
        decode_relative_csr(RelativeCSR((4,), 4, np.array([0.5, 1.0]), values))  # truncated
    assert decode_relative_csr(RelativeCSR((4,), 4, np.array([0, 1]), values)).tolist() == [
        1.0, 0.0, 2.0, 0.0]  # fmt: skip
