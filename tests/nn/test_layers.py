"""Layers: finite-difference gradient checks, hand-computed outputs, and bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    Mask,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
    gradcheck,
)

TOL = 1e-6  # float64 central differences give ~1e-8 on these sizes


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    res = gradcheck(Linear(5, 4, bias=bias, rng=1), randn(3, 5))
    assert res.passed, res
    assert set(res.errors) == ({"input", "weight", "bias"} if bias else {"input", "weight"})


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    size=st.integers(3, 7),
    seed=st.integers(0, 1000),
)
def test_conv2d_gradcheck_random_shapes(n, c_in, c_out, k, stride, padding, size, seed):
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=padding, rng=seed)
    res = gradcheck(conv, randn(n, c_in, size, size + 1, seed=seed), seed=seed)
    assert res.passed, res


def test_gradcheck_perturbs_a_weight_stored_in_fortran_order():
    # a factor transposed into a weight is not C-contiguous; gradcheck must perturb the array
    # itself (reshape(-1) would perturb a copy and report a zero numerical gradient)
    conv = Conv2d(2, 4, 1, rng=0)
    conv.params["weight"] = np.asfortranarray(conv.params["weight"][:, :, 0, 0])[:, :, None, None]
    assert not conv.params["weight"].flags["C_CONTIGUOUS"]
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 4))
    assert gradcheck(conv, x).passed


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=(3, 1)),
        dict(kernel_size=(1, 3), padding=(0, 1)),
        dict(kernel_size=3, stride=(2, 1), padding=(1, 0)),
    ],
)
def test_conv2d_gradcheck_rectangular(kw):
    assert gradcheck(Conv2d(2, 3, rng=0, **kw), randn(2, 2, 6, 5)).passed


@pytest.mark.parametrize("groups,c_in,c_out", [(2, 4, 6), (3, 3, 3), (4, 4, 8)])
def test_grouped_and_depthwise_conv_gradcheck(groups, c_in, c_out):
    conv = Conv2d(c_in, c_out, 3, padding=1, groups=groups, rng=2)
    assert conv.weight.shape == (c_out, c_in // groups, 3, 3)
    assert gradcheck(conv, randn(2, c_in, 5, 5)).passed


@pytest.mark.parametrize(
    "pool",
    [
        MaxPool2d(2),
        MaxPool2d(3, stride=2),
        MaxPool2d(3, 1, 1),
        AvgPool2d(2),
        AvgPool2d(3, stride=2, padding=1),
    ],
)
def test_pool_gradcheck(pool):
    assert gradcheck(pool, randn(2, 3, 7, 6)).passed


@pytest.mark.parametrize("act", [ReLU(), Tanh(), Sigmoid(), Flatten()])
def test_activation_gradcheck(act):
    assert gradcheck(act, randn(3, 2, 4)).passed


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradcheck(train):
    bn1 = BatchNorm1d(4)
    bn1.params["weight"] = randn(4, seed=1)
    bn1.params["bias"] = randn(4, seed=2)
    bn1.buffers["running_var"] = np.abs(randn(4, seed=3)) + 0.5
    assert gradcheck(bn1, randn(6, 4), train=train).passed
    bn2 = BatchNorm2d(3)
    bn2.params["weight"] = randn(3, seed=4)
    assert gradcheck(bn2, randn(3, 3, 4, 4), train=train).passed


def test_masked_linear_gradcheck():
    layer = Linear(6, 5, rng=0).parametrize("weight", Mask(randn(5, 6) > 0))
    res = gradcheck(layer, randn(4, 6))
    assert res.passed and "weight.orig" in res.errors


def test_dropout_forward_backward():
    d = Dropout(0.3, rng=0)
    x = np.ones((200, 50))
    y = d(x, train=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)  # same mask, same scale
    np.testing.assert_array_equal(d(x, train=False), x)
    assert not np.array_equal(Dropout(0.3, rng=1)(x, train=True), y)
    np.testing.assert_array_equal(Dropout(0.3, rng=0)(x, train=True), y)  # seeded


# --------------------------------------------------------------------------- exact outputs
def test_linear_hand_computed():
    layer = Linear(2, 2, rng=0)
    layer.weight = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer.bias = np.array([0.5, -1.0])
    y = layer(np.array([[1.0, 1.0], [2.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(y, [[3.5, 6.0], [2.5, 5.0]])


def test_conv2d_hand_computed():
    # one 3x3 input, one 2x2 kernel: cross-correlation, not convolution (as torch)
    conv = Conv2d(1, 1, 2, rng=0)
    conv.weight = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    conv.bias = np.array([1.0])
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    np.testing.assert_allclose(conv(x)[0, 0], [[1 + 0 - 4, 1 + 1 - 5], [1 + 3 - 7, 1 + 4 - 8]])


def test_conv2d_matches_direct_sum():
    rng = np.random.default_rng(5)
    conv = Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 1), rng=1).astype(np.float64)
    x = rng.standard_normal((2, 3, 6, 5))
    y = conv(x)
    w, b = conv.weight, conv.bias
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(y)
    for n in range(2):
        for o in range(4):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    ref[n, o, i, j] = (xp[n, :, 2 * i : 2 * i + 3, j : j + 2] * w[o]).sum() + b[o]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_grouped_conv_equals_separate_convs():
    conv = Conv2d(4, 6, 3, groups=2, rng=3).astype(np.float64)
    x = randn(2, 4, 5, 5)
    y = conv(x)
    for g in range(2):
        part = Conv2d(2, 3, 3, rng=0).astype(np.float64)
        part.weight = conv.weight[3 * g : 3 * g + 3]
        part.bias = conv.bias[3 * g : 3 * g + 3]
        np.testing.assert_allclose(y[:, 3 * g : 3 * g + 3], part(x[:, 2 * g : 2 * g + 2]))


def test_conv2d_reuses_its_buffers_safely():
    """Columns and their gradient are reused between calls (fewer page faults): never stale,
    in either column order, for either input layout."""
    conv = Conv2d(3, 4, 3, padding=1, rng=2).astype(np.float64)
    # short output rows take the batch-last columns, long ones (20 float64) the batch-first
    calls = [randn(2, 3, 5, 5, seed=s) for s in range(3)] + [randn(3, 3, 4, 6, seed=3)]
    calls += [randn(2, 3, 4, 20, seed=4), randn(2, 3, 4, 20, seed=5), randn(2, 3, 5, 5, seed=6)]
    for x in calls:
        # the same input in the batch-last layout a convolution returns, and a fresh layer
        x_batch_last = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
        fresh = Conv2d(3, 4, 3, padding=1, rng=2).astype(np.float64)
        g = randn(*conv(x).shape, seed=9)
        results = []
        for layer, inp in ((conv, x), (conv, x_batch_last), (fresh, x)):
            y = layer.forward(inp, train=True)
            dx = layer.backward(g)
            dx_again = layer.backward(g)  # several backward passes per forward (as OBS does)
            np.testing.assert_array_equal(dx, dx_again)
            results.append((y, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy()))
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_pools_hand_computed():
    x = np.array(
        [[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [-1.0, 7.0, 2.0, 3.0]]
    ).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(MaxPool2d(2)(x)[0, 0], [[4, 5], [7, 3]])
    np.testing.assert_array_equal(AvgPool2d(2)(x)[0, 0], [[2.5, 1.75], [1.5, 2.25]])
    mp = MaxPool2d(2)
    mp(x)
    g = mp.backward(np.ones((1, 1, 2, 2)))[0, 0]
    np.testing.assert_array_equal(g, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]])


def test_batchnorm_train_and_eval_statistics():
    bn = BatchNorm2d(2, momentum=0.5)
    x = randn(8, 2, 3, 3).astype(np.float32) * 3 + 1
    y = bn(x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    m = x.size // 2
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) * m / (m - 1)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.5 + 0.5 * var, rtol=1e-5)
    ye = bn(x, train=False)
    ref = (x - bn.buffers["running_mean"].reshape(1, 2, 1, 1)) / np.sqrt(
        bn.buffers["running_var"].reshape(1, 2, 1, 1) + 1e-5
    )
    np.testing.assert_allclose(ye, ref, rtol=1e-5, atol=1e-6)


def test_sigmoid_no_overflow():
    y = Sigmoid()(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_float32_in_float32_out():
    x = randn(2, 1, 8, 8).astype(np.float32)
    assert Conv2d(1, 2, 3, rng=0)(x).dtype == np.float32
    assert Linear(64, 3, rng=0)(x.reshape(2, 64)).dtype == np.float32


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: Linear(0, 3), ValueError, "in_features"),
        (lambda: Linear(3.5, 3), TypeError, "in_features"),
        (lambda: Conv2d(3, 4, 0), ValueError, "kernel_size"),
        (lambda: Conv2d(3, 4, 3, stride=0), ValueError, "stride"),
        (lambda: Conv2d(3, 4, 3, padding=-1), ValueError, "padding"),
        (lambda: Conv2d(3, 4, 3, groups=2), ValueError, "groups"),
        (lambda: Conv2d(3, 4, (3, 3, 3)), TypeError, "kernel_size"),
        (lambda: Dropout(1.0), ValueError, "p must"),
        (lambda: BatchNorm1d(-2), ValueError, "num_features"),
        (lambda: MaxPool2d(2, padding=2), ValueError, "padding"),
        # padding is checked per axis, as PyTorch does: the larger kernel side used to pass
        (lambda: MaxPool2d((4, 1), padding=(0, 1)), ValueError, r"padding=\(0, 1\)"),
        (lambda: AvgPool2d((1, 4), padding=(1, 2)), ValueError, "along each axis"),
        (lambda: BatchNorm1d(3, momentum="0.1"), TypeError, "momentum"),
        (lambda: BatchNorm2d(3, eps="1e-5"), TypeError, "eps"),
        (lambda: BatchNorm1d(3, eps=0.0), ValueError, "eps"),
        (lambda: BatchNorm1d(3, momentum=1.5), ValueError, "momentum"),
        (lambda: Dropout("0.5"), TypeError, "p must"),
    ],
)
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_forward_inputs():
    with pytest.raises(ValueError, match="input features"):
        Linear(3, 2)(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        Linear(3, 2)(np.zeros((4, 3, 1), np.float32))
    with pytest.raises(TypeError, match="floating"):
        Linear(3, 2)(np.zeros((4, 3), np.int64))
    with pytest.raises(TypeError, match="ndarray"):
        Linear(3, 2)([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="input channels"):
        Conv2d(3, 2, 3)(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Conv2d(1, 2, 5)(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        Conv2d(1, 2, 3)(np.zeros((1, 5, 5), np.float32))


def test_weight_assignment_checks_shape():
    layer = Linear(3, 2)
    with pytest.raises(ValueError, match="shape"):
        layer.weight = np.zeros((3, 2))
    layer.parametrize("weight", Mask(np.ones((2, 3), bool)))
    with pytest.raises(ValueError, match="parametrized"):
        layer.weight = np.zeros((2, 3))


# --------------------------------------------------------------------------- backward contract
def _every_layer():
    """One layer of every kind in the package, with an input of the right shape."""
    from refimpl.nn import Sequential

    img = randn(2, 3, 8, 8)
    return [
        (Linear(5, 4, rng=0), randn(2, 5)),
        (Conv2d(3, 4, 3, padding=1, rng=0), img),
        (Conv2d(3, 6, 3, groups=3, rng=0), img),
        (MaxPool2d(2), img),
        (MaxPool2d(3, stride=2, padding=1), img),
        (AvgPool2d(2), img),
        (ReLU(), randn(4, 5)),
        (Tanh(), randn(4, 5)),
        (Sigmoid(), randn(4, 5)),
        (Flatten(), img),
        (Dropout(0.5, rng=0), randn(4, 5)),
        (BatchNorm1d(5), randn(4, 5)),
        (BatchNorm2d(3), img),
        (Sequential(Linear(5, 4, rng=0), ReLU()), randn(2, 5)),
    ]


@pytest.mark.parametrize("layer,x", _every_layer(), ids=lambda v: type(v).__name__)
def test_backward_checks_its_argument(layer, x):
    with pytest.raises(ValueError, match="no forward pass"):  # was an AttributeError
        layer.backward(np.ones((1,)))
    y = layer.forward(x, train=True)
    name = type(layer).__name__
    bad_shapes = [(1, *y.shape[1:]), (*y.shape, 1), y.shape[:-1]]
    for shape in bad_shapes:  # broadcasting or a matmul error deep inside, before
        with pytest.raises(ValueError, match=rf"{name}.backward: grad_out must have shape"):
            layer.backward(np.ones(shape))
    with pytest.raises(TypeError, match="grad_out must be a numpy.ndarray"):
        layer.backward(np.ones(y.shape).tolist())
    with pytest.raises(TypeError, match="grad_out must be a floating-point"):
        layer.backward(np.ones(y.shape, dtype=np.int64))
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_relu_and_tanh_no_longer_broadcast_a_gradient():
    for act in (ReLU(), Tanh()):
        act.forward(randn(4, 5))
        with pytest.raises(ValueError, match=r"shape \(4, 5\).*got \(1, 5\)"):
            act.backward(np.ones((1, 5)))


def test_an_overriding_layer_keeps_the_contract():
    class Scaled(ReLU):  # calls super() in both passes, with other shapes inside
        def forward(self, x, train=False):
            return super().forward(x.reshape(len(x), -1), train).sum(axis=1, keepdims=True)

        def backward(self, grad_out):
            return super().backward(np.repeat(grad_out, self._mask.shape[1], axis=1))

    layer = Scaled()
    x = randn(3, 2, 2)
    assert layer.forward(x).shape == (3, 1)
    assert layer.backward(np.ones((3, 1))).shape == (3, 4)
    with pytest.raises(ValueError, match="Scaled.backward"):
        layer.backward(np.ones((3, 4)))


def test_flatten_refuses_a_scalar():
    with pytest.raises(ValueError, match=r"Flatten expects input of shape \(N, \.\.\.\)"):
        Flatten().forward(np.array(1.0))  # an IndexError before
    with pytest.raises(TypeError, match="ndarray"):
        Flatten().forward([1.0, 2.0])


def test_nan_propagates_through_activations():
    x = np.array([[np.nan, -1.0, 2.0, 0.0]])
    for act in (ReLU(), Tanh(), Sigmoid()):
        y = act.forward(x)
        assert np.isnan(y[0, 0]) and not np.isnan(y[0, 1:]).any(), type(act).__name__
    assert ReLU().forward(x)[0, 1:].tolist() == [0.0, 2.0, 0.0]  # ReLU(nan) was 0
    pool = MaxPool2d(2)
    img = np.zeros((1, 1, 2, 2))
    img[0, 0, 1, 1] = np.nan
    assert np.isnan(pool.forward(img)).all()
