"""Property-based fuzz of bnlib's numpy core and data loaders (issue #16).

Every public function of ``bnlib`` (and ``bnlib.init``, ``bnlib.data``) is called with arguments
drawn by hypothesis: every dtype from bool to object, 0-d to 4-d and zero-size shapes, strided,
reversed, read-only, broadcast, Fortran-order, byte-swapped and np.matrix arrays, lists and
tuples, NaN/inf/subnormal/huge values, and wrong parameters. Each outcome is classified by
``tests/fuzz_support.py``; only "finite and right" and "clear error" pass. "Right" means the
value agrees with an independent float64 reference within a tolerance that follows the
problem's conditioning (a float32 column with a spread of one ulp cannot be standardised to
more than a digit).

Reproducible: hypothesis runs derandomized (a fixed seed) without an example database.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bnlib
from bnlib import data, init
from fuzz_support import (
    EPS_VALUES,
    Outcome,
    arguments,
    arrays,
    as_float64,
    mostly,
    assert_acceptable,
    shape_of,
    expected_float_dtype,
    run,
)

# In `make test`: a fixed seed (derandomized) and a budget of about 30 s. For a deeper search,
# BNLIB_FUZZ_EXAMPLES=2000 multiplies the examples and BNLIB_FUZZ_RANDOM=1 draws new ones.
_SCALE = int(os.environ.get("BNLIB_FUZZ_EXAMPLES", "120")) / 120
FUZZ = settings(
    max_examples=max(1, round(120 * _SCALE)),
    deadline=None,
    derandomize=not os.environ.get("BNLIB_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
)
FEW = settings(FUZZ, max_examples=max(1, round(40 * _SCALE)))

# --------------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------------


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _sub(dtype):
    return float(np.finfo(dtype).smallest_subnormal)


def check_array(y, shape, dtype, finite=True):
    """None if ``y`` is an ndarray of this shape and dtype (and finite), else what is wrong."""
    if not isinstance(y, np.ndarray) or type(y) is not np.ndarray:
        return f"returned a {type(y).__name__}, not an ndarray"
    if y.shape != tuple(shape):
        return f"shape {y.shape}, expected {tuple(shape)}"
    if y.dtype != dtype:
        return f"dtype {y.dtype}, expected {dtype}"
    if finite and not np.isfinite(y).all():
        return f"silent NaN/inf: {np.count_nonzero(~np.isfinite(y))} non-finite value(s)"
    return None


def compare(got, ref, tol, what):
    """None if ``|got - ref| <= tol`` everywhere (float64 arrays), else the worst miss."""
    with np.errstate(all="ignore"):
        miss = np.abs(got - ref) - tol
    if miss.size and not (miss <= 0).all():
        i = np.unravel_index(np.nanargmax(np.where(np.isnan(miss), np.inf, miss)), miss.shape)
        return (f"{what} differs from the float64 reference at {i}: got {got[i]!r}, "
                f"expected {ref[i]!r} within {np.broadcast_to(tol, miss.shape)[i]!r}")
    return None


def float_input(x):
    """``(x64, dtype)``: the argument in float64 and the dtype bnlib should return, or None."""
    x64 = as_float64(x)
    if x64 is None or not np.isfinite(x64).all():
        return None, None
    return x64, expected_float_dtype(np.asarray(x).dtype)


def column_exponent(x64, axis=0):
    return np.frexp(np.abs(x64).max(axis=axis))[1]


def valid_eps(eps):
    return (not isinstance(eps, (bool, np.bool_, str, list, np.ndarray)) and eps is not None
            and math.isfinite(float(eps)) and float(eps) >= 0)


# --------------------------------------------------------------------------------------------
# scaling
# --------------------------------------------------------------------------------------------

MATRIX = dict(ndims=[2] * 8 + [1, 3, 0], max_side=5)


@FUZZ
@given(x=arguments(**MATRIX))
def test_fuzz_center(x):
    def check(y):
        x64, dt = float_input(x)
        if x64 is None:
            return "returned for non-finite or non-real input"
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        e = column_exponent(x64)
        u = np.ldexp(x64, -e)
        ref = u - u.mean(axis=0)
        tol = 8 * _eps(dt) + 4 * np.ldexp(_sub(dt), -e)
        return compare(np.ldexp(y.astype(np.float64), -e), ref, tol, "center(x) / 2**e")

    assert_acceptable(run(bnlib.center, (x,), check=check), "center", x)


@FUZZ
@given(x=arguments(**MATRIX), eps=EPS_VALUES)
def test_fuzz_standardize(x, eps):
    def check(y):
        x64, dt = float_input(x)
        if x64 is None or not valid_eps(eps):
            return "returned for invalid input"
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        e = column_exponent(x64)
        u = np.ldexp(x64, -e)
        c = u - u.mean(axis=0)
        var = (c * c).mean(axis=0)
        with np.errstate(all="ignore"):
            eps_u = np.ldexp(float(eps), -2 * e)
            std = np.sqrt(var + eps_u)
            ref = np.where(std > 0, c / std, 0.0)
            tol = 16 * _eps(dt) * (1 + np.abs(u).max(axis=0) / std) + 8 * np.ldexp(_sub(dt), -e) / std
        constant = x64.max(axis=0) == x64.min(axis=0)
        ref[:, constant] = 0
        tol = np.where(constant, 0.0, np.nan_to_num(tol, nan=np.inf))
        return compare(y.astype(np.float64), ref, tol, "standardize(x)")

    assert_acceptable(run(bnlib.standardize, (x, eps), check=check), "standardize", x, eps=eps)


FEATURE_RANGES = mostly(
    [(0.0, 1.0), (-1, 1), (0, 255), np.array([0.0, 1.0]), [-2.0, 3.0], (np.float32(0), np.float32(1)),
     (-3e38, 3e38), (-1.7e308, 1.7e308), (1e-300, 2e-300)],
    [(1.0, 0.0), (0.5, 0.5), (0.0, np.nan), (0, np.inf), "ab", (0.0,), (0, 1, 2), (0, 1e39), (True, 2), None])


@FUZZ
@given(x=arguments(**MATRIX), feature_range=st.one_of(
    FEATURE_RANGES, st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))))
def test_fuzz_min_max_scale(x, feature_range):
    def check(y):
        x64, dt = float_input(x)
        if x64 is None:
            return "returned for invalid input"
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        low, high = (float(v) for v in feature_range)
        if not low < high:
            return f"returned for feature_range {feature_range!r}"
        e = column_exponent(x64)
        u = np.ldexp(x64, -e)
        lo = u.min(axis=0)
        span = u.max(axis=0) - lo
        constant = span == 0
        unit = np.where(constant, 0.0, (u - lo) / np.where(constant, 1.0, span))
        ref = low * (1 - unit) + high * unit
        size = max(abs(low), abs(high))  # abs(low) + abs(high) can overflow
        tol = 16 * _eps(dt) * size + 4 * np.ldexp(_sub(dt), -e) / np.where(constant, 1.0, span) * size
        tol = 2 * tol + 2 * float(np.finfo(dt).tiny)
        return compare(y.astype(np.float64), ref, tol, "min_max_scale(x)")

    assert_acceptable(run(bnlib.min_max_scale, (x, feature_range), check=check),
                      "min_max_scale", x, feature_range=feature_range)


# --------------------------------------------------------------------------------------------
# covariance and whitening
# --------------------------------------------------------------------------------------------


def _scaled_stats(x64):
    """``(u, e, mean_u, cov_u)`` with ``u = x / 2**e`` exactly and ``max|u| < 1``."""
    e = int(np.frexp(np.abs(x64).max())[1])
    u = np.ldexp(x64, -e)
    mean_u = u.mean(axis=0)
    c = u - mean_u
    return u, e, mean_u, c.T @ c / u.shape[0]


@FUZZ
@given(x=arguments(**MATRIX))
def test_fuzz_covariance(x):
    def check(cov):
        x64, dt = float_input(x)
        if x64 is None:
            return "returned for invalid input"
        d = x64.shape[1]
        problem = check_array(cov, (d, d), dt)
        if problem:
            return problem
        if not np.array_equal(cov, cov.T):
            return "covariance is not symmetric"
        _, e, _, cov_u = _scaled_stats(x64)
        tol = 8 * d * _eps(dt) * np.abs(cov_u).max() + 4 * np.ldexp(_sub(dt), -2 * e)
        return compare(np.ldexp(cov.astype(np.float64), -2 * e), cov_u, tol, "covariance(x) / 4**e")

    assert_acceptable(run(bnlib.covariance, (x,), check=check), "covariance", x)


METHODS = mostly(["zca", "pca", "cholesky"], ["ZCA", None, 1, ""])


def _whitening_reference(x, eps):
    """``(x64, dt, e, sigma_u + eps_u I, eigenvalues of sigma_u, eps_u, condition number)``."""
    x64, dt = float_input(x)
    if x64 is None or not valid_eps(eps) or x64.ndim != 2 or x64.shape[0] < 2:
        return None
    u, e, mean_u, cov_u = _scaled_stats(x64)
    eps_u = float(np.ldexp(float(eps), -2 * e))
    lam = np.clip(np.linalg.eigvalsh(cov_u), 0, None)
    with np.errstate(divide="ignore"):
        kappa = (lam.max() + eps_u) / (lam.min() + eps_u) if lam.min() + eps_u > 0 else np.inf
    return x64, dt, e, mean_u, cov_u, lam, eps_u, kappa


@FUZZ
@given(x=arguments(**MATRIX), method=METHODS, eps=EPS_VALUES)
def test_fuzz_whitening_matrix(x, method, eps):
    def check(value):
        ref = _whitening_reference(x, eps)
        if ref is None or method not in ("zca", "pca", "cholesky"):
            return "returned for invalid input"
        x64, dt, e, mean_u, cov_u, lam, eps_u, kappa = ref
        W, mean = value
        d = x64.shape[1]
        problem = check_array(W, (d, d), dt) or check_array(mean, (d,), dt)
        if problem:
            return problem
        problem = compare(np.ldexp(mean.astype(np.float64), -e), mean_u, 4 * _eps(dt) + np.ldexp(_sub(dt), -e), "mean / 2**e")
        if problem:
            return problem
        if method == "cholesky" and np.triu(W, 1).any():
            return "the Cholesky whitening matrix is not lower-triangular"
        if method == "zca" and not np.array_equal(W, W.T):
            return "the ZCA whitening matrix is not symmetric"
        # W's smallest entries of interest are about 2**-e / sqrt(lam_max + eps); below the
        # dtype's normal range they lose digits or underflow, and no check applies
        smallest = np.ldexp(1.0, -e) / math.sqrt(lam.max() + eps_u) if np.isfinite(eps_u) else 0.0
        if _eps(dt) * kappa < 1e-4 and smallest * _eps(dt) > np.finfo(dt).tiny:
            W_u = np.ldexp(W.astype(np.float64), e)
            M = W_u @ (cov_u + eps_u * np.eye(d)) @ W_u.T
            return compare(M, np.eye(d), 1e3 * d * _eps(dt) * kappa, "W (Sigma + eps I) W^T")
        return None

    assert_acceptable(run(bnlib.whitening_matrix, (x, method, eps), check=check),
                      "whitening_matrix", x, method=method, eps=eps)


@FUZZ
@given(x=arguments(**MATRIX), which=st.sampled_from(["pca_whiten", "zca_whiten"]), eps=EPS_VALUES)
def test_fuzz_pca_zca_whiten(x, which, eps):
    def check(y):
        ref = _whitening_reference(x, eps)
        if ref is None:
            return "returned for invalid input"
        x64, dt, e, mean_u, cov_u, lam, eps_u, kappa = ref
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        if _eps(dt) * kappa < 1e-4:
            y64 = y.astype(np.float64)
            c = y64 - y64.mean(axis=0)
            got = np.sort(np.linalg.eigvalsh(c.T @ c / len(y64)))
            expected = np.sort(lam / (lam + eps_u))
            return compare(got, expected, 1e3 * x64.shape[1] * _eps(dt) * kappa, "eigenvalues of cov(y)")
        return None

    func = getattr(bnlib, which)
    assert_acceptable(run(func, (x, eps), check=check), which, x, eps=eps)


@FUZZ
@given(x=arguments(**MATRIX))
def test_fuzz_decorrelate(x):
    def check(y):
        ref = _whitening_reference(x, 0.0)
        if ref is None:
            return "returned for invalid input"
        x64, dt, e, mean_u, cov_u, lam, _, _ = ref
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        got_u = np.ldexp(y.astype(np.float64), -e)
        c = got_u - got_u.mean(axis=0)
        cov_y = c.T @ c / len(c)
        peak = np.abs(np.ldexp(x64, -e)).max() ** 2  # round-off of either side scales with max|u|**2
        tol = 64 * x64.shape[1] * _eps(dt) * peak + 8 * np.ldexp(_sub(dt), -e)
        problem = compare(cov_y - np.diag(np.diag(cov_y)), np.zeros_like(cov_y), tol, "off-diagonal covariance of y")
        return problem or compare(np.diag(cov_y), lam[::-1], tol, "variances of y (decreasing eigenvalues)")

    assert_acceptable(run(bnlib.decorrelate, (x,), check=check), "decorrelate", x)


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------

ACTIVATIONS = ["sigmoid", "tanh", "relu", "sigmoid_grad", "tanh_grad", "relu_grad"]


def _activation_reference(name, xl):
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-xl))
        if name == "sigmoid_grad":
            z = np.exp(-np.abs(xl))
            return z / ((1 + z) * (1 + z))
        if name == "tanh":
            return np.tanh(xl)
        if name == "tanh_grad":
            return 1 / np.cosh(xl) ** 2
        if name == "relu":
            return np.maximum(xl, 0)
        return (xl > 0).astype(xl.dtype)


@FUZZ
@given(name=st.sampled_from(ACTIVATIONS), x=arguments())
def test_fuzz_activations(name, x):
    def check(y):
        x64 = as_float64(x)
        if x64 is None:
            return "returned for a non-real argument"
        dt = expected_float_dtype(np.asarray(x).dtype)
        if not isinstance(y, (np.ndarray, np.generic)):
            return f"returned a {type(y).__name__}"
        y = np.asarray(y)
        if y.shape != x64.shape or y.dtype != dt:
            return f"shape {y.shape} dtype {y.dtype}, expected {x64.shape} {dt}"
        ref = _activation_reference(name, x64.astype(np.longdouble)).astype(np.float64)
        got = y.astype(np.float64)
        nan_in = np.isnan(x64)
        if not np.isnan(got[nan_in]).all() and name != "relu_grad":
            return "NaN input did not give NaN"
        ok = ~nan_in
        if not np.array_equal(np.isfinite(got[ok]), np.isfinite(ref[ok])):
            return "silent NaN/inf where the exact value is finite"
        finite = ok & np.isfinite(ref)
        if not np.array_equal(got[ok & ~finite], ref[ok & ~finite]):
            return "wrong infinite value"
        tol = 4 * _eps(dt) * np.abs(ref[finite]) + float(np.finfo(dt).tiny)
        return compare(got[finite], ref[finite], tol, f"{name}(x)")

    func = getattr(bnlib, name)
    assert_acceptable(run(func, (x,), check=check), name, x)


# --------------------------------------------------------------------------------------------
# Batch Normalization
# --------------------------------------------------------------------------------------------

BATCH = dict(ndims=[2, 3, 4, 1, 0], tame_ndims=[2, 3, 4], max_side=4)



def _channel_axes(ndim):
    return (0, *range(2, ndim))


def _per_channel(v, ndim):
    return np.reshape(v, (1, -1) + (1,) * (ndim - 2))


def _bn_reference(x64, gamma64, beta64, eps):
    """Reference forward pass in float64 on per-channel power-of-two-scaled values.

    Returns ``(y, mean, var, tol)`` in float64 (``tol`` broadcasts against ``y``) with a
    tolerance for dtype ``dt`` to be scaled by its eps, or None for a constant channel with eps 0.
    """
    axes, nd = _channel_axes(x64.ndim), x64.ndim
    e = column_exponent(x64, axes)
    u = np.ldexp(x64, _per_channel(-e, nd))
    mean_u = u.mean(axis=axes)
    c = u - _per_channel(mean_u, nd)
    var_u = (c * c).mean(axis=axes)
    with np.errstate(all="ignore"):
        eps_u = np.ldexp(float(eps), -2 * e)
        std = np.sqrt(var_u + eps_u)
        if not (std > 0).all():
            return None
        x_hat = c / _per_channel(std, nd)
        y = _per_channel(gamma64, nd) * x_hat + _per_channel(beta64, nd)
        # x_hat's error: rounding the mean to the dtype (|mean| / std) and the centred values
        size = np.abs(gamma64) * (1 + (np.abs(c).max(axis=axes) + np.abs(mean_u)) / std) + np.abs(beta64)
        mean = np.ldexp(mean_u, e)
        var = np.ldexp(var_u, 2 * e)
    return y, mean, var, _per_channel(size, nd), x_hat


def _finite_in(value, dt):
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.asarray(value, dtype=np.float64).astype(dt)).all())


@st.composite
def bn_inputs(draw):
    x = draw(arguments(**BATCH))
    shape = shape_of(x, ())
    c = shape[1] if len(shape) >= 2 else 3
    params = dict(dims=(c,), dtypes=None)
    gamma = draw(st.one_of(arguments(**params), arguments(dims=(c,), regimes=["ordinary"])))
    beta = draw(st.one_of(arguments(**params), arguments(dims=(c,), regimes=["ordinary"])))
    eps = draw(EPS_VALUES)
    return x, gamma, beta, eps


def _bn_forward_check(x, gamma, beta, eps):
    def check(value):
        x64, dt = float_input(x)
        g64, b64 = as_float64(gamma), as_float64(beta)
        if x64 is None or g64 is None or b64 is None or not valid_eps(eps) or x64.ndim < 2:
            return "returned for invalid input"
        y, cache = value
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        ref = _bn_reference(x64, g64, b64, float(eps))
        if ref is None:
            return "returned for a constant channel with eps=0"
        y_ref, mean, var, size, _ = ref
        problem = compare(y.astype(np.float64), y_ref, 64 * _eps(dt) * size + 1e3 * float(np.finfo(dt).tiny), "y")
        if problem:
            return problem
        if _finite_in(var, dt):
            m = x64.size // max(x64.shape[1], 1)
            problem = compare(cache.var.astype(np.float64), var, 1e3 * m * _eps(dt) * var + 8 * _sub(dt), "cache.var")
        return problem

    return check


@FUZZ
@given(args=bn_inputs())
def test_fuzz_batchnorm_forward(args):
    x, gamma, beta, eps = args
    # torch's "Expected more than 1 value per channel when training, got input of shape ..."
    names = {"x", "gamma", "beta", "eps", "input"}
    result = run(bnlib.batchnorm_forward, (x, gamma, beta, eps), check=_bn_forward_check(x, gamma, beta, eps),
                 names=names)
    assert_acceptable(result, "batchnorm_forward", x, gamma, beta, eps=eps)


@st.composite
def bn_backward_inputs(draw):
    x = draw(arrays(ndims=[2, 3, 4], dtypes=[np.dtype(np.float32), np.dtype(np.float64)],
                    regimes=["ordinary", "ordinary", "offset"], min_side=2, max_side=4))
    c = x.shape[1]
    gamma = draw(arrays(dims=(c,), dtypes=[x.dtype], regimes=["ordinary"]))
    beta = np.zeros(c, x.dtype)
    dy = draw(arguments(dims=x.shape))
    use = draw(st.sampled_from(["cache"] * 8 + ["none", "tuple"]))
    return x, gamma, beta, dy, use


def _bn_backward_check(cache, dy):
    def check(value):
        dy64 = as_float64(dy)
        dt = cache.x.dtype
        if dy64 is None or dy64.shape != cache.x.shape or not np.isfinite(dy64).all():
            return "returned for invalid dy"
        dx, dgamma, dbeta = value
        c = cache.x.shape[1]
        problem = check_array(dx, cache.x.shape, dt) or check_array(dgamma, (c,), dt) or check_array(dbeta, (c,), dt)
        if problem:
            return problem
        x64 = cache.x.astype(np.float64)
        g64 = cache.gamma.astype(np.float64)
        ref = _bn_reference(x64, g64, np.zeros(c), cache.eps)
        y_ref, mean, var, size, x_hat = ref
        nd, axes = x64.ndim, _channel_axes(x64.ndim)
        m = x64.size // c
        dyd = dy64.astype(dt).astype(np.float64)  # the values bnlib works with
        inv_std = 1 / np.sqrt(var + cache.eps)
        sum_dy = dyd.sum(axis=axes)
        sum_dy_xhat = (dyd * x_hat).sum(axis=axes)
        dx_ref = _per_channel(g64 * inv_std / m, nd) * (m * dyd - _per_channel(sum_dy, nd) - x_hat * _per_channel(sum_dy_xhat, nd))
        peak_dy = np.abs(dyd).max(axis=axes)
        # rounding the mean (|mean| / std in units of x_hat) and x_hat itself, in the dtype
        cond = (1 + np.abs(x_hat).max(axis=axes)) ** 2 * (1 + np.abs(x64).max(axis=axes) * inv_std)
        tol_dx = _per_channel(64 * _eps(dt) * np.abs(g64) * inv_std * peak_dy * cond, nd) + 1e3 * float(np.finfo(dt).tiny)
        tol_sums = 64 * _eps(dt) * m * peak_dy * cond + 1e3 * float(np.finfo(dt).tiny)
        return (compare(dx.astype(np.float64), dx_ref, tol_dx, "dx")
                or compare(dgamma.astype(np.float64), sum_dy_xhat, tol_sums, "dgamma")
                or compare(dbeta.astype(np.float64), sum_dy, tol_sums, "dbeta"))

    return check



@FUZZ
@given(args=bn_backward_inputs(), which=st.sampled_from(["batchnorm_backward", "batchnorm_backward_graph"]))
def test_fuzz_batchnorm_backward(args, which):
    x, gamma, beta, dy, use = args
    try:
        _, cache = bnlib.batchnorm_forward(x, gamma, beta)
    except ValueError:
        return  # the forward fuzz covers these
    cache_arg = {"cache": cache, "none": None, "tuple": tuple(cache)}[use]
    result = run(getattr(bnlib, which), (dy, cache_arg), check=_bn_backward_check(cache, dy))
    assert_acceptable(result, which, dy, use)


@pytest.mark.parametrize("which", ["batchnorm_backward", "batchnorm_backward_graph"])
def test_bn_backward_silent_overflow(which):
    dy = np.array([[3.4e38, 0.0], [0.0, 0.0]], dtype=np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    # exact dx[0, 0] = 1.36e34: finite, yet the graph version returns NaN
    _, cache = bnlib.batchnorm_forward(np.array([[0.0, 0.0], [1.0, 1.0]], np.float32), ones, zeros)
    dx, dgamma, dbeta = getattr(bnlib, which)(dy, cache)
    assert np.isfinite(dx).all()
    # exact dx[0, 0] = 5e40, beyond float32: a clear error naming dy, not -inf
    _, cache = bnlib.batchnorm_forward(np.array([[0.0, 0.0], [1e-3, 1e-3]], np.float32), ones, zeros)
    with pytest.raises(ValueError, match="dy"):
        getattr(bnlib, which)(dy, cache)


def test_bn_backward_cast_overflow():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    _, cache = bnlib.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError) as excinfo:
        bnlib.batchnorm_backward(np.full((4, 3), 1e40), cache)
    message = str(excinfo.value)
    assert "dy" in message and "beyond the range of float32" in message and "NaN" not in message


@st.composite
def inference_inputs(draw):
    x = draw(arguments(**BATCH))
    shape = shape_of(x, ())
    c = shape[1] if len(shape) >= 2 else 2
    per = [draw(st.one_of(arguments(dims=(c,)), arguments(dims=(c,), regimes=["ordinary"])))
           for _ in range(4)]
    return (x, *per, draw(EPS_VALUES))


@FUZZ
@given(args=inference_inputs())
def test_fuzz_batchnorm_inference(args):
    x, gamma, beta, rm, rv, eps = args

    def check(y):
        x64, dt = float_input(x)
        vals = [as_float64(v) for v in (gamma, beta, rm, rv)]
        if x64 is None or x64.ndim < 2 or any(v is None or not np.isfinite(v).all() for v in vals) or not valid_eps(eps):
            return "returned for invalid input"
        g, b, mean, var = vals
        var_dt = var.astype(dt).astype(np.float64)
        if (var_dt < 0).any() or (var_dt + float(eps) == 0).any():
            return "returned for a negative variance, or zero with eps=0"
        problem = check_array(y, x64.shape, dt)
        if problem:
            return problem
        nd = x64.ndim
        with np.errstate(all="ignore"):
            a = g / np.sqrt(var + float(eps))
            ref = _per_channel(a, nd) * (x64 - _per_channel(mean, nd)) + _per_channel(b, nd)
            size = _per_channel(np.abs(a), nd) * (np.abs(x64) + _per_channel(np.abs(mean), nd)) + _per_channel(np.abs(b), nd)
        return compare(y.astype(np.float64), ref, 16 * _eps(dt) * size + 1e3 * float(np.finfo(dt).tiny), "y")

    result = run(bnlib.batchnorm_inference, args, check=check)
    assert_acceptable(result, "batchnorm_inference", *args)


MOMENTA = mostly([0.1, 0.0, 1.0, 0.5, None, np.float32(0.3)], [-0.1, 1.5, np.nan, "0.1", True])
COUNTS = mostly([2, 10, np.int64(7), 10**30], [1, 0, -3, 2.5, True, "5", None])


@FEW
@given(stats=st.lists(arguments(dims=(3,)), min_size=4, max_size=4),
       n=COUNTS, momentum=MOMENTA, tracked=mostly([1, 5, np.int64(2)], [None, 0, -1, 2.5, True]))
def test_fuzz_update_running_stats(stats, n, momentum, tracked):
    rm, rv, bm, bv = stats

    def check(value):
        vals = [as_float64(v) for v in stats]
        if any(v is None or v.shape != (3,) or not np.isfinite(v).all() for v in vals):
            return "returned for invalid statistics"
        mean, var = value
        dt = expected_float_dtype(np.asarray(rm).dtype)
        problem = check_array(mean, (3,), dt) or check_array(var, (3,), dt)
        if problem:
            return problem
        if momentum is None:
            factor = 1.0 / float(tracked)
        else:
            factor = float(momentum)
        r_mean, r_var, b_mean, b_var = vals
        with np.errstate(all="ignore"):
            ref_mean = (1 - factor) * r_mean + factor * b_mean
            ref_var = (1 - factor) * r_var + factor * b_var * (int(n) / (int(n) - 1.0))
            tol_m = 8 * _eps(dt) * (np.abs(r_mean) + np.abs(b_mean)) + 8 * float(np.finfo(dt).tiny)
            tol_v = 8 * _eps(dt) * (np.abs(r_var) + 2 * np.abs(b_var)) + 8 * float(np.finfo(dt).tiny)
        return compare(mean.astype(np.float64), ref_mean, tol_m, "mean") or compare(var.astype(np.float64), ref_var, tol_v, "var")

    result = run(bnlib.update_running_stats, (rm, rv, bm, bv, n, momentum), {"num_batches_tracked": tracked},
                 check=check)
    assert_acceptable(result, "update_running_stats", *stats, n=n, momentum=momentum, num_batches_tracked=tracked)


def test_bn_inference_and_folding_overflow():
    x = np.full((2, 1), 1e4, np.float32)
    args = (np.array([3.4e34], np.float32), np.zeros(1), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="float32"):
        bnlib.batchnorm_inference(x, *args)  # 3.4e34 / sqrt(1e-5) * 1e4 = 1e41
    with pytest.raises(ValueError, match="float32"):
        bnlib.fold_batchnorm(np.full((1, 1), 1e4, np.float32), None, *args)


def test_bn_running_stats_intermediate_overflow():
    zeros = np.zeros(1, np.float32)
    mean, var = bnlib.update_running_stats(zeros, zeros, zeros, np.array([1.8e38], np.float32), n=2, momentum=0.1)
    assert np.isfinite(var).all() and var[0] == pytest.approx(3.6e37, rel=1e-6)


def test_bn_negative_variances():
    with pytest.raises(ValueError, match="var"):
        bnlib.update_running_stats(np.zeros(2), np.ones(2), np.zeros(2), -np.ones(2), n=4)
    with pytest.raises(ValueError, match="running_var"):
        bnlib.update_running_stats(np.zeros(2), -np.ones(2), np.zeros(2), np.ones(2), n=4)


@FEW
@given(batches=st.one_of(
    st.lists(arrays(dims=(3, 2), dtypes=[np.dtype(np.float32), np.dtype(np.float64)], regimes=["ordinary", "offset"]), max_size=4),
    st.lists(arguments(**BATCH), max_size=3)),
    as_generator=st.booleans())
def test_fuzz_population_statistics(batches, as_generator):
    arg = (b for b in batches) if as_generator else batches

    def check(value):
        b64 = [as_float64(b) for b in batches]
        if not b64 or any(b is None or not np.isfinite(b).all() or b.ndim < 2 or b.shape != b64[0].shape for b in b64):
            return "returned for invalid batches"
        mean, var = value
        dts = [expected_float_dtype(np.asarray(b).dtype) for b in batches]
        dt = np.result_type(*dts)  # mixed float32/float64 batches give float64
        coarse = max(dts, key=_eps)  # ... with the accuracy of the coarsest batch
        c = b64[0].shape[1]
        problem = check_array(mean, (c,), dt) or check_array(var, (c,), dt)
        if problem:
            return problem
        axes = _channel_axes(b64[0].ndim)
        m = math.prod(b64[0].shape[i] for i in axes)
        ref_mean = np.mean([b.mean(axis=axes) for b in b64], axis=0)
        ref_var = np.mean([b.var(axis=axes) for b in b64], axis=0) * m / (m - 1)
        peak = max(np.abs(b).max(initial=0.0) for b in b64)
        sub = 2 * _sub(coarse)
        return (compare(mean.astype(np.float64), ref_mean, 16 * _eps(coarse) * peak + sub, "mean")
                or compare(var.astype(np.float64), ref_var, 64 * _eps(coarse) * (peak**2) + sub, "var"))

    # "needs at least one batch" names the argument by its element
    result = run(bnlib.population_statistics, (arg,), check=check, names={"batches", "batch", "input"})
    assert_acceptable(result, "population_statistics", batches)


@st.composite
def fold_inputs(draw):
    w = draw(arguments(ndims=[2, 4, 1], tame_ndims=[2, 3, 4], max_side=3))
    shape = shape_of(w, ())
    out = shape[0] if len(shape) >= 1 else 2
    bias = draw(st.one_of(st.none(), arguments(dims=(out,))))
    per = [draw(st.one_of(arguments(dims=(out,)), arguments(dims=(out,), regimes=["ordinary"])))
           for _ in range(4)]
    return (w, bias, *per, draw(EPS_VALUES))


@FUZZ
@given(args=fold_inputs())
def test_fuzz_fold_batchnorm(args):
    w, bias, gamma, beta, rm, rv, eps = args

    def check(value):
        w64, dt = float_input(w)
        vals = [as_float64(v) for v in (gamma, beta, rm, rv)]
        b64 = np.zeros(len(vals[0])) if bias is None and vals[0] is not None else as_float64(bias)
        if w64 is None or w64.ndim < 2 or b64 is None or any(v is None or not np.isfinite(v).all() for v in [b64, *vals]) or not valid_eps(eps):
            return "returned for invalid input"
        g, b, mean, var = vals
        var_dt = var.astype(dt).astype(np.float64)  # -5e-324 is -0.0 in float32
        if (var_dt < 0).any() or (var_dt + float(eps) == 0).any():
            return "returned for a negative variance, or zero with eps=0"
        new_w, new_b = value
        problem = check_array(new_w, w64.shape, dt) or check_array(new_b, (w64.shape[0],), dt)
        if problem:
            return problem
        with np.errstate(all="ignore"):
            a = g / np.sqrt(var + float(eps))
            ref_w = w64 * a.reshape((-1,) + (1,) * (w64.ndim - 1))
            ref_b = (b64 - mean) * a + b
            tol_w = 8 * _eps(dt) * np.abs(ref_w) + 8 * float(np.finfo(dt).tiny)
            tol_b = 8 * _eps(dt) * (np.abs(a) * (np.abs(b64) + np.abs(mean)) + np.abs(b)) + 8 * float(np.finfo(dt).tiny)
        return compare(new_w.astype(np.float64), ref_w, tol_w, "weight") or compare(new_b.astype(np.float64), ref_b, tol_b, "bias")

    result = run(bnlib.fold_batchnorm, args, check=check)
    assert_acceptable(result, "fold_batchnorm", *args)


# --------------------------------------------------------------------------------------------
# gradient checking
# --------------------------------------------------------------------------------------------


def _forward_pair(z):
    return np.sin(z), {"z": z}


def _no_return(z):
    np.sin(z)


F_CHOICES = {
    "sin": (np.sin, lambda x, d: np.cos(x) * d),
    "square": (lambda z: z**2, lambda x, d: 2 * x * d),
    "sigmoid": (bnlib.sigmoid, lambda x, d: bnlib.sigmoid_grad(x) * d),
    "tuple": (_forward_pair, None),
    "none": (_no_return, None),
    "ragged": (lambda z: [[1.0, 2.0], [3.0]], None),
    "string": (lambda z: "abc", None),
    "complex": (lambda z: z * 1j, None),
    "log": (np.log, lambda x, d: d / x),
    "not callable": (3.0, None),
}


@FUZZ
@given(f_name=mostly(["sin", "square", "sigmoid", "log"], ["tuple", "none", "ragged", "string", "complex", "not callable"]), x=arguments(max_side=3, regimes=["ordinary", "ordinary", "special"]),
       dout_kind=st.sampled_from(["same", "same", "same", "wild"]), dout_wild=arguments(max_side=3),
       h=mostly([1e-5, 1e-4, 1e-3, 1e-6, np.float32(1e-3)], [0.0, -1e-5, None, np.nan, np.inf, "1e-5", True]))
def test_fuzz_numerical_gradient(f_name, x, dout_kind, dout_wild, h):
    f, grad = F_CHOICES[f_name]
    x64 = as_float64(x)
    dout = np.ones(np.shape(x64)) if dout_kind == "same" and x64 is not None else dout_wild

    def check(g):
        d64 = as_float64(dout)
        if x64 is not None and x64.size == 0 and isinstance(g, np.ndarray) and g.shape == x64.shape:
            return None  # nothing to differentiate: f is never called
        if x64 is None or d64 is None or grad is None:
            return f"returned for f={f_name}"
        problem = check_array(g, x64.shape, np.dtype(np.float64))
        if problem:
            return problem
        if f_name == "log" and (x64 <= 2 * float(h)).any():
            return "returned although log is undefined within h of x"
        if f_name == "log" and (x64 < 0.1).any():
            return None  # well defined, but central differences are inaccurate this close to 0
        if grad is not None and np.abs(x64).max(initial=0) <= 10 and isinstance(h, float) and 1e-6 <= h <= 1e-3:
            ref = grad(x64, d64)
            return compare(g, ref, 1e-5 * (1 + np.abs(ref)), "numerical gradient")
        return None

    names = {"f", "x", "dout", "h", "f(x)"}
    result = run(bnlib.numerical_gradient, (f, x, dout), {"h": h}, check=check, names=names)
    assert_acceptable(result, "numerical_gradient", f_name, x, dout, h=h)


@FUZZ
@given(a=arguments(max_side=3), b=arguments(max_side=3), same=st.booleans())
def test_fuzz_relative_error(a, b, same):
    if same and isinstance(a, np.ndarray):
        b = a[::-1] if a.ndim else a
    def check(value):
        a64, b64 = as_float64(a), as_float64(b)
        if a64 is None or b64 is None or a64.shape != b64.shape or not (np.isfinite(a64).all() and np.isfinite(b64).all()):
            return "returned for invalid input"
        if not isinstance(value, float) or not math.isfinite(value):
            return f"returned {value!r}, not a finite float"
        if a64.size == 0:
            return None if value == 0.0 else "nonzero for empty arrays"
        ha, hb = a64 / 2, b64 / 2
        ref = float(np.max(np.abs(ha - hb) / np.maximum(0.5e-8, np.abs(ha) + np.abs(hb))))
        return None if abs(value - ref) <= 1e-12 * (1 + ref) else f"{value} != {ref}"

    result = run(bnlib.relative_error, (a, b), check=check)
    assert_acceptable(result, "relative_error", a, b)


# --------------------------------------------------------------------------------------------
# initialisers
# --------------------------------------------------------------------------------------------

SHAPES = mostly([(3, 4), (2,), 5, (), (0, 3), (2, 3, 2), (np.int64(2), 2)], [-1, (2, -1), (2.0, 3), "3", None, True])
FANS = mostly([1, 4, 3, np.int64(3)], [0, -2, 2.5, True, None, "4"])
SCALES = mostly([1.0, 0.01, 0.0, 5 / 3, 2, 1e30, 1.7e308], [-1.0, np.nan, np.inf, 1e39, None, "1", True])
DTYPES = mostly([np.float64, np.float32, "float32"], [np.float16, np.int32, None, "nope", complex])


@FUZZ
@given(name=st.sampled_from(["zeros", "gaussian", "xavier_normal", "xavier_uniform", "he_normal"]),
       shape=SHAPES, fan_in=FANS, fan_out=FANS, scale=SCALES, dtype=DTYPES,
       rng_kind=mostly(["generator"], ["int", "none", "legacy"]))
def test_fuzz_init(name, shape, fan_in, fan_out, scale, dtype, rng_kind):
    rng = {"generator": np.random.default_rng(0), "int": 0, "none": None,
           "legacy": np.random.RandomState(0)}[rng_kind]
    func = getattr(init, name)
    if name == "zeros":
        args, kwargs = (shape,), {"dtype": dtype}
    elif name == "gaussian":
        args, kwargs = (shape, scale, rng), {"dtype": dtype}
    elif name == "he_normal":
        args, kwargs = (fan_in, fan_out, rng), {"dtype": dtype}
    else:
        args, kwargs = (fan_in, fan_out, rng), {"gain": scale, "dtype": dtype}

    def check(w):
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            return f"returned for dtype={dtype!r}"
        if name in ("zeros", "gaussian"):
            dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        else:
            dims = (int(fan_out), int(fan_in))
        problem = check_array(w, dims, dt)
        if problem:
            return problem
        if name == "zeros" and w.any():
            return "zeros() is not all zeros"
        if name == "xavier_uniform":
            bound = float(scale) * math.sqrt(6.0 / (int(fan_in) + int(fan_out)))
            if (np.abs(w) > bound * (1 + 1e-6)).any():
                return "xavier_uniform outside its bound"
        return None

    state = np.random.get_state()[1].copy()
    result = run(func, args, kwargs, check=check)
    assert np.array_equal(np.random.get_state()[1], state), "global random state touched"
    assert_acceptable(result, f"init.{name}", *args, **kwargs)


# --------------------------------------------------------------------------------------------
# data: load_digits, read_idx, load_mnist, download_mnist
# --------------------------------------------------------------------------------------------


@FEW
@given(test_fraction=mostly([0.25, 0.5, 0.001, 0.999, 1 / 1797, np.float32(0.3)], [0.0, 1.0, -0.1, np.nan, np.inf, "0.2", None, True], 3),
       seed=mostly([0, 1, 2**64, np.int64(3), np.random.default_rng(1)], [-1, 1.5, "0", None, True], 3),
       dtype=mostly([np.float32, np.float64, "float64"], [np.float16, int, None], 3))
def test_fuzz_load_digits(test_fraction, seed, dtype):
    def check(ds):
        x_train, y_train, x_test, y_test = ds
        dt = np.dtype(dtype)
        n_test = math.ceil(float(test_fraction) * 1797)
        problem = (check_array(x_train, (1797 - n_test, 64), dt) or check_array(x_test, (n_test, 64), dt)
                   or check_array(y_train, (1797 - n_test,), np.dtype(np.int64)) or check_array(y_test, (n_test,), np.dtype(np.int64)))
        if problem:
            return problem
        if not (0 <= x_train.min() and x_train.max() <= 1 and set(np.unique(y_test)) <= set(range(10))):
            return "values out of range"
        return None

    result = run(data.load_digits, (test_fraction, seed, dtype), check=check)
    assert_acceptable(result, "load_digits", test_fraction=test_fraction, seed=seed, dtype=dtype)


IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
WORKDIR = Path(tempfile.mkdtemp(prefix="bnlib-fuzz-data-"))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)


def idx_bytes(array, code=None):
    array = np.asarray(array)
    code = IDX_CODES[array.dtype] if code is None else code
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@st.composite
def idx_files(draw):
    """``(raw bytes, the array they encode or None when damaged)``."""
    dtype = draw(st.sampled_from(list(IDX_CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    array = np.arange(math.prod(shape), dtype=np.int64).reshape(shape).astype(dtype)
    raw = idx_bytes(array)
    damage = draw(st.sampled_from(["none", "none", "truncate", "append", "flip", "magic", "code", "empty"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif damage == "append":
        raw = raw + b"\x00"
    elif damage == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]
    elif damage == "magic":
        raw = b"\x01" + raw[1:]
    elif damage == "code":
        raw = raw[:2] + b"\x07" + raw[3:]
    elif damage == "empty":
        raw = b""
    compression = draw(st.sampled_from(["raw", "gzip", "gzip", "corrupt-gzip", "truncated-gzip"]))
    if compression != "raw":
        packed = bytearray(gzip.compress(raw))
        if compression == "corrupt-gzip" and len(packed) > 12:
            packed[10] ^= draw(st.integers(1, 255))
        elif compression == "truncated-gzip":
            packed = packed[: len(packed) // 2]
        raw = bytes(packed)
    return raw, (array if damage == "none" and compression in ("raw", "gzip") else None)


@FUZZ
@given(file=idx_files())
def test_fuzz_read_idx(file):
    raw, array = file
    path = WORKDIR / "fuzz-idx1-ubyte.gz"
    path.write_bytes(raw)

    def check(value):
        if not isinstance(value, np.ndarray) or not value.dtype.isnative:
            return f"returned {type(value).__name__} {getattr(value, 'dtype', '')}"
        if array is not None and not (value.shape == array.shape and np.array_equal(value, array)):
            return "decoded a different array"
        return None

    result = run(data.read_idx, (path,), check=check, names={str(path), path.name})
    assert_acceptable(result, "read_idx", raw[:40])


@st.composite
def mnist_dirs(draw):
    """Four IDX files of fake MNIST with odd counts, labels and dtypes."""
    files = {}
    for prefix in ("train", "t10k"):
        n = draw(st.integers(0, 3))
        images = np.full((n, 2, 3), 7, dtype=draw(mostly([np.dtype("u1")], [np.dtype(">i4")])))
        shape_kind = draw(mostly(["ok"], ["flat", "count"]))
        if shape_kind == "flat":
            images = images.reshape(n, 6)
        n_labels = n if shape_kind != "count" else n + 1
        top = draw(mostly([9], [12]))
        labels = np.asarray(draw(st.lists(st.integers(0, top), min_size=n_labels, max_size=n_labels)), dtype=np.int64)
        labels = labels.astype(draw(mostly([np.dtype("u1")], [np.dtype(">i4"), np.dtype(">f4")])))
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    victim = draw(mostly([None], list(files)))
    if victim is not None:
        damaged = bytearray(files[victim])
        damaged[10] ^= 0xFF
        files[victim] = bytes(damaged)
    return files


@FEW
@given(files=mnist_dirs(), dtype=mostly([np.float32, np.float64], [np.int8]))
def test_fuzz_load_mnist(files, dtype):
    root = Path(tempfile.mkdtemp(dir=WORKDIR))
    for name, raw in files.items():
        (root / name).write_bytes(raw)

    def check(ds):
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            problem = check_array(x, (len(y), 6), np.dtype(dtype)) or check_array(y, (len(x),), np.dtype(np.int64))
            if problem:
                return problem
            if y.size and not (0 <= y.min() and y.max() <= 9):
                return f"labels from {y.min()} to {y.max()} accepted"
        return None

    names = {"dtype", "root", *(str(root / n) for n in files)}
    result = run(data.load_mnist, (root,), {"dtype": dtype}, check=check, names=names)
    assert_acceptable(result, "load_mnist", sorted(files), dtype=dtype)


@FEW
@given(timeout=mostly([5, 0.5, np.float32(2)], [0, -1, np.nan, np.inf, None, "5", True], 3),
       deadline=mostly([30, 5.0], [0, -1, np.nan, None, "10"], 3),
       root_kind=mostly(["path", "str"], ["none", "int"], 3))
def test_fuzz_download_mnist(timeout, deadline, root_kind):
    mirror = WORKDIR / "mirror"
    if not mirror.exists():
        mirror.mkdir()
        for name in data.MNIST_FILES:
            (mirror / name).write_bytes(gzip.compress(idx_bytes(np.zeros((1, 2, 2) if "images" in name else (1,), np.uint8))))
    digests = {name: hashlib.sha256((mirror / name).read_bytes()).hexdigest() for name in data.MNIST_FILES}
    target = Path(tempfile.mkdtemp(dir=WORKDIR)) / "mnist"
    root = {"path": target, "str": str(target), "none": None, "int": 3}[root_kind]
    with mock.patch.dict(data.MNIST_FILES, digests):
        result = run(data.download_mnist, (root,), {"mirror": mirror.as_uri(), "timeout": timeout, "deadline": deadline},
                     check=lambda p: None if Path(p).is_dir() else "no directory returned")
    assert_acceptable(result, "download_mnist", root, timeout=timeout, deadline=deadline)


# --------------------------------------------------------------------------------------------
# what the fuzz found beyond the list, pinned as plain tests
# --------------------------------------------------------------------------------------------


def test_found_byte_swapped_input_computes_in_the_native_dtype():
    x = np.array([[1.0, 2.0], [3.0, 5.0]], dtype=">f4")
    for y in (bnlib.center(x), bnlib.standardize(x), bnlib.covariance(x), bnlib.sigmoid(x)):
        assert y.dtype == np.dtype("float32") and y.dtype.isnative
    y, cache = bnlib.batchnorm_forward(x, np.ones(2, ">f8"), np.zeros(2, ">f2"))
    assert y.dtype == np.float32 and cache.var.dtype == np.float32
    mean, var = bnlib.update_running_stats(np.zeros(2, ">f2"), np.ones(2), np.zeros(2), np.ones(2), n=4)
    assert mean.dtype == np.float32 and var.dtype == np.float32  # float16 read as float32, native


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_found_np_matrix_input_gives_plain_arrays():
    m = np.asmatrix([[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]])
    for func in (bnlib.center, bnlib.standardize, bnlib.min_max_scale, bnlib.decorrelate, bnlib.zca_whiten):
        y = func(m)
        assert type(y) is np.ndarray and y.shape == (3, 2)
    np.testing.assert_allclose(bnlib.standardize(m), bnlib.standardize(np.asarray(m)))


def test_found_a_parameter_beyond_x_dtype_is_a_clear_error():
    # beta = 1.8e304 is finite in float64 but not in float32: it used to become inf silently
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"beta has values beyond the range of x's dtype, float32"):
        bnlib.batchnorm_forward(x, np.ones(2), np.full(2, 1.8e304))
    with pytest.raises(ValueError, match=r"running_mean has values beyond the range of x's dtype, float32"):
        bnlib.batchnorm_inference(x, np.ones(2), np.zeros(2), np.full(2, 1e39), np.ones(2))


def test_found_gaussian_of_shape_empty_tuple_is_an_array():
    w = init.gaussian((), 1.0, np.random.default_rng(0))
    assert type(w) is np.ndarray and w.shape == () and w.dtype == np.float64
