"""Neuron criteria: which units of a layer matter (section 3.1.2 of the survey).

Every criterion of this module and of :mod:`refimpl.pruning.filter_criteria` has the same
shape: it takes the layer (or its weight) first, then what it needs besides (the next layer,
the units' activations or gradients), and returns one score per unit, shape ``(n_units,)``,
``float64``, where a **larger score means more important**. Choosing which units to drop from
the scores is separate (:mod:`refimpl.pruning.selection`), and so is removing them
(:mod:`refimpl.surgery`). :func:`refimpl.pruning.score_units` collects the
activations or gradients a criterion needs and calls it.

Activations are the units' outputs after their nonlinearity, shape ``(N, n_units)`` for a
dense layer or ``(N, n_units, H, W)`` for a convolution (see
:func:`refimpl.pruning.unit_activations`).

See chapter 4 of the book, "Pruning neurons".
"""

from __future__ import annotations

import copy

import numpy as np

from ..nn import BatchNorm1d, BatchNorm2d, Conv2d, Linear, Sequential
from ..nn.layers import Layer
from ..surgery.units import remove_units, unit_chain, unit_count

__all__ = [
    "merge_units",
    "activation_entropy_scores",
    "data_free_saliency",
    "majority_vote_scores",
    "outgoing_weight_scores",
]


