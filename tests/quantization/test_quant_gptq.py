"""Post-training quantization: RTN, OBQ's exact greedy step, GPTQ, GridQuant, the model driver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.baselines import load_baseline
from refimpl.coding import dumps_compressed, loads_compressed
from refimpl.data import load_digits
from refimpl.data.fashion_mnist import load_fashion_mnist
from refimpl.models import digits_mlp
from refimpl.nn import Linear, Mask, forward_through, predict
from refimpl.pruning import obs_update, one_shot_prune, reconstruction_error, reconstruction_hessian
from refimpl.quantization import (
    GridQuant,
    UniformQuant,
    gptq_quantize,
    obq_quantize,
    one_shot_quantize,
    qparams,
    qrange,
    rtn_quantize,
)


def _problem(seed: int, rows: int = 4, d: int = 12, m: int = 60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(d, m)) * rng.uniform(0.3, 2.0, size=(d, 1))
    X = (np.eye(d) + 0.4 * rng.normal(size=(d, d))) @ X
    return rng.normal(size=(rows, d)), reconstruction_hessian(X)


@pytest.fixture(scope="module")
def lenet_layers():
    """LeNet-300-100's weights and the Hessians of their inputs on 256 Fashion-MNIST images."""
    try:
        (X, _), _ = load_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (make data)")
    model = load_baseline("lenet_300_100")
    out = {}
    for name, stop in (("fc1", 0), ("fc2", 2), ("fc3", 4)):
        a = forward_through(model, X[:256], stop).reshape(256, -1).astype(np.float64)
        out[name] = (model[name].weight.astype(np.float64), reconstruction_hessian(a.T))
    out["fc1_few"] = (out["fc1"][0], reconstruction_hessian(
        X[:100].reshape(100, -1).T.astype(np.float64)))  # 100 images for 784 inputs: singular
    return out


def _on_grid(res, bits):
    qmin, qmax = qrange(bits, res.symmetric)
    assert res.codes.min() >= qmin and res.codes.max() <= qmax
    g = res.groups
    np.testing.assert_array_equal(res.weight, res.scale[:, g] * (res.codes - res.zero_point[:, g]))


# -- round to nearest -----------------------------------------------------------------------------
def test_rtn_is_per_row_fake_quantization():
    W = np.random.default_rng(0).normal(size=(5, 9))
    res = rtn_quantize(W, 4)
    scale, zero = qparams(W, 4, axis=0, symmetric=False)
    np.testing.assert_allclose(res.scale[:, 0], scale[:, 0])
    np.testing.assert_array_equal(res.zero_point[:, 0], zero[:, 0])
    assert np.all(np.abs(res.weight - W) <= res.scale / 2 + 1e-12)
    assert np.isnan(res.loss)
    _on_grid(res, 4)


