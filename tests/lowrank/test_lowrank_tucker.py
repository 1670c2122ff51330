"""Tucker-2 on the channel modes (Kim et al. 2016): HOSVD/HOOI and the three-layer convolution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.cost import profile
from refimpl.lowrank import mode_dot, partial_tucker, tucker2_decompose_conv, tucker_to_tensor
from refimpl.nn import Conv2d, Linear, Sequential, gradcheck


def test_mode_dot_matches_einsum():
    gen = np.random.default_rng(0)
    X, M = gen.standard_normal((3, 4, 5)), gen.standard_normal((2, 4))
    np.testing.assert_allclose(mode_dot(X, M, 1), np.einsum("jb,abc->ajc", M, X), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_a_planted_tucker2_kernel(seed):
    gen = np.random.default_rng(seed)
    core = gen.standard_normal((4, 3, 3, 3))
    u_out = np.linalg.qr(gen.standard_normal((10, 4)))[0]
    u_in = np.linalg.qr(gen.standard_normal((8, 3)))[0]
    X = tucker_to_tensor(core, [u_out, u_in], [0, 1])
    res = partial_tucker(X, [4, 3], [0, 1])
    core2, factors, errors = res.core, res.factors, res.errors
    assert errors[-1] < 1e-12
    np.testing.assert_allclose(tucker_to_tensor(core2, factors, [0, 1]), X, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(2, 6), min_size=3, max_size=4),
    seed=st.integers(0, 10_000),
    frac=st.floats(0.2, 1.0),
)
def test_hooi_improves_on_hosvd_and_keeps_orthonormal_factors(shape, seed, frac):
    X = np.random.default_rng(seed).standard_normal(shape)
    ranks = [max(1, int(frac * shape[0])), max(1, int(frac * shape[1]))]
    res = partial_tucker(X, ranks, [0, 1], max_iter=20)
    core, factors, errors = res.core, res.factors, res.errors
    assert np.all(np.diff(errors) <= 1e-12)  # HOOI never does worse than where it started
    for U, r in zip(factors, ranks, strict=True):
        np.testing.assert_allclose(U.T @ U, np.eye(r), atol=1e-10)
    # orthonormal factors: ||X - X_hat||^2 = ||X||^2 - ||G||^2
    rel_sq = 1 - np.sum(core**2) / np.sum(X**2)
    assert errors[-1] ** 2 == pytest.approx(max(rel_sq, 0.0), abs=1e-10)
    assert core.shape == (ranks[0], ranks[1], *shape[2:])


@settings(max_examples=20, deadline=None)
@given(
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 5),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_three_layers_compute_the_reconstructed_kernel(c_in, c_out, k, stride, padding, seed):
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=padding, rng=seed)
    r_in, r_out = max(1, c_in - 1), max(1, c_out - 1)
    first, middle, last = tucker2_decompose_conv(conv, r_in, r_out)
    kernel = np.einsum(
        "ta,abyx,bs->tsyx",
        last.weight[:, :, 0, 0].astype(np.float64),
        middle.weight.astype(np.float64),
        first.weight[:, :, 0, 0].astype(np.float64),
    )
    reference = Conv2d(c_in, c_out, k, stride=stride, padding=padding)
    reference.weight = kernel
    reference.bias = conv.bias
    x = np.random.default_rng(seed).standard_normal((2, c_in, 6, 7)).astype(np.float32)
    expected = reference(x)
    np.testing.assert_allclose(last(middle(first(x))), expected,
                               atol=1e-5 * (1 + np.abs(expected).max()))


def test_full_ranks_reproduce_the_convolution_and_cost():
    conv = Conv2d(6, 5, 3, padding=1, rng=0)
    layers = tucker2_decompose_conv(conv, 6, 5)
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 5)).astype(np.float32)
    y = x
    for layer in layers:
        y = layer(y)
    np.testing.assert_allclose(y, conv(x), atol=1e-5)
    small = tucker2_decompose_conv(Conv2d(20, 50, 5, rng=0), 8, 12)
    cost = profile(Sequential(*small), (20, 12, 12))
    assert cost.params == 20 * 8 + 8 * 12 * 25 + 12 * 50 + 50
    assert cost.macs == 144 * 20 * 8 + 64 * 8 * 12 * 25 + 64 * 12 * 50
    assert gradcheck(Sequential(*tucker2_decompose_conv(conv, 2, 3)), x[:, :, :4, :4]).passed


def test_tucker_bad_input():
    conv = Conv2d(4, 6, 3, rng=0)
    with pytest.raises(ValueError, match="rank_in"):
        tucker2_decompose_conv(conv, 5, 2)
    with pytest.raises(ValueError, match="rank_out"):
        tucker2_decompose_conv(conv, 2, 0)
    with pytest.raises(TypeError, match="conv"):
        tucker2_decompose_conv(Linear(3, 3), 1, 1)
    X = np.ones((3, 4, 2))
    with pytest.raises(ValueError, match="modes"):
        partial_tucker(X, [1, 1], [0, 0])
    with pytest.raises(ValueError, match="ranks"):
        partial_tucker(X, [1], [0, 1])
    with pytest.raises(ValueError, match="init"):
        partial_tucker(X, [1, 1], [0, 1], init="random")
    with pytest.raises(ValueError, match="matrix"):
        mode_dot(X, np.ones((2, 3)), 1)
