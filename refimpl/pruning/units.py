"""What unit criteria see: the units' activations and gradients, and one call for any criterion.

:func:`unit_activations` runs a model on data and returns what the units of one layer output
after their nonlinearity (after the BatchNorm and ReLU that follow a convolution, before any
pooling); :func:`unit_gradients` returns the gradient of the loss with respect to the layer's
own output maps. :func:`score_units` calls any criterion of :data:`CRITERIA` by name with what
it needs, so that criteria can be compared in one loop.

See chapter 4 of the book, "Criteria at equal cost".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..nn import (
    BatchNorm1d,
    BatchNorm2d,
    CrossEntropyLoss,
    Dropout,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    forward_through,
)
from ..surgery.units import unit_chain, unit_count
from . import filter_criteria as fc
from . import gradient_criteria as gc
from . import neuron_criteria as nc
from .thinet import thinet_scores

__all__ = ["CRITERIA", "score_units", "unit_activations", "unit_gradients"]

Data = np.ndarray | None
_AFTER = (BatchNorm1d, BatchNorm2d, ReLU, Tanh, Sigmoid, Dropout)


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {X.shape}")
    return X


def _activation_end(model: Sequential, layer_name: str) -> int:
    """Index of the last layer of the run of BatchNorm/activation/Dropout after the layer."""
    names = model.names()
    end = names.index(layer_name)
    while end + 1 < len(names) and isinstance(model[names[end + 1]], _AFTER):
        end += 1
    return end


def unit_activations(
    model: Sequential, layer_name: str, X: np.ndarray, *, batch_size: int = 500
) -> np.ndarray:
    """The outputs of the units of ``layer_name`` after their nonlinearity, in evaluation mode.

    Parameters
    ----------
    model : Sequential
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer.
    X : ndarray, shape (N, ...)
        Inputs of the model.
    batch_size : int
        Inputs per forward pass.

    Returns
    -------
    activations : ndarray, shape (N, n_units) or (N, n_units, H, W)
        Taken after the BatchNorm, activation and Dropout layers that directly follow the layer
        (before pooling): what APoZ and the other activation criteria look at.
    """
    unit_count(model, layer_name)
    _check_X(X)
    return forward_through(
        model.copy(), X, _activation_end(model, layer_name), batch_size=batch_size
    )


def unit_gradients(
    model: Sequential,
    layer_name: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 500,
) -> np.ndarray:
    """The gradient of each input's cross-entropy loss with respect to the layer's output.

    Parameters
    ----------
    model : Sequential
        Not modified (a copy runs).
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer.
    X : ndarray, shape (N, ...)
    y : ndarray of int, shape (N,)
        Class labels.
    batch_size : int

    Returns
    -------
    gradients : ndarray, shape (N, n_units) or (N, n_units, H, W)
        ``dL_n / dF_n`` for the layer's output ``F`` (before its BatchNorm and nonlinearity),
        per input (the batch mean of the loss is undone).
    """
    unit_count(model, layer_name)
    _check_X(X)
    y = np.asarray(y)
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({len(X)},), got {y.shape} {y.dtype}")
    work = model.copy()
    layers = list(work)
    index = work.names().index(layer_name)
    loss = CrossEntropyLoss()
    grads = []
    for i in range(0, len(X), batch_size):
        xb, yb = X[i : i + batch_size], y[i : i + batch_size]
        loss(work.forward(xb, train=False), yb)
        g = loss.backward() * len(xb)
        for layer in reversed(layers[index + 1 :]):
            g = layer.backward(g)
        grads.append(g)
    return np.concatenate(grads, axis=0)


def _nothing(model: Sequential, name: str, X: Data, y: Data) -> dict:
    return {}


def _next(model: Sequential, name: str, X: Data, y: Data) -> dict:
    return {"next_layer": model[unit_chain(model, name).next_name]}


def _next_and_norm(model: Sequential, name: str, X: Data, y: Data) -> dict:
    chain = unit_chain(model, name)
    norms = [m for _, m in chain.between if isinstance(m, (BatchNorm1d, BatchNorm2d))]
    return {"next_layer": model[chain.next_name], "norm": norms[0] if norms else None}


def _acts(model: Sequential, name: str, X: Data, y: Data) -> dict:
    if X is None:
        raise ValueError("this criterion needs data: pass X")
    return {"activations": unit_activations(model, name, X)}


def _grads(model: Sequential, name: str, X: Data, y: Data) -> dict:
    if X is None or y is None:
        raise ValueError("mean_gradient needs data and labels: pass X and y")
    return {"gradients": unit_gradients(model, name, X, y)}


def _acts_and_grads(model: Sequential, name: str, X: Data, y: Data) -> dict:
    if X is None or y is None:
        raise ValueError("this criterion needs data and labels: pass X and y")
    a, g = gc.unit_activation_gradients(model, name, X, y)
    return {"activations": a, "gradients": g}


def _relevance(model: Sequential, name: str, X: Data, y: Data) -> dict:
    if X is None:
        raise ValueError("lrp needs data: pass X (and y, the explained classes)")
    return {"relevance": gc._relevance_of(model, name, X, y)}


def _model_level(model: Sequential, name: str, X: Data, y: Data) -> dict:
    if X is None:
        raise ValueError("thinet needs data: pass X")
    return {}


#: Criteria by name: (function, how its inputs are gathered, what it needs, its paper).
#: ``thinet_scores`` is the one criterion that takes the model itself (it needs two layers).
CRITERIA: dict[str, tuple[Callable, Callable, str, str]] = {
    "random": (fc.random_scores, _nothing, "nothing", "control"),
    "l1": (fc.l1_filter_scores, _nothing, "weights", "Li et al. 2017"),
    "l2": (fc.l2_filter_scores, _nothing, "weights", "He et al. 2018"),
    "fpgm": (fc.fpgm_scores, _nothing, "weights", "He et al. 2019"),
    "outgoing": (nc.outgoing_weight_scores, _next, "weights", "He et al. 2014"),
    "data_free": (nc.data_free_saliency, _next_and_norm, "weights", "Srinivas & Babu 2015"),
    "apoz": (fc.apoz_scores, _acts, "activations", "Hu et al. 2016"),
    "variance": (fc.activation_variance_scores, _acts, "activations", "Polyak & Wolf 2015"),
    "entropy": (fc.output_entropy_scores, _acts, "activations", "Luo & Wu 2017"),
    "binary_entropy": (nc.activation_entropy_scores, _acts, "activations", "He et al. 2014"),
    "majority_vote": (nc.majority_vote_scores, _acts, "activations", "Alqahtani et al. 2021"),
    "mean_gradient": (fc.mean_gradient_scores, _grads, "gradients", "Liu & Wu 2019"),
    "thinet": (thinet_scores, _model_level, "next-layer inputs", "Luo et al. 2017"),
    "taylor": (gc.taylor_scores, _acts_and_grads, "activations x gradients",
               "Molchanov et al. 2017"),
    "fisher": (gc.fisher_scores, _acts_and_grads, "activations x gradients", "Liu et al. 2021"),
    "lrp": (gc.lrp_unit_scores, _relevance, "relevance", "Yeom et al. 2021"),
}


def score_units(
    model: Sequential,
    layer_name: str,
    criterion: str,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    **options: object,
) -> np.ndarray:
    """Scores of the units of ``layer_name`` by the criterion named ``criterion``.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer.
    criterion : str
        A key of :data:`CRITERIA`: ``"random"``, ``"l1"``, ``"l2"``, ``"fpgm"``,
        ``"outgoing"``, ``"data_free"``, ``"apoz"``, ``"variance"``, ``"entropy"``,
        ``"binary_entropy"``, ``"majority_vote"``, ``"mean_gradient"``, ``"thinet"``,
        ``"taylor"``, ``"fisher"``, ``"lrp"``.
    X, y : ndarray, optional
        Data (and labels, for ``"mean_gradient"``) for the data-driven criteria.
    **options
        Passed on to the criterion (``rng`` for ``"random"`` and ``"thinet"``, ``bins`` for
        ``"entropy"``, ...).

    Returns
    -------
    scores : ndarray, shape (n_units,)
        Larger means more important.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
    unit_count(model, layer_name)
    fn, gather, _, _ = CRITERIA[criterion]
    inputs = gather(model, layer_name, X, y)
    if fn is thinet_scores:
        return np.asarray(thinet_scores(model, layer_name, X, **options))
    return np.asarray(fn(model[layer_name], **inputs, **options))
