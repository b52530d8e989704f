"""Least-squares linear regression and plain gradient descent on it.

The book uses these to show why feature scaling matters: the loss of a linear
model is a quadratic bowl whose shape is set by the features' scales, and
gradient descent's speed is set by that shape.

Conventions
-----------
``x`` has shape ``(n_samples, n_features)``, ``y`` shape ``(n_samples,)`` and
the weights ``w`` shape ``(n_features,)``. There is no intercept: centre ``x``
and ``y`` first (then the best intercept is ``mean(y)`` and it decouples from
``w``), or append a column of ones. The loss is half the mean squared error,

    L(w) = ||x w - y||^2 / (2 n),

so that its gradient is ``x.T (x w - y) / n`` and its Hessian ``x.T x / n``
without stray factors of 2. Every function is pure and works in float64.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from bnlib._checks import check_2d, check_finite

__all__ = [
    "least_squares_loss",
    "least_squares_gradient",
    "least_squares_hessian",
    "GradientDescentPath",
    "gradient_descent",
    "steps_to_tolerance",
]

# A run whose loss grows past this multiple of its starting loss has diverged.
_DIVERGENCE_FACTOR = 1e12


def _check_xy(x, y):
    """Return ``x`` (2-D) and ``y`` (1-D, same length) as float64 arrays."""
    x = check_2d(x, what="Least squares").astype(np.float64, copy=False)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"Expected y of shape (n_samples,) = ({x.shape[0]},) to match x of shape "
            f"{x.shape}, got shape {y.shape}. A column vector is y.ravel()."
        )
    check_finite(y, "y")
    return x, y


def _check_w(w, n_features, name="w"):
    """Return ``w`` as float64 with last axis ``n_features`` (any leading axes)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0 or w.shape[-1] != n_features:
        raise ValueError(
            f"Expected {name} of shape (..., n_features) = (..., {n_features}), one "
            f"weight per column of x, got shape {w.shape}"
        )
    return w


def least_squares_loss(x, y, w):
    """Half the mean squared error of the linear model ``x @ w``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Features, one sample per row.
    y : ndarray of shape (n_samples,)
        Targets.
    w : ndarray of shape (n_features,) or (..., n_features)
        Weights; leading axes hold many weight vectors at once (a grid for
        contour plots).

    Returns
    -------
    loss : float or ndarray of shape w.shape[:-1]
        ``||x w - y||^2 / (2 n)`` for every weight vector.

    Notes
    -----
    A batch of weights is evaluated through the expanded quadratic
    ``L(w) = w^T H w / 2 - w^T b + y^T y / (2 n)`` with ``H = x^T x / n`` and
    ``b = x^T y / n``, so a 200 x 200 grid costs no ``(40000, n)`` residual
    array. A single ``w`` uses the residual directly.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.linreg import least_squares_loss
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> y = np.array([1.0, 1.0])
    >>> float(least_squares_loss(x, y, np.zeros(2)))
    0.5
    >>> least_squares_loss(x, y, np.array([[1.0, 0.5], [0.0, 0.0]]))
    array([0. , 0.5])
    """
    x, y = _check_xy(x, y)
    w = _check_w(w, x.shape[1])
    n = x.shape[0]
    if w.ndim == 1:
        residual = x @ w - y
        return float(residual @ residual) / (2 * n)
    hessian = x.T @ x / n
    b = x.T @ y / n
    quadratic = 0.5 * np.einsum("...i,ij,...j->...", w, hessian, w)
    loss = quadratic - w @ b + float(y @ y) / (2 * n)
    # The expansion can dip a rounding error below zero at an exact fit.
    return np.maximum(loss, 0.0)


def least_squares_gradient(x, y, w):
    """Gradient of :func:`least_squares_loss` with respect to ``w``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    w : ndarray of shape (n_features,)

    Returns
    -------
    grad : ndarray of shape (n_features,)
        ``x^T (x w - y) / n``.

    Notes
    -----
    Entry ``j`` is ``mean(x[:, j] * residual)``: it grows with the scale of
    feature ``j``. Multiply a feature by ``s`` and the gradient of its weight
    grows ``s``-fold (at the same predictions), the Hessian entry ``s**2``-fold.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.linreg import least_squares_gradient
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> least_squares_gradient(x, np.array([1.0, 1.0]), np.zeros(2))
    array([-0.5, -1. ])
    """
    x, y = _check_xy(x, y)
    w = _check_w(w, x.shape[1])
    if w.ndim != 1:
        raise ValueError(f"Expected w of shape (n_features,) = ({x.shape[1]},), got shape {w.shape}")
    return x.T @ (x @ w - y) / x.shape[0]


