"""1-D k-means for weight sharing: our inertia and time against scikit-learn's, in the same run.

For 100,000 weights and k = 64 clusters, three ways to find the codebook:

* ``refimpl.quantization.kmeans_quantize(w, k, init="optimal")``: the exact DP (on the distinct
  values, since k times their number fits its table) polished by Lloyd on sorted data;
* ``kmeans_quantize(w, k, init="linear")``: Deep Compression's linear start and Lloyd;
* scikit-learn's ``KMeans(n_clusters=k, n_init=10)`` (k-means++ starts, the best of 10), the
  reference, on one thread like the rest.

The inertia is :math:`\\sum_i (w_i - c_{I_i})^2` computed the same way for all (in float64, from
the returned codebook and indices). Three weight sets: Gaussian, heavy-tailed (Student t with 3
degrees of freedom: the tails are where equal-count grouping went wrong) and, if
``refimpl/weights/lenet_300_100.npz`` exists, the first 100,000 trained weights of
LeNet-300-100's ``fc1``. Needs scikit-learn (``pip install scikit-learn``); without it the
benchmark says so and stops. Run: ``python benchmarks/bench_kmeans.py``. Timings never gate a
test.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from refimpl.baselines import load_baseline, weights_path
from refimpl.quantization import kmeans_quantize
from refimpl.report import format_table

N_WEIGHTS = 100_000
K = 64


def inertia(w: np.ndarray, codebook: np.ndarray, indices: np.ndarray) -> float:
    w64 = np.asarray(w, dtype=np.float64).ravel()
    c = np.asarray(codebook, dtype=np.float64)
    return float(((w64 - c[np.asarray(indices).ravel()]) ** 2).sum())


def weight_sets() -> dict[str, np.ndarray]:
    gen = np.random.default_rng(0)
    sets = {
        "Gaussian": (0.05 * gen.standard_normal(N_WEIGHTS)).astype(np.float32),
        "Student t, 3 dof": (0.02 * gen.standard_t(3, N_WEIGHTS)).astype(np.float32),
    }
    if weights_path("lenet_300_100").exists():
        fc1 = load_baseline("lenet_300_100")["fc1"].weight.ravel()[:N_WEIGHTS]
        sets["LeNet-300-100 fc1 (trained)"] = np.asarray(fc1, dtype=np.float32)
    return sets


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        print("scikit-learn is not installed: nothing to compare against "
              "(pip install scikit-learn)")
        return
    try:
        from threadpoolctl import threadpool_limits
        one_thread = threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        one_thread = contextlib.nullcontext()
    rows = []
    with one_thread:
        for name, w in weight_sets().items():
            (cb_opt, idx_opt), t_opt = timed(lambda w=w: kmeans_quantize(w, K, init="optimal"))
            (cb_lin, idx_lin), t_lin = timed(lambda w=w: kmeans_quantize(w, K, init="linear"))
            km, t_sk = timed(lambda w=w: KMeans(K, n_init=10, random_state=0).fit(
                w.reshape(-1, 1).astype(np.float64)))
            i_sk = inertia(w, km.cluster_centers_.ravel(), km.labels_)
            i_opt, i_lin = inertia(w, cb_opt, idx_opt), inertia(w, cb_lin, idx_lin)
            rows.append((name, np.unique(w).size, i_opt / i_sk, t_opt / t_sk, i_lin / i_sk,
                         t_lin / t_sk, i_sk, t_sk))
    print(f"1-D k-means of {N_WEIGHTS:,} weights, k = {K}: ratios to scikit-learn's "
          f"KMeans(n_init=10) in the same run (one thread)\n")
    print(format_table(rows, ["weights", "distinct", "optimal: inertia", "optimal: time",
                              "linear: inertia", "linear: time", "sklearn inertia",
                              "sklearn s"], floatfmt=".4g"))
    print("\ninertia ratio <= 1: at least as good as scikit-learn; 'optimal' is the exact "
          "optimum up to the float32 rounding of the codebook")


if __name__ == "__main__":
    main()
