"""refimpl: the reference implementation of *Compressing Deep Networks*.

A small, dependency-light NumPy package. ``import refimpl as rf`` gives every subpackage and the
calls a chapter uses most:

* the network core, :mod:`refimpl.nn` (layers with hand-written backward passes, losses,
  optimizers, ``rf.fit``, ``rf.finetune``, ``rf.evaluate``, ``rf.accuracy``, ``rf.predict``);
* data, :mod:`refimpl.data` (``rf.load_digits``, ``rf.load_fashion_mnist``), reference models,
  :mod:`refimpl.models`, and their trained baselines, :mod:`refimpl.baselines`
  (``rf.load_baseline``);
* the cost model, :mod:`refimpl.cost` (``rf.profile``), timing, :mod:`refimpl.timing`
  (``rf.time_inference``, ``rf.time_call``), and tables, :mod:`refimpl.report`
  (``rf.format_table``);
* networks designed small, :mod:`refimpl.compact` (MobileNet, SqueezeNet, ShuffleNet and
  Network-in-Network blocks), and knowledge distillation, :mod:`refimpl.distill`
  (``rf.fit(student, data, teacher=..., loss=DistillationLoss(T, alpha))``);
* the methods, by the four kinds of thing a compression method is: **criteria** (which weights
  or units matter) in :mod:`refimpl.pruning`; **parametrizations** (how a weight is stored and
  trained: the mechanism in :mod:`refimpl.nn.parametrize`, the masks of pruning, the methods of
  :mod:`refimpl.quantization`); **surgery** (how the architecture changes) in
  :mod:`refimpl.surgery`, fed by the factorizations of :mod:`refimpl.lowrank`; **codecs** (how
  the bytes are stored) in :mod:`refimpl.coding`.

Conventions of the whole package (names, ranges, copies, seeds) are written down in
``refimpl/README.md``.
"""

__version__ = "0.1.0"

from . import (  # noqa: E402 - the subpackages are the package's front door
    baselines,
    coding,
    compact,
    cost,
    data,
    distill,
    lowrank,
    models,
    nn,
    pruning,
    quantization,
    report,
    surgery,
    timing,
)
from .baselines import baseline_info, load_baseline  # noqa: E402
from .cost import profile  # noqa: E402
from .data import load_digits, load_fashion_mnist  # noqa: E402
from .nn import (  # noqa: E402
    Sequential,
    accuracy,
    evaluate,
    finetune,
    fit,
    predict,
)
from .report import format_table  # noqa: E402
from .timing import time_call, time_inference  # noqa: E402

__all__ = [
    "Sequential",
    "accuracy",
    "baseline_info",
    "baselines",
    "coding",
    "compact",
    "cost",
    "data",
    "distill",
    "evaluate",
    "finetune",
    "fit",
    "format_table",
    "load_baseline",
    "load_digits",
    "load_fashion_mnist",
    "lowrank",
    "models",
    "nn",
    "predict",
    "profile",
    "pruning",
    "quantization",
    "report",
    "surgery",
    "time_call",
    "time_inference",
    "timing",
]
