r"""Sparse storage with relative indices and filler zeros, as in Deep Compression.

A pruned layer keeps only its nonzero weights. Compressed sparse row (CSR) storage needs, for
``a`` nonzeros in an ``m``-row matrix, ``a`` values, ``a`` column indices and ``m + 1`` row
pointers. Deep Compression [1]_ shrinks the index part: it stores, for every kept weight, the
*difference* to the previous kept position in the flattened weight, with a fixed small number
of bits (the paper uses 8 bits for convolutional and 5 for fully connected layers; its LeNet
tables use 5 everywhere). When a gap does not fit, a *filler zero* is stored in between: an
entry whose value is 0 placed as far as the index width reaches.

Our conventions (see chapter 6 of the book, "Sparse storage"):

* The weight is flattened in C order (row-major), so rows follow each other and no row pointer
  is stored: entry ``p`` of the flat vector is row ``p // n_cols``, column ``p % n_cols``.
  :meth:`RelativeCSR.row_pointers` recovers the usual CSR ``indptr`` when needed.
* Entry ``i`` stores ``gap_i = p_i - p_{i-1} - 1``, the number of zeros skipped since the previous
  stored entry (with ``p_{-1} = -1``), in ``b = index_bits`` bits, so ``0 <= gap_i < 2**b``. The
  paper's "difference" is ``gap + 1`` in ``1 .. 2**b``; a difference above ``2**b`` (a gap of
  ``2**b`` or more) needs fillers.
* A gap ``g >= 2**b`` is bridged by ``floor(g / 2**b)`` filler entries, each with stored gap
  ``2**b - 1`` and value 0, followed by the real entry with gap ``g mod 2**b``.
* Zeros after the last nonzero are not stored: the shape says where the tensor ends.

References
----------
.. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
   Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*. (Section 2 and
   Figure 2: relative index and filler zero.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RelativeCSR", "count_fillers", "decode_relative_csr", "encode_relative_csr"]

MAX_INDEX_BITS = 16


def _check_index_bits(index_bits: int) -> int:
    if isinstance(index_bits, bool) or not isinstance(index_bits, (int, np.integer)):
        raise TypeError(f"index_bits must be an int, got {type(index_bits).__name__}")
    if not 1 <= index_bits <= MAX_INDEX_BITS:
        raise ValueError(f"index_bits must lie in 1 .. {MAX_INDEX_BITS}, got {index_bits}")
    return int(index_bits)


@dataclass(frozen=True)
class RelativeCSR:
    """A tensor stored as relative-index sparse entries with filler zeros.

    Attributes
    ----------
    shape : tuple of int
        Shape of the dense tensor (any number of dimensions, flattened in C order).
    index_bits : int
        Width ``b`` of a stored gap; every gap lies in ``0 .. 2**b - 1``.
    gaps : ndarray (m,), uint16
        Zeros skipped before each stored entry (``m`` = nonzeros + fillers).
    values : ndarray (m,)
        Stored values, 0 at the fillers; the dtype of the encoded tensor.
    """

    shape: tuple[int, ...]
    index_bits: int
    gaps: np.ndarray
    values: np.ndarray

    @property
    def n_entries(self) -> int:
        """Stored entries ``m``: the nonzeros plus the filler zeros."""
        return int(self.gaps.size)

    @property
    def nnz(self) -> int:
        """Number of nonzero values."""
        return int(np.count_nonzero(self.values))

    @property
    def n_fillers(self) -> int:
        """Entries stored only to bridge a gap too wide for ``index_bits`` (value 0)."""
        return self.n_entries - self.nnz

    def positions(self) -> np.ndarray:
        """Flat (C-order) position of every stored entry, shape (m,), int64."""
        return np.cumsum(self.gaps.astype(np.int64) + 1) - 1

    def to_dense(self) -> np.ndarray:
        """The dense tensor, shape :attr:`shape`."""
        return decode_relative_csr(self)

    def row_pointers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Classic CSR ``(indptr, indices, data)`` of the tensor seen as (shape[0], rest).

        Fillers are left out, so the arrays equal ``scipy.sparse.csr_matrix(W.reshape(n, -1))``
        (of a matrix without explicit zeros): ``indptr`` (n_rows + 1,), ``indices`` and
        ``data`` (nnz,).
        """
        if len(self.shape) >= 2:
            n_rows, n_cols = self.shape[0], int(np.prod(self.shape[1:], dtype=np.int64))
        else:
            n_rows, n_cols = 1, int(np.prod(self.shape, dtype=np.int64))
        pos = self.positions()
        keep = self.values != 0
        pos, data = pos[keep], self.values[keep]
        rows = pos // max(n_cols, 1)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_rows))))
        return indptr.astype(np.int64), (pos % max(n_cols, 1)).astype(np.int64), data

    def nbytes(self, value_bits: int | None = None) -> int:
        """Bytes of gaps and values packed at ``index_bits`` and ``value_bits`` per entry.

        ``value_bits`` defaults to the values' own width (32 for float32). The count is
        ``ceil(m * index_bits / 8) + ceil(m * value_bits / 8)``.
        """
        vb = self.values.dtype.itemsize * 8 if value_bits is None else int(value_bits)
        m = self.n_entries
        return -(-m * self.index_bits // 8) + -(-m * vb // 8)


def count_fillers(positions: np.ndarray, index_bits: int) -> int:
    """Filler zeros needed to store entries at sorted flat ``positions`` with ``index_bits``.

    Parameters
    ----------
    positions : ndarray (a,) of int
        Strictly increasing flat positions of the nonzeros.
    index_bits : int
        Width ``b`` of a stored gap.

    Returns
    -------
    n : int
        :math:`\\sum_i \\lfloor g_i / 2^b \\rfloor` with :math:`g_i = p_i - p_{i-1} - 1`,
        :math:`p_{-1} = -1`.
    """
    b = _check_index_bits(index_bits)
    p = np.asarray(positions, dtype=np.int64).ravel()
    if p.size and (p[0] < 0 or (np.diff(p) <= 0).any()):
        raise ValueError("positions must be non-negative and strictly increasing")
    gaps = np.diff(p, prepend=-1) - 1
    return int((gaps >> b).sum())


def encode_relative_csr(weight: np.ndarray, index_bits: int = 5) -> RelativeCSR:
    """Store the nonzeros of ``weight`` with ``index_bits``-bit relative indices.

    Parameters
    ----------
    weight : ndarray, any shape
        E.g. a pruned weight (out_features, in_features) or (C_out, C_in, kH, kW); any dtype
        (float weights, or integer codebook indices with 0 meaning "no entry").
    index_bits : int in 1 .. 16
        Width of a stored gap (Deep Compression: 5 for fully connected layers, 8 for
        convolutions; EIE uses 4).

    Returns
    -------
    csr : RelativeCSR
        Gaps (uint16) and values, fillers included.

    Notes
    -----
    With nonzeros at flat positions :math:`p_0 < p_1 < \\dots` and gaps
    :math:`g_i = p_i - p_{i-1} - 1`, entry :math:`i` is preceded by
    :math:`f_i = \\lfloor g_i / 2^b \\rfloor` fillers (stored gap :math:`2^b - 1`, value 0) and
    stores the gap :math:`g_i - 2^b f_i`. Storage: :math:`(a + \\sum_i f_i)(b + \\text{value
    bits})` bits for :math:`a` nonzeros, against :math:`2a + n + 1` numbers for plain CSR.
    Built without a Python loop: the output slot of nonzero ``i`` is
    :math:`i + \\sum_{j \\le i} f_j`. A value of ``-0.0`` counts as zero.

    References
    ----------
    .. [1] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.

    See chapter 6 of the book, "Sparse storage".

    Examples
    --------
    >>> w = np.zeros(20); w[[1, 4, 15]] = [3.4, 0.9, 1.7]
    >>> csr = encode_relative_csr(w, index_bits=3)
    >>> csr.gaps.tolist(), csr.values.tolist()
    ([1, 2, 7, 2], [3.4, 0.9, 0.0, 1.7])
    """
    b = _check_index_bits(index_bits)
    w = np.asarray(weight)
    if not (np.issubdtype(w.dtype, np.number) and not np.issubdtype(w.dtype, np.complexfloating)):
        raise TypeError(f"weight must be a real numeric array, got dtype {w.dtype}")
    flat = w.ravel()
    pos = np.flatnonzero(flat)
    gaps = np.diff(pos, prepend=-1) - 1
    fill = gaps >> b
    slot = np.arange(pos.size) + np.cumsum(fill)
    m = int(pos.size + fill.sum())
    out_gaps = np.full(m, (1 << b) - 1, dtype=np.uint16)
    out_vals = np.zeros(m, dtype=w.dtype)
    out_gaps[slot] = gaps - (fill << b)
    out_vals[slot] = flat[pos]
    return RelativeCSR(tuple(int(s) for s in w.shape), b, out_gaps, out_vals)


def decode_relative_csr(csr: RelativeCSR) -> np.ndarray:
    """The dense tensor of a :class:`RelativeCSR` (inverse of :func:`encode_relative_csr`).

    Raises ``TypeError`` for gaps that are not integers (floats were truncated) and
    ``ValueError`` if a gap is negative or too wide for ``index_bits``, or an entry falls
    outside the shape.
    """
    if not isinstance(csr, RelativeCSR):
        raise TypeError(f"csr must be a RelativeCSR, got {type(csr).__name__}")
    b = _check_index_bits(csr.index_bits)
    size = int(np.prod(csr.shape, dtype=np.int64))
    gaps = np.asarray(csr.gaps)
    if gaps.shape != np.shape(csr.values) or gaps.ndim != 1:
        raise ValueError("gaps and values must be 1-D arrays of the same length")
    if gaps.size and (gaps.dtype == bool or not np.issubdtype(gaps.dtype, np.integer)):
        raise TypeError(f"gaps must be an integer array, got dtype {gaps.dtype}")
    if gaps.size and int(gaps.min()) < 0:  # a negative gap moved entries backwards
        raise ValueError(f"gaps must be >= 0, got {int(gaps.min())}")
    if gaps.size and int(gaps.max()) >= 1 << b:
        raise ValueError(f"a gap of {int(gaps.max())} does not fit in index_bits={b}")
    pos = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if pos.size and pos[-1] >= size:
        raise ValueError(f"entries reach position {int(pos[-1])} of a tensor of size {size}")
    dense = np.zeros(size, dtype=np.asarray(csr.values).dtype)
    dense[pos] = csr.values
    return dense.reshape(csr.shape)
