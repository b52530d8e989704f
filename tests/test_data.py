"""bnlib.data: the offline digits, the IDX reader, and MNIST's download and loader.

Everything here runs offline. MNIST is stood in for by tiny fake IDX files served
from a temporary "mirror" (``file://`` URLs, and an ``http.server`` on 127.0.0.1
for a transfer cut short), with ``MNIST_FILES`` patched to the fakes' digests.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import random
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bnlib import data
from bnlib.data import Dataset, download_mnist, load_digits, load_mnist, read_idx

N_DIGITS = 1797

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
          np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array):
    """Encode ``array`` as IDX: magic (0, 0, type code, ndim), big-endian sizes, big-endian data."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress):
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory):
    """Temporary download files left in ``directory`` (there should never be any)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


class FakeMnist:
    """Four tiny IDX files: 6 training and 3 test images of 4 x 5 pixels."""

    def __init__(self, directory):
        rng = np.random.default_rng(1234)
        self.train_images = rng.integers(0, 256, size=(6, 4, 5), dtype=np.uint8)
        self.train_labels = np.array([0, 1, 2, 3, 4, 5], dtype=np.uint8)
        self.test_images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
        self.test_labels = np.array([9, 8, 7], dtype=np.uint8)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "train-images-idx3-ubyte.gz": self.train_images,
            "train-labels-idx1-ubyte.gz": self.train_labels,
            "t10k-images-idx3-ubyte.gz": self.test_images,
            "t10k-labels-idx1-ubyte.gz": self.test_labels,
        }
        self.digests = {
            name: sha256(write_idx(directory / name, array, compress=True))
            for name, array in arrays.items()
        }

    @property
    def url(self):
        return self.directory.as_uri() + "/"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror of fake MNIST files; ``MNIST_FILES`` holds their digests."""
    fake = FakeMnist(tmp_path / "mirror")
    monkeypatch.setattr(data, "MNIST_FILES", dict(fake.digests))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    return fake


# --------------------------------------------------------------------------------------
# load_digits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_digits_shapes_dtypes_and_range(dtype):
    ds = load_digits(dtype=dtype)
    assert isinstance(ds, Dataset)
    x_train, y_train, x_test, y_test = ds
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    assert x_train.dtype == x_test.dtype == np.dtype(dtype)
    assert y_train.dtype == y_test.dtype == np.int64
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # Pixel counts 0..16 divided by 16: every value is a multiple of 1/16.
    np.testing.assert_array_equal(x_train * 16, np.round(x_train * 16))
    assert set(np.unique(np.concatenate([y_train, y_test]))) == set(range(10))


@pytest.mark.parametrize("test_fraction", [0.1, 0.25, 0.5, 0.9])
def test_load_digits_split_sizes_and_stratification(test_fraction):
    x_train, y_train, x_test, y_test = load_digits(test_fraction=test_fraction, seed=3)
    n_test = int(np.ceil(test_fraction * N_DIGITS))
    assert len(x_test) == len(y_test) == n_test
    assert len(x_train) == len(y_train) == N_DIGITS - n_test
    # Stratified: each digit's test count is its share of the test set, up to rounding.
    y_all = np.concatenate([y_train, y_test])
    per_class = np.bincount(y_all, minlength=10)
    expected = n_test * per_class / N_DIGITS
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - expected) < 1)


