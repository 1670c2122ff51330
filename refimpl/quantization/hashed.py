"""HashedNets: a large virtual weight matrix drawn from a few real parameters by hashing.

Chen et al. [1]_ keep ``K`` real numbers per layer and read the virtual weight ``V_ij`` as
``xi(i, j) * w[h(i, j)]``, with ``h`` a hash into ``0 .. K-1`` and ``xi`` a hash into ``{-1, +1}``
(the sign hash removes the bias that collisions would add to inner products). Nothing but ``K``
numbers and a seed is stored: the hashes are recomputed from the indices. Training is ordinary
backpropagation through ``V``; a bucket's gradient is the sum of the signed gradients of the
virtual weights that read it. See chapter 5 of the book, "HashedNets".

References
----------
.. [1] Chen, W., Wilson, J. T., Tyree, S., Weinberger, K. Q. and Chen, Y. (2015). Compressing
   Neural Networks with the Hashing Trick. *ICML*, PMLR 37, 2285-2294.
.. [2] Steele, G. L., Lea, D. and Flood, C. H. (2014). Fast Splittable Pseudorandom Number
   Generators. *OOPSLA* (the SplitMix64 finalizer used as the hash).
"""

from __future__ import annotations

import math

import numpy as np

from ..cost import LayerCost
from ..nn.layers import Layer
from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import RngLike, check_int

__all__ = ["HashedLinear", "HashedWeights", "bucket_hash", "sign_hash"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ROW = np.uint64(0xD6E8FEB86659FD93)
_SIGN_SALT = np.uint64(0x5851F42D4C957F2D)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 arrays (wrapping arithmetic): a bijective mixer [2]_."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must lie in [0, 2**63), got {seed}")
    return int(seed)


def _hash64(i: np.ndarray, j: np.ndarray, seed: int, salt: np.uint64) -> np.ndarray:
    i = np.asarray(i).astype(np.uint64)
    j = np.asarray(j).astype(np.uint64)
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is intended
        key = _mix64(np.uint64(seed) * _GOLDEN ^ salt)
        return _mix64(_mix64(i * _ROW ^ key) + j * _GOLDEN)


def bucket_hash(i: np.ndarray, j: np.ndarray, seed: int, n_buckets: int) -> np.ndarray:
    """Bucket ``h(i, j) in 0 .. n_buckets-1`` of entries ``(i, j)`` (broadcast; int64).

    A deterministic function of ``(i, j, seed)``: two SplitMix64 rounds mix the row, the column
    and the seed, and the result is reduced modulo ``n_buckets``.
    """
    seed = _check_seed(seed)
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, (int, np.integer)):
        raise TypeError(f"n_buckets must be an int, got {type(n_buckets).__name__}")
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    return (_hash64(i, j, seed, np.uint64(0)) % np.uint64(n_buckets)).astype(np.int64)


