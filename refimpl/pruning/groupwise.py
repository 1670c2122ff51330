"""Group-wise brain damage (Lebedev & Lempitsky 2016): prune whole columns of the im2col matrix.

A convolution computed by im2col is one matrix product ``Y = W_col X_col`` with ``W_col`` of
shape (C_out, C_in*kH*kW): column ``(c, i, j)`` of ``W_col`` is the group
:math:`W_{:, c, i, j}`, shared by all output channels, and it meets row ``(c, i, j)`` of
``X_col``. Remove a whole column and the matching row of ``X_col`` need never be built: the
convolution becomes a *smaller dense* product. The group-lasso penalty over these groups is
:class:`refimpl.pruning.GroupLasso` with ``group="shape"``; this module prunes the groups it
zeroes (or the smallest ones) through :meth:`refimpl.nn.Mask.update`, and computes the thinned
convolution. See chapter 3 of the book, "Group-wise brain damage".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..nn import Mask
from ..nn.layers import Layer
from .group_lasso import group_norms
from .magnitude import mask_from_scores, prunable_layers

__all__ = [
    "ThinnedConv",
    "column_mask",
    "kept_columns",
    "prune_columns",
    "thin_conv",
]


def _conv_layers(model: Layer, layers: Iterable[str] | None) -> dict[str, Layer]:
    found = prunable_layers(model, layers)
    convs = {n: lay for n, lay in found.items() if lay.weight.ndim == 4}
    if layers is not None and len(convs) != len(found):
        bad = sorted(set(found) - set(convs))
        raise ValueError(f"layers must name convolutions only, got dense layers {bad}")
    grouped = sorted(n for n, lay in convs.items() if getattr(lay, "groups", 1) != 1)
    if grouped:
        raise ValueError(f"grouped convolutions are not supported, got {grouped}")
    return convs


def column_mask(keep: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a (C_in, kH, kW) choice of im2col columns to a weight mask (C_out, C_in, kH, kW).

    Parameters
    ----------
    keep : ndarray of bool, shape (C_in, kH, kW)
    weight_shape : tuple (C_out, C_in, kH, kW)

    Returns
    -------
    ndarray of bool, shape ``weight_shape`` (a new array)
    """
    keep = np.asarray(keep, dtype=bool)
    if len(weight_shape) != 4 or keep.shape != tuple(weight_shape[1:]):
        raise ValueError(
            f"keep must have shape (C_in, kH, kW) = {tuple(weight_shape[1:])}, got {keep.shape}"
        )
    return np.array(np.broadcast_to(keep[None], tuple(weight_shape)))


def kept_columns(layer: Layer) -> np.ndarray:
    """Columns ``(c, i, j)`` of a convolution whose group :math:`W_{:,c,i,j}` is not all zero.

    ``layer`` is a ``Conv2d``; returns bool of shape (C_in, kH, kW) (the "shape" of the
    thinned kernel, read from the weight the layer computes with).
    """
    w = np.asarray(layer.weight)
    if w.ndim != 4:
        raise ValueError(f"layer must be a convolution (4-D weight), got {w.ndim}-D")
    return group_norms(w, "shape") > 0


def prune_columns(
    model: Layer, *, sparsity: float | None = None, layers: Iterable[str] | None = None
) -> Layer:
    """Mask whole im2col columns :math:`W_{:,c,i,j}` of convolutions, in place; return the model.

    Parameters
    ----------
    model : Layer
        Usually a ``Sequential``; changed in place.
    sparsity : float in [0, 1), optional
        ``None`` (default): remove the columns that are already exactly zero (what a group-lasso
        proximal step leaves, :class:`~refimpl.pruning.GroupLasso` with ``group="shape"``).
        A float: in each layer remove that fraction of the columns with the smallest norms
        :math:`\\lVert W_{:,c,i,j} \\rVert_2` (group-wise magnitude pruning, no training).
    layers : iterable of str, optional
        Convolutions to prune (default all).

    Returns
    -------
    The model, each pruned layer's weight masked through :meth:`refimpl.nn.Mask.update`.

    Notes
    -----
    A group is a column of ``W_col``, the weight reshaped to (C_out, C_in*kH*kW); Lebedev and
    Lempitsky regularize these groups with :math:`\\lambda \\sum_{c,i,j} \\lVert W_{:,c,i,j}
    \\rVert_2` and then drop the columns that reach zero.

    References
    ----------
    .. [1] Lebedev, V. and Lempitsky, V. (2016) Fast ConvNets using group-wise brain damage.
       IEEE Conference on Computer Vision and Pattern Recognition (CVPR), 2554-2564.

    See chapter 3 of the book, "Group-wise brain damage".
    """
    for lay in _conv_layers(model, layers).values():
        norms = group_norms(lay.weight, "shape")
        keep = norms > 0 if sparsity is None else mask_from_scores(norms, sparsity)
        Mask.update(lay, "weight", column_mask(keep, lay.weight.shape))
    return model


