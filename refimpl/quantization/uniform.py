"""Uniform (affine) quantization of weights and activations, simulated and in true integers.

A real tensor ``x`` is stored as ``b``-bit integers ``q`` with a real ``scale`` and an integer
``zero_point``: ``x ~ scale * (q - zero_point)`` [1]_ [2]_. This module gives

* the quantizer itself (:func:`quantize`, :func:`dequantize`, :func:`fake_quantize`) with scales
  per tensor or per channel (:func:`qparams`);
* :class:`UniformQuant`, a parametrization that trains a layer through simulated ("fake")
  quantization of its weight with the straight-through estimator;
* :class:`FakeQuantize`, a layer that quantizes activations the same way (running range);
* :class:`IntegerLinear`, a true integer inference path for a dense layer: uint8 activations
  times int8 weights accumulated in int32, then rescaled; its output equals the simulated one.

See chapter 5 of the book, "Uniform quantization".

References
----------
.. [1] Vanhoucke, V., Senior, A. and Mao, M. Z. (2011). Improving the speed of neural networks on
   CPUs. *Deep Learning and Unsupervised Feature Learning Workshop, NIPS*.
.. [2] Jacob, B. et al. (2018). Quantization and Training of Neural Networks for Efficient
   Integer-Arithmetic-Only Inference. *CVPR*.
.. [3] Bengio, Y., Leonard, N. and Courville, A. (2013). Estimating or Propagating Gradients
   Through Stochastic Neurons for Conditional Computation. arXiv:1308.3432.
"""

from __future__ import annotations

import numpy as np

from ..cost import LayerCost
from ..nn.layers import Layer, Linear
from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import check_float, check_int

__all__ = [
    "FakeQuantize",
    "IntegerLinear",
    "UniformQuant",
    "dequantize",
    "fake_quantize",
    "qparams",
    "qrange",
    "quantize",
]


def _check_bits(bits: int, low: int = 2, high: int = 16) -> int:
    return check_int(bits, "bits", low, high)

