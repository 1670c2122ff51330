r"""Huffman coding (Huffman 1952) with canonical codes and a vectorized, checked bitstream.

Deep Compression's third stage [2]_ codes the cluster indices and the relative sparse indices of
each layer with a Huffman code: frequent symbols get short codewords, so the mean number of bits
per symbol falls from the fixed width (e.g. 5) towards the entropy of their distribution.
See chapter 6 of the book, "Huffman coding".

* :func:`huffman_code_lengths` and :func:`huffman_code` build an optimal prefix code from symbol
  counts (the classic merge of the two lightest trees, with a binary heap, ties broken by a fixed
  rule so the code is deterministic); :func:`canonical_code` turns code lengths into *canonical*
  codewords, so that the code is fully described by its lengths (as in DEFLATE and JPEG).
* :func:`huffman_encode` writes a self-describing stream (the code travels with the data) and
  :func:`huffman_decode` reads it back. Both are vectorized NumPy: no Python loop runs per symbol.

Stream format (version 2)
-------------------------
All integers little-endian; the payload is a big-endian bit string (first codeword in the most
significant bit of the first byte), padded with zero bits to whole bytes.

==========  ===================  =============================================================
offset      type                 field
==========  ===================  =============================================================
0           4 bytes              magic ``b"RHUF"``
4           uint8                version (2)
5           uint8                flags: bit 0 set = *dense* table (symbols are 0 .. T-1)
6           uint8                symbol width in bytes ``w`` (1, 2, 4 or 8)
7           uint8                longest code length ``max_len`` (1 .. 57; 0 if ``n = 0``)
8           uint8                width in bits of one sync-index entry ``iw`` (0 for one block,
                                 else 1 .. bit length of ``B * max_len``)
9           uint64               number of symbols ``n`` (at most ``P``)
17          uint32               table size ``T``
21          uint32               block size ``B`` (symbols per sync block, 1 ..
                                 :func:`max_block_size` ``(n)``)
25          uint64               payload length in bits ``P``
33          T x uint8            code length of each table symbol (0 = absent, dense only)
..          T x ``w`` bytes      the symbols, strictly increasing (sparse table only)
..          ceil((K-1) iw / 8)   sync index: bit length of blocks 0 .. K-2, ``K = ceil(n / B)``,
                                 packed big-endian at ``iw`` bits each
..          ceil(P / 8)          payload: the codewords of the ``n`` symbols, back to back
end - 4     uint32               CRC-32 (zlib) of every preceding byte
==========  ===================  =============================================================

The code itself is the canonical code of the stored lengths (:func:`canonical_code`): a decoder
rebuilds every codeword from the lengths alone. Every codeword is at least one bit long, so a
stream can never announce more symbols than its payload has bits: a single distinct symbol,
whose optimal code is the empty codeword (:func:`huffman_code`), is written with the one-bit
codeword ``0`` (version 1 gave it zero bits, and a 38-byte stream could then announce
``2**31`` symbols). The *sync index* is our
addition, not part of Huffman's method: it records where every ``B``-th codeword starts, which
costs about ``iw / (B * mean length)`` of the payload (about 0.3% with the default ``B``)
and lets the decoder run the ``K`` blocks side by side as lanes of one NumPy array; a lane that
does not end exactly where the next one starts proves the stream corrupt. The decoder takes one
(vectorized) step per symbol of a block, so ``B`` is bounded by what the encoder ever writes,
:func:`max_block_size` ``(n)`` = ``min(65536, max(4096, about 2 sqrt(n)))``: the number of
steps then grows like :math:`\sqrt n`, never like ``n`` (a version-1 stream of 125 KB with one
block of ``2**32 - 1`` symbols took a million steps).

References
----------
.. [1] Huffman, D. A. (1952). A Method for the Construction of Minimum-Redundancy Codes.
   *Proceedings of the IRE* 40(9), 1098-1101.
.. [2] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
   Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.
.. [3] Deutsch, P. (1996). DEFLATE Compressed Data Format Specification version 1.3. RFC 1951,
   section 3.2.2 (canonical Huffman codes).
"""

from __future__ import annotations

import heapq
import math
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "HUFFMAN_MAGIC",
    "HUFFMAN_VERSION",
    "canonical_code",
    "huffman_code",
    "huffman_code_lengths",
    "huffman_decode",
    "huffman_encode",
    "max_block_size",
]

