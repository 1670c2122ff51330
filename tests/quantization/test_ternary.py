"""Ternary weights: TWN's threshold and scale, TTQ's trained scales and their gradients."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import Linear, Sequential
from refimpl.quantization import (
    TTQ,
    TWN,
    optimal_ternary,
    quantize_model,
    twn_ternarize,
    twn_threshold,
)


@settings(max_examples=50)
@given(
    w=arrays(np.float64, st.integers(2, 40), elements=st.floats(-3, 3)),
    other=st.floats(0, 5),
)
def test_twn_alpha_is_the_least_squares_scale_of_its_pattern(w, other):
    alpha, t = twn_ternarize(w)
    best = np.sum((w - alpha * t) ** 2)
    assert np.sum((w - other * t) ** 2) >= best - 1e-9 * (1 + np.sum(w**2))


def test_twn_threshold_is_close_to_the_optimum_for_gaussian_weights():
    w = np.random.default_rng(0).standard_normal(200_000)
    _, delta_opt, t_opt = optimal_ternary(w)
    delta = twn_threshold(w)
    # the optimal threshold of a standard normal is about 0.61 = 0.77 E|w|; 0.7 E|w| = 0.56 is close
    assert abs(delta - delta_opt) / delta_opt < 0.1
    alpha, t = twn_ternarize(w)
    a_opt = np.abs(w[t_opt != 0]).mean()
    err_twn = np.sum((w - alpha * t) ** 2)
    err_opt = np.sum((w - a_opt * t_opt) ** 2)
    assert err_opt <= err_twn <= 1.01 * err_opt


def test_optimal_ternary_beats_a_brute_force_search():
    w = np.random.default_rng(1).standard_normal(50)
    alpha, _, t = optimal_ternary(w)
    err = np.sum((w - alpha * t) ** 2)
    for delta in np.linspace(0, 3, 301):
        tt = np.sign(w) * (np.abs(w) > delta)
        if tt.any():
            a = np.abs(w[tt != 0]).mean()
            assert np.sum((w - a * tt) ** 2) >= err - 1e-12


def test_twn_layer_has_three_values_and_the_ste_gradient():
    rng = np.random.default_rng(0)
    layer = Linear(20, 10, rng=0).parametrize("weight", TWN())
    w = layer.weight
    assert np.unique(w).size == 3 and np.unique(w)[1] == 0
    x = rng.standard_normal((4, 20)).astype(np.float32)
    g = rng.standard_normal((4, 10)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    assert np.allclose(layer.grads["weight.orig"], g.T @ x, atol=1e-5)


def test_ttq_scale_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    layer = Linear(12, 6, rng=0).astype(np.float64).parametrize("weight", TTQ(0.05))
    x = rng.standard_normal((5, 12))
    R = rng.standard_normal((5, 6))
    layer.forward(x)
    layer.backward(R)
    for key in ("weight.wp", "weight.wn"):
        p = layer.params[key]
        eps = 1e-6
        p += eps
        up = np.sum(layer.forward(x) * R)
        p -= 2 * eps
        down = np.sum(layer.forward(x) * R)
        p += eps
        fd = (up - down) / (2 * eps)
        assert layer.grads[key] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_ttq_latent_gradient_is_scaled_by_the_set_of_each_weight():
    rng = np.random.default_rng(0)
    layer = Linear(12, 6, rng=0).astype(np.float64).parametrize("weight", TTQ(0.3))
    x, R = rng.standard_normal((5, 12)), rng.standard_normal((5, 6))
    layer.forward(x)
    layer.backward(R)
    latent = layer.params["weight.orig"]
    delta = 0.3 * np.abs(latent).max()
    g = R.T @ x
    wp, wn = float(layer.params["weight.wp"]), float(layer.params["weight.wn"])
    scale = np.where(latent > delta, wp, np.where(latent < -delta, wn, 1.0))
    assert np.allclose(layer.grads["weight.orig"], g * scale)


def test_ttq_deploys_three_values_per_layer():
    model = Sequential(("fc1", Linear(30, 20, rng=0)), ("fc2", Linear(20, 5, rng=1)))
    quantize_model(model, TTQ())
    for name in ("fc1", "fc2"):
        layer = model[name]
        p = layer.chain("weight")[0]
        params, buffers = layer.stored_arrays("weight", 0)
        x = layer.params["weight.orig"]
        w = layer.weight
        keep = np.ones(w.shape, bool)
        dep = p.deploy(x, w, params, buffers, keep)
        assert set(np.unique(dep.ints["codes"])) <= {0, 1, 2}
        back = TTQ.undeploy(dep, w.shape, keep)
        assert np.unique(back).size == 3
        assert np.allclose(back, w.ravel())


def test_twn_deploy_round_trip():
    layer = Linear(30, 20, rng=0).parametrize("weight", TWN())
    params, buffers = layer.stored_arrays("weight", 0)
    w = layer.weight
    keep = np.ones(w.shape, bool)
    dep = TWN().deploy(layer.params["weight.orig"], w, params, buffers, keep)
    assert np.allclose(TWN.undeploy(dep, w.shape, keep), w.ravel())


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="threshold"):
        TTQ(1.5)
    with pytest.raises(ValueError, match="factor"):
        TWN(-1)
    with pytest.raises(TypeError, match="weight"):
        twn_ternarize(np.arange(4))
