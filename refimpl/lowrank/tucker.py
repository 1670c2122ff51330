"""Tucker-2 decomposition of a convolution on its two channel modes (Kim et al. 2016).

The kernel :math:`K` (C_out, C_in, kH, kW) is approximated as a small core convolution between
two 1x1 convolutions,

.. math:: K_{t s y x} \\approx \\sum_{a=1}^{R_{out}} \\sum_{b=1}^{R_{in}}
          U^{out}_{t a}\\, G_{a b y x}\\, U^{in}_{s b},

with orthonormal columns in :math:`U^{out}` (C_out, R_out) and :math:`U^{in}` (C_in, R_in). The
factors are computed by higher-order orthogonal iteration (HOOI) started from the truncated
higher-order SVD (HOSVD). See chapter 7 of the book, "Tucker-2".

References
----------
.. [1] Kim, Y.-D., Park, E., Yoo, S., Choi, T., Yang, L. and Shin, D. (2016) Compression of deep
   convolutional neural networks for fast and low power mobile applications. ICLR.
.. [2] De Lathauwer, L., De Moor, B. and Vandewalle, J. (2000) On the best rank-1 and
   rank-(R1, R2, ..., RN) approximation of higher-order tensors. SIAM J. Matrix Anal. Appl.
   21(4), 1324-1342.
.. [3] Kolda, T. G. and Bader, B. W. (2009) Tensor decompositions and applications. SIAM Review
   51(3), 455-500.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn import Conv2d
from ._checks import check_conv, check_int, check_tensor
from .cp import unfold

__all__ = ["mode_dot", "TuckerTensor",
    "partial_tucker", "tucker2_decompose_conv", "tucker_to_tensor"]


def mode_dot(tensor: np.ndarray, matrix: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` product :math:`\\mathcal X \\times_n M`.

    Parameters
    ----------
    tensor : ndarray, shape (I_1, ..., I_N)
    matrix : ndarray, shape (J, I_mode)
    mode : int

    Returns
    -------
    ndarray, the shape of ``tensor`` with ``I_mode`` replaced by ``J``.
    """
    t = np.asarray(tensor)
    m = np.asarray(matrix)
    mode = check_int(mode, "mode", 0, t.ndim - 1)
    if m.ndim != 2 or m.shape[1] != t.shape[mode]:
        raise ValueError(f"matrix must have shape (J, {t.shape[mode]}), got {m.shape}")
    return np.moveaxis(np.tensordot(m, t, axes=(1, mode)), 0, mode)


def tucker_to_tensor(
    core: np.ndarray, factors: Sequence[np.ndarray], modes: Sequence[int]
) -> np.ndarray:
    """The tensor :math:`\\mathcal G \\times_{m_1} U_1 \\times_{m_2} U_2 \\dots`.

    Parameters
    ----------
    core : ndarray
    factors : sequence of ndarray, shapes (I_m, R_m)
    modes : sequence of int, the mode of each factor
    """
    out = np.asarray(core)
    if len(factors) != len(modes):
        raise ValueError(f"need one mode per factor, got {len(factors)} and {len(modes)}")
    for U, m in zip(factors, modes, strict=True):
        out = mode_dot(out, U, m)
    return out


def _leading_left_vectors(matrix: np.ndarray, rank: int) -> np.ndarray:
    """Orthonormal basis of the leading ``rank``-dimensional left singular subspace.

    From the eigenvectors of the small Gram matrix ``M M^T`` (I x I): for the short, wide
    unfoldings of a kernel this is much cheaper than an SVD of ``M``, and when ``rank``
    exceeds the rank of ``M`` the eigenvectors still complete an orthonormal basis.
    """
    gram = matrix @ matrix.T
    _, vectors = np.linalg.eigh((gram + gram.T) / 2)
    return vectors[:, ::-1][:, :rank]


@dataclass(frozen=True)
class TuckerTensor:
    """A (partial) Tucker decomposition: ``core``, ``factors`` with orthonormal columns for the
    compressed ``modes``, and the relative ``errors`` of the start and each sweep. Unpacks as
    ``core, factors``, like tensorly's ``TuckerTensor``."""

    core: np.ndarray
    factors: list[np.ndarray]
    modes: list[int]
    errors: list[float]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.core, self.factors))

    def __getitem__(self, index: int) -> Any:
        return (self.core, self.factors)[index]

    def __len__(self) -> int:
        return 2

    def to_tensor(self) -> np.ndarray:
        return tucker_to_tensor(self.core, self.factors, self.modes)


