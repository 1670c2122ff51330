"""Surgery: how the architecture changes. One home for every operation that rebuilds a model.

* Unit surgery (:mod:`.units`): remove neurons or filters for real (:func:`remove_units`,
  :func:`shrink`), with their constant outputs folded into the next layer; the masked model that
  computes the same (:func:`mask_units`). Each layer
  declares how its units are sliced (:meth:`refimpl.nn.Layer.slice_units`,
  ``slice_inputs``) and how a constant passes through it, so the surgery switches on no type.
* Substitution (:mod:`.substitute`): replace one layer by several (:func:`substitute`), as the
  low-rank factorizations of :mod:`refimpl.lowrank` do, and measure what it changes
  (:func:`relative_output_error`, :func:`layer_inputs`).

The pruning criteria (:mod:`refimpl.pruning`) decide *which* units go; the factorizations
(:mod:`refimpl.lowrank`) decide *what* replaces a layer; this package performs the change. See
chapter 4 of the book, "Surgery", and chapter 7, "Low-rank factorization".
"""

from .substitute import layer_inputs, relative_output_error, substitute
from .units import (
    UnitChain,
    as_keep,
    mask_units,
    remove_units,
    shrink,
    unit_chain,
    unit_count,
    unit_count_of,
)

__all__ = [
    "UnitChain",
    "as_keep",
    "layer_inputs",
    "mask_units",
    "relative_output_error",
    "remove_units",
    "shrink",
    "substitute",
    "unit_chain",
    "unit_count",
    "unit_count_of",
]
