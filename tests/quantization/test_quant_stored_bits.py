"""Quantized and shared weights report their true storage to the cost model."""

import numpy as np
import pytest

from refimpl import models
from refimpl.cost import profile
from refimpl.nn import Mask
from refimpl.quantization import (
    INQ,
    BinaryConnect,
    FixedPoint,
    SharedWeights,
    UniformQuant,
    XNORWeights,
)

BIAS = {"fc1": 300, "fc2": 100, "fc3": 10}
SIZE = {"fc1": 300 * 784, "fc2": 100 * 300, "fc3": 10 * 100}


def stored(make, layer="fc2"):
    model = models.lenet_300_100(rng=0)
    model[layer].parametrize("weight", make(model[layer].weight))
    return profile(model, (1, 28, 28))[layer].stored_bytes


@pytest.mark.parametrize(
    "make,bits",
    [
        (lambda w: UniformQuant(4), SIZE["fc2"] * 4 + 32),
        (lambda w: UniformQuant(8, per_channel=True), SIZE["fc2"] * 8 + 100 * 32),
        (lambda w: UniformQuant(8, symmetric=False), SIZE["fc2"] * 8 + 64),
        (lambda w: FixedPoint(4, 12), SIZE["fc2"] * 16),
        (lambda w: BinaryConnect(), SIZE["fc2"] + 32),
        (lambda w: XNORWeights(), SIZE["fc2"] + 100 * 32),
        (lambda w: INQ(5), SIZE["fc2"] * 5),
        (lambda w: SharedWeights.from_weight(w, 16, rng=0), SIZE["fc2"] * 4 + 16 * 32),
        (lambda w: Mask(np.ones(w.shape, bool)), SIZE["fc2"] * 32),  # a mask stores densely
    ],
)
def test_stored_bytes_count_the_deployed_format(make, bits):
    assert stored(make) == int(np.ceil(bits / 8)) + BIAS["fc2"] * 4


def test_pruned_shared_weight_needs_one_more_symbol():
    model = models.lenet_300_100(rng=0)
    w = model["fc1"].weight.copy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    model["fc1"].weight = w
    model["fc1"].parametrize("weight", SharedWeights.from_weight(w, 16, rng=0))
    # 16 centroids plus the pruned-zero symbol: 5-bit indices
    expected = int(np.ceil((SIZE["fc1"] * 5 + 16 * 32) / 8)) + BIAS["fc1"] * 4
    assert profile(model, (1, 28, 28))["fc1"].stored_bytes == expected
