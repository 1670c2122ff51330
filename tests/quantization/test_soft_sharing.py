"""Soft weight-sharing: the mixture prior's gradients, and the final assignment."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.nn import Adam, Linear, ReLU, Sequential, fit
from refimpl.quantization import (
    MixturePrior,
    SoftWeightSharing,
    mixture_neg_log_prior,
    mixture_responsibilities,
)


def _prior(seed, J=5):
    rng = np.random.default_rng(seed)
    return MixturePrior(
        means=np.concatenate([[0.0], rng.uniform(-1, 1, J - 1)]),
        log_vars=rng.uniform(-4, -1, J),
        logits=rng.standard_normal(J - 1),
        pi_zero=0.9,
    )


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000))
def test_prior_gradients_match_finite_differences(seed):
    prior = _prior(seed)
    w = np.random.default_rng(seed + 1).uniform(-1.2, 1.2, 15)
    value, gw, grads = mixture_neg_log_prior(w, prior)
    eps = 1e-6

    def f():
        return mixture_neg_log_prior(w, prior)[0]

    for i in range(w.size):
        w[i] += eps
        up = f()
        w[i] -= 2 * eps
        down = f()
        w[i] += eps
        assert gw[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-6)
    for key in ("means", "log_vars", "logits"):
        arr = getattr(prior, key)
        for j in range(arr.size):
            arr[j] += eps
            up = f()
            arr[j] -= 2 * eps
            down = f()
            arr[j] += eps
            fd = (up - down) / (2 * eps)
            if key == "means" and j == 0:
                fd = 0.0  # the zero component's mean is pinned
            assert grads[key][j] == pytest.approx(fd, rel=1e-5, abs=1e-6), (key, j)
    assert value == pytest.approx(-np.sum(np.log(prior.density(w).sum(axis=1))), rel=1e-12)


def test_responsibilities_sum_to_one_and_proportions_too():
    prior = _prior(0)
    r = mixture_responsibilities(np.linspace(-2, 2, 50), prior)
    assert np.allclose(r.sum(axis=1), 1) and prior.proportions.sum() == pytest.approx(1)


def _trained(seed=0, J=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = Sequential(("fc1", Linear(8, 16, rng=seed)), ("relu", ReLU()),
                       ("fc2", Linear(16, 2, rng=seed + 1)))  # fmt: skip
    sws = SoftWeightSharing(J, tau=1e-3, prior_lr=1e-2)
    fit(model, (X, y), epochs=3, optimizer=Adam(1e-2), rng=seed, callbacks=[sws], verbose=False)
    return model, sws


def test_final_assignment_has_at_most_j_values_and_prunes_around_zero():
    model, sws = _trained()
    # equal variances: each component's region is an interval, the zero one around 0
    sws.prior.log_vars[:] = sws.prior.log_vars.mean()
    before = {n: model[n].weight.copy() for n in ("fc1", "fc2")}
    labels = {n: sws.assign(before[n]) for n in before}
    sws.quantize(model)
    all_w = np.concatenate([model[n].weight.ravel() for n in before])
    assert np.unique(all_w).size <= sws.n_components
    for n, w0 in before.items():
        w = model[n].weight
        zero = labels[n] == 0
        assert np.all(w[zero] == 0)
        assert np.allclose(w[~zero], sws.prior.means[labels[n][~zero]].astype(np.float32))
        kept = w0[~zero]
        if zero.any() and (kept > 0).any():
            assert w0[zero].max() < kept[kept > 0].min()
        if zero.any() and (kept < 0).any():
            assert w0[zero].min() > kept[kept < 0].max()


def test_the_prior_learns_and_the_zero_mean_stays_pinned():
    model, sws = _trained()
    assert sws.prior.means[0] == 0
    assert not np.allclose(sws.prior.logits, 0)
    assert np.all(sws.prior.log_vars >= 2 * np.log(sws.min_std) - 1e-12)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="pi_zero"):
        SoftWeightSharing(pi_zero=1.0)
    with pytest.raises(ValueError, match="n_components"):
        SoftWeightSharing(1)
    with pytest.raises(ValueError, match="assign|prior"):
        SoftWeightSharing().assign(np.zeros(3))
