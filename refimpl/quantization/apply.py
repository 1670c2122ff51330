"""Apply a weight parametrization to every dense and convolution layer of a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..nn import weighted_layers
from ..nn.layers import Layer
from ..nn.parametrize import Parametrization

__all__ = ["quantize_model"]


def quantize_model(
    model: Layer,
    make: Parametrization | Callable[[Layer], Parametrization],
    *,
    layers: Iterable[str] | None = None,
) -> Layer:
    """Parametrize the ``weight`` of each dense and convolution layer of ``model`` in place.

    Parameters
    ----------
    model : Sequential
        The model to change (use ``model.copy()`` first to keep the original).
    make : Parametrization or callable
        One parametrization for every layer (``UniformQuant(4, per_channel=True)``: an object
        holds configuration only, so one serves many layers), or ``make(layer) ->
        Parametrization`` for one built from each layer's weight
        (``lambda layer: SharedWeights.from_weight(layer.weight, 16)``).
    layers : iterable of str, optional
        Names of the layers to change; default: every :class:`~refimpl.nn.Linear` and
        :class:`~refimpl.nn.Conv2d`.

    Returns
    -------
    Sequential
        ``model`` itself.

    Notes
    -----
    The parametrization joins the end of each weight's chain: a pruned weight keeps its mask,
    and the mask's zeros stay zero through quantization and any later fine-tuning (see
    :mod:`refimpl.nn.parametrize`).
    See chapter 5 of the book, "Quantization".
    """
    if not (isinstance(make, Parametrization) or callable(make)):
        raise TypeError("make must be a Parametrization or a callable layer -> Parametrization")
    named = dict(weighted_layers(model))
    wanted = list(named) if layers is None else list(layers)
    missing = [n for n in wanted if n not in named]
    if missing:
        raise ValueError(f"layers {missing} are not dense or convolution layers of the model; "
                         f"choose from {sorted(named)}")  # fmt: skip
    for name in wanted:
        layer = named[name]
        layer.parametrize("weight", make if isinstance(make, Parametrization) else make(layer))
    return model
