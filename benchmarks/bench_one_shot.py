"""One-shot compression of LeNet-300-100 from 256 calibration images: errors and times per layer.

Three tables, all on the trained ``lenet_300_100`` baseline and Fashion-MNIST:

1. quantization of each layer alone (on the inputs the dense model gives it): round to nearest,
   OBQ, GPTQ and GPTQ in activation order, at 3 and 4 bits, one affine grid per row;
2. pruning of each layer alone at 50%, 2:4 and 90%: magnitude (layer-wise), Wanda, SparseGPT,
   layer-wise OBS (OBS saliency, then the exact update for the mask) and OBC;
3. the whole model through the sequential drivers (``one_shot_prune``,
   ``one_shot_quantize``), with the test accuracy.

Errors are relative reconstruction errors :math:`\\|WX - \\hat W X\\|_F^2 / \\|WX\\|_F^2` on the
256 calibration images ("cal") and on 1,000 held-out test images ("val"): with 256 images for
784 inputs, fc1's :math:`H` is singular and the methods that use it fit the calibration data
much better than other data. OBQ and OBC cost :math:`O(d_{row} d_{col}^3)`: on fc1 they take
minutes; ``--quick`` skips them there. Run: ``python benchmarks/bench_one_shot.py [--quick]``.
Timings never gate a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from refimpl.baselines import load_baseline, load_dataset
from refimpl.nn import evaluate, forward_through
from refimpl.pruning import (
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
from refimpl.pruning.one_shot import _inverse, _obs_select, _prepare
from refimpl.quantization import gptq_quantize, obq_quantize, one_shot_quantize, rtn_quantize
from refimpl.report import format_table

N_CAL, N_VAL, N_TEST = 256, 1000, 10_000
LAYERS = (("fc1", 0), ("fc2", 2), ("fc3", 4))


def layer_problems(model, X_cal, X_val):
    out = {}
    for name, stop in LAYERS:
        hs = []
        for X in (X_cal, X_val):
            a = forward_through(model, X, stop).reshape(len(X), -1).astype(np.float64)
            hs.append(reconstruction_hessian(a.T))
        out[name] = (model[name].weight.astype(np.float64), *hs)
    return out


def rel(W, V, H):
    return reconstruction_error(W, V, H) / reconstruction_error(W, np.zeros_like(W), H)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def quantization_table(problems, quick: bool) -> None:
    rows = []
    for name, (W, H, Hv) in problems.items():
        for bits in (3, 4):
            methods = {
                "RTN": lambda: rtn_quantize(W, bits),  # noqa: B023
                "OBQ": lambda: obq_quantize(W, H, bits),  # noqa: B023
                "GPTQ": lambda: gptq_quantize(W, H, bits),  # noqa: B023
                "GPTQ act-order": lambda: gptq_quantize(W, H, bits, act_order=True),  # noqa: B023
            }
            for method, fn in methods.items():
                if quick and method == "OBQ" and name == "fc1":
                    continue
                res, sec = timed(fn)
                rows.append((name, bits, method, rel(W, res.weight, H), rel(W, res.weight, Hv),
                             sec))  # fmt: skip
    print(format_table(rows, ["layer", "bits", "method", "cal error", "val error", "seconds"],
                       floatfmt=".4g"))  # fmt: skip


def pruning_table(problems, quick: bool) -> None:
    rows = []
    for name, (W, H, Hv) in problems.items():
        norms = np.sqrt(np.diag(H))
        for target in (0.5, (2, 4), 0.9):
            s, nm = (None, target) if isinstance(target, tuple) else (target, None)
            s_eff = 0.5 if nm else s

            def obs(s_eff=s_eff, nm=nm):
                _, Hd, _ = _prepare(W, H, 0.01)  # noqa: B023
                keep = _obs_select(W, _inverse(Hd), np.ones(W.shape, bool), s_eff, nm)  # noqa: B023
                return obs_reconstruct(W, H, keep).weight  # noqa: B023

            methods = {
                "magnitude": lambda: np.where(
                    nm_mask(np.abs(W), nm) if nm else magnitude_mask(W, s), W, 0.0),  # noqa: B023
                "Wanda": lambda: np.where(wanda_mask(W, norms, s, nm=nm), W, 0.0),  # noqa: B023
                "SparseGPT": lambda: sparsegpt_prune(W, H, s, nm=nm).weight,  # noqa: B023
                "layer-wise OBS": obs,
                "OBC": lambda: obc_prune(W, H, s, nm=nm).weight,  # noqa: B023
            }
            for method, fn in methods.items():
                if quick and method == "OBC" and name == "fc1":
                    continue
                V, sec = timed(fn)
                label = "2:4" if nm else f"{s:.0%}"
                rows.append((name, label, method, rel(W, V, H), rel(W, V, Hv), sec))
    print(format_table(rows, ["layer", "target", "method", "cal error", "val error", "seconds"],
                       floatfmt=".4g"))  # fmt: skip


def model_table(base, X_cal, X_val, test) -> None:
    rows = [("dense", "-", evaluate(base, test).accuracy, 0.0, 0.0, 0.0)]
    for method in ("magnitude", "wanda", "sparsegpt", "obs"):
        for target in (0.5, (2, 4), 0.9):
            model = base.copy()
            kw = {"nm": target} if isinstance(target, tuple) else {"sparsity": target}
            rep = one_shot_prune(model, X_cal, method=method, validation=X_val, **kw)
            label = "2:4" if isinstance(target, tuple) else f"{target:.0%}"
            rows.append((method, label, evaluate(model, test).accuracy, rep.output_error,
                         rep.val_output_error, rep.seconds))  # fmt: skip
    for method, kw in (("rtn", {}), ("gptq", {}), ("gptq", {"act_order": True})):
        for bits in (3, 4):
            model = base.copy()
            rep = one_shot_quantize(model, X_cal, bits, method=method, validation=X_val, **kw)
            name = method + (" act-order" if kw else "")
            rows.append((name, f"{bits} bits", evaluate(model, test).accuracy, rep.output_error,
                         rep.val_output_error, rep.seconds))  # fmt: skip
    print(format_table(rows, ["method", "target", "test acc", "cal out err", "val out err",
                              "seconds"], floatfmt=".4f"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip OBQ and OBC on fc1")
    args = parser.parse_args()
    try:
        (X_tr, _), (X_te, y_te) = load_dataset("fashion_mnist")
    except FileNotFoundError as exc:
        print(f"Fashion-MNIST is not installed: {exc}")
        return
    base = load_baseline("lenet_300_100")
    X_cal, X_val = X_tr[:N_CAL], X_te[:N_VAL]
    test = (X_te[N_VAL : N_VAL + N_TEST], y_te[N_VAL : N_VAL + N_TEST])
    problems = layer_problems(base, X_cal, X_val)
    print(f"LeNet-300-100, {N_CAL} calibration images, errors relative to ||WX||^2\n")
    print("Quantization of each layer alone (one affine grid per row)")
    quantization_table(problems, args.quick)
    print("\nPruning of each layer alone")
    pruning_table(problems, args.quick)
    print("\nThe whole model, sequentially (test accuracy on the other 9,000 test images)")
    model_table(base, X_cal, X_val, test)


if __name__ == "__main__":
    main()
