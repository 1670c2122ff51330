"""Speed of the NumPy core, as ratios against numpy.matmul on the same machine in the same run.

For each dense and convolution shape, the forward plus backward pass of the layer performs three
matrix products (Y = W X, dW = dY X^T, dX = W^T dY). The reference is the same three products
done by ``numpy.matmul`` on ready-made operands of the same shapes, so the ratio shows what the
layer loses to everything that is not BLAS (im2col copies, col2im, bias, reshapes).
Also the time of one training epoch of LeNet-300-100 and LeNet-5 on 60,000 28x28 images
(synthetic data of the right shape, so the benchmark needs no download).

Run: ``python benchmarks/bench_layers.py`` (or ``make bench``). Timings never gate a test.
"""

from __future__ import annotations

import time

import numpy as np

from refimpl import models
from refimpl.nn import SGD, Conv2d, Linear, fit
from refimpl.report import format_table
from refimpl.timing import time_call


def matmul_reference(m: int, k: int, n: int, rng: np.random.Generator) -> float:
    """Time of Y=W@X, dW=dY@X.T, dX=W.T@dY with W (n,k), X (k,m), dY (n,m): the layer's products."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((k, m)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    return time_call(lambda: (w @ x, dy @ x.T, w.T @ dy))


def bench_layer(layer, x: np.ndarray) -> float:
    y = layer(x, train=True)
    dy = np.ones_like(y)

    def step():
        layer.forward(x, train=True)
        layer.backward(dy)

    return time_call(step)


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    dense_cases = [(64, 784, 300), (64, 300, 100), (256, 800, 500), (512, 1024, 1024)]
    for n, d_in, d_out in dense_cases:
        layer = Linear(d_in, d_out, rng=0)
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        t_layer = bench_layer(layer, x)
        t_ref = matmul_reference(n, d_in, d_out, rng)
        gflop = 3 * 2 * n * d_in * d_out / 1e9
        rows.append(
            (f"Linear {d_in}->{d_out}, N={n}", gflop / t_layer, gflop / t_ref, t_ref / t_layer)
        )
    conv_cases = [
        (64, 1, 20, 28, 5, 0),
        (64, 20, 50, 12, 5, 0),
        (64, 16, 32, 16, 3, 1),
        (32, 64, 64, 16, 3, 1),
    ]
    for n, c_in, c_out, size, k, pad in conv_cases:
        layer = Conv2d(c_in, c_out, k, padding=pad, rng=0)
        x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
        ho = size + 2 * pad - k + 1
        m, kk = n * ho * ho, c_in * k * k
        t_layer = bench_layer(layer, x)
        t_ref = matmul_reference(m, kk, c_out, rng)
        gflop = 3 * 2 * m * kk * c_out / 1e9
        rows.append(
            (
                f"Conv2d {c_in}->{c_out} {k}x{k} on {size}x{size}, N={n}",
                gflop / t_layer,
                gflop / t_ref,
                t_ref / t_layer,
            )
        )
    print("Forward + backward throughput against numpy.matmul of the same products")
    print(format_table(rows, ["layer", "layer GFLOP/s", "matmul GFLOP/s", "ratio"], floatfmt=".2f"))

    X = rng.random((60000, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    epoch_rows = []
    for name in ("lenet_300_100", "lenet5"):
        model = getattr(models, name)(rng=0)
        start = time.perf_counter()
        fit(
            model,
            (X, y),
            epochs=1,
            optimizer=SGD(0.01, momentum=0.9),
            batch_size=64,
            rng=0,
            verbose=False,
        )
        epoch_rows.append((name, time.perf_counter() - start))
    print("\nOne training epoch, 60,000 images, batch 64")
    print(format_table(epoch_rows, ["model", "seconds"], floatfmt=".1f"))


if __name__ == "__main__":
    main()
