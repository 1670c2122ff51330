"""The NumPy network core: layers, parametrizations, losses, optimizers and the training loop.

See chapter 2 of the book, "Foundations".
"""

from .blocks import ChannelShuffle, Concat, GlobalAvgPool2d, Residual
from .container import Container
from .gradcheck import GradcheckResult, gradcheck, numerical_gradient, relative_error
from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from .losses import CrossEntropyLoss, MSELoss, log_softmax, softmax
from .optim import SGD, Adam, CosineAnnealingLR, LRScheduler, Optimizer, StepLR
from .parametrize import Deployed, Mask, Parametrization
from .sequential import Sequential, leaf_layers, load_state_file, weighted_layers
from .train import (
    Evaluation,
    History,
    accuracy,
    evaluate,
    finetune,
    fit,
    forward_through,
    predict,
)

__all__ = [
    "Adam",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "ChannelShuffle",
    "Concat",
    "Container",
    "Conv2d",
    "CosineAnnealingLR",
    "CrossEntropyLoss",
    "Deployed",
    "Dropout",
    "Evaluation",
    "Flatten",
    "GlobalAvgPool2d",
    "GradcheckResult",
    "History",
    "LRScheduler",
    "Layer",
    "Linear",
    "MSELoss",
    "Mask",
    "MaxPool2d",
    "Optimizer",
    "Parametrization",
    "ReLU",
    "Residual",
    "SGD",
    "Sequential",
    "Sigmoid",
    "StepLR",
    "Tanh",
    "accuracy",
    "evaluate",
    "finetune",
    "fit",
    "forward_through",
    "gradcheck",
    "leaf_layers",
    "load_state_file",
    "log_softmax",
    "numerical_gradient",
    "predict",
    "relative_error",
    "softmax",
    "weighted_layers",
]
