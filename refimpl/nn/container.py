"""The container base of :mod:`refimpl.nn`: named child layers and the walks over them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from .layers import Layer

__all__ = ["Container"]


class Container(Layer):
    """Layers under names, and everything a model does by walking them.

    The one home of the walks over children that :class:`~refimpl.nn.Sequential` and the
    blocks of :mod:`refimpl.nn.blocks` (``Concat``, ``Residual``) share: parameters, buffers and
    gradients under dotted names, the store of a dotted name, constraints, dtype, finiteness,
    copies and the printed form. A subclass fills :attr:`layers` and defines the computation
    (``forward``/``backward``) and its self-description (``config``, ``param_shapes``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers: dict[str, Layer] = {}

    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        """Yield ``(name, child)`` in order."""
        yield from self.layers.items()

    def __getitem__(self, key: str | int) -> Layer:
        if isinstance(key, (int, np.integer)):
            return list(self.layers.values())[key]
        try:
            return self.layers[key]
        except KeyError:
            raise KeyError(f"no layer {key!r}; layers are {list(self.layers)}") from None

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, layer in self.layers.items():
            yield from layer.named_parameters(f"{prefix}{name}.")

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, layer in self.layers.items():
            yield from layer.named_buffers(f"{prefix}{name}.")

    def named_grads(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, layer in self.layers.items():
            yield from layer.named_grads(f"{prefix}{name}.")

    def parameters_and_grads(
        self, prefix: str = ""
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
        for name, layer in self.layers.items():
            yield from layer.parameters_and_grads(f"{prefix}{name}.")

    def _store_of(self, key: str) -> tuple[dict[str, np.ndarray], str]:
        """The dict (a leaf's params or buffers) that holds dotted name ``key``."""
        name, _, local = key.partition(".")
        layer = self.layers.get(name)
        if layer is None:
            raise KeyError(key)
        if hasattr(layer, "_store_of"):
            return layer._store_of(local)
        if local in layer.params:
            return layer.params, local
        if local in layer.buffers:
            return layer.buffers, local
        raise KeyError(key)

    def apply_constraints(self) -> None:
        for layer in self.layers.values():
            layer.apply_constraints()

    def astype(self, dtype: np.dtype | type) -> Container:
        for layer in self.layers.values():
            layer.astype(dtype)
        return self

    def check_finite(self, source: str = "state") -> None:
        for name, layer in self.layers.items():
            layer.check_finite(f"{source}: layer {name!r}")

    def copy(self) -> Container:
        """A deep copy (weights, buffers, parametrizations)."""
        return copy.deepcopy(self)

    @classmethod
    def _shapes_of(cls, descriptions: list[Any], what: str) -> dict[str, tuple[int, ...]]:
        """Dotted tensor shapes of named child descriptions, without building them."""
        out: dict[str, tuple[int, ...]] = {}
        names = set()
        for sub in descriptions:
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str) or not name or "." in name or name in names:
                raise ValueError(f"bad or repeated {what} name {name!r} in a {cls.__name__}")
            names.add(name)
            rest = {k: v for k, v in sub.items() if k != "name"}
            out.update(Layer.tensor_shapes(rest, f"{name}."))
        return out

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}".replace("\n", "\n  ")
                 for name, layer in self.layers.items()]  # fmt: skip
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"
