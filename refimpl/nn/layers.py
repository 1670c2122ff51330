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

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .parametrize import Arrays, Parametrization

RngLike = int | np.random.Generator | None


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


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


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

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        text = f"{type(self).__name__}({self.extra_repr()})"
        if self.parametrizations:
            chains = (f"{k}: " + " -> ".join(map(repr, v)) for k, v in self.parametrizations.items())
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
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
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
    xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
) -> np.ndarray:
    """Gather the windows of a padded input into columns, shape (C*kH*kW, N*Ho*Wo).

    Rows are ordered (channel, kernel row, kernel column) as a weight reshaped to
    (C_out, C_in*kH*kW) is; columns are ordered (sample, output row, output column). Built from
    a strided window view in one copy, channel-first so that the product with the weight and
    both backward products are plain BLAS calls on contiguous operands.
    """
    n, c = xp.shape[:2]
    (kh, kw), (ho, wo) = kernel, out
    win = _windows(xp, kernel, stride)[:, :, :ho, :wo]  # (N, C, Ho, Wo, kH, kW), a view
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * ho * wo)


def _col2im(
    cols: np.ndarray,
    padded_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    out: tuple[int, int],
) -> np.ndarray:
    """Adjoint of :func:`_im2col`: add column gradients back onto the padded input."""
    n, c = padded_shape[:2]
    (kh, kw), (ho, wo) = kernel, out
    blocks = cols.reshape(c, kh, kw, n, ho, wo)
    sh, sw = stride
    dxt = np.zeros((c, n, *padded_shape[2:]), dtype=cols.dtype)  # channel-first accumulator
    for i in range(kh):  # loops over kernel offsets only, never over pixels or samples
        for j in range(kw):
            dxt[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += blocks[:, i, j]
    return dxt.transpose(1, 0, 2, 3)


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
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.groups = _positive_int(groups, "groups")
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
        n = x.shape[0]
        ho, wo = self.output_shape(x.shape[2], x.shape[3])
        ph, pw = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        cols = _im2col(xp, self.kernel_size, self.stride, (ho, wo))  # (C_in*kH*kW, N*Ho*Wo)
        w = self.weight
        c_out, g = self.out_channels, self.groups
        if g == 1:
            y = w.reshape(c_out, -1) @ cols  # (C_out, N*Ho*Wo): one BLAS product
        else:
            y = np.matmul(w.reshape(g, c_out // g, -1), cols.reshape(g, -1, cols.shape[1]))
            y = y.reshape(c_out, -1)
        b = self.bias
        if b is not None:
            y += b[:, None]
        self._cache = (cols, w, xp.shape, (n, ho, wo))
        return y.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        cols, w, padded_shape, (n, ho, wo) = self._cache
        c_out, g = self.out_channels, self.groups
        dy = grad_out.transpose(1, 0, 2, 3).reshape(c_out, n * ho * wo)  # free if it came from us
        if g == 1:
            w_col = w.reshape(c_out, -1)
            self._set_grad("weight", (dy @ cols.T).reshape(w.shape))
            dcols = w_col.T @ dy  # (C_in*kH*kW, N*Ho*Wo)
        else:
            cols_g = cols.reshape(g, -1, cols.shape[1])  # (G, K/G, M)
            dy_g = dy.reshape(g, c_out // g, -1)  # (G, C_out/G, M)
            w_g = w.reshape(g, c_out // g, -1)
            self._set_grad("weight", np.matmul(dy_g, cols_g.transpose(0, 2, 1)).reshape(w.shape))
            dcols = np.matmul(w_g.transpose(0, 2, 1), dy_g).reshape(cols.shape)
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=1))
        dxp = _col2im(dcols, padded_shape, self.kernel_size, self.stride, (ho, wo))
        return _unpad(dxp, self.padding)

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
        if 2 * max(self.padding) > max(self.kernel_size):
            raise ValueError("padding must be at most half the kernel size")

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


class ReLU(Layer):
    """``y = max(x, 0)``; the gradient passes where ``x > 0``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._mask = x > 0
        return np.where(self._mask, x, 0).astype(x.dtype, copy=False)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._mask


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y^2``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self._y**2)


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``, computed without overflow; ``dy/dx = y (1 - y)``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        e = np.exp(-np.abs(x))
        self._y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._y * (1 - self._y)


class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)`` in C order, as ``torch.flatten(x, 1)``."""

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self._shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero entries with probability ``p``, scale by ``1/(1-p)``.

    Identity at evaluation. ``rng`` (seed or generator) makes the masks reproducible.
    """

    def __init__(self, p: float = 0.5, rng: RngLike = None) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must lie in [0, 1), got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not train or self.p == 0.0:
            self._scale = None
            return x
        self._scale = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self._scale

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out if self._scale is None else grad_out * self._scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _BatchNorm(Layer):
    _axes: tuple[int, ...] = (0,)
    _ndim = 2

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.eps, self.momentum = float(eps), float(momentum)
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
