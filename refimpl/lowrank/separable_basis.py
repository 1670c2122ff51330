"""A shared basis of separable filters: Rigamonti et al. (2013) and Jaderberg et al.'s scheme 1.

A bank of F two-dimensional filters :math:`W_f` (kH x kW) is approximated by linear
combinations of M separable (rank-1) filters :math:`s_m = v_m h_m^T`:

.. math:: W_f \\approx \\sum_{m=1}^{M} a_{f m}\\, v_m h_m^T .

Stacked as a tensor of shape (F, kH, kW) this is exactly a rank-M CP decomposition with
factors :math:`A` (F, M), :math:`V` (kH, M) and :math:`H` (kW, M), so minimising the filter
reconstruction error :math:`\\sum_f \\|W_f - \\hat W_f\\|_F^2` is CP by alternating least squares
(:func:`refimpl.lowrank.cp_als`). :func:`separable_basis` fits a filter bank;
:func:`separable_basis_conv` applies it to a convolution, whose ``C_out * C_in`` single-channel
filters share one basis, and builds Jaderberg et al.'s scheme 1 as three convolutions.
See chapter 7, "Separable bases".

References
----------
.. [1] Rigamonti, R., Sironi, A., Lepetit, V. and Fua, P. (2013) Learning separable filters.
   CVPR, 2754-2761.
.. [2] Jaderberg, M., Vedaldi, A. and Zisserman, A. (2014) Speeding up convolutional neural
   networks with low rank expansions. BMVC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..nn import Conv2d
from ._checks import RngLike, check_conv, check_int, check_tensor
from .cp import cp_als

__all__ = ["SeparableBasis", "SeparableBasisLayers", "separable_basis", "separable_basis_conv"]


@dataclass(frozen=True)
class SeparableBasis:
    """M separable filters and the coefficients that combine them into a filter bank.

    Attributes
    ----------
    vertical : ndarray, shape (M, kH)
        Column factors :math:`v_m` (unit norm).
    horizontal : ndarray, shape (M, kW)
        Row factors :math:`h_m` (unit norm).
    coefficients : ndarray, shape (F, M)
        :math:`a_{fm}` (the CP weights folded in).
    errors : list of float
        Relative reconstruction error of the bank after each ALS sweep.
    """

    vertical: np.ndarray
    horizontal: np.ndarray
    coefficients: np.ndarray
    errors: list[float]

    @property
    def filters(self) -> np.ndarray:
        """The separable basis filters :math:`v_m h_m^T`, shape (M, kH, kW)."""
        return np.einsum("my,mx->myx", self.vertical, self.horizontal)

    def reconstruct(self) -> np.ndarray:
        """The approximated bank :math:`\\hat W_f = \\sum_m a_{fm} v_m h_m^T`, shape (F, kH, kW)."""
        return np.einsum("fm,myx->fyx", self.coefficients, self.filters)


def separable_basis(
    filters: np.ndarray,
    n_basis: int,
    *,
    max_iter: int = 200,
    tol: float = 1e-10,
    rng: RngLike = None,
) -> SeparableBasis:
    """Approximate a bank of 2-D filters by combinations of ``n_basis`` separable filters.

    Parameters
    ----------
    filters : ndarray, shape (F, kH, kW)
        The filter bank (any real dtype; computed in float64).
    n_basis : int, 1 <= n_basis <= kH * kW
        Number M of separable basis filters. ``M = kH kW`` suffices for any bank (the
        :math:`kH kW` outer products of unit vectors span every filter).
    max_iter, tol : int, float
        ALS sweeps and stopping tolerance of :func:`refimpl.lowrank.cp_als`.
    rng : int, numpy.random.Generator or None
        Seed of ALS's random initial columns (used where M exceeds kH or kW).

    Returns
    -------
    SeparableBasis

    Notes
    -----
    Minimises :math:`\\sum_f \\|W_f - \\sum_m a_{fm} v_m h_m^T\\|_F^2` over :math:`A, V, H`:
    a rank-M CP decomposition of the (F, kH, kW) tensor. Rigamonti et al. (2013) learn the
    separable filters instead by minimising the reconstruction error plus a nuclear-norm
    penalty that pushes each filter towards rank one (and, in their main approach, from
    images directly); we impose rank one exactly and fit by CP, as the later journal version
    of their work does. Each ALS half-step is an exact least-squares solve, so the error never
    increases; the optimum need not be global (for M > 1, CP has no closed form).

    References
    ----------
    .. [1] Rigamonti, R., Sironi, A., Lepetit, V. and Fua, P. (2013) Learning separable
       filters. CVPR, 2754-2761.
    .. [2] Kolda, T. G. and Bader, B. W. (2009) Tensor decompositions and applications.
       SIAM Review 51(3), 455-500.
    """
    bank = check_tensor(filters, "filters", min_ndim=3)
    if bank.ndim != 3:
        raise ValueError(f"filters must have shape (F, kH, kW), got {bank.shape}")
    _, kh, kw = bank.shape
    n_basis = check_int(n_basis, "n_basis", 1, kh * kw)
    cp = cp_als(bank, n_basis, max_iter=max_iter, tol=tol, rng=rng)
    a, v, h = cp.factors
    coefficients = a * cp.weights[None, :]
    nv = np.linalg.norm(v, axis=0)
    nh = np.linalg.norm(h, axis=0)
    nv[nv == 0] = 1.0
    nh[nh == 0] = 1.0
    coefficients = coefficients * (nv * nh)[None, :]
    return SeparableBasis((v / nv).T.copy(), (h / nh).T.copy(), coefficients, list(cp.errors))


@dataclass(frozen=True)
class SeparableBasisLayers:
    """Jaderberg et al.'s scheme 1 as three convolutions, and the basis they came from.
    Unpacks as the three layers ``vertical, horizontal, combine``."""

    vertical: Conv2d
    horizontal: Conv2d
    combine: Conv2d
    basis: SeparableBasis

    def __iter__(self) -> Iterator[Conv2d]:
        return iter((self.vertical, self.horizontal, self.combine))

    @property
    def stored_parameters(self) -> int:
        """Distinct numbers stored: the basis once, :math:`M (k_H + k_W)`, the combination
        weights :math:`N C M` and the bias. The cost model counts the vertical layer's copies
        of the basis once per input channel (it sees a grouped convolution)."""
        m, kh = self.basis.vertical.shape
        kw = self.basis.horizontal.shape[1]
        bias = 0 if self.combine.bias is None else self.combine.bias.size
        return m * (kh + kw) + self.combine.weight.size + bias


def separable_basis_conv(
    conv: Conv2d,
    n_basis: int,
    *,
    max_iter: int = 200,
    tol: float = 1e-10,
    rng: RngLike = None,
) -> SeparableBasisLayers:
    """Jaderberg et al.'s scheme 1: a convolution through a shared basis of separable filters.

    Parameters
    ----------
    conv : Conv2d
        Weight (N, C, kH, kW), groups=1; not modified.
    n_basis : int, 1 <= n_basis <= kH kW
        Number M of separable basis filters, shared by all ``N C`` single-channel filters.
    max_iter, tol, rng
        Passed to :func:`separable_basis`.

    Returns
    -------
    SeparableBasisLayers
        ``vertical``: ``C -> C M``, kernel (kH, 1), groups C (each input channel filtered by the
        M column factors), stride (sH, 1), padding (pH, 0), no bias; ``horizontal``: depthwise
        ``C M -> C M``, kernel (1, kW), stride (1, sW), padding (0, pW), no bias;
        ``combine``: 1 x 1, ``C M -> N``, the coefficients :math:`a_{(n c) m}`, with the bias.

    Notes
    -----
    With :math:`W_{nc} \\approx \\sum_m a_{ncm} v_m h_m^T`, the output is
    :math:`y_n = b_n + \\sum_{c, m} a_{ncm} (x_c * v_m * h_m^T)`: each input channel is
    filtered by the M separable filters (2 passes of k taps each) and the C M responses are
    combined by a 1 x 1 convolution. Multiply-adds per output position (no padding):
    :math:`C M k_H \\frac{H_{in}}{H_{out}} + C M k_W + N C M` against :math:`N C k_H k_W`.
    Jaderberg et al. fit the basis by minimising the filter reconstruction error, as here, or
    the data reconstruction error; they learned one basis for the layer as here. The
    combination weights :math:`N C M` dominate the cost when N is large, which is why scheme 2
    (:func:`refimpl.lowrank.separable_factorize`) usually wins in deeper layers.

    References
    ----------
    .. [1] Jaderberg, M., Vedaldi, A. and Zisserman, A. (2014) Speeding up convolutional neural
       networks with low rank expansions. BMVC.
    """
    conv = check_conv(conv)
    w = conv.weight
    n_out, c_in, kh, kw = w.shape
    basis = separable_basis(w.reshape(n_out * c_in, kh, kw), n_basis, max_iter=max_iter,
                            tol=tol, rng=rng)  # fmt: skip
    m = basis.vertical.shape[0]
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    dtype = w.dtype
    vertical = Conv2d(c_in, c_in * m, (kh, 1), stride=(sh, 1), padding=(ph, 0), groups=c_in,
                      bias=False)  # fmt: skip
    vertical.params["weight"] = np.ascontiguousarray(
        np.tile(basis.vertical, (c_in, 1))[:, None, :, None], dtype=dtype)
    horizontal = Conv2d(c_in * m, c_in * m, (1, kw), stride=(1, sw), padding=(0, pw),
                        groups=c_in * m, bias=False)  # fmt: skip
    horizontal.params["weight"] = np.ascontiguousarray(
        np.tile(basis.horizontal, (c_in, 1))[:, None, None, :], dtype=dtype)
    combine = Conv2d(c_in * m, n_out, 1, bias=conv.bias is not None)
    coeff = basis.coefficients.reshape(n_out, c_in * m)  # channel order (c, m), c major
    combine.params["weight"] = np.ascontiguousarray(coeff[:, :, None, None], dtype=dtype)
    if conv.bias is not None:
        combine.params["bias"] = conv.bias.astype(dtype, copy=True)
    return SeparableBasisLayers(vertical, horizontal, combine, basis)
