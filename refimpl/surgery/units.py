"""Unit surgery: remove neurons or filters for real, so the network gets smaller and faster.

Weight pruning leaves a network of the same shape with zeros in it; unit pruning deletes whole
rows of a layer's weight (neurons of a dense layer, filters of a convolution) and the matching
columns (input channels) of the next weighted layer, so every matrix product that remains is
smaller and dense. This module does that surgery on a :class:`~refimpl.nn.Sequential`:

* :func:`mask_units` gives the *masked* model: the units' weight rows are zeroed by a
  :class:`~refimpl.nn.Mask` parametrization (what ``torch.nn.utils.prune.ln_structured`` does),
  so the network keeps its shape and its cost;
* :func:`remove_units` gives the *small* model: the units are gone, and each removed unit's
  constant output (its bias through what follows it, e.g. ``relu(b)``) is folded into the next
  layer's bias, so that the small model computes what the masked model computes;
* :func:`shrink` removes units of several layers at once (deepest layer first, see its notes);
* :func:`refimpl.pruning.merge_units` (a criterion that ends in this surgery) merges neurons
  into their most similar twins (Srinivas & Babu, 2015).

Timing the results is :func:`refimpl.timing.time_inference`'s job.

The surgery knows the layers that may sit between a pruned layer and the next weighted layer:
activations (ReLU, Tanh, Sigmoid), BatchNorm (its statistics and affine parameters follow the
kept units), Dropout, max- and average-pooling, and Flatten (across a Flatten a removed channel
takes its ``H*W`` block of the next dense layer's columns). Scoring units is separate (see
:mod:`refimpl.pruning.neuron_criteria` and :mod:`refimpl.pruning.filter_criteria`), and so is
choosing how many to remove (:mod:`refimpl.pruning.selection`).

See chapter 4 of the book, "Surgery".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..nn import Linear, Mask, Sequential
from ..nn.layers import Layer

__all__ = [
    "UnitChain",
    "as_keep",
    "mask_units",
    "remove_units",
    "shrink",
    "unit_chain",
    "unit_count",
    "unit_count_of",
]

# --------------------------------------------------------------------------------------------
# Finding what a layer's units feed
# --------------------------------------------------------------------------------------------


@dataclass
class UnitChain:
    """What the units of one layer feed, up to and including the next weighted layer.

    Attributes
    ----------
    name : str
        The pruned layer (a ``Linear`` or a ``Conv2d``).
    index : int
        Its position in the model.
    between : list of (str, Layer)
        The layers between it and the next weighted layer (activations, BatchNorm, Dropout,
        pooling, Flatten), in order.
    next_name : str
        The next weighted layer, whose input columns (channels) follow the units.
    block : int
        Columns of the next layer per unit: ``H*W`` across a Flatten, 1 otherwise.
    exact : bool
        Whether a removed unit's constant output reaches the next layer as the same constant at
        every position, so that folding it into a bias is exact. False when the next convolution
        zero-pads its input or an average pool pads: near the border a constant map is no longer
        constant.
    """

    name: str
    index: int
    between: list[tuple[str, Layer]] = field(default_factory=list)
    next_name: str = ""
    block: int = 1
    exact: bool = True


def _layer(model: Sequential, name: str) -> Layer:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a refimpl.nn.Sequential, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"layer_name must be a str, got {type(name).__name__}")
    if name not in model.names():
        raise ValueError(f"layer_name {name!r} is not in the model; layers are {model.names()}")
    return model[name]


def unit_count(model: Sequential, layer_name: str) -> int:
    """Number of units (output features or filters) of layer ``layer_name``."""
    return unit_count_of(_layer(model, layer_name), layer_name)


def unit_chain(model: Sequential, layer_name: str) -> UnitChain:
    """Find the layers the units of ``layer_name`` feed, up to the next weighted layer.

    Raises
    ------
    TypeError
        If ``layer_name`` is not a ``Linear`` or ``Conv2d``, or a layer in between is of a type
        the surgery cannot carry units through.
    ValueError
        If the layer is grouped, has no following weighted layer (its units are the model's
        outputs), or a layer in between does not match its number of units.
    """
    n = unit_count(model, layer_name)
    layer = model[layer_name]
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(
            f"layer {layer_name!r} is grouped (groups={layer.groups}); "
            "unit surgery supports groups=1 only"
        )
    names = model.names()
    index = names.index(layer_name)
    chain = UnitChain(layer_name, index)
    flattened = False
    for name in names[index + 1 :]:
        nxt = model[name]
        if nxt.weighted:
            if getattr(nxt, "groups", 1) != 1:
                raise ValueError(
                    f"next layer {name!r} is grouped (groups={nxt.groups}); unit surgery "
                    "supports groups=1 only"
                )
            if flattened and not isinstance(nxt, Linear):
                raise ValueError(f"layer {name!r} is a {type(nxt).__name__} after a Flatten")
            if nxt.input_units % n:
                raise ValueError(
                    f"layer {name!r} has {nxt.input_units} inputs, not a multiple of the {n} "
                    f"units of {layer_name!r}"
                )
            chain.block = nxt.input_units // n
            if chain.block > 1 and not flattened:
                raise ValueError(
                    f"layer {name!r} expects {nxt.input_units} inputs but {layer_name!r} has "
                    f"{n} units (and no Flatten lies between them)"
                )
            chain.exact = chain.exact and nxt.folds_exactly()
            chain.next_name = name
            return chain
        if not nxt.carries_units:
            raise TypeError(
                f"cannot carry the units of {layer_name!r} through layer {name!r} of type "
                f"{type(nxt).__name__}; units pass through layers whose class sets "
                f"carries_units (here: {_carriers()})"
            )
        if getattr(nxt, "num_features", n) != n:
            raise ValueError(
                f"{type(nxt).__name__} {name!r} has {nxt.num_features} features but "
                f"{layer_name!r} has {n} units"
            )
        flattened = flattened or nxt.flattens
        chain.exact = chain.exact and nxt.folds_exactly()
        chain.between.append((name, nxt))
    raise ValueError(
        f"layer {layer_name!r} has no following Linear or Conv2d layer: its units are the model's "
        "outputs, and removing them would change what the model predicts"
    )


def _carriers() -> str:
    return ", ".join(sorted(n for n, c in Layer.registry.items() if c.carries_units))


def as_keep(keep: Sequence[int] | np.ndarray, n: int, name: str = "keep") -> np.ndarray:
    """Normalize ``keep`` (indices, or a boolean mask of length ``n``) to sorted unique indices.

    Raises ``ValueError`` if an index is out of ``[0, n)``, a mask has the wrong length, or
    nothing would be kept; ``TypeError`` if ``keep`` is neither integers nor booleans.
    """
    arr = np.asarray(keep)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n},), got {arr.shape}")
        idx = np.flatnonzero(arr)
    elif arr.size == 0:
        idx = np.zeros(0, dtype=np.int64)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if arr.min() < 0 or arr.max() >= n:
            raise ValueError(f"{name} indices must lie in [0, {n}), got {arr.min()}..{arr.max()}")
        idx = np.unique(arr)
    else:
        raise TypeError(f"{name} must hold integer indices or booleans, got dtype {arr.dtype}")
    if idx.size == 0:
        raise ValueError(f"{name} must keep at least one of the {n} units")
    return idx.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Helpers that rebuild layers with fewer rows or columns
# --------------------------------------------------------------------------------------------


def _constant_outputs(layer: Layer, between: list[tuple[str, Layer]]) -> np.ndarray:
    """What each unit sends on when its weights are zero: its bias pushed through ``between``.

    Shape (n_units,), float64. Each layer in between says what a constant becomes
    (:meth:`refimpl.nn.Layer.constant_through`): pooling and Flatten leave it, an activation
    applies itself, BatchNorm uses its running statistics (evaluation mode).
    """
    bias = layer.bias
    v = np.zeros(unit_count_of(layer)) if bias is None else np.asarray(bias, dtype=np.float64)
    for _, mid in between:
        v = mid.constant_through(v)
    return v


def unit_count_of(layer: Layer, name: str | None = None) -> int:
    """Units of a weighted layer: ``out_features`` of a ``Linear``, filters of a ``Conv2d``."""
    if not layer.weighted:
        where = (f"layer {name!r} is a {type(layer).__name__}" if name
                 else f"expected a Linear or Conv2d layer, got {type(layer).__name__}")
        raise TypeError(f"{where}; units live in Linear or Conv2d layers")
    return layer.units


def _fold(next_layer: Layer, removed: np.ndarray, const: np.ndarray, block: int) -> np.ndarray:
    """Bias change of the next layer that stands for the removed units' constant outputs.

    For a dense next layer ``delta_o = sum_{j removed} c_j sum_s W[o, j, s]`` (``s`` runs over
    the ``block`` columns of unit ``j``); for a convolution ``delta_o = sum_j c_j sum_{u,v}
    W[o, j, u, v]``, exact away from a zero-padded border.
    """
    w = np.asarray(next_layer.weight, dtype=np.float64)
    if removed.size == 0:
        return np.zeros(w.shape[0])
    if w.ndim == 2:  # dense: each unit owns `block` consecutive columns
        w = w.reshape(w.shape[0], -1, block)
    per_unit = w[:, removed].reshape(w.shape[0], removed.size, -1).sum(axis=2)  # (out, removed)
    return per_unit @ const[removed]


# --------------------------------------------------------------------------------------------
# The public surgery
# --------------------------------------------------------------------------------------------


def mask_units(model: Sequential, layer_name: str, keep: Sequence[int] | np.ndarray) -> Sequential:
    """A copy of ``model`` whose units outside ``keep`` have their weight rows masked to zero.

    This is the *masked* model: the same shape and cost as before (a :class:`~refimpl.nn.Mask`
    parametrization zeroes the rows, composing with any mask already there), as
    ``torch.nn.utils.prune.ln_structured(module, "weight", amount, n, dim=0)`` leaves it. The
    bias is not masked, so a removed unit still outputs a constant (``relu(b_j)`` for a dense
    unit followed by a ReLU). :func:`remove_units` builds the small model that computes the same
    function.

    Parameters
    ----------
    model : Sequential
        Not modified.
    layer_name : str
        A ``Linear`` or ``Conv2d`` layer.
    keep : sequence of int or ndarray of bool, shape (n_units,)
        Indices of the units to keep, or a boolean mask over the units.

    Returns
    -------
    Sequential
    """
    n = unit_count(model, layer_name)
    idx = as_keep(keep, n)
    layer = model[layer_name]
    row = np.zeros(n, dtype=bool)
    row[idx] = True
    mask = np.broadcast_to(row.reshape((n,) + (1,) * (layer.weight.ndim - 1)), layer.weight.shape)
    new = copy.deepcopy(layer)
    new.parametrize("weight", Mask(np.array(mask)))
    return model.replace(layer_name, new)


def remove_units(
    model: Sequential,
    layer_name: str,
    keep: Sequence[int] | np.ndarray,
    *,
    fold_bias: bool = True,
) -> Sequential:
    """A new, smaller model without the units of ``layer_name`` outside ``keep``.

    The layer's weight rows (filters) and bias entries go; BatchNorm layers in between keep the
    statistics and affine parameters of the kept units only; the next weighted layer loses the
    matching input columns (channels; across a Flatten, each removed channel's ``H*W`` block of
    columns); and each removed unit's constant output is folded into the next layer's bias, so
    the small model computes what :func:`mask_units` computes.

    Parameters
    ----------
    model : Sequential
        Not modified. Layers between ``layer_name`` and the next ``Linear``/``Conv2d`` may be
        ReLU, Tanh, Sigmoid, Dropout, BatchNorm1d/2d, MaxPool2d, AvgPool2d and Flatten.
    layer_name : str
        A ``Linear`` (units are its ``out_features``) or ``Conv2d`` with ``groups=1`` (units
        are its filters, ``out_channels``).
    keep : sequence of int or ndarray of bool, shape (n_units,)
        Indices of the units to keep (any order; duplicates ignored), or a boolean mask.
    fold_bias : bool
        Fold the removed units' constant outputs into the next layer's bias (default). With
        ``False`` the removed units simply vanish, as if their outputs were zero.

    Returns
    -------
    Sequential
        New layers with plain arrays (a weight :class:`~refimpl.nn.Mask` on the two layers that
        change is sliced along and kept; other parametrizations of those layers are baked in);
        the other layers are deep copies.

    Raises
    ------
    TypeError, ValueError
        See :func:`unit_chain` and :func:`as_keep`.

    Notes
    -----
    Let unit ``j`` of layer ``l`` have its weight row zeroed (the masked model). Its
    pre-activation is then the constant ``b_j`` whatever the input, and the layers in between
    map it to a constant ``c_j = g(b_j)`` (for example ``relu(b_j)``, or
    ``relu(gamma_j (b_j - mu_j) / sqrt(var_j + eps) + beta_j)`` through a BatchNorm). The next
    layer receives ``c_j`` at every position, so its output gains

    .. math:: \\delta_o = \\sum_{j \\notin K} c_j \\sum_{s} W^{(l+1)}_{o, j, s},

    with ``s`` running over the kernel taps of a convolution or the ``H*W`` columns of a
    channel after a Flatten. Adding ``delta`` to the next bias and deleting the units leaves
    the function unchanged. (If the next layer has no bias and a BatchNorm follows it, as in
    VGG- and ResNet-style blocks, ``delta`` is subtracted from that BatchNorm's running mean
    instead, which is the same in evaluation mode and keeps the layer bias-free.) This is
    exact when the constant reaches every tap of the next layer: always for a dense next layer
    and for a convolution without padding. A convolution that zero-pads its input sees fewer
    taps of the constant near the border, so there the small model differs from the masked one
    by ``c_j`` times the taps that fell on padding (:attr:`UnitChain.exact` is False); the
    interior is exact.

    References
    ----------
    .. [1] Li, H., Kadav, A., Durdanovic, I., Samet, H. and Graf, H. P. (2017) Pruning filters
       for efficient ConvNets. ICLR. (Removing a filter and the next layer's kernels.)
    .. [2] He, T., Fan, Y., Qian, Y., Tan, T. and Yu, K. (2014) Reshaping deep neural network
       for fast decoding by node-pruning. ICASSP.

    See chapter 4 of the book, "Surgery".
    """
    chain = unit_chain(model, layer_name)
    layer = model[layer_name]
    n = unit_count_of(layer)
    kept = as_keep(keep, n)
    removed = np.setdiff1d(np.arange(n), kept)
    next_layer = model[chain.next_name]
    delta = None
    if fold_bias and removed.size:
        const = _constant_outputs(layer, chain.between)
        delta = _fold(next_layer, removed, const, chain.block)
    replaced: dict[str, Layer] = {layer_name: layer.slice_units(kept)}
    names = model.names()
    after = names.index(chain.next_name) + 1
    norm_after = model[names[after]] if after < len(names) else None
    if (
        delta is not None
        and next_layer.bias is None
        and norm_after is not None
        and "running_mean" in norm_after.buffers
        and norm_after.num_features == delta.size
    ):
        # conv (no bias) -> BatchNorm, as in VGG/ResNet: shift the running mean instead of
        # adding a bias, BN((y + delta) - mu) = BN(y - (mu - delta)), and keep the layer bias-free
        shifted = norm_after.slice_units(np.arange(norm_after.num_features))
        mean = shifted.buffers["running_mean"]
        shifted.buffers["running_mean"] = (mean.astype(np.float64) - delta).astype(mean.dtype)
        replaced[names[after]] = shifted
        delta = None
    new_next = next_layer.slice_inputs(kept, block=chain.block)
    if delta is not None:
        new_next.add_to_bias(delta)
    replaced[chain.next_name] = new_next
    for name, mid in chain.between:
        replaced[name] = mid.slice_units(kept)
    items = [
        (name, replaced[name] if name in replaced else copy.deepcopy(lay))
        for name, lay in model.named_layers()
    ]
    return Sequential(*items)


def shrink(
    model: Sequential,
    keep: Mapping[str, Sequence[int] | np.ndarray],
    *,
    fold_bias: bool = True,
) -> Sequential:
    """Remove units of several layers: ``keep`` maps layer names to the units each keeps.

    Indices refer to the units of the *given* model. Layers are operated on from the deepest
    to the first, so that the result computes exactly what masking all of them at once would
    (see Notes).

    Notes
    -----
    If unit ``k`` of layer ``l+1`` is masked too, its weight row is zero in the masked model, so
    it outputs ``g(b_k)`` with the *original* bias ``b_k``. Removing layer ``l``'s units first
    would fold their constants into ``b_k`` before ``k`` is removed and so change ``g(b_k)``;
    removing the deeper layer first avoids that.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a refimpl.nn.Sequential, got {type(model).__name__}")
    if not isinstance(keep, Mapping):
        raise TypeError(f"keep must map layer names to kept units, got {type(keep).__name__}")
    names = model.names()
    for name in keep:
        _layer(model, name)
    out = model
    for name in sorted(keep, key=names.index, reverse=True):
        out = remove_units(out, name, keep[name], fold_bias=fold_bias)
    return out if keep else model.copy()
