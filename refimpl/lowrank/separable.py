"""Separable filters, Jaderberg et al. (2014) scheme 2: a k x k convolution as k x 1 then 1 x k.

The kernel :math:`W` (N, C, kH, kW) is approximated by ``rank`` = K vertical filters
:math:`V` (K, C, kH) followed by N horizontal filters :math:`H` (N, K, kW):

.. math:: W_{n c y x} \\approx \\sum_{k=1}^{K} H_{n k x}\\, V_{k c y}.

:func:`separable_filters` finds the best such pair for the weights in closed form (a truncated
SVD of the kernel reshaped to (C kH, N kW)); :func:`separable_factorize` builds the two layers
and, given inputs, refines them to reproduce the layer's *outputs* on those inputs by exact
alternating least squares. See chapter 7 of the book, "Separable filters".

References
----------
.. [1] Jaderberg, M., Vedaldi, A. and Zisserman, A. (2014) Speeding up convolutional neural
   networks with low rank expansions. BMVC.
.. [2] Tai, C., Xiao, T., Zhang, Y., Wang, X. and E, W. (2016) Convolutional neural networks
   with low-rank regularization. ICLR. (The closed-form SVD solution of scheme 2.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.lib.stride_tricks import sliding_window_view

from ..nn import Conv2d
from ._checks import check_conv, check_int

__all__ = [
    "SeparablePair","separable_factorize", "separable_filters", "window_moments"]


def window_moments(
    conv: Conv2d, inputs: np.ndarray, *, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the input windows a convolution sees (its im2col columns).

    Parameters
    ----------
    conv : Conv2d
        Gives kernel size, stride and padding.
    inputs : ndarray, shape (N, C_in, H, W)
        Inputs of the layer.
    batch_size : int
        Examples per chunk (bounds the memory of the window copy).

    Returns
    -------
    mean : ndarray, shape (D,)
    cov : ndarray, shape (D, D)
        With ``D = C_in kH kW`` ordered like ``conv.weight.reshape(C_out, -1)``'s columns:
        :math:`\\mu = \\frac1P \\sum_p x_p`, :math:`\\Sigma = \\frac1P \\sum_p (x_p - \\mu)
        (x_p - \\mu)^T` over all P windows of all inputs (float64).

    Notes
    -----
    For any weights :math:`W` (C_out, D) and bias, the mean squared output error against the
    original layer, minimised over the bias, is :math:`\\operatorname{tr}((W - W_0) \\Sigma
    (W - W_0)^T) / C_{out}`; so these moments are all the data the refinement needs.
    """
    if not isinstance(conv, Conv2d):
        raise TypeError(f"conv must be a refimpl.nn.Conv2d, got {type(conv).__name__}")
    x = np.asarray(inputs)
    if x.ndim != 4 or x.shape[1] != conv.in_channels or x.shape[0] == 0:
        raise ValueError(
            f"inputs must have shape (N, {conv.in_channels}, H, W) with N >= 1, got {x.shape}"
        )
    batch_size = check_int(batch_size, "batch_size")
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    ho, wo = conv.output_shape(x.shape[2], x.shape[3])
    d = conv.in_channels * kh * kw
    total = np.zeros(d)
    second = np.zeros((d, d))
    shift = None  # moments about the first chunk's mean: no cancellation when |mean| >> std
    count = 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        if ph or pw:
            xb = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = sliding_window_view(xb, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :ho, :wo]
        cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(d, -1).astype(np.float64)  # (D, P)
        if shift is None:
            shift = cols.mean(axis=1)
        cols -= shift[:, None]
        total += cols.sum(axis=1)
        second += cols @ cols.T
        count += cols.shape[1]
    centred_mean = total / count
    cov = second / count - np.outer(centred_mean, centred_mean)
    return centred_mean + shift, (cov + cov.T) / 2


