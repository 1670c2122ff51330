"""The stored results of chapter 10 (One-shot compression): methods over calibration seeds, costs.

Chapter 10 compares round to nearest, OBQ and GPTQ, and magnitude, Wanda, SparseGPT, layer-wise
OBS and OBC, on LeNet-300-100 and LeNet-5 (Fashion-MNIST). OBQ and OBC cost
:math:`O(d_{row} d_{col}^3)`, and the spread over calibration subsets needs every run repeated,
so this script runs them and stores the results; the chapter loads them and re-runs a few cheap
entries to check that they still hold.

Four parts:

``lenet_300_100``
    every method but OBQ and OBC through the sequential drivers (``one_shot_quantize``,
    ``one_shot_prune``), for calibration subsets of 256 training images drawn with seeds 0-5:
    each layer's relative reconstruction error on the calibration inputs and on 1,000 held-out
    test images, the model's output error, the time per layer, and the accuracy on the other
    9,000 test images;
``lenet5``
    the same for LeNet-5 (the configurations the chapter tabulates, seeds 0-2; 2:4 leaves
    ``conv1`` dense: 25 inputs per filter);
``isolated``
    every method, OBQ and OBC included, on ``fc2`` and ``fc3`` of LeNet-300-100 alone (on the
    dense model's inputs), for the same six calibration subsets; and OBQ, OBC, GPTQ and
    SparseGPT on the first 16 rows of ``fc1`` (seed 0), whose time, times 300/16, is what OBQ
    and OBC would take on the whole of ``fc1``;
``scaling``
    time and peak memory (``tracemalloc``, which sees NumPy's allocations) of each method on a
    square layer ``d x d`` with synthetic correlated inputs, for growing ``d``.

Scope, cut to fit about 25 minutes on one core shared with other jobs: OBQ and OBC on the whole
of LeNet-300-100 take one to three minutes a configuration (``fc1``: 300 rows, each its own
sequence of 784 downdates of a 784 x 784 inverse; OBQ on ``fc1``, extrapolated from 16 rows,
takes about a minute on a lightly loaded core), up to 45 minutes for five configurations over
three seeds, so ``--full`` runs them on ``fc2`` and ``fc3`` alone (``isolated``), and only
``--model-obq-obc-seeds 0,1`` adds whole-model runs. Square layers go up to ``d = 1024``
(OBQ and OBC to 256, layer-wise OBS to 512); LeNet-5 runs seeds 0-2.

Run::

    python benchmarks/bench_one_shot_seeds.py          # quick: seed 0, small layers only
    python benchmarks/bench_one_shot_seeds.py --full \
        --out benchmarks/results/one_shot_compression.json

``--full`` took 24 minutes (10 minutes of CPU) with ``OPENBLAS_NUM_THREADS=1`` on a machine
shared with other jobs; whole-model OBQ and OBC add one to three minutes per configuration and
seed.
Timings are of the machine that ran it and never gate a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from refimpl.baselines import load_baseline, load_dataset
from refimpl.nn import evaluate, forward_through
from refimpl.pruning import (
    inverse_hessian_cholesky,
    magnitude_mask,
    nm_mask,
    obc_prune,
    obs_reconstruct,
    one_shot_prune,
    reconstruction_error,
    reconstruction_hessian,
    sparsegpt_prune,
    wanda_mask,
)
from refimpl.quantization import gptq_quantize, obq_quantize, one_shot_quantize, rtn_quantize
from refimpl.report import format_table

N_CAL, N_VAL = 256, 1000

#: (label, driver keyword arguments, bits or None, expensive): the whole-model runs.
QUANT = [
    (f"{name} {bits} bits", kw, bits, name == "OBQ")
    for bits in (2, 3, 4)
    for name, kw in (
        ("RTN", {"method": "rtn"}),
        ("RTN g64", {"method": "rtn", "group_size": 64}),
        ("GPTQ", {"method": "gptq"}),
        ("GPTQ act-order", {"method": "gptq", "act_order": True}),
        ("GPTQ g64", {"method": "gptq", "group_size": 64}),
        ("GPTQ act-order g64", {"method": "gptq", "act_order": True, "group_size": 64}),
        ("OBQ", {"method": "obq"}),
    )
    if not (name == "OBQ" and bits == 2)
]
TARGETS = (("50%", {"sparsity": 0.5}), ("2:4", {"nm": (2, 4)}), ("90%", {"sparsity": 0.9}))
PRUNE = [
    (f"{name} {t}", {"method": method, **kw}, None, method == "obc")
    for t, kw in TARGETS
    for name, method in (
        ("magnitude", "magnitude"),
        ("Wanda", "wanda"),
        ("SparseGPT", "sparsegpt"),
        ("layer-wise OBS", "obs"),
        ("OBC", "obc"),
    )
]


def calibration(X_train: np.ndarray, seed: int) -> np.ndarray:
    """The calibration subset of seed ``seed``: 256 training images drawn without replacement
    (the chapter draws its own with the same line)."""
    idx = np.random.default_rng(seed).choice(len(X_train), N_CAL, replace=False)
    return X_train[idx]


def run_model(base, X_cal, X_val, test, label, kw, *, bits=None, layers=None) -> dict:
    model = base.copy()
    kw = dict(kw)
    if layers is not None:
        kw["layers"] = layers
    if bits is not None:
        rep = one_shot_quantize(model, X_cal, bits, validation=X_val, **kw)
    else:
        rep = one_shot_prune(model, X_cal, validation=X_val, **kw)
    return {
        "config": label,
        "accuracy": evaluate(model, test).accuracy,
        "output_error": rep.output_error,
        "val_output_error": rep.val_output_error,
        "seconds": rep.seconds,
        "layers": {
            name: {"error": r.relative_error, "val_error": r.val_relative_error,
                   "sparsity": r.sparsity, "seconds": r.seconds}
            for name, r in rep.layers.items()
        },
    }  # fmt: skip


def model_runs(name, X_train, X_test, y_test, seeds, expensive_seeds, *, nm_layers=None,
               skip_expensive=False, configs=None) -> dict:  # fmt: skip
    base = load_baseline(name)
    X_val = X_test[:N_VAL]
    test = (X_test[N_VAL:], y_test[N_VAL:])
    out = {"dense_accuracy": evaluate(base, test).accuracy, "runs": []}
    for seed in seeds:
        X_cal = calibration(X_train, seed)
        for label, kw, bits, expensive in QUANT + PRUNE:
            if expensive and (skip_expensive or seed not in expensive_seeds):
                continue
            if configs is not None and label not in configs:
                continue
            layers = nm_layers if "nm" in kw else None
            tick = time.perf_counter()
            res = run_model(base, X_cal, X_val, test, label, kw, bits=bits, layers=layers)
            res["seed"] = seed
            out["runs"].append(res)
            print(f"{name} seed {seed} {label:28s} acc {res['accuracy']:.4f} "
                  f"({time.perf_counter() - tick:.1f} s)", flush=True)  # fmt: skip
    return out


def rel(W, V, H) -> float:
    return reconstruction_error(W, V, H) / reconstruction_error(W, np.zeros_like(W), H)


def prune_layer(method: str, W, H, sparsity, nm):
    """One layer pruned alone, as the chapter's ``prune_layer`` does it (the weight returned)."""
    if method == "magnitude":
        return np.where(nm_mask(np.abs(W), nm) if nm else magnitude_mask(W, sparsity), W, 0.0)
    if method == "Wanda":
        return np.where(wanda_mask(W, np.sqrt(np.diag(H)), sparsity, nm=nm), W, 0.0)
    if method == "SparseGPT":
        return sparsegpt_prune(W, H, sparsity, nm=nm).weight
    if method == "layer-wise OBS":  # OBS's saliency w^2 / [H^-1]_jj for the mask, exact update
        U = inverse_hessian_cholesky(H)
        saliency = W**2 / np.sum(U**2, axis=0)
        mask = nm_mask(saliency, nm) if nm else magnitude_mask(saliency, sparsity)
        return obs_reconstruct(W, H, mask).weight
    return obc_prune(W, H, sparsity, nm=nm).weight


