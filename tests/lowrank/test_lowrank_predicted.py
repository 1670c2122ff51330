"""Parameter prediction (Denil et al. 2013): a fixed smooth dictionary and trained coefficients."""

import numpy as np
import pytest

from refimpl.lowrank import Predicted, kernel_ridge_dictionary, pixel_coordinates, random_dictionary
from refimpl.nn import Linear, gradcheck


def test_kernel_ridge_reproduces_the_given_weights_at_the_chosen_pixels():
    U, pixels = kernel_ridge_dictionary((8, 8), 12, ridge=0.0, rng=0)
    assert U.shape == (64, 12) and pixels.size == 12
    w_alpha = np.random.default_rng(1).standard_normal(12)
    assert np.abs(U[pixels] @ w_alpha - w_alpha).max() < 1e-8
    assert np.abs(U[pixels] - np.eye(12)).max() < 1e-8


def test_kernel_ridge_interpolates_smoothly_between_the_pixels():
    # values of a smooth function at a coarse grid of pixels predict it in between
    coords = pixel_coordinates((16, 16))
    pixels = np.flatnonzero((coords[:, 0] % 3 == 0) & (coords[:, 1] % 3 == 0))
    U, _ = kernel_ridge_dictionary((16, 16), pixels=pixels, length_scale=3.0, ridge=1e-8)
    f = np.sin(coords[:, 0] / 4.0) * np.cos(coords[:, 1] / 5.0)
    pred = U @ f[pixels]
    inner = (coords[:, 0] <= 15) & (coords[:, 1] <= 15)
    assert np.abs(pred - f)[inner].max() < 0.1
    # between two neighbouring chosen pixels the prediction lies between their values (up to
    # a small overshoot): no oscillation
    i, j = pixels[0], pixels[1]
    mid = U[(i + j) // 2] @ f[pixels]
    assert min(f[i], f[j]) - 0.05 <= mid <= max(f[i], f[j]) + 0.05


def test_predicted_layer_weight_and_gradient():
    U = random_dictionary(10, 4, rng=0)
    layer = Linear(10, 3, rng=0).parametrize("weight", Predicted(U))
    names = sorted(k for k, _ in layer.named_parameters())
    assert names == ["bias", "weight.coefficients"]
    C = layer.params["weight.coefficients"]
    assert np.allclose(layer.weight, C @ U.T.astype(np.float32), atol=1e-6)
    x = np.random.default_rng(2).standard_normal((5, 10))
    assert gradcheck(layer, x).passed


def test_initial_coefficients_fit_a_weight_in_the_dictionary_span_exactly():
    U = random_dictionary(20, 5, rng=0)
    C = np.random.default_rng(1).standard_normal((3, 5))
    layer = Linear(20, 3).astype(np.float64)
    layer.weight = C @ U.T
    layer.parametrize("weight", Predicted(U))
    assert np.abs(layer.params["weight.coefficients"] - C).max() < 1e-10


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_atoms"):
        kernel_ridge_dictionary((4, 4), 17)
    with pytest.raises(ValueError, match="exactly one"):
        kernel_ridge_dictionary((4, 4))
    with pytest.raises(ValueError, match="pixels"):
        kernel_ridge_dictionary((4, 4), pixels=np.array([1, 1]))
    with pytest.raises(ValueError, match="dictionary"):
        Linear(7, 3).parametrize("weight", Predicted(np.ones((10, 2))))


def test_empirical_kernel_reproduces_the_chosen_pixels_and_checks_its_shape():
    X = np.random.default_rng(0).standard_normal((200, 16))
    U, pixels = kernel_ridge_dictionary((4, 4), 5, covariance=np.cov(X.T), ridge=0.0, rng=0)
    assert np.abs(U[pixels] - np.eye(5)).max() < 1e-8
    with pytest.raises(ValueError, match="covariance"):
        kernel_ridge_dictionary((4, 4), 5, covariance=np.eye(15))
