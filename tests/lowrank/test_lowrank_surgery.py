"""Putting factorized layers into models, fine-tuning them with fit, and timing them."""

import numpy as np
import pytest

from refimpl.baselines import load_dataset
from refimpl.cost import profile
from refimpl.lowrank import (
    cp_decompose_conv,
    layer_inputs,
    relative_output_error,
    separable_factorize,
    substitute,
    svd_factorize,
    tucker2_decompose_conv,
)
from refimpl.models import digits_cnn, digits_mlp
from refimpl.nn import SGD, Linear, Sequential, evaluate, fit
from refimpl.timing import time_inference


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_substitute_names_and_keeps_the_original():
    model = digits_cnn(rng=0)
    new = substitute(model, "conv2", cp_decompose_conv(model["conv2"], 4, max_iter=5))
    assert new.names()[3:8] == ["conv2_1", "conv2_2", "conv2_3", "conv2_4", "relu2"]
    assert model.names()[3] == "conv2"
    assert new["relu1"] is not model["relu1"]  # the other layers are copies
    with pytest.raises(ValueError, match="name"):
        substitute(model, "conv9", [Linear(2, 2)])
    with pytest.raises(TypeError, match="layers"):
        substitute(model, "conv2", [])
    with pytest.raises(TypeError, match="Sequential"):
        substitute(Linear(2, 2), "fc1", [Linear(2, 2)])
    clash = Sequential(("fc1", Linear(4, 4)), ("fc1_1", Linear(4, 4)))
    with pytest.raises(ValueError, match="already used"):
        substitute(clash, "fc1", [Linear(4, 4)])


def test_layer_inputs_and_output_error(digits):
    (X, _), _ = digits
    model = digits_cnn(rng=0)
    h = layer_inputs(model, "conv2", X[:50], batch_size=16)
    expected = model["pool1"](model["relu1"](model["conv1"](X[:50])))
    np.testing.assert_allclose(h, expected, atol=1e-6)
    assert relative_output_error(model["conv2"], model["conv2"], h) == 0.0
    layers = tucker2_decompose_conv(model["conv2"], 4, 8)
    assert 0 < relative_output_error(model["conv2"], layers, h) < 1
    with pytest.raises(ValueError, match="name"):
        layer_inputs(model, "nope", X[:2])


def test_factorized_models_fine_tune_with_fit(digits):
    """Surgery costs accuracy; the common training loop wins it back (survey, section 3.3)."""
    (X, y), (Xt, yt) = digits
    model = digits_mlp(rng=0)
    fit(model, (X, y), epochs=15, optimizer=SGD(0.05, momentum=0.9), batch_size=32, rng=0,
        verbose=False)
    base = evaluate(model, (Xt, yt)).accuracy
    small = substitute(model, "fc1", svd_factorize(model["fc1"], 2))
    cut = evaluate(small, (Xt, yt)).accuracy
    history = fit(small, (X, y), epochs=4, optimizer=SGD(0.02, momentum=0.9), batch_size=32,
                  rng=0, verbose=False)
    tuned = evaluate(small, (Xt, yt)).accuracy
    assert cut < base - 0.05  # rank 2 of 64 really hurts ...
    assert tuned > cut + 0.05  # ... and fine-tuning recovers much of it
    assert history.loss[-1] < history.loss[0]
    assert profile(small, (1, 8, 8)).params < profile(model, (1, 8, 8)).params


def test_separable_factorization_in_a_cnn(digits):
    (X, _), (Xt, yt) = digits
    model = digits_cnn(rng=0)
    h = layer_inputs(model, "conv2", X[:200])
    v, hz = separable_factorize(model["conv2"], 6, inputs=h, n_iter=3)
    new = substitute(model, "conv2", [v, hz])
    assert new(Xt[:5]).shape == (5, 10)
    v0, h0 = separable_factorize(model["conv2"], 6)
    assert relative_output_error(model["conv2"], [v, hz], h) <= relative_output_error(
        model["conv2"], [v0, h0], h
    )


def test_time_inference_compares_a_factorized_model(digits):
    (X, _), _ = digits
    model = digits_mlp(rng=0)
    small = substitute(model, "fc1", svd_factorize(model["fc1"], 4))
    times = time_inference({"dense": model, "svd": small}, X[:64], repeats=3,
                              batch_size=32)
    assert set(times) == {"dense", "svd"}
    assert all(t > 0 for t in times.values())
    with pytest.raises(ValueError, match="models"):
        time_inference({}, X[:4])
    with pytest.raises(TypeError, match="models"):
        time_inference({"a": 3}, X[:4])
    with pytest.raises(ValueError, match="repeats"):
        time_inference({"a": model}, X[:4], repeats=0)
