"""Ternary weights: Ternary Weight Networks (TWN) and Trained Ternary Quantization (TTQ).

* :class:`TWN` [1]_: a layer computes with ``alpha * t``, ``t in {-1, 0, +1}``: ``t = 0`` where
  ``|w| <= Delta = 0.7 mean|w|``, ``t = sign(w)`` elsewhere, and ``alpha`` the mean of ``|w|``
  over the nonzero ``t`` (the least-squares scale for that pattern). The real weights are
  trained with the straight-through estimator.
* :class:`TTQ` [2]_: threshold ``Delta = t * max|w|`` and two *trained* scales per layer,
  ``W_p`` for the positive and ``W_n`` for the negative entries; the latent weights receive
  the upstream gradient scaled by ``W_p``, 1 or ``W_n``.

See chapter 5 of the book, "Ternary weights".

References
----------
.. [1] Li, F. and Liu, B. (2016). Ternary Weight Networks. arXiv:1605.04711.
.. [2] Zhu, C., Han, S., Mao, H. and Dally, W. J. (2017). Trained Ternary Quantization.
   *ICLR*.
"""

from __future__ import annotations

import numpy as np

from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import check_float

__all__ = [
    "TTQ",
    "TWN",
    "optimal_ternary",
    "ternary_codes",
    "twn_ternarize",
    "twn_threshold",
]


def _float_array(w: np.ndarray, name: str = "weight") -> np.ndarray:
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {w.dtype}")
    if w.size == 0:
        raise ValueError(f"{name} must not be empty")
    return w


def twn_threshold(weight: np.ndarray, factor: float = 0.7) -> float:
    """TWN's threshold ``Delta = factor * mean|w|`` ([1]_, eq. 10; ``factor = 0.7``)."""
    w = _float_array(weight)
    factor = check_float(factor, "factor", 0.0)
    return float(factor * np.abs(w.astype(np.float64)).mean())


def twn_ternarize(weight: np.ndarray, factor: float = 0.7) -> tuple[float, np.ndarray]:
    """TWN's ternary approximation of ``weight``: ``(alpha, t)`` with ``w ~ alpha * t``.

    Parameters
    ----------
    weight : ndarray of float, any shape
    factor : float
        The threshold is ``Delta = factor * mean|w|``; the paper's 0.7.

    Returns
    -------
    alpha : float
        Mean of ``|w_i|`` over ``|w_i| > Delta`` (0 if no entry passes).
    t : ndarray of int8, shape of ``weight``
        ``sign(w)`` where ``|w| > Delta``, 0 elsewhere.

    Notes
    -----
    For a fixed pattern :math:`t`, :math:`\\|w - \\alpha t\\|^2` is minimal at
    :math:`\\alpha^* = \\sum_{i \\in I} |w_i| / |I|`, :math:`I = \\{i : t_i \\ne 0\\}`; the
    best pattern keeps the :math:`|I|` largest :math:`|w_i|` and maximizes
    :math:`(\\sum_{i \\in I}|w_i|)^2 / |I|` (:func:`optimal_ternary` searches it). TWN replaces
    that search by :math:`\\Delta \\approx 0.7\\,\\mathbb{E}|w|`, derived for Gaussian or
    uniform weights ([1]_, sec. 2.2).
    """
    w = _float_array(weight)
    a = np.abs(w.astype(np.float64))
    kept = a > twn_threshold(w, factor)
    alpha = float(a[kept].mean()) if kept.any() else 0.0
    t = (np.sign(w) * kept).astype(np.int8)
    return alpha, t


