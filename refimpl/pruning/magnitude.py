"""Magnitude pruning (Han et al. 2015): remove the weights of smallest absolute value.

The selection is the one of ``torch.nn.utils.prune.l1_unstructured(amount=sparsity)``: of a
tensor with ``n`` entries exactly ``round(sparsity * n)`` are removed, those of smallest ``|w|``
(ties broken by position: the earlier entry in C order goes first). ``global_magnitude_masks``
ranks all named tensors together, as ``torch.nn.utils.prune.global_unstructured`` does.
``prune_model`` installs the masks with the network core's :class:`~refimpl.nn.Mask`
parametrization, so a pruned model trains, saves and loads like any other.

See chapter 3 of the book, "Magnitude pruning".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..nn import Mask, weighted_layers
from ..nn.layers import Layer
from ..validation import check_shape, check_sparsity

__all__ = [
    "check_sparsity",
    "current_masks",
    "global_magnitude_masks",
    "han_prune",
    "han_threshold_mask",
    "magnitude_mask",
    "mask_from_scores",
    "masked_weights",
    "prunable_layers",
    "prune_by_scores",
    "prune_model",
    "apply_masks",
    "random_mask",
    "random_prune",
    "sparsity_report",
]



def _as_weight(weight: np.ndarray, name: str = "weight") -> np.ndarray:
    weight = np.asarray(weight)
    dt = weight.dtype
    if not np.issubdtype(dt, np.number) or np.issubdtype(dt, np.complexfloating):
        raise TypeError(f"{name} must be a real numeric array, got dtype {weight.dtype}")
    if weight.size == 0:
        raise ValueError(f"{name} must have at least one entry")
    if not np.isfinite(weight).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return weight


def mask_from_scores(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask that removes the ``round(sparsity * n)`` entries of smallest score.

    Parameters
    ----------
    scores : ndarray, any shape
        Importance of every entry (``|w|`` for magnitude pruning, a saliency for OBD/OBS).
    sparsity : float in [0, 1)
        Fraction of entries to remove.

    Returns
    -------
    mask : ndarray of bool, same shape as ``scores``
        ``True`` where the entry is kept. Ties are broken by position (C order): of equal
        scores, the earlier entry is removed first.

    Notes
    -----
    The count removed is Python's ``round(sparsity * n)`` (round half to even), as in
    ``torch.nn.utils.prune``; so ``mask.sum() == n - round(sparsity * n)`` exactly.
    """
    sparsity = check_sparsity(sparsity)
    scores = _as_weight(scores, "scores")
    n = scores.size
    k = round(sparsity * n)
    mask = np.ones(n, dtype=bool)
    if k:
        order = np.argsort(scores.ravel(), kind="stable")
        mask[order[:k]] = False
    return mask.reshape(scores.shape)


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the ``1 - sparsity`` fraction of entries with largest ``|w|`` (Han et al. 2015).

    Parameters
    ----------
    weight : ndarray, any shape
        E.g. a dense weight (out_features, in_features) or a convolution weight
        (C_out, C_in, kH, kW).
    sparsity : float in [0, 1)
        Fraction of the entries to remove.

    Returns
    -------
    mask : ndarray of bool, same shape as ``weight``
        ``True`` for the kept entries; exactly ``round(sparsity * weight.size)`` are ``False``.

    Notes
    -----
    The saliency of weight :math:`w_i` is taken to be :math:`|w_i|`; the mask is
    :math:`M_i = [\\,|w_i| \\text{ is not among the } k \\text{ smallest}\\,]` with
    :math:`k = \\operatorname{round}(s n)`. Same selection as
    ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount=sparsity)`` (ties, which
    torch leaves unspecified, are broken here by position).

    References
    ----------
    .. [1] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and
       connections for efficient neural networks. NeurIPS 28, 1135-1143.

    See chapter 3 of the book, "Magnitude pruning".

    Examples
    --------
    >>> magnitude_mask(np.array([0.5, -0.1, 2.0, 0.05]), 0.5)
    array([ True, False,  True, False])
    """
    weight = _as_weight(weight)
    return mask_from_scores(np.abs(weight), sparsity)


def global_magnitude_masks(
    weights: Mapping[str, np.ndarray], sparsity: float
) -> dict[str, np.ndarray]:
    """Magnitude masks from one ranking of all entries of several tensors (global pruning).

    Parameters
    ----------
    weights : mapping of str to ndarray
        Named tensors of any shapes, e.g. ``{"fc1.weight": (300, 784) array, ...}``.
    sparsity : float in [0, 1)
        Fraction of *all* entries (summed over the tensors) to remove.

    Returns
    -------
    masks : dict of str to ndarray of bool
        Same keys and shapes as ``weights``; exactly ``round(sparsity * N)`` entries removed in
        total, where ``N`` is the total number of entries. Layers with larger weights keep more.

    Notes
    -----
    The same selection as ``torch.nn.utils.prune.global_unstructured(...,
    pruning_method=L1Unstructured, amount=sparsity)``: the tensors are flattened and
    concatenated (in the mapping's order, which matters only for ties) and
    :func:`magnitude_mask` is applied to the concatenation.

    References
    ----------
    .. [1] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and
       connections for efficient neural networks. NeurIPS 28, 1135-1143.

    See chapter 3 of the book, "Magnitude pruning".
    """
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError("weights must be a non-empty mapping of names to arrays")
    arrays = {k: _as_weight(v, f"weights[{k!r}]") for k, v in weights.items()}
    flat = np.concatenate([np.abs(a).ravel().astype(np.float64) for a in arrays.values()])
    mask = mask_from_scores(flat, sparsity)
    out: dict[str, np.ndarray] = {}
    start = 0
    for key, a in arrays.items():
        out[key] = mask[start : start + a.size].reshape(a.shape)
        start += a.size
    return out


def han_threshold_mask(
    weight: np.ndarray, quality: float, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Han's pruning rule: keep ``|w| > quality * std(w)`` (the threshold scales with the layer).

    Parameters
    ----------
    weight : ndarray, any shape
        The layer's weight.
    quality : float >= 0
        Han et al.'s "quality parameter"; larger removes more.
    mask : ndarray of bool, same shape as ``weight``, optional
        Entries already removed (``False``). They stay removed, and the standard deviation is
        taken over the surviving entries only.

    Returns
    -------
    mask : ndarray of bool, same shape as ``weight``

    Notes
    -----
    :math:`M_i = [\\,|w_i| > q\\,\\sigma\\,]` where :math:`\\sigma` is the standard deviation of the
    layer's (surviving) weights. The paper states the rule in one sentence; taking
    :math:`\\sigma` over survivors in later rounds is our reading (as Distiller's
    ``SensitivityPruner`` does). Unlike :func:`magnitude_mask` the sparsity is not fixed in
    advance: it follows from the weight distribution, so layers with many small weights lose more.

    References
    ----------
    .. [1] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and
       connections for efficient neural networks. NeurIPS 28, 1135-1143.

    See chapter 3 of the book, "Magnitude pruning".
    """
    weight = _as_weight(weight)
    q = float(quality)
    if not (math.isfinite(q) and q >= 0):
        raise ValueError(f"quality must be a finite float >= 0, got {quality!r}")
    keep = np.ones(weight.shape, dtype=bool) if mask is None else _check_mask(mask, weight.shape)
    if not keep.any():
        return keep.copy()
    sigma = float(np.std(weight[keep]))
    return keep & (np.abs(weight) > q * sigma)


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {mask.shape}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must be boolean or hold only 0 and 1")
        mask = mask.astype(bool)
    return mask


# -- models -------------------------------------------------------------------------------------
def prunable_layers(model: Layer, layers: Iterable[str] | None = None) -> dict[str, Layer]:
    """The named :class:`~refimpl.nn.Linear` and :class:`~refimpl.nn.Conv2d` layers of a model.

    ``layers`` restricts (and orders) the selection; a name that is missing or not a
    Linear/Conv2d raises ``ValueError``.
    """
    if not hasattr(model, "named_layers"):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    found = dict(weighted_layers(model))
    if layers is None:
        return found
    if isinstance(layers, str):
        layers = [layers]
    out = {}
    for name in layers:
        if name not in found:
            raise ValueError(
                f"layers: {name!r} is not a Linear or Conv2d layer of the model; "
                f"choose from {sorted(found)}"
            )
        out[name] = found[name]
    return out


def current_masks(model: Layer, layers: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The current weight mask of each prunable layer (all ``True`` if not masked).

    Returns a dict of layer name to a bool array shaped like that layer's weight, e.g. (300, 784)
    for LeNet-300-100's ``fc1``. The mask is the weight chain's :class:`~refimpl.nn.Mask`,
    wherever it sits in the chain (a pruned, then shared weight still reports its mask).
    """
    out = {}
    for name, layer in prunable_layers(model, layers).items():
        mask = Mask.of(layer, "weight")
        out[name] = np.ones(layer.weight.shape, dtype=bool) if mask is None else mask
    return out


def masked_weights(model: Layer, layers: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The effective (materialized) weights of the prunable layers, keyed by layer name.

    Each array has the layer's weight shape: (out, in) or (C_out, C_in, kH, kW).
    """
    return {n: layer.weight for n, layer in prunable_layers(model, layers).items()}


def apply_masks(model: Layer, masks: Mapping[str, np.ndarray]) -> Layer:
    """Install ``masks`` with :class:`~refimpl.nn.Mask` on the named layers, composing.

    Parameters
    ----------
    model : Sequential
        Changed in place.
    masks : mapping of layer name to ndarray of bool
        Each shaped like that layer's weight; ``True`` keeps an entry.

    Returns
    -------
    model : Sequential

    Notes
    -----
    The installed mask is :math:`M_{new} \\wedge M_{old}` (:meth:`refimpl.nn.Mask.update`):
    an entry removed earlier is never revived, and a weight that is already shared or quantized
    keeps its chain, with the mask updated in it. This is the one place where the pruning
    methods of this package touch a model.
    """
    layers = prunable_layers(model, list(masks))
    checked = {n: _check_mask(masks[n], layer.weight.shape) for n, layer in layers.items()}
    for name, layer in layers.items():
        Mask.update(layer, "weight", checked[name], mode="and")
    return model


def prune_by_scores(
    model: Layer,
    scores: Mapping[str, np.ndarray],
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "layer",
) -> Layer:
    """Remove the lowest-scoring weights of the named layers; install the masks; return ``model``.

    The common back end of every unstructured criterion in this package (magnitude, random,
    OBD and OBS saliencies).

    Parameters
    ----------
    model : Sequential
        Changed in place: each selected layer's weight gets a :class:`~refimpl.nn.Mask`.
    scores : mapping of layer name to ndarray
        One score per weight entry, same shape as that layer's weight (e.g. (300, 784) for
        LeNet-300-100's ``fc1``); low scores are removed first.
    sparsity : float in [0, 1) or mapping of layer name to float
        Target fraction removed, per layer (``scope="layer"``) or of all the selected entries
        together (``scope="global"``, one float only). Entries already removed count.
    scope : {"layer", "global"}
        Rank within each layer, or across all layers in ``scores``.

    Returns
    -------
    model : Sequential

    Notes
    -----
    Entries that are already masked are ranked below every live entry, so the new mask is a
    subset of the old one (a removed weight is never revived) as long as the target is not
    below the current sparsity; a lower target raises ``ValueError``.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if not isinstance(scores, Mapping) or not scores:
        raise TypeError("scores must be a non-empty mapping of layer names to arrays")
    selected = prunable_layers(model, list(scores))
    if isinstance(sparsity, Mapping):
        if scope != "layer":
            raise ValueError("a per-layer sparsity dict needs scope='layer'")
        if set(sparsity) != set(selected):
            raise ValueError(
                f"sparsity has layers {sorted(sparsity)} but scores has {sorted(selected)}"
            )
        targets = {n: check_sparsity(v, f"sparsity[{n!r}]") for n, v in sparsity.items()}
    else:
        s = check_sparsity(sparsity)
        targets = dict.fromkeys(selected, s)
    old = current_masks(model, list(selected))
    ranked = {}
    for n, layer in selected.items():
        sc = _as_weight(scores[n], f"scores[{n!r}]")
        if sc.shape != layer.weight.shape:
            raise ValueError(
                f"scores[{n!r}] has shape {sc.shape}, the weight has {layer.weight.shape}"
            )
        # removed entries rank first: below the smallest live score
        floor = float(sc.min()) - 1.0
        ranked[n] = np.where(old[n], sc.astype(np.float64), floor)
    if scope == "global":
        total = sum(m.size for m in old.values())
        removed = sum(int((~m).sum()) for m in old.values())
        if round(s * total) < removed:
            raise ValueError(
                f"sparsity {s} is below the model's current sparsity {removed / total:.4f}"
            )
        low = min(float(v.min()) for v in ranked.values())
        # a shared floor keeps removed entries of every layer below all live ones
        flat = np.concatenate(
            [np.where(old[n], v, low - 1.0).ravel() for n, v in ranked.items()]
        )
        keep = mask_from_scores(flat, s)
        masks, start = {}, 0
        for n, v in ranked.items():
            masks[n] = keep[start : start + v.size].reshape(v.shape)
            start += v.size
    else:
        masks = {}
        for n, v in ranked.items():
            removed = int((~old[n]).sum())
            if round(targets[n] * v.size) < removed:
                raise ValueError(
                    f"sparsity for {n!r} = {targets[n]} is below the layer's current sparsity "
                    f"{removed / v.size:.4f}"
                )
            masks[n] = mask_from_scores(v, targets[n])
    return apply_masks(model, masks)


def _select(
    model: Layer, sparsity: float | Mapping[str, float], layers: Iterable[str] | None
) -> dict[str, Layer]:
    if isinstance(sparsity, Mapping):
        if layers is not None:
            raise ValueError("give either a sparsity dict or layers, not both")
        return prunable_layers(model, list(sparsity))
    selected = prunable_layers(model, layers)
    if not selected:
        raise ValueError("model has no Linear or Conv2d layer to prune")
    return selected


def prune_model(
    model: Layer,
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "layer",
    layers: Iterable[str] | None = None,
) -> Layer:
    """Magnitude-prune the Linear/Conv2d weights of ``model`` in place; return ``model``.

    Parameters
    ----------
    model : Sequential
        The model; its selected weights get a :class:`~refimpl.nn.Mask` parametrization.
    sparsity : float in [0, 1) or dict of layer name to float
        Target fraction of removed entries: one number for all selected layers, or one per
        layer (then ``scope`` must be ``"layer"`` and the dict's keys select the layers).
    scope : {"layer", "global"}
        ``"layer"``: each weight loses ``round(s * n)`` of its own entries
        (:func:`magnitude_mask`); ``"global"``: one ranking across the selected weights
        (:func:`global_magnitude_masks`).
    layers : iterable of str, optional
        Names of the layers to prune; default all Linear and Conv2d layers (biases are never
        pruned, as in the paper).

    Returns
    -------
    model : Sequential
        The same object.

    Notes
    -----
    The target counts entries already removed: pruning a layer at 50% and then at 75% removes
    75% in total, and the second mask is a subset of the first (already removed entries are
    ranked first, see :func:`prune_by_scores`). A target below a layer's current sparsity
    raises ``ValueError``.

    References
    ----------
    .. [1] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and
       connections for efficient neural networks. NeurIPS 28, 1135-1143.

    See chapter 3 of the book, "Magnitude pruning".

    Examples
    --------
    >>> from refimpl.models import digits_mlp
    >>> model = prune_model(digits_mlp(rng=0), 0.5)
    >>> print(f"{sparsity_report(model)['total']:.2f}")
    0.50
    """
    selected = _select(model, sparsity, layers)
    scores = {n: np.abs(layer.weight) for n, layer in selected.items()}
    return prune_by_scores(model, scores, sparsity, scope=scope)


def random_prune(
    model: Layer,
    sparsity: float | Mapping[str, float],
    *,
    rng: int | np.random.Generator | None = None,
    scope: str = "layer",
    layers: Iterable[str] | None = None,
) -> Layer:
    """The control experiment: remove a uniformly random set of weights (same counts).

    Same arguments as :func:`prune_model` plus ``rng``; the removed set is uniform among the
    live entries, so a later call never revives an entry. See chapter 3, "Magnitude pruning".
    """
    gen = np.random.default_rng(rng)
    selected = _select(model, sparsity, layers)
    scores = {n: gen.random(layer.weight.shape) for n, layer in selected.items()}
    return prune_by_scores(model, scores, sparsity, scope=scope)


def random_mask(
    shape: tuple[int, ...], sparsity: float, *, rng: int | np.random.Generator | None = None
) -> np.ndarray:
    """A boolean mask of ``shape`` with exactly ``round(sparsity * n)`` uniformly random zeros.

    Parameters
    ----------
    shape : tuple of int
        Shape of the mask (a weight's shape).
    sparsity : float in [0, 1)
        Fraction of ``False`` entries.
    rng : int or numpy.random.Generator, optional

    Returns
    -------
    mask : ndarray of bool, shape ``shape``
    """
    shape = check_shape(shape, "shape")  # (2.5, 3) was silently truncated to (2, 3)
    gen = np.random.default_rng(rng)
    return mask_from_scores(gen.random(shape), sparsity)


def han_prune(
    model: Layer,
    quality: float | Mapping[str, float],
    *,
    layers: Iterable[str] | None = None,
) -> Layer:
    """Prune each selected layer with Han's threshold ``quality * std`` (in place; composes).

    Parameters
    ----------
    model : Sequential
    quality : float >= 0 or dict of layer name to float
        One quality parameter for all selected layers, or one per layer (the dict selects).
    layers : iterable of str, optional
        Layers to prune (default all Linear and Conv2d layers); not with a dict.

    Returns
    -------
    model : Sequential

    See :func:`han_threshold_mask` and chapter 3 of the book, "Magnitude pruning".
    """
    if isinstance(quality, Mapping):
        if layers is not None:
            raise ValueError("give either a quality dict or layers, not both")
        selected = prunable_layers(model, list(quality))
        qualities = dict(quality)
    else:
        selected = prunable_layers(model, layers)
        qualities = dict.fromkeys(selected, quality)
    old = current_masks(model, list(selected))
    masks = {
        n: han_threshold_mask(layer.weight, qualities[n], mask=old[n])
        for n, layer in selected.items()
    }
    return apply_masks(model, masks)


def sparsity_report(model: Layer, layers: Iterable[str] | None = None) -> dict[str, float]:
    """Fraction of zero weights per prunable layer, plus ``"total"`` over those layers.

    Counts exact zeros of the effective weights (biases excluded), so it reports what a mask
    removed, and also any weight that happens to be exactly zero.
    """
    out, zeros, count = {}, 0, 0
    for name, layer in prunable_layers(model, layers).items():
        w = layer.weight
        z = int(np.count_nonzero(w == 0))
        out[name] = z / w.size
        zeros += z
        count += w.size
    out["total"] = zeros / count if count else 0.0
    return out