def _weight(layer: Layer | np.ndarray, name: str = "layer") -> np.ndarray:
    """The effective weight of a Linear/Conv2d (or a weight array) as float64, checked."""
    if isinstance(layer, (Linear, Conv2d)):
        w = layer.weight
    elif isinstance(layer, np.ndarray):
        w = layer
    else:
        raise TypeError(
            f"{name} must be a Linear or Conv2d layer or a weight array, got {type(layer).__name__}"
        )
    if w.ndim not in (2, 4):
        raise ValueError(f"{name}'s weight must be 2-D (dense) or 4-D (conv), got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"{name}'s weight must be floating point, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name}'s weight holds NaN or infinite entries")
    return np.asarray(w, dtype=np.float64)


def _units(layer: Layer | np.ndarray) -> int:
    return _weight(layer).shape[0]


def _per_unit(activations: np.ndarray, n: int, name: str = "activations") -> np.ndarray:
    """Activations (N, n, ...) as a float64 matrix (values, n): every sample and position."""
    a = np.asarray(activations)
    if a.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, {n}) or (N, {n}, H, W), got {a.shape}")
    if a.shape[1] != n:
        raise ValueError(f"{name} has {a.shape[1]} units on axis 1 but the layer has {n}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return np.moveaxis(a, 1, -1).reshape(-1, n).astype(np.float64, copy=False)


def _pooled(activations: np.ndarray, n: int, name: str = "activations") -> np.ndarray:
    """Per-sample unit values (N, n): a conv unit's map averaged over its positions."""
    _per_unit(activations, n, name)  # checks
    a = np.asarray(activations, dtype=np.float64)
    return a if a.ndim == 2 else a.mean(axis=(2, 3))


def _outgoing_blocks(next_layer: Layer | np.ndarray, n: int, block: int = 1) -> np.ndarray:
    """The next layer's weights grouped by input unit: shape (n, out, taps), float64.

    ``taps`` is ``kH*kW`` for a convolution and ``block`` (``H*W`` across a Flatten, else 1)
    for a dense layer.
    """
    w = _weight(next_layer, "next_layer")
    out = w.shape[0]
    if w.ndim == 2:
        if w.shape[1] != n * block:
            raise ValueError(
                f"next_layer has {w.shape[1]} inputs, expected {n} units x {block} columns"
            )
        return w.reshape(out, n, block).transpose(1, 0, 2)
    if w.shape[1] != n:
        raise ValueError(f"next_layer has {w.shape[1]} input channels but the layer has {n} units")
    return w.reshape(out, n, -1).transpose(1, 0, 2)


def _block_of(next_layer: Layer | np.ndarray, n: int) -> int:
    w = _weight(next_layer, "next_layer")
    if w.ndim == 2:
        if w.shape[1] % n:
            raise ValueError(f"next_layer has {w.shape[1]} inputs, not a multiple of {n} units")
        return w.shape[1] // n
    return 1


def outgoing_weight_scores(layer: Layer | np.ndarray, next_layer: Layer | np.ndarray) -> np.ndarray:
    """He et al. (2014), "onorm": the mean magnitude of a unit's outgoing weights.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
        The layer whose units are scored (only its unit count is used).
    next_layer : Linear or Conv2d, or its weight
        The next weighted layer: weight (out, n_units) dense, (out, n_units * H * W) dense after
        a Flatten (a unit's ``H*W`` columns are its outgoing weights), or
        (out, n_units, kH, kW) for a convolution.

    Returns
    -------
    scores : ndarray, shape (n_units,)

    Notes
    -----
    .. math:: s_j = \\frac{1}{|\\mathcal{O}_j|} \\sum_{o \\in \\mathcal{O}_j} |w_{oj}|,

    the average absolute weight on the connections leaving unit ``j``. A unit whose outgoing
    weights are all small contributes little to the next layer whatever its activation.

    References
    ----------
    .. [1] He, T., Fan, Y., Qian, Y., Tan, T. and Yu, K. (2014) Reshaping deep neural network
       for fast decoding by node-pruning. ICASSP, 245-249.

    See chapter 4 of the book, "Pruning neurons".
    """
    n = _units(layer)
    z = _outgoing_blocks(next_layer, n, _block_of(next_layer, n))
    return np.abs(z).reshape(n, -1).mean(axis=1)


def activation_entropy_scores(
    layer: Layer | np.ndarray, activations: np.ndarray, *, threshold: float = 0.0
) -> np.ndarray:
    """He et al. (2014), entropy: how evenly a unit is on and off over the data.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
    activations : ndarray, shape (N, n_units) or (N, n_units, H, W)
        The units' outputs after the nonlinearity (every position of a map counts).
    threshold : float
        A unit is "on" when its activation exceeds ``threshold``. He et al. use sigmoid units
        and a threshold of 0.5; for ReLU units the natural threshold is 0 (the default).

    Returns
    -------
    scores : ndarray, shape (n_units,)
        The binary entropy in nats, in ``[0, log 2]``.

    Notes
    -----
    With ``p_j`` the fraction of inputs on which unit ``j`` is on,

    .. math:: H_j = -p_j \\log p_j - (1 - p_j) \\log (1 - p_j).

    A unit that is almost always on or almost always off (``H_j`` near 0) behaves like a
    constant or a linear pass-through and carries little information; one that splits the
    data evenly (``H_j = log 2``) carries the most.

    References
    ----------
    .. [1] He, T., Fan, Y., Qian, Y., Tan, T. and Yu, K. (2014) Reshaping deep neural network
       for fast decoding by node-pruning. ICASSP, 245-249.

    See chapter 4 of the book, "Pruning neurons". We depart from the paper in the threshold
    (0 for ReLU instead of 0.5 for sigmoid).
    """
    a = _per_unit(activations, _units(layer))
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    p = (a > threshold).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log(p)) - (1 - p) * np.log(1 - p)
    return np.nan_to_num(h, nan=0.0)