def sign_hash(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """Sign ``xi(i, j) in {-1, +1}`` of entries ``(i, j)`` (broadcast; int8), independent of
    :func:`bucket_hash` (another salt, the top bit)."""
    seed = _check_seed(seed)
    top = _hash64(i, j, seed, _SIGN_SALT) >> np.uint64(63)
    return (1 - 2 * top.astype(np.int8)).astype(np.int8)


def _hash_tables(shape: tuple[int, int], seed: int, n_buckets: int) -> tuple[np.ndarray, ...]:
    i = np.arange(shape[0])[:, None]
    j = np.arange(shape[1])[None, :]
    return bucket_hash(i, j, seed, n_buckets), sign_hash(i, j, seed)


class HashedWeights(Parametrization):
    """Store any weight as ``n_buckets`` hashed values: ``W_ij = xi(i, j) c[h(i, j)]``.

    Parameters
    ----------
    n_buckets : int
        Real numbers stored for the whole weight (``K``).
    seed : int
        Seed of the hashes (``0 <= seed < 2**63``).

    Notes
    -----
    The weight is viewed as a matrix (rows: axis 0; columns: the other axes flattened). The step
    replaces the tensor below it; it stores ``params["buckets"]`` (K,) only, and the hash tables
    are recomputed from the seed and the weight's shape (cached on the object by shape, which is
    configuration, so one object serves many layers). ``init`` fits the buckets to the current
    weight by least squares,
    :math:`c_k = \\mathrm{mean}_{h(i,j)=k}\\, \\xi_{ij} W_{ij}` (0 for an empty bucket).
    Gradient: :math:`\\partial L/\\partial c_k = \\sum_{h(i,j)=k} \\xi_{ij}\\, \\partial L /
    \\partial W_{ij}` ([1]_, eq. 12), one ``numpy.bincount``. A deployed file stores the
    buckets and the seed, nothing per weight.

    References
    ----------
    .. [1] Chen, W., Wilson, J. T., Tyree, S., Weinberger, K. Q. and Chen, Y. (2015).
       Compressing Neural Networks with the Hashing Trick. *ICML*.
    """

    file_name = "hashed"

    def __init__(self, n_buckets: int, *, seed: int = 0) -> None:
        if isinstance(n_buckets, bool) or not isinstance(n_buckets, (int, np.integer)):
            raise TypeError(f"n_buckets must be an int, got {type(n_buckets).__name__}")
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
        self.n_buckets = int(n_buckets)
        self.seed = _check_seed(seed)
        self._tables: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def tables(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Bucket (int64) and sign (int8) tables of a weight of ``shape`` (cached)."""
        shape = tuple(int(s) for s in shape)
        if shape not in self._tables:
            rows = shape[0]
            cols = math.prod(shape[1:]) if len(shape) > 1 else 1
            h, s = _hash_tables((rows, cols), self.seed, self.n_buckets)
            self._tables[shape] = (h.reshape(shape), s.reshape(shape))
        return self._tables[shape]

    uses_input = False  # the weight is built from the buckets alone

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.n_buckets > x.size:  # before the tables and buckets are allocated
            raise ValueError(
                f"n_buckets={self.n_buckets} exceeds the weight's {x.size} entries (shape "
                f"{x.shape}): hashing would store more than the dense weight"
            )
        h, s = self.tables(x.shape)
        sums = np.bincount(h.ravel(), weights=(s * x).ravel(), minlength=self.n_buckets)
        counts = np.bincount(h.ravel(), minlength=self.n_buckets)
        buckets = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        return {"buckets": buckets.astype(x.dtype)}, {}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        h, s = self.tables(x.shape)
        return params["buckets"][h] * s

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        h, s = self.tables(grad.shape)
        g = np.bincount(h.ravel(), weights=(s * grad).ravel(), minlength=self.n_buckets)
        return None, {"buckets": g.astype(params["buckets"].dtype)}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """The buckets and the seed: the hashes are recomputed when the file is read."""
        return Deployed({"n_buckets": self.n_buckets, "seed": self.seed},
                        {"buckets": params["buckets"]}, {})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        h, s = cls(deployed.config["n_buckets"], seed=deployed.config["seed"]).tables(shape)
        return (deployed.floats["buckets"][h] * s)[keep]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tables"] = {}  # recomputed from the seed; keeps copies small
        return state

    def __repr__(self) -> str:
        return f"HashedWeights(n_buckets={self.n_buckets}, seed={self.seed})"


class HashedLinear(Layer):
    """Dense layer whose ``(out, in + 1)`` virtual matrix (bias column included) is hashed.

    Parameters
    ----------
    in_features, out_features : int
        Virtual sizes.
    n_buckets : int
        Real parameters stored, exactly (``K``); the compression factor is
        ``K / ((in + 1) * out)``.
    seed : int
        Seed of the bucket and sign hashes.
    rng : int, numpy.random.Generator or None
        Seed or generator of the initial bucket values, ``U(-1/sqrt(in), 1/sqrt(in))``.

    Notes
    -----
    Shapes: ``x`` (N, in), ``y`` (N, out). As in [1]_ the bias is the last column of the virtual
    matrix :math:`V \\in R^{out \\times (in + 1)}`, :math:`V_{ij} = \\xi(i, j)\\, w_{h(i, j)}`, so
    ``params`` holds only ``"buckets"`` (K,). Forward: :math:`y = x V_{:, :in}^T + V_{:, in}`.
    Backward: with :math:`\\bar V = [g^T x,\\ \\textstyle\\sum_n g]`,
    :math:`\\partial L / \\partial w_k = \\sum_{h(i,j)=k} \\xi(i,j) \\bar V_{ij}` ([1]_, eq. 12),
    one ``bincount``. ``weight`` and ``bias`` give the virtual tensors. The profiler counts
    ``K`` stored parameters and the full ``in * out`` MACs (``layer_cost``): hashing saves memory,
    not arithmetic. The hash tables are cached at run time, not stored.
    See chapter 5 of the book, "HashedNets".

    References
    ----------
    .. [1] Chen, W., Wilson, J. T., Tyree, S., Weinberger, K. Q. and Chen, Y. (2015).
       Compressing Neural Networks with the Hashing Trick. *ICML*.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_buckets: int,
        *,
        seed: int = 0,
        rng: RngLike = None,
    ) -> None:
        super().__init__()
        shapes = self.param_shapes({"in_features": in_features, "out_features": out_features,
                                    "n_buckets": n_buckets})  # fmt: skip
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.n_buckets = shapes["buckets"][0]
        self.seed = _check_seed(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        gen = np.random.default_rng(rng)
        self.params["buckets"] = gen.uniform(-bound, bound, self.n_buckets).astype(np.float32)
        self._tables: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def param_shapes(cls, config: dict) -> dict[str, tuple[int, ...]]:
        """``{"buckets": (n_buckets,)}`` from the configuration, checked without allocating:
        ``n_buckets`` may not exceed the ``(in + 1) * out`` entries of the virtual matrix (more
        buckets than entries would store more than the dense layer)."""
        n_in = check_int(config.get("in_features"), "in_features", 1)
        n_out = check_int(config.get("out_features"), "out_features", 1)
        k = check_int(config.get("n_buckets"), "n_buckets", 1, (n_in + 1) * n_out)
        return {"buckets": (k,)}

    @property
    def compression(self) -> float:
        """Stored over virtual parameters, ``K / ((in + 1) * out)``."""
        return self.n_buckets / ((self.in_features + 1) * self.out_features)

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Bucket (out, in + 1) int64 and sign (out, in + 1) int8 tables (cached)."""
        if self._tables is None:
            self._tables = _hash_tables(
                (self.out_features, self.in_features + 1), self.seed, self.n_buckets
            )
        return self._tables

    def virtual(self) -> np.ndarray:
        """The virtual matrix ``V`` (out, in + 1), bias column last."""
        h, s = self.tables()
        w = self.params["buckets"]
        return w[h] * s.astype(w.dtype)

    @property
    def weight(self) -> np.ndarray:
        return self.virtual()[:, :-1]

    @property
    def bias(self) -> np.ndarray:
        return self.virtual()[:, -1]

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"HashedLinear expects input of shape (N, {self.in_features}), got "
                f"{getattr(x, 'shape', type(x).__name__)}"
            )
        v = self.virtual()
        self._cache = (x, v)
        return x @ v[:, :-1].T + v[:, -1]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, v = self._cache
        h, s = self.tables()
        gv = np.empty(v.shape, dtype=np.result_type(grad_out, x))
        gv[:, :-1] = grad_out.T @ x
        gv[:, -1] = grad_out.sum(axis=0)
        g = np.bincount(h.ravel(), weights=(gv * s).ravel(), minlength=self.n_buckets)
        self.grads["buckets"] = g.astype(self.params["buckets"].dtype)
        return grad_out @ v[:, :-1]

    def layer_cost(self, input_shape: tuple[int, ...], dtype_bytes: int | float) -> LayerCost:
        """``K`` stored parameters, ``in * out`` MACs and ``out`` bias additions."""
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"HashedLinear expects a per-sample input of shape ({self.in_features},), "
                f"got {tuple(input_shape)}"
            )
        return LayerCost(
            "",
            "hashed_linear",
            (self.in_features,),
            (self.out_features,),
            category="fc",
            params=self.n_buckets,
            nonzero_params=int(np.count_nonzero(self.params["buckets"])),
            macs=self.in_features * self.out_features,
            bias_outputs=self.out_features,
            stored_bytes=math.ceil(self.n_buckets * dtype_bytes),
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tables"] = None
        state.pop("_cache", None)
        return state

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_buckets={self.n_buckets}, seed={self.seed}"
        )
