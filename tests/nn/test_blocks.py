"""Compact-design layers (Concat, Residual, ChannelShuffle, GlobalAvgPool2d) and the blocks and
small models of refimpl.compact: gradient checks, costs, files, and bad inputs."""

import numpy as np
import pytest

from refimpl import compact
from refimpl.coding import dumps_compressed, loads_compressed
from refimpl.cost import profile
from refimpl.nn import (
    AvgPool2d,
    BatchNorm2d,
    ChannelShuffle,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    ReLU,
    Residual,
    Sequential,
    gradcheck,
    weighted_layers,
)
from refimpl.pruning import prune_model

TOL = 1e-6


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def fire_like(rng=0):
    r = np.random.default_rng(rng).spawn(3)
    return Concat(
        Sequential(Conv2d(3, 2, 1, rng=r[0]), ReLU()),
        ("wide", Sequential(Conv2d(3, 4, 3, padding=1, rng=r[1]), ReLU())),
        ("pool", AvgPool2d(3, stride=1, padding=1)),
    )


# --------------------------------------------------------------------------- gradient checks
def test_concat_gradcheck_checks_every_branch():
    res = gradcheck(fire_like(), randn(2, 3, 5, 4))
    assert res.passed, res
    assert set(res.errors) == {"input", "branch1.conv1.weight", "branch1.conv1.bias",
                               "wide.conv1.weight", "wide.conv1.bias"}


def test_concat_of_flat_outputs():
    layer = Concat(Linear(4, 3, rng=0), Linear(4, 2, rng=1))
    assert layer.forward(randn(5, 4)).shape == (5, 5)
    assert gradcheck(layer, randn(5, 4)).passed


@pytest.mark.parametrize("shortcut", [None, "projection"])
def test_residual_gradcheck(shortcut):
    body = Sequential(Conv2d(4, 4, 3, padding=1, rng=0), ReLU(), Conv2d(4, 4, 1, rng=1))
    short = Conv2d(4, 4, 1, bias=False, rng=2) if shortcut else None
    res = gradcheck(Residual(body, short), randn(2, 4, 5, 5))
    assert res.passed, res
    assert ("shortcut.weight" in res.errors) == (shortcut is not None)


def test_residual_identity_adds_the_input():
    body = Sequential(Conv2d(2, 2, 1, rng=0))
    x = randn(3, 2, 4, 4).astype(np.float32)
    assert np.allclose(Residual(body)(x), body(x) + x)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_channel_shuffle_gradcheck(groups):
    assert gradcheck(ChannelShuffle(groups), randn(2, 6, 3, 2)).passed


def test_channel_shuffle_interleaves_groups():
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    y = ChannelShuffle(2)(x)
    assert y.ravel().tolist() == [0, 3, 1, 4, 2, 5]  # channel j*g + i <- channel i*n + j
    assert ChannelShuffle(3)(x).ravel().tolist() == [0, 2, 4, 1, 3, 5]
    assert np.array_equal(ChannelShuffle(2).permutation(6), [0, 3, 1, 4, 2, 5])
    layer = ChannelShuffle(2)
    layer(x)
    assert np.array_equal(layer.backward(y), x)  # a permutation: backward is its inverse


def test_channel_shuffle_mixes_groups_between_group_convolutions():
    # Without the shuffle, output group 0 of the second group convolution sees only input
    # group 0; with it, every output depends on every input group.
    first = Conv2d(4, 4, 1, groups=2, bias=False, rng=0)
    second = Conv2d(4, 4, 1, groups=2, bias=False, rng=1)
    for shuffle, mixes in ((False, False), (True, True)):
        net = Sequential(first, *([ChannelShuffle(2)] if shuffle else []), second)
        x = np.zeros((1, 4, 1, 1))
        x[0, 2] = 1.0  # a unit input in group 1 only
        assert (abs(net(x)[0, :2]).sum() > 0) == mixes


