"""Unit surgery: the small model computes what the masked model computes, and is smaller."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.cost import profile
from refimpl.models import digits_cnn, lenet5, small_vgg
from refimpl.nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    Mask,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from refimpl.pruning import (
    as_keep,
    mask_units,
    merge_units,
    remove_units,
    shrink,
    unit_chain,
    unit_count,
)
from refimpl.timing import time_inference

ATOL = 2e-5


def _random_norms(model: Sequential, seed: int = 0) -> Sequential:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    rng = np.random.default_rng(seed)
    for _, layer in model.named_layers():
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            c = layer.num_features
            layer.params["weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            layer.params["bias"] = rng.normal(0, 0.5, c).astype(np.float32)
            layer.buffers["running_mean"] = rng.normal(0, 0.5, c).astype(np.float32)
            layer.buffers["running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return model


def _dense_stack(bn: bool, seed: int = 0) -> Sequential:
    layers = [("flatten", Flatten()), ("fc1", Linear(12, 9, rng=seed))]
    if bn:
        layers.append(("bn1", BatchNorm1d(9)))
    layers += [
        ("relu1", ReLU()),
        ("drop1", Dropout(0.5, rng=0)),
        ("fc2", Linear(9, 7, rng=seed + 1)),
        ("tanh2", Tanh()),
        ("fc3", Linear(7, 6, rng=seed + 2)),
        ("sig3", Sigmoid()),
        ("fc4", Linear(6, 3, rng=seed + 3)),
    ]
    model = Sequential(*layers)
    # positive biases, so that relu(b) != 0 and the fold matters
    model["fc1"].params["bias"] = np.abs(model["fc1"].params["bias"]) + 0.1
    return _random_norms(model, seed)


def _conv_stack(bn: bool, seed: int = 0) -> Sequential:
    layers = [("conv1", Conv2d(2, 6, 3, rng=seed, bias=not bn))]
    if bn:
        layers.append(("bn1", BatchNorm2d(6)))
    layers += [("relu1", ReLU()), ("pool1", MaxPool2d(2)), ("conv2", Conv2d(6, 5, 3, rng=seed + 1))]
    if bn:
        layers.append(("bn2", BatchNorm2d(5)))
    layers += [
        ("relu2", ReLU()),
        ("pool2", AvgPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(5 * 2 * 2, 4, rng=seed + 2)),
    ]
    model = Sequential(*layers)
    for name in ("conv1", "conv2"):
        if model[name].bias is not None:
            model[name].params["bias"] = np.abs(model[name].params["bias"]) + 0.1
    return _random_norms(model, seed)


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _check_equal(model: Sequential, name: str, keep: np.ndarray, x: np.ndarray) -> Sequential:
    small = remove_units(model, name, keep)
    masked = mask_units(model, name, keep)
    np.testing.assert_allclose(small(x), masked(x), atol=ATOL, rtol=1e-5)
    return small


# --------------------------------------------------------------------------------------------
# Equality with the masked model, layer combination by layer combination
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("name", ["fc1", "fc2", "fc3"])
def test_dense_stack_small_equals_masked(bn, name):
    model = _dense_stack(bn)
    n = unit_count(model, name)
    keep = np.arange(0, n, 2)
    small = _check_equal(model, name, keep, _x((5, 12)))
    assert unit_count(small, name) == keep.size


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("name", ["conv1", "conv2"])
def test_conv_stack_small_equals_masked(bn, name):
    # conv1 -> (bn) -> relu -> maxpool -> conv2: a conv into a conv; conv2 -> (bn) -> relu ->
    # avgpool -> flatten -> fc1: a conv into a dense layer across Flatten.
    model = _conv_stack(bn)
    keep = np.array([0, 2, 3])
    small = _check_equal(model, name, keep, _x((3, 2, 14, 14)))
    assert unit_count(small, name) == 3


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["dense", "dense_bn", "conv", "conv_bn"]),
    st.integers(0, 2**20),
    st.data(),
)
def test_small_equals_masked_for_random_keep_sets(kind, seed, data):
    model = {
        "dense": lambda: _dense_stack(False, seed % 7),
        "dense_bn": lambda: _dense_stack(True, seed % 7),
        "conv": lambda: _conv_stack(False, seed % 7),
        "conv_bn": lambda: _conv_stack(True, seed % 7),
    }[kind]()
    names = [n for n, layer in model.named_layers() if isinstance(layer, (Linear, Conv2d))][:-1]
    name = data.draw(st.sampled_from(names))
    n = unit_count(model, name)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if not mask.any():
        mask[seed % n] = True
    x = _x((4, 12) if kind.startswith("dense") else (4, 2, 14, 14), seed)
    _check_equal(model, name, mask, x)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**20))
def test_lenet5_across_flatten_random_keep(seed):
    rng = np.random.default_rng(seed)
    model = lenet5(rng=1)
    model["conv2"].params["bias"] = np.abs(model["conv2"].params["bias"]) + 0.05
    keep = np.flatnonzero(rng.random(50) < 0.4)
    if keep.size == 0:
        keep = np.array([int(rng.integers(50))])
    small = _check_equal(model, "conv2", keep, _x((2, 1, 28, 28), seed))
    # a removed channel takes its 4x4 block of fc1's 800 columns
    assert small["fc1"].in_features == keep.size * 16
    np.testing.assert_array_equal(
        small["fc1"].weight.reshape(500, -1, 16), model["fc1"].weight.reshape(500, 50, 16)[:, keep]
    )


def test_bias_fold_is_relu_of_bias_through_next_weights():
    # Hand-checkable case: unit 1 of fc1 is removed; relu(b_1) * W2[:, 1] moves into b2.
    fc1, fc2 = Linear(2, 2, rng=0), Linear(2, 1, rng=1)
    fc1.params["weight"] = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    fc1.params["bias"] = np.array([0.0, 0.5], dtype=np.float32)
    fc2.params["weight"] = np.array([[2.0, 3.0]], dtype=np.float32)
    fc2.params["bias"] = np.array([1.0], dtype=np.float32)
    model = Sequential(("fc1", fc1), ("relu", ReLU()), ("fc2", fc2))
    small = remove_units(model, "fc1", [0])
    np.testing.assert_allclose(small["fc2"].bias, [1.0 + 3.0 * 0.5])
    np.testing.assert_allclose(small["fc2"].weight, [[2.0]])
    # a negative bias is dead after the ReLU and folds nothing
    model["fc1"].params["bias"] = np.array([0.0, -0.5], dtype=np.float32)
    np.testing.assert_allclose(remove_units(model, "fc1", [0])["fc2"].bias, [1.0])


def test_fold_creates_a_bias_when_next_layer_has_none():
    model = Sequential(
        ("fc1", Linear(3, 4, rng=0)), ("relu", ReLU()), ("fc2", Linear(4, 2, bias=False, rng=1))
    )
    model["fc1"].params["bias"] = np.full(4, 0.3, dtype=np.float32)
    small = _check_equal(model, "fc1", [0, 1], _x((3, 3)))
    assert small["fc2"].bias is not None


def test_without_fold_removed_units_contribute_nothing():
    model = _dense_stack(False)
    small = remove_units(model, "fc1", [0, 1], fold_bias=False)
    np.testing.assert_allclose(small["fc2"].bias, model["fc2"].bias)
    assert not np.allclose(small(_x((3, 12))), mask_units(model, "fc1", [0, 1])(_x((3, 12))))


def test_shrink_several_layers_equals_masking_all_of_them():
    model = lenet5(rng=2)
    for name in ("conv1", "conv2", "fc1"):
        model[name].params["bias"] = np.abs(model[name].params["bias"]) + 0.05
    keep = {"conv1": [1, 4, 9, 12], "conv2": np.arange(0, 50, 4), "fc1": np.arange(0, 500, 3)}
    masked = model
    for name, k in keep.items():
        masked = mask_units(masked, name, k)
    small = shrink(model, keep)
    x = _x((2, 1, 28, 28))
    np.testing.assert_allclose(small(x), masked(x), atol=ATOL)
    # the cost model sees the smaller network
    before, after = profile(model, (1, 28, 28)), profile(small, (1, 28, 28))
    conv1_macs = 24 * 24 * 4 * 25
    conv2_macs = 8 * 8 * 13 * 4 * 25
    fc_macs = 13 * 16 * 167 + 167 * 10
    assert after.macs == conv1_macs + conv2_macs + fc_macs
    assert after.params < before.params


def test_surgery_does_not_touch_the_input_model():
    model = _conv_stack(True)
    state = model.state_dict()
    remove_units(model, "conv1", [0, 1])
    mask_units(model, "conv2", [0])
    shrink(model, {"conv1": [0], "conv2": [1, 2]})
    after = model.state_dict()
    assert state.keys() == after.keys()
    for key in state:
        np.testing.assert_array_equal(state[key], after[key])
    assert model["conv1"].out_channels == 6 and not model["conv1"].parametrizations


def test_batchnorm_follows_the_kept_units():
    model = _conv_stack(True)
    keep = np.array([1, 4])
    small = remove_units(model, "conv1", keep)
    for key in ("weight", "bias"):
        np.testing.assert_array_equal(small["bn1"].params[key], model["bn1"].params[key][keep])
    for key in ("running_mean", "running_var"):
        np.testing.assert_array_equal(small["bn1"].buffers[key], model["bn1"].buffers[key][keep])
    assert small["bn1"].num_features == 2 and small["conv2"].in_channels == 2


def test_padded_next_conv_is_exact_in_the_interior_and_flagged():
    model = _random_norms(small_vgg(rng=0))
    assert not unit_chain(model, "conv1").exact and unit_chain(model, "conv4").exact
    keep = np.array([0, 3, 7, 8])
    small, masked = remove_units(model, "conv1", keep), mask_units(model, "conv1", keep)
    x = _x((3, 1, 8, 8))
    # compare conv2 -> bn2 (the fold went into bn2's running mean, conv2 has no bias): exact
    # away from the 1-pixel border that conv2's padding touches
    def upto_bn2(m):
        return m["bn2"](m["conv2"](m["relu1"](m["bn1"](m["conv1"](x)))))

    a, b = upto_bn2(masked), upto_bn2(small)
    assert small["conv2"].bias is None
    np.testing.assert_allclose(a[:, :, 1:-1, 1:-1], b[:, :, 1:-1, 1:-1], atol=ATOL)
    assert np.abs(a - b).max() > 1e-3  # the border differs: a padded constant is not constant
    # conv4 feeds fc1 across pool and Flatten: exact everywhere
    _check_equal(model, "conv4", keep, x)


def test_padded_next_conv_exact_when_removed_constants_are_zero():
    model = digits_cnn(rng=0)  # conv1 (pad 1) -> relu -> pool -> conv2 (pad 1)
    model["conv1"].params["bias"] = -np.abs(model["conv1"].params["bias"]) - 0.01
    _check_equal(model, "conv1", [0, 2, 5], _x((3, 1, 8, 8)))


def test_a_weight_mask_is_sliced_along():
    model = lenet5(rng=0)
    rng = np.random.default_rng(0)
    model["fc1"].parametrize("weight", Mask(rng.random((500, 800)) < 0.5))
    keep = np.arange(0, 50, 2)
    small = _check_equal(model, "conv2", keep, _x((2, 1, 28, 28)))
    assert [type(p) for p in small["fc1"].chain("weight")] == [Mask]
    np.testing.assert_array_equal(
        small["fc1"].buffers["weight.mask"],
        model["fc1"].buffers["weight.mask"].reshape(500, 50, 16)[:, keep].reshape(500, -1),
    )


def test_small_model_trains_and_saves(tmp_path):
    from refimpl.nn import SGD, fit

    model = _conv_stack(True)
    small = remove_units(model, "conv2", [0, 4])
    x, y = _x((16, 2, 14, 14)), np.arange(16) % 4
    fit(small, (x, y), epochs=1, optimizer=SGD(0.01), verbose=False, rng=0)
    small.save(tmp_path / "small.npz")
    again = remove_units(model, "conv2", [0, 4]).load(tmp_path / "small.npz")
    np.testing.assert_allclose(again(x), small(x), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Merging similar units (Srinivas & Babu)
# --------------------------------------------------------------------------------------------


def test_merging_an_exact_twin_changes_nothing():
    model = _dense_stack(True)
    fc1, bn = model["fc1"], model["bn1"]
    # unit 5 becomes a twin of unit 2: same incoming weights, bias and BatchNorm
    fc1.params["weight"][5] = fc1.params["weight"][2]
    fc1.params["bias"][5] = fc1.params["bias"][2]
    for store, key in ((bn.params, "weight"), (bn.params, "bias"), (bn.buffers, "running_mean"),
                       (bn.buffers, "running_var")):
        store[key][5] = store[key][2]
    merged = merge_units(model, "fc1", 1)
    assert merged["fc1"].out_features == 8
    x = _x((6, 12))
    np.testing.assert_allclose(merged(x), model(x), atol=ATOL)


def test_merge_picks_least_saliency_pairs():
    model = _dense_stack(False)
    w = model["fc1"].params["weight"]
    w[7] = w[1] + 1e-3  # nearly a twin of 1
    model["fc1"].params["bias"][7] = model["fc1"].params["bias"][1]
    merged = merge_units(model, "fc1", 1)
    kept_rows = merged["fc1"].weight
    twins = sum(np.array_equal(row, w[1]) or np.array_equal(row, w[7]) for row in kept_rows)
    assert twins == 1  # one of the near-twins was merged into the other
    x = _x((6, 12))
    assert np.abs(merged(x) - model(x)).max() < 1e-2


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    model = _conv_stack(False)
    with pytest.raises(ValueError, match="layer_name"):
        remove_units(model, "nope", [0])
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        remove_units(model, "relu1", [0])
    with pytest.raises(ValueError, match="model's outputs"):
        remove_units(model, "fc1", [0])
    with pytest.raises(ValueError, match="at least one"):
        remove_units(model, "conv1", [])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        remove_units(model, "conv1", [0, 6])
    with pytest.raises(ValueError, match="shape"):
        remove_units(model, "conv1", np.ones(5, dtype=bool))
    with pytest.raises(TypeError, match="integer"):
        remove_units(model, "conv1", [0.5])
    with pytest.raises(TypeError, match="Sequential"):
        remove_units(model["conv1"], "conv1", [0])
    grouped = Sequential(
        ("conv1", Conv2d(2, 4, 3, rng=0)), ("dw", Conv2d(4, 4, 3, groups=4, rng=1))
    )
    with pytest.raises(ValueError, match="groups"):
        remove_units(grouped, "conv1", [0])
    odd = Sequential(("fc1", Linear(3, 4, rng=0)), ("sm", _Odd()), ("fc2", Linear(4, 2, rng=1)))
    with pytest.raises(TypeError, match="cannot carry"):
        remove_units(odd, "fc1", [0])
    with pytest.raises(ValueError, match="n_remove"):
        merge_units(_dense_stack(False), "fc1", 9)
    with pytest.raises(ValueError, match="repeats"):
        time_inference({"a": model}, _x((2, 2, 14, 14)), repeats=0)
    with pytest.raises(TypeError, match="keep must map"):
        shrink(model, [0, 1])
    assert as_keep(np.array([3, 1, 3]), 5).tolist() == [1, 3]


class _Odd(ReLU.__bases__[0]):  # a Layer subclass the surgery does not know
    def forward(self, x, train=False):
        return x


def test_time_inference_reports_every_model():
    model = _conv_stack(False)
    small = remove_units(model, "conv1", [0])
    times = time_inference({"full": model, "small": small}, _x((8, 2, 14, 14)), repeats=2)
    assert set(times) == {"full", "small"} and all(t > 0 for t in times.values())


def test_fold_into_a_following_batchnorm_keeps_the_conv_bias_free():
    model = _random_norms(Sequential(
        ("conv1", Conv2d(2, 6, 3, bias=False, rng=0)), ("bn1", BatchNorm2d(6)), ("relu1", ReLU()),
        ("conv2", Conv2d(6, 4, 3, bias=False, rng=1)), ("bn2", BatchNorm2d(4)), ("relu2", ReLU()),
        ("flatten", Flatten()), ("fc1", Linear(4 * 6 * 6, 3, rng=2)),
    ))
    small = _check_equal(model, "conv1", [1, 2, 5], _x((3, 2, 10, 10)))
    assert small["conv2"].bias is None
    before, after = model["bn2"].buffers["running_mean"], small["bn2"].buffers["running_mean"]
    assert not np.allclose(after, before)


def test_small_vgg_shape_and_cost():
    model = small_vgg(rng=0)
    assert model(_x((2, 1, 8, 8))).shape == (2, 10)
    p = profile(model, (1, 8, 8))
    assert p.params == 17_754 and p.macs == 379_136
    assert all(model[n].bias is None for n in ("conv1", "conv2", "conv3", "conv4"))
    plain = small_vgg(rng=0, channels=(4, 8), image_size=16, batch_norm=False)
    assert plain(_x((1, 1, 16, 16))).shape == (1, 10) and plain["fc1"].in_features == 8 * 16
    with pytest.raises(ValueError, match="image_size"):
        small_vgg(image_size=10)
