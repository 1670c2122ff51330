"""The four ImageNet networks of the survey's Table 1, as specs: AlexNet, VGG-16, GoogLeNet and
ResNet-50, each in its original form and as ``torchvision`` builds it. See chapter 1 of the book,
"Where the cost is"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .specs import (
    LRN,
    Act,
    BatchNorm,
    Branches,
    Conv,
    Dense,
    Drop,
    Flat,
    GlobalAvgPool,
    MaxPool,
    Residual,
    Seq,
    Spec,
)

# --------------------------------------------------------------------------------------------
# Reference architectures (ImageNet, 1000 classes)
# --------------------------------------------------------------------------------------------

_VARIANTS = ("original", "torchvision")


def _check_variant(variant: str) -> None:
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")


def _classifier(sizes: Sequence[int], names: Sequence[str], dropout: float) -> list[Spec]:
    layers: list[Spec] = []
    for i, (n_in, n_out, nm) in enumerate(zip(sizes[:-1], sizes[1:], names, strict=True)):
        last = i == len(names) - 1
        if not last:
            layers.append(Drop(dropout, name=f"drop{nm[2:]}"))
        layers.append(Dense(n_in, n_out, name=nm))
        if not last:
            layers.append(Act("relu", name=f"relu{nm[2:]}"))
    return layers


def alexnet(variant: str = "original", num_classes: int = 1000) -> Seq:
    """AlexNet [3]_ as a spec.

    Parameters
    ----------
    variant : {"original", "torchvision"}
        ``"original"``: the network of the paper as Caffe's ``bvlc_alexnet`` has it, the one
        the survey's Table 1 tabulates: 227x227 input, 96-256-384-384-256 filters, conv2, conv4
        and conv5 split into two groups (the two GPUs), LRN after conv1 and conv2;
        60,965,224 parameters and 724,406,816 MACs. ``"torchvision"``: the single-GPU
        variant of ``torchvision.models.alexnet`` (after Krizhevsky's "one weird trick"):
        224x224 input, 64-192-384-256-256 filters, no groups, no LRN; 61,100,840 parameters and
        714,188,480 MACs.
    num_classes : int

    Returns
    -------
    Seq
        With ``input_shape`` set (227 or 224).

    References
    ----------
    .. [3] Krizhevsky, A., Sutskever, I. & Hinton, G. E. (2012). ImageNet Classification with
       Deep Convolutional Neural Networks. *NeurIPS*.
    """
    _check_variant(variant)
    fc = _classifier([256 * 6 * 6, 4096, 4096, num_classes], ["fc6", "fc7", "fc8"], 0.5)
    if variant == "original":
        features: list[Spec] = [
            Conv(3, 96, 11, stride=4, name="conv1"), Act("relu", name="relu1"),
            LRN(5, name="norm1"), MaxPool(3, 2, name="pool1"),
            Conv(96, 256, 5, padding=2, groups=2, name="conv2"), Act("relu", name="relu2"),
            LRN(5, name="norm2"), MaxPool(3, 2, name="pool2"),
            Conv(256, 384, 3, padding=1, name="conv3"), Act("relu", name="relu3"),
            Conv(384, 384, 3, padding=1, groups=2, name="conv4"), Act("relu", name="relu4"),
            Conv(384, 256, 3, padding=1, groups=2, name="conv5"), Act("relu", name="relu5"),
            MaxPool(3, 2, name="pool5"),
        ]  # fmt: skip
        return Seq([*features, Flat(name="flatten"), *fc], "alexnet", (3, 227, 227))
    features = [
        Conv(3, 64, 11, stride=4, padding=2, name="conv1"), Act("relu", name="relu1"),
        MaxPool(3, 2, name="pool1"),
        Conv(64, 192, 5, padding=2, name="conv2"), Act("relu", name="relu2"),
        MaxPool(3, 2, name="pool2"),
        Conv(192, 384, 3, padding=1, name="conv3"), Act("relu", name="relu3"),
        Conv(384, 256, 3, padding=1, name="conv4"), Act("relu", name="relu4"),
        Conv(256, 256, 3, padding=1, name="conv5"), Act("relu", name="relu5"),
        MaxPool(3, 2, name="pool5"),
    ]  # fmt: skip
    return Seq([*features, Flat(name="flatten"), *fc], "alexnet", (3, 224, 224))


def vgg16(variant: str = "original", num_classes: int = 1000) -> Seq:
    """VGG-16 (configuration D of [4]_) as a spec, for a 224x224 input.

    Thirteen 3x3 convolutions with padding 1 in five stages (64, 128, 256, 512, 512 filters),
    each stage closed by a 2x2 max pooling, then three dense layers 25088-4096-4096-1000:
    138,357,544 parameters and 15,470,264,320 MACs. ``"original"`` and ``"torchvision"`` are
    the same network (torchvision's adaptive pooling to 7x7 is the identity at 224x224).

    Parameters
    ----------
    variant : {"original", "torchvision"}
    num_classes : int

    Returns
    -------
    Seq

    References
    ----------
    .. [4] Simonyan, K. & Zisserman, A. (2015). Very Deep Convolutional Networks for
       Large-Scale Image Recognition. *ICLR*.
    """
    _check_variant(variant)
    layers: list[Spec] = []
    c_in = 3
    for stage, (width, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for j in range(1, n + 1):
            layers += [
                Conv(c_in, width, 3, padding=1, name=f"conv{stage}_{j}"),
                Act("relu", name=f"relu{stage}_{j}"),
            ]
            c_in = width
        layers.append(MaxPool(2, 2, name=f"pool{stage}"))
    fc = _classifier([512 * 7 * 7, 4096, 4096, num_classes], ["fc6", "fc7", "fc8"], 0.5)
    return Seq([*layers, Flat(name="flatten"), *fc], "vgg16", (3, 224, 224))


def _conv_unit(c_in: int, c_out: int, k: int, name: str, bn: bool, **kw: Any) -> Seq:
    """conv + ReLU (original GoogLeNet) or conv without bias + BN + ReLU (torchvision)."""
    if bn:
        return Seq(
            [Conv(c_in, c_out, k, bias=False, name="conv", **kw), BatchNorm(c_out, name="bn"),
             Act("relu", name="relu")],
            name,
        )  # fmt: skip
    return Seq([Conv(c_in, c_out, k, name="conv", **kw), Act("relu", name="relu")], name)


def _inception(
    name: str, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int, torchvision: bool
) -> Branches:
    k5 = 3 if torchvision else 5  # torchvision keeps a 3x3 here for compatibility (its issue 906)
    u = lambda *a, **kw: _conv_unit(*a, bn=torchvision, **kw)  # noqa: E731
    return Branches(
        [
            [u(c_in, c1, 1, "1x1")],
            [u(c_in, c3r, 1, "3x3_reduce"), u(c3r, c3, 3, "3x3", padding=1)],
            [u(c_in, c5r, 1, "5x5_reduce"), u(c5r, c5, k5, "5x5", padding=k5 // 2)],
            [MaxPool(3, 1, 1, ceil_mode=True, name="pool"), u(c_in, cp, 1, "pool_proj")],
        ],
        name,
    )


def googlenet(variant: str = "original", num_classes: int = 1000) -> Seq:
    """GoogLeNet (Inception v1, [5]_) without its two auxiliary classifiers, for 224x224.

    Parameters
    ----------
    variant : {"original", "torchvision"}
        ``"original"``: as the paper's Table 1 and Caffe's ``bvlc_googlenet``: convolutions
        with bias, LRN after the stem, 5x5 convolutions in the third branch, dropout 0.4;
        6,998,552 parameters and 1,582,671,872 MACs. ``"torchvision"``: as
        ``torchvision.models.googlenet``: every convolution without bias and followed by a batch
        normalization, no LRN, and (a known quirk kept for its pretrained weights) a 3x3 instead
        of a 5x5 convolution in the third branch; 6,624,904 parameters and 1,498,376,192 MACs.
        Both use Caffe's ceiling rule in the max poolings.
    num_classes : int

    Returns
    -------
    Seq

    Notes
    -----
    An Inception module is a :class:`Branches` of four branches: 1x1; 1x1 then 3x3; 1x1 then
    5x5; 3x3 max pooling then 1x1, concatenated along the channels.

    References
    ----------
    .. [5] Szegedy, C. et al. (2015). Going Deeper with Convolutions. *CVPR*.
    """
    _check_variant(variant)
    tv = variant == "torchvision"
    config = {
        "inception3a": (192, 64, 96, 128, 16, 32, 32),
        "inception3b": (256, 128, 128, 192, 32, 96, 64),
        "inception4a": (480, 192, 96, 208, 16, 48, 64),
        "inception4b": (512, 160, 112, 224, 24, 64, 64),
        "inception4c": (512, 128, 128, 256, 24, 64, 64),
        "inception4d": (512, 112, 144, 288, 32, 64, 64),
        "inception4e": (528, 256, 160, 320, 32, 128, 128),
        "inception5a": (832, 256, 160, 320, 32, 128, 128),
        "inception5b": (832, 384, 192, 384, 48, 128, 128),
    }
    inc = {name: _inception(name, *cfg, torchvision=tv) for name, cfg in config.items()}
    stem: list[Spec] = [
        _conv_unit(3, 64, 7, "conv1", tv, stride=2, padding=3),
        MaxPool(3, 2, ceil_mode=True, name="pool1"),
    ]
    if not tv:
        stem.append(LRN(5, name="norm1"))
    stem += [_conv_unit(64, 64, 1, "conv2", tv), _conv_unit(64, 192, 3, "conv3", tv, padding=1)]
    if not tv:
        stem.append(LRN(5, name="norm2"))
    stem.append(MaxPool(3, 2, ceil_mode=True, name="pool2"))
    body: list[Spec] = [
        inc["inception3a"], inc["inception3b"], MaxPool(3, 2, ceil_mode=True, name="pool3"),
        inc["inception4a"], inc["inception4b"], inc["inception4c"], inc["inception4d"],
        inc["inception4e"],
        # The paper and Caffe pool 3x3 with stride 2 here; torchvision 2x2: both give 7x7.
        MaxPool(2 if tv else 3, 2, ceil_mode=True, name="pool4"),
        inc["inception5a"], inc["inception5b"],
    ]  # fmt: skip
    head: list[Spec] = [
        GlobalAvgPool(name="avgpool"),
        Flat(name="flatten"),
        Drop(0.2 if tv else 0.4, name="dropout"),
        Dense(1024, num_classes, name="fc"),
    ]
    return Seq([*stem, *body, *head], "googlenet", (3, 224, 224))


def _bottleneck(c_in: int, width: int, stride: int, name: str, v1: bool) -> Seq:
    c_out = 4 * width
    s1, s3 = (stride, 1) if v1 else (1, stride)
    body: list[Spec] = [
        Conv(c_in, width, 1, stride=s1, bias=False, name="conv1"), BatchNorm(width, name="bn1"),
        Act("relu", name="relu1"),
        Conv(width, width, 3, stride=s3, padding=1, bias=False, name="conv2"),
        BatchNorm(width, name="bn2"), Act("relu", name="relu2"),
        Conv(width, c_out, 1, bias=False, name="conv3"), BatchNorm(c_out, name="bn3"),
    ]  # fmt: skip
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Seq(
            [Conv(c_in, c_out, 1, stride=stride, bias=False, name="0"), BatchNorm(c_out, name="1")],
            "downsample",
        )
    return Seq([Residual(body, shortcut), Act("relu", name="relu3")], name)


def resnet50(variant: str = "original", num_classes: int = 1000) -> Seq:
    """ResNet-50 [6]_ as a spec, for a 224x224 input.

    A 7x7 stem, then 3, 4, 6 and 3 bottleneck blocks (1x1 reduce, 3x3, 1x1 expand by 4, each
    followed by a batch normalization; a :class:`Residual` adds the identity, or a strided 1x1
    projection with batch normalization where the shape changes), global average pooling and
    a 2048-1000 dense layer. 25,557,032 parameters in both variants.

    Parameters
    ----------
    variant : {"original", "torchvision"}
        Where a block that halves the resolution puts its stride: ``"original"`` (the paper and
        its Caffe release, "ResNet v1") in the first 1x1 convolution, 3,857,973,248 MACs;
        ``"torchvision"`` ("ResNet v1.5") in the 3x3 convolution, 4,089,184,256 MACs.
    num_classes : int

    Returns
    -------
    Seq

    References
    ----------
    .. [6] He, K., Zhang, X., Ren, S. & Sun, J. (2016). Deep Residual Learning for Image
       Recognition. *CVPR*.
    """
    _check_variant(variant)
    v1 = variant == "original"
    layers: list[Spec] = [
        Conv(3, 64, 7, stride=2, padding=3, bias=False, name="conv1"), BatchNorm(64, name="bn1"),
        Act("relu", name="relu"), MaxPool(3, 2, padding=1, name="maxpool"),
    ]  # fmt: skip
    c_in = 64
    for stage, (width, blocks, stride) in enumerate(
        [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
    ):
        stage_blocks = []
        for b in range(blocks):
            stage_blocks.append(_bottleneck(c_in, width, stride if b == 0 else 1, str(b), v1))
            c_in = 4 * width
        layers.append(Seq(stage_blocks, f"layer{stage}"))
    layers += [
        GlobalAvgPool(name="avgpool"), Flat(name="flatten"),
        Dense(2048, num_classes, name="fc"),
    ]  # fmt: skip
    return Seq(layers, "resnet50", (3, 224, 224))

