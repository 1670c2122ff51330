"""Every method of the book under one budget: ``python -m refimpl.benchmark``.

The benchmark behind chapter 9 ("Combining methods and choosing among them"). It follows
what the pruning literature asks of a fair comparison (Blalock et al. 2020; ShrinkBench): the
same starting weights for every method (the stored baselines, :func:`refimpl.load_baseline`),
the same fine-tuning budget (``--finetune-epochs`` passes of SGD over the same subset of the
training set, drawn by the seed), several seeds, the random and magnitude baselines, whole
trade-off curves (several ``--targets``), and the compression ratio and the measured speed-up
side by side.

Each run (model, method, target, seed) writes one record:

``model``, ``method``, ``target``, ``seed``, ``knob`` (what the target became, e.g.
``"sparsity 0.750"``), ``accuracy_before_finetune``, ``accuracy``, ``dense_accuracy``,
``params_nonzero`` and ``macs`` (:func:`refimpl.profile` of the compressed model; a masked
layer counts its dense MACs), ``bytes`` (the length of the compressed model file,
:func:`refimpl.coding.dumps_compressed`, the book's one size model: CSR with relative indices
for masked weights, codebook indices for shared weights, codes for quantized weights, Huffman
coding of the integer streams), ``dense_bytes`` (the dense float32 file), ``compression``
(``dense_bytes / bytes``), ``latency_s`` (one pass over the timing images of the *deployed*
form, see below), ``dense_latency_s`` (the baseline, timed in the same call of
:func:`refimpl.timing.time_inference`, interleaved), ``speedup`` (``dense_latency_s /
latency_s``), ``compress_seconds`` (the method's own time before fine-tuning: scoring,
factorizing, clustering) and ``finetune_epochs``.

How a target ``t`` (a nominal compression ratio, ``t >= 1``) becomes each method's knob:

========================  =================================================================
method                    knob for target ``t``
========================  =================================================================
random, magnitude,        unstructured masks removing ``1 - 1/t`` of the weights: per layer
obd, obs                  (random, magnitude, obs) or over the whole network
magnitude_global          (magnitude_global, obd)
units_l1, units_apoz,     whole units (neurons, filters) removed by the criterion and
units_thinet              :func:`refimpl.surgery.shrink`, ``1 - 1/t`` of the MACs
                          (:func:`refimpl.pruning.select_to_flop_budget`, uniform)
kmeans                    weight sharing (:class:`refimpl.quantization.SharedWeights`) with
                          ``2**b`` clusters per layer, ``b = clip(round(32/t), 1, 8)``
uniform                   :class:`refimpl.quantization.UniformQuant`, per output channel,
                          ``b = clip(round(32/t), 2, 8)`` bits
svd_cp                    truncated SVD of dense layers (all but the last) and CP of
                          convolutions with more than one input channel, each at the rank
                          whose factors hold ``1/t`` of the layer's weights
deep_compression          Han et al.: magnitude masks keeping ``3/t`` of each layer's
                          weights (the last layer keeps more), fine-tune half the budget,
                          share with 31 clusters (dense) / 255 (conv), fine-tune the other
                          half, Huffman-coded file
units_svd_uniform         units (L1) removed for ``1 - 1/f`` of the MACs, then SVD/CP at
                          ``1/f`` of the weights, ``f = sqrt(t / 4)``, fine-tune half, then
                          8-bit uniform quantization, fine-tune the other half
cp_conv_prune_fc          CP of convolutions at ``1/t`` of their weights, magnitude masks
                          removing ``1 - 1/t`` of the dense layers' weights
========================  =================================================================

The measured ``compression`` differs from ``t``: the file stores indices, codebooks, biases
and a header. Plot against the measured value.

Every method fine-tunes with SGD (momentum 0.9) on the same images for the same number of
epochs; the learning rate is the model's, times the method's ``lr_scale`` (see
:class:`Method`). Pipelines split the images: half before their last stage, half after.

The deployed form whose latency is measured is the one the method really produces: masked
dense layers as ``scipy.sparse`` CSR matrix products (convolutions stay dense and masked),
uniformly quantized dense layers through the integer path
(:class:`refimpl.quantization.IntegerLinear`, uint8 x int8 products accumulated in int32; codes
under 8 bits would be unpacked to int8 first), shrunk and factorized models as they are,
shared weights as their dense decoded matrices.

Sizes of a run: ``--quick`` runs ``digits_mlp`` and ``digits_cnn``, two targets, every method,
one fine-tuning epoch (a few minutes on one core). The LeNet models fine-tune on 10,000
(LeNet-300-100) or 2,000 (LeNet-5) training images per epoch and score on the first 10,000
or 2,000 test images (LeNet-5's convolutions are slow in NumPy).

``make benchmark`` makes the stored full run: LeNet-300-100 with three seeds and targets 4, 8,
16, 32 (``benchmarks/results/benchmark_lenet_300_100.json``), LeNet-5 with two seeds and targets
4 and 16 (``benchmarks/results/benchmark_lenet5.json``): fewer seeds and targets for LeNet-5,
so that the whole run takes about 20 minutes on one core of a shared machine.

Timing on a loaded machine: a short pass (a small model on few images) often finishes inside
one time slice while a long one is preempted, which inflates the speed-up of small models.
``python -m refimpl.benchmark --retime RESULTS`` measures every point of a stored file again,
once per (model, method, target) on seed 0's deployed form (which fine-tuning does not
change), and writes that latency into every seed's record; ``make benchmark`` does so for
LeNet-300-100, whose passes are the shortest (5,000 timing images).

References
----------
.. [1] Blalock, D., Gonzalez Ortiz, J. J., Frankle, J. and Guttag, J. (2020). What is the
   state of neural network pruning? *MLSys*.
.. [2] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression. *ICLR*.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

from .baselines import baseline_info, load_baseline, load_dataset
from .coding import dumps_compressed
from .cost import profile
from .lowrank import cp_decompose_conv, layer_inputs, rank_for_budget, substitute, svd_compress
from .nn import SGD, Conv2d, Layer, Linear, Sequential, accuracy, finetune, weighted_layers
from .pruning import (
    layerwise_obs_prune,
    obd_prune,
    prune_model,
    random_prune,
    score_units,
    select_to_flop_budget,
)
from .quantization import IntegerLinear, SharedWeights, UniformQuant, quantize_model
from .surgery import shrink
from .timing import time_inference

__all__ = [
    "METHODS",
    "MODELS",
    "Method",
    "ModelSetup",
    "deployed_form",
    "main",
    "run",
    "retime",
    "run_one",
]


# --- models ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSetup:
    """How a model is benchmarked: its data set and the sizes of each subset."""

    dataset: str
    input_shape: tuple[int, ...]
    n_finetune: int  # training images per fine-tuning epoch (drawn by the seed)
    n_test: int  # test images scored (the first ones)
    n_calib: int  # training images for data-driven criteria and calibration
    n_time: int  # test images of one timed pass
    lr: float  # SGD learning rate of fine-tuning (momentum 0.9)


MODELS: dict[str, ModelSetup] = {
    "digits_mlp": ModelSetup("digits", (1, 8, 8), 1348, 449, 500, 449, 0.01),
    "digits_cnn": ModelSetup("digits", (1, 8, 8), 1348, 449, 500, 449, 0.01),
    "lenet_300_100": ModelSetup("fashion_mnist", (1, 28, 28), 10_000, 10_000, 1000, 5000, 0.01),
    "lenet5": ModelSetup("fashion_mnist", (1, 28, 28), 2000, 2000, 500, 200, 0.003),
}


# --- deployed layers (timing only) -------------------------------------------------------------
class _CSRLinear(Layer):
    """A dense layer stored and multiplied as a ``scipy.sparse`` CSR matrix (inference only)."""

    def __init__(self, layer: Linear) -> None:
        super().__init__()
        self.csr = scipy.sparse.csr_matrix(np.asarray(layer.weight, dtype=np.float32))
        self.b = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float32)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        y = np.asarray((self.csr @ x.T).T)
        return y if self.b is None else y + self.b


class _IntegerDense(Layer):
    """A dense layer through :class:`refimpl.quantization.IntegerLinear` (inference only)."""

    def __init__(self, layer: Linear, inputs: np.ndarray) -> None:
        super().__init__()
        lo, hi = min(float(inputs.min()), 0.0), max(float(inputs.max()), 1e-8)
        scale = (hi - lo) / 255
        self.int_layer = IntegerLinear(layer, scale, int(round(-lo / scale)), per_channel=True)

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        return self.int_layer.forward(x).astype(np.float32)


def deploy_csr(model: Sequential, ctx: Context) -> Sequential:
    """Masked dense layers as CSR products; the other layers as they are."""
    return Sequential(*[(n, _CSRLinear(layer) if isinstance(layer, Linear) else layer)
                        for n, layer in model.named_layers()])


def deploy_integer(model: Sequential, ctx: Context) -> Sequential:
    """Dense layers through the integer path (input ranges from the calibration images)."""
    items = []
    for n, layer in model.named_layers():
        if isinstance(layer, Linear):
            layer = _IntegerDense(layer, layer_inputs(model, n, ctx.calib[0]))
        items.append((n, layer))
    return Sequential(*items)


def deploy_as_is(model: Sequential, ctx: Context) -> Sequential:
    """The compressed model itself (shrunk, factorized, shared)."""
    return model


# --- the context of one run --------------------------------------------------------------------
@dataclass
class Context:
    """What a method may use: the baseline, data, seed, and the fine-tuning budget."""

    model_name: str
    setup: ModelSetup
    base: Sequential
    seed: int
    epochs: int
    finetune_data: tuple[np.ndarray, np.ndarray]
    calib: tuple[np.ndarray, np.ndarray]
    used: float = 0.0  # share of the fine-tuning budget already spent

    def tune(self, model: Sequential, share: float, lr_scale: float = 1.0) -> Sequential:
        """Fine-tune ``model`` on the next ``share`` of the budget (a slice of the subset).

        The learning rate is the model's (``ModelSetup.lr``) times ``lr_scale``.
        """
        X, y = self.finetune_data
        start, stop = int(round(self.used * len(X))), int(round((self.used + share) * len(X)))
        self.used += share
        if self.epochs > 0 and stop > start:
            finetune(model, (X[start:stop], y[start:stop]), epochs=self.epochs,
                     optimizer=SGD(self.setup.lr * lr_scale, momentum=0.9), rng=self.seed)
        return model


def _hidden(model: Sequential) -> list[str]:
    """Names of the weighted layers but the last (the classifier keeps its outputs)."""
    return [n for n, _ in weighted_layers(model)][:-1]


def _sparsity(t: float) -> float:
    return 1.0 - 1.0 / t


def _bits(t: float, low: int, high: int = 8) -> int:
    return int(min(high, max(low, round(32 / t))))


def _units(model: Sequential, ctx: Context, criterion: str, reduction: float) -> Sequential:
    names = [n for n in _hidden(model)]
    X, y = ctx.calib
    opts: dict[str, Any] = {"rng": ctx.seed} if criterion in ("random", "thinet") else {}
    scores = {n: score_units(model, n, criterion, X, y, **opts) for n in names}
    keep = select_to_flop_budget(model, scores, ctx.setup.input_shape, reduction)
    return shrink(model, keep)


def _lowrank(model: Sequential, ctx: Context, fraction: float) -> Sequential:
    """SVD of the hidden dense layers and CP of convolutions (C_in > 1) at ``fraction``."""
    ranks = {}
    hidden = set(_hidden(model))
    for n, layer in weighted_layers(model):
        if isinstance(layer, Linear) and n in hidden:
            r = max(1, rank_for_budget(layer.in_features, layer.out_features, fraction))
            if r * (layer.in_features + layer.out_features) < layer.weight.size:
                ranks[n] = r
    if ranks:
        model = svd_compress(model, ranks)
    for n, layer in list(weighted_layers(model)):
        if isinstance(layer, Conv2d) and layer.in_channels > 1:
            c_out, c_in, kh, kw = layer.weight.shape
            r = max(1, int(fraction * layer.weight.size / (c_out + c_in + kh + kw)))
            model = substitute(model, n, cp_decompose_conv(layer, r, max_iter=25,
                                                           rng=ctx.seed))
    return model


# --- the methods -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One entry of the registry.

    ``compress(ctx, target)`` returns the compressed model before its last fine-tuning and the
    name of its knob; it may spend part of the fine-tuning budget (``ctx.tune``) between
    stages, and the runner spends the rest. ``deploy(model, ctx)`` gives the form whose latency
    is measured.
    """

    family: str
    compress: Callable[[Context, float], tuple[Sequential, str]]
    deploy: Callable[[Sequential, Context], Sequential] = deploy_as_is
    description: str = ""
    models: tuple[str, ...] = field(default_factory=lambda: tuple(MODELS))
    #: learning rate of the last fine-tuning, relative to the model's: a tenth for quantized
    #: and factorized weights (larger steps undo more than they recover), a hundredth (Deep
    #: Compression's clusters of a pruned layer) or a thousandth (k-means of a dense layer)
    #: for shared weights, whose gradient sums over every weight of a cluster and otherwise
    #: diverges
    lr_scale: float = 1.0


