"""Sequential, parametrizations under every optimizer, state files, losses, the training loop."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import models
from refimpl.nn import (
    SGD,
    Adam,
    BatchNorm1d,
    CosineAnnealingLR,
    CrossEntropyLoss,
    Linear,
    Mask,
    MSELoss,
    ReLU,
    Sequential,
    StepLR,
    evaluate,
    fit,
    gradcheck,
    log_softmax,
    predict,
)


def toy_data(n=200, d=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


def test_auto_names_and_named_parameters():
    m = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    assert m.names() == ["fc1", "relu1", "fc2"]
    assert [k for k, _ in m.named_parameters()] == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert m["fc2"] is m[2]
    with pytest.raises(KeyError, match="no layer"):
        m["fc3"]
    with pytest.raises(ValueError, match="duplicate"):
        Sequential(("a", ReLU()), ("a", ReLU()))
    with pytest.raises(TypeError, match="not a Layer"):
        Sequential(("a", 3))


def test_whole_model_gradcheck():
    m = Sequential(Linear(5, 4, rng=0), ReLU(), BatchNorm1d(4), Linear(4, 3, rng=1))
    assert gradcheck(m, np.random.default_rng(1).standard_normal((6, 5)), train=True).passed


def test_cross_entropy_gradcheck_and_stability():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    loss = CrossEntropyLoss()
    loss(z, y)
    assert gradcheck(lambda zz: loss(zz, y), [z], analytic=[loss.backward()]).passed
    soft = np.abs(rng.standard_normal((5, 4)))
    soft /= soft.sum(1, keepdims=True)
    loss(z, soft)
    assert gradcheck(lambda zz: loss(zz, soft), [z], analytic=[loss.backward()]).passed
    big = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    assert np.isfinite(loss(big, np.array([1, 0])))
    np.testing.assert_allclose(np.exp(log_softmax(big)).sum(1), 1)
    mse = MSELoss()
    t = rng.standard_normal((5, 4))
    mse(z, t)
    assert gradcheck(lambda zz: mse(zz, t), [z], analytic=[mse.backward()]).passed


def test_loss_bad_targets():
    loss = CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integers"):
        loss(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        loss(np.zeros((2, 3)), np.zeros((2, 2)))


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda: SGD(0.1),
        lambda: SGD(0.1, momentum=0.9, weight_decay=1e-2),
        lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda: Adam(0.01),
        lambda: Adam(0.01, weight_decay=1e-2),
    ],
)
def test_masked_entries_stay_exactly_zero(make_opt):
    X, y = toy_data()
    m = Sequential(Linear(10, 16, rng=0), ReLU(), Linear(16, 3, rng=1))
    opt = make_opt()
    fit(m, (X, y), epochs=1, optimizer=opt, batch_size=20, rng=0, verbose=False)  # momentum first
    mask = np.random.default_rng(3).random((16, 10)) > 0.7
    m["fc1"].parametrize("weight", Mask(mask))
    before = m["fc1"].weight.copy()
    fit(m, (X, y), epochs=5, optimizer=opt, batch_size=20, rng=1, verbose=False)
    w = m["fc1"].weight
    assert np.all(w[~mask] == 0.0)
    assert not np.allclose(w[mask], before[mask])  # the kept weights did train
    assert "fc1.weight.orig" in dict(m.named_parameters())
    assert "fc1.weight.mask" in dict(m.named_buffers())


def test_masks_compose_and_remove():
    layer = Linear(4, 4, rng=0)
    m1 = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool)
    layer.parametrize("weight", Mask(m1))
    layer.params["weight.orig"] += 1.0  # theta drifts; W must not revive pruned entries
    layer.parametrize("weight", Mask(np.ones((4, 4), bool)))
    assert np.all(layer.weight[~m1] == 0)
    layer.remove_parametrization("weight")
    assert set(layer.params) == {"weight", "bias"} and not layer.buffers
    assert np.all(layer.weight[~m1] == 0)
    with pytest.raises(ValueError, match="shape"):
        layer.parametrize("weight", Mask(np.ones((3, 4), bool)))
    with pytest.raises(ValueError, match="0 and 1"):
        Mask(np.full((4, 4), 2))


def test_state_dict_round_trip(tmp_path):
    m = models.digits_cnn(rng=0)
    m["conv1"].parametrize("weight", Mask(np.random.default_rng(0).random((8, 1, 3, 3)) > 0.5))
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = models.digits_cnn(rng=1)
    m2["conv1"].parametrize("weight", Mask(np.ones((8, 1, 3, 3), bool)))
    m2.load(path)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(m(x), m2(x))
    with pytest.raises(ValueError, match="parametrize the model"):
        models.digits_cnn().load(path)


def test_corrupt_state_files(tmp_path):
    m = models.digits_mlp(rng=0)
    path = tmp_path / "m.npz"
    m.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt|truncated"):
        models.digits_mlp().load(tmp_path / "trunc.npz")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        models.digits_mlp().load(tmp_path / "flip.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a refimpl state file"):
        models.digits_mlp().load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="shape"):
        m.set_parameter("fc1.weight", np.zeros((2, 2)))


def test_copy_is_deep():
    m = models.digits_mlp(rng=0)
    c = m.copy()
    c["fc1"].params["weight"][:] = 0
    assert not np.all(m["fc1"].weight == 0)


def test_sgd_matches_hand_computed_momentum():
    layer = Sequential(("l", Linear(1, 1, bias=False, rng=0)))
    layer["l"].weight = np.array([[1.0]])
    opt = SGD(0.1, momentum=0.5, weight_decay=0.1)
    w = 1.0
    buf = None
    for _ in range(3):
        layer["l"].grads["weight"] = np.array([[2.0]], dtype=np.float32)
        opt.step(layer)
        g = 2.0 + 0.1 * w
        buf = g if buf is None else 0.5 * buf + g
        w -= 0.1 * buf
    np.testing.assert_allclose(layer["l"].weight[0, 0], w, rtol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    layer = Sequential(("l", Linear(3, 1, bias=False, rng=0)))
    w0 = layer["l"].weight.copy()
    layer["l"].grads["weight"] = np.array([[0.5, -3.0, 1e-3]], dtype=np.float32)
    Adam(0.01).step(layer)
    np.testing.assert_allclose(layer["l"].weight - w0, [[-0.01, 0.01, -0.01]], rtol=1e-4)


def test_schedules():
    opt = SGD(1.0)
    s = StepLR(opt, step_size=2, gamma=0.5)
    assert [s.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]
    opt = SGD(1.0)
    c = CosineAnnealingLR(opt, T_max=4)
    lrs = [c.step() for _ in range(5)]
    np.testing.assert_allclose(lrs, [(1 + np.cos(np.pi * t / 4)) / 2 for t in (1, 2, 3, 4, 4)])
    with pytest.raises(ValueError, match="lr"):
        SGD(0.0)
    with pytest.raises(ValueError, match="momentum"):
        SGD(0.1, momentum=1.5)


def test_fit_learns_and_is_deterministic(capsys):
    X, y = toy_data()
    runs = []
    for _ in range(2):
        m = Sequential(Linear(10, 16, rng=0), ReLU(), Linear(16, 3, rng=1))
        h = fit(
            m,
            (X, y),
            epochs=3,
            optimizer=SGD(0.1, momentum=0.9),
            batch_size=16,
            rng=7,
            val_data=(X, y),
            verbose=False,
        )
        runs.append(m.state_dict())
    assert capsys.readouterr().out == ""
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert h.val_accuracy[-1] > 0.95 and h.loss[-1] < h.loss[0]
    assert evaluate(m, (X, y)).accuracy == pytest.approx(h.val_accuracy[-1])
    assert predict(m, X, batch_size=7).shape == (200, 3)
    fit(m, (X, y), epochs=1, optimizer=SGD(0.1), rng=0, verbose=True)
    assert "epoch 1/1" in capsys.readouterr().out


def test_fit_callbacks_and_bad_arguments():
    X, y = toy_data()
    m = Sequential(Linear(10, 3, rng=0))
    calls = []

    class CB:
        def on_before_step(self, model):
            calls.append("before")

        def on_step_end(self, model, step):
            calls.append("step")

        def on_epoch_end(self, model, epoch, history):
            calls.append(("epoch", epoch))

    fit(
        m,
        (X, y),
        epochs=2,
        optimizer=SGD(0.1),
        batch_size=100,
        rng=0,
        callbacks=[CB()],
        verbose=False,
    )
    assert calls == ["before", "step"] * 2 + [("epoch", 1)] + ["before", "step"] * 2 + [
        ("epoch", 2)
    ]
    with pytest.raises(ValueError, match="epochs"):
        fit(m, (X, y), epochs=-1, optimizer=SGD(0.1))
    with pytest.raises(TypeError, match="optimizer"):
        fit(m, (X, y), epochs=1, optimizer="sgd")
    with pytest.raises(ValueError, match="rows"):
        fit(m, (X, y[:5]), epochs=1, optimizer=SGD(0.1))


@settings(max_examples=20, deadline=None)
@given(sparsity=st.floats(0.0, 0.95), seed=st.integers(0, 10_000))
def test_mask_property_any_mask_any_steps(sparsity, seed):
    rng = np.random.default_rng(seed)
    layer = Sequential(("l", Linear(6, 5, rng=seed)))
    mask = rng.random((5, 6)) >= sparsity
    layer["l"].parametrize("weight", Mask(mask))
    opt = Adam(0.05, weight_decay=0.1)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    for _ in range(5):
        out = layer(x, train=True)
        layer.backward(out)
        opt.step(layer)
    assert np.all(layer["l"].weight[~mask] == 0.0)


# -- training that notices NaN, and batch sizes that make sense ---------------------------------
def _net(seed=0):
    return Sequential(Linear(10, 16, rng=seed), ReLU(), Linear(16, 3, rng=seed + 1))


def test_fit_stops_when_training_diverges():
    X, y = toy_data()
    m = _net()
    # lr 1e6 returned a history of nan losses and NaN weights, with only NumPy's warnings
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        fit(m, (X, y), epochs=30, optimizer=SGD(1e6), batch_size=50, rng=0, verbose=False)
    msg = str(info.value)
    assert "fit stopped" in msg and "epoch" in msg and "step" in msg
    assert "lower the learning rate (lr=1e+06)" in msg


def test_fit_stops_at_a_nan_input_and_leaves_the_weights_finite():
    X, y = toy_data()
    X = X.copy()
    X[7, 3] = np.nan  # one NaN pixel made fc1.weight NaN while the reported loss stayed finite
    m = _net()
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1, step \d+ .*inputs "
                                                 "hold NaN"):  # fmt: skip
        fit(m, (X, y), epochs=1, optimizer=SGD(0.1), batch_size=20, rng=0, verbose=False)
    assert all(np.isfinite(v).all() for _, v in m.named_parameters())


def test_fit_names_the_tensor_whose_gradient_is_not_finite():
    X, y = toy_data()

    class Poison:
        def on_before_step(self, model):
            model["fc2"].grads["bias"][1] = np.inf

    with pytest.raises(FloatingPointError, match=r"gradient of fc2\.bias .* epoch 1, step 1 "):
        fit(_net(), (X, y), epochs=1, optimizer=SGD(0.1), callbacks=[Poison()], verbose=False)

    class Blowup:  # an update that leaves a parameter infinite at the end of the epoch
        def on_epoch_end(self, model, epoch, history):
            pass

        def on_step_end(self, model, step):
            model["fc1"].params["weight"][0, 0] = np.inf if step == 4 else 0.0

    with pytest.raises(FloatingPointError, match=r"fc1\.weight holds NaN or infinite values "
                                                 r"after epoch 1 \(step 4\)"):  # fmt: skip
        fit(_net(), (X, y), epochs=2, optimizer=SGD(0.1), batch_size=50, callbacks=[Blowup()],
            verbose=False)  # fmt: skip


@pytest.mark.parametrize("batch_size,exc", [(0, ValueError), (-1, ValueError),
                                            (2.5, TypeError), ("64", TypeError)])  # fmt: skip
def test_batch_size_is_checked_everywhere(batch_size, exc):
    from refimpl.nn import accuracy, forward_through

    X, y = toy_data(n=20)
    m = _net()
    # evaluate(batch_size=-1) returned accuracy 0.0; batch_size=0 failed inside range()
    for call in (
        lambda: evaluate(m, (X, y), batch_size=batch_size),
        lambda: accuracy(m, (X, y), batch_size=batch_size),
        lambda: predict(m, X, batch_size=batch_size),
        lambda: forward_through(m, X, 1, batch_size=batch_size),
        lambda: fit(m, (X, y), epochs=1, optimizer=SGD(0.1), batch_size=batch_size,
                    verbose=False),  # fmt: skip
    ):
        with pytest.raises(exc, match="batch_size"):
            call()


def test_schedules_and_adam_name_their_arguments():
    for bad, exc in ((2.5, TypeError), ("3", TypeError), (0, ValueError)):
        with pytest.raises(exc, match="step_size"):  # 2.5 was truncated to 2, "3" accepted
            StepLR(SGD(0.1), bad)
        with pytest.raises(exc, match="T_max"):
            CosineAnnealingLR(SGD(0.1), bad)
    with pytest.raises(TypeError, match="betas must be a pair"):
        Adam(betas=0.9)
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD("0.1")
    with pytest.raises(TypeError, match="momentum must be a real number"):
        SGD(0.1, momentum="0.9")
