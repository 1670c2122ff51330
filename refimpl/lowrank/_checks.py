"""Argument checks shared by the low-rank factorizations (private)."""

from __future__ import annotations

import numpy as np

from ..nn import Conv2d, Linear
from ..validation import RngLike  # noqa: F401 - re-exported to the factorizations
from ..validation import check_int as _check_int


def check_int(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (:func:`refimpl.validation.check_int`)."""
    return _check_int(value, name, minimum, maximum)


def check_fraction(value: object, name: str, *, open_low: bool = True) -> float:
    """``value`` as a float in ``(0, 1]`` (or ``[0, 1]`` if ``open_low`` is False)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1.0) or not np.isfinite(value):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def check_linear(layer: object, name: str = "linear") -> Linear:
    if not isinstance(layer, Linear):
        raise TypeError(f"{name} must be a refimpl.nn.Linear, got {type(layer).__name__}")
    return layer


def check_conv(layer: object, name: str = "conv") -> Conv2d:
    if not isinstance(layer, Conv2d):
        raise TypeError(f"{name} must be a refimpl.nn.Conv2d, got {type(layer).__name__}")
    if layer.groups != 1:
        raise ValueError(f"{name} must have groups=1 (a full convolution), got {layer.groups}")
    return layer


def check_tensor(tensor: object, name: str = "tensor", min_ndim: int = 2) -> np.ndarray:
    """A finite float64 copy of ``tensor`` with at least ``min_ndim`` axes."""
    arr = np.asarray(tensor)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return arr
