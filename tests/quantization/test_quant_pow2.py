"""INQ (powers of two, frozen by magnitude) and power-of-two activations as shifts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import SGD, Linear, ReLU, Sequential, fit
from refimpl.quantization import (
    INQ,
    PowerOfTwoAct,
    inq_exponent_range,
    inq_quantize,
    inq_step,
    pow2_decompose,
    pow2_round,
    shift_matmul,
)


def is_pow2_or_zero(w, n1, n2):
    a = np.abs(w[w != 0]).astype(np.float64)
    e = np.log2(a)
    return bool(np.all(e == np.round(e)) and np.all((e >= n2) & (e <= n1)))


def test_exponent_range_follows_the_paper():
    # max |W| = 0.9: n1 = floor(log2(1.2)) = 0; 5 bits: n2 = n1 + 1 - 2^4 / 2 = -7
    w = np.array([0.9, -0.1, 0.01])
    assert inq_exponent_range(w, 5) == (0, -7)
    assert inq_exponent_range(w, 3) == (0, -1)


def test_inq_quantize_thresholds():
    n1, n2 = 0, -3  # set {0, +-1/8, +-1/4, +-1/2, +-1}
    w = np.array([0.06, 0.0626, 0.18, 0.19, 0.37, 0.38, 0.74, 0.76, 3.0, -0.3])
    q = inq_quantize(w, n1, n2)
    # below 2^n2 / 2 = 1/16 -> 0; between powers beta/2..beta the cut is at 3 beta / 4
    assert np.allclose(q, [0, 0.125, 0.125, 0.25, 0.25, 0.5, 0.5, 1.0, 1.0, -0.25])


@settings(max_examples=40, deadline=None)
@given(w=arrays(np.float64, st.integers(1, 40), elements=st.floats(-4, 4)),
       bits=st.integers(3, 6))
def test_inq_quantize_gives_powers_of_two_or_zero_and_is_nearest_in_log_scale(w, bits):
    if not np.any(w):
        return
    n1, n2 = inq_exponent_range(w, bits)
    q = inq_quantize(w, n1, n2)
    assert is_pow2_or_zero(q, n1, n2)
    assert np.all(np.sign(q) * np.sign(w) >= 0)
    assert np.abs(q).max() <= 2.0**n1


def _problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 1).astype(np.int64)
    model = Sequential(("fc1", Linear(12, 16, rng=0)), ("relu", ReLU()),
                       ("fc2", Linear(16, 3, rng=1)))
    fit(model, (X, y), epochs=10, optimizer=SGD(0.1, momentum=0.9), rng=0, verbose=False)
    return model, X, y


def test_inq_partitions_by_magnitude_freezes_and_ends_in_powers_of_two():
    model, X, y = _problem()
    for name in ("fc1", "fc2"):
        model[name].parametrize("weight", INQ(5))
    w0 = model["fc1"].weight.copy()
    assert inq_step(model, 0.5) == 2
    frozen = model["fc1"].buffers["weight.frozen"].astype(bool)
    assert frozen.sum() == w0.size // 2
    # the frozen half is the larger half in magnitude
    assert np.abs(w0[frozen]).min() >= np.abs(w0[~frozen]).max()
    n1, n2 = model["fc1"].buffers["weight.exponents"]  # per-tensor state lives in the layer
    assert is_pow2_or_zero(model["fc1"].weight[frozen], n1, n2)
    before = model["fc1"].weight[frozen].copy()
    # retraining with momentum and weight decay moves only the free part
    fit(model, (X, y), epochs=2, optimizer=SGD(0.05, momentum=0.9, weight_decay=1e-3), rng=0,
        verbose=False)
    assert np.array_equal(model["fc1"].weight[frozen], before)
    assert not np.allclose(model["fc1"].weight[~frozen], w0[~frozen])
    for fraction in (0.75, 0.875, 1.0):
        inq_step(model, fraction)
        if fraction < 1:
            fit(model, (X, y), epochs=1, optimizer=SGD(0.05, momentum=0.9), rng=0,
                verbose=False)
    for name in ("fc1", "fc2"):
        n1, n2 = model[name].buffers["weight.exponents"]
        assert model[name].buffers["weight.frozen"].all()
        assert is_pow2_or_zero(model[name].weight, n1, n2)
    # the gradient of a frozen weight is masked to zero
    model.forward(X[:8], train=True)
    model.backward(np.ones((8, 3), np.float32))
    assert np.all(model["fc1"].grads["weight.orig"] == 0)


def test_inq_keeps_accuracy_and_beats_quantizing_all_at_once():
    rng = np.random.default_rng(0)

    def data(n):
        X = rng.standard_normal((n, 12)).astype(np.float32)
        return X, (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 1).astype(np.int64)

    (X, y), (Xt, yt) = data(400), data(2000)
    model = Sequential(("fc1", Linear(12, 64, rng=0)), ("relu", ReLU()),
                       ("fc2", Linear(64, 3, rng=1)))
    fit(model, (X, y), epochs=10, optimizer=SGD(0.1, momentum=0.9), rng=0, verbose=False)

    def acc(m):
        return (m.forward(Xt).argmax(1) == yt).mean()

    at_once = model.copy()
    for name in ("fc1", "fc2"):
        model[name].parametrize("weight", INQ(5))
        at_once[name].parametrize("weight", INQ(5))
    inq_step(at_once, 1.0)
    base = acc(model)  # INQ freezes nothing until the first step
    for fraction in (0.5, 0.75, 0.875, 1.0):
        inq_step(model, fraction)
        if fraction < 1:
            fit(model, (X, y), epochs=3, optimizer=SGD(0.02, momentum=0.9), rng=0,
                verbose=False)
    assert acc(model) >= base - 0.01
    assert acc(model) > acc(at_once)


# ---------------------------------------------------------------------- powers of two
@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 30), elements=st.floats(-3, 3)))
def test_pow2_round_is_nearest_power_in_log_scale(x):
    r = pow2_round(x, min_exp=-6, max_exp=1)
    nz = r != 0
    assert is_pow2_or_zero(r, 1, -6)
    inside = nz & (np.abs(x) <= 2.0) & (np.abs(x) >= 2.0**-6)
    # within a factor sqrt(2) of the value: nearest in log2
    ratio = np.abs(r[inside] / x[inside])
    assert np.all((ratio <= np.sqrt(2) + 1e-12) & (ratio >= 1 / np.sqrt(2) - 1e-12))
    assert np.all(r[np.abs(x) < 2.0**-7] == 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), k=st.integers(1, 9),
       m=st.integers(1, 5))
def test_shift_matmul_equals_the_product(seed, n, k, m):
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, (n, k)).astype(np.int8)
    v = pow2_round(rng.standard_normal((k, m)) * 2, min_exp=-4, max_exp=2)
    sign, shift = pow2_decompose(v, min_exp=-4)
    got = shift_matmul(q, sign, shift)
    expected = q.astype(np.float64) @ v  # exact: small integers times powers of two
    assert np.array_equal(got * 2.0**-4, expected)


def test_power_of_two_activation_layer_and_ste():
    act = PowerOfTwoAct(min_exp=-3, max_exp=1)
    x = np.array([[0.01, 0.3, 0.7, 1.5, 5.0, -0.5]])
    y = act.forward(x)
    assert np.allclose(y, [[0, 0.25, 0.5, 2, 2, -0.5]])
    assert np.array_equal(act.backward(np.ones_like(x)), np.array([[1, 1, 1, 1, 0, 1.0]]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="bits"):
        INQ(1)
    with pytest.raises(ValueError, match="all zero"):
        inq_exponent_range(np.zeros(3), 4)
    with pytest.raises(ValueError, match="fraction"):
        inq_step(Sequential(("fc", Linear(2, 2))), 1.5)
    with pytest.raises(ValueError, match="max_exp"):
        pow2_round(np.ones(2), min_exp=0, max_exp=-1)
    with pytest.raises(ValueError, match="powers of two"):
        pow2_decompose(np.array([0.3]), min_exp=-4)
    with pytest.raises(TypeError, match="q"):
        shift_matmul(np.ones((2, 2)), np.ones((2, 2), int), np.ones((2, 2), int))
    with pytest.raises(ValueError, match="shift"):
        shift_matmul(np.ones((2, 2), int), np.ones((2, 2), int), -np.ones((2, 2), int))


def test_pow2_round_keeps_nan_and_saturates_infinities():
    y = pow2_round(np.array([np.nan, np.inf, -np.inf, 0.3, 1e-9]), min_exp=-4, max_exp=1)
    assert np.isnan(y[0]) and y[1:].tolist() == [2.0, -2.0, 0.25, 0.0]