def test_rtn_groups():
    W = np.random.default_rng(1).normal(size=(3, 10))
    res = rtn_quantize(W, 3, group_size=4, symmetric=True)
    assert res.scale.shape == (3, 3) and res.group_size == 4
    np.testing.assert_array_equal(res.groups, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(res.zero_point, 0)
    for g, cols in enumerate((slice(0, 4), slice(4, 8), slice(8, 10))):
        np.testing.assert_allclose(res.scale[:, g], np.abs(W[:, cols]).max(axis=1) / 3)
    _on_grid(res, 3)


# -- OBQ: the exact greedy step ------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([2, 3, 4]))
def test_obq_steps_are_exact_on_the_quadratic(seed, bits):
    """The predicted costs add up to the true error: each greedy step is exact."""
    W, H = _problem(seed)
    res = obq_quantize(W, H, bits, damping=0.0, rows_per_batch=3)
    _on_grid(res, bits)
    assert res.loss == pytest.approx(reconstruction_error(W, res.weight, H), rel=1e-8)


def test_obq_is_chapter_3_obs_with_the_quantization_error_in_place_of_the_weight():
    """One row by hand with obs_update: shift w_q by quant(w_q), delete it, shift back."""
    W, H = _problem(3, rows=2, d=8)
    res = obq_quantize(W, H, 3, damping=0.0)
    Hinv0 = np.linalg.inv(H)
    total = 0.0
    for i in range(2):
        scale, zero = res.scale[i, 0], res.zero_point[i, 0]
        w, Hinv, done = W[i].copy(), Hinv0.copy(), np.zeros(8, bool)
        for _ in range(8):
            q = scale * (np.clip(np.round(w / scale) + zero, 0, 7) - zero)
            err2 = (w - q) ** 2
            cost = np.where(done, np.inf, err2 / np.where(done, 1.0, np.diag(Hinv)))
            big = ~done & (err2 > 0.25 * scale**2)  # OBC's outliers go first
            j = int(np.argmax(np.where(big, err2, -1))) if big.any() else int(np.argmin(cost))
            total += 0.5 * (w[j] - q[j]) ** 2 / Hinv[j, j]
            shifted = w.copy()
            shifted[j] -= q[j]  # the quantization error w_q - quant(w_q) in place of w_q
            shifted, Hinv = obs_update(shifted, Hinv, j)
            w = shifted
            w[j] = q[j]
            done[j] = True
        np.testing.assert_allclose(res.weight[i], w, rtol=1e-9, atol=1e-12)
    assert res.loss == pytest.approx(total, rel=1e-9)


def test_one_obq_step_predicts_the_true_increase():
    W, H = _problem(4, rows=1, d=6)
    Hinv = np.linalg.inv(H)
    res = rtn_quantize(W, 3)
    q = res.weight[0]
    for j in range(6):
        w, _ = obs_update(W[0] - q[j] * np.eye(6)[j], Hinv, j)
        w[j] = q[j]
        predicted = 0.5 * (W[0, j] - q[j]) ** 2 / Hinv[j, j]
        assert reconstruction_error(W, w[None], H) == pytest.approx(predicted, rel=1e-9)


# -- GPTQ -----------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    bits=st.sampled_from([2, 3, 4, 8]),
    act_order=st.booleans(),
    symmetric=st.booleans(),
)
def test_gptq_equals_obq_held_to_the_same_column_order(seed, bits, act_order, symmetric):
    W, H = _problem(seed, rows=5, d=10)
    g = gptq_quantize(W, H, bits, act_order=act_order, symmetric=symmetric, block_size=3)
    order = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(10)
    o = obq_quantize(W, H, bits, order=order, symmetric=symmetric, rows_per_batch=2)
    np.testing.assert_allclose(g.weight, o.weight, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(g.codes, o.codes)
    assert g.loss == pytest.approx(o.loss, rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), group=st.sampled_from([None, 3, 4, 7]),
       act_order=st.booleans())  # fmt: skip
