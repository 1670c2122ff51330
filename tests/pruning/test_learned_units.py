"""DivNet, Centripetal SGD, AutoPruner and the MetaPruning stand-in: the properties their papers
claim (refimpl.pruning.learned_units, refimpl.pruning.autopruner)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import digits_cnn
from refimpl.nn import SGD, Layer, Linear, ReLU, Sequential, fit, gradcheck
from refimpl.pruning import (
    AlphaSchedule,
    CentripetalSGD,
    ChannelSelector,
    autopruner_prune,
    cluster_filters,
    divnet_prune,
    dpp_greedy_map,
    dpp_kernel,
    fuse_units,
    inherit_widths,
    intra_cluster_distance,
    merge_clusters,
    model_flops,
    width_search,
)


class ZeroLoss:
    """A loss whose gradient is zero: only the callbacks' own terms move the weights."""

    def __call__(self, out: np.ndarray, y: np.ndarray) -> float:
        self._shape = out.shape
        return 0.0

    def backward(self) -> np.ndarray:
        return np.zeros(self._shape, dtype=np.float32)


# ------------------------------------------------------------------ DivNet


@pytest.mark.parametrize("relu", [False, True])
def test_fusing_an_exact_linear_combination_leaves_the_output_unchanged(relu: bool) -> None:
    rng = np.random.default_rng(0)
    fc1, fc2 = Linear(6, 5, rng=1), Linear(5, 3, rng=2)
    w, b = fc1.params["weight"], fc1.params["bias"]
    if relu:  # a positive multiple survives the ReLU: relu(3 z) = 3 relu(z)
        w[4], b[4] = 3 * w[0], 3 * b[0]
        w[3], b[3] = 0.5 * w[1], 0.5 * b[1]
    else:  # no nonlinearity: any linear combination
        w[4], b[4] = w[0] + 2 * w[1], b[0] + 2 * b[1]
        w[3], b[3] = w[2] - w[1], b[2] - b[1]
    layers = [("fc1", fc1)] + ([("relu1", ReLU())] if relu else []) + [("fc2", fc2)]
    model = Sequential(*layers)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    small = fuse_units(model, "fc1", [0, 1, 2], X, intercept=False)
    assert small["fc1"].out_features == 3
    assert np.abs(small(X) - model(X)).max() < 1e-4


def _activations_with_duplicates(seed: int, n_distinct: int, n_dup: int):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((60, n_distinct))
    dup_of = rng.integers(0, n_distinct, n_dup)
    A = np.concatenate([base, base[:, dup_of]], axis=1)
    perm = rng.permutation(A.shape[1])
    origin = np.concatenate([np.arange(n_distinct), dup_of])[perm]
    return A[:, perm], origin


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 8), st.integers(1, 6))
def test_greedy_map_never_picks_a_duplicate_while_a_distinct_unit_remains(
    seed: int, n_distinct: int, n_dup: int
) -> None:
    A, origin = _activations_with_duplicates(seed, n_distinct, n_dup)
    sel = dpp_greedy_map(dpp_kernel(A), n_distinct)
    assert len(set(origin[sel.selected])) == n_distinct


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 12))
def test_greedy_log_det_is_the_selected_sets_and_its_gains_diminish(seed: int, n: int) -> None:
    A = np.random.default_rng(seed).standard_normal((40, n))
    L = dpp_kernel(A)
    sel = dpp_greedy_map(L, n)
    for t in range(1, n + 1):
        S = sel.selected[:t]
        assert sel.logdets[t - 1] == pytest.approx(np.linalg.slogdet(L[np.ix_(S, S)])[1], abs=1e-8)
    # log det is submodular: the greedy's marginal gains never increase
    assert np.all(np.diff(sel.gains) <= 1e-10)
    # scaled so that every gain exceeds 1, the log-det rises with every pick
    big = dpp_greedy_map(L * (2.0 / sel.gains.min()), n)
    assert np.all(np.diff(big.logdets) > 0)


