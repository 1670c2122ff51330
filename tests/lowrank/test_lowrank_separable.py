"""Separable filters (Jaderberg et al. 2014, scheme 2): closed-form start and data refinement."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.lowrank import (
    relative_output_error,
    separable_factorize,
    separable_filters,
    window_moments,
)
from refimpl.nn import Conv2d, Linear, Sequential, gradcheck


def composed(v_layer, h_layer):
    """Kernel (N, C, kH, kW) computed by a vertical then a horizontal layer."""
    V = v_layer.weight[..., 0].astype(np.float64)  # (K, C, kH)
    H = h_layer.weight[:, :, 0, :].astype(np.float64)  # (N, K, kW)
    return np.einsum("nkx,kcy->ncyx", H, V)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.integers(1, 4),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    rank_frac=st.floats(0, 1),
    seed=st.integers(0, 10_000),
)
def test_svd_start_is_the_best_separable_kernel(n, c, kh, kw, rank_frac, seed):
    """Frobenius error = the discarded singular values of W reshaped to (C kH, N kW)."""
    W = np.random.default_rng(seed).standard_normal((n, c, kh, kw))
    rank = 1 + int(rank_frac * (min(c * kh, n * kw) - 1))
    V, H = separable_filters(W, rank)
    assert V.shape == (rank, c, kh) and H.shape == (n, rank, kw)
    approx = np.einsum("nkx,kcy->ncyx", H, V)
    s = np.linalg.svd(W.transpose(1, 2, 0, 3).reshape(c * kh, n * kw), compute_uv=False)
    assert np.linalg.norm(W - approx) == pytest.approx(np.sqrt(np.sum(s[rank:] ** 2)), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 4),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    seed=st.integers(0, 10_000),
)
def test_two_layers_compute_their_composed_kernel(c_in, c_out, kh, kw, stride, padding, seed):
    conv = Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, rng=seed)
    rank = max(1, min(c_in * kh, c_out * kw) // 2)
    v, h = separable_factorize(conv, rank)
    assert v.kernel_size == (kh, 1) and h.kernel_size == (1, kw)
    reference = Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding)
    reference.weight = composed(v, h)
    reference.bias = conv.bias
    x = np.random.default_rng(seed).standard_normal((2, c_in, 7, 6)).astype(np.float32)
    expected = reference(x)
    np.testing.assert_allclose(h(v(x)), expected, atol=1e-5 * (1 + np.abs(expected).max()))


def test_full_rank_reproduces_the_convolution():
    conv = Conv2d(3, 4, 3, padding=1, rng=0)
    v, h = separable_factorize(conv, 9)  # min(C kH, N kW) = min(9, 12)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(h(v(x)), conv(x), atol=1e-5)


def test_window_moments_match_an_identity_convolution():
    """The windows are the outputs of a convolution whose filters are one-hot."""
    conv = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), rng=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 7, 6)).astype(np.float32)
    d = 2 * 3 * 2
    probe = Conv2d(2, d, (3, 2), stride=(2, 1), padding=(1, 0), bias=False)
    probe.weight = np.eye(d).reshape(d, 2, 3, 2)
    cols = probe(x).transpose(1, 0, 2, 3).reshape(d, -1).astype(np.float64)
    mean, cov = window_moments(conv, x, batch_size=2)
    np.testing.assert_allclose(mean, cols.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(cols, bias=True), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_lowers_the_data_error_monotonically(seed):
    gen = np.random.default_rng(seed)
    conv = Conv2d(4, 6, 3, padding=1, rng=seed)
    # correlated inputs with a non-zero mean, as real activations are
    base = gen.standard_normal((40, 1, 8, 8))
    x = (np.abs(base + 0.5 * gen.standard_normal((40, 4, 8, 8))) + 0.2).astype(np.float32)
    pair = separable_factorize(conv, 3, inputs=x, n_iter=6)
    v, h, history = pair.vertical, pair.horizontal, pair.history
    assert len(history) == 1 + 2 * 6
    assert np.all(np.diff(history) <= 1e-9)
    assert history[-1] < history[0]
    # with the corrected bias the measured output error is exactly the tracked one
    assert relative_output_error(conv, [v, h], x) == pytest.approx(
        history[-1] * np.sqrt(_centred_share(conv, x)), rel=1e-3
    )
    v0, h0 = separable_factorize(conv, 3)
    assert relative_output_error(conv, [v, h], x) < relative_output_error(conv, [v0, h0], x)


def _centred_share(conv, x):
    """||W0 (X - mu)||^2 / ||W0 X + b0||^2: converts the tracked error to the output error."""
    y = conv(x).astype(np.float64)
    centred = y - y.mean(axis=(0, 2, 3), keepdims=True)
    return float(np.sum(centred**2) / np.sum(y**2))


def test_refinement_with_full_rank_stays_exact():
    conv = Conv2d(2, 3, 3, rng=0)
    x = np.random.default_rng(0).standard_normal((10, 2, 6, 6)).astype(np.float32)
    v, h = separable_factorize(conv, 6, inputs=x, n_iter=2)
    np.testing.assert_allclose(h(v(x)), conv(x), atol=1e-4)


def test_separable_layers_pass_gradcheck():
    conv = Conv2d(2, 3, 3, padding=1, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    v, h = separable_factorize(conv, 2, inputs=x.astype(np.float32), n_iter=1)
    result = gradcheck(Sequential(v, h), x)
    assert result.passed, result


def test_separable_bad_input():
    conv = Conv2d(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match="rank"):
        separable_factorize(conv, 7)  # > min(C kH, N kW) = 6
    with pytest.raises(ValueError, match="rank"):
        separable_factorize(conv, 0)
    with pytest.raises(TypeError, match="conv"):
        separable_factorize(Linear(2, 2), 1)
    with pytest.raises(ValueError, match="inputs"):
        separable_factorize(conv, 2, inputs=np.ones((4, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match="n_iter"):
        separable_factorize(conv, 2, inputs=np.ones((4, 2, 6, 6), np.float32), n_iter=-1)
    with pytest.raises(ValueError, match="weight"):
        separable_filters(np.ones((3, 3, 3)), 1)
    with pytest.raises(TypeError, match="conv"):
        window_moments(Linear(2, 2), np.ones((1, 2, 3, 3)))
