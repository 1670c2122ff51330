"""ThiNet: sampled contributions are the next layer's output, greedy is greedy, rescaling helps."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.models import digits_cnn, lenet5
from refimpl.pruning import (
    mask_units,
    remove_units,
    select_per_layer,
    thinet_prune,
    thinet_samples,
    thinet_scores,
    unit_chain,
)


def _x(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _model():
    model = lenet5(rng=0)
    model["conv1"].params["bias"] = np.abs(model["conv1"].params["bias"]) + 0.05
    return model


def _next_out(model, layer_name, x):
    """Output of the layer after ``layer_name``'s chain, computed layer by layer."""
    chain = unit_chain(model, layer_name)
    stop = model.names().index(chain.next_name)
    for layer in list(model)[: stop + 1]:
        x = layer(x)
    return x


def _sample_points(model, layer_name, x, n_samples, rng):
    """Recreate thinet_samples' random draws (same generator calls, same order)."""
    chain = unit_chain(model, layer_name)
    nxt = model[chain.next_name]
    gen = np.random.default_rng(rng)
    n = len(x)
    i_n = gen.integers(0, n, n_samples)
    i_o = gen.integers(0, nxt.weight.shape[0], n_samples)
    if hasattr(nxt, "kernel_size"):
        inp = x
        for layer in list(model)[: chain.index + len(chain.between) + 1]:
            inp = layer(inp)
        ho, wo = nxt.output_shape(inp.shape[2], inp.shape[3])
        i_p = gen.integers(0, ho, n_samples)
        i_q = gen.integers(0, wo, n_samples)
        return lambda out: out[i_n, i_o, i_p, i_q]
    return lambda out: out[i_n, i_o]


@pytest.mark.parametrize("model_fn,layer_name,shape", [
    (_model, "conv1", (5, 1, 28, 28)),  # conv into an unpadded conv
    (_model, "conv2", (5, 1, 28, 28)),  # conv into a dense layer across Flatten
    (lambda: digits_cnn(rng=0), "conv1", (5, 1, 8, 8)),  # conv into a padded conv
])
def test_contributions_sum_to_the_next_layer_output(model_fn, layer_name, shape):
    model = model_fn()
    x = _x(shape)
    s = thinet_samples(model, layer_name, x, n_samples=300, rng=1)
    pick = _sample_points(model, layer_name, x, 300, 1)
    nxt = model[unit_chain(model, layer_name).next_name]
    bias = nxt.bias
    out = _next_out(model, layer_name, x)
    bias_at = pick(np.broadcast_to(
        bias.reshape((1, -1) + (1,) * (out.ndim - 2)), out.shape))
    np.testing.assert_allclose(s.target + bias_at, pick(out), atol=1e-4)
    # removing a set T of filters (the masked model) changes the output by sum_T (x - x')
    c = s.contributions.shape[1]
    keep = np.arange(0, c, 3)
    removed = np.setdiff1d(np.arange(c), keep)
    masked = _next_out(mask_units(model, layer_name, keep), layer_name, x)
    expected = s.target - (s.contributions[:, removed] - s.constants[:, removed]).sum(axis=1)
    np.testing.assert_allclose(expected + bias_at, pick(masked), atol=1e-4)


def test_greedy_order_is_greedy():
    s = thinet_samples(_model(), "conv1", _x((4, 1, 28, 28)), n_samples=400, rng=0)
    d = s.contributions - s.constants
    order = s.greedy_order()
    assert sorted(order.tolist()) == list(range(20))
    # first step: the single channel of least error; second: best partner of the first
    first = np.argmin((d**2).sum(axis=0))
    assert order[0] == first
    costs = ((d[:, [first]] + d) ** 2).sum(axis=0)
    costs[first] = np.inf
    assert order[1] == np.argmin(costs)


def test_scores_select_the_greedy_prefix():
    model, x = _model(), _x((4, 1, 28, 28))
    scores = thinet_scores(model, "conv1", x, n_samples=400, rng=0)
    order = thinet_samples(model, "conv1", x, n_samples=400, rng=0).greedy_order()
    keep = select_per_layer(scores, 5)
    np.testing.assert_array_equal(keep, np.sort(order[5:]))


def test_least_squares_rescaling_never_hurts_on_the_samples():
    s = thinet_samples(_model(), "conv2", _x((6, 1, 28, 28)), n_samples=800, rng=2)
    for k in (10, 25, 40):
        keep = np.sort(s.greedy_order()[k:])
        w = s.least_squares(keep)
        assert s.error(keep, w) <= s.error(keep) + 1e-12
    assert s.error(np.arange(50)) == pytest.approx(0.0, abs=1e-20)


def test_thinet_prune_reconstructs_as_the_samples_say():
    model, x = _model(), _x((6, 1, 28, 28))
    small = thinet_prune(model, "conv1", x, 0.5, n_samples=500, rng=3)
    plain = thinet_prune(model, "conv1", x, 0.5, n_samples=500, rng=3, rescale=False)
    assert small["conv1"].out_channels == 10 and small["conv2"].in_channels == 10
    s = thinet_samples(model, "conv1", x, n_samples=500, rng=3)
    keep = select_per_layer(thinet_scores(model, "conv1", x, n_samples=500, rng=3), 0.5)
    pick = _sample_points(model, "conv1", x, 500, 3)
    y = pick(_next_out(model, "conv1", x))
    for pruned, scale in ((small, s.least_squares(keep)), (plain, None)):
        err = np.sum((y - pick(_next_out(pruned, "conv1", x))) ** 2) / np.sum(
            (y - pick(np.broadcast_to(model["conv2"].bias[None, :, None, None], (6, 50, 8, 8))))
            ** 2
        )
        assert err == pytest.approx(s.error(keep, scale), rel=1e-3, abs=1e-7)
    # without rescaling ThiNet's model is the plain surgery of its selection
    ref = remove_units(model, "conv1", keep)
    np.testing.assert_allclose(plain(x), ref(x), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="n_samples"):
        thinet_samples(_model(), "conv1", _x((2, 1, 28, 28)), n_samples=0)
    with pytest.raises(ValueError, match="X must be"):
        thinet_samples(_model(), "conv1", np.zeros((0, 1, 28, 28), dtype=np.float32))
    s = thinet_samples(_model(), "conv1", _x((2, 1, 28, 28)), n_samples=10)
    with pytest.raises(ValueError, match="scale"):
        s.error([0, 1], np.ones(3))
