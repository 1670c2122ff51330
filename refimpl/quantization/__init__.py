"""Quantization and weight sharing, each a parametrization that the common ``fit`` fine-tunes.

* uniform affine quantization, simulated and in true integers (:mod:`.uniform`);
* fixed point with round-to-nearest or stochastic rounding (:mod:`.fixed_point`);
* k-means weight sharing (:mod:`.kmeans`; pruned zeros are index ``-1``, see :data:`PRUNED`);
* product quantization (:mod:`.pq`) and HashedNets (:mod:`.hashed`);
* binary weights and activations: BinaryConnect, BNN, XNOR-Net (:mod:`.binary`);
* powers of two: INQ and shift-based products (:mod:`.pow2`);
* post-training quantization from calibration data: RTN, OBQ and GPTQ (:mod:`.gptq`);
* ternary weights: TWN and TTQ (:mod:`.ternary`); soft weight-sharing under a Gaussian-mixture
  prior (:mod:`.soft_sharing`); Q-CNN, product quantization of the response (:mod:`.qcnn`).

See chapter 5 of the book, "Quantization and weight sharing".
"""

from .apply import quantize_model
from .binary import (
    BinaryActivation,
    BinaryConnect,
    XNORWeights,
    binarize,
    deterministic,
    glorot_scale,
    xnor_scale,
)
from .fixed_point import FixedPoint, fixed_point_range, round_fixed
from .gptq import (
    GridQuant,
    QuantResult,
    gptq_quantize,
    obq_quantize,
    one_shot_quantize,
    rtn_quantize,
)
from .hashed import HashedLinear, HashedWeights, bucket_hash, sign_hash
from .kmeans import (
    PRUNED,
    KMeansResult,
    SharedWeights,
    kmeans,
    kmeans_1d,
    kmeans_1d_exact,
    kmeans_init,
    kmeans_quantize,
    shared_weight,
)
from .pow2 import (
    INQ,
    PowerOfTwoAct,
    inq_exponent_range,
    inq_quantize,
    inq_step,
    pow2_decompose,
    pow2_round,
    shift_matmul,
)
from .pq import ProductQuantized, pq_compression_rate, pq_reconstruct, product_quantize
from .qcnn import QCNNResult, qcnn_quantize, response_error
from .soft_sharing import (
    MixturePrior,
    SoftWeightSharing,
    mixture_neg_log_prior,
    mixture_responsibilities,
)
from .ternary import TTQ, TWN, optimal_ternary, ternary_codes, twn_ternarize, twn_threshold
from .uniform import (
    FakeQuantize,
    IntegerLinear,
    UniformQuant,
    dequantize,
    fake_quantize,
    qparams,
    qrange,
    quantize,
)

__all__ = [
    "INQ",
    "KMeansResult",
    "PRUNED",
    "BinaryActivation",
    "BinaryConnect",
    "FakeQuantize",
    "FixedPoint",
    "HashedLinear",
    "HashedWeights",
    "IntegerLinear",
    "PowerOfTwoAct",
    "ProductQuantized",
    "SharedWeights",
    "UniformQuant",
    "XNORWeights",
    "binarize",
    "bucket_hash",
    "dequantize",
    "deterministic",
    "fake_quantize",
    "fixed_point_range",
    "glorot_scale",
    "inq_exponent_range",
    "inq_quantize",
    "inq_step",
    "kmeans",
    "kmeans_1d",
    "kmeans_1d_exact",
    "kmeans_init",
    "kmeans_quantize",
    "pow2_decompose",
    "pow2_round",
    "pq_compression_rate",
    "pq_reconstruct",
    "product_quantize",
    "qparams",
    "qrange",
    "quantize",
    "quantize_model",
    "round_fixed",
    "shared_weight",
    "shift_matmul",
    "sign_hash",
    "xnor_scale",
    "gptq_quantize",
    "GridQuant",
    "obq_quantize",
    "one_shot_quantize",
    "QuantResult",
    "rtn_quantize",
    "TTQ",
    "TWN",
    "optimal_ternary",
    "ternary_codes",
    "twn_ternarize",
    "twn_threshold",
    "MixturePrior",
    "SoftWeightSharing",
    "mixture_neg_log_prior",
    "mixture_responsibilities",
    "QCNNResult",
    "qcnn_quantize",
    "response_error",
]
