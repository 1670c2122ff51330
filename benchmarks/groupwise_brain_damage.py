"""Group-wise brain damage on LeNet-5's conv2: accuracy against the fraction of columns removed.

The run behind chapter 3, "Group-wise brain damage" (too long for the notebook's minute of CPU):
the trained LeNet-5 baseline is fine-tuned for one epoch on 2,000 Fashion-MNIST training images
(SGD, lr 0.005, momentum 0.9) with the group-lasso penalty over ``conv2``'s im2col columns
:math:`W_{:,c,i,j}` (``GroupLasso(group="shape")``, proximal step) at several strengths; the
columns that reach zero are pruned (``prune_columns``) and the test accuracy on the first 2,000
test images is measured with no further training. As the control, the same fraction of the
baseline's columns with the smallest norms is pruned with no training at all. Stores the
fractions, both accuracies and each strength's kept-column pattern (20 x 5 x 5) in
``benchmarks/results/groupwise_brain_damage.json``.

Run: ``python benchmarks/groupwise_brain_damage.py [--seeds 0,1]`` (about 1 minute of CPU per
strength and seed on a laptop; several on a loaded two-core machine).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import refimpl as rf
from refimpl.baselines import load_baseline, load_dataset
from refimpl.nn import SGD
from refimpl.pruning import GroupLasso, kept_columns, prune_columns

OUT = pathlib.Path(__file__).parent / "results" / "groupwise_brain_damage.json"
STRENGTHS = (1.0, 2.0, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    (X_train, y_train), (X_test, y_test) = load_dataset("fashion_mnist")
    train, test = (X_train[:2000], y_train[:2000]), (X_test[:2000], y_test[:2000])
    base = load_baseline("lenet5")
    result = {
        "baseline_accuracy": rf.accuracy(base, test, batch_size=200),
        "strengths": list(STRENGTHS),
        "runs": [],
    }
    for seed in seeds:
        for lam in STRENGTHS:
            model = base.copy()
            opt = SGD(0.005, momentum=0.9)
            penalty = GroupLasso(lam, opt, group="shape", layers=["conv2"])
            rf.finetune(model, train, epochs=1, optimizer=opt, rng=seed, callbacks=[penalty])
            keep = kept_columns(model["conv2"])
            prune_columns(model, layers=["conv2"])
            removed = float(1 - keep.mean())
            control = prune_columns(base.copy(), sparsity=removed, layers=["conv2"])
            row = {
                "seed": seed,
                "strength": lam,
                "removed": removed,
                "accuracy": rf.accuracy(model, test, batch_size=200),
                "norm_pruned_accuracy": rf.accuracy(control, test, batch_size=200),
                "kept": keep.astype(int).tolist(),
            }
            result["runs"].append(row)
            print(f"seed {seed} lambda {lam}: removed {removed:.3f}, accuracy "
                  f"{row['accuracy']:.4f}, norm-pruned {row['norm_pruned_accuracy']:.4f}",
                  flush=True)  # fmt: skip
            OUT.write_text(json.dumps(result, indent=1) + "\n")  # after every run
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
