"""Optimal Brain Surgeon (Hassibi and Stork 1993), and its layer-wise form for real networks.

OBS uses the full inverse Hessian: deleting weight :math:`q` and letting the others move to the
best place costs :math:`L_q = w_q^2 / (2 [H^{-1}]_{qq})`, and the move is
:math:`\\delta w = -\\frac{w_q}{[H^{-1}]_{qq}} H^{-1} e_q`. The inverse Hessian is built by the
paper's recursion (one outer product at a time, with the matrix inversion lemma). A network's
full Hessian is out of reach beyond a few thousand weights, so :func:`layerwise_obs_prune`
applies OBS to each layer's reconstruction error, whose Hessian is the covariance of the layer's
inputs (Dong, Chen and Pan 2017). See chapter 3 of the book, "Optimal Brain Surgeon".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..nn import Linear, Mask
from ..nn.layers import Layer, _im2col
from ..validation import check_float
from .magnitude import (
    check_sparsity,
    current_masks,
    mask_from_scores,
    prunable_layers,
)

__all__ = [
    "OBSResult",
    "inverse_hessian_recursive",
    "layer_input_hessians",
    "layerwise_obs_prune",
    "obs_prune",
    "obs_saliency",
    "obs_update",
    "output_jacobian",
    "parameter_vector",
    "set_parameter_vector",
]


def _square(hessian_inv: np.ndarray, n: int) -> np.ndarray:
    hessian_inv = np.asarray(hessian_inv, dtype=np.float64)
    if hessian_inv.shape != (n, n):
        raise ValueError(f"hessian_inv must have shape ({n}, {n}), got {hessian_inv.shape}")
    return hessian_inv


def _vector(weight: np.ndarray) -> np.ndarray:
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 1 or weight.size == 0:
        raise ValueError(f"weight must be a non-empty vector (n,), got shape {weight.shape}")
    return weight


def inverse_hessian_recursive(
    X: np.ndarray,
    *,
    alpha: float = 1e-4,
    n_samples: int | None = None,
    block_size: int = 1,
) -> np.ndarray:
    """Inverse of :math:`H = \\alpha I + \\frac1P \\sum_k X_k X_k^T` by OBS's recursion.

    Parameters
    ----------
    X : ndarray, shape (M, n)
        Row ``k`` is the derivative vector :math:`X_k = \\partial F(w, x_k) / \\partial w` of the
        network output for pattern ``k`` (one row per pattern and output); for a layer's
        reconstruction error, its input vector.
    alpha : float > 0
        Start of the recursion :math:`H_0 = \\alpha I` (the paper uses 1e-8 to 1e-4); it keeps
        :math:`H` invertible and is part of the result.
    n_samples : int, optional
        :math:`P`, the number of patterns the average runs over (default ``M``).
    block_size : int >= 1
        1 is the paper's recursion, one outer product per step. Larger blocks add ``B`` rows at
        once with the Woodbury identity (the same matrix, fewer and larger BLAS calls).

    Returns
    -------
    hessian_inv : ndarray (float64), shape (n, n)

    Notes
    -----
    .. math::
        H_{m+1}^{-1} = H_m^{-1}
        - \\frac{H_m^{-1} X_{m+1} X_{m+1}^T H_m^{-1}}{P + X_{m+1}^T H_m^{-1} X_{m+1}},
        \\qquad H_0^{-1} = \\alpha^{-1} I,

    and for a block :math:`B` of rows,
    :math:`H^{-1} \\leftarrow H^{-1} - H^{-1} B^T (P I + B H^{-1} B^T)^{-1} B H^{-1}`.
    :math:`H` is the outer-product (Gauss-Newton) approximation of the Hessian of the mean
    squared error, exact at a minimum with zero residual.

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. Advances in Neural Information Processing Systems 5, 164-171.

    See chapter 3 of the book, "Optimal Brain Surgeon".
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty matrix (M, n), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite entries")
    alpha = check_float(alpha, "alpha", 0.0, open_low=True)
    P = X.shape[0] if n_samples is None else n_samples
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    n = X.shape[1]
    Hinv = np.eye(n) / alpha
    for start in range(0, X.shape[0], block_size):
        B = X[start : start + block_size]  # (b, n)
        HB = Hinv @ B.T  # (n, b)
        if B.shape[0] == 1:
            Hinv -= np.outer(HB[:, 0], HB[:, 0]) / (P + float(B[0] @ HB[:, 0]))
        else:
            S = P * np.eye(B.shape[0]) + B @ HB
            Hinv -= HB @ np.linalg.solve(S, HB.T)
        Hinv = 0.5 * (Hinv + Hinv.T)  # keep it symmetric against round-off
    return Hinv


