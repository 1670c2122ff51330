"""``finetune`` and ``accuracy``: the fine-tuning step and the figure every chapter reports."""

from __future__ import annotations

import numpy as np
import pytest

import refimpl as rf
from refimpl.nn import SGD, CosineAnnealingLR, Linear, Mask, ReLU, Sequential, evaluate, fit


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def _model():
    return Sequential(Linear(6, 8, rng=1), ReLU(), Linear(8, 2, rng=2))


def test_accuracy_equals_evaluate_and_ignores_batch_size():
    m, data = _model(), _data()
    assert rf.accuracy(m, data) == evaluate(m, data).accuracy
    assert rf.accuracy(m, data, batch_size=7) == rf.accuracy(m, data, batch_size=1000)


def test_finetune_is_fit_with_the_documented_defaults():
    data = _data()
    a, b = _model(), _model()
    out = rf.finetune(a, data, epochs=2)
    fit(b, data, epochs=2, optimizer=SGD(0.001, momentum=0.9), rng=0, verbose=False)
    assert out is a
    for (ka, va), (kb, vb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert ka == kb and np.array_equal(va, vb)


def test_finetune_builds_the_scheduler_on_its_optimizer():
    data = _data()
    opt = SGD(0.1)
    rf.finetune(_model(), data, epochs=2, optimizer=opt,
                scheduler=lambda o: CosineAnnealingLR(o, T_max=2))  # fmt: skip
    assert opt.lr == pytest.approx(0.0)  # cosine to zero after T_max epochs


def test_finetune_keeps_pruned_weights_zero():
    m = _model()
    mask = np.ones((8, 6), dtype=bool)
    mask[:, :3] = False
    m["fc1"].parametrize("weight", Mask(mask))
    rf.finetune(m, _data(), epochs=2, optimizer=SGD(0.1, momentum=0.9))
    assert np.all(m["fc1"].weight[:, :3] == 0)
