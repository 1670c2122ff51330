"""k-means weight sharing: a codebook of shared values and one index per weight.

Deep Compression [1]_ (after Gong et al. [2]_) replaces the weights of a layer by ``k`` shared
values: a 1-D k-means clusters the weights, each weight stores only the index of its cluster
(``log2(k)`` bits) and the layer stores the ``k`` centroids once. The centroids are then
fine-tuned: the gradient of a centroid is the sum of the gradients of the weights that share it.
See chapter 5 of the book, "Weight sharing by k-means".

Encoding of pruned zeros
------------------------
Clustering runs over the **nonzero** weights only, so pruning and sharing compose: a weight that
is exactly zero (pruned) gets the index ``-1`` and stays exactly zero; it is not a member of any
cluster and the codebook has no entry for it. Every other weight gets an index in
``0 .. n_clusters - 1``. The weight is rebuilt as ``append(codebook, 0)[indices]`` (NumPy reads
index ``-1`` as the appended zero), i.e.

.. math::

   W_{ij} = c_{I_{ij}} \\text{ if } I_{ij} \\ge 0, \\qquad W_{ij} = 0 \\text{ if } I_{ij} = -1.

A coder that wants non-negative symbols (Huffman, CSR) uses ``indices + 1``: symbol 0 is the
pruned zero and symbol ``m + 1`` is centroid ``m``.

References
----------
.. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
   Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
.. [2] Gong, Y., Liu, L., Yang, M. and Bourdev, L. (2014). Compressing Deep Convolutional
   Networks using Vector Quantization. arXiv:1412.6115.
.. [3] Wang, H. and Song, M. (2011). Ckmeans.1d.dp: Optimal k-means Clustering in One Dimension
   by Dynamic Programming. *The R Journal* 3(2), 29-33.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import as_generator, check_array, check_int

__all__ = [
    "KMeansResult",
    "kmeans",
    "PRUNED",
    "SharedWeights",
    "kmeans_1d",
    "kmeans_1d_exact",
    "kmeans_init",
    "kmeans_quantize",
    "shared_weight",
]

#: Index that marks a pruned (exactly zero) weight in ``indices``.
PRUNED = -1

InitName = Literal["linear", "density", "random", "optimal"]
_INITS = ("linear", "density", "random", "optimal")
#: Largest DP table (``n_clusters`` times distinct values) the exact DP fills (int32 back
#: pointers: 200 MB at the limit). Below it ``init="optimal"`` is exact.
MAX_DP_TABLE = 50_000_000
#: Number of equal-count groups the "optimal" initialization clusters when the distinct values
#: do not fit the DP table.
MAX_GROUPS = 8192


def _check_k(n_clusters: int) -> int:
    # at most 65,535 clusters: what a codebook of the compressed model file can hold
    return check_int(n_clusters, "n_clusters", 1, 65535)

def _initial_centroids(
    xs: np.ndarray, k: int, init: str, rng: int | np.random.Generator | None
) -> np.ndarray:
    """Initial centroids (k,) for sorted data ``xs`` (n,), as Deep Compression compares them."""
    if init == "linear":  # evenly spaced between the smallest and the largest weight
        return np.linspace(xs[0], xs[-1], k)
    if init == "density":  # evenly spaced in the CDF: quantiles at (m + 1/2) / k
        return np.quantile(xs, (np.arange(k) + 0.5) / k)
    if init == "random":  # Forgy: k distinct weights drawn at random
        gen = np.random.default_rng(rng)
        distinct = np.unique(xs)
        return np.sort(distinct[gen.choice(distinct.size, size=k, replace=False)])
    if init == "optimal":  # exact DP on the distinct values, on groups only beyond the table
        values, counts = _group(xs, None)
        if k * values.size > MAX_DP_TABLE:
            values, counts = _group(xs, max(MAX_GROUPS, k))
        return _optimal_dp(values, counts, k)[0]
    raise ValueError(f"init must be one of {_INITS}, got {init!r}")


def kmeans_init(
    x: np.ndarray,
    n_clusters: int,
    init: InitName = "linear",
    *,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """The initial centroids (k,) that :func:`kmeans_1d` starts from, sorted (float64).

    Parameters
    ----------
    x : ndarray, any shape
        Values (flattened), at least ``n_clusters`` distinct ones.
    n_clusters : int
    init : {"linear", "density", "random", "optimal"}
        See :func:`kmeans_1d`: ``linspace(min, max, k)``; the quantiles at ``(m + 1/2) / k``;
        ``k`` distinct values drawn at random; or the exact optimum of the grouped data.
    rng : int, numpy.random.Generator or None
        For ``init="random"``.
    """
    k = _check_k(n_clusters)
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    xs = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if xs.size == 0 or np.count_nonzero(np.diff(xs)) + 1 < k:
        raise ValueError(f"x needs at least n_clusters = {k} distinct values")
    return np.sort(_initial_centroids(xs, k, init, rng))


def _lloyd_sorted(
    xs: np.ndarray, centroids: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm on sorted 1-D data; returns (centroids (k,), cluster starts (k + 1,)).

    In one dimension a cluster is an interval of the sorted data and its boundaries are the
    midpoints between neighbouring centroids: ``searchsorted`` finds them in ``O(k log n)`` and
    the prefix sums give every cluster's sum in ``O(k)``, so one iteration costs ``O(k log n)``
    instead of ``O(n k)``. An empty cluster takes the point farthest from its centroid (as
    scikit-learn relocates), which cannot increase the inertia.
    """
    n, k = xs.size, centroids.size
    csum = np.concatenate(([0.0], np.cumsum(xs)))
    c = np.sort(centroids.astype(np.float64))
    scale = max(float(xs[-1] - xs[0]), float(np.abs(xs).max()), 1e-300)
    bounds = np.zeros(k + 1, dtype=np.int64)
    for _ in range(max_iter):
        bounds = np.concatenate(([0], np.searchsorted(xs, (c[1:] + c[:-1]) / 2), [n]))
        counts = np.diff(bounds)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            # relocate empty clusters to the worst-served points, then recompute the partition
            owner = np.repeat(np.arange(k), counts)
            err = np.abs(xs - c[owner])
            worst = np.argsort(err)[::-1]
            taken = set(c.tolist())
            j = 0
            for e in empty:  # loop over the (few) empty clusters only
                while j < n and float(xs[worst[j]]) in taken:
                    j += 1
                if j == n:
                    break
                c[e] = xs[worst[j]]
                taken.add(float(c[e]))
                j += 1
            c = np.sort(c)
            bounds = np.concatenate(([0], np.searchsorted(xs, (c[1:] + c[:-1]) / 2), [n]))
            counts = np.diff(bounds)
        sums = csum[bounds[1:]] - csum[bounds[:-1]]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        shift = float(np.abs(new - c).max())
        c = np.sort(new)
        if shift <= tol * scale:
            break
    bounds = np.concatenate(([0], np.searchsorted(xs, (c[1:] + c[:-1]) / 2), [n]))
    return c, bounds


