"""Numerical gradients by central differences, and the relative error used to compare them."""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_finite, check_positive

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
        Step of the central difference, a positive finite number.

    Returns
    -------
    dx : ndarray of the shape of ``x``, float64

    Raises
    ------
    TypeError
        ``f`` is not callable, or returns something other than one array of
        real numbers (a tuple such as ``(y, cache)``: pass
        ``lambda z: forward(z, ...)[0]``; ``None``: a missing ``return``).
    ValueError
        ``f(x)`` and ``dout`` differ in shape, or ``x``, ``dout`` or a value of
        ``f`` near ``x`` is NaN or infinite.

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
    h = check_positive(h, "h")
    # C order, so that probe.reshape(-1) below is a view whatever x's layout
    probe = np.array(as_float_array(x), dtype=np.float64, order="C", copy=True)
    check_finite(probe, "x")
    dout = as_float_array(dout, "dout").astype(np.float64, copy=False)
    check_finite(dout, "dout")

    def loss(z):
        out = _output_of(f, z.copy())
        if out.shape != dout.shape:
            raise ValueError(
                f"dout must have the shape of f(x), {out.shape}, got shape {dout.shape}"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite sums are reported below
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
        with np.errstate(over="ignore", invalid="ignore"):
            gflat[i] = (plus - minus) / (2.0 * h)
    if not np.isfinite(grad).all():
        raise ValueError(
            f"f has NaN or infinite values within h={h!r} of x (or they overflow when "
            f"weighted by dout): the central differences are not finite"
        )
    return grad


def _output_of(f, z):
    """``f(z)`` as a float64 array, or an error naming ``f`` and what it returned."""
    out = f(z)
    name = getattr(f, "__name__", type(f).__name__)
    if out is None:
        raise TypeError(
            f"f ({name}) must return an array shaped like dout, got None "
            f"(a function without a return statement?)"
        )
    if isinstance(out, tuple):
        raise TypeError(
            f"f ({name}) must return one array shaped like dout, got a tuple of "
            f"{len(out)} items; for a function returning (y, cache), differentiate "
            f"lambda z: forward(z, ...)[0]"
        )
    return as_float_array(out, f"f(x) (the value of {name})").astype(np.float64, copy=False)


def relative_error(a, b):
    """Largest elementwise relative error, ``max|a-b| / max(1e-8, |a|+|b|)``.

    Parameters
    ----------
    a, b : array_like of the same shape
        Finite real numbers. One array each: a tuple of several gradients
        (``(dx, dgamma, dbeta)``) is a ``TypeError``; compare them one at a time.

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
    a = _gradient_array(a, "a")
    b = _gradient_array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    # Halving both (exact) keeps |a - b| and |a| + |b| finite near float64's
    # largest value; the ratio is unchanged, the floor halves with them.
    a, b = a / 2, b / 2
    return float(np.max(np.abs(a - b) / np.maximum(0.5e-8, np.abs(a) + np.abs(b))))


def _gradient_array(g, name):
    """One gradient as a finite float64 array; several gradients at once are an error."""
    if isinstance(g, (tuple, list)) and any(isinstance(v, np.ndarray) for v in g):
        raise TypeError(
            f"{name} must be one array, got a {type(g).__name__} of {len(g)} arrays; "
            f"compare gradients one at a time, e.g. "
            f"max(relative_error(p, q) for p, q in zip(a, b))"
        )
    g = as_float_array(g, name).astype(np.float64, copy=False)
    check_finite(g, name)
    return g
