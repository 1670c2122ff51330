"""Knowledge distillation: the loss against its formula, its gradient, the T^2 factor, training
with a teacher through fit/finetune, FitNets' hint models, and the omitted-class bias."""

import numpy as np
import pytest

from refimpl import models
from refimpl.distill import (
    DistillationLoss,
    HintLoss,
    best_class_bias,
    hint_models,
)
from refimpl.nn import (
    SGD,
    Adam,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    ReLU,
    Sequential,
    evaluate,
    finetune,
    fit,
    gradcheck,
    predict,
)


def logits(n=6, k=5, scale=3.0, seed=0):
    gen = np.random.default_rng(seed)
    return scale * gen.standard_normal((n, k)), scale * gen.standard_normal((n, k)), gen.integers(
        0, k, n)


def reference(s, t, y, T, alpha):
    """The formula written out naively in float64 (fine for moderate logits)."""
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(t / T), softmax(s / T)
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=1)
    ce = -np.log(softmax(s)[np.arange(len(y)), y])
    return float(np.mean(alpha * T**2 * kl + (1 - alpha) * ce))


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (2.0, 0.9), (4.0, 1.0), (8.0, 0.0), (0.5, 0.3)])
def test_loss_matches_the_formula_and_passes_gradcheck(T, alpha):
    s, t, y = logits()
    loss = DistillationLoss(T, alpha)
    assert loss(s, y, t) == pytest.approx(reference(s, t, y, T, alpha), rel=1e-12, abs=1e-14)
    g = loss.backward()
    res = gradcheck(lambda z: DistillationLoss(T, alpha)(z, y, t), [s], analytic=[g])
    assert res.passed, res
    p = np.exp(t / T) / np.exp(t / T).sum(1, keepdims=True)
    q = np.exp(s / T) / np.exp(s / T).sum(1, keepdims=True)
    sm = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    onehot = np.eye(s.shape[1])[y]
    assert np.allclose(g, (alpha * T * (q - p) + (1 - alpha) * (sm - onehot)) / len(s),
                       rtol=1e-10, atol=1e-14)


def test_special_cases():
    s, t, y = logits()
    ce = CrossEntropyLoss()
    assert DistillationLoss(3.0, 0.0)(s, y, t) == pytest.approx(ce(s, y), rel=1e-14)
    loss = DistillationLoss(3.0, 1.0)
    assert loss(s, y, s) == pytest.approx(0.0, abs=1e-14)  # KL(p || p) = 0
    assert np.abs(loss.backward()).max() < 1e-15
    soft = np.exp(t) / np.exp(t).sum(1, keepdims=True)  # probability targets are accepted
    assert np.isfinite(DistillationLoss(2.0, 0.5)(s, soft, t))


def test_stable_in_log_space_for_huge_logits():
    s, t, y = logits(scale=1e4)
    loss = DistillationLoss(1.0, 0.7)
    value = loss(s.astype(np.float32), y, t.astype(np.float32))
    assert np.isfinite(value) and np.isfinite(loss.backward()).all()


def test_t_squared_keeps_the_soft_gradient_scale_and_tends_to_matching_logits():
    # Without T^2 the soft gradient (q - p) / T shrinks as 1 / T^2; with it, it tends to
    # ((s - mean s) - (t - mean t)) / (K N): matching logits (Hinton et al., section 2.1).
    s, t, y = logits(n=8, k=10, scale=1.0, seed=3)
    n, k = s.shape
    target = ((s - s.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))) / (k * n)
    norms = {}
    for T in (10.0, 100.0, 1000.0):
        loss = DistillationLoss(T, 1.0)
        loss(s, y, t)
        g = loss.backward()
        norms[T] = np.linalg.norm(g)
        err = np.linalg.norm(g - target) / np.linalg.norm(target)
        assert err < 3.0 / T  # the error of the limit is O(1 / T)
    assert norms[1000.0] / norms[10.0] == pytest.approx(1.0, abs=0.03)
    # without the factor the soft gradient would be g / T^2: 100 times smaller at T = 100
    # than at T = 10
    assert (norms[100.0] / 100.0**2) / (norms[10.0] / 10.0**2) == pytest.approx(0.01, rel=0.02)