def separable_filters(weight: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best vertical/horizontal filter pair of a kernel in the Frobenius norm (closed form).

    Parameters
    ----------
    weight : ndarray, shape (N, C, kH, kW)
    rank : int, 1 <= rank <= min(C kH, N kW)
        Number K of intermediate channels.

    Returns
    -------
    vertical : ndarray, shape (K, C, kH)
    horizontal : ndarray, shape (N, K, kW)

    Notes
    -----
    :math:`\\sum_k H_{nkx} V_{kcy}` is exactly a rank-K factorization of the matrix
    :math:`M_{(c y), (n x)} = W_{n c y x}` of shape (C kH, N kW). So the truncated SVD
    :math:`M \\approx P_K S_K Q_K^T` gives the global minimiser of
    :math:`\\|W - \\hat W\\|_F`: :math:`V_{k c y} = P_{(cy) k} s_k^{1/2}`,
    :math:`H_{n k x} = Q_{(nx) k} s_k^{1/2}` (Tai et al. 2016). Jaderberg et al. (2014) instead
    minimised this "filter reconstruction" error with an iterative optimizer.
    """
    W = np.asarray(weight, dtype=np.float64)
    if W.ndim != 4:
        raise ValueError(f"weight must have shape (N, C, kH, kW), got {W.shape}")
    n, c, kh, kw = W.shape
    rank = check_int(rank, "rank", 1, min(c * kh, n * kw))
    M = W.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)
    P, s, Qt = np.linalg.svd(M, full_matrices=False)
    root = np.sqrt(s[:rank])
    vertical = (P[:, :rank] * root).T.reshape(rank, c, kh)
    horizontal = (Qt[:rank].T * root).reshape(n, kw, rank).transpose(0, 2, 1)
    return vertical, horizontal


def _compose(vertical: np.ndarray, horizontal: np.ndarray) -> np.ndarray:
    """Kernel (N, C, kH, kW) of a vertical (K, C, kH) then horizontal (N, K, kW) pair."""
    return np.einsum("nkx,kcy->ncyx", horizontal, vertical)


def _solve_spd(G: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``G z = rhs`` for a symmetric positive semi-definite ``G`` (lstsq if singular)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G), rhs)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(G, rhs, lapack_driver="gelsy")[0]


@dataclass(frozen=True)
class SeparablePair:
    """The two convolutions of a separable factorization and the refinement's error history.
    Unpacks as ``vertical, horizontal``."""

    vertical: Conv2d
    horizontal: Conv2d
    history: list[float]

    def __iter__(self) -> Iterator[Conv2d]:
        return iter((self.vertical, self.horizontal))


def separable_factorize(
    conv: Conv2d,
    rank: int,
    *,
    inputs: np.ndarray | None = None,
    n_iter: int = 10,
) -> SeparablePair:
    """Replace a convolution by a vertical ``kH x 1`` and a horizontal ``1 x kW`` convolution.

    Parameters
    ----------
    conv : Conv2d
        Weight (C_out, C_in, kH, kW), groups=1; not modified.
    rank : int, 1 <= rank <= min(C_in kH, C_out kW)
        Number K of intermediate channels (Jaderberg et al.'s K).
    inputs : ndarray, shape (N, C_in, H, W), optional
        Inputs of the layer (for a hidden layer, the activations reaching it). If given, the
        filters are refined to reproduce the layer's outputs on them.
    n_iter : int >= 0
        Alternating least squares sweeps of the refinement (ignored without ``inputs``).

    Returns
    -------
    SeparablePair
        ``vertical``: ``C_in -> K``, kernel (kH, 1), stride (sH, 1), padding (pH, 0), no bias;
        ``horizontal``: ``K -> C_out``, kernel (1, kW), stride (1, sW), padding (0, pW), with
        bias; ``history``: the relative data error
        :math:`\\operatorname{tr}(D \\Sigma D^T)^{1/2} / \\operatorname{tr}(W_0 \\Sigma
        W_0^T)^{1/2}` with :math:`D = \\hat W - W_0`, first of the SVD start, then after each
        least-squares update (never increasing; empty without ``inputs``). It unpacks as
        ``vertical, horizontal = separable_factorize(...)``.

    Notes
    -----
    The start is :func:`separable_filters` (optimal for the weights). Refinement: with the
    window moments :math:`\\mu, \\Sigma` of :func:`window_moments`, the output error minimised
    over the bias is :math:`E = \\operatorname{tr}((\\hat W - W_0) \\Sigma (\\hat W - W_0)^T)`,
    and :math:`\\hat W` is linear in :math:`H` for fixed :math:`V` and in :math:`V` for fixed
    :math:`H`. Each half-sweep solves its normal equations exactly: for :math:`H`,
    :math:`H = W_0 \\Sigma B^T (B \\Sigma B^T)^{-1}` with :math:`B_{(k x'), (c y x)} =
    V_{kcy} \\delta_{x x'}`; for :math:`V`, a system of size :math:`K C k_H` built from
    :math:`\\sum_n H_{nkx} H_{nk'x'}` and :math:`\\Sigma`. Finally the bias becomes
    :math:`b_0 + (W_0 - \\hat W)\\mu`. Jaderberg et al. (2014) optimise this "data
    reconstruction" objective iteratively on samples of the data; we solve it exactly from
    second moments, so :math:`E` decreases monotonically and the result is
    deterministic. Fine-tuning the whole network afterwards uses :func:`refimpl.nn.fit`.
    See chapter 7, "Separable filters".

    References
    ----------
    .. [1] Jaderberg, M., Vedaldi, A. and Zisserman, A. (2014) Speeding up convolutional neural
       networks with low rank expansions. BMVC.
    """
    conv = check_conv(conv)
    n_iter = check_int(n_iter, "n_iter", 0)
    W0 = conv.weight.astype(np.float64)
    n_out, c_in, kh, kw = W0.shape
    vertical, horizontal = separable_filters(W0, rank)
    k = vertical.shape[0]
    history: list[float] = []
    bias = None if conv.bias is None else conv.bias.astype(np.float64)
    if inputs is not None:
        mean, cov = window_moments(conv, inputs)
        w0 = W0.reshape(n_out, -1)
        w0_cov = w0 @ cov
        scale = float(np.sum(w0_cov * w0))

        def rel_error(v: np.ndarray, h: np.ndarray) -> float:
            d = _compose(v, h).reshape(n_out, -1) - w0
            err = max(float(np.sum((d @ cov) * d)), 0.0)
            return float(np.sqrt(err / scale)) if scale > 0 else 0.0

        cov6 = cov.reshape(c_in, kh, kw, c_in, kh, kw)
        w0_cov4 = w0_cov.reshape(n_out, c_in, kh, kw)
        eye = np.eye(kw)
        history.append(rel_error(vertical, horizontal))
        for _ in range(n_iter):
            # H-step: rows of H solve (B cov B^T) h_n = B cov w0_n.
            B = np.einsum("kcy,xz->kxcyz", vertical, eye).reshape(k * kw, -1)
            G = B @ cov @ B.T
            rhs = B @ w0_cov.T  # (K kW, N)
            horizontal = _solve_spd(G, rhs).T.reshape(n_out, k, kw)
            history.append(rel_error(vertical, horizontal))
            # V-step: normal equations in vec(V) of size K C kH.
            hh = np.einsum("nkx,nlz->kxlz", horizontal, horizontal)
            G = np.einsum("kxlz,cyxdwz->kcyldw", hh, cov6, optimize=True)
            G = G.reshape(k * c_in * kh, k * c_in * kh)
            rhs = np.einsum("nkx,ncyx->kcy", horizontal, w0_cov4).reshape(-1)
            vertical = _solve_spd((G + G.T) / 2, rhs).reshape(k, c_in, kh)
            history.append(rel_error(vertical, horizontal))
        if bias is not None:
            bias = bias + (w0 - _compose(vertical, horizontal).reshape(n_out, -1)) @ mean
    # Balance the scale of each component between the two layers (the product is unchanged).
    nv = np.linalg.norm(vertical.reshape(k, -1), axis=1)
    nh = np.linalg.norm(horizontal.transpose(1, 0, 2).reshape(k, -1), axis=1)
    ok = (nv > 0) & (nh > 0)
    g = np.where(ok, np.sqrt(np.where(ok, nh, 1.0) / np.where(ok, nv, 1.0)), 1.0)
    vertical = vertical * g[:, None, None]
    horizontal = horizontal / g[None, :, None]
    dtype = conv.weight.dtype
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    v_layer = Conv2d(c_in, k, (kh, 1), stride=(sh, 1), padding=(ph, 0), bias=False)
    h_layer = Conv2d(k, n_out, (1, kw), stride=(1, sw), padding=(0, pw), bias=bias is not None)
    v_layer.params["weight"] = np.ascontiguousarray(vertical[..., None], dtype=dtype)
    h_layer.params["weight"] = np.ascontiguousarray(horizontal[:, :, None, :], dtype=dtype)
    if bias is not None:
        h_layer.params["bias"] = bias.astype(dtype)
    return SeparablePair(v_layer, h_layer, history)
