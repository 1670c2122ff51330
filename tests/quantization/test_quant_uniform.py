"""Uniform affine quantization: error bounds, per-channel scales, STE, the integer path."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import SGD, Flatten, Linear, ReLU, Sequential, fit
from refimpl.quantization import (
    FakeQuantize,
    IntegerLinear,
    UniformQuant,
    dequantize,
    fake_quantize,
    qparams,
    qrange,
    quantize,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 7)), elements=finite),
    bits=st.integers(2, 12),
    symmetric=st.booleans(),
    per_channel=st.booleans(),
)
def test_round_trip_error_at_most_half_a_step(x, bits, symmetric, per_channel):
    axis = 0 if per_channel else None
    scale, zero = qparams(x, bits, axis=axis, symmetric=symmetric)
    q = quantize(x, scale, zero, bits, symmetric=symmetric)
    lo, hi = qrange(bits, symmetric)
    assert q.min() >= lo and q.max() <= hi
    err = np.abs(dequantize(q, scale, zero) - x.astype(np.float64))
    assert np.all(err <= scale / 2 * (1 + 1e-9) + 1e-12)


def test_affine_codes_represent_zero_exactly():
    x = np.random.default_rng(0).uniform(0.1, 3.0, size=100).astype(np.float32)
    x[::7] = 0.0
    y = fake_quantize(x, 8, symmetric=False)
    assert np.all(y[::7] == 0.0)
    scale, zero = qparams(x, 8, symmetric=False)
    assert int(zero) == 0  # all values >= 0: the range [0, max] starts at code 0


def test_per_channel_error_no_worse_than_per_tensor():
    rng = np.random.default_rng(1)
    # rows of very different magnitudes, as real layers have
    w = (rng.standard_normal((32, 50)) * np.logspace(-2, 0, 32)[:, None]).astype(np.float32)
    for bits in (2, 4, 8):
        e_tensor = np.abs(fake_quantize(w, bits) - w)
        e_channel = np.abs(fake_quantize(w, bits, axis=0) - w)
        # row by row the per-channel step is never larger, so neither is the worst error
        assert np.all(e_channel.max(axis=1) <= qparams(w, bits)[0] / 2 + 1e-9)
        assert ((e_channel**2).sum() <= (e_tensor**2).sum())
        # the small rows gain the most: their own step is far finer than the global one
        small = slice(0, 16)
        if bits >= 4:
            assert (e_channel[small] ** 2).sum() < 0.1 * (e_tensor[small] ** 2).sum()


def test_uniform_quant_parametrization_and_ste():
    layer = Linear(20, 5, rng=0)
    w0 = layer.weight.copy()
    layer.parametrize("weight", UniformQuant(4, per_channel=True))
    w = layer.weight
    assert np.array_equal(layer.params["weight.orig"], w0)
    for row in w:  # at most 2^4 - 1 levels per row, on a uniform grid
        levels = np.unique(row)
        assert levels.size <= 15
        steps = np.diff(levels) / (np.abs(row).max() / 7)
        assert np.allclose(steps, np.round(steps), atol=1e-4)
    x = np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    assert np.allclose(layer.grads["weight.orig"], g.T @ x)  # straight through


def test_quantization_aware_training_lowers_the_loss():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = Sequential(("fc1", Linear(8, 16, rng=0)), ("relu", ReLU()),
                       ("act", FakeQuantize(4)), ("fc2", Linear(16, 2, rng=1)))
    for name in ("fc1", "fc2"):
        model[name].parametrize("weight", UniformQuant(3))
    hist = fit(model, (X, y), epochs=8, optimizer=SGD(0.1, momentum=0.9), rng=0, verbose=False)
    assert hist.loss[-1] < 0.6 * hist.loss[0]
    assert hist.accuracy[-1] > 0.9
    # every weight the model computes with is on a 3-bit grid
    for name in ("fc1", "fc2"):
        w = model[name].weight
        assert np.unique(w).size <= 7


def test_fake_quantize_layer_range_and_clipped_ste():
    fq = FakeQuantize(8, momentum=1.0)
    x = np.linspace(-1, 3, 50, dtype=np.float32)[None, :]
    y = fq.forward(x, train=True)
    scale, zero = fq.scale_and_zero_point()
    assert np.all(np.abs(y - x) <= scale / 2 + 1e-7)
    assert float(fq.buffers["min_val"]) == -1 and float(fq.buffers["max_val"]) == 3
    # in evaluation the stored range is used: values beyond it saturate, gradient is cut there
    x2 = np.array([[-5.0, 0.5, 10.0]], dtype=np.float32)
    y2 = fq.forward(x2, train=False)
    step = float(scale)
    assert y2[0, 0] == pytest.approx(-1, abs=step) and y2[0, 2] == pytest.approx(3, abs=step)
    assert np.array_equal(fq.backward(np.ones_like(x2)), np.array([[0.0, 1.0, 0.0]]))


def test_fake_quantize_running_range_is_an_ema():
    fq = FakeQuantize(8, momentum=0.5)
    fq.forward(np.array([[0.0, 2.0]], np.float32), train=True)
    fq.forward(np.array([[0.0, 4.0]], np.float32), train=True)
    assert float(fq.buffers["max_val"]) == pytest.approx(3.0)


@pytest.mark.parametrize("per_channel", [False, True])
def test_integer_path_equals_simulated_path(per_channel):
    rng = np.random.default_rng(0)
    layer = Linear(64, 10, rng=0)
    x = np.maximum(rng.standard_normal((32, 64)), 0).astype(np.float32)  # ReLU outputs
    fq = FakeQuantize(8)
    x_hat = fq.forward(x, train=True)
    s, z = fq.scale_and_zero_point()
    int_layer = IntegerLinear(layer, float(s), int(z), per_channel=per_channel)
    acc = int_layer.accumulate(int_layer.quantize_input(x))
    assert acc.dtype == np.int32
    assert int_layer.w_q.dtype == np.int8 and int_layer.quantize_input(x).dtype == np.uint8
    y_int = int_layer(x)
    # the simulated path in float64 and the fake-quantized float32 model give the same numbers
    assert np.allclose(y_int, int_layer.simulated(x), rtol=0, atol=1e-9)
    sim = Linear(64, 10, rng=0)
    sim.parametrize("weight", UniformQuant(8, per_channel=per_channel))
    assert np.allclose(y_int, sim.forward(x_hat), rtol=1e-5, atol=1e-5)
    # and the integer accumulator is exactly sum_j Qw_ij (qx_j - zx)
    qx = int_layer.quantize_input(x).astype(np.int64) - int(z)
    assert np.array_equal(acc, qx @ int_layer.w_q.astype(np.int64).T)


def test_integer_path_on_a_trained_mlp_matches_predictions():
    rng = np.random.default_rng(0)
    model = Sequential(("flat", Flatten()), ("fc1", Linear(16, 12, rng=0)), ("relu", ReLU()),
                       ("act", FakeQuantize(8)), ("fc2", Linear(12, 3, rng=1)))
    model["fc2"].parametrize("weight", UniformQuant(8, per_channel=True))
    X = rng.standard_normal((100, 1, 4, 4)).astype(np.float32)
    model.forward(X, train=True)  # calibrate the activation range
    logits = model.forward(X)
    hidden = model["relu"].forward(model["fc1"].forward(X.reshape(100, -1)))
    s, z = model["act"].scale_and_zero_point()
    int_fc2 = IntegerLinear(model["fc2"], float(s), int(z), per_channel=True)
    assert np.array_equal(int_fc2(hidden).argmax(1), logits.argmax(1))
    assert np.allclose(int_fc2(hidden), logits, atol=1e-4)


def test_bad_inputs():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="bits"):
        qparams(x, 1)
    with pytest.raises(TypeError, match="bits"):
        UniformQuant(8.0)
    with pytest.raises(ValueError, match="axis"):
        qparams(x, 8, axis=2)
    with pytest.raises(TypeError, match="x"):
        qparams(np.ones(3, int), 8)
    with pytest.raises(ValueError, match="momentum"):
        FakeQuantize(8, momentum=0)
    with pytest.raises(TypeError, match="layer"):
        IntegerLinear(ReLU(), 1.0, 0)
    with pytest.raises(ValueError, match="input_scale"):
        IntegerLinear(Linear(3, 2), 0.0, 0)
    with pytest.raises(ValueError, match="bits"):
        IntegerLinear(Linear(3, 2), 1.0, 0, bits=12)
    with pytest.raises(TypeError, match="uint8"):
        IntegerLinear(Linear(3, 2), 1.0, 0).accumulate(np.zeros((1, 3), np.int32))


def test_quantize_model_parametrizes_every_dense_and_conv_layer():
    from refimpl.models import digits_cnn
    from refimpl.quantization import quantize_model

    model = digits_cnn(rng=0)
    quantize_model(model, lambda layer: UniformQuant(4))
    kinds = {name: list(layer.parametrizations) for name, layer in model.named_layers()}
    assert kinds["conv1"] == ["weight"] and kinds["conv2"] == ["weight"]
    assert kinds["fc1"] == ["weight"] and kinds["relu1"] == []
    only = quantize_model(digits_cnn(rng=0), lambda layer: UniformQuant(4), layers=["fc1"])
    assert not only["conv1"].parametrizations and only["fc1"].parametrizations
    with pytest.raises(ValueError, match="layers"):
        quantize_model(digits_cnn(rng=0), lambda layer: UniformQuant(4), layers=["fc9"])


# -- NaN and infinities, which activations meet in normal use --------------------------------
def test_fake_quantize_keeps_nan_and_takes_the_range_from_finite_values():
    x = np.array([1.0, -2.0, np.nan, 0.5])
    y = fake_quantize(x, 8)  # was [1, -2, 0, 0]: the NaN made the scale 1
    assert np.isnan(y[2]) and not np.isnan(y[[0, 1, 3]]).any()
    np.testing.assert_array_equal(y[[0, 1, 3]], fake_quantize(x[[0, 1, 3]], 8))
    z = fake_quantize(np.array([1.0, -2.0, np.inf, 0.5, -np.inf]), 8, symmetric=False)
    scale, zero = qparams(np.array([1.0, -2.0, 0.5]), 8, symmetric=False)
    np.testing.assert_array_equal(z[[2, 4]], dequantize(np.array([255, 0]), scale, zero))
    w = np.random.default_rng(0).standard_normal((3, 4))
    w[1, 2] = np.nan
    per_channel = fake_quantize(w, 4, axis=0)
    assert np.isnan(per_channel).sum() == 1 and np.isnan(per_channel[1, 2])
    np.testing.assert_array_equal(per_channel[0], fake_quantize(w, 4, axis=0)[0])
    with pytest.raises(ValueError, match="NaN"):
        quantize(x, *qparams(x), 8)  # an integer code cannot stand for NaN


def test_fake_quantize_layer_ignores_non_finite_values_in_its_range():
    fq = FakeQuantize(8, momentum=1.0)
    y = fq.forward(np.array([[1.0, -2.0, np.nan, 0.5, np.inf]]), train=True)
    assert float(fq.buffers["min_val"]) == -2.0 and float(fq.buffers["max_val"]) == 1.0
    assert np.isnan(y[0, 2])
    assert y[0, 4] == np.max(y[np.isfinite(y)]) == y[0, 0]  # +inf saturates at the top
    np.testing.assert_array_equal(fq.backward(np.ones((1, 5))), [[1, 1, 0, 1, 0]])
    with pytest.raises(TypeError, match="momentum"):
        FakeQuantize(8, momentum="0.1")
    with pytest.raises(ValueError, match="momentum"):
        FakeQuantize(8, momentum=0.0)
