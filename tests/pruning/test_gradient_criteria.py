"""Gradient and relevance criteria: each proves the property its paper relies on."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.models import digits_cnn, lenet_300_100, small_vgg
from refimpl.nn import (
    SGD,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    ReLU,
    Residual,
    Sequential,
    fit,
)
from refimpl.pruning import (
    CRITERIA,
    GateDecorator,
    MajorityVoting,
    channel_flops,
    fisher_scores,
    gate_decorator_prune,
    gate_gradients,
    gate_scores,
    group_fisher_scores,
    lrp_relevances,
    lrp_unit_scores,
    majority_vote_scores,
    score_units,
    select_global,
    shrink,
    taylor_scores,
    unit_activation_gradients,
)


class LinearLoss:
    """L = mean_n <c, output_n>: a loss that is linear in the network's output."""

    def __init__(self, c: np.ndarray) -> None:
        self.c = c

    def __call__(self, out: np.ndarray, y: np.ndarray) -> float:
        self._n = len(out)
        return float((out @ self.c).mean())

    def backward(self) -> np.ndarray:
        return np.tile(self.c / self._n, (self._n, 1)).astype(np.float64)


def _conv_head(rng: int = 0) -> Sequential:
    """conv -> relu -> conv (no nonlinearity after) -> flatten -> linear: linear in conv2's maps."""
    return Sequential([
        ("conv1", Conv2d(1, 3, 3, rng=rng)),
        ("relu1", ReLU()),
        ("conv2", Conv2d(3, 4, 3, rng=rng + 1)),
        ("flatten", Flatten()),
        ("fc", Linear(4 * 4 * 4, 5, rng=rng + 2)),
    ]).astype(np.float64)


def _data(n: int = 6, shape=(1, 8, 8), k: int = 5, seed: int = 0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, *shape)), g.integers(0, k, n)


# --- first-order Taylor ---------------------------------------------------------------------


def test_taylor_equals_exact_loss_change_when_loss_is_linear_in_the_map():
    model = _conv_head()
    X, y = _data()
    loss = LinearLoss(np.random.default_rng(1).standard_normal(5))
    a, g = unit_activation_gradients(model, "conv2", X, y, loss=loss)
    theta = taylor_scores(model["conv2"], a, g, normalize=False)
    base = loss(model(X), y)
    positions = a.shape[2] * a.shape[3]
    for j in range(4):
        w = model.copy()
        w["conv2"].params["weight"][j] = 0
        w["conv2"].params["bias"][j] = 0
        exact = abs(loss(w(X), y) - base)
        assert abs(theta[j] * positions - exact) < 1e-10 * max(1.0, exact)


def test_taylor_normalized_has_unit_norm_and_same_order():
    model = _conv_head()
    X, y = _data(10)
    a, g = unit_activation_gradients(model, "conv1", X, y)
    raw = taylor_scores(model["conv1"], a, g, normalize=False)
    norm = taylor_scores(model["conv1"], a, g)
    assert abs(np.linalg.norm(norm) - 1) < 1e-12
    assert np.array_equal(np.argsort(raw), np.argsort(norm))


def test_taylor_bad_input_names_argument():
    model = _conv_head()
    X, y = _data()
    a, g = unit_activation_gradients(model, "conv1", X, y)
    with pytest.raises(ValueError, match="gradients"):
        taylor_scores(model["conv1"], a, g[:, :2])
    with pytest.raises(ValueError, match="y"):
        unit_activation_gradients(model, "conv1", X, y[:2])


# --- Group Fisher ---------------------------------------------------------------------------


def _mask_loss(model, point, j, eps, X, y, n):
    """Loss of input n with channel j of the output of `point` scaled by (1 + eps)."""
    from refimpl.nn import CrossEntropyLoss

    layers = list(model)
    names = model.names()
    x = X[n : n + 1]
    for name, layer in zip(names, layers, strict=True):
        x = layer.forward(x)
        if name == point:
            x = x.copy()
            x[:, j] *= 1 + eps
    return CrossEntropyLoss()(x, y[n : n + 1])


