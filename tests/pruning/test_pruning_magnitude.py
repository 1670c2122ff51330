"""Magnitude pruning (Han et al. 2015): torch's selection rule, global ranking, masks compose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.baselines import load_dataset
from refimpl.models import digits_cnn, digits_mlp
from refimpl.nn import SGD, Mask, fit
from refimpl.pruning import (
    apply_masks,
    check_sparsity,
    current_masks,
    global_magnitude_masks,
    han_prune,
    han_threshold_mask,
    magnitude_mask,
    mask_from_scores,
    prune_by_scores,
    prune_model,
    random_mask,
    random_prune,
    sparsity_report,
)

floats = st.floats(-10, 10, allow_nan=False, width=32)
sparsities = st.floats(0.0, 0.999, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=7), elements=floats),
    s=sparsities,
)
def test_magnitude_mask_removes_exactly_round_s_n_smallest(w, s):
    mask = magnitude_mask(w, s)
    assert mask.shape == w.shape and mask.dtype == bool
    assert int((~mask).sum()) == round(s * w.size)  # torch's _compute_nparams_toprune
    if mask.any() and (~mask).any():
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


def test_magnitude_mask_matches_torch_examples():
    # torch.nn.utils.prune.l1_unstructured(amount=0.5) on [0.1, -0.5, 0.3, 0.05] -> [0, 1, 1, 0]
    np.testing.assert_array_equal(
        magnitude_mask(np.array([0.1, -0.5, 0.3, 0.05]), 0.5), [False, True, True, False]
    )
    # round half to even, as Python's round in torch: 5 * 0.5 = 2.5 -> 2 removed; 0.3*5=1.5 -> 2
    w = np.arange(1.0, 6.0)
    assert int((~magnitude_mask(w, 0.5)).sum()) == 2
    assert int((~magnitude_mask(w, 0.3)).sum()) == 2
    assert int((~magnitude_mask(w, 0.1)).sum()) == 0  # round(0.5) = 0
    # sparsity 0 keeps everything, including zeros
    assert magnitude_mask(np.zeros(4), 0.0).all()


def test_ties_broken_by_position():
    mask = magnitude_mask(np.array([1.0, 1.0, 1.0, 2.0]), 0.5)
    np.testing.assert_array_equal(mask, [False, False, True, True])


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), min_size=1, max_size=4),
    s=sparsities,
    seed=st.integers(0, 2**16),
)
def test_global_masks_rank_all_layers_together(shapes, s, seed):
    rng = np.random.default_rng(seed)
    weights = {f"w{i}": rng.normal(size=sh) * rng.uniform(0.1, 3) for i, sh in enumerate(shapes)}
    masks = global_magnitude_masks(weights, s)
    assert set(masks) == set(weights)
    total = sum(w.size for w in weights.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(s * total)
    kept = [np.abs(w[masks[k]]) for k, w in weights.items()]
    gone = [np.abs(w[~masks[k]]) for k, w in weights.items()]
    kept = np.concatenate(kept)
    gone = np.concatenate(gone)
    if kept.size and gone.size:
        assert kept.min() >= gone.max()
    flat = magnitude_mask(np.concatenate([w.ravel() for w in weights.values()]), s)
    np.testing.assert_array_equal(flat, np.concatenate([m.ravel() for m in masks.values()]))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_sparsity_out_of_range(bad):
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\)"):
        magnitude_mask(np.ones(3), bad)


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_sparsity_wrong_type(bad):
    with pytest.raises(TypeError, match="sparsity"):
        check_sparsity(bad)


def test_bad_weights():
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="at least one"):
        magnitude_mask(np.zeros(0), 0.5)
    with pytest.raises(TypeError, match="real numeric"):
        magnitude_mask(np.array(["a", "b"]), 0.5)
    with pytest.raises(TypeError, match="mapping"):
        global_magnitude_masks([np.ones(3)], 0.5)


def test_prune_model_layer_scope_uses_mask_parametrization():
    model = digits_cnn(rng=0)
    dense = {n: model[n].weight.copy() for n in ("conv1", "conv2", "fc1")}
    prune_model(model, 0.7)
    for n, w in dense.items():
        layer = model[n]
        assert [type(p) for p in layer.chain("weight")] == [Mask]
        assert f"{n}.weight.orig" in model.state_dict()
        assert f"{n}.weight.mask" in model.state_dict()
        np.testing.assert_array_equal(layer.buffers["weight.mask"].astype(bool),
                                      magnitude_mask(w, 0.7))
        assert int((layer.weight == 0).sum()) == round(0.7 * w.size)


def test_prune_model_global_and_dict_and_layers():
    model = digits_mlp(rng=0)
    prune_model(model, 0.6, scope="global")
    rep = sparsity_report(model)
    total = sum(model[n].weight.size for n in ("fc1", "fc2", "fc3"))
    assert rep["total"] == pytest.approx(round(0.6 * total) / total)
    model = digits_mlp(rng=0)
    prune_model(model, {"fc1": 0.9, "fc3": 0.2})
    rep = sparsity_report(model)
    assert rep["fc1"] == pytest.approx(round(0.9 * 64 * 64) / (64 * 64))
    assert rep["fc2"] == 0.0
    model = digits_mlp(rng=0)
    prune_model(model, 0.5, layers=["fc2"])
    assert "weight" not in model["fc1"].parametrizations
    assert [type(p) for p in model["fc2"].chain("weight")] == [Mask]


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(sparsities, min_size=1, max_size=5),
    scope=st.sampled_from(["layer", "global"]),
)
def test_later_masks_are_subsets_of_earlier_ones(steps, scope):
    model = digits_mlp(rng=1)
    prev = current_masks(model)
    for s in sorted(steps):
        prune_model(model, s, scope=scope)
        now = current_masks(model)
        for n in now:
            assert not (now[n] & ~prev[n]).any()  # nothing revived
        prev = now


def test_masks_survive_training_and_reprune_never_revives():
    (X, y), _ = load_dataset("digits")
    model = digits_mlp(rng=0)
    prune_model(model, 0.5)
    first = current_masks(model)
    fit(model, (X[:256], y[:256]), epochs=1, optimizer=SGD(0.1, momentum=0.9, weight_decay=1e-3),
        rng=0, verbose=False)
    for n, m in first.items():
        assert (model[n].weight[~m] == 0).all()
    prune_model(model, 0.8)
    second = current_masks(model)
    for n in first:
        assert not (second[n] & ~first[n]).any()
        assert int((~second[n]).sum()) == round(0.8 * second[n].size)


def test_lower_target_raises():
    model = digits_mlp(rng=0)
    prune_model(model, 0.5)
    with pytest.raises(ValueError, match="below the layer's current sparsity"):
        prune_model(model, 0.3)
    with pytest.raises(ValueError, match="below the model's current sparsity"):
        prune_model(model, 0.3, scope="global")


def test_prune_model_bad_arguments():
    model = digits_mlp(rng=0)
    with pytest.raises(ValueError, match="scope"):
        prune_model(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="layers"):
        prune_model(model, 0.5, layers=["relu1"])
    with pytest.raises(ValueError, match="scope='layer'"):
        prune_model(model, {"fc1": 0.5}, scope="global")
    with pytest.raises(TypeError, match="Sequential"):
        prune_model(model["fc1"], 0.5)
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"fc1": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="shape"):
        prune_by_scores(model, {"fc1": np.ones((2, 2))}, 0.5)


def test_pruning_stacks_on_another_parametrization():
    """A mask joins the weight's chain after any other step, and its zeros hold."""
    from refimpl.nn import Parametrization

    class Scale(Parametrization):
        def materialize(self, x, params, buffers):
            return 2 * x

        def pullback(self, g, x, params, buffers):
            return 2 * g, {}

    model = digits_mlp(rng=0)
    model["fc1"].parametrize("weight", Scale())
    prune_model(model, 0.5)
    assert [type(p) for p in model["fc1"].chain("weight")] == [Scale, Mask]
    assert int((model["fc1"].weight == 0).sum()) == round(0.5 * model["fc1"].weight.size)


