"""The architecture-spec language: networks described without weights.

Small frozen dataclasses, named so that they do not clash with the layers of :mod:`refimpl.nn`:
:class:`Conv`, :class:`Dense`, :class:`MaxPool`, :class:`AvgPool`, :class:`GlobalAvgPool`,
:class:`Act` (``"relu"``, ``"tanh"``, ``"sigmoid"``), :class:`Drop`, :class:`LRN`,
:class:`BatchNorm`, :class:`Flat`, and the composites :class:`Seq`, :class:`Branches` and
:class:`Residual`. Each leaf computes its output shape, parameters, buffers and MACs from its
input shape (:meth:`Spec.cost`); :func:`refimpl.cost.profile` walks a tree of them. See
:mod:`refimpl.cost` for the counting conventions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..validation import check_int
from .results import LayerCost

Shape = tuple[int, ...]
Pair = tuple[int, int]

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _pair(value: int | Sequence[int], what: str, minimum: int) -> Pair:
    """Normalize an int or a pair of ints to a pair, checking each is an int >= ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}") from None
        if len(items) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
        ):
            raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return pair


def _positive_int(value: Any, what: str) -> int:
    return check_int(value, what, 1)


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    """Number of window positions along one axis (PyTorch's formula); may be < 1."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    # PyTorch/Caffe: the last window must start inside the input or the left padding.
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _check_shape(shape: Any) -> Shape:
    try:
        items = tuple(shape)
    except TypeError:
        raise ValueError(f"input_shape must be (C, H, W) or (features,), got {shape!r}") from None
    if len(items) not in (1, 3) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in items
    ):
        raise ValueError(
            f"input_shape must be (C, H, W) or (features,) of positive ints without the batch "
            f"axis, got {shape!r}"
        )
    return tuple(int(s) for s in items)


def _fmt_shape(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


def _where(name: str, spec: object) -> str:
    label = type(spec).__name__
    return f"layer {name!r} ({label})" if name else f"layer ({label})"


def _need_image(shape: Shape, name: str, spec: object) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{_where(name, spec)} expects a (C, H, W) input, got shape {shape}")
    return shape[0], shape[1], shape[2]


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


class Spec:
    """Base class of all architecture specs (layers and composites), which carry no weights."""

    kind: ClassVar[str] = "layer"
    name: str


class _Leaf(Spec):
    """A layer spec: computes its output shape and its counts from the input shape."""

    category: ClassVar[str] = "other"
    #: Whether the output is a new array (False for views and identities).
    allocates: ClassVar[bool] = True

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        """Output shape for ``input_shape``; ``ValueError`` naming the layer if it does not fit."""
        raise NotImplementedError

    def param_count(self) -> int:
        """Trainable numbers."""
        return 0

    def buffer_count(self) -> int:
        """Stored numbers that are not trained."""
        return 0

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        """Multiply-accumulates of the weights."""
        return 0

    def bias_outputs(self, output_shape: Shape) -> int:
        """Outputs that get a bias added."""
        return 0

    def cost(self, input_shape: Shape, name: str = "") -> LayerCost:
        """This layer's row (with ``None`` fields still to be completed)."""
        out = self.output_shape(input_shape, name)
        return LayerCost(
            name=name,
            kind=self.kind,
            input_shape=input_shape,
            output_shape=out,
            category=self.category,
            params=self.param_count(),
            buffers=self.buffer_count(),
            macs=self.macs(input_shape, out),
            bias_outputs=self.bias_outputs(out),
            activations=None if self.allocates else 0,
        )


