"""CP (CANDECOMP/PARAFAC) decomposition by alternating least squares, and CP convolutions.

A tensor :math:`\\mathcal X` of shape :math:`I_1 \\times \\dots \\times I_N` is approximated by
a sum of ``rank`` outer products,

.. math:: \\mathcal X \\approx \\sum_{r=1}^R \\lambda_r\\, a^{(1)}_r \\circ a^{(2)}_r \\circ
          \\dots \\circ a^{(N)}_r,

stored as weights :math:`\\lambda` (R,) and factor matrices :math:`A^{(n)}` of shape
(:math:`I_n`, R), the layout of tensorly's ``parafac``. :func:`cp_als` computes it from scratch;
:func:`cp_decompose_conv` turns the CP decomposition of a convolution kernel into four small
convolutions (Lebedev et al. 2015). See chapter 7 of the book, "CP decomposition of a
convolution".

References
----------
.. [1] Kolda, T. G. and Bader, B. W. (2009) Tensor decompositions and applications. SIAM Review
   51(3), 455-500.
.. [2] Lebedev, V., Ganin, Y., Rakhuba, M., Oseledets, I. and Lempitsky, V. (2015) Speeding-up
   convolutional neural networks using fine-tuned CP-decomposition. ICLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn import Conv2d
from ._checks import RngLike, check_conv, check_int, check_tensor

__all__ = [
    "cp_als",
    "cp_conv_layers",
    "cp_decompose_conv",
    "cp_to_tensor",
    "fold",
    "khatri_rao",
    "unfold",
]


def unfold(tensor: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding (matricization) of a tensor.

    Parameters
    ----------
    tensor : ndarray, shape (I_1, ..., I_N)
    mode : int, 0 <= mode < N

    Returns
    -------
    ndarray, shape (I_mode, prod of the other I)
        Row ``i`` holds the entries with index ``i`` along ``mode``; the columns run over the
        other indices in C order (the last one fastest), tensorly's convention. With
        :func:`khatri_rao` of the other factors in increasing mode order,
        ``unfold(cp_to_tensor(w, A), n) == (A[n] * w) @ khatri_rao(A without A[n]).T``.
    """
    t = np.asarray(tensor)
    mode = check_int(mode, "mode", 0, t.ndim - 1)
    return np.moveaxis(t, mode, 0).reshape(t.shape[mode], -1)


