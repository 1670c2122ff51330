"""The profiler: :func:`profile` counts a spec or a model of :mod:`refimpl.nn`, layer by layer.

See :mod:`refimpl.cost` for the counting conventions and the protocol a layer follows to report
its cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from .results import LayerCost, Profile, _bytes_counter
from .specs import Branches, Residual, Seq, Shape, Spec, _as_seq, _check_shape, _Leaf

# --------------------------------------------------------------------------------------------
# The profiler
# --------------------------------------------------------------------------------------------


class _Namer:
    """Automatic names, with one counter per kind and prefix so names never repeat."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, prefix: str, given: str, kind: str) -> str:
        if given:
            return prefix + given
        key = (prefix, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        return f"{prefix}{kind}{self.counts[key]}"


def _walk_spec(
    spec: Spec, shape: Shape, prefix: str, namer: _Namer, rows: list[LayerCost]
) -> Shape:
    """Append the rows of ``spec`` for input ``shape`` and return its output shape."""
    if isinstance(spec, Seq):
        inner = prefix + spec.name + "." if spec.name else prefix
        for layer in spec.layers:
            shape = _walk_spec(layer, shape, inner, namer, rows)
        return shape
    if isinstance(spec, Branches):
        full = namer(prefix, spec.name, spec.kind)
        outs = []
        for i, branch in enumerate(spec.branches, start=1):  # type: ignore[arg-type]
            named = branch if branch.name else replace(branch, name=f"branch{i}")
            outs.append(_walk_spec(named, shape, full + ".", namer, rows))
        first = outs[0]
        for i, out in enumerate(outs, start=1):
            if len(out) != 3 or out[1:] != first[1:]:
                raise ValueError(
                    f"block {full!r} (Branches): branch {i} gives shape {out}, which cannot be "
                    f"concatenated with branch 1's {first} along the channels"
                )
        out_shape = (sum(o[0] for o in outs), *first[1:])
        rows.append(LayerCost(full + ".concat", "concat", shape, out_shape))
        return out_shape
    if isinstance(spec, Residual):
        inner = prefix + spec.name + "." if spec.name else prefix
        body_out = _walk_spec(spec.body, shape, inner, namer, rows)  # type: ignore[arg-type]
        short_out = (
            shape if spec.shortcut is None else _walk_spec(spec.shortcut, shape, inner, namer, rows)  # type: ignore[arg-type]
        )
        add_name = namer(inner, "", "add")
        if body_out != short_out:
            raise ValueError(
                f"block {add_name!r} (Residual): the body gives {body_out} but the shortcut "
                f"gives {short_out}; they must match to be added"
            )
        rows.append(LayerCost(add_name, "add", shape, body_out))
        return body_out
    if isinstance(spec, _Leaf):
        name = namer(prefix, spec.name, spec.kind)
        row = spec.cost(shape, name)
        rows.append(row)
        return row.output_shape
    raise TypeError(f"not a spec: {type(spec).__name__}")


# --- models of refimpl.nn ---------------------------------------------------------------------


def _nonzero(layer: Any) -> int:
    """Nonzero entries of the tensors the layer computes with (its params, chains applied)."""
    names = {k.split(".", 1)[0] for k in layer.params} | set(layer.parametrizations)
    return sum(int(np.count_nonzero(layer.get_param(n))) for n in names)


def _parametrized_stored_bytes(layer: Any, dtype_bytes: int | float) -> int | None:
    """Stored bytes of a layer with parametrized tensors: the one size model.

    A parametrized tensor counts the bytes the compressed model file stores for it (its record
    body: the support's relative indices, the step's codes, codebooks or scales, each stream
    coded as the file codes it; see :mod:`refimpl.coding.container`). Plain tensors and buffers
    (biases, BatchNorm statistics) count ``dtype_bytes`` per number, as a dense file holds them.
    ``None`` when the layer has no parametrization.
    """
    if not getattr(layer, "parametrizations", None):
        return None
    from ..coding.container import encoded_tensor  # the codec is the size model

    nbytes = _bytes_counter(dtype_bytes)
    total = 0
    plain = [k for k in layer.params if k.split(".", 1)[0] not in layer.parametrizations]
    plain += [k for k in layer.buffers if "." not in k]
    total += nbytes(sum(int(np.size(layer.params.get(k, layer.buffers.get(k)))) for k in plain))
    for name in layer.parametrizations:
        total += encoded_tensor(layer, name).body_bytes
    return total


def _walk_layer(
    layer: Any, shape: Shape, name: str, dtype_bytes: int | float, rows: list[LayerCost]
) -> Shape:
    """Append the rows of one model layer (or a nested Sequential) and return its output shape."""
    where = f"layer {name!r} ({type(layer).__name__})"
    if callable(getattr(layer, "layer_cost", None)):
        row = layer.layer_cost(shape, dtype_bytes)
        if not isinstance(row, LayerCost):
            raise TypeError(f"{where}: layer_cost() must return a LayerCost, got {type(row)}")
        if not row.name:
            row = replace(row, name=name)
        rows.append(row)
        return tuple(row.output_shape)
    if callable(getattr(layer, "cost_paths", None)):  # parallel paths (Concat, Residual)
        return _walk_paths(layer, shape, name, dtype_bytes, rows)
    if callable(getattr(layer, "named_layers", None)):
        prefix = name + "." if name else ""
        for child_name, child in layer.named_layers():
            shape = _walk_layer(child, shape, prefix + str(child_name), dtype_bytes, rows)
        return shape
    spec = layer.cost_spec() if callable(getattr(layer, "cost_spec", None)) else None
    if spec is None:
        raise TypeError(
            f"{where}: the cost model does not know this layer type; give it a method "
            f"layer_cost(input_shape, dtype_bytes) -> LayerCost or cost_spec() -> spec "
            f"(see the docstring of refimpl.cost)"
        )
    if not isinstance(spec, _Leaf):  # a layer that is a small architecture (SVD, CP, ...)
        sub = _as_seq(spec, f"{where}: cost_spec()")
        return _walk_spec(sub, shape, name + ".", _Namer(), rows)
    try:
        row = spec.cost(shape, name)
    except ValueError as exc:  # name the model's layer type, not its spec's
        raise ValueError(str(exc).replace(f"({type(spec).__name__})",
                                          f"({type(layer).__name__})")) from None  # fmt: skip
    if row.params:
        row = replace(row, nonzero_params=_nonzero(layer))
    stored = _parametrized_stored_bytes(layer, dtype_bytes)
    if stored is not None:
        row = replace(row, stored_bytes=stored)
    rows.append(row)
    return row.output_shape


def _walk_paths(
    layer: Any, shape: Shape, name: str, dtype_bytes: int | float, rows: list[LayerCost]
) -> Shape:
    """Rows of a layer whose ``cost_paths()`` gives ``(merge, [(path name, layer or None)])``:
    every path sees the input (``None`` is the identity), then a ``"concat"`` row (outputs
    concatenated along the channels) or an ``"add"`` row (outputs added), as for the
    :class:`Branches` and :class:`Residual` specs."""
    merge, paths = layer.cost_paths()
    prefix = name + "." if name else ""
    outs = [shape if sub is None else _walk_layer(sub, shape, prefix + path, dtype_bytes, rows)
            for path, sub in paths]  # fmt: skip
    first = outs[0]
    if merge == "concat":
        for i, out in enumerate(outs, start=1):
            if len(out) != len(first) or out[1:] != first[1:]:
                raise ValueError(f"layer {name!r} ({type(layer).__name__}): path {i} gives "
                                 f"shape {out}, which cannot be concatenated with path 1's "
                                 f"{first} along the channels")  # fmt: skip
        out_shape = (sum(o[0] for o in outs), *first[1:])
    elif merge == "add":
        if any(out != first for out in outs):
            raise ValueError(f"layer {name!r} ({type(layer).__name__}): paths give shapes "
                             f"{outs}; they must match to be added")  # fmt: skip
        out_shape = first
    else:
        raise ValueError(f"layer {name!r}: cost_paths() merge must be 'concat' or 'add', got "
                         f"{merge!r}")  # fmt: skip
    rows.append(LayerCost(prefix + merge, merge, shape, out_shape))
    return out_shape


def profile(
    spec_or_model: Any, input_shape: Iterable[int] | None = None, dtype_bytes: int | float = 4
) -> Profile:
    """Count the cost of a network, layer by layer, for one input sample.

    Parameters
    ----------
    spec_or_model : Spec, list of Spec, or a refimpl.nn model or layer
        An architecture spec (e.g. ``vgg16()``) or a model (anything with ``named_layers()``,
        e.g. ``refimpl.nn.Sequential``, or a single layer).
    input_shape : tuple of int, optional
        ``(C, H, W)`` or ``(features,)``, without the batch axis. Defaults to the spec's
        ``input_shape`` (the reference architectures carry theirs).
    dtype_bytes : int or float
        Bytes per stored number and per activation element: 4 for float32, 2 for float16,
        0.5 for 4-bit codes.

    Returns
    -------
    Profile

    Raises
    ------
    ValueError
        If ``input_shape`` is malformed, or a layer does not fit the shape it receives (the
        message names the layer).
    TypeError
        If the model holds a layer type the cost model does not know and that does not
        implement the protocol of the module docstring.

    Notes
    -----
    Conventions (see the module docstring): MACs count the weights of convolutions and dense
    layers only; ``FLOPs = 2 (MACs + bias outputs)``, which is the survey's
    ``2 H W (C_in K^2 + 1) C_out`` for a convolution with bias; activations count every
    allocated output; stored bytes are ``(params + buffers) * dtype_bytes``. For a model,
    ``params`` counts the layer's architecture (a pruned or shared weight still counts in full),
    ``nonzero_params`` the nonzero entries of the tensors it computes with, and a parametrized
    tensor's stored bytes are what the compressed model file stores for it (the one size
    model; see :mod:`refimpl.coding.container`).

    Examples
    --------
    A 3x3 convolution with bias, 2 -> 4 channels, on a 5x5 input with padding 1:
    ``H W = 25`` outputs per channel, so MACs ``25 * 4 * 2 * 9 = 1800`` and FLOPs
    ``2 * 25 * (2 * 9 + 1) * 4 = 3800``.

    >>> p = profile(Conv(2, 4, 3, padding=1), (2, 5, 5))
    >>> p.params, p.macs, p.flops, p.output_shape
    (76, 1800, 3800, (4, 5, 5))
    """
    _bytes_counter(dtype_bytes)  # validate early
    rows: list[LayerCost] = []
    name = ""
    is_spec = isinstance(spec_or_model, Spec) or (
        isinstance(spec_or_model, (list, tuple)) and all(isinstance(s, Spec) for s in spec_or_model)
    )
    if input_shape is None:
        input_shape = getattr(spec_or_model, "input_shape", None)
        if input_shape is None:
            raise ValueError("input_shape is required: (C, H, W) or (features,)")
    shape = _check_shape(input_shape)
    if is_spec:
        seq = _as_seq(spec_or_model, "spec")
        name = seq.name
        out = _walk_spec(replace(seq, name=""), shape, "", _Namer(), rows)
    else:
        layer_name = (
            ""
            if callable(getattr(spec_or_model, "named_layers", None))
            else (type(spec_or_model).__name__.lower())
        )
        out = _walk_layer(spec_or_model, shape, layer_name, dtype_bytes, rows)
    done = tuple(row.completed(dtype_bytes) for row in rows)
    return Profile(done, shape, tuple(out), dtype_bytes, name)


