"""Post-training quantization from calibration data: round to nearest, OBQ and GPTQ.

Round to nearest (RTN) quantizes each weight on its own. OBQ and GPTQ quantize a layer so that
its *outputs* change least on calibration inputs: they solve Optimal Brain Surgeon's problem on
the layer's reconstruction error :math:`\\frac1M \\|W X - \\hat W X\\|_F^2`, whose Hessian
:math:`H = \\frac2M X X^T` every row of the weight shares, with the quantization error
:math:`w_q - \\mathrm{quant}(w_q)` in place of the pruned weight :math:`w_q`:

* :func:`rtn_quantize`: the baseline, each weight to the nearest point of its row's (or group's)
  grid;
* :func:`obq_quantize` (Frantar and Alistarh 2022): exact greedy OBS per row, the weight whose
  quantization costs least first, with the inverse-Hessian downdate after each;
* :func:`gptq_quantize` (Frantar et al. 2023): one column order for all rows, the Cholesky form
  of the inverse Hessian, lazy block updates, dampening, groups and activation order;
* :class:`GridQuant`: the parametrization that installs the result as integer codes on a fixed
  grid (so the compressed model file stores codes and scales);
* :func:`one_shot_quantize`: the model-level driver (layer after layer, each seeing the already
  quantized layers' outputs), with per-layer errors and times.

Grid. A row (or a group of ``group_size`` columns of a row) has a uniform grid of ``2^bits``
levels: affine by default, as in GPTQ's code (:math:`[\\min(w, 0), \\max(w, 0)]` with an integer
zero point), or symmetric (``2^bits - 1`` levels, the book's :func:`~refimpl.quantization.qparams`
convention). Shapes and scaling of :math:`H` as in :mod:`refimpl.pruning.one_shot`. See
chapter 10 of the book, "One-shot compression".

References
----------
.. [1] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression: a framework for accurate
   post-training quantization and pruning. NeurIPS 35.
.. [2] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
   post-training quantization for generative pre-trained transformers. ICLR.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..nn import Mask, Sequential
from ..nn.layers import Layer
from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..pruning.magnitude import prunable_layers
from ..pruning.one_shot import (
    OneShotReport,
    _as_matrix,
    _calibrate,
    _check_calibration,
    _check_damping,
    _check_keep,
    _inverse,
    _obs_step_rows,
    _prepare,
    _upper_inverse_factor,
)
from ..validation import check_int
from .uniform import dequantize, qparams, qrange, quantize

__all__ = [
    "GridQuant",
    "QuantResult",
    "gptq_quantize",
    "obq_quantize",
    "one_shot_quantize",
    "rtn_quantize",
]


@dataclass
class QuantResult:
    """A weight matrix quantized on a uniform grid per row (or per group of columns).

    Attributes
    ----------
    weight : ndarray (float64), shape (d_row, d_col)
        The quantized values, ``scale[i, g] * (codes[i, j] - zero_point[i, g])`` with
        ``g = groups[j]``.
    codes : ndarray of int64, shape (d_row, d_col)
        Integer codes in :func:`~refimpl.quantization.qrange` ``(bits, symmetric)``.
    scale : ndarray (float64), shape (d_row, n_groups)
    zero_point : ndarray of int64, shape (d_row, n_groups)
        0 for a symmetric grid.
    groups : ndarray of int64, shape (d_col,)
        The group of each column (all 0 with one grid per row; ``j // group_size`` unless GPTQ
        ran in activation order).
    bits : int
    symmetric : bool
    group_size : int
        Columns per group (0: one grid per row).
    loss : float
        The method's prediction of the reconstruction error
        :math:`\\sum_i \\frac12 \\delta w_i^T H \\delta w_i` (exact for the damped :math:`H`);
        ``nan`` for round to nearest, which uses no :math:`H`.
    """

    weight: np.ndarray
    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    groups: np.ndarray
    bits: int
    symmetric: bool
    group_size: int
    loss: float

    def parametrization(self, shape: tuple[int, ...] | None = None) -> GridQuant:
        """A :class:`GridQuant` holding these codes, for a weight of ``shape`` (default the
        matrix's; a convolution passes its (C_out, C_in, kH, kW))."""
        codes = self.codes if shape is None else self.codes.reshape(shape)
        return GridQuant(codes, self.scale, self.zero_point, self.groups, self.bits,
                         symmetric=self.symmetric, group_size=self.group_size)  # fmt: skip


class GridQuant(Parametrization):
    """Weights stored as integer codes on a fixed grid per row (or per group of columns).

    The layer computes with :math:`W_{ij} = s_{i,g(j)} (q_{ij} - z_{i,g(j)})`: what RTN, OBQ and
    GPTQ produce. Unlike :class:`~refimpl.quantization.UniformQuant`, which re-derives its scale
    from the current weights, the grid is part of the stored state, because GPTQ's weights need
    not reach the ends of the grid they were quantized on.

    Parameters
    ----------
    codes : ndarray of int, shape of the weight
        Codes in ``qrange(bits, symmetric)``; the rows of a convolution weight are its output
        channels, flattened in C order (im2col's column order).
    scale : ndarray of float, shape (d_row, n_groups)
    zero_point : ndarray of int, shape (d_row, n_groups)
    groups : ndarray of int, shape (d_col,)
        Group of each column, in ``[0, n_groups)``.
    bits : int
    symmetric : bool
    group_size : int
        Columns per group when the groups are contiguous (0: one per row); informative, and it
        lets the file store no ``groups`` array.

    Notes
    -----
    Stored tensors: ``params["scale"]`` (trained: a gradient
    :math:`\\partial L / \\partial s_{ig} = \\sum_{j \\in g} \\partial L / \\partial W_{ij}
    (q_{ij} - z_{ig})` reaches it, as in learned-step-size quantization) and the buffers
    ``codes``, ``zero_point`` and ``groups``. The step replaces its input (``uses_input =
    False``); a mask below it keeps its zeros. A deployed file stores the codes, the scales and,
    for an affine grid, the zero points (and the groups when they are not contiguous).

    References
    ----------
    .. [1] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
       post-training quantization for generative pre-trained transformers. ICLR.
    .. [2] Esser, S. K. et al. (2020) Learned step size quantization. ICLR.
    """

    file_name = "grid"
    uses_input = False

    def __init__(
        self,
        codes: np.ndarray,
        scale: np.ndarray,
        zero_point: np.ndarray,
        groups: np.ndarray,
        bits: int,
        *,
        symmetric: bool = False,
        group_size: int = 0,
    ) -> None:
        self.bits = check_int(bits, "bits", 2, 16)
        self.symmetric = bool(symmetric)
        self.group_size = check_int(group_size, "group_size", 0)
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer) or codes.ndim < 2:
            raise TypeError(f"codes must be an int array (d_row, ...), got {codes.dtype} "
                            f"{codes.shape}")  # fmt: skip
        qmin, qmax = qrange(self.bits, self.symmetric)
        if codes.size and (codes.min() < qmin or codes.max() > qmax):
            raise ValueError(f"codes must lie in [{qmin}, {qmax}] for bits={self.bits}")
        rows, d = codes.shape[0], codes.size // codes.shape[0]
        scale = np.asarray(scale, dtype=np.float64)
        zero = np.asarray(zero_point)
        groups = np.asarray(groups)
        if scale.ndim != 2 or scale.shape[0] != rows or zero.shape != scale.shape:
            raise ValueError(f"scale and zero_point must have shape ({rows}, n_groups), got "
                             f"{scale.shape} and {zero.shape}")  # fmt: skip
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("scale must be finite and positive")
        if groups.shape != (d,) or not np.issubdtype(groups.dtype, np.integer):
            raise ValueError(f"groups must be an int array of shape ({d},)")
        if d and (groups.min() < 0 or groups.max() >= scale.shape[1]):
            raise ValueError(f"groups must lie in [0, {scale.shape[1]})")
        self.codes = codes.astype(np.int64)
        self.scale = scale
        self.zero_point = zero.astype(np.int64)
        self.groups = groups.astype(np.int64)

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.codes.shape != x.shape:
            raise ValueError(f"codes have shape {self.codes.shape} but the weight has {x.shape}")
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return {"scale": self.scale.astype(dtype)}, {
            "codes": self.codes.copy(),
            "zero_point": self.zero_point.copy(),
            "groups": self.groups.copy(),
        }

    @staticmethod
    def _levels(buffers: Arrays) -> np.ndarray:
        codes = buffers["codes"]
        q = codes.reshape(codes.shape[0], -1)
        return (q - buffers["zero_point"][:, buffers["groups"]]).astype(np.float64)

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        scale = params["scale"]
        w = scale.astype(np.float64)[:, buffers["groups"]] * self._levels(buffers)
        return w.reshape(buffers["codes"].shape).astype(scale.dtype)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        scale = params["scale"]
        g = grad.reshape(grad.shape[0], -1).astype(np.float64) * self._levels(buffers)
        onehot = np.zeros((g.shape[1], scale.shape[1]))
        onehot[np.arange(g.shape[1]), buffers["groups"]] = 1.0
        return None, {"scale": (g @ onehot).astype(scale.dtype)}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """Codes ``q - q_min`` of the kept entries, the scales, the zero points (affine grid)
        and the groups (when not contiguous)."""
        qmin, _ = qrange(self.bits, self.symmetric)
        codes = buffers["codes"]
        ints = {"codes": codes[np.asarray(keep, bool)].astype(np.int64) - qmin}
        if not self.symmetric:
            ints["zero_point"] = buffers["zero_point"].ravel().astype(np.int64) - qmin
        groups = buffers["groups"]
        if not np.array_equal(groups, _contiguous(groups.size, self.group_size)):
            ints["groups"] = groups.astype(np.int64)
        n_groups = int(params["scale"].shape[1])
        config = {"bits": self.bits, "symmetric": self.symmetric,
                  "group_size": self.group_size, "n_groups": n_groups}  # fmt: skip
        return Deployed(config, {"scale": params["scale"].ravel()}, ints)

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        conf = deployed.config
        qmin, _ = qrange(int(conf["bits"]), bool(conf["symmetric"]))
        rows = int(shape[0])
        d = int(np.prod(shape[1:], dtype=np.int64))
        n_groups = int(conf["n_groups"])
        scale = np.asarray(deployed.floats["scale"], dtype=np.float64).reshape(rows, n_groups)
        if "zero_point" in deployed.ints:
            zero = deployed.ints["zero_point"].astype(np.int64).reshape(rows, n_groups) + qmin
        else:
            zero = np.zeros((rows, n_groups), dtype=np.int64)
        if "groups" in deployed.ints:
            groups = deployed.ints["groups"].astype(np.int64)
        else:
            groups = _contiguous(d, int(conf["group_size"]))
        r, c = np.nonzero(np.asarray(keep, bool).reshape(rows, d))
        codes = deployed.ints["codes"].astype(np.int64) + qmin
        g = groups[c]
        return scale[r, g] * (codes - zero[r, g]).astype(np.float64)

    def __repr__(self) -> str:
        return (f"GridQuant(bits={self.bits}, symmetric={self.symmetric}, "
                f"n_groups={self.scale.shape[1]})")  # fmt: skip


