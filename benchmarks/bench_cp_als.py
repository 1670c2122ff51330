"""Time of CP-ALS on a LeNet-5 conv2-sized kernel (50 x 20 x 5 x 5) at rank 16, as ratios.

Three timings in the same run:

* ``refimpl.lowrank.cp_als``: normal equations with the Khatri-Rao product and the
  pseudo-inverse of the Hadamard product of Gram matrices (Kolda and Bader 2009);
* the same sweeps done the plain way, each factor by ``numpy.linalg.lstsq`` against the full
  unfolding (the reference implementation of the tests);
* ``numpy.matmul`` doing the arithmetic that dominates a sweep (the N products
  ``X_(n) @ khatri_rao(others)``, 2 N |X| R FLOPs) on ready-made operands: what BLAS alone needs.

The kernel is LeNet-5's trained ``conv2`` if ``refimpl/weights/lenet5.npz`` exists, otherwise a
random one of the same shape.

Then the time to *converge*, which depends on the start as much as on the sweep: at rank 8 two
modes of the kernel (5 x 5) are shorter than the rank. For each of 10 seeds, tensorly's
``parafac`` runs with its defaults (``init="svd"``, 100 sweeps at most, ``tol=1e-8``,
``random_state=seed``); our time is that of ``cp_als(..., rng=seed)`` stopped at the first sweep
whose error is at most tensorly's final error (never reached in 300 sweeps counts as infinite).
Both are timed in the same run (fastest of 3), on two kernels: a planted rank-8 CP tensor of
``conv2``'s shape plus 10% noise (the hard case: ALS converges, and how fast depends on the
start), and the trained ``conv2`` (no exact low-rank structure: ALS is still in its slow "swamp"
after 100 sweeps, and tensorly's final error is a draw). This part needs tensorly
(``pip install tensorly``) and is skipped with a message without it.

Run: ``python benchmarks/bench_cp_als.py``. Timings never gate a test.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from refimpl.baselines import load_baseline, weights_path
from refimpl.lowrank import cp_als, cp_to_tensor, unfold
from refimpl.report import format_table
from refimpl.timing import time_call

SHAPE = (50, 20, 5, 5)
RANK = 16
SWEEPS = 50
START_RANK = 8  # below the length of two modes: the case the start matters for
SEEDS = range(10)
CAP = 300  # our sweeps at most when looking for tensorly's final error


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
        lambda: cp_als(kernel, RANK, max_iter=SWEEPS, tol=0, init=init), statistic="median"
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
    cp = cp_als(kernel, RANK, rng=0)  # defaults
    weights, factors, errors = cp.weights, cp.factors, cp.errors
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
        f"cp_als with its defaults (max_iter=100, tol=1e-8): {len(errors)} sweeps in "
        f"{t_default * 1e3:.0f} ms, relative error {err:.4f}"
    )


def planted_kernel(rank: int, noise: float, seed: int = 0) -> np.ndarray:
    """A CP tensor of ``SHAPE`` with Gaussian factors plus ``noise`` relative Gaussian noise."""
    gen = np.random.default_rng(seed)
    factors = [gen.standard_normal((s, rank)) for s in SHAPE]
    exact = cp_to_tensor(gen.uniform(0.5, 2.0, rank), factors)
    noise_part = gen.standard_normal(SHAPE)
    return exact + noise * noise_part * np.linalg.norm(exact) / np.linalg.norm(noise_part)


def time_to_tensorly(kernel: np.ndarray, rank: int, label: str) -> None:
    """Per seed: tensorly's time and final error, and our time to reach that error."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    norm = np.linalg.norm(kernel)
    rows, ours, theirs = [], [], []
    for seed in SEEDS:
        with warnings.catch_warnings():  # tensorly warns that 5 < rank singular vectors exist
            warnings.simplefilter("ignore")
            cpt, errs = parafac(tl.tensor(kernel), rank, init="svd", random_state=seed,
                                return_errors=True)
            t_tl = time_call(lambda s=seed: parafac(tl.tensor(kernel), rank, init="svd",
                                                    random_state=s), repeats=3)
        e_tl = float(np.linalg.norm(tl.cp_to_tensor(cpt) - kernel) / norm)
        errors = cp_als(kernel, rank, max_iter=CAP, tol=0, rng=seed).errors
        hit = np.flatnonzero(np.asarray(errors) <= e_tl * (1 + 1e-12))
        if hit.size:
            k = int(hit[0]) + 1
            t_ours = time_call(lambda s=seed, k=k: cp_als(kernel, rank, max_iter=k, tol=0,
                                                          rng=s), repeats=3)
        else:
            k, t_ours = None, float("inf")
        ours.append(t_ours)
        theirs.append(t_tl)
        rows.append((seed, len(errs), t_tl * 1e3, e_tl, "-" if k is None else k,
                     t_ours * 1e3, t_ours / t_tl))
    print(f"\n{label}, rank {rank}: time to reach tensorly's final error\n")
    print(format_table(rows, ["seed", "tensorly sweeps", "tensorly ms", "tensorly error",
                              "our sweeps", "our ms", "ours / tensorly"], floatfmt=".4g"))
    m_ours, m_theirs = float(np.median(ours)), float(np.median(theirs))
    print(f"median over {len(ours)} seeds: ours {m_ours * 1e3:.1f} ms, tensorly "
          f"{m_theirs * 1e3:.1f} ms, ratio {m_ours / m_theirs:.2f} (median of per-seed ratios "
          f"{float(np.median(np.divide(ours, theirs))):.2f})")


def main_start(trained: np.ndarray | None) -> None:
    try:
        import tensorly  # noqa: F401
    except ImportError:
        print("\ntensorly is not installed: skipping the time-to-converge comparison "
              "(pip install tensorly)")
        return
    time_to_tensorly(planted_kernel(START_RANK, 0.1), START_RANK,
                     "Planted rank-8 kernel of conv2's shape, 10% noise")
    if trained is not None:
        time_to_tensorly(trained, START_RANK, "LeNet-5 conv2 (trained)")


if __name__ == "__main__":
    main()
    main_start(load_baseline("lenet5")["conv2"].weight.astype(np.float64)
               if weights_path("lenet5").exists() else None)