def test_per_sample_mask_gradient_matches_finite_differences():
    model = _conv_head()
    X, y = _data(4)
    g = gate_gradients(model, ["relu1"], X, y)["relu1"]
    h = 1e-6
    for n in range(4):
        for j in range(3):
            fd = (_mask_loss(model, "relu1", j, h, X, y, n)
                  - _mask_loss(model, "relu1", j, -h, X, y, n)) / (2 * h)
            assert abs(fd - g[n, j]) < 1e-6 * max(1.0, abs(fd))


def test_fisher_is_half_mean_squared_mask_gradient_and_divides_by_cost():
    model = _conv_head()
    X, y = _data(8)
    a, gr = unit_activation_gradients(model, "conv1", X, y)
    g = gate_gradients(model, ["relu1"], X, y)["relu1"]
    f = fisher_scores(model["conv1"], a, gr)
    assert np.allclose(f, (g**2).sum(axis=0) / 16, rtol=1e-12, atol=0)
    assert np.allclose(fisher_scores(model["conv1"], a, gr, cost=4.0), f / 4)
    with pytest.raises(ValueError, match="cost"):
        fisher_scores(model["conv1"], a, gr, cost=0.0)


def _residual_model() -> Sequential:
    body = Sequential([("conv_a", Conv2d(4, 4, 3, padding=1, rng=2)), ("relu_a", ReLU()),
                       ("conv_b", Conv2d(4, 4, 3, padding=1, rng=3))])
    return Sequential([
        ("conv0", Conv2d(1, 4, 3, padding=1, rng=1)),
        ("res1", Residual(body)),
        ("relu1", ReLU()),
        ("flatten", Flatten()),
        ("fc", Linear(4 * 8 * 8, 5, rng=4)),
    ]).astype(np.float64)


def test_coupled_channels_square_the_summed_gradient():
    model = _residual_model()
    X, y = _data(6)
    points = ["conv0", "res1.body.conv_b"]
    g = gate_gradients(model, points, X, y)
    scores = group_fisher_scores(model, X, y, {"stage": points})["stage"]
    summed = (g["conv0"] + g["res1.body.conv_b"]) ** 2
    separate = g["conv0"] ** 2 + g["res1.body.conv_b"] ** 2
    assert np.allclose(scores, summed.sum(axis=0) / 12, rtol=1e-12, atol=0)
    assert not np.allclose(scores, separate.sum(axis=0) / 12)
    # the shared mask's gradient is the chain rule: scaling both ends by (1 + h) at once
    h = 1e-6

    def loss_with(scale):
        m = model.copy()
        m["conv0"].params["weight"][1] *= scale
        m["conv0"].params["bias"][1] *= scale
        m["res1"].body["conv_b"].params["weight"][1] *= scale
        m["res1"].body["conv_b"].params["bias"][1] *= scale
        from refimpl.nn import CrossEntropyLoss

        return CrossEntropyLoss()(m(X[:1]), y[:1])

    fd = (loss_with(1 + h) - loss_with(1 - h)) / (2 * h)
    assert abs(fd - (g["conv0"][0, 1] + g["res1.body.conv_b"][0, 1])) < 1e-6


def test_group_fisher_bad_groups():
    model = _residual_model()
    X, y = _data(2)
    with pytest.raises(ValueError, match="groups"):
        group_fisher_scores(model, X, y, {"a": ["conv0", "fc"]})
    with pytest.raises(ValueError, match="points"):
        group_fisher_scores(model, X, y, {"a": ["nope"]})


def test_channel_flops_counts_own_and_next_layer():
    model = _conv_head()
    # conv1: 3x3x1 taps on 6x6 outputs; conv2 reads it with 3x3 taps on 4x4 outputs, 4 filters
    saved = channel_flops(model, "conv1", (1, 8, 8))
    assert saved >= 2 * (9 * 36 + 9 * 16 * 4)