def _random(ctx: Context, t: float) -> tuple[Sequential, str]:
    s = _sparsity(t)
    return random_prune(ctx.base.copy(), s, rng=ctx.seed), f"sparsity {s:.3f} per layer"


def _magnitude(ctx: Context, t: float) -> tuple[Sequential, str]:
    s = _sparsity(t)
    return prune_model(ctx.base.copy(), s), f"sparsity {s:.3f} per layer"


def _magnitude_global(ctx: Context, t: float) -> tuple[Sequential, str]:
    s = _sparsity(t)
    return prune_model(ctx.base.copy(), s, scope="global"), f"sparsity {s:.3f} global"


def _obd(ctx: Context, t: float) -> tuple[Sequential, str]:
    s = _sparsity(t)
    return obd_prune(ctx.base.copy(), ctx.calib, s, scope="global"), f"sparsity {s:.3f} global"


def _obs(ctx: Context, t: float) -> tuple[Sequential, str]:
    s = _sparsity(t)
    return layerwise_obs_prune(ctx.base.copy(), ctx.calib[0], s), f"sparsity {s:.3f} per layer"


def _unit_method(criterion: str) -> Callable[[Context, float], tuple[Sequential, str]]:
    def compress(ctx: Context, t: float) -> tuple[Sequential, str]:
        r = _sparsity(t)
        return _units(ctx.base, ctx, criterion, r), f"MAC reduction {r:.3f}"

    return compress


