"""Sparse evolutionary training, SET (Mocanu et al. 2018): sparse from the start, rewired.

Each layer starts as an Erdős–Rényi random graph whose density is set by one parameter
:math:`\\varepsilon`; after every epoch the fraction :math:`\\zeta` of the weakest connections
(the smallest positive and the largest negative weights) is removed and as many new connections
are added at random places. The number of connections never changes. The masks live in the
network core's :class:`~refimpl.nn.Mask` parametrization; SET rewrites them in place.
See chapter 3 of the book, "Sparse evolutionary training".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..nn import Mask
from ..nn.layers import Layer
from ..validation import check_float, check_shape
from .magnitude import apply_masks, prunable_layers, random_mask

__all__ = [
    "SparseEvolution",
    "erdos_renyi_density",
    "erdos_renyi_masks",
    "set_initialize",
    "set_rewire",
]


def erdos_renyi_density(shape: tuple[int, ...], epsilon: float) -> float:
    """Density (fraction kept) of an Erdős–Rényi sparse layer of weight ``shape``.

    Parameters
    ----------
    shape : tuple of int
        ``(out_features, in_features)`` or a convolution's ``(C_out, C_in, kH, kW)``.
    epsilon : float > 0
        Mocanu et al.'s :math:`\\varepsilon`: the layer has about
        :math:`\\varepsilon (n_{in} + n_{out})` connections.

    Returns
    -------
    density : float in (0, 1]

    Notes
    -----
    .. math:: p = \\min\\Big(1, \\varepsilon \\frac{n_{in} + n_{out}}{n_{in} n_{out}}\\Big).

    For a convolution we use the sum over the dimensions of the weight divided by their
    product (the "Erdős–Rényi-kernel" rule of Evci et al. 2020), which reduces to the formula
    above for a dense layer; the paper has dense layers only.

    References
    ----------
    .. [1] Mocanu, D. C., Mocanu, E., Stone, P., Nguyen, P. H., Gibescu, M. and Liotta, A. (2018)
       Scalable training of artificial neural networks with adaptive sparse connectivity
       inspired by network science. Nature Communications 9, 2383.
    """
    shape = check_shape(shape, "shape")
    if len(shape) not in (2, 4):
        raise ValueError(f"shape must be 2-D or 4-D with positive sizes, got {shape}")
    eps = check_float(epsilon, "epsilon", 0.0, open_low=True)
    return min(1.0, eps * sum(shape) / float(np.prod(shape)))


def erdos_renyi_masks(
    model: Layer,
    epsilon: float,
    *,
    rng: int | np.random.Generator | None = None,
    layers: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Random masks with :func:`erdos_renyi_density` for the selected layers.

    Each mask keeps exactly ``n - round((1 - p) n)`` uniformly chosen entries (the paper
    draws every connection independently with probability ``p``; a fixed count makes the
    sparsity exact). A layer whose density is 1 (small layers, where
    :math:`\\varepsilon (n_{in} + n_{out}) \\ge n_{in} n_{out}`) stays dense and is left out of
    the result, so that SET does not rewire it. Returns a dict of layer name to bool array;
    install it with :func:`refimpl.pruning.apply_masks`.
    """
    gen = np.random.default_rng(rng)
    out = {}
    for name, layer in prunable_layers(model, layers).items():
        shape = layer.weight.shape
        p = erdos_renyi_density(shape, epsilon)
        if p < 1.0:
            out[name] = random_mask(shape, 1.0 - p, rng=gen)
    return out


