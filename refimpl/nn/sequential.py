"""A container of named layers, with PyTorch-style names and a checked, pickle-free file format.

The state file of :meth:`Sequential.save` is an ``.npz`` archive (one ``.npy`` member per
tensor, named by its dotted name) with three more members: ``__format__`` (the string
``"refimpl-state-dict"``), ``__version__`` (the integer 1) and ``__count__`` (the number of
tensors). :func:`load_state_file` reads it without pickle and without trusting it: the members'
``.npy`` headers (names, dtypes, shapes) are read first and checked against the format, the
limits and, when loading into a model, the model's own tensors; only then is each member read,
bounded by the size its header declares (so a deflated member cannot inflate beyond it), and
its CRC-32 checked.
"""

from __future__ import annotations

import copy
import math
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import check_int
from .container import Container
from .layers import Layer

FORMAT_MAGIC = "refimpl-state-dict"
FORMAT_VERSION = 1
#: The largest state (total entries of its tensors) :func:`load_state_file` reads when not
#: loading into a model (which sets the limit itself): 2**27 entries, 512 MiB of float32.
MAX_STATE_ELEMENTS = 2**27
_META = ("__format__", "__version__", "__count__")
_MAX_MEMBERS = 1 << 16
_CHUNK = 1 << 20


class Sequential(Container):
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
        return cls._shapes_of(layers, "layer")

    # -- container --------------------------------------------------------------------------
    def __setitem__(self, key: str, layer: Layer) -> None:
        if key not in self.layers:
            raise KeyError(f"no layer {key!r}; layers are {list(self.layers)}")
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a Layer, got {type(layer).__name__}")
        self.layers[key] = layer

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

    def set_parameter(self, key: str, value: np.ndarray) -> None:
        """Replace the array stored under the dotted name ``key`` (same shape required)."""
        store, local = self._store_of(key)
        value = np.asarray(value)
        if value.shape != store[local].shape:
            raise ValueError(f"{key} must have shape {store[local].shape}, got {value.shape}")
        store[local] = value.astype(store[local].dtype, copy=True)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers under dotted names (``"fc1.weight"``)."""
        state = {k: v.copy() for k, v in self.named_parameters()}
        state.update({k: v.copy() for k, v in self.named_buffers()})
        return state

    def _tensors(self) -> dict[str, np.ndarray]:
        """The model's own parameter and buffer arrays under dotted names (not copies)."""
        out = dict(self.named_parameters())
        out.update(self.named_buffers())
        return out

    def load_state_dict(
        self, state: Mapping[str, Any], *, source: str = "state dict"
    ) -> Sequential:
        """Load arrays saved by :meth:`state_dict`; return ``self``.

        Names, shapes and kinds must match the model exactly (a float array for a float
        tensor, an integer one for indices; float64 into float32 is cast), and every value
        must be finite, with no negative variance (:meth:`Layer.check_finite`). Everything is
        checked before anything is assigned: a state refused for any tensor leaves the model
        as it was. ``source`` names the origin in error messages (the file, for :meth:`load`).
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of names to arrays, got "
                            f"{type(state).__name__}")  # fmt: skip
        own = self._tensors()
        _check_names(own, set(state), source)
        staged = {}
        for key in own:
            value = state[key]
            if not isinstance(value, np.ndarray):
                value = np.asarray(value)
            _check_like(key, value.dtype, value.shape, own[key], source)
            staged[key] = value.astype(own[key].dtype, copy=True)
        old = {key: self._store_of(key) for key in own}
        for key, (store, local) in old.items():
            store[local] = staged[key]
        try:
            self.check_finite(source)
        except ValueError:
            for key, (store, local) in old.items():
                store[local] = own[key]
            raise
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state dict to exactly ``path`` (no suffix added): an ``.npz`` archive with
        a format marker, version and count (see the module docstring)."""
        state = self.state_dict()
        with open(path, "wb") as fh:
            np.savez(
                fh,
                __format__=np.array(FORMAT_MAGIC),
                __version__=np.array(FORMAT_VERSION),
                __count__=np.array(len(state)),
                **state,
            )

    def load(self, path: str | os.PathLike[str]) -> Sequential:
        """Read a file written by :meth:`save` (without pickle) into this model.

        The file's names, dtypes and shapes are checked against the model from the members'
        headers before any tensor is read, and nothing is assigned unless every tensor is
        valid (see :meth:`load_state_dict`). Errors are ``ValueError`` naming the file.
        """
        state = load_state_file(path, like=self._tensors())
        return self.load_state_dict(state, source=repr(os.fspath(path)))

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


