"""Putting factorized layers into a model, and measuring what they change.

Every factorization of :mod:`refimpl.lowrank` returns ordinary ``Linear``/``Conv2d`` layers;
:func:`substitute` puts them in place of the layer they approximate, and
:func:`relative_output_error` says how far their output is from the original layer's on data.
See chapter 7 of the book, "Low-rank factorization".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn import Layer, Sequential, forward_through

__all__ = ["layer_inputs", "relative_output_error", "substitute"]


def substitute(model: Sequential, name: str, layers: Sequence[Layer]) -> Sequential:
    """A new model with layer ``name`` replaced by ``layers``, named ``name_1``, ``name_2``, ...

    Parameters
    ----------
    model : Sequential
        Not modified (the other layers are copied, see :meth:`Sequential.replace`).
    name : str
        A layer of ``model``.
    layers : sequence of Layer
        Applied in order in place of ``model[name]``; used as given, not copied.

    Returns
    -------
    Sequential

    Examples
    --------
    >>> from refimpl.models import digits_mlp
    >>> from refimpl.lowrank import svd_factorize
    >>> model = digits_mlp()
    >>> small = substitute(model, "fc1", svd_factorize(model["fc1"], 8))
    >>> small.names()[:4]
    ['flatten', 'fc1_1', 'fc1_2', 'relu1']
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    if not isinstance(name, str) or name not in model.names():
        raise ValueError(f"name must be a layer of the model ({model.names()}), got {name!r}")
    layers = list(layers)
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError("layers must be a non-empty sequence of refimpl.nn layers")
    taken = set(model.names()) - {name}
    pairs = [(f"{name}_{i}", layer) for i, layer in enumerate(layers, start=1)]
    clash = [n for n, _ in pairs if n in taken]
    if clash:
        raise ValueError(f"the new layer names {clash} are already used in the model")
    return model.replace(name, pairs)


def relative_output_error(
    original: Layer, replacement: Layer | Sequence[Layer], inputs: np.ndarray
) -> float:
    """Relative Frobenius error of a replacement's output against the original layer's.

    Parameters
    ----------
    original : Layer
        The layer being approximated.
    replacement : Layer or sequence of Layer
        Applied in order (e.g. the two factors of :func:`~refimpl.lowrank.svd_factorize`).
    inputs : ndarray, shape (N, ...)
        Inputs the original layer accepts.

    Returns
    -------
    float
        :math:`\\|f(X) - g(X)\\|_F / \\|f(X)\\|_F` (``inf`` if :math:`f(X) = 0` and
        :math:`g(X) \\ne f(X)`, 0 if both are 0).
    """
    layers = [replacement] if isinstance(replacement, Layer) else list(replacement)
    x = np.asarray(inputs)
    y = original.forward(x).astype(np.float64)
    z = x
    for layer in layers:
        z = layer.forward(z)
    diff = float(np.linalg.norm(y - z.astype(np.float64)))
    ref = float(np.linalg.norm(y))
    if ref == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / ref


def layer_inputs(
    model: Sequential, name: str, inputs: np.ndarray, *, batch_size: int = 500
) -> np.ndarray:
    """What layer ``name`` of ``model`` receives when the model is fed ``inputs``.

    Parameters
    ----------
    model : Sequential
    name : str
        A layer of ``model``.
    inputs : ndarray, shape (N, ...)
        Inputs of the whole model.
    batch_size : int
        Examples per forward pass.

    Returns
    -------
    ndarray, shape (N, ...)
        The output of the layers before ``name`` (evaluation mode), e.g. the pooled activations
        a hidden convolution sees; what the data-driven refinements
        (:func:`~refimpl.lowrank.separable_factorize`) need.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    names = model.names()
    if name not in names:
        raise ValueError(f"name must be a layer of the model ({names}), got {name!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return forward_through(model, inputs, names.index(name) - 1, batch_size=batch_size)