def test_load_digits_is_a_partition_of_scikit_learns_digits():
    """Train and test together are exactly scikit-learn's 1,797 images, each once."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    x_train, y_train, x_test, y_test = load_digits(dtype=np.float64)
    ours = np.column_stack([np.concatenate([x_train, x_test]) * 16, np.concatenate([y_train, y_test])])
    theirs = np.column_stack([bunch.data, bunch.target])
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 - sort rows lexicographically
    np.testing.assert_array_equal(order(ours), order(theirs))


@pytest.fixture
def uncached_digits():
    """Parse the digits afresh (load_digits caches the parsed table per process)."""
    data._digits_arrays.cache_clear()
    yield
    data._digits_arrays.cache_clear()


def test_load_digits_fallback_through_scikit_learn_gives_the_same_split(monkeypatch, uncached_digits):
    pytest.importorskip("sklearn")
    fast = load_digits(seed=5)
    data._digits_arrays.cache_clear()
    monkeypatch.setattr(data, "_bundled_digits_file", lambda: None)
    slow = load_digits(seed=5)
    assert data._digits_arrays.cache_info().misses == 1  # really re-read, through sklearn
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_load_digits_same_seed_same_split_different_seed_different_split():
    a = load_digits(seed=0)
    b = load_digits(seed=0)
    c = load_digits(seed=1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.x_test, c.x_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_load_digits_accepts_a_generator_and_draws_from_it():
    rng = np.random.default_rng(7)
    first = load_digits(seed=rng)
    second = load_digits(seed=rng)  # the generator has moved on
    assert not np.array_equal(first.y_test, second.y_test)
    again = load_digits(seed=np.random.default_rng(7))
    np.testing.assert_array_equal(first.x_train, again.x_train)


def test_load_digits_leaves_global_random_state_alone():
    np.random.seed(42)
    random.seed(42)
    np_state = np.random.get_state()
    py_state = random.getstate()
    load_digits(seed=0)
    load_digits(seed=np.random.default_rng(3))
    after = np.random.get_state()
    assert np_state[0] == after[0]
    np.testing.assert_array_equal(np_state[1], after[1])
    assert np_state[2:] == after[2:]
    assert random.getstate() == py_state


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.1, 1.5, 1 - 1e-6, float("nan")])
def test_load_digits_rejects_bad_test_fraction(bad):
    # 1 - 1e-6 is below 1 but rounds up to all 1,797 images, leaving none to train on.
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=bad)


@pytest.mark.parametrize("bad", [True, "0.25", None])
def test_load_digits_rejects_a_test_fraction_that_is_not_a_number(bad):
    with pytest.raises(TypeError, match="test_fraction"):
        load_digits(test_fraction=bad)


def test_load_digits_smallest_split_has_one_test_image():
    ds = load_digits(test_fraction=1e-6)
    assert len(ds.x_test) == 1 and len(ds.x_train) == N_DIGITS - 1


def test_load_digits_rejects_bad_seed_and_dtype():
    with pytest.raises(TypeError, match="seed"):
        load_digits(seed="zero")
    with pytest.raises(TypeError, match="seed"):
        load_digits(seed=np.random.RandomState(0))
    with pytest.raises(TypeError, match="dtype"):
        load_digits(dtype=np.int32)


def test_load_digits_does_not_return_views_of_a_shared_cache():
    a = load_digits()
    a.x_train[:] = -1.0
    b = load_digits()
    assert b.x_train.min() == 0.0


_IMPORT_PROBE = r"""
import json, sys
import bnlib.data
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_bnlib_data_stays_light():
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], check=True, capture_output=True, text=True)
    modules = set(json.loads(out.stdout))
    for heavy in ("sklearn", "scipy", "torch", "matplotlib", "urllib.request", "http.client"):
        assert heavy not in modules, f"import bnlib.data pulled in {heavy}"


# --------------------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_read_idx_images_and_labels(tmp_path, compress):
    images = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    # The name says nothing: compression is recognised from the content.
    got_images = read_idx(write_idx(tmp_path / "images.idx", images, compress))
    got_labels = read_idx(write_idx(tmp_path / "labels.idx", labels, compress))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 255  # writable, not a view of read-only bytes


def test_read_idx_magic_numbers_are_mnists(tmp_path):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    payload = idx_bytes(images)
    assert struct.unpack(">I", payload[:4])[0] == 2051
    assert struct.unpack(">I", idx_bytes(np.zeros(2, np.uint8))[:4])[0] == 2049
    assert read_idx(write_idx(tmp_path / "x", images, compress=True)).shape == (2, 28, 28)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_read_idx_other_types_come_back_in_native_byte_order(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype) * (1.5 if dtype[0] == "f" else 1)
    array = array.astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", array, compress=False))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_read_idx_truncated_data(tmp_path, compress):
    payload = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))[:-1]
    path = tmp_path / "short.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(ValueError, match="expected 60 bytes of data, found 59"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="expected 4 bytes of data, found 5"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(600, dtype=np.int16)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="gzip stream is truncated or corrupt"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "header.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 10))  # 3 dimensions, 1 size
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="shorter than the 4-byte magic number"):
        read_idx(path)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_read_idx_corrupt_magic(tmp_path, compress):
    payload = bytearray(idx_bytes(np.zeros((2, 3), np.uint8)))
    payload[0] = 0x12
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(bytes(payload)) if compress else bytes(payload))
    with pytest.raises(ValueError, match="not an IDX file: its magic number 12 00 08 02"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    payload = bytearray(idx_bytes(np.zeros(4, np.uint8)))
    payload[2] = 0x07
    path = tmp_path / "code.idx"
    path.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        read_idx(path)


# --------------------------------------------------------------------------------------
# download_mnist
# --------------------------------------------------------------------------------------


def test_the_real_digests_are_sha256_of_the_four_files():
    assert list(data.MNIST_FILES) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    ]
    for digest in data.MNIST_FILES.values():
        assert len(digest) == 64 and int(digest, 16) >= 0
    assert data.DEFAULT_MIRROR.startswith("https://") and data.DEFAULT_MIRROR.endswith("/")