ISO_TARGETS = {"50%": (0.5, None), "2:4": (None, (2, 4)), "90%": (0.9, None)}
ISOLATED = {
    **{f"{m} {b} bits": (lambda W, H, m=m, b=b: {
        "RTN": lambda: rtn_quantize(W, b).weight,
        "GPTQ": lambda: gptq_quantize(W, H, b).weight,
        "GPTQ act-order": lambda: gptq_quantize(W, H, b, act_order=True).weight,
        "OBQ": lambda: obq_quantize(W, H, b).weight,
    }[m]()) for b in (3, 4) for m in ("RTN", "GPTQ", "GPTQ act-order", "OBQ")},
    **{f"{m} {t}": (lambda W, H, m=m, s=s, nm=nm: prune_layer(m, W, H, s, nm))
       for t, (s, nm) in ISO_TARGETS.items()
       for m in ("magnitude", "Wanda", "SparseGPT", "layer-wise OBS", "OBC")},
}  # fmt: skip
FC1_ROWS = 16
FC1_CONFIGS = ("GPTQ 3 bits", "OBQ 3 bits", "SparseGPT 50%", "OBC 50%")


def isolated(X_train, X_test, seeds) -> dict:
    """Every method on fc2 and fc3 of LeNet-300-100 alone, on the dense model's inputs, and the
    costly ones on the first 16 rows of fc1 (seed 0): errors and seconds."""
    base = load_baseline("lenet_300_100")
    out = {"seeds": list(seeds), "fc1_rows": FC1_ROWS, "runs": []}
    for seed in seeds:
        X_cal = calibration(X_train, seed)
        for name, stop in (("fc1", 0), ("fc2", 2), ("fc3", 4)):
            if name == "fc1" and seed != seeds[0]:
                continue
            hs = []
            for X in (X_cal, X_test[:N_VAL]):
                a = forward_through(base, X, stop).reshape(len(X), -1).astype(np.float64)
                hs.append(reconstruction_hessian(a.T))
            W, H, Hv = base[name].weight.astype(np.float64), *hs
            configs = ISOLATED
            if name == "fc1":
                W = W[:FC1_ROWS]
                configs = {c: ISOLATED[c] for c in FC1_CONFIGS}
            for label, fn in configs.items():
                tick = time.perf_counter()
                V = fn(W, H)
                seconds = time.perf_counter() - tick
                out["runs"].append({"seed": seed, "layer": name, "config": label,
                                    "error": rel(W, V, H), "val_error": rel(W, V, Hv),
                                    "seconds": seconds})  # fmt: skip
            print(f"isolated seed {seed} {name} done", flush=True)
    return out


