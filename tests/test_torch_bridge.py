"""The bridge to PyTorch (book/pytorch_bridge.md): each mapped pair on the same weights.

Every pair the appendix names and an installed library provides is run here on the same
tensors, and the test checks that the two agree: the same pruning masks as
``torch.nn.utils.prune``, the same stored arrays as its ``weight_orig``/``weight_mask``, the same
fake-quantized values and scales as ``torch.fake_quantize_*`` and ``torch.ao.quantization``'s
observers, the same truncated SVD as ``torch.linalg.svd``, the same factor layout as tensorly's
``parafac`` and ``partial_tucker`` and the same 1-D k-means as scikit-learn's ``KMeans``. The
layers themselves (convolution, pooling, batch norm, LeNet-5) are compared with torch.nn in
``tests/nn/test_torch_parity.py``, not here. Skipped where torch is not installed; the
tensorly and scikit-learn pairs are skipped where those are not.

Weights are drawn from a continuous distribution, so no two magnitudes tie (torch leaves the
order of ties unspecified; we remove the earlier entry first).
"""

import numpy as np
import pytest

from refimpl.lowrank import cp_als, cp_to_tensor, partial_tucker, svd_factorize, tucker_to_tensor
from refimpl.nn import Linear, Mask, Sequential
from refimpl.nn.layers import Conv2d, ReLU
from refimpl.pruning import (
    global_magnitude_masks,
    l1_filter_scores,
    l2_filter_scores,
    magnitude_mask,
    prune_model,
    random_mask,
    select_per_layer,
)
from refimpl.quantization import (
    UniformQuant,
    fake_quantize,
    kmeans_1d,
    qparams,
    quantize,
)

torch = pytest.importorskip("torch")
prune = pytest.importorskip("torch.nn.utils.prune")


def _linear(weight: np.ndarray) -> "torch.nn.Linear":
    """A torch.nn.Linear holding ``weight`` (out, in) in float64."""
    out_f, in_f = weight.shape
    mod = torch.nn.Linear(in_f, out_f).double()
    with torch.no_grad():
        mod.weight.copy_(torch.tensor(weight))
    return mod


def _model(rng: int = 0) -> Sequential:
    return Sequential(
        [("fc1", Linear(20, 12, rng=rng)), ("relu", ReLU()), ("fc2", Linear(12, 5, rng=rng + 1))]
    ).astype(np.float64)


# --- torch.nn.utils.prune -------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.25, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("shape", [(10, 7), (6, 3, 3, 3), (5,)])
def test_magnitude_mask_is_l1_unstructured(shape, sparsity):
    w = np.random.default_rng(0).standard_normal(shape)
    mod = torch.nn.Module()
    mod.weight = torch.nn.Parameter(torch.tensor(w))
    prune.l1_unstructured(mod, "weight", amount=sparsity)
    np.testing.assert_array_equal(magnitude_mask(w, sparsity), mod.weight_mask.numpy() == 1)


def test_round_half_to_even_count_as_torch():
    # 10 entries at amount 0.25: round(2.5) = 2 in both (Python's round, halves to even)
    w = np.random.default_rng(1).standard_normal(10)
    mod = torch.nn.Module()
    mod.weight = torch.nn.Parameter(torch.tensor(w))
    prune.l1_unstructured(mod, "weight", amount=0.25)
    ours = magnitude_mask(w, 0.25)
    assert (~ours).sum() == 2 == int((mod.weight_mask == 0).sum())
    np.testing.assert_array_equal(ours, mod.weight_mask.numpy() == 1)


def test_stored_arrays_are_weight_orig_and_weight_mask():
    model = _model()
    fc1 = model["fc1"]
    w = fc1.weight.copy()
    prune_model(model, 0.6, layers=["fc1"])
    mod = _linear(w)
    prune.l1_unstructured(mod, "weight", amount=0.6)
    # torch: parameter weight_orig, buffer weight_mask, attribute weight = orig * mask
    # ours: params["weight.orig"], buffers["weight.mask"], the property weight through the chain
    np.testing.assert_array_equal(fc1.params["weight.orig"], mod.weight_orig.detach().numpy())
    np.testing.assert_array_equal(fc1.buffers["weight.mask"], mod.weight_mask.numpy())
    np.testing.assert_array_equal(fc1.weight, mod.weight.detach().numpy())
    np.testing.assert_array_equal(Mask.of(fc1, "weight"), mod.weight_mask.numpy() == 1)
    # removing the parametrization keeps the pruned weight, as prune.remove does
    prune.remove(mod, "weight")
    fc1.remove_parametrization("weight")
    np.testing.assert_array_equal(fc1.weight, mod.weight.detach().numpy())


