"""Powers of two: incremental network quantization (INQ) and shift-based products.

* :class:`INQ` [1]_: weights become ``0`` or ``+-2^n`` a portion at a time, largest magnitudes
  first; the quantized portion is frozen (its gradient is masked) and the rest is retrained to
  make up for the error, until every weight is a power of two (:func:`inq_step`).
* :func:`pow2_round` and :class:`PowerOfTwoAct` [2]_: activations rounded to signed powers of
  two, so that multiplying by them is a bit shift; :func:`shift_matmul` computes a product of
  integers and powers of two with shifts and additions only.

See chapter 5 of the book, "Powers of two".

References
----------
.. [1] Zhou, A., Yao, A., Guo, Y., Xu, L. and Chen, Y. (2017). Incremental Network Quantization:
   Towards Lossless CNNs with Low-Precision Weights. *ICLR*.
.. [2] Lin, Z., Courbariaux, M., Memisevic, R. and Bengio, Y. (2016). Neural Networks with Few
   Multiplications. *ICLR*.
"""

from __future__ import annotations

import numpy as np

from ..cost import LayerCost
from ..nn import weighted_layers
from ..nn.layers import Layer
from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import check_int

__all__ = [
    "INQ",
    "PowerOfTwoAct",
    "inq_exponent_range",
    "inq_quantize",
    "inq_step",
    "pow2_decompose",
    "pow2_round",
    "shift_matmul",
]


def inq_exponent_range(weight: np.ndarray, bits: int) -> tuple[int, int]:
    """Exponents ``(n1, n2)`` of INQ's set ``{0} U {+-2^n : n2 <= n <= n1}`` for ``bits`` bits.

    ``n1 = floor(log2(4 s / 3))`` with ``s = max |W|`` and ``n2 = n1 + 1 - 2^(b-1) / 2``: one bit
    is the sign-and-zero and ``2^(b-2)`` exponents remain ([1]_, eq. 2-3).
    """
    bits = check_int(bits, "bits", 2, 16)
    s = float(np.max(np.abs(weight)))
    if s == 0:
        raise ValueError("weight is all zero; INQ needs a nonzero weight to set its range")
    n1 = int(np.floor(np.log2(4 * s / 3)))
    return n1, n1 + 1 - 2 ** (bits - 1) // 2


