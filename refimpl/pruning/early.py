"""Early saliencies and penalties: skeletonization (1989) and weight elimination (1991).

*Skeletonization* (Mozer & Smolensky 1989) gives every unit an attentional strength
:math:`\\alpha_i` that multiplies its output (1 in the trained network) and calls the unit's
*relevance* the loss it would cost to remove it, :math:`\\rho_i = E(\\alpha_i = 0) - E(\\alpha_i =
1)`, estimated to first order by :math:`-\\partial E/\\partial\\alpha_i` at :math:`\\alpha = 1`.
*Weight elimination* (Weigend, Rumelhart & Huberman 1991) adds a penalty that acts as weight
decay on small weights and costs at most a constant on large ones, so training splits the
weights into a near-zero group and a group of useful ones. See chapter 3 of the book, "Early
saliencies, weight elimination and group-wise brain damage".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from ..nn import Mask, Sequential
from ..nn.layers import Layer
from ..validation import check_float, check_int, check_sparsity
from .magnitude import prunable_layers

__all__ = [
    "WeightElimination",
    "linear_error",
    "relevance_estimate",
    "skeletonization_prune",
    "skeletonize",
    "unit_relevance",
    "weight_elimination_grad",
    "weight_elimination_penalty",
]

_ERRORS = ("linear", "cross_entropy")


# -- skeletonization ------------------------------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def linear_error(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mozer & Smolensky's linear error of a softmax classifier, and its gradient.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    y : ndarray of int, shape (N,)

    Returns
    -------
    error : float
        :math:`\\frac1N \\sum_n \\sum_k |t_{nk} - p_{nk}|` with :math:`p` the softmax and
        :math:`t` the one-hot target; for a softmax this is
        :math:`\\frac1N\\sum_n 2(1 - p_{n,y_n})`.
    grad : ndarray, shape (N, K)
        Its gradient with respect to the logits, :math:`-\\frac2N p_{y}(t - p)`.

    Notes
    -----
    Mozer & Smolensky measure relevance with :math:`\\sum |t - y|` instead of the squared error
    they train with: near a trained optimum the squared error's gradient vanishes, so its
    first-order estimate of a unit's removal cost is poor, while the linear error's is not.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    p = _softmax(logits)
    n = len(y)
    py = p[np.arange(n), y]
    t = np.zeros_like(p)
    t[np.arange(n), y] = 1.0
    return float(np.mean(2.0 * (1.0 - py))), -2.0 / n * py[:, None] * (t - p)


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    p = _softmax(logits)
    n = len(y)
    loss = -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-300)))
    g = p.copy()
    g[np.arange(n), y] -= 1.0
    return float(loss), g / n


def _error_fn(error: str):
    if error not in _ERRORS:
        raise ValueError(f"error must be one of {_ERRORS}, got {error!r}")
    return linear_error if error == "linear" else _cross_entropy


def _split(model: Sequential, layer: str) -> tuple[list[Layer], list[Layer]]:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    names = model.names()
    if layer not in names:
        raise ValueError(f"layer must be one of {names}, got {layer!r}")
    k = names.index(layer)
    if not hasattr(model[layer], "weight") or model[layer].weight.ndim not in (2, 4):
        raise ValueError(f"layer {layer!r} must be a Linear or Conv2d layer")
    layers = list(model)
    return layers[: k + 1], layers[k + 1 :]


def _run(layers: list[Layer], x: np.ndarray, train: bool = False) -> np.ndarray:
    for lay in layers:
        x = lay.forward(x, train=train)
    return x


def _check_data(data, name: str = "data") -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (X, y) of arrays")
    X, y = np.asarray(data[0]), np.asarray(data[1])
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"{name}: X and y must have the same, nonzero number of rows")
    return X, y


def unit_relevance(
    model: Sequential,
    layer: str,
    data: tuple[np.ndarray, np.ndarray],
    *,
    error: str = "linear",
    batch_size: int = 1000,
) -> np.ndarray:
    """Exact skeletonization relevance of every unit of ``layer``: the error its removal costs.

    Parameters
    ----------
    model : Sequential
        A trained classifier (not modified).
    layer : str
        A ``Linear`` or ``Conv2d`` layer; its units are its outputs (neurons or channels).
    data : (X, y)
        The examples the error is averaged over.
    error : {"linear", "cross_entropy"}
        ``"linear"``: :func:`linear_error` (the paper's choice); ``"cross_entropy"``: the loss
        the network was trained with.
    batch_size : int
        Examples per forward pass.

    Returns
    -------
    relevance : ndarray, shape (n_units,)
        :math:`\\rho_i = E(\\alpha_i = 0) - E(\\alpha = 1)`, the mean error over ``data`` with unit
        ``i``'s output set to zero, minus the mean error of the intact network.

    Notes
    -----
    The unit's output (the layer's output ``i``, bias included) is multiplied by
    :math:`\\alpha_i`; with a ReLU after the layer this is the same as scaling the activation.
    One forward pass of the layers after ``layer`` per unit: exact but costly, the reason the
    paper estimates it (:func:`relevance_estimate`).

    References
    ----------
    .. [1] Mozer, M. C. and Smolensky, P. (1989) Skeletonization: a technique for trimming the
       fat from a network via relevance assessment. Advances in Neural Information Processing
       Systems 1, 107-115.

    See chapter 3 of the book, "Skeletonization".
    """
    X, y = _check_data(data)
    fn = _error_fn(error)
    batch_size = check_int(batch_size, "batch_size", 1)
    head, tail = _split(model, layer)
    total = None
    for s in range(0, len(X), batch_size):
        xb, yb = X[s : s + batch_size], y[s : s + batch_size]
        h = _run(head, xb)
        base, _ = fn(_run(tail, h), yb)
        n_units = h.shape[1]
        if total is None:
            total = np.zeros(n_units)
        chunk = max(1, min(n_units, 4_000_000 // h.size))  # units per stacked forward pass
        for start in range(0, n_units, chunk):
            units = range(start, min(start + chunk, n_units))
            hs = np.repeat(h[None], len(units), axis=0)  # (units, N, ...): one copy per unit
            for j, i in enumerate(units):
                hs[j, :, i] = 0
            out = _run(tail, hs.reshape(-1, *h.shape[1:]))
            out = out.reshape(len(units), len(xb), -1)
            for j, i in enumerate(units):
                total[i] += (fn(out[j], yb)[0] - base) * len(xb)
    return total / len(X)


def relevance_estimate(
    model: Sequential,
    layer: str,
    data: tuple[np.ndarray, np.ndarray],
    *,
    error: str = "linear",
    batch_size: int = 1000,
    smoothing: float | None = None,
) -> np.ndarray:
    """First-order skeletonization relevance :math:`\\hat\\rho_i = -\\partial E/\\partial\\alpha_i`.

    Parameters
    ----------
    model, layer, data, error, batch_size
        As in :func:`unit_relevance`.
    smoothing : float in [0, 1), optional
        ``None`` (default): the derivative of the mean error over all of ``data``. A float
        :math:`\\beta`: the paper's exponentially smoothed estimate,
        :math:`\\hat\\rho \\leftarrow \\beta\\hat\\rho + (1-\\beta)\\,\\hat\\rho_{\\text{batch}}`,
        taken over the mini-batches of ``data`` in order (the paper smooths over training updates).

    Returns
    -------
    estimate : ndarray, shape (n_units,)

    Notes
    -----
    With :math:`o_i` the unit's output (shape (N,) or (N, H, W) per unit),

    .. math::
        \\hat\\rho_i = -\\frac{\\partial E}{\\partial \\alpha_i}\\Big|_{\\alpha=1}
        = -\\sum_{n,(h,w)} \\frac{\\partial E}{\\partial o_{n i (h w)}}\\, o_{n i (h w)},

    one backward pass for all units, and a first-order Taylor expansion of
    :math:`E(\\alpha_i = 0) - E(\\alpha_i = 1)` (exact if :math:`E` were linear in
    :math:`\\alpha_i`).
    It is the quantity Molchanov et al. (2017) later call the first-order Taylor criterion,
    without their absolute value.

    References
    ----------
    .. [1] Mozer, M. C. and Smolensky, P. (1989) Skeletonization: a technique for trimming the
       fat from a network via relevance assessment. Advances in Neural Information Processing
       Systems 1, 107-115.

    See chapter 3 of the book, "Skeletonization".
    """
    X, y = _check_data(data)
    fn = _error_fn(error)
    batch_size = check_int(batch_size, "batch_size", 1)
    if smoothing is not None:
        smoothing = check_float(smoothing, "smoothing", 0.0, 1.0, open_high=True)
    head, tail = _split(model, layer)
    tail = [copy.deepcopy(lay) for lay in tail]  # backward fills their grads; keep model intact
    est = None
    for s in range(0, len(X), batch_size):
        xb, yb = X[s : s + batch_size], y[s : s + batch_size]
        h = np.asarray(_run(head, xb), dtype=np.float64)
        g = np.asarray(fn(_run(tail, h.copy(), train=True), yb)[1])
        for lay in reversed(tail):
            g = lay.backward(g)
        axes = (0,) + tuple(range(2, h.ndim))
        batch = -np.sum(g * h, axis=axes)  # d(mean over the batch)/d alpha
        if smoothing is None:
            batch = batch * len(xb) / len(X)
            est = batch if est is None else est + batch
        else:
            est = batch if est is None else smoothing * est + (1 - smoothing) * batch
    return est


def skeletonize(model: Sequential, layer: str, keep: np.ndarray | Iterable[int]) -> Sequential:
    """A copy of ``model`` whose units of ``layer`` outside ``keep`` are removed (alpha_i = 0).

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer : str
        A ``Linear`` or ``Conv2d`` layer.
    keep : ndarray of bool (n_units,) or indices
        The units that stay.

    Returns
    -------
    Sequential
        The unit's weight row is masked (a :class:`~refimpl.nn.Mask`, through ``Mask.update``)
        and its bias set to 0, so its output is exactly zero, as :math:`\\alpha_i = 0` makes it
        in :func:`unit_relevance`. (``refimpl.surgery.mask_units`` keeps the bias;
        ``remove_units`` builds the smaller network.)

    See chapter 3 of the book, "Skeletonization".
    """
    _split(model, layer)
    new = model.copy()
    lay = new[layer]
    n = lay.weight.shape[0]
    keep = np.asarray(keep)
    if keep.dtype == bool:
        if keep.shape != (n,):
            raise ValueError(f"keep must have shape ({n},), got {keep.shape}")
        row = keep.copy()
    else:
        if keep.size and (keep.min() < 0 or keep.max() >= n):
            raise ValueError(f"keep holds unit indices outside 0..{n - 1}")
        row = np.zeros(n, dtype=bool)
        row[keep.astype(int)] = True
    mask = np.broadcast_to(row.reshape((n,) + (1,) * (lay.weight.ndim - 1)), lay.weight.shape)
    Mask.update(lay, "weight", np.array(mask))
    if lay.bias is not None:
        lay.params["bias"][~row] = 0
    return new


def skeletonization_prune(
    model: Sequential,
    layer: str,
    data: tuple[np.ndarray, np.ndarray],
    *,
    sparsity: float,
    step: int = 1,
    error: str = "linear",
    batch_size: int = 1000,
) -> Sequential:
    """Remove units of ``layer`` by skeletonization, re-estimating relevance after every step.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer : str
        A ``Linear`` or ``Conv2d`` layer.
    data : (X, y)
        Examples the relevance is estimated on.
    sparsity : float in [0, 1)
        Fraction of the layer's units to remove (``round(sparsity * n)`` units).
    step : int >= 1
        Units removed between two estimates (the paper removes one at a time).
    error, batch_size
        As in :func:`relevance_estimate`.

    Returns
    -------
    Sequential
        A copy with the removed units at :math:`\\alpha_i = 0` (:func:`skeletonize`); its kept
        units are ``Mask.of(result[layer]).any(axis=1)`` (``axis=(1, 2, 3)`` for a convolution).

    Notes
    -----
    Where we depart: Mozer & Smolensky retrain between removals; here the network is not
    retrained (add ``refimpl.finetune`` between steps for their procedure). The relevance of a
    unit assumes every other unit stays, so re-estimating after each step matters when many
    units go (chapter 3 measures it).

    References
    ----------
    .. [1] Mozer, M. C. and Smolensky, P. (1989) Skeletonization: a technique for trimming the
       fat from a network via relevance assessment. Advances in Neural Information Processing
       Systems 1, 107-115.

    See chapter 3 of the book, "Skeletonization".
    """
    sparsity = check_sparsity(sparsity)
    step = check_int(step, "step", 1)
    _split(model, layer)
    n = model[layer].weight.shape[0]
    target = round(sparsity * n)
    alive = np.ones(n, dtype=bool)
    current = model
    while (~alive).sum() < target:
        est = relevance_estimate(current, layer, data, error=error, batch_size=batch_size)
        est[~alive] = np.inf
        k = min(step, target - int((~alive).sum()))
        alive[np.argsort(est, kind="stable")[:k]] = False
        current = skeletonize(model, layer, alive)
    return current if current is not model else model.copy()


# -- weight elimination ---------------------------------------------------------------------------
def _check_scale(scale: float) -> float:
    return check_float(scale, "scale", 0.0, open_low=True)


def weight_elimination_penalty(weight: np.ndarray, scale: float = 1.0) -> float:
    """Weigend et al.'s penalty :math:`\\sum_i \\frac{(w_i/w_0)^2}{1 + (w_i/w_0)^2}`.

    Parameters
    ----------
    weight : ndarray, any shape
    scale : float > 0
        :math:`w_0`: weights much smaller than it pay about :math:`(w/w_0)^2` (weight decay),
        weights much larger pay almost 1 each (a count of the large weights).

    Returns
    -------
    float

    References
    ----------
    .. [1] Weigend, A. S., Rumelhart, D. E. and Huberman, B. A. (1991) Generalization by
       weight-elimination with application to forecasting. Advances in Neural Information
       Processing Systems 3, 875-882.
    """
    scale = _check_scale(scale)
    u = (np.asarray(weight, dtype=np.float64) / scale) ** 2
    return float(np.sum(u / (1.0 + u)))


def weight_elimination_grad(weight: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Gradient of :func:`weight_elimination_penalty`, same shape as ``weight``.

    Notes
    -----
    .. math::
        \\frac{\\partial}{\\partial w} \\frac{(w/w_0)^2}{1 + (w/w_0)^2}
        = \\frac{2 w / w_0^2}{\\bigl(1 + (w/w_0)^2\\bigr)^2},

    about :math:`2w/w_0^2` (weight decay) for :math:`|w| \\ll w_0`, largest at
    :math:`|w| = w_0/\\sqrt3`, and falling as :math:`2 w_0^2/w^3` for :math:`|w| \\gg w_0`.
    """
    scale = _check_scale(scale)
    w = np.asarray(weight, dtype=np.float64)
    u = (w / scale) ** 2
    return 2.0 * w / scale**2 / (1.0 + u) ** 2


