"""Truncated SVD of dense layers: one ``Linear`` into two thin ones.

A dense layer ``y = x W^T + b`` with ``W`` of shape (out, in) is replaced by
``y = (x A^T) B^T + b`` with ``A`` (rank, in) and ``B`` (out, rank), the best rank-``rank``
approximation ``B A`` of ``W`` (Eckart and Young). It stores ``rank (in + out)`` weights instead
of ``in out``, and costs as many multiply-accumulates per example. See chapter 7 of the book,
"Truncated SVD of dense layers".

References
----------
.. [1] Eckart, C. and Young, G. (1936) The approximation of one matrix by another of lower rank.
   Psychometrika 1(3), 211-218.
.. [2] Xue, J., Li, J. and Gong, Y. (2013) Restructuring of deep neural network acoustic models
   with singular value decomposition. Interspeech, 2365-2369.
.. [3] Sainath, T. N., Kingsbury, B., Sindhwani, V., Arisoy, E. and Ramabhadran, B. (2013)
   Low-rank matrix factorization for deep neural network training with high-dimensional output
   targets. ICASSP, 6655-6659.
.. [4] Denton, E., Zaremba, W., Bruna, J., LeCun, Y. and Fergus, R. (2014) Exploiting linear
   structure within convolutional networks for efficient evaluation. NeurIPS, 1269-1277.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..nn import Conv2d, Linear, Sequential
from ..surgery.substitute import substitute
from ._checks import check_fraction, check_int, check_linear

__all__ = [
    "energy_kept",
    "rank_for_budget",
    "rank_for_energy",
    "svd_compress",
    "svd_factorize",
    "truncated_svd",
    "weight_spectrum",
]


def _singular_values(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"s must be a non-empty 1-D array of singular values, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("s must hold finite, non-negative singular values")
    return np.sort(s)[::-1]


def energy_kept(s: np.ndarray, rank: int) -> float:
    """Fraction of the squared Frobenius norm kept by the leading ``rank`` singular values.

    Parameters
    ----------
    s : ndarray, shape (k,)
        Singular values (any order; they are sorted in decreasing order first).
    rank : int
        Number kept, ``1 <= rank <= k``.

    Returns
    -------
    float
        :math:`\\sum_{i \\le r} s_i^2 / \\sum_i s_i^2` (1.0 for an all-zero spectrum).
    """
    s = _singular_values(s)
    rank = check_int(rank, "rank", 1, s.size)
    total = float(np.sum(s**2))
    return 1.0 if total == 0.0 else float(np.sum(s[:rank] ** 2) / total)


def rank_for_energy(s: np.ndarray, energy: float) -> int:
    """Smallest rank whose leading singular values keep at least ``energy`` of the spectrum.

    Parameters
    ----------
    s : ndarray, shape (k,)
        Singular values of a weight (any order; sorted in decreasing order first).
    energy : float in (0, 1]
        Fraction of :math:`\\|W\\|_F^2 = \\sum_i s_i^2` to keep.

    Returns
    -------
    int
        The smallest :math:`r \\ge 1` with :math:`\\sum_{i \\le r} s_i^2 \\ge
        \\text{energy} \\sum_i s_i^2`.

    Notes
    -----
    By Eckart-Young the relative Frobenius error of the rank-:math:`r` truncation is then at most
    :math:`\\sqrt{1 - \\text{energy}}`. Xue et al. (2013) chose ranks the same way (a fixed share
    of the sum of singular values, rather than of their squares).
    """
    s = _singular_values(s)
    energy = check_fraction(energy, "energy")
    cumulative = np.cumsum(s**2)
    total = cumulative[-1]
    if total == 0.0:
        return 1
    return int(min(np.searchsorted(cumulative, energy * total, side="left") + 1, s.size))


def rank_for_budget(in_features: int, out_features: int, budget: int | float) -> int:
    """Largest rank whose two factors fit in a budget of weights.

    Parameters
    ----------
    in_features, out_features : int
        Shape of the dense layer (weight (out_features, in_features)).
    budget : int or float
        An ``int`` is a number of weights, at least ``in_features + out_features`` (rank 1);
        a ``float`` in (0, 1] is a fraction of the dense layer's ``in_features * out_features``
        weights.

    Returns
    -------
    int
        ``min(floor(budget / (in + out)), min(in, out))``: the factors ``(rank, in)`` and
        ``(out, rank)`` hold ``rank (in + out)`` weights. The bias is not counted (it is kept
        unchanged). Factoring saves weights only below the break-even rank
        ``in out / (in + out)``.
    """
    n_in = check_int(in_features, "in_features")
    n_out = check_int(out_features, "out_features")
    if isinstance(budget, (float, np.floating)):
        weights = int(np.floor(check_fraction(budget, "budget") * n_in * n_out))
    else:
        weights = check_int(budget, "budget")
    if weights < n_in + n_out:
        raise ValueError(
            f"budget must allow rank 1, i.e. at least in_features + out_features = "
            f"{n_in + n_out} weights, got {weights}"
        )
    return int(min(weights // (n_in + n_out), min(n_in, n_out)))


def truncated_svd(
    matrix: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best rank-``rank`` approximation ``U diag(s) Vt`` of a matrix, and all its singular values.

    Parameters
    ----------
    matrix : ndarray, shape (m, n)
    rank : int, 1 <= rank <= min(m, n)

    Returns
    -------
    U : ndarray, shape (m, rank)
    s : ndarray, shape (rank,)
    Vt : ndarray, shape (rank, n)
    spectrum : ndarray, shape (min(m, n),)
        All singular values, decreasing (the discarded ones are ``spectrum[rank:]``).

    Notes
    -----
    Eckart-Young: among matrices of rank at most :math:`r`, :math:`W_r = U_r S_r V_r^T` minimises
    both :math:`\\|W - W_r\\|_F = (\\sum_{i > r} s_i^2)^{1/2}` and :math:`\\|W - W_r\\|_2 =
    s_{r+1}`. Computed in float64.
    """
    W = np.asarray(matrix, dtype=np.float64)
    if W.ndim != 2 or W.size == 0:
        raise ValueError(f"matrix must be a non-empty 2-D array, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("matrix must be finite (it holds NaN or inf)")
    rank = check_int(rank, "rank", 1, min(W.shape))
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    return U[:, :rank], s[:rank], Vt[:rank], s


def weight_spectrum(layer: Linear | Conv2d | np.ndarray) -> np.ndarray:
    """Singular values of a layer's weight seen as a matrix, in decreasing order.

    Parameters
    ----------
    layer : Linear, Conv2d or ndarray
        A dense weight (out, in), a convolution weight (C_out, C_in, kH, kW) reshaped to
        (C_out, C_in kH kW) as im2col uses it, or such a layer.

    Returns
    -------
    ndarray, shape (min(rows, cols),)
    """
    if isinstance(layer, (Linear, Conv2d)):
        W = layer.weight
    else:
        W = np.asarray(layer)
    if W.ndim < 2:
        raise ValueError(f"layer weight must have at least 2 axes, got shape {W.shape}")
    return np.linalg.svd(W.reshape(W.shape[0], -1).astype(np.float64), compute_uv=False)


def svd_factorize(
    linear: Linear,
    rank: int | None = None,
    *,
    energy: float | None = None,
    budget: int | float | None = None,
) -> tuple[Linear, Linear]:
    """Replace a dense layer by two thin ones, the truncated SVD of its weight.

    Give exactly one of ``rank``, ``energy`` (see :func:`rank_for_energy`) or ``budget``
    (see :func:`rank_for_budget`).

    Parameters
    ----------
    linear : refimpl.nn.Linear
        Weight ``W`` (out, in), optional bias ``b`` (out,). Not modified.
    rank : int, optional
        ``1 <= rank <= min(in, out)``.
    energy : float in (0, 1], optional
        Keep the smallest rank holding this share of :math:`\\sum_i s_i^2`.
    budget : int or float, optional
        Largest rank whose factors fit in this many weights (int) or this fraction of ``in out``.

    Returns
    -------
    first : Linear
        ``in -> rank`` without bias, weight :math:`A = S_r^{1/2} V_r^T` (rank, in).
    second : Linear
        ``rank -> out`` with the original bias, weight :math:`B = U_r S_r^{1/2}` (out, rank).

    Notes
    -----
    :math:`W = U S V^T` (SVD) and :math:`B A = U_r S_r V_r^T`, the best rank-:math:`r`
    approximation (Eckart-Young), so for every input batch :math:`X` (N, in)

    .. math:: \\|X W^T - X (BA)^T\\|_F \\le \\|X\\|_2 \\, \\|W - BA\\|_F
              = \\|X\\|_2 \\Big(\\sum_{i > r} s_i^2\\Big)^{1/2},

    with equality when the columns of :math:`X` are orthonormal (:math:`X^T X = I`, e.g.
    whitened inputs), and also :math:`\\le \\|X\\|_F\\, s_{r+1}`. We split :math:`S_r` evenly
    between the factors (:math:`S_r^{1/2}` each) so both have the same scale for fine-tuning;
    Xue et al. (2013) put :math:`S_r` in one factor, which gives the same product. Rank by
    energy or budget, and which layers to factor, is our choice: Sainath et al. (2013) factor
    only the last layer, Xue et al. (2013) every layer, both then retrain. See chapter 7,
    "Truncated SVD of dense layers".

    References
    ----------
    .. [1] Xue, J., Li, J. and Gong, Y. (2013) Restructuring of deep neural network acoustic
       models with singular value decomposition. Interspeech.
    .. [2] Sainath, T. N. et al. (2013) Low-rank matrix factorization for deep neural network
       training with high-dimensional output targets. ICASSP.
    .. [3] Eckart, C. and Young, G. (1936) The approximation of one matrix by another of lower
       rank. Psychometrika 1(3).
    """
    linear = check_linear(linear)
    n_in, n_out = linear.in_features, linear.out_features
    given = [v is not None for v in (rank, energy, budget)]
    if sum(given) != 1:
        raise ValueError("give exactly one of rank, energy or budget")
    W = linear.weight.astype(np.float64)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    if rank is not None:
        r = check_int(rank, "rank", 1, min(n_in, n_out))
    elif energy is not None:
        r = rank_for_energy(s, energy)
    else:
        r = rank_for_budget(n_in, n_out, budget)  # type: ignore[arg-type]
    root = np.sqrt(s[:r])
    dtype = linear.weight.dtype
    first = Linear(n_in, r, bias=False)
    second = Linear(r, n_out, bias=linear.bias is not None)
    first.params["weight"] = (root[:, None] * Vt[:r]).astype(dtype)
    second.params["weight"] = (U[:, :r] * root[None, :]).astype(dtype)
    if linear.bias is not None:
        second.params["bias"] = linear.bias.astype(dtype, copy=True)
    return first, second


def svd_compress(model: Sequential, ranks: Mapping[str, int]) -> Sequential:
    """A copy of ``model`` with each named dense layer replaced by its two SVD factors.

    Parameters
    ----------
    model : Sequential
        Not modified.
    ranks : mapping of str to int
        ``{"fc1": 32, "fc2": 16}``: layer name to rank. Layer ``"fc1"`` becomes ``"fc1_1"``
        (in -> rank) and ``"fc1_2"`` (rank -> out).

    Returns
    -------
    Sequential
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    if not isinstance(ranks, Mapping) or not ranks:
        raise ValueError("ranks must be a non-empty mapping of layer name to rank")
    out = model
    for name, rank in ranks.items():
        out = substitute(out, name, svd_factorize(check_linear(out[name], name), rank))
    return out if out is not model else model.copy()
