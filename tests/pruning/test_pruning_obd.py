"""Optimal Brain Damage: the second-order backward pass and the saliency formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import digits_cnn
from refimpl.nn import (
    BatchNorm1d,
    Conv2d,
    CrossEntropyLoss,
    Flatten,
    Linear,
    MaxPool2d,
    MSELoss,
    ReLU,
    Sequential,
    Tanh,
)
from refimpl.pruning import (
    current_masks,
    hessian_diagonal,
    obd_prune,
    obd_saliencies,
    obd_saliency,
)


def _grad(model, X, y, loss, name):
    out = model.forward(X)
    loss(out, y)
    model.backward(loss.backward())
    return model[name].grads["weight"].copy()


def _fd_hessian_diag(model, X, y, loss, name, eps=1e-5):
    """Central differences of the gradient: d/dw_k of dE/dw_k, entry by entry."""
    w = model[name].params["weight"]
    flat = w.reshape(-1)
    diag = np.zeros(flat.size)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        gp = _grad(model, X, y, loss, name).reshape(-1)[k]
        flat[k] = old - eps
        gm = _grad(model, X, y, loss, name).reshape(-1)[k]
        flat[k] = old
        diag[k] = (gp - gm) / (2 * eps)
    return diag.reshape(w.shape)


def test_linear_cross_entropy_is_exact():
    rng = np.random.default_rng(0)
    model = Sequential(("fc1", Linear(6, 4, rng=1))).astype(np.float64)
    X = rng.normal(size=(20, 6))
    y = rng.integers(0, 4, size=20)
    diag = hessian_diagonal(model, (X, y))["fc1"]
    fd = _fd_hessian_diag(model, X, y, CrossEntropyLoss(), "fc1")
    np.testing.assert_allclose(diag, fd, rtol=1e-6, atol=1e-9)


def test_conv_mse_is_exact():
    """A shared convolution weight: the diagonal sums over the positions it is used at."""
    rng = np.random.default_rng(1)
    model = Sequential(
        ("conv1", Conv2d(2, 3, 3, padding=1, stride=2, rng=2)), ("flatten", Flatten())
    ).astype(np.float64)
    X = rng.normal(size=(5, 2, 6, 6))
    T = rng.normal(size=(5, 3 * 3 * 3))
    diag = hessian_diagonal(model, (X, T), loss="mse")["conv1"]
    fd = _fd_hessian_diag(model, X, T, MSELoss(), "conv1")
    np.testing.assert_allclose(diag, fd, rtol=1e-6, atol=1e-9)


def test_two_layer_relu_mse_is_exact_in_both_layers():
    rng = np.random.default_rng(2)
    model = Sequential(
        ("fc1", Linear(5, 7, rng=3)), ("relu1", ReLU()), ("fc2", Linear(7, 3, rng=4))
    ).astype(np.float64)
    X = rng.normal(size=(30, 5))
    T = rng.normal(size=(30, 3))
    diag = hessian_diagonal(model, (X, T), loss="mse")
    for name in ("fc1", "fc2"):
        fd = _fd_hessian_diag(model, X, T, MSELoss(), name)
        np.testing.assert_allclose(diag[name], fd, rtol=1e-5, atol=1e-9)


def test_conv_pool_network_runs_and_is_nonnegative_and_batch_independent():
    model = digits_cnn(rng=0).astype(np.float64)
    rng = np.random.default_rng(3)
    X = rng.random((40, 1, 8, 8))
    y = rng.integers(0, 10, size=40)
    a = hessian_diagonal(model, (X, y), batch_size=40)
    b = hessian_diagonal(model, (X, y), batch_size=7)
    assert set(a) == {"conv1", "conv2", "fc1"}
    for name in a:
        assert a[name].shape == model[name].weight.shape
        assert (a[name] >= 0).all()  # Levenberg-Marquardt keeps the diagonal non-negative
        assert a[name].max() > 0
        np.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-15)


def test_tanh_network_matches_gauss_newton_diagonal_of_last_layer():
    rng = np.random.default_rng(4)
    model = Sequential(
        ("fc1", Linear(4, 6, rng=5)), ("tanh1", Tanh()), ("fc2", Linear(6, 2, rng=6))
    ).astype(np.float64)
    X = rng.normal(size=(25, 4))
    T = rng.normal(size=(25, 2))
    diag = hessian_diagonal(model, (X, T), loss="mse")
    fd = _fd_hessian_diag(model, X, T, MSELoss(), "fc2")  # last layer: exact
    np.testing.assert_allclose(diag["fc2"], fd, rtol=1e-5, atol=1e-9)
    # first layer: GN/LM drops the f'' term; check against the explicit formula
    a = X @ model["fc1"].weight.T + model["fc1"].bias
    d = (1 - np.tanh(a) ** 2) ** 2  # f'(a)^2
    h_out = np.full((25, 2), 2.0 / (25 * 2))
    h_a = d * (h_out @ model["fc2"].weight ** 2)
    np.testing.assert_allclose(diag["fc1"], h_a.T @ X**2, rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 8),
    seed=st.integers(0, 10_000),
)
def test_saliency_is_exact_loss_increase_for_diagonal_quadratic(n, seed):
    """E(w) = E0 + 1/2 (w - w*)^T H (w - w*) with H diagonal, at the minimum w = w*."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.1, 5.0, size=n)
    w_star = rng.normal(size=n)

    def energy(w):
        return 1.0 + 0.5 * np.sum(h * (w - w_star) ** 2)

    sal = obd_saliency(w_star, h)
    for k in range(n):
        w = w_star.copy()
        w[k] = 0.0
        assert np.isclose(energy(w) - energy(w_star), sal[k], rtol=1e-12)


