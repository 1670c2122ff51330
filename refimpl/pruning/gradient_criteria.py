"""Gradient and relevance criteria for units (section 3.1.2 of the survey).

Five criteria that ask the loss (or the output) how much a unit matters, rather than looking at
its weights or its activations alone:

* :func:`taylor_scores`: the first-order Taylor criterion of Molchanov et al. (2017), the change
  of the loss when a feature map is zeroed, to first order;
* :func:`fisher_scores` and :func:`group_fisher_scores`: Group Fisher pruning (Liu et al., 2021),
  the squared per-sample gradient of a channel mask, with one mask shared by coupled channels,
  divided by the FLOPs the channel costs (:func:`channel_flops`);
* :func:`lrp_relevances` and :func:`lrp_unit_scores`: layer-wise relevance propagation pruning
  (Yeom et al., 2021);
* :func:`gate_scores`, :class:`GateDecorator` and :func:`gate_decorator_prune`: Gate Decorator
  (You et al., 2019), Taylor scores of channel gates accumulated over batches, ranked across
  layers, in a tick-tock loop with a sparsity penalty on the gates;
* :class:`MajorityVoting`: majority voting (Alqahtani et al., 2021) counted and applied during
  training, as a :func:`refimpl.nn.fit` callback.

The one-shot criteria follow the conventions of :mod:`refimpl.pruning.neuron_criteria`: the
layer first, then what the criterion needs; one score per unit, ``float64``, larger is more
important. :func:`unit_activation_gradients` gathers the activations and the per-sample
gradients they need; ``"taylor"``, ``"fisher"`` and ``"lrp"`` are registered in
:data:`refimpl.pruning.CRITERIA`.

A *gate* of a unit is a virtual multiplier ``m = 1`` on its output map. Its per-sample gradient
is

.. math:: \\frac{\\partial L_n}{\\partial m_j} = \\sum_{h, w} a_{njhw}
          \\frac{\\partial L_n}{\\partial a_{njhw}},

the quantity behind the Taylor, Fisher and Gate Decorator scores (:func:`gate_gradients`).

See chapter 4 of the book, section "Gradient and relevance criteria".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from ..nn.layers import Layer
from ..surgery.units import remove_units, shrink, unit_chain, unit_count
from ..validation import check_float, check_int
from .neuron_criteria import _per_unit, _pooled, _units
from .selection import n_to_prune, select_global

__all__ = [
    "GateDecorator",
    "MajorityVoting",
    "channel_flops",
    "fisher_scores",
    "gate_decorator_prune",
    "gate_gradients",
    "gate_scores",
    "group_fisher_scores",
    "lrp_relevances",
    "lrp_unit_scores",
    "taylor_scores",
    "unit_activation_gradients",
]


# --------------------------------------------------------------------------------------------
# Probes: record what a layer outputs and the gradient that comes back to it
# --------------------------------------------------------------------------------------------


def _resolve(model: Sequential, path: str, name: str = "points") -> Layer:
    """The layer at a dotted path (``"res1.body.conv2"``) inside nested containers."""
    if not isinstance(path, str):
        raise TypeError(f"{name} must hold layer paths (str), got {type(path).__name__}")
    layer: Any = model
    for part in path.split("."):
        layers = getattr(layer, "layers", None)
        if not isinstance(layers, Mapping) or part not in layers:
            raise ValueError(f"{name}: no layer {path!r} in the model (at {part!r})")
        layer = layers[part]
    return layer


class _Probe:
    """Installed as a layer's ``forward``/``backward``: records output and incoming gradient.

    ``record(out, grad)`` is called at every backward pass with the output of the last forward
    pass and the gradient with respect to it. The probe calls the class's own methods, so the
    layer computes exactly what it computed before.
    """

    def __init__(self, layer: Layer, record: Any) -> None:
        self.layer, self.record, self.out = layer, record, None

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.out = type(self.layer).forward(self.layer, x, train=train)
        return self.out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        self.record(self.out, grad)
        return type(self.layer).backward(self.layer, grad)

    def install(self) -> None:
        self.layer.forward = self.forward  # type: ignore[method-assign]
        self.layer.backward = self.backward  # type: ignore[method-assign]

    def remove(self) -> None:
        self.layer.__dict__.pop("forward", None)
        self.layer.__dict__.pop("backward", None)


def _check_Xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a numpy.ndarray, got {type(X).__name__}")
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"X must have shape (N, ...) with N >= 1, got {X.shape}")
    y = np.asarray(y)
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({len(X)},), got {y.shape} {y.dtype}")
    return X, y


def _backprop(
    model: Sequential,
    X: np.ndarray,
    y: np.ndarray,
    probes: Mapping[str, Any],
    *,
    loss: Any,
    batch_size: int,
) -> None:
    """Forward (evaluation mode) and backward over ``X`` with per-sample loss gradients.

    ``probes`` maps paths of ``model`` (a working copy) to ``record(out, grad)`` callbacks. The
    gradient is that of each input's own loss: the batch mean is undone (multiplied by the batch
    size), which is exact because in evaluation mode the inputs do not interact.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    loss_fn = loss if loss is not None else CrossEntropyLoss()
    installed = [_Probe(_resolve(model, p), rec) for p, rec in probes.items()]
    for probe in installed:
        probe.install()
    try:
        for i in range(0, len(X), batch_size):
            xb, yb = X[i : i + batch_size], y[i : i + batch_size]
            loss_fn(model.forward(xb, train=False), yb)
            model.backward(np.asarray(loss_fn.backward() * len(xb)))
    finally:
        for probe in installed:
            probe.remove()


