"""Neuron and filter criteria: each proves the property its paper relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.models import digits_cnn, lenet5, small_vgg
from refimpl.nn import (
    SGD,
    Conv2d,
    CrossEntropyLoss,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    fit,
)
from refimpl.pruning import (
    CRITERIA,
    SoftFilterPruning,
    activation_entropy_scores,
    activation_variance_scores,
    apoz_scores,
    data_free_saliency,
    fpgm_scores,
    l1_filter_scores,
    l2_filter_scores,
    majority_vote_scores,
    mean_gradient_scores,
    outgoing_weight_scores,
    output_entropy_scores,
    random_scores,
    remove_units,
    score_units,
    select_per_layer,
    shrink,
    unit_activations,
    unit_gradients,
)


def _x(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Weight criteria
# --------------------------------------------------------------------------------------------


def test_l1_filter_scores_hand_computed():
    w = np.zeros((3, 2, 2, 2), dtype=np.float32)
    w[0, 0, 0, 0], w[0, 1, 1, 1] = 1.0, -2.0
    w[2] = -0.5
    np.testing.assert_allclose(l1_filter_scores(w), [3.0, 0.0, 4.0])
    np.testing.assert_allclose(l2_filter_scores(w), [math.sqrt(5.0), 0.0, math.sqrt(2.0)])
    conv = Conv2d(2, 3, 2, rng=0)
    conv.weight = w
    np.testing.assert_allclose(l1_filter_scores(conv), [3.0, 0.0, 4.0])


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(2, 12), st.integers(1, 3), st.just(2), st.just(2)),
           elements=st.floats(-4, 4, width=32)),
    st.floats(0.0, 0.95),
)
def test_l1_selection_keeps_the_largest_filters(w, sparsity):
    n = w.shape[0]
    scores = l1_filter_scores(w)
    k = round(sparsity * n)
    if k >= n:
        return
    keep = select_per_layer(scores, sparsity)
    assert keep.size == n - k
    dropped = np.setdiff1d(np.arange(n), keep)
    if dropped.size:
        assert scores[dropped].max() <= scores[keep].min()


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.25, 0.5, 0.7, 3])
def test_l1_selection_matches_torch_ln_structured(amount):
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    rng = np.random.default_rng(3)
    w = rng.normal(size=(10, 3, 3, 3)).astype(np.float32)
    conv = torch.nn.Conv2d(3, 10, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
    prune.ln_structured(conv, "weight", amount=amount, n=1, dim=0)
    torch_kept = np.flatnonzero(conv.weight_mask.numpy().reshape(10, -1).all(axis=1))
    ours = select_per_layer(l1_filter_scores(w), amount)
    np.testing.assert_array_equal(ours, torch_kept)


def test_fpgm_scores_the_geometric_median_lowest():
    rng = np.random.default_rng(0)
    v, u = rng.normal(size=8), rng.normal(size=8)
    centre = rng.normal(size=8) * 0.01
    w = np.stack([centre + 3 * v, centre, centre - 3 * v, centre + 2 * u, centre - 2 * u])
    scores = fpgm_scores(w.reshape(5, 2, 2, 2))
    assert np.argmin(scores) == 1
    # a large-norm filter at the median is still judged redundant; L1 would keep it
    big = w + 10.0
    assert np.argmin(fpgm_scores(big)) == 1 and np.argmin(l1_filter_scores(big)) != 1


def test_outgoing_weight_scores_hand_computed_and_across_flatten():
    nxt = np.array([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]])
    np.testing.assert_allclose(outgoing_weight_scores(np.zeros((3, 4)), nxt), [2.0, 1.0, 0.0])
    # 2 channels of 2x2 maps flattened: channel 0 owns columns 0..3
    nxt = np.zeros((1, 8))
    nxt[0, :4] = [1, -1, 1, -1]
    np.testing.assert_allclose(outgoing_weight_scores(np.zeros((2, 1, 3, 3)), nxt), [1.0, 0.0])


def test_data_free_saliency_is_zero_for_twins():
    w = np.random.default_rng(0).normal(size=(4, 5))
    w[3] = w[1]
    sal = data_free_saliency(w, np.ones((2, 4)))
    assert sal[1] == pytest.approx(0.0, abs=1e-12) and sal[3] == pytest.approx(0.0, abs=1e-12)
    assert sal[0] > 0 and sal[2] > 0
    # a unit with zero outgoing weights costs nothing to merge
    nxt = np.ones((2, 4))
    nxt[:, 2] = 0
    assert data_free_saliency(np.random.default_rng(1).normal(size=(4, 5)), nxt)[2] == 0


def test_random_scores_are_reproducible():
    w = np.zeros((7, 3))
    np.testing.assert_array_equal(random_scores(w, rng=4), random_scores(w, rng=4))
    assert not np.array_equal(random_scores(w, rng=4), random_scores(w, rng=5))


# --------------------------------------------------------------------------------------------
# Activation criteria
# --------------------------------------------------------------------------------------------


def test_apoz_hand_computed():
    a = np.zeros((2, 3, 2, 2))
    a[:, 0] = 1.0  # always on
    a[0, 1, 0, 0] = 2.0  # on at 1 of 8 positions
    np.testing.assert_allclose(apoz_scores(np.zeros((3, 1, 1, 1)), a), [1.0, 1 / 8, 0.0])


def test_variance_and_entropy_are_zero_for_a_constant_channel():
    rng = np.random.default_rng(0)
    a = rng.random((50, 3, 4, 4))
    a[:, 1] = 0.7
    w = np.zeros((3, 1, 1, 1))
    var, ent = activation_variance_scores(w, a), output_entropy_scores(w, a, bins=8)
    assert var[1] < 1e-20 and ent[1] == 0 and var[0] > 0.01 and ent[0] > 0.1


def test_output_entropy_of_an_even_spread_is_log_bins():
    g = np.repeat(np.arange(8.0), 5)  # 40 inputs, 5 in each of 8 bins
    a = np.stack([g, np.zeros_like(g)], axis=1)
    ent = output_entropy_scores(np.zeros((2, 3)), a, bins=8)
    assert ent[0] == pytest.approx(math.log(8)) and ent[1] == 0.0


def test_binary_entropy_hand_computed():
    a = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    h = activation_entropy_scores(np.zeros((3, 2)), a)
    np.testing.assert_allclose(h, [math.log(2), 0.0, 0.0])
    h = activation_entropy_scores(np.zeros((3, 2)), a, threshold=1.5)
    np.testing.assert_allclose(h, [0.0, 0.0, 0.0])


def test_majority_vote_hand_computed():
    a = np.array([[3.0, 1.0, 0.0], [0.0, 4.0, 1.0], [2.0, 2.0, 0.0]])
    # means per input: 4/3, 5/3, 4/3; unit 0 wins inputs 0 and 2, unit 1 inputs 1 and 2
    np.testing.assert_allclose(majority_vote_scores(np.zeros((3, 2)), a), [2 / 3, 2 / 3, 0.0])
    scaled = majority_vote_scores(np.zeros((3, 2)), a * 100.0)
    np.testing.assert_allclose(scaled, [2 / 3, 2 / 3, 0.0])  # invariant to the layer's scale


def test_unit_activations_are_the_post_relu_maps():
    model = lenet5(rng=0)
    x = _x((3, 1, 28, 28))
    acts = unit_activations(model, "conv2", x, batch_size=2)
    expected = model["relu2"](model["conv2"](model["pool1"](model["relu1"](model["conv1"](x)))))
    np.testing.assert_allclose(acts, expected, atol=1e-6)
    vgg = small_vgg(rng=0)
    assert unit_activations(vgg, "conv3", _x((2, 1, 8, 8))).shape == (2, 32, 4, 4)


def test_unit_gradients_match_finite_differences():
    model = digits_cnn(rng=0).astype(np.float64)
    x = np.random.default_rng(0).random((3, 1, 8, 8))
    y = np.array([1, 4, 7])
    g = unit_gradients(model, "conv2", x, y)
    head = Sequential(*list(model.named_layers())[4:])  # relu2 ... fc1
    feats = model["conv2"](model["pool1"](model["relu1"](model["conv1"](x))))
    loss = CrossEntropyLoss()

    def total(f):
        return loss(head(f), y) * len(y)

    rng = np.random.default_rng(1)
    for _ in range(5):
        idx = tuple(int(rng.integers(s)) for s in feats.shape)
        e = np.zeros_like(feats)
        e[idx] = 1e-6
        num = (total(feats + e) - total(feats - e)) / 2e-6
        assert g[idx] == pytest.approx(num, rel=1e-4, abs=1e-8)


def test_mean_gradient_is_zero_for_a_dead_filter():
    model = digits_cnn(rng=0)
    model["conv1"].params["bias"][3] = -100.0  # never fires
    x = _x((20, 1, 8, 8))
    y = np.arange(20) % 10
    scores = mean_gradient_scores(model["conv1"], unit_gradients(model, "conv1", x, y))
    assert scores[3] == 0 and np.all(np.delete(scores, 3) > 0)
    assert apoz_scores(model["conv1"], unit_activations(model, "conv1", x))[3] == 0


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_every_criterion_scores_every_unit(criterion):
    model = lenet5(rng=0)
    x, y = _x((6, 1, 28, 28)), np.arange(6) % 10
    for name, n in (("conv1", 20), ("fc1", 500)):
        options = {"rng": 0} if criterion == "random" else {}
        if criterion == "thinet":
            options = {"rng": 0, "n_samples": 100}
        scores = score_units(model, name, criterion, x, y, **options)
        assert scores.shape == (n,) and np.isfinite(scores).all()


# --------------------------------------------------------------------------------------------
# Soft filter pruning
# --------------------------------------------------------------------------------------------


def test_soft_filter_pruning_zeroes_then_surgery_is_exact():
    # unpadded convolutions, so that folding the zeroed filters' constants is exact
    model = Sequential(
        ("conv1", Conv2d(1, 8, 3, rng=0)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(8, 16, 3, rng=1)), ("relu2", ReLU()), ("flatten", Flatten()),
        ("fc1", Linear(16, 10, rng=2)),
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 64)
    sfp = SoftFilterPruning(0.25, layers=["conv1", "conv2"])
    fit(model, (x, y), epochs=2, optimizer=SGD(0.05, momentum=0.9), callbacks=[sfp],
        verbose=False, rng=0)
    assert len(sfp.history) == 2
    zero_rows = np.abs(model["conv2"].weight).reshape(16, -1).sum(axis=1) == 0
    assert zero_rows.sum() == 4  # round(0.25 * 16) filters zeroed at the last epoch end
    keep = sfp.keep(model)
    assert keep["conv1"].size == 6 and keep["conv2"].size == 12
    small = shrink(model, keep)
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def test_soft_filter_pruning_lets_filters_recover():
    model = Sequential(("fc1", Linear(4, 4, rng=0)), ("relu", ReLU()), ("fc2", Linear(4, 2, rng=1)))
    sfp = SoftFilterPruning({"fc1": 0.5})
    sfp.on_epoch_end(model, 1, None)
    zeroed = np.flatnonzero(np.abs(model["fc1"].weight).sum(axis=1) == 0)
    assert zeroed.size == 2
    x, y = _x((32, 4)), np.arange(32) % 2
    fit(model, (x, y), epochs=1, optimizer=SGD(0.1), verbose=False, rng=0)
    assert np.abs(model["fc1"].weight[zeroed]).sum() > 0  # still trained: "soft"


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_criteria_reject_bad_input():
    w = np.zeros((3, 2, 2, 2))
    with pytest.raises(ValueError, match="3"):
        apoz_scores(w, np.zeros((4, 5, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        apoz_scores(w, np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        activation_variance_scores(w, np.full((2, 3), np.nan))
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        l1_filter_scores([1.0, 2.0])
    with pytest.raises(ValueError, match="2-D"):
        l1_filter_scores(np.zeros(3))
    with pytest.raises(ValueError, match="bins"):
        output_entropy_scores(w, np.zeros((2, 3)), bins=1)
    with pytest.raises(ValueError, match="criterion"):
        score_units(lenet5(), "conv1", "nope")
    with pytest.raises(ValueError, match="needs data"):
        score_units(lenet5(), "conv1", "apoz")
    with pytest.raises(ValueError, match="labels"):
        unit_gradients(lenet5(), "conv1", _x((2, 1, 28, 28)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="layers is required"):
        SoftFilterPruning(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SoftFilterPruning(1.5, layers=["conv1"])
    with pytest.raises(ValueError, match="at least two"):
        data_free_saliency(np.zeros((1, 3)), np.zeros((2, 1)))


def test_remove_units_after_scoring_roundtrip():
    model = lenet5(rng=0)
    keep = select_per_layer(score_units(model, "conv1", "l1"), 0.5)
    small = remove_units(model, "conv1", keep)
    assert small["conv1"].out_channels == 10 and small["conv2"].in_channels == 10
