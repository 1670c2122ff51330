"""AutoPruner: a trainable channel-selection layer, trained with the network, then cut out.

:class:`ChannelSelector` multiplies each channel of a layer's output by a code in ``(0, 1)``
computed from the output itself (global average pooling, a dense layer, a sigmoid of slope
``alpha``). :class:`AlphaSchedule` raises ``alpha`` during training so that the codes become
binary, and the selector's own penalty pulls the mean code to the target rate.
:func:`autopruner_prune` then removes the selectors and, by surgery, the channels whose code is
0. :func:`add_channel_selectors` puts the selectors into a trained model.

See chapter 4 of the book, "AutoPruner".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..nn import Sequential, forward_through
from ..nn.layers import Layer, _check_input
from ..surgery.units import remove_units, unit_chain, unit_count
from ..validation import RngLike, check_float, check_int

__all__ = [
    "AlphaSchedule",
    "ChannelSelector",
    "add_channel_selectors",
    "autopruner_prune",
    "selector_codes",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class ChannelSelector(Layer):
    """AutoPruner's channel-selection layer: ``y = x * sigmoid(alpha (GAP(x) W^T + b))``.

    Parameters
    ----------
    channels : int
        ``C``, the channels (or features) of the input.
    alpha : float
        Slope of the sigmoid, > 0; raised during training (:class:`AlphaSchedule`).
    target : float
        ``r`` in ``[0, 1]``: the fraction of channels to keep.
    penalty : float
        ``lambda >= 0``: weight of the penalty ``lambda (mean(code) - r)^2``.
    rng : int, Generator or None
        Initial weights ``U(-1/sqrt(C), 1/sqrt(C))``; the bias starts at 0.

    Notes
    -----
    Shapes: ``x`` (N, C, H, W) or (N, C); ``p = mean_{h,w} x`` (N, C); ``z = p W^T + b``;
    ``code = sigmoid(alpha z)`` (N, C); ``y = x * code`` broadcast over the positions. In
    training mode the backward pass adds the gradient of the penalty

    .. math:: \\lambda \\Big(\\frac{1}{NC} \\sum_{n,c} \\mathrm{code}_{nc} - r\\Big)^2

    to the task gradient (so the penalty reaches the layers below through ``x`` as well), as
    if it were part of the loss; :attr:`last_penalty` holds its value. With ``d`` the gradient
    w.r.t. the code, ``dz = alpha * code (1 - code) * d``, ``dW = dz^T p``, ``db = sum_n dz``,
    ``dx = g * code + (dz W) / (HW)``.

    As ``alpha`` grows the sigmoid becomes a step, the code binary, and a channel with code 0
    can be removed without changing the output (:func:`autopruner_prune`).

    References
    ----------
    .. [1] Luo, J.-H. and Wu, J. (2020) AutoPruner: an end-to-end trainable filter pruning
       method for efficient deep model inference. Pattern Recognition 107, 107461.

    See chapter 4 of the book, "AutoPruner".
    """

    prefix = "sel"

    def __init__(
        self,
        channels: int,
        *,
        alpha: float = 1.0,
        target: float = 0.5,
        penalty: float = 0.0,
        rng: RngLike = None,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self.alpha = check_float(alpha, "alpha", 0.0, open_low=True)
        self.target = check_float(target, "target", 0.0, 1.0)
        self.penalty = check_float(penalty, "penalty", 0.0)
        gen = np.random.default_rng(rng)
        bound = 1.0 / np.sqrt(self.channels)
        self.params["weight"] = gen.uniform(-bound, bound, (self.channels,) * 2).astype(np.float32)
        self.params["bias"] = np.zeros(self.channels, dtype=np.float32)
        self.last_penalty = 0.0

    def _code(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = x if x.ndim == 2 else x.mean(axis=(2, 3))
        z = p @ self.get_param("weight").T + self.get_param("bias")
        return p, _sigmoid(self.alpha * z).astype(x.dtype, copy=False)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        ndim = x.ndim if isinstance(x, np.ndarray) and x.ndim in (2, 4) else 4
        _check_input(x, ndim, "ChannelSelector", f"(N, {self.channels}, H, W) or (N, C)")
        if x.shape[1] != self.channels:
            raise ValueError(f"ChannelSelector expects {self.channels} channels, got {x.shape}")
        p, code = self._code(x)
        self._cache = (x, p, code, train)
        if train:
            m = float(code.mean())
            self.last_penalty = self.penalty * (m - self.target) ** 2
        return x * (code if x.ndim == 2 else code[:, :, None, None])

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, p, code, train = self._cache
        if x.ndim == 2:
            d = (grad_out * x).astype(np.float64)
            hw = 1
        else:
            d = (grad_out * x).sum(axis=(2, 3)).astype(np.float64)
            hw = x.shape[2] * x.shape[3]
        if train and self.penalty > 0:
            d = d + 2.0 * self.penalty * (float(code.mean()) - self.target) / code.size
        dz = d * self.alpha * code * (1.0 - code)
        w = self.get_param("weight")
        self._set_grad("weight", (dz.T @ p).astype(w.dtype))
        self._set_grad("bias", dz.sum(axis=0).astype(w.dtype))
        dp = (dz @ w).astype(x.dtype)
        c = code if x.ndim == 2 else code[:, :, None, None]
        dx = grad_out * c
        return dx + (dp if x.ndim == 2 else np.broadcast_to(dp[:, :, None, None] / hw, x.shape))

    def codes(self, x: np.ndarray) -> np.ndarray:
        """The code of every input, shape (N, C), without caching anything."""
        return self._code(np.asarray(x))[1]

    def config(self) -> dict[str, Any]:
        return {"channels": self.channels, "alpha": self.alpha, "target": self.target,
                "penalty": self.penalty}  # fmt: skip

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        extra = set(config) - {"channels", "alpha", "target", "penalty"}
        if extra:
            raise KeyError(f"unexpected {sorted(extra)}")
        c = check_int(config.get("channels"), "channels", 1)
        return {"weight": (c, c), "bias": (c,)}

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: float) -> Any:
        """Pooling, the dense layer and the sigmoid, and one multiply per activation."""
        from ..cost.results import LayerCost

        if not input_shape or input_shape[0] != self.channels:
            raise ValueError(f"layer (ChannelSelector) expects {self.channels} channels, got "
                             f"{input_shape}")  # fmt: skip
        c = self.channels
        size = int(np.prod(input_shape))
        return LayerCost("", "channel_selector", tuple(input_shape), tuple(input_shape),
                         params=c * c + c, macs=c * c + size, bias_outputs=c)  # fmt: skip

    def extra_repr(self) -> str:
        return f"channels={self.channels}, alpha={self.alpha:g}, target={self.target:g}"


class AlphaSchedule:
    """A :func:`~refimpl.nn.fit` callback: ``alpha = min(stop, start * growth^step)`` for every
    :class:`ChannelSelector` of the model, after every step (AutoPruner's scaling factor)."""

    def __init__(self, start: float = 1.0, growth: float = 1.01, stop: float = 100.0) -> None:
        self.start = check_float(start, "start", 0.0, open_low=True)
        self.growth = check_float(growth, "growth", 1.0)
        self.stop = check_float(stop, "stop", self.start)

    def alpha(self, step: int) -> float:
        return float(min(self.stop, self.start * self.growth ** min(step, 10_000)))

    def on_step_end(self, model: Sequential, step: int) -> None:
        for _, layer in model.named_layers():
            if isinstance(layer, ChannelSelector):
                layer.alpha = self.alpha(step)


def _activation_end(model: Sequential, layer_name: str) -> str:
    names = model.names()
    i = names.index(layer_name)
    while i + 1 < len(names):
        nxt = model[names[i + 1]]
        if nxt.weighted or not nxt.carries_units or nxt.flattens or "kernel_size" in vars(nxt):
            break
        i += 1
    return names[i]


def add_channel_selectors(
    model: Sequential,
    layers: Sequence[str],
    *,
    target: float = 0.5,
    penalty: float = 1.0,
    alpha: float = 1.0,
    rng: RngLike = None,
) -> Sequential:
    """A copy of ``model`` with a :class:`ChannelSelector` ``"sel_<layer>"`` after each layer's
    activation (before any pooling), as AutoPruner places them."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a refimpl.nn.Sequential, got {type(model).__name__}")
    gen = np.random.default_rng(rng)
    out = model.copy()
    for name in layers:
        unit_chain(out, name)
        end = _activation_end(out, name)
        sel = ChannelSelector(unit_count(out, name), alpha=alpha, target=target, penalty=penalty,
                              rng=gen)  # fmt: skip
        out = out.replace(end, [(end, out[end]), (f"sel_{name}", sel)])
    return out


def selector_codes(model: Sequential, X: np.ndarray) -> dict[str, np.ndarray]:
    """Mean code of every channel over the inputs ``X``: selector name to shape (C,)."""
    names = model.names()
    out = {}
    for i, name in enumerate(names):
        layer = model[name]
        if isinstance(layer, ChannelSelector):
            a = forward_through(model, X, i - 1)
            out[name] = np.asarray(layer.codes(a), dtype=np.float64).mean(axis=0)
    return out


def autopruner_prune(
    model: Sequential, X: np.ndarray, *, threshold: float = 0.5
) -> Sequential:
    """Remove every :class:`ChannelSelector` and the channels whose mean code is below
    ``threshold``; the kept channels' mean codes are folded into the next layer's inputs.

    Parameters
    ----------
    model : Sequential
        With selectors (see :func:`add_channel_selectors`); not modified.
    X : ndarray, shape (N, ...)
        Inputs over which the codes are averaged.
    threshold : float
        In ``(0, 1)``.

    Returns
    -------
    Sequential
        Without selectors, smaller. Exact when every code is binary (0 or 1 on every input).

    References
    ----------
    .. [1] Luo, J.-H. and Wu, J. (2020) AutoPruner. Pattern Recognition 107, 107461.
    """
    threshold = check_float(threshold, "threshold", 0.0, 1.0, open_low=True, open_high=True)
    codes = selector_codes(model, X)
    names = model.names()
    plain = Sequential(*[(n, model[n]) for n in names if n not in codes]).copy()
    keep = {}
    for sel in codes:
        i = names.index(sel)
        owner = next(n for n in reversed(names[:i]) if model[n].weighted)
        chain = unit_chain(plain, owner)
        nxt = plain[chain.next_name]
        for pname in list(nxt.parametrizations):
            nxt.remove_parametrization(pname)
        w = nxt.params["weight"]
        n = unit_count(plain, owner)
        scale = np.repeat(codes[sel], w.size // (w.shape[0] * n))
        if w.ndim == 2:
            nxt.params["weight"] = (w * scale[None, :]).astype(w.dtype)
        else:
            nxt.params["weight"] = (w * codes[sel][None, :, None, None]).astype(w.dtype)
        kept = np.flatnonzero(codes[sel] >= threshold)
        keep[owner] = kept if kept.size else np.array([int(np.argmax(codes[sel]))])
    out = plain
    for owner in sorted(keep, key=names.index, reverse=True):
        out = remove_units(out, owner, keep[owner], fold_bias=False)
    return out
