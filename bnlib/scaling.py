"""Feature scaling of a data matrix: centring, standardisation, min-max scaling.

Every function takes ``x`` of shape ``(n_samples, n_features)`` and works per
column (per feature). They are pure: the input is never modified and a new
array is returned. float32 in gives float32 out, float64 in gives float64 out,
integers and booleans give float64.
"""

from __future__ import annotations

import numbers

import numpy as np

from bnlib._checks import check_2d, check_eps, check_no_overflow

__all__ = ["center", "standardize", "min_max_scale"]


def _peak_exponent(x, axis=0):
    """Exponent ``e`` with ``max|x| / 2**e`` in ``[0.5, 1)`` (``e = 0`` for all zeros).

    ``np.ldexp(x, -e)`` divides by a power of two, which is exact (no digit of
    the data changes): it only keeps sums and squares away from overflow near
    the top of the dtype's range and from underflow near its bottom.
    """
    return np.frexp(np.abs(x).max(axis=axis))[1]


def _column_mean(x):
    """Per-column mean accumulated in float64, returned in ``x``'s dtype.

    NumPy sums along axis 0 one row at a time (pairwise summation only helps
    along the contiguous axis), so a float32 accumulator loses digits on long
    columns with a large offset. The sum is taken of ``x / 2**e`` (see
    :func:`_peak_exponent`) so that float64 data near 1e308 does not overflow it.
    """
    e = _peak_exponent(x)
    mean = np.mean(np.ldexp(x, -e), axis=0, dtype=np.float64)
    return np.ldexp(mean, e).astype(x.dtype, copy=False)


def center(x):
    """Subtract the per-column mean.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        ``x`` with every column shifted to mean zero, in ``x``'s float dtype.

    Notes
    -----
    ``y[:, j] = x[:, j] - mean(x[:, j])``. Centring is the first of the five
    operations (centring, scaling, decorrelating, standardising, whitening).

    A centred value can be up to ``max - min`` of its column, twice the
    largest ``|x|``: float32 data spanning ``-3e38`` to ``3e38`` has centred
    values float32 cannot hold, and that is a ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.scaling import center
    >>> center(np.array([[1.0, 10.0], [3.0, 20.0]]))
    array([[-1., -5.],
           [ 1.,  5.]])
    """
    x = check_2d(x, what="Centring")
    with np.errstate(over="ignore"):
        y = x - _column_mean(x)
    return check_no_overflow(y, "Centring")


def standardize(x, eps=0.0):
    """Z-score every column: subtract its mean, divide by its (biased) std.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row.
    eps : float, default 0.0
        Non-negative number added to the variance before the square root, as
        in Batch Normalization. The default 0 gives the exact z-score.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        Standardised data in ``x``'s float dtype: each non-constant column has
        mean 0 and (for ``eps=0``) standard deviation 1.

    Notes
    -----
    ``y[:, j] = (x[:, j] - mu_j) / sqrt(var_j + eps)`` with
    ``mu_j = mean(x[:, j])`` and the biased variance
    ``var_j = mean((x[:, j] - mu_j)**2)`` (``ddof=0``, as ``np.std`` and
    scikit-learn's ``StandardScaler``).

    The variance is computed from the centred values (two passes), never as
    ``E[x^2] - E[x]^2``, so a large common offset does not cancel it away;
    means are accumulated in float64 even for float32 data. Each column is
    first divided by a power of two near its largest ``|x|`` (exact, and it
    cancels in the ratio), so data near the top or bottom of the dtype's range
    neither overflows nor underflows.

    A constant column (all values exactly equal) becomes all zeros instead of
    ``0/0 = NaN``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.scaling import standardize
    >>> x = np.array([[1.0, 5.0], [3.0, 5.0]])
    >>> standardize(x)
    array([[-1.,  0.],
           [ 1.,  0.]])
    """
    x = check_2d(x, what="Standardisation")
    eps = check_eps(eps)
    e = _peak_exponent(x)
    scaled = np.ldexp(x, -e)  # x / 2**e, exactly; |scaled| < 1
    centred = scaled - _column_mean(scaled)
    # Exact test on the raw data: the mean of identical floats need not equal
    # them, so the centred values of a constant column can be tiny non-zeros.
    constant = x.max(axis=0) == x.min(axis=0)
    # Dividing by the largest |centred| first keeps the squares away from
    # underflow (tiny spreads) and overflow (huge ones): u is in [-1, 1] and
    # var / peak**2 = mean(u**2) lies in [1/n, 1].
    peak = np.abs(centred).max(axis=0)
    peak[constant | (peak == 0)] = 1
    u = centred / peak
    ratio = np.mean(u * u, axis=0, dtype=np.float64)
    ratio[constant] = 1
    if eps > 0:
        # eps / (peak * 2**e)**2: eps in the units of u
        peak64 = peak.astype(np.float64)
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            ratio = ratio + np.ldexp(eps / (peak64 * peak64), -2 * e)
    # (x - mu) / sqrt(var + eps) = u / sqrt(var / peak**2 + eps / peak**2)
    with np.errstate(over="ignore"):  # eps beyond float32 against the spread: y rounds to 0
        y = u / np.sqrt(ratio).astype(x.dtype)
    y[:, constant] = 0
    return y