def obs_saliency(weight: np.ndarray, hessian_inv: np.ndarray) -> np.ndarray:
    """OBS saliency ``weight**2 / (2 * diag(hessian_inv))`` of every weight.

    Parameters
    ----------
    weight : ndarray, shape (n,)
    hessian_inv : ndarray, shape (n, n)
        Inverse Hessian (after :func:`obs_update`, deleted weights have a zero row and column).

    Returns
    -------
    saliency : ndarray, shape (n,)
        :math:`L_q = w_q^2 / (2 [H^{-1}]_{qq})`, the loss increase after deleting ``q`` and
        moving the other weights optimally. ``inf`` where the diagonal is not positive (a
        deleted weight cannot be deleted again).

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. Advances in Neural Information Processing Systems 5, 164-171.

    See chapter 3 of the book, "Optimal Brain Surgeon".
    """
    w = _vector(weight)
    d = np.diag(_square(hessian_inv, w.size))
    out = np.full(w.size, np.inf)
    ok = d > 0
    out[ok] = w[ok] ** 2 / (2.0 * d[ok])
    return out


def obs_update(
    weight: np.ndarray, hessian_inv: np.ndarray, q: int
) -> tuple[np.ndarray, np.ndarray]:
    """Delete weight ``q`` and move the others optimally; also update the inverse Hessian.

    Parameters
    ----------
    weight : ndarray, shape (n,)
    hessian_inv : ndarray, shape (n, n)
    q : int
        Index of the weight to delete; its ``hessian_inv[q, q]`` must be positive.

    Returns
    -------
    weight : ndarray (float64), shape (n,)
        :math:`w + \\delta w` with entry ``q`` exactly zero.
    hessian_inv : ndarray (float64), shape (n, n)
        The inverse Hessian of the loss restricted to the remaining weights (row and column
        ``q`` are zero), so that further deletions keep ``w_q = 0``.

    Notes
    -----
    Minimizing :math:`\\tfrac12 \\delta w^T H \\delta w` subject to
    :math:`e_q^T \\delta w + w_q = 0`:

    .. math::
        \\delta w = -\\frac{w_q}{[H^{-1}]_{qq}} H^{-1} e_q, \\qquad
        H^{-1}_{new} = H^{-1} - \\frac{H^{-1} e_q e_q^T H^{-1}}{[H^{-1}]_{qq}}.

    The second formula is the inverse of :math:`H` on the subspace :math:`w_q = 0`. On a
    quadratic loss both are exact.

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. Advances in Neural Information Processing Systems 5, 164-171.

    See chapter 3 of the book, "Optimal Brain Surgeon".
    """
    w = _vector(weight).copy()
    Hinv = _square(hessian_inv, w.size)
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 0 <= q < w.size:
        raise ValueError(f"q must be an int in [0, {w.size}), got {q!r}")
    hqq = Hinv[q, q]
    if not hqq > 0:
        raise ValueError(f"hessian_inv[{q}, {q}] = {hqq} is not positive (already deleted?)")
    col = Hinv[:, q].copy()
    w -= (w[q] / hqq) * col
    w[q] = 0.0
    Hinv = Hinv - np.outer(col, col) / hqq
    Hinv[q, :] = 0.0
    Hinv[:, q] = 0.0
    return w, Hinv


@dataclass
class OBSResult:
    """Result of :func:`obs_prune`.

    Attributes
    ----------
    weight : ndarray, shape (n,)
        Weights after the deletions and OBS updates.
    mask : ndarray of bool, shape (n,)
        ``False`` for deleted weights.
    hessian_inv : ndarray, shape (n, n)
        Inverse Hessian restricted to the survivors.
    order : ndarray of int
        Deleted indices, in order.
    saliency : ndarray of float
        The saliency :math:`L_q` of each deletion when it was made (predicted loss increase).
    """

    weight: np.ndarray
    mask: np.ndarray
    hessian_inv: np.ndarray
    order: np.ndarray
    saliency: np.ndarray