def test_divnet_prune_keeps_n_keep_units_and_refuses_bad_input() -> None:
    model = Sequential(("fc1", Linear(6, 8, rng=0)), ("relu1", ReLU()), ("fc2", Linear(8, 3)))
    X = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    assert divnet_prune(model, "fc1", 5, X)["fc1"].out_features == 5
    with pytest.raises(ValueError, match="n_keep"):
        divnet_prune(model, "fc1", 9, X)
    with pytest.raises(ValueError, match="k must"):
        dpp_greedy_map(np.eye(3), 4)
    with pytest.raises(ValueError, match="activations"):
        dpp_kernel(np.full((4, 3), np.nan))


# ------------------------------------------------------------------ Centripetal SGD


def test_centripetal_term_shrinks_intra_cluster_distance_geometrically() -> None:
    model = digits_cnn(rng=0)
    clusters = {"conv1": cluster_filters(model["conv1"], 3, rng=0),
                "conv2": cluster_filters(model["conv2"], 5, rng=0)}  # fmt: skip
    eps = 0.1
    seen: list[list[float]] = []

    class Record:
        def on_step_end(self, m: Sequential, step: int) -> None:
            seen.append([intra_cluster_distance(m[n], clusters[n]) for n in clusters])

    start = [intra_cluster_distance(model[n], clusters[n]) for n in clusters]
    X = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = np.zeros(64, dtype=np.int64)
    fit(model, (X, y), epochs=1, optimizer=SGD(0.1), batch_size=8, loss=ZeroLoss(), rng=0,
        callbacks=[CentripetalSGD(clusters, eps), Record()], verbose=False)  # fmt: skip
    dist = np.array([start] + seen)
    ratios = dist[1:] / dist[:-1]
    np.testing.assert_allclose(ratios, 1 - eps, rtol=1e-4)


def test_merging_identical_filters_leaves_the_output_unchanged() -> None:
    model = digits_cnn(rng=1)
    clusters = {"conv1": np.array([0, 1, 0, 2, 1, 0, 3, 3]),
                "conv2": np.arange(16) % 6}  # fmt: skip
    for name, labels in clusters.items():
        layer = model[name]
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            layer.params["weight"][members] = layer.params["weight"][members[0]]
            layer.params["bias"][members] = layer.params["bias"][members[0]]
    merged = merge_clusters(model, clusters)
    assert merged["conv1"].out_channels == 4 and merged["conv2"].out_channels == 6
    X = np.random.default_rng(0).standard_normal((20, 1, 8, 8)).astype(np.float32)
    assert np.abs(merged(X) - model(X)).max() < 1e-4


def test_cluster_filters_gives_every_cluster_a_member() -> None:
    labels = cluster_filters(digits_cnn(rng=0)["conv2"], 7, rng=3)
    assert sorted(set(labels.tolist())) == list(range(7))
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_filters(digits_cnn(rng=0)["conv2"], 17)
    with pytest.raises(ValueError, match="centripetal"):
        CentripetalSGD({"conv1": labels}, 1.0)


# ------------------------------------------------------------------ AutoPruner


def test_channel_selector_passes_gradcheck_and_describes_itself() -> None:
    x = np.random.default_rng(0).standard_normal((4, 5, 3, 3))
    sel = ChannelSelector(5, alpha=2.0, target=0.3, penalty=3.0, rng=0)
    assert gradcheck(sel, x).passed
    assert gradcheck(sel, x[:, :, 0, 0]).passed
    again = Layer.build(sel.describe())
    assert again.config() == sel.config()
    assert ChannelSelector.param_shapes(sel.config()) == {"weight": (5, 5), "bias": (5,)}
    from refimpl.cost import profile

    row = profile(Sequential(("sel", sel)), (5, 3, 3)).rows[0]
    assert row.params == 30 and row.macs == 25 + 45


def test_penalty_gradient_in_training_mode_matches_finite_differences() -> None:
    x = np.random.default_rng(1).standard_normal((3, 4, 2, 2))
    sel = ChannelSelector(4, alpha=1.5, target=0.2, penalty=5.0, rng=0).astype(np.float64)
    R = np.random.default_rng(2).standard_normal(x.shape)

    def total() -> float:
        out = sel.forward(x, train=True)
        return float((out * R).sum()) + sel.last_penalty

    total()
    sel.backward(R)
    analytic = sel.grads["weight"].copy()
    w = sel.params["weight"]
    num = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + 1e-6
        fp = total()
        w[idx] = old - 1e-6
        fm = total()
        w[idx] = old
        num[idx] = (fp - fm) / 2e-6
    np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8)


