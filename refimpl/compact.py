"""Networks designed small: the blocks of MobileNet, SqueezeNet, ShuffleNet and Network in Network.

The other road to a small network (Ji et al.'s "compact filter design"): instead of training a
large network and compressing it, build it from blocks that are cheap by construction.

Blocks (each returns a :class:`~refimpl.nn.Sequential`, or a layer of :mod:`refimpl.nn.blocks`):

* :func:`depthwise_separable`: a ``k x k`` depthwise convolution and a ``1 x 1`` pointwise one,
  each followed by batch normalization and ReLU (MobileNet);
* :func:`fire`: a ``1 x 1`` squeeze convolution, then ``1 x 1`` and ``3 x 3`` expand
  convolutions side by side, concatenated (SqueezeNet);
* :func:`shuffle_unit`: a ``1 x 1`` group convolution, a channel shuffle, a ``3 x 3`` depthwise
  convolution and a ``1 x 1`` group convolution, added to the input (stride 1) or concatenated
  with its average-pooled copy (stride 2) (ShuffleNet);
* :func:`gap_classifier`: a ``1 x 1`` convolution to one map per class and global average
  pooling, instead of dense layers (Network in Network).

Small models for 28 x 28 single-channel images (Fashion-MNIST), each ending in 10 logits:
:func:`mobilenet_tiny`, :func:`squeezenet_tiny`, :func:`shufflenet_tiny` and
:func:`lenet5_gap` (LeNet-5's convolutions with the Network-in-Network head). Chapter 8 of the
book, "Distillation and compact design", trains them and compares them with compressed LeNet-5.
The same functions are available from :mod:`refimpl.models`.

References
----------
.. [1] Howard, A. G. et al. (2017) MobileNets: efficient convolutional neural networks for
   mobile vision applications. arXiv:1704.04861.
.. [2] Iandola, F. N. et al. (2016) SqueezeNet: AlexNet-level accuracy with 50x fewer
   parameters and <0.5MB model size. arXiv:1602.07360.
.. [3] Zhang, X., Zhou, X., Lin, M. and Sun, J. (2018) ShuffleNet: an extremely efficient
   convolutional neural network for mobile devices. CVPR.
.. [4] Lin, M., Chen, Q. and Yan, S. (2014) Network in network. ICLR.
"""

from __future__ import annotations

import numpy as np

from .nn import (
    AvgPool2d,
    BatchNorm2d,
    ChannelShuffle,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from .validation import RngLike, check_int

__all__ = [
    "depthwise_separable",
    "fire",
    "gap_classifier",
    "lenet5_gap",
    "mobilenet_tiny",
    "separable_mac_ratio",
    "shuffle_unit",
    "shufflenet_tiny",
    "squeezenet_tiny",
]


def _gens(rng: RngLike, n: int) -> list[np.random.Generator]:
    return list(np.random.default_rng(rng).spawn(n))


def _conv_bn_relu(
    c_in: int, c_out: int, k: int, *, stride: int = 1, groups: int = 1, relu: bool = True,
    rng: np.random.Generator,
) -> list[tuple[str, Layer]]:
    layers: list[tuple[str, Layer]] = [
        ("conv", Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups,
                        bias=False, rng=rng)),
        ("bn", BatchNorm2d(c_out)),
    ]  # fmt: skip
    if relu:
        layers.append(("relu", ReLU()))
    return layers


def separable_mac_ratio(c_out: int, kernel_size: int) -> float:
    """MACs of a depthwise separable block over those of the standard convolution it replaces.

    A ``k x k`` convolution from ``C_in`` to ``C_out`` channels costs ``H W C_in C_out k^2``
    MACs; the depthwise ``k x k`` convolution costs ``H W C_in k^2`` and the pointwise one
    ``H W C_in C_out``, so the ratio is ``1 / C_out + 1 / k^2`` (Howard et al. 2017, eq. 5),
    whatever ``C_in``, ``H`` and ``W``. See chapter 8, "Depthwise separable convolutions".
    """
    c_out = check_int(c_out, "c_out", 1)
    k = check_int(kernel_size, "kernel_size", 1)
    return 1.0 / c_out + 1.0 / (k * k)