def _synthetic(d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A square weight (d, d) and the Hessian of 2d correlated inputs (full rank)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(d, 2 * d))
    X = (np.eye(d) + rng.normal(scale=1 / np.sqrt(d), size=(d, d))) @ X
    return rng.normal(size=(d, d)), reconstruction_hessian(X)


SCALING = {
    "RTN": lambda W, H: rtn_quantize(W, 4),
    "GPTQ": lambda W, H: gptq_quantize(W, H, 4),
    "SparseGPT": lambda W, H: sparsegpt_prune(W, H, 0.5),
    "layer-wise OBS": lambda W, H: obs_reconstruct(W, H, magnitude_mask(W, 0.5)),
    "OBQ": lambda W, H: obq_quantize(W, H, 4),
    "OBC": lambda W, H: obc_prune(W, H, 0.5),
}


def scaling(widths, slow_widths) -> dict:
    """OBQ and OBC (O(d^4) on a square layer) only up to ``max(slow_widths)``, layer-wise OBS
    (one solve per row, O(d^4) in LAPACK) up to twice that."""
    rows = []
    for d in widths:
        W, H = _synthetic(d)
        for method, fn in SCALING.items():
            if method in ("OBQ", "OBC") and d > max(slow_widths):
                continue
            if method == "layer-wise OBS" and d > 2 * max(slow_widths):
                continue
            tick = time.perf_counter()
            fn(W, H)
            seconds = time.perf_counter() - tick
            tracemalloc.start()
            fn(W, H)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append({"method": method, "d": d, "seconds": seconds, "peak_bytes": peak})
            print(f"scaling d={d:5d} {method:10s} {seconds:9.3f} s  peak {peak / 2**20:8.1f} MiB",
                  flush=True)  # fmt: skip
    return {"rows": rows, "hessian_bytes": {str(d): 8 * d * d for d in widths}}