@dataclass(frozen=True)
class ThinnedConv:
    """A convolution computed on the kept im2col columns only (deploy time, forward only).

    Attributes
    ----------
    weight : ndarray, shape (C_out, K')
        The kept columns of ``W_col``; ``K'`` of the ``C_in*kH*kW``.
    channel, row, col : ndarray of int, shape (K',)
        Where each kept column sits in the kernel: :math:`(c, i, j)`.
    bias : ndarray, shape (C_out,), or None
    kernel_size, stride, padding : (int, int)
    in_channels : int
        ``C_in`` of the input.

    Notes
    -----
    ``y = thinned(x)`` gathers only the ``K'`` rows of ``X_col`` that meet a kept column
    (shape (K', N*H_out*W_out)) and multiplies: ``Y = W' X'_col``, a dense product
    ``K / K'`` times smaller than the full one. It equals the masked convolution exactly,
    up to the order of floating-point sums.
    """

    weight: np.ndarray
    channel: np.ndarray
    row: np.ndarray
    col: np.ndarray
    bias: np.ndarray | None
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_channels: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Output (N, C_out, H_out, W_out) of input ``x`` (N, C_in, H, W)."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (N, {self.in_channels}, H, W), got shape {x.shape}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        n, _, hp, wp = x.shape
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        xt = np.ascontiguousarray(x.transpose(1, 2, 3, 0))  # (C, Hp, Wp, N): runs of N values
        win = sliding_window_view(xt, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :ho, :wo]
        # (C, Ho, Wo, N, kH, kW), a view; the kept rows of X_col only: (K', Ho, Wo, N), one gather
        cols = win[self.channel, :, :, :, self.row, self.col]
        y = self.weight @ cols.reshape(len(self.channel), ho * wo * n)  # (C_out, Ho*Wo*N)
        if self.bias is not None:
            y += self.bias[:, None]
        return y.reshape(-1, ho, wo, n).transpose(3, 0, 1, 2)


def thin_conv(layer: Layer, keep: np.ndarray | None = None) -> ThinnedConv:
    """The :class:`ThinnedConv` of a ``Conv2d``: only its kept im2col columns.

    Parameters
    ----------
    layer : Conv2d
        ``groups == 1``; its effective weight (masks applied) is read.
    keep : ndarray of bool, shape (C_in, kH, kW), optional
        Columns to keep; by default those not all zero (:func:`kept_columns`).

    Returns
    -------
    ThinnedConv
        ``thin_conv(layer)(x)`` equals ``layer.forward(x)`` when the dropped columns are zero.

    See chapter 3 of the book, "Group-wise brain damage".
    """
    w = np.asarray(layer.weight)
    if w.ndim != 4:
        raise ValueError(f"layer must be a convolution (4-D weight), got {w.ndim}-D")
    if getattr(layer, "groups", 1) != 1:
        raise ValueError("layer must have groups == 1")
    keep = kept_columns(layer) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != w.shape[1:]:
        raise ValueError(f"keep must have shape {w.shape[1:]}, got {keep.shape}")
    c, i, j = np.nonzero(keep)
    b = layer.bias
    return ThinnedConv(
        weight=np.ascontiguousarray(w[:, c, i, j]),
        channel=c,
        row=i,
        col=j,
        bias=None if b is None else np.array(b),
        kernel_size=tuple(layer.kernel_size),
        stride=tuple(layer.stride),
        padding=tuple(layer.padding),
        in_channels=int(w.shape[1]),
    )
