"""Denton et al. (2014): monochromatic and biclustered approximations of a convolution.

*Monochromatic*: each filter's (C, kH kW) matrix is approximated at rank 1, a colour vector
(over the C input channels) times a spatial filter; the colour vectors are then clustered into
G colours, so the layer first projects its input onto G colour channels and each output filter
convolves one of them with its own spatial filter. *Biclustering*: the output and input
channels are clustered into groups (k-means on the filters' rows and columns), and each block of
the kernel is approximated at low rank (here the truncated SVD of the block matricized as
(C_block, kH kW N_block): a 1 x 1 projection into ``rank`` channels, then a kH x kW convolution).
Both return the approximating kernel and their cost; see chapter 7, "Denton's approximations".

References
----------
.. [1] Denton, E., Zaremba, W., Bruna, J., LeCun, Y. and Fergus, R. (2014) Exploiting linear
   structure within convolutional networks for efficient evaluation. NeurIPS, 1269-1277.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quantization.kmeans import kmeans
from ._checks import RngLike, check_int, check_tensor

__all__ = [
    "Biclustered",
    "Monochromatic",
    "biclustered_approximation",
    "monochromatic_approximation",
]


def _conv_hw(in_hw: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int]:
    h, w = (check_int(v, "in_hw") for v in in_hw)
    kh, kw = kernel
    if h < kh or w < kw:
        raise ValueError(f"in_hw {in_hw} is smaller than the kernel {kernel}")
    return h - kh + 1, w - kw + 1


@dataclass(frozen=True)
class Monochromatic:
    """A monochromatic approximation: ``colors`` (G, C), ``assignment`` (N,) of each filter to a
    colour, ``spatial`` (N, kH, kW)."""

    colors: np.ndarray
    assignment: np.ndarray
    spatial: np.ndarray

    @property
    def kernel(self) -> np.ndarray:
        """The approximating kernel :math:`\\hat W_{n c y x} = c_{g(n), c}\\, s_{n y x}`,
        shape (N, C, kH, kW)."""
        return np.einsum("nc,nyx->ncyx", self.colors[self.assignment], self.spatial)

    def cost(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """``(parameters, multiply-adds)`` for one input of spatial size ``in_hw`` (stride 1,
        no padding): the projection :math:`G C` weights, :math:`C G H W` MACs; the spatial
        filters :math:`N k_H k_W` weights, :math:`N k_H k_W H' W'` MACs. The colour index of
        each filter is not counted."""
        g, c = self.colors.shape
        n, kh, kw = self.spatial.shape
        ho, wo = _conv_hw(in_hw, (kh, kw))
        h, w = in_hw
        return g * c + n * kh * kw, c * g * h * w + n * kh * kw * ho * wo


def monochromatic_approximation(
    weight: np.ndarray, n_colors: int, *, max_iter: int = 50, rng: RngLike = None
) -> Monochromatic:
    """Denton et al.'s monochromatic approximation of a kernel.

    Parameters
    ----------
    weight : ndarray, shape (N, C, kH, kW)
    n_colors : int, 1 <= n_colors <= N
        Number G of colour clusters (``N``: every filter keeps its own colour).
    max_iter : int
        Lloyd iterations of the k-means of the colour vectors.
    rng : int, numpy.random.Generator or None
        Seed of the k-means++ start.

    Returns
    -------
    Monochromatic

    Notes
    -----
    For each filter, the truncated SVD :math:`W_n \\approx \\sigma_n u_n v_n^T` of its
    (C, kH kW) matrix gives a unit colour :math:`u_n` (sign fixed so its largest entry is
    positive) and a spatial filter. The colours are clustered by k-means into G centres
    :math:`c_g`; then each spatial filter is refitted to its centre by least squares,
    :math:`s_n = W_n^T c_{g(n)} / \\|c_{g(n)}\\|^2`. A kernel built as colour times spatial
    filter with G distinct colours is reproduced exactly. Denton et al. apply it to the first
    layer of an ImageNet network (C = 3, colour images) with G = 6 to 24 colours.
    """
    W = check_tensor(weight, "weight", min_ndim=4)
    if W.ndim != 4:
        raise ValueError(f"weight must have shape (N, C, kH, kW), got {W.shape}")
    n, c, kh, kw = W.shape
    n_colors = check_int(n_colors, "n_colors", 1, n)
    mats = W.reshape(n, c, kh * kw)
    U, _, _ = np.linalg.svd(mats, full_matrices=False)
    u = U[:, :, 0]  # (N, C)
    sign = np.sign(u[np.arange(n), np.abs(u).argmax(axis=1)])
    u = u * sign[:, None]
    if n_colors == n:
        colors, labels = u, np.arange(n)
    else:
        res = kmeans(u, n_colors, max_iter=max_iter, rng=rng)
        colors, labels = np.asarray(res.centroids, dtype=np.float64), np.asarray(res.labels)
    cn = colors[labels]  # (N, C)
    norm2 = np.maximum((cn * cn).sum(axis=1), np.finfo(np.float64).tiny)
    spatial = np.einsum("nck,nc->nk", mats, cn) / norm2[:, None]
    return Monochromatic(colors, labels.astype(np.intp), spatial.reshape(n, kh, kw))


@dataclass(frozen=True)
class Biclustered:
    """A biclustered approximation: ``out_labels`` (N,), ``in_labels`` (C,) and, per block
    ``(i, j)`` (output cluster i, input cluster j), factors ``blocks[(i, j)] = (P, Q)`` with
    ``P`` (C_j, r) the 1 x 1 projection and ``Q`` (N_i, r, kH, kW) the spatial convolution."""

    out_labels: np.ndarray
    in_labels: np.ndarray
    blocks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    shape: tuple[int, int, int, int]

    @property
    def kernel(self) -> np.ndarray:
        """The approximating kernel, shape (N, C, kH, kW)."""
        out = np.zeros(self.shape)
        for (i, j), (P, Q) in self.blocks.items():
            rows = np.flatnonzero(self.out_labels == i)
            cols = np.flatnonzero(self.in_labels == j)
            out[np.ix_(rows, cols)] = np.einsum("cr,nryx->ncyx", P, Q)
        return out

    def cost(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """``(parameters, multiply-adds)`` for one input of spatial size ``in_hw`` (stride 1, no
        padding): per block of :math:`C_j` inputs, :math:`N_i` outputs and rank r,
        :math:`C_j r + r k_H k_W N_i` weights and :math:`C_j r H W + r k_H k_W N_i H' W'` MACs."""
        _, _, kh, kw = self.shape
        ho, wo = _conv_hw(in_hw, (kh, kw))
        h, w = in_hw
        params = macs = 0
        for P, Q in self.blocks.values():
            cj, r = P.shape
            ni = Q.shape[0]
            params += cj * r + r * kh * kw * ni
            macs += cj * r * h * w + r * kh * kw * ni * ho * wo
        return params, macs


def _balanced_assign(points: np.ndarray, centroids: np.ndarray, cap: int) -> np.ndarray:
    """Nearest centroid with at most ``cap`` points per cluster (greedy on sorted distances)."""
    n, k = points.shape[0], centroids.shape[0]
    d = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    labels = np.full(n, -1, dtype=np.intp)
    counts = np.zeros(k, dtype=np.intp)
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, j = divmod(int(flat), k)
        if labels[i] < 0 and counts[j] < cap:
            labels[i] = j
            counts[j] += 1
    return labels


def _cluster(
    points: np.ndarray, k: int, max_iter: int, rng: np.random.Generator, balanced: bool
) -> np.ndarray:
    if k == 1:
        return np.zeros(points.shape[0], dtype=np.intp)
    if k == points.shape[0]:
        return np.arange(k, dtype=np.intp)
    result = kmeans(points, k, max_iter=max_iter, rng=rng)
    labels = np.asarray(result.labels, dtype=np.intp)
    if balanced:
        cap = -(-points.shape[0] // k)
        centroids = np.asarray(result.centroids, dtype=np.float64)
        for _ in range(max_iter):
            new = _balanced_assign(points, centroids, cap)
            if np.array_equal(new, labels):
                break
            labels = new
            centroids = np.stack([points[labels == j].mean(axis=0) for j in range(k)])
        labels = _balanced_assign(points, centroids, cap)
    _, labels = np.unique(labels, return_inverse=True)  # drop empty clusters
    return labels.astype(np.intp)


def biclustered_approximation(
    weight: np.ndarray,
    n_out_clusters: int,
    n_in_clusters: int,
    rank: int,
    *,
    balanced: bool = False,
    max_iter: int = 50,
    rng: RngLike = None,
) -> Biclustered:
    """Denton et al.'s biclustered approximation of a kernel, with an SVD per block.

    Parameters
    ----------
    weight : ndarray, shape (N, C, kH, kW)
    n_out_clusters, n_in_clusters : int
        Numbers of output and input channel clusters (1 to N, 1 to C).
    rank : int >= 1
        Rank of each block (capped at the block's full rank :math:`\\min(C_j, k_H k_W N_i)`).
    balanced : bool
        If True, clusters of equal size (up to one when the count does not divide): Lloyd
        iterations whose assignment step gives each centre at most ``ceil(n / k)`` points,
        nearest pairs first. Equal groups run as ordinary grouped convolutions, and the cost
        no longer depends on the seed. Denton et al. use plain k-means (False).
    max_iter : int
        Lloyd iterations of each k-means.
    rng : int, numpy.random.Generator or None
        Seed of the k-means++ starts.

    Returns
    -------
    Biclustered

    Notes
    -----
    Output channels are clustered by k-means on the rows :math:`W_{n,:}` (C kH kW), input
    channels on the columns :math:`W_{:,c}` (N kH kW), as Denton et al. do. Each block
    :math:`W_{ij}` (N_i, C_j, kH, kW), matricized as :math:`M_{c,(y x n)}` of shape
    (C_j, kH kW N_i), is replaced by its truncated SVD :math:`M \\approx P (S Q)`: the
    projection :math:`P` (C_j, r) is a 1 x 1 convolution into r channels and :math:`S Q` a
    kH x kW convolution from them to the N_i outputs. Denton et al. describe this "SVD"
    variant and an "outer product" (CP) variant; they approximate the second factor again by
    an SVD, which we skip. One cluster each at full rank reproduces the kernel exactly.
    """
    W = check_tensor(weight, "weight", min_ndim=4)
    if W.ndim != 4:
        raise ValueError(f"weight must have shape (N, C, kH, kW), got {W.shape}")
    n, c, kh, kw = W.shape
    n_out_clusters = check_int(n_out_clusters, "n_out_clusters", 1, n)
    n_in_clusters = check_int(n_in_clusters, "n_in_clusters", 1, c)
    rank = check_int(rank, "rank", 1)
    gen = np.random.default_rng(rng)
    out_labels = _cluster(W.reshape(n, -1), n_out_clusters, max_iter, gen, balanced)
    in_labels = _cluster(W.transpose(1, 0, 2, 3).reshape(c, -1), n_in_clusters, max_iter, gen,
                         balanced)  # fmt: skip
    blocks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for i in range(int(out_labels.max()) + 1):
        rows = np.flatnonzero(out_labels == i)
        for j in range(int(in_labels.max()) + 1):
            cols = np.flatnonzero(in_labels == j)
            block = W[np.ix_(rows, cols)]  # (N_i, C_j, kH, kW)
            M = block.transpose(1, 2, 3, 0).reshape(cols.size, -1)
            U, s, Vt = np.linalg.svd(M, full_matrices=False)
            r = min(rank, s.size)
            P = U[:, :r]
            Q = (s[:r, None] * Vt[:r]).reshape(r, kh, kw, rows.size).transpose(3, 0, 1, 2)
            blocks[(i, j)] = (P, Q)
    return Biclustered(out_labels, in_labels, blocks, (n, c, kh, kw))