class WeightElimination:
    """Fit callback adding :math:`\\lambda \\sum_i (w_i/w_0)^2 / (1 + (w_i/w_0)^2)` to the loss.

    Parameters
    ----------
    strength : float >= 0
        :math:`\\lambda`.
    scale : float > 0
        :math:`w_0` (:func:`weight_elimination_penalty`).
    layers : iterable of str, optional
        Layers whose weights are penalized (default every Linear and Conv2d; biases never).

    Notes
    -----
    Before each optimizer step, :math:`\\lambda\\, \\partial P/\\partial W` is added to each
    weight's gradient (through the weight's parametrization chain, so masked entries stay masked).
    Where we depart: Weigend et al. also adapt :math:`\\lambda` during training (raising it
    while the training error falls below a target, lowering it otherwise); here it is fixed.

    References
    ----------
    .. [1] Weigend, A. S., Rumelhart, D. E. and Huberman, B. A. (1991) Generalization by
       weight-elimination with application to forecasting. Advances in Neural Information
       Processing Systems 3, 875-882.

    See chapter 3 of the book, "Weight elimination".
    """

    def __init__(
        self, strength: float, scale: float = 1.0, *, layers: Iterable[str] | None = None
    ) -> None:
        self.strength = check_float(strength, "strength", 0.0)
        self.scale = _check_scale(scale)
        self.layers = None if layers is None else list(layers)

    def penalty(self, model: Layer) -> float:
        """Current value of the penalty term over the layers."""
        return self.strength * sum(
            weight_elimination_penalty(lay.weight, self.scale)
            for lay in prunable_layers(model, self.layers).values()
        )

    def on_before_step(self, model: Layer) -> None:
        for lay in prunable_layers(model, self.layers).values():
            g = self.strength * weight_elimination_grad(lay.weight, self.scale)
            lay.add_grad("weight", g.astype(lay.weight.dtype))
