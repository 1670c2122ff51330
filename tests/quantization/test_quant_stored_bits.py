"""Quantized and shared weights report their true storage to the cost model.

The compressed model file is the size model of the package: the cost model reports, for a
parametrized weight, the bytes the file spends on it (``encoded_tensor``). At a fixed width those
bytes are the deployed format's bits, plus a few bytes of record headers.
"""

import numpy as np
import pytest

from refimpl import models
from refimpl.coding import encoded_tensor
from refimpl.cost import profile
from refimpl.nn import Mask
from refimpl.quantization import (
    INQ,
    BinaryConnect,
    FixedPoint,
    SharedWeights,
    UniformQuant,
    XNORWeights,
    inq_step,
)

BIAS = {"fc1": 300, "fc2": 100, "fc3": 10}
SIZE = {"fc1": 300 * 784, "fc2": 100 * 300, "fc3": 10 * 100}
HEADERS = 160  # bytes of layout, step name, config JSON and stream headers in one record body


def _model(make, layer="fc2"):
    model = models.lenet_300_100(rng=0)
    model[layer].parametrize("weight", make(model[layer].weight))
    inq_step(model, 1.0)  # INQ's deployed form is its end state: every weight frozen
    return model


@pytest.mark.parametrize(
    "make,bits",
    [
        (lambda w: UniformQuant(4), SIZE["fc2"] * 4 + 64),  # float64 scale, as torch stores it
        (lambda w: UniformQuant(8, per_channel=True), SIZE["fc2"] * 8 + 100 * 64),
        (lambda w: UniformQuant(8, symmetric=False), SIZE["fc2"] * 8 + 64 + 8),  # + zero point
        (lambda w: FixedPoint(4, 12), SIZE["fc2"] * 16),
        (lambda w: BinaryConnect(), SIZE["fc2"] + 32),
        (lambda w: XNORWeights(), SIZE["fc2"] + 100 * 32),
        (lambda w: INQ(5), SIZE["fc2"] * 5),
        (lambda w: SharedWeights.from_weight(w, 16, rng=0), SIZE["fc2"] * 4 + 16 * 32),
        (lambda w: Mask(np.ones(w.shape, bool)), SIZE["fc2"] * 32),  # nothing pruned: dense
    ],
)
def test_stored_bytes_count_the_deployed_format(make, bits):
    model = _model(make)
    fixed = encoded_tensor(model["fc2"], "weight", huffman=False)
    assert 0 <= fixed.body_bytes - int(np.ceil(bits / 8)) <= HEADERS
    # the cost model counts what the file stores (Huffman-coded where that is shorter)
    coded = encoded_tensor(model["fc2"], "weight")
    assert coded.body_bytes <= fixed.body_bytes
    assert profile(model, (1, 28, 28))["fc2"].stored_bytes == coded.body_bytes + BIAS["fc2"] * 4


def test_pruned_shared_weight_needs_one_more_symbol():
    model = models.lenet_300_100(rng=0)
    w = model["fc1"].weight.copy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    model["fc1"].weight = w
    model["fc1"].parametrize("weight", SharedWeights.from_weight(w, 16, rng=0))
    # dense layout: 16 centroids plus the pruned-zero symbol, 5-bit symbols
    info = encoded_tensor(model["fc1"], "weight", sparse=False, huffman=False)
    expected = int(np.ceil((SIZE["fc1"] * 5 + 16 * 32) / 8))
    assert 0 <= info.body_bytes - expected <= HEADERS
