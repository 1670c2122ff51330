"""The shared timers: interleaved rounds, a stated statistic, clear errors."""

import numpy as np
import pytest

from refimpl import models
from refimpl.timing import time_call, time_inference


def test_time_inference_times_every_model():
    x = np.zeros((8, 1, 8, 8), np.float32)
    calls = []

    class Counting(type(models.digits_cnn())):
        def forward(self, x, train=False):
            calls.append(len(x))
            return super().forward(x, train)

    model = Counting(*models.digits_cnn().named_layers())
    times = time_inference(
        {"a": model, "b": models.digits_mlp()},
        x,
        repeats=3,
        warmup=1,
        batch_size=3,
        statistic="median",
    )
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    assert calls == [3, 3, 2] * 4  # warm-up plus three rounds, batches of 3


def test_time_call_and_bad_arguments():
    assert time_call(lambda: sum(range(100)), repeats=2) >= 0
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="statistic"):
        time_call(lambda: None, statistic="mean")
    with pytest.raises(ValueError, match="non-empty"):
        time_inference({}, np.zeros((1, 64)))
    with pytest.raises(TypeError, match="refimpl.nn"):
        time_inference({"x": object()}, np.zeros((1, 64)))