def obs_prune(
    weight: np.ndarray,
    hessian_inv: np.ndarray,
    sparsity: float,
    *,
    protected: np.ndarray | None = None,
) -> OBSResult:
    """Greedy OBS: delete the least salient weight, update, repeat ``round(sparsity * n)`` times.

    Parameters
    ----------
    weight : ndarray, shape (n,)
    hessian_inv : ndarray, shape (n, n)
    sparsity : float in [0, 1)
        Fraction of the ``n`` weights to delete.
    protected : ndarray of bool, shape (n,), optional
        Entries never deleted (e.g. biases); they still move.

    Returns
    -------
    OBSResult

    Notes
    -----
    Each step costs :math:`O(n^2)`; the loop is over deletions, which the method makes one at a
    time by design (each update changes every later saliency).

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. Advances in Neural Information Processing Systems 5, 164-171.

    See chapter 3 of the book, "Optimal Brain Surgeon".
    """
    w = _vector(weight).copy()
    Hinv = _square(hessian_inv, w.size).copy()
    s = check_sparsity(sparsity)
    prot = np.zeros(w.size, bool) if protected is None else np.asarray(protected, bool)
    if prot.shape != w.shape:
        raise ValueError(f"protected must have shape {w.shape}, got {prot.shape}")
    k = round(s * w.size)
    if k > int((~prot).sum()):
        raise ValueError(f"cannot delete {k} weights: only {int((~prot).sum())} are unprotected")
    mask = np.ones(w.size, bool)
    order, sal = [], []
    for _ in range(k):
        L = obs_saliency(w, Hinv)
        L[~mask | prot] = np.inf
        q = int(np.argmin(L))
        order.append(q)
        sal.append(float(L[q]))
        w, Hinv = obs_update(w, Hinv, q)
        mask[q] = False
    return OBSResult(w, mask, Hinv, np.array(order, dtype=np.int64), np.array(sal))


# -- whole (small) networks -------------------------------------------------------------------
def _param_items(model: Layer, layers: Iterable[str] | None) -> list[tuple[Layer, str]]:
    items = []
    for _, layer in prunable_layers(model, layers).items():
        if layer.parametrizations:
            raise ValueError("parameter_vector needs unparametrized layers")
        items.append((layer, "weight"))
        if "bias" in layer.params:
            items.append((layer, "bias"))
    return items


def parameter_vector(model: Layer, layers: Iterable[str] | None = None) -> np.ndarray:
    """Weights and biases of the Linear/Conv2d layers as one float64 vector (layer order).

    The order is layer by layer, weight (C order) then bias; the length is the number of those
    parameters (9 for a 2-2-1 network with biases). Layers must not be parametrized.
    """
    return np.concatenate(
        [layer.params[k].astype(np.float64).ravel() for layer, k in _param_items(model, layers)]
    )


def set_parameter_vector(
    model: Layer, vector: np.ndarray, layers: Iterable[str] | None = None
) -> Layer:
    """Inverse of :func:`parameter_vector`: write ``vector`` back into the layers."""
    items = _param_items(model, layers)
    vector = np.asarray(vector)
    total = sum(layer.params[k].size for layer, k in items)
    if vector.shape != (total,):
        raise ValueError(f"vector must have shape ({total},), got {vector.shape}")
    start = 0
    for layer, k in items:
        p = layer.params[k]
        layer.params[k] = vector[start : start + p.size].reshape(p.shape).astype(p.dtype)
        start += p.size
    return model


def output_jacobian(
    model: Layer, X: np.ndarray, layers: Iterable[str] | None = None
) -> np.ndarray:
    """Derivatives of every output for every pattern w.r.t. :func:`parameter_vector`.

    Parameters
    ----------
    model : Sequential
        A small network (one backward pass per pattern and output).
    X : ndarray, shape (P, ...)
        Input patterns.

    Returns
    -------
    J : ndarray (float64), shape (P * K, n)
        Row ``p * K + k`` is :math:`\\partial F_k(w, x_p) / \\partial w`; these are the vectors
        :math:`X_k` of OBS's outer-product Hessian (:func:`inverse_hessian_recursive`).

    Notes
    -----
    For the tiny networks of OBS experiments (the XOR network has nine weights); it loops over
    patterns and outputs. For real networks use :func:`layerwise_obs_prune`.
    """
    items = _param_items(model, layers)
    X = np.asarray(X)
    rows = []
    for p in range(len(X)):
        out = model.forward(X[p : p + 1])
        K = out.shape[1]
        for k in range(K):
            e = np.zeros_like(out)
            e[0, k] = 1.0
            model.backward(e)
            rows.append(np.concatenate([layer.grads[key].astype(np.float64).ravel()
                                        for layer, key in items]))
    return np.array(rows)


