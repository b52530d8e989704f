"""Data sets for the book's experiments: offline handwritten digits, and MNIST on request.

The book itself only ever uses :func:`load_digits`: scikit-learn's bundled copy
of the UCI handwritten digits (1,797 images of 8 x 8 pixels), which needs no
network. Real MNIST (70,000 images of 28 x 28 pixels) is there for readers who
want to repeat an experiment at full size: :func:`download_mnist` fetches the
four IDX files once, checking each against its published SHA-256 digest, and
:func:`load_mnist` reads them with nothing but ``gzip`` and NumPy.

Both loaders return a :class:`Dataset` ``(x_train, y_train, x_test, y_test)``
with one flattened image per row, pixel values scaled to ``[0, 1]`` and
integer labels. Nothing here reads or changes NumPy's global random state.

This module belongs to the numpy-only core: nothing beyond NumPy and the
standard library is imported at module level (``urllib`` only inside
:func:`download_mnist`), so that ``import bnlib`` stays fast. :func:`load_digits`
reads scikit-learn's bundled digits file directly and imports scikit-learn only
as a fallback, when that file cannot be found.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import numbers
import os
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._checks import check_float_dtype, check_path, check_positive

__all__ = [
    "Dataset",
    "load_digits",
    "MNIST_FILES",
    "DEFAULT_MIRROR",
    "MIRROR_ENV_VAR",
    "download_mnist",
    "read_idx",
    "load_mnist",
]


class Dataset(NamedTuple):
    """A train/test split of a labelled image data set.

    Attributes
    ----------
    x_train : ndarray of shape (n_train, n_pixels)
        Training images, one flattened image per row, values in ``[0, 1]``.
    y_train : ndarray of shape (n_train,), int64
        Training labels (the digit, 0 to 9).
    x_test : ndarray of shape (n_test, n_pixels)
        Test images, laid out like ``x_train``.
    y_test : ndarray of shape (n_test,), int64
        Test labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray




# --------------------------------------------------------------------------------------
# The offline default: scikit-learn's bundled digits
# --------------------------------------------------------------------------------------

_DIGITS_MAX_VALUE = 16.0  # each 8x8 pixel counts "on" pixels in a 4x4 block: 0..16


def _bundled_digits_file():
    """Path of the digits table inside the installed scikit-learn, found without importing it.

    ``importlib.util.find_spec`` locates a top-level package without running its
    ``__init__``; importing ``sklearn.datasets`` costs seconds (it pulls in SciPy),
    reading the 57 kB table costs milliseconds. ``None`` when the file is not
    where scikit-learn has kept it so far.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """The 1,797 digits as ``(pixels float64 (1797, 64), labels int64 (1797,))``, read-only.

    Read straight from scikit-learn's bundled ``digits.csv.gz`` (64 pixel
    columns, then the label), the file ``sklearn.datasets.load_digits`` reads;
    that function itself is the fallback. Parsed once per process; callers get
    copies, never these arrays.
    """
    pixels, labels = _read_digits()
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def _read_digits():
    path = _bundled_digits_file()
    if path is not None:
        table = np.loadtxt(path, delimiter=",")
        if table.shape == (1797, 65):
            return table[:, :-1].copy(), table[:, -1].astype(np.int64)
    try:
        from sklearn.datasets import load_digits as _sklearn_load_digits
    except ImportError as err:
        raise ImportError(
            "bnlib.data.load_digits needs scikit-learn, which ships the digits "
            "offline: pip install scikit-learn"
        ) from err
    bunch = _sklearn_load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _stratified_test_indices(labels, n_test, rng):
    """Pick ``n_test`` indices so that every class is represented in proportion.

    Each class ``c`` with ``n_c`` members first gets ``floor(n_test * n_c / n)``
    test places; the places left over go to the classes with the largest
    fractional remainders (ties broken by the generator). Within a class the
    members are chosen uniformly at random.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_test * counts / labels.size
    quota = np.floor(exact).astype(np.int64)
    left = n_test - int(quota.sum())
    if left:
        # Random tie-break: shuffle, then a stable sort by descending remainder.
        order = rng.permutation(classes.size)
        by_remainder = order[np.argsort(-(exact - quota)[order], kind="stable")]
        quota[by_remainder[:left]] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)
    ]
    return np.concatenate(picked)


