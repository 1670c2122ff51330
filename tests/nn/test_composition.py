"""The core composes: stacked parametrizations, stateless parametrization objects, layers that
keep their own contract, masks edited one way, one size model.

Each test reproduces a defect the package had (issue "One core that composes") and fails on
the code before the redesign.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.coding import dumps_compressed, loads_compressed
from refimpl.cost import profile
from refimpl.models import lenet_300_100
from refimpl.nn import (
    SGD,
    BatchNorm1d,
    Linear,
    Mask,
    Parametrization,
    ReLU,
    Sequential,
    fit,
    gradcheck,
)
from refimpl.pruning import current_masks, prune_model, set_rewire
from refimpl.quantization import (
    INQ,
    BinaryConnect,
    HashedWeights,
    SharedWeights,
    UniformQuant,
    XNORWeights,
    inq_step,
    quantize_model,
)


def _data(n=256, d=784, k=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, rng.integers(0, k, n)


def _mlp():
    return Sequential(Linear(20, 16, rng=0), ReLU(), Linear(16, 12, rng=1), ReLU(),
                      Linear(12, 3, rng=2))  # fmt: skip


# -- 1. pruned weights stay pruned through any later parametrization and any optimizer ------
@pytest.mark.parametrize(
    "later",
    [
        lambda layer: UniformQuant(8),
        lambda layer: UniformQuant(4, per_channel=True),
        lambda layer: SharedWeights.from_weight(layer.weight, 8, rng=0),
        lambda layer: BinaryConnect(),
        lambda layer: XNORWeights(),
        lambda layer: HashedWeights(64, seed=1),
    ],
)
def test_pruned_zeros_survive_a_later_parametrization_and_training(later):
    model = lenet_300_100(rng=0)
    prune_model(model, 0.9)
    quantize_model(model, later)
    fit(model, _data(), epochs=1, optimizer=SGD(0.05, momentum=0.9, weight_decay=1e-3), rng=0,
        verbose=False)  # fmt: skip
    for name, mask in current_masks(model).items():
        w = model[name].weight
        assert not w[~mask].any(), f"{name}: a pruned weight came back"
        assert int((~mask).sum()) == round(0.9 * mask.size)


def test_masks_stay_visible_and_prunable_after_sharing():
    model = lenet_300_100(rng=0)
    prune_model(model, 0.5)
    quantize_model(model, lambda layer: SharedWeights.from_weight(layer.weight, 16, rng=0))
    masks = current_masks(model)  # raised before
    assert all(int((~m).sum()) == round(0.5 * m.size) for m in masks.values())
    prune_model(model, 0.8)  # raised before: pruning a shared weight updates its mask
    for name, mask in current_masks(model).items():
        assert int((~mask).sum()) == round(0.8 * mask.size)
        assert not model[name].weight[~mask].any()
        assert not (mask & ~masks[name]).any()


class _Scale(Parametrization):
    """x -> s x: an exact, input-using step."""

    def __init__(self, s):
        self.s = s

    def materialize(self, x, params, buffers):
        return self.s * x

    def pullback(self, g, x, params, buffers):
        return self.s * g, {}


@pytest.mark.parametrize(
    "steps",
    [
        lambda: [Mask(np.arange(30).reshape(5, 6) % 3 > 0), _Scale(-1.5)],
        lambda: [_Scale(2.0), Mask(np.arange(30).reshape(5, 6) % 4 > 0)],
        lambda: [HashedWeights(7, seed=2), Mask(np.arange(30).reshape(5, 6) % 3 > 0)],
        lambda: [Mask(np.arange(30).reshape(5, 6) % 3 > 0), HashedWeights(7, seed=2)],
    ],
)
def test_a_chain_passes_gradcheck(steps):
    layer = Linear(6, 5, rng=0).astype(np.float64)
    for step in steps():
        layer.parametrize("weight", step)
    x = np.random.default_rng(1).standard_normal((4, 6))
    res = gradcheck(layer, x)
    assert res.passed, res


# -- 2. one parametrization object serves many layers ------------------------------------------
@pytest.mark.parametrize("make", [lambda: HashedWeights(32, seed=3), lambda: BinaryConnect(),
                                  lambda: INQ(5)])  # fmt: skip
def test_one_object_on_two_layers(make):
    model = _mlp()
    alone = _mlp()
    p = make()
    quantize_model(model, p)  # the same object on every layer
    quantize_model(alone, lambda layer: make())  # one object per layer
    inq_step(model, 0.5)
    inq_step(alone, 0.5)
    for name in ("fc1", "fc2", "fc3"):
        assert model[name].weight.shape == alone[name].weight.shape
        np.testing.assert_array_equal(model[name].weight, alone[name].weight)


# -- 3. every layer keeps the layer contract -------------------------------------------------
def test_batchnorm_takes_a_mask_through_the_contract():
    bn = BatchNorm1d(4)
    bn.params["weight"] = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    bn.parametrize("weight", Mask([True, False, True, True]))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y = bn.forward(x, train=True)  # raised KeyError before
    assert np.all(y[:, 1] == bn.params["bias"][1])  # gamma_1 is pruned: only beta is left
    bn.backward(np.ones_like(y))
    assert bn.grads["weight.orig"][1] == 0


# -- 4. a mask is edited one way -------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(zeta=st.floats(0.05, 0.6), seed=st.integers(0, 1000))
def test_sparse_evolution_keeps_the_mask_and_the_weight_consistent(zeta, seed):
    layer = Linear(30, 20, rng=seed)
    rng = np.random.default_rng(seed)
    layer.parametrize("weight", Mask(rng.random((20, 30)) < 0.3))
    before = int(Mask.of(layer).sum())
    set_rewire(layer, zeta, rng=seed)
    mask = Mask.of(layer)
    assert int(mask.sum()) == before  # as many grown as removed
    np.testing.assert_array_equal(layer.buffers["weight.mask"] != 0, mask)
    assert not layer.weight[~mask].any()


def test_mask_update_ands_and_replace_regrows():
    layer = Linear(3, 2, rng=0).parametrize("weight", Mask([[1, 0, 1], [0, 1, 1]]))
    Mask.update(layer, "weight", [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(Mask.of(layer), [[1, 0, 1], [0, 0, 1]])
    Mask.update(layer, "weight", [[1, 1, 1], [0, 0, 1]], mode="replace", regrow_value=0.5)
    assert layer.weight[0, 1] == np.float32(0.5)
    with pytest.raises(ValueError, match="mode"):
        Mask.update(layer, "weight", [[1, 1, 1], [1, 1, 1]], mode="or")
    with pytest.raises(ValueError, match="shape"):
        Mask.update(layer, "weight", [[1, 1], [1, 1]])


# -- 5. one size model ----------------------------------------------------------------------
def test_profile_and_the_compressed_file_agree_to_the_headers():
    model = lenet_300_100(rng=0)
    prune_model(model, {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74})
    quantize_model(model, lambda layer: SharedWeights.from_weight(layer.weight, 32, rng=0))
    stored = profile(model, (1, 28, 28)).stored_bytes
    data = dumps_compressed(model)
    arch_len = struct.unpack_from("<I", data, 10)[0]
    # the file is the profile's bytes plus its header, its architecture and one small header
    # per tensor record (name, dtype, shape, length): a few hundred bytes in all
    overhead = len(data) - stored
    assert 0 < overhead - arch_len < 300, (len(data), stored, arch_len)
    np.testing.assert_array_equal(loads_compressed(data)["fc1"].weight, model["fc1"].weight)
    row = profile(model, (1, 28, 28))["fc1"]
    assert row.params == 784 * 300 + 300 >= row.nonzero_params  # params count the architecture
