"""A shared basis of separable filters (Rigamonti et al. 2013; Jaderberg et al. 2014, scheme 1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.cost import profile
from refimpl.lowrank import separable_basis, separable_basis_conv
from refimpl.nn import Conv2d, Sequential, gradcheck


def planted_bank(f, k, m, seed):
    gen = np.random.default_rng(seed)
    v, h, a = gen.standard_normal((m, k)), gen.standard_normal((m, k)), gen.standard_normal((f, m))
    return np.einsum("fm,my,mx->fyx", a, v, h)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(0, 1000))
def test_a_bank_of_m_separable_combinations_is_recovered(m, seed):
    # the property Rigamonti et al. rely on: a bank spanned by M separable filters needs only M
    bank = planted_bank(12, 5, m, seed)
    basis = separable_basis(bank, m, max_iter=1000, tol=0.0, rng=0)
    assert np.linalg.norm(basis.reconstruct() - bank) / np.linalg.norm(bank) < 1e-6
    assert np.allclose(np.linalg.norm(basis.vertical, axis=1), 1.0)


def test_full_basis_is_exact_and_error_never_increases():
    bank = np.random.default_rng(0).standard_normal((30, 3, 3))
    assert np.linalg.norm(separable_basis(bank, 9, rng=0).reconstruct() - bank) < 1e-8
    errors = separable_basis(bank, 4, rng=0).errors
    assert np.all(np.diff(errors) <= 1e-12)
    # each basis filter is separable: rank one
    for f in separable_basis(bank, 4, rng=0).filters:
        assert np.linalg.matrix_rank(f, tol=1e-10) == 1


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_scheme1_layers_compute_the_reconstructed_convolution(stride, padding):
    conv = Conv2d(3, 4, 3, stride=stride, padding=padding, rng=0)
    layers = separable_basis_conv(conv, 2, rng=0)
    ref = Conv2d(3, 4, 3, stride=stride, padding=padding)
    ref.weight = layers.basis.reconstruct().reshape(4, 3, 3, 3)
    ref.bias = conv.bias
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    y = Sequential(*layers)(x)
    assert y.shape == ref(x).shape
    assert np.abs(y - ref(x)).max() < 1e-5 * np.abs(y).max()


def test_scheme1_cost_formula():
    conv = Conv2d(20, 50, 5, rng=0)
    m = 3
    layers = separable_basis_conv(conv, m, rng=0)
    c = profile(Sequential(*layers), (20, 12, 12))
    # C M kH H_out(vertical) W_in + C M kW H' W' + N C M H' W' (+ bias)
    expected = 20 * m * 5 * 8 * 12 + 20 * m * 5 * 8 * 8 + 50 * 20 * m * 8 * 8
    assert c.macs in (expected, expected + 50 * 64)
    assert layers.stored_parameters == m * 10 + 50 * 20 * m + 50


def test_the_layers_pass_a_gradient_check():
    conv = Conv2d(2, 3, 3, rng=0)
    for layer in separable_basis_conv(conv, 2, rng=0):
        x = np.random.default_rng(0).standard_normal((2, layer.in_channels, 6, 6))
        assert gradcheck(layer, x).passed


def test_bad_arguments():
    with pytest.raises(ValueError, match="filters"):
        separable_basis(np.ones((3, 3)), 1)
    with pytest.raises(ValueError, match="n_basis"):
        separable_basis(np.ones((4, 3, 3)), 10)
    with pytest.raises(TypeError, match="conv"):
        separable_basis_conv(np.ones((4, 3, 3, 3)), 1)