def test_second_pruning_step_counts_differently():
    """Our target counts what is already removed; torch's amount counts the remaining entries."""
    model = _model()
    fc1 = model["fc1"]
    mod = _linear(fc1.weight.copy())
    prune_model(model, 0.5, layers=["fc1"])
    prune_model(model, 0.75, layers=["fc1"])
    prune.l1_unstructured(mod, "weight", amount=0.5)
    prune.l1_unstructured(mod, "weight", amount=(0.75 - 0.5) / (1 - 0.5))  # 0.5 of what is left
    np.testing.assert_array_equal(Mask.of(fc1, "weight"), mod.weight_mask.numpy() == 1)
    assert (mod.weight_mask == 0).double().mean().item() == pytest.approx(0.75)


@pytest.mark.parametrize("sparsity", [0.3, 0.8])
def test_global_magnitude_is_global_unstructured(sparsity):
    model = _model(3)
    mods = {n: _linear(model[n].weight.copy()) for n in ("fc1", "fc2")}
    masks = global_magnitude_masks({n: model[n].weight for n in mods}, sparsity)
    prune.global_unstructured(
        [(m, "weight") for m in mods.values()], pruning_method=prune.L1Unstructured,
        amount=sparsity,
    )
    prune_model(model, sparsity, scope="global")
    for name, mod in mods.items():
        theirs = mod.weight_mask.numpy() == 1
        np.testing.assert_array_equal(masks[name], theirs)
        np.testing.assert_array_equal(Mask.of(model[name], "weight"), theirs)


@pytest.mark.parametrize("n_norm,scores", [(1, l1_filter_scores), (2, l2_filter_scores)])
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 3])
def test_filter_selection_is_ln_structured(n_norm, scores, sparsity):
    conv = Conv2d(3, 8, 3, rng=4).astype(np.float64)
    mod = torch.nn.Conv2d(3, 8, 3).double()
    with torch.no_grad():
        mod.weight.copy_(torch.tensor(conv.weight))
    prune.ln_structured(mod, "weight", amount=sparsity, n=n_norm, dim=0)
    kept_by_torch = np.nonzero(mod.weight_mask.numpy().reshape(8, -1).all(axis=1))[0]
    np.testing.assert_array_equal(select_per_layer(scores(conv), sparsity), kept_by_torch)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
def test_random_mask_removes_the_fraction_random_unstructured_does(sparsity):
    # the sets differ (different generators); only the count removed is the same
    shape = (30, 17)
    ours = random_mask(shape, sparsity, rng=0)
    mod = torch.nn.Module()
    mod.weight = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
    torch.manual_seed(0)
    prune.random_unstructured(mod, "weight", amount=sparsity)
    assert int((~ours).sum()) == int((mod.weight_mask == 0).sum()) == round(sparsity * 30 * 17)


# --- torch.fake_quantize_* and torch.ao.quantization -----------------------------------------


def _agree(ours, theirs, step):
    """Equal up to float32 rounding, except for the rare value within float32 rounding of a half
    step, which torch (multiplying by 1/scale in float32) and we (dividing in float64) may round
    to neighbouring codes: at most one step apart, and fewer than 1% of the entries."""
    step = np.broadcast_to(np.asarray(step, dtype=np.float64), np.shape(ours))
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    assert np.all(diff <= step * (1 + 1e-5))
    near = diff <= 1e-6 * np.abs(np.asarray(theirs, np.float64)) + 1e-4 * step
    assert np.mean(~near) < 1e-2


def _weights(shape=(16, 40), seed=5):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * rng.uniform(0.1, 2.0, (shape[0], 1))).astype(np.float32)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fake_quantize_per_tensor_matches_torch(bits, symmetric):
    w = _weights()
    scale, zero = qparams(w, bits, symmetric=symmetric)
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    theirs = torch.fake_quantize_per_tensor_affine(
        torch.tensor(w), float(scale), int(zero), qmin, qmax
    ).numpy()
    ours = fake_quantize(w, bits, symmetric=symmetric)
    _agree(ours, theirs, scale)


