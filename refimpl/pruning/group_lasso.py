"""Structured sparsity learning, SSL (Wen et al. 2016): a group-lasso penalty on whole structures.

Adding :math:`\\lambda \\sum_g \\lVert W_g \\rVert_2` to the loss, where each group :math:`g` is a
filter, an input channel or a filter-shape position, pushes whole groups to zero, so that the
layer can later shrink as a dense layer (unlike unstructured zeros). With a proximal step after
every update the groups become *exactly* zero. See chapter 3 of the book, "Structured sparsity".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..nn import Optimizer
from ..nn.layers import Layer
from .magnitude import prunable_layers

__all__ = [
    "GroupLasso",
    "group_lasso_grad",
    "group_lasso_penalty",
    "group_norms",
    "group_soft_threshold",
    "zero_groups",
]

_GROUPS = ("filter", "channel", "shape", "row", "column")


def _axes(ndim: int, group: str) -> tuple[int, ...]:
    """Axes summed over inside one group (the other axes index the groups)."""
    if group not in _GROUPS:
        raise ValueError(f"group must be one of {_GROUPS}, got {group!r}")
    if ndim not in (2, 4):
        raise ValueError(f"weight must be 2-D (dense) or 4-D (conv), got {ndim}-D")
    if group in ("filter", "row"):  # one group per output unit / filter
        return tuple(range(1, ndim))
    if group in ("channel", "column"):  # one group per input feature / channel
        return (0,) if ndim == 2 else (0, 2, 3)
    return (0,)  # "shape": W[:, c, i, j] for each (c, i, j); a column for a dense layer


def group_norms(weight: np.ndarray, group: str = "filter") -> np.ndarray:
    """Euclidean norm of every group of ``weight``.

    Parameters
    ----------
    weight : ndarray, shape (out, in) or (C_out, C_in, kH, kW)
    group : {"filter", "channel", "shape", "row", "column"}
        ``"filter"`` (= ``"row"``): one group per output unit or filter, :math:`W_{o,:,:,:}`;
        ``"channel"`` (= ``"column"``): one per input channel, :math:`W_{:,c,:,:}`;
        ``"shape"``: one per filter position, :math:`W_{:,c,i,j}` (Wen et al.'s
        "filter shape-wise" groups).

    Returns
    -------
    norms : ndarray
        Shape (out,) or (C_out,) for filters, (in,) or (C_in,) for channels,
        (C_in, kH, kW) for shapes.
    """
    w = np.asarray(weight, dtype=np.float64)
    return np.sqrt(np.sum(w**2, axis=_axes(w.ndim, group)))


def group_lasso_penalty(weight: np.ndarray, group: str = "filter") -> float:
    """Group-lasso penalty :math:`\\sum_g \\lVert W_g \\rVert_2` (groups of :func:`group_norms`).

    ``weight`` has shape (out, in) or (C_out, C_in, kH, kW); returns a float.
    """
    return float(np.sum(group_norms(weight, group)))


def group_lasso_grad(weight: np.ndarray, group: str = "filter") -> np.ndarray:
    """Gradient of :func:`group_lasso_penalty`: :math:`W_g / \\lVert W_g \\rVert_2` per group.

    At a zero group the penalty is not differentiable; 0 is the smallest subgradient.
    Shape: as ``weight``.
    """
    w = np.asarray(weight, dtype=np.float64)
    axes = _axes(w.ndim, group)
    n = np.sqrt(np.sum(w**2, axis=axes, keepdims=True))
    return np.divide(w, n, out=np.zeros_like(w), where=n > 0)


def group_soft_threshold(weight: np.ndarray, threshold: float, group: str = "filter") -> np.ndarray:
    """Proximal operator of :math:`t \\sum_g \\lVert W_g \\rVert_2` (block soft thresholding).

    Parameters
    ----------
    weight : ndarray, shape (out, in) or (C_out, C_in, kH, kW)
    threshold : float >= 0
        :math:`t` (learning rate times penalty strength in a proximal gradient step).
    group : str
        As in :func:`group_norms`.

    Returns
    -------
    ndarray, same shape and dtype as ``weight``

    Notes
    -----
    .. math::
        \\operatorname{prox}(W)_g = W_g \\max\\Big(0, 1 - \\frac{t}{\\lVert W_g \\rVert_2}\\Big),

    the minimizer of :math:`\\tfrac12 \\lVert V - W \\rVert^2 + t \\sum_g \\lVert V_g \\rVert_2`.
    Every group whose norm is at most :math:`t` becomes exactly zero.
    """
    t = float(threshold)
    if not (np.isfinite(t) and t >= 0):
        raise ValueError(f"threshold must be a finite float >= 0, got {threshold!r}")
    w = np.asarray(weight)
    axes = _axes(w.ndim, group)
    n = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=axes, keepdims=True))
    scale = np.maximum(0.0, 1.0 - np.divide(t, n, out=np.full_like(n, np.inf), where=n > 0))
    return (w * scale).astype(w.dtype)


class GroupLasso:
    """Fit callback adding Wen et al.'s group-lasso term, by proximal step or subgradient.

    Parameters
    ----------
    strength : float >= 0
        :math:`\\lambda`, the penalty weight (the loss is :math:`E + \\lambda \\sum_g
        \\lVert W_g \\rVert`; the paper also weighs layers, which is a dict here).
    optimizer : Optimizer
        The optimizer ``fit`` uses: its current learning rate scales the proximal step.
    group : str
        As in :func:`group_norms`.
    layers : iterable of str, optional
        Layers to regularize (default all Linear and Conv2d).
    proximal : bool
        ``True`` (default): after every optimizer step apply :func:`group_soft_threshold` with
        :math:`t = \\eta \\lambda` (proximal gradient descent; groups reach exactly zero).
        ``False``: add the subgradient :math:`\\lambda W_g / \\lVert W_g \\rVert` to the weight
        gradient before the step (Wen et al.'s plain SGD; groups only get small).

    Notes
    -----
    Where we depart: Wen et al. train with the subgradient and then zero the groups under a
    small threshold; the proximal step does both at once. With momentum the proximal step is a
    heuristic (exact for plain SGD). A masked weight keeps its mask: groups are scaled in the
    stored tensor, which scales the effective weight by the same factor.

    References
    ----------
    .. [1] Wen, W., Wu, C., Wang, Y., Chen, Y. and Li, H. (2016) Learning structured sparsity in
       deep neural networks. Advances in Neural Information Processing Systems 29, 2074-2082.

    See chapter 3 of the book, "Structured sparsity".
    """

    def __init__(
        self,
        strength: float | dict[str, float],
        optimizer: Optimizer,
        *,
        group: str = "filter",
        layers: Iterable[str] | None = None,
        proximal: bool = True,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        _axes(2, group)  # validates the name
        if isinstance(strength, dict):
            if layers is not None:
                raise ValueError("give either a strength dict or layers, not both")
            self.strength = {k: float(v) for k, v in strength.items()}
            self.layers: list[str] | None = list(strength)
        else:
            self.strength = None
            self._lam = float(strength)
            self.layers = None if layers is None else list(layers)
        for v in self.strength.values() if self.strength else [self._lam]:
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"strength must be a finite float >= 0, got {v!r}")
        self.optimizer = optimizer
        self.group = group
        self.proximal = bool(proximal)

    def _lam_of(self, name: str) -> float:
        return self.strength[name] if self.strength else self._lam

    def penalty(self, model: Layer) -> float:
        """Current value of :math:`\\lambda \\sum_g \\lVert W_g \\rVert_2` over the layers."""
        return sum(
            self._lam_of(n) * group_lasso_penalty(layer.weight, self.group)
            for n, layer in prunable_layers(model, self.layers).items()
        )

    def on_before_step(self, model: Layer) -> None:
        if self.proximal:
            return
        for name, layer in prunable_layers(model, self.layers).items():
            g = self._lam_of(name) * group_lasso_grad(layer.weight, self.group)
            layer.add_grad("weight", g.astype(layer.weight.dtype))

    def on_step_end(self, model: Layer, step: int) -> None:
        if not self.proximal:
            return
        for name, layer in prunable_layers(model, self.layers).items():
            key = layer.trained_tensor("weight")  # the plain weight, or a masked weight's base
            t = self.optimizer.lr * self._lam_of(name)
            axes = _axes(layer.weight.ndim, self.group)
            n = np.sqrt(np.sum(layer.weight.astype(np.float64) ** 2, axis=axes, keepdims=True))
            scale = np.maximum(0.0, 1.0 - np.divide(t, n, out=np.full_like(n, np.inf), where=n > 0))
            layer.params[key] *= scale.astype(layer.params[key].dtype)


def zero_groups(
    model: Layer, group: str = "filter", *, layers: Iterable[str] | None = None
) -> dict[str, tuple[int, int]]:
    """How many groups of each layer are exactly zero: layer name to ``(zero, total)``.

    Groups as in :func:`group_norms`; a group counts only if every entry is exactly 0, which the
    proximal step of :class:`GroupLasso` produces. See chapter 3, "Structured sparsity".
    """
    out = {}
    for name, layer in prunable_layers(model, layers).items():
        norms = group_norms(layer.weight, group)
        out[name] = (int(np.count_nonzero(norms == 0)), int(norms.size))
    return out
