"""CP-ALS from scratch and the four-layer CP convolution of Lebedev et al. (2015)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.cost import profile
from refimpl.lowrank import (
    cp_als,
    cp_conv_layers,
    cp_decompose_conv,
    cp_to_tensor,
    fold,
    khatri_rao,
    relative_output_error,
    unfold,
)
from refimpl.nn import Conv2d, Linear, Sequential, gradcheck


def rel_error(X, weights, factors):
    return np.linalg.norm(cp_to_tensor(weights, factors) - X) / np.linalg.norm(X)


def planted(shape, rank, seed):
    gen = np.random.default_rng(seed)
    factors = [gen.standard_normal((s, rank)) for s in shape]
    return cp_to_tensor(gen.uniform(0.5, 2.0, rank), factors)


# ------------------------------------------------------------------ an independent reference
def reference_kr(mats):
    """Khatri-Rao product column by column with numpy.kron (independent of khatri_rao)."""
    cols = []
    for r in range(mats[0].shape[1]):
        col = mats[0][:, r]
        for m in mats[1:]:
            col = np.kron(col, m[:, r])
        cols.append(col)
    return np.stack(cols, axis=1)


def reference_als(X, factors, n_sweeps):
    """Plain ALS: each factor by numpy.linalg.lstsq against the full unfolding."""
    factors = [f.copy() for f in factors]
    for _ in range(n_sweeps):
        for n in range(X.ndim):
            Xn = np.moveaxis(X, n, 0).reshape(X.shape[n], -1)
            kr = reference_kr([factors[m] for m in range(X.ndim) if m != n])
            factors[n] = np.linalg.lstsq(kr, Xn.T, rcond=None)[0].T
    return np.ones(factors[0].shape[1]), factors


# ------------------------------------------------------------------------- tensor algebra
@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    rank=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_unfolding_identity_and_fold_roundtrip(shape, rank, seed):
    gen = np.random.default_rng(seed)
    factors = [gen.standard_normal((s, rank)) for s in shape]
    weights = gen.standard_normal(rank)
    X = cp_to_tensor(weights, factors)
    assert X.shape == tuple(shape)
    for n in range(len(shape)):
        others = [factors[m] for m in range(len(shape)) if m != n]
        np.testing.assert_allclose(unfold(X, n), (factors[n] * weights) @ khatri_rao(others).T,
                                   atol=1e-12)
        np.testing.assert_array_equal(fold(unfold(X, n), n, shape), X)
    np.testing.assert_allclose(khatri_rao(factors), reference_kr(factors), atol=1e-12)


def test_cp_to_tensor_is_a_sum_of_outer_products():
    gen = np.random.default_rng(0)
    a, b, c = gen.standard_normal((3, 2)), gen.standard_normal((4, 2)), gen.standard_normal((2, 2))
    w = np.array([2.0, -1.0])
    expected = sum(w[r] * np.einsum("i,j,k->ijk", a[:, r], b[:, r], c[:, r]) for r in range(2))
    np.testing.assert_allclose(cp_to_tensor(w, [a, b, c]), expected, atol=1e-12)


# ------------------------------------------------------------------------------- CP-ALS
@pytest.mark.parametrize(
    "shape, rank, seed",
    [((12, 10, 6), 4, 0), ((20, 10, 5, 5), 6, 1), ((8, 7, 6, 5), 3, 2), ((9, 9), 3, 3)],
)
def test_recovers_a_planted_low_rank_tensor(shape, rank, seed):
    X = planted(shape, rank, seed)
    res = cp_als(X, rank, max_iter=400, tol=1e-15, rng=seed)
    weights, factors, errors = res.weights, res.factors, res.errors
    assert rel_error(X, weights, factors) < 1e-10  # near machine precision
    assert errors[-1] == pytest.approx(rel_error(X, weights, factors), abs=1e-14)
    assert np.all(np.diff(weights) <= 0)
    for f in factors:
        np.testing.assert_allclose(np.linalg.norm(f, axis=0), 1.0)


@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(2, 6), min_size=3, max_size=4),
    rank=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    init=st.sampled_from(["svd", "random"]),
)
def test_error_never_increases(shape, rank, seed, init):
    X = np.random.default_rng(seed).standard_normal(shape)
    errors = cp_als(X, rank, max_iter=30, tol=0, init=init, rng=seed).errors
    assert len(errors) == 30 or errors[-1] == 0.0
    assert np.all(np.diff(errors) <= 1e-12)
    assert 0.0 <= errors[-1] <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_iterates_as_a_plain_lstsq_als(seed):
    """Normal equations with the Gram pseudo-inverse = least squares on the full unfoldings."""
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((7, 6, 5))
    init = [gen.standard_normal((s, 3)) for s in X.shape]
    w, f = cp_als(X, 3, max_iter=6, tol=0, init=init)
    w_ref, f_ref = reference_als(X, init, 6)
    np.testing.assert_allclose(cp_to_tensor(w, f), cp_to_tensor(w_ref, f_ref), atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noisy_tensor_error_no_worse_than_reference_or_truth(seed):
    shape, rank = (15, 12, 5, 5), 4
    X = planted(shape, rank, seed)
    noise = np.random.default_rng(100 + seed).standard_normal(shape)
    Y = X + 0.1 * noise * np.linalg.norm(X) / np.linalg.norm(noise)
    w, f = cp_als(Y, rank, max_iter=200, tol=1e-12)
    ours = rel_error(Y, w, f)
    # the planted factors themselves leave exactly the noise
    truth = np.linalg.norm(Y - X) / np.linalg.norm(Y)
    assert ours <= truth * (1 + 1e-9)
    # a plain ALS started from the same SVD start and run as long is not better
    init = [np.linalg.svd(unfold(Y, n), full_matrices=False)[0][:, :rank] for n in range(4)]
    init = [np.hstack([u, np.zeros((u.shape[0], rank - u.shape[1]))]) for u in init]
    w_ref, f_ref = reference_als(Y, [u + 0 for u in init], 60)
    assert ours <= rel_error(Y, w_ref, f_ref) + 1e-9


def test_no_worse_than_tensorly_if_installed():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    X = planted((20, 10, 5, 5), 5, 7)
    noise = np.random.default_rng(8).standard_normal(X.shape)
    Y = X + 0.2 * noise * np.linalg.norm(X) / np.linalg.norm(noise)
    cpt = parafac(tl.tensor(Y), 5, init="svd", n_iter_max=200, tol=1e-10)
    theirs = np.linalg.norm(tl.cp_to_tensor(cpt) - Y) / np.linalg.norm(Y)
    w, f = cp_als(Y, 5, max_iter=200, tol=1e-10)
    assert rel_error(Y, w, f) <= theirs + 1e-9


def test_random_init_is_reproducible():
    X = np.random.default_rng(0).standard_normal((6, 5, 4))
    a = cp_als(X, 3, init="random", rng=11, max_iter=5)
    b = cp_als(X, 3, init="random", rng=np.random.default_rng(11), max_iter=5)
    np.testing.assert_array_equal(a[0], b[0])
    for fa, fb in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(fa, fb)


def old_svd_start(X, rank, seed):
    """The start before the GEVD one: singular vectors, random normal columns where too short."""
    gen = np.random.default_rng(seed)
    fills = [gen.standard_normal((n, rank - min(n, X.size // n, rank))) for n in X.shape]
    return [np.hstack([np.linalg.svd(unfold(X, m), full_matrices=False)[0][:, :rank], fill])
            for m, fill in enumerate(fills)]


def hard_kernel(noise=0.1):
    """A planted rank-8 CP tensor of LeNet-5 conv2's shape (two modes of 5 < 8) plus noise."""
    X = planted((50, 20, 5, 5), 8, 0)
    e = np.random.default_rng(99).standard_normal(X.shape)
    return X + noise * e * np.linalg.norm(X) / np.linalg.norm(e)


def test_short_mode_start_is_deterministic_and_no_worse_than_the_old_one():
    Y = hard_kernel()
    a = cp_als(Y, 8, rng=5)
    b = cp_als(Y, 8, rng=np.random.default_rng(5))
    for x, y in zip([a.weights, *a.factors, a.errors], [b.weights, *b.factors, b.errors],
                    strict=True):
        np.testing.assert_array_equal(x, y)
    new, old = [], []
    for seed in range(10):
        new.append(cp_als(Y, 8, rng=seed, max_iter=300).errors)
        old.append(cp_als(Y, 8, init=old_svd_start(Y, 8, seed), max_iter=300).errors)
    # converges to the best fit any old start found, and in fewer sweeps than the old median
    best_old = min(e[-1] for e in old)
    assert all(e[-1] <= best_old + 1e-9 for e in new)
    assert max(len(e) for e in new) <= np.median([len(e) for e in old])
    assert max(len(e) for e in new) <= 10  # the old start needs 8 to over 100


def test_short_mode_start_recovers_an_exact_cp_tensor_at_once():
    X = planted((12, 10, 3), 5, 4)  # mode 2 is shorter than the rank
    res = cp_als(X, 5, tol=1e-14, rng=0)
    w, f, errors = res.weights, res.factors, res.errors
    assert errors[0] < 1e-8 and rel_error(X, w, f) < 1e-12


def test_far_from_low_rank_keeps_the_old_random_start():
    X = np.random.default_rng(3).standard_normal((12, 10, 3, 3))  # fits rank 5 badly
    w, f = cp_als(X, 5, max_iter=20, rng=7)
    w_old, f_old = cp_als(X, 5, max_iter=20, init=old_svd_start(X, 5, 7))
    np.testing.assert_array_equal(w, w_old)
    for x, y in zip(f, f_old, strict=True):
        np.testing.assert_array_equal(x, y)


def test_zero_tensor():
    res = cp_als(np.zeros((3, 4, 2)), 2)
    w, errors = res.weights, res.errors
    assert errors == [0.0] and np.all(w == 0)


@pytest.mark.parametrize(
    "args, kwargs, exc",
    [
        ((np.ones(4), 2), {}, ValueError),
        ((np.ones((3, 3)), 0), {}, ValueError),
        ((np.ones((3, 3)), 2.5), {}, TypeError),
        ((np.ones((3, 3)), 2), dict(init="hosvd"), ValueError),
        ((np.ones((3, 3)), 2), dict(init=[np.ones((3, 2))]), ValueError),
        ((np.ones((3, 3)), 2), dict(tol=-1.0), ValueError),
        ((np.ones((3, 3)), 2), dict(max_iter=0), ValueError),
        ((np.array([[np.inf, 1.0]]), 1), {}, ValueError),
        ((np.array([["a", "b"]]), 1), {}, TypeError),
    ],
)
def test_cp_als_bad_input(args, kwargs, exc):
    with pytest.raises(exc):
        cp_als(*args, **kwargs)


# ------------------------------------------------------------------- the CP convolution
@settings(max_examples=25, deadline=None)
@given(
    c_in=st.integers(1, 4),
    c_out=st.integers(1, 4),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    rank=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_four_layers_compute_the_reconstructed_kernel(c_in, c_out, kh, kw, stride, padding,
                                                      rank, seed):
    conv = Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, rng=seed)
    weights, factors = cp_als(conv.weight, rank, max_iter=20, rng=seed)
    layers = cp_conv_layers(conv, weights, factors)
    reference = Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding)
    reference.weight = cp_to_tensor(weights, factors)
    reference.bias = conv.bias
    x = np.random.default_rng(seed).standard_normal((2, c_in, 7, 6)).astype(np.float32)
    y = x
    for layer in layers:
        y = layer(y)
    expected = reference(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=1e-5 * (1 + np.abs(expected).max()))
    first, vertical, horizontal, last = layers
    assert vertical.groups == rank and horizontal.groups == rank
    assert vertical.kernel_size == (kh, 1) and horizontal.kernel_size == (1, kw)


def test_cp_decompose_conv_structure_and_cost():
    conv = Conv2d(20, 50, 5, rng=0)
    layers = cp_decompose_conv(conv, 16, max_iter=3, rng=0)
    model = Sequential(*layers)
    cost = profile(model, (20, 12, 12))
    assert cost.params == 16 * (20 + 5 + 5 + 50) + 50
    # 1x1 at 12x12, 5x1 depthwise to 8x12, 1x5 depthwise to 8x8, 1x1 at 8x8
    assert cost.macs == 144 * 20 * 16 + 96 * 16 * 5 + 64 * 16 * 5 + 64 * 16 * 50
    assert cost.output_shape == profile(conv, (20, 12, 12)).output_shape
    # more components fit the kernel better, so the layer output gets closer too
    small = Conv2d(3, 4, 3, rng=1)
    x = np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32)
    errors = [relative_output_error(small, cp_decompose_conv(small, r, rng=0), x)
              for r in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]


def test_cp_layers_pass_gradcheck():
    conv = Conv2d(3, 4, 3, padding=1, rng=0)
    model = Sequential(*cp_decompose_conv(conv, 2, rng=0))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4))
    result = gradcheck(model, x)
    assert result.passed, result


def test_cp_conv_bad_input():
    conv = Conv2d(4, 4, 3, rng=0)
    with pytest.raises(TypeError, match="conv"):
        cp_decompose_conv(Linear(3, 3), 2)
    with pytest.raises(ValueError, match="groups"):
        cp_decompose_conv(Conv2d(4, 4, 3, groups=2), 2)
    with pytest.raises(ValueError, match="rank"):
        cp_decompose_conv(conv, 0)
    w, f = cp_als(conv.weight, 2, max_iter=2)
    with pytest.raises(ValueError, match="factors"):
        cp_conv_layers(conv, w, f[:3])
    with pytest.raises(ValueError, match="factors"):
        cp_conv_layers(conv, w[:1], f)
    with pytest.raises(ValueError, match="mode"):
        unfold(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="columns"):
        khatri_rao([np.ones((2, 2)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="unfolding"):
        fold(np.ones((2, 4)), 0, (2, 3))


def test_absurd_rank_is_refused_before_allocation(peak_memory):
    # rank=10**7 asked NumPy for a 728 TiB Gram matrix (MemoryError)
    out = peak_memory(cp_als, np.ones((3, 3, 3)), rank=10**7)
    assert isinstance(out.error, ValueError) and "rank must lie in [1, 64]" in str(out.error)
    assert out.peak < 1 << 20
    big = np.random.default_rng(0).standard_normal((20, 10, 10))  # at most 100 terms needed
    assert cp_als(big, 100, max_iter=1).weights.shape == (100,)
    with pytest.raises(ValueError, match=r"rank must lie in \[1, 100\]"):
        cp_als(big, 101)