@pytest.mark.parametrize("symmetric", [True, False])
def test_fake_quantize_per_channel_matches_torch(symmetric):
    w = _weights()
    scale, zero = qparams(w, 8, axis=0, symmetric=symmetric)
    qmin, qmax = (-127, 127) if symmetric else (0, 255)
    theirs = torch.fake_quantize_per_channel_affine(
        torch.tensor(w), torch.tensor(scale.ravel(), dtype=torch.float32),
        torch.tensor(zero.ravel(), dtype=torch.int32), 0, qmin, qmax,
    ).numpy()
    ours = fake_quantize(w, 8, axis=0, symmetric=symmetric)
    _agree(ours, theirs, scale)


@pytest.mark.parametrize("per_channel", [False, True])
def test_uniform_quant_weight_is_torch_fake_quantized_weight(per_channel):
    layer = Linear(40, 16, rng=6)
    w = layer.weight.copy()
    layer.parametrize("weight", UniformQuant(8, per_channel=per_channel))
    scale, zero = qparams(w, 8, axis=0 if per_channel else None)
    wt = torch.tensor(w)
    if per_channel:
        theirs = torch.fake_quantize_per_channel_affine(
            wt, torch.tensor(scale.ravel(), dtype=torch.float32),
            torch.zeros(16, dtype=torch.int32), 0, -127, 127,
        )
    else:
        theirs = torch.fake_quantize_per_tensor_affine(wt, float(scale), 0, -127, 127)
    _agree(layer.weight, theirs.numpy(), scale)


def test_quantize_codes_are_torch_int_repr():
    w = _weights()
    scale, zero = qparams(w, 8, symmetric=False)
    q = torch.quantize_per_tensor(torch.tensor(w), float(scale), int(zero), torch.quint8)
    ours = quantize(w, scale, zero, 8, symmetric=False).astype(np.int64)
    theirs = q.int_repr().numpy().astype(np.int64)
    assert np.abs(ours - theirs).max() <= 1 and np.mean(ours != theirs) < 1e-2


def test_affine_qparams_are_minmax_observer():
    w = _weights()
    obs = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(torch.tensor(w))
    t_scale, t_zero = obs.calculate_qparams()
    scale, zero = qparams(w, 8, symmetric=False)
    assert float(scale) == pytest.approx(t_scale.item(), rel=1e-6)
    assert int(zero) == t_zero.item()


def test_symmetric_qparams_need_the_restricted_range():
    """Our symmetric int8 uses -127..127 (scale max|w|/127); torch's default is -128..127
    (scale max|w|/127.5) unless quant_min=-127 is given."""
    w = _weights()
    scale, _ = qparams(w, 8)
    obs = torch.ao.quantization.MinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127
    )
    obs(torch.tensor(w))
    assert float(scale) == pytest.approx(obs.calculate_qparams()[0].item(), rel=1e-6)
    default = torch.ao.quantization.MinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric
    )
    default(torch.tensor(w))
    assert float(scale) * 127 / 127.5 == pytest.approx(default.calculate_qparams()[0].item(),
                                                       rel=1e-6)


