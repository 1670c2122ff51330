"""Optimizers (SGD with momentum, Adam) and learning-rate schedules, with PyTorch's semantics.

An optimizer updates the *stored* parameters of a model in place from their gradients, then asks
every parametrization to restore its constraints (``model.apply_constraints()``). Because the
stored parameters of a pruned, shared or quantized weight are whatever its parametrization says,
one optimizer serves every compression method.
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import check_float, check_int
from .layers import Layer


def _check(value: float, name: str, low: float, high: float = math.inf, *, open_low=False) -> float:
    return check_float(value, name, low, None if high == math.inf else high, open_low=open_low,
                       open_high=True)  # fmt: skip


class Optimizer:
    """Base class: keeps per-parameter state keyed by the parameter's dotted name."""

    def __init__(self, lr: float) -> None:
        self.lr = _check(lr, "lr", 0.0, open_low=True)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def step(self, model: Layer) -> None:
        """Apply one update to every parameter of ``model`` that has a gradient."""
        self.steps += 1
        for name, param, grad in model.parameters_and_grads():
            if grad is None:
                continue
            if grad.shape != param.shape:
                raise ValueError(f"gradient of {name} has shape {grad.shape}, not {param.shape}")
            self._update(name, param, grad.astype(param.dtype, copy=False))
        model.apply_constraints()

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget momentum and moment estimates (for instance after pruning or rewinding)."""
        self.state.clear()
        self.steps = 0


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    ``g = grad + weight_decay * p``; ``b = momentum * b + g``; the step is ``g + momentum * b``
    with Nesterov momentum and ``b`` without; ``p -= lr * step``. As ``torch.optim.SGD``
    (dampening 0).
    """

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(lr)
        self.momentum = _check(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = _check(weight_decay, "weight_decay", 0.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        g = grad + self.weight_decay * param if self.weight_decay else grad
        if self.momentum:
            st = self.state.get(name)
            if st is None:
                buf = g.copy()
                self.state[name] = {"momentum": buf}
            else:
                buf = st["momentum"]
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        param -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction and L2 weight decay (``torch.optim.Adam``)."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        self.beta1 = _check(betas[0], "betas[0]", 0.0, 1.0)
        self.beta2 = _check(betas[1], "betas[1]", 0.0, 1.0)
        self.eps = _check(eps, "eps", 0.0, open_low=True)
        self.weight_decay = _check(weight_decay, "weight_decay", 0.0)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        g = grad + self.weight_decay * param if self.weight_decay else grad
        st = self.state.setdefault(
            name, {"m": np.zeros_like(param), "v": np.zeros_like(param), "t": np.zeros(())}
        )
        st["t"] += 1
        t = float(st["t"])
        st["m"] *= self.beta1
        st["m"] += (1 - self.beta1) * g
        st["v"] *= self.beta2
        st["v"] += (1 - self.beta2) * g * g
        m_hat = st["m"] / (1 - self.beta1**t)
        v_hat = st["v"] / (1 - self.beta2**t)
        param -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(param.dtype, copy=False)


class LRScheduler:
    """Base class: sets ``optimizer.lr`` from the epoch count; call :meth:`step` once per epoch."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = check_int(step_size, "step_size", 1)  # 2.5 was truncated to 2
        self.gamma = _check(gamma, "gamma", 0.0, open_low=True)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Cosine decay from the base rate to ``eta_min`` over ``T_max`` epochs (then constant).

    ``lr_t = eta_min + (lr_0 - eta_min) (1 + cos(pi t / T_max)) / 2`` (Loshchilov & Hutter).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        super().__init__(optimizer)
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = _check(eta_min, "eta_min", 0.0)

    def lr_at(self, epoch: int) -> float:
        t = min(epoch, self.T_max)
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
        )
