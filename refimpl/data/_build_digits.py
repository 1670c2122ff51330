"""Build ``digits.npz``, the bundled UCI optical digits, from scikit-learn's copy. Run once.

This script is not imported by the package; it documents how the bundled file was made, so
anyone can rebuild and check it::

    python -m refimpl.data._build_digits                 # finds scikit-learn's CSV
    python -m refimpl.data._build_digits path/to/digits.csv.gz

scikit-learn's wheel ships ``sklearn/datasets/data/digits.csv.gz``: 1,797 rows, each 64 pixel
counts 0..16 (an 8x8 image, row-major) followed by the label 0..9. It is the test split
(``optdigits.tes``) of the UCI "Optical Recognition of Handwritten Digits" data set by
E. Alpaydin and C. Kaynak (1998), licensed CC BY 4.0, https://doi.org/10.24432/C50P49.

The ``.npz`` holds four arrays, all loadable with ``allow_pickle=False``:

- ``X``: uint8, shape (1797, 8, 8), values 0..16;
- ``y``: uint8, shape (1797,), values 0..9;
- ``format``: the string ``"refimpl-digits"``;
- ``version``: the integer 1.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("digits.npz")


def find_sklearn_csv() -> Path:
    """Return the path of ``digits.csv.gz`` inside the installed scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed; pass the CSV path instead")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "datasets" / "data" / "digits.csv.gz"


def build(csv_path: Path, out: Path = OUT) -> Path:
    """Convert the CSV to the compressed ``.npz`` and return its path."""
    with gzip.open(csv_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (1797, 65):
        raise ValueError(f"expected a 1797 x 65 table, got {table.shape}")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("pixel values must be 0..16 and labels 0..9")
    np.savez_compressed(
        out,
        X=pixels.reshape(-1, 8, 8).astype(np.uint8),
        y=labels.astype(np.uint8),
        format=np.array("refimpl-digits"),
        version=np.array(1),
    )
    return out


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else find_sklearn_csv()
    print(f"wrote {build(source)} from {source}")