def _contiguous(d: int, group_size: int) -> np.ndarray:
    """Group of each of ``d`` columns for contiguous groups (all 0 when ``group_size`` is 0)."""
    cols = np.arange(d, dtype=np.int64)
    return cols // group_size if group_size else np.zeros(d, dtype=np.int64)


# -- the grid -------------------------------------------------------------------------------------
def _check_quant_args(bits: int, group_size: int | None, d: int) -> tuple[int, int]:
    bits = check_int(bits, "bits", 2, 16)
    gs = 0 if group_size is None else check_int(group_size, "group_size", 1)
    return bits, (0 if gs >= d else gs)


def _grid(cols: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point (d_row,) of each row of ``cols`` (d_row, k): its range's grid."""
    scale, zero = qparams(cols, bits, axis=0, symmetric=symmetric)
    return scale[:, 0], zero[:, 0]


def _round(
    w: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, symmetric: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int64) and values of ``w`` rounded to the nearest grid point (clipped)."""
    codes = quantize(w, scale, zero, bits, symmetric=symmetric).astype(np.int64)
    return codes, dequantize(codes, scale, zero)


def _static_grid(
    W: np.ndarray, bits: int, gs: int, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row (``gs = 0``) or per-group grids of ``W`` itself: ``(scale, zero, groups)``."""
    d = W.shape[1]
    groups = _contiguous(d, gs)
    n_groups = int(groups.max()) + 1 if d else 1
    scale = np.empty((W.shape[0], n_groups))
    zero = np.empty((W.shape[0], n_groups), dtype=np.int64)
    for g in range(n_groups):
        scale[:, g], zero[:, g] = _grid(W[:, groups == g], bits, symmetric)
    return scale, zero, groups


def rtn_quantize(
    weight: np.ndarray, bits: int, *, group_size: int | None = None, symmetric: bool = False
) -> QuantResult:
    """Round to nearest: each weight to the nearest point of its row's (or group's) grid.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
        (a convolution weight is viewed as (C_out, C_in * kH * kW)).
    bits : int in [2, 16]
    group_size : int, optional
        One grid per ``group_size`` consecutive columns of a row (GPTQ uses 128); default one
        grid per row.
    symmetric : bool
        Symmetric grid (``2^bits - 1`` levels, zero point 0) instead of the affine default.

    Returns
    -------
    QuantResult
        ``loss`` is ``nan``: RTN does not look at the data.

    Notes
    -----
    :math:`\\hat w_{ij} = s (\\mathrm{clip}(\\mathrm{round}(w_{ij}/s) + z) - z)` with
    :math:`s, z` from the range of the row or group (:func:`~refimpl.quantization.qparams`).
    Each weight's error is at most :math:`s/2`, but the errors add up in the outputs without
    any compensation: RTN minimizes the weight error, not the output error.

    References
    ----------
    .. [1] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
       post-training quantization for generative pre-trained transformers. ICLR (RTN is its
       baseline, with the same per-row grids).
    """
    W = _as_matrix(weight)
    bits, gs = _check_quant_args(bits, group_size, W.shape[1])
    scale, zero, groups = _static_grid(W, bits, gs, bool(symmetric))
    codes, values = _round(W, scale[:, groups], zero[:, groups], bits, bool(symmetric))
    return QuantResult(values, codes, scale, zero, groups, bits, bool(symmetric), gs, float("nan"))


# -- OBQ ------------------------------------------------------------------------------------------
def obq_quantize(
    weight: np.ndarray,
    hessian: np.ndarray,
    bits: int,
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    damping: float = 0.01,
    order: np.ndarray | None = None,
    outliers: bool = True,
    rows_per_batch: int = 16,
    mask: np.ndarray | None = None,
) -> QuantResult:
    """Optimal Brain Quantizer: exact greedy OBS quantization of each row of a layer.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
    hessian : ndarray, shape (d_col, d_col)
        :func:`~refimpl.pruning.reconstruction_hessian` of the calibration inputs.
    bits : int in [2, 16]
    group_size : int, optional
        One grid per group of columns, fixed from the original weights before quantizing.
    symmetric : bool
        Symmetric grid instead of the affine default.
    damping : float >= 0
        Relative dampening (see :func:`~refimpl.pruning.inverse_hessian_cholesky`).
    order : ndarray of int, shape (d_col,), optional
        Quantize the columns in this fixed order in every row instead of greedily (with the
        identity order this is GPTQ's result, computed the slow way).
    outliers : bool
        OBC's heuristic: a weight that updates have pushed beyond its grid's range
        (:math:`|w - \\mathrm{quant}(w)| > s/2`) is quantized next, the largest error first.
    rows_per_batch : int >= 1
        Rows processed together (each carries its own (d_col, d_col) inverse Hessian).
    mask : ndarray of bool, shape (d_row, d_col), optional
        Entries pruned before (``False``): each row first sets them to exactly 0 by OBS steps
        (pruning them, as OBC does for weights already zero), then quantizes the rest; with
        ``order``, each is set to 0 when its turn comes.

    Returns
    -------
    QuantResult

    Notes
    -----
    OBS for quantization: for every row, among its weights not yet quantized choose

    .. math:: q = \\arg\\min_q \\frac{(\\mathrm{quant}(w_q) - w_q)^2}{[H_F^{-1}]_{qq}},
              \\qquad
              \\delta w_F = -\\frac{w_q - \\mathrm{quant}(w_q)}{[H_F^{-1}]_{qq}}
              (H_F^{-1})_{:,q},

    fix :math:`w_q` at its grid point, and remove it from the set :math:`F` of free weights:
    :math:`H_{F}^{-1} \\leftarrow H_F^{-1} - (H_F^{-1})_{:,q} (H_F^{-1})_{q,:} /
    [H_F^{-1}]_{qq}`. That is chapter 3's OBS step (:func:`refimpl.pruning.obs_update`) with
    the quantization error :math:`w_q - \\mathrm{quant}(w_q)` in place of :math:`w_q`; each step
    is exact on the quadratic, so the sum of the step costs is the final error. Cost
    :math:`O(d_{row} d_{col}^3)`: the reason for GPTQ.

    Where we depart: the grid of each row (or group) is fixed from the original weights before
    quantizing, as in OBC's code. Weights on dead inputs (``H_jj = 0``) are kept and simply
    rounded (the damped :math:`H` decouples them).

    References
    ----------
    .. [1] Frantar, E. and Alistarh, D. (2022) Optimal Brain Compression: a framework for
       accurate post-training quantization and pruning. NeurIPS 35.
    """
    W, H, _ = _prepare(weight, hessian, damping)
    rows, d = W.shape
    bits, gs = _check_quant_args(bits, group_size, d)
    symmetric = bool(symmetric)
    batch = check_int(rows_per_batch, "rows_per_batch", 1)
    if order is not None:
        order = np.asarray(order)
        if order.shape != (d,) or not np.array_equal(np.sort(order), np.arange(d)):
            raise ValueError(f"order must be a permutation of range({d})")
    keep = _check_keep(mask, W.shape)
    scale, zero, groups = _static_grid(W, bits, gs, symmetric)
    S, Z = scale[:, groups], zero[:, groups]
    zero_code = np.zeros_like(Z) if symmetric else Z
    Hinv = _inverse(H)
    codes = np.zeros((rows, d), dtype=np.int64)
    out = np.zeros((rows, d))
    loss = 0.0
    for r0 in range(0, rows, batch):
        r1 = min(r0 + batch, rows)
        b = np.arange(r1 - r0)
        w = W[r0:r1].copy()
        hinv = np.repeat(Hinv[None], r1 - r0, axis=0)
        done = np.zeros(w.shape, dtype=bool)
        kept = keep[r0:r1]
        pruned = ~kept.copy()  # still to be set to zero
        for t in range(d):
            c_all, q_all = _round(w, S[r0:r1], Z[r0:r1], bits, symmetric)
            c_all = np.where(kept, c_all, zero_code[r0:r1])
            q_all = np.where(kept, q_all, 0.0)
            err2 = (w - q_all) ** 2
            if order is None:
                diag = np.diagonal(hinv, axis1=1, axis2=2)
                scores = np.full(w.shape, np.inf)
                live = ~done & (diag > 0)
                scores[live] = err2[live] / diag[live]
                stuck = ~np.isfinite(scores.min(axis=1))  # only round-off pivots are left
                j = np.where(stuck, np.argmin(done, axis=1), np.argmin(scores, axis=1))
                if outliers:
                    big = ~done & (err2 > 0.25 * S[r0:r1] ** 2)
                    sel = big.any(axis=1)
                    j[sel] = np.argmax(np.where(big, err2, -1.0), axis=1)[sel]
                first = pruned.any(axis=1)  # pruned entries go first, in column order
                j[first] = np.argmax(pruned, axis=1)[first]
                pruned[b, j] = False
            else:  # a pruned entry is set to 0 when its turn comes, as in GPTQ
                j = np.full(r1 - r0, order[t])
            loss += float(_obs_step_rows(w, hinv, j, q_all[b, j]).sum())
            codes[r0 + b, j] = c_all[b, j]
            done[b, j] = True
        out[r0:r1] = w
    return QuantResult(out, codes, scale, zero, groups, bits, symmetric, gs, loss)


# -- GPTQ -----------------------------------------------------------------------------------------
def gptq_quantize(
    weight: np.ndarray,
    hessian: np.ndarray,
    bits: int,
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    act_order: bool = False,
    block_size: int | None = 128,
    damping: float = 0.01,
    mask: np.ndarray | None = None,
) -> QuantResult:
    """GPTQ: quantize a layer column by column, updating the columns still to come.

    Parameters
    ----------
    weight : ndarray, shape (d_row, d_col)
    hessian : ndarray, shape (d_col, d_col)
        :func:`~refimpl.pruning.reconstruction_hessian` of the calibration inputs.
    bits : int in [2, 16]
    group_size : int, optional
        One grid per ``group_size`` consecutive columns (in processing order), computed when the
        sweep reaches the group's first column, from the weights as updated so far (GPTQ's
        default). Default (and any ``group_size >= d_col``): one grid per row, from the original
        weights.
    symmetric : bool
        Symmetric grid instead of the affine default.
    act_order : bool
        Process the columns in decreasing order of :math:`H_{jj}` (the inputs with the largest
        activations first), GPTQ's ``--act-order``; the result's ``groups`` then follow that
        order.
    block_size : int or None
        Columns per lazy block (128 in the paper; ``None``: the whole layer). It changes the
        order of the floating-point operations, not the result.
    damping : float >= 0
        :math:`\\lambda = \\text{damping} \\cdot \\overline{\\operatorname{diag} H}` is added to
        the diagonal (0.01 in the paper). With 0 and a singular :math:`H` the Cholesky
        factorization fails.
    mask : ndarray of bool, shape (d_row, d_col), optional
        Entries pruned before (``False``): they are quantized to exactly 0 and their error is
        compensated like any other (SparseGPT's joint sparsification and quantization with the
        mask given).

    Returns
    -------
    QuantResult

    Raises
    ------
    numpy.linalg.LinAlgError
        (a ``ValueError``) when the damped Hessian is singular.

    Notes
    -----
    GPTQ's observation: quantizing the columns in one fixed order for *all* rows costs little
    against OBQ's greedy order per row, and then every row needs the same sequence of inverse
    Hessians :math:`H_{F_k}^{-1}`, :math:`F_k = \\{k, \\dots, d_{col} - 1\\}`, whose needed rows
    are the rows of :math:`U`, the upper Cholesky factor of :math:`H^{-1}`
    (:func:`~refimpl.pruning.inverse_hessian_cholesky`). Column :math:`k` of every row is
    quantized and the rest moves by OBQ's update:

    .. math:: e = \\frac{w_{:,k} - \\mathrm{quant}(w_{:,k})}{U_{kk}}, \\qquad
              W_{:,k:} \\leftarrow W_{:,k:} - e\\, U_{k,k:}.

    Lazy blocks: the update of the columns after the current block is applied once per block,
    :math:`W_{:, B':} \\leftarrow W_{:, B':} - E\\, U_{B, B':}`, one matrix product instead of
    ``block_size`` outer products. The result equals OBQ held to the same column order
    (``obq_quantize(..., order=range(d_col))``) up to rounding; the predicted ``loss``,
    :math:`\\sum \\frac12 e^2`, is exact for the damped :math:`H`.

    Where we depart: GPTQ's code sets the weights of dead inputs (``H_jj = 0``) to zero; we
    keep them and round them to nearest (the damped :math:`H` decouples them), which changes
    nothing on the calibration data and keeps them for other inputs. A group's grid is computed
    from its columns' current values even when the group straddles a block (the paper's code
    uses the values at the block's start, which is the same when blocks align with groups).

    References
    ----------
    .. [1] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
       post-training quantization for generative pre-trained transformers. ICLR.
    .. [2] Frantar, E. and Alistarh, D. (2023) SparseGPT: massive language models can be
       accurately pruned in one-shot. ICML.
    """
    W, H, _ = _prepare(weight, hessian, damping)
    rows, d = W.shape
    bits, gs = _check_quant_args(bits, group_size, d)
    symmetric = bool(symmetric)
    keep = _check_keep(mask, W.shape)
    block = d if block_size is None else check_int(block_size, "block_size", 1)
    if gs == 0:
        row_scale, row_zero = _grid(W, bits, symmetric)
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(d)
    W, H, keep = W[:, perm], H[np.ix_(perm, perm)], keep[:, perm]
    U = _upper_inverse_factor(H)
    codes = np.zeros((rows, d), dtype=np.int64)
    scales, zeros = [], []
    loss = 0.0
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        W1 = W[:, i1:i2].copy()
        U1 = U[i1:i2, i1:i2]
        err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            k = i1 + i
            if gs and k % gs == 0:  # a new group: its grid from its columns' current values
                end = min(k + gs, d)
                cur = W1[:, i : min(end, i2) - i1]
                if end > i2:  # the part beyond this block still owes the block's updates
                    cur = np.hstack([cur, W[:, i2:end] - err1[:, :i] @ U[i1:k, i2:end]])
                s, z = _grid(cur, bits, symmetric)
                scales.append(s)
                zeros.append(z)
            s, z = (scales[-1], zeros[-1]) if gs else (row_scale, row_zero)
            w = W1[:, i]
            c, q = _round(w, s, z, bits, symmetric)
            c = np.where(keep[:, k], c, 0 if symmetric else z)
            q = np.where(keep[:, k], q, 0.0)
            e = (w - q) / U1[i, i]
            loss += 0.5 * float(e @ e)
            W1[:, i:] -= np.outer(e, U1[i, i:])
            W1[:, i] = q
            err1[:, i] = e
            codes[:, k] = c
        W[:, i1:i2] = W1
        W[:, i2:] -= err1 @ U[i1:i2, i2:]
    inv = np.argsort(perm)
    if gs:
        scale, zero = np.stack(scales, axis=1), np.stack(zeros, axis=1)
        groups = (np.arange(d, dtype=np.int64) // gs)[inv]
    else:
        scale, zero = row_scale[:, None], row_zero[:, None]
        groups = np.zeros(d, dtype=np.int64)
    return QuantResult(W[:, inv], codes[:, inv], scale, zero, groups, bits, symmetric, gs, loss)


# -- applying a method to a model ----------------------------------------------------------------
_QUANT_METHODS = ("gptq", "obq", "rtn")


def one_shot_quantize(
    model: Sequential,
    X: np.ndarray,
    bits: int,
    *,
    method: str = "gptq",
    group_size: int | None = None,
    symmetric: bool = False,
    act_order: bool = False,
    layers: Iterable[str] | None = None,
    damping: float = 0.01,
    block_size: int | None = 128,
    sequential: bool = True,
    batch_size: int = 256,
    validation: np.ndarray | None = None,
) -> OneShotReport:
    """Quantize the Linear and Conv2d weights of a model in one shot from calibration inputs.

    Parameters
    ----------
    model : Sequential
        Changed in place: each selected weight gets a :class:`GridQuant` (after its mask, if it
        was pruned: the pruned entries stay exactly zero and GPTQ compensates for them). A
        weight already quantized or shared is refused.
    X : ndarray, shape (N, ...)
        Calibration inputs (no labels): a few hundred images suffice.
    bits : int in [2, 16]
    method : {"gptq", "obq", "rtn"}
        :func:`gptq_quantize`, :func:`obq_quantize` (slow beyond a few hundred inputs) or
        :func:`rtn_quantize`.
    group_size, symmetric, act_order, damping, block_size
        As in :func:`gptq_quantize` (``act_order`` and ``block_size`` for GPTQ only).
    layers : iterable of str, optional
        Layers to quantize (default: every Linear and Conv2d).
    sequential : bool
        ``True`` (GPTQ): each layer's inputs come from the already quantized layers before it.
    batch_size : int
        Samples per forward pass.
    validation : ndarray, shape (N_val, ...), optional
        Held-out inputs, only measured (see :func:`~refimpl.pruning.one_shot_prune`).

    Returns
    -------
    OneShotReport
        Per layer, the reconstruction error :math:`\\frac1M \\|WX - \\hat W X\\|_F^2` and the
        time (:class:`~refimpl.pruning.LayerReport`).

    Notes
    -----
    The pass is :func:`~refimpl.pruning.one_shot_prune`'s: for each selected layer in forward
    order, :math:`H = \\frac2M X X^T` of its inputs (a convolution's unfolded input), quantize
    the weight viewed as ``(d_row, d_col)``, install it, and go on with its quantized output.
    Biases and activations stay in floating point. See chapter 10 of the book, "One-shot
    compression".

    References
    ----------
    .. [1] Frantar, E., Ashkboos, S., Hoefler, T. and Alistarh, D. (2023) GPTQ: accurate
       post-training quantization for generative pre-trained transformers. ICLR.
    """
    X, batch_size, validation = _check_calibration(model, X, batch_size, validation)
    if method not in _QUANT_METHODS:
        raise ValueError(f"method must be one of {_QUANT_METHODS}, got {method!r}")
    check_int(bits, "bits", 2, 16)
    damping = _check_damping(damping)
    for value, name in ((group_size, "group_size"), (block_size, "block_size")):
        if value is not None:
            check_int(value, name, 1)
    selected = prunable_layers(model, layers)
    if not selected:
        raise ValueError("model has no Linear or Conv2d layer to quantize")
    for name, layer in selected.items():
        try:
            layer.trained_tensor("weight")
        except ValueError:
            raise ValueError(f"layer {name!r}: its weight is already quantized or shared "
                             f"({[type(p).__name__ for p in layer.chain('weight')]})") from None

    def compress(name: str, layer: Layer, H: np.ndarray, a: np.ndarray) -> np.ndarray:
        shape = layer.weight.shape
        W = layer.weight.reshape(shape[0], -1).astype(np.float64)
        keep = Mask.of(layer, "weight")
        keep = None if keep is None else keep.reshape(W.shape)
        if method == "gptq":
            res = gptq_quantize(W, H, bits, group_size=group_size, symmetric=symmetric,
                                act_order=act_order, block_size=block_size, damping=damping,
                                mask=keep)  # fmt: skip
        elif method == "obq":
            res = obq_quantize(W, H, bits, group_size=group_size, symmetric=symmetric,
                               damping=damping, mask=keep)  # fmt: skip
        else:
            res = rtn_quantize(W, bits, group_size=group_size, symmetric=symmetric)
        layer.parametrize("weight", res.parametrization(shape))
        return layer.weight.reshape(W.shape).astype(np.float64)

    return _calibrate(model, X, selected, compress, method=method, sequential=bool(sequential),
                      batch_size=batch_size, validation=validation)  # fmt: skip
