"""Optimal Brain Damage (LeCun, Denker and Solla 1990): saliency from the Hessian's diagonal.

Near a minimum, deleting weight :math:`w_k` raises the loss by about
:math:`s_k = \\tfrac12 h_{kk} w_k^2`, where :math:`h_{kk}` is a diagonal entry of the Hessian. The
paper computes that diagonal with a *second-order backward pass*: the same sweep as
backpropagation, carrying :math:`\\partial^2 E / \\partial a^2` (squared weights, squared
derivatives of the activations) instead of :math:`\\partial E / \\partial a`, under the
Levenberg-Marquardt (Gauss-Newton) approximation that drops the terms with second derivatives of
the activation functions. See chapter 3 of the book, "Optimal Brain Damage".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..nn.layers import Layer
from ..nn.losses import softmax
from .magnitude import prunable_layers, prune_by_scores

__all__ = ["hessian_diagonal", "obd_prune", "obd_saliency", "obd_saliencies"]


def obd_saliency(weight: np.ndarray, hessian_diag: np.ndarray) -> np.ndarray:
    """OBD saliency ``hessian_diag * weight**2 / 2``: the predicted loss increase per deletion.

    Parameters
    ----------
    weight : ndarray, any shape
        Weights :math:`w_k`.
    hessian_diag : ndarray, same shape
        Diagonal Hessian entries :math:`h_{kk} = \\partial^2 E / \\partial w_k^2`.

    Returns
    -------
    saliency : ndarray, same shape

    Notes
    -----
    Expanding the loss to second order around a minimum (gradient zero) and assuming the
    Hessian is diagonal, setting :math:`w_k` to zero changes it by

    .. math:: \\delta E = \\tfrac12 h_{kk} w_k^2 = s_k,

    exactly when the loss is quadratic with a diagonal Hessian.

    References
    ----------
    .. [1] LeCun, Y., Denker, J. S. and Solla, S. A. (1990) Optimal brain damage. Advances in
       Neural Information Processing Systems 2, 598-605.

    See chapter 3 of the book, "Optimal Brain Damage".
    """
    weight = np.asarray(weight)
    hessian_diag = np.asarray(hessian_diag)
    if weight.shape != hessian_diag.shape:
        raise ValueError(
            f"hessian_diag must have the weight's shape {weight.shape}, got {hessian_diag.shape}"
        )
    return 0.5 * hessian_diag * weight**2


def _output_hessian(logits: np.ndarray, targets: np.ndarray, loss: str, n_total: int) -> np.ndarray:
    """Diagonal of d2E/d(output)^2 for each sample, shape (N, K), with the mean over n_total."""
    if loss == "cross_entropy":
        p = softmax(logits.astype(np.float64))
        return p * (1.0 - p) / n_total
    # MSELoss: mean over all N*K entries -> 2 / (N K) on every entry
    return np.full(logits.shape, 2.0 / (n_total * logits.shape[1]))


def _second_order_backward(
    layers: list[tuple[str, Layer]],
    inputs: list[np.ndarray],
    h: np.ndarray,
    wanted: set[str],
    out: dict[str, np.ndarray],
) -> None:
    """Propagate the diagonal h = d2E/dy^2 backwards; add weight diagonals into ``out``.

    Each layer takes its own step (:meth:`refimpl.nn.Layer.second_order_backward`): squared
    weights for dense and convolution layers, 0/1 routing for ReLU and pooling, ``f'(a)^2`` for
    tanh and the logistic function.
    """
    for (name, layer), x in zip(reversed(layers), reversed(inputs), strict=True):
        try:
            h, hw = layer.second_order_backward(h, x)
        except TypeError as exc:
            raise TypeError(f"hessian_diagonal: layer {name!r}: {exc}") from None
        if name in wanted and hw is not None:
            out[name] += hw


def hessian_diagonal(
    model: Layer,
    data: tuple[np.ndarray, np.ndarray],
    *,
    loss: str = "cross_entropy",
    layers: Iterable[str] | None = None,
    batch_size: int = 1000,
) -> dict[str, np.ndarray]:
    """Diagonal of the loss Hessian with respect to each weight, by OBD's second-order pass.

    Parameters
    ----------
    model : Sequential
        Linear, Conv2d, ReLU, Tanh, Sigmoid, MaxPool2d, AvgPool2d, Flatten and (inactive)
        Dropout layers are supported; others raise ``TypeError``.
    data : (X, y)
        Inputs (N, ...) and targets: integer labels (N,) for ``"cross_entropy"``, or
        arrays (N, K) for ``"mse"``. Only the outputs enter the Gauss-Newton Hessian, so the
        targets are used for checking shapes only.
    loss : {"cross_entropy", "mse"}
        The loss, averaged over the N samples as :class:`~refimpl.nn.CrossEntropyLoss` and
        :class:`~refimpl.nn.MSELoss` do.
    layers : iterable of str, optional
        Layers whose weight diagonal is returned (default all Linear and Conv2d layers).
    batch_size : int
        Samples per forward pass (memory only; the result does not depend on it).

    Returns
    -------
    diag : dict of layer name to ndarray (float64), same shape as that layer's weight

    Notes
    -----
    For a unit :math:`a_i = \\sum_j w_{ij} x_j` (a convolution shares each weight over the
    positions of a feature map, and the sum runs over them):

    .. math::
        \\frac{\\partial^2 E}{\\partial w_{ij}^2}
        = \\sum \\frac{\\partial^2 E}{\\partial a_i^2} x_j^2,
        \\qquad
        \\frac{\\partial^2 E}{\\partial a_i^2} \\approx f'(a_i)^2 \\sum_l w_{li}^2
        \\frac{\\partial^2 E}{\\partial a_l^2},

    started at the output with the diagonal of the loss Hessian: :math:`p_k (1 - p_k)` for
    softmax cross-entropy, :math:`2/K` for the mean squared error (each divided by N). The
    approximations are the paper's: off-diagonal terms are ignored, and the
    :math:`f''(a)\\, \\partial E / \\partial x` term is dropped (Levenberg-Marquardt), which makes
    every entry non-negative. Where we depart: the paper used a squared error on sigmoid
    outputs; for softmax cross-entropy we start from the exact diagonal :math:`p(1-p)` of
    the Hessian with respect to the logits. The result is exact (equal to finite
    differences of the gradient) for a single Linear or Conv2d layer with either loss, and for
    a Linear-ReLU-Linear network with the squared error.

    References
    ----------
    .. [1] LeCun, Y., Denker, J. S. and Solla, S. A. (1990) Optimal brain damage. Advances in
       Neural Information Processing Systems 2, 598-605.

    See chapter 3 of the book, "Optimal Brain Damage".
    """
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(data, tuple) or len(data) != 2:
        raise TypeError("data must be a tuple (X, y)")
    X, y = np.asarray(data[0]), np.asarray(data[1])
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(
            f"data: X and y must have the same non-zero length, got {len(X)} and {len(y)}"
        )
    wanted = set(prunable_layers(model, layers))
    seq = list(model.named_layers())
    out = {n: np.zeros(model[n].weight.shape, dtype=np.float64) for n in wanted}
    n_total = len(X)
    for start in range(0, n_total, batch_size):
        xb = X[start : start + batch_size]
        inputs = []
        a = xb
        for _, layer in seq:
            inputs.append(a)
            a = layer.forward(a, train=False)
        if loss == "mse" and np.shape(y[start : start + batch_size]) != a.shape:
            raise ValueError(f"mse targets must have the output's shape {a.shape[1:]} per sample")
        h = _output_hessian(a, y[start : start + batch_size], loss, n_total)
        _second_order_backward(seq, inputs, h, wanted, out)
    return out


def obd_saliencies(
    model: Layer,
    data: tuple[np.ndarray, np.ndarray],
    *,
    loss: str = "cross_entropy",
    layers: Iterable[str] | None = None,
    batch_size: int = 1000,
) -> dict[str, np.ndarray]:
    """OBD saliency of every weight of the selected layers (:func:`hessian_diagonal` + formula).

    Parameters are those of :func:`hessian_diagonal`. Returns a dict of layer name to float64
    arrays shaped like the weights: :math:`s_k = \\tfrac12 h_{kk} w_k^2`.

    References
    ----------
    .. [1] LeCun, Y., Denker, J. S. and Solla, S. A. (1990) Optimal brain damage. Advances in
       Neural Information Processing Systems 2, 598-605.

    See chapter 3 of the book, "Optimal Brain Damage".
    """
    diag = hessian_diagonal(model, data, loss=loss, layers=layers, batch_size=batch_size)
    return {n: obd_saliency(model[n].weight.astype(np.float64), d) for n, d in diag.items()}


def obd_prune(
    model: Layer,
    data: tuple[np.ndarray, np.ndarray],
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "global",
    layers: Iterable[str] | None = None,
    loss: str = "cross_entropy",
    batch_size: int = 1000,
) -> Layer:
    """Remove the weights of lowest OBD saliency (in place, composing with earlier masks).

    Parameters
    ----------
    model : Sequential
    data : (X, y)
        Data on which the Hessian diagonal is estimated (a few thousand samples suffice).
    sparsity : float in [0, 1) or dict of layer name to float
        As in :func:`refimpl.pruning.prune_model`.
    scope : {"global", "layer"}
        OBD ranks all weights of the network together (the default); ``"layer"`` ranks within
        each layer.
    layers, loss, batch_size
        As in :func:`hessian_diagonal`.

    Returns
    -------
    model : Sequential

    Notes
    -----
    One step of the paper's loop (train, compute saliencies, delete, retrain, repeat); retrain
    with :func:`refimpl.nn.fit` between steps.

    References
    ----------
    .. [1] LeCun, Y., Denker, J. S. and Solla, S. A. (1990) Optimal brain damage. Advances in
       Neural Information Processing Systems 2, 598-605.

    See chapter 3 of the book, "Optimal Brain Damage".
    """
    if isinstance(sparsity, Mapping):
        if layers is not None:
            raise ValueError("give either a sparsity dict or layers, not both")
        layers = list(sparsity)
    scores = obd_saliencies(model, data, loss=loss, layers=layers, batch_size=batch_size)
    return prune_by_scores(model, scores, sparsity, scope=scope)
