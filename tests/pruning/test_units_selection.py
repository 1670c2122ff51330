"""Selection rules: per layer as torch counts, global, and to a FLOP budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import lenet5, lenet_300_100
from refimpl.pruning import (
    flops_of,
    l1_filter_scores,
    n_to_prune,
    random_scores,
    select_global,
    select_per_layer,
    select_to_flop_budget,
    shrink,
)


def test_n_to_prune_rounds_like_torch():
    assert n_to_prune(10, 0.25) == 2  # round(2.5) == 2 (half to even), as torch's round
    assert n_to_prune(10, 0.35) == 4  # round(3.5) == 4
    assert n_to_prune(10, 0.0) == 0 and n_to_prune(10, 3) == 3
    with pytest.raises(ValueError, match="remove all"):
        n_to_prune(4, 0.9)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        n_to_prune(4, 4)
    with pytest.raises(TypeError):
        n_to_prune(4, "half")
    with pytest.raises(ValueError, match="n must be"):
        n_to_prune(0, 0.5)


def test_select_per_layer_breaks_ties_by_position():
    keep = select_per_layer(np.array([1.0, 0.0, 0.0, 0.0, 2.0]), 2)
    np.testing.assert_array_equal(keep, [0, 3, 4])  # of the three zeros, 1 and 2 go first
    with pytest.raises(ValueError, match="NaN"):
        select_per_layer(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="1-D"):
        select_per_layer(np.zeros((2, 2)), 0.5)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**20), st.floats(0.0, 0.9), st.sampled_from(["l2", "max", "rank", "none"]))
def test_select_global_removes_the_lowest_normalized_scores(seed, sparsity, normalize):
    rng = np.random.default_rng(seed)
    scores = {"a": rng.random(7), "b": rng.random(12) * 5, "c": rng.random(3)}
    total = 22
    k = round(sparsity * total)
    if k > total - 3:
        with pytest.raises(ValueError, match="must keep one"):
            select_global(scores, sparsity, normalize=normalize)
        return
    keep = select_global(scores, sparsity, normalize=normalize)
    assert sum(v.size for v in keep.values()) == total - k
    assert all(v.size >= 1 for v in keep.values())
    if normalize == "none" and k:
        dropped = [scores[n][np.setdiff1d(np.arange(scores[n].size), keep[n])] for n in scores]
        kept = [scores[n][keep[n]] for n in scores]
        # every dropped score is below every kept one, unless kept to save a layer's last unit
        lo = max(d.max() for d in dropped if d.size)
        protected = [n for n in scores if keep[n].size == 1]
        others = [kept[i] for i, n in enumerate(scores) if n not in protected]
        if others:
            assert lo <= min(o.min() for o in others)


@settings(max_examples=8, deadline=None)
@given(st.floats(0.05, 0.9), st.sampled_from(["uniform", "global"]), st.integers(0, 1000))
def test_flop_budget_is_met_with_the_fewest_removals(reduction, strategy, seed):
    model = lenet5(rng=0)
    scores = {n: random_scores(model[n], rng=seed + i) for i, n in enumerate(["conv1", "conv2",
                                                                             "fc1"])}
    base = flops_of(model, (1, 28, 28))
    keep = select_to_flop_budget(model, scores, (1, 28, 28), reduction, strategy=strategy)
    got = flops_of(shrink(model, keep), (1, 28, 28))
    assert got <= (1 - reduction) * base
    # minimal: putting back one unit (uniform: moving one grid step back) breaks the budget
    if strategy == "global":
        for name in keep:
            removed = np.setdiff1d(np.arange(scores[name].size), keep[name])
            if removed.size:
                back = dict(keep)
                back[name] = np.sort(np.append(keep[name], removed[0]))
                more = flops_of(shrink(model, back), (1, 28, 28))
                assert more > got
    else:
        # one common fraction s explains every layer's count: |count_l - s n_l| <= 1/2
        counts = {n: scores[n].size - keep[n].size for n in keep}
        lo = max((counts[n] - 0.5) / scores[n].size for n in counts)
        hi = min((counts[n] + 0.5) / scores[n].size for n in counts)
        assert lo <= hi + 1e-12


def test_uniform_budget_gives_every_criterion_the_same_cost():
    model = lenet5(rng=0)
    names = ["conv1", "conv2"]
    a = {n: l1_filter_scores(model[n]) for n in names}
    b = {n: random_scores(model[n], rng=1) for n in names}
    ka = select_to_flop_budget(model, a, (1, 28, 28), 0.5)
    kb = select_to_flop_budget(model, b, (1, 28, 28), 0.5)
    assert {n: v.size for n, v in ka.items()} == {n: v.size for n, v in kb.items()}
    fa = flops_of(shrink(model, ka), (1, 28, 28))
    assert fa == flops_of(shrink(model, kb), (1, 28, 28))


def test_flop_budget_on_a_perceptron_and_bad_input():
    model = lenet_300_100(rng=0)
    scores = {"fc1": random_scores(model["fc1"], rng=0), "fc2": random_scores(model["fc2"], rng=1)}
    keep = select_to_flop_budget(model, scores, (784,), 0.6)
    base = flops_of(model, (784,))
    assert flops_of(shrink(model, keep), (784,)) <= 0.4 * base
    with pytest.raises(ValueError, match="out of reach"):
        select_to_flop_budget(model, {"fc2": scores["fc2"]}, (784,), 0.9)
    with pytest.raises(ValueError, match="strategy"):
        select_to_flop_budget(model, scores, (784,), 0.5, strategy="best")
    with pytest.raises(ValueError, match="flop_reduction"):
        select_to_flop_budget(model, scores, (784,), 1.0)
    with pytest.raises(ValueError, match="entries"):
        select_to_flop_budget(model, {"fc1": np.zeros(3)}, (784,), 0.5)
    with pytest.raises(ValueError, match="normalize"):
        select_global(scores, 0.5, normalize="z")
