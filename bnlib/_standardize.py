"""Standardisation over axes: the one operation behind the normalization layers.

Batch, layer, instance and group normalization all compute

    x_hat = (x - mean) / sqrt(var + eps)

with the mean and the biased variance taken over some axes of ``x``; they differ in
which axes. Batch Normalization standardises over every axis but the channels (axis 1);
Layer Normalization over every axis but the batch (axis 0). This module holds that one
operation and its backward pass; each layer chooses its axes and adds its own scale and
shift.

Sums are accumulated in float64, so float32 data loses no digits in them. The trailing
axes are a contiguous run of values that numpy sums pairwise (or, for a sum of products,
by a dot product with several partial sums) with an error of a few roundings, so those
axes are summed first in the data's own dtype and the rest in float64. Intermediate steps
work in place where they can, so few arrays as large as ``x`` are allocated.
"""

from __future__ import annotations

import functools

import numpy as np

from ._checks import all_finite, check_finite


@functools.lru_cache(maxsize=128)
def _trailing_and_leading(axes, ndim):
    """Split ``axes`` into the run of trailing axes (summed pairwise) and the others."""
    first = ndim
    while first - 1 in axes:
        first -= 1
    trailing = tuple(range(first, ndim))
    return trailing, tuple(a for a in axes if a < first)


_SMALL = 1 << 16  # elements: a float64 copy of 512 KiB


@functools.lru_cache(maxsize=64)
def _constant(value, n):
    """A read-only float64 row of ``n`` copies of ``value`` (shape ``(1, n)``), made once."""
    row = np.full((1, n), value)
    row.flags.writeable = False
    return row


def sum_over(a, axes):
    """``a.sum(axis=axes, keepdims=True)`` in float64: the trailing axes pairwise in ``a``'s dtype."""
    trailing, leading = _trailing_and_leading(axes, a.ndim)
    if trailing:
        a = a.sum(axis=trailing, keepdims=True)
    if leading == (0,) and a.size <= _SMALL:
        # A small batch: numpy's float64 reduction of float32 values costs more to set up
        # than the same sum as a product with a vector of ones (BLAS, in float64; np.dot
        # converts float32 to float64 itself).
        n = a.shape[0]
        if a.ndim == 2:
            return np.dot(_constant(1.0, n), a)
        return np.dot(_constant(1.0, n), a.reshape(n, -1)).reshape((1,) + a.shape[1:])
    return a.sum(axis=leading, dtype=np.float64, keepdims=True)


def mean_over(a, axes, dtype):
    """``a.mean(axis=axes, keepdims=True)`` in ``dtype``, summed in float64 as by :func:`sum_over`."""
    if axes == (0,) and a.ndim == 2 and a.size <= _SMALL:
        # the batch axis of a small batch: a product with a row of 1/m (BLAS, float64)
        m = a.shape[0]
        return np.dot(_constant(1.0 / m, m), a).astype(dtype, copy=False)
    return (sum_over(a, axes) / count_over(a.shape, axes)).astype(dtype, copy=False)


def mean_of_products(a, b, axes, dtype):
    """``(a * b).mean(axis=axes, keepdims=True)`` in ``dtype``, summed as by :func:`sum_of_products`."""
    if axes and axes[-1] == a.ndim - 1:  # a trailing axis: sum_of_products needs no array of products
        return (sum_of_products(a, b, axes) / count_over(a.shape, axes)).astype(dtype, copy=False)
    return mean_over(a * b, axes, dtype)


def sum_of_products(a, b, axes):
    """``(a * b).sum(axis=axes, keepdims=True)`` in float64, as :func:`sum_over`.

    Over trailing axes ``np.vecdot`` forms the products and their sums in one pass,
    without an array of products.
    """
    trailing, leading = _trailing_and_leading(axes, a.ndim)
    if not trailing:
        return sum_over(a * b, axes)
    leading_shape = a.shape[: a.ndim - len(trailing)]
    rows = leading_shape + (count_over(a.shape, trailing),)
    products = np.vecdot(a.reshape(rows), b.reshape(rows)).reshape(leading_shape + (1,) * len(trailing))
    return sum_over(products, leading)


def count_over(shape, axes):
    """How many values each statistic over ``axes`` is computed from."""
    m = 1
    for axis in axes:
        m *= shape[axis]
    return m


def overflow_error(name, arr, dtype):
    """The error for finite values whose statistics do not fit in ``dtype``."""
    return ValueError(
        f"The batch statistics of {name} overflow {np.dtype(dtype)}: {name} has finite values "
        f"as large as {float(np.abs(arr).max()):.3g}. Rescale {name} or use float64."
    )


def inverse_std(var, eps, what):
    """``1 / sqrt(var + eps)``, refusing to divide by zero (``var == eps == 0``)."""
    denominator = var + eps
    # eps is 0 in var's dtype (never when eps >= 1e-45, float32's smallest value rounds up from there)
    if eps < 1e-45 and var.dtype.type(eps) == 0 and not denominator.all():
        zero = np.flatnonzero(denominator == 0)
        eps_text = "eps=0," if eps == 0 else f"eps={eps!r}, which is 0 in {var.dtype},"
        raise ValueError(
            f"{what} is 0 in channel(s) {zero[:5].tolist()}{' ...' if zero.size > 5 else ''} "
            f"and {eps_text} so normalising divides by zero; use eps > 0 (PyTorch's default is 1e-5)"
        )
    return 1.0 / np.sqrt(denominator)


