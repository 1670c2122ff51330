"""Group-wise brain damage (Lebedev & Lempitsky 2016): im2col columns, pruned and thinned."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import digits_cnn
from refimpl.nn import SGD, Conv2d, Mask, fit, gradcheck
from refimpl.pruning import (
    GroupLasso,
    column_mask,
    group_lasso_grad,
    group_lasso_penalty,
    kept_columns,
    prune_columns,
    thin_conv,
)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),  # C_in
    st.integers(1, 5),  # C_out
    st.integers(1, 3),  # kH
    st.integers(1, 3),  # kW
    st.integers(1, 2),  # stride
    st.integers(0, 2),  # padding
    st.integers(0, 2**31 - 1),
)
def test_thinned_conv_equals_masked_conv(c_in, c_out, kh, kw, stride, padding, seed):
    rng = np.random.default_rng(seed)
    layer = Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, rng=seed)
    layer = layer.astype(np.float64)
    keep = rng.random((c_in, kh, kw)) < 0.5
    keep.flat[rng.integers(keep.size)] = True  # at least one column
    Mask.update(layer, "weight", column_mask(keep, layer.weight.shape))
    x = rng.standard_normal((3, c_in, 5 + kh, 4 + kw))
    thin = thin_conv(layer)
    assert len(thin.channel) <= keep.sum()  # a column zero by chance is dropped too
    np.testing.assert_allclose(thin(x), layer.forward(x), rtol=1e-12, atol=1e-12)
    # keeping every column is the full convolution
    full = thin_conv(layer, keep=np.ones_like(keep))
    np.testing.assert_allclose(full(x), layer.forward(x), rtol=1e-12, atol=1e-12)


def test_shape_penalty_gradient():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 2, 2))
    res = gradcheck(lambda v: group_lasso_penalty(v, "shape"), [w],
                    analytic=[group_lasso_grad(w, "shape")], tol=1e-7)  # fmt: skip
    assert res.passed, str(res)


def test_prune_columns_after_group_lasso():
    rng = np.random.default_rng(0)
    model = digits_cnn(rng=0)
    X, y = rng.standard_normal((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 64)
    opt = SGD(0.05)
    fit(model, (X, y), epochs=5, optimizer=opt, verbose=False, rng=0,
        callbacks=[GroupLasso(1.0, opt, group="shape", layers=["conv2"])])  # fmt: skip
    zero = ~kept_columns(model["conv2"])
    assert zero.any() and not zero.all()
    prune_columns(model, layers=["conv2"])
    mask = Mask.of(model["conv2"])
    assert mask is not None
    assert np.array_equal(mask.any(axis=0), ~zero)  # whole columns, exactly the zero ones
    assert np.array_equal(mask.all(axis=0), ~zero)


def test_prune_columns_by_norm_and_bad_input():
    model = digits_cnn(rng=0)
    prune_columns(model, sparsity=0.5, layers=["conv1", "conv2"])
    for name in ("conv1", "conv2"):
        kept = kept_columns(model[name])
        assert kept.sum() == kept.size - round(0.5 * kept.size)
    with pytest.raises(ValueError, match="convolutions"):
        prune_columns(model, sparsity=0.5, layers=["fc1"])
    with pytest.raises(ValueError, match="sparsity"):
        prune_columns(model, sparsity=1.0)
    with pytest.raises(ValueError, match="keep"):
        column_mask(np.ones((2, 2, 2), bool), (4, 3, 2, 2))
    with pytest.raises(ValueError, match="keep"):
        thin_conv(model["conv2"], keep=np.ones((1, 1, 1), bool))
    with pytest.raises(ValueError, match="x must be"):
        thin_conv(model["conv2"])(np.ones((2, 3, 4, 4)))


def test_thinned_conv_with_no_column_left_outputs_the_bias():
    layer = Conv2d(2, 3, 3, rng=0)
    Mask.update(layer, "weight", np.zeros(layer.weight.shape, dtype=bool))
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    thin = thin_conv(layer)
    assert len(thin.channel) == 0
    np.testing.assert_allclose(thin(x), layer.forward(x), atol=1e-6)