def _kmeans(ctx: Context, t: float) -> tuple[Sequential, str]:
    b = _bits(t, 1)
    model = ctx.base.copy()
    for _, layer in weighted_layers(model):
        layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 2**b))
    return model, f"{2**b} clusters"


def _uniform(ctx: Context, t: float) -> tuple[Sequential, str]:
    b = _bits(t, 2)
    return quantize_model(ctx.base.copy(), UniformQuant(b, per_channel=True)), f"{b} bits"


def _svd_cp(ctx: Context, t: float) -> tuple[Sequential, str]:
    return _lowrank(ctx.base, ctx, 1 / t), f"factors {1 / t:.3f} of each layer"


def _deep_compression(ctx: Context, t: float) -> tuple[Sequential, str]:
    density = min(1.0, 3 / t)
    names = [n for n, _ in weighted_layers(ctx.base)]
    rates = {n: 1 - density for n in names[:-1]}
    rates[names[-1]] = 0.8 * (1 - density)
    model = prune_model(ctx.base.copy(), rates)
    ctx.tune(model, 0.5)
    for _, layer in weighted_layers(model):
        n_clusters = 255 if isinstance(layer, Conv2d) else 31
        layer.parametrize("weight", SharedWeights.from_weight(layer.weight, n_clusters))
    return model, f"density {density:.3f}, 5-bit dense / 8-bit conv codes"


