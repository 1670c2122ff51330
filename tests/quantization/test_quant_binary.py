"""BinaryConnect, BNN activations and XNOR-Net scaling factors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import SGD, Conv2d, Linear, Sequential, fit, gradcheck
from refimpl.quantization import (
    BinaryActivation,
    BinaryConnect,
    XNORWeights,
    binarize,
    deterministic,
    glorot_scale,
    xnor_scale,
)


def test_binaryconnect_weights_are_plus_minus_h_and_real_weights_are_kept():
    layer = Linear(30, 20, rng=0)
    w0 = layer.weight.copy()
    p = BinaryConnect()
    layer.parametrize("weight", p)
    H = np.sqrt(1.5 / (30 + 20))
    assert layer.buffers["weight.scale"] == pytest.approx(H)  # per-tensor state in the layer
    w = layer.weight
    assert set(np.unique(w)) == {np.float32(-H), np.float32(H)}
    assert np.array_equal(np.sign(w), np.where(w0 >= 0, 1, -1))
    assert np.array_equal(layer.params["weight.real"], np.clip(w0, -H, H).astype(np.float32))


def test_binaryconnect_step_uses_ste_and_clips_real_weights():
    rng = np.random.default_rng(0)
    layer = Linear(5, 3, rng=0)
    layer.parametrize("weight", BinaryConnect(scale=1.0))
    real = np.array([[0.5, -0.2, 1.0, -1.0, 0.0]] * 3, np.float32)
    layer.params["weight.real"][...] = real
    x = rng.standard_normal((4, 5)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    # straight through: the gradient of the binary weight reaches the real one unchanged
    assert np.allclose(layer.grads["weight.real"], g.T @ x)
    model = Sequential(("fc", layer))
    SGD(10.0).step(model)  # a huge step pushes the real weights far out...
    assert np.abs(layer.params["weight.real"]).max() <= 1.0  # ...and constrain clips them back
    # a weight held outside [-H, H] gets no gradient (the clipped STE of BinaryConnect)
    layer.params["weight.real"][0, 0] = 3.0
    layer.forward(x)
    layer.backward(g)
    assert layer.grads["weight.real"][0, 0] == 0


@settings(max_examples=20, deadline=None)
@given(x=arrays(np.float64, 5, elements=st.floats(-1.5, 1.5)), seed=st.integers(0, 100))
def test_stochastic_binarization_is_unbiased_for_the_clipped_weight(x, seed):
    n = 20_000
    draws = binarize(np.tile(x, (n, 1)), stochastic=True, rng=seed)
    assert set(np.unique(draws)) <= {-1.0, 1.0}
    assert np.allclose(draws.mean(axis=0), np.clip(x, -1, 1), atol=5 / np.sqrt(n))


def test_stochastic_binaryconnect_samples_in_training_and_is_deterministic_to_evaluate():
    layer = Linear(50, 40, rng=0)
    p = BinaryConnect(stochastic=True, rng=0)
    model = Sequential(("fc", layer))
    layer.parametrize("weight", p)
    a, b = layer.weight, layer.weight
    assert not np.array_equal(a, b)  # a new sample per forward pass
    with deterministic(model):
        c, d = layer.weight, layer.weight
        assert p.sampling is False
    assert p.sampling is True
    assert np.array_equal(c, d)
    assert np.array_equal(np.sign(c), np.where(layer.params["weight.real"] >= 0, 1, -1))


def test_binaryconnect_fine_tunes_with_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 20)).astype(np.float32)
    y = (X[:, :10].sum(1) > X[:, 10:].sum(1)).astype(np.int64)
    model = Sequential(("fc", Linear(20, 2, rng=0)))
    model["fc"].parametrize("weight", BinaryConnect())
    hist = fit(model, (X, y), epochs=10, optimizer=SGD(0.05, momentum=0.9), rng=0,
               verbose=False)
    assert hist.accuracy[-1] > 0.9
    H = model["fc"].buffers["weight.scale"]
    assert np.all(np.isin(model["fc"].weight, np.float32([-H, H])))


def test_glorot_scale_of_a_convolution():
    assert glorot_scale((20, 1, 5, 5)) == pytest.approx(np.sqrt(1.5 / (25 + 500)))


# --------------------------------------------------------------------------------- XNOR-Net
def test_xnor_weights_are_plus_minus_alpha_per_filter_with_least_squares_alpha():
    conv = Conv2d(3, 4, 3, rng=0)
    theta = conv.weight.copy()
    conv.parametrize("weight", XNORWeights())
    w = conv.weight
    alpha = np.abs(theta).mean(axis=(1, 2, 3))
    for i in range(4):
        assert set(np.abs(np.unique(w[i]))) == {np.float32(alpha[i])}
        # alpha = mean|theta| minimises ||theta - a sign(theta)||^2 over a
        sign = np.where(theta[i] >= 0, 1, -1)
        def err(a, i=i, sign=sign):
            return ((theta[i] - a * sign) ** 2).sum()
        assert err(alpha[i]) <= min(err(alpha[i] * 1.05), err(alpha[i] * 0.95))
    assert np.allclose(xnor_scale(theta)[:, 0, 0, 0], alpha)


def test_xnor_gradient_through_alpha_is_exact():
    """Away from the sign's jumps the weight depends on theta only through alpha: gradcheck it."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(1.5, 3.0, (3, 4)) * rng.choice([-1, 1], (3, 4))  # |theta| > 1: no STE
    p = XNORWeights()
    params, buffers = p.init(theta)
    G = rng.standard_normal((3, 4))

    def f(t):
        return float((p.materialize(t, {}, {}) * G).sum())

    analytic = p.pullback(G, theta, params, buffers)[0]
    res = gradcheck(f, [theta.copy()], analytic=[analytic])
    assert res.passed, res


def test_xnor_gradient_includes_the_straight_through_term():
    theta = np.array([[0.5, -0.25, 2.0, -0.75]])
    p = XNORWeights()
    params, buffers = p.init(theta)
    g = np.array([[1.0, 2.0, 3.0, 4.0]])
    alpha = np.abs(theta).mean()
    sign = np.sign(theta)
    expected = alpha * g * (np.abs(theta) <= 1) + sign / 4 * (g * sign).sum()
    assert np.allclose(p.pullback(g, theta, params, buffers)[0], expected)


# --------------------------------------------------------------------------------- BNN
def test_binary_activation_forward_and_hardtanh_ste():
    act = BinaryActivation()
    x = np.array([[-2.0, -0.5, 0.0, 0.3, 1.0, 1.5]])
    assert np.array_equal(act.forward(x), np.array([[-1, -1, 1, 1, 1, 1]], float))
    assert np.array_equal(act.backward(np.full_like(x, 2.0)), np.array([[0, 2, 2, 2, 2, 0.0]]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="scale"):
        BinaryConnect(scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        BinaryConnect(scale="he")
    with pytest.raises(TypeError, match="x"):
        binarize(np.array([1, -1]))
    with pytest.raises(ValueError, match="dimensions"):
        xnor_scale(np.ones(3))
    with pytest.raises(ValueError, match="dimensions"):
        glorot_scale((3,))


def test_binarize_keeps_nan():
    y = binarize(np.array([1.0, -2.0, np.nan, 0.0], dtype=np.float32))
    assert y.dtype == np.float32 and np.isnan(y[2]) and y[[0, 1, 3]].tolist() == [1, -1, 1]
