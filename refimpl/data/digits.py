"""The bundled UCI optical digits and a deterministic, stratified train/test split.

The digits are 1,797 grey-level 8x8 images of handwritten digits 0..9, each pixel a count 0..16.
They ship with the package (``digits.npz``, about 45 KB, built by ``_build_digits.py`` from the
copy in scikit-learn's wheel), so every example in the book runs offline.

References
----------
.. [1] Alpaydin, E. and Kaynak, C. (1998) *Optical Recognition of Handwritten Digits*.
   UCI Machine Learning Repository, CC BY 4.0. https://doi.org/10.24432/C50P49
"""

from __future__ import annotations

import numbers
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["load_digits", "train_test_split"]

_DIGITS_PATH = Path(__file__).with_name("digits.npz")
_FORMAT = "refimpl-digits"
_VERSION = 1
_N_DIGITS = 1797


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path}: corrupt digits file ({why}); reinstall refimpl or rebuild it with "
        "`python -m refimpl.data._build_digits`"
    )


def _read_digits_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check the bundled file; return ``X`` uint8 (N, 8, 8) and ``y`` uint8 (N,)."""
    needed = ("X", "y", "format", "version")
    readerrors = (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError)
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except readerrors as err:
        raise _corrupt(path, f"cannot read it as .npz: {err}") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _corrupt(path, "it holds a single array, not an .npz archive")
    try:
        with npz:
            arrays = {k: npz[k] for k in needed if k in npz.files}
    except readerrors as err:
        raise _corrupt(path, f"cannot read its arrays: {err}") from err
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise _corrupt(path, f"missing arrays {missing}")
    X, y, fmt, version = (arrays[k] for k in needed)
    if fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != _FORMAT:
        raise _corrupt(path, f"format marker is {fmt!r}, expected {_FORMAT!r}")
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != _VERSION:
        raise _corrupt(path, f"version is {version!r}, expected {_VERSION}")
    if X.dtype != np.uint8 or X.shape != (_N_DIGITS, 8, 8):
        raise _corrupt(path, f"X is {X.dtype} {X.shape}, expected uint8 ({_N_DIGITS}, 8, 8)")
    if y.dtype != np.uint8 or y.shape != (_N_DIGITS,):
        raise _corrupt(path, f"y is {y.dtype} {y.shape}, expected uint8 ({_N_DIGITS},)")
    if X.max() > 16:
        raise _corrupt(path, f"pixel values must be 0..16, found {int(X.max())}")
    if y.max() > 9:
        raise _corrupt(path, f"labels must be 0..9, found {int(y.max())}")
    return X, y


def load_digits(
    *, dtype: DTypeLike = np.float32, normalize: bool = True, flatten: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load the bundled UCI optical digits (1,797 images of 8x8 pixels, 10 classes).

    Parameters
    ----------
    dtype : numpy dtype
        Dtype of the returned images. Must be a floating dtype when ``normalize=True``.
    normalize : bool
        Divide the pixel counts 0..16 by 16 so the images lie in [0, 1]. With ``False`` the
        images hold the raw counts (use ``dtype=np.uint8`` for the stored bytes).
    flatten : bool
        Return each image as a row of 64 pixels instead of a 1-channel 8x8 image.

    Returns
    -------
    X : ndarray, shape (1797, 1, 8, 8) or, with ``flatten=True``, (1797, 64)
        The images, NCHW, in the file's order.
    y : ndarray of int64, shape (1797,)
        The labels 0..9 (178, 182, 177, 183, 181, 182, 181, 179, 174 and 180 of each).

    Raises
    ------
    TypeError
        If ``normalize=True`` and ``dtype`` is not a floating dtype.
    ValueError
        If the bundled file is corrupt (wrong marker, version, shapes or value ranges).

    Examples
    --------
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 1, 8, 8), dtype('float32'), (1797,), dtype('int64'))
    """
    dtype = np.dtype(dtype)
    if normalize and dtype.kind != "f":
        raise TypeError(f"normalize=True needs a floating dtype, got dtype={dtype}")
    X8, y8 = _read_digits_npz(_DIGITS_PATH)
    X = X8.astype(dtype)
    if normalize:
        X /= dtype.type(16)
    X = X.reshape(len(X), 64) if flatten else X.reshape(len(X), 1, 8, 8)
    return X, y8.astype(np.int64)


def train_test_split(
    X: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split a data set into a training and a test part, reproducibly.

    The test part has ``round(test_fraction * N)`` rows. With ``stratify=True`` every label keeps
    its share: each class gives ``test_fraction`` of its rows, rounded so the total is exact
    (largest remainders, ties to the smaller label). Which rows go where, and the order of each
    part, come from ``numpy.random.default_rng(seed)``: the same seed gives the same split.

    Parameters
    ----------
    X : ndarray, shape (N, ...)
        Inputs.
    y : ndarray, shape (N,)
        Labels (any values that ``numpy.unique`` can sort).
    test_fraction : float
        Fraction of rows in the test part, strictly between 0 and 1; it must leave at least one
        row on each side.
    seed : int
        Non-negative seed of the generator.
    stratify : bool
        Keep the class proportions of ``y`` in both parts.

    Returns
    -------
    X_train : ndarray, shape (N - n_test, ...)
    X_test : ndarray, shape (n_test, ...)
    y_train : ndarray, shape (N - n_test,)
    y_test : ndarray, shape (n_test,)
        The same order as scikit-learn's ``train_test_split``.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``X`` and ``y`` disagree in length, ``y`` is not 1-D, ``test_fraction`` is outside
        (0, 1) or leaves an empty part, or ``seed`` is negative.

    Examples
    --------
    >>> X, y = load_digits()
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.2)
    >>> len(X_train), len(X_test)
    (1438, 359)
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 1:
        raise ValueError("X must have at least one dimension (one row per sample)")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D with one label per row, got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a float in (0, 1), got {type(test_fraction).__name__}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be a bool, got {type(stratify).__name__}")

    n = len(y)
    n_test = int(np.floor(float(test_fraction) * n + 0.5))
    if not 0 < n_test < n:
        raise ValueError(
            f"test_fraction={test_fraction} of {n} rows gives {n_test} test rows; "
            f"choose test_fraction in [{0.5 / n:.3g}, {1 - 0.5 / n:.3g}) so both parts are "
            "non-empty"
        )
    rng = np.random.default_rng(int(seed))
    if stratify:
        classes, inverse = np.unique(y, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(classes))
        quota = counts * (n_test / n)
        take = np.floor(quota).astype(np.int64)
        short = n_test - int(take.sum())
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:short]] += 1
        test_parts = []
        for c, k in enumerate(take):
            members = np.flatnonzero(inverse == c)
            test_parts.append(rng.permutation(members)[:k])
        test_idx = np.concatenate(test_parts)
    else:
        test_idx = rng.permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]