def _units_svd_uniform(ctx: Context, t: float) -> tuple[Sequential, str]:
    f = math.sqrt(max(t / 4, 1.0))
    model = ctx.base
    if f > 1:
        model = _lowrank(_units(model, ctx, "l1", 1 - 1 / f), ctx, 1 / f)
    else:
        model = model.copy()
    ctx.tune(model, 0.5, 0.1)
    quantize_model(model, UniformQuant(8, per_channel=True))
    return model, f"MAC reduction {1 - 1 / f:.3f}, factors {1 / f:.3f}, 8 bits"


def _cp_conv_prune_fc(ctx: Context, t: float) -> tuple[Sequential, str]:
    model = ctx.base.copy()
    for n, layer in list(weighted_layers(model)):
        if isinstance(layer, Conv2d) and layer.in_channels > 1:
            c_out, c_in, kh, kw = layer.weight.shape
            r = max(1, int(layer.weight.size / (t * (c_out + c_in + kh + kw))))
            model = substitute(model, n, cp_decompose_conv(layer, r, max_iter=25,
                                                           rng=ctx.seed))
    dense = [n for n, layer in weighted_layers(model) if isinstance(layer, Linear)]
    s = _sparsity(t)
    prune_model(model, s, layers=dense)
    return model, f"conv CP at {1 / t:.3f}, dense sparsity {s:.3f}"


