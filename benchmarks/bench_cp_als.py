"""Time of CP-ALS on a LeNet-5 conv2-sized kernel (50 x 20 x 5 x 5) at rank 16, as ratios.

Three timings in the same run:

* ``refimpl.lowrank.cp_als``: normal equations with the Khatri-Rao product and the
  pseudo-inverse of the Hadamard product of Gram matrices (Kolda and Bader 2009);
* the same sweeps done the plain way, each factor by ``numpy.linalg.lstsq`` against the full
  unfolding (the reference implementation of the tests);
* ``numpy.matmul`` doing the arithmetic that dominates a sweep (the N products
  ``X_(n) @ khatri_rao(others)``, 2 N |X| R FLOPs) on ready-made operands: what BLAS alone needs.

The kernel is LeNet-5's trained ``conv2`` if ``refimpl/weights/lenet5.npz`` exists, otherwise a
random one of the same shape. Run: ``python benchmarks/bench_cp_als.py``. Timings never gate a
test.
"""

from __future__ import annotations

import time

import numpy as np

from refimpl.baselines import load_baseline, weights_path
from refimpl.lowrank import cp_als, cp_to_tensor, unfold
from refimpl.report import format_table
from refimpl.timing import time_call

SHAPE = (50, 20, 5, 5)
RANK = 16
SWEEPS = 50


def lstsq_als(X: np.ndarray, factors: list[np.ndarray], sweeps: int) -> list[np.ndarray]:
    """Each factor by least squares against the full unfolding (no normal equations)."""
    factors = [f.copy() for f in factors]
    for _ in range(sweeps):
        for n in range(X.ndim):
            others = [factors[m] for m in range(X.ndim) if m != n]
            kr = others[0]
            for m in others[1:]:
                kr = (kr[:, None, :] * m[None, :, :]).reshape(-1, RANK)
            factors[n] = np.linalg.lstsq(kr, unfold(X, n).T, rcond=None)[0].T
    return factors


def main() -> None:
    if weights_path("lenet5").exists():
        kernel = load_baseline("lenet5")["conv2"].weight.astype(np.float64)
        source = "LeNet-5 conv2 (trained)"
    else:
        kernel = np.random.default_rng(0).standard_normal(SHAPE)
        source = "random normal kernel"
    assert kernel.shape == SHAPE
    gen = np.random.default_rng(0)
    init = [gen.standard_normal((s, RANK)) for s in SHAPE]

    t_ours = time_call(
        lambda: cp_als(kernel, RANK, n_iter_max=SWEEPS, tol=0, init=init), statistic="median"
    )
    t_lstsq = time_call(lambda: lstsq_als(kernel, init, SWEEPS), repeats=3, statistic="median")
    flops = 2 * kernel.ndim * kernel.size * RANK * SWEEPS
    unfoldings = [unfold(kernel, n) for n in range(kernel.ndim)]
    krs = [gen.standard_normal((kernel.size // s, RANK)) for s in SHAPE]
    t_blas = time_call(
        lambda: [u @ k for _ in range(SWEEPS) for u, k in zip(unfoldings, krs, strict=True)],
        statistic="median",
    )
    start = time.perf_counter()
    weights, factors, errors = cp_als(kernel, RANK, rng=0, return_errors=True)  # defaults
    t_default = time.perf_counter() - start
    err = np.linalg.norm(cp_to_tensor(weights, factors) - kernel) / np.linalg.norm(kernel)

    print(f"CP-ALS of a {' x '.join(map(str, SHAPE))} kernel at rank {RANK} ({source})\n")
    rows = [
        ("refimpl cp_als (normal equations)", t_ours * 1e3, t_ours / SWEEPS * 1e3, 1.0),
        (
            "plain ALS with lstsq on unfoldings",
            t_lstsq * 1e3,
            t_lstsq / SWEEPS * 1e3,
            t_lstsq / t_ours,
        ),
        ("numpy.matmul of the MTTKRPs only", t_blas * 1e3, t_blas / SWEEPS * 1e3, t_blas / t_ours),
    ]
    print(
        format_table(
            rows,
            ["method", f"ms for {SWEEPS} sweeps", "ms per sweep", "time / cp_als"],
            floatfmt=".2f",
        )
    )
    print(f"\nMTTKRP arithmetic: {flops / 1e6:.1f} MFLOP in {SWEEPS} sweeps")
    print(
        f"cp_als with its defaults (n_iter_max=100, tol=1e-8): {len(errors)} sweeps in "
        f"{t_default * 1e3:.0f} ms, relative error {err:.4f}"
    )


if __name__ == "__main__":
    main()