def test_bad_arguments():
    s, t, y = logits()
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(0.0, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        DistillationLoss(2.0, 1.5)
    with pytest.raises(TypeError, match="temperature"):
        DistillationLoss("2", 0.5)
    with pytest.raises(TypeError, match="teacher's logits"):
        DistillationLoss()(s, y)
    with pytest.raises(ValueError, match="teacher_logits"):
        DistillationLoss()(s, y, t[:, :3])
    with pytest.raises(ValueError, match="class targets"):
        DistillationLoss()(s, y + 10, t)
    with pytest.raises(ValueError, match="differ in shape"):
        HintLoss()(s, None, t[:, :2])
    with pytest.raises(TypeError, match="hint"):
        HintLoss()(s, None)


def test_hint_loss_value_and_gradient():
    s, t, _ = logits()
    loss = HintLoss()
    assert loss(s, None, t) == pytest.approx(0.5 * np.sum((s - t) ** 2) / len(s), rel=1e-12)
    res = gradcheck(lambda z: HintLoss()(z, None, t), [s], analytic=[loss.backward()])
    assert res.passed, res


# ------------------------------------------------------------------------- training with a teacher
def toy(n=120, d=8, k=3, seed=0):
    gen = np.random.default_rng(seed)
    centers = 2 * gen.standard_normal((k, d))
    y = gen.integers(0, k, n)
    return (centers[y] + gen.standard_normal((n, d))).astype(np.float32), y


class Spy:
    """A distillation loss that records the teacher outputs it receives."""

    def __init__(self):
        self.inner, self.seen = DistillationLoss(2.0, 0.5), []

    def __call__(self, out, y, teacher_out):
        self.seen.append(teacher_out.copy())
        return self.inner(out, y, teacher_out)

    def backward(self):
        return self.inner.backward()


def test_fit_runs_the_teacher_in_evaluation_mode_and_leaves_it_alone():
    X, y = toy()
    teacher = Sequential(Linear(8, 16, rng=0), ReLU(), Dropout(0.5, rng=1), Linear(16, 3, rng=2))
    before = {k: v.copy() for k, v in teacher.named_parameters()}
    student = Sequential(Linear(8, 3, rng=3))
    spy = Spy()
    fit(student, (X, y), epochs=2, optimizer=SGD(0.1), batch_size=32, rng=0, loss=spy,
        teacher=teacher, verbose=False)
    assert len(spy.seen) == 2 * 4
    order = np.random.default_rng(0).permutation(len(X))  # the first batch of epoch 1
    assert np.array_equal(spy.seen[0], predict(teacher, X[order[:32]]))  # no dropout
    assert all(np.array_equal(v, before[k]) for k, v in teacher.named_parameters())


def test_alpha_zero_is_plain_training_bit_for_bit():
    X, y = toy()
    teacher = Sequential(Linear(8, 3, rng=9))
    a, b = Sequential(Linear(8, 3, rng=3)), Sequential(Linear(8, 3, rng=3))
    fit(a, (X, y), epochs=2, optimizer=Adam(0.01), rng=1, verbose=False)
    fit(b, (X, y), epochs=2, optimizer=Adam(0.01), rng=1, verbose=False, teacher=teacher,
        loss=DistillationLoss(3.0, 0.0))
    assert np.array_equal(a["fc1"].weight, b["fc1"].weight)


def test_a_student_learns_the_teacher_from_soft_targets_alone():
    X, y = toy(n=300)
    teacher = Sequential(Linear(8, 3, rng=0))
    fit(teacher, (X, y), epochs=20, optimizer=Adam(0.05), rng=0, verbose=False)
    wrong = (y + 1) % 3  # labels the student must ignore: alpha = 1
    student = Sequential(Linear(8, 3, rng=1))
    fit(student, (X, wrong), epochs=40, optimizer=Adam(0.05), rng=0, verbose=False,
        teacher=teacher, loss=DistillationLoss(2.0, 1.0))
    agree = np.mean(predict(student, X).argmax(1) == predict(teacher, X).argmax(1))
    assert agree > 0.95
    ev = evaluate(student, (X, wrong), loss=DistillationLoss(2.0, 1.0), teacher=teacher)
    assert ev.loss < 0.05


def test_finetune_passes_the_teacher_and_fit_checks_it():
    X, y = toy()
    teacher = Sequential(Linear(8, 3, rng=0))
    student = Sequential(Linear(8, 3, rng=1))
    spy = Spy()
    finetune(student, (X, y), epochs=1, loss=spy, teacher=teacher)
    assert spy.seen
    with pytest.raises(ValueError, match="another model"):
        fit(student, (X, y), epochs=1, optimizer=SGD(0.1), loss=spy, teacher=student)
    with pytest.raises(TypeError, match="needs a loss"):
        fit(student, (X, y), epochs=1, optimizer=SGD(0.1), teacher=teacher)
    with pytest.raises(TypeError, match="teacher must be"):
        fit(student, (X, y), epochs=1, optimizer=SGD(0.1), loss=spy, teacher="big")


# ------------------------------------------------------------------------------------ FitNets
def test_hint_models_share_the_student_layers():
    teacher = models.lenet_300_100(rng=0)
    student = Sequential(("flatten", Flatten()), ("fc1", Linear(784, 16, rng=1)),
                         ("relu1", ReLU()), ("fc2", Linear(16, 16, rng=2)), ("relu2", ReLU()),
                         ("fc3", Linear(16, 10, rng=3)))  # fmt: skip
    hm = hint_models(student, teacher, "relu1", "relu2", input_shape=(1, 28, 28), rng=0)
    assert hm.guided.names() == ["flatten", "fc1", "relu1", "regressor"]
    assert hm.guided["fc1"] is student["fc1"] and hm.teacher["fc2"] is teacher["fc2"]
    assert (hm.regressor.in_features, hm.regressor.out_features) == (16, 100)
    X = np.random.default_rng(0).random((64, 1, 28, 28)).astype(np.float32)
    before = student["fc1"].weight.copy()
    t_before = teacher["fc1"].weight.copy()
    loss = HintLoss()
    start = loss(predict(hm.guided, X), None, predict(hm.teacher, X))
    fit(hm.guided, (X, np.zeros(64, dtype=int)), epochs=5, optimizer=Adam(1e-3), rng=0,
        teacher=hm.teacher, loss=loss, verbose=False)
    assert not np.array_equal(before, student["fc1"].weight)  # the student was trained
    assert np.array_equal(t_before, teacher["fc1"].weight)
    assert loss(predict(hm.guided, X), None, predict(hm.teacher, X)) < start


def test_hint_models_convolutional_regressor_and_errors():
    teacher = models.lenet5(rng=0)
    student = Sequential(("conv1", Conv2d(1, 4, 3, rng=0)), ("relu1", ReLU()),
                         ("flatten", Flatten()), ("fc1", Linear(4 * 26 * 26, 10, rng=1)))
    hm = hint_models(student, teacher, "relu1", "relu1", input_shape=(1, 28, 28))
    assert hm.regressor.kernel_size == (3, 3)  # 26 - 24 + 1
    assert predict(hm.guided, np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 20, 24, 24)
    with pytest.raises(ValueError, match="smaller than the hint"):
        hint_models(teacher, student, "relu1", "relu1", input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="both"):
        hint_models(student, teacher, "fc1", "relu1", input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="not a layer of the student"):
        hint_models(student, teacher, "conv9", "relu1", input_shape=(1, 28, 28))


def test_best_class_bias_restores_a_suppressed_class():
    gen = np.random.default_rng(0)
    y = gen.integers(0, 4, 400)
    z = 3.0 * np.eye(4)[y] + 0.5 * gen.standard_normal((400, 4))
    z[:, 2] -= 5.0  # class 2 suppressed, as after distilling without it
    res = best_class_bias(z, y, 2, np.arange(0, 10.01, 0.5))
    assert np.mean(z.argmax(1) == y) < 0.8 and res.accuracy > 0.95
    assert 3.0 <= res.shift <= 8.0 and len(res.accuracies) == len(res.shifts)
    with pytest.raises(ValueError, match="cls"):
        best_class_bias(z, y, 4, [0.0])
    with pytest.raises(ValueError, match="shifts"):
        best_class_bias(z, y, 1, [])


def test_mlp_students():
    m = models.mlp([64], rng=0)
    assert m.names() == ["flatten", "fc1", "relu1", "fc2"] and m.num_parameters() == 50_890
    deep = models.mlp([32, 32, 32, 32], rng=0)
    assert deep.num_parameters() == 784 * 32 + 32 + 3 * (32 * 32 + 32) + 32 * 10 + 10
    assert predict(deep, np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    kw = {"rng": 5, "in_features": 4, "num_classes": 3}
    a, b = models.mlp([8], **kw), models.mlp([8], **kw)
    assert np.array_equal(a["fc1"].weight, b["fc1"].weight)
    with pytest.raises(ValueError, match="positive"):
        models.mlp([0])