METHODS: dict[str, Method] = {
    "random": Method("unstructured", _random, deploy_csr, "random masks, per layer"),
    "magnitude": Method("unstructured", _magnitude, deploy_csr, "magnitude masks, per layer"),
    "magnitude_global": Method("unstructured", _magnitude_global, deploy_csr,
                               "magnitude masks, one threshold for the network"),
    "obd": Method("unstructured", _obd, deploy_csr, "Optimal Brain Damage, global"),
    "obs": Method("unstructured", _obs, deploy_csr, "layer-wise Optimal Brain Surgeon"),
    "units_l1": Method("structured", _unit_method("l1"), deploy_as_is,
                       "L1 norm of units, removed by surgery"),
    "units_apoz": Method("structured", _unit_method("apoz"), deploy_as_is,
                         "average percentage of zeros (data-driven), surgery"),
    "units_thinet": Method("structured", _unit_method("thinet"), deploy_as_is,
                           "ThiNet greedy reconstruction (data-driven), surgery"),
    "kmeans": Method("quantization", _kmeans, deploy_as_is, "k-means weight sharing",
                     lr_scale=0.001),
    "uniform": Method("quantization", _uniform, deploy_integer, "uniform, per channel",
                      lr_scale=0.1),
    "svd_cp": Method("low-rank", _svd_cp, deploy_as_is, "SVD of dense layers, CP of convs",
                     lr_scale=0.1),
    "deep_compression": Method("hybrid", _deep_compression, deploy_csr,
                               "prune, share, Huffman (Han et al.)", lr_scale=0.01),
    "units_svd_uniform": Method("hybrid", _units_svd_uniform, deploy_integer,
                                "unit pruning, then low rank, then 8-bit quantization",
                                lr_scale=0.1),
    "cp_conv_prune_fc": Method("hybrid", _cp_conv_prune_fc, deploy_csr,
                               "CP for convolutions, magnitude pruning for dense layers",
                               lr_scale=0.1),
}


# --- running -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _dataset(name: str) -> Any:
    return load_dataset(name)


@functools.lru_cache(maxsize=4)
def _dense(model_name: str) -> tuple[Sequential, float, int]:
    """The baseline, its accuracy on the benchmark's test images and its dense file bytes."""
    setup = MODELS[model_name]
    base = load_baseline(model_name)
    X_test, y_test = _dataset(setup.dataset)[1]
    acc = accuracy(base, (X_test[: setup.n_test], y_test[: setup.n_test]), batch_size=500)
    return base, acc, _file_bytes(base, sparse=False, shared=False, huffman=False)


def _data(model_name: str, seed: int) -> tuple[tuple, tuple, tuple]:
    setup = MODELS[model_name]
    (X_train, y_train), (X_test, y_test) = _dataset(setup.dataset)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X_train))
    ft = order[: setup.n_finetune]
    cal = order[setup.n_finetune : setup.n_finetune + setup.n_calib]
    if len(cal) < setup.n_calib:  # small data sets: calibrate on the first images
        cal = order[: setup.n_calib]
    test = (X_test[: setup.n_test], y_test[: setup.n_test])
    return (X_train[ft], y_train[ft]), (X_train[cal], y_train[cal]), test


def _file_bytes(model: Sequential, **options: Any) -> int:
    return len(dumps_compressed(model, **options))


