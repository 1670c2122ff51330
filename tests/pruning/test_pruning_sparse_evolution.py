"""SET: Erdős–Rényi topology, prune the weakest fraction and regrow, constant sparsity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.baselines import load_dataset
from refimpl.models import digits_cnn, digits_mlp
from refimpl.nn import SGD, evaluate, fit
from refimpl.pruning import (
    SparseEvolution,
    current_masks,
    erdos_renyi_density,
    erdos_renyi_masks,
    set_initialize,
    set_rewire,
)


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 500), n_out=st.integers(1, 500), eps=st.floats(0.1, 50))
def test_erdos_renyi_density_formula(n_in, n_out, eps):
    p = erdos_renyi_density((n_out, n_in), eps)
    assert p == pytest.approx(min(1.0, eps * (n_in + n_out) / (n_in * n_out)))
    assert 0 < p <= 1


def test_erdos_renyi_masks_have_the_expected_number_of_connections():
    model = digits_mlp(rng=0)
    masks = erdos_renyi_masks(model, 5, rng=0)
    for n, m in masks.items():
        n_out, n_in = m.shape
        expected = 5 * (n_in + n_out)  # epsilon (n_in + n_out) connections
        assert abs(int(m.sum()) - expected) <= 1, n
    # a convolution uses the sum of the kernel's dimensions over their product
    dense_out = erdos_renyi_masks(digits_mlp(rng=0), 20, rng=0)  # fc3: 20 (32 + 10) > 320
    assert "fc3" not in dense_out and "fc1" in dense_out
    conv = erdos_renyi_masks(digits_cnn(rng=0), 1, rng=0)["conv2"]
    p = erdos_renyi_density(conv.shape, 1)
    assert p == pytest.approx((16 + 8 + 3 + 3) / (16 * 8 * 9))
    assert int(conv.sum()) == conv.size - round((1 - p) * conv.size)
    with pytest.raises(ValueError, match="epsilon"):
        erdos_renyi_density((3, 3), 0)
    with pytest.raises(ValueError, match="shape"):
        erdos_renyi_density((3,), 1)


def test_rewire_removes_weakest_of_each_sign_and_regrows_as_many():
    model = digits_mlp(rng=0)
    set_initialize(model, 8, rng=0)
    layer = model["fc1"]
    w = layer.weight.copy()
    before = current_masks(model)["fc1"]
    live = w[before]
    n_pos, n_neg = int((live > 0).sum()), int((live <= 0).sum())
    removed, added = set_rewire(layer, 0.3, rng=1)
    assert removed == added == round(0.3 * n_pos) + round(0.3 * n_neg)
    after = current_masks(model)["fc1"]
    assert int(after.sum()) == int(before.sum())  # constant number of connections
    # the expected removals: the smallest positive weights and the negatives closest to zero
    flat = np.flatnonzero(before)
    vals = w.reshape(-1)[flat]
    pos, neg = flat[vals > 0], flat[vals <= 0]
    drop = np.concatenate([
        pos[np.argsort(w.reshape(-1)[pos], kind="stable")[: round(0.3 * pos.size)]],
        neg[np.argsort(-w.reshape(-1)[neg], kind="stable")[: round(0.3 * neg.size)]],
    ])
    survivors = before.copy().reshape(-1)
    survivors[drop] = False
    survivors = survivors.reshape(w.shape)
    assert (after[survivors]).all()
    np.testing.assert_array_equal(layer.weight[survivors], w[survivors])  # untouched
    new = after & ~survivors  # regrown (possibly at a just-removed place, with a new value)
    assert int(new.sum()) == added
    assert np.abs(layer.weight[new]).max() <= 1 / np.sqrt(64)
    assert not np.isin(np.flatnonzero(new), drop).all()  # mostly new places
    set_rewire(layer, 0.3, rng=2, init="zero")
    assert int(current_masks(model)["fc1"].sum()) == int(before.sum())


def test_set_training_keeps_sparsity_constant_and_learns():
    (X, y), (Xt, yt) = load_dataset("digits")
    model = digits_mlp(rng=0)
    set_initialize(model, 4, rng=0)
    counts = {n: int(m.sum()) for n, m in current_masks(model).items()}
    cb = SparseEvolution(0.3, rng=0, epochs=6)
    fit(model, (X, y), epochs=6, optimizer=SGD(0.05, momentum=0.9), batch_size=32, rng=0,
        callbacks=[cb], verbose=False)
    assert len(cb.history) == 5  # no rewiring after the last epoch
    assert all(v > 0 for h in cb.history for v in h.values())
    for n, m in current_masks(model).items():
        assert int(m.sum()) == counts[n]
        assert (model[n].weight[~m] == 0).all()
    assert evaluate(model, (Xt, yt)).accuracy > 0.8


def test_set_bad_arguments():
    model = digits_mlp(rng=0)
    with pytest.raises(ValueError, match="Mask"):
        set_rewire(model["fc1"], 0.3)
    set_initialize(model, 4, rng=0)
    with pytest.raises(ValueError, match="zeta"):
        set_rewire(model["fc1"], 1.0)
    with pytest.raises(ValueError, match="init"):
        set_rewire(model["fc1"], 0.3, init="normal")
    with pytest.raises(ValueError, match="zeta"):
        SparseEvolution(-0.1)