# --- LRP ------------------------------------------------------------------------------------


def _nobias(model: Sequential) -> Sequential:
    for layer in model:
        if "bias" in layer.params and layer.params["bias"] is not None:
            layer.params["bias"][:] = 0
    return model


def test_lrp_conserves_relevance_without_biases_under_the_z_rule():
    model = _nobias(digits_cnn(rng=0).astype(np.float64))
    X, y = _data(5, (1, 8, 8), 10)
    rel = lrp_relevances(model, X, y, epsilon=0.0)
    out = rel[-1].reshape(5, -1).sum(axis=1)
    for r in rel:
        assert np.allclose(r.reshape(5, -1).sum(axis=1), out, rtol=1e-9, atol=1e-12)


def test_lrp_zplus_conserves_on_positive_inputs():
    model = _nobias(lenet_300_100(rng=0).astype(np.float64))
    X = np.abs(_data(3, (1, 28, 28))[0])
    rel = lrp_relevances(model, X, rule="zplus")
    out = rel[-1].sum(axis=1)
    # from the first ReLU on, every input is >= 0, so z+ redistributes everything
    for r in rel[2:]:
        assert np.allclose(r.reshape(3, -1).sum(axis=1), out, rtol=1e-9)


def test_unit_without_outgoing_weights_has_no_relevance():
    model = lenet_300_100(rng=0).astype(np.float64)
    model["fc2"].params["weight"][:, 7] = 0
    X, y = _data(4, (1, 28, 28), 10)
    for rule in ("epsilon", "zplus"):
        s = score_units(model, "fc1", "lrp", X, y) if rule == "epsilon" else lrp_unit_scores(
            model["fc1"], lrp_relevances(model, X, y, rule=rule)[3])
        assert s[7] == 0 and np.count_nonzero(s) > 200


def test_lrp_rejects_unknown_layers_and_rules():
    with pytest.raises(TypeError, match="BatchNorm"):
        lrp_relevances(small_vgg(rng=0), np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="rule"):
        lrp_relevances(lenet_300_100(), np.zeros((1, 784)), rule="alpha")


# --- Gate Decorator -------------------------------------------------------------------------


def test_global_selection_removes_the_globally_lowest_scores():
    scores = {"a": np.array([0.1, 0.2, 5.0, 6.0]), "b": np.array([0.05, 3.0, 4.0, 7.0])}
    keep = select_global(scores, 3, normalize="none")
    assert keep["a"].tolist() == [2, 3] and keep["b"].tolist() == [1, 2, 3]  # not 1 and 2


def test_gate_score_is_first_order_loss_change_of_zeroing_a_bn_gate():
    model = Sequential([
        ("conv1", Conv2d(1, 4, 3, rng=0)),
        ("bn1", BatchNorm2d(4)),
        ("relu1", ReLU()),
        ("flatten", Flatten()),
        ("fc", Linear(4 * 6 * 6, 5, rng=1)),
    ]).astype(np.float64)
    model["bn1"].params["weight"][:] = np.array([1.0, 0.5, 2.0, 1.5])
    X, y = _data(8)
    s = gate_scores(model, ["conv1"], X, y, batch_size=8)["conv1"]
    from refimpl.nn import CrossEntropyLoss

    def loss(gamma_scale, j):
        m = model.copy()
        m["bn1"].params["weight"][j] *= gamma_scale
        return CrossEntropyLoss()(m(X), y)

    h = 1e-6
    for j in range(4):
        derivative = (loss(1 + h, j) - loss(1 - h, j)) / (2 * h)  # = gamma dL/dgamma
        assert abs(s[j] - abs(derivative)) < 1e-6
    # the virtual gate of a layer without BatchNorm gives Taylor's unnormalized sum
    head = _conv_head()
    v = gate_scores(head, ["conv1"], X, y, batch_size=8)["conv1"]
    assert np.allclose(v, np.abs(gate_gradients(head, ["relu1"], X, y)["relu1"].mean(axis=0)))


