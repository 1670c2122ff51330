"""Chapter 7c's methods against their counterparts (book/pytorch_bridge.md, chapter 7).

``Predicted`` against ``torch.nn.utils.parametrize`` with ``unsafe=True`` (same weight, same
gradient of the trained coefficients), and ``separable_basis`` against tensorly's ``parafac`` on
the stacked filters. Skipped where torch or tensorly is not installed.
"""

import numpy as np
import pytest

from refimpl.lowrank import Predicted, kernel_ridge_dictionary, separable_basis
from refimpl.nn import Linear


def test_predicted_is_torch_parametrize_unsafe():
    torch = pytest.importorskip("torch")
    U, _ = kernel_ridge_dictionary((8, 8), 12, ridge=1e-3, rng=0)
    layer = Linear(64, 10, rng=0).astype(np.float64)
    W0 = layer.weight.copy()
    layer.parametrize("weight", Predicted(U))

    class PredictedWeight(torch.nn.Module):
        def __init__(self, dictionary):
            super().__init__()
            self.register_buffer("U", torch.as_tensor(dictionary))

        def forward(self, C):
            return C @ self.U.T

        def right_inverse(self, W):
            return torch.linalg.lstsq(self.U, W.T).solution.T

    tlayer = torch.nn.Linear(64, 10).double()
    with torch.no_grad():
        tlayer.weight.copy_(torch.as_tensor(W0))
        tlayer.bias.copy_(torch.as_tensor(layer.bias))
    torch.nn.utils.parametrize.register_parametrization(
        tlayer, "weight", PredictedWeight(U), unsafe=True)
    C_torch = tlayer.parametrizations.weight.original
    assert C_torch.shape == (10, 12)
    np.testing.assert_allclose(layer.params["weight.coefficients"], C_torch.detach().numpy(),
                               atol=1e-8)
    x = np.random.default_rng(1).standard_normal((5, 64))
    g = np.random.default_rng(2).standard_normal((5, 10))
    y = layer.forward(x, train=True)
    layer.backward(g)
    ty = tlayer(torch.as_tensor(x))
    (ty * torch.as_tensor(g)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-8)
    np.testing.assert_allclose(layer.grads["weight.coefficients"], C_torch.grad.numpy(),
                               atol=1e-8)


def test_separable_basis_is_parafac_of_the_stacked_filters():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    bank = np.random.default_rng(0).standard_normal((40, 5, 5))
    ours = separable_basis(bank, 1, max_iter=500, tol=0.0, rng=0)
    cp = parafac(tl.tensor(bank), rank=1, n_iter_max=500, tol=0.0, init="svd")
    theirs = tl.cp_to_tensor(cp)
    np.testing.assert_allclose(ours.reconstruct(), theirs, atol=1e-6)