def _sq_dists(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared distances (..., n, k) between rows of X (..., n, d) and C (..., k, d)."""
    d = X.shape[-1]
    if d <= 16:  # short vectors: d broadcast products beat many tiny batched matmuls
        cross = X[..., :, None, 0] * C[..., None, :, 0]
        for t in range(1, d):
            cross += X[..., :, None, t] * C[..., None, :, t]
    else:
        cross = X @ np.swapaxes(C, -1, -2)
    dist = (X * X).sum(-1)[..., :, None] - 2 * cross + (C * C).sum(-1)[..., None, :]
    return np.maximum(dist, 0.0)


def _kmeans_vectors(
    X: np.ndarray,
    n_clusters: int,
    *,
    max_iter: int = 25,
    rng: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched k-means (Lloyd, k-means++ seeding) of ``B`` independent point sets at once.

    Parameters
    ----------
    X : ndarray (B, n, d) or (n, d)
        ``B`` sets of ``n`` points in ``d`` dimensions (a 2-D array is one set).
    n_clusters : int
        ``k <= n``.
    max_iter : int
        Maximum Lloyd iterations (it stops earlier once no assignment changes).
    rng : int, numpy.random.Generator or None
        Seed or generator of the k-means++ seeding.

    Returns
    -------
    centroids : ndarray (B, k, d) (or (k, d))
    labels : ndarray of int64 (B, n) (or (n,))

    Notes
    -----
    k-means++ [3]_ draws each new seed with probability proportional to the squared distance to
    the nearest seed so far; Lloyd then alternates nearest-centroid assignment (one batched
    matrix product) and centroid means (one ``bincount`` per dimension). An empty cluster keeps
    its centroid. All ``B`` sets are processed together, so the loops run over seeds and
    iterations, never over points.

    References
    ----------
    .. [3] Arthur, D. and Vassilvitskii, S. (2007). k-means++: The Advantages of Careful
       Seeding. *SODA*.
    """
    X = np.asarray(X, dtype=np.float64)
    single = X.ndim == 2
    if single:
        X = X[None]
    if X.ndim != 3:
        raise ValueError(f"X must have shape (n, d) or (B, n, d), got {X.shape}")
    B, n, d = X.shape
    k = check_int(n_clusters, "n_clusters", 1)
    if k > n:
        raise ValueError(f"n_clusters must be <= the number of points {n}, got {k}")
    max_iter = check_int(max_iter, "max_iter", 1)
    gen = as_generator(rng)
    rows = np.arange(B)
    C = np.empty((B, k, d))
    C[:, 0] = X[rows, gen.integers(0, n, B)]
    best = ((X - C[:, :1]) ** 2).sum(-1)  # (B, n) squared distance to the nearest seed
    for m in range(1, k):  # loop over seeds only
        total = best.sum(1, keepdims=True)
        p = np.where(total > 0, best / np.where(total > 0, total, 1), 1.0 / n)
        u = gen.random((B, 1))
        pick = np.minimum((np.cumsum(p, axis=1) < u).sum(1), n - 1)
        C[:, m] = X[rows, pick]
        best = np.minimum(best, ((X - C[:, m : m + 1]) ** 2).sum(-1))
    flat = (rows[:, None] * k)  # offsets of each set's clusters in a flat bincount
    labels = np.full((B, n), -1, dtype=np.int64)
    X32 = X.astype(np.float32)  # distances in float32 (half the memory traffic); means in float64
    for _ in range(max_iter):
        new = _sq_dists(X32, C.astype(np.float32)).argmin(-1)
        if np.array_equal(new, labels):
            break  # converged: the assignment no longer changes
        labels = new
        idx = (labels + flat).ravel()
        counts = np.bincount(idx, minlength=B * k).reshape(B, k)
        sums = np.stack(
            [np.bincount(idx, weights=X[..., t].ravel(), minlength=B * k) for t in range(d)],
            axis=-1,
        ).reshape(B, k, d)
        C = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], C)
    labels = _sq_dists(X, C).argmin(-1)  # final assignment in float64
    return (C[0], labels[0]) if single else (C, labels)


