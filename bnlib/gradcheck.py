"""Numerical gradients by central differences, and the relative error used to compare them."""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array

__all__ = ["numerical_gradient", "relative_error"]


def numerical_gradient(f, x, dout, h=1e-5):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        Maps an array shaped like ``x`` to an array shaped like ``dout``.
    x : ndarray of any shape
        Point at which to differentiate. It is not modified: each probe works
        on a private copy.
    dout : ndarray of the shape of ``f(x)``
        Upstream gradient, the weights of the scalar ``sum(f(x) * dout)``.
    h : float, default 1e-5
        Step of the central difference.

    Returns
    -------
    dx : ndarray of the shape of ``x``, float64

    Notes
    -----
    For every entry ``i``, ``dx[i] = (L(x + h e_i) - L(x - h e_i)) / (2 h)`` with
    ``L(z) = sum(f(z) * dout)``. The truncation error is O(h^2), so in float64
    with ``h=1e-5`` a smooth function agrees with its analytic gradient to a
    relative error of about 1e-9 or better. Use float64: in float32 the
    rounding error of ``L`` swamps the difference.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.gradcheck import numerical_gradient
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> np.round(numerical_gradient(lambda z: z ** 2, x, np.ones(3)), 6)
    array([2., 4., 6.])
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not h > 0:
        raise ValueError(f"h must be a positive step, got {h!r}")
    probe = np.array(as_float_array(x), dtype=np.float64, copy=True)
    dout = np.asarray(dout, dtype=np.float64)

    def loss(z):
        out = np.asarray(f(z.copy()), dtype=np.float64)
        if out.shape != dout.shape:
            raise ValueError(
                f"dout must have the shape of f(x), {out.shape}, got shape {dout.shape}"
            )
        return np.sum(out * dout)

    grad = np.zeros_like(probe)
    flat = probe.reshape(-1)  # a view: writing flat[i] moves probe
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = loss(probe)
        flat[i] = old - h
        minus = loss(probe)
        flat[i] = old
        gflat[i] = (plus - minus) / (2.0 * h)
    return grad


def relative_error(a, b):
    """Largest elementwise relative error, ``max|a-b| / max(1e-8, |a|+|b|)``.

    Parameters
    ----------
    a, b : array_like of the same shape

    Returns
    -------
    float

    Notes
    -----
    The denominator is taken elementwise, as in CS231n's gradient checks: each
    entry's difference is measured against that entry's size, with a floor of
    1e-8 so that two zeros compare as equal.

    Examples
    --------
    >>> from bnlib.gradcheck import relative_error
    >>> relative_error([1.0, 0.0], [1.0, 0.0])
    0.0
    >>> round(relative_error([1.0], [1.1]), 4)
    0.0476
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