def test_download_from_a_file_mirror(mirror, tmp_path):
    root = tmp_path / "cache" / "mnist"  # created, parents included
    assert download_mnist(root, mirror=mirror.url) == root
    assert sorted(p.name for p in root.iterdir()) == sorted(mirror.digests)
    for name, digest in mirror.digests.items():
        assert sha256(root / name) == digest


def test_second_call_skips_verified_files(mirror, tmp_path):
    root = tmp_path / "mnist"
    download_mnist(root, mirror=mirror.url)
    stamps = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    for p in mirror.directory.iterdir():  # the mirror is gone: nothing may be fetched
        p.unlink()
    download_mnist(root, mirror=mirror.url)
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == stamps


def test_force_downloads_again(mirror, tmp_path):
    root = tmp_path / "mnist"
    download_mnist(root, mirror=mirror.url)
    for p in mirror.directory.iterdir():
        p.unlink()
    with pytest.raises(OSError, match="Could not download train-images-idx3-ubyte.gz"):
        download_mnist(root, mirror=mirror.url, force=True)
    # The verified copies survive a failed forced download.
    for name, digest in mirror.digests.items():
        assert sha256(root / name) == digest
    assert leftovers(root) == []


def test_a_local_file_with_a_wrong_digest_is_replaced(mirror, tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    download_mnist(root, mirror=mirror.url)
    assert sha256(root / "t10k-labels-idx1-ubyte.gz") == mirror.digests["t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_bad_file_on_the_mirror_raises_and_leaves_nothing(mirror, tmp_path, damage):
    name = "train-labels-idx1-ubyte.gz"
    served = mirror.directory / name
    good = served.read_bytes()
    bad = bytes([good[0] ^ 0xFF]) + good[1:] if damage == "corrupt" else good[: len(good) // 2]
    served.write_bytes(bad)
    root = tmp_path / "mnist"
    with pytest.raises(ValueError) as excinfo:
        download_mnist(root, mirror=mirror.url)
    message = str(excinfo.value)
    assert name in message
    assert mirror.digests[name] in message  # expected
    assert hashlib.sha256(bad).hexdigest() in message  # actual
    assert mirror.url in message
    assert not (root / name).exists()
    assert leftovers(root) == []
    # Files before the bad one in MNIST_FILES' order were verified and kept.
    assert (root / "train-images-idx3-ubyte.gz").exists()


def test_mirror_from_the_environment_and_as_a_plain_path(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV_VAR, mirror.url)
    download_mnist(tmp_path / "from_env")
    assert sorted(p.name for p in (tmp_path / "from_env").iterdir()) == sorted(mirror.digests)
    monkeypatch.setenv(data.MIRROR_ENV_VAR, "file:///nonexistent/")  # an explicit mirror wins
    download_mnist(tmp_path / "from_path", mirror=str(mirror.directory))
    assert sorted(p.name for p in (tmp_path / "from_path").iterdir()) == sorted(mirror.digests)


def test_an_unreachable_mirror_names_the_file_and_the_mirror(mirror, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    root = tmp_path / "mnist"
    with pytest.raises(OSError) as excinfo:
        download_mnist(root, mirror=empty.as_uri())
    assert "train-images-idx3-ubyte.gz" in str(excinfo.value)
    assert empty.as_uri() in str(excinfo.value)
    assert list(root.iterdir()) == []


SLOW_BYTES_PER_SECOND = 5
SLOW_SERVER_GIVES_UP = 10.0  # seconds: bounds a handler thread whatever the client does


class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves the fake files; ``/cut/<name>`` promises the full length but sends half;
    ``/slow/<name>`` sends 5 bytes a second; ``/stall/<name>`` sends the headers, then nothing.
    """

    files: dict = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        mode = self.path.strip("/").split("/")[0]
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "slow":
            self._trickle(body)
        elif mode == "stall":
            time.sleep(2.0)  # longer than the client's timeout, well under the test's patience
            self.close_connection = True
        else:
            self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
            if mode == "cut":
                self.close_connection = True

    def _trickle(self, body):
        """One byte every 1/5 s until the body is sent, the client leaves, or 10 s pass."""
        stop = time.monotonic() + SLOW_SERVER_GIVES_UP
        self.close_connection = True
        try:
            for i in range(len(body)):
                if time.monotonic() > stop:
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(1 / SLOW_BYTES_PER_SECOND)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def http_mirror(mirror, monkeypatch):
    """The fake mirror served over HTTP on 127.0.0.1, bypassing any proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = type("Handler", (_MirrorHandler,), {
        "files": {p.name: p.read_bytes() for p in mirror.directory.iterdir()},
    })
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_over_http(http_mirror, mirror, tmp_path):
    root = download_mnist(tmp_path / "mnist", mirror=http_mirror + "/mnist", timeout=10)
    for name, digest in mirror.digests.items():
        assert sha256(root / name) == digest
    assert leftovers(root) == []


def test_a_transfer_cut_short_raises_and_leaves_nothing(http_mirror, tmp_path):
    root = tmp_path / "mnist"
    with pytest.raises(OSError, match="truncated|cut short") as excinfo:
        download_mnist(root, mirror=http_mirror + "/cut/", timeout=10)
    assert "train-images-idx3-ubyte.gz" in str(excinfo.value)
    assert http_mirror in str(excinfo.value)
    assert list(root.iterdir()) == []


# --------------------------------------------------------------------------------------
# load_mnist
# --------------------------------------------------------------------------------------


def _check_fake_dataset(ds, fake, dtype):
    x_train, y_train, x_test, y_test = ds
    assert x_train.shape == (6, 20) and x_test.shape == (3, 20)
    assert x_train.dtype == x_test.dtype == np.dtype(dtype)
    assert y_train.dtype == y_test.dtype == np.int64
    np.testing.assert_allclose(x_train, fake.train_images.reshape(6, 20) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x_test, fake.test_images.reshape(3, 20) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_train, fake.train_labels)
    np.testing.assert_array_equal(y_test, fake.test_labels)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_mnist_end_to_end(mirror, tmp_path, dtype):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    _check_fake_dataset(load_mnist(root, dtype=dtype), mirror, dtype)


def test_load_mnist_download_true_uses_the_configured_mirror(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV_VAR, mirror.url)
    ds = load_mnist(tmp_path / "mnist", download=True)
    _check_fake_dataset(ds, mirror, np.float32)


def test_load_mnist_reads_uncompressed_files_too(mirror, tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    for name in mirror.digests:
        (root / name.removesuffix(".gz")).write_bytes(gzip.decompress((mirror.directory / name).read_bytes()))
    _check_fake_dataset(load_mnist(root), mirror, np.float32)


def test_load_mnist_missing_files_say_how_to_download(tmp_path):
    root = tmp_path / "nothing_here"
    with pytest.raises(FileNotFoundError) as excinfo:
        load_mnist(root)
    message = str(excinfo.value)
    assert "bnlib.data.download_mnist(" in message
    assert "load_digits" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert not root.exists()  # looking does not create anything


def test_load_mnist_rejects_mismatched_labels(mirror, tmp_path):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2], np.uint8), compress=True)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: expected labels of shape \(3,\), one per image"):
        load_mnist(root)


# --------------------------------------------------------------------------------------
# robustness (issue #16): deadlines, corrupt streams, odd files, bad parameters
# --------------------------------------------------------------------------------------


def test_a_slow_mirror_hits_the_overall_deadline(http_mirror, tmp_path):
    # 5 bytes a second: every read returns within the per-read timeout, so only an
    # overall deadline can end the download
    root = tmp_path / "mnist"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not finish within the deadline") as excinfo:
        download_mnist(root, mirror=http_mirror + "/slow/", timeout=5, deadline=1.0)
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 1.0 + 1.5  # one trickled byte (0.2 s) past the deadline, plus load
    assert "train-images-idx3-ubyte.gz" in str(excinfo.value)
    assert isinstance(excinfo.value, OSError)
    assert list(root.iterdir()) == []


def test_a_silent_mirror_hits_the_per_read_timeout(http_mirror, tmp_path):
    root = tmp_path / "mnist"
    start = time.monotonic()
    with pytest.raises(OSError, match="Could not download train-images-idx3-ubyte.gz"):
        download_mnist(root, mirror=http_mirror + "/stall/", timeout=0.5, deadline=60)
    assert time.monotonic() - start < 0.5 + 1.5
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("name, value, error, message", [
    ("timeout", -1, ValueError, "timeout must be a positive finite number, got -1"),
    ("timeout", 0, ValueError, "timeout must be a positive finite number"),
    ("timeout", float("nan"), ValueError, "timeout must be a positive finite number"),
    ("timeout", None, TypeError, "timeout must be a positive real number, got None"),
    ("deadline", 0.0, ValueError, "deadline must be a positive finite number, got 0.0"),
    ("deadline", "10", TypeError, "deadline must be a positive real number, got '10'"),
])
def test_download_mnist_rejects_bad_timeouts(mirror, tmp_path, name, value, error, message):
    with pytest.raises(error, match=message):
        download_mnist(tmp_path / "mnist", mirror=mirror.url, **{name: value})
    assert not (tmp_path / "mnist").exists()


def test_a_corrupt_deflate_stream_names_the_file(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    compressed[10] = 0xFF  # the first deflate block header: an invalid block type
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match=r"bad-idx1-ubyte.gz: the gzip stream is truncated or corrupt") as excinfo:
        read_idx(path)
    assert type(excinfo.value.__cause__).__module__ == "zlib"  # numpy/gzip would let zlib.error escape


def test_load_mnist_with_a_corrupt_deflate_stream_names_the_file(mirror, tmp_path):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    path = root / "train-labels-idx1-ubyte.gz"
    compressed = bytearray(path.read_bytes())
    compressed[10] = 0xFF
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: the gzip stream"):
        load_mnist(root)


def test_load_mnist_with_no_images(mirror, tmp_path):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((0, 4, 5), np.uint8), compress=True)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8), compress=True)
    ds = load_mnist(root)
    assert ds.x_test.shape == (0, 20) and ds.x_test.dtype == np.float32
    assert ds.y_test.shape == (0,) and ds.y_test.dtype == np.int64
    assert ds.x_train.shape == (6, 20)