def centred_moments(x, axes, name="x"):
    """``x - mean``, ``mean`` and the biased ``var`` over ``axes``: two passes over ``x``.

    Returns the centred values in the dtype of ``x`` (float64 for float32 values too large
    to square in float32), and ``mean`` and ``var`` in the dtype of ``x``, of ``x``'s shape
    with 1 on ``axes``. A NaN or infinity in ``x`` makes ``var`` non-finite, and only then
    is ``x`` scanned, to raise a clear error. float32 squares overflow beyond
    ``|x - mean| = 1.8e19``; then the same two passes are repeated in float64, and only a
    variance beyond the dtype's range is an error.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are checked below
        mean = mean_over(x, axes, x.dtype)  # mean = sum(x) / m
        xc = x - mean
        var = mean_of_products(xc, xc, axes, x.dtype)  # var = sum(xc**2) / m
    if all_finite(var):
        return xc, mean, var
    if x.dtype != np.float64:  # float32 squares or partial sums overflowed: redo in float64
        xc, mean, var = centred_moments(x.astype(np.float64), axes, name)
        with np.errstate(over="ignore"):
            mean, var = mean.astype(x.dtype), var.astype(x.dtype)  # var may be beyond float32
        if np.isfinite(var).all():
            return xc, mean, var
    check_finite(x, name)
    raise overflow_error(name, x, x.dtype)


def standardize(x, axes, eps, name="x", what="the variance"):
    """Standardise ``x`` over ``axes``: ``x_hat = (x - mean) / sqrt(var + eps)``.

    Parameters
    ----------
    x : ndarray of float32 or float64
        Not modified. Checked here, through its statistics, for NaN and infinity.
    axes : tuple of int
        The axes the mean and variance are taken over (each statistic has size 1 there).
    eps : float >= 0
    name, what : str
        How error messages call ``x`` and its variance.

    Returns
    -------
    x_hat : ndarray of the shape and dtype of ``x``
    mean, var, inv_std : ndarray of the dtype of ``x``, of ``x``'s shape with 1 on ``axes``
        The mean, the biased variance and ``1 / sqrt(var + eps)``.

    Notes
    -----
    With ``m`` values per statistic and sums over ``axes``:

        mean = sum(x) / m
        var = sum((x - mean)**2) / m          (centred values: two passes)
        x_hat = (x - mean) / sqrt(var + eps)
    """
    xc, mean, var = centred_moments(x, axes, name)
    inv_std = inverse_std(var, eps, what)
    x_hat = np.multiply(xc, inv_std, out=xc)  # xc is ours and not needed after
    return x_hat.astype(x.dtype, copy=False), mean, var, inv_std


def standardize_backward(dx_hat, x_hat, scale, axes):
    """Backward pass of :func:`standardize`: ``dx`` from ``dx_hat = dL/dx_hat``.

    Parameters
    ----------
    dx_hat : ndarray
        The gradient reaching ``x_hat``.
    x_hat : ndarray of the shape of ``dx_hat``
        From :func:`standardize`.
    scale : ndarray broadcastable against ``x_hat``, of its dtype
        ``inv_std`` from :func:`standardize`. The result is linear in ``dx_hat``, so a
        factor constant over ``axes`` (Batch Normalization's ``gamma``) can be moved into
        ``scale`` and ``dx_hat`` left unscaled.
    axes : tuple of int
        As in :func:`standardize`.

    Returns
    -------
    dx : ndarray of the shape and dtype of ``dx_hat``
    sum_dx_hat, sum_dx_hat_x_hat : ndarray of float64, 1 on ``axes``
        ``sum(dx_hat)`` and ``sum(dx_hat * x_hat)`` over ``axes``: the two sums the formula
        needs, which are also Batch Normalization's ``dbeta`` and ``dgamma``.

    Notes
    -----
    With ``m`` values per statistic and means over ``axes``,

        dx = scale * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)).

    It sums to zero over ``axes`` and, when ``eps = 0``, is orthogonal to ``x_hat``.
    """
    m = count_over(x_hat.shape, axes)
    sum_dx_hat_x_hat = sum_of_products(dx_hat, x_hat, axes)
    sum_dx_hat = sum_over(dx_hat, axes)
    mean_dx_hat = (sum_dx_hat / m).astype(x_hat.dtype)
    mean_dx_hat_x_hat = (sum_dx_hat_x_hat / m).astype(x_hat.dtype)
    # dx = scale * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat), in place after the first product:
    dx = x_hat * mean_dx_hat_x_hat
    dx += mean_dx_hat
    np.subtract(dx_hat, dx, out=dx)
    dx *= scale
    return dx, sum_dx_hat, sum_dx_hat_x_hat


def fit_dtype(results, dtype, redo_in_float64, what):
    """``results`` if all finite, else ``redo_in_float64()`` cast to ``dtype``, else a clear error.

    For functions whose inputs are finite (checked by the caller): a non-finite result then
    means an intermediate value overflowed the working dtype. The same formulas are redone in
    float64; an infinity that remains after the cast means the true result does not fit in
    ``dtype``, which is an error naming ``what`` rather than a silent infinity or NaN.
    """
    if all(map(all_finite, results)):
        return results
    if np.dtype(dtype) != np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            results = tuple(np.asarray(r).astype(dtype) for r in redo_in_float64())
        if all(map(all_finite, results)):
            return results
    raise ValueError(
        f"{what} overflows {np.dtype(dtype)}: the exact result is beyond its range. Rescale the "
        f"inputs, or compute in float64."
    )