HUFFMAN_MAGIC = b"RHUF"
HUFFMAN_VERSION = 2
_HEADER = struct.Struct("<4sBBBBBQIIQ")
_CRC = struct.Struct("<I")
_FLAG_DENSE = 1
#: Longest codeword the bit reader handles (a 64-bit window shifted by up to 7 bits).
MAX_CODE_LENGTH = 57
#: Width of the decoder's direct lookup table; longer codewords take a slower, still vectorized
#: path (canonical-code comparison by ``searchsorted``).
_LUT_BITS = 14
_CHUNK = 1 << 20  # symbols packed per vectorized pass (bounds the encoder's temporary memory)
#: Largest sync block the encoder writes and the decoder accepts (see :func:`max_block_size`).
MAX_BLOCK = 65536
_UNPACK_CHUNK = 1 << 16  # values unpacked per vectorized pass (bounds the temporary memory)


def max_block_size(n: int) -> int:
    """The largest sync block (symbols per block) a stream of ``n`` symbols may have.

    ``min(65536, max(4096, P))`` with ``P`` the power of two above ``isqrt(n) + 1`` (so about
    :math:`2\\sqrt n`): at least the block :func:`huffman_encode` picks by itself for any ``n``.
    The decoder takes one step per symbol of a block, so this bounds its work by
    :math:`O(\\sqrt n)` steps for ``n`` symbols.
    """
    return min(MAX_BLOCK, max(4096, 1 << (math.isqrt(max(int(n), 0)) + 1).bit_length()))


# -- the code -----------------------------------------------------------------------------------
def _counts_items(counts: Any) -> tuple[np.ndarray, list[int]]:
    """``(symbols, weights)`` of the symbols with a positive count, symbols increasing."""
    if isinstance(counts, Mapping):
        items = []
        for s, c in counts.items():
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"counts: symbols must be non-negative ints, got {s!r}")
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                raise ValueError(f"counts: counts must be non-negative ints, got {c!r} for {s}")
            if c:
                items.append((int(s), int(c)))
        items.sort()
        syms = np.array([s for s, _ in items], dtype=np.uint64)
        return syms, [c for _, c in items]
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(
            f"counts must be a mapping or a 1-D array of counts, got shape {arr.shape}"
        )
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"counts must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("counts must be >= 0")
    present = np.flatnonzero(arr)
    return present.astype(np.uint64), [int(c) for c in arr[present].tolist()]


