"""Tests for bnlib.whitening: covariance, decorrelation, PCA/ZCA/Cholesky whitening."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import PCA

from bnlib.whitening import (
    covariance,
    decorrelate,
    pca_whiten,
    whitening_matrix,
    zca_whiten,
)

METHODS = ["pca", "zca", "cholesky"]


def correlated(n=400, d=4, seed=0):
    """Random data with a non-trivial covariance and mean."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) + np.diag(np.linspace(0.5, 3, d))
    return rng.normal(size=(n, d)) @ mixing.T + rng.normal(scale=5, size=d)


def whiten(x, method, eps):
    W, mean = whitening_matrix(x, method=method, eps=eps)
    return (x - mean) @ W.T


@pytest.fixture
def x():
    return correlated()


# ---------------------------------------------------------------- covariance


def test_covariance_matches_numpy(x):
    assert_allclose(covariance(x), np.cov(x, rowvar=False, bias=True), rtol=1e-12)
    assert covariance(x).shape == (4, 4)


def test_covariance_symmetric_and_one_feature(x):
    c = covariance(x)
    assert_array_equal(c, c.T)
    assert_allclose(covariance(x[:, :1]), [[x[:, 0].var()]], rtol=1e-12)


def test_covariance_large_offset_float32():
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(size=(1000, 2)) * [1, 2]).astype(np.float32)
    c = covariance(x)
    assert c.dtype == np.float32
    assert_allclose(c, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-5)


# ---------------------------------------------------------------- whitening


