"""Cost model: parameters, multiply-accumulates, FLOPs, activation memory and stored bytes.

The same profiler reads two kinds of input:

* an **architecture spec**, a tree of small frozen dataclasses (:class:`Conv`, :class:`Linear`,
  :class:`MaxPool`, ... and the composites :class:`Seq`, :class:`Branches`, :class:`Residual`) that
  describes a network without any weights. :func:`alexnet`, :func:`vgg16`, :func:`googlenet` and
  :func:`resnet50` describe the four networks of Table 1 of the survey [1]_, so the book can
  reproduce that table from first principles (see chapter 1, "Where the cost is");
* a **model** of :mod:`refimpl.nn` (a ``Sequential`` or a single layer). Its parameters are the
  arrays the layers store and its nonzeros are counted in the effective weights, so a pruned model
  reports what is left of it.

:func:`profile` returns a :class:`Profile`: one :class:`LayerCost` row per layer plus totals, the
conv/FC shares of parameters and of MACs, and a text :meth:`Profile.table`.

Counting conventions
--------------------
Shapes
    Per sample, without the batch axis: ``(C, H, W)`` for images, ``(features,)`` for vectors.
    A convolution or pooling window gives ``H_out = floor((H + 2p - d (k - 1) - 1) / s) + 1``
    (``ceil`` instead of ``floor`` with ``ceil_mode=True``, as in PyTorch and Caffe's pooling).
Parameters
    Trainable numbers: weights and biases, and a batch normalization's scale and shift (``2C``),
    as ``torchvision`` counts them. A batch normalization's running mean and variance are
    *buffers*: not parameters, but stored (see *stored bytes*).
MACs
    Multiply-accumulates of the weights of convolutions and dense layers only, the convention of
    Table 1 of [1]_ and of the usual figures (VGG-16 15.5 G, ResNet-50 4.1 G): a convolution
    costs ``H_out W_out C_out (C_in / groups) kH kW``, a dense layer ``in_features *
    out_features``. Pooling, activations, batch normalization, additions and concatenations cost
    0 MACs here: they are cheap in arithmetic (though not in memory traffic).
FLOPs
    ``FLOPs = 2 (MACs + bias outputs)``: a multiply-accumulate is two operations, and a bias is
    costed as one more multiply-accumulate per output, which is exactly the survey's formula
    ``2 H W (C_in K^2 + 1) C_out`` for a convolution with bias (and ``2 (in + 1) out`` for a
    dense layer with bias). Without bias, ``FLOPs = 2 MACs``.
Activations
    The number of elements each layer outputs for one sample, i.e. the memory a forward pass
    allocates if it keeps every output (as a training step does). Views (``Flatten``) and layers
    that are the identity at inference (``Dropout``) allocate nothing and count 0. A
    concatenation or a residual addition allocates its output and counts it.
Stored bytes
    ``(parameters + buffers) * dtype_bytes`` (float32: 4), rounded up per layer: what a dense
    file of the model holds. A compressed layer reports its own (smaller) storage through the
    protocol below.

Protocol for other layers
-------------------------
Layers of :mod:`refimpl.nn` are recognised by their class name or the name of a base class
(``Linear``, ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``ReLU``, ``Tanh``, ``Sigmoid``,
``Flatten``, ``Dropout``, ``BatchNorm1d``, ``BatchNorm2d``, ``Sequential``). Any layer, including
a subclass of those, may instead report its own cost by defining one of these methods, tried in
this order:

1. ``layer_cost(input_shape, dtype_bytes) -> LayerCost``: the full row. Fields left ``None``
   are filled in by the profiler (see :class:`LayerCost`), an empty ``name`` becomes the
   layer's name, and ``output_shape`` carries the shape on to the next layer. Use it when the
   storage is not dense, e.g. a hashed layer (``K`` stored numbers, ``in * out`` MACs) or a
   weight-shared layer (``log2(k)``-bit indices plus a codebook: set ``stored_bytes``); a layer
   without parameters needs only ``LayerCost("", "mylayer", input_shape, output_shape)``.
2. ``cost_spec() -> spec or list of specs``: the layer *is* this small architecture, e.g. a
   dense layer factorized by SVD is ``[Linear(n, r, bias=False), Linear(r, m)]``. Its rows are
   named ``"<layer>.<row>"`` (e.g. ``"fc1.linear1"``).

Otherwise the profiler raises ``TypeError`` naming the layer and its type. (The protocol
deliberately avoids the name ``output_shape``: layers of :mod:`refimpl.nn` already have an
``output_shape(h, w)`` with another meaning.)

References
----------
.. [1] Alqahtani, A., Xie, X. & Jones, M. W. (2021). Literature Review of Deep Network
   Compression. *Informatics* 8(4), 77. Table 1 and the FLOPs formula of section 1.
.. [2] Molchanov, P. et al. (2017). Pruning Convolutional Neural Networks for Resource
   Efficient Inference. *ICLR*. (The source of the survey's FLOPs formula.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "LRN",
    "AvgPool",
    "BatchNorm",
    "Branches",
    "Conv",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "LayerCost",
    "Linear",
    "MaxPool",
    "Profile",
    "ReLU",
    "Residual",
    "Seq",
    "Sigmoid",
    "Spec",
    "Tanh",
    "alexnet",
    "googlenet",
    "profile",
    "resnet50",
    "summary_table",
    "vgg16",
]

Shape = tuple[int, ...]
Pair = tuple[int, int]

CATEGORIES = ("conv", "fc", "other")


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
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


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
# Rows and profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """The cost of one layer for one input sample: one row of a :class:`Profile`.

    Parameters
    ----------
    name : str
        Dotted name, e.g. ``"layer1.0.conv2"``.
    kind : str
        What the layer is: ``"conv"``, ``"linear"``, ``"maxpool"``, ``"relu"``, ``"add"``, ...
    input_shape, output_shape : tuple of int
        Per-sample shapes, ``(C, H, W)`` or ``(features,)``.
    category : {"conv", "fc", "other"}
        Which share the row counts towards in :meth:`Profile.share`.
    params : int
        Stored trainable numbers.
    nonzero_params : int or None
        Nonzero entries of the effective weights and biases; ``None`` means ``params``.
    buffers : int
        Stored numbers that are not trained (a batch normalization's running statistics).
    macs : int
        Multiply-accumulates of the weights.
    bias_outputs : int
        Outputs that receive a bias (each costed as one more MAC in ``flops``).
    flops : int or None
        ``None`` means ``2 * (macs + bias_outputs)``.
    activations : int or None
        Elements allocated for the output; ``None`` means ``prod(output_shape)``.
    activation_bytes, stored_bytes : int or None
        ``None`` means ``activations * dtype_bytes`` and ``(params + buffers) * dtype_bytes``
        (rounded up) with the profile's ``dtype_bytes``.

    Notes
    -----
    A layer implementing ``layer_cost`` (see the module docstring) returns one of these; the
    profiler fills every ``None`` field, so the rows of a :class:`Profile` hold only ints.
    """

    name: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    category: str = "other"
    params: int = 0
    nonzero_params: int | None = None
    buffers: int = 0
    macs: int = 0
    bias_outputs: int = 0
    flops: int | None = None
    activations: int | None = None
    activation_bytes: int | None = None
    stored_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")

    def completed(self, dtype_bytes: int | float = 4) -> LayerCost:
        """Return a copy with every ``None`` field computed from the others."""
        nbytes = _bytes_counter(dtype_bytes)
        activations = math.prod(self.output_shape) if self.activations is None else self.activations
        return replace(
            self,
            input_shape=tuple(int(s) for s in self.input_shape),
            output_shape=tuple(int(s) for s in self.output_shape),
            nonzero_params=self.params if self.nonzero_params is None else self.nonzero_params,
            flops=2 * (self.macs + self.bias_outputs) if self.flops is None else self.flops,
            activations=activations,
            activation_bytes=(
                nbytes(activations) if self.activation_bytes is None else self.activation_bytes
            ),
            stored_bytes=(
                nbytes(self.params + self.buffers)
                if self.stored_bytes is None
                else self.stored_bytes
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (field name to value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _bytes_counter(dtype_bytes: int | float) -> Callable[[int], int]:
    if isinstance(dtype_bytes, bool) or not isinstance(dtype_bytes, (int, float)):
        raise TypeError(f"dtype_bytes must be a number, got {dtype_bytes!r}")
    if not dtype_bytes > 0 or not math.isfinite(dtype_bytes):
        raise ValueError(f"dtype_bytes must be positive and finite, got {dtype_bytes!r}")
    per = Fraction(str(dtype_bytes))
    return lambda n: math.ceil(n * per)


_TOTALS = (
    "params",
    "nonzero_params",
    "buffers",
    "macs",
    "flops",
    "activations",
    "activation_bytes",
    "stored_bytes",
)


@dataclass(frozen=True)
class Profile:
    """Per-layer costs of a network for one input sample, and their totals.

    Attributes
    ----------
    rows : tuple of LayerCost
        One row per layer (composites add a ``"concat"`` or ``"add"`` row), in execution order.
    input_shape, output_shape : tuple of int
        Per-sample shapes of the network's input and output.
    dtype_bytes : int or float
        Bytes per stored number and per activation element (4 for float32).
    name : str
        The network's name, if the spec had one.

    Notes
    -----
    Totals are properties: ``params``, ``nonzero_params``, ``buffers``, ``macs``, ``flops``,
    ``activations``, ``activation_bytes`` and ``stored_bytes``. :meth:`share` splits a total
    into the conv, FC and other shares; ``conv_share`` and ``fc_share`` give the shares of
    parameters and of MACs, the four percentages of Table 1 of the survey.

    Examples
    --------
    >>> p = profile(Seq([Conv(1, 2, 3), Flatten(), Linear(8, 3)]), (1, 4, 4))
    >>> p.params, p.macs, p.flops
    (47, 96, 214)
    """

    rows: tuple[LayerCost, ...]
    input_shape: Shape
    output_shape: Shape
    dtype_bytes: int | float = 4
    name: str = ""

    def _total(self, attr: str) -> int:
        return int(sum(getattr(r, attr) for r in self.rows))

    @property
    def params(self) -> int:
        """Total stored trainable numbers."""
        return self._total("params")

    @property
    def nonzero_params(self) -> int:
        """Total nonzero entries of the effective weights and biases."""
        return self._total("nonzero_params")

    @property
    def buffers(self) -> int:
        """Total stored numbers that are not trained."""
        return self._total("buffers")

    @property
    def macs(self) -> int:
        """Total multiply-accumulates (convolutions and dense layers)."""
        return self._total("macs")

    @property
    def flops(self) -> int:
        """Total FLOPs, ``2 (MACs + bias outputs)``."""
        return self._total("flops")

    @property
    def activations(self) -> int:
        """Total activation elements allocated by one forward pass that keeps every output."""
        return self._total("activations")

    @property
    def activation_bytes(self) -> int:
        """``activations`` in bytes."""
        return self._total("activation_bytes")

    @property
    def stored_bytes(self) -> int:
        """Stored bytes: dense float for plain tensors, the deployed size for parametrized ones."""
        return self._total("stored_bytes")

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are zero, ``1 - nonzero_params / params``."""
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0

    def share(self, quantity: str = "params") -> dict[str, float]:
        """Split a total into the shares of convolutions, dense layers and the rest.

        Parameters
        ----------
        quantity : {"params", "nonzero_params", "macs", "flops", "stored_bytes", ...}
            A numeric :class:`LayerCost` field.

        Returns
        -------
        dict
            ``{"conv": ..., "fc": ..., "other": ...}``, fractions of the total that sum to 1
            (all 0 when the total is 0). ``"other"`` holds, e.g., batch normalization.
        """
        if quantity not in _TOTALS and quantity != "bias_outputs":
            raise ValueError(f"quantity must be one of {_TOTALS}, got {quantity!r}")
        sums = dict.fromkeys(CATEGORIES, 0)
        for row in self.rows:
            sums[row.category] += getattr(row, quantity)
        total = sum(sums.values())
        return {k: (v / total if total else 0.0) for k, v in sums.items()}

    @property
    def conv_share(self) -> dict[str, float]:
        """Share of convolutions in ``{"params": ..., "macs": ...}``."""
        return {"params": self.share("params")["conv"], "macs": self.share("macs")["conv"]}

    @property
    def fc_share(self) -> dict[str, float]:
        """Share of dense (fully-connected) layers in ``{"params": ..., "macs": ...}``."""
        return {"params": self.share("params")["fc"], "macs": self.share("macs")["fc"]}

    def totals(self) -> dict[str, int]:
        """All totals as a dict."""
        return {attr: self._total(attr) for attr in _TOTALS}

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as a list of plain dicts (ready for ``pandas.DataFrame`` if you have it)."""
        return [row.as_dict() for row in self.rows]

    def __getitem__(self, name: str) -> LayerCost:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def __iter__(self) -> Iterator[LayerCost]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def table(self, nonzero: bool | None = None, skip_empty: bool = False) -> str:
        """Format the profile as a plain-text table, one line per layer and a total line.

        Parameters
        ----------
        nonzero : bool, optional
            Show the nonzero-parameter column; by default only when some weights are zero.
        skip_empty : bool
            Leave out rows with neither parameters nor MACs (activations, pooling, ...).

        Returns
        -------
        str
        """
        if nonzero is None:
            nonzero = self.nonzero_params != self.params
        header = ["layer", "kind", "output", "params"]
        if nonzero:
            header.append("nonzero")
        header += ["MACs", "FLOPs", "activations", "stored bytes"]

        def line(name: str, kind: str, shape: str, r: Mapping[str, int]) -> list[str]:
            cells = [name, kind, shape, f"{r['params']:,}"]
            if nonzero:
                cells.append(f"{r['nonzero_params']:,}")
            cells += [
                f"{r['macs']:,}",
                f"{r['flops']:,}",
                f"{r['activations']:,}",
                f"{r['stored_bytes']:,}",
            ]
            return cells

        body = [
            line(r.name, r.kind, _fmt_shape(r.output_shape), r.as_dict())
            for r in self.rows
            if not (skip_empty and r.params == 0 and r.macs == 0)
        ]
        total = line("total", "", _fmt_shape(self.output_shape), self.totals())
        widths = [max(len(c[i]) for c in [header, *body, total]) for i in range(len(header))]

        def render(cells: list[str]) -> str:
            out = [
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        title = f"{self.name or 'network'}: input {_fmt_shape(self.input_shape)}"
        return "\n".join([title, render(header), rule, *map(render, body), rule, render(total)])

    def __str__(self) -> str:
        return self.table()


def summary_table(profiles: Mapping[str, Profile]) -> str:
    """One line per network: parameters, MACs and FLOPs with their conv/FC shares.

    The layout follows Table 1 of the survey [1]_ (parameters in millions, MACs and FLOPs in
    billions, shares in percent; ``M = 10^6``, ``B = 10^9``; stored size in MiB of float32).

    Parameters
    ----------
    profiles : mapping of str to Profile
        Network name to its profile.

    Returns
    -------
    str
    """
    header = [
        "network",
        "params",
        "conv %",
        "FC %",
        "MACs",
        "conv %",
        "FC %",
        "FLOPs",
        "size MiB",
    ]
    lines = []
    for name, p in profiles.items():
        sp, sm = p.share("params"), p.share("macs")
        lines.append(
            [
                name,
                f"{p.params / 1e6:.2f} M",
                f"{100 * sp['conv']:.1f}",
                f"{100 * sp['fc']:.1f}",
                f"{p.macs / 1e9:.3f} B",
                f"{100 * sm['conv']:.1f}",
                f"{100 * sm['fc']:.1f}",
                f"{p.flops / 1e9:.2f} B",
                f"{p.stored_bytes / 2**20:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *map(render, lines)])


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
class Linear(_Leaf):
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


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """``max(x, 0)`` elementwise; shape unchanged."""

    name: str = ""
    kind: ClassVar[str] = "relu"


@dataclass(frozen=True)
class Tanh(_Elementwise):
    """``tanh(x)`` elementwise; shape unchanged."""

    name: str = ""
    kind: ClassVar[str] = "tanh"


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))`` elementwise; shape unchanged."""

    name: str = ""
    kind: ClassVar[str] = "sigmoid"


@dataclass(frozen=True)
class Dropout(_Elementwise):
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

    Notes
    -----
    Buffers: the running mean and variance (``2C``), stored but not trained. 0 MACs: at
    inference a batch normalization can be folded into the preceding convolution.
    """

    num_features: int
    affine: bool = True
    name: str = ""
    kind: ClassVar[str] = "batchnorm"

    def __post_init__(self) -> None:
        _positive_int(self.num_features, "num_features")

    def output_shape(self, input_shape: Shape, name: str = "") -> Shape:
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
class Flatten(_Leaf):
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


# --------------------------------------------------------------------------------------------
# The profiler
# --------------------------------------------------------------------------------------------


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


class _Namer:
    """Automatic names, with one counter per kind and prefix so names never repeat."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, prefix: str, given: str, kind: str) -> str:
        if given:
            return prefix + given
        key = (prefix, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        return f"{prefix}{kind}{self.counts[key]}"


def _walk_spec(
    spec: Spec, shape: Shape, prefix: str, namer: _Namer, rows: list[LayerCost]
) -> Shape:
    """Append the rows of ``spec`` for input ``shape`` and return its output shape."""
    if isinstance(spec, Seq):
        inner = prefix + spec.name + "." if spec.name else prefix
        for layer in spec.layers:
            shape = _walk_spec(layer, shape, inner, namer, rows)
        return shape
    if isinstance(spec, Branches):
        full = namer(prefix, spec.name, spec.kind)
        outs = []
        for i, branch in enumerate(spec.branches, start=1):  # type: ignore[arg-type]
            named = branch if branch.name else replace(branch, name=f"branch{i}")
            outs.append(_walk_spec(named, shape, full + ".", namer, rows))
        first = outs[0]
        for i, out in enumerate(outs, start=1):
            if len(out) != 3 or out[1:] != first[1:]:
                raise ValueError(
                    f"block {full!r} (Branches): branch {i} gives shape {out}, which cannot be "
                    f"concatenated with branch 1's {first} along the channels"
                )
        out_shape = (sum(o[0] for o in outs), *first[1:])
        rows.append(LayerCost(full + ".concat", "concat", shape, out_shape))
        return out_shape
    if isinstance(spec, Residual):
        inner = prefix + spec.name + "." if spec.name else prefix
        body_out = _walk_spec(spec.body, shape, inner, namer, rows)  # type: ignore[arg-type]
        short_out = (
            shape if spec.shortcut is None else _walk_spec(spec.shortcut, shape, inner, namer, rows)  # type: ignore[arg-type]
        )
        add_name = namer(inner, "", "add")
        if body_out != short_out:
            raise ValueError(
                f"block {add_name!r} (Residual): the body gives {body_out} but the shortcut "
                f"gives {short_out}; they must match to be added"
            )
        rows.append(LayerCost(add_name, "add", shape, body_out))
        return body_out
    if isinstance(spec, _Leaf):
        name = namer(prefix, spec.name, spec.kind)
        row = spec.cost(shape, name)
        rows.append(row)
        return row.output_shape
    raise TypeError(f"not a spec: {type(spec).__name__}")


# --- models of refimpl.nn ---------------------------------------------------------------------


def _class_names(layer: object) -> set[str]:
    return {cls.__name__ for cls in type(layer).__mro__}


def _tup(value: Any) -> Pair:
    return _pair(value, "attribute", 0)


def _spec_of_layer(layer: Any) -> _Leaf | None:
    """The spec of a known refimpl.nn layer, or None."""
    names = _class_names(layer)
    if "Conv2d" in names:
        return Conv(
            int(layer.in_channels),
            int(layer.out_channels),
            _tup(layer.kernel_size),
            stride=_tup(getattr(layer, "stride", 1)),
            padding=_tup(getattr(layer, "padding", 0)),
            groups=int(getattr(layer, "groups", 1)),
            bias=getattr(layer, "bias", None) is not None,
            dilation=_tup(getattr(layer, "dilation", 1)),
        )
    if "Linear" in names:
        return Linear(
            int(layer.in_features),
            int(layer.out_features),
            bias=getattr(layer, "bias", None) is not None,
        )
    for cls_name, pool in (("MaxPool2d", MaxPool), ("AvgPool2d", AvgPool)):
        if cls_name in names:
            stride = getattr(layer, "stride", None)
            return pool(
                _tup(layer.kernel_size),
                stride=None if stride is None else _tup(stride),
                padding=_tup(getattr(layer, "padding", 0)),
                ceil_mode=bool(getattr(layer, "ceil_mode", False)),
            )
    if "BatchNorm1d" in names or "BatchNorm2d" in names:
        return BatchNorm(int(layer.num_features))
    simple: dict[str, type[_Leaf]] = {
        "ReLU": ReLU,
        "Tanh": Tanh,
        "Sigmoid": Sigmoid,
        "Flatten": Flatten,
        "Dropout": Dropout,
    }
    for cls_name, spec_cls in simple.items():
        if cls_name in names:
            return Dropout(float(getattr(layer, "p", 0.5))) if spec_cls is Dropout else spec_cls()
    return None


def _stored_params(layer: Any) -> int | None:
    params = getattr(layer, "params", None)
    if isinstance(params, Mapping):
        return int(sum(np.size(v) for v in params.values()))
    return None


def _parametrized_stored_bytes(layer: Any, buffers: int, dtype_bytes: int | float) -> int | None:
    """Stored bytes of a layer with parametrized tensors, asking each for its true size.

    A parametrization's ``stored_bits(params, buffers)`` gives the bits of its tensor when
    deployed (e.g. indices plus codebook for a shared weight); ``None`` (the default, e.g. a
    mask) means its stored parameters count at ``dtype_bytes`` each, as a dense file holds them.
    Plain parameters and the layer's own buffers (BatchNorm statistics) count at ``dtype_bytes``.
    """
    parametrizations = getattr(layer, "parametrizations", None)
    if not parametrizations:
        return None
    bits = 0.0
    for key, value in layer.params.items():
        if key.split(".", 1)[0] not in parametrizations:
            bits += np.size(value) * dtype_bytes * 8
    for name, p in parametrizations.items():
        params, stored_buffers = layer._stored(name)
        own = p.stored_bits(params, stored_buffers) if hasattr(p, "stored_bits") else None
        if own is None:
            own = sum(np.size(v) for v in params.values()) * dtype_bytes * 8
        bits += own
    bits += buffers * dtype_bytes * 8
    return math.ceil(bits / 8)


def _nonzero(layer: Any) -> int | None:
    """Nonzero entries of the effective weight and bias, or None if the layer has no weight."""
    weight = getattr(layer, "weight", None)
    if weight is None:
        return None
    count = int(np.count_nonzero(np.asarray(weight)))
    bias = getattr(layer, "bias", None)
    if bias is not None:
        count += int(np.count_nonzero(np.asarray(bias)))
    return count


def _walk_layer(
    layer: Any, shape: Shape, name: str, dtype_bytes: int | float, rows: list[LayerCost]
) -> Shape:
    """Append the rows of one model layer (or a nested Sequential) and return its output shape."""
    where = f"layer {name!r} ({type(layer).__name__})"
    if callable(getattr(layer, "layer_cost", None)):
        row = layer.layer_cost(shape, dtype_bytes)
        if not isinstance(row, LayerCost):
            raise TypeError(f"{where}: layer_cost() must return a LayerCost, got {type(row)}")
        if not row.name:
            row = replace(row, name=name)
        rows.append(row)
        return tuple(row.output_shape)
    if callable(getattr(layer, "cost_spec", None)):
        sub = _as_seq(layer.cost_spec(), f"{where}: cost_spec()")
        return _walk_spec(sub, shape, name + ".", _Namer(), rows)
    if callable(getattr(layer, "named_layers", None)):
        prefix = name + "." if name else ""
        for child_name, child in layer.named_layers():
            shape = _walk_layer(child, shape, prefix + str(child_name), dtype_bytes, rows)
        return shape
    spec = _spec_of_layer(layer)
    if spec is not None:
        if isinstance(spec, BatchNorm):
            ndim = 3 if "BatchNorm2d" in _class_names(layer) else 1
            if len(shape) != ndim:
                raise ValueError(
                    f"{where} expects a per-sample input of {ndim} dimension(s), got shape {shape}"
                )
        row = spec.cost(shape, name)
        stored = _stored_params(layer)
        if stored is not None:
            row = replace(row, params=stored)
        if spec.param_count():
            row = replace(row, nonzero_params=_nonzero(layer))
        true_bytes = _parametrized_stored_bytes(layer, row.buffers, dtype_bytes)
        if true_bytes is not None:
            row = replace(row, stored_bytes=true_bytes)
        rows.append(row)
        return row.output_shape
    raise TypeError(
        f"{where}: the cost model does not know this layer type; give it a method "
        f"layer_cost(input_shape, dtype_bytes) -> LayerCost or cost_spec() -> spec "
        f"(see the docstring of refimpl.cost)"
    )


def profile(
    spec_or_model: Any, input_shape: Iterable[int] | None = None, dtype_bytes: int | float = 4
) -> Profile:
    """Count the cost of a network, layer by layer, for one input sample.

    Parameters
    ----------
    spec_or_model : Spec, list of Spec, or a refimpl.nn model or layer
        An architecture spec (e.g. ``vgg16()``) or a model (anything with ``named_layers()``,
        e.g. ``refimpl.nn.Sequential``, or a single layer).
    input_shape : tuple of int, optional
        ``(C, H, W)`` or ``(features,)``, without the batch axis. Defaults to the spec's
        ``input_shape`` (the reference architectures carry theirs).
    dtype_bytes : int or float
        Bytes per stored number and per activation element: 4 for float32, 2 for float16,
        0.5 for 4-bit codes.

    Returns
    -------
    Profile

    Raises
    ------
    ValueError
        If ``input_shape`` is malformed, or a layer does not fit the shape it receives (the
        message names the layer).
    TypeError
        If the model holds a layer type the cost model does not know and that does not
        implement the protocol of the module docstring.

    Notes
    -----
    Conventions (see the module docstring): MACs count the weights of convolutions and dense
    layers only; ``FLOPs = 2 (MACs + bias outputs)``, which is the survey's
    ``2 H W (C_in K^2 + 1) C_out`` for a convolution with bias; activations count every
    allocated output; stored bytes are ``(params + buffers) * dtype_bytes``. For a model,
    ``params`` are the sizes of the arrays each layer stores (its ``params`` dict) and
    ``nonzero_params`` the nonzero entries of its effective ``weight`` and ``bias``.

    Examples
    --------
    A 3x3 convolution with bias, 2 -> 4 channels, on a 5x5 input with padding 1:
    ``H W = 25`` outputs per channel, so MACs ``25 * 4 * 2 * 9 = 1800`` and FLOPs
    ``2 * 25 * (2 * 9 + 1) * 4 = 3800``.

    >>> p = profile(Conv(2, 4, 3, padding=1), (2, 5, 5))
    >>> p.params, p.macs, p.flops, p.output_shape
    (76, 1800, 3800, (4, 5, 5))
    """
    _bytes_counter(dtype_bytes)  # validate early
    rows: list[LayerCost] = []
    name = ""
    is_spec = isinstance(spec_or_model, Spec) or (
        isinstance(spec_or_model, (list, tuple)) and all(isinstance(s, Spec) for s in spec_or_model)
    )
    if input_shape is None:
        input_shape = getattr(spec_or_model, "input_shape", None)
        if input_shape is None:
            raise ValueError("input_shape is required: (C, H, W) or (features,)")
    shape = _check_shape(input_shape)
    if is_spec:
        seq = _as_seq(spec_or_model, "spec")
        name = seq.name
        out = _walk_spec(replace(seq, name=""), shape, "", _Namer(), rows)
    else:
        layer_name = (
            ""
            if callable(getattr(spec_or_model, "named_layers", None))
            else (type(spec_or_model).__name__.lower())
        )
        out = _walk_layer(spec_or_model, shape, layer_name, dtype_bytes, rows)
    done = tuple(row.completed(dtype_bytes) for row in rows)
    return Profile(done, shape, tuple(out), dtype_bytes, name)


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
            layers.append(Dropout(dropout, name=f"drop{nm[2:]}"))
        layers.append(Linear(n_in, n_out, name=nm))
        if not last:
            layers.append(ReLU(name=f"relu{nm[2:]}"))
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
            Conv(3, 96, 11, stride=4, name="conv1"), ReLU(name="relu1"), LRN(5, name="norm1"),
            MaxPool(3, 2, name="pool1"),
            Conv(96, 256, 5, padding=2, groups=2, name="conv2"), ReLU(name="relu2"),
            LRN(5, name="norm2"), MaxPool(3, 2, name="pool2"),
            Conv(256, 384, 3, padding=1, name="conv3"), ReLU(name="relu3"),
            Conv(384, 384, 3, padding=1, groups=2, name="conv4"), ReLU(name="relu4"),
            Conv(384, 256, 3, padding=1, groups=2, name="conv5"), ReLU(name="relu5"),
            MaxPool(3, 2, name="pool5"),
        ]  # fmt: skip
        return Seq([*features, Flatten(name="flatten"), *fc], "alexnet", (3, 227, 227))
    features = [
        Conv(3, 64, 11, stride=4, padding=2, name="conv1"), ReLU(name="relu1"),
        MaxPool(3, 2, name="pool1"),
        Conv(64, 192, 5, padding=2, name="conv2"), ReLU(name="relu2"),
        MaxPool(3, 2, name="pool2"),
        Conv(192, 384, 3, padding=1, name="conv3"), ReLU(name="relu3"),
        Conv(384, 256, 3, padding=1, name="conv4"), ReLU(name="relu4"),
        Conv(256, 256, 3, padding=1, name="conv5"), ReLU(name="relu5"),
        MaxPool(3, 2, name="pool5"),
    ]  # fmt: skip
    return Seq([*features, Flatten(name="flatten"), *fc], "alexnet", (3, 224, 224))


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
                ReLU(name=f"relu{stage}_{j}"),
            ]
            c_in = width
        layers.append(MaxPool(2, 2, name=f"pool{stage}"))
    fc = _classifier([512 * 7 * 7, 4096, 4096, num_classes], ["fc6", "fc7", "fc8"], 0.5)
    return Seq([*layers, Flatten(name="flatten"), *fc], "vgg16", (3, 224, 224))