def _lengths_from_weights(weights: list[int]) -> np.ndarray:
    """Huffman code lengths of positive ``weights`` (leaves in the given order).

    Repeatedly merges the two lightest trees, taken from a binary heap of ``(weight, id)``
    pairs: leaves have ids ``0 .. n-1`` in the given order and merged trees get ``n, n+1, ...``
    in order of creation, so equal weights are resolved the same way on every run.
    """
    n = len(weights)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    heap = [(w, i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    node = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (w1 + w2, node))
        node += 1
    depth = [0] * (2 * n - 1)  # the root (id 2n-2) has depth 0; parents have larger ids
    for i in range(2 * n - 3, -1, -1):
        depth[i] = depth[parent[i]] + 1
    return np.array(depth[:n], dtype=np.int64)


def huffman_code_lengths(counts: Mapping[int, int] | np.ndarray | list[int]) -> dict[int, int]:
    """Length of each symbol's codeword in an optimal (Huffman) prefix code.

    Parameters
    ----------
    counts : mapping of int to int, or 1-D array-like of int (n_symbols,)
        How often each symbol occurs: ``{symbol: count}`` or ``counts[symbol]``. Symbols are
        non-negative integers; symbols with count 0 get no codeword.

    Returns
    -------
    lengths : dict of int to int
        ``{symbol: length}`` for the symbols with a positive count, in increasing symbol order.
        A single symbol gets length 0 (the empty codeword); no symbol gives ``{}``.

    Notes
    -----
    Huffman's algorithm [1]_ merges the two least frequent trees until one is left; a symbol's
    length is its depth. The result minimises the total length :math:`\\sum_s c_s \\ell_s` over
    all prefix codes, so with :math:`p_s = c_s / \\sum c` the mean length
    :math:`\\bar\\ell = \\sum_s p_s \\ell_s` satisfies :math:`H(p) \\le \\bar\\ell < H(p) + 1`.
    Ties are broken by symbol order (a merged tree ranks after all trees made before it).

    References
    ----------
    .. [1] Huffman, D. A. (1952). A Method for the Construction of Minimum-Redundancy Codes.
       *Proceedings of the IRE* 40(9), 1098-1101.

    See chapter 6 of the book, "Huffman coding".

    Examples
    --------
    >>> huffman_code_lengths({0: 5, 1: 2, 2: 1, 3: 1})
    {0: 1, 1: 2, 2: 3, 3: 3}
    """
    syms, weights = _counts_items(counts)
    lengths = _lengths_from_weights(weights)
    return {int(s): int(n) for s, n in zip(syms.tolist(), lengths.tolist(), strict=True)}


def _canonical(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical codes for ``lengths`` (given in symbol order, all >= 1).

    Returns ``(order, codes, first_code)``: ``order`` sorts the symbols by (length, symbol),
    ``codes[i]`` is the codeword (as an integer) of the i-th symbol in symbol order, and
    ``first_code[L]`` is the first codeword of length ``L`` (RFC 1951, 3.2.2).
    """
    max_len = int(lengths.max()) if lengths.size else 0
    bl_count = np.bincount(lengths, minlength=max_len + 1).astype(np.int64)
    bl_count[0] = 0
    first_code = np.zeros(max_len + 2, dtype=np.uint64)
    code = 0
    for bits in range(1, max_len + 1):
        code = (code + int(bl_count[bits - 1])) << 1
        first_code[bits] = code
    order = np.lexsort((np.arange(lengths.size), lengths))
    first_index = np.concatenate(([0], np.cumsum(bl_count)))[:-1]  # symbols shorter than L
    rank = np.empty(lengths.size, dtype=np.int64)
    rank[order] = np.arange(lengths.size) - first_index[lengths[order]]
    codes = first_code[lengths] + rank.astype(np.uint64)
    return order, codes, first_code


def canonical_code(lengths: Mapping[int, int]) -> dict[int, str]:
    """Canonical prefix code with the given codeword lengths.

    Parameters
    ----------
    lengths : mapping of int to int
        ``{symbol: length}``; the lengths must satisfy Kraft's inequality
        :math:`\\sum_s 2^{-\\ell_s} \\le 1`. A single symbol may have length 0.

    Returns
    -------
    code : dict of int to str
        ``{symbol: codeword}`` with codewords as strings of ``"0"``/``"1"``, in symbol order.

    Notes
    -----
    Codewords of equal length are consecutive binary numbers in symbol order, and every
    codeword of length :math:`\\ell` is numerically below every longer one cut to :math:`\\ell`
    bits (RFC 1951, 3.2.2). So the lengths alone determine the code, which is how
    :func:`huffman_encode` ships it.
    """
    items = sorted((int(s), int(n)) for s, n in lengths.items())
    if not items:
        return {}
    syms = [s for s, _ in items]
    lens = np.array([n for _, n in items], dtype=np.int64)
    if len(items) == 1 and lens[0] == 0:
        return {syms[0]: ""}
    if lens.min() < 1 or lens.max() > 64:
        raise ValueError("lengths must lie in 1 .. 64 (0 only for a single symbol)")
    if sum(2 ** (64 - int(n)) for n in lens) > 2**64:
        raise ValueError("lengths violate Kraft's inequality: no prefix code has them")
    _, codes, _ = _canonical(lens)
    return {
        s: format(int(c), f"0{int(n)}b") for s, c, n in zip(syms, codes.tolist(), lens.tolist(),
                                                              strict=True)
    }


def huffman_code(counts: Mapping[int, int] | np.ndarray | list[int]) -> dict[int, str]:
    """An optimal prefix code for symbols with the given counts (canonical Huffman code).

    Parameters
    ----------
    counts : mapping of int to int, or 1-D array-like of int (n_symbols,)
        ``{symbol: count}`` or ``counts[symbol]``; symbols with count 0 get no codeword.

    Returns
    -------
    code : dict of int to str
        ``{symbol: codeword}``, codewords as bit strings, in increasing symbol order. One
        symbol gets the empty codeword ``""``; no symbol gives ``{}``.

    Notes
    -----
    The lengths come from Huffman's algorithm (:func:`huffman_code_lengths`) and the codewords
    from :func:`canonical_code`; the code is prefix-free and its total length
    :math:`\\sum_s c_s \\ell_s` is the least of all prefix codes, with mean
    :math:`H \\le \\bar\\ell < H + 1` bits per symbol [1]_.

    References
    ----------
    .. [1] Huffman, D. A. (1952). A Method for the Construction of Minimum-Redundancy Codes.
       *Proceedings of the IRE* 40(9), 1098-1101.

    See chapter 6 of the book, "Huffman coding".

    Examples
    --------
    >>> huffman_code({0: 5, 1: 2, 2: 1, 3: 1})
    {0: '0', 1: '10', 2: '110', 3: '111'}
    """
    return canonical_code(huffman_code_lengths(counts))


# -- symbols and bits ---------------------------------------------------------------------------
def _as_symbols(symbols: Any) -> np.ndarray:
    """Flatten ``symbols`` to a 1-D unsigned array after checking them."""
    arr = np.asarray(symbols)
    if not isinstance(symbols, np.ndarray) and arr.dtype.kind not in "iub":
        # Python ints beyond int64 make NumPy choose float64 or object: convert them exactly
        items = np.asarray(symbols, dtype=object).ravel().tolist()
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            if any(v < 0 for v in items):
                raise ValueError(f"symbols must be >= 0, got {min(items)}")
            if any(v >= 2**64 for v in items):
                raise ValueError(f"symbols must be < 2**64, got {max(items)}")
            arr = np.array(items, dtype=np.uint64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"symbols must be non-negative integers, got dtype {arr.dtype}")
    arr = arr.ravel()
    if np.issubdtype(arr.dtype, np.signedinteger):
        if arr.min() < 0:
            raise ValueError(f"symbols must be >= 0, got {int(arr.min())}")
        arr = arr.astype(np.dtype(arr.dtype.str.replace("i", "u")))
    return arr


def _symbol_bytes(max_symbol: int) -> int:
    for w in (1, 2, 4):
        if max_symbol < 1 << (8 * w):
            return w
    return 8


def _pack_fixed(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned ``values`` at ``width`` bits each, big-endian bit order."""
    if values.size == 0 or width == 0:
        return b""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def _unpack_fixed(data: bytes | np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`_pack_fixed`: ``count`` values of ``width`` bits, as uint64.

    ``data`` must hold at least ``ceil(count * width / 8)`` bytes (``ValueError`` otherwise).
    Each value is cut from the 64-bit big-endian word at its first byte (two words for widths
    above 57), ``_UNPACK_CHUNK`` values at a time: the temporary memory stays a few MB
    whatever ``count`` is, and the result takes 8 bytes per value.
    """
    if count == 0 or width == 0:
        return np.zeros(count, dtype=np.uint64)
    if not 1 <= width <= 64:
        raise ValueError(f"width must lie in 1 .. 64, got {width}")
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    need = (count * width + 7) // 8
    if raw.size < need:
        raise ValueError(f"{count} values of {width} bits need {need} bytes, got {raw.size}")
    buf = np.concatenate((raw[:need], np.zeros(16, dtype=np.uint8)))
    win = np.ndarray((buf.size - 7,), dtype=">u8", buffer=buf, strides=(1,))  # a view
    out = np.empty(count, dtype=np.uint64)
    w64 = np.uint64(width)
    for start in range(0, count, _UNPACK_CHUNK):
        off = np.arange(start, min(count, start + _UNPACK_CHUNK), dtype=np.uint64) * w64
        byte = (off >> np.uint64(3)).astype(np.intp)
        shift = off & np.uint64(7)
        hi = win[byte].astype(np.uint64) << shift  # the value's first 64 - shift bits, on top
        if width > 57:  # the value may reach into a ninth byte: take its bits from there
            hi |= win[byte + 8].astype(np.uint64) >> (np.uint64(64) - shift) & (
                np.uint64(0) - (shift > 0).astype(np.uint64))
        out[start : start + off.size] = hi >> np.uint64(64 - width)
    return out


def _pack_codes(
    code_tab: np.ndarray, len_tab: np.ndarray, key: np.ndarray, total_bits: int
) -> bytes:
    """Concatenate the codewords of symbols ``key`` into a big-endian bit string.

    ``code_tab[key]`` and ``len_tab[key]`` (uint64) give each symbol's codeword and length.
    Neighbouring codewords are first merged pairwise (``(c1 << l2) | c2``, lengths added) while
    every merged item still fits in 64 bits, which divides the work of the next step by 2, 4 or
    8. An item of at most 64 bits starting at bit ``r`` of a 64-bit word touches that word and
    perhaps the next: shifted into place, its high part is OR-ed into the first and its low
    part into the second. No two items share a bit, so the order of the ORs does not matter.
    """
    words = np.zeros(total_bits // 64 + 2, dtype=np.uint64)
    c64, c63 = np.uint64(64), np.uint64(63)
    base = 0
    for start in range(0, key.size, _CHUNK):
        k = key[start : start + _CHUNK]
        c = code_tab[k]
        ln = len_tab[k]
        while c.size > 1 and int(ln.max()) <= 32:  # merge neighbours pairwise
            if c.size % 2:
                c = np.append(c, np.uint64(0))
                ln = np.append(ln, np.uint64(0))
            l2 = ln[1::2]
            c = (c[0::2] << l2) | c[1::2]
            ln = ln[0::2] + l2
        ends = np.cumsum(ln)
        offs = ends - ln + np.uint64(base)
        base += int(ends[-1])
        w = (offs >> np.uint64(6)).view(np.int64)
        e = (offs & c63) + ln  # end of the item, in bits from the start of word w (<= 127)
        e_in = np.minimum(e, c64)
        hi = (c << (c64 - e_in)) >> (e - e_in)
        lo = c << (np.uint64(128) - e)  # a shift of 64 or more gives 0: nothing spills over
        np.bitwise_or.at(words, w, hi)
        np.bitwise_or.at(words, w + 1, lo)
    return words.astype(">u8").tobytes()[: (total_bits + 7) // 8]


def _auto_block_size(n: int, total_bits: int) -> int:
    """Symbols per sync block: a power of two of at least sqrt(n) symbols and about 4096
    payload bits (so the index stays near 0.3% of the payload), within 512 .. 65536."""
    if n <= 1 or total_bits == 0:
        return max(n, 1)
    target = max(np.sqrt(n), 4096 * n / total_bits)
    return int(np.clip(2 ** int(np.ceil(np.log2(target))), 512, 65536))


# -- encode -------------------------------------------------------------------------------------
def huffman_encode(symbols: Any, *, block_size: int | None = None) -> bytes:
    """Huffman-code a sequence of non-negative integers into a self-describing byte string.

    Parameters
    ----------
    symbols : array-like of int, any shape (flattened in C order)
        The data, e.g. the cluster indices of a layer; values in ``0 .. 2**64 - 1``.
    block_size : int, optional
        Symbols per sync block (see the module docstring), in ``1 ..``
        :func:`max_block_size` ``(n)``. The default is a power of two in 512 .. 65536 of at
        least ``sqrt(n)`` symbols and about 4096 payload bits, so that the index costs about
        0.3% of the payload.

    Returns
    -------
    data : bytes
        The stream: header, code lengths table, sync index, payload and CRC-32, laid out as in
        the module docstring. :func:`huffman_decode` inverts it.

    Notes
    -----
    The code is the canonical Huffman code of the symbols' own counts, so the payload holds
    :math:`\\sum_s c_s \\ell_s` bits, the least any prefix code needs. Encoding is vectorized:
    codeword and length of every symbol come from lookup tables, the bit offsets from a
    cumulative sum, and the bits are merged 32 at a time (see ``_pack_codes``).

    References
    ----------
    .. [1] Huffman, D. A. (1952). A Method for the Construction of Minimum-Redundancy Codes.
       *Proceedings of the IRE* 40(9), 1098-1101.
    .. [2] Han, S., Mao, H. and Dally, W. J. (2016). Deep Compression: Compressing Deep Neural
       Networks with Pruning, Trained Quantization and Huffman Coding. *ICLR*.

    See chapter 6 of the book, "Huffman coding".

    Examples
    --------
    >>> data = huffman_encode([3, 3, 3, 1, 0, 3])
    >>> huffman_decode(data).tolist()
    [3, 3, 3, 1, 0, 3]
    """
    arr = _as_symbols(symbols)
    if block_size is None:
        block = 0  # chosen once the payload length is known
    else:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
            raise TypeError(f"block_size must be an int, got {type(block_size).__name__}")
        limit = max_block_size(arr.size)
        if not 1 <= block_size <= limit:
            raise ValueError(
                f"block_size must lie in 1 .. {limit} for {arr.size} symbols (see "
                f"max_block_size), got {block_size}"
            )
        block = int(block_size)
    return _encode(arr, block)


def _encode(arr: np.ndarray, block: int = 0, lengths: np.ndarray | None = None) -> bytes:
    """Write the stream of the 1-D unsigned ``arr``; ``lengths`` (one per distinct symbol, in
    increasing symbol order, a complete prefix code) replaces the Huffman lengths (tests only);
    ``block = 0`` picks the block size automatically.
    """
    n = int(arr.size)
    max_symbol = int(arr.max()) if n else 0
    width = _symbol_bytes(max_symbol)
    # counts: a direct bincount for small symbol values, a sort otherwise
    if max_symbol < 1 << 20:
        full = np.bincount(arr.astype(np.intp), minlength=1) if n else np.zeros(1, np.int64)
        present = np.flatnonzero(full)
        pcounts = full[present]
        key = arr  # indexes the per-symbol tables directly
        slot, table_of = present, full.size
    else:
        present, key, pcounts = np.unique(arr, return_inverse=True, return_counts=True)
        key = key.ravel()
        slot, table_of = np.arange(present.size), present.size
    if lengths is None:
        lengths = _lengths_from_weights([int(c) for c in pcounts.tolist()])
        if lengths.size == 1:  # a lone symbol: one bit each, so n never exceeds the payload bits
            lengths = np.ones(1, dtype=np.int64)
    max_len = int(lengths.max()) if lengths.size else 0
    if max_len > MAX_CODE_LENGTH:
        raise ValueError(
            f"the Huffman code needs {max_len}-bit codewords; this format allows at most "
            f"{MAX_CODE_LENGTH} (only extremely skewed counts over 2**40 symbols get there)"
        )
    # per-symbol tables of length and codeword
    len_tab = np.zeros(table_of, dtype=np.uint64)
    code_tab = np.zeros(table_of, dtype=np.uint64)
    len_tab[slot] = lengths
    if max_len > 0:
        code_tab[slot] = _canonical(lengths)[1]
    total_bits = int((pcounts.astype(np.int64) * lengths).sum()) if n else 0
    if block == 0:
        block = _auto_block_size(n, total_bits)
    # the payload and the sync index (bit length of each block but the last)
    n_blocks = -(-n // block) if n else 0
    index_width, index, payload = 0, b"", b""
    if max_len > 0:
        payload = _pack_codes(code_tab, len_tab, key, total_bits)
        if n_blocks > 1:
            sym_len = len_tab.astype(np.uint8)[key]
            starts = np.arange(0, n, block)
            block_bits = np.add.reduceat(sym_len, starts, dtype=np.uint64)[:-1]
            index_width = int(block_bits.max()).bit_length()
            index = _pack_fixed(block_bits, index_width)
    # the code lengths table: dense (lengths of 0 .. T-1) or sparse (symbol list)
    psyms = present.astype(np.uint64)
    dense_size = max_symbol + 1 if n else 0
    if dense_size <= present.size * (1 + width):
        flags, table_size = _FLAG_DENSE, dense_size
        tab = np.zeros(table_size, dtype=np.uint8)
        tab[psyms.astype(np.intp)] = lengths
        table = tab.tobytes()
    else:
        flags, table_size = 0, int(present.size)
        table = lengths.astype(np.uint8).tobytes() + psyms.astype(f"<u{width}").tobytes()
    header = _HEADER.pack(
        HUFFMAN_MAGIC, HUFFMAN_VERSION, flags, width, max_len, index_width,
        n, table_size, block, total_bits,
    )
    body = b"".join((header, table, index, payload))
    return body + _CRC.pack(zlib.crc32(body))


# -- decode -------------------------------------------------------------------------------------
def _corrupt(msg: str) -> ValueError:
    return ValueError(f"corrupt Huffman stream: {msg}")


def huffman_decode(
    data: bytes | bytearray | memoryview, *, max_symbols: int | None = None
) -> np.ndarray:
    """Decode a stream written by :func:`huffman_encode`.

    Parameters
    ----------
    data : bytes-like
        The whole stream (and nothing after it).
    max_symbols : int, optional
        Refuse a stream that announces more symbols than this, before decoding anything (a
        container that knows how many symbols it expects passes that count).

    Returns
    -------
    symbols : ndarray (n,)
        The encoded symbols in order, as the narrowest unsigned dtype that held them
        (``uint8``, ``uint16``, ``uint32`` or ``uint64``).

    Raises
    ------
    ValueError
        If the stream is truncated, has trailing bytes, another magic or version, fails its
        CRC-32, or is inconsistent (lengths that are not a complete prefix code, a sync block
        that does not end where the next begins, more symbols than payload bits, a block
        larger than :func:`max_block_size`, ...). A damaged stream never decodes silently,
        and nothing is allocated from a count the stream's bytes cannot back: the output
        takes at most ``8 * len(data)`` symbols.

    Notes
    -----
    The decoder reads the ``K`` sync blocks as ``K`` lanes at once: in each step every lane
    takes the next :math:`t` bits at its position (a 64-bit big-endian word read at the byte,
    shifted by the bit), looks up symbol and length in a table of :math:`2^t` entries built from
    the canonical code (:math:`t = \\min(\\ell_{max}, 14)`), and advances by that length.
    Codewords longer than :math:`t` bits are found by comparing the window with the canonical
    code's limits (``searchsorted``). ``min(B, n)`` steps decode all ``n`` symbols, and ``B``
    is at most :func:`max_block_size` ``(n)``, about :math:`2\\sqrt n`.

    See chapter 6 of the book, "Huffman coding".
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + _CRC.size:
        raise _corrupt(f"{len(data)} bytes is shorter than the {_HEADER.size + 4}-byte minimum")
    if data[:4] != HUFFMAN_MAGIC:
        raise _corrupt(f"bad magic {data[:4]!r} (expected {HUFFMAN_MAGIC!r})")
    (_, version, flags, width, max_len, index_width, n, table_size, block,
     total_bits) = _HEADER.unpack_from(data)
    if version != HUFFMAN_VERSION:
        raise ValueError(f"Huffman stream version {version}; this reader reads {HUFFMAN_VERSION}")
    if max_symbols is not None and n > max_symbols:
        raise _corrupt(f"{n} symbols where at most {max_symbols} are expected")
    if n > total_bits:  # every codeword has at least one bit
        raise _corrupt(f"{n} symbols cannot fit in {total_bits} payload bits")
    if not 1 <= block <= max_block_size(n):
        raise _corrupt(f"block size {block} for {n} symbols (at most {max_block_size(n)})")
    dense = bool(flags & _FLAG_DENSE)
    table_bytes = table_size * (1 if dense else 1 + width)
    n_blocks = -(-n // block) if n else 0
    index_bytes = ((n_blocks - 1) * index_width + 7) // 8 if n_blocks > 1 else 0
    payload_bytes = (total_bits + 7) // 8
    expected = _HEADER.size + table_bytes + index_bytes + payload_bytes + 4
    if len(data) != expected:
        raise _corrupt(f"{len(data)} bytes where the header announces {expected}")
    (crc,) = _CRC.unpack_from(data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise _corrupt("CRC-32 mismatch (the stream was altered)")
    if flags & ~_FLAG_DENSE or width not in (1, 2, 4, 8):
        raise _corrupt(f"unknown flags {flags} or symbol width {width}")
    if max_len > MAX_CODE_LENGTH or (n > 0) != (max_len > 0):
        raise _corrupt(f"max_len={max_len} for {n} symbols")
    if n_blocks > 1 and not 1 <= index_width <= (block * max_len).bit_length():
        raise _corrupt(f"index width {index_width} for blocks of {block} symbols")
    if n_blocks <= 1 and index_width:
        raise _corrupt(f"index width {index_width} for a single block")
    pos = _HEADER.size
    tab = np.frombuffer(data, dtype=np.uint8, count=table_size, offset=pos).astype(np.int64)
    pos += table_size
    if dense:
        syms = np.flatnonzero(tab).astype(np.uint64)
        lengths = tab[tab > 0]
    else:
        syms = np.frombuffer(data, dtype=f"<u{width}", count=table_size, offset=pos)
        syms = syms.astype(np.uint64)
        lengths = tab
        pos += table_size * width
        if table_size > 1 and not (np.diff(syms) > 0).all():
            raise _corrupt("table symbols are not strictly increasing")
    out_dtype = np.dtype(f"u{width}")
    if syms.size and int(syms.max()) >= 1 << (8 * width):
        raise _corrupt("a symbol exceeds the declared width")
    index_raw = np.frombuffer(data, dtype=np.uint8, count=index_bytes, offset=pos)
    pos += index_bytes
    payload = np.frombuffer(data, dtype=np.uint8, count=payload_bytes, offset=pos)
    # the code
    if n == 0:
        if syms.size or total_bits:
            raise _corrupt("an empty stream with a code table or payload")
        return np.zeros(0, dtype=out_dtype)
    if syms.size == 0:
        raise _corrupt(f"{n} symbols but an empty code table")
    if syms.size == 1:  # the one-bit codeword 0 for each symbol (the module docstring)
        if lengths[0] != 1 or max_len != 1 or total_bits != n or payload.any():
            raise _corrupt("a one-symbol code must have the codeword 0 and n zero bits")
        return np.full(n, syms[0], dtype=out_dtype)
    if lengths.min() < 1 or int(lengths.max()) != max_len:
        raise _corrupt("code lengths out of range")
    per_length = np.bincount(lengths, minlength=max_len + 1).tolist()
    kraft = sum(c << (max_len - ln) for ln, c in enumerate(per_length))  # exact Python ints
    if kraft != 1 << max_len:
        raise _corrupt("the code lengths do not form a complete prefix code")
    if not n * int(lengths.min()) <= total_bits <= n * max_len:
        raise _corrupt(f"{total_bits} payload bits cannot hold {n} codewords")
    if total_bits % 8 and payload[-1] & ((1 << (8 - total_bits % 8)) - 1):
        raise _corrupt("nonzero padding bits after the payload")
    return _decode_lanes(payload, syms, lengths, max_len, n, block, index_raw, index_width,
                         total_bits, out_dtype)


def _decode_lanes(
    payload: np.ndarray,
    syms: np.ndarray,
    lengths: np.ndarray,
    max_len: int,
    n: int,
    block: int,
    index_raw: np.ndarray,
    index_width: int,
    total_bits: int,
    out_dtype: np.dtype,
) -> np.ndarray:
    order, codes, first_code = _canonical(lengths)
    canon_syms = syms[order].astype(out_dtype)
    canon_len = lengths[order]
    # direct lookup table over t-bit prefixes: canonical codewords cut or extended to t bits are
    # increasing, so the table is each short codeword repeated 2**(t - len) times, in order
    t = min(max_len, _LUT_BITS)
    short = canon_len <= t
    reps = np.left_shift(1, t - canon_len[short])
    len_lut = np.zeros(1 << t, dtype=np.uint8)
    sym_lut = np.zeros(1 << t, dtype=out_dtype)
    filled = int(reps.sum())
    len_lut[:filled] = np.repeat(canon_len[short], reps)
    sym_lut[:filled] = np.repeat(canon_syms[short], reps)
    has_long = not short.all()
    if has_long:
        counts = np.bincount(lengths, minlength=max_len + 1)
        first_index = np.concatenate(([0], np.cumsum(counts)))[:-1].astype(np.uint64)
        lens = np.arange(1, max_len + 1, dtype=np.uint64)
        limits = (first_code[1 : max_len + 1] + counts[1:].astype(np.uint64)) << (
            np.uint64(max_len) - lens
        )
    # lanes: where each block starts
    n_blocks = -(-n // block)
    if n_blocks > 1:
        block_bits = _unpack_fixed(index_raw, n_blocks - 1, index_width).astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(block_bits)))
        if starts[-1] > total_bits:
            raise _corrupt("the sync index points past the payload")
    else:
        starts = np.zeros(1, dtype=np.int64)
    last_count = n - (n_blocks - 1) * block
    steps = block if n_blocks > 1 else n
    # a 64-bit big-endian window at every byte; padding covers any lane's furthest reach
    pad = (steps * max_len) // 8 + 16
    buf = np.concatenate((payload, np.zeros(pad, dtype=np.uint8)))
    win = np.ndarray((buf.size - 7,), dtype=">u8", buffer=buf, strides=(1,)).astype(np.uint64)
    pos = starts.astype(np.int64)
    out = np.empty((steps, n_blocks), dtype=out_dtype)
    down = np.uint64(64 - t)
    end_last = None
    for step in range(steps):
        w = win[pos >> 3] << (pos & 7).view(np.uint64)
        idx = (w >> down).view(np.int64)
        ln = len_lut[idx]
        np.take(sym_lut, idx, out=out[step])
        if has_long:
            miss = np.flatnonzero(ln == 0)
            if miss.size:
                full = w[miss] >> np.uint64(64 - max_len)
                L = np.searchsorted(limits, full, side="right").astype(np.uint64) + np.uint64(1)
                rank = (full >> (np.uint64(max_len) - L)) - first_code[L.astype(np.intp)]
                k = (first_index[L.astype(np.intp)] + rank).astype(np.intp)
                out[step, miss] = canon_syms[k]
                ln[miss] = L
        pos += ln
        if step + 1 == last_count:
            end_last = int(pos[-1])
    ends = pos
    if n_blocks > 1 and not np.array_equal(ends[:-1], starts[1:]):
        raise _corrupt("a sync block does not end where the next one starts")
    if end_last != total_bits:
        raise _corrupt("the codewords do not fill the payload exactly")
    return out.T.reshape(-1)[:n]