def least_squares_hessian(x):
    """Hessian of :func:`least_squares_loss`: ``x^T x / n`` (it does not depend on ``w`` or ``y``).

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)

    Returns
    -------
    hessian : ndarray of shape (n_features, n_features)
        Symmetric and positive semi-definite. For centred ``x`` it is the
        (biased) covariance matrix of the features; for standardised ``x`` their
        correlation matrix.

    Notes
    -----
    Its eigenvalues ``lambda_min <= ... <= lambda_max`` govern gradient
    descent: a constant learning rate ``lr`` converges iff
    ``0 < lr < 2 / lambda_max``, and the best one, ``2 / (lambda_min +
    lambda_max)``, shrinks the error by ``(kappa - 1) / (kappa + 1)`` per step,
    ``kappa = lambda_max / lambda_min`` being the condition number.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.linreg import least_squares_hessian
    >>> least_squares_hessian(np.array([[1.0, 0.0], [0.0, 2.0]]))
    array([[0.5, 0. ],
           [0. , 2. ]])
    """
    x = check_2d(x, what="The least-squares Hessian").astype(np.float64, copy=False)
    return x.T @ x / x.shape[0]


class GradientDescentPath(NamedTuple):
    """What :func:`gradient_descent` returns.

    Attributes
    ----------
    weights : ndarray of shape (n_taken + 1, n_features)
        ``weights[k]`` is the iterate after ``k`` steps; ``weights[0] = w0``.
    losses : ndarray of shape (n_taken + 1,)
        ``losses[k] = least_squares_loss(x, y, weights[k])``.
    diverged : bool
        True when the run stopped early because the loss exceeded
        ``1e12`` times its starting value (or ``1e12`` when that is 0).
    """

    weights: np.ndarray
    losses: np.ndarray
    diverged: bool


def gradient_descent(x, y, lr, n_steps, w0=None):
    """Full-batch gradient descent with a constant learning rate on the least-squares loss.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Features (centre them, or add a column of ones for an intercept).
    y : ndarray of shape (n_samples,)
        Targets.
    lr : float
        Learning rate, a positive number.
    n_steps : int
        Number of steps to take (fewer if the run diverges).
    w0 : ndarray of shape (n_features,), optional
        Starting weights; zeros by default. Not modified.

    Returns
    -------
    path : GradientDescentPath
        ``(weights, losses, diverged)``, the whole trajectory including ``w0``.

    Notes
    -----
    ``w_{k+1} = w_k - lr * x^T (x w_k - y) / n``. The gradient is computed as
    ``H w_k - b`` with ``H = x^T x / n`` and ``b = x^T y / n`` formed once,
    which is the same number up to rounding and costs ``O(d^2)`` per step
    instead of ``O(n d)``. A run stops early, flagged ``diverged``, once its
    loss passes ``1e12`` times the starting loss (``lr > 2 / lambda_max``).

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.linreg import gradient_descent
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> path = gradient_descent(x, np.array([2.0, 4.0]), lr=1.0, n_steps=2)
    >>> path.weights
    array([[0. , 0. ],
           [1. , 2. ],
           [1.5, 3. ]])
    >>> path.losses
    array([5.    , 1.25  , 0.3125])
    >>> gradient_descent(x, np.array([2.0, 4.0]), lr=10.0, n_steps=100).diverged
    True
    """
    x, y = _check_xy(x, y)
    n, d = x.shape
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    w = np.zeros(d) if w0 is None else _check_w(w0, d, "w0").copy()
    if w.ndim != 1:
        raise ValueError(f"Expected w0 of shape (n_features,) = ({d},), got shape {w.shape}")
    hessian = x.T @ x / n
    b = x.T @ y / n
    c = float(y @ y) / (2 * n)
    lr = float(lr)
    weights = [w]
    losses = [least_squares_loss(x, y, w)]
    limit = _DIVERGENCE_FACTOR * (losses[0] if losses[0] > 0 else 1.0)
    diverged = False
    for _ in range(int(n_steps)):
        hw = hessian @ w
        w = w - lr * (hw - b)
        hw = hessian @ w
        loss = max(0.5 * float(w @ hw) - float(w @ b) + c, 0.0)
        weights.append(w)
        losses.append(loss)
        if not loss <= limit:
            diverged = True
            break
    return GradientDescentPath(np.array(weights), np.array(losses), diverged)


def steps_to_tolerance(losses, min_loss, tol):
    """First step at which the loss is within ``tol`` of the optimum, relatively.

    Parameters
    ----------
    losses : ndarray of shape (n,)
        Loss after 0, 1, ..., n - 1 steps (``GradientDescentPath.losses``).
    min_loss : float
        The optimal loss (from a closed-form solution such as
        ``np.linalg.lstsq``).
    tol : float
        Relative tolerance in (0, 1).

    Returns
    -------
    k : int or None
        The smallest ``k`` with ``losses[k] - min_loss <= tol * (losses[0] -
        min_loss)``, or None when no step gets there.

    Notes
    -----
    The relative loss gap does not depend on how the features are scaled:
    rescaling a feature and its weight inversely leaves every prediction,
    hence every loss, unchanged. It is the fair yardstick for comparing runs
    on raw and on standardised features.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.linreg import steps_to_tolerance
    >>> steps_to_tolerance(np.array([1.0, 0.5, 0.25, 0.125]), 0.0, 0.3)
    2
    >>> steps_to_tolerance(np.array([1.0, 0.5]), 0.0, 0.3) is None
    True
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"Expected losses of shape (n,) with n >= 1, got shape {losses.shape}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    gap = losses - float(min_loss)
    hits = np.flatnonzero(gap <= tol * gap[0])
    return int(hits[0]) if hits.size else None
