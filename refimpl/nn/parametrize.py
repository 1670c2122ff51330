"""Weight parametrizations: how a weight is stored and trained.

A parametrization maps a layer's *stored* tensors to the weight the layer uses
(:meth:`Parametrization.materialize`) and maps the gradient of that weight back to the stored
tensors (:meth:`Parametrization.pullback`). With this one mechanism the same layers, optimizers and
training loop fine-tune every compression method: a mask (pruning), a codebook with indices
(weight sharing), a hash (HashedNets), a quantizer with a straight-through gradient.

The stored tensors live in the layer's own ``params`` (trained) and ``buffers`` (not trained)
dicts, under the weight's name and a dot: a masked ``weight`` is stored as ``params["weight.orig"]``
and ``buffers["weight.mask"]``, which is what ``named_parameters()`` and ``state_dict()`` show
(PyTorch's ``torch.nn.utils.prune`` calls the same pair ``weight_orig`` and ``weight_mask``). The
layer is the single owner of the arrays; a parametrization object only holds configuration and is
handed the arrays it needs. See chapter 2 of the book, "Parametrizations".
"""

from __future__ import annotations

import numpy as np

Arrays = dict[str, np.ndarray]


class Parametrization:
    """Base class: the stored tensors of one weight and how they become that weight.

    Subclasses implement :meth:`init`, :meth:`materialize` and :meth:`pullback`, and may
    override :meth:`constrain` (called after every optimizer step).
    """

    def init(self, weight: np.ndarray) -> tuple[Arrays, Arrays]:
        """Return ``(params, buffers)`` that represent ``weight`` under this parametrization."""
        raise NotImplementedError

    def materialize(self, params: Arrays, buffers: Arrays) -> np.ndarray:
        """Return the weight the layer uses, computed from its stored tensors."""
        raise NotImplementedError

    def pullback(self, grad_weight: np.ndarray, params: Arrays, buffers: Arrays) -> Arrays:
        """Map the gradient of the loss with respect to the weight to the stored ``params``."""
        raise NotImplementedError

    def constrain(self, params: Arrays, buffers: Arrays) -> None:  # noqa: B027 - optional hook
        """Restore constraints on the stored tensors in place after an optimizer step."""

    def stored_bits(self, params: Arrays, buffers: Arrays) -> int | None:
        """Bits a deployed model needs for this weight, or None for "its stored params as is".

        The cost model (:func:`refimpl.cost.profile`) asks every parametrization, so a shared,
        quantized or binary weight reports its true size (for instance ``n`` indices of
        ``log2 k`` bits plus a ``k``-entry codebook) rather than its training-time float copy.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Mask(Parametrization):
    """Pruning mask: the weight is ``W = theta * M`` with a fixed binary mask ``M``.

    The gradient reaching the stored ``theta`` is ``dL/dW * M``, so a masked entry receives no
    gradient; and since the layer only ever uses ``theta * M``, a masked entry of ``W`` is exactly
    zero after any optimizer (momentum, Adam, weight decay) and any number of steps, even if
    ``theta`` itself drifts there.

    Parameters
    ----------
    mask : ndarray of bool or {0, 1}, same shape as the weight
        ``True`` (or 1) keeps an entry, ``False`` (or 0) removes it.

    Notes
    -----
    Stored tensors: ``params["orig"]`` (theta, initialised to the current weight) and
    ``buffers["mask"]`` (M, in the weight's dtype). Masks compose: parametrizing an already
    masked weight with a new mask starts from the materialized (already zeroed) weight, so a
    removed entry is never revived.
    """

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                raise ValueError("mask must be boolean or hold only 0 and 1")
            mask = mask.astype(bool)
        self.mask = mask

    def init(self, weight: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.mask.shape != weight.shape:
            raise ValueError(
                f"mask has shape {self.mask.shape} but the weight has shape {weight.shape}"
            )
        return {"orig": weight.copy()}, {"mask": self.mask.astype(weight.dtype)}

    def materialize(self, params: Arrays, buffers: Arrays) -> np.ndarray:
        return params["orig"] * buffers["mask"]

    def pullback(self, grad_weight: np.ndarray, params: Arrays, buffers: Arrays) -> Arrays:
        return {"orig": grad_weight * buffers["mask"]}