def leaf_layers(model: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Yield ``(dotted name, layer)`` for every layer of ``model`` that is not a container.

    Nested containers (a :class:`Sequential`, or any layer with ``named_layers()``, such as
    :class:`~refimpl.nn.Concat`) are walked in order (``"block1.conv2"``); a single layer
    yields itself under ``prefix`` (empty by default).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a refimpl.nn layer or model, got {type(model).__name__}")
    if not _is_container(model):
        yield prefix, model
        return
    for name, layer in model.named_layers():
        yield from leaf_layers(layer, f"{prefix}{name}.") if _is_container(layer) else (
            (f"{prefix}{name}", layer),
        )


def _is_container(layer: Layer) -> bool:
    """Whether ``layer`` holds other layers (``named_layers()``) instead of computing itself."""
    return isinstance(layer, Sequential) or callable(getattr(layer, "named_layers", None))


def weighted_layers(model: Layer) -> Iterator[tuple[str, Layer]]:
    """The one walk over a model's weighted layers: ``(dotted name, layer)`` for each leaf layer
    whose class sets ``weighted = True`` (dense and convolution layers), in order.

    Every method that acts on "all the weights" (pruning, quantization, the size model) uses it.
    """
    for name, layer in leaf_layers(model):
        if layer.weighted:
            yield name, layer


def _check_names(own: Mapping[str, np.ndarray], given: set[str], source: str) -> None:
    expected = set(own)
    if expected != given:
        missing, extra = sorted(expected - given), sorted(given - expected)
        hint = ""
        if any(".orig" in k or ".mask" in k for k in extra):
            hint = " (the file holds parametrized tensors: parametrize the model the same way)"
        raise ValueError(f"{source}: state dict mismatch: missing {missing}, unexpected "
                         f"{extra}{hint}")  # fmt: skip


def _check_like(
    key: str, dtype: np.dtype, shape: tuple[int, ...], own: np.ndarray, source: str
) -> None:
    """A value of ``dtype`` and ``shape`` may replace the model's array ``own``."""
    if tuple(shape) != own.shape:
        raise ValueError(f"{source}: {key} must have shape {own.shape}, got {tuple(shape)}")
    if dtype.kind not in "biuf" or not np.can_cast(dtype, own.dtype, casting="same_kind"):
        raise ValueError(f"{source}: {key} must be of a kind castable to {own.dtype}, got "
                         f"dtype {dtype}")  # fmt: skip


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    nbytes: int


def _npy_header(fh: Any, where: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and order of an ``.npy`` stream, read from its header only."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{where}: not a valid .npy header ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (pickled data), which a refimpl state "
                         "file never does")  # fmt: skip
    return dtype, tuple(int(s) for s in shape), bool(fortran)


def _read_member(zf: zipfile.ZipFile, m: _Member, where: str) -> np.ndarray:
    """The array of one member, read bounded by its header's size; CRC-32 checked."""
    with zf.open(m.info) as fh:
        _npy_header(fh, where)
        parts, left = [], m.nbytes
        while left > 0:
            part = fh.read(min(left, _CHUNK))
            if not part:
                raise ValueError(f"{where} is truncated: {left} of {m.nbytes} bytes missing")
            parts.append(part)
            left -= len(part)
        if fh.read(1):  # reaching the member's end also checks its CRC-32
            raise ValueError(f"{where} has more bytes than its header declares")
    flat = np.frombuffer(b"".join(parts), dtype=m.dtype)
    return np.array(flat.reshape(m.shape, order="F" if m.fortran else "C"), order="C")


def load_state_file(
    path: str | os.PathLike[str],
    *,
    like: Mapping[str, np.ndarray] | None = None,
    max_elements: int = MAX_STATE_ELEMENTS,
) -> dict[str, np.ndarray]:
    """Read and check a file written by :meth:`Sequential.save`; return its arrays.

    Parameters
    ----------
    path : str or path-like
        The file.
    like : mapping of str to ndarray, optional
        The tensors the file must hold (a model's, as :meth:`Sequential.load` passes): names,
        shapes and dtype kinds are checked against them from the members' headers, before any
        tensor is read.
    max_elements : int
        Without ``like``, the largest number of entries (all tensors together) to accept.

    Returns
    -------
    dict of str to ndarray
        The tensors under their dotted names.

    Raises
    ------
    ValueError
        Naming the file, if it is not such a file (not a zip archive, no format marker), has
        another version (an integer: 1.7 is not 1), a member that is not a plain numeric
        ``.npy`` array (pickled objects are refused from the header), a count, name, dtype or
        shape that does not match, more entries than allowed, or is corrupt (a truncated or
        altered archive fails its CRC-32 check).
    """
    where = repr(os.fspath(path))
    max_elements = check_int(max_elements, "max_elements", 0)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_state(zf, where, like, max_elements)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error,
            NotImplementedError, RuntimeError, UnicodeDecodeError) as exc:  # fmt: skip
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{where} is corrupt or truncated: {exc}") from None


