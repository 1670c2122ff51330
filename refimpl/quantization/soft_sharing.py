"""Soft weight-sharing: retraining under a learned Gaussian-mixture prior (Ullrich et al., 2017).

The network is retrained with the loss :math:`L_E + \\tau\\,(-\\log p(w))`, where
:math:`p(w) = \\prod_i \\sum_j \\pi_j\\, \\mathcal N(w_i \\mid \\mu_j, \\sigma_j^2)` is a mixture of
``J`` Gaussians whose means, variances and mixing proportions are learned together with the
weights [1]_. One component is pinned at :math:`\\mu_0 = 0` with a large fixed proportion
:math:`\\pi_0`: the weights it attracts are pruned. At the end every weight takes the mean of
its most responsible component, so one retraining both prunes and quantizes. See chapter 5 of
the book, "Soft weight-sharing".

References
----------
.. [1] Ullrich, K., Meeds, E. and Welling, M. (2017). Soft Weight-Sharing for Neural Network
   Compression. *ICLR*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..nn import weighted_layers
from ..nn.layers import Layer
from ..nn.parametrize import Mask
from ..validation import check_array, check_float, check_int
from .kmeans import PRUNED, SharedWeights

__all__ = [
    "MixturePrior",
    "SoftWeightSharing",
    "mixture_neg_log_prior",
    "mixture_responsibilities",
]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class MixturePrior:
    """A Gaussian mixture over scalar weights, with component 0 pinned at zero.

    Attributes
    ----------
    means : ndarray (J,)
        Component means; ``means[0]`` is 0 and not trained.
    log_vars : ndarray (J,)
        Log variances :math:`\\log \\sigma_j^2`.
    logits : ndarray (J - 1,)
        Mixing logits of components 1 .. J-1: :math:`\\pi_j = (1 - \\pi_0)\\,
        \\mathrm{softmax}(\\text{logits})_{j-1}`.
    pi_zero : float
        The fixed proportion :math:`\\pi_0` of the zero component.
    """

    means: np.ndarray
    log_vars: np.ndarray
    logits: np.ndarray
    pi_zero: float

    @classmethod
    def initial(
        cls, weights: np.ndarray, n_components: int, *, pi_zero: float = 0.99,
        init_std: float | None = None,
    ) -> MixturePrior:  # fmt: skip
        """``J = n_components`` components: zero, and ``J - 1`` means spread evenly over
        ``[min w, max w]`` (the paper's initialization), equal proportions, and one standard
        deviation ``init_std`` (default a quarter of the spacing of the means)."""
        w = check_array(weights, "weights", kind="float").ravel().astype(np.float64)
        J = check_int(n_components, "n_components", 2)
        pi_zero = check_float(pi_zero, "pi_zero", 0.0, 1.0, open_low=True, open_high=True)
        lo, hi = float(w.min()), float(w.max())
        if not hi > lo:
            raise ValueError("weights must hold at least two distinct values")
        means = np.concatenate([[0.0], np.linspace(lo, hi, J - 1)])
        if init_std is None:
            init_std = (hi - lo) / max(J - 2, 1) / 4
        init_std = check_float(init_std, "init_std", 0.0, open_low=True)
        log_vars = np.full(J, 2 * np.log(init_std))
        return cls(means, log_vars, np.zeros(J - 1), float(pi_zero))

    @property
    def n_components(self) -> int:
        return int(self.means.size)

    @property
    def proportions(self) -> np.ndarray:
        """:math:`\\pi` (J,), summing to 1."""
        e = np.exp(self.logits - self.logits.max())
        return np.concatenate([[self.pi_zero], (1 - self.pi_zero) * e / e.sum()])

    def density(self, x: np.ndarray) -> np.ndarray:
        """Weighted component densities :math:`\\pi_j \\mathcal N(x \\mid \\mu_j, \\sigma_j^2)`,
        shape ``x.shape + (J,)`` (for plots)."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        var = np.exp(self.log_vars)
        return self.proportions * np.exp(-((x - self.means) ** 2) / (2 * var)) / np.sqrt(
            2 * np.pi * var)  # fmt: skip


def _log_joint(w: np.ndarray, prior: MixturePrior) -> np.ndarray:
    """``log pi_j + log N(w_i | mu_j, var_j)``, shape (n, J)."""
    var = np.exp(prior.log_vars)
    return (np.log(prior.proportions) - 0.5 * (_LOG_2PI + prior.log_vars)
            - (w[:, None] - prior.means) ** 2 / (2 * var))  # fmt: skip


def mixture_responsibilities(w: np.ndarray, prior: MixturePrior) -> np.ndarray:
    """Responsibilities :math:`r_{ij} = \\pi_j \\mathcal N(w_i|\\mu_j,\\sigma_j^2) / p(w_i)`,
    shape (n, J) for the flattened ``w``."""
    w = np.asarray(w, dtype=np.float64).ravel()
    a = _log_joint(w, prior)
    a -= a.max(axis=1, keepdims=True)
    r = np.exp(a)
    return r / r.sum(axis=1, keepdims=True)


def mixture_neg_log_prior(
    w: np.ndarray, prior: MixturePrior
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """:math:`-\\log p(w) = -\\sum_i \\log \\sum_j \\pi_j \\mathcal N(w_i|\\mu_j,\\sigma_j^2)`
    and its gradients.

    Returns
    -------
    value : float
    grad_w : ndarray, shape of ``w`` (float64)
    grads : dict
        ``"means"`` (J,) (0 for the pinned ``means[0]``), ``"log_vars"`` (J,) and
        ``"logits"`` (J - 1,).

    Notes
    -----
    With :math:`r_{ij}` the responsibilities and :math:`R_j = \\sum_i r_{ij}`:

    .. math::

        \\frac{\\partial}{\\partial w_i} = \\sum_j r_{ij} \\frac{w_i - \\mu_j}{\\sigma_j^2},\\quad
        \\frac{\\partial}{\\partial \\mu_j} = -\\sum_i r_{ij}
        \\frac{w_i - \\mu_j}{\\sigma_j^2},\\quad
        \\frac{\\partial}{\\partial \\log\\sigma_j^2} = \\sum_i r_{ij} \\Big(\\frac12 -
        \\frac{(w_i - \\mu_j)^2}{2\\sigma_j^2}\\Big),\\quad
        \\frac{\\partial}{\\partial \\ell_k} = -R_k + s_k \\sum_{j \\ge 1} R_j,

    where :math:`s = \\mathrm{softmax}(\\ell)` over the logits of components 1 .. J-1.
    """
    w = np.asarray(w)
    dt = np.float64 if w.dtype == np.float64 else np.float32  # float32 weights: float32 sums
    flat = w.astype(dt).ravel()
    inv_var = np.exp(-prior.log_vars).astype(dt)
    diff = flat[:, None] - prior.means.astype(dt)  # (n, J)
    a = diff * diff
    a *= -0.5 * inv_var
    a += (np.log(prior.proportions) - 0.5 * (_LOG_2PI + prior.log_vars)).astype(dt)
    m = a.max(axis=1, keepdims=True)
    a -= m
    np.exp(a, out=a)
    s = a.sum(axis=1, keepdims=True)
    value = -float(np.sum(m[:, 0], dtype=np.float64) + np.sum(np.log(s[:, 0]), dtype=np.float64))
    a /= s  # responsibilities r
    R = a.sum(axis=0, dtype=np.float64)
    a *= diff  # r * (w - mu)
    grad_w = (a @ inv_var).reshape(w.shape).astype(np.float64)
    g_means = -a.sum(axis=0, dtype=np.float64) * inv_var
    g_means[0] = 0.0
    sq = np.einsum("ij,ij->j", a, diff, dtype=np.float64)
    g_lv = 0.5 * R - 0.5 * sq * inv_var
    R = R[1:]
    soft = np.exp(prior.logits - prior.logits.max())
    soft /= soft.sum()
    g_logits = -R + soft * R.sum()
    return value, grad_w, {"means": g_means, "log_vars": g_lv, "logits": g_logits}


class SoftWeightSharing:
    """A :func:`~refimpl.nn.fit` callback: retrain under a learned Gaussian-mixture prior.

    Parameters
    ----------
    n_components : int
        ``J``, the zero component included (the paper's 17 for LeNet: 16 + zero).
    tau : float
        Weight of the prior: the loss is the batch's mean cross-entropy plus
        ``tau * (-log p(w))``, summed over every weight of the chosen layers.
    prior_lr : float
        Adam step size of the mixture's means, log variances and logits.
    pi_zero : float
        Fixed proportion of the zero component.
    min_std : float
        Floor on every component's standard deviation (see Notes).
    layers : iterable of str, optional
        Names of the dense and convolution layers under the prior (default all).
    init_std : float, optional
        Initial standard deviation of the components (default from :meth:`MixturePrior.initial`).

    Attributes
    ----------
    prior : MixturePrior or None
        Built from the model's weights at the first step (or given before training).

    Notes
    -----
    At every step, ``on_before_step`` adds :math:`\\tau\\, \\partial(-\\log p(w)) / \\partial w`
    to each weight's gradient (through its chain, :meth:`Layer.add_grad`) and takes one Adam
    step on the mixture's parameters with the gradient of :math:`\\tau(-\\log p(w))`
    (:func:`mixture_neg_log_prior`). After training, :meth:`quantize` sets every weight to
    the mean of its most responsible component ([1]_, sec. 4): a mask for the weights of the
    zero component, and a :class:`~refimpl.quantization.SharedWeights` step with the
    ``J - 1`` other means as the codebook. Departures from the paper: the paper puts Gamma
    hyperpriors on the precisions (so no component collapses onto a single weight) and merges
    components whose means come close before quantizing; we floor the standard deviations at
    ``min_std`` and do not merge, so a few codebook entries may stay unused.
    See chapter 5 of the book, "Soft weight-sharing".

    References
    ----------
    .. [1] Ullrich, K., Meeds, E. and Welling, M. (2017). Soft Weight-Sharing for Neural
       Network Compression. *ICLR*.
    """

    def __init__(
        self,
        n_components: int = 17,
        *,
        tau: float = 1e-5,
        prior_lr: float = 1e-3,
        pi_zero: float = 0.99,
        min_std: float = 1e-3,
        layers: Iterable[str] | None = None,
        init_std: float | None = None,
    ) -> None:
        self.n_components = check_int(n_components, "n_components", 2)
        self.tau = check_float(tau, "tau", 0.0)
        self.prior_lr = check_float(prior_lr, "prior_lr", 0.0, open_low=True)
        self.pi_zero = check_float(pi_zero, "pi_zero", 0.0, 1.0, open_low=True, open_high=True)
        self.min_std = check_float(min_std, "min_std", 0.0, open_low=True)
        self.layers = None if layers is None else list(layers)
        self.init_std = init_std
        self.prior: MixturePrior | None = None
        self._adam: dict[str, list[np.ndarray]] = {}
        self._t = 0

    def _layers(self, model: Layer) -> dict[str, Layer]:
        named = dict(weighted_layers(model))
        if self.layers is None:
            return named
        missing = [n for n in self.layers if n not in named]
        if missing:
            raise ValueError(f"layers {missing} are not dense or convolution layers of the "
                             f"model; choose from {sorted(named)}")  # fmt: skip
        return {n: named[n] for n in self.layers}

    def _build(self, model: Layer) -> None:
        if self.prior is None:
            self.prior = MixturePrior.initial(
                self.weights(model), self.n_components, pi_zero=self.pi_zero,
                init_std=self.init_std)  # fmt: skip

    def weights(self, model: Layer) -> np.ndarray:
        """Every weight under the prior, flattened and concatenated (float64)."""
        return np.concatenate([layer.weight.astype(np.float64).ravel()
                               for layer in self._layers(model).values()])  # fmt: skip

    def penalty(self, model: Layer) -> float:
        """Current :math:`\\tau(-\\log p(w))`."""
        self._build(model)
        return self.tau * mixture_neg_log_prior(self.weights(model), self.prior)[0]

    def on_before_step(self, model: Layer) -> None:
        layers = self._layers(model)
        self._build(model)
        total = {"means": 0.0, "log_vars": 0.0, "logits": 0.0}
        for layer in layers.values():
            _, gw, gp = mixture_neg_log_prior(layer.weight, self.prior)
            layer.add_grad("weight", (self.tau * gw).astype(layer.weight.dtype))
            for key in total:
                total[key] = total[key] + self.tau * gp[key]
        self._adam_step(total)

    def _adam_step(self, grads: dict[str, np.ndarray]) -> None:
        b1, b2, eps = 0.9, 0.999, 1e-8
        self._t += 1
        for key, g in grads.items():
            m, v = self._adam.setdefault(key, [np.zeros_like(g), np.zeros_like(g)])
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g**2
            step = self.prior_lr * (m / (1 - b1**self._t)) / (np.sqrt(v / (1 - b2**self._t)) + eps)
            getattr(self.prior, key)[...] -= step
        self.prior.means[0] = 0.0
        np.maximum(self.prior.log_vars, 2 * np.log(self.min_std), out=self.prior.log_vars)

    def assign(self, w: np.ndarray) -> np.ndarray:
        """Index of the most responsible component of every entry of ``w`` (shape of ``w``)."""
        if self.prior is None:
            raise ValueError("the prior is not built yet: train with this callback first")
        r = mixture_responsibilities(w, self.prior)
        return r.argmax(axis=1).reshape(np.shape(w))

    def quantize(self, model: Layer) -> Layer:
        """Set every weight to its most responsible component's mean, in place; return the model.

        The zero component's weights get a :class:`~refimpl.nn.Mask` (they are pruned); the
        others a :class:`~refimpl.quantization.SharedWeights` step whose codebook is the means
        of components 1 .. J-1, so the layer holds at most ``J`` distinct values and a
        compressed file stores a sparse weight with ``ceil(log2(J - 1))``-bit indices.
        """
        for layer in self._layers(model).values():
            labels = self.assign(layer.weight)
            Mask.update(layer, "weight", labels != 0)
            codebook = self.prior.means[1:].astype(layer.weight.dtype)
            layer.parametrize("weight", SharedWeights(codebook, np.where(
                labels == 0, PRUNED, labels - 1)))  # fmt: skip
        return model

    def __repr__(self) -> str:
        return (f"SoftWeightSharing(n_components={self.n_components}, tau={self.tau}, "
                f"pi_zero={self.pi_zero})")  # fmt: skip
