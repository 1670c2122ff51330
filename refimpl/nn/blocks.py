"""Layers of compact architectures: parallel branches, residual sums, channel shuffle, global
average pooling.

The building blocks of the networks that are *designed* small rather than compressed (chapter 8
of the book, "Distillation and compact design"):

* :class:`Concat` runs several branches on the same input and concatenates their outputs along
  the channels: the Inception module of GoogLeNet and the Fire module of SqueezeNet;
* :class:`Residual` adds a branch's output to its input (or to a shortcut's output): the units
  of ShuffleNet and ResNet;
* :class:`ChannelShuffle` interleaves the channels of ``g`` groups, so that the next group
  convolution mixes information across groups (ShuffleNet);
* :class:`GlobalAvgPool2d` averages each channel over all positions, the classifier head of
  Network in Network that replaces large dense layers.

Depthwise separable convolutions need no new layer: a ``Conv2d`` with ``groups=in_channels``
followed by a ``1 x 1`` ``Conv2d`` (see :func:`refimpl.models.depthwise_separable`).

:class:`Concat` and :class:`Residual` are *containers*, like :class:`~refimpl.nn.Sequential`:
their parameters have dotted names (``"fire2.expand3x3.conv.weight"``),
:func:`~refimpl.nn.leaf_layers` and :func:`~refimpl.nn.weighted_layers` walk into them (so
pruning and quantization reach the convolutions inside), the compressed model file stores and
rebuilds them, and the cost model walks their paths (``cost_paths``) and adds a ``"concat"`` or
``"add"`` row, as for the :class:`~refimpl.cost.Branches` and :class:`~refimpl.cost.Residual`
specs. Unit surgery does not cross them (they do not carry units).

References
----------
.. [1] Lin, M., Chen, Q. and Yan, S. (2014) Network in network. ICLR.
.. [2] Szegedy, C. et al. (2015) Going deeper with convolutions. CVPR.
.. [3] Iandola, F. N. et al. (2016) SqueezeNet: AlexNet-level accuracy with 50x fewer
   parameters and <0.5MB model size. arXiv:1602.07360.
.. [4] Zhang, X., Zhou, X., Lin, M. and Sun, J. (2018) ShuffleNet: an extremely efficient
   convolutional neural network for mobile devices. CVPR.
.. [5] He, K., Zhang, X., Ren, S. and Sun, J. (2016) Deep residual learning for image
   recognition. CVPR.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..validation import check_int
from .container import Container
from .layers import Layer, _check_input


def _named(items: Iterable[Any], stem: str, what: str) -> dict[str, Layer]:
    """``{name: layer}`` from layers or ``(name, layer)`` pairs; unnamed ones are ``stem1``, ..."""
    out: dict[str, Layer] = {}
    for i, item in enumerate(items, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, layer = item
        else:
            name, layer = f"{stem}{i}", item
        if not isinstance(layer, Layer):
            raise TypeError(f"{what} {name!r} is not a Layer: {type(layer).__name__}")
        if not name or "." in name:
            raise ValueError(f"{what} names must be non-empty and contain no dot: {name!r}")
        if name in out:
            raise ValueError(f"duplicate {what} name {name!r}")
        out[name] = layer
    return out


class Concat(Container):
    """Run every branch on the same input; concatenate the outputs along the channels.

    Parameters
    ----------
    *branches : Layer or (str, Layer)
        Usually small :class:`~refimpl.nn.Sequential` models; unnamed ones are named
        ``branch1``, ``branch2``, ... Every branch must give the same ``(N, H, W)`` (or, for
        flat outputs, the same ``N``).

    Notes
    -----
    Shapes: ``x`` (N, C, H, W) to (N, C_1 + ... + C_B, H, W) where branch ``b`` outputs
    (N, C_b, H, W); flat (N, F_b) outputs concatenate to (N, F_1 + ... + F_B). Backward: the
    gradient is split along the channels, each slice goes back through its branch, and the
    input gradients of the branches are summed (the input fans out to every branch).
    The Inception module {Szegedy et al. 2015} and SqueezeNet's Fire module (a squeeze
    ``1 x 1`` convolution, then a ``Concat`` of ``1 x 1`` and ``3 x 3`` expand convolutions)
    are built from it. See chapter 8, "Compact design".
    """

    prefix = "concat"

    def __init__(self, *branches: Layer | tuple[str, Layer]) -> None:
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], (list, dict)):
            items = branches[0].items() if isinstance(branches[0], dict) else branches[0]
            branches = tuple(items)
        if not branches:
            raise ValueError("Concat needs at least one branch")
        self.layers = _named(branches, "branch", "branch")

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Concat expects a numpy.ndarray input, got {type(x).__name__}")
        outs = [layer.forward(x, train=train) for layer in self.layers.values()]
        first = outs[0]
        for name, out in zip(self.layers, outs, strict=True):
            if out.ndim != first.ndim or out.ndim < 2 or (
                out.shape[:1] + out.shape[2:] != first.shape[:1] + first.shape[2:]
            ):
                raise ValueError(
                    f"Concat: branch {name!r} gives shape {out.shape}, which cannot be "
                    f"concatenated with {list(self.layers)[0]!r}'s {first.shape} along the "
                    "channels"
                )
        self._splits = np.cumsum([out.shape[1] for out in outs])[:-1]
        return np.concatenate(outs, axis=1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        parts = np.split(grad_out, self._splits, axis=1)
        grad_in = None
        for layer, g in zip(self.layers.values(), parts, strict=True):
            gi = layer.backward(np.ascontiguousarray(g))
            grad_in = gi if grad_in is None else grad_in + gi
        return grad_in

    def config(self) -> dict[str, Any]:
        """``{"branches": [{"name": ..., "type": ..., **config}, ...]}``."""
        return {"branches": [{"name": n, **layer.describe()}
                             for n, layer in self.layers.items()]}  # fmt: skip

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Concat:
        branches = config.get("branches")
        if not isinstance(branches, list) or not branches or set(config) != {"branches"}:
            raise ValueError("a Concat is described by one non-empty list, 'branches'")
        items = []
        for sub in branches:
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str):
                raise ValueError("every branch of a Concat needs a name")
            items.append((name, Layer.build({k: v for k, v in sub.items() if k != "name"}, name)))
        return cls(*items)

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        branches = config.get("branches")
        if not isinstance(branches, list) or not branches or set(config) != {"branches"}:
            raise ValueError("a Concat is described by one non-empty list, 'branches'")
        return cls._shapes_of(branches, "branch")

    def cost_paths(self) -> tuple[str, list[tuple[str, Layer | None]]]:
        """For the cost model: every branch sees the input; the outputs are concatenated."""
        return "concat", list(self.layers.items())


class Residual(Container):
    """``body(x) + x``, or ``body(x) + shortcut(x)`` with a projection shortcut.

    Parameters
    ----------
    body : Layer
        The main path (usually a :class:`~refimpl.nn.Sequential`), named ``"body"``.
    shortcut : Layer, optional
        A projection with the body's output shape (a ``1 x 1`` convolution, a pooling), named
        ``"shortcut"``; ``None`` is the identity, and the body must then keep the shape.

    Notes
    -----
    Shapes: the body's and the shortcut's outputs must match. Backward: the gradient goes to
    both paths unchanged and their input gradients are summed. No activation follows the sum:
    put a ``ReLU`` after the block, as ResNet and ShuffleNet do. See chapter 8, "Compact design".
    """

    prefix = "res"

    def __init__(self, body: Layer, shortcut: Layer | None = None) -> None:
        super().__init__()
        items = [("body", body)] + ([("shortcut", shortcut)] if shortcut is not None else [])
        self.layers = _named(items, "", "path")

    @property
    def body(self) -> Layer:
        return self.layers["body"]

    @property
    def shortcut(self) -> Layer | None:
        return self.layers.get("shortcut")

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Residual expects a numpy.ndarray input, got {type(x).__name__}")
        y = self.body.forward(x, train=train)
        s = x if self.shortcut is None else self.shortcut.forward(x, train=train)
        if y.shape != s.shape:
            what = "the input" if self.shortcut is None else "the shortcut's output"
            raise ValueError(f"Residual: the body gives shape {y.shape} but {what} has shape "
                             f"{s.shape}; they must match to be added")  # fmt: skip
        return y + s

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_in = self.body.backward(grad_out)
        if self.shortcut is None:
            return grad_in + grad_out
        return grad_in + self.shortcut.backward(grad_out)

    def config(self) -> dict[str, Any]:
        return {name: layer.describe() for name, layer in self.layers.items()}

    @staticmethod
    def _check_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("body"), dict) or set(config) - {"body", "shortcut"}:
            raise ValueError("a Residual is described by 'body' and an optional 'shortcut'")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Residual:
        cls._check_config(config)
        body = Layer.build(config["body"], "body")
        shortcut = config.get("shortcut")
        return cls(body, None if shortcut is None else Layer.build(shortcut, "shortcut"))

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        cls._check_config(config)
        subs = [{"name": k, **v} for k, v in config.items() if v is not None]
        return cls._shapes_of(subs, "path")

    def cost_paths(self) -> tuple[str, list[tuple[str, Layer | None]]]:
        """For the cost model: the body and the shortcut (``None``: identity) are added."""
        return "add", [("body", self.body), ("shortcut", self.shortcut)]


class ChannelShuffle(Layer):
    """Interleave the channels of ``groups`` groups (ShuffleNet's channel shuffle).

    Parameters
    ----------
    groups : int
        ``g``; must divide the number of channels.

    Notes
    -----
    Shapes: (N, C, H, W) to (N, C, H, W). With ``C = g n``, reshape the channels to
    ``(g, n)``, transpose to ``(n, g)`` and flatten: output channel ``j g + i`` is input
    channel ``i n + j``. So after a group convolution with ``g`` groups, every group of the
    next group convolution receives channels from every group of this one. The backward pass
    applies the inverse permutation (reshape to ``(n, g)``, transpose to ``(g, n)``). No
    parameters and no arithmetic; it moves every activation once.
    """

    prefix = "shuffle"

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = check_int(groups, "groups", 1)

    def _check(self, x: np.ndarray) -> tuple[int, ...]:
        _check_input(x, 4, "ChannelShuffle", "(N, C, H, W)")
        n, c, h, w = x.shape
        if c % self.groups:
            raise ValueError(f"ChannelShuffle: groups={self.groups} must divide the "
                             f"{c} channels of the input")  # fmt: skip
        return n, c, h, w

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        n, c, h, w = self._check(x)
        g = self.groups
        return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        n, c, h, w = grad_out.shape
        g = self.groups
        return grad_out.reshape(n, c // g, g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)

    def permutation(self, channels: int) -> np.ndarray:
        """``perm`` with ``y[:, k] = x[:, perm[k]]`` for ``channels`` input channels."""
        channels = check_int(channels, "channels", 1)
        if channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide channels={channels}")
        return np.arange(channels).reshape(self.groups, -1).T.reshape(-1)

    def config(self) -> dict[str, Any]:
        return {"groups": self.groups}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        if set(config) - {"groups"}:
            raise KeyError(f"unexpected {sorted(set(config) - {'groups'})}")
        check_int(config.get("groups"), "groups", 1)
        return {}

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: float) -> Any:
        from ..cost.results import LayerCost

        if len(input_shape) != 3 or input_shape[0] % self.groups:
            raise ValueError(f"layer (ChannelShuffle) expects (C, H, W) with C divisible by "
                             f"{self.groups}, got {input_shape}")  # fmt: skip
        return LayerCost("", "shuffle", tuple(input_shape), tuple(input_shape))

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class GlobalAvgPool2d(Layer):
    """Average every channel over all positions: (N, C, H, W) to (N, C, 1, 1).

    As ``torch.nn.AdaptiveAvgPool2d(1)``. Network in Network {Lin et al. 2014} ends with a
    convolution to one channel per class and this pooling, instead of dense layers: the
    classifier then has no parameters of its own and cannot overfit through them. GoogLeNet
    keeps it before a single small dense layer. Backward: each position receives
    ``grad / (H W)``.
    """

    prefix = "gap"
    carries_units = True

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        _check_input(x, 4, "GlobalAvgPool2d", "(N, C, H, W)")
        self._hw = x.shape[2:]
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        h, w = self._hw
        n, c = grad_out.shape[:2]
        return np.broadcast_to(grad_out / (h * w), (n, c, h, w)).copy()

    def cost_spec(self) -> Any:
        from ..cost.specs import GlobalAvgPool

        return GlobalAvgPool()

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        hh, ww = x.shape[2:]
        return self.backward(h) / (hh * ww), None  # coefficients 1/(H W), squared
