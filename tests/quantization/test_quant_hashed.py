"""HashedNets: exact parameter count, hash properties, bucket gradients, true cost."""

import numpy as np
import pytest

from refimpl.cost import profile
from refimpl.nn import SGD, Conv2d, Flatten, Linear, ReLU, Sequential, fit, gradcheck
from refimpl.quantization import HashedLinear, HashedWeights, bucket_hash, sign_hash


def test_stores_exactly_n_buckets_parameters():
    layer = HashedLinear(784, 300, 3000, seed=1)
    assert list(layer.params) == ["buckets"]
    assert layer.params["buckets"].shape == (3000,)
    assert layer.num_parameters() == 3000
    model = Sequential(("flat", Flatten()), ("fc1", layer), ("relu", ReLU()),
                       ("fc2", HashedLinear(300, 10, 100, seed=2)))
    assert model.num_parameters() == 3100
    assert set(model.state_dict()) == {"fc1.buckets", "fc2.buckets"}
    assert layer.compression == pytest.approx(3000 / (785 * 300))


def test_virtual_weights_read_their_buckets_with_a_sign():
    layer = HashedLinear(7, 5, 11, seed=3, rng=0)
    i, j = np.indices((5, 8))
    h, s = bucket_hash(i, j, 3, 11), sign_hash(i, j, 3)
    v = np.concatenate([layer.weight, layer.bias[:, None]], axis=1)
    assert np.array_equal(v, layer.params["buckets"][h] * s)
    x = np.random.default_rng(0).standard_normal((4, 7)).astype(np.float32)
    assert np.allclose(layer.forward(x), x @ layer.weight.T + layer.bias, atol=1e-6)


def test_hashes_are_deterministic_in_range_and_well_spread():
    i, j = np.indices((300, 785))
    h1, h2 = bucket_hash(i, j, 7, 1000), bucket_hash(i, j, 7, 1000)
    assert np.array_equal(h1, h2)
    assert h1.min() >= 0 and h1.max() < 1000
    assert not np.array_equal(h1, bucket_hash(i, j, 8, 1000))  # the seed matters
    counts = np.bincount(h1.ravel(), minlength=1000)
    expected = h1.size / 1000
    # a uniform hash: chi-square statistic near its mean (999), far below a bad hash's
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert 800 < chi2 < 1200
    s = sign_hash(i, j, 7)
    assert set(np.unique(s)) == {-1, 1}
    assert abs(s.mean()) < 0.01
    # sign and bucket are independent: within a bucket both signs occur about equally
    assert abs(np.corrcoef(s.ravel(), h1.ravel() % 2)[0, 1]) < 0.01


def test_bucket_gradient_is_the_sum_of_signed_virtual_gradients():
    rng = np.random.default_rng(0)
    layer = HashedLinear(6, 4, 5, seed=0, rng=0)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    gv = np.concatenate([g.T @ x, g.sum(0)[:, None]], axis=1)
    h, s = layer.tables()
    expected = np.array([(gv * s)[h == k].sum() for k in range(5)])
    assert np.allclose(layer.grads["buckets"], expected, atol=1e-5)


@pytest.mark.parametrize("n_buckets", [1, 7, 35])  # 35: every entry of the (5, 7) virtual
def test_hashed_linear_gradcheck(n_buckets):  # matrix, with collisions (empty buckets)
    layer = HashedLinear(6, 5, n_buckets, seed=4, rng=0)
    res = gradcheck(layer, np.random.default_rng(1).standard_normal((3, 6)))
    assert res.passed, res


def test_hashed_weights_parametrization_least_squares_init_and_gradcheck():
    conv = Conv2d(2, 3, 3, rng=0)
    w = conv.weight.copy()
    p = HashedWeights(20, seed=5)
    conv.parametrize("weight", p)
    assert conv.params["weight.buckets"].shape == (20,)
    h, s = p.tables(w.shape)
    # each bucket is the mean of its signed members: the least-squares fit
    for k in range(20):
        members = (s * w)[h == k]
        if members.size:
            assert conv.params["weight.buckets"][k] == pytest.approx(members.mean(), abs=1e-6)
    res = gradcheck(conv, np.random.default_rng(0).standard_normal((1, 2, 5, 5)))
    assert res.passed, res


def test_profile_reports_the_true_cost():
    model = Sequential(("fc1", HashedLinear(64, 100, 500, seed=0)), ("relu", ReLU()),
                       ("fc2", Linear(100, 10)))
    p = profile(model, (64,))
    assert p["fc1"].params == 500
    assert p["fc1"].macs == 6400  # hashing saves memory, not arithmetic
    assert p["fc1"].stored_bytes == 2000
    assert p.params == 500 + 1010


def test_trains_with_fit_and_survives_copy_and_state_dict():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 10)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    model = Sequential(("fc1", HashedLinear(10, 32, 60, seed=1, rng=0)), ("relu", ReLU()),
                       ("fc2", HashedLinear(32, 2, 20, seed=2, rng=1)))
    hist = fit(model, (X, y), epochs=10, optimizer=SGD(0.05, momentum=0.9), rng=0,
               verbose=False)
    assert hist.accuracy[-1] > 0.9
    twin = model.copy()
    assert np.array_equal(twin.forward(X), model.forward(X))
    other = Sequential(("fc1", HashedLinear(10, 32, 60, seed=1)), ("relu", ReLU()),
                       ("fc2", HashedLinear(32, 2, 20, seed=2)))
    other.load_state_dict(model.state_dict())
    assert np.array_equal(other.forward(X), model.forward(X))


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_buckets"):
        HashedLinear(3, 2, 0)
    with pytest.raises(TypeError, match="in_features"):
        HashedLinear(3.0, 2, 4)
    with pytest.raises(ValueError, match="seed"):
        HashedLinear(3, 2, 4, seed=-1)
    with pytest.raises(ValueError, match="shape"):
        HashedLinear(3, 2, 4).forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="n_buckets"):
        HashedWeights(0)
    # more buckets than entries would store more than the dense weight: 2**40 buckets asked
    # NumPy for 8 TiB before
    with pytest.raises(ValueError, match=r"n_buckets must lie in \[1, 15\]"):
        HashedLinear(4, 3, 2**40)
    with pytest.raises(ValueError, match="n_buckets=1099511627776 exceeds the weight's 12"):
        Linear(4, 3).parametrize("weight", HashedWeights(2**40))
