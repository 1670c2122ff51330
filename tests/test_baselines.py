"""The stored baselines: reproducible training, and weights that give the recorded accuracies."""

import numpy as np
import pytest

from refimpl import baselines
from refimpl.data.fashion_mnist import load_fashion_mnist
from refimpl.nn import evaluate


def _fashion_available() -> bool:
    try:
        load_fashion_mnist()
    except FileNotFoundError:
        return False
    return True


FASHION = _fashion_available()
needs_fashion = pytest.mark.skipif(not FASHION, reason="Fashion-MNIST not installed (make data)")


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_shortened_digits_run_reproduces_bit_for_bit():
    runs = [baselines.train_baseline("digits_cnn", epochs=2, verbose=False) for _ in range(2)]
    _assert_same_state(runs[0][0].state_dict(), runs[1][0].state_dict())
    assert runs[0][1].loss == runs[1][1].loss


@needs_fashion
def test_shortened_fashion_run_reproduces_bit_for_bit():
    split = baselines.load_dataset("fashion_mnist")
    small = ((split[0][0][:3000], split[0][1][:3000]), (split[1][0][:500], split[1][1][:500]))
    runs = [
        baselines.train_baseline(name, epochs=1, split=small, verbose=False)[0].state_dict()
        for name in ("lenet5", "lenet5")
    ]
    _assert_same_state(*runs)


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_stored_weights_give_recorded_accuracy(name):
    info = baselines.baseline_info(name)
    assert info["sha256"] == baselines.sha256(baselines.weights_path(name)), "weights changed"
    if baselines.BASELINES[name].dataset == "fashion_mnist" and not FASHION:
        pytest.skip("Fashion-MNIST not installed (make data)")
    model = baselines.load_baseline(name)
    _, test = baselines.load_dataset(baselines.BASELINES[name].dataset)
    acc = evaluate(model, test).accuracy
    assert abs(acc - info["test_accuracy"]) <= 1e-3
    assert info["recipe"] == baselines.asdict(baselines.BASELINES[name])


def test_bad_names():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.load_baseline("resnet")
    with pytest.raises(ValueError, match="dataset"):
        baselines.load_dataset("cifar")