def load_digits(test_fraction=0.25, seed=0, dtype=np.float32):
    """scikit-learn's bundled handwritten digits, scaled to [0, 1] and split in two.

    The 1,797 images of 8 x 8 pixels ship with scikit-learn, so this works
    offline; it is the data set the book's experiments use.

    Parameters
    ----------
    test_fraction : float, default=0.25
        Fraction of the images held out for testing, strictly between 0 and 1.
        The test set has ``ceil(test_fraction * 1797)`` images (450 by default),
        rounded up as in scikit-learn's ``train_test_split``.
    seed : int >= 0 or numpy.random.Generator, default=0
        Seeds the ``numpy.random.Generator`` that draws the split (a Generator
        is used as given). The same seed gives the same split.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Floating type of the images.

    Returns
    -------
    Dataset
        ``x_train`` of shape (n_train, 64) and ``x_test`` of shape (n_test, 64)
        in ``dtype`` with values in ``[0, 1]``; ``y_train`` of shape (n_train,)
        and ``y_test`` of shape (n_test,), int64 digits 0 to 9.

    Notes
    -----
    Pixel values, counts from 0 to 16, are divided by 16. The split is
    *stratified*: each digit's share of the test set equals its share of the
    data up to rounding (largest-remainder allocation), so every digit appears
    in both halves. Within each half the samples are in random order. The
    split is drawn from ``numpy.random.default_rng(seed)``; NumPy's global
    random state is never read or changed.

    The images are the test set of the UCI "Optical Recognition of Handwritten
    Digits" data (Alpaydin and Kaynak, 1998; CC BY 4.0), read from the table
    bundled with scikit-learn: the same values ``sklearn.datasets.load_digits()``
    returns, without the seconds its import costs.

    Examples
    --------
    >>> from bnlib.data import load_digits
    >>> x_train, y_train, x_test, y_test = load_digits()
    >>> x_train.shape, y_train.shape, x_test.shape, y_test.shape
    ((1347, 64), (1347,), (450, 64), (450,))
    >>> x_train.dtype, y_train.dtype
    (dtype('float32'), dtype('int64'))
    """
    dt = check_float_dtype(dtype)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    if isinstance(seed, np.random.Generator):
        rng = seed
    elif isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed!r}")
        rng = np.random.default_rng(int(seed))
    else:
        raise TypeError(
            f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__} {seed!r}"
        )

    pixels, labels = _digits_arrays()
    images = pixels / _DIGITS_MAX_VALUE
    n = labels.size
    n_test = math.ceil(float(test_fraction) * n)
    if not 0 < n_test < n:
        raise ValueError(
            f"test_fraction={test_fraction!r} leaves {n_test} of {n} images for testing "
            f"and {n - n_test} for training; both need at least one"
        )

    test_idx = rng.permutation(_stratified_test_indices(labels, n_test, rng))
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    return Dataset(
        images[train_idx].astype(dt),
        labels[train_idx],
        images[test_idx].astype(dt),
        labels[test_idx],
    )


# --------------------------------------------------------------------------------------
# Real MNIST, for readers with a network
# --------------------------------------------------------------------------------------

# SHA-256 digests of the four gzipped IDX files as distributed (sizes in bytes:
# 9,912,422 / 28,881 / 1,648,877 / 4,542). Source: TensorFlow Datasets,
# tensorflow_datasets/url_checksums/mnist.txt (github.com/tensorflow/datasets),
# which records them for https://storage.googleapis.com/cvdf-datasets/mnist/.
# The same digests appear for the ossci-datasets mirror that torchvision uses
# (whose own mnist.py lists the MD5s of these same files).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

# The mirror TensorFlow Datasets downloads from; yann.lecun.com now often refuses
# direct downloads. https://ossci-datasets.s3.amazonaws.com/mnist/ serves the same files.
DEFAULT_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MIRROR_ENV_VAR = "BNLIB_MNIST_MIRROR"

