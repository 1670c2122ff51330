"""Truncated SVD of dense layers: Eckart-Young in weight and output space, rank rules, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.cost import profile
from refimpl.lowrank import (
    energy_kept,
    rank_for_budget,
    rank_for_energy,
    svd_compress,
    svd_factorize,
    truncated_svd,
    weight_spectrum,
)
from refimpl.models import digits_mlp
from refimpl.nn import Conv2d, Linear, Sequential


def product(first: Linear, second: Linear) -> np.ndarray:
    return second.weight.astype(np.float64) @ first.weight.astype(np.float64)


def linear_with(W: np.ndarray, seed: int = 0) -> Linear:
    layer = Linear(W.shape[1], W.shape[0], rng=seed)
    layer.weight = W
    return layer


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(1, 14),
    n_out=st.integers(1, 14),
    rank_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_weight_error_is_the_discarded_spectrum(n_in, n_out, rank_frac, seed):
    """Eckart-Young: ||W - W_r||_F = sqrt(sum_{i>r} s_i^2) and ||W - W_r||_2 = s_{r+1}."""
    gen = np.random.default_rng(seed)
    layer = linear_with(gen.standard_normal((n_out, n_in)).astype(np.float32), seed)
    W = layer.weight.astype(np.float64)
    rank = 1 + int(rank_frac * (min(n_in, n_out) - 1))
    first, second = svd_factorize(layer, rank)
    s = np.linalg.svd(W, compute_uv=False)
    E = W - product(first, second)
    atol = 1e-5 * np.linalg.norm(W)  # float32 storage of the factors
    assert np.linalg.norm(E) == pytest.approx(np.sqrt(np.sum(s[rank:] ** 2)), abs=atol)
    s_next = s[rank] if rank < s.size else 0.0
    assert np.linalg.norm(E, 2) == pytest.approx(s_next, abs=atol)
    assert first.weight.shape == (rank, n_in) and second.weight.shape == (n_out, rank)
    assert first.bias is None
    np.testing.assert_array_equal(second.bias, layer.bias)


@settings(max_examples=30, deadline=None)
@given(
    n_in=st.integers(2, 10),
    n_out=st.integers(2, 10),
    extra=st.integers(0, 20),
    seed=st.integers(0, 10_000),
)
def test_output_error_follows_from_the_weight_error(n_in, n_out, extra, seed):
    """||X W^T - X W_r^T||_F = ||W - W_r||_F for X^T X = I, and <= the bounds otherwise."""
    gen = np.random.default_rng(seed)
    layer = linear_with(gen.standard_normal((n_out, n_in)).astype(np.float32), seed)
    rank = max(1, min(n_in, n_out) // 2)
    first, second = svd_factorize(layer, rank)
    s = np.linalg.svd(layer.weight.astype(np.float64), compute_uv=False)
    weight_err = np.sqrt(np.sum(s[rank:] ** 2))
    Q = np.linalg.qr(gen.standard_normal((n_in + extra, n_in)))[0]  # orthonormal columns
    out_err = np.linalg.norm(layer(Q) - second(first(Q)))
    assert out_err == pytest.approx(weight_err, abs=1e-5 * (1 + weight_err))
    X = gen.standard_normal((n_in + extra, n_in)) * gen.uniform(0.1, 3, size=n_in)
    err = np.linalg.norm(layer(X) - second(first(X)))
    s_next = s[rank] if rank < s.size else 0.0
    assert err <= np.linalg.norm(X, 2) * weight_err * (1 + 1e-5) + 1e-5
    assert err <= np.linalg.norm(X) * s_next * (1 + 1e-5) + 1e-5


def test_truncation_beats_other_rank_r_factors():
    gen = np.random.default_rng(3)
    layer = linear_with(gen.standard_normal((12, 9)).astype(np.float32))
    W = layer.weight.astype(np.float64)
    first, second = svd_factorize(layer, 3)
    best = np.linalg.norm(W - product(first, second))
    for _ in range(20):
        B = second.weight + 0.05 * gen.standard_normal(second.weight.shape)
        A = first.weight + 0.05 * gen.standard_normal(first.weight.shape)
        assert np.linalg.norm(W - B @ A) >= best - 1e-6


def test_full_rank_reproduces_the_layer():
    layer = Linear(7, 5, rng=0)
    first, second = svd_factorize(layer, 5)
    x = np.random.default_rng(0).standard_normal((4, 7)).astype(np.float32)
    np.testing.assert_allclose(second(first(x)), layer(x), atol=1e-5)


def test_factors_are_balanced_and_keep_dtype():
    layer = Linear(10, 6, rng=1)
    first, second = svd_factorize(layer, 4)
    assert first.weight.dtype == np.float32 and second.weight.dtype == np.float32
    # rows of A and columns of B have the same norm: sqrt(s_i) each
    np.testing.assert_allclose(np.linalg.norm(first.weight, axis=1),
                               np.linalg.norm(second.weight, axis=0), rtol=1e-5)


@settings(max_examples=50, deadline=None)
@given(
    s=st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=30),
    energy=st.floats(1e-6, 1.0),
)
def test_rank_for_energy_is_the_smallest_sufficient_rank(s, energy):
    s = np.array(s)
    r = rank_for_energy(s, energy)
    assert 1 <= r <= s.size
    if np.sum(s**2) > 0:
        assert energy_kept(s, r) >= energy - 1e-12
        if r > 1:
            assert energy_kept(s, r - 1) < energy


@settings(max_examples=50, deadline=None)
@given(n_in=st.integers(1, 500), n_out=st.integers(1, 500), extra=st.integers(0, 100_000))
def test_rank_for_budget_is_the_largest_fitting_rank(n_in, n_out, extra):
    budget = n_in + n_out + extra
    r = rank_for_budget(n_in, n_out, budget)
    assert 1 <= r <= min(n_in, n_out)
    assert r * (n_in + n_out) <= budget
    assert r == min(n_in, n_out) or (r + 1) * (n_in + n_out) > budget


def test_rank_for_budget_fraction_and_layer_sizes():
    assert rank_for_budget(784, 300, 0.1) == int(0.1 * 784 * 300) // (784 + 300)
    layer = Linear(784, 300, rng=0)
    first, second = svd_factorize(layer, budget=0.1)
    r = first.out_features
    assert r == 21
    assert first.num_parameters() + second.num_parameters() == r * (784 + 300) + 300
    cost = profile(Sequential(first, second), (784,))
    assert cost.params == r * (784 + 300) + 300
    assert cost.macs == r * (784 + 300)


def test_energy_selects_the_rank():
    gen = np.random.default_rng(0)
    U = np.linalg.qr(gen.standard_normal((20, 20)))[0]
    V = np.linalg.qr(gen.standard_normal((30, 20)))[0]
    s = np.array([10.0, 5.0, 1.0] + [1e-3] * 17)
    layer = linear_with((U * s) @ V.T)
    first, _ = svd_factorize(layer, energy=0.99)
    assert first.out_features == 2  # 125 / 126.0 = 0.992
    first, _ = svd_factorize(layer, energy=0.999)
    assert first.out_features == 3


def test_truncated_svd_and_spectrum():
    gen = np.random.default_rng(1)
    W = gen.standard_normal((6, 4))
    U, s, Vt, spectrum = truncated_svd(W, 2)
    assert U.shape == (6, 2) and s.shape == (2,) and Vt.shape == (2, 4)
    np.testing.assert_allclose(spectrum, np.linalg.svd(W, compute_uv=False))
    conv = Conv2d(3, 5, 3, rng=0)
    np.testing.assert_allclose(
        weight_spectrum(conv), np.linalg.svd(conv.weight.reshape(5, -1), compute_uv=False),
        rtol=1e-6,
    )
    assert np.all(np.diff(weight_spectrum(Linear(8, 8, rng=0))) <= 0)


def test_svd_compress_replaces_named_layers():
    model = digits_mlp(rng=0)
    small = svd_compress(model, {"fc1": 8, "fc2": 4})
    assert small.names() == ["flatten", "fc1_1", "fc1_2", "relu1", "fc2_1", "fc2_2", "relu2",
                             "fc3"]
    assert small.num_parameters() == 8 * (64 + 64) + 64 + 4 * (64 + 32) + 32 + 330
    full = svd_compress(model, {"fc1": 64, "fc2": 32})
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(full(x), model(x), atol=1e-4)
    assert "fc1" in model.names()  # the original model is untouched


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(rank=0), ValueError),
        (dict(rank=7), ValueError),
        (dict(rank=2.0), TypeError),
        (dict(), ValueError),
        (dict(rank=2, energy=0.9), ValueError),
        (dict(energy=0.0), ValueError),
        (dict(energy=1.5), ValueError),
        (dict(energy="high"), TypeError),
        (dict(budget=5), ValueError),
        (dict(budget=0.0), ValueError),
    ],
)
def test_svd_factorize_bad_input(kwargs, exc):
    with pytest.raises(exc):
        svd_factorize(Linear(8, 6, rng=0), **kwargs)


def test_other_bad_input():
    with pytest.raises(TypeError, match="linear"):
        svd_factorize(Conv2d(2, 2, 3), 1)
    with pytest.raises(ValueError, match="s must"):
        rank_for_energy(np.array([1.0, -1.0]), 0.5)
    with pytest.raises(ValueError, match="s must"):
        rank_for_energy(np.ones((2, 2)), 0.5)
    with pytest.raises(ValueError, match="rank"):
        energy_kept(np.ones(3), 4)
    with pytest.raises(ValueError, match="matrix"):
        truncated_svd(np.ones(3), 1)
    with pytest.raises(ValueError, match="finite"):
        truncated_svd(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(TypeError, match="relu1"):
        svd_compress(svd_compress(digits_mlp(), {"fc1": 4}), {"fc1_1": 2, "relu1": 1})
    with pytest.raises(ValueError, match="ranks"):
        svd_compress(digits_mlp(), {})