def test_han_threshold_rule():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 40))
    q = 0.7
    mask = han_threshold_mask(w, q)
    np.testing.assert_array_equal(mask, np.abs(w) > q * w.std())
    assert han_threshold_mask(w, 0.0).all()
    # with an earlier mask: std over survivors, and removed stay removed
    mask2 = han_threshold_mask(w, q, mask=mask)
    np.testing.assert_array_equal(mask2, mask & (np.abs(w) > q * w[mask].std()))
    with pytest.raises(ValueError, match="quality"):
        han_threshold_mask(w, -1.0)
    with pytest.raises(ValueError, match="shape"):
        han_threshold_mask(w, 1.0, mask=np.ones(3, bool))


def test_han_prune_on_model_per_layer():
    model = digits_mlp(rng=0)
    weights = {n: model[n].weight.copy() for n in ("fc1", "fc2", "fc3")}
    han_prune(model, {"fc1": 1.0, "fc2": 0.5, "fc3": 0.25})
    for n, q in {"fc1": 1.0, "fc2": 0.5, "fc3": 0.25}.items():
        w = weights[n]
        np.testing.assert_array_equal(current_masks(model)[n], np.abs(w) > q * w.std())


def test_random_prune_counts_and_subset():
    model = digits_mlp(rng=0)
    random_prune(model, 0.5, rng=0)
    first = current_masks(model)
    random_prune(model, 0.75, rng=1)
    second = current_masks(model)
    for n in first:
        assert int((~second[n]).sum()) == round(0.75 * second[n].size)
        assert not (second[n] & ~first[n]).any()
    m = random_mask((10, 10), 0.3, rng=0)
    assert int((~m).sum()) == 30
    np.testing.assert_array_equal(m, random_mask((10, 10), 0.3, rng=0))


def test_mask_from_scores_removes_lowest_scores():
    scores = np.array([[3.0, -1.0], [0.5, 2.0]])
    np.testing.assert_array_equal(mask_from_scores(scores, 0.5), [[True, False], [False, True]])


def test_random_mask_refuses_a_shape_it_would_truncate():
    with pytest.raises(TypeError, match=r"shape must be a tuple of ints, got \(2\.5, 3\)"):
        random_mask((2.5, 3), 0.5)  # was silently a (2, 3) mask
    with pytest.raises(TypeError, match="shape"):
        random_mask(("2", 3), 0.5)
    with pytest.raises(TypeError, match="shape"):
        random_mask(6, 0.5)
    with pytest.raises(ValueError, match="sizes >= 1"):
        random_mask((0, 3), 0.5)
    assert random_mask((np.int64(2), 3), 0.5, rng=0).shape == (2, 3)