@pytest.mark.parametrize("labels", [[1, 10, 2], [255, 0, 0]])
def test_load_mnist_rejects_labels_above_9(mirror, tmp_path, labels):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array(labels, np.uint8), compress=True)
    expected = rf"t10k-labels-idx1-ubyte.gz: expected digit labels 0 to 9, got uint8 values from {min(labels)} to {max(labels)}"
    with pytest.raises(ValueError, match=expected):
        load_mnist(root)


def test_load_mnist_rejects_labels_that_are_not_integers(mirror, tmp_path):
    root = download_mnist(tmp_path / "mnist", mirror=mirror.url)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1.0, 2.0, 3.0], np.float32), compress=True)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: expected digit labels 0 to 9, got float32"):
        load_mnist(root)


@pytest.mark.parametrize("seed", [-1, -(2**40)])
def test_load_digits_rejects_a_negative_seed(seed):
    with pytest.raises(ValueError, match=rf"seed must be a non-negative int or a numpy.random.Generator, got {seed}"):
        load_digits(seed=seed)


@pytest.mark.parametrize("call", [
    lambda: read_idx(123),
    lambda: read_idx(None),
    lambda: load_mnist(root=3.5),
    lambda: download_mnist(root=None),
])
def test_paths_of_the_wrong_type_name_the_argument(call):
    with pytest.raises(TypeError, match=r"(path|root) must be a str or path-like, got"):
        call()
