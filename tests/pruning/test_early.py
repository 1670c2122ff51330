"""Skeletonization relevance and the weight-elimination penalty (Mozer & Smolensky 1989;
Weigend, Rumelhart & Huberman 1991)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.models import digits_cnn, mlp
from refimpl.nn import SGD, Mask, fit, gradcheck
from refimpl.pruning import (
    WeightElimination,
    linear_error,
    relevance_estimate,
    skeletonization_prune,
    skeletonize,
    unit_relevance,
    weight_elimination_grad,
    weight_elimination_penalty,
)


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    model = mlp([8, 5], rng=seed, in_features=6, num_classes=3)
    X = rng.standard_normal((40, 6))
    y = rng.integers(0, 3, 40)
    return model.astype(np.float64), (X, y)


def _error_with_alpha(model, layer, data, alpha, error):
    """The error with the layer's outputs scaled by alpha (a reference, built by hand)."""
    X, y = data
    names = model.names()
    h = X
    for name in names:
        h = model[name].forward(h)
        if name == layer:
            shape = (1, -1) + (1,) * (h.ndim - 2)
            h = h * alpha.reshape(shape)
    if error == "linear":
        return linear_error(h, y)[0]
    p = np.exp(h - h.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_mlp_layer_names():
    model, _ = _toy()
    assert [n for n in model.names() if n.startswith("fc")] == ["fc1", "fc2", "fc3"]


@pytest.mark.parametrize("error", ["linear", "cross_entropy"])
@pytest.mark.parametrize("layer", ["fc1", "fc2"])
def test_estimate_is_the_derivative_in_alpha(layer, error):
    model, data = _toy()
    est = relevance_estimate(model, layer, data, error=error, batch_size=16)
    n = model[layer].weight.shape[0]
    eps = 1e-6
    for i in range(n):
        up, down = np.ones(n), np.ones(n)
        up[i] += eps
        down[i] -= eps
        fd = (_error_with_alpha(model, layer, data, up, error)
              - _error_with_alpha(model, layer, data, down, error)) / (2 * eps)  # fmt: skip
        assert abs(est[i] + fd) < 1e-7 * max(1.0, abs(fd))


def test_estimate_on_conv_channels():
    rng = np.random.default_rng(1)
    model = digits_cnn(rng=0).astype(np.float64)
    X, y = rng.standard_normal((10, 1, 8, 8)), rng.integers(0, 10, 10)
    est = relevance_estimate(model, "conv1", (X, y))
    n = model["conv1"].weight.shape[0]
    assert est.shape == (n,)
    i, eps = 2, 1e-6
    up, down = np.ones(n), np.ones(n)
    up[i] += eps
    down[i] -= eps
    fd = (_error_with_alpha(model, "conv1", (X, y), up, "linear")
          - _error_with_alpha(model, "conv1", (X, y), down, "linear")) / (2 * eps)  # fmt: skip
    assert abs(est[i] + fd) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("error", ["linear", "cross_entropy"])
def test_exact_relevance_is_the_loss_difference(error):
    model, data = _toy()
    rel = unit_relevance(model, "fc1", data, error=error, batch_size=15)
    base = _error_with_alpha(model, "fc1", data, np.ones(8), error)
    for i in range(8):
        alpha = np.ones(8)
        alpha[i] = 0
        assert abs(rel[i] - (_error_with_alpha(model, "fc1", data, alpha, error) - base)) < 1e-12
        # removing the unit for real costs the same
        pruned = skeletonize(model, "fc1", np.arange(8) != i)
        got = _error_with_alpha(pruned, "fc1", data, np.ones(8), error)
        assert abs(got - base - rel[i]) < 1e-12


def test_smoothed_estimate_and_bad_input():
    model, data = _toy()
    a = relevance_estimate(model, "fc1", data, smoothing=0.0, batch_size=40)
    b = relevance_estimate(model, "fc1", data)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="smoothing"):
        relevance_estimate(model, "fc1", data, smoothing=1.0)
    with pytest.raises(ValueError, match="error"):
        unit_relevance(model, "fc1", data, error="squared")
    with pytest.raises(ValueError, match="layer"):
        unit_relevance(model, "relu1", data)
    with pytest.raises(ValueError, match="keep"):
        skeletonize(model, "fc1", np.ones(3, bool))