def _gate_of(out: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Per-sample gradient of a unit gate: sum over positions of output * gradient. (N, C)."""
    prod = out.astype(np.float64) * grad.astype(np.float64)
    return prod if prod.ndim == 2 else prod.reshape(prod.shape[0], prod.shape[1], -1).sum(axis=2)


def gate_gradients(
    model: Sequential,
    points: Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    *,
    loss: Any = None,
    batch_size: int = 500,
) -> dict[str, np.ndarray]:
    """Per-sample gradients of virtual unit gates on the outputs of the layers ``points``.

    Parameters
    ----------
    model : Sequential
        Not modified (a copy runs, in evaluation mode).
    points : sequence of str
        Paths of layers (``"relu1"``, or ``"res1.body.conv2"`` inside a container); a gate
        ``m_j = 1`` multiplies channel (or unit) ``j`` of each one's output.
    X : ndarray, shape (N, ...)
    y : ndarray of int, shape (N,)
    loss : object, optional
        A loss with ``__call__(output, y)`` and ``backward()`` that averages over the batch;
        cross-entropy by default.
    batch_size : int

    Returns
    -------
    gradients : dict of str to ndarray, shape (N, C)
        ``dL_n / dm_j`` for every input ``n`` and unit ``j`` of each point.

    Notes
    -----
    .. math:: \\frac{\\partial L_n}{\\partial m_j} = \\sum_{h, w} a_{njhw}
              \\frac{\\partial L_n}{\\partial a_{njhw}}

    with ``a`` the point's output. Zeroing the gate removes the unit, so ``-dL/dm_j`` is the
    first-order estimate of the loss change when unit ``j`` goes.
    """
    X, y = _check_Xy(X, y)
    if isinstance(points, str) or not points:
        raise ValueError("points must be a non-empty sequence of layer paths")
    work = model.copy()
    parts: dict[str, list[np.ndarray]] = {p: [] for p in points}
    probes = {p: (lambda out, g, p=p: parts[p].append(_gate_of(out, g))) for p in points}
    _backprop(work, X, y, probes, loss=loss, batch_size=batch_size)
    return {p: np.concatenate(v, axis=0) for p, v in parts.items()}


def _activation_end_name(model: Sequential, layer_name: str) -> str:
    from .units import _activation_end

    unit_count(model, layer_name)
    return model.names()[_activation_end(model, layer_name)]


def unit_activation_gradients(
    model: Sequential,
    layer_name: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    loss: Any = None,
    batch_size: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """The units' activations and each input's loss gradient with respect to them.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer; its units' activations are taken after the
        BatchNorm, activation and Dropout layers that follow it (as in
        :func:`refimpl.pruning.unit_activations`).
    X, y : ndarray
        Inputs (N, ...) and integer labels (N,).
    loss, batch_size
        As in :func:`gate_gradients`.

    Returns
    -------
    activations, gradients : ndarray, shape (N, n_units) or (N, n_units, H, W)
        ``a`` and ``dL_n / da_n`` (per input: the batch mean of the loss is undone).
    """
    X, y = _check_Xy(X, y)
    point = _activation_end_name(model, layer_name)
    acts: list[np.ndarray] = []
    grads: list[np.ndarray] = []

    def record(out: np.ndarray, g: np.ndarray) -> None:
        acts.append(out.copy())
        grads.append(g.copy())

    _backprop(model.copy(), X, y, {point: record}, loss=loss, batch_size=batch_size)
    return np.concatenate(acts, axis=0), np.concatenate(grads, axis=0)


# --------------------------------------------------------------------------------------------
# First-order Taylor (Molchanov et al. 2017)
# --------------------------------------------------------------------------------------------


def _pair(layer: Layer | np.ndarray, activations: np.ndarray, gradients: np.ndarray) -> tuple:
    n = _units(layer)
    a = np.asarray(activations)
    g = np.asarray(gradients)
    if a.shape != g.shape:
        raise ValueError(f"gradients must have the shape of activations {a.shape}, got {g.shape}")
    _per_unit(a, n, "activations")
    _per_unit(g, n, "gradients")
    return a.astype(np.float64), g.astype(np.float64)


def taylor_scores(
    layer: Layer | np.ndarray,
    activations: np.ndarray,
    gradients: np.ndarray,
    *,
    normalize: bool = True,
) -> np.ndarray:
    """Molchanov et al. (2017): the first-order Taylor estimate of the loss change.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
    activations : ndarray, shape (N, n_units) or (N, n_units, H, W)
        The units' outputs (after their nonlinearity).
    gradients : ndarray, same shape
        The loss gradient with respect to them (:func:`unit_activation_gradients`).
    normalize : bool
        Divide the layer's scores by their L2 norm (the paper's layer-wise normalization, which
        makes scores of different layers comparable for a global ranking).

    Returns
    -------
    scores : ndarray, shape (n_units,)

    Notes
    -----
    Zeroing feature map ``j`` changes the loss by ``-sum a dL/da`` to first order, so

    .. math:: \\Theta_j = \\Big| \\frac{1}{N M} \\sum_{n} \\sum_{h, w} a_{njhw}
              \\frac{\\partial L}{\\partial a_{njhw}} \\Big|, \\qquad
              \\hat\\Theta_j = \\Theta_j / \\lVert \\Theta \\rVert_2 ,

    with ``M = H W`` the positions of a map. The estimate is exact when the loss is linear in
    the map. The paper prunes iteratively: one map at a time, with a short fine-tuning between.

    References
    ----------
    .. [1] Molchanov, P., Tyree, S., Karras, T., Aila, T. and Kautz, J. (2017) Pruning
       convolutional neural networks for resource efficient inference. ICLR.

    See chapter 4 of the book, "Gradient and relevance criteria". We average over the inputs
    before taking the absolute value (as the authors' reference code does); the paper writes
    the absolute value per input and then averages. A unit of a dense layer is a map with
    ``M = 1``.
    """
    a, g = _pair(layer, activations, gradients)
    n = a.shape[1]
    theta = np.abs(np.moveaxis(a * g, 1, -1).reshape(-1, n).mean(axis=0))
    if normalize:
        norm = np.linalg.norm(theta)
        theta = theta / norm if norm > 0 else theta
    return theta


# --------------------------------------------------------------------------------------------
# Group Fisher pruning (Liu et al. 2021)
# --------------------------------------------------------------------------------------------


def _fisher(g: np.ndarray, cost: Any, n: int) -> np.ndarray:
    score = (g**2).sum(axis=0) / (2.0 * g.shape[0])
    if cost is not None:
        c = np.broadcast_to(np.asarray(cost, dtype=np.float64), (n,))
        if not (np.isfinite(c).all() and (c > 0).all()):
            raise ValueError("cost must be positive and finite (FLOPs per channel)")
        score = score / c
    return score


def fisher_scores(
    layer: Layer | np.ndarray,
    activations: np.ndarray,
    gradients: np.ndarray,
    *,
    cost: float | np.ndarray | None = None,
) -> np.ndarray:
    """Liu et al. (2021): the Fisher information of a channel mask, per unit of cost.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
    activations, gradients : ndarray, shape (N, n_units) or (N, n_units, H, W)
        The units' outputs and **per-input** loss gradients (:func:`unit_activation_gradients`).
    cost : float or ndarray (n_units,), optional
        What removing a unit saves, e.g. its FLOPs (:func:`channel_flops`); the importance is
        divided by it.

    Returns
    -------
    scores : ndarray, shape (n_units,)

    Notes
    -----
    A mask ``m_j = 1`` multiplies channel ``j``; removing the channel sets it to zero. With
    ``g_{nj} = \\partial L_n / \\partial m_j = \\sum_{hw} a_{njhw} \\partial L_n / \\partial
    a_{njhw}`` and the empirical Fisher information standing in for the Hessian (the gradient of
    the mean loss is about zero at a trained minimum), the loss rises by about

    .. math:: \\Delta_j = \\frac{1}{2N} \\sum_{n=1}^{N} g_{nj}^2 ,

    and the importance is ``Delta_j / cost_j``. Liu et al. normalize by the memory a channel
    saves (which they found to track GPU speed better) or by its FLOPs; we use FLOPs. The
    authors' code sums the squares without the factor ``1/(2N)``, which does not change the
    ranking. The squares are of *per-sample* gradients: the
    gradient of the mean loss would average the terms out.

    References
    ----------
    .. [1] Liu, L., Zhang, S., Kuang, Z., Zhou, A., Xue, J.-H., Wang, X., Chen, Y., Yang, W.,
       Liao, Q. and Zhang, W. (2021) Group Fisher pruning for practical network compression.
       ICML, 7021-7032.

    See chapter 4 of the book, "Gradient and relevance criteria". The paper prunes one channel
    (or group) at a time and fine-tunes in between; this function gives one round's scores.
    Coupled channels: :func:`group_fisher_scores`.
    """
    a, g = _pair(layer, activations, gradients)
    gate = _gate_of(a, g)
    return _fisher(gate, cost, a.shape[1])


def group_fisher_scores(
    model: Sequential,
    X: np.ndarray,
    y: np.ndarray,
    groups: Mapping[str, Sequence[str]],
    *,
    cost: Mapping[str, float | np.ndarray] | None = None,
    loss: Any = None,
    batch_size: int = 500,
) -> dict[str, np.ndarray]:
    """Group Fisher importance of channel groups, coupled channels sharing one mask.

    Parameters
    ----------
    model : Sequential
        Not modified.
    X, y : ndarray
        Inputs (N, ...) and integer labels (N,).
    groups : mapping of str to sequence of str
        For each group, the paths of the layers whose channel ``j`` is one and the same channel
        (for instance the convolution feeding a residual block and the block's last
        convolution, whose outputs are added). A group of one path is an uncoupled layer. All
        points of a group must have the same number of channels.
    cost : mapping of str to float or ndarray, optional
        FLOPs saved by removing one channel of each group; the importance is divided by it.
    loss, batch_size
        As in :func:`gate_gradients`.

    Returns
    -------
    scores : dict of str to ndarray, shape (C_group,)

    Notes
    -----
    One mask ``m_j`` multiplies channel ``j`` at every point of the group, so by the chain rule
    its gradient is the *sum* of the points' gate gradients, and the importance squares the sum:

    .. math:: \\Delta_j = \\frac{1}{2N} \\sum_n \\Big( \\sum_{p \\in \\text{group}}
              g^{(p)}_{nj} \\Big)^2 \\;\\neq\\; \\frac{1}{2N} \\sum_n \\sum_p
              \\big(g^{(p)}_{nj}\\big)^2 .

    References
    ----------
    .. [1] Liu, L. et al. (2021) Group Fisher pruning for practical network compression. ICML.

    See chapter 4 of the book, "Gradient and relevance criteria". Liu et al. find the coupled
    layers automatically from the graph; here the groups are given.
    """
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty mapping of group names to layer paths")
    points: list[str] = []
    for name, paths in groups.items():
        if isinstance(paths, str) or not paths:
            raise ValueError(f"groups[{name!r}] must be a non-empty sequence of layer paths")
        points += [p for p in paths if p not in points]
    if cost is not None and set(cost) - set(groups):
        raise ValueError(f"cost names groups that do not exist: {sorted(set(cost) - set(groups))}")
    g = gate_gradients(model, points, X, y, loss=loss, batch_size=batch_size)
    out = {}
    for name, paths in groups.items():
        widths = {g[p].shape[1] for p in paths}
        if len(widths) != 1:
            raise ValueError(f"groups[{name!r}]: its layers have different channel counts {widths}")
        total = sum(g[p] for p in paths)
        out[name] = _fisher(total, None if cost is None else cost.get(name), widths.pop())
    return out


def channel_flops(model: Sequential, layer_name: str, input_shape: Sequence[int]) -> int:
    """FLOPs saved by removing one unit of ``layer_name`` (its own and the next layer's share).

    Every unit of a layer costs the same, so one removal (of unit 0, with
    :func:`refimpl.pruning.remove_units`) counted by :func:`refimpl.cost.profile` gives it.
    """
    from .selection import flops_of

    n = unit_count(model, layer_name)
    if n < 2:
        raise ValueError(f"layer {layer_name!r} has one unit; removing it leaves no layer")
    small = remove_units(model, layer_name, np.arange(1, n))
    return flops_of(model, input_shape) - flops_of(small, input_shape)


# --------------------------------------------------------------------------------------------
# Layer-wise relevance propagation (Bach et al. 2015; pruning: Yeom et al. 2021)
# --------------------------------------------------------------------------------------------

_PASS = (ReLU, Dropout)
_LRP_RULES = ("epsilon", "zplus")


def _stabilize(z: np.ndarray, eps: float) -> np.ndarray:
    s = np.where(z >= 0, 1.0, -1.0)
    den = z + eps * s
    return np.where(den == 0, 1.0, den)


def lrp_relevances(
    model: Sequential,
    X: np.ndarray,
    y: np.ndarray | None = None,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-9,
) -> list[np.ndarray]:
    """Layer-wise relevance propagation: the relevance at the input of every layer.

    Parameters
    ----------
    model : Sequential
        A plain sequence of ``Linear``, ``Conv2d``, ``ReLU``, ``Dropout``, ``MaxPool2d``,
        ``AvgPool2d`` and ``Flatten`` layers. Not modified.
    X : ndarray, shape (N, ...)
    y : ndarray of int, shape (N,), optional
        The class whose output is explained (its logit is the starting relevance, the other
        outputs start at zero); the predicted class if omitted.
    rule : {"epsilon", "zplus"}
        How a weighted layer passes relevance down. ``"epsilon"``: in proportion to each
        input's contribution ``a_j w_jk`` to the pre-activation ``z_k`` (``epsilon = 0`` is the
        plain z-rule); ``"zplus"``: in proportion to the positive contributions only, biases
        ignored. Pooling layers always use the epsilon rule.
    epsilon : float
        The stabilizer ``z_k + epsilon sign(z_k)`` (>= 0).

    Returns
    -------
    relevances : list of ndarray
        ``relevances[i]`` is the relevance at the input of layer ``i`` (shape of that input),
        and ``relevances[-1]`` the starting relevance at the output, shape (N, K).

    Notes
    -----
    With ``a`` a layer's input and ``z_k = sum_j a_j w_jk + b_k`` its output, the epsilon rule is

    .. math:: R_j = \\sum_k \\frac{a_j w_{jk}}{z_k + \\epsilon\\, \\mathrm{sign}(z_k)} R_k ,

    computed as ``a * (W^T s)`` with ``s = R / (z + eps sign z)`` (a backward pass of the layer).
    Activations pass relevance through unchanged. Without biases and with ``epsilon = 0`` the
    relevance is conserved: ``sum_j R_j = sum_k R_k`` at every layer. A unit whose outgoing
    weights are all zero receives no relevance.

    References
    ----------
    .. [1] Bach, S., Binder, A., Montavon, G., Klauschen, F., Mueller, K.-R. and Samek, W.
       (2015) On pixel-wise explanations for non-linear classifier decisions by layer-wise
       relevance propagation. PLoS ONE 10(7), e0130140.
    .. [2] Yeom, S.-K. et al. (2021) Pruning by explaining: a novel criterion for deep neural
       network pruning. Pattern Recognition 115, 107899.

    See chapter 4 of the book, "Gradient and relevance criteria".
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a refimpl.nn.Sequential, got {type(model).__name__}")
    if rule not in _LRP_RULES:
        raise ValueError(f"rule must be one of {_LRP_RULES}, got {rule!r}")
    eps = check_float(epsilon, "epsilon", 0.0)
    if not isinstance(X, np.ndarray) or X.ndim < 2 or len(X) == 0:
        raise ValueError("X must be a numpy.ndarray of shape (N, ...) with N >= 1")
    layers = list(model.copy())
    for layer in layers:
        if not isinstance(layer, (Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten) + _PASS):
            raise TypeError(f"lrp_relevances does not propagate through {type(layer).__name__}")
    dtype = next((v.dtype for _, v in model.named_parameters()), np.float32)
    inputs = [np.asarray(X, dtype=dtype)]  # in the model's precision (float64 for exactness)
    for layer in layers:
        inputs.append(layer.forward(inputs[-1], train=False))
    out = inputs[-1]
    target = out.argmax(axis=1) if y is None else np.asarray(y)
    if target.shape != (len(X),) or not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({len(X)},)")
    R = np.zeros_like(out)
    R[np.arange(len(X)), target] = out[np.arange(len(X)), target]
    rel = [R]
    for layer, a in zip(reversed(layers), reversed(inputs[:-1]), strict=True):
        if isinstance(layer, _PASS):
            pass  # an activation passes the relevance through unchanged
        elif isinstance(layer, Flatten):
            R = R.reshape(a.shape)
        else:
            work = layer
            if rule == "zplus" and isinstance(layer, (Linear, Conv2d)):
                work = copy.deepcopy(layer)
                for name in list(work.parametrizations):
                    work.remove_parametrization(name)
                work.params["weight"] = np.maximum(layer.weight, 0)
                if "bias" in work.params and work.params["bias"] is not None:
                    work.params["bias"] = np.zeros_like(work.params["bias"])
            z = work.forward(a, train=False)
            s = R / _stabilize(z, eps)
            R = a * work.backward(s)
        rel.append(R)
    return rel[::-1]


def lrp_unit_scores(layer: Layer | np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Yeom et al. (2021): a unit's relevance summed over the reference samples.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
    relevance : ndarray, shape (N, n_units) or (N, n_units, H, W)
        The relevance at the units' outputs (:func:`lrp_relevances`, at the input of the layer
        after the unit's activation).

    Returns
    -------
    scores : ndarray, shape (n_units,)

    Notes
    -----
    .. math:: s_j = \\sum_{n} \\sum_{h, w} R_{njhw} .

    References
    ----------
    .. [1] Yeom, S.-K., Seegerer, P., Lapuschkin, S., Binder, A., Wiedemann, S., Mueller, K.-R.
       and Samek, W. (2021) Pruning by explaining: a novel criterion for deep neural network
       pruning. Pattern Recognition 115, 107899.

    See chapter 4 of the book, "Gradient and relevance criteria". The paper normalizes the
    relevances of a layer before a global ranking; :func:`refimpl.pruning.select_global` does
    that (``normalize="l2"``).
    """
    r = _per_unit(relevance, _units(layer), "relevance")
    return r.sum(axis=0)


def _relevance_of(model: Sequential, layer_name: str, X: np.ndarray, y: Any, **kw: Any):
    end = _activation_end_name(model, layer_name)
    index = model.names().index(end)
    return lrp_relevances(model, X, y, **kw)[index + 1]


# --------------------------------------------------------------------------------------------
# Gate Decorator (You et al. 2019)
# --------------------------------------------------------------------------------------------


def _gate_norm(model: Sequential, layer_name: str) -> Layer | None:
    """The BatchNorm right after ``layer_name`` (its gamma is the gate), or None."""
    chain = unit_chain(model, layer_name)
    norms = [m for _, m in chain.between if isinstance(m, (BatchNorm1d, BatchNorm2d))]
    return norms[0] if norms else None


def gate_scores(
    model: Sequential,
    layers: Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 64,
    loss: Any = None,
) -> dict[str, np.ndarray]:
    """You et al. (2019): Taylor scores of channel gates, accumulated over mini-batches.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layers : sequence of str
        ``Linear``/``Conv2d`` layers. If a BatchNorm follows a layer, its scale ``gamma`` is the
        gate (the paper's GBN); otherwise a virtual gate ``phi = 1`` on the unit's activation.
    X, y : ndarray
        The data of one scoring pass, in mini-batches of ``batch_size``.
    batch_size : int
    loss : object, optional

    Returns
    -------
    scores : dict of str to ndarray (n_units,)
        On one scale for all layers: rank them together (``select_global(scores, k,
        normalize="none")``).

    Notes
    -----
    Over the mini-batches ``B`` of the pass,

    .. math:: \\Theta_j = \\sum_{B} \\Big| \\phi_j \\frac{\\partial L_B}{\\partial \\phi_j}
              \\Big| ,

    the first-order estimate of the loss change when gate ``j`` is set to zero, accumulated.
    Because the estimate is a change of the same loss for every layer, the scores need no
    per-layer normalization and the channels are ranked across the whole network.

    References
    ----------
    .. [1] You, Z., Yan, K., Ye, J., Ma, M. and Wang, P. (2019) Gate Decorator: global filter
       pruning method for accelerating deep convolutional neural networks. NeurIPS, 2133-2144.

    See chapter 4 of the book, "Gradient and relevance criteria". The scores are gathered in
    evaluation mode (BatchNorm with its running statistics); the paper's tick trains the
    gates on the scoring batches, we only score.
    """
    X, y = _check_Xy(X, y)
    batch_size = check_int(batch_size, "batch_size", 1)
    if isinstance(layers, str) or not layers:
        raise ValueError("layers must be a non-empty sequence of layer names")
    work = model.copy()
    norms = {n: _gate_norm(work, n) for n in layers}
    virtual = {n: _activation_end_name(work, n) for n in layers if norms[n] is None}
    scores = {n: np.zeros(unit_count(work, n)) for n in layers}
    buf: dict[str, list[np.ndarray]] = {n: [] for n in virtual}
    probes = {p: (lambda out, g, n=n: buf[n].append(_gate_of(out, g))) for n, p in virtual.items()}
    loss_fn = loss if loss is not None else CrossEntropyLoss()
    for i in range(0, len(X), batch_size):
        xb, yb = X[i : i + batch_size], y[i : i + batch_size]
        _backprop(work, xb, yb, probes, loss=loss_fn, batch_size=len(xb))
        for n in layers:
            if norms[n] is not None:
                gamma = norms[n].get_param("weight").astype(np.float64)
                # _backprop undid the batch mean; the batch loss L_B is the mean
                scores[n] += np.abs(gamma * norms[n].grads["weight"] / len(xb))
            else:
                scores[n] += np.abs(buf[n].pop().mean(axis=0))
    return scores


class GateDecorator:
    """You et al. (2019), the "tock": a sparsity penalty on the gates while training.

    A :func:`refimpl.nn.fit` callback. After every backward pass it adds the gradient of
    ``penalty * sum_j |gamma_j|`` to the BatchNorm scales that gate the ``layers``, and
    accumulates each gate's score ``|gamma_j dL_B/dgamma_j|`` (before the penalty) in
    :attr:`scores`.

    Parameters
    ----------
    layers : sequence of str
        ``Linear``/``Conv2d`` layers each followed by a BatchNorm.
    penalty : float
        The L1 coefficient ``lambda`` (>= 0).

    Notes
    -----
    .. math:: \\min \\; L + \\lambda \\sum_j |\\gamma_j| ,

    which pushes unimportant gates toward zero, so that the next tick removes channels the
    network has already learnt to do without. See :func:`gate_decorator_prune` for the loop.

    References
    ----------
    .. [1] You, Z., Yan, K., Ye, J., Ma, M. and Wang, P. (2019) Gate Decorator. NeurIPS.
    """

    def __init__(self, layers: Sequence[str], *, penalty: float = 1e-4) -> None:
        if isinstance(layers, str) or not layers:
            raise ValueError("layers must be a non-empty sequence of layer names")
        self.layers = list(layers)
        self.penalty = check_float(penalty, "penalty", 0.0)
        self.scores: dict[str, np.ndarray] = {}

    def on_before_step(self, model: Sequential) -> None:
        for name in self.layers:
            norm = _gate_norm(model, name)
            if norm is None:
                raise ValueError(f"layer {name!r} has no BatchNorm after it to act as its gate")
            gamma = norm.get_param("weight").astype(np.float64)
            score = np.abs(gamma * norm.grads["weight"])
            self.scores[name] = self.scores.get(name, 0) + score
            if self.penalty:
                norm.add_grad("weight", (self.penalty * np.sign(gamma)).astype(np.float32))


def gate_decorator_prune(
    model: Sequential,
    data: tuple[np.ndarray, np.ndarray],
    layers: Sequence[str],
    *,
    n_per_tick: int,
    ticks: int,
    tock_epochs: int = 1,
    penalty: float = 1e-4,
    score_size: int = 1000,
    optimizer: Any = None,
    batch_size: int = 64,
    rng: int | np.random.Generator | None = 0,
) -> tuple[Sequential, list[dict[str, int]]]:
    """You et al. (2019): the tick-tock loop of Gate Decorator.

    Parameters
    ----------
    model : Sequential
        Not modified.
    data : (X, y)
        Training data: the first ``score_size`` inputs score each tick, all of it trains each
        tock.
    layers : sequence of str
        ``Linear``/``Conv2d`` layers; gated by a following BatchNorm's ``gamma`` or, without
        one, by a virtual gate (then ``penalty`` must be 0).
    n_per_tick : int
        Channels removed per tick, chosen across all ``layers`` together.
    ticks : int
        Rounds of tick (score, remove) and tock (train with the penalty).
    tock_epochs : int
    penalty : float
        The L1 coefficient on the gates during the tocks.
    score_size, optimizer, batch_size, rng
        Scoring inputs; the tocks' optimizer factory ``optimizer(model)`` (default
        ``SGD(0.003, momentum=0.9)``), batch size and shuffling seed.

    Returns
    -------
    model : Sequential
        The pruned and trained model (units removed for real).
    counts : list of dict of str to int
        The units left per layer after each tick.

    Notes
    -----
    .. code-block:: text

        repeat ticks times:
            tick: score the gates on a few batches (gate_scores); remove the n_per_tick
                  channels of lowest score across all layers
            tock: train tock_epochs epochs with the loss + penalty * sum |gamma|

    References
    ----------
    .. [1] You, Z., Yan, K., Ye, J., Ma, M. and Wang, P. (2019) Gate Decorator. NeurIPS.

    See chapter 4 of the book, "Gradient and relevance criteria". The paper's tick also trains
    the gates (only) for a few hundred batches; ours only scores.
    """
    from ..nn import SGD, fit

    X, y = data
    n_per_tick = check_int(n_per_tick, "n_per_tick", 1)
    ticks = check_int(ticks, "ticks", 1)
    score_size = check_int(score_size, "score_size", 1)
    gen = np.random.default_rng(rng)
    if penalty and any(_gate_norm(model, n) is None for n in layers):
        raise ValueError("penalty > 0 needs a BatchNorm after every layer (its gamma is the gate)")
    current = model.copy()
    counts = []
    for _ in range(ticks):
        scores = gate_scores(current, layers, X[:score_size], y[:score_size],
                             batch_size=batch_size)  # fmt: skip
        keep = select_global(scores, n_per_tick, normalize="none")
        current = shrink(current, keep)
        counts.append({n: unit_count(current, n) for n in layers})
        opt = optimizer(current) if optimizer is not None else SGD(0.003, momentum=0.9)
        callbacks = [GateDecorator(layers, penalty=penalty)] if penalty else []
        fit(current, (X, y), epochs=tock_epochs, optimizer=opt, batch_size=batch_size, rng=gen,
            callbacks=callbacks, verbose=False)  # fmt: skip
    return current, counts


# --------------------------------------------------------------------------------------------
# Majority voting during training (Alqahtani et al. 2021)
# --------------------------------------------------------------------------------------------


class _VoteProbe:
    """A layer's ``forward`` that counts votes on every training-mode call."""

    def __init__(self, layer: Layer, owner: MajorityVoting, name: str) -> None:
        self.layer, self.owner, self.name = layer, owner, name

    def __call__(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        out = type(self.layer).forward(self.layer, x, train=train)
        if train:
            self.owner._count(self.name, out)
        return out


class MajorityVoting:
    """Alqahtani et al. (2021): count votes while training, and prune the units that lose.

    A :func:`refimpl.nn.fit` callback bound to one model. On every training batch, each input
    votes for the units of each layer whose activation exceeds the layer's mean activation on
    that input (:func:`refimpl.pruning.majority_vote_scores`); the votes add up over the
    batches. At the end of the epochs named in ``schedule``, each layer's units with the
    smallest share of votes are pruned until the layer has lost the scheduled fraction: their
    incoming weights and bias are set to zero and kept at zero for the rest of training, so the
    unit outputs a constant zero (after a ReLU) and can be removed exactly at the end
    (:meth:`keep` and :func:`refimpl.pruning.shrink`).

    Parameters
    ----------
    model : Sequential
        The model that ``fit`` will train (a probe is installed on the activation that follows
        each layer; :meth:`detach` removes it, :meth:`keep` does too).
    layers : sequence of str
        ``Linear``/``Conv2d`` layers, each followed by a ReLU (no BatchNorm in between).
    schedule : mapping of int to float
        ``{epoch: sparsity}``: after that epoch, the fraction of the layer's units pruned (the
        ``sparsity`` convention, in [0, 1)); increasing.

    Attributes
    ----------
    votes : dict of str to ndarray (n_units,)
        Votes counted so far; ``seen`` inputs voted. ``votes / seen`` is the one-shot score of
        :func:`~refimpl.pruning.majority_vote_scores` accumulated over the batches seen.
    pruned : dict of str to ndarray of bool

    Notes
    -----
    .. math:: v_j \\mathrel{+}= \\sum_{n \\in B} \\mathbb{1}\\Big[a_j(x_n) >
              \\frac{1}{m} \\sum_k a_k(x_n)\\Big] \\quad \\text{for every batch } B .

    References
    ----------
    .. [1] Alqahtani, A., Xie, X., Essa, E. and Jones, M. W. (2021) Neuron-based network
       pruning based on majority voting. ICPR 2020, 3090-3097.

    See chapter 4 of the book, "Gradient and relevance criteria". Our reading: the paper
    identifies and prunes the neurons during training, with no pre-training or fine-tuning
    stage; the vote rule and the schedule (how many, when) are our choices.
    """

    def __init__(
        self, model: Sequential, layers: Sequence[str], schedule: Mapping[int, float]
    ) -> None:
        from .magnitude import check_sparsity

        if isinstance(layers, str) or not layers:
            raise ValueError("layers must be a non-empty sequence of layer names")
        if not isinstance(schedule, Mapping) or not schedule:
            raise ValueError("schedule must be a non-empty mapping {epoch: sparsity}")
        self.schedule = {check_int(e, "schedule epoch", 1): check_sparsity(s, "schedule sparsity")
                         for e, s in sorted(schedule.items())}  # fmt: skip
        values = list(self.schedule.values())
        if any(b < a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError("schedule sparsities must not decrease")
        self.layers = list(layers)
        self.votes = {n: np.zeros(unit_count(model, n)) for n in self.layers}
        self.pruned = {n: np.zeros(unit_count(model, n), dtype=bool) for n in self.layers}
        self.seen = 0
        self._points = {}
        for n in self.layers:
            chain = unit_chain(model, n)
            if any(isinstance(m, (BatchNorm1d, BatchNorm2d)) for _, m in chain.between):
                raise ValueError(f"layer {n!r}: MajorityVoting needs no BatchNorm after it")
            end = _activation_end_name(model, n)
            layer = model[end]
            layer.forward = _VoteProbe(layer, self, n)  # type: ignore[method-assign]
            self._points[n] = layer
        self._counted = set()

    def _count(self, name: str, out: np.ndarray) -> None:
        a = _pooled(out, out.shape[1])
        self.votes[name] += (a > a.mean(axis=1, keepdims=True)).sum(axis=0)
        self._counted.add(name)
        if self._counted == set(self.layers):
            self.seen += len(out)
            self._counted = set()

    def scores(self) -> dict[str, np.ndarray]:
        """The share of the inputs seen that voted for each unit (as majority_vote_scores)."""
        if self.seen == 0:
            raise ValueError("no training batch has been seen yet")
        return {n: v / self.seen for n, v in self.votes.items()}

    def _zero(self, model: Sequential) -> None:
        for n in self.layers:
            layer = model[n]
            rows = self.pruned[n]
            if rows.any():
                layer.params[layer.trained_tensor("weight")][rows] = 0
                if layer.params.get("bias") is not None:
                    layer.params["bias"][rows] = 0

    def on_step_end(self, model: Sequential, step: int) -> None:
        self._zero(model)

    def on_epoch_end(self, model: Sequential, epoch: int, history: Any) -> None:
        if epoch not in self.schedule:
            return
        share = self.scores()
        for n in self.layers:
            k = n_to_prune(self.pruned[n].size, self.schedule[epoch]) - int(self.pruned[n].sum())
            if k <= 0:
                continue
            s = np.where(self.pruned[n], np.inf, share[n])
            self.pruned[n][np.argsort(s, kind="stable")[:k]] = True
        self._zero(model)

    def detach(self) -> None:
        """Remove the vote counters from the model (training no longer counts votes)."""
        for layer in self._points.values():
            layer.__dict__.pop("forward", None)

    def keep(self, model: Sequential) -> dict[str, np.ndarray]:
        """The units to keep per layer (for :func:`refimpl.pruning.shrink`); detaches."""
        self.detach()
        self._zero(model)
        return {n: np.flatnonzero(~p) for n, p in self.pruned.items()}