def test_large_alpha_makes_the_code_binary() -> None:
    x = np.random.default_rng(0).standard_normal((50, 6, 4, 4)).astype(np.float32) + 1.0
    sel = ChannelSelector(6, alpha=1e5, rng=0)
    code = sel.codes(x)
    assert np.minimum(code, 1 - code).max() < 1e-6


def test_penalty_drives_the_mean_code_to_the_target() -> None:
    model = Sequential(("sel", ChannelSelector(10, target=0.3, penalty=1.0, rng=0)))
    X = np.random.default_rng(0).standard_normal((256, 10)).astype(np.float32)
    y = np.zeros(256, dtype=np.int64)
    fit(model, (X, y), epochs=30, optimizer=SGD(2.0), batch_size=64, loss=ZeroLoss(), rng=0,
        verbose=False)  # fmt: skip
    assert abs(float(model["sel"].codes(X).mean()) - 0.3) < 0.02


def test_autopruner_prune_is_exact_for_binary_codes_and_alpha_schedule_rises() -> None:
    model = digits_cnn(rng=0)
    from refimpl.pruning import add_channel_selectors

    with_sel = add_channel_selectors(model, ["conv1", "conv2"], rng=0)
    assert with_sel.names()[2] == "sel_conv1"
    for name, keep in (("sel_conv1", [0, 3, 5]), ("sel_conv2", [1, 2, 8, 9, 15])):
        sel = with_sel[name]
        sel.params["weight"][:] = 0
        sel.params["bias"][:] = -1.0
        sel.params["bias"][keep] = 1.0
        sel.alpha = 100.0
    X = np.random.default_rng(0).standard_normal((30, 1, 8, 8)).astype(np.float32)
    small = autopruner_prune(with_sel, X)
    assert small["conv1"].out_channels == 3 and small["conv2"].out_channels == 5
    assert not any(isinstance(m, ChannelSelector) for _, m in small.named_layers())
    assert np.abs(small(X) - with_sel(X)).max() < 1e-4
    sched = AlphaSchedule(1.0, 1.1, 50.0)
    assert sched.alpha(0) == 1.0 and sched.alpha(10) == pytest.approx(1.1**10)
    assert sched.alpha(1000) == 50.0


# ------------------------------------------------------------------ MetaPruning stand-in


_X = np.random.default_rng(0).standard_normal((96, 1, 8, 8)).astype(np.float32)
_y = np.random.default_rng(1).integers(0, 10, 96)


@settings(max_examples=10, deadline=None)
@given(st.floats(0.15, 1.0), st.integers(0, 1000))
def test_every_width_candidate_meets_the_flop_budget(budget: float, seed: int) -> None:
    model = digits_cnn(rng=0)
    full = model_flops(model, (1, 8, 8))
    s = width_search(model, ["conv1", "conv2"], (_X, _y), (_X, _y), (1, 8, 8), budget,
                     n_candidates=4, finetune_steps=0, rng=seed)  # fmt: skip
    assert s.budget == int(np.floor(budget * full))
    for c in s.candidates:
        assert c.flops <= s.budget
        assert c.flops == model_flops(inherit_widths(model, c.widths), (1, 8, 8))
    uni = s.uniform.widths
    assert abs(uni["conv1"] / 8 - uni["conv2"] / 16) <= 1 / 8


def test_width_search_is_deterministic_for_a_seed_and_refuses_bad_budgets() -> None:
    model = digits_cnn(rng=0)
    args = (model, ["conv1", "conv2"], (_X, _y), (_X, _y), (1, 8, 8), 0.5)
    a = width_search(*args, n_candidates=3, finetune_steps=2, batch_size=16, rng=7)
    b = width_search(*args, n_candidates=3, finetune_steps=2, batch_size=16, rng=7)
    assert [c.widths for c in a.candidates] == [c.widths for c in b.candidates]
    assert [c.accuracy for c in a.candidates] == [c.accuracy for c in b.candidates]
    with pytest.raises(ValueError, match="flop_budget"):
        width_search(*args[:5], 0.0)
    with pytest.raises(ValueError, match="flop_budget"):
        width_search(*args[:5], 0.01, finetune_steps=0)
