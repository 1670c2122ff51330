"""Finite-difference gradient checks in float64 (central differences).

The error of an analytic gradient ``a`` against the numerical one ``n`` is the norm-wise
relative error ``||a - n|| / (||a|| + ||n||)``. (CS231n's entrywise version blows up on entries
that are nearly zero, where both gradients agree to 1e-9 in absolute terms.) With ``eps = 1e-6``
in float64 a correct backward pass gives 1e-8 or less at smooth points; a wrong one gives 1e-2 or
more, so the default tolerance 1e-6 separates them with room on both sides. Used by the test
suite on every layer and by chapter 2 of the book.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .layers import Layer


@dataclass
class GradcheckResult:
    """Largest relative error per checked array (``"input"``, ``"weight"``, ...)."""

    errors: dict[str, float] = field(default_factory=dict)
    tol: float = 1e-6

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tol

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.1e}" for k, v in self.errors.items())
        return f"gradcheck {'passed' if self.passed else 'FAILED'} (tol {self.tol:.0e}): {parts}"


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    """Norm-wise relative error ``||a - n|| / max(||a|| + ||n||, 1e-300)``."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: {a.shape} and {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-300))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of scalar ``f()`` with respect to ``x`` (perturbed in place)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    # index x itself: x.reshape(-1) would be a copy for a non-contiguous array (a factor
    # transposed into a weight), and perturbing the copy would leave f() unchanged
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def gradcheck(
    layer_or_fn: Layer | Callable[..., float],
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    analytic: Sequence[np.ndarray] | None = None,
    train: bool = False,
    eps: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
    check_params: bool = True,
) -> GradcheckResult:
    """Compare analytic gradients with central differences in float64.

    Parameters
    ----------
    layer_or_fn : Layer or callable
        A layer: the check uses the scalar ``L = sum(layer(x) * R)`` with a fixed random ``R``
        and compares ``layer.backward(R)`` (gradient of the input) and ``layer.grads`` (of each
        stored parameter) with finite differences. The layer is copied and cast to float64;
        the original is not changed. A callable: ``f(*inputs) -> float`` with its gradients
        given in ``analytic`` (one array per input).
    inputs : ndarray or sequence of ndarray
        The input of the layer, or the arguments of ``f``.
    train : bool
        Layer mode for the check (BatchNorm uses batch statistics when True).
    eps, tol : float
        Finite-difference step and the largest relative error that passes.
    seed : int
        Seed of the random projection ``R``.
    check_params : bool
        Also check the gradients of the layer's parameters.
    """
    result = GradcheckResult(tol=tol)
    if isinstance(layer_or_fn, Layer):
        layer = copy.deepcopy(layer_or_fn).astype(np.float64)
        x = np.array(inputs, dtype=np.float64)
        out = layer.forward(x.copy(), train=train)
        proj = np.random.default_rng([seed, 0x5EED]).standard_normal(out.shape)

        def loss() -> float:
            return float(np.sum(layer.forward(x, train=train) * proj))

        snapshot = copy.deepcopy(layer)
        layer.forward(x, train=train)
        grad_in = layer.backward(proj)
        # named walks, so that a container (Sequential, Concat, ...) has its layers' checked
        grads = {k: v.copy() for k, v in layer.named_grads()}
        # Training-mode BatchNorm changes its running statistics on every call; restore them
        # so every evaluation sees the same layer.
        layer = snapshot
        result.errors["input"] = relative_error(grad_in, numerical_gradient(loss, x, eps))
        if check_params:
            for key, value in layer.named_parameters():
                if key not in grads:
                    raise ValueError(f"backward did not fill the gradient of {key!r}")
                result.errors[key] = relative_error(
                    grads[key], numerical_gradient(loss, value, eps)
                )
        return result
    if not callable(layer_or_fn):
        raise TypeError("layer_or_fn must be a Layer or a callable")
    args = [
        np.array(a, dtype=np.float64)
        for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])
    ]
    if analytic is None or len(analytic) != len(args):
        raise ValueError("analytic must hold one gradient per input when checking a function")
    for i, (arg, grad) in enumerate(zip(args, analytic, strict=True)):
        num = numerical_gradient(lambda: float(layer_or_fn(*args)), arg, eps)
        result.errors[f"input{i}"] = relative_error(grad, num)
    return result