def _check_feature_range(feature_range, dtype):
    """Return ``(low, high)`` as floats after checking ``low < high``, both within ``dtype``."""
    try:
        n = len(feature_range)
    except TypeError:
        n = None
    if n != 2 or isinstance(feature_range, (str, bytes)):
        raise ValueError(
            "feature_range must be a pair of numbers (low, high) with low < high, "
            f"got {feature_range!r}"
        )
    low, high = feature_range
    for value in (low, high):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(
                "feature_range must be a pair of real numbers (low, high), "
                f"got {feature_range!r}"
            )
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(
            f"feature_range must hold finite numbers, got {feature_range!r}"
        )
    if not low < high:
        raise ValueError(
            "feature_range must satisfy low < high, got "
            f"low={low!r}, high={high!r}"
        )
    with np.errstate(over="ignore"):
        fits = np.isfinite(np.array([low, high], dtype=dtype)).all()
    if not fits:
        raise ValueError(
            f"feature_range {feature_range!r} lies beyond the range of x's dtype, "
            f"{dtype}, whose largest value is {np.finfo(dtype).max:.3g}"
        )
    return low, high


def min_max_scale(x, feature_range=(0.0, 1.0)):
    """Rescale every column linearly onto ``feature_range``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row.
    feature_range : tuple (low, high), default (0.0, 1.0)
        Target interval; two finite numbers with ``low < high``.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        Scaled data in ``x``'s float dtype; each column's minimum maps to
        ``low`` and its maximum to ``high``.

    Notes
    -----
    ``y[:, j] = low + (x[:, j] - min_j) * (high - low) / (max_j - min_j)``,
    the same map as scikit-learn's ``MinMaxScaler``. A constant column
    (``max_j == min_j``) maps to ``low``. One outlier sets ``min_j`` or
    ``max_j`` and squeezes every other value of its column together.

    Computed as ``u = (x - min) / (max - min)`` in ``[0, 1]``, then
    ``y = low * (1 - u) + high * u``; each column is first divided by a
    power of two near its largest ``|x|`` (exact, and it cancels in ``u``),
    so ``max - min`` does not overflow even for float32 data spanning
    ``-3e38`` to ``3e38``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.scaling import min_max_scale
    >>> min_max_scale(np.array([[0.0, 7.0], [5.0, 7.0], [10.0, 7.0]]))
    array([[0. , 0. ],
           [0.5, 0. ],
           [1. , 0. ]])
    >>> min_max_scale(np.array([[0.0], [10.0]]), feature_range=(-1, 1))
    array([[-1.],
           [ 1.]])
    """
    x = check_2d(x, what="Min-max scaling")
    low, high = _check_feature_range(feature_range, x.dtype)
    scaled = np.ldexp(x, -_peak_exponent(x))  # x / 2**e, exactly; |scaled| < 1
    x_min = scaled.min(axis=0)
    data_range = scaled.max(axis=0) - x_min
    constant = data_range == 0
    # (x - min) / range lies in [0, 1]; forming (high - low) / range first
    # would overflow for a subnormal range.
    unit = (scaled - x_min) / np.where(constant, 1, data_range)
    # a convex combination of low and high: unlike low + u * (high - low), it
    # cannot overflow when low and high are near the ends of the dtype's range
    return low * (1 - unit) + high * unit
