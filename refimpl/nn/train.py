"""One training loop for every method: ``fit``, ``evaluate`` and ``predict``.

Compression methods do not need their own loops: a pruned, shared or quantized layer is a
parametrization, so the same loop fine-tunes it. Methods that act during training (iterative
pruning, sparse evolution, group-lasso penalties) plug in as *callbacks*: any object with some of
the methods ``on_before_step(model)`` (after the backward pass, before the update: add a penalty's
gradient), ``on_step_end(model, step)`` and ``on_epoch_end(model, epoch, history)``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.batches import iterate_minibatches
from ..validation import check_int
from .layers import Layer
from .losses import CrossEntropyLoss
from .optim import LRScheduler, Optimizer


@dataclass
class History:
    """Per-epoch figures of a :func:`fit` run (lists, one entry per epoch)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.loss)


@dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy (fraction correct) of a model on a data set."""

    loss: float
    accuracy: float


def _check_data(data: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (X, y) of arrays")
    X, y = np.asarray(data[0]), np.asarray(data[1])
    if len(X) != len(y):
        raise ValueError(f"{name}: X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    return X, y


def predict(model: Layer, X: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Outputs of ``model`` in evaluation mode, computed batch by batch. Shape (N, K)."""
    batch_size = check_int(batch_size, "batch_size", 1)
    outs = [model.forward(X[i : i + batch_size], train=False) for i in range(0, len(X), batch_size)]
    return np.concatenate(outs, axis=0)


