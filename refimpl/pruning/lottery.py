"""Lottery tickets (Frankle and Carbin 2019) and rewinding (Frankle et al. 2019).

Iterative magnitude pruning with resetting: train, remove a fraction of the surviving weights of
each layer, set the survivors back to their initial values (or, with rewinding, to their values
after a few training steps), and train again. The surviving sub-network with its original
initialization is the *ticket*; the control keeps the same mask but draws fresh random weights.
See chapter 3 of the book, "Lottery tickets".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..nn import Mask, Optimizer, evaluate, fit
from ..nn.layers import Layer
from .magnitude import check_sparsity, current_masks, prunable_layers, prune_model

__all__ = [
    "LotteryResult",
    "RewindPoint",
    "iterative_magnitude_pruning",
    "random_reinit",
    "rewind",
    "snapshot",
]


def snapshot(model: Layer) -> dict[str, np.ndarray]:
    """Copies of every layer's *effective* parameters (materialized), keyed ``"layer.param"``.

    Unlike ``state_dict()`` the keys do not depend on parametrizations, so a snapshot of the
    dense network can be loaded into its pruned version by :func:`rewind`.
    """
    out = {}
    for lname, layer in model.named_layers():
        names = {k.split(".")[0] for k in layer.params}
        for p in sorted(names):
            out[f"{lname}.{p}"] = np.array(layer.get_param(p), copy=True)
    return out


def rewind(
    model: Layer, state: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None
) -> Layer:
    """Reset every parameter to ``state`` (a :func:`snapshot`) and install ``masks`` afresh.

    Parameters
    ----------
    model : Sequential
        Changed in place.
    state : mapping
        From :func:`snapshot`: ``"layer.param"`` to array.
    masks : mapping of layer name to bool array, optional
        The ticket's masks (default: the model's current masks, kept).

    Returns
    -------
    model : Sequential
        Its masked weights equal ``state`` on the kept entries and zero elsewhere.
    """
    if masks is None:
        masks = {n: m for n, m in current_masks(model).items() if not m.all()}
    expected = set(snapshot(model))
    if set(state) != expected:
        raise ValueError(
            f"state has keys {sorted(set(state) ^ expected)} that do not match the model"
        )
    for lname, layer in model.named_layers():
        for p in list(layer.parametrizations):
            layer.remove_parametrization(p)
        for p in list(layer.params):
            value = np.asarray(state[f"{lname}.{p}"])
            if value.shape != layer.params[p].shape:
                raise ValueError(f"state[{lname}.{p}] has shape {value.shape}")
            layer.params[p] = value.astype(layer.params[p].dtype, copy=True)
        layer.grads = {}
    for name, mask in masks.items():
        prunable_layers(model, [name])[name].parametrize("weight", Mask(mask))
    return model


def random_reinit(model: Layer, *, rng: int | np.random.Generator | None = None) -> Layer:
    """The random re-initialization control: fresh weights, same masks (in place; returns model).

    Every Linear and Conv2d weight and bias is drawn again from the layers' default
    distribution :math:`U(-1/\\sqrt{\\text{fan\\_in}}, 1/\\sqrt{\\text{fan\\_in}})`; masks are
    kept. This is Frankle and Carbin's control: if a ticket wins only because of its structure,
    the control trains as well.
    """
    gen = np.random.default_rng(rng)
    for _, layer in prunable_layers(model).items():
        w = layer.weight
        bound = 1.0 / np.sqrt(w[0].size)
        for key in (layer.trained_tensor("weight"), "bias"):
            if key in layer.params:
                p = layer.params[key]
                layer.params[key] = gen.uniform(-bound, bound, p.shape).astype(p.dtype)
    return model


class RewindPoint:
    """Fit callback that takes a :func:`snapshot` after optimizer step ``step`` (0: before)."""

    def __init__(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        self.step = int(step)
        self.state: dict[str, np.ndarray] | None = None

    def on_step_end(self, model: Layer, step: int) -> None:
        if step == self.step:
            self.state = snapshot(model)


@dataclass
class LotteryResult:
    """Result of :func:`iterative_magnitude_pruning`.

    Attributes
    ----------
    masks : list of dict
        ``masks[r]`` are the masks trained in round ``r`` (round 0: dense, all ``True``).
    sparsity : list of float
        Fraction of the pruned layers' weights removed in each round.
    accuracy : list of float
        Validation accuracy at the end of each round's training (NaN without ``val_data``).
    rewind_state : dict
        The :func:`snapshot` every round starts from (initial weights or rewind point).
    """

    masks: list[dict[str, np.ndarray]] = field(default_factory=list)
    sparsity: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    rewind_state: dict[str, np.ndarray] = field(default_factory=dict)


def _seed(rng: int | np.random.Generator | None) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31))
    if rng is None:
        return int(np.random.default_rng().integers(2**31))
    return int(rng)


def iterative_magnitude_pruning(
    model: Layer,
    train_data: tuple[np.ndarray, np.ndarray],
    *,
    rounds: int,
    rate: float | Mapping[str, float] = 0.2,
    make_optimizer: Callable[[], Optimizer],
    epochs: int = 1,
    batch_size: int = 64,
    rewind_step: int = 0,
    rng: int | np.random.Generator | None = None,
    val_data: tuple[np.ndarray, np.ndarray] | None = None,
    layers: Iterable[str] | None = None,
) -> LotteryResult:
    """Find a lottery ticket: train, prune ``rate`` of the survivors per layer, reset, repeat.

    Parameters
    ----------
    model : Sequential
        Freshly initialized; trained and pruned in place (it ends as the last round's ticket,
        trained).
    train_data : (X, y)
    rounds : int >= 1
        Pruning rounds; ``rounds + 1`` trainings (the dense one first).
    rate : float in [0, 1) or dict of layer name to float
        Fraction of each layer's *surviving* weights removed per round (Frankle and Carbin use
        0.2 for dense layers and half that for the output layer); a dict selects the layers.
    make_optimizer : callable
        Returns a fresh optimizer for each round (the same schedule every round).
    epochs, batch_size
        Training per round, as :func:`refimpl.nn.fit`.
    rewind_step : int >= 0
        0 resets to the initial weights (Frankle and Carbin 2019); ``k > 0`` rewinds to the
        weights after ``k`` optimizer steps of the dense run (Frankle et al. 2019).
    rng : int or Generator
        One seed for the data order, used again in every round, so rounds differ only in mask.
    val_data : (X, y), optional
        Accuracy measured after each round's training.
    layers : iterable of str, optional
        Layers to prune with ``rate`` (default all Linear and Conv2d); not with a dict.

    Returns
    -------
    LotteryResult

    Notes
    -----
    After round :math:`r` a layer keeps :math:`(1 - p)^r` of its weights (rounded to whole
    weights each round). The masks are nested, and every round starts from the same
    :math:`\\theta_0` (or :math:`\\theta_k`):

    .. math:: \\theta^{(r)} = m^{(r)} \\odot \\theta_k, \\qquad
              m^{(r+1)} = m^{(r)} \\wedge \\operatorname{top}_{1-p}(|m^{(r)} \\odot
              \\theta^{(r)}_{\\text{trained}}|).

    References
    ----------
    .. [1] Frankle, J. and Carbin, M. (2019) The lottery ticket hypothesis: finding sparse,
       trainable neural networks. ICLR.
    .. [2] Frankle, J., Dziugaite, G. K., Roy, D. M. and Carbin, M. (2019) Stabilizing the
       lottery ticket hypothesis. arXiv:1903.01611.

    See chapter 3 of the book, "Lottery tickets".
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    if isinstance(rate, Mapping):
        if layers is not None:
            raise ValueError("give either a rate dict or layers, not both")
        rates = {n: check_sparsity(r, f"rate[{n!r}]") for n, r in rate.items()}
    else:
        r = check_sparsity(rate, "rate")
        rates = dict.fromkeys(prunable_layers(model, layers), r)
    prunable_layers(model, list(rates))  # names must exist
    if not callable(make_optimizer):
        raise TypeError("make_optimizer must be a callable returning an Optimizer")
    seed = _seed(rng)
    result = LotteryResult()
    point = RewindPoint(rewind_step)
    if rewind_step == 0:
        point.state = snapshot(model)
    masks = {n: np.ones(model[n].weight.shape, dtype=bool) for n in rates}
    for r in range(rounds + 1):
        opt = make_optimizer()
        if not isinstance(opt, Optimizer):
            raise TypeError("make_optimizer must return an Optimizer")
        callbacks = [point] if (r == 0 and rewind_step > 0) else []
        fit(model, train_data, epochs=epochs, optimizer=opt, batch_size=batch_size,
            rng=seed, callbacks=callbacks, verbose=False)
        if r == 0 and point.state is None:
            raise ValueError(f"rewind_step {rewind_step} is beyond the first training run")
        total = sum(m.size for m in masks.values())
        result.masks.append({n: m.copy() for n, m in masks.items()})
        result.sparsity.append(1.0 - sum(int(m.sum()) for m in masks.values()) / total)
        result.accuracy.append(
            evaluate(model, val_data).accuracy if val_data is not None else float("nan")
        )
        if r == rounds:
            break
        # prune `rate` of the survivors: target = 1 - (1 - current) (1 - rate), in counts
        targets = {}
        for n, m in masks.items():
            alive = int(m.sum())
            targets[n] = (m.size - alive + round(rates[n] * alive)) / m.size
        prune_model(model, targets)
        masks = {n: current_masks(model, [n])[n] for n in rates}
        rewind(model, point.state, masks)
    result.rewind_state = point.state
    return result
