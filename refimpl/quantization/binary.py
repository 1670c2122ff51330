"""Binary weights and activations: BinaryConnect, BNN and XNOR-Net.

* :class:`BinaryConnect` [1]_: the layer computes with ``sign(theta)`` (deterministic) or a
  random ``+-1`` with ``P(+1) = hard_sigmoid(theta)`` (stochastic), while the real-valued
  ``theta`` is kept, updated with the straight-through gradient and clipped to ``[-1, 1]``.
* :class:`BinaryActivation` [2]_: ``sign`` as an activation, with the hard-tanh straight-through
  gradient ``1_{|x| <= 1}``.
* :class:`XNORWeights` [3]_: ``alpha * sign(theta)`` with one scaling factor per output filter,
  ``alpha = mean |theta|`` over the filter, the least-squares best binary approximation.

See chapter 5 of the book, "Binary networks".

References
----------
.. [1] Courbariaux, M., Bengio, Y. and David, J.-P. (2015). BinaryConnect: Training Deep Neural
   Networks with binary weights during propagations. *NeurIPS*.
.. [2] Courbariaux, M., Hubara, I., Soudry, D., El-Yaniv, R. and Bengio, Y. (2016). Binarized
   Neural Networks: Training Deep Neural Networks with Weights and Activations Constrained to +1
   or -1. arXiv:1602.02830.
.. [3] Rastegari, M., Ordonez, V., Redmon, J. and Farhadi, A. (2016). XNOR-Net: ImageNet
   Classification Using Binary Convolutional Neural Networks. *ECCV*.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..cost import LayerCost
from ..nn import leaf_layers
from ..nn.layers import Layer
from ..nn.parametrize import Arrays, Deployed, Parametrization

__all__ = [
    "BinaryActivation",
    "BinaryConnect",
    "XNORWeights",
    "binarize",
    "deterministic",
    "glorot_scale",
    "xnor_scale",
]


def binarize(
    x: np.ndarray, *, stochastic: bool = False, rng: int | np.random.Generator | None = None
) -> np.ndarray:
    """``+1``/``-1`` of ``x`` (shape and dtype kept).

    Deterministic: ``+1`` where ``x >= 0`` (``sign`` with ``sign(0) = +1``); NaN stays NaN,
    so a NaN activation reaches the loss instead of becoming ``-1`` (``torch.sign`` gives 0).
    Stochastic:
    ``+1`` with probability ``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)`` [1]_ (eq. 3), so that
    ``E[binarize(x)] = clip(x, -1, 1)``.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    if stochastic:
        p = np.clip((x.astype(np.float64) + 1) / 2, 0, 1)
        bits = np.random.default_rng(rng).random(x.shape) < p
    else:
        bits = x >= 0
    out = np.where(bits, 1, -1).astype(x.dtype)
    nan = np.isnan(x)
    if nan.any():  # NaN stays NaN (torch.sign gives 0), so it reaches the loss
        out[nan] = np.nan
    return out


