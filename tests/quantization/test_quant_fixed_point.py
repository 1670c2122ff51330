"""Fixed point: the grid, saturation, unbiased stochastic rounding, and training that survives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import SGD, Linear, Sequential, fit
from refimpl.quantization import FixedPoint, fixed_point_range, round_fixed

values = st.floats(-20, 20, allow_nan=False, width=64)


@settings(max_examples=50, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 50), elements=values),
       il=st.integers(1, 6), fl=st.integers(0, 14), seed=st.integers(0, 1000))
def test_results_lie_on_the_grid_within_range(x, il, fl, seed):
    lo, hi, eps = fixed_point_range(il, fl)
    for mode in ("nearest", "stochastic"):
        r = round_fixed(x, il, fl, rounding=mode, rng=seed)
        assert np.all((r >= lo) & (r <= hi))
        assert np.allclose(r / eps, np.round(r / eps), atol=1e-9)
        inside = (x >= lo) & (x <= hi)
        bound = eps / 2 if mode == "nearest" else eps
        assert np.all(np.abs(r - x)[inside] <= bound * (1 + 1e-12))
        # saturation: out-of-range values go to the nearest end
        assert np.all(r[x > hi] == hi) and np.all(r[x < lo] == lo)


def test_sixteen_bit_format_of_gupta():
    lo, hi, eps = fixed_point_range(4, 12)
    assert (lo, hi, eps) == (-8.0, 8.0 - 2**-12, 2**-12)


@pytest.mark.parametrize("x", [0.3, -1.23456, 2**-14, 5 * 2**-12 + 2**-15])
def test_stochastic_rounding_is_unbiased(x):
    n = 200_000
    r = round_fixed(np.full(n, x), 4, 12, rounding="stochastic", rng=0)
    eps = 2**-12
    # only the two neighbours occur, and their average is x (5 standard errors)
    assert set(np.unique(r)) <= {np.floor(x / eps) * eps, np.ceil(x / eps) * eps}
    assert abs(r.mean() - x) <= 5 * eps / 2 / np.sqrt(n)
    nearest = round_fixed(np.array([x]), 4, 12)[0]
    if abs(nearest - x) > 1e-3 * eps:  # round-to-nearest is biased for these x
        assert abs(r.mean() - x) < abs(nearest - x)


def test_nearest_rounding_swallows_small_updates_stochastic_keeps_them():
    # Gupta et al. 2015: an update below eps / 2 never survives round-to-nearest
    w = np.zeros(100_000)
    update = 0.1 * 2**-8
    near, sto = w.copy(), w.copy()
    gen = np.random.default_rng(0)
    for _ in range(50):
        near = round_fixed(near + update, 4, 8)
        sto = round_fixed(sto + update, 4, 8, rounding="stochastic", rng=gen)
    assert np.all(near == 0)
    assert sto.mean() == pytest.approx(50 * update, rel=0.02)


def _train(rounding):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 10)).astype(np.float32)
    y = (X @ rng.standard_normal(10) > 0).astype(np.int64)
    model = Sequential(("fc", Linear(10, 2, rng=0)))
    model["fc"].weight = np.zeros((2, 10), np.float32)
    model["fc"].parametrize("weight", FixedPoint(2, 8, rounding=rounding, rng=0))
    hist = fit(model, (X, y), epochs=10, optimizer=SGD(0.002), batch_size=64, rng=0,
               verbose=False)
    return model, hist


def test_training_stalls_with_nearest_and_learns_with_stochastic_rounding():
    near, h_near = _train("nearest")
    sto, h_sto = _train("stochastic")
    assert np.all(near["fc"].weight == 0)  # every update was rounded away
    assert h_near.accuracy[-1] < 0.65
    assert h_sto.accuracy[-1] > 0.8
    w = sto["fc"].weight
    assert np.allclose(w * 2**8, np.round(w * 2**8))  # still on the <2, 8> grid


def test_bad_inputs():
    with pytest.raises(ValueError, match="integer_bits"):
        round_fixed(np.ones(2), 0, 4)
    with pytest.raises(TypeError, match="fraction_bits"):
        FixedPoint(4, 1.5)
    with pytest.raises(ValueError, match="rounding"):
        round_fixed(np.ones(2), rounding="up")
    with pytest.raises(ValueError, match="rounding"):
        FixedPoint(rounding="floor")
    with pytest.raises(TypeError, match="x"):
        round_fixed(np.ones(2, dtype=int))
