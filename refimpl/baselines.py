"""The baseline networks every chapter compresses: trained once, reproducibly, stored as ``.npz``.

Each baseline is a (model, data set, recipe) triple in :data:`BASELINES`. :func:`train_baseline`
trains one from its seed; ``python -m refimpl.baselines`` trains them all and writes
``refimpl/weights/<name>.npz`` plus ``refimpl/weights/baselines.json`` (recipe, test accuracy,
SHA-256 of each weights file). Chapters call :func:`load_baseline` instead of retraining, and the
test suite checks that the stored weights still give the recorded accuracies and that a shortened
run reproduces itself bit for bit. See chapter 2, "The baselines".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import models
from .nn import SGD, CosineAnnealingLR, History, Sequential, evaluate, fit

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
METADATA = WEIGHTS_DIR / "baselines.json"


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained: SGD with Nesterov momentum and a cosine schedule."""

    model: str
    dataset: str
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0


BASELINES: dict[str, Recipe] = {
    "lenet_300_100": Recipe("lenet_300_100", "fashion_mnist", epochs=20, lr=0.05),
    "lenet5": Recipe("lenet5", "fashion_mnist", epochs=10, lr=0.02),
    "digits_mlp": Recipe("digits_mlp", "digits", epochs=40, lr=0.05, batch_size=32),
    "digits_cnn": Recipe("digits_cnn", "digits", epochs=40, lr=0.05, batch_size=32),
}

_MODELS: dict[str, Callable[..., Sequential]] = {
    "lenet_300_100": models.lenet_300_100,
    "lenet5": models.lenet5,
    "digits_mlp": models.digits_mlp,
    "digits_cnn": models.digits_cnn,
}

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load_dataset(name: str) -> Split:
    """``((X_train, y_train), (X_test, y_test))`` of ``"fashion_mnist"`` or ``"digits"``.

    Digits are split 75/25, stratified, with seed 0 (:func:`refimpl.data.train_test_split`).
    """
    from . import data

    if name == "fashion_mnist":
        return data.load_fashion_mnist()
    if name == "digits":
        X, y = data.load_digits()
        X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, test_fraction=0.25, seed=0)
        return (X_tr, y_tr), (X_te, y_te)
    raise ValueError(f"dataset must be 'fashion_mnist' or 'digits', got {name!r}")


def _recipe(name: str) -> Recipe:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[name]


def train_baseline(
    name: str,
    *,
    epochs: int | None = None,
    max_train: int | None = None,
    split: Split | None = None,
    verbose: bool = True,
) -> tuple[Sequential, History]:
    """Train baseline ``name`` from its seed and return ``(model, history)``.

    Parameters
    ----------
    name : str
        A key of :data:`BASELINES`.
    epochs : int, optional
        Override the recipe's epoch count (tests use a shortened run).
    max_train : int, optional
        Train on the first ``max_train`` examples only (for quick checks).
    split : ((X_train, y_train), (X_test, y_test)), optional
        Data already loaded; by default :func:`load_dataset` of the recipe.
    verbose : bool
        One line per epoch.
    """
    r = _recipe(name)
    (X_tr, y_tr), (X_te, y_te) = split if split is not None else load_dataset(r.dataset)
    if max_train is not None:
        X_tr, y_tr = X_tr[:max_train], y_tr[:max_train]
    n_epochs = r.epochs if epochs is None else epochs
    model = _MODELS[r.model](rng=r.seed)
    opt = SGD(r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=True)
    sched = CosineAnnealingLR(opt, T_max=max(n_epochs, 1))
    history = fit(
        model,
        (X_tr, y_tr),
        epochs=n_epochs,
        optimizer=opt,
        batch_size=r.batch_size,
        rng=r.seed,
        val_data=(X_te, y_te),
        scheduler=sched,
        verbose=verbose,
    )
    return model, history


def weights_path(name: str) -> Path:
    _recipe(name)
    return WEIGHTS_DIR / f"{name}.npz"


def load_baseline(name: str) -> Sequential:
    """The stored, trained baseline ``name`` (a fresh model each call)."""
    r = _recipe(name)
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `python -m refimpl.baselines {name}` to train it"
        )
    return _MODELS[r.model](rng=r.seed).load(path)


def baseline_info(name: str) -> dict:
    """What training recorded for ``name``: recipe, test accuracy and loss, weights SHA-256."""
    _recipe(name)
    info = json.loads(METADATA.read_text())
    if name not in info:
        raise KeyError(f"{METADATA} has no entry for {name!r}")
    return info[name]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train and store the baseline networks.")
    parser.add_argument("names", nargs="*", default=sorted(BASELINES), help="baselines to train")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    info = json.loads(METADATA.read_text()) if METADATA.exists() else {}
    for name in args.names:
        r = _recipe(name)
        split = load_dataset(r.dataset)
        start = time.perf_counter()
        model, history = train_baseline(name, split=split, verbose=not args.quiet)
        seconds = time.perf_counter() - start
        path = weights_path(name)
        model.save(path)
        ev = evaluate(load_baseline(name), split[1])
        info[name] = {
            "recipe": asdict(r),
            "test_accuracy": round(ev.accuracy, 6),
            "test_loss": round(ev.loss, 6),
            "train_seconds": round(seconds, 1),
            "parameters": model.num_parameters(),
            "sha256": sha256(path),
        }
        print(f"{name}: test accuracy {ev.accuracy:.4f} ({seconds:.0f} s) -> {path}")
        METADATA.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