def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range ``(q_min, q_max)`` of ``bits``-bit codes.

    Signed codes are symmetric, ``[-(2^{b-1} - 1), 2^{b-1} - 1]`` (int8: -127..127, leaving -128
    unused so that a symmetric scale maps ``-max|x|`` and ``+max|x|`` alike); unsigned codes are
    ``[0, 2^b - 1]`` (uint8: 0..255).
    """
    bits = _check_bits(bits)
    if signed:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _reduce_axes(ndim: int, axis: int | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis must lie in [{-ndim}, {ndim - 1}], got {axis}")
    axis %= ndim
    return tuple(a for a in range(ndim) if a != axis)


def qparams(
    x: np.ndarray, bits: int = 8, *, axis: int | None = None, symmetric: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point that map the range of ``x`` onto ``bits``-bit codes.

    Parameters
    ----------
    x : ndarray, any shape
        The tensor to quantize (weights or a batch of activations).
    bits : int
        Code width in [2, 16].
    axis : int or None
        ``None``: one scale for the whole tensor (per tensor). An int: one scale per index of
        that axis (per channel; axis 0 of a weight is its output channel).
    symmetric : bool
        ``True``: signed codes, ``zero_point = 0`` and ``scale = max|x| / q_max``.
        ``False``: unsigned codes covering ``[min(x, 0), max(x, 0)]`` with an integer zero point
        (so 0.0 is exactly representable, as zero padding and ReLU outputs need).

    Returns
    -------
    scale : ndarray of float64
        Shape ``()`` per tensor, or ``x``'s shape with 1 on every axis but ``axis``.
    zero_point : ndarray of int64, same shape as ``scale``

    Notes
    -----
    The range is taken from the finite values of ``x``: NaN and infinities are ignored (an
    activation batch can hold them; one NaN used to make the scale 1 and round everything).
    Symmetric: :math:`s = \\max|x| / q_{max}`, :math:`z = 0`. Asymmetric: with
    :math:`a = \\min(x, 0)`, :math:`b = \\max(x, 0)`, :math:`s = (b - a) / (2^b - 1)` and
    :math:`z = \\mathrm{round}(-a / s)`. A constant zero tensor gets ``scale = 1``.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    axes = _reduce_axes(x.ndim, axis)
    qmin, qmax = qrange(bits, symmetric)
    x64 = x.astype(np.float64)
    finite = np.isfinite(x64)
    if not finite.all():  # the range of the finite values (0 lies in every range anyway)
        x64 = np.where(finite, x64, 0.0)
    if symmetric:
        amax = np.max(np.abs(x64), axis=axes, keepdims=axes is not None)
        scale = amax / qmax
        zero = np.zeros(np.shape(scale), dtype=np.int64)
    else:
        lo = np.minimum(np.min(x64, axis=axes, keepdims=axes is not None), 0.0)
        hi = np.maximum(np.max(x64, axis=axes, keepdims=axes is not None), 0.0)
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zero = np.clip(np.round(qmin - lo / safe), qmin, qmax).astype(np.int64)
    scale = np.where(scale > 0, scale, 1.0)
    return np.asarray(scale, dtype=np.float64), np.asarray(zero)


def quantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, bits: int = 8, *,
    symmetric: bool = True,
) -> np.ndarray:
    """Integer codes ``q = clip(round(x / scale) + zero_point, q_min, q_max)``.

    Parameters
    ----------
    x : ndarray, any shape
    scale, zero_point : ndarray, broadcastable to ``x``
        From :func:`qparams`.
    bits : int
    symmetric : bool
        Selects signed (int8-like) or unsigned (uint8-like) codes, as in :func:`qparams`.

    Returns
    -------
    q : ndarray of int8/int16 (signed) or uint8/uint16 (unsigned), shape of ``x``
        Rounding is to nearest, halves to even (``numpy.round``); values beyond the range
        (infinities included) saturate at ``q_min`` or ``q_max``.

    Raises
    ------
    ValueError
        If ``x`` holds NaN: no integer code stands for it (:func:`fake_quantize` keeps NaN).
    """
    qmin, qmax = qrange(bits, symmetric)
    x64 = np.asarray(x, dtype=np.float64)
    if np.isnan(x64).any():
        raise ValueError("x holds NaN, which no integer code represents")
    q = np.clip(np.round(x64 / scale) + zero_point, qmin, qmax)
    if symmetric:
        dtype = np.int8 if bits <= 8 else np.int16
    else:
        dtype = np.uint8 if bits <= 8 else np.uint16
    return q.astype(dtype)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """Real values ``scale * (q - zero_point)`` (float64) of integer codes ``q``."""
    return scale * (np.asarray(q, dtype=np.float64) - zero_point)


def fake_quantize(
    x: np.ndarray, bits: int = 8, *, axis: int | None = None, symmetric: bool = True
) -> np.ndarray:
    """Simulated quantization: ``dequantize(quantize(x))`` in ``x``'s dtype.

    Parameters
    ----------
    x : ndarray of float, any shape
    bits, axis, symmetric
        As in :func:`qparams` (the range is taken from ``x`` itself).

    Returns
    -------
    ndarray, shape and dtype of ``x``
        Every finite entry lies on the grid ``scale * (k - zero_point)`` and, since the range
        covers ``x``, is at most ``scale / 2`` from the original.

    Notes
    -----
    Activations can hold NaN or infinities in normal use (a diverging run, a NaN input), so
    they are handled, not refused: the range comes from the finite values, NaN stays NaN
    (so that :func:`~refimpl.nn.fit` notices it in the loss; departure from
    ``torch.fake_quantize_per_tensor_affine``, which maps NaN to ``q_min`` without a word), and
    ``+inf``/``-inf`` saturate at the ends of the grid. ``fake_quantize([1, -2, nan, 0.5])``
    is about ``[1, -2, nan, 0.5]``, not ``[1, -2, 0, 0]`` (one NaN used to make the scale 1).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    nan = np.isnan(x)
    has_nan = bool(nan.any())
    xs = np.where(nan, 0, x) if has_nan else x
    scale, zero = qparams(xs, bits, axis=axis, symmetric=symmetric)
    q = quantize(xs, scale, zero, bits, symmetric=symmetric)
    out = dequantize(q, scale, zero).astype(x.dtype)
    if has_nan:
        out[nan] = np.nan
    return out