def forward_through(
    model: Layer, X: np.ndarray, stop: int, *, batch_size: int = 1000
) -> np.ndarray:
    """Outputs of the layers ``0 .. stop`` of a ``Sequential`` in evaluation mode, batch by batch.

    The intermediate activations that layer-wise methods need (ThiNet, layer-wise OBS, the
    data-driven refinement of a factorized layer). ``stop = -1`` runs no layer and returns
    ``X`` as an array.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    layers = list(model)[: stop + 1]
    X = np.asarray(X)
    if not layers:
        return X
    outs = []
    for i in range(0, len(X), batch_size):
        x = X[i : i + batch_size]
        for layer in layers:
            x = layer.forward(x, train=False)
        outs.append(x)
    return np.concatenate(outs, axis=0)


def evaluate(
    model: Layer,
    data: tuple[np.ndarray, np.ndarray],
    *,
    batch_size: int = 1000,
    loss: Any = None,
    teacher: Layer | None = None,
) -> Evaluation:
    """Mean loss and accuracy of ``model`` on ``data = (X, y)`` in evaluation mode.

    With a ``teacher`` (see :func:`fit`), the loss is called as ``loss(output, y,
    teacher_output)``.
    """
    X, y = _check_data(data, "data")
    batch_size = check_int(batch_size, "batch_size", 1)
    loss_fn = loss if loss is not None else CrossEntropyLoss()
    _check_teacher(teacher, model, loss)
    total, correct = 0.0, 0
    for i in range(0, len(X), batch_size):
        xb, yb = X[i : i + batch_size], y[i : i + batch_size]
        out = model.forward(xb, train=False)
        total += _batch_loss(loss_fn, out, yb, xb, teacher) * len(xb)
        if yb.ndim == 1:
            correct += int((out.argmax(axis=1) == yb).sum())
    return Evaluation(
        loss=total / len(X), accuracy=correct / len(X) if y.ndim == 1 else float("nan")
    )


def fit(
    model: Layer,
    train_data: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    optimizer: Optimizer,
    batch_size: int = 64,
    rng: int | np.random.Generator | None = None,
    val_data: tuple[np.ndarray, np.ndarray] | None = None,
    loss: Any = None,
    scheduler: LRScheduler | None = None,
    callbacks: Sequence[Any] = (),
    verbose: bool = True,
    teacher: Layer | None = None,
) -> History:
    """Train ``model`` by mini-batch gradient descent and return its :class:`History`.

    Parameters
    ----------
    model : Layer
        Usually a :class:`~refimpl.nn.Sequential`; updated in place.
    train_data : (X, y)
        Inputs (N, ...) and integer class labels (N,) (or targets matching ``loss``).
    epochs : int
        Passes over the data (>= 0).
    optimizer : Optimizer
        :class:`~refimpl.nn.SGD` or :class:`~refimpl.nn.Adam`.
    batch_size : int
        Examples per update.
    rng : int, numpy.random.Generator or None
        Seed or generator of the shuffles; the same seed reproduces the run bit for bit.
    val_data : (X, y), optional
        Evaluated after every epoch.
    loss : object, optional
        A loss with ``__call__(output, targets)`` and ``backward()``; cross-entropy by default.
    scheduler : LRScheduler, optional
        Stepped once per epoch.
    callbacks : sequence
        Objects with any of ``on_before_step(model)``, ``on_step_end(model, step)`` and
        ``on_epoch_end(model, epoch, history)``.
    verbose : bool
        Print one short line per epoch (to stdout); ``False`` prints nothing.
    teacher : Layer, optional
        Knowledge distillation: a trained model run in evaluation mode on every batch, whose
        output is passed to the loss as a third argument, ``loss(output, y, teacher_output)``
        (so ``loss`` must accept it, e.g. :class:`refimpl.distill.DistillationLoss`). The
        teacher is never updated. See chapter 8, "Knowledge distillation".

    Raises
    ------
    FloatingPointError
        When training stops making sense: the loss of a batch is NaN or infinite, a gradient
        (after the callbacks' ``on_before_step``) holds NaN or infinite values, or a parameter
        does after the optimizer's update. The message names the epoch, the step (counted
        from 1 over the whole run), the batch within the epoch and the tensor, and says
        whether the batch's inputs held NaN (one NaN pixel makes the loss NaN, since NaN
        propagates through every layer) or the run diverged (lower the learning rate). The
        update of a batch with a non-finite loss or gradient is not applied. An update that
        makes a parameter non-finite shows in the next batch's loss, or, after the last batch
        of an epoch, in the check of the parameters that ends every epoch.
    TypeError, ValueError
        For bad arguments (``batch_size < 1``, ``epochs < 0``, ...), naming the argument.
    """
    X, y = _check_data(train_data, "train_data")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    batch_size = check_int(batch_size, "batch_size", 1)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
    gen = np.random.default_rng(rng)
    loss_fn = loss if loss is not None else CrossEntropyLoss()
    _check_teacher(teacher, model, loss)
    history = History()
    step = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        total, correct, seen = 0.0, 0, 0
        history.lr.append(optimizer.lr)
        batches = iterate_minibatches(X, y, batch_size, shuffle=True, rng=gen)
        for batch, (xb, yb) in enumerate(batches, start=1):
            where = f"epoch {epoch}, step {step + 1} (batch {batch} of the epoch)"
            out = model.forward(xb, train=True)
            batch_loss = _batch_loss(loss_fn, out, yb, xb, teacher)
            if not math.isfinite(batch_loss):
                raise FloatingPointError(
                    f"fit stopped: the loss is {batch_loss} at {where}; {_cause(xb, optimizer)}"
                )
            total += batch_loss * len(xb)
            if yb.ndim == 1:
                correct += int((out.argmax(axis=1) == yb).sum())
            seen += len(xb)
            model.backward(loss_fn.backward())
            for cb in callbacks:
                if hasattr(cb, "on_before_step"):
                    cb.on_before_step(model)
            bad = _first_non_finite(model.named_grads())
            if bad is not None:
                raise FloatingPointError(
                    f"fit stopped: the gradient of {bad} holds NaN or infinite values at "
                    f"{where}; {_cause(xb, optimizer)}"
                )
            optimizer.step(model)
            step += 1
            for cb in callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(model, step)
        # a parameter made non-finite by an update makes the next batch's loss non-finite;
        # this catches the last update of the epoch
        bad = _first_non_finite(model.named_parameters())
        if bad is not None:
            raise FloatingPointError(
                f"fit stopped: {bad} holds NaN or infinite values after epoch {epoch} (step "
                f"{step}); {_cause(xb, optimizer)}"
            )
        history.loss.append(total / seen)
        history.accuracy.append(correct / seen)
        if val_data is not None:
            ev = evaluate(model, val_data, loss=loss_fn, teacher=teacher)
            history.val_loss.append(ev.loss)
            history.val_accuracy.append(ev.accuracy)
        if scheduler is not None:
            scheduler.step()
        history.seconds.append(time.perf_counter() - start)
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(model, epoch, history)
        if verbose:
            line = f"epoch {epoch}/{epochs}  loss {history.loss[-1]:.4f}"
            line += f"  acc {history.accuracy[-1]:.4f}"
            if val_data is not None:
                line += f"  val_acc {history.val_accuracy[-1]:.4f}"
            print(line + f"  ({history.seconds[-1]:.1f} s)", file=sys.stdout, flush=True)
    return history


def _check_teacher(teacher: Any, model: Layer, loss: Any) -> None:
    """A teacher must be another layer or model, and comes with a loss that takes its output."""
    if teacher is None:
        return
    if not isinstance(teacher, Layer):
        raise TypeError(f"teacher must be a refimpl.nn layer or model, got "
                        f"{type(teacher).__name__}")  # fmt: skip
    if teacher is model:
        raise ValueError("teacher must be another model than the one trained (copy it first: "
                         "teacher=model.copy())")  # fmt: skip
    if loss is None:
        raise TypeError("a teacher needs a loss that takes its output, e.g. "
                        "refimpl.distill.DistillationLoss(temperature, alpha)")  # fmt: skip


def _batch_loss(loss_fn: Any, out: np.ndarray, yb: np.ndarray, xb: np.ndarray,
                teacher: Layer | None) -> float:  # fmt: skip
    """The loss of one batch; with a teacher, its output on the batch is the third argument."""
    if teacher is None:
        return loss_fn(out, yb)
    return loss_fn(out, yb, teacher.forward(xb, train=False))


def _first_non_finite(named: Any) -> str | None:
    """Name of the first array of ``(name, array)`` pairs holding NaN or an infinity."""
    for name, value in named:
        if value is not None and not np.isfinite(value).all():
            return name
    return None


def _cause(xb: np.ndarray, optimizer: Optimizer) -> str:
    """What most likely made training produce a non-finite number, for the error message."""
    if np.issubdtype(np.asarray(xb).dtype, np.floating) and not np.isfinite(xb).all():
        return "the batch's inputs hold NaN or infinite values (clean the data)"
    return (f"the training diverged: lower the learning rate (lr={optimizer.lr:g}) or check "
            "the loss and the model's initial weights")  # fmt: skip


def accuracy(
    model: Layer, data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 1000
) -> float:
    """Fraction of ``data = (X, y)`` that ``model`` classifies correctly (evaluation mode).

    The same figure as ``evaluate(model, data).accuracy``, without the loss. Convolutional models
    often evaluate faster with small batches (``batch_size=100``): the im2col matrix stays in
    the cache. The result does not depend on ``batch_size``.
    """
    return evaluate(model, data, batch_size=batch_size).accuracy


def finetune(
    model: Layer,
    data: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int = 1,
    optimizer: Optimizer | None = None,
    scheduler: Any = None,
    batch_size: int = 64,
    rng: int | np.random.Generator | None = 0,
    loss: Any = None,
    callbacks: Sequence[Any] = (),
    verbose: bool = False,
    teacher: Layer | None = None,
) -> Layer:
    """Retrain a compressed ``model`` in place on ``data`` with :func:`fit`; return the model.

    The fine-tuning step of every method in the book, in one place. A pruned, shared or
    quantized model keeps its parametrizations, so what was removed stays removed.

    Parameters
    ----------
    model : Layer
        Usually a compressed :class:`~refimpl.nn.Sequential`; updated in place.
    data : (X, y)
        Training inputs (N, ...) and labels (N,).
    epochs : int
        Passes over ``data``.
    optimizer : Optimizer, optional
        Default ``SGD(0.001, momentum=0.9)``: a small step, since the weights start trained.
    scheduler : callable, optional
        ``scheduler(optimizer) -> LRScheduler``, for instance
        ``lambda opt: CosineAnnealingLR(opt, T_max=epochs)``.
    batch_size, rng, loss, callbacks, verbose
        As in :func:`fit`; ``rng`` (the shuffles' seed) defaults to 0, and nothing is printed
        unless ``verbose``.
    teacher : Layer, optional
        Fine-tune by distillation from ``teacher`` (as in :func:`fit`; give a ``loss`` such as
        :class:`refimpl.distill.DistillationLoss`), for instance from the uncompressed model:
        ``finetune(pruned, data, teacher=original, loss=DistillationLoss(4, 0.9))``.
    """
    from .optim import SGD

    opt = optimizer if optimizer is not None else SGD(0.001, momentum=0.9)
    fit(
        model,
        data,
        epochs=epochs,
        optimizer=opt,
        scheduler=scheduler(opt) if scheduler is not None else None,
        batch_size=batch_size,
        rng=rng,
        loss=loss,
        callbacks=callbacks,
        verbose=verbose,
        teacher=teacher,
    )
    return model
