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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn import Conv2d
from ._checks import RngLike, check_conv, check_int, check_tensor

__all__ = [
    "CPTensor",
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


#: The algebraic (GEVD) start is used only when it fits the tensor at least this well (relative
#: error of the start); farther from rank R its eigenvectors carry little of the CP structure.
GEVD_MAX_ERROR = 0.75
#: Number of random pencils the GEVD start tries; the best-fitting one is kept.
GEVD_PENCILS = 6
#: Ranks up to this are accepted for any tensor; above it, a rank must not exceed the largest
#: rank a tensor of the shape can have, ``size / max(shape)`` (see :func:`cp_als`).
MAX_OVERCOMPLETE_RANK = 64


def _leading_vectors(M: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` leading left singular vectors of ``M`` (m, n), from its Gram matrix if m <= n."""
    if M.shape[0] <= M.shape[1]:  # eigh of the small m x m Gram matrix: much cheaper than svd
        return np.linalg.eigh(M @ M.T)[1][:, ::-1][:, :r]
    return np.linalg.svd(M, full_matrices=False)[0][:, :r]


def _pencil_factors(
    P1: np.ndarray, P2: np.ndarray, U: np.ndarray, V: np.ndarray, T3: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(squared residual, A, B, C) of the start from the pencil ``P_k = At diag(d_k) Bt^T``."""
    rank = P1.shape[0]
    with np.errstate(all="ignore"):
        lam, vec = np.linalg.eig(P2 @ np.linalg.pinv(P1))  # = At diag(d_2 / d_1) At^-1
    At = np.empty((rank, rank))
    c = 0
    while c < rank:  # a complex pair spans the same real plane as its real and imaginary parts
        if lam[c].imag != 0 and c + 1 < rank:
            At[:, c], At[:, c + 1] = vec[:, c].real, vec[:, c].imag
            c += 2
        else:
            At[:, c] = vec[:, c].real
            c += 1
    A = U @ At
    B = V @ (np.linalg.pinv(At) @ P1).T  # At^-1 P_1 = diag(d_1) Bt^T
    kr = khatri_rao([A, B])
    gram = (A.T @ A) * (B.T @ B)
    C = T3.T @ kr @ np.linalg.pinv(gram, hermitian=True)  # least squares, as an ALS update
    residual = T3 - kr @ C.T
    return float(np.sum(residual * residual)), A, B, C


def _gevd_start(
    X: np.ndarray, rank: int, gen: np.random.Generator
) -> list[np.ndarray] | None:
    """Factors from the generalized eigenvectors of compressed slices, or None.

    Needs two modes of length >= ``rank`` (``i < j``, the two longest) and the other modes
    together of length ``nk >= 2``. Returns None when the start fits worse than
    ``GEVD_MAX_ERROR`` or is not finite. See :func:`cp_als`, Notes.
    """
    shape = X.shape
    i, j = sorted(int(m) for m in np.argsort([-s for s in shape], kind="stable")[:2])
    rest = [m for m in range(X.ndim) if m not in (i, j)]
    ni, nj, nk = shape[i], shape[j], int(np.prod([shape[m] for m in rest]))
    norm_x = float(np.linalg.norm(X))
    if min(ni, nj) < rank or nk < 2 or norm_x == 0.0:
        return None
    T = np.transpose(X, [i, j, *rest]).reshape(ni, nj, nk)
    T3 = T.reshape(ni * nj, nk)
    U = _leading_vectors(T.reshape(ni, nj * nk), rank)
    V = _leading_vectors(np.moveaxis(T, 1, 0).reshape(nj, ni * nk), rank)
    W = _leading_vectors(T3.T, min(nk, rank))
    # the compressed core T x1 U^T x2 V^T x3 W^T as slices S_k = At diag(c_k) Bt^T, (k, R, R)
    core = (U.T @ T.reshape(ni, nj * nk)).reshape(rank, nj, nk).transpose(0, 2, 1) @ V
    S = np.einsum("akb,kc->cab", core, W)  # core was (R, nk, R)
    mix = gen.standard_normal((GEVD_PENCILS, 2, S.shape[0]))
    candidates = [_pencil_factors(*np.tensordot(m, S, axes=1), U, V, T3) for m in mix]
    sq_err, A, B, C = min(candidates, key=lambda t: t[0] if np.isfinite(t[0]) else np.inf)
    if not (np.isfinite(sq_err) and np.sqrt(sq_err) / norm_x <= GEVD_MAX_ERROR):
        return None
    factors: list[np.ndarray] = [np.empty(0)] * X.ndim
    factors[i], factors[j] = A, B
    # each column of C, folded over the other modes, by its best rank-one approximation
    C_folded = C.T.reshape([rank] + [shape[m] for m in rest])
    for q, m in enumerate(rest):
        M = np.moveaxis(C_folded, q + 1, 1).reshape(rank, shape[m], -1)
        factors[m] = np.linalg.eigh(M @ np.swapaxes(M, 1, 2))[1][:, :, -1].T
    return factors


def _initial_factors(
    X: np.ndarray, rank: int, init: str | Sequence[np.ndarray], gen: np.random.Generator
) -> list[np.ndarray]:
    if isinstance(init, str):
        if init not in ("svd", "random"):
            raise ValueError(f"init must be 'svd', 'random' or a list of factors, got {init!r}")
        if init == "random":
            factors = [gen.standard_normal((size, rank)) for size in X.shape]
        else:
            # random columns where R exceeds the directions of a mode, drawn first (as always,
            # so the fallback below is the same start as before the GEVD start existed)
            fills = [gen.standard_normal((size, rank - k)) if k < rank else None
                     for size, k in ((s, min(s, X.size // s, rank)) for s in X.shape)]
            factors = None
            if any(f is not None for f in fills):  # a mode too short for R singular vectors
                factors = _gevd_start(X, rank, gen)
            if factors is None:
                factors = []
                for n, fill in enumerate(fills):
                    U = np.linalg.svd(unfold(X, n), full_matrices=False)[0][:, :rank]
                    factors.append(U if fill is None else np.hstack([U, fill]))
    else:
        factors = [np.array(f, dtype=np.float64) for f in init]
        expected = [(size, rank) for size in X.shape]
        if [f.shape for f in factors] != expected:
            raise ValueError(f"init factors must have shapes {expected}, got "
                             f"{[f.shape for f in factors]}")
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    return [f / np.where(n > 0, n, 1.0) for f, n in zip(factors, norms, strict=True)]


@dataclass(frozen=True)
class CPTensor:
    """A CP decomposition: ``weights`` (R,), ``factors`` (I_n, R) each, and the relative
    ``errors`` after each ALS sweep. Unpacks as ``weights, factors``, like tensorly's."""

    weights: np.ndarray
    factors: list[np.ndarray]
    errors: list[float]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.weights, self.factors))

    def __getitem__(self, index: int) -> Any:
        return (self.weights, self.factors)[index]

    def __len__(self) -> int:
        return 2

    @property
    def rank(self) -> int:
        return int(self.weights.size)

    def to_tensor(self) -> np.ndarray:
        """The tensor :math:`\\sum_r \\lambda_r a^{(1)}_r \\circ \\dots \\circ a^{(N)}_r`."""
        return cp_to_tensor(self.weights, self.factors)


def cp_als(
    tensor: np.ndarray,
    rank: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-8,
    init: str | Sequence[np.ndarray] = "svd",
    rng: RngLike = None,
) -> CPTensor:
    """CP decomposition of a tensor by alternating least squares (Kolda and Bader 2009).

    Parameters
    ----------
    tensor : ndarray, shape (I_1, ..., I_N), N >= 2
        Real entries; computed in float64.
    rank : int
        Number of rank-one components R, at most ``max(64, size / max(shape))``: no tensor
        needs more than ``size / max(shape)`` terms (one per fiber of its longest mode), and
        small overcomplete ranks (up to ``MAX_OVERCOMPLETE_RANK`` = 64) are allowed.
    max_iter : int >= 1
        Maximum number of sweeps (each sweep updates every factor once).
    tol : float >= 0
        Stop when the relative error changes by less than ``tol`` between sweeps.
    init : {"svd", "random"} or sequence of ndarray
        ``"svd"``: the leading left singular vectors of each unfolding; where R exceeds the
        length of a mode, the generalized-eigenvector start of the Notes if it fits (relative
        error at most ``GEVD_MAX_ERROR`` = 0.75), else random columns fill in. ``"random"``:
        standard normal entries; or explicit factors of shapes (I_n, R).
    rng : int, numpy.random.Generator or None
        Seed or generator for the random initial columns and pencils; the result is a
        deterministic function of the tensor and ``rng``.

    Returns
    -------
    CPTensor
        ``weights`` (R,): :math:`\\lambda_r \\ge 0`, in decreasing order; ``factors``, list of
        (I_n, R) arrays with unit-norm columns (a zero column stays zero); ``errors``: the
        relative error :math:`\\|\\mathcal X - \\hat{\\mathcal X}\\|_F / \\|\\mathcal X\\|_F`
        after each sweep. It unpacks as ``weights, factors = cp_als(...)``, as tensorly's
        ``CPTensor`` does.

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

    **The start.** Where every mode has at least R directions the start is the leading singular
    vectors (as tensorly's ``init="svd"``). A convolution kernel at a rank above its kernel
    width (5 x 5 at R = 8) has modes with fewer, and random columns there make the number of
    sweeps a draw (8 to over 100 on a planted rank-8 kernel). There the start is built
    algebraically, as in direct trilinear decomposition [2]_ [3]_: view the tensor as
    :math:`I \\times J \\times K` (its two longest modes, :math:`I, J \\ge R`, and all the others
    merged), compress it to the leading R, R and :math:`\\min(K, R)` singular vectors,
    :math:`S_k = U^T X_k V`, and mix the slices into a pencil
    :math:`P_1 = \\sum_k \\alpha_k S_k`, :math:`P_2 = \\sum_k \\beta_k S_k`. For an exact CP
    tensor :math:`P_m = \\tilde A D_m \\tilde B^T` with diagonal :math:`D_m`, so

    .. math:: P_2 P_1^{-1} = \\tilde A\\, D_2 D_1^{-1} \\tilde A^{-1},

    whose eigenvectors are the columns of :math:`\\tilde A` (a complex pair is replaced by its
    real and imaginary parts), :math:`A = U \\tilde A`, :math:`B = V\\, (\\tilde A^{-1} P_1)^T`,
    and the merged factor :math:`C` follows by least squares; each column of :math:`C`,
    folded back over the merged modes, gives them its best rank-one approximation.
    ``GEVD_PENCILS`` = 6 random pencils (:math:`\\alpha, \\beta` standard normal from ``rng``)
    are tried and the one whose start fits best is kept. For a tensor of rank R the start is
    exact; near rank R it converges in a few sweeps (5 to 7 on the planted rank-8 kernel with
    10% noise, for each of 10 seeds). Far from rank R (a trained kernel, start error above
    ``GEVD_MAX_ERROR``) the pencil's eigenvectors say little and the random fill is kept.

    References
    ----------
    .. [1] Kolda, T. G. and Bader, B. W. (2009) Tensor decompositions and applications. SIAM
       Review 51(3), 455-500.
    .. [2] Sanchez, E. and Kowalski, B. R. (1990) Tensorial resolution: a direct trilinear
       decomposition. Journal of Chemometrics 4(1), 29-45.
    .. [3] Leurgans, S. E., Ross, R. T. and Abel, R. B. (1993) A decomposition for three-way
       arrays. SIAM Journal on Matrix Analysis and Applications 14(4), 1064-1083.
    """
    X = check_tensor(tensor, "tensor", min_ndim=2)
    # Every tensor is a sum of size / max(shape) rank-one terms (one per fiber of its longest
    # mode), so a larger rank is never needed; it would only allocate R x R Gram matrices
    # (rank=10**7 asked NumPy for 728 TiB). Small overcomplete ranks cost nothing: allowed.
    rank = check_int(rank, "rank", 1, max(MAX_OVERCOMPLETE_RANK, X.size // max(X.shape)))
    max_iter = check_int(max_iter, "max_iter", 1)
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
    for _ in range(max_iter):
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
    return CPTensor(weights, factors, errors)


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
    first.params["weight"] = np.ascontiguousarray(
        a_in.T.reshape(rank, conv.in_channels, 1, 1), dtype=dtype
    )
    vertical.params["weight"] = np.ascontiguousarray(a_y.T.reshape(rank, 1, kh, 1), dtype=dtype)
    horizontal.params["weight"] = np.ascontiguousarray(a_x.T.reshape(rank, 1, 1, kw), dtype=dtype)
    last.params["weight"] = np.ascontiguousarray(
        a_out.reshape(conv.out_channels, rank, 1, 1), dtype=dtype
    )
    if conv.bias is not None:
        last.params["bias"] = conv.bias.astype(dtype, copy=True)
    return first, vertical, horizontal, last


def cp_decompose_conv(
    conv: Conv2d,
    rank: int,
    *,
    max_iter: int = 100,
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
    max_iter, tol, init, rng
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
        conv.weight, rank, max_iter=max_iter, tol=tol, init=init, rng=rng
    )
    return cp_conv_layers(conv, weights, factors)
