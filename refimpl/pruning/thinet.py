"""ThiNet (Luo et al., 2017): prune a layer's filters by how well the next layer does without them.

Criteria such as the L1 norm judge a filter by itself. ThiNet judges it by its effect one layer
later: the next layer's output is a sum of one contribution per input channel, so the filters
whose channels can go are those whose contributions sum to little. ThiNet samples outputs of the
next layer on data, removes channels greedily (each time the channel whose removal adds least
to the reconstruction error), then rescales the kept channels by least squares so that the next
layer's output is reproduced as well as possible.

* :func:`thinet_samples` draws the samples: each channel's contribution to sampled outputs;
* :func:`thinet_scores` turns the greedy removal order into scores (the shared criterion form);
* :func:`thinet_prune` selects, rescales and removes in one call.

See chapter 4 of the book, "ThiNet".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..nn import Conv2d, Sequential, forward_through
from ..surgery.units import (
    _constant_outputs,
    as_keep,
    remove_units,
    unit_chain,
)
from ..validation import RngLike
from .selection import select_per_layer

__all__ = ["ThiNetSamples", "thinet_prune", "thinet_samples", "thinet_scores"]



@dataclass(frozen=True)
class ThiNetSamples:
    """Per-channel contributions to sampled outputs of the next layer.

    Attributes
    ----------
    contributions : ndarray, shape (m, C)
        ``x_hat[i, c]``: what input channel ``c`` adds to the ``i``-th sampled output (one
        image, one output channel, one position) of the next layer, before its bias.
    constants : ndarray, shape (m, C)
        What channel ``c`` adds to the same output once its filter is removed: the filter's
        constant output (its bias through the nonlinearity) times the next layer's weights,
        which the surgery folds into the bias.
    """

    contributions: np.ndarray
    constants: np.ndarray

    @property
    def target(self) -> np.ndarray:
        """The sampled outputs of the unpruned next layer (before bias), shape (m,)."""
        return self.contributions.sum(axis=1)

    def greedy_order(self) -> np.ndarray:
        """Channels in the order ThiNet's greedy search removes them (all of them, shape (C,)).

        Step ``t`` removes the channel ``c`` that minimizes ``|| sum_{j in T + c} d_j ||^2``
        with ``d_j = contributions[:, j] - constants[:, j]`` (the change of the output when
        ``j``'s filter goes) and ``T`` the channels removed so far. Stopping after ``k`` steps
        gives ThiNet's choice for ``k`` removals, so one run ranks all channels. Each step is
        one matrix-vector product: ``||s + d_c||^2 = ||s||^2 + 2 s.d_c + ||d_c||^2``.
        """
        d = self.contributions - self.constants
        c = d.shape[1]
        sq = np.einsum("ij,ij->j", d, d)
        s = np.zeros(d.shape[0])
        alive = np.ones(c, dtype=bool)
        order = []
        for _ in range(c):
            cost = 2.0 * (s @ d) + sq
            cost[~alive] = np.inf
            j = int(np.argmin(cost))
            order.append(j)
            alive[j] = False
            s += d[:, j]
        return np.array(order, dtype=np.int64)

    def least_squares(self, keep: Sequence[int] | np.ndarray) -> np.ndarray:
        """Scales ``w`` of the kept channels that best reproduce the target, shape (len(keep),).

        .. math:: \\hat w = \\arg\\min_w \\Big\\lVert y - \\sum_{c \\notin K} \\hat x'_c
                  - \\hat X_K w \\Big\\rVert_2^2,

        with ``x'`` the removed channels' constant contributions (kept by the surgery).
        """
        kept = as_keep(keep, self.contributions.shape[1])
        removed = np.setdiff1d(np.arange(self.contributions.shape[1]), kept)
        rhs = self.target - self.constants[:, removed].sum(axis=1)
        w, *_ = np.linalg.lstsq(self.contributions[:, kept], rhs, rcond=None)
        return w

    def error(self, keep: Sequence[int] | np.ndarray, scale: np.ndarray | None = None) -> float:
        """Relative squared reconstruction error ``||y - y_hat||^2 / ||y||^2`` of keeping ``keep``.

        ``scale`` (one factor per kept channel) multiplies the kept contributions.
        """
        kept = as_keep(keep, self.contributions.shape[1])
        removed = np.setdiff1d(np.arange(self.contributions.shape[1]), kept)
        part = self.contributions[:, kept]
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float64)
            if scale.shape != (kept.size,):
                raise ValueError(f"scale must have shape ({kept.size},), got {scale.shape}")
            part = part * scale
        approx = part.sum(axis=1) + self.constants[:, removed].sum(axis=1)
        y = self.target
        denom = float(y @ y)
        return float(np.sum((y - approx) ** 2) / denom) if denom > 0 else 0.0


def thinet_samples(
    model: Sequential,
    layer_name: str,
    X: np.ndarray,
    *,
    n_samples: int = 2000,
    rng: RngLike = 0,
    batch_size: int = 500,
) -> ThiNetSamples:
    """Sample the next layer's outputs and split each into per-channel contributions.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        The layer whose filters (or neurons) are to be pruned; the next weighted layer (a
        convolution, or a dense layer directly or across a Flatten) is reconstructed.
    X : ndarray, shape (N, ...)
        Inputs of the model.
    n_samples : int
        Sampled outputs ``m``: each picks an input, an output channel and a position at random.
    rng : int, numpy.random.Generator or None
    batch_size : int

    Returns
    -------
    ThiNetSamples
    """
    if not isinstance(X, np.ndarray) or X.ndim < 2 or len(X) == 0:
        raise ValueError("X must be a non-empty array of inputs, shape (N, ...)")
    if (
        isinstance(n_samples, bool)
        or not isinstance(n_samples, (int, np.integer))
        or (n_samples < 1)
    ):
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    chain = unit_chain(model, layer_name)
    work = model.copy()
    layer, nxt = work[layer_name], work[chain.next_name]
    x = forward_through(work, X, chain.index + len(chain.between), batch_size=batch_size).astype(
        np.float64
    )
    const = _constant_outputs(layer, chain.between)  # (C,)
    w = np.asarray(nxt.weight, dtype=np.float64)
    gen = np.random.default_rng(rng)
    n = x.shape[0]
    idx_n = gen.integers(0, n, n_samples)
    idx_o = gen.integers(0, w.shape[0], n_samples)
    if isinstance(nxt, Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = nxt.kernel_size, nxt.stride, nxt.padding
        ho, wo = nxt.output_shape(x.shape[2], x.shape[3])
        idx_p = gen.integers(0, ho, n_samples) * sh
        idx_q = gen.integers(0, wo, n_samples) * sw
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[idx_n, :, idx_p, idx_q]  # (m,C,kh,kw)
        wo_ = w[idx_o]  # (m, C, kh, kw)
        contrib = np.einsum("mcuv,mcuv->mc", win, wo_)
        ones = np.pad(np.ones(x.shape[2:]), ((ph, ph), (pw, pw)))
        valid = sliding_window_view(ones, (kh, kw))[idx_p, idx_q]  # (m, kh, kw)
        consts = const[None, :] * np.einsum("mcuv,muv->mc", wo_, valid)
    else:
        c = const.size
        x3 = x.reshape(n, c, -1)
        w3 = w.reshape(w.shape[0], c, -1)[idx_o]  # (m, C, S)
        contrib = np.einsum("mcs,mcs->mc", w3, x3[idx_n])
        consts = const[None, :] * w3.sum(axis=2)
    return ThiNetSamples(contrib, consts)


def thinet_scores(
    model: Sequential,
    layer_name: str,
    X: np.ndarray,
    *,
    n_samples: int = 2000,
    rng: RngLike = 0,
) -> np.ndarray:
    """ThiNet's greedy removal order as scores: the ``t``-th channel removed scores ``t``.

    Parameters
    ----------
    model : Sequential
    layer_name : str
        A ``Conv2d`` or ``Linear`` layer followed (through activations, pooling, BatchNorm or
        a Flatten) by another weighted layer.
    X : ndarray, shape (N, ...)
        Inputs of the model.
    n_samples : int
        Sampled outputs of the next layer.
    rng : int, numpy.random.Generator or None

    Returns
    -------
    scores : ndarray, shape (n_units,)
        A permutation of ``0 .. n_units - 1``; :func:`refimpl.pruning.select_per_layer` with
        these scores keeps what ThiNet's greedy search keeps.

    Notes
    -----
    The next layer's output at a sampled point is ``y = sum_c x_hat_c`` (plus bias). ThiNet
    finds the set ``T`` of channels to remove by

    .. math:: \\min_{T,\\ |T| = k} \\Big\\lVert \\sum_{c \\in T} \\hat x_c \\Big\\rVert_2^2,

    greedily, one channel at a time (see :meth:`ThiNetSamples.greedy_order`).

    References
    ----------
    .. [1] Luo, J.-H., Wu, J. and Lin, W. (2017) ThiNet: a filter level pruning method for deep
       neural network compression. ICCV, 5058-5066.

    See chapter 4 of the book, "ThiNet". We depart from the paper in one point: a removed
    filter still sends its constant output (its bias through the nonlinearity), which our
    surgery folds into the next bias, so the greedy search measures ``x_hat_c`` minus that
    constant's contribution rather than ``x_hat_c``.
    """
    order = thinet_samples(model, layer_name, X, n_samples=n_samples, rng=rng).greedy_order()
    scores = np.empty(order.size)
    scores[order] = np.arange(order.size)
    return scores


def thinet_prune(
    model: Sequential,
    layer_name: str,
    X: np.ndarray,
    sparsity: float | int,
    *,
    n_samples: int = 2000,
    rng: RngLike = 0,
    rescale: bool = True,
) -> Sequential:
    """ThiNet on one layer: greedy selection, least-squares rescaling, and surgery.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        The layer whose filters are removed.
    X : ndarray, shape (N, ...)
        Inputs used to sample the next layer's outputs.
    sparsity : float in [0, 1) or int
        Fraction (or count) of the filters removed.
    n_samples : int
    rng : int, numpy.random.Generator or None
    rescale : bool
        Multiply each kept channel's weights in the next layer by its least-squares factor
        (:meth:`ThiNetSamples.least_squares`).

    Returns
    -------
    Sequential
        The smaller model (see :func:`refimpl.pruning.remove_units`).

    References
    ----------
    .. [1] Luo, J.-H., Wu, J. and Lin, W. (2017) ThiNet: a filter level pruning method for deep
       neural network compression. ICCV, 5058-5066.

    See chapter 4 of the book, "ThiNet".
    """
    samples = thinet_samples(model, layer_name, X, n_samples=n_samples, rng=rng)
    order = samples.greedy_order()
    scores = np.empty(order.size)
    scores[order] = np.arange(order.size)
    keep = select_per_layer(scores, sparsity)
    if rescale:
        chain = unit_chain(model, layer_name)
        full = np.ones(order.size)
        full[keep] = samples.least_squares(keep)
        nxt = model[chain.next_name].slice_inputs(
            np.arange(order.size), block=chain.block, scale=full
        )
        model = model.replace(chain.next_name, nxt)
    return remove_units(model, layer_name, keep)
