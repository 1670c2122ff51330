"""Product quantization of dense layers (Gong et al., 2014).

The rows of a weight matrix are cut into sub-vectors of length ``d``; the sub-vectors of each
column block are clustered by k-means into ``k`` centroids, and every sub-vector is replaced by the
index of its centroid [1]_ (after Jegou et al. [2]_). With ``d = 1`` this is scalar k-means per
column; larger ``d`` stores fewer indices (one per ``d`` weights) at the price of a larger error.
See chapter 5 of the book, "Product quantization".

References
----------
.. [1] Gong, Y., Liu, L., Yang, M. and Bourdev, L. (2014). Compressing Deep Convolutional
   Networks using Vector Quantization. arXiv:1412.6115.
.. [2] Jegou, H., Douze, M. and Schmid, C. (2011). Product Quantization for Nearest Neighbor
   Search. *IEEE TPAMI* 33(1), 117-128.
"""

from __future__ import annotations

import math

import numpy as np

from ..nn.parametrize import Arrays, Deployed, Parametrization
from ..validation import check_array, check_int
from .kmeans import kmeans

__all__ = [
    "ProductQuantized",
    "pq_compression_rate",
    "pq_reconstruct",
    "product_quantize",
]


def product_quantize(
    weight: np.ndarray,
    subvector_len: int,
    n_centroids: int,
    *,
    max_iter: int = 25,
    rng: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Product-quantize a dense weight (out, in) with sub-vectors of ``subvector_len`` columns.

    Parameters
    ----------
    weight : ndarray (out_features, in_features)
    subvector_len : int
        ``d``: the columns are cut into ``s = ceil(in / d)`` blocks of ``d`` (the last block is
        padded with zeros).
    n_centroids : int
        ``k`` centroids per block, ``k <= out_features``.
    max_iter : int
        Lloyd iterations.
    rng : int, numpy.random.Generator or None

    Returns
    -------
    codebooks : ndarray (s, k, d), weight's dtype
    codes : ndarray (out_features, s), int32

    Notes
    -----
    Block :math:`b` of row :math:`i` is :math:`w_i^{(b)} \\in R^d`; it is replaced by
    :math:`c^{(b)}_{q_{ib}}` with :math:`q_{ib} = \\arg\\min_m \\|w_i^{(b)} - c^{(b)}_m\\|^2`
    ([1]_, sec. 3.3). Gong et al. split the columns the same way (their "segments").
    """
    w = np.asarray(weight)
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"weight must be a 2-D float array (out, in), got {w.shape} {w.dtype}")
    d = check_int(subvector_len, "subvector_len", 1)
    if d > w.shape[1]:
        raise ValueError(f"subvector_len must be <= in_features {w.shape[1]}, got {d}")
    k = check_int(n_centroids, "n_centroids", 1)
    if k > w.shape[0]:
        raise ValueError(f"n_centroids must be <= out_features {w.shape[0]}, got {k}")
    out, inp = w.shape
    s = math.ceil(inp / d)
    padded = np.zeros((out, s * d), dtype=np.float64)
    padded[:, :inp] = w
    blocks = padded.reshape(out, s, d).transpose(1, 0, 2)  # (s, out, d)
    C, labels, _ = kmeans(blocks, k, max_iter=max_iter, rng=rng)
    return C.astype(w.dtype), labels.T.astype(np.int32)


def pq_reconstruct(codebooks: np.ndarray, codes: np.ndarray, in_features: int) -> np.ndarray:
    """The weight (out, in_features) rebuilt from ``codebooks`` (s, k, d) and ``codes`` (out, s)."""
    s, _, d = codebooks.shape
    out = codes.shape[0]
    w = codebooks[np.arange(s)[None, :], codes]  # (out, s, d)
    return w.reshape(out, s * d)[:, :in_features]


def pq_compression_rate(
    shape: tuple[int, int], subvector_len: int, n_centroids: int, *, float_bits: int = 32
) -> float:
    """Bits of the dense weight over bits of its product quantization.

    Notes
    -----
    A dense (m, n) weight takes :math:`32 m n` bits. Its product quantization stores
    :math:`s = \\lceil n / d \\rceil` codebooks of :math:`k d` floats and :math:`m s` indices of
    :math:`\\lceil\\log_2 k\\rceil` bits: the rate is :math:`32mn / (32 k d s + m s
    \\lceil\\log_2 k\\rceil)` ([1]_, sec. 3.3 counts it the same way).
    """
    m, n = (int(v) for v in shape)
    d = check_int(subvector_len, "subvector_len", 1)
    k = check_int(n_centroids, "n_centroids", 1)
    s = math.ceil(n / d)
    index_bits = max(1, math.ceil(math.log2(k)))
    return float_bits * m * n / (float_bits * k * d * s + m * s * index_bits)


class ProductQuantized(Parametrization):
    """A dense weight stored as product-quantization codebooks (trained) and codes (fixed).

    Parameters
    ----------
    codebooks : ndarray (s, k, d)
    codes : ndarray of int (out_features, s)

    Notes
    -----
    The step replaces the tensor below it; it stores ``params["codebooks"]`` and
    ``buffers["codes"]``. The weight is
    :func:`pq_reconstruct`; each centroid's gradient is the sum of the gradients of the
    sub-vectors that use it (as for scalar sharing, one ``bincount`` per dimension ``d``).
    ``ProductQuantized.from_weight(weight, subvector_len, n_centroids, rng=...)`` builds it.
    The object keeps the codebooks and codes it was built from, to initialise one weight of
    their shape; a deployed file stores the codebooks and the codes.
    """

    file_name = "pq"

    def __init__(self, codebooks: np.ndarray, codes: np.ndarray) -> None:
        codebooks, codes = np.asarray(codebooks), np.asarray(codes)
        if codebooks.ndim != 3:
            raise ValueError(f"codebooks must have shape (s, k, d), got {codebooks.shape}")
        check_array(codebooks, "codebooks", kind="float")  # finite: NaN is never a weight
        if codes.ndim != 2 or codes.shape[1] != codebooks.shape[0]:
            raise ValueError(
                f"codes must have shape (out, {codebooks.shape[0]}), got {codes.shape}"
            )
        if not np.issubdtype(codes.dtype, np.integer) or (
            codes.size and (codes.min() < 0 or codes.max() >= codebooks.shape[1])
        ):
            raise ValueError(f"codes must be integers in [0, {codebooks.shape[1] - 1}]")
        self.codebooks = codebooks.copy()
        self.codes = codes.astype(np.int32)

    @classmethod
    def from_weight(
        cls,
        weight: np.ndarray,
        subvector_len: int,
        n_centroids: int,
        *,
        rng: int | np.random.Generator | None = None,
    ) -> ProductQuantized:
        return cls(*product_quantize(weight, subvector_len, n_centroids, rng=rng))

    uses_input = False  # the weight is rebuilt from the codebooks and codes

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        s, _, d = self.codebooks.shape
        if x.ndim != 2 or x.shape[0] != self.codes.shape[0] or math.ceil(x.shape[1] / d) != s:
            raise ValueError(
                f"weight of shape {x.shape} does not match codebooks {self.codebooks.shape} "
                f"and codes {self.codes.shape}"
            )
        return {"codebooks": self.codebooks.astype(x.dtype)}, {"codes": self.codes.copy()}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return pq_reconstruct(params["codebooks"], buffers["codes"], x.shape[1])

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        cb = params["codebooks"]
        s, k, d = cb.shape
        out = grad.shape[0]
        g = np.zeros((out, s * d), dtype=np.float64)
        g[:, : grad.shape[1]] = grad
        g = g.reshape(out, s, d)
        idx = (buffers["codes"] + np.arange(s)[None, :] * k).ravel()
        gc = np.stack(
            [np.bincount(idx, weights=g[..., t].ravel(), minlength=s * k) for t in range(d)],
            axis=-1,
        )
        return None, {"codebooks": gc.reshape(s, k, d).astype(cb.dtype)}

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        """The codebooks (s, k, d) and one code per row and sub-vector."""
        s, k, d = params["codebooks"].shape
        return Deployed({"blocks": s, "n_centroids": k, "subvector_len": d},
                        {"codebooks": params["codebooks"].ravel()},
                        {"codes": buffers["codes"].astype(np.int64).ravel()})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        c = deployed.config
        books = deployed.floats["codebooks"].reshape(c["blocks"], c["n_centroids"],
                                                     c["subvector_len"])  # fmt: skip
        codes = deployed.ints["codes"].reshape(shape[0], c["blocks"])
        return pq_reconstruct(books, codes, shape[1])[keep]

    def __repr__(self) -> str:
        s, k, d = self.codebooks.shape
        return f"ProductQuantized(blocks={s}, n_centroids={k}, subvector_len={d})"