@dataclass(frozen=True)
class Conv(_Leaf):
    """2-D convolution (cross-correlation), as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C_in`` and ``C_out``; both must be divisible by ``groups``.
    kernel_size, stride, padding, dilation : int or (int, int)
        Window size ``(kH, kW)``, step, zero padding on each side, spacing of kernel taps.
    groups : int
        Channel groups: each output channel sees ``C_in / groups`` input channels (AlexNet's
        two-GPU split is ``groups=2``; a depthwise convolution has ``groups = C_in``).
    bias : bool
        Whether each output channel has a bias.
    name : str
        Row name; empty for an automatic one (``"conv1"``, ``"conv2"``, ...).

    Notes
    -----
    Input ``(C_in, H, W)``, output ``(C_out, H_out, W_out)`` with
    ``H_out = floor((H + 2 p - d (kH - 1) - 1) / s) + 1``. Parameters
    ``C_out (C_in / groups) kH kW (+ C_out)``; MACs ``H_out W_out C_out (C_in / groups) kH kW``;
    FLOPs ``2 H_out W_out C_out ((C_in / groups) kH kW + 1)`` with bias, the survey's formula.
    """

    in_channels: int
    out_channels: int
    kernel_size: int | Pair
    stride: int | Pair = 1
    padding: int | Pair = 0
    groups: int = 1
    bias: bool = True
    name: str = ""
    dilation: int | Pair = 1

    kind: ClassVar[str] = "conv"
    category: ClassVar[str] = "conv"

    def __post_init__(self) -> None:
        _positive_int(self.in_channels, "in_channels")
        _positive_int(self.out_channels, "out_channels")
        groups = _positive_int(self.groups, "groups")
        if self.in_channels % groups or self.out_channels % groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must be divisible by groups ({groups})"
            )
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", 1))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", 0))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", 1))

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        c, h, w = _need_image(input_shape, name, self)
        if c != self.in_channels:
            raise ValueError(
                f"{_where(name, self)} expects {self.in_channels} input channels, "
                f"got {c} (input shape {input_shape})"
            )
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        ho = _window(h, k[0], s[0], p[0], d[0], False)  # type: ignore[index]
        wo = _window(w, k[1], s[1], p[1], d[1], False)  # type: ignore[index]
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{_where(name, self)}: kernel {k} does not fit the input {h}x{w} "
                f"with padding {p} and dilation {d}"
            )
        return (self.out_channels, ho, wo)

    @property
    def fan_in(self) -> int:
        """Inputs per output: ``(C_in / groups) kH kW``."""
        kh, kw = self.kernel_size  # type: ignore[misc]
        return self.in_channels // self.groups * kh * kw

    def param_count(self) -> int:
        return self.out_channels * self.fan_in + (self.out_channels if self.bias else 0)

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return math.prod(output_shape) * self.fan_in

    def bias_outputs(self, output_shape: Shape) -> int:
        return math.prod(output_shape) if self.bias else 0


@dataclass(frozen=True)
class Dense(_Leaf):
    """Dense (fully-connected) layer, as ``torch.nn.Linear``: ``y = W x + b``.

    Parameters
    ----------
    in_features, out_features : int
        ``W`` has shape ``(out_features, in_features)``.
    bias : bool
        Whether ``b`` exists.
    name : str
        Row name; empty for an automatic one (``"linear1"``, ...).

    Notes
    -----
    Input ``(in_features,)``, output ``(out_features,)``. Parameters ``out (in + 1)`` with bias;
    MACs ``in * out``; FLOPs ``2 (in + 1) out`` with bias.
    """

    in_features: int
    out_features: int
    bias: bool = True
    name: str = ""

    kind: ClassVar[str] = "linear"
    category: ClassVar[str] = "fc"

    def __post_init__(self) -> None:
        _positive_int(self.in_features, "in_features")
        _positive_int(self.out_features, "out_features")

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"{_where(name, self)} expects a flat (features,) input, got shape "
                f"{input_shape}; put a Flatten before it"
            )
        if input_shape[0] != self.in_features:
            raise ValueError(
                f"{_where(name, self)} expects {self.in_features} input features, "
                f"got {input_shape[0]} (input shape {input_shape})"
            )
        return (self.out_features,)

    def param_count(self) -> int:
        return self.out_features * (self.in_features + (1 if self.bias else 0))

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return self.in_features * self.out_features

    def bias_outputs(self, output_shape: Shape) -> int:
        return self.out_features if self.bias else 0


