"""The bundled digits: loader, corruption checks, and the stratified split."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.data import digits, load_digits, train_test_split

COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_default_shapes_dtypes_and_ranges():
    X, y = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.all(np.isin(X * 16, np.arange(17)))
    assert np.bincount(y).tolist() == COUNTS
    assert len(np.unique(y)) == 10


def test_flatten_raw_and_dtype_options():
    X, _ = load_digits(flatten=True, dtype=np.float64)
    assert X.shape == (1797, 64) and X.dtype == np.float64
    raw, _ = load_digits(normalize=False, dtype=np.uint8)
    assert raw.dtype == np.uint8 and raw.shape == (1797, 1, 8, 8) and raw.max() == 16
    np.testing.assert_array_equal(X, raw.reshape(1797, 64) / 16.0)
    # First image of the UCI test split (a zero), as scikit-learn ships it.
    assert raw[0, 0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_loads_are_independent_copies():
    X1, y1 = load_digits()
    X1[:] = -1
    y1[:] = -1
    X2, y2 = load_digits()
    assert X2.min() == 0.0 and y2.min() == 0


def test_normalize_needs_float_dtype():
    with pytest.raises(TypeError, match="floating dtype"):
        load_digits(dtype=np.uint8)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _good_arrays() -> dict:
    X, y = load_digits(normalize=False, dtype=np.uint8)
    return {
        "X": X.reshape(1797, 8, 8),
        "y": y.astype(np.uint8),
        "format": np.array("refimpl-digits"),
        "version": np.array(1),
    }


def _variant(**changes):
    arrays = _good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return _npz_bytes(**arrays)


CORRUPT = {
    "garbage": (b"this is not a zip file at all", "cannot read"),
    "empty": (b"", "cannot read"),
    "truncated": (_variant()[:2000], "corrupt digits file"),
    "wrong marker": (_variant(format=np.array("something-else")), "format marker"),
    "bytes marker": (_variant(format=np.array(b"refimpl-digits")), "format marker"),
    "wrong version": (_variant(version=np.array(2)), "version"),
    "missing y": (_variant(y=None), "missing arrays"),
    "X shape": (_variant(X=np.zeros((1797, 64), np.uint8)), "X is"),
    "X dtype": (_variant(X=np.zeros((1797, 8, 8), np.int64)), "X is"),
    "y shape": (_variant(y=np.zeros(1796, np.uint8)), "y is"),
    "pixel range": (_variant(X=np.full((1797, 8, 8), 17, np.uint8)), "0..16"),
    "label range": (_variant(y=np.full(1797, 10, np.uint8)), "0..9"),
    "pickled": (_variant(y=np.array([object()] * 1797, dtype=object)), "cannot read"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_file_raises_clear_value_error(tmp_path, monkeypatch, name):
    data, match = CORRUPT[name]
    path = tmp_path / "digits.npz"
    path.write_bytes(data)
    monkeypatch.setattr(digits, "_DIGITS_PATH", path)
    with pytest.raises(ValueError, match=match) as info:
        load_digits()
    assert "corrupt digits file" in str(info.value) and str(path) in str(info.value)


def test_single_npy_file_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "digits.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    monkeypatch.setattr(digits, "_DIGITS_PATH", path)
    with pytest.raises(ValueError, match="not an .npz"):
        load_digits()


def test_corrupt_member_crc_raises(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in _good_arrays().items():
            member = io.BytesIO()
            np.save(member, value)
            zf.writestr(key + ".npy", member.getvalue())
    data = bytearray(buf.getvalue())
    data[len(data) // 3] ^= 0xFF  # inside X's payload: a CRC error on reading
    path = tmp_path / "digits.npz"
    path.write_bytes(bytes(data))
    monkeypatch.setattr(digits, "_DIGITS_PATH", path)
    with pytest.raises(ValueError, match="corrupt digits file"):
        load_digits()


# ----------------------------------------------------------------------------- split


def test_split_sizes_order_and_partition():
    X, y = load_digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y)
    assert X_tr.shape == (1348, 1, 8, 8) and X_te.shape == (449, 1, 8, 8)
    assert y_tr.shape == (1348,) and y_te.shape == (449,)
    ids = np.arange(1797)
    tr, te, _, _ = train_test_split(ids, y)
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), ids)
    np.testing.assert_array_equal(y[tr], train_test_split(ids, y)[2])


def test_split_is_deterministic_and_seeded():
    X, y = load_digits()
    a = train_test_split(X, y, seed=3)
    b = train_test_split(X, y, seed=3)
    c = train_test_split(X, y, seed=4)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])


def test_split_is_stratified():
    _, y = load_digits()
    ids = np.arange(len(y))
    _, te, _, y_te = train_test_split(ids, y, test_fraction=0.2)
    counts = np.bincount(y_te, minlength=10)
    quota = np.array(COUNTS) * 0.2
    assert counts.sum() == 359
    assert np.all(np.abs(counts - quota) < 1)


def test_unstratified_split_has_the_right_size():
    _, y = load_digits()
    tr, te, _, _ = train_test_split(np.arange(1797), y, test_fraction=0.1, stratify=False)
    assert len(te) == 180 and len(tr) == 1617


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=200),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32),
)
def test_stratified_split_property(labels, fraction, seed):
    y = np.array(labels)
    n = len(y)
    n_test = int(np.floor(fraction * n + 0.5))
    if not 0 < n_test < n:
        with pytest.raises(ValueError, match="test_fraction"):
            train_test_split(np.arange(n), y, test_fraction=fraction, seed=seed)
        return
    tr, te, y_tr, y_te = train_test_split(np.arange(n), y, test_fraction=fraction, seed=seed)
    assert len(te) == n_test and len(tr) == n - n_test
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(n))
    np.testing.assert_array_equal(y[te], y_te)
    quota = np.bincount(y, minlength=5) * (n_test / n)
    assert np.all(np.abs(np.bincount(y_te, minlength=5) - quota) < 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"test_fraction": 0.0}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"test_fraction": -0.5}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"test_fraction": float("nan")}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"test_fraction": 0.0001}, ValueError, "both parts are non-empty"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a float"),
        ({"test_fraction": True}, TypeError, "test_fraction must be a float"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int"),
        ({"seed": 1.5}, TypeError, "seed must be a non-negative int"),
        ({"seed": None}, TypeError, "seed must be a non-negative int"),
        ({"stratify": "yes"}, TypeError, "stratify must be a bool"),
    ],
)
def test_split_rejects_bad_arguments(kwargs, error, match):
    X, y = load_digits()
    with pytest.raises(error, match=match):
        train_test_split(X, y, **kwargs)


def test_split_rejects_mismatched_or_misshaped_inputs():
    with pytest.raises(ValueError, match="same length"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="y must be 1-D"):
        train_test_split(np.zeros((10, 2)), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="at least one dimension"):
        train_test_split(np.float64(1.0), np.zeros(1))
