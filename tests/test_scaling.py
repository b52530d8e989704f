"""Tests for bnlib.scaling against scikit-learn and the sources' example."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from bnlib.scaling import center, min_max_scale, standardize

FUNCS = [center, standardize, min_max_scale]

# The standardisation example of source 004, exact arrays.
X1 = np.array([33, 72, 40, 104, 52, 56, 89, 24, 52, 73])
X2 = np.array([9, 8, 7, 10, 5, 8, 7, 9, 8, 7])


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(200, 5)) * [1, 10, 0.1, 1e3, 3] + [0, -5, 1e2, 7, 1e4]


# ---------------------------------------------------------------- oracles


def test_center_matches_sklearn(data):
    expected = StandardScaler(with_std=False).fit_transform(data)
    assert_allclose(center(data), expected, rtol=1e-12, atol=1e-12)
    assert_allclose(center(data).mean(axis=0), 0, atol=1e-10)


def test_standardize_matches_sklearn(data):
    expected = StandardScaler().fit_transform(data)
    assert_allclose(standardize(data), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0), (2, 7.5)])
def test_min_max_scale_matches_sklearn(data, feature_range):
    expected = MinMaxScaler(feature_range=feature_range).fit_transform(data)
    y = min_max_scale(data, feature_range=feature_range)
    assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert_allclose(y.min(axis=0), feature_range[0], rtol=0, atol=1e-12)
    assert_allclose(y.max(axis=0), feature_range[1], rtol=1e-12)


def test_source_standardisation_example():
    x = np.stack([X1, X2], axis=1)
    y = standardize(x)
    assert y.dtype == np.float64  # ints become float64
    assert_allclose(y.mean(axis=0), 0, atol=1e-15)
    assert_allclose(y.std(axis=0), 1, rtol=1e-14)
    assert_allclose(y, StandardScaler().fit_transform(x.astype(float)), rtol=1e-12)
    # the source's own per-array formula
    assert_allclose(y[:, 0], (X1 - X1.mean()) / X1.std(), rtol=1e-14)
    assert_allclose(y[:, 1], (X2 - X2.mean()) / X2.std(), rtol=1e-14)


def test_standardize_eps_follows_formula(data):
    eps = 0.5
    mu = data.mean(axis=0)
    expected = (data - mu) / np.sqrt(data.var(axis=0) + eps)
    assert_allclose(standardize(data, eps=eps), expected, rtol=1e-12)


# ---------------------------------------------------------------- edge cases


def test_standardize_constant_column_is_zero_not_nan():
    # 0.1 repeated: its float mean is not exactly 0.1, the naive z-score is +-1.
    x = np.column_stack([np.full(10, 0.1), np.arange(10.0)])
    for eps in (0.0, 1e-5):
        y = standardize(x, eps=eps)
        assert_array_equal(y[:, 0], 0)
        assert np.isfinite(y).all()
    assert_allclose(standardize(x)[:, 1].std(), 1)


@pytest.mark.parametrize("spread", [1e-200, 1e-30, 1e150, 1e200])
def test_standardize_extreme_spreads(spread):
    # squares of these underflow or overflow; the z-score must not
    x = np.array([[0.0, 1.0], [1.0, 2.0], [3.0, 3.0]]) * spread
    with np.errstate(all="raise"):
        y = standardize(x)
    assert_allclose(y, standardize(np.array([[0.0, 1], [1, 2], [3, 3]])), rtol=1e-12)
    with np.errstate(all="raise"):
        assert np.isfinite(standardize(x, eps=1e-5)).all()


def test_standardize_subnormal_float32():
    x = np.array([[0.0], [1.74498e-40]], dtype=np.float32)
    assert_array_equal(standardize(x), [[-1], [1]])
    assert_array_equal(min_max_scale(x), [[0], [1]])


def test_min_max_constant_column_maps_to_low():
    x = np.column_stack([np.full(4, 3.3), np.arange(4.0)])
    assert_array_equal(min_max_scale(x)[:, 0], 0)
    assert_array_equal(min_max_scale(x, feature_range=(-2, 5))[:, 0], -2)


def test_single_sample():
    x = np.array([[1.0, 2.0]])
    assert_array_equal(center(x), 0)
    assert_array_equal(standardize(x), 0)
    assert_array_equal(min_max_scale(x, (1, 2)), 1)


def test_float32_large_offset_keeps_unit_variance():
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(size=(1000, 3))).astype(np.float32)
    y = standardize(x)
    assert y.dtype == np.float32
    y64 = y.astype(np.float64)
    assert_allclose(y64.std(axis=0), 1, rtol=1e-3)
    assert_allclose(y64.mean(axis=0), 0, atol=1e-3)
    # and agrees with the float64 computation on the same (rounded) inputs
    assert_allclose(y64, standardize(x.astype(np.float64)), atol=1e-3)
    # the one-pass formula E[x^2] - E[x]^2 would fail here
    naive_var = np.mean(x * x, axis=0) - np.mean(x, axis=0) ** 2
    assert not np.allclose(naive_var, 1, rtol=0.05)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(func, dtype, data):
    assert func(data.astype(dtype)).dtype == dtype


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_ints_become_float64(func, dtype):
    x = np.array([[1, 0], [0, 1], [1, 1]], dtype=dtype)
    assert func(x).dtype == np.float64


@pytest.mark.parametrize("func", FUNCS)
def test_inputs_not_modified(func, data):
    original = data.copy()
    y = func(data)
    assert_array_equal(data, original)
    assert not np.shares_memory(y, data)


@pytest.mark.parametrize("func", FUNCS)
def test_accepts_lists(func):
    assert func([[1, 2], [3, 4]]).shape == (2, 2)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_wrong_ndim(func, shape):
    with pytest.raises(ValueError, match=r"Expected a 2-D array .* got a \d-D array"):
        func(np.ones(shape))


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(func, bad):
    x = np.ones((3, 2))
    x[1, 1] = bad
    with pytest.raises(ValueError, match="finite"):
        func(x)


@pytest.mark.parametrize("func", FUNCS)
def test_complex_is_type_error(func):
    with pytest.raises(TypeError, match="real numbers.*complex"):
        func(np.ones((3, 2), dtype=complex))


@pytest.mark.parametrize("func", FUNCS)
def test_no_samples(func):
    with pytest.raises(ValueError, match="at least 1 samples"):
        func(np.ones((0, 3)))


@pytest.mark.parametrize("eps", [-1e-5, np.nan, np.inf])
def test_standardize_bad_eps(eps):
    with pytest.raises(ValueError, match="eps must be a non-negative"):
        standardize(np.ones((3, 2)), eps=eps)


@pytest.mark.parametrize("eps", ["0.1", None, True])
def test_standardize_eps_wrong_type(eps):
    with pytest.raises(TypeError, match="eps"):
        standardize(np.ones((3, 2)), eps=eps)


@pytest.mark.parametrize(
    "feature_range, message",
    [
        ((1.0, 0.0), "low < high"),
        ((1.0, 1.0), "low < high"),
        ((0.0, np.inf), "finite"),
        ((np.nan, 1.0), "finite"),
        ((0.0, 1.0, 2.0), "pair"),
        ((1.0,), "pair"),
        (1.0, "pair"),
        ("ab", "pair"),
        (("a", "b"), "real numbers"),
        ((None, 1), "real numbers"),
        ((False, True), "real numbers"),
    ],
)
def test_min_max_bad_feature_range(feature_range, message):
    with pytest.raises(ValueError, match=message) as info:
        min_max_scale(np.ones((3, 2)), feature_range=feature_range)
    assert "feature_range" in str(info.value)


def test_min_max_feature_range_as_array_or_list():
    x = np.arange(6.0).reshape(3, 2)
    assert_allclose(min_max_scale(x, np.array([-1.0, 1.0])), min_max_scale(x, [-1, 1]))


# ---------------------------------------------------------------- properties

float_dtypes = st.sampled_from([np.float32, np.float64])
matrices = float_dtypes.flatmap(
    lambda dtype: arrays(
        dtype,
        array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(-1e3, 1e3, width=32),
    )
)
FAST = settings(max_examples=50, deadline=None)


@FAST
@given(x=matrices)
def test_property_shape_dtype_inputs(x):
    original = x.copy()
    for func in FUNCS:
        y = func(x)
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert np.isfinite(y).all()
    assert_array_equal(x, original)


@FAST
@given(x=matrices)
def test_property_standardized_columns(x):
    y = standardize(x).astype(np.float64)
    x64 = x.astype(np.float64)
    spread = x64.max(axis=0) - x64.min(axis=0)
    constant = spread == 0
    assert_array_equal(y[:, constant], 0)
    # columns whose spread is tiny relative to their magnitude are dominated
    # by float32 rounding; the property holds for the others
    scale = np.maximum(np.abs(x64).max(axis=0), 1e-30)
    ok = ~constant & (spread > 1e-3 * scale)
    tol = 1e-3 if x.dtype == np.float32 else 1e-9
    assert_allclose(y[:, ok].mean(axis=0), 0, atol=tol)
    assert_allclose(y[:, ok].std(axis=0), 1, rtol=tol)


@FAST
@given(x=matrices, low=st.floats(-10, 10), width=st.floats(0.5, 10))
def test_property_min_max_within_range(x, low, width):
    assume(np.isfinite(low + width))
    high = low + width
    y = min_max_scale(x, (low, high)).astype(np.float64)
    tol = 1e-5 * max(1.0, abs(low), abs(high))
    assert (y >= low - tol).all() and (y <= high + tol).all()
    non_constant = x.max(axis=0) > x.min(axis=0)
    assert_allclose(y[:, non_constant].min(axis=0), low, atol=tol)
    assert_allclose(y[:, non_constant].max(axis=0), high, atol=tol)


# ---------------------------------------------------------------- robustness (issue #16)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("ragged", [[[1.0, 2.0], [3.0]], [[1.0], [2.0, 3.0], [4.0]]])
def test_ragged_list_names_x(func, ragged):
    with pytest.raises(ValueError, match=r"x must be an array of real numbers, got a list that is not a rectangular array"):
        func(ragged)


@pytest.mark.parametrize("func", FUNCS)
def test_zero_features_is_refused(func):
    with pytest.raises(ValueError, match=r"needs at least 1 feature \(column of x\), got an array of shape \(5, 0\)"):
        func(np.ones((5, 0)))


@pytest.mark.parametrize("func", FUNCS)
def test_object_and_string_arrays_name_x(func):
    with pytest.raises(TypeError, match="x must be an array of real numbers"):
        func(np.array([[1.0, "a"], [2.0, "b"]], dtype=object))
    with pytest.raises(TypeError, match="x must be an array of real numbers.*<U"):
        func(np.array([["1", "2"], ["3", "4"]]))


def test_min_max_scale_float32_near_the_top_of_its_range():
    x = np.array([[3e38], [-3e38]], dtype=np.float32)
    assert_array_equal(min_max_scale(x), np.array([[1.0], [0.0]], dtype=np.float32))
    x = np.array([[3e38, 1.0], [-3e38, 2.0], [0.0, 3.0]], dtype=np.float32)
    y = min_max_scale(x, feature_range=(-3e38, 3e38))
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert_allclose(y[:, 0], x[:, 0], rtol=1e-6)
    assert_allclose(y[:, 1], [-3e38, 0.0, 3e38], rtol=1e-6, atol=1e32)


def test_min_max_scale_feature_range_beyond_the_dtype():
    x = np.array([[1.0], [2.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"feature_range \(0, 1e\+39\) lies beyond the range of x's dtype, float32"):
        min_max_scale(x, feature_range=(0, 1e39))
    assert min_max_scale(x.astype(np.float64), feature_range=(0, 1e39))[1, 0] == 1e39


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_magnitudes_match_the_rescaled_data(dtype):
    # min-max scaling and standardisation do not depend on the scale: on x * 2**k, near
    # the top of the dtype's range (squares overflow) or its bottom (squares underflow),
    # they must give what they give on x
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for k in (np.finfo(dtype).maxexp - 4, np.finfo(dtype).minexp + 4):
        scaled = np.ldexp(x, k)
        x_back = np.ldexp(scaled, -k)  # the digits that survived (subnormals lose some)
        assert_allclose(min_max_scale(scaled), min_max_scale(x_back), rtol=tol, atol=tol)
        assert_allclose(standardize(scaled), standardize(x_back), rtol=tol, atol=tol)
        assert_allclose(np.ldexp(center(scaled), -k), center(x_back), rtol=tol, atol=tol)


def test_center_float32_near_the_top_of_its_range():
    x = np.array([[3e38], [-3e38]], dtype=np.float32)  # mean 0: the centred values fit
    assert_array_equal(center(x), x)
    x64 = np.array([[1.7e308], [1.7e308], [1.6e308]])  # the float64 sum would overflow
    assert_allclose(center(x64), x64 - x64.mean(dtype=np.longdouble).astype(np.float64), rtol=1e-12)
    # -3e38 - mean(-1e38) = -4e38: float32 cannot hold the answer
    with pytest.raises(ValueError, match=r"Centring of x overflows float32.*Convert x to float64"):
        center(np.array([[3e38], [-3e38], [-3e38]], dtype=np.float32))
    assert np.isfinite(center(np.array([[3e38], [-3e38], [-3e38]], dtype=np.float64))).all()


def test_standardize_float32_near_the_top_of_its_range():
    x = np.array([[3e38], [-3e38], [-3e38]], dtype=np.float32)
    expected = standardize(x.astype(np.float64)).astype(np.float32)
    assert_allclose(standardize(x), expected, rtol=1e-6)
    assert_allclose(standardize(x, eps=1e-5), expected, rtol=1e-6)
