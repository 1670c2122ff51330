"""Fixed-point numbers with round-to-nearest or stochastic rounding (Gupta et al., 2015).

A fixed-point format ``<IL, FL>`` has ``IL`` integer bits (sign included) and ``FL`` fractional
bits: its numbers are the multiples of ``eps = 2^-FL`` in ``[-2^(IL-1), 2^(IL-1) - eps]``
(``IL + FL`` bits in all; ``<4, 12>`` is a 16-bit format). Gupta et al. [1]_ train networks whose
weights are kept in such a format and find that round-to-nearest stalls training once updates are
smaller than ``eps / 2`` (every update rounds back to the old value), whereas stochastic rounding,
unbiased in expectation, keeps training going. See chapter 5 of the book, "Fixed point and
stochastic rounding".

References
----------
.. [1] Gupta, S., Agrawal, A., Gopalakrishnan, K. and Narayanan, P. (2015). Deep Learning with
   Limited Numerical Precision. *ICML*, PMLR 37, 1737-1746.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..nn.parametrize import Arrays, Deployed, Parametrization

__all__ = ["FixedPoint", "fixed_point_range", "round_fixed"]

Rounding = Literal["nearest", "stochastic"]


def _check_format(integer_bits: int, fraction_bits: int) -> tuple[int, int]:
    for name, v, lo in (("integer_bits", integer_bits, 1), ("fraction_bits", fraction_bits, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if not lo <= v <= 32:
            raise ValueError(f"{name} must lie in [{lo}, 32], got {v}")
    return int(integer_bits), int(fraction_bits)


def fixed_point_range(integer_bits: int, fraction_bits: int) -> tuple[float, float, float]:
    """``(lowest, highest, eps)`` of the format ``<integer_bits, fraction_bits>``."""
    il, fl = _check_format(integer_bits, fraction_bits)
    eps = 2.0**-fl
    return -(2.0 ** (il - 1)), 2.0 ** (il - 1) - eps, eps


def round_fixed(
    x: np.ndarray,
    integer_bits: int = 4,
    fraction_bits: int = 12,
    *,
    rounding: Rounding = "nearest",
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Round ``x`` to the fixed-point format ``<integer_bits, fraction_bits>``, saturating.

    Parameters
    ----------
    x : ndarray of float, any shape
    integer_bits, fraction_bits : int
        ``IL`` (>= 1, sign included) and ``FL`` (>= 0); ``<4, 12>`` is Gupta et al.'s 16-bit
        format with ``eps = 2^-12``.
    rounding : {"nearest", "stochastic"}
        Round half away from zero to the nearest multiple of ``eps``, or round down with
        probability ``1 - (x - floor(x)) / eps`` and up otherwise.
    rng : int, numpy.random.Generator or None
        Seed or generator for stochastic rounding.

    Returns
    -------
    ndarray, shape and dtype of ``x``
        Multiples of ``eps`` clipped to ``[-2^(IL-1), 2^(IL-1) - eps]``.

    Notes
    -----
    With :math:`\\lfloor x \\rfloor_\\epsilon` the largest multiple of :math:`\\epsilon` not above
    :math:`x`, stochastic rounding is [1]_ (eq. 2)

    .. math::

        R(x) = \\lfloor x \\rfloor_\\epsilon + \\epsilon \\text{ with probability }
        \\frac{x - \\lfloor x \\rfloor_\\epsilon}{\\epsilon}, \\text{ else }
        \\lfloor x \\rfloor_\\epsilon,

    so :math:`E[R(x)] = x` inside the range: rounding adds noise but no bias. Out-of-range values
    saturate to the nearest end (both modes). Computed in float64.

    References
    ----------
    .. [1] Gupta, S., Agrawal, A., Gopalakrishnan, K. and Narayanan, P. (2015). Deep Learning
       with Limited Numerical Precision. *ICML*.
    """
    lo, hi, eps = fixed_point_range(integer_bits, fraction_bits)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    t = x.astype(np.float64) / eps
    if rounding == "nearest":
        r = np.sign(t) * np.floor(np.abs(t) + 0.5)
    elif rounding == "stochastic":
        gen = np.random.default_rng(rng)
        floor = np.floor(t)
        r = floor + (gen.random(t.shape) < (t - floor))
    else:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return np.clip(r * eps, lo, hi).astype(x.dtype)


class FixedPoint(Parametrization):
    """Weights stored in fixed point ``<IL, FL>``; every update is rounded back into the format.

    Parameters
    ----------
    integer_bits, fraction_bits : int
        The format (see :func:`round_fixed`); default ``<4, 12>``, 16 bits.
    rounding : {"nearest", "stochastic"}
        How each updated weight is rounded after every optimizer step.
    rng : int, numpy.random.Generator or None
        Seed or generator of the stochastic rounding (drawn anew at every step).

    Notes
    -----
    Stored tensors: ``params["fixed"]``, always on the grid (the step replaces the tensor below
    it). The layer computes with it directly (``materialize`` is the identity and so is
    ``pullback``); the rounding happens in
    :meth:`constrain`, which the optimizer calls after every step: :math:`\\theta \\leftarrow
    R(\\theta - \\eta g)`. With round-to-nearest an update smaller than :math:`\\epsilon/2` is
    lost; with stochastic rounding it survives in expectation, which is Gupta et al.'s point.
    Departure from the paper: Gupta et al. also round activations and gradients and accumulate
    in a wider format; we round only the stored weights (the optimizer's state, e.g. momentum,
    stays in float32). See chapter 5 of the book, "Fixed point and stochastic rounding".

    References
    ----------
    .. [1] Gupta, S., Agrawal, A., Gopalakrishnan, K. and Narayanan, P. (2015). Deep Learning
       with Limited Numerical Precision. *ICML*.
    """

    file_name = "fixed_point"

    def __init__(
        self,
        integer_bits: int = 4,
        fraction_bits: int = 12,
        *,
        rounding: Rounding = "nearest",
        rng: int | np.random.Generator | None = None,
    ) -> None:
        self.integer_bits, self.fraction_bits = _check_format(integer_bits, fraction_bits)
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        self.rounding = rounding
        self.rng = np.random.default_rng(rng)

    def _round(self, w: np.ndarray) -> np.ndarray:
        return round_fixed(
            w, self.integer_bits, self.fraction_bits, rounding=self.rounding, rng=self.rng
        )

    uses_input = False  # the weight lives in the format: no real-valued shadow copy

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        return {"fixed": self._round(x)}, {}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return params["fixed"]

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        return None, {"fixed": grad}

    def constrain(self, params: Arrays, buffers: Arrays) -> None:
        params["fixed"][...] = self._round(params["fixed"])

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """``integer_bits + fraction_bits``-bit codes: ``w / eps - (smallest code)``."""
        lo, _, eps = fixed_point_range(self.integer_bits, self.fraction_bits)
        codes = np.round((w[keep].astype(np.float64) - lo) / eps).astype(np.int64)
        return Deployed({"integer_bits": self.integer_bits, "fraction_bits": self.fraction_bits},
                        {}, {"codes": codes})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        lo, _, eps = fixed_point_range(**deployed.config)
        return deployed.ints["codes"].astype(np.float64) * eps + lo

    def __repr__(self) -> str:
        return (
            f"FixedPoint(<{self.integer_bits}, {self.fraction_bits}>, "
            f"rounding={self.rounding!r})"
        )
