"""Losses that learn from a teacher: soft targets (Hinton et al.) and hints (FitNets).

Both are called as ``loss(student_output, targets, teacher_output)`` and then ``backward()``,
which is what :func:`refimpl.nn.fit` does when it is given a ``teacher``: it runs the teacher in
evaluation mode on every batch and hands its output to the loss. See chapter 8 of the book,
"Knowledge distillation".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.losses import CrossEntropyLoss, log_softmax
from ..validation import check_float


def _check_logits(student: Any, teacher: Any) -> tuple[np.ndarray, np.ndarray]:
    s, t = np.asarray(student), np.asarray(teacher)
    for arr, name in ((s, "student_logits"), (t, "teacher_logits")):
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if s.ndim != 2:
        raise ValueError(f"student_logits must have shape (N, K), got {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have the student's shape {s.shape}, got {t.shape}")
    return s, t


class DistillationLoss:
    """Hinton, Vinyals and Dean's distillation loss: soft targets at temperature ``T`` plus the
    hard labels.

    Parameters
    ----------
    temperature : float
        ``T > 0``: both logits are divided by it before the softmax. ``T = 1`` is the ordinary
        softmax; larger ``T`` gives softer distributions, which show how the teacher ranks the
        wrong classes.
    alpha : float
        Weight of the soft term, in ``[0, 1]``; ``1 - alpha`` weights the cross-entropy with the
        hard labels. ``alpha = 0`` is plain training.

    Notes
    -----
    For student logits ``s`` and teacher logits ``t`` (shape (N, K)) and labels ``y``, with
    ``p = softmax(t / T)`` and ``q = softmax(s / T)`` computed in log space,

    ``L = mean_n [ alpha T^2 KL(p_n || q_n) + (1 - alpha) CE(softmax(s_n), y_n) ]``,

    ``KL(p || q) = sum_k p_k (log p_k - log q_k)``. Its gradient is

    ``dL/ds = [ alpha T (q - p) + (1 - alpha) (softmax(s) - onehot(y)) ] / N``.

    The factor ``T^2``: the soft term's gradient without it is ``(q - p) / T``, and for large
    ``T`` (with zero-mean logits) ``q - p ~ (s - t) / (K T)``, so it would shrink as
    ``1 / T^2``. Multiplied by ``T^2`` it tends to ``(s - t) / K`` (the gradient of
    ``||s - t||^2 / (2K)``, matching logits, as Hinton et al. show), and the balance between the
    two terms stays the same when ``T`` changes. ``KL`` differs from the cross-entropy with the
    soft targets only by the teacher's entropy, a constant: the same gradient, and a loss that
    is zero when the student matches the teacher.

    Call ``loss(student_logits, targets, teacher_logits)`` (targets: (N,) integer classes, or
    (N, K) probabilities) to get a float, then ``backward()`` for ``dL/ds``. Used by
    :func:`refimpl.nn.fit` with ``teacher=``.

    References
    ----------
    .. [1] Hinton, G., Vinyals, O. and Dean, J. (2015) Distilling the knowledge in a neural
       network. NIPS Deep Learning Workshop, arXiv:1503.02531.
    .. [2] Ba, J. and Caruana, R. (2014) Do deep nets really need to be deep? NeurIPS.
       (Matching logits, the high-temperature limit.)
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        self.temperature = check_float(temperature, "temperature", 0.0, open_low=True)
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0)
        self._ce = CrossEntropyLoss()

    def forward(self, student_logits: np.ndarray, targets: np.ndarray,
                teacher_logits: np.ndarray | None = None) -> float:  # fmt: skip
        if teacher_logits is None:
            raise TypeError("DistillationLoss needs the teacher's logits: call "
                            "loss(student_logits, targets, teacher_logits), or fit(..., "
                            "teacher=model)")  # fmt: skip
        s, t = _check_logits(student_logits, teacher_logits)
        T, a = self.temperature, self.alpha
        hard = self._ce(s, targets)  # checks the targets
        n = max(len(s), 1)
        log_q = log_softmax(s / T)
        log_p = log_softmax(t.astype(s.dtype, copy=False) / T)
        p = np.exp(log_p)
        kl = float((p * (log_p - log_q)).sum() / n)
        self._cache = (np.exp(log_q), p, n)
        self.soft_loss, self.hard_loss = T * T * kl, hard
        return a * self.soft_loss + (1 - a) * hard

    __call__ = forward

    def backward(self) -> np.ndarray:
        q, p, n = self._cache
        T, a = self.temperature, self.alpha
        grad = (a * T / n) * (q - p)
        if a < 1:
            grad += (1 - a) * self._ce.backward()
        return grad

    def __repr__(self) -> str:
        return f"DistillationLoss(temperature={self.temperature:g}, alpha={self.alpha:g})"


class HintLoss:
    """FitNets' hint loss: half the squared distance between the regressed student features
    and the teacher's hint, summed over features, averaged over the batch.

    Notes
    -----
    ``L = (1 / 2N) sum_n ||r(v_n) - h_n||^2`` with ``r(v)`` the output of the student's guided
    layer passed through the regressor (what the model given to ``fit`` outputs) and ``h`` the
    teacher's hint layer output; ``dL/dr = (r - h) / N``. The labels are ignored. Train the
    student's lower layers and the regressor on it first, then the whole student with
    :class:`DistillationLoss` (Romero et al. 2015). See :func:`refimpl.distill.hint_models`.

    References
    ----------
    .. [1] Romero, A., Ballas, N., Kahou, S. E., Chassang, A., Gatta, C. and Bengio, Y. (2015)
       FitNets: hints for thin deep nets. ICLR.
    """

    def forward(self, regressed: np.ndarray, targets: Any = None,
                teacher_hint: np.ndarray | None = None) -> float:  # fmt: skip
        if teacher_hint is None:
            raise TypeError("HintLoss needs the teacher's hint: call loss(regressed, targets, "
                            "teacher_hint), or fit(..., teacher=hint_teacher)")  # fmt: skip
        r, h = np.asarray(regressed), np.asarray(teacher_hint)
        if r.shape != h.shape:
            raise ValueError(f"the regressed features {r.shape} and the teacher's hint "
                             f"{h.shape} differ in shape")  # fmt: skip
        n = max(len(r), 1)
        self._diff, self._n = r - h.astype(r.dtype, copy=False), n
        return float(0.5 * np.sum(self._diff.astype(np.float64) ** 2) / n)

    __call__ = forward

    def backward(self) -> np.ndarray:
        return self._diff / self._n

    def __repr__(self) -> str:
        return "HintLoss()"
