"""Apply a weight parametrization to every dense and convolution layer of a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..nn.layers import Conv2d, Layer, Linear
from ..nn.parametrize import Parametrization

__all__ = ["quantize_model"]


def quantize_model(
    model: Layer,
    make: Callable[[Layer], Parametrization],
    *,
    layers: Iterable[str] | None = None,
) -> Layer:
    """Parametrize the ``weight`` of each dense and convolution layer of ``model`` in place.

    Parameters
    ----------
    model : Sequential
        The model to change (use ``model.copy()`` first to keep the original).
    make : callable
        ``make(layer) -> Parametrization``, called once per layer so that each layer gets its
        own object (e.g. ``lambda layer: UniformQuant(4, per_channel=True)`` or
        ``lambda layer: SharedWeights.from_weight(layer.weight, 16)``).
    layers : iterable of str, optional
        Names of the layers to change; default: every :class:`~refimpl.nn.Linear` and
        :class:`~refimpl.nn.Conv2d`.

    Returns
    -------
    Sequential
        ``model`` itself.

    Notes
    -----
    A layer whose weight is already parametrized (e.g. pruned through a mask) starts from its
    materialized weight, so pruned zeros stay zero (see :class:`~refimpl.nn.Mask`).
    See chapter 5 of the book, "Quantization".
    """
    if not callable(make):
        raise TypeError("make must be a callable layer -> Parametrization")
    named = list(model.named_layers()) if hasattr(model, "named_layers") else [("", model)]
    wanted = None if layers is None else set(layers)
    if wanted is not None:
        missing = wanted - {name for name, _ in named}
        if missing:
            raise ValueError(f"layers {sorted(missing)} are not in the model")
    for name, layer in named:
        chosen = name in wanted if wanted is not None else isinstance(layer, (Linear, Conv2d))
        if chosen:
            layer.parametrize("weight", make(layer))
    return model
