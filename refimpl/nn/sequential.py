"""A container of named layers, with PyTorch-style names and a checked, pickle-free file format."""

from __future__ import annotations

import copy
import os
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .layers import Layer

FORMAT_MAGIC = "refimpl-state-dict"
FORMAT_VERSION = 1


class Sequential(Layer):
    """Layers applied in order, each under a name (``"fc1"``, ``"conv2"``, ...).

    Parameters
    ----------
    *layers : Layer or (str, Layer)
        Layers, optionally with names. Unnamed layers are named by kind and position among
        layers of that kind: ``fc1, relu1, fc2, ...``. A single list or dict is also accepted.

    Examples
    --------
    >>> from refimpl.nn import Sequential, Linear, ReLU
    >>> model = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    >>> [name for name, _ in model.named_parameters()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    """

    def __init__(self, *layers: Layer | tuple[str, Layer] | Iterable[Any]) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            items: list[Any] = list(layers[0].items())
        elif (
            len(layers) == 1
            and isinstance(layers[0], (list, tuple))
            and not (len(layers[0]) == 2 and isinstance(layers[0][0], str))
        ):
            items = list(layers[0])
        else:
            items = list(layers)
        self.layers: dict[str, Layer] = {}
        counts: dict[str, int] = {}
        for item in items:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                name, layer = item
            else:
                layer = item
                prefix = type(layer).prefix or type(layer).__name__.lower()
                counts[prefix] = counts.get(prefix, 0) + 1
                name = f"{prefix}{counts[prefix]}"
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} is not a Layer: {type(layer).__name__}")
            if not name or "." in name:
                raise ValueError(f"layer names must be non-empty and contain no dot: {name!r}")
            if name in self.layers:
                raise ValueError(f"duplicate layer name {name!r}")
            self.layers[name] = layer

    # -- self-description -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """``{"layers": [{"name": ..., "type": ..., **config}, ...]}``, nested as the model is."""
        return {"layers": [{"name": n, **layer.describe()} for n, layer in self.layers.items()]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        layers = config.get("layers")
        if not isinstance(layers, list) or set(config) != {"layers"}:
            raise ValueError("a Sequential is described by one list, 'layers'")
        items = []
        for sub in layers:
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str):
                raise ValueError("every layer of a Sequential needs a name")
            items.append((name, Layer.build({k: v for k, v in sub.items() if k != "name"}, name)))
        return cls(*items)

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        layers = config.get("layers")
        if not isinstance(layers, list) or set(config) != {"layers"}:
            raise ValueError("a Sequential is described by one list, 'layers'")
        out: dict[str, tuple[int, ...]] = {}
        names = set()
        for sub in layers:
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str) or not name or "." in name or name in names:
                raise ValueError(f"bad or repeated layer name {name!r} in a Sequential")
            names.add(name)
            rest = {k: v for k, v in sub.items() if k != "name"}
            out.update(Layer.tensor_shapes(rest, f"{name}."))
        return out

    def check_finite(self, source: str = "state") -> None:
        for name, layer in self.layers.items():
            layer.check_finite(f"{source}: layer {name!r}")

    # -- container --------------------------------------------------------------------------
    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        """Yield ``(name, layer)`` in order."""
        yield from self.layers.items()

    def __getitem__(self, key: str | int) -> Layer:
        if isinstance(key, (int, np.integer)):
            return list(self.layers.values())[key]
        try:
            return self.layers[key]
        except KeyError:
            raise KeyError(f"no layer {key!r}; layers are {list(self.layers)}") from None

    def __setitem__(self, key: str, layer: Layer) -> None:
        if key not in self.layers:
            raise KeyError(f"no layer {key!r}; layers are {list(self.layers)}")
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a Layer, got {type(layer).__name__}")
        self.layers[key] = layer

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def names(self) -> list[str]:
        return list(self.layers)

    # -- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x, train=train)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers.values()):
            grad_out = layer.backward(grad_out)
        return grad_out

    # -- parameters ---------------------------------------------------------------------------
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
        """The dict (a layer's params or buffers) that holds dotted name ``key``."""
        layer_name, _, local = key.partition(".")
        layer = self.layers.get(layer_name)
        if layer is None:
            raise KeyError(key)
        if isinstance(layer, Sequential):
            return layer._store_of(local)
        if local in layer.params:
            return layer.params, local
        if local in layer.buffers:
            return layer.buffers, local
        raise KeyError(key)

    def set_parameter(self, key: str, value: np.ndarray) -> None:
        """Replace the array stored under the dotted name ``key`` (same shape required)."""
        store, local = self._store_of(key)
        value = np.asarray(value)
        if value.shape != store[local].shape:
            raise ValueError(f"{key} must have shape {store[local].shape}, got {value.shape}")
        store[local] = value.astype(store[local].dtype, copy=True)

    def apply_constraints(self) -> None:
        for layer in self.layers.values():
            layer.apply_constraints()

    def astype(self, dtype: np.dtype | type) -> Sequential:
        for layer in self.layers.values():
            layer.astype(dtype)
        return self

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers under dotted names (``"fc1.weight"``)."""
        state = {k: v.copy() for k, v in self.named_parameters()}
        state.update({k: v.copy() for k, v in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> Sequential:
        """Load arrays saved by :meth:`state_dict`; names and shapes must match exactly."""
        expected = set(self.state_dict())
        given = set(state)
        if expected != given:
            missing, extra = sorted(expected - given), sorted(given - expected)
            hint = ""
            if any(".orig" in k or ".mask" in k for k in extra):
                hint = " (the file holds parametrized tensors: parametrize the model the same way)"
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {extra}{hint}")
        for key in sorted(expected):
            self.set_parameter(key, state[key])
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state dict to an ``.npz`` file with a format marker and version."""
        state = self.state_dict()
        np.savez(
            path,
            __format__=np.array(FORMAT_MAGIC),
            __version__=np.array(FORMAT_VERSION),
            __count__=np.array(len(state)),
            **state,
        )

    def load(self, path: str | os.PathLike[str]) -> Sequential:
        """Read a file written by :meth:`save` (without pickle) into this model."""
        self.load_state_dict(load_state_file(path))
        return self

    def replace(self, name: str, new: Layer | list[tuple[str, Layer]]) -> Sequential:
        """A new model with layer ``name`` replaced by ``new``; the other layers are copied.

        ``new`` is one layer (it keeps the name) or a list of ``(name, layer)`` pairs, for
        surgeries that turn one layer into several (a dense layer into two thin ones by SVD,
        a convolution into four by CP). The new layers are used as given, not copied.
        """
        if name not in self.layers:
            raise KeyError(f"no layer {name!r}; layers are {list(self.layers)}")
        pairs = [(name, new)] if isinstance(new, Layer) else list(new)
        items: list[tuple[str, Layer]] = []
        for key, layer in self.layers.items():
            items.extend(pairs if key == name else [(key, copy.deepcopy(layer))])
        return Sequential(*items)

    def copy(self) -> Sequential:
        """A deep copy (weights, buffers, parametrizations; not shared with this model)."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}" for name, layer in self.layers.items()]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


def leaf_layers(model: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Yield ``(dotted name, layer)`` for every layer of ``model`` that is not a container.

    Nested :class:`Sequential` models are walked in order (``"block1.conv2"``); a single layer
    yields itself under ``prefix`` (empty by default).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a refimpl.nn layer or model, got {type(model).__name__}")
    if not isinstance(model, Sequential):
        yield prefix, model
        return
    for name, layer in model.named_layers():
        yield from leaf_layers(layer, f"{prefix}{name}.") if isinstance(layer, Sequential) else (
            (f"{prefix}{name}", layer),
        )


def weighted_layers(model: Layer) -> Iterator[tuple[str, Layer]]:
    """The one walk over a model's weighted layers: ``(dotted name, layer)`` for each leaf layer
    whose class sets ``weighted = True`` (dense and convolution layers), in order.

    Every method that acts on "all the weights" (pruning, quantization, the size model) uses it.
    """
    for name, layer in leaf_layers(model):
        if layer.weighted:
            yield name, layer


def load_state_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read and check a file written by :meth:`Sequential.save`; return its arrays.

    Raises ``ValueError`` if the file is not such a file, has another version, or is corrupt
    (a truncated or altered archive fails its CRC check).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "__format__" not in keys or str(data["__format__"]) != FORMAT_MAGIC:
                raise ValueError(f"{os.fspath(path)!r} is not a refimpl state file")
            version = int(data["__version__"])
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{os.fspath(path)!r} has format version {version}; "
                    f"this refimpl reads version {FORMAT_VERSION}"
                )
            arrays = {k: data[k] for k in keys if not k.startswith("__")}
            if int(data["__count__"]) != len(arrays):
                raise ValueError(f"{os.fspath(path)!r} is truncated: array count mismatch")
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{os.fspath(path)!r} is corrupt or truncated: {exc}") from exc
    return arrays