def run_one(model_name: str, method: str, target: float, seed: int, *,
            finetune_epochs: int = 1, repeats: int = 7) -> dict[str, Any]:
    """One record: compress the baseline of ``model_name`` with ``method`` at ``target``."""
    _check_names([model_name], MODELS, "model")
    _check_names([method], METHODS, "method")
    if not float(target) >= 1:
        raise ValueError(f"target must be a compression ratio >= 1, got {target}")
    setup = MODELS[model_name]
    finetune_data, calib, test = _data(model_name, seed)
    base, dense_acc, dense_bytes = _dense(model_name)
    base = base.copy()  # no method may change the cached baseline
    ctx = Context(model_name, setup, base, seed, finetune_epochs, finetune_data, calib)
    m = METHODS[method]
    start = time.perf_counter()
    model, knob = m.compress(ctx, float(target))
    seconds = time.perf_counter() - start
    before = accuracy(model, test, batch_size=500)
    ctx.tune(model, 1.0 - ctx.used, m.lr_scale)
    acc = accuracy(model, test, batch_size=500)
    nbytes = _file_bytes(model)
    prof = profile(model, setup.input_shape)
    deployed = m.deploy(model, ctx)
    X_time = test[0][: setup.n_time]
    times = time_inference({"dense": base, "deployed": deployed}, X_time, repeats=repeats,
                           warmup=1)
    return {
        "model": model_name,
        "method": method,
        "family": m.family,
        "target": float(target),
        "seed": int(seed),
        "knob": knob,
        "accuracy_before_finetune": float(before),
        "accuracy": float(acc),
        "dense_accuracy": float(dense_acc),
        "params_nonzero": int(prof.nonzero_params),
        "macs": int(prof.macs),
        "bytes": int(nbytes),
        "dense_bytes": int(dense_bytes),
        "compression": dense_bytes / nbytes,
        "latency_s": times["deployed"],
        "dense_latency_s": times["dense"],
        "speedup": times["dense"] / times["deployed"],
        "compress_seconds": seconds,
        "finetune_epochs": int(finetune_epochs),
    }


def deployed_form(model_name: str, method: str, target: float, seed: int = 0) -> tuple[
        Sequential, Sequential, np.ndarray]:
    """The dense baseline, the deployed form of ``method`` at ``target`` and the timing images.

    Without fine-tuning: what is deployed (masks, shapes, ranks, codes) is fixed before the
    fine-tuning, which only changes the values, so this is the form whose time a run measures.
    """
    setup = MODELS[model_name]
    finetune_data, calib, test = _data(model_name, seed)
    base = _dense(model_name)[0].copy()
    ctx = Context(model_name, setup, base, seed, 0, finetune_data, calib)
    m = METHODS[method]
    model, _ = m.compress(ctx, float(target))
    return base, m.deploy(model, ctx), test[0][: setup.n_time]


def retime(records: list[dict[str, Any]], *, repeats: int = 7,
           quiet: bool = False) -> list[dict[str, Any]]:
    """Measure again the latency of each (model, method, target), in place; return the records.

    Timing is the part of a run most disturbed by a loaded machine (a short pass finishes
    within one time slice, a long one is preempted, which inflates the speed-up of small
    models). This re-measures the deployed form of seed 0 against the dense model, interleaved,
    ``repeats`` rounds, and writes the same ``latency_s``, ``dense_latency_s`` and ``speedup``
    into every seed's record of that point (the deployed form does not depend on the seed's
    fine-tuning).
    """
    keys = sorted({(r["model"], r["method"], r["target"]) for r in records})
    for i, (mo, me, t) in enumerate(keys, 1):
        base, deployed, X_time = deployed_form(mo, me, t)
        times = time_inference({"dense": base, "deployed": deployed}, X_time,
                               repeats=repeats, warmup=1)
        for r in records:
            if (r["model"], r["method"], r["target"]) == (mo, me, t):
                r["latency_s"] = times["deployed"]
                r["dense_latency_s"] = times["dense"]
                r["speedup"] = times["dense"] / times["deployed"]
                r["timing"] = f"retimed: seed 0, {len(X_time)} images, min of {repeats}"
        if not quiet:
            print(f"[{i}/{len(keys)}] retimed {mo} {me} target {t:g}: "
                  f"{times['dense'] / times['deployed']:.2f}x", file=sys.stderr, flush=True)
    return records


def run(models: Sequence[str], methods: Sequence[str], targets: Sequence[float],
        seeds: Sequence[int], *, finetune_epochs: int = 1, quiet: bool = False,
        repeats: int = 7) -> list[dict[str, Any]]:
    """Every (model, method, target, seed) in turn; a progress line per run unless ``quiet``."""
    _check_names(models, MODELS, "model")
    _check_names(methods, METHODS, "method")
    jobs = [(mo, me, t, s) for mo in models for me in methods
            if mo in METHODS[me].models for t in targets for s in seeds]
    records = []
    for i, (mo, me, t, s) in enumerate(jobs, 1):
        start = time.perf_counter()
        rec = run_one(mo, me, t, s, finetune_epochs=finetune_epochs, repeats=repeats)
        records.append(rec)
        if not quiet:
            before = rec["accuracy_before_finetune"]
            print(f"[{i}/{len(jobs)}] {mo} {me} target {t:g} seed {s}: accuracy "
                  f"{rec['accuracy']:.4f} (before fine-tuning {before:.4f},"
                  f" dense {rec['dense_accuracy']:.4f}), {rec['compression']:.1f}x smaller, "
                  f"{rec['speedup']:.2f}x faster; took {time.perf_counter() - start:.1f} s",
                  file=sys.stderr, flush=True)
    return records