def depthwise_separable(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    rng: RngLike = None,
) -> Sequential:
    """MobileNet's block: a depthwise ``k x k`` convolution, then a pointwise ``1 x 1`` one.

    ``dw`` (``Conv2d(C_in, C_in, k, groups=C_in)``, padding ``k // 2``, stride ``stride``),
    ``bn1``, ``relu1``, ``pw`` (``Conv2d(C_in, C_out, 1)``), ``bn2``, ``relu2``. The
    convolutions have no bias (the batch normalizations shift). Parameters
    ``C_in k^2 + C_in C_out`` (+ ``4 (C_in + C_out)`` of batch normalization) instead of
    ``C_in C_out k^2``; MACs in the ratio :func:`separable_mac_ratio`.

    Shapes: (N, C_in, H, W) to (N, C_out, H', W') with ``H' = (H - 1) // stride + 1`` for odd
    ``k``.
    """
    in_channels = check_int(in_channels, "in_channels", 1)
    r = _gens(rng, 2)
    return Sequential(
        ("dw", Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, groups=in_channels, bias=False, rng=r[0])),
        ("bn1", BatchNorm2d(in_channels)),
        ("relu1", ReLU()),
        ("pw", Conv2d(in_channels, out_channels, 1, bias=False, rng=r[1])),
        ("bn2", BatchNorm2d(out_channels)),
        ("relu2", ReLU()),
    )  # fmt: skip


def fire(
    in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, *, rng: RngLike = None
) -> Sequential:
    """SqueezeNet's Fire module: squeeze to few channels, then expand with 1x1 and 3x3 filters.

    ``squeeze`` (``Conv2d(C_in, s, 1)``), ``relu``, ``expand`` (a :class:`~refimpl.nn.Concat`
    of ``expand1x1``: ``Conv2d(s, e1, 1)`` and ReLU, and ``expand3x3``: ``Conv2d(s, e3, 3,
    padding=1)`` and ReLU). Output ``e1 + e3`` channels at the input's size. The squeeze layer
    limits the input channels of the 3x3 filters (strategy 2 of Iandola et al.), and the
    expand layer replaces part of them by 1x1 filters (strategy 1). Parameters
    ``s (C_in + 1) + e1 (s + 1) + e3 (9 s + 1)``.
    """
    r = _gens(rng, 3)
    return Sequential(
        ("squeeze", Conv2d(in_channels, squeeze, 1, rng=r[0])),
        ("relu", ReLU()),
        ("expand", Concat(
            ("expand1x1", Sequential(("conv", Conv2d(squeeze, expand1x1, 1, rng=r[1])),
                                     ("relu", ReLU()))),
            ("expand3x3", Sequential(("conv", Conv2d(squeeze, expand3x3, 3, padding=1,
                                                     rng=r[2])), ("relu", ReLU()))),
        )),
    )  # fmt: skip


