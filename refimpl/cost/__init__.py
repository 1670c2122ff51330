"""Cost model: parameters, multiply-accumulates, FLOPs, activation memory and stored bytes.

The same profiler reads two kinds of input:

* an **architecture spec**, a tree of small frozen dataclasses (:class:`Conv`, :class:`Dense`,
  :class:`MaxPool`, ... and the composites :class:`Seq`, :class:`Branches`, :class:`Residual`) that
  describes a network without any weights. :func:`alexnet`, :func:`vgg16`, :func:`googlenet` and
  :func:`resnet50` describe the four networks of Table 1 of the survey [1]_, so the book can
  reproduce that table from first principles (see chapter 1, "Where the cost is");
* a **model** of :mod:`refimpl.nn` (a ``Sequential`` or a single layer). Its parameters are the
  arrays the layers store and its nonzeros are counted in the effective weights, so a pruned model
  reports what is left of it.

:func:`profile` returns a :class:`Profile`: one :class:`LayerCost` row per layer plus totals, the
conv/FC shares of parameters and of MACs, and a text :meth:`Profile.table`.

Counting conventions
--------------------
Shapes
    Per sample, without the batch axis: ``(C, H, W)`` for images, ``(features,)`` for vectors.
    A convolution or pooling window gives ``H_out = floor((H + 2p - d (k - 1) - 1) / s) + 1``
    (``ceil`` instead of ``floor`` with ``ceil_mode=True``, as in PyTorch and Caffe's pooling).
Parameters
    Trainable numbers: weights and biases, and a batch normalization's scale and shift (``2C``),
    as ``torchvision`` counts them. A batch normalization's running mean and variance are
    *buffers*: not parameters, but stored (see *stored bytes*).
MACs
    Multiply-accumulates of the weights of convolutions and dense layers only, the convention of
    Table 1 of [1]_ and of the usual figures (VGG-16 15.5 G, ResNet-50 4.1 G): a convolution
    costs ``H_out W_out C_out (C_in / groups) kH kW``, a dense layer ``in_features *
    out_features``. Pooling, activations, batch normalization, additions and concatenations cost
    0 MACs here: they are cheap in arithmetic (though not in memory traffic).
FLOPs
    ``FLOPs = 2 (MACs + bias outputs)``: a multiply-accumulate is two operations, and a bias is
    costed as one more multiply-accumulate per output, which is exactly the survey's formula
    ``2 H W (C_in K^2 + 1) C_out`` for a convolution with bias (and ``2 (in + 1) out`` for a
    dense layer with bias). Without bias, ``FLOPs = 2 MACs``.
Activations
    The number of elements each layer outputs for one sample, i.e. the memory a forward pass
    allocates if it keeps every output (as a training step does). Views (``Flatten``) and layers
    that are the identity at inference (``Dropout``) allocate nothing and count 0. A
    concatenation or a residual addition allocates its output and counts it.
Stored bytes
    ``(parameters + buffers) * dtype_bytes`` (float32: 4), rounded up per layer: what a dense
    file of the model holds. A compressed layer reports its own (smaller) storage through the
    protocol below.

Protocol for layers
-------------------
A layer of :mod:`refimpl.nn` describes its own cost, as it describes everything else about
itself. The profiler asks it, in this order:

1. ``layer_cost(input_shape, dtype_bytes) -> LayerCost``: the full row. Fields left ``None``
   are filled in by the profiler (see :class:`LayerCost`), an empty ``name`` becomes the
   layer's name, and ``output_shape`` carries the shape on to the next layer. Use it when the
   storage is not dense, e.g. a hashed layer (``K`` stored numbers, ``in * out`` MACs); a layer
   without parameters needs only ``LayerCost("", "mylayer", input_shape, output_shape)``.
2. ``cost_spec() -> spec or list of specs``: the layer *is* this spec (every core layer returns
   its own: ``Linear`` a :class:`Dense`, ``Conv2d`` a :class:`Conv`, ``ReLU`` an :class:`Act`,
   ...) or this small architecture, e.g. a dense layer factorized by SVD is
   ``[Dense(n, r, bias=False), Dense(r, m)]``, whose rows are named ``"<layer>.<row>"``.

A layer with a parametrized tensor (pruned, shared, quantized) keeps the row of its spec but
reports the nonzeros of the tensors it computes with, and, as stored bytes, what the compressed
model file stores for it.

Otherwise the profiler raises ``TypeError`` naming the layer and its type.

References
----------
.. [1] Alqahtani, A., Xie, X. & Jones, M. W. (2021). Literature Review of Deep Network
   Compression. *Informatics* 8(4), 77. Table 1 and the FLOPs formula of section 1.
.. [2] Molchanov, P. et al. (2017). Pruning Convolutional Neural Networks for Resource
   Efficient Inference. *ICLR*. (The source of the survey's FLOPs formula.)
"""


from .architectures import alexnet, googlenet, resnet50, vgg16
from .profiler import profile
from .results import CATEGORIES, LayerCost, Profile, summary_table
from .specs import (
    LRN,
    Act,
    AvgPool,
    BatchNorm,
    Branches,
    Conv,
    Dense,
    Drop,
    Flat,
    GlobalAvgPool,
    MaxPool,
    Residual,
    Seq,
    Spec,
)

__all__ = [
    "CATEGORIES",
    "LRN",
    "Act",
    "AvgPool",
    "BatchNorm",
    "Branches",
    "Conv",
    "Dense",
    "Drop",
    "Flat",
    "GlobalAvgPool",
    "LayerCost",
    "MaxPool",
    "Profile",
    "Residual",
    "Seq",
    "Spec",
    "alexnet",
    "googlenet",
    "profile",
    "resnet50",
    "summary_table",
    "vgg16",
]
