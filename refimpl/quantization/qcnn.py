"""Q-CNN: product quantization that minimizes a layer's response error (Wu et al., 2016).

Plain product quantization (:func:`~refimpl.quantization.product_quantize`) clusters the
weight sub-vectors themselves, minimizing :math:`\\|W - \\hat W\\|_F^2`. Q-CNN [1]_ quantizes
the same sub-vectors with the same codebooks and codes, but chooses them to minimize the
error of the layer's *response* on sampled inputs, :math:`\\|(W - \\hat W) X^\\top\\|_F^2`,
which weighs each input direction by how much the data uses it. See chapter 5 of the book,
"Q-CNN".

References
----------
.. [1] Wu, J., Leng, C., Wang, Y., Hu, Q. and Cheng, J. (2016). Quantized Convolutional Neural
   Networks for Mobile Devices. *CVPR*.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..validation import check_array, check_float, check_int
from .pq import pq_reconstruct, product_quantize

__all__ = ["QCNNResult", "qcnn_quantize", "response_error"]


class QCNNResult(NamedTuple):
    """What :func:`qcnn_quantize` found: ``codebooks`` (s, k, d), ``codes`` (out, s) (the
    layout of :func:`~refimpl.quantization.product_quantize`) and ``errors``, the response
    error :math:`\\|(W - \\hat W) X^\\top\\|_F^2` at the start and after each sweep."""

    codebooks: np.ndarray
    codes: np.ndarray
    errors: list[float]


def response_error(weight: np.ndarray, weight_hat: np.ndarray, X: np.ndarray) -> float:
    """``||(W - W_hat) X^T||_F^2`` for a dense weight (out, in) and inputs ``X`` (N, in)."""
    W = np.asarray(weight, dtype=np.float64)
    E = W - np.asarray(weight_hat, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"X must have shape (N, {W.shape[1]}), got {X.shape}")
    return float(np.sum((X @ E.T) ** 2))


def qcnn_quantize(
    weight: np.ndarray,
    X: np.ndarray,
    subvector_len: int,
    n_centroids: int,
    *,
    max_iter: int = 10,
    ridge: float = 0.0,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    rng: int | np.random.Generator | None = None,
) -> QCNNResult:
    """Product-quantize a dense weight to minimize its response error on the inputs ``X``.

    Parameters
    ----------
    weight : ndarray (out_features, in_features)
    X : ndarray (N, in_features)
        Sampled inputs of the layer (the activations that reach it).
    subvector_len : int
        ``d``: the columns are cut into ``s = ceil(in / d)`` blocks, as in
        :func:`~refimpl.quantization.product_quantize`.
    n_centroids : int
        ``k`` codewords per block, ``k <= out_features``.
    max_iter : int
        Sweeps over the blocks (each sweep updates every block's codebook, then its codes).
    ridge : float
        ``rho >= 0``: also penalize the weight error, minimizing
        :math:`\\|(W - \\hat W) X^\\top\\|_F^2 + \\lambda \\|W - \\hat W\\|_F^2` with
        :math:`\\lambda = \\rho \\|X\\|_F^2 / \\text{in}` (the mean input energy per
        dimension). Inputs that the sample never uses (a pixel that is always 0) leave the
        pure response error blind in that direction, and its least-squares codewords can grow
        without bound there; a small ``rho`` keeps them near the weights.
    init : (codebooks, codes), optional
        The starting point; default plain PQ, ``product_quantize(weight, d, k, rng=rng)``.
    rng : int, numpy.random.Generator or None
        Seed of the default initialization.

    Returns
    -------
    QCNNResult
        ``codebooks`` (s, k, d) and ``codes`` (out, s) in the weight's dtype and int32, and the
        errors (start, then after every sweep) of the objective, non-increasing: the response
        error, plus the ridge term when ``ridge > 0``.

    Notes
    -----
    Block :math:`m` of the weight, :math:`W^{(m)}` (out, d), meets the inputs' block
    :math:`X_m` (N, d). With the other blocks' quantizations fixed, the target of block
    :math:`m` is the residual :math:`R = W X^\\top - \\sum_{m' \\ne m} \\hat W^{(m')}
    X_{m'}^\\top` (out, N), and row :math:`i` costs :math:`\\|R_i - X_m c_{q_i}\\|^2`
    ([1]_, sec. 3.2, "error correction", for fully-connected layers). Two exact minimizations
    alternate: the codebook, by least squares given the codes,

    .. math::

        c_k = (X_m^\\top X_m)^{+} X_m^\\top \\frac{1}{|S_k|} \\sum_{i \\in S_k} R_i,

    (an empty codeword is kept; with a ridge, the inputs are augmented by
    :math:`\\sqrt{\\lambda} I`, which adds :math:`\\lambda I` to :math:`X_m^\\top X_m`),
    then the codes given the codebook,
    :math:`q_i = \\arg\\min_k\\, c_k^\\top G c_k - 2 c_k^\\top X_m^\\top R_i` with
    :math:`G = X_m^\\top X_m`. Each step can only lower the response error, so the error never
    increases. With :math:`X = I` the response error is the weight error and each step is a
    Lloyd step of plain PQ on that block. Departure from the paper: we quantize dense layers
    only (the paper also treats convolutions, with their patches as ``X``), and we start from
    plain PQ instead of the paper's k-means on the weights with random restarts.
    """
    W = check_array(weight, "weight", ndim=2, kind="float")
    Xa = check_array(X, "X", ndim=2, kind="real").astype(np.float64)
    out, inp = W.shape
    if Xa.shape[1] != inp:
        raise ValueError(f"X must have shape (N, {inp}), got {Xa.shape}")
    d = check_int(subvector_len, "subvector_len", 1, inp)
    k = check_int(n_centroids, "n_centroids", 1, out)
    max_iter = check_int(max_iter, "max_iter", 0)
    ridge = check_float(ridge, "ridge", 0.0)
    if ridge > 0:  # augmented inputs: the objective gains lambda ||W - W_hat||^2
        lam = ridge * float(np.sum(Xa**2)) / inp
        Xa = np.vstack([Xa, np.sqrt(lam) * np.eye(inp)])
    s = math.ceil(inp / d)
    if init is None:
        init = product_quantize(W, d, k, rng=rng)
    C = np.array(init[0], dtype=np.float64)
    Q = np.array(init[1], dtype=np.int64)
    if C.shape != (s, k, d) or Q.shape != (out, s):
        raise ValueError(f"init must be codebooks {(s, k, d)} and codes {(out, s)}, got "
                         f"{C.shape} and {Q.shape}")  # fmt: skip
    Xp = np.zeros((Xa.shape[0], s * d))
    Xp[:, :inp] = Xa
    Wp = np.zeros((out, s * d))
    Wp[:, :inp] = W
    blocks = [slice(m * d, (m + 1) * d) for m in range(s)]
    # E = (W - W_hat) X^T, the response error (out, N), kept up to date block by block
    E = (Wp - pq_reconstruct(C, Q, s * d)) @ Xp.T
    errors = [float(np.sum(E**2))]
    for _ in range(max_iter):
        for m, cols in enumerate(blocks):
            Xm = Xp[:, cols]  # (N, d)
            cur = C[m][Q[:, m]]  # (out, d)
            R = E + cur @ Xm.T  # target of block m's quantization
            G = Xm.T @ Xm
            Gp = np.linalg.pinv(G)
            P = R @ Xm  # (out, d): X_m^T R_i for every row
            # codebook: least squares given the codes
            for c in range(k):
                rows = Q[:, m] == c
                if rows.any():
                    C[m, c] = Gp @ P[rows].mean(axis=0)
            # codes: the codeword with the smallest response error for each row
            cost = np.einsum("kd,de,ke->k", C[m], G, C[m])[None, :] - 2 * P @ C[m].T
            Q[:, m] = np.argmin(cost, axis=1)
            E = R - C[m][Q[:, m]] @ Xm.T
        errors.append(float(np.sum(E**2)))
    return QCNNResult(C.astype(W.dtype), Q.astype(np.int32), errors)
