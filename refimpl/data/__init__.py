"""Data sets and batching.

- :func:`load_digits`: the UCI optical digits, bundled (1,797 8x8 images), always offline;
  :func:`train_test_split` splits them reproducibly, stratified by label.
- :func:`load_fashion_mnist`: Fashion-MNIST (70,000 28x28 images) from local IDX files, or
  downloaded with checksum verification when asked; :func:`load_mnist` reads MNIST files you have.
- :func:`read_idx` and :func:`write_idx`: the IDX file format, raw or gzip.
- :func:`iterate_minibatches`: seeded mini-batches for training loops.

Nothing is downloaded or cached at import time.
"""

from .batches import iterate_minibatches
from .digits import load_digits, train_test_split
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist
from .idx import read_idx, write_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "iterate_minibatches",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "train_test_split",
    "write_idx",
]