def majority_vote_scores(layer: Layer | np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Alqahtani et al. (2021): the share of inputs on which a unit out-votes its layer.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
    activations : ndarray, shape (N, n_units) or (N, n_units, H, W)
        The units' outputs after the nonlinearity; a map is averaged over its positions first.

    Returns
    -------
    scores : ndarray, shape (n_units,), in [0, 1]

    Notes
    -----
    Each input ``x_n`` is a voter. It gives its vote to every unit whose activation exceeds
    the mean activation of the layer on that input,

    .. math:: s_j = \\frac{1}{N} \\sum_n \\mathbb{1}\\Big[a_j(x_n) > \\frac{1}{m}
              \\sum_k a_k(x_n)\\Big],

    so a unit scores high if it is among the strongly active units of its layer for most
    inputs, whatever the scale of the layer.

    References
    ----------
    .. [1] Alqahtani, A., Xie, X., Essa, E. and Jones, M. W. (2021) Neuron-based network
       pruning based on majority voting. ICPR 2020, 3090-3097.

    See chapter 4 of the book, "Pruning neurons". We depart from the paper in two ways: the
    vote rule above is our reading of it (compare each unit with its layer's mean on each
    input), and we score a trained network once, then prune and fine-tune, where the paper
    votes and prunes during training.
    """
    a = _pooled(activations, _units(layer))
    votes = a > a.mean(axis=1, keepdims=True)
    return votes.mean(axis=0)


def _incoming_vectors(
    layer: Layer | np.ndarray, norm: Layer | None = None
) -> np.ndarray:
    """Each unit's incoming weights and bias as one row, with a BatchNorm folded in. (n, d+1)."""
    w = _weight(layer)
    n = w.shape[0]
    bias = getattr(layer, "bias", None)
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
    vec = np.concatenate([w.reshape(n, -1), b[:, None]], axis=1)
    if norm is not None:
        if not isinstance(norm, (BatchNorm1d, BatchNorm2d)):
            raise TypeError(f"norm must be a BatchNorm1d/2d layer, got {type(norm).__name__}")
        if norm.num_features != n:
            raise ValueError(f"norm has {norm.num_features} features, the layer has {n} units")
        scale = np.asarray(norm.get_param("weight"), dtype=np.float64) / np.sqrt(
            norm.buffers["running_var"].astype(np.float64) + norm.eps
        )
        shift = np.asarray(norm.get_param("bias"), dtype=np.float64) - scale * norm.buffers[
            "running_mean"
        ].astype(np.float64)
        vec = vec * scale[:, None]
        vec[:, -1] += shift
    return vec


def data_free_saliency(
    layer: Layer | np.ndarray,
    next_layer: Layer | np.ndarray,
    *,
    norm: Layer | None = None,
) -> np.ndarray:
    """Srinivas & Babu (2015): the cost of merging each unit into its most similar twin.

    Parameters
    ----------
    layer : Linear or Conv2d, or its weight (n_units, ...)
        If a layer, its bias is part of each unit's incoming vector.
    next_layer : Linear or Conv2d, or its weight
        The next weighted layer (see :func:`outgoing_weight_scores` for the shapes).
    norm : BatchNorm1d or BatchNorm2d, optional
        A BatchNorm between the two, folded into the incoming vectors.

    Returns
    -------
    scores : ndarray, shape (n_units,)
        ``min_{i != j} s_ij``: the least saliency at which unit ``j`` can be merged away.

    Notes
    -----
    With ``w_j`` unit ``j``'s incoming weights and bias and ``z_j`` its outgoing weights,

    .. math:: s_{ij} = \\lVert z_j \\rVert_2^2 \\, \\lVert w_i - w_j \\rVert_2^2 .

    Two units with equal incoming weights have equal activations, so one can be deleted and its
    outgoing weights added to the other's with no change; ``s_ij`` bounds the change when they
    are only similar. The paper merges greedily, updating ``z_i`` after each merge; these
    one-shot scores rank units for a single selection, and
    :func:`refimpl.pruning.merge_units` does the greedy merging itself. No data is used.

    References
    ----------
    .. [1] Srinivas, S. and Babu, R. V. (2015) Data-free parameter pruning for deep neural
       networks. BMVC, 31.1-31.12.

    See chapter 4 of the book, "Merging similar neurons".
    """
    vec = _incoming_vectors(layer, norm)
    n = vec.shape[0]
    if n < 2:
        raise ValueError("data_free_saliency needs a layer with at least two units")
    z = _outgoing_blocks(next_layer, n, _block_of(next_layer, n))
    sq = np.einsum("ij,ij->i", vec, vec)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (vec @ vec.T), 0.0)
    np.fill_diagonal(dist, np.inf)
    z2 = np.einsum("ijk,ijk->i", z, z)
    return dist.min(axis=0) * z2


