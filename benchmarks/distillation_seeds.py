"""The training experiments of chapter 8 ("Distillation and compact design") over several seeds.

Every experiment of the chapter that trains is run here for each seed asked for (default 0-4),
with exactly the recipe the chapter uses (the ``CONFIG`` below; the chapter checks that its own
constants equal the stored ones), and the results are written to
``benchmarks/results/distillation_seeds.json``: per experiment, per figure, the value of every
seed and their mean, standard deviation (``ddof=1``), minimum and maximum. The chapter loads this
file to show the spread and re-runs one seed itself, asserting that it falls within it.

Experiments (``--only`` picks some):

``kd``
    A 784-64-10 student trained on 2,000 Fashion-MNIST images for 30 epochs, on the hard labels
    and distilled from LeNet-300-100 (``DistillationLoss(4, 0.9)``), same data, initial weights
    and batches; plus the temperature sweep of the distilled student.
``omitted``
    The same distillation with every trouser (class 1) removed from the transfer set; accuracy
    on the test set's trousers before and after the bias of class 1 is raised by the shift that
    is best on 2,000 held-out training images; the same for the hard-label student.
``finetune``
    LeNet-300-100 quantized to 2 bits per weight (per channel) and pruned to 97% sparsity,
    fine-tuned for 10 epochs on 2,000 images with the hard labels or by distillation from the
    uncompressed network.
``fitnets``
    A deep, thin student (784-32-32-32-32-10): hard labels, distillation, and FitNets (10 epochs
    of hint training of its first two layers on LeNet-300-100's second hidden layer, then
    distillation).
``compact``
    Networks designed small (MobileNet, ShuffleNet and SqueezeNet blocks, LeNet-5's trunk with
    the Network-in-Network head), trained from scratch on 10,000 images for 4 epochs, against
    LeNet-5 compressed to the same MACs or the same parameters (L1 filter and neuron pruning,
    then 2 epochs of fine-tuning on the same images); and the MobileNet distilled from LeNet-5.

Usage::

    python benchmarks/distillation_seeds.py                     # seeds 0-4, all experiments
    python benchmarks/distillation_seeds.py --seeds 0-1 --only kd,omitted --out /tmp/x.json

Runs on one BLAS thread for reproducible sums; about 30 minutes of CPU for five seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import refimpl as rf  # noqa: E402
from refimpl.baselines import load_baseline, load_dataset  # noqa: E402
from refimpl.compact import (  # noqa: E402
    lenet5_gap,
    mobilenet_tiny,
    shufflenet_tiny,
    squeezenet_tiny,
)
from refimpl.distill import (  # noqa: E402
    DistillationLoss,
    HintLoss,
    best_class_bias,
    hint_models,
)
from refimpl.models import mlp  # noqa: E402
from refimpl.nn import Adam, CosineAnnealingLR, Sequential  # noqa: E402
from refimpl.pruning import l1_filter_scores, prune_model, select_per_layer  # noqa: E402
from refimpl.quantization import UniformQuant, quantize_model  # noqa: E402
from refimpl.surgery import shrink  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "distillation_seeds.json"

#: The recipes; chapter 8 asserts that its constants are these.
CONFIG = {
    "kd": {"transfer": 2000, "hidden": 64, "epochs": 30, "lr": 1e-3, "batch_size": 64,
           "temperature": 4.0, "alpha": 0.9, "sweep": [1.0, 2.0, 4.0, 8.0, 16.0]},
    "omitted": {"cls": 1, "validation": 2000, "shifts": [0.0, 15.0, 0.25]},
    "finetune": {"images": 2000, "epochs": 10, "lr": 1e-3, "bits": 2, "sparsity": 0.97},
    "fitnets": {"widths": [32, 32, 32, 32], "guided": "relu2", "hint": "relu2",
                "hint_epochs": 10},
    "compact": {"images": 10000, "epochs": 4, "lr": 3e-3, "finetune_epochs": 2,
                "finetune_lr": 1e-3, "test": 5000,
                "designs": {"MobileNet": ["mobilenet_tiny", {"width": 16}],
                            "ShuffleNet": ["shufflenet_tiny", {"width": 48, "groups": 3}],
                            "SqueezeNet": ["squeezenet_tiny", {"width": 16}],
                            "LeNet-5 trunk + NiN head": ["lenet5_gap", {"channels": [10, 20]}]},
                "pruned": {"LeNet-5 pruned, equal MACs": [10, 20, 100],
                           "LeNet-5 pruned, equal parameters": [6, 12, 32]},
                "distilled": {"MobileNet, distilled from LeNet-5": ["mobilenet_tiny",
                                                                    {"width": 16}]}},
}  # fmt: skip

DESIGNS = {"mobilenet_tiny": mobilenet_tiny, "shufflenet_tiny": shufflenet_tiny,
           "squeezenet_tiny": squeezenet_tiny, "lenet5_gap": lenet5_gap}  # fmt: skip


def seeds_of(seed: int, n: int) -> list[int]:
    """``n`` integer seeds derived from ``seed``: the chapter draws them the same way."""
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31, size=n)]


class Data:
    def __init__(self) -> None:
        (self.X, self.y), (self.X_test, self.y_test) = load_dataset("fashion_mnist")
        self.teacher = load_baseline("lenet_300_100")

    def acc(self, model: Sequential) -> float:
        return rf.accuracy(model, (self.X_test, self.y_test))


def run_kd(d: Data, seed: int) -> dict[str, float]:
    c = CONFIG["kd"]
    s_subset, s_init, s_batches = seeds_of(seed, 3)
    idx = np.random.default_rng(s_subset).choice(len(d.X), c["transfer"], replace=False)
    data = (d.X[idx], d.y[idx])

    def train(loss: DistillationLoss | None) -> Sequential:
        m = mlp([c["hidden"]], s_init)
        kw = {} if loss is None else {"teacher": d.teacher, "loss": loss}
        rf.fit(m, data, epochs=c["epochs"], optimizer=Adam(c["lr"]), batch_size=c["batch_size"],
               rng=s_batches, verbose=False, **kw)  # fmt: skip
        return m

    out = {"hard": d.acc(train(None))}
    for T in c["sweep"]:
        out[f"T={T:g}"] = d.acc(train(DistillationLoss(T, c["alpha"])))
    out["distilled"] = out[f"T={c['temperature']:g}"]
    out["gain"] = out["distilled"] - out["hard"]
    return out


def run_omitted(d: Data, seed: int) -> dict[str, float]:
    c, k = CONFIG["omitted"], CONFIG["kd"]
    s_subset, s_init, s_batches = seeds_of(seed, 3)
    order = np.random.default_rng(s_subset).permutation(len(d.X))
    idx, val = order[: k["transfer"]], order[k["transfer"] : k["transfer"] + c["validation"]]
    keep = idx[d.y[idx] != c["cls"]]
    shifts = np.arange(*c["shifts"])
    is_c = d.y_test == c["cls"]
    out = {"transfer_images": float(len(keep))}
    for label, loss in (("hard", None), ("distilled", DistillationLoss(k["temperature"],
                                                                      k["alpha"]))):  # fmt: skip
        m = mlp([k["hidden"]], s_init)
        kw = {} if loss is None else {"teacher": d.teacher, "loss": loss}
        rf.fit(m, (d.X[keep], d.y[keep]), epochs=k["epochs"], optimizer=Adam(k["lr"]),
               batch_size=k["batch_size"], rng=s_batches, verbose=False, **kw)  # fmt: skip
        z = rf.predict(m, d.X_test)
        best = best_class_bias(rf.predict(m, d.X[val]), d.y[val], c["cls"], shifts)
        z2 = z.copy()
        z2[:, c["cls"]] += best.shift
        out[f"{label}: accuracy"] = float(np.mean(z.argmax(1) == d.y_test))
        out[f"{label}: omitted class"] = float(np.mean(z[is_c].argmax(1) == c["cls"]))
        out[f"{label}: shift"] = best.shift
        out[f"{label}: accuracy, corrected"] = float(np.mean(z2.argmax(1) == d.y_test))
        out[f"{label}: omitted class, corrected"] = float(np.mean(z2[is_c].argmax(1) == c["cls"]))
    return out


def run_finetune(d: Data, seed: int) -> dict[str, float]:
    c, k = CONFIG["finetune"], CONFIG["kd"]
    s_subset, s_batches = seeds_of(seed, 2)
    idx = np.random.default_rng(s_subset).choice(len(d.X), c["images"], replace=False)
    data = (d.X[idx], d.y[idx])
    makers = {
        f"{c['bits']}-bit": lambda: quantize_model(
            d.teacher.copy(), UniformQuant(c["bits"], per_channel=True)),
        f"{c['sparsity']:.0%} pruned": lambda: prune_model(d.teacher.copy(), c["sparsity"],
                                                            scope="global"),
    }  # fmt: skip
    out = {}
    for label, make in makers.items():
        out[f"{label}: before"] = d.acc(make())
        for how, kw in (("hard", {}), ("distilled", {"teacher": d.teacher, "loss":
                        DistillationLoss(k["temperature"], k["alpha"])})):  # fmt: skip
            m = rf.finetune(make(), data, epochs=c["epochs"], optimizer=Adam(c["lr"]),
                            rng=s_batches, **kw)  # fmt: skip
            out[f"{label}: {how}"] = d.acc(m)
        out[f"{label}: gain"] = out[f"{label}: distilled"] - out[f"{label}: hard"]
    return out


def run_fitnets(d: Data, seed: int) -> dict[str, float]:
    c, k = CONFIG["fitnets"], CONFIG["kd"]
    s_subset, s_init, s_batches, s_reg = seeds_of(seed, 4)
    idx = np.random.default_rng(s_subset).choice(len(d.X), k["transfer"], replace=False)
    data = (d.X[idx], d.y[idx])

    def kd(m: Sequential, teacher: bool) -> Sequential:
        kw = {"teacher": d.teacher, "loss": DistillationLoss(k["temperature"], k["alpha"])}
        rf.fit(m, data, epochs=k["epochs"], optimizer=Adam(k["lr"]), batch_size=k["batch_size"],
               rng=s_batches, verbose=False, **(kw if teacher else {}))  # fmt: skip
        return m

    out = {"hard": d.acc(kd(mlp(c["widths"], s_init), False)),
           "distilled": d.acc(kd(mlp(c["widths"], s_init), True))}  # fmt: skip
    student = mlp(c["widths"], s_init)
    hm = hint_models(student, d.teacher, c["guided"], c["hint"], input_shape=(1, 28, 28),
                     rng=s_reg)  # fmt: skip
    rf.fit(hm.guided, data, epochs=c["hint_epochs"], optimizer=Adam(k["lr"]),
           batch_size=k["batch_size"], rng=s_batches, verbose=False, teacher=hm.teacher,
           loss=HintLoss())  # fmt: skip
    out["hints + distilled"] = d.acc(kd(student, True))
    return out


def shrunk_lenet5(base: Sequential, conv1: int, conv2: int, fc1: int) -> Sequential:
    """LeNet-5 with the filters and neurons of largest L1 norm kept (Li et al. 2017)."""
    sizes = {"conv1": conv1, "conv2": conv2, "fc1": fc1}
    keep = {n: select_per_layer(l1_filter_scores(base[n]), base[n].units - k)
            for n, k in sizes.items()}  # fmt: skip
    return shrink(base, keep)


def run_compact(d: Data, seed: int) -> dict[str, float]:
    c = CONFIG["compact"]
    s_subset, s_init, s_batches = seeds_of(seed, 3)
    idx = np.random.default_rng(s_subset).choice(len(d.X), c["images"], replace=False)
    data = (d.X[idx], d.y[idx])
    test = (d.X_test[: c["test"]], d.y_test[: c["test"]])
    out = {}
    lenet5 = load_baseline("lenet5")
    for label, sizes in c["pruned"].items():
        m = shrunk_lenet5(lenet5, *sizes)
        out[f"{label}: before"] = rf.accuracy(m, test, batch_size=500)
        rf.finetune(m, data, epochs=c["finetune_epochs"], optimizer=Adam(c["finetune_lr"]),
                    rng=s_batches)  # fmt: skip
        out[label] = rf.accuracy(m, test, batch_size=500)
    k = CONFIG["kd"]
    runs = [(label, spec, {}) for label, spec in c["designs"].items()]
    runs += [(label, spec, {"teacher": lenet5, "loss": DistillationLoss(k["temperature"],
                                                                       k["alpha"])})
             for label, spec in c["distilled"].items()]  # fmt: skip
    for label, (name, kwargs), kd in runs:
        m = DESIGNS[name](s_init, **{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in kwargs.items()})  # fmt: skip
        opt = Adam(c["lr"])
        rf.fit(m, data, epochs=c["epochs"], optimizer=opt, batch_size=64, rng=s_batches,
               scheduler=CosineAnnealingLR(opt, T_max=c["epochs"]), verbose=False,
               **kd)  # fmt: skip
        out[label] = rf.accuracy(m, test, batch_size=500)
    return out


EXPERIMENTS = {"kd": run_kd, "omitted": run_omitted, "finetune": run_finetune,
               "fitnets": run_fitnets, "compact": run_compact}  # fmt: skip


def summarize(per_seed: dict[int, dict[str, float]]) -> dict[str, dict]:
    keys = next(iter(per_seed.values())).keys()
    out = {}
    for key in keys:
        v = np.array([r[key] for r in per_seed.values()])
        out[key] = {"values": [round(float(x), 6) for x in v], "mean": round(float(v.mean()), 6),
                    "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 6),
                    "min": round(float(v.min()), 6), "max": round(float(v.max()), 6)}  # fmt: skip
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7 (default 0-4)")
    ap.add_argument("--only", default=",".join(EXPERIMENTS), help="experiments to run")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON file (merged if it exists)")
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    wanted = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = set(wanted) - set(EXPERIMENTS)
    if unknown:
        ap.error(f"unknown experiments {sorted(unknown)}; choose from {list(EXPERIMENTS)}")
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    d = Data()
    for name in wanted:
        per_seed, seconds = {}, []
        for seed in seeds:
            start = time.process_time()
            per_seed[seed] = EXPERIMENTS[name](d, seed)
            seconds.append(time.process_time() - start)
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4f}"
                  for k, v in per_seed[seed].items()) + f"  ({seconds[-1]:.0f} s CPU)",
                  flush=True)  # fmt: skip
        stored[name] = {"config": CONFIG[name], "seeds": seeds,
                        "cpu_seconds_per_seed": round(float(np.mean(seconds)), 1),
                        "results": summarize(per_seed)}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
