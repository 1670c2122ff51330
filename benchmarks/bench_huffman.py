"""Throughput of the vectorized Huffman coder, against zlib (C) on the same data in the same run.

The data are what Deep Compression codes (Han et al. 2016): (a) the 5-bit k-means cluster
indices of LeNet-300-100's ``fc1`` weight (32 clusters, linear initialization), and (b) the 5-bit
relative indices (gaps) of the same weight pruned to 8% with filler zeros. Each symbol
distribution is sampled to ``N`` symbols (4 million by default) so that timings are well above
the clock's resolution.

Throughput is reported in symbols per second and in MB/s of input symbols held as one byte each
(uint8), i.e. 1 MB = 10**6 symbols, both for encoding (symbols -> bytes) and decoding (bytes ->
symbols). The reference is ``zlib.compress(level=6)`` / ``zlib.decompress`` of the same uint8
array: a C implementation of LZ77 plus Huffman, so the ratio shows what pure NumPy costs.

Run: ``python benchmarks/bench_huffman.py [N]`` (or ``make bench``). Timings never gate a test.
"""

from __future__ import annotations

import sys
import zlib

import numpy as np

from refimpl.baselines import load_baseline
from refimpl.coding import encode_relative_csr, huffman_decode, huffman_encode
from refimpl.pruning import magnitude_mask
from refimpl.quantization import kmeans_quantize
from refimpl.report import format_table
from refimpl.timing import time_call


def entropy_bits(x: np.ndarray) -> float:
    p = np.bincount(x) / x.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def workloads(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = load_baseline("lenet_300_100")["fc1"].weight
    _, idx = kmeans_quantize(w, 32, init="linear")
    pruned = w * magnitude_mask(w, 0.92)
    gaps = encode_relative_csr(pruned, index_bits=5).gaps
    out = {}
    for name, sample in (("k-means indices (5 bit)", idx.ravel()), ("relative gaps (5 bit)", gaps)):
        p = np.bincount(sample, minlength=32) / sample.size
        out[name] = rng.choice(p.size, size=n, p=p).astype(np.uint8)
    return out


def main(n: int = 4_000_000) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for name, x in workloads(n, rng).items():
        data = huffman_encode(x)
        assert np.array_equal(huffman_decode(data), x)
        t_enc = time_call(lambda x=x: huffman_encode(x), repeats=5)
        t_dec = time_call(lambda data=data: huffman_decode(data), repeats=5)
        z = zlib.compress(x.tobytes(), 6)
        t_zenc = time_call(lambda x=x: zlib.compress(x.tobytes(), 6), repeats=5)
        t_zdec = time_call(lambda z=z: zlib.decompress(z), repeats=5)
        rows.append(
            (
                name,
                entropy_bits(x),
                8 * len(data) / n,
                8 * len(z) / n,
                n / t_enc / 1e6,
                n / t_dec / 1e6,
                n / t_zenc / 1e6,
                n / t_zdec / 1e6,
                t_zenc / t_enc,
                t_zdec / t_dec,
            )
        )
    print(f"Huffman coding of {n:,} symbols (1 MB = 10**6 uint8 symbols; best of 5 runs)\n")
    print(
        format_table(
            rows,
            [
                "data",
                "entropy bit/sym",
                "huffman bit/sym",
                "zlib bit/sym",
                "encode MB/s",
                "decode MB/s",
                "zlib enc MB/s",
                "zlib dec MB/s",
                "enc vs zlib",
                "dec vs zlib",
            ],
            floatfmt=".2f",
        )
    )
    print("\n(MB/s of uint8 symbols equals millions of symbols per second.)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000)