def _conv_unit(c_in: int, c_out: int, k: int, name: str, bn: bool, **kw: Any) -> Seq:
    """conv + ReLU (original GoogLeNet) or conv without bias + BN + ReLU (torchvision)."""
    if bn:
        return Seq(
            [Conv(c_in, c_out, k, bias=False, name="conv", **kw), BatchNorm(c_out, name="bn"),
             ReLU(name="relu")],
            name,
        )  # fmt: skip
    return Seq([Conv(c_in, c_out, k, name="conv", **kw), ReLU(name="relu")], name)


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
        Flatten(name="flatten"),
        Dropout(0.2 if tv else 0.4, name="dropout"),
        Linear(1024, num_classes, name="fc"),
    ]
    return Seq([*stem, *body, *head], "googlenet", (3, 224, 224))


def _bottleneck(c_in: int, width: int, stride: int, name: str, v1: bool) -> Seq:
    c_out = 4 * width
    s1, s3 = (stride, 1) if v1 else (1, stride)
    body: list[Spec] = [
        Conv(c_in, width, 1, stride=s1, bias=False, name="conv1"), BatchNorm(width, name="bn1"),
        ReLU(name="relu1"),
        Conv(width, width, 3, stride=s3, padding=1, bias=False, name="conv2"),
        BatchNorm(width, name="bn2"), ReLU(name="relu2"),
        Conv(width, c_out, 1, bias=False, name="conv3"), BatchNorm(c_out, name="bn3"),
    ]  # fmt: skip
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Seq(
            [Conv(c_in, c_out, 1, stride=stride, bias=False, name="0"), BatchNorm(c_out, name="1")],
            "downsample",
        )
    return Seq([Residual(body, shortcut), ReLU(name="relu3")], name)


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
        ReLU(name="relu"), MaxPool(3, 2, padding=1, name="maxpool"),
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
        GlobalAvgPool(name="avgpool"), Flatten(name="flatten"),
        Linear(2048, num_classes, name="fc"),
    ]  # fmt: skip
    return Seq(layers, "resnet50", (3, 224, 224))
