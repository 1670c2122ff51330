"""Q-CNN: product quantization of the response; monotone error, and plain PQ when X = I."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.quantization import pq_reconstruct, product_quantize, qcnn_quantize, response_error


def _problem(seed, out=24, inp=10, n=60):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((out, inp))
    # correlated inputs with unequal scales: the response error differs from the weight error
    X = rng.standard_normal((n, inp)) @ rng.standard_normal((inp, inp)) * rng.uniform(0.1, 3, inp)
    return W, X


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), d=st.sampled_from([1, 2, 3, 4]), k=st.integers(2, 6),
       ridge=st.sampled_from([0.0, 0.1]))
def test_every_sweep_does_not_increase_the_response_error(seed, d, k, ridge):
    W, X = _problem(seed)
    init = product_quantize(W, d, k, rng=seed)
    res = qcnn_quantize(W, X, d, k, init=init, max_iter=6, ridge=ridge)
    lam = ridge * np.sum(X**2) / X.shape[1]

    def objective(W_hat):
        return response_error(W, W_hat, X) + lam * np.sum((W - W_hat) ** 2)

    start = objective(pq_reconstruct(*init, W.shape[1]))
    assert res.errors[0] == pytest.approx(start, rel=1e-10)
    for before, after in zip(res.errors[:-1], res.errors[1:], strict=True):
        assert after <= before * (1 + 1e-10) + 1e-12
    final = objective(pq_reconstruct(res.codebooks, res.codes, W.shape[1]))
    assert final == pytest.approx(res.errors[-1], rel=1e-8)


def test_qcnn_beats_plain_pq_on_the_response():
    W, X = _problem(3, out=64, inp=16, n=200)
    init = product_quantize(W, 4, 8, rng=0)
    res = qcnn_quantize(W, X, 4, 8, init=init, max_iter=10)
    assert res.errors[-1] < 0.9 * res.errors[0]


def test_with_identity_inputs_the_objective_is_plain_pqs_weight_error():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((40, 12))
    X = np.eye(12)
    init = product_quantize(W, 3, 5, rng=0)
    W_hat = pq_reconstruct(*init, 12)
    assert response_error(W, W_hat, X) == pytest.approx(np.sum((W - W_hat) ** 2), rel=1e-12)
    # each Q-CNN step is then a Lloyd step: run to convergence, the codes stop changing, and
    # further sweeps of Q-CNN leave a converged PQ solution where it is
    res = qcnn_quantize(W, X, 3, 5, init=init, max_iter=50)
    again = qcnn_quantize(W, X, 3, 5, init=(res.codebooks, res.codes), max_iter=3)
    assert np.array_equal(again.codes, res.codes)
    assert np.allclose(again.codebooks, res.codebooks)
    # and the converged codebooks are the means of their sub-vectors (k-means centroids)
    blocks = W.reshape(40, 4, 3)
    for m in range(4):
        for c in np.unique(res.codes[:, m]):
            assert np.allclose(res.codebooks[m, c], blocks[res.codes[:, m] == c, m].mean(axis=0))


def test_padding_of_the_last_block():
    W, X = _problem(1, out=16, inp=10)
    res = qcnn_quantize(W, X, 4, 4, rng=0, max_iter=3)
    assert res.codebooks.shape == (3, 4, 4) and res.codes.shape == (16, 3)
    assert res.errors[-1] <= res.errors[0]


def test_bad_arguments_name_themselves():
    W, X = _problem(0)
    with pytest.raises(ValueError, match="X"):
        qcnn_quantize(W, X[:, :5], 2, 4)
    with pytest.raises(ValueError, match="n_centroids"):
        qcnn_quantize(W, X, 2, 100)
    with pytest.raises(ValueError, match="init"):
        qcnn_quantize(W, X, 2, 4, init=(np.zeros((1, 4, 2)), np.zeros((24, 1), int)))
