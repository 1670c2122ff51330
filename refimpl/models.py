"""Reference models, in one place: the networks the book compresses.

* :func:`lenet_300_100` and :func:`lenet5`: the two networks of Han et al. (2015) and Deep
  Compression (Han et al., 2016) on 28x28 images (the book trains them on Fashion-MNIST).
* :func:`digits_mlp` and :func:`digits_cnn`: small networks for the bundled 8x8 digits, quick
  enough for tests and exercises.
* :func:`mobilenet_tiny`, :func:`squeezenet_tiny`, :func:`shufflenet_tiny`, :func:`lenet5_gap`
  and their blocks: networks designed small, from :mod:`refimpl.compact` (chapter 8).

References
----------
.. [1] LeCun, Y., Bottou, L., Bengio, Y. and Haffner, P. (1998) Gradient-based learning applied
   to document recognition. Proc. IEEE 86(11).
.. [2] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and connections for
   efficient neural networks. NeurIPS.
"""

from __future__ import annotations

import numpy as np

# Networks designed small (chapter 8): their blocks and models live in refimpl.compact.
from .compact import (  # noqa: F401
    depthwise_separable,
    fire,
    gap_classifier,
    lenet5_gap,
    mobilenet_tiny,
    shuffle_unit,
    shufflenet_tiny,
    squeezenet_tiny,
)
from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .validation import RngLike


def _seeds(rng: RngLike, n: int) -> list[np.random.Generator]:
    return list(np.random.default_rng(rng).spawn(n))


def lenet_300_100(rng: RngLike = 0) -> Sequential:
    """LeNet-300-100: a 784-300-100-10 perceptron with ReLU, 266,610 parameters.

    Input (N, 1, 28, 28) or (N, 784); output (N, 10) logits.
    """
    r = _seeds(rng, 3)
    return Sequential(
        ("flatten", Flatten()),
        ("fc1", Linear(784, 300, rng=r[0])),
        ("relu1", ReLU()),
        ("fc2", Linear(300, 100, rng=r[1])),
        ("relu2", ReLU()),
        ("fc3", Linear(100, 10, rng=r[2])),
    )


def lenet5(rng: RngLike = 0) -> Sequential:
    """LeNet-5 as in Caffe's example and Han et al.: 431,080 parameters.

    conv1 20@5x5, max-pool 2, conv2 50@5x5, max-pool 2, fc1 800->500, fc2 500->10.
    Input (N, 1, 28, 28); output (N, 10) logits.

    Notes
    -----
    Caffe's LeNet has a ReLU only after ``fc1``. We also put one after each convolution (as most
    reproductions do), so that activation-based criteria such as APoZ apply to the filters; the
    parameter count is unchanged.
    """
    r = _seeds(rng, 4)
    return Sequential(
        ("conv1", Conv2d(1, 20, 5, rng=r[0])),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(20, 50, 5, rng=r[1])),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(800, 500, rng=r[2])),
        ("relu3", ReLU()),
        ("fc2", Linear(500, 10, rng=r[3])),
    )


def mlp(
    widths: tuple[int, ...] | list[int],
    rng: RngLike = 0,
    *,
    in_features: int = 784,
    num_classes: int = 10,
) -> Sequential:
    """A perceptron: ``flatten``, then ``fc1, relu1, ..., fcL, reluL`` of the given widths,
    then ``fc{L+1}`` to ``num_classes`` logits.

    The students of chapter 8 ("Knowledge distillation"): ``mlp([64])`` is a 784-64-10 network
    (50,890 parameters), ``mlp([32, 32, 32, 32])`` a deep and thin one. Each layer draws its
    initial weights from its own generator spawned from ``rng``.
    """
    widths = [int(w) for w in widths]
    if any(w < 1 for w in widths):
        raise ValueError(f"widths must be positive, got {widths}")
    gens = _seeds(rng, len(widths) + 1)
    layers: list[tuple[str, object]] = [("flatten", Flatten())]
    c = in_features
    for i, w in enumerate(widths, start=1):
        layers += [(f"fc{i}", Linear(c, w, rng=gens[i - 1])), (f"relu{i}", ReLU())]
        c = w
    layers.append((f"fc{len(widths) + 1}", Linear(c, num_classes, rng=gens[-1])))
    return Sequential(*layers)


