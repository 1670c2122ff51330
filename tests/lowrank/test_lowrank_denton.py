"""Denton et al. (2014): monochromatic and biclustered approximations."""

import numpy as np
import pytest

from refimpl.cost import profile
from refimpl.lowrank import biclustered_approximation, monochromatic_approximation
from refimpl.nn import Conv2d, Sequential


def test_rank_one_monochromatic_is_exact_on_colour_times_spatial():
    gen = np.random.default_rng(0)
    colors = gen.standard_normal((3, 6))  # 3 distinct colours over 6 channels
    labels = np.repeat(np.arange(3), 4)  # 12 filters
    spatial = gen.standard_normal((12, 3, 3))
    W = np.einsum("nc,nyx->ncyx", colors[labels], spatial)
    mono = monochromatic_approximation(W, 3, rng=0)
    assert np.abs(mono.kernel - W).max() < 1e-10 * np.abs(W).max()
    # every filter keeps its own colour: exact rank-1 per filter too
    assert np.abs(monochromatic_approximation(W, 12).kernel - W).max() < 1e-10


def test_monochromatic_error_falls_with_more_colours():
    W = np.random.default_rng(0).standard_normal((16, 4, 3, 3))
    errs = [np.linalg.norm(monochromatic_approximation(W, g, rng=0).kernel - W) for g in (1, 16)]
    assert errs[1] <= errs[0]


def test_biclustering_with_one_cluster_each_at_full_rank_is_exact():
    W = np.random.default_rng(0).standard_normal((8, 5, 3, 3))
    bi = biclustered_approximation(W, 1, 1, 5, rng=0)
    assert np.abs(bi.kernel - W).max() < 1e-10
    bi = biclustered_approximation(W, 8, 5, 1, rng=0)  # one filter per block: rank 1 suffices
    assert np.abs(bi.kernel - W).max() < 1e-10


def test_costs_match_the_layers_they_describe():
    W = np.random.default_rng(0).standard_normal((8, 5, 3, 3))
    bi = biclustered_approximation(W, 2, 2, 2, rng=0)
    params, macs = bi.cost((10, 10))
    p2 = m2 = 0
    for P, Q in bi.blocks.values():
        a = Conv2d(P.shape[0], P.shape[1], 1, bias=False)
        b = Conv2d(Q.shape[1], Q.shape[0], 3, bias=False)
        c = profile(Sequential(a, b), (P.shape[0], 10, 10))
        p2 += c.params
        m2 += c.macs
    assert (params, macs) == (p2, m2)
    mono = monochromatic_approximation(W, 3, rng=0)
    # projection C -> G at 10x10, then one 3x3 single-channel filter per output at 8x8
    assert mono.cost((10, 10)) == (3 * 5 + 8 * 9, 5 * 3 * 100 + 8 * 9 * 64)
    dense = profile(Conv2d(5, 8, 3, bias=False), (5, 10, 10)).macs
    assert dense == 8 * 5 * 9 * 64


def test_bad_arguments():
    W = np.ones((4, 3, 3, 3))
    with pytest.raises(ValueError, match="n_colors"):
        monochromatic_approximation(W, 5)
    with pytest.raises(ValueError, match="weight"):
        monochromatic_approximation(np.ones((4, 3, 3)), 1)
    with pytest.raises(ValueError, match="n_in_clusters"):
        biclustered_approximation(W, 1, 4, 1)
    with pytest.raises(ValueError, match="rank"):
        biclustered_approximation(W, 1, 1, 0)


def test_balanced_clusters_have_equal_sizes_and_a_seed_free_cost():
    W = np.random.default_rng(0).standard_normal((50, 20, 5, 5))
    costs = set()
    for seed in range(3):
        bi = biclustered_approximation(W, 5, 4, 3, balanced=True, rng=seed)
        assert np.bincount(bi.out_labels).tolist() == [10] * 5
        assert np.bincount(bi.in_labels).tolist() == [5] * 4
        costs.add(bi.cost((12, 12)))
    assert len(costs) == 1
