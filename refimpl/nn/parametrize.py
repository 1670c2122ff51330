"""Weight parametrizations: how a weight is stored, trained and deployed, as a chain of steps.

A layer's tensor (``"weight"``) may carry a *chain* of parametrizations, as
``torch.nn.utils.parametrize`` does. The chain starts from a stored base tensor
``params["weight.orig"]`` and applies each step in turn::

    W = P_n( ... P_2( P_1(orig) ) ... )

Each step maps the tensor below it, ``x``, and its own stored tensors to the tensor above it
(:meth:`Parametrization.materialize`), and maps the gradient of its output back to ``x`` and to
its own stored tensors (:meth:`Parametrization.pullback`). A step of the first kind *transforms*
``x`` (a mask ``x * M``; a quantizer ``Q(x)`` with a straight-through gradient); a step of the
second kind *replaces* it with tensors of its own (a codebook and indices; hashed buckets) and
passes no gradient down (``uses_input = False``).

A step may also declare a *support* (:meth:`Parametrization.support`): the entries that may be
nonzero. A mask does. The chain's output is zero outside the support of every step in it, so a
pruned zero stays zero through any later step (a quantizer, sharing, hashing, a binarization)
and any optimizer: the weight never sees the pruned entries again.

Where the arrays live. The layer owns every array, in its ``params`` (trained) and ``buffers``
(not trained) dicts, under the tensor's name and a dot: a pruned, then shared weight stores
``params["weight.orig"]``, ``buffers["weight.mask"]``, ``params["weight.codebook"]`` and
``buffers["weight.indices"]``; that is what ``named_parameters()`` and ``state_dict()`` show
(PyTorch's ``torch.nn.utils.prune`` names the first pair ``weight_orig`` and ``weight_mask``).
A parametrization object holds *configuration only*, plus, for a few, the initial values it was
built from; the same object can serve many layers. Edit a mask through :meth:`Mask.update`,
never by writing its arrays.

What a file stores. :meth:`Parametrization.deploy` says which arrays a deployed file needs for a
step's output (codes and scales for a quantizer, codebook and indices for sharing, buckets and a
seed for hashing) and :meth:`Parametrization.undeploy` rebuilds the values from them. The
compressed model file (:mod:`refimpl.coding.container`) writes exactly these arrays, and the cost
model (:func:`refimpl.cost.profile`) counts their bytes by encoding them the same way: one size
model. See chapter 2 of the book, "Parametrizations".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass
class Deployed:
    """The arrays a deployed file stores for the values of one parametrized tensor.

    Attributes
    ----------
    config : dict
        JSON-serializable settings that :meth:`Parametrization.undeploy` needs (bit width,
        seed, ...).
    floats : dict of str to ndarray
        Real arrays (codebooks, scales), stored at the tensor's float width.
    ints : dict of str to ndarray of non-negative int
        Integer arrays (codes, indices), stored as packed or Huffman-coded streams.
    """

    config: dict[str, Any] = field(default_factory=dict)
    floats: dict[str, np.ndarray] = field(default_factory=dict)
    ints: dict[str, np.ndarray] = field(default_factory=dict)


class Parametrization:
    """One step of a weight's chain: configuration, and the maps between stored and used tensors.

    Subclasses implement :meth:`materialize` and :meth:`pullback`, and may override
    :meth:`init` (the step's own stored tensors), :meth:`constrain`, :meth:`support`,
    :meth:`deploy` and :meth:`undeploy`. Every subclass is registered by its class name in
    :attr:`registry`, which the compressed-model file uses to rebuild deployed values.

    Attributes
    ----------
    uses_input : bool
        ``True`` (default) if the output depends on the tensor below (``x``) and a gradient
        flows to it; ``False`` if the step replaces ``x`` with tensors of its own.
    keeps_values : bool
        ``True`` if the output is the input times the step's support (a mask): the step stores
        no values of its own, so a file stores those of the steps below it.
    """

    registry: ClassVar[dict[str, type[Parametrization]]] = {}
    uses_input: ClassVar[bool] = True
    keeps_values: ClassVar[bool] = False
    #: How the compressed model file names the values this step deploys ("shared", ...).
    file_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Parametrization.registry[cls.__name__] = cls
        if not cls.__dict__.get("file_name"):
            cls.file_name = cls.__name__.lower()

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        """This step's own ``(params, buffers)``, built from the tensor below it, ``x``.

        The default is a step with no stored tensors of its own.
        """
        return {}, {}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        """The step's output: the tensor the next step (or the layer) uses."""
        raise NotImplementedError

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray | None, Arrays]:
        """Map ``grad`` (of the loss w.r.t. the output) to ``(grad w.r.t. x, grads of params)``.

        The first is ``None`` when no gradient flows to ``x`` (``uses_input = False``).
        """
        raise NotImplementedError

    def constrain(self, params: Arrays, buffers: Arrays) -> None:  # noqa: B027 - optional hook
        """Restore constraints on the step's own stored tensors, in place, after an update."""

    def support(self, params: Arrays, buffers: Arrays) -> np.ndarray | None:
        """Boolean array of the entries allowed to be nonzero, or ``None`` for all of them."""
        return None

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed | None:
        """What a deployed file stores for the output values ``w[keep]`` (C order).

        ``x`` is this step's input, ``w`` its output, ``keep`` a boolean array of the entries
        stored (the chain's support, or every entry). ``None`` (the default) means the step
        stores nothing of its own and the chain's output values are stored as floats.
        """
        return None

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        """The values ``w[keep]`` (1-D, C order, float64) rebuilt from :meth:`deploy`'s arrays."""
        raise NotImplementedError(f"{cls.__name__} stores nothing of its own")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _as_bool_mask(mask: Any, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{name} must be boolean or hold only 0 and 1")
        mask = mask.astype(bool)
    return mask


class Mask(Parametrization):
    """Pruning mask: the step's output is ``x * M`` with a fixed binary mask ``M``.

    The gradient reaching ``x`` is ``dL/dW * M``, so a masked entry receives no gradient; and
    since ``M`` is also the step's support, a masked entry of the weight is exactly zero after
    any later step of the chain, any optimizer (momentum, Adam, weight decay) and any number of
    updates, even if the stored base tensor drifts there.

    Parameters
    ----------
    mask : ndarray of bool or {0, 1}, same shape as the weight
        ``True`` (or 1) keeps an entry, ``False`` (or 0) removes it.

    Notes
    -----
    Stored tensors: ``buffers["mask"]`` (M, in the weight's dtype), besides the chain's base
    ``params["orig"]``. A chain holds at most one mask: pruning an already masked tensor again
    goes through :meth:`Mask.update`, which ANDs (or replaces) the stored mask.

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.nn import Linear, Mask
    >>> layer = Linear(3, 2, rng=0).parametrize("weight", Mask([[1, 0, 1], [0, 1, 1]]))
    >>> sorted(k for k, _ in layer.named_parameters()), sorted(layer.buffers)
    (['bias', 'weight.orig'], ['weight.mask'])
    >>> Mask.update(layer, "weight", [[1, 1, 1], [0, 0, 1]])  # ANDed: entry (0, 1) stays pruned
    >>> Mask.of(layer, "weight").astype(int).tolist()
    [[1, 0, 1], [0, 0, 1]]
    """

    keeps_values = True

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = _as_bool_mask(mask)

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.mask.shape != x.shape:
            raise ValueError(f"mask has shape {self.mask.shape} but the weight has shape {x.shape}")
        return {}, {"mask": self.mask.astype(x.dtype)}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return x * buffers["mask"]

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        return grad * buffers["mask"], {}

    def support(self, params: Arrays, buffers: Arrays) -> np.ndarray:
        return buffers["mask"] != 0

    # -- the one way to read and edit a layer's mask --------------------------------------------
    @staticmethod
    def of(layer: Any, name: str = "weight") -> np.ndarray | None:
        """The boolean mask of ``layer``'s tensor ``name``, or ``None`` if it has none."""
        found = layer.find_parametrization(name, Mask)
        if found is None:
            return None
        _, buffers = layer.stored_arrays(name, found)
        return buffers["mask"] != 0

    @staticmethod
    def update(
        layer: Any, name: str, mask: Any, *, mode: str = "and", regrow_value: float = 0.0
    ) -> None:
        """Set the mask of ``layer``'s tensor ``name``; install a :class:`Mask` if it has none.

        Parameters
        ----------
        layer : Layer
        name : str
            The parametrized tensor, usually ``"weight"``.
        mask : ndarray of bool or {0, 1}
            The new mask, the tensor's shape.
        mode : {"and", "replace"}
            ``"and"`` keeps an entry only if both the stored and the new mask keep it (pruning
            never revives a weight); ``"replace"`` takes ``mask`` as is, so entries may come back
            (sparse evolutionary training regrows connections this way).
        regrow_value : float or ndarray
            With ``"replace"``, the value the chain's base tensor takes at entries that come
            back: one float (0 by default), or one value per regrown entry in C order (SET draws
            them at random). Only possible when the mask is the chain's first step.
        """
        if mode not in ("and", "replace"):
            raise ValueError(f"mode must be 'and' or 'replace', got {mode!r}")
        new = _as_bool_mask(mask)
        found = layer.find_parametrization(name, Mask)
        if found is None:
            layer.parametrize(name, Mask(new))
            return
        params, buffers = layer.stored_arrays(name, found)
        old = buffers["mask"]
        if new.shape != old.shape:
            raise ValueError(f"mask has shape {new.shape} but {name} has shape {old.shape}")
        if mode == "and":
            new = new & (old != 0)
        else:
            regrown = new & (old == 0)
            if regrown.any():
                if found != 0 or f"{name}.orig" not in layer.params:
                    raise ValueError(
                        f"{name}: entries can come back only when the mask is the chain's first "
                        "step (a later step has already been built from the pruned weight)"
                    )
                base = layer.params[f"{name}.orig"]
                base[regrown] = np.asarray(regrow_value, dtype=base.dtype)
        old[...] = new.astype(old.dtype)

    def merge_into(self, layer: Any, name: str) -> None:
        """A second mask on a masked tensor ANDs into the first (see :meth:`update`)."""
        Mask.update(layer, name, self.mask, mode="and")

    def __repr__(self) -> str:
        return "Mask()"