def glorot_scale(shape: tuple[int, ...]) -> float:
    """BinaryConnect's binary magnitude ``H = sqrt(1.5 / (fan_in + fan_out))`` for a weight shape.

    ``fan_in = prod(shape[1:])`` and ``fan_out = shape[0] * prod(shape[2:])`` (a dense weight
    (out, in): ``in`` and ``out``; a convolution (C_out, C_in, kH, kW): ``C_in kH kW`` and
    ``C_out kH kW``), as in the paper's code. This is half of Glorot and Bengio's uniform
    initialization bound ``sqrt(6 / (fan_in + fan_out))``, which uses the same fans.
    """
    if len(shape) < 2:
        raise ValueError(f"the weight needs >= 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = int(np.prod(shape[1:])), int(shape[0]) * receptive
    return float(np.sqrt(1.5 / (fan_in + fan_out)))


class BinaryConnect(Parametrization):
    """BinaryConnect: binary weights in the propagations, real weights for the updates.

    Parameters
    ----------
    stochastic : bool
        Deterministic ``sign`` or stochastic binarization.
    scale : float or "glorot"
        The binary values are ``+-H``; ``"glorot"`` (default) takes the paper code's
        ``H = sqrt(1.5 / (fan_in + fan_out))`` (:func:`glorot_scale`), a float fixes ``H``
        (``1.0`` gives the paper's plain ``+-1``).
    rng : int, numpy.random.Generator or None
        Seed or generator of the stochastic binarization.

    Attributes
    ----------
    sampling : bool
        For ``stochastic=True``: draw a new binary weight at every forward pass (training).
        Set it to ``False`` (or use :func:`deterministic`) to evaluate with ``H sign(theta)``.

    Notes
    -----
    Stored tensors (the step replaces the tensor below it): ``params["real"]``
    (:math:`\\theta`, initialised to the current weight clipped to :math:`[-H, H]`) and
    ``buffers["scale"]`` (:math:`H`, fixed at ``init`` from the weight's shape). Forward weight
    :math:`W_b = H\\,\\mathrm{binarize}(\\theta / H)`,
    in :math:`\\{-H, +H\\}`; stochastically :math:`P(W_b = +H) = \\mathrm{clip}((\\theta/H +
    1)/2, 0, 1)` ([1]_, eq. 3). Backward, the straight-through estimator with the clip of [1]_
    (Algorithm 1): :math:`\\partial L/\\partial \\theta = \\partial L / \\partial W_b \\cdot
    1_{|\\theta| \\le H}`, and :meth:`constrain` clips :math:`\\theta` to :math:`[-H, H]`
    after every step, so a weight never drifts far from the point where its sign flips.
    A deployed file stores one sign bit per weight and :math:`H`.
    Departure from the paper: the paper also scales each layer's learning rate by
    :math:`1/H` and uses batch normalization; we keep the plain optimizer and layers.
    See chapter 5 of the book, "BinaryConnect".

    References
    ----------
    .. [1] Courbariaux, M., Bengio, Y. and David, J.-P. (2015). BinaryConnect: Training Deep
       Neural Networks with binary weights during propagations. *NeurIPS*.
    """

    file_name = "binary"

    def __init__(
        self,
        *,
        stochastic: bool = False,
        scale: float | str = "glorot",
        rng: int | np.random.Generator | None = None,
    ) -> None:
        if isinstance(scale, str):
            if scale != "glorot":
                raise ValueError(f"scale must be a positive float or 'glorot', got {scale!r}")
        elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a positive float or 'glorot', got {scale!r}")
        self.stochastic = bool(stochastic)
        self.scale = scale
        self.rng = np.random.default_rng(rng)
        self.sampling = True

    uses_input = False  # the real weights are the step's own, clipped to [-H, H]

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        H = glorot_scale(x.shape) if self.scale == "glorot" else float(self.scale)
        return {"real": np.clip(x, -H, H)}, {"scale": np.array(H, dtype=x.dtype)}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        theta, H = params["real"], buffers["scale"]
        sample = self.stochastic and self.sampling
        return H * binarize(theta / H, stochastic=sample, rng=self.rng)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        return None, {"real": grad * (np.abs(params["real"]) <= buffers["scale"])}

    def constrain(self, params: Arrays, buffers: Arrays) -> None:
        H = buffers["scale"]
        np.clip(params["real"], -H, H, out=params["real"])

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """One sign bit per kept weight (1 for ``+H``) and ``H``."""
        return Deployed({}, {"scale": buffers["scale"].reshape(1)},
                        {"signs": (w[keep] > 0).astype(np.int64)})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        H = deployed.floats["scale"][0]
        return np.where(deployed.ints["signs"] == 1, H, -H)

    def __repr__(self) -> str:
        return f"BinaryConnect(stochastic={self.stochastic}, scale={self.scale!r})"


def xnor_scale(weight: np.ndarray) -> np.ndarray:
    """Per-filter scaling factors ``alpha_i = mean_j |W_ij|``, shape (C_out, 1, ..., 1)."""
    w = np.asarray(weight)
    if w.ndim < 2:
        raise ValueError(f"weight must have >= 2 dimensions (C_out, ...), got shape {w.shape}")
    return np.abs(w).mean(axis=tuple(range(1, w.ndim)), keepdims=True)


class XNORWeights(Parametrization):
    """XNOR-Net binary weights with one real scaling factor per output filter.

    Notes
    -----
    A step that transforms its input :math:`\\theta` (the chain's real weight). For filter
    :math:`i` with :math:`n` entries, the binary approximation minimising :math:`\\|\\theta_i -
    \\alpha_i B_i\\|^2` is :math:`B_i = \\mathrm{sign}(\\theta_i)`, :math:`\\alpha_i =
    \\|\\theta_i\\|_1 / n`
    ([1]_, eq. 4-5). The gradient follows the product rule, with the clipped straight-through
    estimator for the sign ([1]_, sec. 3.1):

    .. math::

        \\frac{\\partial L}{\\partial \\theta_{ij}} = \\alpha_i\\, g_{ij}\\, 1_{|\\theta_{ij}|
        \\le 1} + \\frac{\\mathrm{sign}(\\theta_{ij})}{n} \\sum_k g_{ik}\\,
        \\mathrm{sign}(\\theta_{ik}),

    with :math:`g = \\partial L / \\partial W`. Works for dense (out, in) and convolution
    (C_out, C_in, kH, kW) weights. Departure from the paper: we binarize weights only (the
    "binary-weight network"); binarizing inputs too is :class:`BinaryActivation`, without the
    paper's per-position input scaling. See chapter 5 of the book, "XNOR-Net".

    References
    ----------
    .. [1] Rastegari, M., Ordonez, V., Redmon, J. and Farhadi, A. (2016). XNOR-Net: ImageNet
       Classification Using Binary Convolutional Neural Networks. *ECCV*.
    """

    file_name = "xnor"

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if x.ndim < 2:
            raise ValueError(f"XNORWeights needs a weight of >= 2 dimensions, got {x.shape}")
        return {}, {}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return (xnor_scale(x) * binarize(x)).astype(x.dtype)

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        sign = binarize(x)
        axes = tuple(range(1, x.ndim))
        n = x[0].size
        through = xnor_scale(x) * grad * (np.abs(x) <= 1)
        via_alpha = sign / n * (grad * sign).sum(axis=axes, keepdims=True)
        return (through + via_alpha).astype(x.dtype), {}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """One sign bit per kept weight and one scaling factor per output filter."""
        alpha = xnor_scale(x).astype(x.dtype).ravel()
        return Deployed({}, {"alpha": alpha}, {"signs": (w[keep] > 0).astype(np.int64)})

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        alpha = deployed.floats["alpha"][np.nonzero(keep)[0]]
        return np.where(deployed.ints["signs"] == 1, alpha, -alpha)


class BinaryActivation(Layer):
    """Binarized activation of BNN: ``y = sign(x)`` (``+1`` at 0), hard-tanh STE gradient.

    Notes
    -----
    Any input shape. Forward :math:`y = \\mathrm{sign}(x) \\in \\{-1, +1\\}`. Backward, the
    straight-through estimator of the hard tanh ([1]_, eq. 4): :math:`\\partial L / \\partial x =
    \\partial L / \\partial y \\cdot 1_{|x| \\le 1}`, which cancels the gradient when :math:`x`
    is too large to flip. See chapter 5 of the book, "Binarized activations".

    References
    ----------
    .. [1] Courbariaux, M., Hubara, I., Soudry, D., El-Yaniv, R. and Bengio, Y. (2016).
       Binarized Neural Networks. arXiv:1602.02830.
    """

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self._pass = np.abs(x) <= 1
        return binarize(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._pass

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: int | float) -> LayerCost:
        """No parameters and no MACs."""
        return LayerCost("", "binary_act", tuple(input_shape), tuple(input_shape))


@contextmanager
def deterministic(model: Layer) -> Iterator[Layer]:
    """Within the block, stochastic parametrizations of ``model`` use their deterministic form.

    Sets ``sampling = False`` on every parametrization that has the attribute (stochastic
    :class:`BinaryConnect`) and restores it afterwards: use it to evaluate.
    """
    found = []
    for _, layer in leaf_layers(model):
        for name in layer.parametrizations:
            for p in layer.chain(name):
                if hasattr(p, "sampling"):
                    found.append((p, p.sampling))
                    p.sampling = False
    try:
        yield model
    finally:
        for p, old in found:
            p.sampling = old