class KMeansResult(NamedTuple):
    """What a k-means run found: ``centroids`` (k,) or (k, d) (or batched), ``labels`` (the
    index of each point's centroid) and ``inertia`` (the sum of squared distances)."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float | np.ndarray


def kmeans(
    X: np.ndarray,
    n_clusters: int,
    *,
    init: InitName | np.ndarray | None = None,
    max_iter: int | None = None,
    rng: int | np.random.Generator | None = None,
) -> KMeansResult:
    """k-means of points: the one entry point for scalars and vectors.

    Parameters
    ----------
    X : ndarray (n,), (n, d) or (B, n, d)
        Scalars (weights to share: sorted-data Lloyd of :func:`kmeans_1d`), points in ``d``
        dimensions, or ``B`` independent sets of points clustered together (product
        quantization's sub-spaces).
    n_clusters : int
        ``k``.
    init : str or ndarray, optional
        For scalars, :func:`kmeans_1d`'s ``init`` (default ``"linear"``); for vectors only
        k-means++ seeding is offered (None).
    max_iter : int, optional
        Maximum Lloyd iterations (default 300 for scalars, 25 for vectors).
    rng : int, numpy.random.Generator or None
        Seed or generator of random starts.

    Returns
    -------
    KMeansResult
        ``centroids``, ``labels``, ``inertia`` (an array of ``B`` values for batched input).

    References
    ----------
    .. [1] Lloyd, S. (1982). Least squares quantization in PCM. *IEEE Trans. Information
       Theory* 28(2), 129-137.
    .. [2] Arthur, D. and Vassilvitskii, S. (2007). k-means++: The Advantages of Careful
       Seeding. *SODA*.
    """
    X = np.asarray(X)
    if X.ndim == 1:
        return kmeans_1d(X, n_clusters, init="linear" if init is None else init, rng=rng,
                         max_iter=300 if max_iter is None else max_iter)  # fmt: skip
    if init is not None:
        raise ValueError("for points in d > 1 dimensions init must be None (k-means++)")
    C, labels = _kmeans_vectors(X, n_clusters, max_iter=25 if max_iter is None else max_iter,
                                rng=rng)  # fmt: skip
    Xf = np.asarray(X, dtype=np.float64)
    diff = Xf - np.take_along_axis(C, labels[..., None], axis=-2)
    inertia = (diff * diff).sum(axis=(-2, -1))
    return KMeansResult(C, labels, float(inertia) if Xf.ndim == 2 else inertia)


def kmeans_1d(
    x: np.ndarray,
    n_clusters: int,
    *,
    init: InitName | np.ndarray = "linear",
    rng: int | np.random.Generator | None = None,
    max_iter: int = 300,
    tol: float = 1e-9,
) -> KMeansResult:
    """One-dimensional k-means by Lloyd's algorithm on sorted data.

    Parameters
    ----------
    x : ndarray, any shape
        The values to cluster (flattened); at least ``n_clusters`` distinct values.
    n_clusters : int
        Number of clusters ``k >= 1``.
    init : {"linear", "density", "random", "optimal"} or ndarray (k,)
        Initial centroids: evenly spaced between min and max, evenly spaced quantiles (the CDF
        "density" initialization of Deep Compression), ``k`` distinct values at random, the
        exact optimum of :func:`kmeans_1d_exact` (on the distinct values whenever ``k`` times
        their number fits the DP table, ``MAX_DP_TABLE`` = 5e7; beyond it on ``MAX_GROUPS`` =
        8192 equal-count groups of the sorted data), or given.
    rng : int, numpy.random.Generator or None
        Seed or generator for ``init="random"``.
    max_iter : int
        Maximum Lloyd iterations (each costs ``O(k log n)``).
    tol : float
        Stop when no centroid moves more than ``tol`` times the data range.

    Returns
    -------
    centroids : ndarray (k,), float64
        Sorted increasingly.
    labels : ndarray of int64, shape of ``x``
        Index of the nearest centroid of each value.
    inertia : float
        Sum of squared distances to the assigned centroids.

    Notes
    -----
    k-means minimises the inertia :math:`\\sum_i \\min_m (x_i - c_m)^2`. Lloyd alternates
    assigning each value to its nearest centroid and moving each centroid to the mean of its
    values; both steps never increase the inertia. On sorted 1-D data each cluster is a
    contiguous run and its mean comes from prefix sums, so after an ``O(n log n)`` sort an
    iteration costs ``O(k log n)``. From ``"linear"``, ``"density"`` or ``"random"`` Lloyd finds
    a local optimum that depends on the start (which is what Deep Compression compares); from
    ``"optimal"`` it polishes the exact optimum, which is the global optimum whenever ``k``
    times the number of distinct values is at most ``MAX_DP_TABLE`` (5e7: 100,000 distinct
    values at k = 500) and, beyond it, the optimum of the grouped data, within a hair of the
    global one when the data are not heavy-tailed. The exact DP costs ``O(k n log n)``: seconds
    for k = 64 on 100,000 distinct values (about 0.5-0.7 of scikit-learn's ``KMeans`` with
    ``n_init=10`` on one thread, ``benchmarks/bench_kmeans.py``), where Lloyd alone takes
    milliseconds.

    See chapter 5 of the book, "Weight sharing by k-means".
    """
    k = _check_k(n_clusters)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    flat = x.astype(np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("x must be finite (no NaN or inf)")
    xs = np.sort(flat)
    if xs.size == 0 or np.count_nonzero(np.diff(xs)) + 1 < k:
        raise ValueError(
            f"x has {np.unique(xs).size} distinct values; n_clusters must be <= that, got {k}"
        )
    if isinstance(init, str):
        c0 = _initial_centroids(xs, k, init, rng)
    else:
        c0 = np.asarray(init, dtype=np.float64)
        if c0.shape != (k,):
            raise ValueError(f"init array must have shape ({k},), got {c0.shape}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    c, _ = _lloyd_sorted(xs, c0, int(max_iter), float(tol))
    # side="right": a value exactly on a midpoint joins the upper cluster, as in the loop
    labels = np.searchsorted((c[1:] + c[:-1]) / 2, flat, side="right").reshape(x.shape)
    inertia = float(((flat - c[labels.ravel()]) ** 2).sum())
    return KMeansResult(c, labels, inertia)


def _group(xs: np.ndarray, max_groups: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted data as (values, counts): its distinct values, or quantile groups if too many."""
    values, counts = np.unique(xs, return_counts=True)
    if max_groups is None or values.size <= max_groups:
        return values, counts.astype(np.float64)
    # equal-count groups of consecutive sorted values, each represented by its mean
    edges = np.unique(np.linspace(0, xs.size, max_groups + 1).round().astype(np.int64))
    csum = np.concatenate(([0.0], np.cumsum(xs)))
    counts = np.diff(edges).astype(np.float64)
    return (csum[edges[1:]] - csum[edges[:-1]]) / counts, counts


def _optimal_dp(values: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact k-means of weighted sorted points by DP with divide-and-conquer (O(k g log g)).

    ``D_m(i) = min_{j<i} D_{m-1}(j) + S(j, i)``; the cost ``S`` is a Monge array, so the
    optimal ``j`` is non-decreasing in ``i`` and each row of the table is filled by divide and
    conquer. One level of the recursion is one vectorized pass over all its sub-problems. Two
    more bounds cut the work: the last cluster of an optimal split into ``m + 1`` clusters
    starts no earlier than that of ``m`` clusters (the previous row's ``j`` is a lower bound),
    and the last row needs only ``i = g``.
    """
    g = values.size
    v = values - np.average(values, weights=counts)  # centred: less cancellation in S
    W = np.concatenate(([0.0], np.cumsum(counts)))
    S1 = np.concatenate(([0.0], np.cumsum(counts * v)))
    S2 = np.concatenate(([0.0], np.cumsum(counts * v * v)))
    D = np.full(g + 1, np.inf)
    D[1:] = S2[1:] - S1[1:] ** 2 / W[1:]
    back = np.zeros((k, g + 1), dtype=np.int32)
    prev = np.zeros(g + 1, dtype=np.int64)  # the previous row's optimal j: a lower bound
    for m in range(1, k):  # loop over clusters; the rows are vectorized
        # D_{m-1}(j) + S(j, i) = a[j] + S2[i] - (S1[i] - S1[j])^2 / (W[i] - W[j])
        a = D - S2
        D = np.full(g + 1, np.inf)
        if m == k - 1:  # the last row: only i = g
            j0 = max(m, int(prev[g]))
            d = S1[g] - S1[j0:g]
            vals = a[j0:g] - d * d / (W[g] - W[j0:g])
            best = int(np.argmin(vals))
            back[m, g] = j0 + best
            D[g] = vals[best] + S2[g]
            break
        opt_row = np.zeros(g + 1, dtype=np.int64)
        # sub-problems: rows i in [ilo, ihi] whose optimal j lies in [jlo, jhi]
        ilo, ihi = np.array([m + 1]), np.array([g])
        jlo, jhi = np.array([m]), np.array([g - 1])
        while ilo.size:
            mid = (ilo + ihi) >> 1
            lo = np.maximum(jlo, prev[mid])
            lengths = np.minimum(jhi, mid - 1) - lo + 1
            ends = np.cumsum(lengths)
            starts = ends - lengths
            # the candidates j = lo .. top of every sub-problem, one after the other
            step = np.ones(int(ends[-1]), dtype=np.int64)
            step[0] = lo[0]
            step[starts[1:]] = lo[1:] - (lo[:-1] + lengths[:-1] - 1)
            j = np.cumsum(step)
            # vals = a[j] - (S1[mid] - S1[j])^2 / (W[mid] - W[j]), in place (fewer temporaries)
            d = np.repeat(S1[mid], lengths)
            d -= S1.take(j)
            d *= d
            w = np.repeat(W[mid], lengths)
            w -= W.take(j)
            d /= w
            vals = a.take(j)
            vals -= d
            mins = np.minimum.reduceat(vals, starts)
            hit = np.flatnonzero(vals <= np.repeat(mins, lengths))
            seg = np.searchsorted(ends, hit, side="right")
            opt = j[hit[np.concatenate(([True], seg[1:] != seg[:-1]))]]  # first minimum
            D[mid] = mins + S2[mid]
            opt_row[mid] = opt
            left = ilo <= mid - 1
            right = mid + 1 <= ihi
            ilo, ihi, jlo, jhi = (
                np.concatenate((ilo[left], mid[right] + 1)),
                np.concatenate((mid[left] - 1, ihi[right])),
                np.concatenate((jlo[left], opt[right])),
                np.concatenate((opt[left], jhi[right])),
            )
        back[m] = opt_row
        prev = opt_row
    ends_ = [g]
    for m in range(k - 1, 0, -1):
        ends_.append(int(back[m, ends_[-1]]))
    edges = np.array(ends_[::-1], dtype=np.int64)
    starts_ = np.concatenate(([0], edges[:-1]))
    s1 = S1[edges] - S1[starts_]
    w = W[edges] - W[starts_]
    # the inertia from the k clusters (each clamped at 0 against rounding), not from D
    inertia = float(np.maximum((S2[edges] - S2[starts_]) - s1 * s1 / w, 0.0).sum())
    centroids = s1 / w + (values - v)[0]
    return np.sort(centroids), inertia


def kmeans_1d_exact(x: np.ndarray, n_clusters: int) -> tuple[np.ndarray, float]:
    """Globally optimal 1-D k-means (exact dynamic programming).

    Parameters
    ----------
    x : ndarray, any shape
        Values (flattened), at least ``n_clusters`` distinct; ``n_clusters`` times the number
        of distinct values must stay at most ``MAX_DP_TABLE`` = 5e7 (the back-pointer table).
    n_clusters : int
        Number of clusters ``k``.

    Returns
    -------
    centroids : ndarray (k,), float64, sorted
    inertia : float
        The least possible inertia :math:`\\sum_i \\min_m (x_i - c_m)^2`.

    Notes
    -----
    An optimal 1-D clustering splits the sorted data into ``k`` contiguous runs [3]_. With
    :math:`D_m(i)` the least cost of the first ``i`` values in ``m`` runs and :math:`S(j, i)` the
    squared error of values ``j .. i-1`` about their mean (from prefix sums of :math:`x` and
    :math:`x^2`),

    .. math:: D_m(i) = \\min_{j < i} D_{m-1}(j) + S(j, i).

    :math:`S` satisfies the quadrangle inequality, so the minimizing ``j`` does not decrease
    with ``i`` and each row is filled by divide and conquer in ``O(n log n)`` [4]_: the whole
    table costs ``O(k n log n)`` time and ``O(k n)`` memory. With more clusters the last one
    starts no earlier, so the previous row's minimizing ``j`` also bounds each row from below.

    References
    ----------
    .. [3] Wang, H. and Song, M. (2011). Ckmeans.1d.dp: Optimal k-means Clustering in One
       Dimension by Dynamic Programming. *The R Journal* 3(2), 29-33.
    .. [4] Gronlund, A. et al. (2017). Fast Exact k-Means, k-Medians and Bregman Divergence
       Clustering in 1D. arXiv:1701.07204.
    """
    k = _check_k(n_clusters)
    xs = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if xs.size == 0 or not np.isfinite(xs).all():
        raise ValueError("x must be a non-empty array of finite values")
    values, counts = _group(xs, None)
    if values.size < k:
        raise ValueError(
            f"n_clusters must be <= the number of distinct values ({values.size}), got {k}"
        )
    if k * values.size > MAX_DP_TABLE:
        raise ValueError(
            f"n_clusters * distinct values must be <= {MAX_DP_TABLE:.0e}, got {k} * "
            f"{values.size}; "
            "use kmeans_1d(..., init='optimal') which groups the data first"
        )
    return _optimal_dp(values, counts, k)


def kmeans_quantize(
    weight: np.ndarray,
    n_clusters: int,
    *,
    init: InitName = "linear",
    rng: int | np.random.Generator | None = None,
    max_iter: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Share the nonzero weights of a tensor among ``n_clusters`` values (Deep Compression).

    Parameters
    ----------
    weight : ndarray of float, any shape
        A layer's weight, e.g. (out_features, in_features) or (C_out, C_in, kH, kW). Entries
        that are exactly zero are treated as pruned.
    n_clusters : int
        Size of the codebook ``k >= 1`` (``2**bits``).
    init : {"linear", "density", "random", "optimal"}
        Initial centroids, the three of Deep Compression [1]_ section 3.2: evenly spaced between
        the smallest and largest nonzero weight; evenly spaced in the weights' CDF; or ``k``
        distinct weights at random (Forgy). ``"optimal"`` (ours) starts from the least-inertia
        clustering (see :func:`kmeans_1d`).
    rng : int, numpy.random.Generator or None
        Seed or generator for ``init="random"``.
    max_iter : int
        Maximum Lloyd iterations.

    Returns
    -------
    codebook : ndarray (n_clusters,), float32
        Centroids, sorted increasingly.
    indices : ndarray of int32, same shape as ``weight``
        ``indices[w] in 0 .. n_clusters - 1`` for a nonzero weight, :data:`PRUNED` (-1) for a
        weight that is exactly zero. The shared weight is :func:`shared_weight`
        ``(codebook, indices)``; pruned entries stay exactly zero.

    Notes
    -----
    Minimises :math:`\\sum_{w \\ne 0} \\min_m (w - c_m)^2` over the nonzero weights by
    :func:`kmeans_1d`. When the nonzero weights have at most ``k`` distinct values the
    codebook holds them exactly (the error is zero) and the unused entries repeat the largest
    value. An all-zero weight gives a zero codebook and all indices ``-1``.
    Departure from the paper: Deep Compression clusters with a general k-means; our 1-D Lloyd on
    sorted data reaches the same kind of local optimum much faster (see :func:`kmeans_1d`).

    See chapter 5 of the book, "Weight sharing by k-means".

    References
    ----------
    .. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
    .. [2] Gong, Y., Liu, L., Yang, M. and Bourdev, L. (2014). Compressing Deep Convolutional
       Networks using Vector Quantization. arXiv:1412.6115.
    """
    k = _check_k(n_clusters)
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"weight must be a floating-point array, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("weight must be finite (no NaN or inf)")
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    indices = np.full(w.shape, PRUNED, dtype=np.int32)
    nz = w != 0
    values = w[nz].astype(np.float64)
    codebook = np.zeros(k, dtype=np.float64)
    if values.size == 0:
        return codebook.astype(np.float32), indices
    distinct = np.unique(values)
    if distinct.size <= k:
        codebook[: distinct.size] = distinct
        codebook[distinct.size :] = distinct[-1]
        indices[nz] = np.searchsorted(distinct, values)
        return codebook.astype(np.float32), indices
    c, labels, _ = kmeans_1d(values, k, init=init, rng=rng, max_iter=max_iter)
    codebook32 = c.astype(np.float32)
    indices[nz] = labels
    return codebook32, indices


def shared_weight(codebook: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The weight rebuilt from a codebook (k,) and indices (any shape, -1 = pruned zero)."""
    codebook = np.asarray(codebook)
    ext = np.append(codebook, np.zeros(1, dtype=codebook.dtype))
    return ext[indices]


def codebook_deploy(codebook: np.ndarray, indices: np.ndarray) -> Deployed:
    """A codebook and symbols for a file: index ``i`` as is, ``PRUNED`` (an exact zero) as ``k``.

    The compressed model file stores a shared weight this way; it also stores any weight with
    few distinct values this way when asked to (``save_compressed(..., shared=True)``).
    """
    k = int(codebook.size)
    symbols = np.where(indices == PRUNED, k, indices).astype(np.int64)
    return Deployed({}, {"codebook": codebook}, {"symbols": symbols})


def _check_indices(indices: np.ndarray, k: int) -> np.ndarray:
    indices = np.asarray(indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    if indices.size and (indices.min() < PRUNED or indices.max() >= k):
        raise ValueError(
            f"indices must lie in -1 .. {k - 1} (-1 marks a pruned zero), got range "
            f"{int(indices.min())} .. {int(indices.max())}"
        )
    return indices


class SharedWeights(Parametrization):
    """Weight sharing: ``W = c[I]`` with a trained codebook ``c`` and fixed indices ``I``.

    Parameters
    ----------
    codebook : ndarray (k,)
        Shared values (centroids), e.g. from :func:`kmeans_quantize`.
    indices : ndarray of int, shape of the weight
        Cluster of each weight in ``0 .. k-1``, or ``-1`` for a pruned weight that stays zero.

    Notes
    -----
    The step replaces the tensor below it. Stored tensors: ``params["codebook"]`` (k,)
    (trained; initialised to ``codebook`` in the weight's dtype) and ``buffers["indices"]``
    (int32, not trained). The forward weight is
    :math:`W_{ij} = c_{I_{ij}}` (0 where :math:`I_{ij} = -1`), and the chain rule gives each
    centroid the sum of its members' gradients [1]_ (Deep Compression, eq. 3):

    .. math:: \\frac{\\partial L}{\\partial c_m} = \\sum_{ij:\\, I_{ij} = m}
              \\frac{\\partial L}{\\partial W_{ij}},

    computed in one ``numpy.bincount``. Pruned weights receive no gradient and stay zero (a mask
    earlier in the chain keeps them zero in any case). The object keeps the codebook and
    indices it was built from, to initialise one weight of their shape.
    ``SharedWeights.from_weight(weight, n_clusters, init=..., rng=...)`` clusters and builds in
    one call. A deployed file stores the codebook and one index per kept weight. See chapter 5
    of the book, "Weight sharing by k-means".

    References
    ----------
    .. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
    """

    file_name = "shared"

    def __init__(self, codebook: np.ndarray, indices: np.ndarray) -> None:
        # a non-empty 1-D float array of finite values: a NaN centroid is never a valid weight
        codebook = check_array(codebook, "codebook", ndim=1, kind="float")
        self.codebook = codebook.copy()
        self.indices = _check_indices(indices, codebook.size).astype(np.int32)

    @classmethod
    def from_weight(
        cls,
        weight: np.ndarray,
        n_clusters: int,
        *,
        init: InitName = "linear",
        rng: int | np.random.Generator | None = None,
    ) -> SharedWeights:
        """Cluster ``weight`` with :func:`kmeans_quantize` and return the parametrization."""
        return cls(*kmeans_quantize(weight, n_clusters, init=init, rng=rng))

    @property
    def n_clusters(self) -> int:
        return int(self.codebook.size)

    uses_input = False  # the weight is rebuilt from the codebook and the indices

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.indices.shape != x.shape:
            raise ValueError(
                f"indices have shape {self.indices.shape} but the weight has shape {x.shape}"
            )
        with np.errstate(over="ignore"):  # an overflow is reported just below
            codebook = self.codebook.astype(x.dtype)
        check_array(codebook, f"codebook (as {x.dtype}, the weight's dtype)", ndim=1)
        return {"codebook": codebook}, {"indices": self.indices.copy()}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return shared_weight(params["codebook"], buffers["indices"])

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        codebook = params["codebook"]
        k = codebook.size
        sums = np.bincount(buffers["indices"].ravel() + 1, weights=grad.ravel(), minlength=k + 1)
        return None, {"codebook": sums[1:].astype(codebook.dtype)}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """The codebook and one symbol per kept weight (``k`` stands for an exact zero)."""
        return codebook_deploy(params["codebook"], buffers["indices"][keep])

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        codebook = deployed.floats["codebook"]
        return np.append(codebook, np.zeros(1, codebook.dtype))[deployed.ints["symbols"]]

    def __repr__(self) -> str:
        return f"SharedWeights(n_clusters={self.n_clusters})"