class UniformQuant(Parametrization):
    """Simulated uniform quantization of a weight, trained with the straight-through estimator.

    Parameters
    ----------
    bits : int
        Code width in [2, 16] (8 for int8).
    per_channel : bool
        One scale per output channel (axis 0 of the weight) instead of one per tensor.
    symmetric : bool
        Signed codes with zero point 0 (the usual choice for weights), or affine codes.

    Notes
    -----
    A step that transforms its input :math:`\\theta` (the chain's real-valued "shadow" weight,
    or a masked one): the layer computes with
    :math:`W = s\\,(\\mathrm{clip}(\\mathrm{round}(\\theta / s) + z) - z)`, the scale recomputed
    from :math:`\\theta`'s current range at every forward pass. It stores nothing of its own.
    Rounding has zero derivative almost everywhere, so training uses the straight-through
    estimator [3]_: :math:`\\partial L / \\partial \\theta := \\partial L / \\partial W`. Since
    the range always covers :math:`\\theta`, nothing is clipped and the estimator passes every
    gradient. Zero maps to zero exactly (the zero point is an integer), so a mask below this
    step keeps its zeros. A deployed file stores the integer codes and one scale (and zero
    point) per tensor or channel. After training, ``layer.remove_parametrization("weight")``
    keeps the quantized weight.
    See chapter 5 of the book, "Simulated quantization and the straight-through estimator".

    References
    ----------
    .. [1] Vanhoucke, V., Senior, A. and Mao, M. Z. (2011). Improving the speed of neural
       networks on CPUs. *NIPS Deep Learning Workshop*.
    .. [2] Jacob, B. et al. (2018). Quantization and Training of Neural Networks for Efficient
       Integer-Arithmetic-Only Inference. *CVPR*.
    """

    file_name = "uniform"

    def __init__(self, bits: int = 8, *, per_channel: bool = False, symmetric: bool = True) -> None:
        self.bits = _check_bits(bits)
        self.per_channel = bool(per_channel)
        self.symmetric = bool(symmetric)

    def _axis(self) -> int | None:
        return 0 if self.per_channel else None

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return fake_quantize(x, self.bits, axis=self._axis(), symmetric=self.symmetric)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        return grad, {}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """Codes ``q - q_min`` of the kept entries, and the scales (and zero points)."""
        scale, zero = qparams(x, self.bits, axis=self._axis(), symmetric=self.symmetric)
        codes = quantize(x, scale, zero, self.bits, symmetric=self.symmetric).astype(np.int64)
        qmin, _ = qrange(self.bits, self.symmetric)
        ints = {"codes": codes[keep] - qmin}
        if not self.symmetric:  # a symmetric zero point is 0: nothing to store
            ints["zero_point"] = zero.ravel() - qmin
        config = {"bits": self.bits, "per_channel": self.per_channel, "symmetric": self.symmetric}
        return Deployed(config, {"scale": scale.ravel()}, ints)

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        qmin, _ = qrange(deployed.config["bits"], deployed.config["symmetric"])
        scale = deployed.floats["scale"]
        zero = deployed.ints["zero_point"].astype(np.int64) + qmin if "zero_point" in \
            deployed.ints else np.zeros(scale.shape, dtype=np.int64)
        if deployed.config["per_channel"]:
            rows = np.nonzero(keep)[0]
            scale, zero = scale[rows], zero[rows]
        return dequantize(deployed.ints["codes"].astype(np.int64) + qmin, scale, zero)

    def __repr__(self) -> str:
        return (
            f"UniformQuant(bits={self.bits}, per_channel={self.per_channel}, "
            f"symmetric={self.symmetric})"
        )