def test_global_avg_pool_gradcheck_and_value():
    x = randn(2, 3, 4, 5)
    assert np.allclose(GlobalAvgPool2d()(x)[:, :, 0, 0], x.mean(axis=(2, 3)))
    assert gradcheck(GlobalAvgPool2d(), x).passed


@pytest.mark.parametrize("make,shape", [
    (lambda: compact.depthwise_separable(4, 6, rng=0), (3, 4, 5, 5)),
    (lambda: compact.depthwise_separable(4, 6, 5, stride=2, rng=0), (3, 4, 7, 6)),
    (lambda: compact.fire(4, 2, 3, 3, rng=0), (2, 4, 5, 5)),
    (lambda: compact.shuffle_unit(6, 6, groups=3, bottleneck=3, rng=0), (3, 6, 4, 4)),
    (lambda: compact.shuffle_unit(4, 10, groups=2, bottleneck=4, stride=2, rng=0), (3, 4, 5, 5)),
    (lambda: compact.gap_classifier(4, 3, rng=0), (2, 4, 3, 3)),
])
@pytest.mark.parametrize("train", [False, True])
def test_block_gradcheck(make, shape, train):
    block = make()
    gen = np.random.default_rng(1)
    for name, value in block.named_parameters():
        if name.endswith("bias"):  # away from 0: a ReLU after a zero bias meets its kink
            value += gen.uniform(0.1, 0.5, value.shape) * gen.choice([-1, 1], value.shape)
    x = randn(*shape)
    res = gradcheck(block, x, train=train)
    invariant = [k for k in res.errors if train and k.endswith("bn2.bias") and "gconv2" in
                 "".join(res.errors)]  # fmt: skip
    # In training mode a shift before gconv2 (linear) and bn3 (which subtracts the batch
    # mean) changes nothing: the true gradient is 0, and the relative error compares noise.
    assert all(v <= TOL for k, v in res.errors.items() if k not in invariant), res
    if invariant:
        copy = block.copy().astype(np.float64)
        copy.forward(x, train=True)
        copy.backward(np.ones_like(copy.forward(x, train=True)))
        grads = dict(copy.named_grads())
        assert all(np.abs(grads[k]).max() < 1e-9 for k in invariant)


# ------------------------------------------------------------------------------------- costs
def test_depthwise_separable_mac_ratio_is_one_over_c_out_plus_one_over_k_squared():
    for c_in, c_out, k, hw in ((8, 16, 3, 10), (5, 32, 5, 7), (16, 8, 3, 6)):
        block = compact.depthwise_separable(c_in, c_out, k, rng=0)
        standard = Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        ratio = profile(block, (c_in, hw, hw)).macs / profile(standard, (c_in, hw, hw)).macs
        assert ratio == pytest.approx(1 / c_out + 1 / k**2, rel=1e-12)
        assert compact.separable_mac_ratio(c_out, k) == pytest.approx(ratio, rel=1e-12)


def test_profile_walks_parallel_paths():
    block = compact.fire(8, 2, 4, 4, rng=0)
    p = profile(block, (8, 6, 6))
    names = [r.name for r in p.rows]
    assert "expand.expand1x1.conv" in names and "expand.expand3x3.conv" in names
    concat = p["expand.concat"]
    assert concat.output_shape == (8, 6, 6) and concat.kind == "concat"
    assert p.params == 2 * 9 + 4 * 3 + 4 * (9 * 2 + 1)
    assert p.macs == 36 * (8 * 2 + 2 * 4 + 2 * 9 * 4)
    unit = profile(compact.shuffle_unit(6, 6, groups=3, bottleneck=3, rng=0), (6, 4, 4))
    assert unit["block.add"].output_shape == (6, 4, 4)
    down = profile(compact.shuffle_unit(4, 10, groups=2, bottleneck=4, stride=2, rng=0),
                   (4, 5, 5))
    assert down.output_shape == (10, 3, 3) and down["block.concat"].kind == "concat"


@pytest.mark.parametrize("make", [compact.mobilenet_tiny, compact.squeezenet_tiny,
                                  compact.shufflenet_tiny, compact.lenet5_gap])