def test_skeletonize_masks_through_mask_update():
    model, (X, _) = _toy()
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)
    pruned = skeletonize(model, "fc1", keep)
    assert Mask.of(pruned["fc1"]).sum() == keep.sum() * 6
    assert Mask.of(model["fc1"]) is None  # the original is untouched
    h = pruned["fc1"].forward(pruned["flatten"].forward(X))
    assert np.all(h[:, ~keep] == 0)


def test_linear_error_gradient():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    _, g = linear_error(z, y)
    res = gradcheck(lambda zz: linear_error(zz, y)[0], [z], analytic=[g], tol=1e-7)
    assert res.passed


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-5, 5)),
    st.floats(0.05, 3.0),
)
def test_weight_elimination_gradient(w, scale):
    g = weight_elimination_grad(w, scale)
    eps = 1e-6
    for k in range(w.size):
        up, down = w.copy(), w.copy()
        up[k] += eps
        down[k] -= eps
        fd = (weight_elimination_penalty(up, scale) - weight_elimination_penalty(down, scale)) / (
            2 * eps
        )
        assert abs(g[k] - fd) < 1e-6 * max(1.0, abs(fd)) + 1e-8


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-50, 50)),
       st.floats(0.01, 2.0))  # fmt: skip
def test_weight_elimination_limits(w, scale):
    per = np.array([weight_elimination_penalty(np.array([v]), scale) for v in w])
    assert np.all(per < 1.0) and np.all(per >= 0)  # bounded: lambda at most per weight
    small = np.abs(w) < 0.01 * scale  # L2-like near zero
    u = (w[small] / scale) ** 2
    assert np.all(np.abs(per[small] - u) <= u**2 + 1e-300)
    big = np.abs(w) > 100 * scale  # a count of the large weights
    assert np.all(per[big] > 1 - 1e-4)


def test_weight_elimination_callback_and_bad_input():
    model, (X, y) = _toy()
    cb = WeightElimination(0.01, scale=0.5, layers=["fc1"])
    assert cb.penalty(model) == pytest.approx(
        0.01 * weight_elimination_penalty(model["fc1"].weight, 0.5))
    # training with a large strength shrinks the penalized layer's small weights
    before = np.abs(model["fc1"].weight).copy()
    fit(model, (X, y), epochs=20, optimizer=SGD(0.05), callbacks=[cb], verbose=False, rng=0)
    assert np.median(np.abs(model["fc1"].weight)) < np.median(before)
    with pytest.raises(ValueError, match="scale"):
        WeightElimination(0.1, scale=0.0)
    with pytest.raises(ValueError, match="strength"):
        WeightElimination(-1.0)
    with pytest.raises(TypeError, match="strength"):
        WeightElimination("big")


def test_skeletonization_prune_removes_the_least_relevant_one_at_a_time():
    model, data = _toy()
    pruned = skeletonization_prune(model, "fc1", data, sparsity=0.25, step=1)
    kept = Mask.of(pruned["fc1"]).any(axis=1)
    assert kept.sum() == 6
    # the first unit removed is the one with the smallest estimate on the intact network
    first = int(np.argmin(relevance_estimate(model, "fc1", data)))
    assert not kept[first]
    # one step of 2 removes the two smallest estimates at once
    two = skeletonization_prune(model, "fc1", data, sparsity=0.25, step=2)
    order = np.argsort(relevance_estimate(model, "fc1", data), kind="stable")[:2]
    assert set(np.flatnonzero(~Mask.of(two["fc1"]).any(axis=1))) == set(order)
    assert Mask.of(model["fc1"]) is None
    with pytest.raises(ValueError, match="sparsity"):
        skeletonization_prune(model, "fc1", data, sparsity=1.0)
    with pytest.raises(ValueError, match="step"):
        skeletonization_prune(model, "fc1", data, sparsity=0.5, step=0)