def inq_quantize(weight: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Nearest element of ``{0} U {+-2^n : n2 <= n <= n1}`` in INQ's sense (shape, dtype kept).

    Notes
    -----
    For neighbours :math:`\\alpha < \\beta` of the set, :math:`|w| \\in [(\\alpha+\\beta)/2,
    3\\beta/2)` goes to :math:`\\beta` ([1]_, eq. 4): between powers of two the threshold is
    :math:`3\\beta/4`, i.e. :math:`n = \\lfloor \\log_2 (4|w|/3) \\rfloor`; below
    :math:`2^{n_2}/2` a weight becomes 0; above, it saturates at :math:`2^{n_1}`.
    """
    w = np.asarray(weight)
    a = np.abs(w.astype(np.float64))
    with np.errstate(divide="ignore"):
        n = np.floor(np.log2(4 * a / 3))
    n = np.clip(n, n2, n1)
    q = np.where(a >= 2.0 ** (n2 - 1), np.sign(w) * 2.0**n, 0.0)
    return q.astype(w.dtype)


class INQ(Parametrization):
    """Incremental network quantization to powers of two: frozen part plus retrained part.

    Parameters
    ----------
    bits : int
        Bits per weight, in [2, 16]: zero and ``2^(b-1)`` signed powers of two (5 in the paper).

    Notes
    -----
    A step that transforms its input :math:`\\theta` (the chain's real weight). Stored tensors:
    ``buffers["frozen"]`` (1 where quantized), ``buffers["quantized"]`` (their power-of-two
    values) and ``buffers["exponents"]`` (:math:`(n_1, n_2)`, fixed from the weight at
    ``init``). The output is :math:`W = F \\odot Q + (1 - F) \\odot \\theta`; the gradient is
    masked, :math:`\\partial L / \\partial \\theta = (1 - F) \\odot \\partial L / \\partial W`
    ([1]_, eq. 6), so the frozen entries never move, whatever the optimizer does to the
    real weights beneath them. A new parametrization freezes nothing; :func:`inq_step` grows
    the frozen portion (the paper's accumulated portions are 50%, 75%, 87.5%, 100%),
    retraining with ``fit`` in between. Once every weight is frozen, a deployed file stores
    one ``bits``-bit code per weight (zero, or a sign and an exponent). See chapter 5 of the
    book, "Incremental network quantization".

    References
    ----------
    .. [1] Zhou, A., Yao, A., Guo, Y., Xu, L. and Chen, Y. (2017). Incremental Network
       Quantization: Towards Lossless CNNs with Low-Precision Weights. *ICLR*.
    """

    file_name = "inq"

    def __init__(self, bits: int = 5) -> None:
        self.bits = check_int(bits, "bits", 2, 16)

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        n1, n2 = inq_exponent_range(x, self.bits)
        zeros = np.zeros_like(x)
        return {}, {"frozen": zeros, "quantized": zeros.copy(), "exponents": np.array([n1, n2])}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        f = buffers["frozen"]
        return f * buffers["quantized"] + (1 - f) * x

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        return grad * (1 - buffers["frozen"]), {}

    def freeze(self, x: np.ndarray, buffers: Arrays, fraction: float) -> None:
        """Quantize and freeze the largest-magnitude entries of ``x`` until ``fraction`` are.

        ``x`` is the step's input (the real weight); ``buffers`` its stored buffers.
        """
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        frozen = buffers["frozen"].astype(bool)
        target = int(round(fraction * x.size))
        extra = target - int(frozen.sum())
        if extra <= 0:
            return
        # the `extra` largest magnitudes among the weights not yet frozen (pruning-inspired)
        mag = np.where(frozen, -np.inf, np.abs(x)).ravel()
        pick = np.argpartition(-mag, extra - 1)[:extra]
        new = np.zeros(x.size, dtype=bool)
        new[pick] = True
        new = new.reshape(x.shape)
        n1, n2 = (int(v) for v in buffers["exponents"])
        buffers["quantized"][new] = inq_quantize(x[new], n1, n2)
        buffers["frozen"][new] = 1

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed | None:
        """``bits``-bit codes (0 for zero, else 1 + 2 (n - n2) + [negative]) once all frozen."""
        if not buffers["frozen"][keep].all():
            return None  # still training: the real entries are stored as floats
        n1, n2 = (int(v) for v in buffers["exponents"])
        v = w[keep].astype(np.float64)
        with np.errstate(divide="ignore"):
            n = np.round(np.log2(np.abs(v)))
        codes = np.where(v == 0, 0, 1 + 2 * (n - n2) + (v < 0)).astype(np.int64)
        return Deployed({"bits": self.bits, "n1": n1, "n2": n2}, {}, {"codes": codes})

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        c, n2 = deployed.ints["codes"], deployed.config["n2"]
        n = (c - 1) // 2 + n2
        value = np.where(c % 2 == 1, 1.0, -1.0) * 2.0 ** n.astype(np.float64)
        return np.where(c == 0, 0.0, value)

    def __repr__(self) -> str:
        return f"INQ(bits={self.bits})"


def inq_step(model: Layer, fraction: float) -> int:
    """Freeze ``fraction`` of the weights of every INQ-parametrized layer of ``model``.

    Parameters
    ----------
    model : Layer or Sequential
    fraction : float in [0, 1]
        Accumulated portion of quantized weights per layer after this step.

    Returns
    -------
    int
        Number of layers updated (0 means ``model`` has no INQ parametrization).
    """
    if not 0 <= float(fraction) <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    count = 0
    for _, layer in weighted_layers(model):
        for name in list(layer.parametrizations):
            index = layer.find_parametrization(name, INQ)
            if index is not None:
                x = layer.chain_inputs(name)[index]
                _, buffers = layer.stored_arrays(name, index)
                layer.chain(name)[index].freeze(x, buffers, float(fraction))
                count += 1
    return count


def pow2_round(x: np.ndarray, *, min_exp: int = -8, max_exp: int = 0) -> np.ndarray:
    """Round to ``0`` or ``+-2^e`` with ``min_exp <= e <= max_exp`` (nearest in log scale).

    Parameters
    ----------
    x : ndarray of float, any shape
    min_exp, max_exp : int
        The exponent range; ``max_exp - min_exp + 1`` powers (3 bits and a sign give 8).

    Returns
    -------
    ndarray, shape and dtype of ``x``

    Notes
    -----
    :math:`e = \\mathrm{round}(\\log_2 |x|)` clipped to the range; values below
    :math:`2^{e_{min} - 1}` in magnitude become 0 ([2]_, sec. 3.2 quantizes the layer inputs this
    way so that the products of backpropagation become shifts). NaN stays NaN, infinities
    saturate at :math:`\\pm 2^{e_{max}}`.
    """
    min_exp = check_int(min_exp, "min_exp", -126, 126)
    max_exp = check_int(max_exp, "max_exp", min_exp, 127)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    a = np.abs(x.astype(np.float64))
    with np.errstate(divide="ignore"):
        e = np.clip(np.round(np.log2(a)), min_exp, max_exp)
    keep = np.logical_not(a < 2.0 ** (min_exp - 1))  # NaN stays NaN (sign(nan) * 2^nan)
    return np.where(keep, np.sign(x) * 2.0**e, 0.0).astype(x.dtype)


def pow2_decompose(x: np.ndarray, *, min_exp: int) -> tuple[np.ndarray, np.ndarray]:
    """Signs (int8 in {-1, 0, 1}) and shifts (int8 >= 0) with ``x = sign * 2^(shift + min_exp)``.

    ``x`` must hold only zeros and signed powers of two with exponents ``>= min_exp`` (e.g. the
    output of :func:`pow2_round` or :func:`inq_quantize`); anything else raises ``ValueError``.
    """
    x = np.asarray(x, dtype=np.float64)
    sign = np.sign(x).astype(np.int8)
    a = np.abs(x)
    with np.errstate(divide="ignore"):
        e = np.where(a > 0, np.log2(np.where(a > 0, a, 1.0)), min_exp)
    if not np.all(e == np.round(e)):
        raise ValueError("x must hold only 0 and signed powers of two")
    if np.any(e < min_exp) or np.any(e - min_exp > 62):
        raise ValueError(f"exponents must lie in [min_exp, min_exp + 62] = [{min_exp}, "
                         f"{min_exp + 62}]")
    return sign, (e - min_exp).astype(np.int8)


def shift_matmul(q: np.ndarray, sign: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``q @ (sign * 2^shift)`` by shifts and additions: no multiplication by the right factor.

    Parameters
    ----------
    q : ndarray of int, (N, K)
        Integer left operand (e.g. int8 weights or activation codes).
    sign : ndarray of int, (K, M)
        -1, 0 or +1.
    shift : ndarray of int, (K, M)
        Non-negative shift amounts.

    Returns
    -------
    ndarray of int64, (N, M)

    Notes
    -----
    :math:`\\sum_k q_{nk}\\, s_{km} 2^{e_{km}} = \\sum_e \\sum_k (q_{nk} \\ll e)\\, s_{km}
    1[e_{km} = e]`: the right factor only selects and negates, so each distinct shift costs one
    shifted copy of ``q`` and a product with a {-1, 0, 1} matrix (additions and subtractions).
    There are few distinct shifts (``2^{b-1}`` for ``b``-bit powers of two), so this is
    vectorized over the data. Overflow is the caller's concern (int64).
    """
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"q must be an integer array, got dtype {q.dtype}")
    sign, shift = np.asarray(sign), np.asarray(shift)
    if q.ndim != 2 or sign.ndim != 2 or sign.shape != shift.shape or q.shape[1] != sign.shape[0]:
        raise ValueError(
            f"need q (N, K) and sign, shift (K, M); got {q.shape}, {sign.shape}, {shift.shape}"
        )
    if shift.size and shift.min() < 0:
        raise ValueError("shift must be >= 0")
    q64 = q.astype(np.int64)
    out = np.zeros((q.shape[0], sign.shape[1]), dtype=np.int64)
    for e in np.unique(shift[sign != 0]):  # loop over the few distinct shift amounts
        select = np.where(shift == e, sign, 0).astype(np.int64)
        out += np.left_shift(q64, int(e)) @ select
    return out


class PowerOfTwoAct(Layer):
    """Round activations to signed powers of two (straight-through gradient).

    Parameters
    ----------
    min_exp, max_exp : int
        Exponent range, as in :func:`pow2_round`.

    Notes
    -----
    Any input shape. Forward :func:`pow2_round`; backward passes the gradient unchanged where
    :math:`|x| \\le 2^{e_{max}}` and cancels it above (clipped straight-through estimator). The
    next dense layer then multiplies by powers of two, which hardware does with shifts
    (:func:`shift_matmul`) [2]_. Departure from the paper: Lin et al. quantize the inputs only
    inside the backward pass (for the weight-gradient products); we quantize them in the
    forward pass too, so inference is multiplication-free as well.
    See chapter 5 of the book, "Powers of two".

    References
    ----------
    .. [2] Lin, Z., Courbariaux, M., Memisevic, R. and Bengio, Y. (2016). Neural Networks with
       Few Multiplications. *ICLR*.
    """

    def __init__(self, *, min_exp: int = -8, max_exp: int = 0) -> None:
        super().__init__()
        self.min_exp = check_int(min_exp, "min_exp", -126, 126)
        self.max_exp = check_int(max_exp, "max_exp", self.min_exp, 127)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._pass = np.abs(x) <= 2.0**self.max_exp
        return pow2_round(x, min_exp=self.min_exp, max_exp=self.max_exp)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._pass

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: int | float) -> LayerCost:
        """No parameters and no MACs."""
        return LayerCost("", "pow2_act", tuple(input_shape), tuple(input_shape))

    def extra_repr(self) -> str:
        return f"min_exp={self.min_exp}, max_exp={self.max_exp}"