def optimal_ternary(weight: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The exact least-squares ternary approximation, by searching every threshold.

    Returns ``(alpha, delta, t)`` minimising :math:`\\|w - \\alpha t\\|^2` over
    :math:`\\alpha \\ge 0` and :math:`t \\in \\{-1, 0, 1\\}^n`: sort :math:`|w|` in decreasing
    order; keeping the :math:`k` largest gives the error :math:`\\|w\\|^2 - S_k^2 / k`
    (:math:`S_k` their sum), so the best :math:`k` maximizes :math:`S_k^2 / k`. ``delta`` is
    a threshold that yields the optimal pattern (the midpoint between the last kept and the
    first dropped magnitude). :math:`O(n \\log n)`; the reference :func:`twn_ternarize`
    approximates.
    """
    w = _float_array(weight)
    a = np.abs(w.astype(np.float64)).ravel()
    order = np.sort(a)[::-1]
    s = np.cumsum(order)
    k = np.arange(1, a.size + 1)
    best = int(np.argmax(s**2 / k))  # keep best + 1 entries
    alpha = float(s[best] / (best + 1))
    nxt = order[best + 1] if best + 1 < a.size else 0.0
    delta = float((order[best] + nxt) / 2)
    t = (np.sign(w) * (np.abs(w) > delta)).astype(np.int8)
    return alpha, delta, t


def ternary_codes(w: np.ndarray) -> np.ndarray:
    """Codes ``0, 1, 2`` for the negative, zero and positive entries of ``w`` (int64, 1-D)."""
    return (np.sign(np.asarray(w)).astype(np.int64) + 1).ravel()


class TWN(Parametrization):
    """Ternary Weight Network weights: ``alpha * t`` with TWN's threshold, trained by the STE.

    Parameters
    ----------
    factor : float
        Threshold ``Delta = factor * mean|w|`` (default 0.7, [1]_ eq. 10).

    Notes
    -----
    A step that transforms the real weight :math:`w` below it (any shape; one :math:`\\alpha`
    per tensor, as in the paper). Forward :math:`W_t = \\alpha\\, t` with :math:`t` and
    :math:`\\alpha` from :func:`twn_ternarize`, recomputed from the current :math:`w` at every
    forward pass. Backward, the straight-through estimator [1]_ (sec. 2.3):
    :math:`\\partial L/\\partial w = \\partial L / \\partial W_t`, as in the book's lab 2.
    A deployed file stores one code in :math:`\\{0, 1, 2\\}` per kept weight and
    :math:`\\alpha`. Departure from the paper: no batch normalization and our optimizers; the
    paper trains from scratch with SGD and BatchNorm. See chapter 5, "Ternary weights".

    References
    ----------
    .. [1] Li, F. and Liu, B. (2016). Ternary Weight Networks. arXiv:1605.04711.
    """

    file_name = "ternary"

    def __init__(self, factor: float = 0.7) -> None:
        self.factor = check_float(factor, "factor", 0.0)

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        alpha, t = twn_ternarize(x, self.factor)
        return (alpha * t).astype(x.dtype)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        return grad, {}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """One code in {0, 1, 2} (negative, zero, positive) per kept weight and ``alpha``."""
        alpha = float(np.abs(w).max()) if w.size else 0.0
        return Deployed({}, {"alpha": np.array([alpha], dtype=w.dtype)},
                        {"codes": ternary_codes(w[keep])})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        alpha = float(deployed.floats["alpha"][0])
        return (deployed.ints["codes"] - 1).astype(np.float64) * alpha

    def __repr__(self) -> str:
        return f"TWN(factor={self.factor})"


class TTQ(Parametrization):
    """Trained Ternary Quantization: ``{-W_n, 0, +W_p}`` with two trained scales per layer.

    Parameters
    ----------
    threshold : float
        ``t`` in ``Delta = t * max|w|`` (the paper's 0.05), in ``[0, 1)``.

    Notes
    -----
    A step that transforms the latent weight :math:`\\tilde w` below it and owns two trained
    scalars, ``params["wp"]`` and ``params["wn"]`` (stored as ``weight.wp`` and ``weight.wn``).
    With :math:`\\Delta = t \\max|\\tilde w|`, :math:`I_p = \\{\\tilde w > \\Delta\\}`,
    :math:`I_n = \\{\\tilde w < -\\Delta\\}` and :math:`I_z` the rest ([2]_, eq. 6-8):

    .. math::

        w^t = W_p 1_{I_p} - W_n 1_{I_n},\\qquad
        \\frac{\\partial L}{\\partial W_p} = \\sum_{i \\in I_p} g_i,\\quad
        \\frac{\\partial L}{\\partial W_n} = -\\sum_{i \\in I_n} g_i,\\quad
        \\frac{\\partial L}{\\partial \\tilde w_i} = g_i \\times
        \\begin{cases} W_p & i \\in I_p \\\\ 1 & i \\in I_z \\\\ W_n & i \\in I_n \\end{cases}

    with :math:`g = \\partial L / \\partial w^t`. The paper writes the :math:`W_n` gradient as
    :math:`\\sum_{I_n} g_i` for the value :math:`-W_n`; we train the magnitude, hence the sign.
    ``init`` sets :math:`W_p` and :math:`W_n` to the mean :math:`|\\tilde w|` over
    :math:`I_p` and :math:`I_n` (the least-squares values for the initial pattern), so a
    pretrained layer starts close to its weights; :meth:`constrain` keeps both scales
    :math:`\\ge 0`. A deployed file stores one code in :math:`\\{0, 1, 2\\}` per kept weight
    and the two scales. Departure from the paper: the paper first scales the latent weights
    to :math:`[-1, 1]` and trains from a pretrained model with its own schedule; we threshold
    the latent weights as they are. See chapter 5, "Ternary weights".

    References
    ----------
    .. [2] Zhu, C., Han, S., Mao, H. and Dally, W. J. (2017). Trained Ternary Quantization.
       *ICLR*.
    """

    file_name = "ttq"

    def __init__(self, threshold: float = 0.05) -> None:
        self.threshold = check_float(threshold, "threshold", 0.0)
        if self.threshold >= 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")

    def _sets(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        delta = self.threshold * float(np.abs(x).max()) if x.size else 0.0
        return x > delta, x < -delta

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        pos, neg = self._sets(x)
        a = np.abs(x.astype(np.float64))
        wp = a[pos].mean() if pos.any() else a.mean()
        wn = a[neg].mean() if neg.any() else a.mean()
        return {"wp": np.array(wp, dtype=x.dtype), "wn": np.array(wn, dtype=x.dtype)}, {}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        pos, neg = self._sets(x)
        return (params["wp"] * pos - params["wn"] * neg).astype(x.dtype)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        pos, neg = self._sets(x)
        wp, wn = params["wp"], params["wn"]
        factor = np.where(pos, wp, np.where(neg, wn, 1)).astype(x.dtype)
        g64 = grad.astype(np.float64)
        gp = np.array(g64[pos].sum(), dtype=wp.dtype)
        gn = np.array(-g64[neg].sum(), dtype=wn.dtype)
        return grad * factor, {"wp": gp, "wn": gn}

    def constrain(self, params: Arrays, buffers: Arrays) -> None:
        for key in ("wp", "wn"):
            np.maximum(params[key], 0, out=params[key])

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """One code in {0, 1, 2} per kept weight and the scales ``(W_p, W_n)``."""
        scales = np.array([params["wp"], params["wn"]], dtype=w.dtype)
        pos, neg = self._sets(x)
        codes = (pos.astype(np.int64) - neg.astype(np.int64) + 1)[keep]
        return Deployed({}, {"scales": scales}, {"codes": codes.ravel()})

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        wp, wn = (float(v) for v in deployed.floats["scales"])
        return np.array([-wn, 0.0, wp])[deployed.ints["codes"]]

    def __repr__(self) -> str:
        return f"TTQ(threshold={self.threshold})"
