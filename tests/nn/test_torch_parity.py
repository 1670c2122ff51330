"""Same weights, same numbers: our layers against torch.nn (run when torch is installed).

``make test`` installs the CPU build of torch only when a wheel of it lies on the machine's disk
(it never downloads one); elsewhere this module is skipped.
"""

import numpy as np
import pytest

from refimpl import models
from refimpl.nn import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Linear,
    MaxPool2d,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def check(ours, theirs, rtol=1e-10, atol=1e-10):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("stride,padding,groups", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 4)])
def test_conv2d_forward_backward_match_torch(stride, padding, groups):
    rng = np.random.default_rng(0)
    conv = Conv2d(4, 8, (3, 2), stride=stride, padding=padding, groups=groups, rng=0).astype(
        np.float64
    )
    x = rng.standard_normal((2, 4, 9, 7))
    y = conv(x)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    xt, wt, bt = t(x), t(conv.weight), t(conv.bias)
    yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding, groups=groups)
    yt.backward(torch.tensor(dy))
    check(y, yt)
    check(dx, xt.grad)
    check(conv.grads["weight"], wt.grad)
    check(conv.grads["bias"], bt.grad)


def test_linear_and_cross_entropy_match_torch():
    rng = np.random.default_rng(1)
    fc = Linear(6, 5, rng=0).astype(np.float64)
    x, target = rng.standard_normal((4, 6)), rng.integers(0, 5, 4)
    loss = CrossEntropyLoss()
    value = loss(fc(x), target)
    fc.backward(loss.backward())
    xt, wt, bt = t(x), t(fc.weight), t(fc.bias)
    lt = F.cross_entropy(F.linear(xt, wt, bt), torch.tensor(target))
    lt.backward()
    assert value == pytest.approx(lt.item(), rel=1e-12)
    check(fc.grads["weight"], wt.grad)


@pytest.mark.parametrize(
    "pool,torch_pool",
    [
        (MaxPool2d(2), lambda x: F.max_pool2d(x, 2)),
        (MaxPool2d(3, stride=2, padding=1), lambda x: F.max_pool2d(x, 3, 2, 1)),
        (AvgPool2d(3, stride=2, padding=1), lambda x: F.avg_pool2d(x, 3, 2, 1)),
    ],
)
def test_pooling_matches_torch(pool, torch_pool):
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8))
    y = pool(x)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    xt = t(x)
    yt = torch_pool(xt)
    yt.backward(torch.tensor(dy))
    check(y, yt)
    check(pool.backward(dy), xt.grad)


def test_batchnorm_train_and_running_stats_match_torch():
    bn = BatchNorm2d(3).astype(np.float64)
    ref = torch.nn.BatchNorm2d(3).double()
    x = np.random.default_rng(4).standard_normal((5, 3, 4, 4)) * 2 + 1
    check(bn(x, train=True), ref.train()(torch.tensor(x)))
    check(bn.buffers["running_var"], ref.running_var)
    check(bn(x, train=False), ref.eval()(torch.tensor(x)))


def test_lenet5_logits_match_torch():
    model = models.lenet5(rng=0)
    x = np.random.default_rng(5).random((3, 1, 28, 28), dtype=np.float32)
    ours = model(x)
    sd = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    xt = torch.tensor(x)
    h = F.max_pool2d(F.relu(F.conv2d(xt, sd["conv1.weight"], sd["conv1.bias"])), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, sd["conv2.weight"], sd["conv2.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), sd["fc1.weight"], sd["fc1.bias"]))
    theirs = F.linear(h, sd["fc2.weight"], sd["fc2.bias"])
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_nan_through_activations_matches_torch():
    from refimpl.nn import ReLU, Sigmoid, Tanh

    x = np.array([[np.nan, -1.0, 2.0, 0.0, np.inf, -np.inf]])
    dy = np.arange(1.0, 7.0)[None]
    for ours, theirs in [(ReLU(), torch.relu), (Tanh(), torch.tanh), (Sigmoid(), torch.sigmoid)]:
        xt = t(x)
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        y = ours.forward(x)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=0)
