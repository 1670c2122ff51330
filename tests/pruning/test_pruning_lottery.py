"""Lottery tickets: nested masks, resetting and rewinding, and the random re-init control."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.baselines import load_dataset
from refimpl.models import digits_mlp
from refimpl.nn import SGD, Mask, evaluate, fit
from refimpl.pruning import (
    RewindPoint,
    apply_masks,
    current_masks,
    iterative_magnitude_pruning,
    prune_model,
    random_reinit,
    rewind,
    snapshot,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _sgd():
    return SGD(0.05, momentum=0.9)


def test_snapshot_and_rewind_restore_initial_weights_under_the_mask(digits):
    (X, y), _ = digits
    model = digits_mlp(rng=0)
    init = snapshot(model)
    fit(model, (X[:256], y[:256]), epochs=1, optimizer=_sgd(), rng=0, verbose=False)
    prune_model(model, 0.6)
    masks = current_masks(model)
    rewind(model, init)
    for n, m in masks.items():
        assert [type(p) for p in model[n].chain("weight")] == [Mask]
        np.testing.assert_array_equal(model[n].weight, init[f"{n}.weight"] * m)
        np.testing.assert_array_equal(model[n].bias, init[f"{n}.bias"])
    with pytest.raises(ValueError, match="keys"):
        rewind(model, {"fc1.weight": init["fc1.weight"]})


def test_imp_masks_nested_with_the_paper_rates(digits):
    (X, y), (Xt, yt) = digits
    model = digits_mlp(rng=0)
    init = snapshot(model)
    rate = {"fc1": 0.2, "fc2": 0.2, "fc3": 0.1}
    res = iterative_magnitude_pruning(
        model, (X[:320], y[:320]), rounds=3, rate=rate, make_optimizer=_sgd, epochs=1,
        rng=0, val_data=(Xt, yt),
    )
    assert len(res.masks) == len(res.sparsity) == len(res.accuracy) == 4
    assert res.sparsity[0] == 0.0
    for n, p in rate.items():
        alive = res.masks[0][n].size
        for r in range(1, 4):
            alive -= round(p * alive)  # p of the survivors, in whole weights, each round
            assert int(res.masks[r][n].sum()) == alive
            assert not (res.masks[r][n] & ~res.masks[r - 1][n]).any()
    for k, v in init.items():
        np.testing.assert_array_equal(res.rewind_state[k], v)  # reset to theta_0
    assert all(0 <= a <= 1 for a in res.accuracy)


def test_rewind_point_takes_snapshot_after_k_steps(digits):
    (X, y), _ = digits
    model = digits_mlp(rng=0)
    point = RewindPoint(5)
    fit(model, (X[:320], y[:320]), epochs=1, optimizer=_sgd(), batch_size=64, rng=0,
        callbacks=[point], verbose=False)  # exactly 5 steps
    for k, v in snapshot(model).items():
        np.testing.assert_array_equal(point.state[k], v)
    with pytest.raises(ValueError, match="step"):
        RewindPoint(-1)


def test_imp_with_rewinding_uses_the_early_weights(digits):
    (X, y), _ = digits
    model = digits_mlp(rng=0)
    init = snapshot(model)
    res = iterative_magnitude_pruning(
        model, (X[:320], y[:320]), rounds=1, rate=0.5, make_optimizer=_sgd, epochs=1,
        rewind_step=3, rng=0,
    )
    assert not np.array_equal(res.rewind_state["fc1.weight"], init["fc1.weight"])
    with pytest.raises(ValueError, match="beyond"):
        iterative_magnitude_pruning(
            digits_mlp(rng=0), (X[:64], y[:64]), rounds=1, make_optimizer=_sgd, epochs=1,
            rewind_step=50, rng=0,
        )


def test_random_reinit_keeps_mask_and_draws_from_the_init_distribution():
    model = digits_mlp(rng=0)
    prune_model(model, 0.7)
    masks = current_masks(model)
    before = snapshot(model)
    random_reinit(model, rng=1)
    for n, m in masks.items():
        assert np.array_equal(current_masks(model)[n], m)
        w = model[n].weight
        assert (w[~m] == 0).all()
        assert not np.array_equal(w, before[f"{n}.weight"])
        assert np.abs(w).max() <= 1 / np.sqrt(w.shape[1])


def test_winning_ticket_beats_random_reinit_at_high_sparsity(digits):
    """Frankle and Carbin's finding, at digits scale: same mask, original init wins."""
    (X, y), (Xt, yt) = digits
    model = digits_mlp(rng=0)
    res = iterative_magnitude_pruning(
        model, (X, y), rounds=4, rate={"fc1": 0.5, "fc2": 0.5, "fc3": 0.25},
        make_optimizer=_sgd, epochs=5, batch_size=32, rng=0, val_data=(Xt, yt),
    )
    assert res.sparsity[-1] > 0.9
    controls = []
    for seed in (100, 101):
        c = digits_mlp(rng=seed)
        apply_masks(c, res.masks[-1])
        fit(c, (X, y), epochs=5, optimizer=_sgd(), batch_size=32, rng=0, verbose=False)
        controls.append(evaluate(c, (Xt, yt)).accuracy)
    assert res.accuracy[-1] > max(controls) + 0.05


def test_imp_bad_arguments(digits):
    (X, y), _ = digits
    with pytest.raises(ValueError, match="rounds"):
        iterative_magnitude_pruning(digits_mlp(), (X, y), rounds=0, make_optimizer=_sgd)
    with pytest.raises(ValueError, match="rate"):
        iterative_magnitude_pruning(digits_mlp(), (X, y), rounds=1, rate=1.0,
                                    make_optimizer=_sgd)
    with pytest.raises(TypeError, match="make_optimizer"):
        iterative_magnitude_pruning(digits_mlp(), (X, y), rounds=1, make_optimizer=_sgd())
