"""Structured sparsity learning: group norms, the penalty's gradient, the proximal step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.baselines import load_baseline, load_dataset
from refimpl.models import digits_cnn
from refimpl.nn import SGD, evaluate, fit, gradcheck
from refimpl.pruning import (
    GroupLasso,
    group_lasso_grad,
    group_lasso_penalty,
    group_norms,
    group_soft_threshold,
    prune_model,
    zero_groups,
)


def test_group_shapes():
    w = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    assert group_norms(w, "filter").shape == (2,)
    assert group_norms(w, "channel").shape == (3,)
    assert group_norms(w, "shape").shape == (3, 4, 5)
    np.testing.assert_allclose(group_norms(w, "filter")[1], np.linalg.norm(w[1]))
    np.testing.assert_allclose(group_norms(w, "channel")[2], np.linalg.norm(w[:, 2]))
    np.testing.assert_allclose(group_norms(w, "shape")[1, 2, 3], np.linalg.norm(w[:, 1, 2, 3]))
    d = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(group_norms(d, "row"), np.linalg.norm(d, axis=1))
    np.testing.assert_allclose(group_norms(d, "column"), np.linalg.norm(d, axis=0))
    with pytest.raises(ValueError, match="group"):
        group_norms(d, "kernel")
    with pytest.raises(ValueError, match="2-D"):
        group_norms(np.ones(3), "row")


@pytest.mark.parametrize("group", ["filter", "channel", "shape"])
def test_penalty_gradient_matches_finite_differences(group):
    w = np.random.default_rng(0).normal(size=(3, 2, 2, 2))
    res = gradcheck(lambda a: group_lasso_penalty(a, group), [w],
                    analytic=[group_lasso_grad(w, group)])
    assert res.passed, res


@settings(max_examples=40, deadline=None)
@given(
    w=hnp.arrays(np.float64, (4, 3), elements=st.floats(-3, 3, allow_nan=False)),
    t=st.floats(0, 3),
    group=st.sampled_from(["row", "column"]),
    seed=st.integers(0, 1000),
)
def test_soft_threshold_is_the_proximal_operator(w, t, group, seed):
    """prox minimizes 1/2 |V - W|^2 + t sum_g |V_g|: no nearby point does better."""
    v = group_soft_threshold(w, t, group)

    def objective(a):
        return 0.5 * np.sum((a - w) ** 2) + t * group_lasso_penalty(a, group)

    rng = np.random.default_rng(seed)
    f = objective(v)
    for _ in range(20):
        assert objective(v + 1e-3 * rng.normal(size=w.shape)) >= f - 1e-12
    norms = group_norms(w, group)
    vn = group_norms(v, group)
    assert (vn[norms <= t] == 0).all()  # small groups become exactly zero
    np.testing.assert_allclose(vn[norms > t], norms[norms > t] - t, atol=1e-12)


def test_soft_threshold_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        group_soft_threshold(np.ones((2, 2)), -1.0)


def test_proximal_training_zeroes_whole_neurons_and_subgradient_does_not():
    (X, y), (Xt, yt) = load_dataset("digits")
    results = {}
    for proximal in (True, False):
        model = load_baseline("digits_mlp")
        opt = SGD(0.05, momentum=0.9)
        cb = GroupLasso(0.1, opt, group="row", layers=["fc2"], proximal=proximal)
        fit(model, (X, y), epochs=3, optimizer=opt, batch_size=32, rng=0, callbacks=[cb],
            verbose=False)
        results[proximal] = (zero_groups(model, "row", layers=["fc2"])["fc2"],
                             evaluate(model, (Xt, yt)).accuracy, cb.penalty(model))
    (zero_p, total), acc_p, pen_p = results[True]
    (zero_s, _), _, pen_s = results[False]
    assert total == 32
    assert zero_p >= 5  # whole neurons vanish, exactly
    assert zero_s == 0  # the subgradient only shrinks them
    base_pen = 0.1 * group_lasso_penalty(load_baseline("digits_mlp")["fc2"].weight, "row")
    assert pen_p < base_pen and pen_s < base_pen
    assert acc_p > 0.93


def test_proximal_step_on_conv_filters():
    (X, y), _ = load_dataset("digits")
    model = digits_cnn(rng=0)
    opt = SGD(0.05)
    norms = group_norms(model["conv2"].weight, "filter")
    lam = float(np.median(norms)) / 0.05  # one step removes every filter below the median
    cb = GroupLasso(lam, opt, group="filter", layers=["conv2"])
    fit(model, (X[:32], y[:32]), epochs=1, optimizer=opt, batch_size=32, rng=0, callbacks=[cb],
        verbose=False)
    zero, total = zero_groups(model, "filter", layers=["conv2"])["conv2"]
    assert total == 16 and zero >= 8


def test_group_lasso_respects_a_mask_and_per_layer_strengths():
    (X, y), _ = load_dataset("digits")
    model = digits_cnn(rng=0)
    prune_model(model, 0.5, layers=["conv2"])
    mask = model["conv2"].buffers["weight.mask"].astype(bool)
    opt = SGD(0.05, momentum=0.9)
    cb = GroupLasso({"conv2": 0.05, "fc1": 0.0}, opt, group="channel", proximal=False)
    fit(model, (X[:256], y[:256]), epochs=1, optimizer=opt, rng=0, callbacks=[cb], verbose=False)
    assert (model["conv2"].weight[~mask] == 0).all()
    with pytest.raises(TypeError, match="optimizer"):
        GroupLasso(0.1, "sgd")
    with pytest.raises(ValueError, match="strength"):
        GroupLasso(-1.0, opt)
    with pytest.raises(ValueError, match="group"):
        GroupLasso(0.1, opt, group="kernel")
