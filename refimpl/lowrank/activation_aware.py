"""Activation-aware low rank: the factorization that keeps a layer's outputs, not its weights.

The truncated SVD (:func:`~refimpl.lowrank.svd_factorize`) minimizes the weight error
:math:`\\|W - \\hat W\\|_F`. What matters is the output error on the layer's inputs,
:math:`\\|W X - \\hat W X\\|_F`; with the Cholesky factor :math:`L` of
:math:`G = \\frac1M X X^T` it is :math:`\\|(W - \\hat W) L\\|_F \\sqrt{M}`, and the best rank-r
:math:`\\hat W` comes from the truncated SVD of :math:`W L` instead of :math:`W`. The result is
the same kind of two-layer factorization, so everything downstream (surgery, the cost model,
fine-tuning) is unchanged. See chapter 10 of the book, "One-shot compression", and chapter 7 for
the plain SVD.

References
----------
.. [1] Zhang, X., Zou, J., He, K. and Sun, J. (2016) Accelerating very deep convolutional
   networks for classification and detection. IEEE TPAMI 38(10), 1943-1955.
.. [2] Wang, X., Zheng, Y., Wan, Z. and Zhang, M. (2025) SVD-LLM: truncation-aware singular
   value decomposition for large language model compression. ICLR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..nn import Linear, Sequential
from ..pruning.one_shot import _check_damping, _cholesky_lower
from ..surgery.substitute import layer_inputs, substitute
from ..validation import check_array
from ._checks import check_int, check_linear
from .svd import rank_for_budget, rank_for_energy

__all__ = [
    "ActivationAwareSVD",
    "activation_aware_compress",
    "activation_aware_factorize",
    "activation_aware_svd",
]


@dataclass
class ActivationAwareSVD:
    """Result of :func:`activation_aware_svd`: two factors and the spectrum of :math:`W L`.

    Attributes
    ----------
    first : ndarray, shape (rank, in)
        :math:`A = S_r^{-1/2} U_r^T W`, the first (thin) layer's weight.
    second : ndarray, shape (out, rank)
        :math:`B = U_r S_r^{1/2}`, the second layer's weight; :math:`BA = U_r U_r^T W`.
    spectrum : ndarray, shape (min(out, in),)
        All singular values of :math:`W L`, decreasing. The output error of rank :math:`r` is
        :math:`\\sum_{i > r} s_i^2` (per column of :math:`X`, for the damped Gram matrix).
    """

    first: np.ndarray
    second: np.ndarray
    spectrum: np.ndarray


def _gram(gram: np.ndarray, n_in: int) -> np.ndarray:
    G = check_array(gram, "gram", ndim=2, kind="real").astype(np.float64)
    if G.shape != (n_in, n_in):
        raise ValueError(f"gram must have shape ({n_in}, {n_in}), got {G.shape}")
    if (np.diag(G) < 0).any():
        raise ValueError("gram has a negative diagonal entry: it is not X X^T / M")
    return 0.5 * (G + G.T)


def _whiten(G: np.ndarray, damping: float) -> np.ndarray:
    """Lower Cholesky factor of :math:`G + \\lambda \\overline{\\operatorname{diag} G} I`."""
    G = G.copy()
    mean = float(np.mean(np.diag(G)))
    G[np.diag_indices_from(G)] += _check_damping(damping) * (mean if mean > 0 else 1.0)
    return _cholesky_lower(G)


def activation_aware_svd(
    matrix: np.ndarray, gram: np.ndarray, rank: int, *, damping: float = 0.01
) -> ActivationAwareSVD:
    """Best rank-``rank`` approximation of ``matrix`` in the output error on given inputs.

    Parameters
    ----------
    matrix : ndarray, shape (out, in)
        A dense weight :math:`W`.
    gram : ndarray, shape (in, in)
        :math:`G = \\frac1M X X^T` of the layer's inputs :math:`X` (in, M), e.g.
        ``inputs.T @ inputs / N`` for inputs (N, in).
    rank : int, 1 <= rank <= min(out, in)
    damping : float >= 0
        :math:`\\lambda \\overline{\\operatorname{diag} G}` is added to the diagonal of
        :math:`G` before the Cholesky factorization (needed when :math:`G` is singular, e.g.
        fewer samples than inputs or inputs that never fire). With 0 and a singular
        :math:`G` a ``numpy.linalg.LinAlgError`` says so.

    Returns
    -------
    ActivationAwareSVD

    Notes
    -----
    With :math:`G = L L^T`, :math:`\\frac1M \\|(W - \\hat W) X\\|_F^2 = \\|(W - \\hat W) L\\|_F^2`.
    So the best :math:`\\hat W` of rank :math:`r` makes :math:`\\hat W L` the truncated SVD of
    :math:`W L = U S V^T` (Eckart-Young), :math:`\\hat W = U_r S_r V_r^T L^{-1} = U_r U_r^T W`:
    project :math:`W` onto the leading left singular vectors of :math:`W L`, i.e. the leading
    eigenvectors of the output covariance :math:`W G W^T` (Zhang et al. 2016's "generalized
    SVD" of responses, and SVD-LLM's truncation-aware whitening). We form :math:`U_r^T W`
    directly and never invert :math:`L`. If :math:`G = cI` (white inputs), :math:`U` is that
    of :math:`W` and the result is the plain truncated SVD. For any damping the output error
    is at most the plain SVD's: :math:`\\hat W` minimizes
    :math:`\\|(W - \\hat W) L_\\lambda\\|_F^2 = e_G(\\hat W) + \\lambda' \\|W - \\hat W\\|_F^2`,
    and the plain SVD minimizes the second term.

    References
    ----------
    .. [1] Zhang, X., Zou, J., He, K. and Sun, J. (2016) Accelerating very deep convolutional
       networks for classification and detection. IEEE TPAMI 38(10).
    .. [2] Wang, X., Zheng, Y., Wan, Z. and Zhang, M. (2025) SVD-LLM: truncation-aware singular
       value decomposition for large language model compression. ICLR.
    """
    W = check_array(matrix, "matrix", ndim=2, kind="real").astype(np.float64)
    G = _gram(gram, W.shape[1])
    r = check_int(rank, "rank", 1, min(W.shape))
    return _factor(W, _whiten(G, damping), r)


def _factor(W: np.ndarray, L: np.ndarray, r: int) -> ActivationAwareSVD:
    U, s, _ = np.linalg.svd(W @ L, full_matrices=False)
    Ur, sr = U[:, :r], s[:r]
    root = np.sqrt(np.where(sr > 0, sr, 1.0))
    return ActivationAwareSVD((Ur.T @ W) / root[:, None], Ur * root[None, :], s)


def activation_aware_factorize(
    linear: Linear,
    inputs: np.ndarray,
    rank: int | None = None,
    *,
    energy: float | None = None,
    budget: int | float | None = None,
    damping: float = 0.01,
) -> tuple[Linear, Linear]:
    """Replace a dense layer by two thin ones that keep its outputs on ``inputs``.

    The activation-aware counterpart of :func:`~refimpl.lowrank.svd_factorize`: same arguments
    plus the inputs, same result.

    Parameters
    ----------
    linear : refimpl.nn.Linear
        Weight :math:`W` (out, in), optional bias. Not modified.
    inputs : ndarray, shape (N, in)
        What the layer receives on calibration data (:func:`~refimpl.lowrank.layer_inputs`).
    rank : int, optional
        ``1 <= rank <= min(in, out)``. Give exactly one of ``rank``, ``energy``, ``budget``.
    energy : float in (0, 1], optional
        Smallest rank keeping this share of :math:`\\sum_i s_i^2` of :math:`W L`, i.e. of the
        output energy :math:`\\frac1N \\|W X\\|_F^2` (for the damped Gram matrix).
    budget : int or float, optional
        Largest rank whose factors fit (:func:`~refimpl.lowrank.rank_for_budget`).
    damping : float >= 0
        See :func:`activation_aware_svd`.

    Returns
    -------
    first : Linear
        ``in -> rank`` without bias, weight :math:`A` (rank, in).
    second : Linear
        ``rank -> out`` with the original bias, weight :math:`B` (out, rank).

    Notes
    -----
    See :func:`activation_aware_svd`. The bias is kept as it is: the factorization changes
    :math:`W x` only. Where we depart from SVD-LLM: it then fine-tunes the two factors (its
    "parameter update"); we stop at the closed form, which is already optimal for the (damped)
    reconstruction error of one layer.

    References
    ----------
    .. [1] Zhang, X., Zou, J., He, K. and Sun, J. (2016) Accelerating very deep convolutional
       networks for classification and detection. IEEE TPAMI 38(10).
    .. [2] Wang, X., Zheng, Y., Wan, Z. and Zhang, M. (2025) SVD-LLM: truncation-aware singular
       value decomposition for large language model compression. ICLR.
    """
    linear = check_linear(linear)
    n_in, n_out = linear.in_features, linear.out_features
    if sum(v is not None for v in (rank, energy, budget)) != 1:
        raise ValueError("give exactly one of rank, energy or budget")
    x = check_array(inputs, "inputs", kind="real")
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"inputs must have shape (N, {n_in}), got {x.shape}")
    x = x.astype(np.float64)
    W = linear.weight.astype(np.float64)
    L = _whiten(x.T @ x / x.shape[0], damping)
    if rank is not None:
        r = check_int(rank, "rank", 1, min(n_in, n_out))
    elif energy is not None:
        r = rank_for_energy(np.linalg.svd(W @ L, compute_uv=False), energy)
    else:
        r = rank_for_budget(n_in, n_out, budget)  # type: ignore[arg-type]
    res = _factor(W, L, r)
    dtype = linear.weight.dtype
    first = Linear(n_in, r, bias=False)
    second = Linear(r, n_out, bias=linear.bias is not None)
    first.params["weight"] = res.first.astype(dtype)
    second.params["weight"] = res.second.astype(dtype)
    if linear.bias is not None:
        second.params["bias"] = linear.bias.astype(dtype, copy=True)
    return first, second


def activation_aware_compress(
    model: Sequential,
    X: np.ndarray,
    ranks: Mapping[str, int],
    *,
    damping: float = 0.01,
    sequential: bool = True,
    batch_size: int = 500,
) -> Sequential:
    """A copy of ``model`` with each named dense layer replaced by its activation-aware factors.

    Parameters
    ----------
    model : Sequential
        Not modified.
    X : ndarray, shape (N, ...)
        Calibration inputs of the model.
    ranks : mapping of str to int
        ``{"fc1": 32}``: layer ``"fc1"`` becomes ``"fc1_1"`` (in -> rank) and ``"fc1_2"``
        (rank -> out), as :func:`~refimpl.lowrank.svd_compress` names them.
    damping : float >= 0
        See :func:`activation_aware_svd`.
    sequential : bool
        ``True``: the layers are factorized in forward order, each on the inputs it receives
        from the layers already factorized (as GPTQ does); ``False``: all on the original
        model's inputs.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    Sequential
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    if not isinstance(ranks, Mapping) or not ranks:
        raise ValueError("ranks must be a non-empty mapping of layer name to rank")
    names = model.names()
    for name in ranks:
        if name not in names:
            raise ValueError(f"ranks: {name!r} is not a layer of the model ({names})")
        check_linear(model[name], name)
    out = model
    for name in sorted(ranks, key=names.index):
        source = out if sequential else model
        inputs = layer_inputs(source, name, X, batch_size=batch_size)
        factors = activation_aware_factorize(out[name], inputs.reshape(len(inputs), -1),
                                             ranks[name], damping=damping)  # fmt: skip
        out = substitute(out, name, factors)
    return out
