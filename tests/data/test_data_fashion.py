"""Fashion-MNIST and MNIST loaders: search order, validation, download, the real files."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from refimpl.data import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist, write_idx
from refimpl.data import fashion_mnist as fm

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
N_TRAIN, N_TEST = 12, 6
REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_fake(folder: Path, *, seed: int = 0, compress: bool = True, suffix: str | None = None):
    """Write four small IDX files of the real layout; return their arrays."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, N_TEST, dtype=np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = ".gz" if compress else ""
    for name, array in zip(NAMES, arrays, strict=True):
        write_idx(folder / (name + suffix), array, compress=compress)
    return arrays


def assert_loaded(result, arrays):
    (X_tr, y_tr), (X_te, y_te) = result
    assert X_tr.shape == (N_TRAIN, 1, 28, 28) and X_te.shape == (N_TEST, 1, 28, 28)
    assert X_tr.dtype == np.float32 and y_tr.dtype == np.int64
    np.testing.assert_allclose(X_tr[:, 0], arrays[0] / np.float32(255))
    np.testing.assert_array_equal(y_tr, arrays[1])
    np.testing.assert_allclose(X_te[:, 0], arrays[2] / np.float32(255))
    np.testing.assert_array_equal(y_te, arrays[3])


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Small expected sizes and an isolated environment: no REFIMPL_DATA, empty cache/system."""
    monkeypatch.setitem(fm._EXPECTED_SIZES, "train", N_TRAIN)
    monkeypatch.setitem(fm._EXPECTED_SIZES, "test", N_TEST)
    monkeypatch.delenv("REFIMPL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fm, "_SYSTEM_DIR", tmp_path / "system")
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path


CACHE = ("xdg", "refimpl", "fashion-mnist")


def test_classes():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_explicit_path(env):
    arrays = write_fake(env / "mine")
    assert_loaded(load_fashion_mnist(env / "mine"), arrays)
    assert_loaded(load_fashion_mnist(str(env / "mine")), arrays)


def test_explicit_path_is_the_only_place_searched(env):
    write_fake(env.joinpath(*CACHE))
    with pytest.raises(FileNotFoundError, match="path argument"):
        load_fashion_mnist(env / "empty")


@pytest.mark.parametrize("compress", [True, False])
def test_raw_and_gz_names_are_accepted(env, compress):
    arrays = write_fake(env / "d", compress=compress)
    assert_loaded(load_fashion_mnist(env / "d"), arrays)


def test_refimpl_data_folder(env, monkeypatch):
    arrays = write_fake(env / "data", seed=1)
    monkeypatch.setenv("REFIMPL_DATA", str(env / "data"))
    assert_loaded(load_fashion_mnist(), arrays)


def test_refimpl_data_subfolder_comes_first(env, monkeypatch):
    write_fake(env / "data", seed=1)
    sub = write_fake(env / "data" / "fashion-mnist", seed=2)
    monkeypatch.setenv("REFIMPL_DATA", str(env / "data"))
    assert_loaded(load_fashion_mnist(), sub)


def test_refimpl_data_before_cache_before_system(env, monkeypatch):
    system = write_fake(env / "system", seed=3)
    assert_loaded(load_fashion_mnist(), system)
    cache = write_fake(env.joinpath(*CACHE), seed=4)
    assert_loaded(load_fashion_mnist(), cache)
    data = write_fake(env / "data", seed=5)
    monkeypatch.setenv("REFIMPL_DATA", str(env / "data"))
    assert_loaded(load_fashion_mnist(), data)


def test_home_cache_without_xdg(env, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    arrays = write_fake(env / "home" / ".cache" / "refimpl" / "fashion-mnist", seed=6)
    assert_loaded(load_fashion_mnist(), arrays)


def test_incomplete_folder_is_skipped(env, monkeypatch):
    write_fake(env / "data", seed=1)
    (env / "data" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("REFIMPL_DATA", str(env / "data"))
    system = write_fake(env / "system", seed=3)
    assert_loaded(load_fashion_mnist(), system)


def test_missing_data_message(env, monkeypatch):
    write_fake(env / "data")
    (env / "data" / "train-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("REFIMPL_DATA", str(env / "data"))
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist()
    msg = str(info.value)
    for place in (env / "data" / "fashion-mnist", env / "data", env.joinpath(*CACHE)):
        assert str(place) in msg
    assert str(env / "system") in msg
    assert "incomplete, missing train-images-idx3-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg
    assert "REFIMPL_DATA" in msg


def test_missing_data_message_without_refimpl_data(env):
    with pytest.raises(FileNotFoundError, match=r"\$REFIMPL_DATA: not set"):
        load_fashion_mnist()


def test_dtype_and_normalize_options(env):
    arrays = write_fake(env / "d")
    (X, y), _ = load_fashion_mnist(env / "d", dtype=np.uint8, normalize=False)
    assert X.dtype == np.uint8
    np.testing.assert_array_equal(X[:, 0], arrays[0])
    (X, _), _ = load_fashion_mnist(env / "d", dtype=np.float64)
    assert X.dtype == np.float64 and 0.0 <= X.min() and X.max() <= 1.0
    with pytest.raises(TypeError, match="floating dtype"):
        load_fashion_mnist(env / "d", dtype=np.int32)
    with pytest.raises(TypeError, match="download must be a bool"):
        load_fashion_mnist(env / "d", download="yes")


@pytest.mark.parametrize(
    ("index", "array", "match"),
    [
        (0, np.zeros((N_TRAIN + 1, 28, 28), np.uint8), r"shape \(12, 28, 28\)"),
        (2, np.zeros((N_TEST, 27, 28), np.uint8), r"shape \(6, 28, 28\)"),
        (0, np.zeros((N_TRAIN, 28, 28), np.int16), "uint8 images"),
        (1, np.zeros(N_TRAIN - 1, np.uint8), r"shape \(12,\)"),
        (3, np.zeros((N_TEST, 1), np.uint8), r"shape \(6,\)"),
        (1, np.full(N_TRAIN, 10, np.uint8), "labels must be 0..9"),
        (3, np.full(N_TEST, 255, np.uint8), "labels must be 0..9"),
    ],
)
def test_wrong_contents_raise_value_error(env, index, array, match):
    write_fake(env / "d")
    write_idx(env / "d" / (NAMES[index] + ".gz"), array, compress=True)
    with pytest.raises(ValueError, match=match) as info:
        load_fashion_mnist(env / "d")
    assert NAMES[index] in str(info.value)


def test_official_sizes_are_checked_strictly(tmp_path, monkeypatch):
    """Without the monkeypatched sizes, small files are rejected."""
    monkeypatch.delenv("REFIMPL_DATA", raising=False)
    write_fake(tmp_path / "d")
    with pytest.raises(ValueError, match=r"shape \(60000, 28, 28\)"):
        load_fashion_mnist(tmp_path / "d")


def test_load_mnist_explicit_path_only(env):
    arrays = write_fake(env / "mnist", compress=False, suffix="")
    assert_loaded(load_mnist(env / "mnist"), arrays)
    with pytest.raises(FileNotFoundError, match="MNIST not found"):
        load_mnist(env / "nothing")


def test_load_mnist_accepts_dotted_names(env):
    arrays = write_fake(env / "m")
    for name in NAMES:
        os.rename(env / "m" / (name + ".gz"), env / "m" / (name.replace("-idx", ".idx") + ".gz"))
    assert_loaded(load_mnist(env / "m"), arrays)


# ----------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/served`` on 127.0.0.1; yield (base_url, folder, requests)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(folder))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield (
            f"http://127.0.0.1:{httpd.server_address[1]}/files/",
            folder / "files",
            handler.requests,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _hashes_of(folder: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256(gzip.decompress((folder / (name + ".gz")).read_bytes())).hexdigest()
        for name in NAMES
    }


def test_download_into_cache_and_reuse(env, server, monkeypatch):
    base_url, served, requests = server
    arrays = write_fake(served, seed=7)
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", _hashes_of(served))
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist(base_url=base_url)
    assert requests == []  # nothing is fetched unless asked
    assert_loaded(load_fashion_mnist(download=True, base_url=base_url), arrays)
    assert sorted(requests) == sorted(f"/files/{name}.gz" for name in NAMES)
    cache = env.joinpath(*CACHE)
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)
    requests.clear()
    assert_loaded(load_fashion_mnist(download=True, base_url=base_url), arrays)
    assert requests == []  # found in the cache: no second download


def test_download_fetches_only_missing_files_into_explicit_path(env, server, monkeypatch):
    base_url, served, requests = server
    arrays = write_fake(served, seed=8)
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", _hashes_of(served))
    target = env / "target"
    target.mkdir()
    (target / "train-labels-idx1-ubyte.gz").write_bytes(
        (served / "train-labels-idx1-ubyte.gz").read_bytes()
    )
    assert_loaded(load_fashion_mnist(target, download=True, base_url=base_url.rstrip("/")), arrays)
    assert "/files/train-labels-idx1-ubyte.gz" not in requests and len(requests) == 3
    assert not env.joinpath(*CACHE).exists()


def test_checksum_mismatch_deletes_file_and_raises(env, server, monkeypatch):
    base_url, served, _ = server
    write_fake(served, seed=9)
    hashes = _hashes_of(served)
    hashes["t10k-images-idx3-ubyte"] = "0" * 64
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", hashes)
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-images") as info:
        load_fashion_mnist(download=True, base_url=base_url)
    assert "0" * 64 in str(info.value)
    cache = env.joinpath(*CACHE)
    left = sorted(p.name for p in cache.iterdir())
    assert not any(name.startswith("t10k-images") for name in left)
    assert not any(name.endswith(".part") for name in left)


def test_corrupt_download_is_deleted(env, server, monkeypatch):
    base_url, served, _ = server
    write_fake(served, seed=10)
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", _hashes_of(served))
    good = (served / "train-images-idx3-ubyte.gz").read_bytes()
    (served / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not valid gzip data"):
        load_fashion_mnist(download=True, base_url=base_url)
    assert list(env.joinpath(*CACHE).iterdir()) == []


def test_http_error_leaves_no_partial_file(env, server, monkeypatch):
    import urllib.error

    base_url, served, _ = server
    write_fake(served, seed=11)
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", _hashes_of(served))
    (served / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(urllib.error.HTTPError):
        load_fashion_mnist(download=True, base_url=base_url)
    assert list(env.joinpath(*CACHE).iterdir()) == []


def test_import_touches_no_files(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    subprocess.run(
        [sys.executable, "-c", "import refimpl.data"],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not all((REAL_DIR / (name + ".gz")).is_file() for name in NAMES),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_debian_files(monkeypatch):
    for name in NAMES:
        digest = hashlib.sha256(gzip.decompress((REAL_DIR / (name + ".gz")).read_bytes()))
        assert digest.hexdigest() == fm.FASHION_MNIST_SHA256[name]
    (X_tr, y_tr), (X_te, y_te) = load_fashion_mnist(REAL_DIR)
    assert X_tr.shape == (60000, 1, 28, 28) and X_te.shape == (10000, 1, 28, 28)
    assert X_tr.dtype == np.float32 and X_tr.min() == 0.0 and X_tr.max() == 1.0
    assert np.bincount(y_tr).tolist() == [6000] * 10
    assert np.bincount(y_te).tolist() == [1000] * 10
    assert FASHION_MNIST_CLASSES[y_tr[0]] == "Ankle boot"
