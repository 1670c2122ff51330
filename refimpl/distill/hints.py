"""FitNets' hints: guide a student's middle layer towards a teacher's, through a regressor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..nn import Conv2d, Layer, Linear, Sequential
from ..validation import RngLike


@dataclass(frozen=True)
class HintModels:
    """The two models of FitNets' first stage (see :func:`hint_models`).

    Attributes
    ----------
    guided : Sequential
        The student's layers up to its guided layer (the student's own layer objects, so
        training ``guided`` trains the student), then ``"regressor"``.
    teacher : Sequential
        The teacher's layers up to its hint layer (the teacher's own layer objects; ``fit``
        only runs them in evaluation mode).
    regressor : Layer
        The regressor, a ``Linear`` or a ``Conv2d``: thrown away after the first stage.
    """

    guided: Sequential
    teacher: Sequential
    regressor: Layer


def _prefix(model: Any, layer: str, what: str) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"{what} must be a refimpl.nn.Sequential, got {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"the {what}'s layer must be a name (str), got {type(layer).__name__}")
    names = model.names()
    if layer not in names:
        raise ValueError(f"{layer!r} is not a layer of the {what}; its layers are {names}")
    return Sequential(*[(n, model[n]) for n in names[: names.index(layer) + 1]])


def hint_models(
    student: Sequential,
    teacher: Sequential,
    student_layer: str,
    teacher_layer: str,
    *,
    input_shape: tuple[int, ...],
    rng: RngLike = None,
) -> HintModels:
    """Build FitNets' first stage: the student up to its guided layer, plus a regressor to the
    shape of the teacher's hint layer; and the teacher up to that layer.

    Train the first with ``fit(hm.guided, data, teacher=hm.teacher, loss=HintLoss(), ...)``:
    the student's lower layers and the regressor learn to predict the teacher's hint. Then
    train the whole student with :class:`~refimpl.distill.DistillationLoss` (the paper's second
    stage, "knowledge distillation" with an annealed weight; we keep it fixed).

    Parameters
    ----------
    student, teacher : Sequential
        The student (trained in place through ``guided``) and the trained teacher.
    student_layer, teacher_layer : str
        Top-level layer names: the guided layer and the hint layer (usually after an
        activation, e.g. ``"relu2"``).
    input_shape : tuple of int
        One input sample's shape, ``(C, H, W)`` or ``(features,)``, to size the regressor.
    rng : int, numpy.random.Generator or None
        Seed of the regressor's initial weights.

    Returns
    -------
    HintModels
        ``guided``, ``teacher`` and ``regressor``. The regressor is a ``Linear`` for flat
        outputs, and for images a ``Conv2d`` whose kernel ``(H_s - H_t + 1, W_s - W_t + 1)``
        maps the student's map onto the teacher's size (the paper's convolutional regressor).

    Raises
    ------
    ValueError
        A name that is not a top-level layer, or a guided layer whose output is smaller than
        the hint (in height or width) or of another kind (flat versus image).

    References
    ----------
    .. [1] Romero, A. et al. (2015) FitNets: hints for thin deep nets. ICLR.
    """
    from ..cost import profile

    guided = _prefix(student, student_layer, "student")
    hint_teacher = _prefix(teacher, teacher_layer, "teacher")
    s_shape = profile(guided, input_shape).output_shape
    t_shape = profile(hint_teacher, input_shape).output_shape
    if len(s_shape) == 1 and len(t_shape) == 1:
        regressor: Layer = Linear(s_shape[0], t_shape[0], rng=rng)
    elif len(s_shape) == 3 and len(t_shape) == 3:
        kh, kw = s_shape[1] - t_shape[1] + 1, s_shape[2] - t_shape[2] + 1
        if kh < 1 or kw < 1:
            raise ValueError(f"the guided layer's output {s_shape} is smaller than the hint "
                             f"{t_shape}; guide a lower student layer")  # fmt: skip
        regressor = Conv2d(s_shape[0], t_shape[0], (kh, kw), rng=rng)
    else:
        raise ValueError(f"the guided layer gives {s_shape} and the hint layer {t_shape}: both "
                         "must be flat, or both images")  # fmt: skip
    guided = Sequential(*[(n, layer) for n, layer in guided.named_layers()],
                        ("regressor", regressor))  # fmt: skip
    return HintModels(guided, hint_teacher, regressor)
