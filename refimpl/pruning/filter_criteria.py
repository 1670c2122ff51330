"""Filter criteria: which filters of a convolution matter (section 3.1.2 of the survey).

The same conventions as :mod:`refimpl.pruning.neuron_criteria`: the layer (or its weight)
comes first, then the activations or gradients the criterion needs; the result is one score per
filter, shape ``(C_out,)``, ``float64``, and a **larger score means more important**. Every
criterion here also works on a dense layer's neurons (rows of the weight, columns of the
activations), since a filter is the convolutional form of a neuron.

* from the weights alone: :func:`l1_filter_scores` (Li et al., 2017), :func:`l2_filter_scores`,
  :func:`fpgm_scores` (He et al., 2019), :func:`random_scores` (the control);
* from activations on data: :func:`apoz_scores` (Hu et al., 2016),
  :func:`activation_variance_scores` (Polyak & Wolf, 2015), :func:`output_entropy_scores`
  (Luo & Wu, 2017);
* from gradients: :func:`mean_gradient_scores` (Liu & Wu, 2019);
* during training: :class:`SoftFilterPruning` (He et al., 2018);
* from the next layer's reconstruction: :func:`refimpl.pruning.thinet_scores` (Luo et al., 2017).

See chapter 4 of the book, "Pruning filters".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..nn import Sequential
from ..nn.layers import Layer
from ..validation import RngLike
from .neuron_criteria import _per_unit, _pooled, _units, _weight

__all__ = [
    "SoftFilterPruning",
    "activation_variance_scores",
    "apoz_scores",
    "fpgm_scores",
    "l1_filter_scores",
    "l2_filter_scores",
    "mean_gradient_scores",
    "output_entropy_scores",
    "random_scores",
]



def l1_filter_scores(layer: Layer | np.ndarray) -> np.ndarray:
    """Li et al. (2017): the sum of absolute weights of each filter.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight
        Weight of shape (C_out, C_in, kH, kW) (or (out, in) for a dense layer).

    Returns
    -------
    scores : ndarray, shape (C_out,)

    Notes
    -----
    .. math:: s_j = \\sum_{c, u, v} |W_{j c u v}| = \\lVert W_j \\rVert_1 .

    Removing the ``k`` filters of smallest ``s_j`` is what
    ``torch.nn.utils.prune.ln_structured(module, "weight", amount=k, n=1, dim=0)`` masks (see
    :func:`refimpl.pruning.select_per_layer`). A filter with small weights produces weak
    feature maps, which the next layer can do without.

    References
    ----------
    .. [1] Li, H., Kadav, A., Durdanovic, I., Samet, H. and Graf, H. P. (2017) Pruning filters
       for efficient ConvNets. ICLR.

    See chapter 4 of the book, "Pruning filters".
    """
    w = _weight(layer)
    return np.abs(w).reshape(w.shape[0], -1).sum(axis=1)


def l2_filter_scores(layer: Layer | np.ndarray) -> np.ndarray:
    """The Euclidean norm of each filter, ``||W_j||_2`` (the criterion of soft filter pruning).

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)

    Returns
    -------
    scores : ndarray, shape (C_out,)

    References
    ----------
    .. [1] He, Y., Kang, G., Dong, X., Fu, Y. and Yang, Y. (2018) Soft filter pruning for
       accelerating deep convolutional neural networks. IJCAI, 2234-2240.
    """
    w = _weight(layer)
    return np.sqrt(np.square(w).reshape(w.shape[0], -1).sum(axis=1))


def fpgm_scores(layer: Layer | np.ndarray) -> np.ndarray:
    """He et al. (2019), FPGM: how far each filter is from the others (its geometric median).

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)

    Returns
    -------
    scores : ndarray, shape (C_out,)
        ``sum_k ||W_j - W_k||_2``: small for filters near the layer's geometric median.

    Notes
    -----
    The geometric median of the filters is ``argmin_x sum_k ||x - W_k||_2``. A filter close to
    it is well represented by the others, so it is redundant even if its norm is large.
    Following the paper, the filter that minimizes the sum of distances stands for the
    median, and filters are ranked by that sum:

    .. math:: s_j = \\sum_k \\lVert W_j - W_k \\rVert_2 .

    References
    ----------
    .. [1] He, Y., Liu, P., Wang, Z., Hu, Z. and Yang, Y. (2019) Filter pruning via geometric
       median for deep convolutional neural networks acceleration. CVPR, 4340-4349.

    See chapter 4 of the book, "Pruning filters". The paper prunes during training (as soft
    filter pruning does); here the scores rank a trained layer once.
    """
    w = _weight(layer)
    flat = w.reshape(w.shape[0], -1)
    sq = np.einsum("ij,ij->i", flat, flat)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (flat @ flat.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2).sum(axis=1)


def random_scores(layer: Layer | np.ndarray, *, rng: RngLike = None) -> np.ndarray:
    """Random scores, uniform on [0, 1): the control every criterion should beat.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)
    rng : int, numpy.random.Generator or None
    """
    return np.random.default_rng(rng).random(_units(layer))


def apoz_scores(layer: Layer | np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Hu et al. (2016): one minus the average percentage of zeros (APoZ) of each output.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)
    activations : ndarray, shape (N, C_out, H, W) or (N, C_out)
        The filters' outputs after the ReLU.

    Returns
    -------
    scores : ndarray, shape (C_out,)
        ``1 - APoZ_j``, the fraction of nonzero outputs, in [0, 1].

    Notes
    -----
    .. math:: \\mathrm{APoZ}_j = \\frac{1}{N H W} \\sum_{n, h, w}
              \\mathbb{1}\\big[a_{n j h w} = 0\\big].

    A filter whose ReLU output is zero on most inputs and positions rarely passes anything on.
    Hu et al. prune the filters of largest APoZ, i.e. of smallest score here.

    References
    ----------
    .. [1] Hu, H., Peng, R., Tai, Y.-W. and Tang, C.-K. (2016) Network trimming: a data-driven
       neuron pruning approach towards efficient deep architectures. arXiv:1607.03250.

    See chapter 4 of the book, "Pruning filters".
    """
    a = _per_unit(activations, _units(layer))
    return 1.0 - (a == 0).mean(axis=0)