def _read_state(
    zf: zipfile.ZipFile, where: str, like: Mapping[str, np.ndarray] | None, max_elements: int
) -> dict[str, np.ndarray]:
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ValueError(f"{where} is not a refimpl state file: {len(infos)} members")
    members: dict[str, _Member] = {}
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or name[:-4] in members:
            raise ValueError(f"{where} is not a refimpl state file: member {name!r}")
        with zf.open(info) as fh:
            dtype, shape, fortran = _npy_header(fh, f"{where}: {name[:-4]}")
            header_len = fh.tell()
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_len + nbytes:
            raise ValueError(f"{where}: member {name!r} holds {info.file_size} bytes, its "
                             f"header declares {header_len + nbytes}")  # fmt: skip
        members[name[:-4]] = _Member(info, dtype, shape, fortran, nbytes)
    # the format marker, version and count: small scalars of the right kinds
    meta = {}
    for key, kind in zip(_META, ("U", "iu", "iu"), strict=True):
        m = members.pop(key, None)
        if m is None or m.shape != () or m.dtype.kind not in kind:
            if key == "__format__":
                raise ValueError(f"{where} is not a refimpl state file")
            raise ValueError(f"{where}: {key} must be an integer scalar")
        meta[key] = _read_member(zf, m, f"{where}: {key}").item()
    if meta["__format__"] != FORMAT_MAGIC:
        raise ValueError(f"{where} is not a refimpl state file")
    if meta["__version__"] != FORMAT_VERSION:
        raise ValueError(f"{where} has format version {meta['__version__']}; this refimpl "
                         f"reads version {FORMAT_VERSION}")  # fmt: skip
    if meta["__count__"] != len(members):
        raise ValueError(f"{where} is truncated: array count mismatch")
    for key, m in members.items():
        if m.dtype.kind not in "biuf":
            raise ValueError(f"{where}: {key} has dtype {m.dtype}, not a numeric array")
    # against the model, or against the limit: all from the headers
    if like is not None:
        _check_names(like, set(members), where)
        for key, m in members.items():
            _check_like(key, m.dtype, m.shape, like[key], where)
    else:
        total = sum(math.prod(m.shape) for m in members.values())
        if total > max_elements:
            raise ValueError(f"{where}: {total:,} entries, more than max_elements="
                             f"{max_elements:,}")  # fmt: skip
    return {key: _read_member(zf, m, f"{where}: {key}") for key, m in members.items()}