def shuffle_unit(
    in_channels: int,
    out_channels: int,
    *,
    groups: int = 2,
    bottleneck: int | None = None,
    stride: int = 1,
    first_grouped: bool = True,
    rng: RngLike = None,
) -> Sequential:
    """ShuffleNet's unit: grouped 1x1, channel shuffle, 3x3 depthwise, grouped 1x1.

    The branch is ``gconv1`` (``1 x 1``, ``groups`` groups, to ``bottleneck`` channels), batch
    normalization, ReLU, ``shuffle`` (:class:`~refimpl.nn.ChannelShuffle`), ``dw`` (``3 x 3``
    depthwise, stride ``stride``), batch normalization, ``gconv2`` (``1 x 1``, ``groups``
    groups), batch normalization. With ``stride=1`` (``out_channels == in_channels``) the block
    is ``ReLU(x + branch(x))`` (a :class:`~refimpl.nn.Residual`); with ``stride=2`` it is
    ``ReLU(concat(avgpool3x3(x), branch(x)))`` (a :class:`~refimpl.nn.Concat`), the branch
    giving ``out_channels - in_channels`` channels. ``bottleneck`` defaults to a quarter of
    the output channels (rounded to a multiple of ``groups``), as in the paper;
    ``first_grouped=False`` makes the first ``1 x 1`` convolution dense (the paper does this
    where the input has few channels).
    """
    in_channels = check_int(in_channels, "in_channels", 1)
    out_channels = check_int(out_channels, "out_channels", 1)
    groups = check_int(groups, "groups", 1)
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    branch_out = out_channels if stride == 1 else out_channels - in_channels
    if stride == 1 and out_channels != in_channels:
        raise ValueError("a stride-1 shuffle unit keeps the channels: out_channels must equal "
                         f"in_channels, got {out_channels} and {in_channels}")  # fmt: skip
    if branch_out < 1:
        raise ValueError(f"a stride-2 shuffle unit needs out_channels > in_channels, got "
                         f"{out_channels} <= {in_channels}")  # fmt: skip
    if bottleneck is None:
        bottleneck = max(groups, (out_channels // 4) // groups * groups)
    bottleneck = check_int(bottleneck, "bottleneck", 1)
    g1 = groups if first_grouped else 1
    for c, what in ((in_channels, "in_channels"), (bottleneck, "bottleneck"),
                    (branch_out, "the branch's output channels")):  # fmt: skip
        if c % groups and not (what == "in_channels" and g1 == 1):
            raise ValueError(f"groups={groups} must divide {what} ({c})")
    r = _gens(rng, 3)
    branch = Sequential(
        ("gconv1", Conv2d(in_channels, bottleneck, 1, groups=g1, bias=False, rng=r[0])),
        ("bn1", BatchNorm2d(bottleneck)),
        ("relu1", ReLU()),
        ("shuffle", ChannelShuffle(groups)),
        ("dw", Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, groups=bottleneck,
                      bias=False, rng=r[1])),
        ("bn2", BatchNorm2d(bottleneck)),
        ("gconv2", Conv2d(bottleneck, branch_out, 1, groups=groups, bias=False, rng=r[2])),
        ("bn3", BatchNorm2d(branch_out)),
    )  # fmt: skip
    if stride == 1:
        block: Layer = Residual(branch)
    else:
        block = Concat(("pool", AvgPool2d(3, stride=2, padding=1)), ("branch", branch))
    return Sequential(("block", block), ("relu", ReLU()))


def gap_classifier(in_channels: int, num_classes: int = 10, *, rng: RngLike = None) -> Sequential:
    """Network in Network's head: ``1 x 1`` convolution to ``num_classes`` maps, global average.

    ``conv`` (``Conv2d(C_in, num_classes, 1)``), ``gap`` (:class:`~refimpl.nn.GlobalAvgPool2d`),
    ``flatten``: (N, C_in, H, W) to (N, num_classes) logits with ``num_classes (C_in + 1)``
    parameters, whatever ``H`` and ``W``. A dense head on the flattened maps would need
    ``num_classes C_in H W``.
    """
    return Sequential(
        ("conv", Conv2d(in_channels, num_classes, 1, rng=rng)),
        ("gap", GlobalAvgPool2d()),
        ("flatten", Flatten()),
    )


def mobilenet_tiny(rng: RngLike = 0, width: int = 16, num_classes: int = 10) -> Sequential:
    """A MobileNet for 28 x 28 images: a strided 3x3 convolution and three separable blocks.

    ``conv1`` 3x3 stride 2 (1 -> w, 14 x 14), ``block1`` (w -> 2w), ``block2`` (2w -> 4w,
    stride 2, 7 x 7), ``block3`` (4w -> 4w), global average pooling, ``fc`` (4w -> classes).
    ``width`` plays the role of MobileNet's width multiplier. With ``width=16``: 9,034
    parameters (batch normalization's scales and shifts included) and 500,832 MACs per image.
    """
    w = check_int(width, "width", 1)
    r = _gens(rng, 5)
    return Sequential(
        *[(f"{n}1", layer) for n, layer in _conv_bn_relu(1, w, 3, stride=2, rng=r[0])],
        ("block1", depthwise_separable(w, 2 * w, rng=r[1])),
        ("block2", depthwise_separable(2 * w, 4 * w, stride=2, rng=r[2])),
        ("block3", depthwise_separable(4 * w, 4 * w, rng=r[3])),
        ("gap", GlobalAvgPool2d()),
        ("flatten", Flatten()),
        ("fc", Linear(4 * w, num_classes, rng=r[4])),
    )


def squeezenet_tiny(rng: RngLike = 0, width: int = 16, num_classes: int = 10) -> Sequential:
    """A SqueezeNet for 28 x 28 images: no dense layer at all.

    ``conv1`` 3x3 stride 2 (1 -> w, 14 x 14) and ReLU, ``fire1`` (squeeze w/2, expand w + w),
    ``pool1`` (7 x 7), ``fire2`` (squeeze w/2, expand 2w + 2w), ``classifier``
    (:func:`gap_classifier`: 1x1 convolution to the classes, global average pooling), as
    SqueezeNet ends with a convolution and global pooling.
    """
    w = check_int(width, "width", 2)
    r = _gens(rng, 4)
    return Sequential(
        ("conv1", Conv2d(1, w, 3, stride=2, padding=1, rng=r[0])),
        ("relu1", ReLU()),
        ("fire1", fire(w, w // 2, w, w, rng=r[1])),
        ("pool1", MaxPool2d(2)),
        ("fire2", fire(2 * w, w // 2, 2 * w, 2 * w, rng=r[2])),
        ("classifier", gap_classifier(4 * w, num_classes, rng=r[3])),
    )


def shufflenet_tiny(
    rng: RngLike = 0, width: int = 24, groups: int = 3, num_classes: int = 10
) -> Sequential:
    """A ShuffleNet for 28 x 28 images: a strided convolution and three shuffle units.

    ``conv1`` 3x3 stride 2 (1 -> w, 14 x 14), ``unit1`` (w -> 2w, stride 2, 7 x 7; its first
    1x1 convolution dense, as the paper's first stage), ``unit2`` and ``unit3`` (2w, stride 1),
    global average pooling, ``fc`` (2w -> classes). ``width`` must be a multiple of ``groups``.
    """
    w = check_int(width, "width", 1)
    g = check_int(groups, "groups", 1)
    if w % g:
        raise ValueError(f"groups={g} must divide width={w}")
    r = _gens(rng, 5)
    return Sequential(
        *[(f"{n}1", layer) for n, layer in _conv_bn_relu(1, w, 3, stride=2, rng=r[0])],
        ("unit1", shuffle_unit(w, 2 * w, groups=g, stride=2, first_grouped=False, rng=r[1])),
        ("unit2", shuffle_unit(2 * w, 2 * w, groups=g, rng=r[2])),
        ("unit3", shuffle_unit(2 * w, 2 * w, groups=g, rng=r[3])),
        ("gap", GlobalAvgPool2d()),
        ("flatten", Flatten()),
        ("fc", Linear(2 * w, num_classes, rng=r[4])),
    )


def lenet5_gap(rng: RngLike = 0, channels: tuple[int, int] = (20, 50),
               num_classes: int = 10) -> Sequential:  # fmt: skip
    """LeNet-5's convolutions with Network in Network's head instead of its dense layers.

    ``conv1`` 5x5 (1 -> c1), ReLU, max-pool, ``conv2`` 5x5 (c1 -> c2), ReLU, max-pool, then
    :func:`gap_classifier` (1x1 convolution to the classes, global average pooling). LeNet-5's
    ``fc1`` (800 -> 500) and ``fc2`` hold 94% of its 431,080 parameters; this head has
    ``10 (c2 + 1)``.
    """
    c1, c2 = channels
    r = _gens(rng, 3)
    return Sequential(
        ("conv1", Conv2d(1, c1, 5, rng=r[0])),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(c1, c2, 5, rng=r[1])),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(2)),
        ("classifier", gap_classifier(c2, num_classes, rng=r[2])),
    )