# -- layer-wise OBS for real networks ----------------------------------------------------------
def _layer_input_rows(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The layer's inputs as rows (M, fan_in): samples for Linear, patches for Conv2d."""
    if isinstance(layer, Linear):
        return x.astype(np.float64)
    if layer.groups != 1:
        raise ValueError("layer-wise OBS supports Conv2d with groups=1 only")
    ph, pw = layer.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    ho, wo = layer.output_shape(x.shape[2], x.shape[3])
    cols = _im2col(xp, layer.kernel_size, layer.stride, (ho, wo))  # (fan_in, N*Ho*Wo)
    return cols.T.astype(np.float64)


def layer_input_hessians(
    model: Layer,
    X: np.ndarray,
    *,
    layers: Iterable[str] | None = None,
    batch_size: int = 500,
) -> dict[str, np.ndarray]:
    """Hessian of each layer's reconstruction error: the second moment of its inputs.

    Parameters
    ----------
    model : Sequential
    X : ndarray, shape (N, ...)
        Calibration inputs of the model.
    layers : iterable of str, optional
        Linear/Conv2d layers (default all).
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    H : dict of layer name to ndarray (float64), shape (fan_in + 1, fan_in + 1)
        :math:`H = \\frac1M \\sum_m \\tilde x_m \\tilde x_m^T` with :math:`\\tilde x = (x, 1)`
        (the 1 carries the bias); ``fan_in`` is ``in_features`` or ``C_in * kH * kW`` (a
        convolution contributes one row per output position).
    """
    selected = prunable_layers(model, layers)
    X = np.asarray(X)
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(selected, 0)
    for start in range(0, len(X), batch_size):
        a = X[start : start + batch_size]
        for name, layer in model.named_layers():
            if name in selected:
                rows = _layer_input_rows(layer, a)
                rows = np.hstack([rows, np.ones((rows.shape[0], 1))])
                sums[name] = sums.get(name, 0) + rows.T @ rows
                counts[name] += rows.shape[0]
            a = layer.forward(a)
    return {n: sums[n] / counts[n] for n in selected}


def _row_obs(w0: np.ndarray, H: np.ndarray, Hinv: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Optimal row after forcing ``w[removed] = 0``: the multi-weight OBS step."""
    Q = np.flatnonzero(removed)
    if Q.size == 0:
        return w0.copy()
    S = np.flatnonzero(~removed)
    w = np.zeros_like(w0)
    if S.size <= Q.size:  # minimize over the kept coordinates: H_SS (w_S - w0_S) = H_SQ w0_Q
        w[S] = w0[S] + np.linalg.solve(H[np.ix_(S, S)], H[np.ix_(S, Q)] @ w0[Q])
    else:  # the same optimum by the inverse: dw = -Hinv[:, Q] (Hinv_QQ)^-1 w0_Q
        w = w0 - Hinv[:, Q] @ np.linalg.solve(Hinv[np.ix_(Q, Q)], w0[Q])
        w[Q] = 0.0
    return w


def layerwise_obs_prune(
    model: Layer,
    X: np.ndarray | None,
    sparsity: float | Mapping[str, float],
    *,
    layers: Iterable[str] | None = None,
    damping: float = 1e-3,
    steps: int = 1,
    batch_size: int = 500,
    hessians: Mapping[str, np.ndarray] | None = None,
) -> Layer:
    """Layer-wise OBS: prune each layer so that its outputs change least, then correct it.

    Parameters
    ----------
    model : Sequential
        Changed in place: selected weights (and biases) are corrected and masked with
        :class:`~refimpl.nn.Mask`.
    X : ndarray, shape (N, ...)
        Calibration inputs (no labels needed); a few thousand samples. May be None when
        ``hessians`` is given.
    sparsity : float in [0, 1) or dict of layer name to float
        Fraction of each layer's weights to remove (entries already removed count).
    layers : iterable of str, optional
        Layers to prune (default all Linear and Conv2d); not with a dict.
    damping : float >= 0
        :math:`\\lambda`: :math:`H + \\lambda\\,\\overline{\\operatorname{diag} H}\\, I` keeps the
        Hessian invertible (dead inputs of ReLU networks make it singular).
    steps : int >= 1
        Remove the target in this many stages (geometric), recomputing saliencies from the
        corrected weights in between.
    batch_size : int
        Samples per forward pass.
    hessians : mapping of layer name to ndarray, optional
        Precomputed :func:`layer_input_hessians` of the *unpruned* model (to prune one model
        to several sparsities without recomputing them); then ``X`` is not used.

    Returns
    -------
    model : Sequential

    Notes
    -----
    For a layer with input rows :math:`\\tilde x = (x, 1)` (bias folded in) and weights
    :math:`w_i` (row ``i`` and bias), the error :math:`E = \\frac1{2M} \\sum_m \\sum_i
    (w_i^T \\tilde x_m - w_i^{0T} \\tilde x_m)^2` has the Hessian
    :math:`H = \\frac1M \\sum_m \\tilde x_m \\tilde x_m^T` in every row, and OBS's saliency of
    :math:`w_{ij}` is :math:`w_{ij}^2 / (2 [H^{-1}]_{jj})`. The weights of lowest saliency in
    the layer are removed, then each row takes the optimum of :math:`E` with those entries held
    at zero, which is OBS's update for several weights at once,
    :math:`\\delta w = -H^{-1}_{:,Q} (H^{-1}_{QQ})^{-1} w_Q`.

    Where we depart: Dong et al. (2017) remove weights one at a time with the unchanged
    :math:`H^{-1}`; we select by the single-weight saliency (in ``steps`` stages) and apply the
    exact joint update for the selected set, as Frantar and Alistarh's Optimal Brain
    Compression does for a whole row. Each layer is fitted to its own inputs in the unpruned
    network, as in Dong et al.; the bias is never removed but is corrected.

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. Advances in Neural Information Processing Systems 5, 164-171.
    .. [2] Dong, X., Chen, S. and Pan, S. J. (2017) Learning to prune deep neural networks via
       layer-wise optimal brain surgeon. Advances in Neural Information Processing Systems 30.

    See chapter 3 of the book, "Optimal Brain Surgeon".
    """
    if isinstance(sparsity, Mapping):
        if layers is not None:
            raise ValueError("give either a sparsity dict or layers, not both")
        selected = prunable_layers(model, list(sparsity))
        targets = {n: check_sparsity(v, f"sparsity[{n!r}]") for n, v in sparsity.items()}
    else:
        selected = prunable_layers(model, layers)
        targets = dict.fromkeys(selected, check_sparsity(sparsity))
    damping = float(damping)
    if not (np.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite float >= 0, got {damping!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    old = current_masks(model, list(selected))
    if hessians is None:
        hessians = layer_input_hessians(model, X, layers=list(selected), batch_size=batch_size)
    for name, layer in selected.items():
        fan_in = layer.weight[0].size
        if name not in hessians or np.shape(hessians[name]) != (fan_in + 1, fan_in + 1):
            raise ValueError(f"hessians[{name!r}] must have shape ({fan_in + 1}, {fan_in + 1})")
    for name, layer in selected.items():
        H = hessians[name]
        d = H.shape[0]
        H = H + damping * max(float(np.mean(np.diag(H))), 1e-12) * np.eye(d)
        Hinv = np.linalg.inv(H)
        Hinv = 0.5 * (Hinv + Hinv.T)
        W = layer.weight.astype(np.float64)
        out_ch = W.shape[0]
        b = layer.bias
        b = np.zeros(out_ch) if b is None else b.astype(np.float64)
        W0 = np.hstack([W.reshape(out_ch, -1), b[:, None]])  # (out, fan_in + 1)
        keep_old = old[name].reshape(out_ch, -1)
        removed = ~keep_old
        Wc = W0.copy()
        diag = np.diag(Hinv)[:-1]
        s_old = float(removed.mean())
        for k in range(1, steps + 1):
            s_k = 1.0 - (1.0 - targets[name]) ** (k / steps) if steps > 1 else targets[name]
            s_k = max(s_k, s_old)
            sal = Wc[:, :-1] ** 2 / (2.0 * diag[None, :])
            floor = float(sal.min()) - 1.0
            keep = mask_from_scores(np.where(removed, floor, sal), s_k)
            removed = ~keep
            aug = np.hstack([removed, np.zeros((out_ch, 1), bool)])
            Wc = np.stack([_row_obs(W0[i], H, Hinv, aug[i]) for i in range(out_ch)])
        if layer.bias is None:
            Wc[:, -1] = 0.0  # no bias to carry the correction: refit without it
            aug = np.hstack([removed, np.ones((out_ch, 1), bool)])
            Wc = np.stack([_row_obs(W0[i], H, Hinv, aug[i]) for i in range(out_ch)])
        layer.remove_parametrization("weight")
        dtype = layer.params["weight"].dtype
        layer.params["weight"] = Wc[:, :-1].reshape(layer.params["weight"].shape).astype(dtype)
        if layer.bias is not None:
            layer.remove_parametrization("bias")
            layer.params["bias"] = Wc[:, -1].astype(layer.params["bias"].dtype)
        layer.parametrize("weight", Mask((~removed).reshape(layer.params["weight"].shape)))
    return model
