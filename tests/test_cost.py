"""Cost model: hand-computed counts, the four reference architectures, shares, bad inputs.

Exact numbers are exact on purpose: parameter counts are checked against torchvision's, and
MACs against an independent plain-arithmetic count written here (not against the profiler's
own walk), then against the well-known rounded figures with the tolerance of their rounding.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import cost
from refimpl.cost import (
    Act,
    AvgPool,
    BatchNorm,
    Branches,
    Conv,
    Dense,
    Drop,
    Flat,
    GlobalAvgPool,
    LayerCost,
    MaxPool,
    Residual,
    Seq,
    alexnet,
    googlenet,
    profile,
    resnet50,
    summary_table,
    vgg16,
)
from refimpl.models import digits_cnn, lenet5, lenet_300_100
from refimpl.nn import BatchNorm1d, BatchNorm2d, Layer, Mask, Sequential
from refimpl.nn import Conv2d as NNConv2d
from refimpl.nn import Flatten as NNFlatten
from refimpl.nn import Linear as NNLinear
from refimpl.nn import MaxPool2d as NNMaxPool2d
from refimpl.nn import ReLU as NNReLU


# ------------------------------------------------------------------ small hand-computed cases
def test_conv_stride_padding_groups_by_hand():
    # (4, 7, 7) -> 3x3, stride 2, padding 1, 2 groups, 6 filters:
    # H_out = (7 + 2 - 3) // 2 + 1 = 4; each filter sees 4/2 = 2 channels: fan-in 2*9 = 18.
    p = profile(Conv(4, 6, 3, stride=2, padding=1, groups=2), (4, 7, 7))
    (row,) = p.rows
    assert row.output_shape == (6, 4, 4)
    assert row.params == 6 * 18 + 6 == 114
    assert row.macs == 4 * 4 * 6 * 18 == 1728
    assert row.flops == 2 * 4 * 4 * (18 + 1) * 6 == 3648  # the survey's formula with C_in/g
    assert row.activations == 96 and row.activation_bytes == 384
    assert row.stored_bytes == 114 * 4
    assert row.kind == "conv" and row.category == "conv" and row.name == "conv1"


def test_conv_rectangular_kernel_without_bias():
    # (3, 10, 8), kernel (3, 1), stride (2, 1), padding (0, 2): H_out = 4, W_out = 12.
    p = profile(Conv(3, 5, (3, 1), stride=(2, 1), padding=(0, 2), bias=False), (3, 10, 8))
    assert p.output_shape == (5, 4, 12)
    assert p.params == 5 * 3 * 3
    assert p.macs == 4 * 12 * 5 * 9
    assert p.flops == 2 * p.macs  # no bias: FLOPs = 2 MACs


def test_survey_flops_formula_3x3_conv():
    # A 3x3 convolution with bias, 2 -> 4 channels, on a 5x5 input with padding 1:
    # FLOPs = 2 H W (C_in K^2 + 1) C_out = 2 * 5 * 5 * (2 * 9 + 1) * 4 = 3800; MACs = 1800.
    p = profile(Conv(2, 4, 3, padding=1), (2, 5, 5))
    assert (p.params, p.macs, p.flops) == (4 * 18 + 4, 1800, 3800)


def test_linear_by_hand():
    p = profile(Dense(10, 5), (10,))
    assert (p.params, p.macs, p.flops, p.output_shape) == (55, 50, 2 * (10 + 1) * 5, (5,))
    assert p.share("params") == {"conv": 0.0, "fc": 1.0, "other": 0.0}
    q = profile(Dense(10, 5, bias=False), (10,))
    assert (q.params, q.macs, q.flops) == (50, 50, 100)


def test_pooling_by_hand():
    p = profile(MaxPool(3, 2), (8, 13, 13))
    assert p.output_shape == (8, 6, 6)
    assert (p.params, p.macs, p.flops, p.activations) == (0, 0, 0, 8 * 36)
    # ceil_mode: floor((14 - 3) / 2) + 1 = 6, ceil gives 7 (the last window starts at 12 < 14).
    assert profile(MaxPool(3, 2), (1, 14, 14)).output_shape == (1, 6, 6)
    assert profile(MaxPool(3, 2, ceil_mode=True), (1, 14, 14)).output_shape == (1, 7, 7)
    # PyTorch's rule: a window starting in the right padding is dropped (size 5, k 2, s 2, p 1:
    # ceil gives 4 windows, but the 4th would start at 6 >= 5 + 1, so 3).
    assert profile(MaxPool(2, 2, 1, ceil_mode=True), (1, 5, 5)).output_shape == (1, 3, 3)
    assert profile(AvgPool(2), (3, 7, 9)).output_shape == (3, 3, 4)
    assert profile(GlobalAvgPool(), (3, 7, 9)).output_shape == (3, 1, 1)


def test_small_network_totals_and_naming():
    spec = Seq(
        [Conv(1, 2, 3), Act("relu"), Conv(2, 2, 1), Act("relu"), Flat(), Drop(), Dense(8, 3)]
    )
    p = profile(spec, (1, 4, 4))
    assert [r.name for r in p.rows] == [
        "conv1", "relu1", "conv2", "relu2", "flatten1", "dropout1", "linear1",
    ]  # fmt: skip
    assert p.params == 20 + 6 + 27
    assert p.macs == 8 * 9 + 8 * 2 + 24
    assert p.flops == 2 * (8 * 9 + 8) + 2 * (8 * 2 + 8) + 2 * (24 + 3)
    # Flatten is a view and Dropout the identity at inference: they allocate nothing.
    assert p["flatten1"].activations == 0 and p["dropout1"].activations == 0
    assert p.activations == 8 + 8 + 8 + 8 + 3
    assert p.stored_bytes == 4 * p.params
    assert p.nonzero_params == p.params and p.sparsity == 0.0


def test_batchnorm_params_buffers_and_bytes():
    p = profile([Conv(3, 8, 3, bias=False), BatchNorm(8)], (3, 5, 5))
    bn = p["batchnorm1"]
    assert (bn.params, bn.buffers, bn.macs, bn.category) == (16, 16, 0, "other")
    assert bn.stored_bytes == 4 * 32
    assert p.stored_bytes == 4 * (8 * 27 + 32)
    assert profile([BatchNorm(6)], (6,)).params == 12


def test_dtype_bytes():
    spec = [Dense(3, 3)]  # 12 parameters
    assert profile(spec, (3,), dtype_bytes=2).stored_bytes == 24
    assert profile(spec, (3,), dtype_bytes=0.5).stored_bytes == 6
    assert profile([Dense(3, 1)], (3,), dtype_bytes=0.5).stored_bytes == 2  # 4 numbers: 2 B
    assert profile([Dense(2, 1, bias=False)], (2,), dtype_bytes=0.75).stored_bytes == 2
    assert profile(spec, (3,), dtype_bytes=1).activation_bytes == 3


def test_branches_and_residual():
    inc = Branches([[Conv(4, 2, 1)], [Conv(4, 3, 3, padding=1)], [MaxPool(3, 1, 1)]], "inc")
    p = profile(inc, (4, 6, 6))
    assert p.output_shape == (2 + 3 + 4, 6, 6)
    names = [r.name for r in p.rows]
    assert names == ["inc.branch1.conv1", "inc.branch2.conv1", "inc.branch3.maxpool1", "inc.concat"]
    assert p["inc.concat"].activations == 9 * 36
    assert p.macs == 36 * 2 * 4 + 36 * 3 * 36

    block = Residual([Conv(4, 8, 3, stride=2, padding=1)], [Conv(4, 8, 1, stride=2)], name="b")
    q = profile([block, Act("relu")], (4, 6, 6))
    assert q.output_shape == (8, 3, 3)
    assert [r.name for r in q.rows] == ["b.conv1", "b.downsample.conv1", "b.add1", "relu1"]
    assert q["b.add1"].macs == 0 and q["b.add1"].activations == 72
    identity = profile(Residual([Conv(4, 4, 3, padding=1)]), (4, 5, 5))
    assert identity.output_shape == (4, 5, 5) and len(identity) == 2


@settings(max_examples=60, deadline=None)
@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    size=st.integers(1, 12),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    bias=st.booleans(),
)
def test_conv_counts_match_brute_force_and_real_layer(c_in, c_out, groups, size, k, s, p, bias):
    c_in, c_out = c_in * groups, c_out * groups
    spec = Conv(c_in, c_out, k, stride=s, padding=p, groups=groups, bias=bias)
    positions = sum(1 for i in range(size + 2 * p) if i * s + k <= size + 2 * p)
    if positions == 0:
        with pytest.raises(ValueError, match="does not fit"):
            profile(spec, (c_in, size, size))
        return
    prof = profile(spec, (c_in, size, size))
    assert prof.output_shape == (c_out, positions, positions)
    outputs = c_out * positions**2
    assert prof.macs == outputs * (c_in // groups) * k * k
    assert prof.flops == 2 * positions**2 * ((c_in // groups) * k * k + bias) * c_out
    # The real layer gives the same shape; with all-ones weights and input and no padding,
    # each output is the number of multiply-accumulates that produced it.
    layer = NNConv2d(c_in, c_out, k, stride=s, padding=p, groups=groups, bias=bias, rng=0)
    layer.params["weight"][...] = 1.0
    if bias:
        layer.params["bias"][...] = 0.0
    y = layer(np.ones((1, c_in, size, size), dtype=np.float32))
    assert y.shape[1:] == prof.output_shape
    if p == 0:
        assert int(y.sum()) == prof.macs


# ------------------------------------------------------------------ reference architectures
def _alexnet_macs(variant):
    if variant == "original":  # 227 input, groups 2 in conv2/4/5
        conv = [
            55 * 55 * 96 * 3 * 121,
            27 * 27 * 256 * 48 * 25,
            13 * 13 * 384 * 256 * 9,
            13 * 13 * 384 * 192 * 9,
            13 * 13 * 256 * 192 * 9,
        ]
    else:
        conv = [
            55 * 55 * 64 * 3 * 121,
            27 * 27 * 192 * 64 * 25,
            13 * 13 * 384 * 192 * 9,
            13 * 13 * 256 * 384 * 9,
            13 * 13 * 256 * 256 * 9,
        ]
    return sum(conv), 9216 * 4096 + 4096 * 4096 + 4096 * 1000


def _vgg16_macs():
    conv, c_in = 0, 3
    for res, width, n in [(224, 64, 2), (112, 128, 2), (56, 256, 3), (28, 512, 3), (14, 512, 3)]:
        for _ in range(n):
            conv += res * res * width * c_in * 9
            c_in = width
    return conv, 25088 * 4096 + 4096 * 4096 + 4096 * 1000


INCEPTION = [  # (resolution, c_in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
    (28, 192, 64, 96, 128, 16, 32, 32),
    (28, 256, 128, 128, 192, 32, 96, 64),
    (14, 480, 192, 96, 208, 16, 48, 64),
    (14, 512, 160, 112, 224, 24, 64, 64),
    (14, 512, 128, 128, 256, 24, 64, 64),
    (14, 512, 112, 144, 288, 32, 64, 64),
    (14, 528, 256, 160, 320, 32, 128, 128),
    (7, 832, 256, 160, 320, 32, 128, 128),
    (7, 832, 384, 192, 384, 48, 128, 128),
]


def _googlenet_counts(variant):
    """(weights, biases or BN params, conv MACs, FC MACs) by plain arithmetic."""
    k5 = 3 if variant == "torchvision" else 5
    convs = [(112, 3, 64, 7), (56, 64, 64, 1), (56, 64, 192, 3)]  # (res, c_in, c_out, k)
    for r, ci, c1, c3r, c3, c5r, c5, cp in INCEPTION:
        convs += [(r, ci, c1, 1), (r, ci, c3r, 1), (r, c3r, c3, 3)]
        convs += [(r, ci, c5r, 1), (r, c5r, c5, k5), (r, ci, cp, 1)]
    weights = sum(ci * co * k * k for _, ci, co, k in convs)
    per_channel = sum(co for _, _, co, _ in convs)  # one bias, or BN's scale and shift
    extra = 2 * per_channel if variant == "torchvision" else per_channel
    macs = sum(r * r * ci * co * k * k for r, ci, co, k in convs)
    return weights, extra, macs, 1024 * 1000


def _resnet50_counts(variant):
    """(conv weights, BN params, conv MACs) by plain arithmetic."""
    weights = 3 * 64 * 49
    bn = 2 * 64
    macs = 112 * 112 * 3 * 64 * 49
    c_in, res = 64, 56
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            out = res // s
            conv1_res = out if variant == "original" else res  # where the stride sits
            weights += c_in * width + width * width * 9 + width * 4 * width
            bn += 2 * (width + width + 4 * width)
            macs += conv1_res**2 * c_in * width + out**2 * (width * width * 9 + width * 4 * width)
            if b == 0:  # projection shortcut
                weights += c_in * 4 * width
                bn += 2 * 4 * width
                macs += out**2 * c_in * 4 * width
            c_in, res = 4 * width, out
    return weights, bn, macs


TORCHVISION_PARAMS = {  # torchvision.models docs ("num_params"), GoogLeNet without aux heads
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet50": 25_557_032,
}
BUILDERS = {"alexnet": alexnet, "vgg16": vgg16, "googlenet": googlenet, "resnet50": resnet50}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_torchvision_parameter_counts(name):
    assert profile(BUILDERS[name]("torchvision")).params == TORCHVISION_PARAMS[name]


def test_alexnet_exact():
    for variant, params, shape in [
        ("original", 60_965_224, (3, 227, 227)),  # Caffe bvlc_alexnet: 2,334,080 conv params
        ("torchvision", 61_100_840, (3, 224, 224)),
    ]:
        p = profile(alexnet(variant))
        assert p.input_shape == shape and p.output_shape == (1000,)
        assert p.params == params
        conv, fc = _alexnet_macs(variant)
        assert p.macs == conv + fc
        assert p.share("macs")["fc"] == pytest.approx(fc / (conv + fc))
        assert p["pool5"].output_shape == (256, 6, 6)
    assert profile(alexnet("original")).macs == 724_406_816  # the survey's "724 M"
    assert profile(alexnet("torchvision")).macs == pytest.approx(0.71e9, abs=0.005e9)


def test_vgg16_exact():
    p = profile(vgg16())
    conv, fc = _vgg16_macs()
    assert p.params == 138_357_544
    assert p.macs == conv + fc == 15_470_264_320
    assert p.macs == pytest.approx(15.5e9, abs=0.05e9)  # the usual "15.5 G"
    assert p.flops == 2 * p.macs + 2 * (sum(p.rows[i].bias_outputs for i in range(len(p))))
    assert 30e9 < p.flops < 31e9  # the survey's "more than 30 billion FLOPs"
    assert p.stored_bytes / 2**20 == pytest.approx(528, abs=0.5)  # the survey's "528 MB"
    assert profile(vgg16("torchvision")).macs == p.macs


@pytest.mark.parametrize("variant", ["original", "torchvision"])
def test_googlenet_exact(variant):
    p = profile(googlenet(variant))
    weights, extra, conv_macs, fc_macs = _googlenet_counts(variant)
    assert p.params == weights + extra + 1024 * 1000 + 1000
    assert p.macs == conv_macs + fc_macs
    assert p["inception5b.concat"].output_shape == (1024, 7, 7)
    assert p["inception3a.concat"].output_shape == (256, 28, 28)
    assert p["pool1"].output_shape == (64, 56, 56)  # Caffe's ceiling rule
    if variant == "original":
        assert p.params == 6_998_552
        assert p.macs == pytest.approx(1.6e9, abs=0.05e9)  # the survey's "1.6 B"
    else:
        assert p.macs == pytest.approx(1.5e9, abs=0.05e9)  # torchvision's "1.5 GFLOPS"


@pytest.mark.parametrize("variant", ["original", "torchvision"])
def test_resnet50_exact(variant):
    p = profile(resnet50(variant))
    weights, bn, conv_macs = _resnet50_counts(variant)
    assert p.params == weights + bn + 2048 * 1000 + 1000 == 25_557_032
    assert p.macs == conv_macs + 2048 * 1000
    assert p.buffers == bn  # running mean and variance, as many as BN's scale and shift
    assert p["layer4.2.add1"].output_shape == (2048, 7, 7)
    assert p.flops == 2 * p.macs + 2 * 1000  # only the fc has a bias
    if variant == "torchvision":
        assert p.macs == 4_089_184_256  # the usual "4.1 G" (ResNet v1.5)
    else:
        assert p.macs == pytest.approx(3.9e9, abs=0.05e9)  # the survey's "3.9 B" (ResNet v1)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("variant", ["original", "torchvision"])
def test_row_names_unique_and_shares_sum_to_one(name, variant):
    p = profile(BUILDERS[name](variant))
    names = [r.name for r in p.rows]
    assert len(names) == len(set(names))
    for quantity in ("params", "macs", "flops"):
        assert sum(p.share(quantity).values()) == pytest.approx(1.0)


# Table 1 of the survey: (params conv %, params FC %, FLOPs conv %, FLOPs FC %). Its "FLOPs"
# column holds MACs (724 M for AlexNet).
SURVEY_TABLE_1 = {
    "alexnet": (3.8, 96.2, 91.9, 8.1),
    "vgg16": (10.6, 89.4, 99.2, 0.8),
    "googlenet": (85.1, 14.9, 99.9, 0.1),
}


@pytest.mark.parametrize("name", sorted(SURVEY_TABLE_1))
def test_shares_match_survey_table_1(name):
    p = profile(BUILDERS[name]("original"))
    sp, sm = p.share("params"), p.share("macs")
    pc, pf, mc, mf = SURVEY_TABLE_1[name]
    # AlexNet and VGG-16 agree to the table's one decimal; GoogLeNet within 0.5 points (the
    # survey's 6.9 M total is not ours, 7.0 M with biases).
    tol = 0.5 if name == "googlenet" else 0.051
    assert 100 * sp["conv"] == pytest.approx(pc, abs=tol)
    assert 100 * sp["fc"] == pytest.approx(pf, abs=tol)
    assert 100 * sm["conv"] == pytest.approx(mc, abs=0.051)
    assert 100 * sm["fc"] == pytest.approx(mf, abs=0.051)
    assert p.conv_share == {"params": sp["conv"], "macs": sm["conv"]}
    assert p.fc_share == {"params": sp["fc"], "macs": sm["fc"]}


def test_resnet50_shares_differ_from_survey():
    # The survey lists 100 % / 0 %; the 2048 x 1000 classifier is in fact 8 % of the parameters.
    p = profile(resnet50())
    assert p.share("params")["fc"] == pytest.approx(2_049_000 / 25_557_032)
    assert p.share("params")["other"] == pytest.approx(53_120 / 25_557_032)  # batch norms
    assert p.share("macs")["fc"] < 0.001


# ------------------------------------------------------------------ bad inputs
def test_linear_mismatch_after_flatten_names_the_layer():
    spec = Seq([Conv(1, 4, 3, name="conv"), Flat(name="flat"), Dense(100, 10, name="fc")])
    with pytest.raises(ValueError, match=r"'fc' \(Dense\) expects 100 input features, got 144"):
        profile(spec, (1, 8, 8))
    with pytest.raises(ValueError, match="put a Flatten before it"):
        profile([Dense(4, 2, name="fc")], (1, 2, 2))


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"'c2' \(Conv\) expects 8 input channels, got 4"):
        profile([Conv(1, 4, 3), Conv(8, 8, 3, name="c2")], (1, 9, 9))
    with pytest.raises(ValueError, match=r"'big' \(Conv\).*does not fit"):
        profile([Conv(1, 4, 7, name="big")], (1, 5, 5))
    with pytest.raises(ValueError, match=r"\(MaxPool\) expects a \(C, H, W\) input"):
        profile([MaxPool(2)], (16,))
    with pytest.raises(ValueError, match=r"\(BatchNorm\) expects 4 channels"):
        profile([BatchNorm(4)], (3, 2, 2))
    with pytest.raises(ValueError, match="cannot be concatenated"):
        profile(Branches([[Conv(2, 2, 1)], [Conv(2, 2, 3)]], "inc"), (2, 5, 5))
    with pytest.raises(ValueError, match="must match to be added"):
        profile(Residual([Conv(2, 4, 1)]), (2, 5, 5))


@pytest.mark.parametrize("shape", [(0, 4, 4), (3, 4), (1, 3, 4, 4), (-1,), (2.0,), "abc", 5, ()])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        profile([Act("relu")], shape)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_shape is required"):
        profile([Act("relu")])
    with pytest.raises(ValueError, match="dtype_bytes"):
        profile([Act("relu")], (3,), dtype_bytes=0)
    with pytest.raises(TypeError, match="dtype_bytes"):
        profile([Act("relu")], (3,), dtype_bytes="4")
    with pytest.raises(ValueError, match="divisible by groups"):
        Conv(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv(3, 4, 0)
    with pytest.raises(TypeError, match="stride"):
        Conv(3, 4, 3, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="in_features"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="padding"):
        MaxPool(2, padding=2)
    with pytest.raises(TypeError, match="Spec"):
        Seq([Act("relu"), "relu"])
    with pytest.raises(ValueError, match="variant"):
        resnet50("v2")
    with pytest.raises(ValueError, match="category"):
        LayerCost("x", "x", (1,), (1,), category="dense")


def test_specs_are_frozen_and_normalized():
    conv = Conv(3, 4, 3, stride=2)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (0, 0)
    assert MaxPool(3).stride == (3, 3)
    with pytest.raises(AttributeError):
        conv.out_channels = 5  # type: ignore[misc]
    assert conv == Conv(3, 4, (3, 3), stride=(2, 2))


# ------------------------------------------------------------------ table and rows
def test_table_and_rows():
    p = profile(alexnet())
    text = p.table()
    lines = text.splitlines()
    assert lines[0] == "alexnet: input 3x227x227"
    assert "conv1" in text and "fc8" in text and "nonzero" not in text
    assert lines[-1].startswith("total") and "60,965,224" in lines[-1]
    assert "724,406,816" in lines[-1]
    assert len({len(line) for line in lines[1:3]}) == 1  # header and rule aligned
    assert str(p) == text
    short = p.table(skip_empty=True)
    assert "relu1" not in short and "conv5" in short
    rows = p.to_rows()
    assert len(rows) == len(p) and rows[0]["name"] == "conv1" and rows[0]["macs"] == 105_415_200
    assert p.totals()["params"] == p.params
    summary = summary_table({"AlexNet": p, "VGG-16": profile(vgg16())})
    assert "AlexNet" in summary and "138.36 M" in summary and "15.470 B" in summary


# ------------------------------------------------------------------ models of refimpl.nn
def test_lenet_300_100():
    model = lenet_300_100()
    p = profile(model, (1, 28, 28))
    assert p.params == 266_610 == model.num_parameters()
    assert p.macs == 784 * 300 + 300 * 100 + 100 * 10
    assert p.share("params")["fc"] == 1.0
    assert [r.name for r in p.rows][:2] == ["flatten", "fc1"]
    assert profile(model, (784,)).params == 266_610


def test_lenet5_matches_spec_and_forward_shapes():
    model = lenet5()
    p = profile(model, (1, 28, 28))
    assert p.params == 431_080
    assert p.macs == 24 * 24 * 20 * 25 + 8 * 8 * 50 * 500 + 800 * 500 + 500 * 10 == 2_293_000
    assert p.nonzero_params == p.params  # uniform initial weights have no zeros
    spec = Seq([
        Conv(1, 20, 5), Act("relu"), MaxPool(2), Conv(20, 50, 5), Act("relu"), MaxPool(2), Flat(),
        Dense(800, 500), Act("relu"), Dense(500, 10),
    ])  # fmt: skip
    q = profile(spec, (1, 28, 28))
    for attr in ("params", "macs", "flops", "activations", "stored_bytes"):
        assert getattr(p, attr) == getattr(q, attr), attr
    # Every row's shape is the shape the real forward pass produces.
    x = np.zeros((2, 1, 28, 28), dtype=np.float32)
    for row, (name, layer) in zip(p.rows, model.named_layers(), strict=True):
        x = layer(x)
        assert row.name == name and x.shape[1:] == row.output_shape


def test_digits_cnn():
    p = profile(digits_cnn(), (1, 8, 8))
    assert p.params == 1_898 and p.output_shape == (10,)


def test_nonzero_counting_with_zeros_and_masks():
    model = lenet_300_100()
    fc1 = model["fc1"]
    w = fc1.weight.copy()
    w[:, :392] = 0.0  # half of fc1's weights
    fc1.weight = w
    p = profile(model, (784,))
    assert p["fc1"].params == 784 * 300 + 300
    assert p["fc1"].nonzero_params == 392 * 300 + 300
    assert p.nonzero_params == 266_610 - 392 * 300
    assert "nonzero" in p.table()

    # A mask parametrization: the stored weight.orig still counts as parameters, the effective
    # weight's zeros as removed, and the mask buffer is not counted as stored numbers.
    model = lenet_300_100()
    mask = np.zeros((100, 300), dtype=bool)
    mask[:, :30] = True
    model["fc2"].parametrize("weight", Mask(mask))
    p = profile(model, (784,))
    assert p["fc2"].params == 300 * 100 + 100
    assert p["fc2"].nonzero_params == 30 * 100 + 100
    assert p["fc2"].buffers == 0
    assert p.sparsity == pytest.approx(270 * 100 / 266_610)


def test_model_batchnorm_and_nested_sequential():
    model = Sequential(
        ("features", Sequential(("conv", NNConv2d(3, 4, 3, bias=False)), ("bn", BatchNorm2d(4)))),
        ("pool", NNMaxPool2d(2)),
        ("flatten", NNFlatten()),
        ("fc", NNLinear(64, 5)),
        ("bn1d", BatchNorm1d(5)),
        ("relu", NNReLU()),
    )
    p = profile(model, (3, 10, 10))
    assert [r.name for r in p.rows][:2] == ["features.conv", "features.bn"]
    assert p["features.bn"].buffers == 8 and p["features.bn"].params == 8
    assert p.params == model.num_parameters()
    assert p.stored_bytes == 4 * (p.params + 8 + 10)
    assert p.output_shape == (5,)
    with pytest.raises(ValueError, match=r"'bn' \(BatchNorm2d\).*3 dimension"):
        profile(Sequential(("bn", BatchNorm2d(3))), (3,))


class _Hashed(Layer):
    """A stand-in for a hashed dense layer: K stored numbers, in * out virtual MACs."""

    def __init__(self, n_in, n_out, buckets):
        super().__init__()
        self.n_in, self.n_out, self.buckets = n_in, n_out, buckets

    def layer_cost(self, input_shape, dtype_bytes):
        if input_shape != (self.n_in,):
            raise ValueError(f"expects ({self.n_in},), got {input_shape}")
        return LayerCost(
            "",
            "hashed",
            input_shape,
            (self.n_out,),
            category="fc",
            params=self.buckets,
            macs=self.n_in * self.n_out,
        )


class _Factorized(Layer):
    """A stand-in for an SVD-factorized dense layer."""

    def __init__(self, n_in, n_out, rank):
        super().__init__()
        self.n_in, self.n_out, self.rank = n_in, n_out, rank

    def cost_spec(self):
        return [Dense(self.n_in, self.rank, bias=False), Dense(self.rank, self.n_out)]


class _Unknown(Layer):
    pass


def test_protocol_for_compressed_layers():
    model = Sequential(
        ("flatten", NNFlatten()), ("fc1", _Hashed(64, 32, 100)), ("fc2", _Factorized(32, 10, 4))
    )
    p = profile(model, (1, 8, 8))
    assert [r.name for r in p.rows] == ["flatten", "fc1", "fc2.linear1", "fc2.linear2"]
    assert p["fc1"].params == 100 and p["fc1"].macs == 64 * 32
    assert p["fc1"].stored_bytes == 400 and p["fc1"].flops == 2 * 64 * 32
    assert p["fc2.linear1"].params == 32 * 4 and p["fc2.linear2"].params == 4 * 10 + 10
    assert p.params == 100 + 128 + 50 and p.share("params")["fc"] == 1.0


def test_unknown_layer_raises_type_error():
    model = Sequential(("flatten", NNFlatten()), ("weird", _Unknown()))
    with pytest.raises(TypeError, match=r"'weird' \(_Unknown\).*layer_cost"):
        profile(model, (4,))


def test_single_layer_profile():
    p = profile(NNLinear(6, 2), (6,))
    assert p.params == 14 and p.rows[0].name == "linear"


def test_module_exports():
    assert set(cost.__all__) <= set(dir(cost))
    assert math.isclose(profile(resnet50()).share("params")["conv"], 23_454_912 / 25_557_032)
