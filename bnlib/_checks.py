"""Input validation shared by every ``bnlib`` module.

Each check either returns a clean value or raises an error whose message says
what was expected and what came, in the spirit of scikit-learn's messages.
Nothing here modifies its argument.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np


def _as_array(x, name):
    """``np.asarray(x)``, with numpy's and array providers' errors restated about ``name``.

    A ragged nested list (rows of different lengths), a tuple of arrays of different
    shapes, or an object whose conversion fails (a torch tensor that requires grad)
    becomes a ``ValueError``/``TypeError`` naming the argument.
    """
    if type(x) is np.ndarray and x.dtype.isnative:
        return x
    try:
        arr = np.asarray(x)  # also turns subclasses such as np.matrix into plain arrays
        # big-endian data (as read from a file) computes as the native dtype it stands for
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    except ValueError as err:
        hint = ""
        if isinstance(x, (tuple, list)) and any(isinstance(v, np.ndarray) for v in x):
            hint = (
                " A tuple of several arrays (e.g. a function's (y, cache) or "
                "(dx, dgamma, dbeta)) is not one array: pick the one you mean."
            )
        raise ValueError(
            f"{name} must be an array of real numbers, got a {type(x).__name__} that is "
            f"not a rectangular array (rows of different lengths or shapes: {err}).{hint}"
        ) from err
    except (TypeError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be an array of real numbers, got a {type(x).__name__} that "
            f"numpy cannot convert: {err}"
        ) from err


def as_float_array(x, name="x"):
    """Return ``x`` as a floating ndarray without copying when it already is one.

    float32 and float64 keep their dtype; float16 becomes float32; integers and
    booleans become float64; wider floats (``longdouble``) become float64, and
    values beyond float64's range are a ``ValueError``. Anything else (complex,
    object, strings, a ragged nested list) is a ``TypeError``/``ValueError``
    naming ``name``.
    """
    arr = _as_array(x, name)
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype == np.float16:
            return arr.astype(np.float32)
        if arr.dtype.itemsize > 8:
            with np.errstate(over="ignore"):
                narrowed = arr.astype(np.float64)
            if np.count_nonzero(np.isfinite(narrowed)) != np.count_nonzero(np.isfinite(arr)):
                raise ValueError(
                    f"{name} holds values beyond float64's range (max about 1.8e308) "
                    f"in its {arr.dtype}; rescale it first"
                )
            return narrowed
        return arr
    if kind in "iub":
        return arr.astype(np.float64)
    raise TypeError(
        f"{name} must be an array of real numbers (float32 or float64), "
        f"got dtype {arr.dtype}"
    )


def check_float_dtype(dtype):
    """Return ``np.dtype(dtype)`` after checking it is float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_finite(arr, name="x"):
    """Raise ``ValueError`` if ``arr`` holds NaN or infinity."""
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} must contain only finite values, got {bad} NaN or infinite "
            f"value(s) in an array of shape {arr.shape}"
        )


def check_eps(eps, name="eps"):
    """Return ``eps`` as a float after checking it is a finite number >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a non-negative real number, got {eps!r}")
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {eps!r}")
    return eps


def check_batch(x, name="x"):
    """Validate a batch laid out as ``(N, C)`` or ``(N, C, *spatial)``.

    Returns the array as float32/float64 (see :func:`as_float_array`).
    """
    arr = as_float_array(x, name)
    if arr.ndim < 2:
        raise ValueError(
            f"Expected {name} with at least 2 dimensions, (N, C) or (N, C, *spatial), "
            f"got a {arr.ndim}-D array of shape {arr.shape}. A single feature "
            f"measured on N samples is x.reshape(-1, 1)."
        )
    check_finite(arr, name)
    return arr


def check_2d(x, name="x", min_samples=1, what="this operation"):
    """Validate a data matrix of shape ``(n_samples, n_features)``, at least one feature."""
    arr = as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(
            f"Expected a 2-D array {name} of shape (n_samples, n_features), got a "
            f"{arr.ndim}-D array of shape {arr.shape}. Reshape a single feature "
            f"with x.reshape(-1, 1) or a single sample with x.reshape(1, -1)."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{what} needs at least {min_samples} samples (rows of {name}), "
            f"got {arr.shape[0]} in an array of shape {arr.shape}"
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"{what} needs at least 1 feature (column of {name}), "
            f"got an array of shape {arr.shape}"
        )
    check_finite(arr, name)
    return arr


def check_positive(value, name):
    """Return ``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def check_path(path, name):
    """Return ``pathlib.Path(path)`` after checking ``path`` is a str or path-like."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like, got {type(path).__name__} {path!r}")
    return Path(path)


def check_no_overflow(result, what, name="x"):
    """Raise ``ValueError`` when a result computed from finite input is not finite.

    Used after an operation whose exact result can exceed the largest number of
    the input's dtype (e.g. centring float32 values near 3.4e38).
    """
    if not np.isfinite(result).all():
        limit = np.finfo(result.dtype).max
        fix = f"Rescale {name}" if result.dtype == np.float64 else (
            f"Convert {name} to float64 (x.astype(np.float64)) or rescale it"
        )
        raise ValueError(
            f"{what} of {name} overflows {result.dtype}: the result exceeds its largest "
            f"value, {limit:.3g}. {fix}."
        )
    return result


def values_per_channel(shape):
    """Number of values each channel's statistics are computed over."""
    n = shape[0]
    for s in shape[2:]:
        n *= s
    return n


def check_training_batch(shape):
    """torch's rule: a channel needs more than one value for batch statistics."""
    if values_per_channel(shape) < 2:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input of "
            f"shape {tuple(shape)}"
        )


def check_param(p, name, num_channels, dtype):
    """Validate a per-channel parameter (``gamma``, ``beta``, running stats).

    Returns a 1-D array of length ``num_channels`` in ``dtype``.
    """
    arr = as_float_array(p, name)
    if arr.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape (C,) = ({num_channels},), one entry per channel "
            f"(axis 1 of x), got shape {arr.shape}"
        )
    check_finite(arr, name)
    with np.errstate(over="ignore"):
        cast = arr.astype(dtype, copy=False)
    if not np.isfinite(cast).all():
        raise ValueError(
            f"{name} has values beyond the range of x's dtype, {np.dtype(dtype)} (largest "
            f"{np.finfo(dtype).max:.3g}), up to {float(np.abs(arr).max()):.3g}"
        )
    return cast


def all_finite(a):
    """``np.isfinite(a).all()``, without ``ndarray.all``'s Python layer (it counts on small arrays)."""
    return bool(np.logical_and.reduce(np.isfinite(a), axis=None))


def check_params(num_channels, dtype, **params):
    """:func:`check_param` for several per-channel parameters, with a fast path; returns them in order.

    Parameters that already are native ndarrays of shape ``(num_channels,)`` in ``dtype`` are
    checked for NaN and infinity together, through their sum (finite when each one is; a sum
    that overflows only sends them to the full check). Anything else gets :func:`check_param`
    and its messages.
    """
    arrays = tuple(params.values())
    shape = (num_channels,)
    for p in arrays:
        if type(p) is not np.ndarray or p.dtype != dtype or p.shape != shape:
            break
    else:
        if all_finite(sum(arrays[1:], arrays[0])):
            return arrays
    return tuple(check_param(p, name, num_channels, dtype) for name, p in params.items())