def partial_tucker(
    tensor: np.ndarray,
    ranks: Sequence[int],
    modes: Sequence[int],
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
    init: str = "hosvd",
) -> TuckerTensor:
    """Tucker decomposition of a tensor along some of its modes (HOSVD, then HOOI).

    Parameters
    ----------
    tensor : ndarray, shape (I_1, ..., I_N)
    ranks : sequence of int
        Rank for each entry of ``modes``, ``1 <= ranks[j] <= I_{modes[j]}``.
    modes : sequence of int
        Distinct modes to compress; the others are kept whole in the core.
    max_iter : int >= 0
        HOOI sweeps after the HOSVD start (0 gives the truncated HOSVD).
    tol : float >= 0
        Stop when the relative error changes by less than ``tol``.
    init : {"hosvd"}
        Start (the only one offered: it is deterministic).

    Returns
    -------
    TuckerTensor
        ``core``: ``tensor`` with mode ``modes[j]`` reduced to ``ranks[j]``; ``factors``: arrays
        of shapes (I_{modes[j]}, ranks[j]) with orthonormal columns; ``modes``; ``errors``: the
        relative error after the start and after every sweep. Unpacks as ``core, factors``.

    Notes
    -----
    HOSVD: :math:`U_m` = the leading left singular vectors of the unfolding :math:`X_{(m)}`, and
    :math:`\\mathcal G = \\mathcal X \\times_m U_m^T`. HOOI (De Lathauwer et al. 2000; Kolda and
    Bader 2009, Fig. 4.4) then repeats, for each mode, :math:`U_m \\leftarrow` leading left
    singular vectors of the unfolding of :math:`\\mathcal X \\times_{k \\ne m} U_k^T`. Since the
    factors are orthonormal, :math:`\\|\\mathcal X - \\hat{\\mathcal X}\\|^2 =
    \\|\\mathcal X\\|^2 - \\|\\mathcal G\\|^2`, and HOOI never decreases :math:`\\|\\mathcal G\\|`.
    """
    X = check_tensor(tensor, "tensor", min_ndim=2)
    modes = [check_int(m, "modes", 0, X.ndim - 1) for m in modes]
    if not modes or len(set(modes)) != len(modes):
        raise ValueError(f"modes must be distinct and non-empty, got {modes}")
    ranks = list(ranks)
    if len(ranks) != len(modes):
        raise ValueError(f"ranks needs one rank per mode ({len(modes)}), got {len(ranks)}")
    ranks = [
        check_int(r, f"ranks[{j}]", 1, X.shape[m])
        for j, (r, m) in enumerate(zip(ranks, modes, strict=True))
    ]
    max_iter = check_int(max_iter, "max_iter", 0)
    if init != "hosvd":
        raise ValueError(f"init must be 'hosvd', got {init!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or tol < 0:
        raise ValueError(f"tol must be a float >= 0, got {tol!r}")
    norm_x = float(np.linalg.norm(X))

    def error(core: np.ndarray, factors: list[np.ndarray]) -> float:
        if norm_x == 0.0:
            return 0.0
        return float(np.linalg.norm(X - tucker_to_tensor(core, factors, modes))) / norm_x

    factors = [_leading_left_vectors(unfold(X, m), r) for m, r in zip(modes, ranks, strict=True)]
    core = tucker_to_tensor(X, [U.T for U in factors], modes)
    errors = [error(core, factors)]
    for _ in range(max_iter):
        for j, m in enumerate(modes):
            others = [k for k in range(len(modes)) if k != j]
            Y = tucker_to_tensor(X, [factors[k].T for k in others], [modes[k] for k in others])
            factors[j] = _leading_left_vectors(unfold(Y, m), ranks[j])
        core = tucker_to_tensor(X, [U.T for U in factors], modes)
        errors.append(error(core, factors))
        if abs(errors[-2] - errors[-1]) < tol:
            break
    return TuckerTensor(core, factors, modes, errors)


def tucker2_decompose_conv(
    conv: Conv2d,
    rank_in: int,
    rank_out: int,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> tuple[Conv2d, Conv2d, Conv2d]:
    """Replace a convolution by 1x1, a small kH x kW core, and 1x1 (Tucker-2 of its kernel).

    Parameters
    ----------
    conv : Conv2d
        Weight (C_out, C_in, kH, kW), groups=1; not modified.
    rank_in : int, 1 <= rank_in <= C_in
        Channels after the first 1x1 convolution (Kim et al.'s :math:`R_3`).
    rank_out : int, 1 <= rank_out <= C_out
        Output channels of the core convolution (Kim et al.'s :math:`R_4`).
    max_iter, tol
        HOOI sweeps and tolerance (see :func:`partial_tucker`).

    Returns
    -------
    (Conv2d, Conv2d, Conv2d)
        1x1 ``C_in -> rank_in`` (no bias); ``kH x kW`` ``rank_in -> rank_out`` with the
        original stride and padding (no bias); 1x1 ``rank_out -> C_out`` with the original bias.

    Notes
    -----
    Parameters :math:`C_{in} R_{in} + R_{in} R_{out} k_H k_W + R_{out} C_{out}` instead of
    :math:`C_{in} C_{out} k_H k_W`. Kim et al. (2016) choose the ranks by a global analytic
    variational Bayesian matrix factorization of the unfoldings; here the ranks are given (the
    chapter picks them by energy of the unfolding spectra with
    :func:`~refimpl.lowrank.rank_for_energy`). See chapter 7, "Tucker-2".

    References
    ----------
    .. [1] Kim, Y.-D. et al. (2016) Compression of deep convolutional neural networks for fast
       and low power mobile applications. ICLR.
    """
    conv = check_conv(conv)
    rank_in = check_int(rank_in, "rank_in", 1, conv.in_channels)
    rank_out = check_int(rank_out, "rank_out", 1, conv.out_channels)
    core, (u_out, u_in) = partial_tucker(
        conv.weight, [rank_out, rank_in], [0, 1], max_iter=max_iter, tol=tol
    )
    dtype = conv.weight.dtype
    kh, kw = conv.kernel_size
    first = Conv2d(conv.in_channels, rank_in, 1, bias=False)
    middle = Conv2d(rank_in, rank_out, (kh, kw), stride=conv.stride, padding=conv.padding,
                    bias=False)
    last = Conv2d(rank_out, conv.out_channels, 1, bias=conv.bias is not None)
    first.params["weight"] = np.ascontiguousarray(
        u_in.T.reshape(rank_in, conv.in_channels, 1, 1), dtype=dtype
    )
    middle.params["weight"] = np.ascontiguousarray(core, dtype=dtype)
    last.params["weight"] = np.ascontiguousarray(
        u_out.reshape(conv.out_channels, rank_out, 1, 1), dtype=dtype
    )
    if conv.bias is not None:
        last.params["bias"] = conv.bias.astype(dtype, copy=True)
    return first, middle, last
