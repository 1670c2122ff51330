"""k-means weight sharing: 1-D k-means quality, the pruned-zero encoding, SharedWeights."""

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.vq import kmeans2

from refimpl.nn import SGD, Linear, Mask, Sequential, fit, gradcheck
from refimpl.quantization import (
    PRUNED,
    SharedWeights,
    kmeans_1d,
    kmeans_1d_exact,
    kmeans_quantize,
    shared_weight,
)

# the module (refimpl.quantization.kmeans is also the name of a function in the package)
kmeans_module = importlib.import_module("refimpl.quantization.kmeans")


def brute_force_dp(x, k):
    """O(k n^2) textbook DP: the least inertia of k contiguous runs of the sorted data."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    n = xs.size
    D = np.full((k + 1, n + 1), np.inf)
    D[0, 0] = 0.0
    for m in range(1, k + 1):
        for i in range(m, n + 1):
            D[m, i] = min(D[m - 1, j] + ((xs[j:i] - xs[j:i].mean()) ** 2).sum() for j in range(i))
    return D[k, n]


def inertia(x, c):
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(((x[:, None] - np.asarray(c)[None, :]) ** 2).min(axis=1).sum())


def best_kmeans2(x, k, restarts=10):
    best = np.inf
    for seed in range(restarts):
        c, _ = kmeans2(x[:, None], k, minit="++", seed=seed)
        best = min(best, inertia(x, c[:, 0]))
    return best


# ----------------------------------------------------------------- 1-D k-means quality
@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 25),
    k=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_exact_dp_equals_brute_force(n, k, seed):
    x = np.random.default_rng(seed).standard_normal(n)
    k = min(k, n)
    centroids, best = kmeans_1d_exact(x, k)
    assert best == pytest.approx(brute_force_dp(x, k), rel=1e-9, abs=1e-12)
    assert inertia(x, centroids) == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dist", ["normal", "laplace", "mixture"])
@pytest.mark.parametrize("k", [4, 16])
def test_optimal_1d_kmeans_no_worse_than_general_kmeans(dist, k):
    rng = np.random.default_rng(k)
    x = {
        "normal": rng.standard_normal(2000),
        "laplace": rng.laplace(size=2000),
        "mixture": np.concatenate([rng.normal(-2, 0.3, 700), rng.normal(1, 0.1, 1300)]),
    }[dist]
    _, _, ours = kmeans_1d(x, k, init="optimal")
    _, exact = kmeans_1d_exact(x, k)
    general = best_kmeans2(x, k)
    assert ours <= general * (1 + 1e-9)
    assert ours == pytest.approx(exact, rel=1e-9)


def test_grouped_optimal_is_close_to_exact_on_many_values(monkeypatch):
    # 20,000 distinct values with a table too small for them: the optimal init runs its DP on
    # 8192 groups, then Lloyd polishes
    x = np.random.default_rng(3).standard_normal(20_000)
    _, exact = kmeans_1d_exact(x, 8)
    monkeypatch.setattr(kmeans_module, "MAX_DP_TABLE", 8 * 10_000)
    _, _, ours = kmeans_1d(x, 8, init="optimal")
    assert exact * (1 - 1e-9) <= ours <= exact * (1 + 1e-4)
    assert ours <= best_kmeans2(x, 8, restarts=3) * (1 + 1e-9)


def test_optimal_is_exact_on_heavy_tails_when_the_table_fits():
    # equal-count groups lose the sparse tails (2x the optimum on 100,000 Student t weights at
    # k = 64); with 20,000 distinct values at k = 32 the DP runs on all of them
    x = np.random.default_rng(4).standard_t(3, 20_000)
    _, _, ours = kmeans_1d(x, 32, init="optimal")
    _, exact = kmeans_1d_exact(x, 32)
    assert ours == pytest.approx(exact, rel=1e-9)


def random_weights(dist, n, seed):
    gen = np.random.default_rng(seed)
    return {
        "normal": lambda: 0.05 * gen.standard_normal(n),
        "student_t": lambda: 0.02 * gen.standard_t(2, n),
        "repeated": lambda: np.round(gen.standard_normal(n), 1),  # few distinct values
        "pruned": lambda: np.where(gen.random(n) < 0.6, 0.0, gen.laplace(size=n)),
    }[dist]().astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 3000),
    k=st.integers(1, 64),
    dist=st.sampled_from(["normal", "student_t", "repeated", "pruned"]),
    seed=st.integers(0, 10_000),
)
def test_optimal_init_never_worse_than_linear_then_lloyd(n, k, dist, seed):
    w = random_weights(dist, n, seed)
    nonzero = w[w != 0]
    if nonzero.size == 0:
        return
    k = min(k, np.unique(nonzero).size)
    _, _, linear = kmeans_1d(nonzero, k, init="linear")
    _, _, optimal = kmeans_1d(nonzero, k, init="optimal")
    assert optimal <= linear * (1 + 1e-9) + 1e-15
    # the same through kmeans_quantize (float32 codebook, pruned zeros left out)
    errors = {}
    for init in ("linear", "optimal"):
        codebook, indices = kmeans_quantize(w, k, init=init)
        errors[init] = float(((w.astype(np.float64)
                               - shared_weight(codebook, indices).astype(np.float64)) ** 2).sum())
    assert errors["optimal"] <= errors["linear"] * (1 + 1e-6) + 1e-12


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8),
       init=st.sampled_from(["linear", "density", "random", "optimal"]))
def test_lloyd_never_worse_than_its_start_and_labels_are_nearest(seed, k, init):
    x = np.random.default_rng(seed).standard_normal(300)
    c, labels, value = kmeans_1d(x, k, init=init, rng=seed)
    assert np.all(np.diff(c) >= 0)
    # each value is assigned to its nearest centroid and inertia is reported exactly
    assert np.array_equal(np.abs(x - c[labels]), np.abs(x[:, None] - c[None, :]).min(axis=1))
    assert value == pytest.approx(inertia(x, c), rel=1e-12)
    # each centroid is the mean of its members (a fixed point of Lloyd)
    for m in np.unique(labels):
        assert c[m] == pytest.approx(x[labels == m].mean(), abs=1e-6)
    # never worse than the global optimum, of course, and the optimal start reaches it
    _, exact = kmeans_1d_exact(x, k)
    assert value >= exact * (1 - 1e-9)
    if init == "optimal":
        assert value == pytest.approx(exact, rel=1e-9)


# ----------------------------------------------------------------- kmeans_quantize encoding
def test_pruned_zeros_get_index_minus_one_and_stay_zero():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((30, 40)).astype(np.float32)
    w[np.abs(w) < 0.7] = 0
    codebook, indices = kmeans_quantize(w, 8)
    assert codebook.shape == (8,) and codebook.dtype == np.float32
    assert indices.shape == w.shape and np.issubdtype(indices.dtype, np.integer)
    assert np.array_equal(indices == PRUNED, w == 0)
    assert indices[w != 0].min() >= 0 and indices.max() < 8
    rebuilt = shared_weight(codebook, indices)
    assert np.array_equal(rebuilt == 0, w == 0)
    # the codebook only sees nonzero weights: no centroid sits in the pruned gap (-0.7, 0.7)
    assert np.all(np.abs(codebook) >= 0.7)
    # every nonzero weight goes to its nearest centroid
    nz = w != 0
    nearest = np.abs(w[nz][:, None] - codebook[None, :]).min(axis=1)
    assert np.allclose(np.abs(w[nz] - rebuilt[nz]), nearest)


@pytest.mark.parametrize("init", ["linear", "density", "random", "optimal"])
def test_every_init_gives_a_valid_codebook(init):
    w = np.random.default_rng(1).laplace(size=(50, 20)).astype(np.float32)
    codebook, indices = kmeans_quantize(w, 16, init=init, rng=0)
    assert np.all(np.diff(codebook) >= 0)
    assert np.unique(indices).size == 16  # no empty cluster
    err = np.abs(shared_weight(codebook, indices) - w)
    assert err.max() < np.ptp(w) / 4


def test_linear_init_keeps_large_weights_better_than_density():
    # Deep Compression section 3.2: linear init represents the rare large weights better
    w = np.random.default_rng(2).laplace(size=20_000).astype(np.float32)
    big = np.abs(w) > np.quantile(np.abs(w), 0.99)
    errs = {}
    for init in ("linear", "density"):
        cb, idx = kmeans_quantize(w, 8, init=init)
        errs[init] = np.abs(shared_weight(cb, idx) - w)[big].mean()
    assert errs["linear"] < errs["density"]


def test_few_distinct_values_are_kept_exactly_and_all_zero_weight():
    w = np.array([[0.5, 0.0, -1.0], [0.5, 2.0, 0.0]], dtype=np.float32)
    cb, idx = kmeans_quantize(w, 8)
    assert np.array_equal(shared_weight(cb, idx), w)
    cb, idx = kmeans_quantize(np.zeros((3, 3), np.float32), 4)
    assert np.all(idx == PRUNED) and np.all(cb == 0)


def test_random_init_is_reproducible():
    w = np.random.default_rng(5).standard_normal(500).astype(np.float32)
    a = kmeans_quantize(w, 8, init="random", rng=7)
    b = kmeans_quantize(w, 8, init="random", rng=np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ----------------------------------------------------------------- SharedWeights
def test_shared_gradient_is_bincount_of_member_gradients():
    rng = np.random.default_rng(0)
    layer = Linear(12, 7, rng=0)
    w = layer.weight.copy()
    w[rng.random(w.shape) < 0.3] = 0
    layer.weight = w
    p = SharedWeights.from_weight(layer.weight, 5)
    layer.parametrize("weight", p)
    x = rng.standard_normal((9, 12)).astype(np.float32)
    g = rng.standard_normal((9, 7)).astype(np.float32)
    layer.forward(x)
    layer.backward(g)
    grad_w = g.T @ x
    idx = layer.buffers["weight.indices"]
    expected = np.array([grad_w[idx == m].sum() for m in range(5)])
    assert np.allclose(layer.grads["weight.codebook"], expected, rtol=1e-5, atol=1e-5)
    # pruned weights contribute nothing
    assert not np.isclose(grad_w[idx == PRUNED].sum(), 0)


def test_shared_weights_gradcheck():
    layer = Linear(6, 4, rng=1)
    layer.parametrize("weight", SharedWeights.from_weight(layer.weight, 3))
    res = gradcheck(layer, np.random.default_rng(0).standard_normal((5, 6)))
    assert res.passed, res
    assert "weight.codebook" in res.errors


def test_fine_tuning_keeps_sharing_and_pruning():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 10)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(("fc", Linear(10, 2, rng=0)))
    mask = rng.random((2, 10)) > 0.5
    model["fc"].parametrize("weight", Mask(mask))
    cb, idx = kmeans_quantize(model["fc"].weight, 4)
    model["fc"].parametrize("weight", SharedWeights(cb, idx))  # chained after the mask
    before = model["fc"].params["weight.codebook"].copy()
    fit(model, (X, y), epochs=3, optimizer=SGD(0.1, momentum=0.9, weight_decay=1e-3),
        rng=0, verbose=False)
    w = model["fc"].weight
    assert not np.allclose(model["fc"].params["weight.codebook"], before)
    assert np.array_equal(w == 0, ~mask)  # pruned stay zero
    assert np.unique(w[mask]).size <= 4  # still at most 4 shared values
    # the mask stays in the chain; sharing replaced the real-valued base tensor
    assert set(model.state_dict()) == {"fc.bias", "fc.weight.mask", "fc.weight.codebook",
                                       "fc.weight.indices"}  # fmt: skip


# ----------------------------------------------------------------- bad input
def test_bad_inputs():
    w = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_quantize(w, 0)
    with pytest.raises(TypeError, match="n_clusters"):
        kmeans_quantize(w, 2.5)
    with pytest.raises(ValueError, match="init"):
        kmeans_quantize(w, 2, init="kmeans++")
    with pytest.raises(TypeError, match="weight"):
        kmeans_quantize(np.arange(6).reshape(2, 3), 2)
    with pytest.raises(ValueError, match="finite"):
        kmeans_quantize(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_1d(np.array([1.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="indices"):
        SharedWeights(np.zeros(3, np.float32), np.array([0, 3]))
    with pytest.raises(TypeError, match="indices"):
        SharedWeights(np.zeros(3, np.float32), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        Linear(5, 4).parametrize("weight", SharedWeights(np.zeros(2, np.float32),
                                                         np.zeros((3, 3), int)))


def test_kmeans_init_places_the_three_starts_as_deep_compression_describes():
    from refimpl.quantization import kmeans_init

    x = np.random.default_rng(0).laplace(size=5000)
    lin = kmeans_init(x, 5, "linear")
    assert np.allclose(lin, np.linspace(x.min(), x.max(), 5))
    dens = kmeans_init(x, 5, "density")
    # evenly spaced on the CDF: each start sits at quantile (m + 1/2) / k
    assert np.allclose([(x <= c).mean() for c in dens], [0.1, 0.3, 0.5, 0.7, 0.9], atol=1e-3)
    rand = kmeans_init(x, 5, "random", rng=0)
    assert np.all(np.isin(rand, x)) and np.unique(rand).size == 5
    # the start decides the local optimum: Lloyd from `lin` is what kmeans_1d returns
    c, _, _ = kmeans_1d(x, 5, init=lin)
    assert np.allclose(c, kmeans_1d(x, 5, init="linear")[0])


def test_one_kmeans_entry_for_scalars_and_vectors():
    from refimpl.quantization import KMeansResult, kmeans

    rng = np.random.default_rng(3)
    x = rng.standard_normal(500)
    r = kmeans(x, 4)
    assert isinstance(r, KMeansResult)
    c, labels, inertia = kmeans_1d(x, 4)
    np.testing.assert_array_equal(r.centroids, c)
    assert r.inertia == inertia
    X = rng.standard_normal((200, 3))
    v = kmeans(X, 5, rng=0)
    assert v.centroids.shape == (5, 3) and v.labels.shape == (200,)
    assert v.inertia == pytest.approx(((X - v.centroids[v.labels]) ** 2).sum())
    with pytest.raises(ValueError, match="init"):
        kmeans(X, 5, init="linear")


def test_shared_weights_refuse_a_non_finite_codebook():
    idx = np.zeros((3, 4), dtype=np.int32)
    for bad in ([0.1, np.nan], [np.inf, 0.2]):
        with pytest.raises(ValueError, match="codebook holds NaN or infinite"):
            SharedWeights(np.array(bad), idx)
    with pytest.raises(TypeError, match="codebook must be a float"):
        SharedWeights(np.array([1, 2]), idx)
    layer = Linear(4, 3, rng=0)  # float32: a float64 centroid of 1e300 would become inf
    with pytest.raises(ValueError, match="codebook.*float32.*NaN or infinite"):
        layer.parametrize("weight", SharedWeights(np.array([0.1, 1e300]), idx))
    assert "weight" not in layer.parametrizations


def test_absurd_codebook_sizes_are_refused_before_allocation(peak_memory):
    w = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for call in (lambda: kmeans_quantize(w, 2**33), lambda: kmeans_1d(w.ravel(), 2**33),
                 lambda: SharedWeights.from_weight(w, 2**33)):  # fmt: skip
        out = peak_memory(call)  # a MemoryError once
        assert isinstance(out.error, ValueError) and "n_clusters" in str(out.error), out
        assert out.peak < 1 << 20