class _Pool(_Leaf):
    kernel_size: int | Pair
    stride: int | Pair | None
    padding: int | Pair
    ceil_mode: bool

    def __post_init__(self) -> None:
        k = _pair(self.kernel_size, "kernel_size", 1)
        object.__setattr__(self, "kernel_size", k)
        s = k if self.stride is None else _pair(self.stride, "stride", 1)
        object.__setattr__(self, "stride", s)
        p = _pair(self.padding, "padding", 0)
        object.__setattr__(self, "padding", p)
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise ValueError(f"padding {p} must be at most half the kernel size {k}")

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        c, h, w = _need_image(input_shape, name, self)
        k, s, p = self.kernel_size, self.stride, self.padding
        ho = _window(h, k[0], s[0], p[0], 1, self.ceil_mode)  # type: ignore[index]
        wo = _window(w, k[1], s[1], p[1], 1, self.ceil_mode)  # type: ignore[index]
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{_where(name, self)}: window {k} does not fit the input {h}x{w} with padding {p}"
            )
        return (c, ho, wo)


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling over ``(kH, kW)`` windows, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        At most half the kernel size.
    ceil_mode : bool
        Round the output size up (Caffe's rule, used by GoogLeNet).
    name : str

    Notes
    -----
    ``(C, H, W) -> (C, H_out, W_out)``; no parameters, 0 MACs (comparisons are not counted).
    """

    kernel_size: int | Pair
    stride: int | Pair | None = None
    padding: int | Pair = 0
    ceil_mode: bool = False
    name: str = ""

    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling over ``(kH, kW)`` windows, as ``torch.nn.AvgPool2d``.

    Parameters are those of :class:`MaxPool`. No parameters, 0 MACs (the additions are not
    counted).
    """

    kernel_size: int | Pair
    stride: int | Pair | None = None
    padding: int | Pair = 0
    ceil_mode: bool = False
    name: str = ""

    kind: ClassVar[str] = "avgpool"


@dataclass(frozen=True)
class GlobalAvgPool(_Leaf):
    """Average over all positions: ``(C, H, W) -> (C, 1, 1)``, as ``AdaptiveAvgPool2d(1)``."""

    name: str = ""

    kind: ClassVar[str] = "globalavgpool"

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        c, _, _ = _need_image(input_shape, name, self)
        return (c, 1, 1)


class _Elementwise(_Leaf):
    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        return input_shape


ACTIVATIONS = ("relu", "tanh", "sigmoid")


@dataclass(frozen=True)
class Act(_Elementwise):
    """An elementwise activation: ``"relu"`` (``max(x, 0)``), ``"tanh"`` or ``"sigmoid"``.

    Shape unchanged; no parameters, no MACs (see the counting conventions).
    """

    fn: str = "relu"
    name: str = ""

    def __post_init__(self) -> None:
        if self.fn not in ACTIVATIONS:
            raise ValueError(f"fn must be one of {ACTIVATIONS}, got {self.fn!r}")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.fn


@dataclass(frozen=True)
class Drop(_Elementwise):
    """Dropout: the identity at inference, so it allocates nothing here."""

    p: float = 0.5
    name: str = ""
    kind: ClassVar[str] = "dropout"
    allocates: ClassVar[bool] = False


@dataclass(frozen=True)
class LRN(_Elementwise):
    """Local response normalization across ``size`` channels (AlexNet, GoogLeNet); no params."""

    size: int = 5
    name: str = ""
    kind: ClassVar[str] = "lrn"


@dataclass(frozen=True)
class BatchNorm(_Elementwise):
    """Batch normalization over the channels (axis 0) of ``(C,)`` or ``(C, H, W)`` inputs.

    Parameters
    ----------
    num_features : int
        ``C``.
    affine : bool
        Whether it has a trainable scale and shift (``2C`` parameters).
    name : str
    ndim : {None, 1, 3}
        The per-sample dimensions it requires (``BatchNorm1d``: 1, ``BatchNorm2d``: 3); None
        accepts both.

    Notes
    -----
    Buffers: the running mean and variance (``2C``), stored but not trained. 0 MACs: at
    inference a batch normalization can be folded into the preceding convolution.
    """

    num_features: int
    affine: bool = True
    name: str = ""
    ndim: int | None = None
    kind: ClassVar[str] = "batchnorm"

    def __post_init__(self) -> None:
        _positive_int(self.num_features, "num_features")
        if self.ndim not in (None, 1, 3):
            raise ValueError(f"ndim must be None, 1 or 3, got {self.ndim!r}")

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        if self.ndim is not None and len(input_shape) != self.ndim:
            raise ValueError(
                f"{_where(name, self)} expects a per-sample input of {self.ndim} dimension(s), "
                f"got shape {input_shape}"
            )
        if input_shape[0] != self.num_features:
            raise ValueError(
                f"{_where(name, self)} expects {self.num_features} channels, got "
                f"{input_shape[0]} (input shape {input_shape})"
            )
        return input_shape

    def param_count(self) -> int:
        return 2 * self.num_features if self.affine else 0

    def buffer_count(self) -> int:
        return 2 * self.num_features


@dataclass(frozen=True)
class Flat(_Leaf):
    """``(C, H, W) -> (C H W,)``; a view, so it allocates nothing."""

    name: str = ""
    kind: ClassVar[str] = "flatten"
    allocates: ClassVar[bool] = False

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
        return (math.prod(input_shape),)


SpecLike = Spec | Sequence[Spec]


def _as_seq(item: SpecLike, what: str) -> Seq:
    if isinstance(item, Seq):
        return item
    if isinstance(item, Spec):
        return Seq((item,))
    if isinstance(item, (list, tuple)):
        return Seq(tuple(item))
    raise TypeError(f"{what} must be a spec or a list of specs, got {type(item).__name__}")


@dataclass(frozen=True)
class Seq(Spec):
    """Layers applied one after the other.

    Parameters
    ----------
    layers : sequence of Spec
        Plain lists are accepted wherever a ``Seq`` is expected.
    name : str
        Prefix of the rows of its layers (``"layer1"`` gives ``"layer1.conv1"``); an unnamed
        ``Seq`` is transparent: its layers are named as if they were its parent's.
    input_shape : tuple of int, optional
        The shape the network is meant for, used by :func:`profile` when none is given.
    """

    layers: Sequence[Spec]
    name: str = ""
    input_shape: Shape | None = None

    kind: ClassVar[str] = "seq"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        for layer in layers:
            if not isinstance(layer, Spec):
                raise TypeError(
                    f"Seq {self.name!r}: every layer must be a Spec, got {type(layer).__name__}"
                )
        object.__setattr__(self, "layers", layers)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", _check_shape(self.input_shape))

    def __iter__(self) -> Iterator[Spec]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class Branches(Spec):
    """Parallel branches on the same input, concatenated along the channels (an Inception module).

    Parameters
    ----------
    branches : sequence of (Spec or list of Spec)
        Every branch must give the same spatial size; unnamed branches are named
        ``"branch1"``, ``"branch2"``, ...
    name : str

    Notes
    -----
    Output ``(sum of the branches' C, H, W)``. Adds a ``"concat"`` row whose activations are
    the concatenated output.
    """

    branches: Sequence[SpecLike]
    name: str = ""

    kind: ClassVar[str] = "branches"

    def __post_init__(self) -> None:
        branches = tuple(_as_seq(b, "a branch") for b in self.branches)
        if not branches:
            raise ValueError("Branches needs at least one branch")
        object.__setattr__(self, "branches", branches)


@dataclass(frozen=True)
class Residual(Spec):
    """``body(x) + shortcut(x)``: a residual block (a ResNet bottleneck without its last ReLU).

    Parameters
    ----------
    body : Spec or list of Spec
        The main path.
    shortcut : Spec or list of Spec, optional
        The projection (e.g. a strided 1x1 convolution and a batch normalization); ``None`` is
        the identity. Named ``"downsample"`` unless it has a name.
    name : str

    Notes
    -----
    Both paths must give the same shape. Adds an ``"add"`` row (0 MACs).
    """

    body: SpecLike
    shortcut: SpecLike | None = None
    name: str = ""

    kind: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", _as_seq(self.body, "body"))
        if self.shortcut is not None:
            short = _as_seq(self.shortcut, "shortcut")
            if not short.name:
                short = replace(short, name="downsample")
            object.__setattr__(self, "shortcut", short)


