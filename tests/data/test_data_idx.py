"""IDX reader and writer: round trips for every type and rank, and malformed files."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.data import read_idx, write_idx
from refimpl.data.idx import IDX_DTYPES

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    ),
    compress=st.booleans(),
    big_endian=st.booleans(),
)
def test_round_trip_every_dtype_and_rank(array, compress, big_endian):
    if big_endian:
        array = array.astype(array.dtype.newbyteorder(">"))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / "a.idx", array, compress=compress)
        with open(path, "rb") as f:
            assert (f.read(2) == b"\x1f\x8b") == compress
        back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)  # NaNs compare equal here


def test_header_matches_spec(tmp_path):
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    data = write_idx(tmp_path / "a", a).read_bytes()
    assert data[:4] == bytes([0, 0, 0x0B, 2])
    assert struct.unpack(">2I", data[4:12]) == (2, 3)
    assert data[12:] == a.astype(">i2").tobytes()


def test_gzip_detected_by_content_not_suffix(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x.gz", a)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x", a, compress=True)), a)


def test_result_is_writable_and_native(tmp_path):
    back = read_idx(write_idx(tmp_path / "a", np.ones((3, 2), ">f8")))
    assert back.flags.writeable and back.flags.c_contiguous and back.dtype == np.float64
    back[0, 0] = 5.0


def test_compressed_output_is_deterministic(tmp_path):
    a = np.arange(100, dtype=np.int32)
    one = write_idx(tmp_path / "1", a, compress=True).read_bytes()
    two = write_idx(tmp_path / "2", a, compress=True).read_bytes()
    assert one == two


def _good(ndim_shape=(2, 3)) -> bytes:
    a = np.arange(np.prod(ndim_shape), dtype=np.uint8).reshape(ndim_shape)
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter than the header"),
        (b"\x00\x00\x08", "shorter than the header"),
        (b"\x01" + _good()[1:], "two zero bytes"),
        (b"\x00\x01" + _good()[2:], "two zero bytes"),
        (b"\x00\x00\x0a" + _good()[3:], "unknown IDX type code 0x0A"),
        (b"\x00\x00\x07" + _good()[3:], "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (_good()[:9], "truncated IDX header"),
        (_good()[:-1], "payload truncated"),
        (_good()[:12], "payload truncated"),
        (_good() + b"\x00", "extra bytes"),
        (_good() + _good(), "extra bytes"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + b"\x00" * 7, "payload truncated"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_files_raise_value_error_naming_the_file(tmp_path, data, match, compress):
    path = tmp_path / "bad-file.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad-file.idx" in str(info.value)


@pytest.mark.parametrize("cut", [3, 10, 20, -8, -1])
def test_truncated_gzip_raises_value_error(tmp_path, cut):
    a = np.random.default_rng(0).integers(0, 256, size=(50, 28), dtype=np.uint8)
    full = gzip.compress(write_idx(tmp_path / "raw", a).read_bytes())
    path = tmp_path / "cut.gz"
    path.write_bytes(full[:cut])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(path)


def test_corrupt_gzip_body_raises_value_error(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, size=1000, dtype=np.uint8)
    data = bytearray(gzip.compress(write_idx(tmp_path / "raw", a).read_bytes()))
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("dtype", [np.bool_, np.float16, np.int64, np.uint16, np.complex64])
def test_write_rejects_dtypes_without_type_code(tmp_path, dtype):
    with pytest.raises(TypeError, match="no IDX type code"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=dtype))


def test_write_rejects_zero_dimensions(tmp_path):
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.array(3, dtype=np.uint8))


def test_type_table_is_the_standard_one():
    assert sorted(IDX_DTYPES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
    assert all(dt.byteorder in "|>" for dt in IDX_DTYPES.values())


# -- hostile files: nothing is allocated or inflated beyond what the header declares ----------
def _gzip_bomb(path, declared: int, inflated: int) -> None:
    """A gzip IDX file whose header declares ``declared`` bytes and that inflates to
    ``inflated`` bytes of payload (zeros compress about 1000:1)."""
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", declared))
        zeros = b"\0" * (1 << 20)
        for _ in range(inflated >> 20):
            f.write(zeros)


def test_gzip_bomb_is_refused_after_the_declared_bytes(tmp_path, peak_memory):
    # a 64 KB file declaring 10 bytes inflated to 64 MiB (and to 2 GiB at 2 MB) before it
    # was refused; now one byte past the declared payload is enough
    path = tmp_path / "bomb.gz"
    _gzip_bomb(path, 10, 64 << 20)
    assert path.stat().st_size < 100_000
    out = peak_memory(read_idx, path)
    assert isinstance(out.error, ValueError) and "extra bytes" in str(out.error), out
    assert "bomb.gz" in str(out.error)
    assert out.peak < 4 << 20, out


def test_declared_size_is_checked_exactly_and_against_max_bytes(tmp_path, peak_memory):
    # four dimensions of 2**32 - 1: the int64 product wrapped around before
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[2**32 - 1] * 4) + b"\0")
    out = peak_memory(read_idx, path)
    assert isinstance(out.error, ValueError) and "max_bytes" in str(out.error), out
    assert "huge.idx" in str(out.error) and out.peak < 1 << 20
    a = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.idx", a)
    assert np.array_equal(read_idx(tmp_path / "a.idx", max_bytes=100), a)
    with pytest.raises(ValueError, match="max_bytes=99"):
        read_idx(tmp_path / "a.idx", max_bytes=99)
    # a raw file is measured before it is read: a declared 1 GiB with 1 byte present
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 2**30) + b"\0")
    out = peak_memory(read_idx, path)
    assert isinstance(out.error, ValueError) and "truncated" in str(out.error), out
    assert out.peak < 1 << 20


def test_bad_path_and_limit_arguments(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        read_idx(12345)
    write_idx(tmp_path / "a.idx", np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="max_bytes"):
        read_idx(tmp_path / "a.idx", max_bytes=1.5)
    with pytest.raises(ValueError, match="max_bytes"):
        read_idx(tmp_path / "a.idx", max_bytes=-1)


def test_content_hash_streams_gzip(tmp_path, peak_memory):
    from refimpl.data.fashion_mnist import _sha256_of_content

    path = tmp_path / "bomb.gz"
    _gzip_bomb(path, 10, 32 << 20)
    out = peak_memory(_sha256_of_content, path)
    assert out.error is None and out.peak < 8 << 20, out  # one 1 MiB chunk at a time