def merge_units(model: Sequential, layer_name: str, n_remove: int) -> Sequential:
    """Data-free pruning: merge ``n_remove`` units of a layer into their most similar twins.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer (see :func:`remove_units` for the layers that may
        follow it).
    n_remove : int
        Units to merge away, in ``[0, n_units)``.

    Returns
    -------
    Sequential
        The smaller model: each merged unit ``j`` is deleted and its outgoing weights are added
        to those of its twin ``i``.

    Notes
    -----
    If two units have the same incoming weights, ``w_i = w_j``, they have the same activation,
    ``a_i = a_j``, so the next layer's input ``a_i z_i + a_j z_j`` (``z`` the outgoing weights)
    equals ``a_i (z_i + z_j)``: unit ``j`` can go and ``z_i`` becomes ``z_i + z_j``. For units
    that are only similar, Srinivas & Babu bound the change of the next layer's output by the
    saliency

    .. math:: s_{ij} = \\lVert z_j \\rVert^2 \\, \\lVert w_i - w_j \\rVert^2

    and repeatedly merge the pair of least saliency (:func:`~refimpl.pruning.data_free_saliency`
    gives each unit's best pair). The incoming vectors include the bias, and a BatchNorm in
    between is folded into them (scaled by ``gamma / sqrt(var + eps)``, shifted accordingly),
    so that equal vectors mean equal activations. After a merge only ``z_i`` changes, so one
    update of the ``i``-th saliency column per step suffices: ``O(n^2)`` per merge, vectorized.
    No data is used.

    References
    ----------
    .. [1] Srinivas, S. and Babu, R. V. (2015) Data-free parameter pruning for deep neural
       networks. BMVC.

    See chapter 4 of the book, "Merging similar neurons".
    """
    chain = unit_chain(model, layer_name)
    n = unit_count(model, layer_name)
    if isinstance(n_remove, bool) or not isinstance(n_remove, (int, np.integer)):
        raise TypeError(f"n_remove must be an int, got {type(n_remove).__name__}")
    if not 0 <= n_remove < n:
        raise ValueError(f"n_remove must lie in [0, {n}), got {n_remove}")
    norms = [m for _, m in chain.between if "running_mean" in m.buffers]
    if len(norms) > 1:
        raise ValueError(f"merge_units supports at most one BatchNorm after {layer_name!r}")
    w_in = _incoming_vectors(model[layer_name], norms[0] if norms else None)  # (n, d)
    z = _outgoing_blocks(model[chain.next_name], n, chain.block)  # (n, out, s) float64
    sq = np.einsum("ij,ij->i", w_in, w_in)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w_in @ w_in.T), 0.0)
    np.fill_diagonal(dist, np.inf)
    z2 = np.einsum("ijk,ijk->i", z, z)
    alive = np.ones(n, dtype=bool)
    for _ in range(int(n_remove)):
        sal = dist * z2[None, :]  # sal[i, j]: merge j into i
        i, j = np.unravel_index(np.argmin(sal), sal.shape)
        z[i] += z[j]
        z2[i] = np.einsum("jk,jk->", z[i], z[i])
        alive[j] = False
        dist[j, :] = np.inf
        dist[:, j] = np.inf
    kept = np.flatnonzero(alive)
    nxt = copy.deepcopy(model[chain.next_name])
    for name in list(nxt.parametrizations):
        nxt.remove_parametrization(name)
    w = nxt.params["weight"]
    merged = z.reshape(n, w.shape[0], -1).transpose(1, 0, 2)  # (out, n, s)
    nxt.params["weight"] = merged.reshape(w.shape).astype(w.dtype)
    return remove_units(model.replace(chain.next_name, nxt), layer_name, kept, fold_bias=False)
