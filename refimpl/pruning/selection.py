"""Selection: from unit scores to the units each layer keeps, separate from any criterion.

A criterion (:mod:`refimpl.pruning.neuron_criteria`, :mod:`refimpl.pruning.filter_criteria`)
says how important each unit is; a selection rule says how many units go and where:

* :func:`select_per_layer`: the same fraction of every layer, lowest scores first, exactly as
  ``torch.nn.utils.prune.ln_structured(amount=sparsity, dim=0)`` picks them;
* :func:`select_global`: one ranking over all layers (scores normalized per layer first);
* :func:`select_to_flop_budget`: remove units until the model's FLOPs, as
  :func:`refimpl.cost.profile` counts them, fall to a target.

``sparsity`` is always the fraction of units *removed* (torch's ``amount``); an ``int`` is a
count. Ties are broken by position: of equal scores, the lower index is removed first.

See chapter 4 of the book, "Selection".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..cost import profile
from ..nn import Sequential
from ..surgery.units import shrink, unit_count
from .magnitude import check_sparsity

__all__ = [
    "flops_of",
    "n_to_prune",
    "select_global",
    "select_per_layer",
    "select_to_flop_budget",
]

_NORMALIZE = ("l2", "max", "rank", "none")


def n_to_prune(n: int, sparsity: float | int) -> int:
    """How many of ``n`` units a ``sparsity`` removes, as ``torch.nn.utils.prune`` counts.

    A float in ``[0, 1]`` gives ``round(sparsity * n)`` (Python's round: halves go to the even
    number); an int is the count itself. At least one unit must stay.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(sparsity, (int, np.integer)) and not isinstance(sparsity, (bool, np.bool_)):
        k = int(sparsity)
        if not 0 <= k < n:
            raise ValueError(f"sparsity as a count must lie in [0, {n}), got {k}")
        return k
    if isinstance(sparsity, (bool, np.bool_)) or not isinstance(sparsity, (float, np.floating)):
        raise TypeError(f"sparsity must be a float in [0, 1) or an int, got {sparsity!r}")
    s = float(sparsity)
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ValueError(f"sparsity must lie in [0, 1) (the fraction removed), got {sparsity!r}")
    k = round(s * n)
    if k >= n:
        raise ValueError(f"sparsity {s} would remove all {n} units; keep at least one")
    return k


def _check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array (one score per unit), got shape {s.shape}"
        )
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real numbers, got dtype {s.dtype}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return s.astype(np.float64)


def select_per_layer(scores: np.ndarray, sparsity: float | int) -> np.ndarray:
    """The units to keep: all but the ``n_to_prune(n, sparsity)`` of lowest score.

    Parameters
    ----------
    scores : ndarray, shape (n_units,)
        Larger means more important.
    sparsity : float in [0, 1) or int
        Fraction (or count) of units removed.

    Returns
    -------
    keep : ndarray of int, shape (n_units - k,)
        Sorted indices.

    Notes
    -----
    ``torch.nn.utils.prune.ln_structured(module, "weight", amount=sparsity, n=1, dim=0)``
    keeps the ``n - round(sparsity * n)`` rows of largest L1 norm; with
    :func:`~refimpl.pruning.l1_filter_scores` this keeps the same rows (torch leaves the order
    of ties unspecified; we remove the lower index first).
    """
    s = _check_scores(scores)
    k = n_to_prune(s.size, sparsity)
    order = np.argsort(s, kind="stable")
    return np.sort(order[k:])


def _normalized(scores: np.ndarray, how: str) -> np.ndarray:
    if how == "l2":
        norm = np.linalg.norm(scores)
        return scores / norm if norm > 0 else scores
    if how == "max":
        top = np.abs(scores).max()
        return scores / top if top > 0 else scores
    if how == "rank":
        ranks = np.empty(scores.size)
        ranks[np.argsort(scores, kind="stable")] = np.arange(scores.size)
        return (ranks + 1) / scores.size
    return scores