def test_gptq_lazy_blocks_change_nothing_and_the_loss_is_exact(seed, group, act_order):
    W, H = _problem(seed, rows=4, d=14)
    ref = gptq_quantize(W, H, 3, group_size=group, act_order=act_order, block_size=None,
                        damping=0.0)  # fmt: skip
    for block in (1, 5):
        res = gptq_quantize(W, H, 3, group_size=group, act_order=act_order, block_size=block,
                            damping=0.0)  # fmt: skip
        np.testing.assert_allclose(res.weight, ref.weight, rtol=1e-9, atol=1e-9)
    _on_grid(ref, 3)
    # exact up to rounding, which grows with the conditioning of H (these H reach 1e10)
    rel = max(1e-8, 1e-14 * np.linalg.cond(H))
    assert ref.loss == pytest.approx(reconstruction_error(W, ref.weight, H), rel=rel)
    if group:
        assert ref.scale.shape == (4, -(-14 // group))
        assert np.bincount(ref.groups).max() == group


def test_gptq_with_a_mask_keeps_pruned_weights_at_zero():
    W, H = _problem(5, rows=4, d=12)
    keep = np.random.default_rng(0).random(W.shape) > 0.5
    res = gptq_quantize(W, H, 4, mask=keep, damping=0.0)
    assert not res.weight[~keep].any()
    assert res.loss == pytest.approx(reconstruction_error(W, res.weight, H), rel=1e-8)
    obq = obq_quantize(W, H, 4, mask=keep, damping=0.0)
    assert not obq.weight[~keep].any()
    assert obq.loss == pytest.approx(reconstruction_error(W, obq.weight, H), rel=1e-8)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_round_to_nearest_on_lenet_layers(lenet_layers, bits):
    for name in ("fc1", "fc2", "fc3"):
        W, H = lenet_layers[name]
        rtn = reconstruction_error(W, rtn_quantize(W, bits).weight, H)
        gptq = reconstruction_error(W, gptq_quantize(W, H, bits).weight, H)
        assert gptq < 0.5 * rtn, name


def test_gptq_without_damping_fails_on_a_rank_deficient_hessian(lenet_layers):
    W, H = lenet_layers["fc1_few"]
    with pytest.raises(np.linalg.LinAlgError, match="singular.*damping"):
        gptq_quantize(W, H, 4, damping=0.0)
    res = gptq_quantize(W, H, 4)  # lambda = 0.01 mean(diag H) makes it positive definite
    assert reconstruction_error(W, res.weight, H) < reconstruction_error(
        W, rtn_quantize(W, 4).weight, H)


def test_gptq_without_damping_fails_on_a_small_singular_hessian():
    rng = np.random.default_rng(0)
    H = reconstruction_hessian(rng.normal(size=(6, 3)))
    with pytest.raises(ValueError, match="Cholesky"):
        gptq_quantize(rng.normal(size=(2, 6)), H, 4, damping=0.0)


# -- GridQuant ------------------------------------------------------------------------------------
def _grid_layer(act_order=False, group=4):
    W, H = _problem(6, rows=3, d=12)
    layer = Linear(12, 3, rng=0)
    layer.weight = W
    res = gptq_quantize(layer.weight, H, 3, group_size=group, act_order=act_order)
    return layer.parametrize("weight", res.parametrization()), res


@pytest.mark.parametrize("act_order", [False, True])
def test_grid_quant_installs_the_codes_and_survives_the_file(act_order):
    layer, res = _grid_layer(act_order)
    # the layer computes with the float32 scales: the same grid, to float32 rounding
    np.testing.assert_allclose(layer.weight, res.weight, rtol=3e-7)
    scale = layer.params["weight.scale"].astype(np.float64)[:, res.groups]
    np.testing.assert_array_equal(
        layer.weight, (scale * (res.codes - res.zero_point[:, res.groups])).astype(np.float32))
    assert sorted(layer.params) == ["bias", "weight.scale"]
    assert sorted(layer.buffers) == ["weight.codes", "weight.groups", "weight.zero_point"]
    from refimpl.nn import Sequential

    model = Sequential(("fc", layer))
    back = loads_compressed(dumps_compressed(model))
    np.testing.assert_array_equal(back["fc"].weight, layer.weight)


def test_grid_quant_scale_gradient_matches_finite_differences():
    layer, _ = _grid_layer(group=5)
    x = np.random.default_rng(1).normal(size=(7, 12)).astype(np.float32)
    layer.astype(np.float64)
    x = x.astype(np.float64)
    y = layer.forward(x)
    layer.backward(np.ones_like(y))
    grad = layer.grads["weight.scale"]
    scale = layer.params["weight.scale"]
    eps, num = 1e-6, np.zeros_like(scale)
    for idx in np.ndindex(scale.shape):
        old = scale[idx]
        scale[idx] = old + eps
        up = layer.forward(x).sum()
        scale[idx] = old - eps
        down = layer.forward(x).sum()
        scale[idx] = old
        num[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_grid_quant_checks_its_arrays():
    codes = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="codes must lie"):
        GridQuant(codes + 9, np.ones((2, 1)), np.zeros((2, 1), int), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="scale"):
        GridQuant(codes, np.ones((3, 1)), np.zeros((3, 1), int), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="groups"):
        GridQuant(codes, np.ones((2, 1)), np.zeros((2, 1), int), np.ones(4, int), 3)
    with pytest.raises(TypeError, match="codes"):
        GridQuant(codes.astype(float), np.ones((2, 1)), np.zeros((2, 1), int), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="codes have shape"):
        Linear(5, 2).parametrize("weight", GridQuant(codes, np.ones((2, 1)),
                                                      np.zeros((2, 1), int), np.zeros(4, int), 3))


# -- the model driver -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits()
    return X[:200], X[200:400]


@pytest.mark.parametrize("method", ["gptq", "obq", "rtn"])
def test_one_shot_quantize_installs_grids(digits, method):
    X, X_val = digits
    model = load_baseline("digits_mlp")
    report = one_shot_quantize(model, X, 3, method=method, validation=X_val)
    for name in ("fc1", "fc2", "fc3"):
        layer = model[name]
        assert isinstance(layer.chain("weight")[-1], GridQuant)
        assert max(len(np.unique(r)) for r in layer.weight) <= 8
        assert report.layers[name].relative_error < 0.2
    assert np.isfinite(report.val_output_error)


def test_gptq_driver_beats_rtn_and_handles_convolutions(digits):
    X, _ = digits
    base = load_baseline("digits_cnn")
    rtn = one_shot_quantize(base.copy(), X, 3, method="rtn")
    gptq = one_shot_quantize(base.copy(), X, 3, act_order=True, group_size=16)
    assert gptq.output_error < rtn.output_error
    for name, layer in gptq.layers.items():
        assert layer.error < rtn.layers[name].error, name


def test_prune_then_quantize_keeps_the_zeros_and_the_file(digits):
    X, _ = digits
    model = load_baseline("digits_mlp")
    one_shot_prune(model, X, 0.5)
    one_shot_quantize(model, X, 4)
    for name in ("fc1", "fc2", "fc3"):
        keep = Mask.of(model[name], "weight")
        assert not model[name].weight[~keep].any()
    back = loads_compressed(dumps_compressed(model))
    np.testing.assert_array_equal(predict(back, X), predict(model, X))
    with pytest.raises(ValueError, match="already quantized"):
        one_shot_quantize(model, X, 4)


def test_bad_arguments_name_the_argument(digits):
    X, _ = digits
    W, H = _problem(0)
    with pytest.raises(ValueError, match="bits"):
        gptq_quantize(W, H, 1)
    with pytest.raises(TypeError, match="bits"):
        rtn_quantize(W, 3.0)
    with pytest.raises(ValueError, match="group_size"):
        gptq_quantize(W, H, 4, group_size=0)
    with pytest.raises(ValueError, match="block_size"):
        gptq_quantize(W, H, 4, block_size=-1)
    with pytest.raises(TypeError, match="damping"):
        gptq_quantize(W, H, 4, damping=None)
    with pytest.raises(ValueError, match="hessian"):
        obq_quantize(W, H[:3], 4)
    with pytest.raises(ValueError, match="order"):
        obq_quantize(W, H, 4, order=np.zeros(12, int))
    with pytest.raises(ValueError, match="method"):
        one_shot_quantize(digits_mlp(), X, 4, method="awq")
    with pytest.raises(ValueError, match="bits"):
        one_shot_quantize(digits_mlp(), X, 17)
    model = digits_mlp()
    model["fc1"].parametrize("weight", UniformQuant(8))
    with pytest.raises(ValueError, match="fc1"):
        one_shot_quantize(model, X, 4)
