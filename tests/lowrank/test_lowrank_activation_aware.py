"""Activation-aware low rank: never worse than the plain SVD on the data, equal on white inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.baselines import load_baseline
from refimpl.data import load_digits
from refimpl.lowrank import (
    activation_aware_compress,
    activation_aware_factorize,
    activation_aware_svd,
    layer_inputs,
    relative_output_error,
    svd_compress,
    svd_factorize,
    truncated_svd,
)
from refimpl.nn import Conv2d, Linear


def _output_error(W: np.ndarray, V: np.ndarray, X: np.ndarray) -> float:
    """Mean squared output error per sample, X of shape (N, in)."""
    return float(np.sum((X @ (W - V).T) ** 2) / len(X))


def _plain(W: np.ndarray, rank: int) -> np.ndarray:
    U, s, Vt, _ = truncated_svd(W, rank)
    return (U * s) @ Vt


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(2, 12),
    n_out=st.integers(2, 12),
    n_samples=st.integers(1, 40),
    damping=st.sampled_from([1e-6, 1e-2, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_never_worse_than_the_plain_svd_at_any_rank(n_in, n_out, n_samples, damping, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_in)) * rng.uniform(0.05, 3.0, size=n_in)
    X = X @ (np.eye(n_in) + 0.5 * rng.normal(size=(n_in, n_in)))  # correlated, maybe singular
    W = rng.normal(size=(n_out, n_in))
    G = X.T @ X / n_samples
    for rank in range(1, min(n_in, n_out) + 1):
        res = activation_aware_svd(W, G, rank, damping=damping)
        aware = _output_error(W, res.second @ res.first, X)
        plain = _output_error(W, _plain(W, rank), X)
        assert aware <= plain * (1 + 1e-7) + 1e-10, rank


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(2, 10), n_out=st.integers(2, 10), c=st.floats(0.1, 10.0),
       seed=st.integers(0, 10_000))  # fmt: skip
def test_equal_to_the_plain_svd_when_the_inputs_are_white(n_in, n_out, c, seed):
    rng = np.random.default_rng(seed)
    m = 3 * n_in
    Q, _ = np.linalg.qr(rng.normal(size=(m, m)))
    X = np.sqrt(c * m) * Q[:, :n_in]  # X^T X / m = c I
    np.testing.assert_allclose(X.T @ X / m, c * np.eye(n_in), atol=1e-9)
    W = rng.normal(size=(n_out, n_in))
    for rank in range(1, min(n_in, n_out)):
        res = activation_aware_svd(W, X.T @ X / m, rank, damping=0.0)
        np.testing.assert_allclose(res.second @ res.first, _plain(W, rank), atol=1e-8)
        np.testing.assert_allclose(res.spectrum, np.sqrt(c) * np.linalg.svd(W, compute_uv=False),
                                   rtol=1e-8)  # fmt: skip


def test_the_discarded_spectrum_is_the_output_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    W = rng.normal(size=(6, 8))
    res = activation_aware_svd(W, X.T @ X / 200, 3, damping=0.0)
    assert _output_error(W, res.second @ res.first, X) == pytest.approx(
        np.sum(res.spectrum[3:] ** 2), rel=1e-8)
    assert res.first.shape == (3, 8) and res.second.shape == (6, 3)


def test_singular_gram_without_damping_fails_clearly():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 8))
    with pytest.raises(np.linalg.LinAlgError, match="damping"):
        activation_aware_svd(rng.normal(size=(4, 8)), X.T @ X / 3, 2, damping=0.0)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits()
    return X[:300], X[300:600]


def test_factorize_a_trained_layer(digits):
    X, X_val = digits
    model = load_baseline("digits_mlp")
    inputs = layer_inputs(model, "fc2", X)
    for rank in (4, 8, 16):
        aware = activation_aware_factorize(model["fc2"], inputs, rank)
        plain = svd_factorize(model["fc2"], rank)
        assert [layer.weight.shape for layer in aware] == [(rank, 64), (32, rank)]
        np.testing.assert_array_equal(aware[1].bias, model["fc2"].bias)
        assert relative_output_error(model["fc2"], aware, inputs) < relative_output_error(
            model["fc2"], plain, inputs)
    by_energy = activation_aware_factorize(model["fc2"], inputs, energy=0.99)
    by_budget = activation_aware_factorize(model["fc2"], inputs, budget=0.5)
    assert by_energy[0].out_features <= 32 and by_budget[0].out_features == 1024 // 96


def test_compress_a_model_sequentially(digits):
    X, X_val = digits
    model = load_baseline("digits_mlp")
    before = model.state_dict()
    ranks = {"fc2": 8, "fc1": 12}
    aware = activation_aware_compress(model, X, ranks)
    independent = activation_aware_compress(model, X, ranks, sequential=False)
    plain = svd_compress(model, ranks)
    assert aware.names()[:5] == ["flatten", "fc1_1", "fc1_2", "relu1", "fc2_1"]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])  # the original is untouched

    def err(m):
        return float(np.linalg.norm(m.forward(X_val) - model.forward(X_val))
                     / np.linalg.norm(model.forward(X_val)))  # fmt: skip

    assert err(aware) < err(plain)
    assert err(aware) <= err(independent) * 1.05


def test_bad_arguments_name_the_argument(digits):
    X, _ = digits
    layer = Linear(8, 4, rng=0)
    inputs = np.random.default_rng(0).normal(size=(20, 8))
    with pytest.raises(ValueError, match="rank"):
        activation_aware_factorize(layer, inputs, 0)
    with pytest.raises(TypeError, match="rank"):
        activation_aware_factorize(layer, inputs, 2.0)
    with pytest.raises(ValueError, match="exactly one"):
        activation_aware_factorize(layer, inputs)
    with pytest.raises(ValueError, match="inputs"):
        activation_aware_factorize(layer, inputs[:, :5], 2)
    with pytest.raises(TypeError, match="linear"):
        activation_aware_factorize(Conv2d(1, 2, 3), inputs, 2)
    with pytest.raises(ValueError, match="gram"):
        activation_aware_svd(np.ones((4, 8)), np.eye(5), 2)
    with pytest.raises(ValueError, match="damping"):
        activation_aware_svd(np.ones((4, 8)), np.eye(8), 2, damping=-0.1)
    with pytest.raises(ValueError, match="ranks"):
        activation_aware_compress(load_baseline("digits_mlp"), X, {"fc7": 3})
    with pytest.raises(TypeError, match="model"):
        activation_aware_compress("mlp", X, {"fc1": 3})
