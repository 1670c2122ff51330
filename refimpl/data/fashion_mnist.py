"""Fashion-MNIST (and MNIST) from IDX files: find them, optionally download them, check them.

Fashion-MNIST [1]_ has 70,000 grey 28x28 images of clothing in 10 classes
(:data:`FASHION_MNIST_CLASSES`): 60,000 for training, 10,000 for testing, stored in four IDX
files (see :mod:`refimpl.data.idx`) with the same names and layout as MNIST [2]_.

:func:`load_fashion_mnist` looks for the four files, as ``name`` or ``name.gz``, in this order:

1. the folder ``path``, if given (then only there);
2. ``$REFIMPL_DATA/fashion-mnist``, then ``$REFIMPL_DATA`` itself;
3. the user cache, ``$XDG_CACHE_HOME/refimpl/fashion-mnist`` or ``~/.cache/refimpl/fashion-mnist``;
4. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` installs them.

Nothing is downloaded unless ``download=True`` is passed, and nothing happens at import.

References
----------
.. [1] Xiao, H., Rasul, K. and Vollgraf, R. (2017) *Fashion-MNIST: a Novel Image Dataset for
   Benchmarking Machine Learning Algorithms*. arXiv:1708.07747. MIT licence.
   https://github.com/zalandoresearch/fashion-mnist
.. [2] LeCun, Y., Bottou, L., Bengio, Y. and Haffner, P. (1998) Gradient-based learning applied
   to document recognition. *Proceedings of the IEEE* 86(11), 2278-2324.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from .idx import MAX_IDX_BYTES, _iter_content, read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SHA256",
    "FASHION_MNIST_URL",
    "load_fashion_mnist",
    "load_mnist",
]

#: The ten class names, indexed by label.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where ``download=True`` fetches ``<name>.gz`` from (the official Zalando Research mirror).
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# The four files, in the order (train images, train labels, test images, test labels).
_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of each file's DECOMPRESSED bytes (the IDX data itself, not the .gz wrapper, because
#: Debian recompressed its copies). Computed from Debian's dataset-fashion-mnist 1.0 files with
#: ``zcat /usr/share/datasets/fashion-mnist/<name>.gz | sha256sum``. Their MD5s, for reference:
#: f4a8712d7a061bf5bd6d2ca38dc4d50a, 9018921c3c673c538a1fc5bad174d6f9,
#: 8181f5470baa50b63fa0f6fddb340f0a, 15d484375f8d13e6eb1aabb0c3f46965.
FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# Number of images in each split. The loaders check these exactly; tests monkeypatch them to
# exercise the search and download logic on small files.
_EXPECTED_SIZES = {"train": 60000, "test": 10000}
_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_TIMEOUT = 60.0  # seconds per HTTP request

Split = tuple[np.ndarray, np.ndarray]


def _user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/refimpl/fashion-mnist``, or ``~/.cache/refimpl/fashion-mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "refimpl" / "fashion-mnist"


def _find_file(folder: Path, name: str) -> Path | None:
    """Return the first of ``name``, ``name.gz`` (or MNIST's ``.idx`` spelling) in folder."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _find_files(folder: Path) -> tuple[list[Path] | None, str]:
    """Return the four files in ``folder`` (or None) and a short note on what was found."""
    if not folder.is_dir():
        return None, "not a folder"
    found = [_find_file(folder, name) for name in _NAMES]
    missing = [name for name, f in zip(_NAMES, found, strict=True) if f is None]
    if not missing:
        return [f for f in found if f is not None], "found"
    if len(missing) == len(_NAMES):
        return None, "no data files"
    return None, "incomplete, missing " + ", ".join(missing)


def _search_dirs() -> list[tuple[Path, str]]:
    """Return the places searched when no ``path`` is given, each with a label."""
    dirs: list[tuple[Path, str]] = []
    env = os.environ.get("REFIMPL_DATA", "")
    if env:
        root = Path(env).expanduser()
        dirs.append((root / "fashion-mnist", "$REFIMPL_DATA/fashion-mnist"))
        dirs.append((root, "$REFIMPL_DATA"))
    dirs.append((_user_cache_dir(), "user cache"))
    dirs.append((_SYSTEM_DIR, "Debian's dataset-fashion-mnist"))
    return dirs


def _not_found(searched: list[tuple[Path, str, str]], base_url: str) -> FileNotFoundError:
    names = ", ".join(f"{name}[.gz]" for name in _NAMES)
    lines = [f"Fashion-MNIST not found. Looked for {names} in:"]
    lines += [f"  - {folder} ({label}): {note}" for folder, label, note in searched]
    if "REFIMPL_DATA" not in os.environ:
        lines.append("  - $REFIMPL_DATA: not set")
    lines += [
        "Get the data in one of three ways:",
        "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
        f"(installs the files in {_SYSTEM_DIR});",
        f"  2. load_fashion_mnist(download=True) fetches them (about 30 MB) from {base_url} "
        f"into {_user_cache_dir()} and checks their SHA-256;",
        "  3. put the four files in a folder and set the environment variable REFIMPL_DATA to "
        "it (or to a folder holding it as fashion-mnist/).",
    ]
    return FileNotFoundError("\n".join(lines))


def _sha256_of_content(path: Path) -> str:
    """SHA-256 of the file's bytes after gzip decompression (if it is gzip), computed chunk by
    chunk: a downloaded gzip bomb is never inflated into memory."""
    digest = hashlib.sha256()
    for chunk in _iter_content(path, MAX_IDX_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _download(dest: Path, base_url: str) -> list[Path]:
    """Fetch the missing files into ``dest``, verify them, and return the four paths.

    Each file is written to ``<name>.gz.part`` and renamed to ``<name>.gz`` only after its
    decompressed SHA-256 matches :data:`FASHION_MNIST_SHA256`; on a mismatch (or corrupt gzip)
    the partial file is deleted and ``ValueError`` is raised.
    """
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in _NAMES:
        existing = _find_file(dest, name)
        if existing is not None:
            paths.append(existing)
            continue
        url = base_url.rstrip("/") + "/" + name + ".gz"
        final = dest / (name + ".gz")
        part = dest / (name + ".gz.part")
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT) as response, open(part, "wb") as f:
                shutil.copyfileobj(response, f)
            try:
                digest = _sha256_of_content(part)
            except ValueError as err:
                raise ValueError(f"downloaded {url} is not valid gzip data: {err}") from err
            expected = FASHION_MNIST_SHA256[name]
            if digest != expected:
                raise ValueError(
                    f"checksum mismatch for {url}: SHA-256 of the decompressed data is {digest}, "
                    f"expected {expected}; the file was deleted, try again or get the data "
                    "another way (see the FileNotFoundError message of load_fashion_mnist)"
                )
            os.replace(part, final)
        finally:
            part.unlink(missing_ok=True)
        paths.append(final)
    return paths


def _check_dtype(dtype: DTypeLike, normalize: bool) -> np.dtype:
    dtype = np.dtype(dtype)
    if normalize and dtype.kind != "f":
        raise TypeError(f"normalize=True needs a floating dtype, got dtype={dtype}")
    return dtype


def _load_four(
    files: list[Path], dtype: np.dtype, normalize: bool, n_classes: int = 10
) -> tuple[Split, Split]:
    """Read and check the four IDX files; convert images to (N, 1, 28, 28) ``dtype``."""
    splits = []
    for split, img_path, lab_path in (
        ("train", files[0], files[1]),
        ("test", files[2], files[3]),
    ):
        images = read_idx(img_path)
        labels = read_idx(lab_path)
        n = _EXPECTED_SIZES[split]
        if images.dtype != np.uint8 or images.shape != (n, 28, 28):
            raise ValueError(
                f"{img_path}: expected uint8 images of shape ({n}, 28, 28), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.shape != (n,):
            raise ValueError(
                f"{lab_path}: expected uint8 labels of shape ({n},), "
                f"got {labels.dtype} {labels.shape}"
            )
        if labels.max(initial=0) >= n_classes:
            raise ValueError(
                f"{lab_path}: labels must be 0..{n_classes - 1}, found {int(labels.max())}"
            )
        X = images.astype(dtype).reshape(n, 1, 28, 28)
        if normalize:
            X /= dtype.type(255)
        splits.append((X, labels.astype(np.int64)))
    return splits[0], splits[1]


def load_fashion_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    dtype: DTypeLike = np.float32,
    normalize: bool = True,
    base_url: str = FASHION_MNIST_URL,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST as ``(X_train, y_train), (X_test, y_test)``, like Keras.

    Parameters
    ----------
    path : str, os.PathLike or None
        A folder holding the four IDX files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
        each raw or ``.gz``). If given, only this folder is searched (and downloaded into).
        If None, search ``$REFIMPL_DATA/fashion-mnist``, ``$REFIMPL_DATA``, the user cache and
        ``/usr/share/datasets/fashion-mnist``, in that order; the first folder holding all four
        files is used.
    download : bool
        If the files are not found, download the missing ones from ``base_url`` into ``path``
        (or the user cache, ``$XDG_CACHE_HOME/refimpl/fashion-mnist`` or
        ``~/.cache/refimpl/fashion-mnist``), checking each file's SHA-256 against
        :data:`FASHION_MNIST_SHA256`. Off by default: nothing is fetched unless asked.
    dtype : numpy dtype
        Dtype of the images; floating when ``normalize=True``.
    normalize : bool
        Scale the pixel values 0..255 to [0, 1]. With ``False`` and ``dtype=np.uint8`` you get
        the stored bytes.
    base_url : str
        Where to download ``<name>.gz`` from; defaults to :data:`FASHION_MNIST_URL`.

    Returns
    -------
    (X_train, y_train) : tuple of ndarray
        ``X_train`` of shape (60000, 1, 28, 28) (NCHW) and ``y_train`` int64 of shape (60000,),
        labels 0..9 naming :data:`FASHION_MNIST_CLASSES`.
    (X_test, y_test) : tuple of ndarray
        Shapes (10000, 1, 28, 28) and (10000,).

    Raises
    ------
    FileNotFoundError
        If the files are found nowhere and ``download`` is False. The message lists the folders
        searched and the three ways to get the data.
    ValueError
        If a file is corrupt, has the wrong shape or labels outside 0..9, or a download fails
        its checksum (the bad file is deleted).
    TypeError
        If ``normalize=True`` with a non-floating ``dtype``.
    urllib.error.URLError
        If a download fails on the network.

    Examples
    --------
    >>> (X_train, y_train), (X_test, y_test) = load_fashion_mnist()  # doctest: +SKIP
    >>> X_train.shape, FASHION_MNIST_CLASSES[y_train[0]]              # doctest: +SKIP
    ((60000, 1, 28, 28), 'Ankle boot')
    """
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    dt = _check_dtype(dtype, normalize)
    explicit = [(Path(path).expanduser(), "path argument")] if path is not None else None
    places = explicit or _search_dirs()
    searched = []
    for folder, label in places:
        files, note = _find_files(folder)
        if files is not None:
            return _load_four(files, dt, normalize)
        searched.append((folder, label, note))
    if not download:
        raise _not_found(searched, base_url)
    dest = places[0][0] if path is not None else _user_cache_dir()
    return _load_four(_download(dest, base_url), dt, normalize)


def load_mnist(
    path: str | os.PathLike[str],
    *,
    dtype: DTypeLike = np.float32,
    normalize: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST from a folder you already have, as ``(X_train, y_train), (X_test, y_test)``.

    MNIST uses the same four IDX file names and layout as Fashion-MNIST (raw or ``.gz``; the
    ``train-images.idx3-ubyte`` spelling is accepted too). There is no search and no download.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding the four files.
    dtype : numpy dtype
        Dtype of the images; floating when ``normalize=True``.
    normalize : bool
        Scale the pixel values 0..255 to [0, 1].

    Returns
    -------
    (X_train, y_train) : tuple of ndarray
        Shapes (60000, 1, 28, 28) and (60000,), labels int64 0..9.
    (X_test, y_test) : tuple of ndarray
        Shapes (10000, 1, 28, 28) and (10000,).

    Raises
    ------
    FileNotFoundError
        If a file is missing from ``path``.
    ValueError
        If a file is corrupt or has the wrong shape or labels.
    TypeError
        If ``normalize=True`` with a non-floating ``dtype``.
    """
    dt = _check_dtype(dtype, normalize)
    folder = Path(path).expanduser()
    files, note = _find_files(folder)
    if files is None:
        raise FileNotFoundError(
            f"MNIST not found in {folder}: {note}. Expected "
            + ", ".join(f"{name}[.gz]" for name in _NAMES)
        )
    return _load_four(files, dt, normalize)