def test_saliency_shape_mismatch():
    with pytest.raises(ValueError, match="hessian_diag"):
        obd_saliency(np.ones(3), np.ones(4))


def test_bad_inputs():
    model = digits_cnn(rng=0)
    X = np.zeros((4, 1, 8, 8), dtype=np.float32)
    y = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="loss"):
        hessian_diagonal(model, (X, y), loss="hinge")
    with pytest.raises(ValueError, match="batch_size"):
        hessian_diagonal(model, (X, y), batch_size=0)
    with pytest.raises(ValueError, match="layers"):
        hessian_diagonal(model, (X, y), layers=["relu1"])
    with pytest.raises(TypeError, match="data"):
        hessian_diagonal(model, X)
    bad = Sequential(("fc1", Linear(4, 4)), ("odd", BatchNorm1d(4)), ("fc2", Linear(4, 2)))
    with pytest.raises(TypeError, match="odd"):
        hessian_diagonal(bad, (np.zeros((2, 4), np.float32), np.zeros(2, np.int64)))


def test_obd_prune_removes_lowest_saliency_globally():
    model = digits_cnn(rng=0)
    rng = np.random.default_rng(5)
    X = rng.random((60, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=60)
    sal = obd_saliencies(model, (X, y))
    obd_prune(model, (X, y), 0.6)
    masks = current_masks(model)
    total = sum(m.size for m in masks.values())
    removed = sum(int((~m).sum()) for m in masks.values())
    assert removed == round(0.6 * total)
    kept_min = min(sal[n][masks[n]].min() for n in masks)
    removed_max = max(sal[n][~masks[n]].max() for n in masks)
    assert removed_max <= kept_min
    # a second, higher round keeps the first round's removals
    obd_prune(model, (X, y), 0.8)
    masks2 = current_masks(model)
    for n in masks:
        assert not (masks2[n] & ~masks[n]).any()


def test_maxpool_routing_in_second_order_pass():
    """Through a max-pool the diagonal flows only to the winning positions."""
    model = Sequential(
        ("conv1", Conv2d(1, 2, 3, padding=1, rng=0)),
        ("pool1", MaxPool2d(2)),
        ("flatten", Flatten()),
    ).astype(np.float64)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(6, 1, 4, 4))
    T = rng.normal(size=(6, 8))
    diag = hessian_diagonal(model, (X, T), loss="mse")["conv1"]
    fd = _fd_hessian_diag(model, X, T, MSELoss(), "conv1")
    np.testing.assert_allclose(diag, fd, rtol=1e-5, atol=1e-9)