def summary(part: dict, title: str) -> None:
    """Mean and spread over seeds of accuracy and of the model's held-out output error."""
    by = {}
    for r in part["runs"]:
        by.setdefault(r["config"], []).append(r)
    rows = []
    for config, runs in by.items():
        acc = np.array([r["accuracy"] for r in runs])
        err = np.array([r["val_output_error"] for r in runs])
        rows.append((config, len(runs), f"{acc.mean():.4f} ± {acc.std():.4f}",
                     f"{err.mean():.4f} ± {err.std():.4f}"))  # fmt: skip
    print(f"\n{title} (dense accuracy {part['dense_accuracy']:.4f})")
    print(format_table(rows, ["method", "seeds", "test accuracy", "val output error"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="seeds 0-5 (LeNet-5: 0-2), OBQ and OBC on fc2 and fc3 alone, "
                             "widths up to 1024")
    parser.add_argument("--model-obq-obc-seeds", default="",
                        help="comma-separated seeds for OBQ and OBC on the whole of "
                             "LeNet-300-100 (one to three minutes a configuration)")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args()  # fmt: skip
    try:
        (X_train, _), (X_test, y_test) = load_dataset("fashion_mnist")
    except FileNotFoundError as exc:
        print(f"Fashion-MNIST is not installed: {exc}")
        return
    start = time.perf_counter()
    results = {
        "meta": {
            "calibration_images": N_CAL,
            "calibration": "np.random.default_rng(seed).choice(60000, 256, replace=False)",
            "validation": "the first 1,000 test images",
            "test": "the other 9,000 test images",
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    }
    expensive = [int(x) for x in args.model_obq_obc_seeds.split(",") if x.strip()]
    if args.full:
        seeds, seeds5 = list(range(6)), [0, 1, 2]
        widths, slow = [64, 128, 256, 512, 1024], [64, 128, 256]
    else:
        seeds, seeds5 = [0], []
        widths, slow = [64, 128, 256], [64, 128]
    results["meta"]["seeds"] = {"lenet_300_100": seeds, "lenet5": seeds5, "isolated": seeds,
                                "model_obq_obc": expensive}  # fmt: skip
    results["scaling"] = scaling(widths, slow)
    results["isolated"] = isolated(X_train, X_test, seeds)
    results["lenet_300_100"] = model_runs("lenet_300_100", X_train, X_test, y_test, seeds,
                                          expensive, skip_expensive=not expensive)  # fmt: skip
    summary(results["lenet_300_100"], "LeNet-300-100")
    if seeds5:
        l5 = [f"{m} {b} bits" for b in (2, 3, 4) for m in ("RTN", "GPTQ", "GPTQ act-order g64")]
        l5 += [f"{m} {t}" for t, _ in TARGETS
               for m in ("magnitude", "Wanda", "SparseGPT", "layer-wise OBS")]
        results["lenet5"] = model_runs("lenet5", X_train, X_test, y_test, seeds5, [],
                                       nm_layers=["conv2", "fc1", "fc2"], skip_expensive=True,
                                       configs=l5)  # fmt: skip
        summary(results["lenet5"], "LeNet-5")
    results["meta"]["seconds"] = time.perf_counter() - start
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