def test_per_channel_qparams_are_per_channel_observer():
    w = _weights()
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
        quant_min=-127, quant_max=127,
    )
    obs(torch.tensor(w))
    t_scale, t_zero = obs.calculate_qparams()
    scale, zero = qparams(w, 8, axis=0)
    np.testing.assert_allclose(scale.ravel(), t_scale.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(zero.ravel(), t_zero.numpy())


# --- torch.linalg.svd ------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 4, 10])
def test_svd_factorize_is_torch_truncated_svd(rank):
    layer = Linear(30, 20, rng=7).astype(np.float64)
    first, second = svd_factorize(layer, rank)
    U, S, Vh = torch.linalg.svd(torch.tensor(layer.weight), full_matrices=False)
    theirs = (U[:, :rank] * S[:rank]) @ Vh[:rank]
    np.testing.assert_allclose(second.weight @ first.weight, theirs.numpy(), atol=1e-12)


# --- tensorly ---------------------------------------------------------------------------------


def _low_rank_tensor(shape=(6, 5, 4, 3), rank=3, seed=8):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    return cp_to_tensor(np.ones(rank), factors)


def test_cp_layout_is_parafac():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    x = _low_rank_tensor()
    ours = cp_als(x, 3, max_iter=500, tol=1e-12, rng=0)
    theirs = parafac(tl.tensor(x), 3, n_iter_max=500, tol=1e-12, init="random", random_state=0)
    weights, factors = theirs  # a CPTensor unpacks as (weights, factors) in both
    # the same layout: weights (R,), factor n of shape (I_n, R)
    assert ours.weights.shape == weights.shape == (3,)
    for a, b, n in zip(ours.factors, factors, x.shape, strict=True):
        assert a.shape == b.shape == (n, 3)
    # each library's factors rebuild in the other's cp_to_tensor
    np.testing.assert_allclose(cp_to_tensor(weights, factors), tl.cp_to_tensor(theirs), atol=1e-10)
    np.testing.assert_allclose(tl.cp_to_tensor((ours.weights, ours.factors)), ours.to_tensor(),
                               atol=1e-10)
    # and both recover an exact rank-3 tensor
    assert np.linalg.norm(ours.to_tensor() - x) / np.linalg.norm(x) < 1e-6
    assert np.linalg.norm(tl.cp_to_tensor(theirs) - x) / np.linalg.norm(x) < 1e-6


def test_partial_tucker_is_tensorlys():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import partial_tucker as tl_partial_tucker

    w = np.random.default_rng(9).standard_normal((8, 6, 3, 3))  # a conv weight (C_out, C_in, k, k)
    ours = partial_tucker(w, [4, 3], [0, 1], max_iter=100, tol=1e-14)
    (core, factors), _ = tl_partial_tucker(
        tl.tensor(w), rank=[4, 3], modes=[0, 1], n_iter_max=100, tol=1e-14, init="svd"
    )
    assert ours.core.shape == core.shape == (4, 3, 3, 3)
    for a, b in zip(ours.factors, factors, strict=True):
        assert a.shape == b.shape
        # the same subspace (columns agree up to an orthogonal change of basis)
        np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-6)
    ours_x = tucker_to_tensor(ours.core, ours.factors, ours.modes)
    theirs_x = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
    np.testing.assert_allclose(ours_x, theirs_x, atol=1e-6)


# --- scikit-learn -----------------------------------------------------------------------------


def test_kmeans_1d_is_sklearn_kmeans_from_the_same_start():
    pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans

    from refimpl.quantization import kmeans_init

    x = np.random.default_rng(10).standard_normal(2000)
    start = kmeans_init(x, 8, "linear")
    ours = kmeans_1d(x, 8, init=start, max_iter=1000, tol=0.0)
    km = KMeans(8, init=start[:, None], n_init=1, max_iter=1000, tol=0.0).fit(x[:, None])
    np.testing.assert_allclose(ours.centroids, np.sort(km.cluster_centers_.ravel()), atol=1e-9)
    assert ours.inertia == pytest.approx(km.inertia_, rel=1e-9)


def test_mask_update_and_is_custom_from_mask_twice():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((6, 5))
    m1, m2 = rng.random((6, 5)) > 0.3, rng.random((6, 5)) > 0.3
    layer = Linear(5, 6, rng=0).astype(np.float64)
    layer.params["weight"] = w.copy()
    Mask.update(layer, "weight", m1)
    Mask.update(layer, "weight", m2)  # mode="and": a pruned entry never comes back
    mod = _linear(w)
    prune.custom_from_mask(mod, "weight", torch.tensor(m1))
    prune.custom_from_mask(mod, "weight", torch.tensor(m2))
    np.testing.assert_array_equal(Mask.of(layer, "weight"), mod.weight_mask.numpy() == 1)
    np.testing.assert_array_equal(layer.weight, mod.weight.detach().numpy())


def test_parameter_vector_is_parameters_to_vector():
    from refimpl.pruning import parameter_vector, set_parameter_vector

    model = _model(12)
    mods = [_linear(model[n].weight) for n in ("fc1", "fc2")]
    for n, mod in zip(("fc1", "fc2"), mods, strict=True):
        with torch.no_grad():
            mod.bias.copy_(torch.tensor(model[n].bias))
    params = [p for mod in mods for p in (mod.weight, mod.bias)]  # layer by layer, weight then bias
    theirs = torch.nn.utils.parameters_to_vector(params).detach().numpy()
    np.testing.assert_array_equal(parameter_vector(model), theirs)
    v = np.random.default_rng(13).standard_normal(theirs.size)
    set_parameter_vector(model, v)
    torch.nn.utils.vector_to_parameters(torch.tensor(v), params)
    np.testing.assert_array_equal(model["fc2"].bias, mods[1].bias.detach().numpy())