@pytest.mark.parametrize("method", METHODS)
def test_whitened_covariance_is_identity(x, method):
    y = whiten(x, method, eps=0.0)
    assert_allclose(covariance(y), np.eye(4), atol=1e-8)
    assert_allclose(y.mean(axis=0), 0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_tiny_eps_is_nearly_identity(x, method):
    assert_allclose(covariance(whiten(x, method, eps=1e-10)), np.eye(4), atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_eps_is_added_to_the_covariance(x, method):
    # every whitening matrix satisfies W^T W = (Sigma + eps I)^-1
    eps = 0.3
    W, _ = whitening_matrix(x, method=method, eps=eps)
    expected = np.linalg.inv(covariance(x) + eps * np.eye(4))
    assert_allclose(W.T @ W, expected, rtol=1e-10, atol=1e-12)


def test_pca_output_covariance_with_eps(x):
    eps = 0.5
    lam = np.sort(np.linalg.eigvalsh(covariance(x)))[::-1]
    assert_allclose(covariance(pca_whiten(x, eps=eps)), np.diag(lam / (lam + eps)), atol=1e-10)


def test_wrappers_match_whitening_matrix(x):
    assert_allclose(pca_whiten(x), whiten(x, "pca", 1e-5), rtol=1e-13)
    assert_allclose(zca_whiten(x), whiten(x, "zca", 1e-5), rtol=1e-13)
    W, mean = whitening_matrix(x)  # default is ZCA
    assert_allclose((x - mean) @ W.T, zca_whiten(x), rtol=1e-13)
    assert_allclose(mean, x.mean(axis=0), rtol=1e-13)


def test_zca_matrix_is_symmetric_inverse_sqrt(x):
    W, _ = whitening_matrix(x, method="zca", eps=0.0)
    assert_array_equal(W, W.T)
    assert_allclose(W @ W @ covariance(x), np.eye(4), atol=1e-10)
    # positive definite: the symmetric square root, not another one
    assert np.linalg.eigvalsh(W).min() > 0


def test_cholesky_matrix_is_lower_triangular(x):
    W, _ = whitening_matrix(x, method="cholesky", eps=0.0)
    assert_array_equal(np.triu(W, k=1), 0)
    assert (np.diag(W) > 0).all()
    L = np.linalg.cholesky(covariance(x))
    assert_allclose(W @ L, np.eye(4), atol=1e-12)


def test_pca_matrix_rows_are_scaled_eigenvectors(x):
    W, _ = whitening_matrix(x, method="pca", eps=0.0)
    lam, U = np.linalg.eigh(covariance(x))
    lam, U = lam[::-1], U[:, ::-1]
    scaled_rows = W * np.sqrt(lam)[:, None]
    # same axes up to sign, ordered by decreasing variance
    assert_allclose(np.abs(scaled_rows @ U), np.eye(4), atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_zca_stays_closest_to_the_data(seed):
    # Kessy, Lewin & Strimmer (2018): ZCA minimises E||y - (x - mean)||^2
    x = correlated(n=300, d=5, seed=seed)
    centred = x - x.mean(axis=0)
    dist = {m: np.mean((whiten(x, m, eps=0.0) - centred) ** 2) for m in METHODS}
    assert dist["zca"] < dist["pca"]
    assert dist["zca"] < dist["cholesky"]


def test_pca_matches_sklearn(x):
    n = x.shape[0]
    ours = pca_whiten(x, eps=0.0)
    theirs = PCA(whiten=True, svd_solver="full").fit_transform(x)
    # sklearn divides by the unbiased (n - 1) variances
    theirs = theirs * np.sqrt(n / (n - 1))
    signs = np.sign(np.sum(ours * theirs, axis=0))
    assert_array_equal(np.abs(signs), 1)
    assert_allclose(ours, theirs * signs, rtol=1e-9, atol=1e-11)


def test_signs_and_order_are_deterministic(x):
    W, _ = whitening_matrix(x, method="pca", eps=0.0)
    rows = np.arange(4)
    pivots = np.argmax(np.abs(W), axis=1)
    assert (W[rows, pivots] > 0).all()
    # flipping the data's sign flips nothing in W (only the mean)
    W_flipped, _ = whitening_matrix(-x, method="pca", eps=0.0)
    assert_allclose(W_flipped, W, rtol=1e-10, atol=1e-12)
    variances = covariance(decorrelate(x)).diagonal()
    assert (np.diff(variances) <= 0).all()


def test_axis_aligned_data_gives_scaled_identity():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(500, 3))
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    x = z * [3.0, 2.0, 1.0]
    W, _ = whitening_matrix(x, method="pca", eps=0.0)
    assert_allclose(np.abs(W), np.diag([1 / 3, 1 / 2, 1.0]), atol=0.1)


# ---------------------------------------------------------------- decorrelate


def test_decorrelate(x):
    y = decorrelate(x)
    c = covariance(y)
    lam = np.sort(np.linalg.eigvalsh(covariance(x)))[::-1]
    assert_allclose(c, np.diag(lam), atol=1e-10)
    assert_allclose(np.trace(c), np.trace(covariance(x)), rtol=1e-12)
    # a rotation: distances between samples are unchanged
    assert_allclose(np.linalg.norm(y[0] - y[1]), np.linalg.norm(x[0] - x[1]), rtol=1e-12)
    # standardising it gives PCA whitening
    assert_allclose(y / y.std(axis=0), pca_whiten(x, eps=0.0), rtol=1e-9, atol=1e-12)


def test_decorrelate_singular_data_is_fine():
    t = np.linspace(-1, 1, 11)
    x = np.column_stack([t, 2 * t])
    y = decorrelate(x)
    assert_allclose(y[:, 1], 0, atol=1e-12)
    assert_allclose(covariance(y)[0, 0], np.trace(covariance(x)), rtol=1e-12)


# ---------------------------------------------------------------- dtype, purity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(x, dtype):
    xd = x.astype(dtype)
    for method in METHODS:
        W, mean = whitening_matrix(xd, method=method)
        assert W.dtype == dtype and mean.dtype == dtype
    for func in (pca_whiten, zca_whiten, decorrelate, covariance):
        assert func(xd).dtype == dtype


def test_float32_whitening_is_accurate(x):
    y = zca_whiten(x.astype(np.float32), eps=0.0)
    assert_allclose(covariance(y.astype(np.float64)), np.eye(4), atol=1e-4)


def test_ints_become_float64():
    x = np.array([[1, 2], [3, 1], [0, 0], [2, 5]])
    for func in (pca_whiten, zca_whiten, decorrelate, covariance):
        assert func(x).dtype == np.float64


def test_inputs_not_modified(x):
    original = x.copy()
    for method in METHODS:
        whitening_matrix(x, method=method)
    for func in (pca_whiten, zca_whiten, decorrelate, covariance):
        func(x)
    assert_array_equal(x, original)


# ---------------------------------------------------------------- bad input

ALL = [
    covariance,
    decorrelate,
    pca_whiten,
    zca_whiten,
    lambda a: whitening_matrix(a, "pca"),
    lambda a: whitening_matrix(a, "cholesky"),
]


@pytest.mark.parametrize("func", ALL)
@pytest.mark.parametrize("shape", [(5,), (4, 2, 2), ()])
def test_wrong_ndim(func, shape):
    with pytest.raises(ValueError, match=r"Expected a 2-D array .* got a \d-D array"):
        func(np.ones(shape))


@pytest.mark.parametrize("func", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(func, bad):
    x = correlated(n=10, d=2)
    x[3, 0] = bad
    with pytest.raises(ValueError, match="finite"):
        func(x)


@pytest.mark.parametrize("func", ALL)
def test_complex_is_type_error(func):
    with pytest.raises(TypeError, match="complex"):
        func(np.ones((4, 2), dtype=np.complex128))


@pytest.mark.parametrize(
    "func",
    [pca_whiten, zca_whiten, lambda a: whitening_matrix(a, "cholesky")],
)
def test_one_sample_is_refused(func):
    with pytest.raises(ValueError, match=r"Whitening needs at least 2 samples.*got 1"):
        func(np.ones((1, 3)))


def test_decorrelate_one_sample_is_refused():
    with pytest.raises(ValueError, match="Decorrelation needs at least 2 samples"):
        decorrelate(np.ones((1, 3)))


@pytest.mark.parametrize("method", ["ZCA", "svd", "", None, 1])
def test_bad_method(x, method):
    with pytest.raises(ValueError, match=r"'pca', 'zca', 'cholesky', got"):
        whitening_matrix(x, method=method)


@pytest.mark.parametrize("func", [pca_whiten, zca_whiten])
def test_negative_eps(x, func):
    with pytest.raises(ValueError, match="eps must be a non-negative"):
        func(x, eps=-1e-5)
    with pytest.raises(TypeError, match="eps"):
        func(x, eps="1e-5")


def test_negative_eps_whitening_matrix(x):
    for method in METHODS:
        with pytest.raises(ValueError, match="eps must be a non-negative"):
            whitening_matrix(x, method=method, eps=-1.0)


@pytest.mark.parametrize("method", METHODS)
def test_singular_covariance_needs_eps(method):
    t = np.linspace(-1, 1, 20)
    x = np.column_stack([t, 3 * t, np.ones_like(t)])
    with pytest.raises(ValueError, match=r"singular.*eps > 0"):
        whitening_matrix(x, method=method, eps=0.0)
    W, mean = whitening_matrix(x, method=method)  # default eps works
    assert np.isfinite(W).all()
    y = (x - mean) @ W.T
    assert np.isfinite(y).all()


def test_fewer_samples_than_features_needs_eps():
    x = correlated(n=3, d=5)
    with pytest.raises(ValueError, match="singular"):
        zca_whiten(x, eps=0.0)
    assert np.isfinite(zca_whiten(x)).all()


# ---------------------------------------------------------------- properties

FAST = settings(max_examples=50, deadline=None)


@st.composite
def data_matrices(draw, min_samples=2):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    d = draw(st.integers(1, 4))
    n = draw(st.integers(max(min_samples, 2), 20))
    return draw(arrays(dtype, (n, d), elements=st.floats(-1e3, 1e3, width=32)))


@FAST
@given(x=data_matrices(), method=st.sampled_from(METHODS))
def test_property_shape_dtype_inputs(x, method):
    original = x.copy()
    W, mean = whitening_matrix(x, method=method)
    assert W.shape == (x.shape[1], x.shape[1]) and mean.shape == (x.shape[1],)
    assert W.dtype == x.dtype and mean.dtype == x.dtype
    assert np.isfinite(W).all()
    for func in (pca_whiten, zca_whiten, decorrelate):
        y = func(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert np.isfinite(y).all()
    assert covariance(x).shape == (x.shape[1],) * 2
    assert_array_equal(x, original)


@FAST
@given(x=data_matrices(min_samples=6), method=st.sampled_from(METHODS))
def test_property_whitened_covariance_is_identity(x, method):
    x = x.astype(np.float64)
    lam = np.linalg.eigvalsh(covariance(x))
    # well-conditioned, with a variance large against float32 rounding
    assume(lam.min() > 1e-2 and lam.max() / lam.min() < 1e6)
    y = whiten(x, method, eps=0.0)
    assert_allclose(covariance(y), np.eye(x.shape[1]), atol=1e-7)


@FAST
@given(x=data_matrices())
def test_property_decorrelate(x):
    x = x.astype(np.float64)
    c = covariance(decorrelate(x))
    scale = max(np.trace(covariance(x)), 1.0)
    assert_allclose(c - np.diag(np.diag(c)), 0, atol=1e-9 * scale)
    assert_allclose(np.trace(c), np.trace(covariance(x)), rtol=1e-9, atol=1e-9)
    assert (np.diff(np.diag(c)) <= 1e-9 * scale).all()


# ---------------------------------------------------------------- robustness (issue #16)


@pytest.mark.parametrize("func", ALL)
def test_zero_features_is_refused(func):
    with pytest.raises(ValueError, match=r"needs at least 1 feature \(column of x\), got an array of shape \(5, 0\)"):
        func(np.ones((5, 0)))


@pytest.mark.parametrize("func", ALL)
def test_ragged_list_names_x(func):
    with pytest.raises(ValueError, match="x must be an array of real numbers, got a list that is not a rectangular"):
        func([[1.0, 2.0], [3.0], [4.0, 5.0]])


@pytest.mark.parametrize("dtype, k", [(np.float32, 70), (np.float64, 600), (np.float64, -1000), (np.float32, -120)])
def test_whitening_is_scale_free_at_extreme_magnitudes(dtype, k):
    # |x| about 1e21 in float32 or 1e180 in float64 squares beyond the dtype; the
    # whitened data does not depend on the scale, so it must equal the unscaled result
    x = correlated(n=40, d=3).astype(dtype)
    big = np.ldexp(x, k)
    rtol = 2e-5 if dtype == np.float32 else 1e-10
    for method in METHODS:
        W, mean = whitening_matrix(x, method=method, eps=0.0)
        W_big, mean_big = whitening_matrix(big, method=method, eps=0.0)
        assert np.isfinite(W_big).all() and W_big.dtype == dtype
        assert_allclose(np.ldexp(W_big.astype(np.float64), k), W, rtol=rtol, atol=1e-6 * np.abs(W).max())
        assert_allclose(np.ldexp(mean, k), mean_big, rtol=rtol)
    assert_allclose(zca_whiten(big, eps=0.0), zca_whiten(x, eps=0.0), rtol=rtol, atol=1e-5)
    assert_allclose(pca_whiten(big, eps=0.0), pca_whiten(x, eps=0.0), rtol=rtol, atol=1e-5)
    assert_allclose(np.ldexp(decorrelate(x).astype(np.float64), k), decorrelate(big), rtol=rtol, atol=1e-5 * 2.0**k)


def test_covariance_beyond_the_dtype_is_a_clear_error():
    x = np.array([[1e19, 0.0], [-1e19, 1.0]], dtype=np.float32)
    assert_allclose(covariance(x), [[1e38, -5e18], [-5e18, 0.25]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"The covariance of x overflows float32.*Convert x to float64"):
        covariance(10 * x)
    assert_allclose(covariance((10 * x).astype(np.float64))[0, 0], 1e40, rtol=1e-6)
    x64 = np.array([[1e154], [-1e154]])
    assert covariance(x64)[0, 0] == pytest.approx(1e308)
    with pytest.raises(ValueError, match=r"The covariance of x overflows float64.*Rescale x"):
        covariance(10 * x64)


def test_float64_near_its_top_whitens():
    x = np.ldexp(correlated(n=30, d=2), 1015)  # about 1e306: x**2 overflows float64
    for whiten_ in (zca_whiten, pca_whiten):
        y = whiten_(x, eps=0.0)
        assert np.isfinite(y).all()
        assert_allclose(covariance(y), np.eye(2), atol=1e-10)


def test_eps_that_vanishes_at_the_data_scale_on_singular_data():
    t = np.linspace(-1, 1, 20)
    x = np.ldexp(np.column_stack([t, 3 * t]), 900)  # singular, |x| about 1e271
    with pytest.raises(ValueError, match=r"eps=1e-05 vanishes against the scale of x"):
        whitening_matrix(x, "zca", eps=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_singular_data_with_an_eps_below_round_off_is_a_clear_error(method):
    # found by the fuzz: eps=1e-5 against eigenvalues of 1e11 is below round-off, and
    # Cholesky raised numpy's LinAlgError "Matrix is not positive definite"
    x = np.array([[523113, 741453], [-3, -3]], dtype=np.int32)  # two samples, two features
    with pytest.raises(ValueError, match=r"eps=1e-05 vanishes against the scale of x"):
        whitening_matrix(x, method=method)
    W, _ = whitening_matrix(x, method=method, eps=1e3)
    assert np.isfinite(W).all()


@pytest.mark.parametrize("method", METHODS)
def test_data_far_below_sqrt_eps_whitens_to_x_over_sqrt_eps(method):
    # |x| about 1e-170: Sigma + eps I is eps I to float64 precision, so W = I / sqrt(eps);
    # scaling by max|x| alone made eps / 4**e overflow to inf and W 0 or NaN
    x = correlated(n=20, d=2) * 1e-170
    W, mean = whitening_matrix(x, method=method, eps=1e-4)
    assert_allclose(W.T @ W, np.eye(2) * 1e4, rtol=1e-12, atol=1e-8)  # (Sigma + eps I)^-1
    if method != "pca":  # PCA orders the axes by variance: W is a signed permutation times 100
        assert_allclose(W, np.eye(2) * 100.0, rtol=1e-12, atol=1e-12)
    assert_allclose(zca_whiten(x, eps=1e-4), (x - x.mean(axis=0)) * 100.0, rtol=1e-12, atol=1e-300)
