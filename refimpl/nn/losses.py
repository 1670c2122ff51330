"""Losses, computed stably, each with its gradient with respect to the network output."""

from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log softmax`` along the last axis by the log-sum-exp trick (no overflow)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax along the last axis, computed as ``exp(log_softmax(z))``."""
    return np.exp(log_softmax(z))


class CrossEntropyLoss:
    """Softmax cross-entropy, averaged over the batch (``torch.nn.CrossEntropyLoss``).

    ``loss = -mean_n sum_k t_nk log softmax(z_n)_k`` with ``t`` the one-hot target, or a
    probability distribution per row (soft targets, as distillation uses).

    Call ``loss(logits, targets)`` (shapes (N, K) and (N,) integer classes or (N, K)
    probabilities) to get a float; then ``backward()`` returns ``dloss/dlogits``
    ``= (softmax(z) - t) / N``.
    """

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, K), got {logits.shape}")
        n, k = logits.shape
        logp = log_softmax(logits)
        targets = np.asarray(targets)
        if targets.ndim == 1:
            if targets.shape[0] != n:
                raise ValueError(f"targets must have length {n}, got {targets.shape[0]}")
            if not np.issubdtype(targets.dtype, np.integer):
                raise TypeError(f"class targets must be integers, got dtype {targets.dtype}")
            if n and (targets.min() < 0 or targets.max() >= k):
                raise ValueError(f"class targets must lie in [0, {k - 1}]")
            t = np.zeros_like(logp)
            t[np.arange(n), targets] = 1
        elif targets.shape == logits.shape:
            t = targets.astype(logp.dtype, copy=False)
        else:
            raise ValueError(
                f"targets must have shape ({n},) or {logits.shape}, got {targets.shape}"
            )
        self._cache = (logp, t)
        return float(-(t * logp).sum() / max(n, 1))

    __call__ = forward

    def backward(self) -> np.ndarray:
        logp, t = self._cache
        return (np.exp(logp) - t) / max(len(t), 1)


class MSELoss:
    """Mean squared error over all entries, ``mean((y - t)^2)`` (``torch.nn.MSELoss``)."""

    def forward(self, output: np.ndarray, targets: np.ndarray) -> float:
        targets = np.asarray(targets)
        if output.shape != targets.shape:
            raise ValueError(f"output {output.shape} and targets {targets.shape} differ in shape")
        self._diff = output - targets
        return float(np.mean(self._diff**2))

    __call__ = forward

    def backward(self) -> np.ndarray:
        return 2 * self._diff / self._diff.size