def _global_order(
    scores: Mapping[str, np.ndarray], normalize: str, model: Sequential | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty mapping of layer names to score arrays")
    names = list(scores)
    checked = {}
    for name in names:
        s = _check_scores(scores[name], f"scores[{name!r}]")
        if model is not None and s.size != unit_count(model, name):
            raise ValueError(
                f"scores[{name!r}] has {s.size} entries but the layer has "
                f"{unit_count(model, name)} units"
            )
        checked[name] = _normalized(s, normalize)
    layer_of = np.concatenate([np.full(checked[n].size, i) for i, n in enumerate(names)])
    unit_of = np.concatenate([np.arange(checked[n].size) for n in names])
    values = np.concatenate([checked[n] for n in names])
    order = np.lexsort((unit_of, layer_of, values))  # by value, then layer, then index
    return names, layer_of[order], unit_of[order]


def _prefix_keep(
    names: list[str], sizes: dict[str, int], layer_of: np.ndarray, unit_of: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Keep sets after removing the first ``k`` units of the global order (one unit stays)."""
    alive = {name: np.ones(sizes[name], dtype=bool) for name in names}
    left = dict(sizes)
    removed = 0
    for li, ui in zip(layer_of, unit_of, strict=True):
        if removed >= k:
            break
        name = names[li]
        if left[name] > 1:
            alive[name][ui] = False
            left[name] -= 1
            removed += 1
    return {name: np.flatnonzero(alive[name]) for name in names}


def select_global(
    scores: Mapping[str, np.ndarray], sparsity: float | int, *, normalize: str = "l2"
) -> dict[str, np.ndarray]:
    """One ranking across layers: remove the lowest normalized scores of all layers together.

    Parameters
    ----------
    scores : mapping of str to ndarray (n_units_l,)
        Scores per layer.
    sparsity : float in [0, 1) or int
        Fraction (or count) of all the units removed.
    normalize : {"l2", "max", "rank", "none"}
        Scores of different layers live on different scales (a criterion's values grow with a
        layer's fan-in), so each layer's scores are divided by their L2 norm (default, as in
        Molchanov et al. 2017) or by their maximum, or replaced by their rank in the layer
        divided by the layer size.

    Returns
    -------
    keep : dict of str to ndarray of int
        Sorted kept indices per layer. Every layer keeps at least one unit: a layer's last unit
        is skipped in the ranking, and the next lowest score goes instead.

    Raises
    ------
    ValueError
        If ``sparsity`` would leave some layer without a unit.
    """
    names, layer_of, unit_of = _global_order(scores, normalize)
    sizes = {n: int(np.asarray(scores[n]).size) for n in names}
    total = sum(sizes.values())
    k = n_to_prune(total, sparsity)
    if k > total - len(names):
        raise ValueError(
            f"sparsity {sparsity} removes {k} of {total} units, but each of the {len(names)} "
            "layers must keep one"
        )
    return _prefix_keep(names, sizes, layer_of, unit_of, k)


def flops_of(model: Sequential, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of one input, as :func:`refimpl.cost.profile` counts them."""
    return int(profile(model, tuple(input_shape)).flops)


def select_to_flop_budget(
    model: Sequential,
    scores: Mapping[str, np.ndarray],
    input_shape: Sequence[int],
    flop_reduction: float,
    *,
    strategy: str = "uniform",
    normalize: str = "l2",
) -> dict[str, np.ndarray]:
    """The fewest removals that cut the model's FLOPs by at least ``flop_reduction``.

    Parameters
    ----------
    model : Sequential
        The model the scores describe (not modified).
    scores : mapping of str to ndarray (n_units_l,)
        Scores of the layers that may lose units.
    input_shape : tuple of int
        One input without the batch axis, e.g. ``(1, 28, 28)``.
    flop_reduction : float in [0, 1)
        Fraction of the model's FLOPs to remove: the result has
        ``FLOPs <= (1 - flop_reduction) * FLOPs(model)``.
    strategy : {"uniform", "global"}
        ``"uniform"``: the smallest common per-layer sparsity ``s`` (every layer loses
        ``round(s * n_l)`` units, :func:`select_per_layer`) that meets the budget. Two
        criteria then remove the same number of units in each layer and reach the same FLOPs,
        which makes them comparable. ``"global"``: the shortest prefix of the global ranking
        (:func:`select_global`) that meets the budget.
    normalize : str
        Per-layer normalization for ``"global"`` (see :func:`select_global`).

    Returns
    -------
    keep : dict of str to ndarray of int

    Raises
    ------
    ValueError
        If the budget cannot be met while every layer keeps one unit.

    Notes
    -----
    FLOPs fall monotonically as units go, so a bisection over the common sparsity (uniform) or
    the prefix length (global) finds the smallest removal; each step shrinks a copy of the
    model with :func:`refimpl.pruning.shrink` and counts it with :func:`refimpl.cost.profile`,
    so the budget is met as the cost model counts it, the next layers' smaller inputs included.
    """
    if strategy not in ("uniform", "global"):
        raise ValueError(f"strategy must be 'uniform' or 'global', got {strategy!r}")
    r = check_sparsity(flop_reduction, "flop_reduction")
    names, layer_of, unit_of = _global_order(scores, normalize, model)
    sizes = {n: unit_count(model, n) for n in names}
    base = flops_of(model, input_shape)
    target = (1.0 - r) * base

    def flops(keep: dict[str, np.ndarray]) -> int:
        return flops_of(shrink(model, keep), input_shape)

    if strategy == "global":
        lo, hi = 0, sum(sizes.values()) - len(names)  # hi: every layer down to one unit
        if flops(_prefix_keep(names, sizes, layer_of, unit_of, hi)) > target:
            raise ValueError(
                f"flop_reduction {r} is out of reach: even one unit per layer leaves more FLOPs"
            )
        while lo < hi:
            mid = (lo + hi) // 2
            if flops(_prefix_keep(names, sizes, layer_of, unit_of, mid)) <= target:
                hi = mid
            else:
                lo = mid + 1
        return _prefix_keep(names, sizes, layer_of, unit_of, lo)

    # uniform: candidate sparsities are the points where some layer's count changes
    def keep_at(k_of: dict[str, int]) -> dict[str, np.ndarray]:
        return {n: select_per_layer(scores[n], k_of[n]) for n in names}

    # round(s * n) changes at s = (j + 0.5) / n; one point strictly between consecutive
    # change points stands for each distinct vector of counts.
    edges = sorted({(j + 0.5) / sizes[n] for n in names for j in range(sizes[n] - 1)})
    grid = [0.0] + [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    if edges:
        grid.append(edges[-1] + 1e-9)

    def counts(s: float) -> dict[str, int]:
        return {n: min(round(s * sizes[n]), sizes[n] - 1) for n in names}

    lo, hi = 0, len(grid) - 1
    if flops(keep_at(counts(grid[hi]))) > target:
        raise ValueError(
            f"flop_reduction {r} is out of reach: even one unit per layer leaves more FLOPs"
        )
    while lo < hi:
        mid = (lo + hi) // 2
        if flops(keep_at(counts(grid[mid]))) <= target:
            hi = mid
        else:
            lo = mid + 1
    return keep_at(counts(grid[lo]))