def fold(matrix: np.ndarray, mode: int, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`unfold`: the tensor of ``shape`` whose mode-``mode`` unfolding is given.

    Parameters
    ----------
    matrix : ndarray, shape (shape[mode], prod of the other sizes)
    mode : int
    shape : sequence of int
    """
    shape = tuple(int(s) for s in shape)
    mode = check_int(mode, "mode", 0, len(shape) - 1)
    m = np.asarray(matrix)
    moved = (shape[mode],) + shape[:mode] + shape[mode + 1 :]
    if m.size != int(np.prod(shape)) or m.ndim != 2 or m.shape[0] != shape[mode]:
        raise ValueError(f"matrix of shape {m.shape} is not a mode-{mode} unfolding of {shape}")
    return np.moveaxis(m.reshape(moved), 0, mode)


def khatri_rao(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """Column-wise Kronecker product of matrices with the same number of columns.

    Parameters
    ----------
    matrices : sequence of ndarray, shapes (I_k, R)

    Returns
    -------
    ndarray, shape (prod I_k, R)
        Column ``r`` is ``kron(A_1[:, r], A_2[:, r], ...)``: the row index runs over
        ``(i_1, i_2, ...)`` in C order (the last matrix's index fastest).

    Notes
    -----
    :math:`(A \\odot B)_{(i j), r} = A_{i r} B_{j r}` (Kolda and Bader 2009, section 2.6).
    Built by broadcasting, one matrix at a time.
    """
    mats = [np.asarray(m) for m in matrices]
    if not mats:
        raise ValueError("matrices must hold at least one matrix")
    if any(m.ndim != 2 for m in mats):
        raise ValueError("every matrix of khatri_rao must be 2-D")
    r = mats[0].shape[1]
    if any(m.shape[1] != r for m in mats):
        raise ValueError(f"all matrices need the same number of columns, got "
                         f"{[m.shape for m in mats]}")
    out = mats[0]
    for m in mats[1:]:
        out = (out[:, None, :] * m[None, :, :]).reshape(-1, r)
    return out


def cp_to_tensor(weights: np.ndarray, factors: Sequence[np.ndarray]) -> np.ndarray:
    """The full tensor :math:`\\sum_r \\lambda_r a^{(1)}_r \\circ \\dots \\circ a^{(N)}_r`.

    Parameters
    ----------
    weights : ndarray, shape (R,)
    factors : sequence of ndarray, shapes (I_n, R)

    Returns
    -------
    ndarray, shape (I_1, ..., I_N)
    """
    factors = [np.asarray(f) for f in factors]
    w = np.asarray(weights)
    if w.ndim != 1 or any(f.ndim != 2 or f.shape[1] != w.size for f in factors):
        raise ValueError("weights must be (R,) and every factor (I_n, R)")
    shape = tuple(f.shape[0] for f in factors)
    if len(factors) == 1:
        return factors[0] @ w
    full = (factors[0] * w) @ khatri_rao(factors[1:]).T
    return full.reshape(shape)


def _initial_factors(
    X: np.ndarray, rank: int, init: str | Sequence[np.ndarray], gen: np.random.Generator
) -> list[np.ndarray]:
    if isinstance(init, str):
        if init not in ("svd", "random"):
            raise ValueError(f"init must be 'svd', 'random' or a list of factors, got {init!r}")
        factors = []
        for n, size in enumerate(X.shape):
            if init == "svd":
                U = np.linalg.svd(unfold(X, n), full_matrices=False)[0][:, :rank]
                if U.shape[1] < rank:  # more components than this mode has directions
                    U = np.hstack([U, gen.standard_normal((size, rank - U.shape[1]))])
            else:
                U = gen.standard_normal((size, rank))
            factors.append(U)
    else:
        factors = [np.array(f, dtype=np.float64) for f in init]
        expected = [(size, rank) for size in X.shape]
        if [f.shape for f in factors] != expected:
            raise ValueError(f"init factors must have shapes {expected}, got "
                             f"{[f.shape for f in factors]}")
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    return [f / np.where(n > 0, n, 1.0) for f, n in zip(factors, norms, strict=True)]


def cp_als(
    tensor: np.ndarray,
    rank: int,
    *,
    n_iter_max: int = 100,
    tol: float = 1e-8,
    init: str | Sequence[np.ndarray] = "svd",
    rng: RngLike = None,
    return_errors: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]] | tuple[np.ndarray, list[np.ndarray], list[float]]:
    """CP decomposition of a tensor by alternating least squares (Kolda and Bader 2009).

    Parameters
    ----------
    tensor : ndarray, shape (I_1, ..., I_N), N >= 2
        Real entries; computed in float64.
    rank : int >= 1
        Number of rank-one components R.
    n_iter_max : int >= 1
        Maximum number of sweeps (each sweep updates every factor once).
    tol : float >= 0
        Stop when the relative error changes by less than ``tol`` between sweeps.
    init : {"svd", "random"} or sequence of ndarray
        ``"svd"``: the leading left singular vectors of each unfolding (random columns fill in
        where R exceeds :math:`I_n`); ``"random"``: standard normal entries; or explicit
        factors of shapes (I_n, R).
    rng : int, numpy.random.Generator or None
        Seed or generator for the random initial columns.
    return_errors : bool
        Also return the relative error after every sweep.

    Returns
    -------
    weights : ndarray, shape (R,)
        :math:`\\lambda_r \\ge 0`, in decreasing order.
    factors : list of ndarray, shapes (I_n, R)
        Unit-norm columns (a zero column stays zero).
    errors : list of float, only if ``return_errors``
        :math:`\\|\\mathcal X - \\hat{\\mathcal X}\\|_F / \\|\\mathcal X\\|_F` after each sweep.

    Notes
    -----
    With all factors but :math:`A^{(n)}` fixed, the best :math:`A^{(n)}` solves a linear least
    squares problem in the unfolding :math:`X_{(n)}`. Its normal equations give (Kolda and Bader
    2009, Fig. 3.3)

    .. math:: A^{(n)} \\leftarrow X_{(n)} \\big(\\textstyle\\bigodot_{m \\ne n} A^{(m)}\\big)
              \\big(\\mathop{\\ast}_{m \\ne n} A^{(m)T} A^{(m)}\\big)^{\\dagger},

    where :math:`\\odot` is the Khatri-Rao product (:func:`khatri_rao`, others in increasing
    mode order), :math:`\\ast` the elementwise product of the R x R Gram matrices and
    :math:`\\dagger` the pseudo-inverse. The columns are then normalised into :math:`\\lambda`.
    Each update minimises the error over one factor, so the error never increases. The error is
    computed exactly from the last unfolding (no cancellation-prone norm identity), so a planted
    exact CP tensor is recovered to machine precision when ``tol`` is small. ALS can converge
    slowly (the "swamps" of nearly collinear components) and a best rank-R approximation need
    not exist for R > 1 (degeneracy; Kolda and Bader 2009, section 3.3).

    References
    ----------
    .. [1] Kolda, T. G. and Bader, B. W. (2009) Tensor decompositions and applications. SIAM
       Review 51(3), 455-500.
    """
    X = check_tensor(tensor, "tensor", min_ndim=2)
    rank = check_int(rank, "rank", 1)
    n_iter_max = check_int(n_iter_max, "n_iter_max", 1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or tol < 0:
        raise ValueError(f"tol must be a float >= 0, got {tol!r}")
    gen = np.random.default_rng(rng)
    n_modes = X.ndim
    factors = _initial_factors(X, rank, init, gen)
    unfoldings = [unfold(X, n) for n in range(n_modes)]
    grams = [f.T @ f for f in factors]
    weights = np.ones(rank)
    norm_x = float(np.linalg.norm(X))
    errors: list[float] = []
    for _ in range(n_iter_max):
        for n in range(n_modes):
            others = [m for m in range(n_modes) if m != n]
            V = np.prod(np.stack([grams[m] for m in others]), axis=0)
            kr = khatri_rao([factors[m] for m in others])
            A = unfoldings[n] @ kr @ np.linalg.pinv(V, hermitian=True)
            weights = np.linalg.norm(A, axis=0)
            factors[n] = A / np.where(weights > 0, weights, 1.0)
            grams[n] = factors[n].T @ factors[n]
        residual = unfoldings[-1] - (factors[-1] * weights) @ kr.T  # kr of the last mode
        # sqrt(sum(r * r)) rather than a BLAS dot: the same number, and cheap on a busy machine
        err = float(np.sqrt(np.sum(residual * residual))) / norm_x if norm_x > 0 else 0.0
        errors.append(err)
        if err == 0.0 or (len(errors) > 1 and abs(errors[-2] - err) < tol):
            break
    order = np.argsort(-weights, kind="stable")
    weights = weights[order]
    factors = [f[:, order] for f in factors]
    if return_errors:
        return weights, factors, errors
    return weights, factors


def cp_conv_layers(
    conv: Conv2d, weights: np.ndarray, factors: Sequence[np.ndarray]
) -> tuple[Conv2d, Conv2d, Conv2d, Conv2d]:
    """Four convolutions that compute ``conv`` with the kernel ``cp_to_tensor(weights, factors)``.

    Parameters
    ----------
    conv : Conv2d
        The convolution being replaced (groups=1): gives stride, padding, bias and dtype.
    weights : ndarray, shape (R,)
    factors : [A_out (C_out, R), A_in (C_in, R), A_y (kH, R), A_x (kW, R)]
        CP factors of the kernel, modes in the order of ``conv.weight``
        (C_out, C_in, kH, kW).

    Returns
    -------
    (Conv2d, Conv2d, Conv2d, Conv2d)
        1x1 ``C_in -> R``; ``kH x 1`` depthwise (groups=R, stride (sH, 1), padding (pH, 0));
        ``1 x kW`` depthwise (stride (1, sW), padding (0, pW)); 1x1 ``R -> C_out`` with the
        original bias.

    Notes
    -----
    :math:`K_{t s y x} = \\sum_r \\lambda_r A^{out}_{t r} A^{in}_{s r} A^{y}_{y r} A^{x}_{x r}`,
    so :math:`K * X = A^{out} \\Lambda (A^x * (A^y * (A^{in\\,T} X)))`: a projection onto R
    channels, a vertical and a horizontal filter per channel, and a recombination (Lebedev et
    al. 2015, Fig. 1). Zero padding commutes with the bias-free 1x1 projection, so padding and
    stride move to the two depthwise layers unchanged. :math:`\\lambda_r^{1/4}` goes into each
    of the four factors (the product is unchanged; the scales are balanced for fine-tuning).
    """
    conv = check_conv(conv)
    w = np.asarray(weights, dtype=np.float64)
    facs = [np.asarray(f, dtype=np.float64) for f in factors]
    kh, kw = conv.kernel_size
    expected = [(conv.out_channels,), (conv.in_channels,), (kh,), (kw,)]
    if (w.ndim != 1 or len(facs) != 4 or any(
            f.ndim != 2 or f.shape != (e[0], w.size) for f, e in zip(facs, expected, strict=True))):
        raise ValueError(
            f"factors must be 4 matrices of shapes (C_out, R), (C_in, R), (kH, R), (kW, R) = "
            f"{[(e[0], w.size) for e in expected]}, got {[f.shape for f in facs]}"
        )
    rank = w.size
    a_out, a_in, a_y, a_x = (f * np.abs(w) ** 0.25 for f in facs)
    a_out = a_out * np.sign(w)
    dtype = conv.weight.dtype
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    first = Conv2d(conv.in_channels, rank, 1, bias=False)
    vertical = Conv2d(rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), groups=rank,
                      bias=False)
    horizontal = Conv2d(rank, rank, (1, kw), stride=(1, sw), padding=(0, pw), groups=rank,
                        bias=False)
    last = Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
    first.params["weight"] = a_in.T.reshape(rank, conv.in_channels, 1, 1).astype(dtype)
    vertical.params["weight"] = a_y.T.reshape(rank, 1, kh, 1).astype(dtype)
    horizontal.params["weight"] = a_x.T.reshape(rank, 1, 1, kw).astype(dtype)
    last.params["weight"] = a_out.reshape(conv.out_channels, rank, 1, 1).astype(dtype)
    if conv.bias is not None:
        last.params["bias"] = conv.bias.astype(dtype, copy=True)
    return first, vertical, horizontal, last


def cp_decompose_conv(
    conv: Conv2d,
    rank: int,
    *,
    n_iter_max: int = 100,
    tol: float = 1e-8,
    init: str = "svd",
    rng: RngLike = None,
) -> tuple[Conv2d, Conv2d, Conv2d, Conv2d]:
    """Replace a convolution by four small ones: the rank-``rank`` CP decomposition of its kernel.

    Parameters
    ----------
    conv : Conv2d
        Weight (C_out, C_in, kH, kW), groups=1; not modified.
    rank : int >= 1
        Number of CP components R (the width of the three inner layers).
    n_iter_max, tol, init, rng
        Passed to :func:`cp_als`.

    Returns
    -------
    (Conv2d, Conv2d, Conv2d, Conv2d)
        See :func:`cp_conv_layers`: 1x1 ``C_in -> R``, ``kH x 1`` and ``1 x kW`` depthwise,
        1x1 ``R -> C_out`` with bias.

    Notes
    -----
    Parameters :math:`R (C_{in} + k_H + k_W + C_{out})` instead of :math:`C_{out} C_{in} k_H k_W`;
    multiply-accumulates per output pixel likewise (up to the different spatial sizes of the
    intermediate maps). Lebedev et al. (2015) compute the CP decomposition by non-linear least
    squares (with Tensorlab); we use plain ALS (:func:`cp_als`), which is simpler but can
    converge slowly, and recover accuracy by fine-tuning the whole network, as they do. See
    chapter 7, "CP decomposition of a convolution".

    References
    ----------
    .. [1] Lebedev, V., Ganin, Y., Rakhuba, M., Oseledets, I. and Lempitsky, V. (2015)
       Speeding-up convolutional neural networks using fine-tuned CP-decomposition. ICLR.
    """
    conv = check_conv(conv)
    weights, factors = cp_als(
        conv.weight, rank, n_iter_max=n_iter_max, tol=tol, init=init, rng=rng
    )
    return cp_conv_layers(conv, weights, factors)