def activation_variance_scores(layer: Layer | np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Polyak & Wolf (2015): the variance of each filter's output over the data.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)
    activations : ndarray, shape (N, C_out, H, W) or (N, C_out)
        The filters' outputs after the nonlinearity.

    Returns
    -------
    scores : ndarray, shape (C_out,)

    Notes
    -----
    .. math:: s_j = \\operatorname{Var}_{n, h, w}\\, a_{n j h w}.

    A channel of low variance is nearly constant, so the next layer can replace it by its mean
    (here: by the constant the surgery folds into the bias) at little cost.

    References
    ----------
    .. [1] Polyak, A. and Wolf, L. (2015) Channel-level acceleration of deep face
       representations. IEEE Access 3, 2163-2175.

    See chapter 4 of the book, "Pruning filters".
    """
    return _per_unit(activations, _units(layer)).var(axis=0)


def output_entropy_scores(
    layer: Layer | np.ndarray, activations: np.ndarray, *, bins: int = 32
) -> np.ndarray:
    """Luo & Wu (2017): the entropy of each channel's globally pooled output over the data.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)
    activations : ndarray, shape (N, C_out, H, W) or (N, C_out)
        The filters' outputs after the nonlinearity; each map is averaged to one number per
        input (global average pooling).
    bins : int
        Histogram bins over each channel's range (>= 2).

    Returns
    -------
    scores : ndarray, shape (C_out,)
        Entropy in nats, in ``[0, log bins]``.

    Notes
    -----
    Let ``g_{nj}`` be the mean of channel ``j``'s map on input ``n``. Split the range of
    ``g_{:j}`` into ``m`` equal bins with frequencies ``p_{jk}``; then

    .. math:: H_j = -\\sum_{k=1}^{m} p_{jk} \\log p_{jk}.

    A channel whose pooled output hardly varies over the inputs has low entropy and tells the
    next layer little.

    References
    ----------
    .. [1] Luo, J.-H. and Wu, J. (2017) An entropy-based pruning method for CNN compression.
       arXiv:1706.05791.

    See chapter 4 of the book, "Pruning filters".
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    g = _pooled(activations, _units(layer))  # (N, C)
    lo, hi = g.min(axis=0), g.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    idx = np.clip(((g - lo) / span * bins).astype(np.int64), 0, bins - 1)  # (N, C)
    c = g.shape[1]
    counts = np.zeros((c, bins))
    np.add.at(counts, (np.broadcast_to(np.arange(c), idx.shape), idx), 1.0)
    p = counts / g.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def mean_gradient_scores(layer: Layer | np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Liu & Wu (2019): the mean magnitude of the loss gradient on each feature map.

    Parameters
    ----------
    layer : Conv2d or Linear, or its weight (C_out, ...)
    gradients : ndarray, shape (N, C_out, H, W) or (N, C_out)
        The gradient of each input's loss with respect to the layer's output feature maps
        (before its BatchNorm and nonlinearity), e.g. from
        :func:`refimpl.pruning.unit_gradients`.

    Returns
    -------
    scores : ndarray, shape (C_out,)

    Notes
    -----
    .. math:: s_j = \\frac{1}{N H W} \\sum_{n, h, w}
              \\left| \\frac{\\partial L_n}{\\partial F_{n j h w}} \\right| .

    The loss is sensitive to a feature map with large gradients; a map the loss does not react
    to can go. Taken before the ReLU, a filter that never fires gets zero gradient and so the
    lowest score.

    References
    ----------
    .. [1] Liu, C. and Wu, H. (2019) Channel pruning based on mean gradient for accelerating
       convolutional neural networks. Signal Processing 156, 84-91.

    See chapter 4 of the book, "Pruning filters". The normalization (mean absolute value over
    inputs and positions) is our reading of "the mean gradient of feature maps".
    """
    g = _per_unit(gradients, _units(layer), "gradients")
    return np.abs(g).mean(axis=0)


class SoftFilterPruning:
    """He et al. (2018): zero the weakest filters after every epoch, and let them recover.

    A :func:`refimpl.nn.fit` callback. At the end of every epoch it zeroes, in each named
    layer, the ``round(sparsity * C_out)`` filters of smallest L2 norm (their weight rows; the
    bias stays). The zeroed filters are still trained, so a filter zeroed in one epoch may grow
    back and another take its place. After training, :meth:`keep` lists the surviving filters
    and :func:`refimpl.pruning.remove_units` removes the others; since their weights are zero,
    the small model computes exactly what the trained model computes.

    Parameters
    ----------
    sparsity : float or mapping of str to float
        Fraction of filters zeroed, in [0, 1): one value for every layer in ``layers``, or one
        per layer name.
    layers : sequence of str, optional
        The layers to prune (``Conv2d`` or ``Linear``); required if ``sparsity`` is a float.

    Notes
    -----
    At the end of epoch ``t``, with ``P`` the pruning rate,

    .. math:: W_j \\leftarrow 0 \\quad \\text{for the } \\operatorname{round}(P\\, C_{out})
              \\text{ filters } j \\text{ of smallest } \\lVert W_j \\rVert_2 .

    Unlike hard pruning the model keeps its full capacity during training, which is what lets
    it recover from a bad early choice. Caution with a BatchNorm after the layer: a zeroed
    filter gives a channel of zero variance within a batch, which the normalization divides by
    ``sqrt(eps)``, so the gradients reaching that filter are amplified; in our runs on
    :func:`refimpl.models.small_vgg` training at 50% diverged (chapter 4 applies SFP to LeNet-5,
    which has no BatchNorm).

    References
    ----------
    .. [1] He, Y., Kang, G., Dong, X., Fu, Y. and Yang, Y. (2018) Soft filter pruning for
       accelerating deep convolutional neural networks. IJCAI, 2234-2240.

    See chapter 4 of the book, "Soft filter pruning". We zero after every epoch, as the paper
    does; it also sets the optimizer's momentum of those filters to zero, which we do not
    touch (the optimizer owns it).
    """

    def __init__(
        self, sparsity: float | Mapping[str, float], layers: Any = None
    ) -> None:
        from .magnitude import check_sparsity

        if isinstance(sparsity, Mapping):
            self.sparsity = {str(k): check_sparsity(v) for k, v in sparsity.items()}
        else:
            if layers is None:
                raise ValueError("layers is required when sparsity is one number")
            value = check_sparsity(sparsity)
            self.sparsity = {str(name): value for name in layers}
        if not self.sparsity:
            raise ValueError("SoftFilterPruning needs at least one layer")
        self.history: list[dict[str, np.ndarray]] = []

    def _zero(self, model: Sequential) -> dict[str, np.ndarray]:
        from .selection import select_per_layer

        kept = {}
        for name, s in self.sparsity.items():
            layer = model[name]
            if not layer.weighted:
                raise TypeError(f"layer {name!r} is a {type(layer).__name__}, not Conv2d/Linear")
            keep = select_per_layer(l2_filter_scores(layer), s)
            drop = np.setdiff1d(np.arange(_units(layer)), keep)
            try:
                key = layer.trained_tensor("weight")  # soft pruning zeroes the values, not a mask
            except ValueError:
                raise ValueError(
                    f"layer {name!r}: SoftFilterPruning needs a plain or masked weight"
                ) from None
            layer.params[key][drop] = 0
            kept[name] = keep
        return kept

    def on_epoch_end(self, model: Sequential, epoch: int, history: Any) -> None:
        self.history.append(self._zero(model))

    def keep(self, model: Sequential) -> dict[str, np.ndarray]:
        """The filters to keep now: per layer, all but the ``round(sparsity * C_out)`` weakest.

        Zeroes the weakest filters first (as an epoch end does), so that
        ``remove_units``/``shrink`` with this result leave the function unchanged.
        """
        return self._zero(model)
