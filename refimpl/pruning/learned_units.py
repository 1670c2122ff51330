"""Diverse, merged and searched units: DivNet, Centripetal SGD and a search over layer widths.

Three unit-pruning methods of section 3.1.2 of the survey that go beyond scoring units one by
one:

* **DivNet** (Mariet & Sra, 2016): a determinantal point process over the neurons of a layer
  keeps a *diverse* subset (:func:`dpp_kernel`, :func:`dpp_greedy_map`), and the neurons that go
  are *fused* into those that stay by re-weighting the next layer (:func:`divnet_prune`);
* **Centripetal SGD** (Ding et al., 2019): filters are clustered (:func:`cluster_filters`),
  trained so that each cluster's filters converge to one (:class:`CentripetalSGD`, a ``fit``
  callback), then merged exactly (:func:`merge_clusters`);
* a **stand-in for MetaPruning** (Liu et al., 2019): a random search over per-layer widths
  under a FLOPs budget, every candidate inheriting the trained model's filters of largest L1
  norm (:func:`width_search`). MetaPruning itself trains a PruningNet that generates the
  weights of any width vector and searches by evolution; we do neither.

AutoPruner's trainable channel-selection layer is in :mod:`refimpl.pruning.autopruner`.

See chapter 4 of the book, "Diverse, merged and learned units".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn import Sequential, evaluate, forward_through
from ..nn.layers import Layer
from ..surgery.units import remove_units, shrink, unit_chain, unit_count
from ..validation import RngLike, as_generator, check_float, check_int
from .filter_criteria import l1_filter_scores

__all__ = [
    "CentripetalSGD",
    "DPPSelection",
    "WidthCandidate",
    "WidthSearch",
    "cluster_filters",
    "divnet_prune",
    "dpp_greedy_map",
    "dpp_kernel",
    "fuse_units",
    "inherit_widths",
    "intra_cluster_distance",
    "merge_clusters",
    "model_flops",
    "width_search",
]


# --------------------------------------------------------------------------------------------
# DivNet
# --------------------------------------------------------------------------------------------


def _as_matrix(activations: np.ndarray, name: str = "activations") -> np.ndarray:
    """Activations (N, n) or (N, n, H, W) as a float64 matrix (values, n)."""
    a = np.asarray(activations)
    if a.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, n) or (N, n, H, W), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got dtype {a.dtype}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one sample and one unit, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1]).astype(np.float64)


def dpp_kernel(
    activations: np.ndarray, *, bandwidth: float | None = None, ridge: float = 1e-3
) -> np.ndarray:
    """DivNet's DPP kernel: a Gaussian RBF between the neurons' activation vectors.

    Parameters
    ----------
    activations : ndarray, shape (N, n) or (N, n, H, W)
        The units' outputs on ``N`` inputs (every position of a map counts as a value).
    bandwidth : float, optional
        ``sigma``. Default: the median distance between two distinct neurons' vectors.
    ridge : float
        ``epsilon`` added to the diagonal, > 0 keeps ``L`` positive definite.

    Returns
    -------
    L : ndarray, shape (n, n), float64, symmetric positive definite

    Notes
    -----
    With ``v_j`` neuron ``j``'s activations over the data,

    .. math:: L_{ij} = \\exp\\!\\big(-\\lVert v_i - v_j \\rVert^2 / (2\\sigma^2)\\big)
              + \\epsilon\\,\\delta_{ij}.

    Two neurons that fire alike have ``L_ij`` near 1, and a set that holds both has a
    determinant near 0: a DPP with kernel ``L`` rarely keeps both.

    References
    ----------
    .. [1] Mariet, Z. and Sra, S. (2016) Diversity networks: neural network compression using
       determinantal point processes. ICLR.
    """
    v = _as_matrix(activations).T  # (n, values)
    ridge = check_float(ridge, "ridge", 0.0)
    sq = np.einsum("ij,ij->i", v, v)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (v @ v.T), 0.0)
    if bandwidth is None:
        off = np.sqrt(d2[np.triu_indices(len(v), 1)])
        off = off[off > 0]
        bandwidth = float(np.median(off)) if off.size else 1.0
    sigma = check_float(bandwidth, "bandwidth", 0.0, open_low=True)
    L = np.exp(-d2 / (2.0 * sigma**2))
    L[np.diag_indices_from(L)] += ridge
    return L


@dataclass
class DPPSelection:
    """The greedy MAP selection of a DPP: ``selected`` (indices in the order they were picked),
    ``gains`` (each pick's marginal gain ``det(L_{S+i}) / det(L_S)``) and ``logdets``
    (``log det L_S`` after each pick, the running sum of ``log gains``)."""

    selected: np.ndarray
    gains: np.ndarray
    logdets: np.ndarray


def dpp_greedy_map(L: np.ndarray, k: int) -> DPPSelection:
    """Greedy MAP inference for a DPP: the ``k`` items of largest ``log det L_S``, one at a time.

    Parameters
    ----------
    L : ndarray, shape (n, n)
        A symmetric positive semidefinite kernel (see :func:`dpp_kernel`).
    k : int
        Items to select, ``1 <= k <= n``.

    Returns
    -------
    DPPSelection

    Notes
    -----
    At each step the item ``i`` of largest marginal gain
    ``d_i^2 = det(L_{S \\cup i}) / det(L_S) = L_ii - L_{iS} L_S^{-1} L_{Si}`` joins ``S``;
    the gains are updated by one row of an incremental Cholesky factor (Chen et al., 2018),
    ``O(n k)`` per step. ``log det`` is submodular, so the gains the greedy picks never
    increase; ``log det L_S`` rises while they exceed 1 and falls after. An item that
    duplicates one already chosen has gain ``L_ii - L_ij^2 / L_jj``, which is ``epsilon``-small,
    so it is picked only when nothing else is left. DivNet *samples* a subset from the (k-)DPP;
    the greedy MAP is the deterministic choice we use instead.

    References
    ----------
    .. [1] Mariet, Z. and Sra, S. (2016) Diversity networks. ICLR.
    .. [2] Chen, L., Zhang, G. and Zhou, H. (2018) Fast greedy MAP inference for determinantal
       point process to improve recommendation diversity. NeurIPS.
    """
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != L.shape[1] or L.shape[0] < 1:
        raise ValueError(f"L must be a square matrix, got shape {L.shape}")
    if not np.isfinite(L).all():
        raise ValueError("L holds NaN or infinite entries")
    n = L.shape[0]
    k = check_int(k, "k", 1, n)
    d2 = np.diag(L).copy()
    C = np.zeros((k, n))
    chosen = np.zeros(n, dtype=bool)
    selected, gains = [], []
    for t in range(k):
        cand = np.where(chosen, -np.inf, d2)
        j = int(np.argmax(cand))
        g = max(float(d2[j]), np.finfo(float).tiny)
        selected.append(j)
        gains.append(g)
        chosen[j] = True
        e = (L[j] - C[:t].T @ C[:t, j]) / np.sqrt(g)
        C[t] = e
        d2 = d2 - e**2
    gains_arr = np.array(gains)
    return DPPSelection(np.array(selected, dtype=np.int64), gains_arr, np.cumsum(np.log(gains_arr)))


def _next_inputs(model: Sequential, layer_name: str, X: np.ndarray) -> tuple[Any, np.ndarray]:
    """The chain of ``layer_name`` and what its units send to the next layer, (N, n[, H, W])."""
    chain = unit_chain(model, layer_name)
    if chain.block != 1:
        raise ValueError(
            f"fusing the units of {layer_name!r} needs the next layer to see one input per unit; "
            f"a Flatten gives each unit {chain.block} columns"
        )
    stop = model.names().index(chain.next_name) - 1
    return chain, forward_through(model, X, stop)


def fuse_units(
    model: Sequential,
    layer_name: str,
    keep: Sequence[int] | np.ndarray,
    X: np.ndarray,
    *,
    ridge: float = 1e-8,
    intercept: bool = True,
) -> Sequential:
    """DivNet's fusing: remove the units outside ``keep`` and let the kept ones stand in for them.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` whose units feed the next weighted layer one input each (no
        ``Flatten`` in between).
    keep : sequence of int
        Units to keep.
    X : ndarray, shape (N, ...)
        Inputs on which the removed units' outputs are reconstructed.
    ridge : float
        Relative Tikhonov term of the least squares (times the mean of ``diag(A_K^T A_K)``).
    intercept : bool
        Also fit a constant per removed unit and fold it into the next layer's bias (our
        addition; DivNet fits the linear combination only).

    Returns
    -------
    Sequential
        The smaller model.

    Notes
    -----
    With ``A_K`` (values x kept) and ``A_R`` (values x removed) what the kept and removed units
    send to the next layer, and ``W_K``, ``W_R`` the next layer's matching input columns
    (channels),

    .. math:: \\alpha = \\arg\\min_\\alpha \\lVert A_R - A_K \\alpha \\rVert_F^2, \\qquad
              W'_K = W_K + W_R\\, \\alpha^\\top ,

    so ``W_K a_K + W_R a_R`` becomes ``W'_K a_K``, exactly when every removed unit is a linear
    combination of kept ones. For a convolution the same ``alpha`` applies to every kernel tap.

    References
    ----------
    .. [1] Mariet, Z. and Sra, S. (2016) Diversity networks. ICLR.
    """
    chain, acts = _next_inputs(model, layer_name, X)
    n = unit_count(model, layer_name)
    kept = np.unique(np.asarray(keep, dtype=np.int64))
    if kept.size == 0 or kept.min() < 0 or kept.max() >= n:
        raise ValueError(f"keep must hold indices in [0, {n}), at least one")
    removed = np.setdiff1d(np.arange(n), kept)
    ridge = check_float(ridge, "ridge", 0.0)
    A = _as_matrix(acts)
    nxt = copy.deepcopy(model[chain.next_name])
    for name in list(nxt.parametrizations):
        nxt.remove_parametrization(name)
    if removed.size:
        AK, AR = A[:, kept], A[:, removed]
        if intercept:
            AK = np.concatenate([AK, np.ones((len(AK), 1))], axis=1)
        G = AK.T @ AK
        G[np.diag_indices_from(G)] += ridge * max(float(np.mean(np.diag(G))), 1e-300)
        sol = np.linalg.solve(G, AK.T @ AR)  # (k[+1], r)
        alpha = sol[: kept.size]
        w = nxt.params["weight"].astype(np.float64)
        taps = w.reshape(w.shape[0], n, -1)  # (out, n, taps)
        taps[:, kept] += np.einsum("ors,kr->oks", taps[:, removed], alpha)
        if intercept:
            const = sol[kept.size]  # (r,)
            nxt.add_to_bias(np.einsum("ors,r->o", taps[:, removed], const))
        nxt.params["weight"] = taps.reshape(w.shape).astype(nxt.params["weight"].dtype)
    return remove_units(model.replace(chain.next_name, nxt), layer_name, kept, fold_bias=False)


def divnet_prune(
    model: Sequential,
    layer_name: str,
    n_keep: int,
    X: np.ndarray,
    *,
    bandwidth: float | None = None,
    ridge: float = 1e-3,
    fuse: bool = True,
) -> Sequential:
    """DivNet: keep ``n_keep`` diverse units of a layer (greedy DPP MAP) and fuse the others.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` (see :func:`fuse_units`).
    n_keep : int
        Units kept, ``1 <= n_keep <= n_units``.
    X : ndarray, shape (N, ...)
        Inputs: the kernel and the fusing both use the units' outputs on them.
    bandwidth, ridge : float
        Of :func:`dpp_kernel`.
    fuse : bool
        Re-weight the next layer (:func:`fuse_units`); with ``False`` the other units are only
        removed (their constant outputs folded, as :func:`~refimpl.surgery.remove_units` does).

    Returns
    -------
    Sequential

    References
    ----------
    .. [1] Mariet, Z. and Sra, S. (2016) Diversity networks. ICLR.

    See chapter 4 of the book, "DivNet". We select by greedy MAP instead of sampling.
    """
    _, acts = _next_inputs(model, layer_name, X)
    n = unit_count(model, layer_name)
    n_keep = check_int(n_keep, "n_keep", 1, n)
    L = dpp_kernel(acts, bandwidth=bandwidth, ridge=ridge)
    keep = np.sort(dpp_greedy_map(L, n_keep).selected)
    if fuse:
        return fuse_units(model, layer_name, keep, X)
    return remove_units(model, layer_name, keep)


# --------------------------------------------------------------------------------------------
# Centripetal SGD
# --------------------------------------------------------------------------------------------


def _rows(layer: Layer) -> np.ndarray:
    """Each unit's incoming weights and bias as one row, float64, (n, d)."""
    w = np.asarray(layer.weight, dtype=np.float64)
    n = w.shape[0]
    b = layer.bias
    parts = [w.reshape(n, -1)] + ([] if b is None else [np.asarray(b, np.float64)[:, None]])
    return np.concatenate(parts, axis=1)


def cluster_filters(
    layer: Layer, n_clusters: int, *, rng: RngLike = None, max_iter: int = 50
) -> np.ndarray:
    """C-SGD's clusters: k-means (k-means++ start) on the filters' weights and biases.

    Parameters
    ----------
    layer : Linear or Conv2d
    n_clusters : int
        Clusters, ``1 <= n_clusters <= n_units``: the units the layer keeps after merging.
    rng, max_iter
        Seed of the k-means++ start; Lloyd iterations.

    Returns
    -------
    labels : ndarray of int, shape (n_units,)
        Cluster of each unit; every cluster in ``0 .. n_clusters-1`` is non-empty.

    References
    ----------
    .. [1] Ding, X., Ding, G., Guo, Y. and Han, J. (2019) Centripetal SGD for pruning very deep
       convolutional networks with complicated structure. CVPR.
    """
    from ..quantization.kmeans import kmeans

    rows = _rows(layer)
    k = check_int(n_clusters, "n_clusters", 1, len(rows))
    iters = check_int(max_iter, "max_iter", 1)
    labels = kmeans(rows, k, rng=as_generator(rng), max_iter=iters).labels
    # an empty cluster (rare after k-means++) takes a member of the largest one
    labels = np.asarray(labels, dtype=np.int64)
    used = np.unique(labels)
    while used.size < k:
        counts = np.bincount(labels)
        big = int(np.argmax(counts))
        members = np.flatnonzero(labels == big)
        labels[members[-1]] = int(np.setdiff1d(np.arange(k), used)[0])
        used = np.unique(labels)
    return labels


def intra_cluster_distance(layer: Layer, labels: np.ndarray) -> float:
    """``sqrt(sum_j ||w_j - mean of j's cluster||^2)`` over the units' weights and biases."""
    rows = _rows(layer)
    labels = _check_labels(labels, len(rows), "labels")
    means = _cluster_means(rows, labels)
    return float(np.sqrt(((rows - means[labels]) ** 2).sum()))


def _check_labels(labels: Any, n: int, name: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{name} must be {n} integer cluster labels, got {lab.shape} {lab.dtype}")
    if lab.min() < 0:
        raise ValueError(f"{name} must be >= 0")
    return lab.astype(np.int64)


def _cluster_means(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-cluster mean of the rows of ``x`` (n, ...), shape (k, ...)."""
    k = int(labels.max()) + 1
    flat = x.reshape(len(x), -1)
    sums = np.zeros((k, flat.shape[1]))
    np.add.at(sums, labels, flat)
    counts = np.maximum(np.bincount(labels, minlength=k), 1)
    return (sums / counts[:, None]).reshape((k,) + x.shape[1:])


class CentripetalSGD:
    """Centripetal SGD as a :func:`~refimpl.nn.fit` callback: each cluster's filters converge.

    Parameters
    ----------
    clusters : mapping of str to ndarray of int
        Layer name to the cluster label of each of its units (:func:`cluster_filters`).
    centripetal : float
        ``epsilon`` in ``[0, 1)``: the fraction of its distance to the cluster mean by which
        each filter moves towards it after every step.

    Notes
    -----
    For a filter ``w_j`` in cluster ``H``, with ``L`` the task loss and ``tau`` the step,

    .. math:: w_j \\leftarrow w_j - \\tau \\frac{1}{|H|}\\sum_{i \\in H}
              \\frac{\\partial L}{\\partial w_i} + \\epsilon \\Big(\\frac{1}{|H|}
              \\sum_{i \\in H} w_i - w_j\\Big).

    ``on_before_step`` replaces each filter's gradient (weights and bias) by its cluster's
    mean, so the optimizer moves a cluster's filters alike; ``on_step_end`` applies the
    centripetal term. The distance of every filter from its cluster mean then shrinks by
    exactly ``1 - epsilon`` per step, whatever the task gradient, with plain SGD or momentum
    (a cluster's filters share one gradient, so one velocity); the optimizer's weight decay
    multiplies it by ``1 - lr * weight_decay`` as well. After training, :func:`merge_clusters`
    merges each cluster into one filter. The paper adds the weight decay inside the averaged
    term; here the optimizer's own weight decay acts on each filter.

    References
    ----------
    .. [1] Ding, X., Ding, G., Guo, Y. and Han, J. (2019) Centripetal SGD for pruning very deep
       convolutional networks with complicated structure. CVPR.

    See chapter 4 of the book, "Centripetal SGD".
    """

    def __init__(self, clusters: Mapping[str, np.ndarray], centripetal: float = 0.1) -> None:
        if not isinstance(clusters, Mapping):
            raise TypeError(
                f"clusters must map layer names to labels, got {type(clusters).__name__}"
            )
        self.clusters = {str(k): np.asarray(v, dtype=np.int64) for k, v in clusters.items()}
        self.centripetal = check_float(centripetal, "centripetal", 0.0, 1.0, open_high=True)

    def _tensors(self, layer: Layer) -> list[str]:
        keys = [layer.trained_tensor("weight")]
        if "bias" in layer.params:
            keys.append("bias")
        return keys

    def on_before_step(self, model: Sequential) -> None:
        for name, labels in self.clusters.items():
            layer = model[name]
            labels = _check_labels(labels, layer.units, f"clusters[{name!r}]")
            for key in self._tensors(layer):
                g = layer.grads.get(key)
                if g is not None:
                    mean = _cluster_means(g.astype(np.float64), labels)
                    layer.grads[key] = mean[labels].astype(g.dtype)

    def on_step_end(self, model: Sequential, step: int) -> None:
        eps = self.centripetal
        for name, labels in self.clusters.items():
            layer = model[name]
            for key in self._tensors(layer):
                w = layer.params[key]
                mean = _cluster_means(w.astype(np.float64), labels)
                w += (eps * (mean[labels] - w)).astype(w.dtype)


def merge_clusters(model: Sequential, clusters: Mapping[str, np.ndarray]) -> Sequential:
    """Merge each cluster of filters into one: keep its mean, sum the next layer's inputs.

    Parameters
    ----------
    model : Sequential
        Not modified.
    clusters : mapping of str to ndarray of int
        Layer name to the cluster label of each unit.

    Returns
    -------
    Sequential
        Each layer keeps one unit per cluster (the cluster's first), with the cluster's mean
        weights and bias; the next layer's input columns (channels, or the ``H*W`` columns of
        a channel after a Flatten) of the cluster are summed into the kept one.

    Notes
    -----
    Filters with equal weights and biases give equal output maps, and so do the activation and
    pooling layers after them, so the next layer's input ``sum_{j in H} W_j a_j`` equals
    ``(sum_{j in H} W_j) a_h``: exact for identical filters, which C-SGD's training produces.
    A BatchNorm in between would have to be merged too; we refuse it.

    References
    ----------
    .. [1] Ding, X. et al. (2019) Centripetal SGD. CVPR.
    """
    if not isinstance(clusters, Mapping):
        raise TypeError(f"clusters must map layer names to labels, got {type(clusters).__name__}")
    names = model.names()
    out = model
    for name in sorted(clusters, key=lambda s: names.index(s) if s in names else -1, reverse=True):
        chain = unit_chain(out, name)
        if any("running_mean" in m.buffers for _, m in chain.between):
            raise ValueError(f"merge_clusters does not merge the BatchNorm after {name!r}")
        layer = copy.deepcopy(out[name])
        n = layer.units
        labels = _check_labels(clusters[name], n, f"clusters[{name!r}]")
        for pname in list(layer.parametrizations):
            layer.remove_parametrization(pname)
        reps = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
        for key in [k for k in ("weight", "bias") if k in layer.params]:
            w = layer.params[key]
            layer.params[key] = _cluster_means(w.astype(np.float64), labels)[labels].astype(w.dtype)
        nxt = copy.deepcopy(out[chain.next_name])
        for pname in list(nxt.parametrizations):
            nxt.remove_parametrization(pname)
        w = nxt.params["weight"]
        taps = w.astype(np.float64).reshape(w.shape[0], n, -1) if w.ndim == 4 else (
            w.astype(np.float64).reshape(w.shape[0], n, chain.block))
        summed = np.zeros_like(taps)
        for c, r in zip(np.unique(labels), reps, strict=True):
            summed[:, r] = taps[:, labels == c].sum(axis=1)
        nxt.params["weight"] = summed.reshape(w.shape).astype(w.dtype)
        out = out.replace(name, layer).replace(chain.next_name, nxt)
        out = remove_units(out, name, reps, fold_bias=False)
    return out if clusters else model.copy()


# --------------------------------------------------------------------------------------------
# MetaPruning stand-in: a random search over layer widths
# --------------------------------------------------------------------------------------------


def model_flops(model: Sequential, input_shape: Sequence[int]) -> int:
    """FLOPs of one input through ``model`` (:func:`refimpl.cost.profile`)."""
    from ..cost import profile

    return int(profile(model, tuple(input_shape)).flops)


@dataclass
class WidthCandidate:
    """One width vector: ``widths`` (layer name to units kept), its ``flops`` and the
    ``accuracy`` of the model with inherited L1-selected filters after the short fine-tune."""

    widths: dict[str, int]
    flops: int
    accuracy: float


@dataclass
class WidthSearch:
    """The candidates of :func:`width_search` (the first is the uniform one), the index of
    the most accurate, and the budget."""

    candidates: list[WidthCandidate] = field(default_factory=list)
    best: int = 0
    budget: int = 0

    @property
    def uniform(self) -> WidthCandidate:
        return self.candidates[0]


def inherit_widths(model: Sequential, widths: Mapping[str, int]) -> Sequential:
    """The model with ``widths[name]`` units per layer: each keeps its filters (neurons) of
    largest L1 norm (ties to the lower index), removed by :func:`~refimpl.surgery.shrink`."""
    keep = {}
    for name, k in widths.items():
        order = np.argsort(-l1_filter_scores(model[name]), kind="stable")
        keep[name] = np.sort(order[:k])
    return shrink(model, keep)


def _fit_widths(
    model: Sequential,
    fractions: Mapping[str, float],
    input_shape: Sequence[int],
    budget: int,
    scale_hi: float = 1.0,
) -> tuple[dict[str, int], int]:
    """Largest common scale ``s <= scale_hi`` of the fractions whose widths meet the budget."""
    full = {n: unit_count(model, n) for n in fractions}

    def widths(s: float) -> dict[str, int]:
        return {n: max(1, min(full[n], int(np.floor(s * f * full[n]))))
                for n, f in fractions.items()}  # fmt: skip

    def cost(w: dict[str, int]) -> int:
        return model_flops(inherit_widths(model, w), input_shape)

    w = widths(scale_hi)
    c = cost(w)
    if c <= budget:
        return w, c
    lo, hi = 0.0, scale_hi
    best = widths(lo)
    best_c = cost(best)
    if best_c > budget:
        raise ValueError(f"flop_budget {budget} is below the FLOPs {best_c} of one unit per layer")
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        w = widths(mid)
        c = cost(w)
        if c <= budget:
            lo, best, best_c = mid, w, c
        else:
            hi = mid
    return best, best_c


def width_search(
    model: Sequential,
    layers: Sequence[str],
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    input_shape: Sequence[int],
    flop_budget: float,
    *,
    n_candidates: int = 10,
    min_fraction: float = 0.1,
    finetune_steps: int = 20,
    lr: float = 0.01,
    batch_size: int = 64,
    rng: RngLike = None,
) -> WidthSearch:
    """A stand-in for MetaPruning: random per-layer widths under a FLOPs budget, scored cheaply.

    Parameters
    ----------
    model : Sequential
        The trained model; not modified.
    layers : sequence of str
        The ``Linear``/``Conv2d`` layers whose widths are searched.
    train_data, val_data : (X, y)
        The short fine-tune draws ``finetune_steps`` batches from ``train_data``; candidates are
        scored by accuracy on ``val_data``.
    input_shape : tuple of int
        One input without the batch axis, for the FLOPs.
    flop_budget : float
        In ``(0, 1]``: the largest fraction of the model's FLOPs a candidate may keep.
    n_candidates : int
        Candidates in all; the first is the *uniform* one (one common width fraction).
    min_fraction : float
        Smallest width fraction drawn for a layer, in ``(0, 1]``.
    finetune_steps : int
        SGD steps (momentum 0.9, ``lr``) on each candidate before scoring; 0 scores the
        inherited weights as they are.
    rng : int, Generator or None
        Draws the widths and the fine-tune's batches: the same seed gives the same search.

    Returns
    -------
    WidthSearch

    Notes
    -----
    Each candidate draws a width fraction ``f_l ~ U(min_fraction, 1)`` per layer, then takes the
    largest common scale ``s`` (by bisection) whose widths ``floor(s f_l n_l)`` keep the FLOPs
    within ``budget * F(model)``, so every candidate meets the budget and sits near it. It
    inherits the trained model's filters of largest L1 norm
    (:func:`~refimpl.pruning.l1_filter_scores`), as MetaPruning's candidates inherit the
    weights its PruningNet generates; a few steps of fine-tuning stand in for MetaPruning's
    recalibration of BatchNorm statistics.

    MetaPruning (Liu et al., 2019) trains a PruningNet, a meta network that outputs the
    weights of the pruned network for any width vector, and searches the width vectors with an
    evolutionary algorithm scored by those generated weights. This function does neither:
    it is a random search scored by inherited weights, a baseline that Liu et al. compare
    against.

    References
    ----------
    .. [1] Liu, Z., Mu, H., Zhang, X., Guo, Z., Yang, X., Cheng, K.-T. and Sun, J. (2019)
       MetaPruning: meta learning for automatic neural network channel pruning. ICCV.
    """
    from ..nn import SGD, fit

    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a refimpl.nn.Sequential, got {type(model).__name__}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    for name in layers:
        unit_chain(model, name)
    budget_frac = check_float(flop_budget, "flop_budget", 0.0, 1.0, open_low=True)
    n_candidates = check_int(n_candidates, "n_candidates", 1)
    min_fraction = check_float(min_fraction, "min_fraction", 0.0, 1.0, open_low=True)
    finetune_steps = check_int(finetune_steps, "finetune_steps", 0)
    gen = as_generator(rng)
    full_flops = model_flops(model, input_shape)
    budget = int(np.floor(budget_frac * full_flops))
    X, y = train_data
    search = WidthSearch(budget=budget)
    for i in range(n_candidates):
        if i == 0:
            fractions = {n: 1.0 for n in layers}
        else:
            fractions = {n: float(gen.uniform(min_fraction, 1.0)) for n in layers}
            top = max(fractions.values())
            fractions = {n: f / top for n, f in fractions.items()}
        widths, flops = _fit_widths(model, fractions, input_shape, budget)
        cand = inherit_widths(model, widths)
        if finetune_steps:
            idx = gen.choice(len(X), size=min(len(X), finetune_steps * batch_size), replace=False)
            fit(cand, (X[idx], y[idx]), epochs=1, optimizer=SGD(lr, momentum=0.9),
                batch_size=batch_size, rng=gen, verbose=False)  # fmt: skip
        acc = evaluate(cand, val_data).accuracy
        search.candidates.append(WidthCandidate(widths, flops, float(acc)))
    search.best = int(np.argmax([c.accuracy for c in search.candidates]))
    return search