def test_small_models_cost_and_shapes(make):
    model = make(0)
    p = profile(model, (1, 28, 28))
    assert p.output_shape == (10,)
    assert p.params == sum(v.size for k, v in model.named_parameters())
    assert model(randn(2, 1, 28, 28).astype(np.float32)).shape == (2, 10)
    assert Layer.tensor_shapes(model.describe()) == {
        k: v.shape for k, v in [*model.named_parameters(), *model.named_buffers()]}


# ------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("make", [compact.mobilenet_tiny, compact.squeezenet_tiny,
                                  compact.shufflenet_tiny, compact.lenet5_gap])
def test_small_models_round_trip_through_the_compressed_file(make, tmp_path):
    model = make(1)
    x = randn(3, 1, 28, 28).astype(np.float32)
    model.forward(x, train=True)  # BatchNorm running statistics away from their defaults
    back = loads_compressed(dumps_compressed(model))
    assert repr(back) == repr(model)
    assert np.array_equal(back(x), model(x))
    path = tmp_path / "state.npz"
    model.save(path)
    again = make(2).load(path)
    assert np.array_equal(again(x), model(x))


def test_pruning_reaches_inside_containers_and_the_file_keeps_it():
    model = compact.squeezenet_tiny(0)
    names = [n for n, _ in weighted_layers(model)]
    assert "fire1.expand.expand3x3.conv" in names and "classifier.conv" in names
    prune_model(model, 0.5, layers=["fire1.expand.expand3x3.conv"])
    layer = model["fire1"]["expand"]["expand3x3"]["conv"]
    assert np.mean(layer.weight == 0) == pytest.approx(0.5, abs=0.01)
    x = randn(2, 1, 28, 28).astype(np.float32)
    back = loads_compressed(dumps_compressed(model))
    assert np.array_equal(back(x), model(x))
    assert profile(model, (1, 28, 28)).nonzero_params < profile(model, (1, 28, 28)).params


def test_residual_without_shortcut_round_trips():
    model = Sequential(Conv2d(1, 4, 3, padding=1, rng=0),
                       Residual(Sequential(Conv2d(4, 4, 3, padding=1, rng=1), BatchNorm2d(4))),
                       GlobalAvgPool2d(), Flatten())
    assert model.config()["layers"][1]["type"] == "Residual"
    assert "shortcut" not in model.config()["layers"][1]
    x = randn(2, 1, 6, 6).astype(np.float32)
    assert np.array_equal(loads_compressed(dumps_compressed(model))(x), model(x))


# ---------------------------------------------------------------------------------- bad input
def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="at least one branch"):
        Concat()
    with pytest.raises(TypeError, match="not a Layer"):
        Concat(Linear(2, 2), "relu")
    with pytest.raises(ValueError, match="duplicate"):
        Concat(("a", ReLU()), ("a", ReLU()))
    with pytest.raises(ValueError, match="concatenated"):
        Concat(Conv2d(1, 2, 3), Conv2d(1, 2, 1))(randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="must match"):
        Residual(Conv2d(2, 3, 1))(randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match="divide"):
        ChannelShuffle(4)(randn(1, 6, 2, 2))
    with pytest.raises(ValueError, match="groups must be >= 1"):
        ChannelShuffle(0)
    with pytest.raises(TypeError, match="groups must be an int"):
        ChannelShuffle(2.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GlobalAvgPool2d()(randn(2, 3))
    with pytest.raises(ValueError, match="out_channels > in_channels"):
        compact.shuffle_unit(8, 8, stride=2)
    with pytest.raises(ValueError, match="keeps the channels"):
        compact.shuffle_unit(8, 16)
    with pytest.raises(ValueError, match="one non-empty list"):
        Layer.build({"type": "Concat", "branches": []})
    with pytest.raises(ValueError, match="bad description"):
        Layer.tensor_shapes({"type": "ChannelShuffle", "groups": 2, "extra": 1})
