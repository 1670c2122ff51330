"""The bias correction of Hinton et al.'s omitted-class experiment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BiasSearch:
    """Result of :func:`best_class_bias`: the best shift, its accuracy, and the whole sweep."""

    shift: float
    accuracy: float
    shifts: np.ndarray
    accuracies: np.ndarray


def best_class_bias(
    logits: np.ndarray, labels: np.ndarray, cls: int, shifts: np.ndarray
) -> BiasSearch:
    """The shift of class ``cls``'s logit that maximizes accuracy on ``(logits, labels)``.

    A student distilled on a transfer set without class ``cls`` has learned the class's
    features from the soft targets but not its prior: its logit for ``cls`` is too low.
    Hinton et al. raised the bias of the omitted class ("3" on MNIST) by 3.5. Add the
    returned ``shift`` to the bias of the output layer's unit ``cls``
    (``layer.add_to_bias(shift * np.eye(K)[cls])``). Choose it on held-out data that contains
    the class, not on the test set.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)
    cls : int
        The class whose logit is shifted.
    shifts : ndarray, shape (S,)
        Candidate shifts; the first best one wins.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"logits must be (N, K) and labels (N,), got {logits.shape} and "
                         f"{labels.shape}")  # fmt: skip
    k = logits.shape[1]
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < k:
        raise ValueError(f"cls must be an int in [0, {k - 1}], got {cls!r}")
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1)
    if shifts.size == 0 or not np.isfinite(shifts).all():
        raise ValueError("shifts must be a non-empty array of finite numbers")
    accs = np.empty(len(shifts))
    for i, d in enumerate(shifts):
        z = logits.copy()
        z[:, cls] += d
        accs[i] = np.mean(z.argmax(axis=1) == labels)
    best = int(np.argmax(accs))
    return BiasSearch(float(shifts[best]), float(accs[best]), shifts, accs)
