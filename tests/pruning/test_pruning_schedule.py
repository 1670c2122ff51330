"""Pruning schedules: one-shot, iterative (geometric), polynomial (Zhu and Gupta's cubic)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.baselines import load_dataset
from refimpl.models import digits_mlp
from refimpl.nn import SGD, fit
from refimpl.pruning import (
    GradualPruning,
    current_masks,
    iterative_pruning,
    polynomial_sparsity,
    sparsity_report,
    sparsity_schedule,
)


def test_polynomial_matches_tf_mot_formula():
    kw = dict(initial_sparsity=0.2, final_sparsity=0.8, begin_step=10, end_step=110)
    assert polynomial_sparsity(0, **kw) == 0.0  # not started
    assert polynomial_sparsity(10, **kw) == pytest.approx(0.2)
    assert polynomial_sparsity(60, **kw) == pytest.approx(0.8 + (0.2 - 0.8) * 0.5**3)
    assert polynomial_sparsity(110, **kw) == pytest.approx(0.8)
    assert polynomial_sparsity(10_000, **kw) == pytest.approx(0.8)
    values = [polynomial_sparsity(t, **kw) for t in range(10, 111)]
    assert np.all(np.diff(values) >= 0)


@settings(max_examples=40, deadline=None)
@given(
    final=st.floats(0.0, 0.99),
    rounds=st.integers(1, 12),
    kind=st.sampled_from(["one_shot", "iterative", "linear", "polynomial"]),
)
def test_schedules_end_at_target_and_never_decrease(final, rounds, kind):
    s = sparsity_schedule(final, rounds, kind=kind)
    assert s.shape == (rounds,)
    assert s[-1] == final
    assert np.all(np.diff(s) >= -1e-12)
    assert np.all((s >= 0) & (s < 1))


def test_iterative_schedule_removes_same_fraction_of_survivors():
    s = sparsity_schedule(0.9, 5, kind="iterative")
    survivors = np.concatenate([[1.0], 1 - s])
    ratios = survivors[1:] / survivors[:-1]
    np.testing.assert_allclose(ratios, 0.1 ** (1 / 5))
    np.testing.assert_allclose(sparsity_schedule(0.9, 3, kind="one_shot"), [0.9] * 3)


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        sparsity_schedule(0.5, 3, kind="cosine")
    with pytest.raises(ValueError, match="rounds"):
        sparsity_schedule(0.5, 0)
    with pytest.raises(ValueError, match="final_sparsity"):
        sparsity_schedule(1.0, 3)
    with pytest.raises(ValueError, match="end_step"):
        polynomial_sparsity(3, final_sparsity=0.5, begin_step=5, end_step=5)
    with pytest.raises(ValueError, match="must not exceed"):
        polynomial_sparsity(3, initial_sparsity=0.6, final_sparsity=0.5, end_step=9)
    with pytest.raises(ValueError, match="power"):
        polynomial_sparsity(3, final_sparsity=0.5, end_step=9, power=0)


class _Recorder:
    def __init__(self):
        self.masks = []

    def on_step_end(self, model, step):
        self.masks.append(current_masks(model))


def test_gradual_pruning_callback_reaches_target_with_nested_masks():
    (X, y), _ = load_dataset("digits")
    model = digits_mlp(rng=0)
    cb = GradualPruning(0.8, begin_step=2, end_step=30, frequency=4)
    rec = _Recorder()
    fit(model, (X[:640], y[:640]), epochs=4, optimizer=SGD(0.05, momentum=0.9),
        batch_size=64, rng=0, callbacks=[cb, rec], verbose=False)
    steps = [e[0] for e in cb.events]
    assert steps[0] == 2 and steps[-1] == 30
    assert all((s - 2) % 4 == 0 or s == 30 for s in steps)
    assert [e[1] for e in cb.events] == sorted(e[1] for e in cb.events)
    for n, s in sparsity_report(model).items():
        assert s == pytest.approx(0.8, abs=1e-3), n
    for a, b in zip(rec.masks, rec.masks[1:], strict=False):
        for n in a:
            assert not (b[n] & ~a[n]).any()


def test_iterative_pruning_retrains_and_keeps_masks_nested():
    (X, y), (Xt, yt) = load_dataset("digits")
    from refimpl.baselines import load_baseline

    model = load_baseline("digits_mlp")
    targets = sparsity_schedule(0.8, 3, kind="iterative")
    rounds = iterative_pruning(model, (X, y), targets, optimizer=SGD(0.02, momentum=0.9),
                               epochs=2, rng=0, val_data=(Xt, yt))
    assert [r.round for r in rounds] == [1, 2, 3]
    assert rounds[-1].sparsity["total"] == pytest.approx(0.8, abs=1e-3)
    # retraining recovers what pruning lost (the paper's central claim, on a small scale)
    assert rounds[-1].accuracy_retrained >= rounds[-1].accuracy_pruned
    assert rounds[-1].accuracy_retrained >= 0.93
    with pytest.raises(TypeError, match="optimizer"):
        iterative_pruning(model, (X, y), [0.9], optimizer="sgd")
