"""Knowledge distillation: a small student learns from a large teacher's outputs.

* :class:`DistillationLoss` (Hinton, Vinyals and Dean 2015): soft targets at a temperature plus
  the hard labels; ``fit(student, data, teacher=teacher, loss=DistillationLoss(T, alpha))``
  trains with the teacher's logits computed on every batch (no second training loop), and
  ``finetune`` passes ``teacher`` on, so distillation is also a fine-tuning signal for a
  pruned or quantized network.
* :class:`HintLoss` and :func:`hint_models` (FitNets, Romero et al. 2015): a student's middle
  layer learns, through a regressor, to predict a teacher's middle layer, before the whole
  student is distilled.
* :func:`best_class_bias`: the bias correction of Hinton et al.'s omitted-class experiment.

See chapter 8 of the book, "Distillation and compact design". The other half of that chapter,
networks designed small, is in :mod:`refimpl.compact` and :mod:`refimpl.nn.blocks`.
"""

from .bias import BiasSearch, best_class_bias
from .hints import HintModels, hint_models
from .losses import DistillationLoss, HintLoss

__all__ = [
    "BiasSearch",
    "DistillationLoss",
    "HintLoss",
    "HintModels",
    "best_class_bias",
    "hint_models",
]
