"""Optimal Brain Surgeon: the recursive inverse, exactness on quadratics, layer-wise OBS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import digits_cnn
from refimpl.nn import Linear, Sequential, Sigmoid
from refimpl.pruning import (
    current_masks,
    inverse_hessian_recursive,
    layer_input_hessians,
    layerwise_obs_prune,
    magnitude_mask,
    obs_prune,
    obs_saliency,
    obs_update,
    output_jacobian,
    parameter_vector,
    prune_model,
    set_parameter_vector,
)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 30),
    n=st.integers(1, 8),
    block=st.integers(1, 9),
    seed=st.integers(0, 10_000),
)
def test_recursion_gives_the_inverse_of_alpha_plus_outer_products(m, n, block, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    alpha = 0.1
    Hinv = inverse_hessian_recursive(X, alpha=alpha, block_size=block)
    direct = np.linalg.inv(alpha * np.eye(n) + X.T @ X / m)
    np.testing.assert_allclose(Hinv, direct, rtol=1e-8, atol=1e-10)


def _least_squares(seed, n=6, p=40):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, n)) @ rng.normal(size=(n, n))  # correlated inputs: H not diagonal
    y = rng.normal(size=p)
    w_star = np.linalg.lstsq(A, y, rcond=None)[0]

    def energy(w):
        return 0.5 * np.mean((A @ w - y) ** 2)

    H = A.T @ A / p
    return A, y, w_star, energy, H


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), q=st.integers(0, 5))
def test_obs_is_exact_on_linear_least_squares(seed, q):
    A, y, w_star, energy, H = _least_squares(seed)
    Hinv = np.linalg.inv(H)
    sal = obs_saliency(w_star, Hinv)
    w_new, Hinv_new = obs_update(w_star, Hinv, q)
    assert w_new[q] == 0.0
    # the loss increase equals the saliency exactly; at the optimum (zero gradient) it is the
    # quadratic form d^T H d / 2, computed without the cancellation of energy(w_new) -
    # energy(w_star), which lost 8 digits for seed 718
    d = w_new - w_star
    assert energy(w_new) - energy(w_star) == pytest.approx(sal[q], rel=1e-6, abs=1e-12)
    assert 0.5 * d @ H @ d == pytest.approx(sal[q], rel=1e-8, abs=1e-12)
    # and the surviving weights are the least-squares optimum without input q
    keep = np.arange(6) != q
    best = np.linalg.lstsq(A[:, keep], y, rcond=None)[0]
    np.testing.assert_allclose(w_new[keep], best, rtol=1e-7, atol=1e-9)
    # the updated inverse is the inverse of H restricted to the survivors
    np.testing.assert_allclose(Hinv_new[np.ix_(keep, keep)], np.linalg.inv(H[np.ix_(keep, keep)]),
                               rtol=1e-7, atol=1e-9)
    assert not Hinv_new[q].any() and not Hinv_new[:, q].any()
    assert obs_saliency(w_new, Hinv_new)[q] == np.inf


def test_obs_beats_obd_style_deletion_on_correlated_quadratic():
    """Deleting a weight and moving the others costs no more than deleting it alone."""
    A, y, w_star, energy, H = _least_squares(3)
    Hinv = np.linalg.inv(H)
    for q in range(6):
        alone = w_star.copy()
        alone[q] = 0.0
        moved, _ = obs_update(w_star, Hinv, q)
        assert energy(moved) <= energy(alone) + 1e-12
        # OBD's prediction is exact for deleting alone only when H is diagonal; OBS's is exact
        assert energy(moved) - energy(w_star) == pytest.approx(obs_saliency(w_star, Hinv)[q])


def test_greedy_obs_prune_matches_constrained_least_squares():
    A, y, w_star, energy, H = _least_squares(7)
    res = obs_prune(w_star, np.linalg.inv(H), 0.5)
    assert res.order.size == 3 and int((~res.mask).sum()) == 3
    assert (res.weight[~res.mask] == 0).all()
    best = np.linalg.lstsq(A[:, res.mask], y, rcond=None)[0]
    np.testing.assert_allclose(res.weight[res.mask], best, rtol=1e-7, atol=1e-9)
    # each step removed the least salient remaining weight
    assert np.all(res.saliency >= 0)
    prot = np.zeros(6, bool)
    prot[res.order[0]] = True
    res2 = obs_prune(w_star, np.linalg.inv(H), 0.5, protected=prot)
    assert res2.mask[res.order[0]]


def test_obs_bad_inputs():
    with pytest.raises(ValueError, match="hessian_inv"):
        obs_saliency(np.ones(3), np.eye(4))
    with pytest.raises(ValueError, match="q must be"):
        obs_update(np.ones(3), np.eye(3), 3)
    H = np.eye(3)
    H[1, 1] = 0.0
    with pytest.raises(ValueError, match="not positive"):
        obs_update(np.ones(3), H, 1)
    with pytest.raises(ValueError, match="alpha"):
        inverse_hessian_recursive(np.ones((2, 2)), alpha=0)
    with pytest.raises(ValueError, match="block_size"):
        inverse_hessian_recursive(np.ones((2, 2)), block_size=0)
    with pytest.raises(ValueError, match="X must be"):
        inverse_hessian_recursive(np.ones(3))
    with pytest.raises(ValueError, match="unprotected"):
        obs_prune(np.ones(2), np.eye(2), 0.9, protected=np.array([True, False]))


def test_output_jacobian_matches_finite_differences():
    model = Sequential(
        ("fc1", Linear(2, 2, rng=0)), ("sig1", Sigmoid()), ("fc2", Linear(2, 1, rng=1)),
        ("sig2", Sigmoid()),
    ).astype(np.float64)
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    J = output_jacobian(model, X)
    theta = parameter_vector(model)
    assert J.shape == (4, theta.size) == (4, 9)
    num = np.zeros_like(J)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = 1e-6
        set_parameter_vector(model, theta + e)
        fp = model.forward(X)[:, 0]
        set_parameter_vector(model, theta - e)
        fm = model.forward(X)[:, 0]
        num[:, k] = (fp - fm) / 2e-6
    set_parameter_vector(model, theta)
    np.testing.assert_allclose(J, num, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        set_parameter_vector(model, np.ones(3))


def test_layerwise_obs_equals_per_row_least_squares_for_a_linear_layer():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    model = Sequential(("fc1", Linear(5, 3, rng=0))).astype(np.float64)
    W0, b0 = model["fc1"].weight.copy(), model["fc1"].bias.copy()
    Y0 = X @ W0.T + b0
    layerwise_obs_prune(model, X, 0.4, damping=0.0)
    mask = current_masks(model)["fc1"]
    assert int((~mask).sum()) == round(0.4 * 15)
    W, b = model["fc1"].weight, model["fc1"].bias
    Xa = np.hstack([X, np.ones((200, 1))])
    for i in range(3):
        cols = np.flatnonzero(np.append(mask[i], True))
        best = np.linalg.lstsq(Xa[:, cols], Y0[:, i], rcond=None)[0]
        np.testing.assert_allclose(np.append(W[i], b[i])[cols], best, rtol=1e-6, atol=1e-8)
        assert (W[i][~mask[i]] == 0).all()


def test_layerwise_obs_reconstructs_better_than_magnitude_on_a_cnn():
    rng = np.random.default_rng(1)
    X = rng.random((64, 1, 8, 8)).astype(np.float32)
    model = digits_cnn(rng=0)
    ref = model.copy()
    a = model["relu1"](model["conv1"](X))
    a = model["pool1"](a)  # input of conv2
    target = ref["conv2"](a)
    obs = model.copy()
    layerwise_obs_prune(obs, X, 0.7, layers=["conv2"])
    mag = model.copy()
    prune_model(mag, 0.7, layers=["conv2"])
    err_obs = np.mean((obs["conv2"](a) - target) ** 2)
    err_mag = np.mean((mag["conv2"](a) - target) ** 2)
    assert err_obs < 0.5 * err_mag
    m = current_masks(obs)["conv2"]
    assert int((~m).sum()) == round(0.7 * m.size)
    # composing with an earlier mask keeps the earlier removals
    prev = magnitude_mask(model["fc1"].weight, 0.5)
    comp = model.copy()
    prune_model(comp, 0.5, layers=["fc1"])
    layerwise_obs_prune(comp, X, 0.8, layers=["fc1"])
    now = current_masks(comp)["fc1"]
    assert not (now & ~prev).any()
    assert int((~now).sum()) == round(0.8 * now.size)


def test_layer_input_hessians_shapes_and_bias_entry():
    model = digits_cnn(rng=0)
    X = np.random.default_rng(2).random((10, 1, 8, 8)).astype(np.float32)
    H = layer_input_hessians(model, X, batch_size=3)
    assert H["conv1"].shape == (1 * 9 + 1,) * 2
    assert H["conv2"].shape == (8 * 9 + 1,) * 2
    assert H["fc1"].shape == (65, 65)
    for h in H.values():
        assert h[-1, -1] == pytest.approx(1.0)  # the constant input of the bias
        np.testing.assert_allclose(h, h.T)


def test_precomputed_hessians_give_the_same_result():
    X = np.random.default_rng(3).random((32, 1, 8, 8)).astype(np.float32)
    model = digits_cnn(rng=0)
    H = layer_input_hessians(model, X)
    a, b = model.copy(), model.copy()
    layerwise_obs_prune(a, X, 0.6)
    layerwise_obs_prune(b, None, 0.6, hessians=H)
    for n in ("conv1", "conv2", "fc1"):
        np.testing.assert_array_equal(a[n].weight, b[n].weight)
    with pytest.raises(ValueError, match="hessians"):
        layerwise_obs_prune(model.copy(), None, 0.6, hessians={"conv1": np.eye(3)})


def test_layerwise_obs_bad_inputs():
    model = digits_cnn(rng=0)
    X = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="damping"):
        layerwise_obs_prune(model, X, 0.5, damping=-1)
    with pytest.raises(ValueError, match="steps"):
        layerwise_obs_prune(model, X, 0.5, steps=0)
    with pytest.raises(ValueError, match="sparsity"):
        layerwise_obs_prune(model, X, 1.2)
