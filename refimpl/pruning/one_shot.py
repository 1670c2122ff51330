"""One-shot pruning from a little calibration data: OBC, SparseGPT, Wanda and N:M sparsity.

Optimal Brain Surgeon (chapter 3) prunes against the loss of the whole network, which needs the
inverse of a Hessian with one row per weight. The methods of this module solve OBS's problem one
layer at a time instead, on the layer's *reconstruction error* on calibration inputs,

.. math:: E(\\hat W) = \\frac1M \\|W X - \\hat W X\\|_F^2
          = \\sum_i \\tfrac12 (w_i - \\hat w_i)^T H (w_i - \\hat w_i),
          \\qquad H = \\tfrac2M X X^T,

whose Hessian :math:`H` is the same small matrix for every row :math:`w_i` of the weight. Then a
few hundred images and no labels prune a layer in one shot, with no retraining:

* :func:`obc_prune` (Frantar and Alistarh 2022): OBS's exact greedy step, one row at a time,
  with the inverse Hessian downdated after every removal;
* :func:`sparsegpt_prune` (Frantar and Alistarh 2023): one column order shared by all rows, so
  the inverse Hessians of all rows are rows of one Cholesky factor; the mask is chosen block by
  block as the weights are updated;
* :func:`wanda_mask` (Sun et al. 2024): the score :math:`|W_{ij}|\\,\\|X_j\\|_2`, compared within
  each output row, and no weight update at all;
* :func:`nm_mask` and :func:`nm_storage`: N:M semi-structured sparsity (2:4), which every method
  here can produce;
* :func:`obs_reconstruct`: the best weights for any given mask (layer-wise OBS's update);
* :func:`one_shot_prune`: the model-level driver, which collects each layer's inputs layer after
  layer (each layer sees the outputs of the already pruned layers before it), prunes, installs
  the result (a :class:`~refimpl.nn.Mask` and the updated weights) and reports each layer's
  reconstruction error and time.

Conventions. A weight is a matrix ``W`` of shape ``(d_row, d_col)``: a dense weight
``(out_features, in_features)``, or a convolution weight ``(C_out, C_in, kH, kW)`` viewed as
``(C_out, C_in * kH * kW)`` in im2col order. The calibration inputs are ``X`` of shape
``(d_col, M)``: for a dense layer one column per sample, for a convolution its unfolded input
(``M = N * H_out * W_out``). With ``H = 2 X X^T / M``, every error this module reports is the
mean squared output error per column of ``X``. The quantization counterparts (RTN, OBQ, GPTQ)
are in :mod:`refimpl.quantization.gptq`, activation-aware low rank in
:mod:`refimpl.lowrank.activation_aware`. See chapter 10 of the book, "One-shot compression".

References
----------
.. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
   Optimal Brain Surgeon. NeurIPS 5.
.. [2] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression: a framework for accurate
   post-training quantization and pruning. NeurIPS 35.
.. [3] Frantar, E. and Alistarh, D. (2023) SparseGPT: massive language models can be accurately
   pruned in one-shot. ICML.
.. [4] Sun, M., Liu, Z., Bair, A. and Kolter, J. Z. (2024) A simple and effective pruning
   approach for large language models. ICLR.
.. [5] Mishra, A. et al. (2021) Accelerating sparse deep neural networks. arXiv:2104.08378.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyr as _dsyr

from ..nn import Mask, Sequential, predict
from ..nn.layers import Layer
from ..validation import check_array, check_float, check_int, check_sparsity
from .magnitude import mask_from_scores, prunable_layers
from .obs import _layer_input_rows, _row_obs

__all__ = [
    "LayerReport",
    "NMStorage",
    "OneShotPruneResult",
    "OneShotReport",
    "inverse_hessian_cholesky",
    "nm_mask",
    "nm_storage",
    "obc_prune",
    "obs_reconstruct",
    "one_shot_prune",
    "reconstruction_error",
    "reconstruction_hessian",
    "sparsegpt_prune",
    "wanda_mask",
    "wanda_scores",
]

#: A pivot of the Cholesky factorization below this fraction of its diagonal entry means that
#: the Hessian is singular to working precision (float64 keeps about 16 digits; a Hessian of
#: real calibration data that is merely ill-conditioned keeps pivots far above this).
_PIVOT_RTOL = 1e-12


# -- the layer's Hessian -----------------------------------------------------------------------
def reconstruction_hessian(X: np.ndarray) -> np.ndarray:
    """Hessian :math:`H = \\frac2M X X^T` of a layer's reconstruction error.

    Parameters
    ----------
    X : ndarray, shape (d_col, M)
        Calibration inputs of the layer, one column per sample (for a convolution, per sample and
        output position: the unfolded input, ``M = N * H_out * W_out``).

    Returns
    -------
    H : ndarray (float64), shape (d_col, d_col)
        Symmetric positive semi-definite; singular when ``M < d_col`` or when some input is a
        linear combination of others (a ReLU that never fires gives a zero row).

    Notes
    -----
    For a row :math:`w` of the weight, :math:`\\frac1M \\|(w - \\hat w)^T X\\|^2 =
    \\frac12 (w - \\hat w)^T H (w - \\hat w)`: with this scaling the errors of the module are
    mean squared output errors per column of ``X`` (GPTQ's code scales :math:`H` the same way).
    """
    X = check_array(X, "X", ndim=2, kind="real").astype(np.float64)
    return 2.0 * (X @ X.T) / X.shape[1]


def reconstruction_error(weight: np.ndarray, new_weight: np.ndarray, hessian: np.ndarray) -> float:
    """:math:`\\sum_i \\frac12 (w_i - \\hat w_i)^T H (w_i - \\hat w_i)`, the reconstruction error.

    Parameters
    ----------
    weight, new_weight : ndarray, shape (d_row, d_col)
        The original and the compressed weight (any shape whose rows flatten to ``d_col``).
    hessian : ndarray, shape (d_col, d_col)
        :func:`reconstruction_hessian` of the calibration inputs.

    Returns
    -------
    float
        With :math:`H = \\frac2M X X^T`, equal to :math:`\\frac1M \\|W X - \\hat W X\\|_F^2`.
    """
    W = _as_matrix(weight, "weight")
    V = _as_matrix(new_weight, "new_weight")
    if V.shape != W.shape:
        raise ValueError(f"new_weight must have shape {W.shape}, got {V.shape}")
    H = _check_hessian(hessian, W.shape[1])
    D = W - V
    return float(0.5 * np.sum((D @ H) * D))


def _as_matrix(weight: np.ndarray, name: str = "weight") -> np.ndarray:
    """A weight as a float64 matrix (d_row, d_col), rows flattened (a copy)."""
    arr = check_array(weight, name, kind="real")
    if arr.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (d_row, d_col), got {arr.shape}")
    return arr.reshape(arr.shape[0], -1).astype(np.float64)


def _check_hessian(hessian: np.ndarray, d_col: int) -> np.ndarray:
    H = check_array(hessian, "hessian", ndim=2, kind="real").astype(np.float64)
    if H.shape != (d_col, d_col):
        raise ValueError(f"hessian must have shape ({d_col}, {d_col}), got {H.shape}")
    if (np.diag(H) < 0).any():
        raise ValueError("hessian has a negative diagonal entry: it is not 2 X X^T / M")
    return 0.5 * (H + H.T)


def _check_damping(damping: float) -> float:
    return check_float(damping, "damping", 0.0)


def _prepare(
    weight: np.ndarray, hessian: np.ndarray, damping: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W, H, dead)``: the weight as a float64 matrix, the damped Hessian, the dead inputs.

    A dead input (zero on every calibration sample: ``H_jj = 0``) gets ``H_jj = 1`` so that
    ``H`` can be factored; then :math:`\\lambda = \\text{damping} \\cdot
    \\overline{\\operatorname{diag} H}` is added to the diagonal, as in GPTQ's code.
    """
    W = _as_matrix(weight)
    H = _check_hessian(hessian, W.shape[1]).copy()
    damping = _check_damping(damping)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    H[np.diag_indices_from(H)] += damping * float(np.mean(np.diag(H)))
    return W, H, dead


def _cholesky_lower(H: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``H``, or a clear ``LinAlgError`` if ``H`` is singular."""
    try:
        L = scipy.linalg.cholesky(H, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        L = None
    if L is None or (np.diag(L) ** 2 < _PIVOT_RTOL * np.diag(H)).any():
        raise np.linalg.LinAlgError(
            "the Cholesky factorization of the Hessian H = 2 X X^T / M failed: H is singular "
            "(fewer calibration columns than inputs, or inputs that are linear combinations of "
            "others). Use damping > 0 (GPTQ and SparseGPT use 0.01: lambda = 0.01 * mean(diag "
            "H) is added to the diagonal) or more calibration data"
        )
    return L


def _inverse(H: np.ndarray) -> np.ndarray:
    """:math:`H^{-1}` of a symmetric positive definite ``H`` through its Cholesky factor."""
    L = _cholesky_lower(H)
    Hinv = scipy.linalg.cho_solve((L, True), np.eye(H.shape[0]), check_finite=False)
    return 0.5 * (Hinv + Hinv.T)


def _upper_inverse_factor(H: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor ``U`` of :math:`H^{-1}` (``U.T @ U == inv(H)``)."""
    return scipy.linalg.cholesky(_inverse(H), lower=False, check_finite=False)


def inverse_hessian_cholesky(hessian: np.ndarray, *, damping: float = 0.01) -> np.ndarray:
    """The Cholesky form of the inverse Hessian that GPTQ and SparseGPT sweep with.

    Parameters
    ----------
    hessian : ndarray, shape (d_col, d_col)
        :func:`reconstruction_hessian` of the calibration inputs.
    damping : float >= 0
        :math:`\\lambda = \\text{damping} \\cdot \\overline{\\operatorname{diag} H}` is added to
        the diagonal first (0.01 in GPTQ). Dead inputs (``H_jj = 0``) get ``H_jj = 1``.

    Returns
    -------
    U : ndarray (float64), shape (d_col, d_col)
        Upper triangular with :math:`U^T U = (H + \\lambda I)^{-1}`.

    Raises
    ------
    numpy.linalg.LinAlgError
        (a ``ValueError``) when the damped Hessian is singular: with ``damping=0`` and fewer
        calibration columns than inputs, for instance.

    Notes
    -----
    Quantize or prune the columns in the order :math:`0, 1, \\dots` and let :math:`F_k` be the
    columns from :math:`k` on. OBS needs, at step :math:`k`, row :math:`k` of
    :math:`H_{F_k}^{-1}`, the inverse of :math:`H` restricted to :math:`F_k`; it is obtained
    from :math:`H_{F_{k-1}}^{-1}` by one step of Gaussian elimination (OBS's downdate,
    :func:`refimpl.pruning.obs_update`). Those rows are exactly the rows of the Cholesky factor,
    scaled:

    .. math:: U_{k,k:} = \\frac{[H_{F_k}^{-1}]_{k,:}}{\\sqrt{[H_{F_k}^{-1}]_{kk}}},

    so one factorization gives every downdate at once, for every row of ``W`` (they share
    ``H``), and it is numerically more stable than repeated downdates.

    References
    ----------
    .. [1] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
       post-training quantization for generative pre-trained transformers. ICLR.
    """
    H = check_array(hessian, "hessian", ndim=2, kind="real")
    _, H, _ = _prepare(np.zeros((1, H.shape[1])), H, damping)
    return _upper_inverse_factor(H)


# -- the OBS step on many rows at once -----------------------------------------------------------
def _obs_step_rows(
    w: np.ndarray, hinv: np.ndarray, j: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """OBS's step (chapter 3, :func:`~refimpl.pruning.obs_update`) on a batch of rows, in place.

    Row ``b`` of ``w`` (B, d) has its own inverse Hessian ``hinv[b]`` (B, d, d); its entry
    ``j[b]`` is set to ``target[b]`` (0 to prune, the grid point to quantize) and the others move
    to the best place:

    .. math:: \\delta w = -\\frac{w_q - t}{[H^{-1}]_{qq}} H^{-1} e_q, \\qquad
              H^{-1} \\leftarrow H^{-1} - \\frac{H^{-1} e_q e_q^T H^{-1}}{[H^{-1}]_{qq}},

    which is OBS's formula with the error :math:`w_q - t` in place of :math:`w_q`. Returns the
    exact increase of the quadratic, :math:`(w_q - t)^2 / (2 [H^{-1}]_{qq})`, per row.

    Only the lower triangle (and the diagonal) of each ``hinv[b]`` is kept up to date: the
    downdate is BLAS's symmetric rank-1 update ``dsyr`` in place, ten times faster than a
    batched outer product, which allocates a (B, d, d) temporary at every step.
    """
    losses = np.zeros(w.shape[0])
    for b in range(w.shape[0]):
        q, h = int(j[b]), hinv[b]
        col = np.concatenate([h[q, :q], h[q:, q]])  # H^{-1} e_q from the lower triangle
        dq = col[q]
        err = w[b, q] - target[b]
        if dq > 0:  # a non-positive pivot is round-off on a weight with nothing left to move
            w[b] -= (err / dq) * col
            _dsyr(-1.0 / dq, col, a=h.T, lower=0, overwrite_a=True)  # h.T: the same memory
            losses[b] = 0.5 * err**2 / dq
        w[b, q] = target[b]
        h[q, :q] = 0.0
        h[q:, q] = 0.0
    return losses


# -- N:M masks ------------------------------------------------------------------------------------
def _check_nm(nm: object) -> tuple[int, int]:
    if not isinstance(nm, tuple) or len(nm) != 2:
        raise TypeError(f"nm must be a pair (N, M) of ints such as (2, 4), got {nm!r}")
    m = check_int(nm[1], "nm[1] (M)", 2)
    n = check_int(nm[0], "nm[0] (N)", 1, m - 1)
    return n, m


def _check_groups(d_col: int, m: int, what: str = "the weight") -> None:
    if d_col % m:
        raise ValueError(
            f"N:M sparsity needs a row length divisible by M = {m}, but {what} has rows of "
            f"{d_col} inputs"
        )


def nm_mask(scores: np.ndarray, nm: tuple[int, int]) -> np.ndarray:
    """N:M mask: in every group of M consecutive inputs of a row, keep the N of largest score.

    Parameters
    ----------
    scores : ndarray, shape (d_row, ...)
        One score per weight entry (``|W|`` for magnitude, :func:`wanda_scores` for Wanda); each
        row is flattened (a convolution weight (C_out, C_in, kH, kW) groups its im2col columns,
        in C order), and its length must be a multiple of M.
    nm : (int, int)
        ``(N, M)``: N entries *kept* (nonzero) in every M consecutive ones, ``1 <= N < M``.
        ``(2, 4)`` is the 2:4 pattern of NVIDIA's sparse tensor cores.

    Returns
    -------
    mask : ndarray of bool, shape of ``scores``
        ``True`` for the kept entries: exactly N per group, so exactly M - N zeros per group and
        a sparsity of exactly ``1 - N / M``. Ties are broken by position, as in
        :func:`~refimpl.pruning.mask_from_scores` (the earlier entry is removed first).

    Notes
    -----
    We follow the convention of the hardware and of most papers (Mishra et al. 2021; Zhou et al.
    2021; Sun et al. 2024): "N:M" means *at most N nonzeros in every M consecutive weights*. The
    reference code of SparseGPT and Wanda counts zeros instead (``prunen=2, prunem=4``); for 2:4
    and 4:8, the patterns used in practice, both readings give the same mask. Storage:
    :func:`nm_storage`.

    References
    ----------
    .. [1] Mishra, A. et al. (2021) Accelerating sparse deep neural networks. arXiv:2104.08378.
    .. [2] Zhou, A. et al. (2021) Learning N:M fine-grained structured sparse neural networks
       from scratch. ICLR.

    Examples
    --------
    >>> nm_mask(np.array([[4.0, 1.0, 3.0, 2.0, 0.1, 0.2, 0.4, 0.3]]), (2, 4)).astype(int)
    array([[1, 0, 1, 0, 0, 0, 1, 1]])
    """
    n, m = _check_nm(nm)
    s = check_array(scores, "scores", kind="real")
    if s.ndim < 2:
        raise ValueError(f"scores must have at least 2 dimensions (d_row, ...), got {s.shape}")
    rows = s.shape[0]
    flat = s.reshape(rows, -1).astype(np.float64)
    _check_groups(flat.shape[1], m, "scores")
    groups = flat.reshape(rows, -1, m)
    order = np.argsort(groups, axis=2, kind="stable")  # ascending: the first M - N go
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :, m - n :], True, axis=2)
    return keep.reshape(s.shape)


@dataclass(frozen=True)
class NMStorage:
    """Bits an N:M sparse weight takes, against the dense weight (see :func:`nm_storage`).

    Attributes
    ----------
    value_bits : int
        The kept values: ``N`` per group of ``M``, ``value_bits`` each.
    index_bits : int
        The position of each kept value within its group, ``ceil(log2 M)`` bits each (2 bits
        for 2:4).
    total_bits : int
        ``value_bits + index_bits``.
    dense_bits : int
        The dense weight at the same value width.
    bits_per_weight : float
        ``total_bits`` per entry of the dense weight.
    ratio : float
        ``total_bits / dense_bits`` (0.5625 for 2:4 in float16, 0.53125 in float32).
    """

    value_bits: int
    index_bits: int
    total_bits: int
    dense_bits: int
    bits_per_weight: float
    ratio: float


def nm_storage(
    shape: tuple[int, ...], nm: tuple[int, int], *, value_bits: int = 32
) -> NMStorage:
    """Storage of an N:M sparse weight: N values and N small indices per group of M.

    Parameters
    ----------
    shape : tuple of int
        The weight's shape, e.g. (300, 784); rows flatten to a multiple of M.
    nm : (int, int)
        ``(N, M)`` as in :func:`nm_mask`.
    value_bits : int
        Bits per stored value (32 for float32, 16 for the float16 of sparse tensor cores, 8 for
        int8).

    Returns
    -------
    NMStorage

    Notes
    -----
    Each group of M weights stores its N kept values and, for each, its position in the group
    in :math:`\\lceil \\log_2 M \\rceil` bits: :math:`N (b + \\lceil \\log_2 M \\rceil)` bits
    instead of :math:`M b`. For 2:4 in float16 that is :math:`2 (16 + 2) = 36` bits instead of
    64, a ratio of 0.5625, as NVIDIA's format stores it (Mishra et al. 2021). Unlike CSR
    (:mod:`refimpl.coding.sparse`) the index cost is fixed and small, and the layout is regular
    enough for hardware to skip the zeros.

    Examples
    --------
    >>> nm_storage((300, 784), (2, 4), value_bits=16).ratio
    0.5625
    """
    n, m = _check_nm(nm)
    value_bits = check_int(value_bits, "value_bits", 1, 64)
    if not isinstance(shape, tuple) or len(shape) < 2:
        raise TypeError(f"shape must be a tuple of at least 2 ints, got {shape!r}")
    dims = [check_int(v, "shape", 1) for v in shape]
    size = math.prod(dims)
    _check_groups(size // dims[0], m, f"a weight of shape {tuple(dims)}")
    groups = size // m
    vbits = groups * n * value_bits
    ibits = groups * n * math.ceil(math.log2(m))
    dense = size * value_bits
    return NMStorage(vbits, ibits, vbits + ibits, dense, (vbits + ibits) / size,
                     (vbits + ibits) / dense)  # fmt: skip


def _check_target(sparsity: float | None, nm: tuple[int, int] | None) -> tuple[float, tuple | None]:
    if (sparsity is None) == (nm is None):
        raise ValueError("give exactly one of sparsity (unstructured) or nm (N:M, e.g. (2, 4))")
    if nm is not None:
        n, m = _check_nm(nm)
        return 1.0 - n / m, (n, m)
    return check_sparsity(sparsity), None


def _check_keep(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    keep = np.asarray(mask)
    if keep.dtype != bool:
        if not np.issubdtype(keep.dtype, np.number) or not np.isin(keep, (0, 1)).all():
            raise ValueError("mask must be boolean or hold only 0 and 1")
        keep = keep.astype(bool)
    if keep.size != shape[0] * shape[1] or keep.shape[0] != shape[0]:
        raise ValueError(f"mask must have the weight's shape {shape}, got {keep.shape}")
    return keep.reshape(shape).copy()


def _rank_removed_first(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Scores with the already removed entries below every live one (they go first)."""
    floor = float(scores.min()) - 1.0 if scores.size else 0.0
    return np.where(keep, scores, floor)


def _select(
    scores: np.ndarray, keep: np.ndarray, sparsity: float, nm: tuple[int, int] | None, per: str
) -> np.ndarray:
    """Mask removing the lowest scores: per ``"layer"`` or per ``"row"``, or N:M."""
    ranked = _rank_removed_first(scores, keep)
    if nm is not None:
        return nm_mask(ranked, nm) & keep
    if per == "row":
        return np.stack([mask_from_scores(r, sparsity) for r in ranked]) & keep
    return mask_from_scores(ranked, sparsity) & keep


# -- Wanda ----------------------------------------------------------------------------------------
def wanda_scores(weight: np.ndarray, input_norms: np.ndarray) -> np.ndarray:
    """Wanda's score :math:`S_{ij} = |W_{ij}| \\, \\|X_j\\|_2`.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col) or (C_out, C_in, kH, kW)
    input_norms : ndarray, shape (d_col,)
        :math:`\\|X_j\\|_2`, the norm of input ``j`` over the calibration samples (any common
        scale: ``sqrt(diag(H))`` works as well).

    Returns
    -------
    scores : ndarray (float64), shape of ``weight``

    Notes
    -----
    With :math:`H = \\frac2M X X^T`, OBS's saliency of :math:`w_{ij}` is
    :math:`w_{ij}^2 / [H^{-1}]_{jj}`. If :math:`H` were diagonal (uncorrelated inputs),
    :math:`1/[H^{-1}]_{jj} = H_{jj} \\propto \\|X_j\\|^2`, and the saliency would be
    :math:`\\propto (|W_{ij}| \\|X_j\\|)^2`: Wanda's score is OBS with the off-diagonal of the
    Hessian dropped, and with no weight update.

    References
    ----------
    .. [1] Sun, M., Liu, Z., Bair, A. and Kolter, J. Z. (2024) A simple and effective pruning
       approach for large language models. ICLR.
    """
    W = check_array(weight, "weight", kind="real")
    if W.ndim < 2:
        raise ValueError(f"weight must have at least 2 dimensions (d_row, d_col), got {W.shape}")
    norms = check_array(input_norms, "input_norms", ndim=1, kind="real").astype(np.float64)
    d_col = W.size // W.shape[0]
    if norms.shape != (d_col,):
        raise ValueError(f"input_norms must have shape ({d_col},), got {norms.shape}")
    if (norms < 0).any():
        raise ValueError("input_norms must be non-negative")
    return (np.abs(W.reshape(W.shape[0], -1)).astype(np.float64) * norms).reshape(W.shape)


def wanda_mask(
    weight: np.ndarray,
    input_norms: np.ndarray,
    sparsity: float | None = None,
    *,
    nm: tuple[int, int] | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Wanda: remove, in each output row, the weights of smallest :math:`|W_{ij}| \\|X_j\\|_2`.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col) or (C_out, C_in, kH, kW)
    input_norms : ndarray, shape (d_col,)
        :math:`\\|X_j\\|_2` over the calibration inputs (see :func:`wanda_scores`).
    sparsity : float in [0, 1), optional
        Fraction removed from *each row* (``round(sparsity * d_col)`` entries). Give this or
        ``nm``.
    nm : (int, int), optional
        N:M instead (:func:`nm_mask`).
    mask : ndarray of bool, shape of ``weight``, optional
        Entries already removed (``False``); they stay removed and count toward the target.

    Returns
    -------
    mask : ndarray of bool, shape of ``weight``
        ``True`` for the kept entries. The weights themselves are not changed: Wanda has no
        update step.

    Notes
    -----
    The comparison group is the output row (each output keeps the same number of inputs), not
    the whole layer: Sun et al. found this matters for language models, where some outputs have
    much larger weights than others.

    References
    ----------
    .. [1] Sun, M., Liu, Z., Bair, A. and Kolter, J. Z. (2024) A simple and effective pruning
       approach for large language models. ICLR.
    """
    s, nm = _check_target(sparsity, nm)
    scores = wanda_scores(weight, input_norms)
    rows = scores.shape[0]
    flat = scores.reshape(rows, -1)
    keep = _check_keep(mask, flat.shape)
    return _select(flat, keep, s, nm, "row").reshape(scores.shape)


# -- the exact update for a given mask ------------------------------------------------------------
@dataclass
class OneShotPruneResult:
    """Result of a one-shot pruning of one weight matrix.

    Attributes
    ----------
    weight : ndarray (float64), shape (d_row, d_col)
        The pruned and updated weight (zero where ``mask`` is ``False``).
    mask : ndarray of bool, shape (d_row, d_col)
        ``True`` for the kept entries.
    loss : float
        The method's own prediction of the reconstruction error,
        :math:`\\sum_i \\frac12 \\delta w_i^T H \\delta w_i` for the damped :math:`H` (exact on
        that quadratic); ``nan`` for a method without a model of the error (Wanda, magnitude).
    """

    weight: np.ndarray
    mask: np.ndarray
    loss: float


def obs_reconstruct(
    weight: np.ndarray, hessian: np.ndarray, mask: np.ndarray, *, damping: float = 0.01
) -> OneShotPruneResult:
    """The best weights for a given mask: each row minimizes its reconstruction error.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
    hessian : ndarray, shape (d_col, d_col)
        :func:`reconstruction_hessian`.
    mask : ndarray of bool, shape (d_row, d_col)
        ``True`` for the entries kept (a magnitude, Wanda or N:M mask).
    damping : float >= 0
        Relative dampening of :math:`H` (see :func:`inverse_hessian_cholesky`).

    Returns
    -------
    OneShotPruneResult

    Notes
    -----
    Row :math:`i` with removed set :math:`Q_i` takes OBS's update for several weights at once,

    .. math:: \\delta w_i = -H^{-1}_{:,Q_i} \\big(H^{-1}_{Q_i Q_i}\\big)^{-1} w_{i,Q_i},

    the minimizer of :math:`\\frac12 \\delta w^T H \\delta w` with :math:`w_{Q_i} = 0`
    (:func:`refimpl.pruning.layerwise_obs_prune` does the same with the bias folded in). It
    solves one linear system per row, of the size of the smaller of the removed and the kept
    sets; :func:`sparsegpt_prune` approximates the same update much more cheaply.

    References
    ----------
    .. [1] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. NeurIPS 5.
    .. [2] Dong, X., Chen, S. and Pan, S. J. (2017) Learning to prune deep neural networks via
       layer-wise optimal brain surgeon. NeurIPS 30.
    """
    W, H, _ = _prepare(weight, hessian, damping)
    keep = _check_keep(mask, W.shape)
    Hinv = _inverse(H)
    out = np.stack([_row_obs(W[i], H, Hinv, ~keep[i]) for i in range(W.shape[0])])
    out[~keep] = 0.0
    return OneShotPruneResult(out, keep, _loss(W, out, H))


def _loss(W: np.ndarray, V: np.ndarray, H: np.ndarray) -> float:
    D = W - V
    return float(0.5 * np.sum((D @ H) * D))


def _obs_select(
    W: np.ndarray, Hinv: np.ndarray, keep: np.ndarray, sparsity: float, nm: tuple | None
) -> np.ndarray:
    """Layer-wise OBS's mask: the lowest saliencies :math:`w_{ij}^2 / [H^{-1}]_{jj}`."""
    return _select(W**2 / np.diag(Hinv)[None, :], keep, sparsity, nm, "layer")


# -- OBC ------------------------------------------------------------------------------------------
def obc_prune(
    weight: np.ndarray,
    hessian: np.ndarray,
    sparsity: float | None = None,
    *,
    nm: tuple[int, int] | None = None,
    damping: float = 0.01,
    allocation: str = "layer",
    rows_per_batch: int = 16,
) -> OneShotPruneResult:
    """Optimal Brain Compression: exact greedy OBS on each row of a layer.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
    hessian : ndarray, shape (d_col, d_col)
        :func:`reconstruction_hessian`.
    sparsity : float in [0, 1), optional
        Fraction of the layer's entries removed. Give this or ``nm``.
    nm : (int, int), optional
        N:M instead: a row removes its weights one at a time, and a group that has lost M - N
        is closed (OBC's ``nmprune``).
    damping : float >= 0
        Relative dampening of :math:`H` (see :func:`inverse_hessian_cholesky`).
    allocation : {"layer", "row"}
        ``"row"``: every row loses ``round(sparsity * d_col)`` weights. ``"layer"`` (OBC):
        every row is pruned greedily to the end, and the ``round(sparsity * d_row * d_col)``
        removals of smallest loss over the whole layer are kept, so rows that matter more keep
        more weights; this costs the full ``d_col`` steps per row.
    rows_per_batch : int >= 1
        Rows processed together (each carries its own ``(d_col, d_col)`` inverse Hessian).

    Returns
    -------
    OneShotPruneResult

    Notes
    -----
    All rows share :math:`H`, but once a row has lost a weight its inverse Hessian differs from
    the others'. Each row runs chapter 3's greedy OBS (:func:`refimpl.pruning.obs_prune`):
    remove the weight of least saliency :math:`w_q^2 / (2[H^{-1}]_{qq})`, move the others by
    :math:`\\delta w = -\\frac{w_q}{[H^{-1}]_{qq}} H^{-1} e_q`, and remove row and column
    :math:`q` from :math:`H^{-1}` by one step of Gaussian elimination,
    :math:`H^{-1} \\leftarrow H^{-1} - H^{-1} e_q e_q^T H^{-1} / [H^{-1}]_{qq}`. On the
    quadratic each step is exact, so the sum of the saliencies is the final error. Cost:
    :math:`O(d_{col}^2)` per removal, :math:`O(d_{row} d_{col}^3)` for a layer pruned to the
    end (the reason for GPTQ and SparseGPT).

    Where we depart: with ``allocation="layer"`` the chosen removals of a row are its first
    ones in greedy order; the final weights are recomputed for that set by the exact solve of
    :func:`obs_reconstruct` (they equal the greedy's intermediate weights) instead of being
    stored for every step as OBC's code does. OBC sorts the step losses of all rows; since a
    row's losses need not increase, a row's count is the number of its steps among the smallest
    losses, as in OBC's ``prune_blocked``. Weights on a dead input are set to zero first.

    References
    ----------
    .. [1] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression: a framework for
       accurate post-training quantization and pruning. NeurIPS 35.
    .. [2] Hassibi, B. and Stork, D. G. (1993) Second order derivatives for network pruning:
       Optimal Brain Surgeon. NeurIPS 5.
    """
    s, nm = _check_target(sparsity, nm)
    if allocation not in ("layer", "row"):
        raise ValueError(f"allocation must be 'layer' or 'row', got {allocation!r}")
    batch = check_int(rows_per_batch, "rows_per_batch", 1)
    W0, H, dead = _prepare(weight, hessian, damping)
    W0[:, dead] = 0.0
    rows, d = W0.shape
    Hinv = _inverse(H)
    if nm is not None:
        n, m = nm
        _check_groups(d, m)
        steps = d // m * (m - n)
    elif allocation == "row":
        steps = round(s * d)
    else:
        steps = d
    orders = np.zeros((rows, steps), dtype=np.int64)
    losses = np.zeros((rows, steps))
    out = W0.copy()
    for r0 in range(0, rows, batch):
        r1 = min(r0 + batch, rows)
        w = W0[r0:r1].copy()
        hinv = np.repeat(Hinv[None], r1 - r0, axis=0)
        removed = np.zeros(w.shape, dtype=bool)
        b = np.arange(r1 - r0)
        for t in range(steps):
            diag = np.diagonal(hinv, axis1=1, axis2=2)
            scores = np.full(w.shape, np.inf)
            live = ~removed & (diag > 0)
            scores[live] = w[live] ** 2 / diag[live]
            if nm is not None:
                n, m = nm
                full = removed.reshape(len(b), -1, m).sum(axis=2) >= m - n
                scores[np.repeat(full, m, axis=1)] = np.inf
            j = np.argmin(scores, axis=1)
            losses[r0:r1, t] = _obs_step_rows(w, hinv, j, np.zeros(len(b)))
            removed[b, j] = True
            orders[r0:r1, t] = j
        w[removed] = 0.0
        out[r0:r1] = w
    if nm is not None or allocation == "row":
        keep = np.ones(W0.shape, dtype=bool)
        np.put_along_axis(keep, orders, False, axis=1)
        return OneShotPruneResult(out, keep, float(losses.sum()))
    k = round(s * rows * d)
    chosen = np.argsort(losses.ravel(), kind="stable")[:k]
    counts = np.bincount(chosen // d, minlength=rows)
    keep = np.ones(W0.shape, dtype=bool)
    for i in range(rows):
        keep[i, orders[i, : counts[i]]] = False
    res = obs_reconstruct(W0, H, keep, damping=0.0)
    return OneShotPruneResult(res.weight, keep, res.loss)


# -- SparseGPT ------------------------------------------------------------------------------------
def sparsegpt_prune(
    weight: np.ndarray,
    hessian: np.ndarray,
    sparsity: float | None = None,
    *,
    nm: tuple[int, int] | None = None,
    block_size: int | None = 128,
    damping: float = 0.01,
    mask: np.ndarray | None = None,
) -> OneShotPruneResult:
    """SparseGPT: prune a layer column by column with OBS updates shared by all rows.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
    hessian : ndarray, shape (d_col, d_col)
        :func:`reconstruction_hessian`.
    sparsity : float in [0, 1), optional
        Fraction of the layer's entries removed (exactly ``round(sparsity * d_row * d_col)``
        with no prior ``mask``). Give this or ``nm``.
    nm : (int, int), optional
        N:M instead (:func:`nm_mask`): each group of M columns is chosen when the sweep
        reaches it, from the weights as updated so far.
    block_size : int or None
        Columns per block (128 in the paper; ``None``: the whole layer). The unstructured mask
        is chosen for a block at a time, from the weights updated by the blocks before it; the
        updates inside a block are applied at once to the columns after it ("lazy batch").
        With N:M it must be a multiple of M.
    damping : float >= 0
        Relative dampening of :math:`H` (0.01 in the paper; see
        :func:`inverse_hessian_cholesky`).
    mask : ndarray of bool, shape (d_row, d_col), optional
        Entries already removed (``False``); they stay removed and count toward the target.
        A mask at the target sparsity (a Wanda or magnitude mask) leaves only the update to do.

    Returns
    -------
    OneShotPruneResult

    Notes
    -----
    Process the columns in the order :math:`0, \\dots, d_{col} - 1`. When column :math:`j` is
    reached, every row sets its entry to :math:`q_{ij} = w_{ij}` (kept) or 0 (removed) and
    moves the entries of the columns still to come by OBS's update,

    .. math:: \\delta w_{i, j:} = -\\frac{w_{ij} - q_{ij}}{U_{jj}} U_{j, j:},

    where :math:`U` is the upper Cholesky factor of :math:`H^{-1}` (see
    :func:`inverse_hessian_cholesky`): since every row drops the columns in the same order,
    every row needs the same sequence of inverse Hessians, and they are the rows of :math:`U`.
    Columns already processed are never revisited, so the update is optimal only with respect
    to the columns after :math:`j` (OBS's exact update would also move the earlier kept ones).
    The mask of a block is chosen with OBS's saliency :math:`w_{ij}^2 / U_{jj}^2` on the
    current weights, the ``round`` of the target over the layer so far (so the layer's total
    is exact), compared over the whole block as in the paper's code. Cost:
    :math:`O(d_{col}^3 + d_{row} d_{col}^2)`, against OBC's :math:`O(d_{row} d_{col}^3)`.

    Where we depart: the paper's code removes ``int(numel * sparsity)`` entries per block
    (ties included); we round the cumulative target so that the layer's count is exact. Weights
    on a dead input (``H_jj = 0``) are set to zero first, as in the paper's code, so they are
    the first removed.

    References
    ----------
    .. [1] Frantar, E. and Alistarh, D. (2023) SparseGPT: massive language models can be
       accurately pruned in one-shot. ICML.
    .. [2] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression. NeurIPS 35.
    """
    s, nm = _check_target(sparsity, nm)
    W, H, dead = _prepare(weight, hessian, damping)
    rows, d = W.shape
    keep = _check_keep(mask, W.shape)
    block = d if block_size is None else check_int(block_size, "block_size", 1)
    if nm is not None:
        _check_groups(d, nm[1])
        if block % nm[1] and block < d:
            raise ValueError(f"block_size must be a multiple of M = {nm[1]} for N:M, got {block}")
    W[:, dead] = 0.0
    U = _upper_inverse_factor(H)
    removed_so_far = 0
    loss = 0.0
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        W1 = W[:, i1:i2].copy()
        U1 = U[i1:i2, i1:i2]
        keep1 = keep[:, i1:i2]
        err1 = np.zeros_like(W1)
        if nm is None:
            # cumulative rounding: after this block, round(s * rows * i2) entries are removed
            k = max(round(s * rows * i2) - removed_so_far, int((~keep1).sum()))
            k = min(k, keep1.size)
            if k:  # the k lowest saliencies of the block go (ties: the earlier entry first)
                scores = _rank_removed_first(W1**2 / np.diag(U1)[None, :] ** 2, keep1)
                gone = np.argsort(scores.ravel(), kind="stable")[:k]
                keep1[np.unravel_index(gone, keep1.shape)] = False
            removed_so_far += int((~keep1).sum())
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                g = slice(i, i + nm[1])
                scores = W1[:, g] ** 2 / np.diag(U1)[g][None, :] ** 2
                keep1[:, g] &= nm_mask(_rank_removed_first(scores, keep1[:, g]), nm)
            w = W1[:, i]
            q = np.where(keep1[:, i], w, 0.0)
            e = (w - q) / U1[i, i]
            loss += 0.5 * float(e @ e)
            W1[:, i:] -= np.outer(e, U1[i, i:])
            W1[:, i] = q
            err1[:, i] = e
        W[:, i1:i2] = W1
        W[:, i2:] -= err1 @ U[i1:i2, i2:]
    W[~keep] = 0.0
    return OneShotPruneResult(W, keep, float(loss))


# -- applying a method to a model ----------------------------------------------------------------
@dataclass(frozen=True)
class LayerReport:
    """What one-shot compression did to one layer.

    Attributes
    ----------
    name : str
        The layer's dotted name (``"fc1"``).
    shape : (int, int)
        ``(d_row, d_col)``: the weight as a matrix.
    n_columns : int
        ``M``, the calibration columns the layer saw (samples, times output positions for a
        convolution).
    error : float
        :math:`\\frac1M \\|W X - \\hat W X\\|_F^2` on those columns (the bias cancels), where
        ``X`` is the input the layer received in the calibration pass.
    relative_error : float
        ``error`` divided by :math:`\\frac1M \\|W X\\|_F^2`.
    sparsity : float
        Fraction of exact zeros in the new weight.
    seconds : float
        Time of the method on this layer (not counting the pass that collects its inputs).
    val_relative_error : float
        ``relative_error`` on the held-out inputs given as ``validation`` (``nan`` without):
        with fewer calibration columns than inputs, :math:`H` is singular and a method can fit
        the calibration data far better than other data.
    """

    name: str
    shape: tuple[int, int]
    n_columns: int
    error: float
    relative_error: float
    sparsity: float
    seconds: float
    val_relative_error: float = float("nan")


@dataclass
class OneShotReport:
    """Result of :func:`one_shot_prune` and :func:`~refimpl.quantization.one_shot_quantize`.

    Attributes
    ----------
    model : Sequential
        The compressed model (the one given, changed in place).
    method : str
    layers : dict of str to LayerReport
        In the order the layers were compressed.
    output_error : float
        Relative Frobenius error of the model's outputs on the calibration data, against the
        outputs before compression.
    seconds : float
        Wall time of the whole call (the calibration passes included).
    val_output_error : float
        ``output_error`` on the held-out ``validation`` inputs (``nan`` without).
    """

    model: Sequential
    method: str
    layers: dict[str, LayerReport] = field(default_factory=dict)
    output_error: float = float("nan")
    seconds: float = 0.0
    val_output_error: float = float("nan")

    def rows(self) -> list[tuple[str, float, float, float]]:
        """``(layer, relative error, sparsity, seconds)`` per layer, for a table."""
        return [(r.name, r.relative_error, r.sparsity, r.seconds) for r in self.layers.values()]


def _layer_gram(layer: Layer, a: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """``(X X^T, M)`` of the layer's inputs ``a`` (N, ...), accumulated in float64."""
    d = layer.weight[0].size
    G = np.zeros((d, d))
    count = 0
    for i in range(0, len(a), batch_size):
        rows = _layer_input_rows(layer, a[i : i + batch_size])  # (M_batch, d_col)
        G += rows.T @ rows
        count += rows.shape[0]
    return G, count


def _forward(layer: Layer, a: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [layer.forward(a[i : i + batch_size], train=False) for i in range(0, len(a), batch_size)]
    )


def _leaves(model: Layer, prefix: str = "") -> Iterable[tuple[str, Layer]]:
    """Leaf layers in forward order (nested Sequentials walked), as ``weighted_layers`` names."""
    for name, layer in model.named_layers():
        if isinstance(layer, Sequential):
            yield from _leaves(layer, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", layer


def _check_calibration(
    model: Layer, X: np.ndarray, batch_size: int, validation: np.ndarray | None = None
) -> tuple[np.ndarray, int, np.ndarray | None]:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    X = check_array(X, "X", kind="real")
    if X.ndim < 2:
        raise ValueError(f"X must hold calibration inputs (N, ...), got shape {X.shape}")
    if validation is not None:
        validation = check_array(validation, "validation", kind="real")
        if validation.shape[1:] != X.shape[1:]:
            raise ValueError(f"validation must have samples of shape {X.shape[1:]}, got "
                             f"{validation.shape[1:]}")  # fmt: skip
    return X, check_int(batch_size, "batch_size", 1), validation


def _relative(diff: float, ref: float) -> float:
    return diff / ref if ref > 0 else float(diff > 0)


def _calibrate(
    model: Sequential,
    X: np.ndarray,
    selected: dict[str, Layer],
    compress: Callable[[str, Layer, np.ndarray, np.ndarray], np.ndarray],
    *,
    method: str,
    sequential: bool,
    batch_size: int,
    validation: np.ndarray | None = None,
) -> OneShotReport:
    """The calibration pass shared by the one-shot methods.

    Runs ``X`` through the model one leaf layer at a time. At each selected layer it builds
    :math:`H = \\frac2M X X^T` of the layer's inputs and calls ``compress(name, layer, H, a)``,
    which installs the new weight and returns it as a matrix; the pass then continues with the
    layer's output computed from the new weight (``sequential``) or from the old one. Held-out
    ``validation`` inputs go through the same pass, only to be measured.
    """
    start = time.perf_counter()
    for name, layer in selected.items():
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(f"{name}: one-shot compression supports Conv2d with groups=1 only")
    streams = {"cal": X} if validation is None else {"cal": X, "val": validation}
    reference = {k: predict(model, v, batch_size=batch_size).astype(np.float64)
                 for k, v in streams.items()}  # fmt: skip
    report = OneShotReport(model, method)
    acts = dict(streams)
    for name, layer in _leaves(model):
        if name not in selected:
            acts = {k: _forward(layer, a, batch_size) for k, a in acts.items()}
            continue
        grams = {k: _layer_gram(layer, a, batch_size) for k, a in acts.items()}
        hess = {k: 2.0 * G / count for k, (G, count) in grams.items()}
        W = layer.weight.reshape(layer.weight.shape[0], -1).astype(np.float64)
        if not sequential:
            nxt = {k: _forward(layer, a, batch_size) for k, a in acts.items()}
        tick = time.perf_counter()
        new = compress(name, layer, hess["cal"], acts["cal"])
        seconds = time.perf_counter() - tick
        err = {k: (_loss(W, new, H), _loss(W, np.zeros_like(W), H)) for k, H in hess.items()}
        report.layers[name] = LayerReport(
            name, W.shape, grams["cal"][1], err["cal"][0], _relative(*err["cal"]),
            float(np.mean(new == 0)), seconds,
            _relative(*err["val"]) if "val" in err else float("nan"),
        )  # fmt: skip
        acts = {k: _forward(layer, a, batch_size) for k, a in acts.items()} if sequential else nxt
    for k, v in streams.items():
        out = predict(model, v, batch_size=batch_size).astype(np.float64)
        diff = float(np.linalg.norm(out - reference[k]))
        value = _relative(diff, float(np.linalg.norm(reference[k])))
        if k == "cal":
            report.output_error = value
        else:
            report.val_output_error = value
    report.seconds = time.perf_counter() - start
    return report


def _install_pruned(layer: Layer, weight: np.ndarray, keep: np.ndarray) -> None:
    """Write the updated weight into the layer and AND ``keep`` into its mask."""
    shape = layer.weight.shape
    key = layer.trained_tensor("weight")  # plain, or only masked; anything else is refused
    layer.params[key] = weight.reshape(shape).astype(layer.params[key].dtype)
    Mask.update(layer, "weight", keep.reshape(shape))


_PRUNE_METHODS = ("sparsegpt", "wanda", "magnitude", "obs", "obc")


def one_shot_prune(
    model: Sequential,
    X: np.ndarray,
    sparsity: float | None = None,
    *,
    nm: tuple[int, int] | None = None,
    method: str = "sparsegpt",
    layers: Iterable[str] | None = None,
    damping: float = 0.01,
    block_size: int | None = 128,
    sequential: bool = True,
    batch_size: int = 256,
    validation: np.ndarray | None = None,
) -> OneShotReport:
    """Prune the Linear and Conv2d layers of a model in one shot from calibration inputs.

    Parameters
    ----------
    model : Sequential
        Changed in place: each selected weight gets a :class:`~refimpl.nn.Mask` (ANDed with any
        mask it had) and, for the methods that update weights, its new values. A weight that
        carries anything but masks (a quantizer) is refused: prune before quantizing.
    X : ndarray, shape (N, ...)
        Calibration inputs of the model (no labels): a few hundred images suffice.
    sparsity : float in [0, 1), optional
        Fraction removed from each layer (counting entries already removed). Give this or ``nm``.
    nm : (int, int), optional
        N:M sparsity (N kept in every M consecutive inputs, :func:`nm_mask`) in every selected
        layer; each layer's fan-in must be a multiple of M.
    method : {"sparsegpt", "wanda", "magnitude", "obs", "obc"}
        ``"sparsegpt"``: :func:`sparsegpt_prune`. ``"wanda"``: :func:`wanda_mask`, no update.
        ``"magnitude"``: the smallest :math:`|w|` of the layer (per row for N:M), no update.
        ``"obs"``: layer-wise OBS, the lowest saliencies :math:`w^2/[H^{-1}]_{jj}` of the layer
        then the exact update of :func:`obs_reconstruct`. ``"obc"``: :func:`obc_prune`.
    layers : iterable of str, optional
        Names of the layers to prune (default: every Linear and Conv2d).
    damping : float >= 0
        Relative dampening of each layer's Hessian (methods that use it).
    block_size : int or None
        SparseGPT's block of columns (``None``: the whole layer).
    sequential : bool
        ``True`` (as GPTQ and SparseGPT do): each layer's inputs come from the layers before it
        *already pruned*, so it also corrects their error. ``False``: from the original model,
        as layer-wise OBS does.
    batch_size : int
        Samples per forward pass.
    validation : ndarray, shape (N_val, ...), optional
        Held-out inputs, only measured: each layer's error on them, and the output error.

    Returns
    -------
    OneShotReport
        The model, and per layer its reconstruction error and time (:class:`LayerReport`).

    Notes
    -----
    For each selected layer in forward order: collect its inputs :math:`X` (for a convolution
    its unfolded input, ``(C_in kH kW, N H_out W_out)``), form :math:`H = \\frac2M X X^T`, prune
    the weight viewed as ``(d_row, d_col)``, install it, and compute the layer's output with the
    new weight for the next layer. The bias is not changed. See chapter 10 of the book, "One-shot
    compression".

    References
    ----------
    .. [1] Frantar, E. and Alistarh, D. (2023) SparseGPT: massive language models can be
       accurately pruned in one-shot. ICML.
    .. [2] Sun, M., Liu, Z., Bair, A. and Kolter, J. Z. (2024) A simple and effective pruning
       approach for large language models. ICLR.
    .. [3] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression. NeurIPS 35.
    """
    X, batch_size, validation = _check_calibration(model, X, batch_size, validation)
    if method not in _PRUNE_METHODS:
        raise ValueError(f"method must be one of {_PRUNE_METHODS}, got {method!r}")
    s, nm = _check_target(sparsity, nm)
    damping = _check_damping(damping)
    if block_size is not None:
        check_int(block_size, "block_size", 1)
    selected = prunable_layers(model, layers)
    if not selected:
        raise ValueError("model has no Linear or Conv2d layer to prune")
    for name, layer in selected.items():
        layer.trained_tensor("weight")  # refuse a quantized or shared weight up front
        if nm is not None:
            _check_groups(layer.weight[0].size, nm[1], f"layer {name!r}")

    def compress(name: str, layer: Layer, H: np.ndarray, a: np.ndarray) -> np.ndarray:
        W = layer.weight.reshape(layer.weight.shape[0], -1).astype(np.float64)
        old = Mask.of(layer, "weight")
        keep = None if old is None else old.reshape(W.shape)
        if method == "sparsegpt":
            res = sparsegpt_prune(W, H, None if nm else s, nm=nm, block_size=block_size,
                                  damping=damping, mask=keep)  # fmt: skip
            new, kept = res.weight, res.mask
        elif method == "obc":
            res = obc_prune(W, H, None if nm else s, nm=nm, damping=damping)
            new, kept = res.weight, res.mask
        elif method == "obs":
            _, Hd, _ = _prepare(W, H, damping)
            live = _check_keep(keep, W.shape)
            kept = _obs_select(W, _inverse(Hd), live, s, nm)
            new = obs_reconstruct(W, H, kept, damping=damping).weight
        else:
            if method == "wanda":
                scores = wanda_scores(W, np.sqrt(np.diag(H)))
                per = "row"
            else:
                scores, per = np.abs(W), "layer"
            kept = _select(scores, _check_keep(keep, W.shape), s, nm, per)
            new = np.where(kept, W, 0.0)
        _install_pruned(layer, new, kept)
        return layer.weight.reshape(W.shape).astype(np.float64)

    return _calibrate(model, X, selected, compress, method=method, sequential=bool(sequential),
                      batch_size=batch_size, validation=validation)  # fmt: skip