_CHUNK = 1 << 16


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_mirror(mirror):
    """Explicit argument, else ``$BNLIB_MNIST_MIRROR``, else :data:`DEFAULT_MIRROR`.

    A mirror without a URL scheme is taken as a local directory.
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV_VAR) or DEFAULT_MIRROR
    mirror = str(mirror)
    if "://" not in mirror:
        mirror = Path(mirror).expanduser().resolve().as_uri()
    return mirror.rstrip("/") + "/"


def _fetch(url, name, expected, mirror, directory, timeout, give_up_at):
    """Download ``url`` to ``directory/name`` atomically, or raise and leave nothing.

    Each connection attempt and read waits at most ``timeout`` seconds (and never
    past ``give_up_at``, a ``time.monotonic()`` instant); between reads, passing
    ``give_up_at`` ends the download.
    """
    import http.client
    import tempfile
    import urllib.error
    import urllib.request

    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                wait = min(timeout, give_up_at - time.monotonic())
                if wait <= 0:
                    raise _DeadlinePassed
                with urllib.request.urlopen(url, timeout=wait) as response:
                    length = response.headers.get("Content-Length")
                    # read1 returns what has arrived instead of waiting for a full
                    # chunk, so a slow trickle cannot hold a read open past the deadline
                    read = getattr(response, "read1", response.read)
                    for chunk in iter(lambda: read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if time.monotonic() > give_up_at:
                            raise _DeadlinePassed
            except _DeadlinePassed:
                raise TimeoutError(
                    f"Download of {name} from {url} did not finish within the deadline "
                    f"(download_mnist(deadline=...)); {received} bytes had arrived "
                    f"(mirror {mirror}). Nothing was saved. Try again with a longer "
                    f"deadline, or another mirror."
                ) from None
            except http.client.IncompleteRead as err:
                raise OSError(
                    f"Download of {name} from {url} was cut short after "
                    f"{received + len(err.partial)} bytes (mirror {mirror}); nothing was "
                    f"saved. Try again, or another mirror."
                ) from err
            except (urllib.error.URLError, OSError) as err:
                raise OSError(
                    f"Could not download {name} from {url} (mirror {mirror}): {err}. "
                    f"Nothing was saved. Choose another mirror with download_mnist(mirror=...) "
                    f"or the {MIRROR_ENV_VAR} environment variable."
                ) from err
        if length is not None and length.isdigit() and received != int(length):
            raise OSError(
                f"Download of {name} from {url} is truncated: expected {int(length)} bytes, "
                f"received {received} (mirror {mirror}); nothing was saved. Try again, or "
                f"another mirror."
            )
        actual = digest.hexdigest()
        if actual != expected:
            raise ValueError(
                f"SHA-256 mismatch for {name} downloaded from {url} (mirror {mirror}): "
                f"expected {expected}, got {actual} ({received} bytes). The file is "
                f"corrupt, truncated or not the original; nothing was saved. Try again, "
                f"or another mirror."
            )
        os.replace(tmp, Path(directory) / name)
    finally:
        # After os.replace the temporary name no longer exists; otherwise this is
        # the clean-up that leaves nothing partial behind, whatever was raised.
        if tmp.exists():
            tmp.unlink()


class _DeadlinePassed(Exception):
    """Internal: the overall deadline of :func:`download_mnist` has passed."""


def download_mnist(root="data/mnist", mirror=None, force=False, timeout=60, deadline=1800):
    """Download the four MNIST IDX files into ``root``, verifying each one.

    Parameters
    ----------
    root : str or path-like, default="data/mnist"
        Directory for the files, created if needed. A relative path is relative
        to the current working directory.
    mirror : str, optional
        Base URL the four file names are appended to, e.g.
        ``"https://ossci-datasets.s3.amazonaws.com/mnist/"`` or
        ``"file:///media/usb/mnist/"``; a plain path is taken as a local
        directory. When omitted: the environment variable
        ``BNLIB_MNIST_MIRROR`` if set, otherwise :data:`DEFAULT_MIRROR`.
    force : bool, default=False
        Download every file again even when a verified copy is present.
    timeout : float, default=60
        Seconds to wait for the server on each connection attempt and read.
    deadline : float, default=1800
        Seconds for the whole call: a download still running when they have
        passed is abandoned (checked after each read, which itself waits at
        most ``timeout`` seconds), however slowly the data keeps arriving.

    Returns
    -------
    root : pathlib.Path
        The directory now holding the four verified ``.gz`` files.

    Raises
    ------
    ValueError
        A downloaded file's SHA-256 digest differs from :data:`MNIST_FILES`;
        the message names the file, both digests and the mirror.
    OSError
        The mirror could not be reached, or a download was cut short.
    TimeoutError
        The ``deadline`` passed before the four files were in (a subclass of
        ``OSError``).

    Notes
    -----
    A file already present with the right digest is skipped. Otherwise it is
    streamed into a temporary file in ``root``, its SHA-256 checked, and only
    then moved to its final name with ``os.replace`` (atomic on one file
    system). On any failure the temporary file is deleted: ``root`` never
    holds a partial or unverified file under a final name. A present file with
    a wrong digest is replaced only once a good copy has arrived.
    """
    timeout = check_positive(timeout, "timeout")
    deadline = check_positive(deadline, "deadline")
    give_up_at = time.monotonic() + deadline
    base = _resolve_mirror(mirror)
    directory = check_path(root, "root")
    directory.mkdir(parents=True, exist_ok=True)
    for name, expected in MNIST_FILES.items():
        target = directory / name
        if not force and target.is_file() and _sha256(target) == expected:
            continue
        _fetch(base + name, name, expected, base, directory, timeout, give_up_at)
    return directory


# --------------------------------------------------------------------------------------
# The IDX format
# --------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number); data are big-endian ("MSB first").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path):
    """Read an IDX file (the format MNIST ships in), gzipped or raw.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is recognised from the content (its first
        two bytes), not from the name.

    Returns
    -------
    array : ndarray of shape (d_1, ..., d_ndim)
        The data in native byte order with the dtype the file declares: uint8,
        int8, int16, int32, float32 or float64. MNIST images come back as
        ``(n, 28, 28)`` uint8, labels as ``(n,)`` uint8.

    Raises
    ------
    ValueError
        The file is not IDX (the magic number's first two bytes are not zero),
        declares an unknown type code, or its data is truncated or followed by
        extra bytes ("expected N bytes of data, found M"), or its gzip stream
        is corrupt.

    Notes
    -----
    The layout, all integers big-endian: a 4-byte magic number (two zero
    bytes, a type code such as ``0x08`` for unsigned bytes, the number of
    dimensions), then one 4-byte size per dimension, then the values in C
    order. MNIST's image files start ``00 00 08 03`` (2051), the label files
    ``00 00 08 01`` (2049).
    """
    path = check_path(path, "path")
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise ValueError(f"{path}: the gzip stream is truncated or corrupt ({err})") from err

    if len(raw) < 4:
        raise ValueError(
            f"{path} is not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: its magic number {raw[:4].hex(' ')} should start "
            f"with two zero bytes (MNIST images start 00 00 08 03, labels 00 00 08 01)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({dt.name})" for c, dt in _IDX_DTYPES.items())
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; known codes are {known}")
    dtype = _IDX_DTYPES[code]

    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX data {problem}: shape {shape} of {dtype.name}, "
            f"expected {expected} bytes of data, found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory, name):
    """``name`` or its uncompressed form (as torchvision stores them), if present."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load_split(directory, prefix, dt):
    images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte.gz")
    labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte.gz")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected images of shape (n, rows, cols) in uint8, "
            f"got shape {images.shape} of {images.dtype}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path}: expected labels of shape ({images.shape[0]},), one per "
            f"image of {images_path.name}, got {labels.shape}"
        )
    if labels.dtype.kind not in "iu" or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise ValueError(
            f"{labels_path}: expected digit labels 0 to 9, got {labels.dtype} values "
            f"from {labels.min() if labels.size else '-'} to {labels.max() if labels.size else '-'}"
        )
    n, rows, cols = images.shape
    x = images.reshape(n, rows * cols).astype(dt)
    x /= dt.type(255)
    return x, labels.astype(np.int64)


