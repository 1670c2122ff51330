"""One validation module: the checks every public function applies to its arguments.

Bad input gets a ``TypeError`` (wrong kind of value) or a ``ValueError`` (right kind, wrong
range) whose message names the argument and the allowed range, never a silent wrong answer or a
NumPy error from deep inside. The conventions of the package (``sparsity`` is the fraction
removed, ``rng`` a seed or a generator, ...) are written down in ``refimpl/README.md``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "RngLike",
    "as_generator",
    "check_array",
    "check_float",
    "check_int",
    "check_shape",
    "check_sparsity",
]

#: A seed (``int``), a ``numpy.random.Generator``, or ``None`` (fresh entropy): what every
#: routine that draws random numbers accepts as ``rng``.
RngLike = int | np.random.Generator | None


def _range_text(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    """``"lie in [0, 1)"``, ``"be >= 1"``, ...: the allowed range as an error message says it."""
    if low is not None and high is not None:
        return f"lie in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f"be {'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f"be {'<' if open_high else '<='} {high:g}"
    return "be a number"


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` after checking it is an integer (not a bool) in ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must {_range_text(low, high, False, False)}, got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a finite ``float`` after checking it is a real number in the range.

    ``open_low``/``open_high`` exclude the bounds (``lr`` must be > 0: ``low=0,
    open_low=True``). Strings are refused with a ``TypeError`` naming the argument.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value < low or (open_low and value == low)))
    bad = bad or (high is not None and (value > high or (open_high and value == high)))
    if bad:
        raise ValueError(
            f"{name} must {_range_text(low, high, open_low, open_high)} (a finite number), "
            f"got {value!r}"
        )
    return value


def check_shape(value: Any, name: str = "shape", *, low: int = 1) -> tuple[int, ...]:
    """``value`` as a tuple of ints after checking it is a sequence of integers (not bools,
    not floats: ``(2.5, 3)`` is refused, never truncated) each ``>= low``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple of ints, got {type(value).__name__} {value!r}")
    items = tuple(value)
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be a tuple of ints, got {value!r}")
    if any(v < low for v in items):
        raise ValueError(f"{name} must have sizes >= {low}, got {value!r}")
    return tuple(int(v) for v in items)


def check_sparsity(sparsity: Any, name: str = "sparsity") -> float:
    """``sparsity``, the fraction of entries *removed* (torch's ``amount``), in ``[0, 1)``."""
    return check_float(sparsity, name, 0.0, 1.0, open_high=True)


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed (non-negative int), a generator or ``None``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, numbers.Integral):
        raise TypeError(
            f"{name} must be an int seed, a numpy.random.Generator or None, got "
            f"{type(rng).__name__} {rng!r}"
        )
    if rng < 0:
        raise ValueError(f"{name} must be a non-negative seed, got {rng}")
    return np.random.default_rng(int(rng))


def check_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    kind: str = "float",
    finite: bool = True,
    nonempty: bool = True,
) -> np.ndarray:
    """``x`` as an array after checking its kind (``"float"``, ``"real"``, ``"int"``), number
    of dimensions, size and, for real arrays, that it holds no NaN or infinity."""
    arr = np.asarray(x)
    dt = arr.dtype
    ok = {
        "float": np.issubdtype(dt, np.floating),
        "real": (np.issubdtype(dt, np.number) and not np.issubdtype(dt, np.complexfloating)
                 and dt != np.bool_),  # fmt: skip
        "int": np.issubdtype(dt, np.integer),
    }.get(kind)
    if ok is None:
        raise ValueError(f"kind must be 'float', 'real' or 'int', got {kind!r}")
    if not ok:
        raise TypeError(f"{name} must be a {kind} array, got dtype {dt}")
    if ndim is not None and arr.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if finite and kind != "int" and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr
