"""One-shot pruning: OBC's exact greedy step, SparseGPT, Wanda, N:M masks, the model driver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.baselines import load_baseline
from refimpl.data import load_digits
from refimpl.data.fashion_mnist import load_fashion_mnist
from refimpl.models import digits_cnn, digits_mlp
from refimpl.nn import Mask, forward_through
from refimpl.pruning import (
    inverse_hessian_cholesky,
    magnitude_mask,
    nm_mask,
    nm_storage,
    obc_prune,
    obs_prune,
    obs_reconstruct,
    one_shot_prune,
    reconstruction_error,
    reconstruction_hessian,
    sparsegpt_prune,
    wanda_mask,
    wanda_scores,
)


def _problem(seed: int, rows: int = 5, d: int = 12, m: int = 60, correlated: bool = True):
    """A weight (rows, d) and a full-rank Hessian 2 X X^T / M of correlated inputs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(d, m)) * rng.uniform(0.3, 2.0, size=(d, 1))
    if correlated:
        X = (np.eye(d) + 0.4 * rng.normal(size=(d, d))) @ X
    return rng.normal(size=(rows, d)), reconstruction_hessian(X), X


@pytest.fixture(scope="module")
def lenet_layers():
    """LeNet-300-100's weights and the Hessians of their inputs on 256 Fashion-MNIST images."""
    try:
        (X, _), _ = load_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (make data)")
    X = X[:256]
    model = load_baseline("lenet_300_100")
    out = {}
    for name, stop in (("fc1", 0), ("fc2", 2), ("fc3", 4)):
        a = forward_through(model, X, stop).reshape(len(X), -1).astype(np.float64)
        out[name] = (model[name].weight.astype(np.float64), reconstruction_hessian(a.T))
    return out


# -- the Hessian and its Cholesky form -----------------------------------------------------------
def test_reconstruction_error_is_the_mean_squared_output_error():
    W, H, X = _problem(0)
    V = W + np.random.default_rng(1).normal(scale=0.1, size=W.shape)
    direct = np.sum((W @ X - V @ X) ** 2) / X.shape[1]
    assert reconstruction_error(W, V, H) == pytest.approx(direct, rel=1e-10)


def test_cholesky_rows_are_the_downdated_inverse_hessians():
    """Row k of U is row k of the inverse of H restricted to columns k.. , scaled (GPTQ)."""
    _, H, _ = _problem(2, d=8)
    U = inverse_hessian_cholesky(H, damping=0.0)
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(H), rtol=1e-9, atol=1e-12)
    assert np.allclose(U, np.triu(U))
    for k in range(8):
        Finv = np.linalg.inv(H[k:, k:])
        np.testing.assert_allclose(U[k, k:], Finv[0] / np.sqrt(Finv[0, 0]), rtol=1e-8)


def test_damping_is_relative_to_the_mean_diagonal():
    _, H, _ = _problem(3, d=6)
    U = inverse_hessian_cholesky(H, damping=0.1)
    lam = 0.1 * np.mean(np.diag(H))
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(H + lam * np.eye(6)), rtol=1e-9)


def test_singular_hessian_without_damping_fails_with_a_clear_error():
    rng = np.random.default_rng(0)
    H = reconstruction_hessian(rng.normal(size=(10, 4)))  # 4 columns for 10 inputs: rank 4
    with pytest.raises(np.linalg.LinAlgError, match="damping"):
        inverse_hessian_cholesky(H, damping=0.0)
    with pytest.raises(ValueError, match="singular"):  # LinAlgError is a ValueError
        sparsegpt_prune(rng.normal(size=(3, 10)), H, 0.5, damping=0.0)
    assert np.isfinite(inverse_hessian_cholesky(H)).all()  # the default damping rescues it


# -- OBC ------------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), sparsity=st.sampled_from([0.25, 0.5, 0.75]))
def test_obc_is_chapter_3_greedy_obs_on_every_row(seed, sparsity):
    W, H, _ = _problem(seed)
    res = obc_prune(W, H, sparsity, damping=0.0, allocation="row", rows_per_batch=2)
    Hinv = np.linalg.inv(H)
    total = 0.0
    for i in range(W.shape[0]):
        ref = obs_prune(W[i], Hinv, sparsity)
        np.testing.assert_allclose(res.weight[i], ref.weight, rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(res.mask[i], ref.mask)
        total += ref.saliency.sum()  # OBS's saliencies w_q^2 / (2 [H^-1]_qq), one per step
    # each greedy step is exact on the quadratic: the predicted losses add up to the true error
    assert res.loss == pytest.approx(total, rel=1e-8)
    assert res.loss == pytest.approx(reconstruction_error(W, res.weight, H), rel=1e-8)


def test_obc_step_predicts_the_true_increase_of_the_quadratic():
    W, H, _ = _problem(5, rows=1, d=10)
    errors = []
    for k in range(1, 9):
        res = obc_prune(W, H, k / 10, damping=0.0, allocation="row")
        errors.append(reconstruction_error(W, res.weight, H))
        assert res.loss == pytest.approx(errors[-1], rel=1e-9)
        # the weights are the constrained optimum for the mask: no better update exists
        best = obs_reconstruct(W, H, res.mask, damping=0.0)
        np.testing.assert_allclose(res.weight, best.weight, rtol=1e-7, atol=1e-10)
    assert np.all(np.diff(errors) >= -1e-12)


def test_obc_layer_allocation_removes_the_exact_count_and_beats_uniform_rows():
    W, H, _ = _problem(7, rows=6, d=16)
    W[0] *= 0.1  # a row of small weights should give up more of them
    for s in (0.3, 0.6):
        layer = obc_prune(W, H, s, damping=0.0)
        rows = obc_prune(W, H, s, damping=0.0, allocation="row")
        assert (~layer.mask).sum() == round(s * W.size)
        assert layer.loss == pytest.approx(reconstruction_error(W, layer.weight, H), rel=1e-8)
        assert layer.loss <= rows.loss * (1 + 1e-9)
        assert (~layer.mask[0]).sum() > (~rows.mask[0]).sum()


def test_obs_reconstruct_is_per_row_least_squares():
    W, H, X = _problem(11, rows=4, d=10, m=40)
    keep = magnitude_mask(W, 0.5)
    res = obs_reconstruct(W, H, keep, damping=0.0)
    for i in range(4):
        S = keep[i]
        target = W[i] @ X
        best = np.linalg.lstsq(X[S].T, target, rcond=None)[0]
        np.testing.assert_allclose(res.weight[i, S], best, rtol=1e-7, atol=1e-9)
        assert not res.weight[i, ~S].any()


# -- SparseGPT ------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sparsity=st.floats(0.0, 0.9),
    block=st.sampled_from([1, 3, 8, None]),
)
def test_sparsegpt_removes_the_exact_count_and_predicts_its_error(seed, sparsity, block):
    W, H, _ = _problem(seed, rows=6, d=16, m=80)
    res = sparsegpt_prune(W, H, sparsity, block_size=block, damping=0.0)
    assert (~res.mask).sum() == round(sparsity * W.size)
    assert not res.weight[~res.mask].any()
    # every step is an exact OBS step on the columns still to come: the losses add up
    assert res.loss == pytest.approx(reconstruction_error(W, res.weight, H), rel=1e-7, abs=1e-12)


def test_sparsegpt_nm_does_not_depend_on_the_block_size():
    W, H, _ = _problem(4, rows=5, d=16, m=80)
    ref = sparsegpt_prune(W, H, nm=(2, 4), block_size=None)
    for block in (4, 8):
        res = sparsegpt_prune(W, H, nm=(2, 4), block_size=block)
        np.testing.assert_array_equal(res.mask, ref.mask)
        np.testing.assert_allclose(res.weight, ref.weight, rtol=1e-9, atol=1e-12)
    assert (ref.mask.reshape(5, -1, 4).sum(axis=2) == 2).all()


def test_sparsegpt_with_a_given_mask_only_updates_and_beats_no_update():
    W, H, _ = _problem(8, rows=6, d=20, m=80)
    keep = magnitude_mask(W, 0.5)
    res = sparsegpt_prune(W, H, 0.5, mask=keep, damping=0.0)
    np.testing.assert_array_equal(res.mask, keep)
    plain = reconstruction_error(W, np.where(keep, W, 0), H)
    assert res.loss < plain
    assert res.loss >= obs_reconstruct(W, H, keep, damping=0.0).loss * (1 - 1e-9)


def test_sparsegpt_ranks_dead_inputs_first():
    W, H, X = _problem(9, rows=3, d=8, m=40)
    X[2] = 0.0
    H = reconstruction_hessian(X)
    res = sparsegpt_prune(W, H, 1 / 8)  # one entry per row on average: the dead column goes
    assert not res.mask[:, 2].any() and res.mask.sum() == 21


@pytest.mark.parametrize("target", [0.5, (2, 4)])
def test_sparsegpt_beats_magnitude_and_wanda_on_lenet_layers(lenet_layers, target):
    for name, (W, H) in lenet_layers.items():
        s, nm = (None, target) if isinstance(target, tuple) else (target, None)
        sgpt = sparsegpt_prune(W, H, s, nm=nm)
        magnitude = nm_mask(np.abs(W), nm) if nm else magnitude_mask(W, s)
        wanda = wanda_mask(W, np.sqrt(np.diag(H)), s, nm=nm)
        err = reconstruction_error(W, sgpt.weight, H)
        assert err < reconstruction_error(W, np.where(magnitude, W, 0), H), name
        assert err < reconstruction_error(W, np.where(wanda, W, 0), H), name


# -- Wanda ----------------------------------------------------------------------------------------
def test_wanda_removes_the_same_count_from_every_row():
    W, H, X = _problem(12, rows=7, d=10)
    norms = np.linalg.norm(X, axis=1)
    keep = wanda_mask(W, norms, 0.3)
    assert ((~keep).sum(axis=1) == 3).all()
    scores = wanda_scores(W, norms)
    for i in range(7):
        assert scores[i, keep[i]].min() >= scores[i, ~keep[i]].max()


def test_wanda_with_equal_norms_is_magnitude_per_row():
    W = np.random.default_rng(3).normal(size=(4, 12))
    keep = wanda_mask(W, np.full(12, 2.5), 0.5)
    for i in range(4):
        np.testing.assert_array_equal(keep[i], magnitude_mask(W[i], 0.5))


def test_wanda_keeps_earlier_removals_and_takes_conv_weights():
    W = np.random.default_rng(4).normal(size=(3, 2, 2, 2))
    old = np.ones(W.shape, bool)
    old[0, 0, 0, 0] = False
    W[0, 0, 0, 0] = 100.0  # large, but already removed: it stays removed
    keep = wanda_mask(W, np.ones(8), 0.5, mask=old)
    assert keep.shape == W.shape and not keep[0, 0, 0, 0]
    assert ((~keep).reshape(3, -1).sum(axis=1) == 4).all()


# -- N:M ------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    groups=st.integers(1, 6),
    nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8)]),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_every_nm_group_keeps_exactly_n(rows, groups, nm, seed, ties):
    n, m = nm
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(rows, groups * m))
    if ties:
        scores = np.round(scores)  # many equal scores
    keep = nm_mask(scores, nm)
    per_group = keep.reshape(rows, groups, m)
    assert (per_group.sum(axis=2) == n).all()  # exactly M - N zeros in every group
    s = scores.reshape(rows, groups, m)
    kept_min = np.where(per_group, s, np.inf).min(axis=2)
    removed_max = np.where(~per_group, s, -np.inf).max(axis=2)
    assert (kept_min >= removed_max).all()  # and they are the largest


def test_nm_mask_groups_the_im2col_columns_of_a_convolution():
    scores = np.arange(2 * 2 * 2 * 2, dtype=float).reshape(2, 2, 2, 2)
    keep = nm_mask(scores, (2, 4))
    assert keep.shape == scores.shape
    np.testing.assert_array_equal(keep.reshape(2, 2, 4), [[[0, 0, 1, 1]] * 2] * 2)


def test_nm_storage_of_two_four():
    s = nm_storage((300, 784), (2, 4), value_bits=16)
    assert s.value_bits == 300 * 784 // 2 * 16
    assert s.index_bits == 300 * 784 // 2 * 2  # 2-bit positions within a group of four
    assert s.ratio == 0.5625 and s.bits_per_weight == 9.0
    assert nm_storage((10, 8), (2, 4)).ratio == pytest.approx(68 / 128)
    assert nm_storage((10, 8), (1, 8), value_bits=8).total_bits == 10 * (8 + 3)


def test_obc_nm_is_exact_per_group_and_better_than_magnitude():
    W, H, _ = _problem(13, rows=4, d=16, m=80)
    res = obc_prune(W, H, nm=(2, 4))
    assert (res.mask.reshape(4, -1, 4).sum(axis=2) == 2).all()
    mag = nm_mask(np.abs(W), (2, 4))
    assert res.loss < reconstruction_error(W, np.where(mag, W, 0), H)


# -- the model driver -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits()
    return X[:200], X[200:400]


@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "magnitude", "obs", "obc"])
def test_one_shot_prune_installs_masks_and_reports(digits, method):
    X, X_val = digits
    base = load_baseline("digits_mlp")
    model = base.copy()
    report = one_shot_prune(model, X, 0.5, method=method, validation=X_val)
    assert report.model is model and list(report.layers) == ["fc1", "fc2", "fc3"]
    for name, layer in report.layers.items():
        mask = Mask.of(model[name], "weight")
        assert mask is not None and (~mask).sum() == round(0.5 * mask.size)
        assert layer.sparsity >= 0.5 and layer.seconds >= 0 and layer.n_columns == 200
        assert 0 <= layer.relative_error < 1 and np.isfinite(layer.val_relative_error)
    assert 0 < report.output_error < 1 and np.isfinite(report.val_output_error)
    if method in ("magnitude", "wanda"):  # no update: the kept weights are the old ones
        kept = Mask.of(model["fc1"], "weight")
        np.testing.assert_array_equal(model["fc1"].weight[kept], base["fc1"].weight[kept])


def test_one_shot_prune_first_layer_equals_the_matrix_function(digits):
    X, _ = digits
    model = load_baseline("digits_mlp")
    W = model["fc1"].weight.astype(np.float64)
    H = reconstruction_hessian(X.reshape(len(X), -1).T.astype(np.float64))
    expected = sparsegpt_prune(W, H, 0.5)
    report = one_shot_prune(model, X, 0.5, layers=["fc1"])
    np.testing.assert_allclose(model["fc1"].weight, expected.weight, rtol=1e-5, atol=1e-6)
    assert report.layers["fc1"].error == pytest.approx(
        reconstruction_error(W, model["fc1"].weight, H), rel=1e-9)


def test_sequential_pass_corrects_earlier_layers(digits):
    X, _ = digits
    base = load_baseline("digits_mlp")
    seq = one_shot_prune(base.copy(), X, 0.7, sequential=True)
    ind = one_shot_prune(base.copy(), X, 0.7, sequential=False)
    assert seq.output_error < ind.output_error
    assert seq.layers["fc1"].error == pytest.approx(ind.layers["fc1"].error)


def test_one_shot_prune_convolutions_and_nm(digits):
    X, _ = digits
    model = load_baseline("digits_cnn")
    report = one_shot_prune(model, X, 0.5)
    assert report.layers["conv2"].n_columns == 200 * 4 * 4
    assert report.layers["conv1"].sparsity == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="conv1.*multiple|divisible"):
        one_shot_prune(digits_cnn(), X, nm=(2, 4))
    model = digits_mlp(rng=0)
    one_shot_prune(model, X, nm=(2, 4))
    keep = Mask.of(model["fc2"], "weight")
    assert (keep.reshape(keep.shape[0], -1, 4).sum(axis=2) == 2).all()


def test_one_shot_prune_composes_with_an_earlier_mask(digits):
    X, _ = digits
    model = load_baseline("digits_mlp")
    first = one_shot_prune(model, X, 0.3, method="magnitude")
    old = Mask.of(model["fc1"], "weight").copy()
    one_shot_prune(model, X, 0.6)
    new = Mask.of(model["fc1"], "weight")
    assert not (new & ~old).any() and (~new).sum() == round(0.6 * new.size)
    assert first.layers["fc1"].sparsity >= 0.3


# -- bad arguments --------------------------------------------------------------------------------
def test_bad_arguments_name_the_argument(digits):
    X, _ = digits
    W, H, _ = _problem(0)
    with pytest.raises(ValueError, match="exactly one of sparsity"):
        sparsegpt_prune(W, H)
    with pytest.raises(ValueError, match="exactly one of sparsity"):
        sparsegpt_prune(W, H, 0.5, nm=(2, 4))
    with pytest.raises(TypeError, match="nm"):
        nm_mask(W, [2, 4])
    with pytest.raises(ValueError, match="nm\\[0\\]"):
        nm_mask(W, (4, 4))
    with pytest.raises(ValueError, match="divisible by M = 8"):
        nm_mask(W, (2, 8))
    with pytest.raises(ValueError, match="sparsity"):
        sparsegpt_prune(W, H, 1.0)
    with pytest.raises(TypeError, match="sparsity"):
        sparsegpt_prune(W, H, "half")
    with pytest.raises(ValueError, match="block_size"):
        sparsegpt_prune(W, H, 0.5, block_size=0)
    with pytest.raises(ValueError, match="block_size must be a multiple"):
        sparsegpt_prune(np.ones((2, 16)), np.eye(16), nm=(2, 4), block_size=6)
    with pytest.raises(TypeError, match="damping"):
        sparsegpt_prune(W, H, 0.5, damping="a lot")
    with pytest.raises(ValueError, match="damping"):
        sparsegpt_prune(W, H, 0.5, damping=-1.0)
    with pytest.raises(ValueError, match="hessian must have shape"):
        sparsegpt_prune(W, H[:5, :5], 0.5)
    with pytest.raises(ValueError, match="mask must have"):
        sparsegpt_prune(W, H, 0.5, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="allocation"):
        obc_prune(W, H, 0.5, allocation="global")
    with pytest.raises(ValueError, match="input_norms"):
        wanda_mask(W, np.ones(3), 0.5)
    with pytest.raises(ValueError, match="X"):
        reconstruction_hessian(np.ones(4))
    with pytest.raises(ValueError, match="method"):
        one_shot_prune(digits_mlp(), X, 0.5, method="random")
    with pytest.raises(TypeError, match="model"):
        one_shot_prune("lenet", X, 0.5)
    with pytest.raises(ValueError, match="layers"):
        one_shot_prune(digits_mlp(), X, 0.5, layers=["fc9"])
    with pytest.raises(ValueError, match="validation"):
        one_shot_prune(digits_mlp(), X, 0.5, validation=np.ones((3, 5)))
    with pytest.raises(TypeError, match="batch_size"):
        one_shot_prune(digits_mlp(), X, 0.5, batch_size=2.5)