def _check_names(names: Sequence[str], valid: dict[str, Any], what: str) -> None:
    for n in names:
        if n not in valid:
            raise ValueError(f"unknown {what} {n!r}; valid {what}s are: {', '.join(valid)}")


# --- command line ------------------------------------------------------------------------------
QUICK_MODELS = ("digits_mlp", "digits_cnn")
QUICK_TARGETS = (4.0, 16.0)
DEFAULT_TARGETS = (2.0, 4.0, 8.0, 16.0, 32.0)


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {n:<18} {m.description}" for n, m in METHODS.items())
    p = argparse.ArgumentParser(
        prog="python -m refimpl.benchmark",
        description="Every compression method of the book under one fine-tuning budget, on a "
                    "stored baseline; one JSON record per (model, method, target, seed).",
        epilog="methods:\n" + table + "\n\nA target t is a nominal compression ratio: pruning "
               "removes 1 - 1/t of the weights, unit pruning 1 - 1/t of the MACs, low rank keeps "
               "factors with 1/t of each layer's weights, quantization and sharing use "
               "clip(round(32/t)) bits, Deep Compression keeps 3/t of the weights before 5-bit "
               "sharing and Huffman coding. The measured compression (file bytes) is recorded "
               "beside it. See the module docstring for the full table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", choices=list(MODELS), default=None,
                   help="model to compress (repeat for several; default lenet_300_100 and "
                        "lenet5, with --quick digits_mlp and digits_cnn)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: all): " + ", ".join(METHODS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    p.add_argument("--targets", default=None,
                   help="comma-separated nominal compression ratios >= 1 (default "
                        "2,4,8,16,32; with --quick 4,16)")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="fine-tuning epochs on the seed's training subset (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="digits models, two targets: a few minutes on one core")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds per latency (min)")
    p.add_argument("--out", default="benchmark_results.json", help="output JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--retime", metavar="RESULTS", default=None,
                   help="measure the latencies of a stored results file again (in place) "
                        "instead of running")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.retime is not None:
        with open(args.retime) as f:
            stored = json.load(f)
        retime(stored["records"], repeats=args.repeats, quiet=args.quiet)
        stored["config"]["retimed"] = True
        with open(args.retime, "w") as f:
            json.dump(stored, f, indent=1)
        return 0
    models = args.model or list(QUICK_MODELS if args.quick else ("lenet_300_100", "lenet5"))
    methods = list(METHODS) if args.methods is None else [
        m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"unknown method(s) {', '.join(unknown) or '(none given)'}; valid methods "
                     f"are: {', '.join(METHODS)}")
    try:
        targets = (list(QUICK_TARGETS if args.quick else DEFAULT_TARGETS) if args.targets is None
                   else [float(t) for t in args.targets.split(",") if t.strip()])
    except ValueError:
        parser.error(f"--targets must be comma-separated numbers, got {args.targets!r}")
    if not targets or any(not t >= 1 for t in targets):
        parser.error(f"--targets must be compression ratios >= 1, got {args.targets!r}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.finetune_epochs < 0:
        parser.error(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    start = time.perf_counter()
    records = run(models, methods, targets, list(range(args.seeds)),
                  finetune_epochs=args.finetune_epochs, quiet=args.quiet, repeats=args.repeats)
    out = {
        "config": {"models": models, "methods": methods, "targets": targets,
                   "seeds": args.seeds, "finetune_epochs": args.finetune_epochs,
                   "setups": {m: MODELS[m].__dict__ | {"input_shape": list(
                       MODELS[m].input_shape)} for m in models},
                   "baselines": {m: baseline_info(m)["test_accuracy"] for m in models},
                   "seconds": round(time.perf_counter() - start, 1)},
        "records": records,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    if not args.quiet:
        print(f"wrote {len(records)} records to {args.out}; took "
              f"{out['config']['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