def set_rewire(
    layer: Layer,
    zeta: float,
    *,
    rng: int | np.random.Generator | None = None,
    init: str = "uniform",
) -> tuple[int, int]:
    """One SET step on a masked layer, in place: remove the weakest ``zeta`` and regrow.

    Parameters
    ----------
    layer : Linear or Conv2d
        Its weight must carry a :class:`~refimpl.nn.Mask`.
    zeta : float in [0, 1)
        Fraction of the positive and of the negative connections removed.
    rng : int or Generator
    init : {"uniform", "zero"}
        Value of a new connection: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (a fresh random
        weight, as in the paper) or 0 (as later methods such as RigL do).

    Returns
    -------
    (removed, added) : tuple of int
        Equal: the number of connections is constant.

    Notes
    -----
    Among the live weights, the ``round(zeta * n_pos)`` smallest positive ones and the
    ``round(zeta * n_neg)`` negative ones closest to zero are removed; the same number of
    positions is drawn uniformly among all empty positions (those just removed included) and
    switched on.

    References
    ----------
    .. [1] Mocanu, D. C. et al. (2018) Scalable training of artificial neural networks with
       adaptive sparse connectivity inspired by network science. Nature Communications 9, 2383.

    See chapter 3 of the book, "Sparse evolutionary training".
    """
    z = float(zeta)
    if not (np.isfinite(z) and 0 <= z < 1):
        raise ValueError(f"zeta must lie in [0, 1), got {zeta!r}")
    if init not in ("uniform", "zero"):
        raise ValueError(f"init must be 'uniform' or 'zero', got {init!r}")
    old = Mask.of(layer, "weight")
    if old is None:
        raise ValueError("set_rewire needs a layer whose weight carries a Mask")
    gen = np.random.default_rng(rng)
    w = layer.weight.reshape(-1)
    mask = old.reshape(-1).copy()
    pos = np.flatnonzero(mask & (w > 0))
    neg = np.flatnonzero(mask & (w <= 0))
    k_pos, k_neg = round(z * pos.size), round(z * neg.size)
    drop = np.concatenate(
        [
            pos[np.argsort(w[pos], kind="stable")[:k_pos]],
            neg[np.argsort(-w[neg], kind="stable")[:k_neg]],
        ]
    )
    mask[drop] = False
    Mask.update(layer, "weight", mask.reshape(old.shape), mode="and")  # prune
    empty = np.flatnonzero(~mask)
    k = drop.size
    grow = gen.choice(empty, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    mask[grow] = True
    values = np.zeros(k, dtype=w.dtype)
    if init == "uniform":
        bound = 1.0 / np.sqrt(layer.weight[0].size)
        values = gen.uniform(-bound, bound, size=k).astype(w.dtype)
    # regrow: draw i goes to position grow[i]; Mask.update fills positions in C order
    Mask.update(layer, "weight", mask.reshape(old.shape), mode="replace",
                regrow_value=values[np.argsort(grow)])  # fmt: skip
    return int(drop.size), int(grow.size)


class SparseEvolution:
    """Fit callback for SET: rewire every selected layer after each epoch.

    Parameters
    ----------
    zeta : float in [0, 1)
        Fraction of connections replaced per epoch (the paper uses 0.3).
    rng : int or Generator
    layers : iterable of str, optional
        Layers to rewire (default every masked Linear/Conv2d layer).
    init : {"uniform", "zero"}
        See :func:`set_rewire`.
    epochs : int, optional
        The number of training epochs: if given, no rewiring happens after the last one (its
        new random connections would be untrained).

    Attributes
    ----------
    history : list of dict
        Per epoch, layer name to the number of connections replaced.

    References
    ----------
    .. [1] Mocanu, D. C. et al. (2018) Scalable training of artificial neural networks with
       adaptive sparse connectivity inspired by network science. Nature Communications 9, 2383.

    See chapter 3 of the book, "Sparse evolutionary training".
    """

    def __init__(
        self,
        zeta: float = 0.3,
        *,
        rng: int | np.random.Generator | None = None,
        layers: Iterable[str] | None = None,
        init: str = "uniform",
        epochs: int | None = None,
    ) -> None:
        z = float(zeta)
        if not (np.isfinite(z) and 0 <= z < 1):
            raise ValueError(f"zeta must lie in [0, 1), got {zeta!r}")
        if init not in ("uniform", "zero"):
            raise ValueError(f"init must be 'uniform' or 'zero', got {init!r}")
        self.zeta = z
        self.gen = np.random.default_rng(rng)
        self.layers = None if layers is None else list(layers)
        self.init = init
        self.epochs = epochs
        self.history: list[dict[str, int]] = []

    def on_epoch_end(self, model: Layer, epoch: int, history: object) -> None:
        if self.epochs is not None and epoch >= self.epochs:
            return
        done = {}
        for name, layer in prunable_layers(model, self.layers).items():
            if Mask.of(layer, "weight") is not None:
                removed, _ = set_rewire(layer, self.zeta, rng=self.gen, init=self.init)
                done[name] = removed
        self.history.append(done)


def set_initialize(
    model: Layer,
    epsilon: float,
    *,
    rng: int | np.random.Generator | None = None,
    layers: Iterable[str] | None = None,
) -> Layer:
    """Make ``model`` sparse from the start with :func:`erdos_renyi_masks` (in place).

    Parameters
    ----------
    model : Sequential
        Usually freshly initialized; its Linear/Conv2d weights get a :class:`~refimpl.nn.Mask`.
    epsilon : float > 0
        Mocanu et al.'s density parameter (the paper uses 20).
    rng : int or numpy.random.Generator, optional
    layers : iterable of str, optional
        Layers to make sparse (default all Linear and Conv2d).

    Returns
    -------
    model : Sequential

    See chapter 3 of the book, "Sparse evolutionary training".
    """
    return apply_masks(model, erdos_renyi_masks(model, epsilon, rng=rng, layers=layers))