class FakeQuantize(Layer):
    """Quantize activations to ``bits``-bit affine codes, with a straight-through gradient.

    Parameters
    ----------
    bits : int
        Code width in [2, 16].
    momentum : float in (0, 1]
        Weight of the newest batch in the running range (exponential moving average), as
        BatchNorm's ``momentum``.
    symmetric : bool
        Signed symmetric codes; ``False`` (default) gives unsigned codes with a zero point,
        which suit ReLU outputs.

    Notes
    -----
    Shapes: any input, output of the same shape. In training the range :math:`[a, b]` is the
    batch's (with ``0`` included) blended into ``buffers["min_val"]``/``["max_val"]``; in
    evaluation the running range is used, so the codes are fixed at inference. Forward:
    :math:`y = s (\\mathrm{clip}(\\mathrm{round}(x/s) + z, q_{min}, q_{max}) - z)`. Backward,
    the clipped straight-through estimator: :math:`\\partial y / \\partial x := 1` inside the
    representable range and 0 outside it. ``scale_and_zero_point()`` gives the integer path's
    parameters. NaN and infinities in a batch are left out of its range (they would make the
    running range NaN for good); NaN passes through as NaN, infinities saturate, and neither
    passes a gradient. See chapter 5 of the book, "Quantizing activations".
    """

    def __init__(self, bits: int = 8, *, momentum: float = 0.1, symmetric: bool = False) -> None:
        super().__init__()
        self.bits = _check_bits(bits)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, open_low=True)
        self.symmetric = bool(symmetric)
        self.buffers["min_val"] = np.zeros((), dtype=np.float32)
        self.buffers["max_val"] = np.zeros((), dtype=np.float32)
        self.buffers["initialized"] = np.zeros((), dtype=np.float32)

    def scale_and_zero_point(self) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point of the running range (what inference uses)."""
        lo = float(self.buffers["min_val"])
        hi = float(self.buffers["max_val"])
        if self.symmetric:
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        return qparams(np.array([lo, hi]), self.bits, symmetric=self.symmetric)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
            raise TypeError("FakeQuantize expects a floating-point numpy.ndarray input")
        if train or not float(self.buffers["initialized"]):
            finite = np.isfinite(x)  # the range of the finite values: NaN stays NaN below
            xs = x if finite.all() else x[finite]
            lo = min(float(xs.min(initial=0.0)), 0.0)
            hi = max(float(xs.max(initial=0.0)), 0.0)
            if float(self.buffers["initialized"]):
                m = self.momentum
                lo = (1 - m) * float(self.buffers["min_val"]) + m * lo
                hi = (1 - m) * float(self.buffers["max_val"]) + m * hi
            dtype = self.buffers["min_val"].dtype
            self.buffers["min_val"] = np.asarray(lo, dtype=dtype)
            self.buffers["max_val"] = np.asarray(hi, dtype=dtype)
            self.buffers["initialized"] = np.ones((), dtype=dtype)
        scale, zero = self.scale_and_zero_point()
        qmin, qmax = qrange(self.bits, self.symmetric)
        t = np.round(x / scale) + zero
        self._inside = (t >= qmin) & (t <= qmax)
        return (scale * (np.clip(t, qmin, qmax) - zero)).astype(x.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._inside

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: int | float) -> LayerCost:
        """No parameters and no MACs; the two range numbers are buffers."""
        return LayerCost("", "fakequant", tuple(input_shape), tuple(input_shape), buffers=2)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}"


class IntegerLinear:
    """True integer inference of a dense layer: uint8 x int8 products accumulated in int32.

    Parameters
    ----------
    layer : Linear
        The trained layer (its effective weight and bias are read once).
    input_scale, input_zero_point : float, int
        Activation quantization of the input, e.g. from
        :meth:`FakeQuantize.scale_and_zero_point` of the layer in front.
    per_channel : bool
        One weight scale per output row (else one for the whole weight).
    bits : int
        Weight and activation code width, at most 8 (codes fit int8/uint8).

    Notes
    -----
    Weights are symmetric int8, :math:`W \\approx s_w Q_w` (per row: :math:`s_{w,i}`); inputs are
    affine uint8, :math:`x \\approx s_x (q_x - z_x)`. Then

    .. math::

        y_i = \\sum_j W_{ij} x_j + b_i \\approx s_x s_{w,i}
        \\Big(\\underbrace{\\textstyle\\sum_j Q_{w,ij}\\, q_{x,j}
        - z_x \\sum_j Q_{w,ij}}_{\\text{int32 accumulator}}\\Big) + b_i.

    Each product is at most :math:`127 \\cdot 255 < 2^{15}`, so the int32 accumulator cannot
    overflow for ``in_features < 2^{31} / (2 \\cdot 127 \\cdot 255) = 33,000`` (checked). The row
    sums :math:`\\sum_j Q_{w,ij}` are precomputed. Only the final rescale is in floating point;
    it equals the simulated (fake-quantized) layer up to float rounding. The bias stays in float
    here (gemmlowp stores it as int32 with scale :math:`s_x s_w`).
    See chapter 5 of the book, "An integer-only dense layer".

    References
    ----------
    .. [1] Jacob, B. et al. (2018). Quantization and Training of Neural Networks for Efficient
       Integer-Arithmetic-Only Inference. *CVPR*.
    """

    def __init__(
        self,
        layer: Linear,
        input_scale: float,
        input_zero_point: int,
        *,
        per_channel: bool = True,
        bits: int = 8,
    ) -> None:
        if not isinstance(layer, Linear):
            raise TypeError(f"layer must be a Linear, got {type(layer).__name__}")
        self.bits = _check_bits(bits, 2, 8)
        w = layer.weight.astype(np.float64)
        if w.shape[1] >= 2**31 // (2 * 127 * 255):
            raise ValueError(
                f"in_features must be < 33,000 for an int32 accumulator, got {w.shape[1]}"
            )
        if not float(input_scale) > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale}")
        self.w_scale, _ = qparams(w, self.bits, axis=0 if per_channel else None, symmetric=True)
        self.w_q = quantize(w, self.w_scale, 0, self.bits, symmetric=True)  # int8
        self.w_scale = np.broadcast_to(self.w_scale, (w.shape[0], 1)).ravel()  # (out,)
        self.x_scale = float(input_scale)
        self.x_zero = int(input_zero_point)
        self.w_rowsum = self.w_q.sum(axis=1, dtype=np.int32)  # (out,) int32
        bias = layer.bias
        self.bias = None if bias is None else bias.astype(np.float64)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """uint8 codes (N, in_features) of a float input."""
        return quantize(x, self.x_scale, self.x_zero, self.bits, symmetric=False)

    def accumulate(self, x_q: np.ndarray) -> np.ndarray:
        """The int32 accumulator (N, out_features) of uint8 inputs (N, in_features)."""
        if x_q.dtype != np.uint8:
            raise TypeError(f"x_q must be uint8 codes, got dtype {x_q.dtype}")
        acc = x_q.astype(np.int32) @ self.w_q.T.astype(np.int32)
        return acc - np.int32(self.x_zero) * self.w_rowsum

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float output (N, out_features) of a float input (N, in_features)."""
        acc = self.accumulate(self.quantize_input(x))
        y = acc * (self.x_scale * self.w_scale)
        if self.bias is not None:
            y = y + self.bias
        return y

    __call__ = forward

    def simulated(self, x: np.ndarray) -> np.ndarray:
        """The same layer in simulated (fake-quantized) float64 arithmetic, for comparison."""
        x_hat = dequantize(self.quantize_input(x), self.x_scale, self.x_zero)
        w_hat = self.w_q.astype(np.float64) * self.w_scale[:, None]
        y = x_hat @ w_hat.T
        return y if self.bias is None else y + self.bias