def digits_mlp(rng: RngLike = 0, hidden: tuple[int, int] = (64, 32)) -> Sequential:
    """A 64-64-32-10 perceptron for the 8x8 digits (6,570 parameters by default)."""
    r = _seeds(rng, 3)
    h1, h2 = hidden
    return Sequential(
        ("flatten", Flatten()),
        ("fc1", Linear(64, h1, rng=r[0])),
        ("relu1", ReLU()),
        ("fc2", Linear(h1, h2, rng=r[1])),
        ("relu2", ReLU()),
        ("fc3", Linear(h2, 10, rng=r[2])),
    )


def digits_cnn(rng: RngLike = 0, channels: tuple[int, int] = (8, 16)) -> Sequential:
    """A small CNN for the 8x8 digits: conv 3x3 (pad 1), pool, conv 3x3 (pad 1), pool, fc.

    With the default channels: conv1 1->8, conv2 8->16, fc1 64->10; 1,898 parameters.
    """
    r = _seeds(rng, 3)
    c1, c2 = channels
    return Sequential(
        ("conv1", Conv2d(1, c1, 3, padding=1, rng=r[0])),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(c1, c2, 3, padding=1, rng=r[1])),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(c2 * 4, 10, rng=r[2])),
    )


def small_vgg(
    rng: RngLike = 0,
    channels: tuple[int, int] = (16, 32),
    *,
    in_channels: int = 1,
    image_size: int = 8,
    num_classes: int = 10,
    batch_norm: bool = True,
) -> Sequential:
    """A small VGG-style CNN: two blocks of two 3x3 convolutions (padding 1), each block pooled.

    ``conv1, bn1, relu1, conv2, bn2, relu2, pool1, conv3, bn3, relu3, conv4, bn4, relu4, pool2,
    flatten, fc1``: the pattern of VGG (Simonyan & Zisserman, 2015) with BatchNorm after each
    convolution (so the convolutions have no bias), at a scale that trains in seconds. With the
    defaults it takes the bundled 8x8 digits, (N, 1, 8, 8), to 10 logits: conv1 1->16,
    conv2 16->16, conv3 16->32, conv4 32->32, fc1 128->10; 17,754 parameters and about 0.38 M
    multiply-accumulates per image. Chapter 4 prunes its filters.

    Parameters
    ----------
    rng : int, numpy.random.Generator or None
        Seed of the initial weights.
    channels : (int, int)
        Filters of the convolutions of the first and of the second block.
    in_channels, image_size, num_classes : int
        Input channels, input height and width (divisible by 4), classes.
    batch_norm : bool
        With BatchNorm (and bias-free convolutions) or without (convolutions with bias).

    References
    ----------
    .. [1] Simonyan, K. and Zisserman, A. (2015) Very deep convolutional networks for
       large-scale image recognition. ICLR.
    .. [2] Ioffe, S. and Szegedy, C. (2015) Batch normalization: accelerating deep network
       training by reducing internal covariate shift. ICML.
    """
    from .nn import BatchNorm2d

    if image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
    c1, c2 = channels
    r = _seeds(rng, 5)
    layers: list[tuple[str, object]] = []
    specs = [(in_channels, c1), (c1, c1), (c1, c2), (c2, c2)]
    for i, (c_in, c_out) in enumerate(specs, start=1):
        layers.append((f"conv{i}", Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm,
                                          rng=r[i - 1])))
        if batch_norm:
            layers.append((f"bn{i}", BatchNorm2d(c_out)))
        layers.append((f"relu{i}", ReLU()))
        if i % 2 == 0:
            layers.append((f"pool{i // 2}", MaxPool2d(2)))
    side = image_size // 4
    layers += [("flatten", Flatten()), ("fc1", Linear(c2 * side * side, num_classes, rng=r[4]))]
    return Sequential(*layers)