def load_mnist(root="data/mnist", download=False, dtype=np.float32):
    """MNIST's 60,000 training and 10,000 test images, flattened and scaled to [0, 1].

    Parameters
    ----------
    root : str or path-like, default="data/mnist"
        Directory holding the four IDX files (``.gz`` as downloaded, or
        uncompressed with the same names minus ``.gz``).
    download : bool, default=False
        Call :func:`download_mnist` first (it skips files already verified).
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Floating type of the images.

    Returns
    -------
    Dataset
        ``x_train`` of shape (60000, 784), ``x_test`` of shape (10000, 784) in
        ``dtype`` with values ``pixel / 255`` in ``[0, 1]``; ``y_train`` of
        shape (60000,) and ``y_test`` of shape (10000,), int64 digits 0 to 9.
        The split is MNIST's own, in the files' order. Files holding no images
        give arrays of 0 rows.

    Raises
    ------
    FileNotFoundError
        A file is missing and ``download`` is False; the message says how to
        download it.
    ValueError
        A file is not what MNIST ships, and the message names it: a corrupt
        gzip stream or IDX header, images that are not ``(n, rows, cols)``
        uint8, labels that are not one integer 0 to 9 per image.

    Notes
    -----
    The book never calls this: its experiments use :func:`load_digits`, which
    works offline. MNIST is by Yann LeCun and Corinna Cortes (with Christopher
    Burges), CC BY-SA 3.0.
    """
    dt = check_float_dtype(dtype)
    directory = check_path(root, "root")
    if download:
        download_mnist(root)
    missing = [name for name in MNIST_FILES if _find_idx(directory, name) is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST files not found in {directory.resolve()}: {', '.join(missing)}. "
            f"Download them once (about 11 MB, needs a network) with "
            f"bnlib.data.download_mnist({str(root)!r}) or load_mnist(download=True). "
            f"The book itself uses bnlib.data.load_digits(), which works offline."
        )
    x_train, y_train = _load_split(directory, "train", dt)
    x_test, y_test = _load_split(directory, "t10k", dt)
    return Dataset(x_train, y_train, x_test, y_test)