def test_gate_decorator_penalty_shrinks_gammas_and_loop_removes_units():
    model = small_vgg(rng=0)
    X, y = _data(64, (1, 8, 8), 10)
    layers = ["conv1", "conv2"]
    m = model.copy()
    cb = GateDecorator(layers, penalty=0.5)
    fit(m, (X, y), epochs=1, optimizer=SGD(0.05), batch_size=32, rng=0, verbose=False,
        callbacks=[cb])
    m0 = model.copy()
    fit(m0, (X, y), epochs=1, optimizer=SGD(0.05), batch_size=32, rng=0, verbose=False)
    gam = np.abs(m["bn1"].params["weight"]).sum()
    assert gam < np.abs(m0["bn1"].params["weight"]).sum()
    assert set(cb.scores) == set(layers)
    before = sum(model[n].out_channels for n in layers)
    pruned, counts = gate_decorator_prune(model, (X, y), layers, n_per_tick=3, ticks=2,
                                          score_size=32, batch_size=32)
    assert sum(pruned[n].out_channels for n in layers) == before - 6
    assert len(counts) == 2


# --- majority voting during training --------------------------------------------------------


def test_votes_during_training_equal_one_shot_scores_over_the_batches_seen():
    model = lenet_300_100(rng=0)
    X, y = _data(50, (1, 28, 28), 10)
    mv = MajorityVoting(model, ["fc1", "fc2"], {5: 0.5})
    before = model.copy()
    # lr 1e-30: every update is below float32 resolution, so the weights stay put and every
    # batch votes with the same network
    fit(model, (X, y), epochs=2, optimizer=SGD(1e-30), batch_size=16, rng=0, verbose=False,
        callbacks=[mv])
    assert all(np.array_equal(a, b) for (_, a), (_, b) in
               zip(before.named_parameters(), model.named_parameters(), strict=True))
    assert mv.seen == 100
    from refimpl.pruning import unit_activations

    for n in ["fc1", "fc2"]:

        one_shot = majority_vote_scores(model[n], unit_activations(model, n, X))
        assert np.allclose(mv.scores()[n], one_shot)


def test_votes_accumulate_batch_by_batch_while_weights_change():
    model = lenet_300_100(rng=0)
    X, y = _data(40, (1, 28, 28), 10)
    mv = MajorityVoting(model, ["fc2"], {9: 0.1})
    seen = []

    class Snap:
        def on_before_step(self, m):  # the weights that produced this batch's votes
            seen.append(m.copy())

    fit(model, (X, y), epochs=1, optimizer=SGD(0.1), batch_size=40, rng=0, verbose=False,
        callbacks=[Snap(), mv])
    from refimpl.pruning import unit_activations

    expect = majority_vote_scores(seen[0]["fc2"], unit_activations(seen[0], "fc2", X))
    assert np.allclose(mv.scores()["fc2"], expect)


def test_majority_voting_prunes_during_training_and_removal_is_exact():
    model = lenet_300_100(rng=0)
    X, y = _data(64, (1, 28, 28), 10)
    mv = MajorityVoting(model, ["fc1", "fc2"], {1: 0.3, 2: 0.6})
    fit(model, (X, y), epochs=3, optimizer=SGD(0.05, momentum=0.9), batch_size=16, rng=0,
        verbose=False, callbacks=[mv])
    keep = mv.keep(model)
    assert keep["fc1"].size == 120 and keep["fc2"].size == 40
    small = shrink(model, keep)
    assert np.abs(small(X) - model(X)).max() < 1e-4
    with pytest.raises(ValueError, match="sparsities"):
        MajorityVoting(lenet_300_100(), ["fc1"], {1: 0.5, 2: 0.3})


def test_criteria_are_registered():
    assert {"taylor", "fisher", "lrp"} <= set(CRITERIA)
    model = _conv_head()
    X, y = _data(4)
    assert score_units(model, "conv1", "taylor", X, y).shape == (3,)
    assert score_units(model, "conv1", "fisher", X, y).shape == (3,)
