"""When to prune: one-shot, iterative and polynomial sparsity schedules, as a driver or callback.

Han et al. (2015) prune and retrain in several rounds; Zhu and Gupta (2018) raise the sparsity
smoothly during training along a cubic, the schedule TensorFlow Model Optimization calls
``PolynomialDecay``. Both are built here on :func:`refimpl.pruning.prune_model` and the
network core's :func:`refimpl.nn.fit`. See chapter 3 of the book, "Pruning schedules".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..nn import Optimizer, evaluate, fit
from ..nn.layers import Layer
from ..validation import check_float, check_int
from .magnitude import check_sparsity, prune_model, sparsity_report

__all__ = [
    "GradualPruning",
    "PruningRound",
    "iterative_pruning",
    "polynomial_sparsity",
    "sparsity_schedule",
]


def polynomial_sparsity(
    step: int,
    *,
    initial_sparsity: float = 0.0,
    final_sparsity: float,
    begin_step: int = 0,
    end_step: int,
    power: float = 3.0,
) -> float:
    """Target sparsity at ``step`` of the polynomial schedule (TF-MOT ``PolynomialDecay``).

    Parameters
    ----------
    step : int >= 0
        Training step (optimizer updates so far).
    initial_sparsity, final_sparsity : float in [0, 1)
        Sparsity at ``begin_step`` and from ``end_step`` on; ``initial <= final``.
    begin_step, end_step : int
        The ramp; ``0 <= begin_step < end_step``.
    power : float > 0
        Exponent; 3 is Zhu and Gupta's cubic.

    Returns
    -------
    sparsity : float
        0 before ``begin_step`` (nothing is pruned yet), the ramp value in between,
        ``final_sparsity`` after ``end_step``.

    Notes
    -----
    .. math:: s_t = s_f + (s_i - s_f)\\left(1 - \\frac{t - t_0}{t_1 - t_0}\\right)^{p},
              \\qquad t_0 \\le t \\le t_1.

    The ramp prunes fast at first, while many redundant weights remain, and slowly at the end.

    References
    ----------
    .. [1] Zhu, M. and Gupta, S. (2018) To prune, or not to prune: exploring the efficacy of
       pruning for model compression. ICLR Workshop.

    See chapter 3 of the book, "Pruning schedules".
    """
    step = check_int(step, "step", 0)
    s_i = check_sparsity(initial_sparsity, "initial_sparsity")
    s_f = check_sparsity(final_sparsity, "final_sparsity")
    if s_i > s_f:
        raise ValueError(f"initial_sparsity {s_i} must not exceed final_sparsity {s_f}")
    begin = check_int(begin_step, "begin_step", 0)
    end = check_int(end_step, "end_step", begin + 1)
    power = check_float(power, "power", 0.0, open_low=True)
    if step < begin:
        return 0.0
    frac = min(1.0, (step - begin) / (end - begin))
    return s_f + (s_i - s_f) * (1.0 - frac) ** power


def sparsity_schedule(
    final_sparsity: float,
    rounds: int,
    *,
    kind: str = "iterative",
    initial_sparsity: float = 0.0,
    power: float = 3.0,
) -> np.ndarray:
    """Per-round sparsity targets for prune-and-retrain, shape (rounds,), non-decreasing.

    Parameters
    ----------
    final_sparsity : float in [0, 1)
        Sparsity after the last round.
    rounds : int >= 1
        Number of pruning rounds.
    kind : {"one_shot", "iterative", "linear", "polynomial"}
        ``"one_shot"``: all of it in round 1 (later rounds only retrain). ``"iterative"``:
        the same *fraction of the surviving weights* each round, :math:`s_k = 1 - (1 - s_f)^{k/R}`
        (Han et al.'s and Frankle and Carbin's rounds). ``"linear"``: equal steps of sparsity.
        ``"polynomial"``: :func:`polynomial_sparsity` sampled at the ends of the rounds.
    initial_sparsity : float in [0, 1)
        Start of the ``"linear"`` and ``"polynomial"`` ramps.
    power : float
        Exponent of ``"polynomial"``.

    Returns
    -------
    targets : ndarray of float, shape (rounds,)
        ``targets[-1] == final_sparsity``.

    See chapter 3 of the book, "Pruning schedules".
    """
    s_f = check_sparsity(final_sparsity, "final_sparsity")
    rounds = check_int(rounds, "rounds", 1)
    k = np.arange(1, rounds + 1, dtype=np.float64)
    if kind == "one_shot":
        out = np.full(rounds, s_f)
    elif kind == "iterative":
        out = 1.0 - (1.0 - s_f) ** (k / rounds)
    elif kind == "linear":
        s_i = check_sparsity(initial_sparsity, "initial_sparsity")
        if s_i > s_f:
            raise ValueError(f"initial_sparsity {s_i} must not exceed final_sparsity {s_f}")
        out = s_i + (s_f - s_i) * k / rounds
    elif kind == "polynomial":
        out = np.array(
            [
                polynomial_sparsity(
                    int(t),
                    initial_sparsity=initial_sparsity,
                    final_sparsity=s_f,
                    begin_step=0,
                    end_step=rounds,
                    power=power,
                )
                for t in k
            ]
        )
    else:
        raise ValueError(
            f"kind must be 'one_shot', 'iterative', 'linear' or 'polynomial', got {kind!r}"
        )
    out[-1] = s_f
    return out


class GradualPruning:
    """Fit callback that prunes by magnitude along :func:`polynomial_sparsity` during training.

    Every ``frequency`` optimizer steps between ``begin_step`` and ``end_step`` (and at
    ``end_step``) the model is pruned to the schedule's target with :func:`prune_model`; masks
    compose, so the kept set only shrinks.

    Parameters
    ----------
    final_sparsity : float in [0, 1)
    begin_step, end_step : int
        The ramp in optimizer steps (``fit`` counts steps across epochs).
    frequency : int >= 1
        Steps between pruning events (TF-MOT's ``frequency``).
    initial_sparsity, power : float
        As in :func:`polynomial_sparsity`.
    scope, layers
        As in :func:`prune_model`.

    Attributes
    ----------
    events : list of (step, sparsity)
        The pruning events so far.

    References
    ----------
    .. [1] Zhu, M. and Gupta, S. (2018) To prune, or not to prune: exploring the efficacy of
       pruning for model compression. ICLR Workshop.

    See chapter 3 of the book, "Pruning schedules".
    """

    def __init__(
        self,
        final_sparsity: float,
        *,
        begin_step: int = 0,
        end_step: int,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
        scope: str = "layer",
        layers: Iterable[str] | None = None,
    ) -> None:
        # validate once by evaluating the schedule
        polynomial_sparsity(
            begin_step,
            initial_sparsity=initial_sparsity,
            final_sparsity=final_sparsity,
            begin_step=begin_step,
            end_step=end_step,
            power=power,
        )
        self.final_sparsity = float(final_sparsity)
        self.initial_sparsity = float(initial_sparsity)
        self.begin_step, self.end_step = int(begin_step), int(end_step)
        self.frequency = check_int(frequency, "frequency", 1)
        self.power = float(power)
        self.scope = scope
        self.layers = None if layers is None else list(layers)
        self.events: list[tuple[int, float]] = []

    def target(self, step: int) -> float:
        """The schedule's sparsity at ``step``."""
        return polynomial_sparsity(
            step,
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            power=self.power,
        )

    def on_step_end(self, model: Layer, step: int) -> None:
        if step < self.begin_step or step > self.end_step:
            return
        if (step - self.begin_step) % self.frequency and step != self.end_step:
            return
        s = self.target(step)
        if self.events and s <= self.events[-1][1]:
            return
        prune_model(model, s, scope=self.scope, layers=self.layers)
        self.events.append((step, s))


@dataclass
class PruningRound:
    """One round of :func:`iterative_pruning`: its target and the measured results."""

    round: int
    target: float | dict[str, float]
    sparsity: dict[str, float] = field(default_factory=dict)
    accuracy_pruned: float = float("nan")
    accuracy_retrained: float = float("nan")


def iterative_pruning(
    model: Layer,
    train_data: tuple[np.ndarray, np.ndarray],
    targets: Sequence[float | Mapping[str, float]],
    *,
    optimizer: Optimizer,
    epochs: int = 1,
    batch_size: int = 64,
    rng: int | np.random.Generator | None = None,
    val_data: tuple[np.ndarray, np.ndarray] | None = None,
    scope: str = "layer",
    layers: Iterable[str] | None = None,
) -> list[PruningRound]:
    """Han et al.'s prune-and-retrain loop: for each target, prune by magnitude, then retrain.

    Parameters
    ----------
    model : Sequential
        Pruned and retrained in place.
    train_data : (X, y)
        Retraining data, X (N, ...) and integer labels (N,).
    targets : sequence of float or dict
        Sparsity after each round, e.g. from :func:`sparsity_schedule`; a dict gives per-layer
        targets (Han's per-layer sensitivities). Must not decrease.
    optimizer : Optimizer
        Reset (momentum forgotten) after every pruning step.
    epochs : int
        Retraining epochs per round (0: prune only).
    batch_size, rng
        Passed to :func:`refimpl.nn.fit`; ``rng`` seeds all rounds.
    val_data : (X, y), optional
        If given, accuracy is measured after pruning and after retraining.
    scope, layers
        As in :func:`prune_model`.

    Returns
    -------
    rounds : list of PruningRound

    Notes
    -----
    Each round's mask is a subset of the previous one: the retrained survivors are ranked
    again, and removed weights stay removed (the masks compose).

    References
    ----------
    .. [1] Han, S., Pool, J., Tran, J. and Dally, W. (2015) Learning both weights and
       connections for efficient neural networks. NeurIPS 28, 1135-1143.

    See chapter 3 of the book, "Magnitude pruning".
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
    if len(targets) == 0:
        raise ValueError("targets must hold at least one sparsity")
    epochs = check_int(epochs, "epochs", 0)
    gen = np.random.default_rng(rng)
    layers = None if layers is None else list(layers)
    out: list[PruningRound] = []
    for r, target in enumerate(targets, start=1):
        if isinstance(target, Mapping):
            prune_model(model, target, scope=scope)
        else:
            prune_model(model, target, scope=scope, layers=layers)
        optimizer.reset()
        rec = PruningRound(round=r, target=dict(target) if isinstance(target, Mapping) else target)
        if val_data is not None:
            rec.accuracy_pruned = evaluate(model, val_data).accuracy
        if epochs:
            fit(
                model,
                train_data,
                epochs=epochs,
                optimizer=optimizer,
                batch_size=batch_size,
                rng=gen,
                verbose=False,
            )
        if val_data is not None:
            rec.accuracy_retrained = evaluate(model, val_data).accuracy
        rec.sparsity = sparsity_report(model)
        out.append(rec)
    return out
