"""Codecs: how the bytes of a compressed network are stored (chapter 6, "Deep Compression").

* Huffman coding with canonical codes and a checked, vectorized bitstream
  (:func:`huffman_code`, :func:`huffman_encode`, :func:`huffman_decode`).
* Sparse storage with relative indices and filler zeros (:func:`encode_relative_csr`).
* The compressed model file (:func:`save_compressed`, :func:`load_compressed`), which holds a
  pruned, weight-shared, quantized, Huffman-coded model together with its architecture, and
  :func:`encoded_tensor`, which sizes one tensor as the file stores it: the package's one size
  model, which :func:`refimpl.cost.profile` uses.
"""

from .container import (
    MAX_ELEMENTS,
    MODEL_MAGIC,
    MODEL_VERSION,
    TensorInfo,
    describe_compressed,
    dumps_compressed,
    encoded_tensor,
    load_compressed,
    loads_compressed,
    save_compressed,
)
from .huffman import (
    HUFFMAN_MAGIC,
    HUFFMAN_VERSION,
    canonical_code,
    huffman_code,
    huffman_code_lengths,
    huffman_decode,
    huffman_encode,
    max_block_size,
)
from .sparse import RelativeCSR, count_fillers, decode_relative_csr, encode_relative_csr

__all__ = [
    "HUFFMAN_MAGIC",
    "HUFFMAN_VERSION",
    "MAX_ELEMENTS",
    "MODEL_MAGIC",
    "MODEL_VERSION",
    "RelativeCSR",
    "TensorInfo",
    "canonical_code",
    "count_fillers",
    "decode_relative_csr",
    "describe_compressed",
    "dumps_compressed",
    "encode_relative_csr",
    "encoded_tensor",
    "huffman_code",
    "huffman_code_lengths",
    "huffman_decode",
    "huffman_encode",
    "load_compressed",
    "loads_compressed",
    "max_block_size",
    "save_compressed",
]
