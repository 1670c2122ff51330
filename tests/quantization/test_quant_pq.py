"""Product quantization: k-means, reconstruction, rate and error versus sub-vector length."""

import numpy as np
import pytest
from scipy.cluster.vq import kmeans2

from refimpl.nn import Linear, gradcheck
from refimpl.quantization import (
    ProductQuantized,
    kmeans,
    pq_compression_rate,
    pq_reconstruct,
    product_quantize,
)


def sse(X, C, labels):
    return float(((X - C[labels]) ** 2).sum())


def test_kmeans_is_a_lloyd_fixed_point_and_competitive_with_scipy():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, 3)) * 5
    X = centers[rng.integers(0, 6, 600)] + rng.standard_normal((600, 3)) * 0.3
    C, labels, _ = kmeans(X, 6, rng=0)
    # assignments are nearest, centroids are means
    d = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d.argmin(1))
    for m in range(6):
        assert np.allclose(C[m], X[labels == m].mean(0))
    best = min(sse(X, *kmeans2(X, 6, minit="++", seed=s)) for s in range(5))
    assert sse(X, C, labels) <= best * 1.01


def test_batched_kmeans_equals_separate_runs_in_quality():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 200, 2))
    C, labels, _ = kmeans(X, 5, rng=0)
    assert C.shape == (4, 5, 2) and labels.shape == (4, 200)
    for b in range(4):
        assert np.array_equal(labels[b], ((X[b][:, None] - C[b][None]) ** 2).sum(-1).argmin(1))


def test_reconstruction_shapes_and_exactness_with_one_centroid_per_row():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 10)).astype(np.float32)
    codebooks, codes = product_quantize(w, 4, 8, rng=0)  # 3 blocks, last one padded
    assert codebooks.shape == (3, 8, 4) and codes.shape == (8, 3)
    assert codes.dtype == np.int32
    # k = number of rows: every sub-vector is its own centroid, so the error is zero
    assert np.allclose(pq_reconstruct(codebooks, codes, 10), w, atol=1e-6)


def test_error_grows_and_storage_shrinks_with_subvector_length():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((256, 64)) * 0.1).astype(np.float32)
    errors, rates = [], []
    for d in (1, 2, 4, 8):
        cb, codes = product_quantize(w, d, 16, rng=0)
        errors.append(float(((pq_reconstruct(cb, codes, 64) - w) ** 2).mean()))
        rates.append(pq_compression_rate(w.shape, d, 16))
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False))
    assert all(a < b for a, b in zip(rates, rates[1:], strict=False))


def test_compression_rate_formula():
    # 4096 x 4096, d = 4, k = 256: 1024 codebooks of 1024 floats, 4096*1024 8-bit indices
    rate = pq_compression_rate((4096, 4096), 4, 256)
    assert rate == pytest.approx(32 * 4096**2 / (32 * 256 * 4 * 1024 + 4096 * 1024 * 8))


def test_product_quantized_parametrization_gradient():
    layer = Linear(10, 6, rng=0)
    layer.parametrize("weight", ProductQuantized.from_weight(layer.weight, 3, 4, rng=0))
    assert layer.params["weight.codebooks"].shape == (4, 4, 3)
    res = gradcheck(layer, np.random.default_rng(0).standard_normal((5, 10)))
    assert res.passed, res
    # each centroid's gradient is the sum over the sub-vectors using it
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    g = rng.standard_normal((3, 6)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    gw = np.zeros((6, 12))
    gw[:, :10] = g.T @ x
    codes = layer.buffers["weight.codes"]
    for b in range(4):
        for m in range(4):
            expected = gw[codes[:, b] == m, 3 * b : 3 * b + 3].sum(0)
            assert np.allclose(layer.grads["weight.codebooks"][b, m], expected, atol=1e-5)


def test_bad_inputs():
    w = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="subvector_len"):
        product_quantize(w, 7, 2)
    with pytest.raises(ValueError, match="n_centroids"):
        product_quantize(w, 2, 5)
    with pytest.raises(ValueError, match="2-D"):
        product_quantize(np.ones(6, np.float32), 2, 2)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(np.ones((3, 2)), 4)
    with pytest.raises(ValueError, match="codes"):
        ProductQuantized(np.zeros((2, 3, 2)), np.full((4, 2), 3))
