"""The 40x goal of chapter 9: Deep Compression pipelines on LeNet-300-100 (Fashion-MNIST).

Han et al. (2016) reported 40x on LeNet-300-100 (MNIST) at no loss of accuracy. This script runs
the pipeline of chapter 6 (magnitude pruning, three epochs of retraining on the 60,000 training
images where chapter 6 had two, k-means sharing with linear initialisation, one epoch of
fine-tuning, a Huffman-coded file) at sharper settings, and one hybrid that factorizes fc1 by
truncated SVD before pruning,
over seeds (the seed orders the fine-tuning batches), and stores the real file sizes and the
accuracies on the 10,000 test images in ``benchmarks/results/hybrid_goal.json``. Chapter 9 loads
them and re-runs the first setting with seed 0.

Usage: ``python benchmarks/bench_hybrid_goal.py [--seeds 3] [--out PATH]``; about 20 s a run
on one core (about 2 minutes on a loaded shared machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from refimpl import accuracy, finetune, load_baseline
from refimpl.baselines import load_dataset
from refimpl.coding import dumps_compressed
from refimpl.lowrank import svd_compress
from refimpl.nn import SGD, weighted_layers
from refimpl.pruning import prune_model
from refimpl.quantization import SharedWeights

# name: (per-layer sparsity, per-layer code bits, SVD rank of fc1 or None, retraining epochs)
SETTINGS = {
    "94% / 5 bits": ({"fc1": 0.94, "fc2": 0.93, "fc3": 0.75},
                     {"fc1": 5, "fc2": 5, "fc3": 6}, None, 3),
    "96% / 4-bit fc1": ({"fc1": 0.96, "fc2": 0.95, "fc3": 0.8},
                        {"fc1": 4, "fc2": 5, "fc3": 6}, None, 3),
    "SVD fc1 r=64, then 75% / 5 bits": ({"fc1_1": 0.75, "fc1_2": 0.75, "fc2": 0.93, "fc3": 0.75},
                                        {"fc1_1": 5, "fc1_2": 5, "fc2": 5, "fc3": 6}, 64, 3),
}


def pipeline(setting: str, seed: int, data=None) -> dict:
    """One run of ``SETTINGS[setting]``: bytes on disk and accuracies."""
    rates, bits, rank, epochs = SETTINGS[setting]
    (X_train, y_train), (X_test, y_test) = data or load_dataset("fashion_mnist")
    test = (X_test, y_test)
    base = load_baseline("lenet_300_100")
    dense_bytes = len(dumps_compressed(base, sparse=False, shared=False, huffman=False))
    model = base.copy()
    if rank is not None:
        model = svd_compress(model, {"fc1": rank})
    names = [n for n, _ in weighted_layers(model)]
    prune_model(model, {n: rates[n] for n in names})
    finetune(model, (X_train, y_train), epochs=epochs, optimizer=SGD(0.01, momentum=0.9),
             rng=seed)
    pruned_acc = accuracy(model, test)
    for name, layer in weighted_layers(model):
        layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 2 ** bits[name] - 1))
    finetune(model, (X_train, y_train), epochs=1, optimizer=SGD(0.001, momentum=0.9),
             rng=seed + 1)
    nbytes = len(dumps_compressed(model, index_bits=5))
    return {"setting": setting, "seed": seed, "dense_accuracy": accuracy(base, test),
            "pruned_accuracy": pruned_acc, "accuracy": accuracy(model, test),
            "bytes": nbytes, "dense_bytes": dense_bytes, "compression": dense_bytes / nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "hybrid_goal.json"))
    args = parser.parse_args()
    data = load_dataset("fashion_mnist")
    records = []
    for setting in SETTINGS:
        for seed in range(args.seeds):
            start = time.perf_counter()
            r = pipeline(setting, seed, data)
            records.append(r)
            print(f"{setting}, seed {seed}: {r['compression']:.1f}x, accuracy {r['accuracy']:.4f}"
                  f" (dense {r['dense_accuracy']:.4f}); took {time.perf_counter() - start:.1f} s",
                  flush=True)
    Path(args.out).write_text(json.dumps({"records": records}, indent=1))


if __name__ == "__main__":
    main()
