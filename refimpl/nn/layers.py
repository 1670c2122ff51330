"""Layers with hand-written backward passes, in PyTorch's names and layouts.

Every layer keeps one contract:

* ``forward(x, train=False) -> y`` caches what the backward pass needs;
* ``backward(grad_out) -> grad_in`` fills ``grads`` (same keys as ``params``) and returns the
  gradient with respect to the input of the last ``forward``;
* ``params`` holds the trained arrays (``"weight"``, ``"bias"``), ``buffers`` the untrained
  ones (BatchNorm's running statistics, a pruning mask).

A dense weight is ``(out_features, in_features)``; a convolution weight is
``(C_out, C_in / groups, kH, kW)``; activations are ``NCHW``. So the same numbers give the same
outputs as ``torch.nn`` (see ``tests/nn/test_layers.py`` for hand-computed cases). Chapter 2 of the
book walks through the dense layer and the convolution.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..validation import RngLike, as_generator, check_float, check_int
from .parametrize import Arrays, Parametrization


def _check_pos_int(value: Any, name: str) -> int:
    return check_int(value, name, 1)



def _pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    """Return ``(a, b)`` from an int or a pair, checking type and lower bound."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _checked_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a layer's ``forward`` to remember the shape of its output, which ``backward``
    checks its ``grad_out`` against (see :func:`_checked_backward`)."""

    @functools.wraps(fn)
    def forward(self: Layer, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_forward"):  # an overriding forward calling super().forward
            return fn(self, x, *args, **kwargs)
        self._in_forward = True
        try:
            y = fn(self, x, *args, **kwargs)
        finally:
            self._in_forward = False
        self._out_shape = y.shape if isinstance(y, np.ndarray) else None
        return y

    forward._checked = True  # type: ignore[attr-defined]
    return forward


def _checked_backward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a layer's ``backward`` so that every layer refuses, naming the argument, a
    backward pass before any forward pass and a ``grad_out`` that is not a floating-point
    array of the shape the last forward pass returned (NumPy would broadcast a (1, 5)
    gradient over a (4, 5) output without a word, or fail deep inside a product)."""

    @functools.wraps(fn)
    def backward(self: Layer, grad_out: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_backward"):  # an overriding backward calling super()
            return fn(self, grad_out, *args, **kwargs)
        name = type(self).__name__
        if "_out_shape" not in self.__dict__:
            raise ValueError(f"{name}.backward: no forward pass to differentiate; call "
                             "forward(x) first")  # fmt: skip
        if not isinstance(grad_out, np.ndarray):
            raise TypeError(f"{name}.backward: grad_out must be a numpy.ndarray, got "
                            f"{type(grad_out).__name__}")  # fmt: skip
        if not np.issubdtype(grad_out.dtype, np.floating):
            raise TypeError(f"{name}.backward: grad_out must be a floating-point array, got "
                            f"dtype {grad_out.dtype}")  # fmt: skip
        shape = self._out_shape
        if shape is not None and grad_out.shape != shape:
            raise ValueError(f"{name}.backward: grad_out must have shape {shape} (the output "
                             f"of the last forward pass), got {grad_out.shape}")  # fmt: skip
        self._in_backward = True
        try:
            return fn(self, grad_out, *args, **kwargs)
        finally:
            self._in_backward = False

    backward._checked = True  # type: ignore[attr-defined]
    return backward


def _check_input(x: np.ndarray, ndim: int, layer: str, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer} expects a numpy.ndarray input, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{layer} expects a floating-point input, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{layer} expects input of shape {what}, got shape {x.shape}")
    return x


class Layer:
    """Base class of all layers: parameters, buffers, gradients and parametrizations.

    Attributes
    ----------
    weighted : bool
        ``True`` for layers whose ``weight`` the compression methods act on (dense and
        convolution layers): what :func:`refimpl.nn.weighted_layers` walks over.
    """

    weighted: ClassVar[bool] = False

    def __init__(self) -> None:
        self.params: Arrays = {}
        self.grads: Arrays = {}
        self.buffers: Arrays = {}
        self.parametrizations: dict[str, list[Parametrization]] = {}
        # per tensor, per step of its chain: (param keys, buffer keys), stored under "name.key"
        self._chain_keys: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        self._chain_shape: dict[str, tuple[int, ...]] = {}

    # -- the contract -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the input of the last :meth:`forward`, from ``grad_out``, the
        gradient w.r.t. its output. Every subclass's ``backward`` is wrapped (in
        ``__init_subclass__``) to refuse a call before any forward pass and a ``grad_out`` that
        is not a floating-point array of the last output's shape (``ValueError``/
        ``TypeError`` naming ``grad_out``), so no layer repeats these checks."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        return self.forward(x, train=train)

    # -- parameters, as PyTorch names them ----------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, array)`` for every trained array (``"weight.orig"`` if masked)."""
        for key, value in self.params.items():
            yield prefix + key, value

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for key, value in self.buffers.items():
            yield prefix + key, value

    def named_grads(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for key, value in self.grads.items():
            yield prefix + key, value

    def parameters_and_grads(
        self, prefix: str = ""
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
        """Yield ``(name, param, grad)``; ``grad`` is None before the first backward pass."""
        for key, value in self.params.items():
            yield prefix + key, value, self.grads.get(key)

    def num_parameters(self) -> int:
        """Number of trained scalars actually stored (a mask's ``orig`` counts in full)."""
        return int(sum(v.size for _, v in self.named_parameters()))

    def astype(self, dtype: np.dtype | type) -> Layer:
        """Cast floating-point parameters and buffers to ``dtype`` in place; return ``self``."""
        for store in (self.params, self.buffers):
            for key, value in store.items():
                if np.issubdtype(value.dtype, np.floating):
                    store[key] = value.astype(dtype)
        self.grads = {}
        return self

    # -- parametrizations: a chain per tensor (see refimpl.nn.parametrize) ---------------------
    def chain(self, name: str) -> tuple[Parametrization, ...]:
        """The parametrizations of tensor ``name``, first to last (empty if it has none)."""
        return tuple(self.parametrizations.get(name, ()))

    def find_parametrization(self, name: str, kind: type) -> int | None:
        """Position in the chain of ``name`` of the first step that is a ``kind``, or None."""
        for i, p in enumerate(self.parametrizations.get(name, ())):
            if isinstance(p, kind):
                return i
        return None

    def stored_arrays(self, name: str, index: int) -> tuple[Arrays, Arrays]:
        """Step ``index``'s own ``(params, buffers)`` of tensor ``name``, keyed locally.

        The dicts are new, the arrays are the layer's own: write them in place only through
        the step's documented methods (for a mask, :meth:`~refimpl.nn.Mask.update`).
        """
        param_keys, buffer_keys = self._chain_keys[name][index]
        return (
            {k: self.params[f"{name}.{k}"] for k in param_keys},
            {k: self.buffers[f"{name}.{k}"] for k in buffer_keys},
        )

    def _start(self, name: str) -> int:
        """Index of the last step that replaces its input (0 if none): evaluation starts there."""
        chain = self.parametrizations[name]
        return max((i for i, p in enumerate(chain) if not p.uses_input), default=0)

    def _run_chain(self, name: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
        """Inputs of every step, the chain's output, and the support applied at the end.

        Steps below the last one that replaces its input only contribute their support; that
        step receives a read-only zero array of the tensor's shape as its (unused) input.
        """
        chain = self.parametrizations[name]
        start = self._start(name)
        if f"{name}.orig" in self.params:
            x = self.params[f"{name}.orig"]
        else:
            own = self.stored_arrays(name, start)[0]
            dtype = next(iter(own.values())).dtype if own else np.float32
            x = np.broadcast_to(np.zeros((), dtype=dtype), self._chain_shape[name])
        inputs, support, last = [], None, -1
        for i, p in enumerate(chain):
            inputs.append(x)
            params, buffers = self.stored_arrays(name, i)
            if i >= start:
                x = p.materialize(x, params, buffers)
            s = p.support(params, buffers)
            if s is not None:
                support, last = (s if support is None else support & s), i
        # A step after the last support could have revived a zero: apply the support again.
        final = support if support is not None and last < len(chain) - 1 else None
        if final is not None:
            x = np.where(final, x, 0).astype(x.dtype, copy=False)
        return inputs, x, final

    def chain_inputs(self, name: str) -> list[np.ndarray]:
        """The input of every step of tensor ``name``'s chain (the first is the base tensor)."""
        return self._run_chain(name)[0]

    def get_param(self, name: str) -> np.ndarray:
        """The tensor the layer computes with: stored as is, or its chain's output."""
        if name in self.parametrizations:
            return self._run_chain(name)[1]
        try:
            return self.params[name]
        except KeyError:
            raise KeyError(f"{type(self).__name__} has no parameter {name!r}") from None

    def _pullback(self, name: str, grad: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the stored arrays of tensor ``name`` from the gradient of the tensor."""
        chain = self.parametrizations.get(name)
        if not chain:
            return {name: grad}
        base = self.params.get(f"{name}.orig")
        inputs, _, final = self._run_chain(name) if len(chain) > 1 or base is None else (
            [base], None, None
        )
        g = grad if final is None else np.where(final, grad, 0).astype(grad.dtype, copy=False)
        out: dict[str, np.ndarray] = {}
        for i in range(len(chain) - 1, self._start(name) - 1, -1):
            g, own = chain[i].pullback(g, inputs[i], *self.stored_arrays(name, i))
            out.update({f"{name}.{key}": value for key, value in own.items()})
            if g is None:
                return out
        out[f"{name}.orig"] = g
        return out

    def _set_grad(self, name: str, grad: np.ndarray) -> None:
        """Store the gradient of the loss w.r.t. tensor ``name``, pulled back through its chain."""
        for key in [k for k in self.grads if k.startswith(name + ".")]:
            del self.grads[key]
        self.grads.update(self._pullback(name, grad))

    def add_grad(self, name: str, grad: np.ndarray) -> None:
        """Add ``grad`` (w.r.t. the tensor ``name`` the layer computes with) to the stored
        gradients, through the chain: how a penalty term joins the loss's gradient."""
        for key, value in self._pullback(name, np.asarray(grad)).items():
            old = self.grads.get(key)
            self.grads[key] = value if old is None else old + value.astype(old.dtype, copy=False)

    def trained_tensor(self, name: str) -> str:
        """Key in ``params`` of the array that holds tensor ``name``'s values, up to masks.

        ``name`` itself if it has no chain; its base ``name + ".orig"`` if every step of the
        chain only masks it. A method that rescales a weight in place (a proximal step) scales
        this array. Raises ``ValueError`` for any other chain.
        """
        chain = self.parametrizations.get(name)
        if not chain:
            return name
        if all(p.keeps_values for p in chain) and f"{name}.orig" in self.params:
            return f"{name}.orig"
        raise ValueError(
            f"{name} carries {[type(p).__name__ for p in chain]}; only a plain or masked tensor "
            "holds its values directly"
        )

    def parametrize(self, name: str, parametrization: Parametrization) -> Layer:
        """Add ``parametrization`` as the last step of tensor ``name``'s chain; return ``self``.

        The step is built from the tensor's current value (the chain's output so far), so a
        later step sees pruned entries as zeros, and the chain's support keeps them zero. A
        second step of a kind that merges with the first (a second :class:`~refimpl.nn.Mask`)
        updates the first instead. Nothing changes if the step cannot be built.
        """
        if not isinstance(parametrization, Parametrization):
            raise TypeError(
                f"parametrization must be a Parametrization, got {type(parametrization).__name__}"
            )
        if name not in self.params and name not in self.parametrizations:
            raise ValueError(f"{type(self).__name__} has no parameter {name!r}")
        merge = getattr(parametrization, "merge_into", None)
        if merge is not None and self.find_parametrization(name, type(parametrization)) is not None:
            merge(self, name)
            return self
        x = self.get_param(name)
        own_params, own_buffers = parametrization.init(x.copy())
        chained = name in self.parametrizations
        taken = {"orig"} | {k for keys in self._chain_keys.get(name, []) for part in keys
                            for k in part}  # fmt: skip
        clash = taken & (set(own_params) | set(own_buffers))
        if clash:
            raise ValueError(
                f"{name} already stores {sorted(clash)} for an earlier step of its chain "
                f"{[type(p).__name__ for p in self.chain(name)]}; remove the parametrization "
                "first, or edit the earlier step through its own methods"
            )
        if not chained:
            self.params[f"{name}.orig"] = self.params.pop(name)
            self.parametrizations[name] = []
            self._chain_keys[name] = []
            self._chain_shape[name] = x.shape
        if not parametrization.uses_input:
            # The new step replaces everything below it: drop the trained arrays beneath (the
            # base and the steps' own params); their buffers stay, for their supports.
            self.params.pop(f"{name}.orig", None)
            for param_keys, _ in self._chain_keys[name]:
                for key in param_keys:
                    self.params.pop(f"{name}.{key}", None)
            self._chain_keys[name] = [((), b) for _, b in self._chain_keys[name]]
        for key, value in own_params.items():
            self.params[f"{name}.{key}"] = value
        for key, value in own_buffers.items():
            self.buffers[f"{name}.{key}"] = value
        self.parametrizations[name].append(parametrization)
        self._chain_keys[name].append((tuple(own_params), tuple(own_buffers)))
        for key in [k for k in self.grads if k == name or k.startswith(name + ".")]:
            del self.grads[key]
        return self

    def remove_parametrization(self, name: str) -> Layer:
        """Go back to storing ``name`` as a plain array holding the chain's output."""
        if name not in self.parametrizations:
            return self
        value = self.get_param(name).copy()
        head = name + "."
        for store in (self.params, self.buffers, self.grads):
            for key in [k for k in store if k.startswith(head)]:
                del store[key]
        del self.parametrizations[name]
        del self._chain_keys[name]
        del self._chain_shape[name]
        self.params[name] = value
        return self

    def apply_constraints(self) -> None:
        """Let every step of every chain restore its constraints (after an optimizer step)."""
        for name, chain in self.parametrizations.items():
            for i, p in enumerate(chain):
                p.constrain(*self.stored_arrays(name, i))

    # -- self-description: what the container, the codec, the cost model, the surgery and ---
    # -- OBD's second-order pass ask of a layer, instead of switching on its type ------------
    registry: ClassVar[dict[str, type[Layer]]] = {}
    #: Stem of the default names a Sequential gives ("fc" -> fc1, fc2, ...); "" means the
    #: lower-case class name.
    prefix: ClassVar[str] = ""
    #: Whether the layer may sit between a layer whose units are removed and the next weighted
    #: layer (activations, BatchNorm, Dropout, pooling, Flatten): units pass through it.
    carries_units: ClassVar[bool] = False
    #: Whether the layer flattens (N, C, H, W) to (N, C*H*W): a unit then owns H*W columns.
    flattens: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            Layer.registry[cls.__name__] = cls
        for attr, wrap in (("forward", _checked_forward), ("backward", _checked_backward)):
            fn = cls.__dict__.get(attr)
            if callable(fn) and not getattr(fn, "_checked", False):
                setattr(cls, attr, wrap(fn))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, in JSON types, that rebuild this layer's architecture.

        Empty for a layer whose constructor takes no arguments; a layer with arguments must
        override it (and :meth:`from_config` if ``cls(**config)`` does not rebuild it).
        """
        if type(self).__init__ is not Layer.__init__:
            raise TypeError(
                f"{type(self).__name__} does not describe its configuration: implement config()"
            )
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """A new layer (fresh weights) of the architecture :meth:`config` describes."""
        return cls(**config)

    def describe(self) -> dict[str, Any]:
        """``{"type": <class name>, **config}``: what a file stores of the architecture."""
        return {"type": type(self).__name__, **self.config()}

    @staticmethod
    def build(description: Any, where: str = "<model>") -> Layer:
        """The layer a :meth:`describe` dict stands for, looked up in :attr:`registry`.

        Raises ``ValueError`` naming ``where`` for an unknown type or bad arguments.
        """
        if not isinstance(description, dict) or not isinstance(description.get("type"), str):
            raise ValueError(f"layer {where!r}: description is not an object with a type")
        kind = description["type"]
        cls = Layer.registry.get(kind)
        if cls is None:
            raise ValueError(
                f"layer {where!r}: unknown layer type {kind!r}; known: {sorted(Layer.registry)}"
            )
        config = {k: v for k, v in description.items() if k != "type"}
        try:
            return cls.from_config(config)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"layer {where!r}: bad description of a {kind} ({exc})") from None

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors (params and buffers) a layer of this ``config`` holds.

        The default builds the layer; layers whose tensors can be large override it to compute
        the shapes from the configuration alone, so a file's architecture can be checked
        before anything is allocated.
        """
        layer = cls.from_config(config)
        out = {k: v.shape for k, v in layer.params.items()}
        out.update({k: v.shape for k, v in layer.buffers.items()})
        return out

    @staticmethod
    def tensor_shapes(description: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
        """Dotted names and shapes of every tensor of the model a description stands for,
        computed without building its large tensors (see :meth:`param_shapes`)."""
        if not isinstance(description, dict) or not isinstance(description.get("type"), str):
            raise ValueError(f"layer {prefix or '<model>'!r}: description is not an object")
        cls = Layer.registry.get(description["type"])
        if cls is None:
            raise ValueError(f"layer {prefix or '<model>'!r}: unknown layer type "
                             f"{description['type']!r}; known: {sorted(Layer.registry)}")
        config = {k: v for k, v in description.items() if k != "type"}
        try:
            shapes = cls.param_shapes(config)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"layer {prefix or '<model>'!r}: bad description ({exc})") from None
        return {f"{prefix}{k}": v for k, v in shapes.items()}

    def check_finite(self, source: str = "state") -> None:
        """Raise ``ValueError`` naming ``source`` and the tensor if a stored array holds NaN or
        an infinity (or a negative variance): such values can only be corruption."""
        for store in (self.params, self.buffers):
            for key, value in store.items():
                if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(
                    value
                ).all():
                    raise ValueError(f"{source}: {key} holds NaN or infinite values")

    def cost_spec(self) -> Any:
        """This layer as a spec of :mod:`refimpl.cost` (None: the cost model cannot count it)."""
        return None

    def slice_units(self, keep: np.ndarray) -> Layer:
        """A copy keeping only the units (output features or channels) ``keep`` (sorted
        indices). Layers that carry units without owning any return a plain copy."""
        if self.carries_units:
            return copy.deepcopy(self)
        raise TypeError(f"{type(self).__name__} has no units to slice")

    def constant_through(self, v: np.ndarray) -> np.ndarray:
        """What per-unit constant maps ``v`` (float64, one per unit) become after this layer."""
        if self.carries_units:
            return v
        raise TypeError(f"{type(self).__name__} does not carry units")

    def folds_exactly(self) -> bool:
        """Whether a constant input map stays constant through this layer everywhere (False
        when zero padding changes it near the border)."""
        return True

    def second_order_backward(
        self, h: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """OBD's second-order backward step (LeCun et al. 1990, Gauss-Newton form).

        Given ``h``, the diagonal of the loss's second derivative w.r.t. this layer's output
        (after :meth:`forward` on ``x``), return the same for its input and the diagonal for
        its weight (None for a layer without one). See chapter 3, "Optimal Brain Damage".
        """
        raise TypeError(f"OBD's second-order pass does not support {type(self).__name__}")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        text = f"{type(self).__name__}({self.extra_repr()})"
        if self.parametrizations:
            chains = (f"{k}: " + " -> ".join(map(repr, v))
                      for k, v in self.parametrizations.items())  # fmt: skip
            text += " [" + ", ".join(chains) + "]"
        return text


class _WeightBias(Layer):
    """Shared accessors for layers with a ``weight`` and an optional ``bias``."""

    weighted = True

    @property
    def weight(self) -> np.ndarray:
        """The weight used in the forward pass (materialized if parametrized)."""
        return self.get_param("weight")

    @weight.setter
    def weight(self, value: np.ndarray) -> None:
        self._assign("weight", value)

    @property
    def bias(self) -> np.ndarray | None:
        has_bias = "bias" in self.params or "bias" in self.parametrizations
        return self.get_param("bias") if has_bias else None

    @bias.setter
    def bias(self, value: np.ndarray) -> None:
        self._assign("bias", value)

    @property
    def units(self) -> int:
        """Output units: rows of the weight (neurons, or filters)."""
        return int(self.weight.shape[0])

    @property
    def input_units(self) -> int:
        """Input units the weight's columns belong to (features, or channels)."""
        return int(self.weight.shape[1]) * (self.groups if hasattr(self, "groups") else 1)

    def _sliced(self, rows: np.ndarray | None, cols: Any = None) -> _WeightBias:
        """A copy keeping weight ``rows`` and the columns ``cols(w)`` picks (a function of the
        weight array). A weight that is plain or only masked keeps its masks, sliced along; a
        weight with any other step is first replaced by its value."""
        new = copy.deepcopy(self)
        for name in list(new.parametrizations):
            if not (name == "weight" and all(p.keeps_values for p in new.chain(name))):
                new.remove_parametrization(name)

        def cut(w: np.ndarray) -> np.ndarray:
            if rows is not None:
                w = w[rows]
            if cols is not None:
                w = cols(w)
            return np.ascontiguousarray(w)

        if "weight" in new.parametrizations:
            keys = [("params", "weight.orig")] + [
                ("buffers", f"weight.{k}") for _, bkeys in new._chain_keys["weight"] for k in bkeys
            ]
            for store, key in keys:
                d = getattr(new, store)
                d[key] = cut(d[key])
            new._chain_shape["weight"] = new.params["weight.orig"].shape
        else:
            new.params["weight"] = cut(new.params["weight"])
        if rows is not None and "bias" in new.params:
            new.params["bias"] = new.params["bias"][rows].copy()
        new.grads = {}
        return new

    def add_to_bias(self, delta: np.ndarray) -> None:
        """Add ``delta`` (one entry per output unit) to the bias, creating one if needed."""
        delta = np.asarray(delta, dtype=np.float64)
        if not np.any(delta != 0):
            return
        dtype = self.weight.dtype
        old = self.params.get("bias")
        base = np.zeros(len(delta)) if old is None else old.astype(np.float64)
        self.params["bias"] = (base + delta).astype(dtype)

    def _assign(self, name: str, value: np.ndarray) -> None:
        if name in self.parametrizations:
            raise ValueError(f"{name} is parametrized; remove the parametrization before assigning")
        if name not in self.params:
            raise ValueError(f"{type(self).__name__} has no parameter {name!r}")
        value = np.asarray(value)
        if value.shape != self.params[name].shape:
            raise ValueError(f"{name} must have shape {self.params[name].shape}, got {value.shape}")
        self.params[name] = value.astype(self.params[name].dtype, copy=True)


def _uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


class Linear(_WeightBias):
    """Fully connected layer ``y = x W^T + b``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output row.
    bias : bool
        Whether to learn an additive bias.
    rng : int, numpy.random.Generator or None
        Seed or generator of the initial weights: ``U(-1/sqrt(in), 1/sqrt(in))`` for weight and
        bias, PyTorch's default.

    Notes
    -----
    Shapes: ``x`` (N, in_features), ``weight`` (out_features, in_features), ``bias``
    (out_features,), ``y`` (N, out_features). Backward:
    ``dW = dy^T x``, ``db = sum_n dy``, ``dx = dy W``.
    """

    def __init__(
        self, in_features: int, out_features: int, *, bias: bool = True, rng: RngLike = None
    ) -> None:
        super().__init__()
        self.in_features = _check_pos_int(in_features, "in_features")
        self.out_features = _check_pos_int(out_features, "out_features")
        gen = np.random.default_rng(rng)
        bound = 1.0 / np.sqrt(self.in_features)
        self.params["weight"] = _uniform(gen, bound, (self.out_features, self.in_features))
        if bias:
            self.params["bias"] = _uniform(gen, bound, (self.out_features,))

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        _check_input(x, 2, "Linear", f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects {self.in_features} input features, got shape {x.shape}"
            )
        w = self.weight
        self._cache = (x, w)
        y = x @ w.T
        b = self.bias
        if b is not None:
            y += b
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, w = self._cache
        self._set_grad("weight", grad_out.T @ x)
        if self.bias is not None:
            self._set_grad("bias", grad_out.sum(axis=0))
        return grad_out @ w

    prefix = "fc"

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}  # fmt: skip

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n_in = _check_pos_int(config.get("in_features"), "in_features")
        n_out = _check_pos_int(config.get("out_features"), "out_features")
        out = {"weight": (n_out, n_in)}
        if config.get("bias", True):
            out["bias"] = (n_out,)
        if set(config) - {"in_features", "out_features", "bias"}:
            extra = set(config) - {"in_features", "out_features", "bias"}
            raise KeyError(f"unexpected {sorted(extra)}")
        return out

    def cost_spec(self) -> Any:
        from ..cost.specs import Dense

        return Dense(self.in_features, self.out_features, bias=self.bias is not None)

    def slice_units(self, keep: np.ndarray) -> Linear:
        new = self._sliced(keep)
        new.out_features = int(len(keep))
        return new

    def slice_inputs(
        self, keep: np.ndarray, *, block: int = 1, scale: np.ndarray | None = None
    ) -> Linear:
        """A copy keeping the input units ``keep``; each owns ``block`` consecutive columns (the
        ``H*W`` columns of a channel after a Flatten). ``scale`` multiplies the kept units'
        columns of the weight's values (ThiNet's least-squares rescaling), not its mask."""
        def cols(w: np.ndarray) -> np.ndarray:
            return w.reshape(w.shape[0], -1, block)[:, keep, :].reshape(w.shape[0], -1)

        new = self._sliced(None, cols)
        if scale is not None:
            key = new.trained_tensor("weight")
            w3 = new.params[key].reshape(new.out_features, -1, block)
            new.params[key] = (w3 * np.asarray(scale)[None, :, None]).reshape(
                new.out_features, -1).astype(w3.dtype)  # fmt: skip
        new.in_features = int(len(keep) * block)
        return new

    def second_order_backward(
        self, h: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        w = self.weight.astype(np.float64)
        return h @ (w**2), h.T @ (x.astype(np.float64) ** 2)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """View of the (already padded) input as windows, shape (N, C, Ho, Wo, kH, kW)."""
    win = sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, :: stride[0], :: stride[1]]


def _out_size(size: int, k: int, s: int, p: int, layer: str) -> int:
    out = (size + 2 * p - k) // s + 1
    if out < 1:
        raise ValueError(
            f"{layer}: input size {size} with padding {p} is smaller than the kernel {k}"
        )
    return out


def _scatter_windows(
    grad_win: np.ndarray, padded_shape: tuple[int, ...], stride: tuple[int, int]
) -> np.ndarray:
    """Adjoint of :func:`_windows`: add window gradients (N, C, kH, kW, Ho, Wo) back to input.

    Loops over the kH x kW kernel offsets only (never over pixels or samples).
    """
    _, _, kh, kw, ho, wo = grad_win.shape
    sh, sw = stride
    dx = np.zeros(padded_shape, dtype=grad_win.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += grad_win[:, :, i, j]
    return dx


def _unpad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    ph, pw = padding
    return x[:, :, ph : x.shape[2] - ph, pw : x.shape[3] - pw]


def _im2col(
    xp: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    out: tuple[int, int],
    *,
    batch_last: bool = False,
    ones_row: bool = False,
    buffer: np.ndarray | None = None,
) -> np.ndarray:
    """Gather the windows of a padded input into columns, shape (C*kH*kW, N*Ho*Wo).

    Rows are ordered (channel, kernel row, kernel column) as a weight reshaped to
    (C_out, C_in*kH*kW) is. By default ``xp`` is (N, C, Hp, Wp) and the columns are ordered
    (sample, output row, output column). With ``batch_last``, ``xp`` is (C, Hp, Wp, N) and the
    columns are ordered (output row, output column, sample): the copy then moves contiguous
    runs of N values instead of Wo (the adjoint :func:`_col2im` likewise). Built from a strided
    window view in one copy, channel-first so that the product with the weight and both
    backward products are plain BLAS calls on contiguous operands. ``ones_row`` appends a row
    of ones (a weight with the bias as its last column then adds the bias in the product, and
    the weight gradient's last column is the bias gradient). A ``buffer`` of the right shape
    and dtype that owns its (C-contiguous, writeable) memory receives the columns (no new
    allocation: fewer page faults); any other buffer is ignored.
    """
    (kh, kw), (ho, wo) = kernel, out
    if batch_last:
        c, n = xp.shape[0], xp.shape[3]
        win = sliding_window_view(xp, kernel, axis=(1, 2))  # (C, Ho', Wo', N, kH, kW), a view
        win = win[:, :: stride[0], :: stride[1]][:, :ho, :wo].transpose(0, 4, 5, 1, 2, 3)
    else:
        n, c = xp.shape[:2]
        win = _windows(xp, kernel, stride)[:, :, :ho, :wo]  # (N, C, Ho, Wo, kH, kW), a view
        win = win.transpose(1, 4, 5, 0, 2, 3)
    k = c * kh * kw
    shape = (k + ones_row, n * ho * wo)
    if (buffer is None or buffer.shape != shape or buffer.dtype != xp.dtype
            or buffer.base is not None or not buffer.flags.writeable
            or not buffer.flags.c_contiguous):  # only an array of our own, never a view
        if not ones_row:
            return win.reshape(shape)  # a view when no copy is needed (1x1 kernels)
        buffer = np.empty(shape, dtype=xp.dtype)
    np.copyto(buffer[:k].reshape(win.shape), win)
    if ones_row:
        buffer[k] = 1
    return buffer


def _col2im(
    cols: np.ndarray,
    padded_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    out: tuple[int, int],
    *,
    batch_last: bool = False,
) -> np.ndarray:
    """Adjoint of :func:`_im2col`: add column gradients (C*kH*kW, N*Ho*Wo) onto the input.

    ``padded_shape`` is (N, C, Hp, Wp), and so is the result (a view of a channel-first
    accumulator); with ``batch_last`` the columns are in that order and ``padded_shape`` and
    the result are (C, Hp, Wp, N). Each of the kH*kW strided additions moves contiguous runs of
    Wo values, or of N with ``batch_last`` (4x faster for LeNet-5's conv2, whose rows are 8
    long).
    """
    (kh, kw), (ho, wo) = kernel, out
    sh, sw = stride
    if batch_last:
        c, _, _, n = padded_shape
        blocks = cols.reshape(c, kh, kw, ho, wo, n)
        dx = np.zeros(padded_shape, dtype=cols.dtype)
    else:
        n, c = padded_shape[:2]
        blocks = cols.reshape(c, kh, kw, n, ho, wo)
        dx = np.zeros((c, n, *padded_shape[2:]), dtype=cols.dtype)  # channel-first
    spatial = (1, 2) if batch_last else (2, 3)
    for i in range(kh):  # loops over kernel offsets only, never over pixels or samples
        for j in range(kw):
            index = [slice(None)] * 4
            index[spatial[0]] = slice(i, i + sh * ho, sh)
            index[spatial[1]] = slice(j, j + sw * wo, sw)
            dx[tuple(index)] += blocks[:, i, j]
    return dx if batch_last else dx.transpose(1, 0, 2, 3)


class Conv2d(_WeightBias):
    """2-D convolution (cross-correlation, as in PyTorch) by im2col and one matrix product.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel_size : int or (int, int)
        ``k`` or ``(kH, kW)``.
    stride, padding : int or (int, int)
        Step of the window, and zeros added on each side.
    groups : int
        Channel groups; ``groups == in_channels`` gives a depthwise convolution.
    bias : bool
        Whether to learn one bias per output channel.
    rng : int, numpy.random.Generator or None
        Seed or generator of the initial weights, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Notes
    -----
    Shapes: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in/groups, kH, kW), ``y``
    (N, C_out, H_out, W_out) with ``H_out = (H + 2p - kH) // s + 1``. The input windows are
    gathered once into a matrix ``X_col`` of shape (C_in*kH*kW, N*H_out*W_out) (from a strided
    view made by :func:`numpy.lib.stride_tricks.sliding_window_view`), and
    ``Y = W_col X_col`` is one BLAS product with ``W_col`` the weight reshaped to
    (C_out, C_in*kH*kW). Backward: ``dW_col = dY X_col^T``, ``dX_col = W_col^T dY``, and
    ``dX_col`` is added back onto the input windows, one kernel offset at a time.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        rng: RngLike = None,
    ) -> None:
        super().__init__()
        self.in_channels = _check_pos_int(in_channels, "in_channels")
        self.out_channels = _check_pos_int(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.groups = _check_pos_int(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )
        gen = np.random.default_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        bound = 1.0 / np.sqrt(fan_in)
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self.params["weight"] = _uniform(gen, bound, shape)
        if bias:
            self.params["bias"] = _uniform(gen, bound, (self.out_channels,))

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return _out_size(h, kh, sh, ph, "Conv2d"), _out_size(w, kw, sw, pw, "Conv2d")

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        _check_input(x, 4, "Conv2d", f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects {self.in_channels} input channels, got {x.shape}")
        n, c, h, w_in = x.shape
        ho, wo = self.output_shape(h, w_in)
        ph, pw = self.padding
        # Columns with the batch last when output rows are shorter than a cache line (or
        # strided): im2col and col2im then move runs of N values, not of Wo (4x faster for
        # LeNet-5's conv2). Otherwise the batch first, whose output the next layers read faster.
        batch_last = self.stride[1] > 1 or wo * x.dtype.itemsize < 64
        if batch_last:  # the input as (C, Hp, Wp, N): free if it came from such a layer
            xt = x.transpose(1, 2, 3, 0)
            if ph or pw:
                xp = np.zeros((c, h + 2 * ph, w_in + 2 * pw, n), dtype=x.dtype)
                xp[:, ph : ph + h, pw : pw + w_in] = xt
            else:
                xp = np.ascontiguousarray(xt)
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        w, b = self.weight, self.bias
        c_out, g = self.out_channels, self.groups
        fold = g == 1 and b is not None  # the bias as one more column of the product
        # (C_in*kH*kW [+ 1], N*Ho*Wo), into the previous call's columns if they fit
        previous = getattr(self, "_cache", None)
        cols = _im2col(xp, self.kernel_size, self.stride, (ho, wo), batch_last=batch_last,
                       ones_row=fold, buffer=None if previous is None else previous[0])
        if g == 1:
            w_col = w.reshape(c_out, -1)
            if fold:
                w_col = np.concatenate([w_col, b[:, None]], axis=1, dtype=w_col.dtype)
            y = w_col @ cols  # (C_out, N*Ho*Wo): one BLAS product, bias included
        else:
            y = np.matmul(w.reshape(g, c_out // g, -1), cols.reshape(g, -1, cols.shape[1]))
            y = y.reshape(c_out, -1)
            if b is not None:
                y += b[:, None]
        self._cache = (cols, w, xp.shape, (n, ho, wo), batch_last)
        if batch_last:
            return y.reshape(c_out, ho, wo, n).transpose(3, 0, 1, 2)  # a view
        return y.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3)  # a view

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        cols, w, padded_shape, (n, ho, wo), batch_last = self._cache
        c_out, g = self.out_channels, self.groups
        # the gradient in the columns' order: free if it came from us
        order = (1, 2, 3, 0) if batch_last else (1, 0, 2, 3)
        dy = grad_out.transpose(order).reshape(c_out, n * ho * wo)
        if g == 1:
            w_col = w.reshape(c_out, -1)
            k = w_col.shape[1]
            dw = dy @ cols.T  # (C_out, K), or (C_out, K + 1) whose last column is the bias's
            self._set_grad("weight", np.ascontiguousarray(dw[:, :k]).reshape(w.shape))
            if cols.shape[0] > k:
                self._set_grad("bias", np.ascontiguousarray(dw[:, k]))
            # (C_in*kH*kW, N*Ho*Wo), into the previous call's array if it fits (a temporary)
            buf = getattr(self, "_dcols_buffer", None)
            if buf is None or buf.shape != (k, cols.shape[1]) or buf.dtype != np.result_type(w, dy):
                buf = None
            dcols = np.matmul(w_col.T, dy, out=buf)
            self._dcols_buffer = dcols
        else:
            cols_g = cols.reshape(g, -1, cols.shape[1])  # (G, K/G, M)
            dy_g = dy.reshape(g, c_out // g, -1)  # (G, C_out/G, M)
            w_g = w.reshape(g, c_out // g, -1)
            self._set_grad("weight", np.matmul(dy_g, cols_g.transpose(0, 2, 1)).reshape(w.shape))
            dcols = np.matmul(w_g.transpose(0, 2, 1), dy_g).reshape(cols.shape)
            if self.bias is not None:
                self._set_grad("bias", dy.sum(axis=1))
        dxp = _col2im(dcols, padded_shape, self.kernel_size, self.stride, (ho, wo),
                      batch_last=batch_last)
        if batch_last:
            dxp = dxp.transpose(3, 0, 1, 2)
        return _unpad(dxp, self.padding)  # (N, C_in, H, W), a view

    prefix = "conv"

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "groups": self.groups,
                "bias": self.bias is not None}  # fmt: skip

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        allowed = {"in_channels", "out_channels", "kernel_size", "stride", "padding", "groups",
                   "bias"}  # fmt: skip
        if set(config) - allowed:
            raise KeyError(f"unexpected {sorted(set(config) - allowed)}")
        c_in = _check_pos_int(config.get("in_channels"), "in_channels")
        c_out = _check_pos_int(config.get("out_channels"), "out_channels")
        kh, kw = _pair(config.get("kernel_size"), "kernel_size", 1)
        _pair(config.get("stride", 1), "stride", 1)
        _pair(config.get("padding", 0), "padding", 0)
        g = _check_pos_int(config.get("groups", 1), "groups")
        if c_in % g or c_out % g:
            raise ValueError(f"groups={g} must divide in_channels={c_in} and out_channels={c_out}")
        out = {"weight": (c_out, c_in // g, kh, kw)}
        if config.get("bias", True):
            out["bias"] = (c_out,)
        return out

    def cost_spec(self) -> Any:
        from ..cost.specs import Conv

        return Conv(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                    padding=self.padding, groups=self.groups, bias=self.bias is not None)

    def _ungrouped(self, what: str) -> None:
        if self.groups != 1:
            raise ValueError(f"{what}: unit surgery supports groups=1 only, got {self.groups}")

    def slice_units(self, keep: np.ndarray) -> Conv2d:
        self._ungrouped("slice_units")
        new = self._sliced(keep)
        new.out_channels = int(len(keep))
        return new

    def slice_inputs(
        self, keep: np.ndarray, *, block: int = 1, scale: np.ndarray | None = None
    ) -> Conv2d:
        """A copy keeping the input channels ``keep``; ``scale`` multiplies the kept channels'
        weight values (ThiNet). ``block`` must be 1 (a convolution never follows a Flatten)."""
        self._ungrouped("slice_inputs")
        if block != 1:
            raise ValueError("a convolution's input channels own one column each (block=1)")
        new = self._sliced(None, lambda w: w[:, keep])
        if scale is not None:
            key = new.trained_tensor("weight")
            new.params[key] = (new.params[key] * np.asarray(scale)[None, :, None, None]).astype(
                new.params[key].dtype)  # fmt: skip
        new.in_channels = int(len(keep))
        return new

    def folds_exactly(self) -> bool:
        return self.padding == (0, 0)

    def second_order_backward(
        self, h: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # the second-order pass of a convolution is the first-order backward pass of the same
        # convolution with squared weights, applied to the squared input
        sq = Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                    padding=self.padding, groups=self.groups, bias=False)  # fmt: skip
        sq.params["weight"] = self.weight.astype(np.float64) ** 2
        sq.forward(x.astype(np.float64) ** 2)
        dx = sq.backward(h)
        return dx, sq.grads["weight"]

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        return text + (f", groups={self.groups}" if self.groups != 1 else "")


class _Pool2d(Layer):
    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(
                f"padding must be at most half the kernel size along each axis (as PyTorch "
                f"requires), got padding={self.padding} for kernel_size={self.kernel_size}"
            )

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        name = type(self).__name__
        return _out_size(h, kh, sh, ph, name), _out_size(w, kw, sw, pw, name)

    def _windows(self, x: np.ndarray, fill: float) -> tuple[np.ndarray, tuple[int, ...]]:
        _check_input(x, 4, type(self).__name__, "(N, C, H, W)")
        ph, pw = self.padding
        xp = x
        if ph or pw:
            xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
        ho, wo = self.output_shape(x.shape[2], x.shape[3])
        win = _windows(xp, self.kernel_size, self.stride)[:, :, :ho, :wo]
        return win, xp.shape

    prefix = "pool"
    carries_units = True

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}  # fmt: skip

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """Max pooling over ``kH x kW`` windows (stride defaults to the kernel size).

    Shapes: ``x`` (N, C, H, W) to (N, C, H_out, W_out). The gradient flows to the first maximal
    entry of each window. Non-overlapping windows without padding (the usual ``MaxPool2d(2)``)
    take a reshape instead of a window copy.
    """

    def _tiles(self, x: np.ndarray) -> np.ndarray | None:
        """(N, C, Ho, Wo, kH*kW) tiles by reshaping, for non-overlapping unpadded windows."""
        if self.stride != self.kernel_size or self.padding != (0, 0):
            return None
        (kh, kw), (ho, wo) = self.kernel_size, self.output_shape(x.shape[2], x.shape[3])
        n, c = x.shape[:2]
        t = x[:, :, : ho * kh, : wo * kw].reshape(n, c, ho, kh, wo, kw)
        return t.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, kh * kw)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        _check_input(x, 4, "MaxPool2d", "(N, C, H, W)")
        flat = self._tiles(x)
        if flat is None:
            win, padded_shape = self._windows(x, -np.inf)
            n, c, ho, wo, kh, kw = win.shape
            flat = win.reshape(n, c, ho, wo, kh * kw)
        else:
            padded_shape = x.shape
        arg = flat.argmax(axis=-1)
        self._cache = (arg, padded_shape, flat.shape)
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        arg, padded_shape, flat_shape = self._cache
        (kh, kw), (n, c, ho, wo, _) = self.kernel_size, flat_shape
        gflat = np.zeros(flat_shape, dtype=grad_out.dtype)
        np.put_along_axis(gflat, arg[..., None], grad_out[..., None], axis=-1)
        if self.stride == self.kernel_size and self.padding == (0, 0):
            dx = np.zeros(padded_shape, dtype=grad_out.dtype)
            tiles = gflat.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 2, 4, 3, 5)
            dx[:, :, : ho * kh, : wo * kw] = tiles.reshape(n, c, ho * kh, wo * kw)
            return dx
        gwin = gflat.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 4, 5, 2, 3)
        return _unpad(_scatter_windows(gwin, padded_shape, self.stride), self.padding)

    def cost_spec(self) -> Any:
        from ..cost.specs import MaxPool

        return MaxPool(self.kernel_size, stride=self.stride, padding=self.padding)

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(h), None  # 0/1 routing: squaring the coefficients changes nothing


class AvgPool2d(_Pool2d):
    """Average pooling over ``kH x kW`` windows (padding zeros count, as in PyTorch)."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        win, padded_shape = self._windows(x, 0.0)
        self._cache = (padded_shape, win.shape[2:4])
        return win.mean(axis=(-2, -1))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        padded_shape, _ = self._cache
        kh, kw = self.kernel_size
        share = grad_out / (kh * kw)
        gwin = np.broadcast_to(
            share[:, :, None, None], (*share.shape[:2], kh, kw, *share.shape[2:])
        )
        return _unpad(_scatter_windows(gwin, padded_shape, self.stride), self.padding)

    def cost_spec(self) -> Any:
        from ..cost.specs import AvgPool

        return AvgPool(self.kernel_size, stride=self.stride, padding=self.padding)

    def folds_exactly(self) -> bool:
        return self.padding == (0, 0)  # padding zeros count: a constant map changes at borders

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        kh, kw = self.kernel_size
        return self.backward(h) / (kh * kw), None  # coefficients 1/(kh kw), squared


class ReLU(Layer):
    """``y = max(x, 0)``; the gradient passes where ``x > 0``.

    NaN propagates as in PyTorch: ``relu(nan)`` is NaN (and passes its gradient, as
    ``torch``'s ``threshold_backward`` does), so a NaN input shows up in the loss instead of
    being silently zeroed.
    """

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._mask = np.logical_not(x <= 0)  # x > 0, or NaN
        return np.where(self._mask, x, 0).astype(x.dtype, copy=False)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._mask

    prefix = "relu"
    carries_units = True

    def cost_spec(self) -> Any:
        from ..cost.specs import Act

        return Act("relu")

    def constant_through(self, v: np.ndarray) -> np.ndarray:
        return np.maximum(v, 0.0)

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(h), None  # 0/1 routing: squaring changes nothing


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y^2``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self._y**2)

    prefix = "tanh"
    carries_units = True

    def cost_spec(self) -> Any:
        from ..cost.specs import Act

        return Act("tanh")

    def constant_through(self, v: np.ndarray) -> np.ndarray:
        return np.tanh(v)

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(self.backward(h)), None  # f'(a)^2 h; the f'' term dropped


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``, computed without overflow; ``dy/dx = y (1 - y)``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        e = np.exp(-np.abs(x))
        self._y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._y * (1 - self._y)

    prefix = "sigmoid"
    carries_units = True

    def cost_spec(self) -> Any:
        from ..cost.specs import Act

        return Act("sigmoid")

    def constant_through(self, v: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * v))  # the logistic function, without overflow

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(self.backward(h)), None  # f'(a)^2 h; the f'' term dropped


class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)`` in C order, as ``torch.flatten(x, 1)``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Flatten expects a numpy.ndarray input, got {type(x).__name__}")
        if x.ndim < 1:
            raise ValueError(f"Flatten expects input of shape (N, ...), got shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self._shape)

    prefix = "flatten"
    carries_units = True
    flattens = True

    def cost_spec(self) -> Any:
        from ..cost.specs import Flat

        return Flat()

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(h), None


class Dropout(Layer):
    """Inverted dropout: in training, zero entries with probability ``p``, scale by ``1/(1-p)``.

    Identity at evaluation. ``rng`` (seed or generator) makes the masks reproducible.
    """

    def __init__(self, p: float = 0.5, rng: RngLike = None) -> None:
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0, open_high=True)
        self.rng = as_generator(rng)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not train or self.p == 0.0:
            self._scale = None
            return x
        self._scale = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self._scale

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out if self._scale is None else grad_out * self._scale

    prefix = "drop"
    carries_units = True

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def cost_spec(self) -> Any:
        from ..cost.specs import Drop

        return Drop(self.p)

    def second_order_backward(self, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, None]:
        return self.backward(h), None

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _BatchNorm(Layer):
    _axes: tuple[int, ...] = (0,)
    _ndim = 2

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = _check_pos_int(num_features, "num_features")
        self.eps = check_float(eps, "eps", 0.0, open_low=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0)
        self.params["weight"] = np.ones(num_features, dtype=np.float32)
        self.params["bias"] = np.zeros(num_features, dtype=np.float32)
        self.buffers["running_mean"] = np.zeros(num_features, dtype=np.float32)
        self.buffers["running_var"] = np.ones(num_features, dtype=np.float32)

    def _shape(self) -> tuple[int, ...]:
        return (1, self.num_features) + (1,) * (self._ndim - 2)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        name = type(self).__name__
        _check_input(x, self._ndim, name, "(N, C)" if self._ndim == 2 else "(N, C, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name} expects {self.num_features} channels, got {x.shape}")
        shape = self._shape()
        if train:
            m = x.size // self.num_features
            if m < 2:
                raise ValueError(f"{name} needs more than one value per channel in training")
            mean = x.mean(axis=self._axes)
            var = x.var(axis=self._axes)
            mom = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            self.buffers["running_mean"] = ((1 - mom) * rm + mom * mean).astype(rm.dtype)
            self.buffers["running_var"] = ((1 - mom) * rv + mom * var * m / (m - 1)).astype(
                rv.dtype
            )
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        gamma, beta = self.get_param("weight"), self.get_param("bias")
        self._cache = (xhat, inv_std, train, gamma)
        return gamma.reshape(shape) * xhat + beta.reshape(shape)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        xhat, inv_std, train, gamma = self._cache
        shape = self._shape()
        self._set_grad("weight", (grad_out * xhat).sum(axis=self._axes))
        self._set_grad("bias", grad_out.sum(axis=self._axes))
        dxhat = grad_out * gamma.reshape(shape)
        if not train:
            return dxhat * inv_std.reshape(shape)
        m = grad_out.size // self.num_features
        sum_d = dxhat.sum(axis=self._axes).reshape(shape)
        sum_dx = (dxhat * xhat).sum(axis=self._axes).reshape(shape)
        return (inv_std.reshape(shape) / m) * (m * dxhat - sum_d - xhat * sum_dx)

    prefix = "bn"
    carries_units = True

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        if set(config) - {"num_features", "eps", "momentum"}:
            extra = set(config) - {"num_features", "eps", "momentum"}
            raise KeyError(f"unexpected {sorted(extra)}")
        n = _check_pos_int(config.get("num_features"), "num_features")
        return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (n,))

    def check_finite(self, source: str = "state") -> None:
        super().check_finite(source)
        if (self.buffers["running_var"] < 0).any():
            raise ValueError(f"{source}: running_var holds negative values")

    def cost_spec(self) -> Any:
        from ..cost.specs import BatchNorm

        return BatchNorm(self.num_features, ndim=self._ndim - 1)

    def slice_units(self, keep: np.ndarray) -> _BatchNorm:
        new = copy.deepcopy(self)
        for name in list(new.parametrizations):
            new.remove_parametrization(name)
        for store in (new.params, new.buffers):
            for key in ("weight", "bias", "running_mean", "running_var"):
                if key in store:
                    store[key] = store[key][keep].copy()
        new.num_features = int(len(keep))
        new.grads = {}
        return new

    def constant_through(self, v: np.ndarray) -> np.ndarray:
        mean = self.buffers["running_mean"].astype(np.float64)
        var = self.buffers["running_var"].astype(np.float64)
        gamma = np.asarray(self.get_param("weight"), dtype=np.float64)
        beta = np.asarray(self.get_param("bias"), dtype=np.float64)
        return (v - mean) / np.sqrt(var + self.eps) * gamma + beta

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` inputs per feature (Ioffe & Szegedy, 2015).

    Training normalizes with the batch mean and (biased) variance and updates the running
    statistics with ``momentum`` (the unbiased variance, as PyTorch does); evaluation uses the
    running statistics. ``weight`` is gamma and ``bias`` is beta.
    """

    _axes = (0,)
    _ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` inputs per channel; see :class:`BatchNorm1d`."""

    _axes = (0, 2, 3)
    _ndim = 4
