"""Batch Normalization: forward, two backward passes, inference, running statistics, folding.

Shapes follow PyTorch: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; statistics are
per channel (axis 1) over every other axis, so each channel is normalised over
``m = N * prod(spatial)`` values. Conventions are PyTorch's: ``eps=1e-5``, the
biased batch variance for normalising, the unbiased one for the running
estimate, ``momentum`` as the weight of the *new* batch, ``running_var``
starting at ones.

The standardisation itself, ``x_hat = (x - mean) / sqrt(var + eps)`` and its
backward pass, is shared with the other normalization layers
(``bnlib/_standardize.py``): Batch Normalization is that operation over every
axis but the channels, followed by a per-channel scale and shift.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

from ._checks import (
    all_finite,
    as_float_array,
    check_batch,
    check_eps,
    check_finite,
    check_param,
    check_params,
    check_training_batch,
    values_per_channel,
)
from ._standardize import (centred_moments, fit_dtype, inverse_std, standardize,
                           standardize_backward)

__all__ = [
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_graph",
    "batchnorm_inference",
    "update_running_stats",
    "population_statistics",
    "fold_batchnorm",
]


class BatchNormCache(NamedTuple):
    """What the forward pass keeps for the backward pass.

    Attributes
    ----------
    x : ndarray of shape (N, C, *spatial)
        The input (``x`` itself, not a copy, unless it had to be converted to float).
    x_hat : ndarray of the shape of ``x``
        The normalised input ``(x - mean) / sqrt(var + eps)``.
    mean : ndarray of shape (C,)
        Batch mean per channel.
    var : ndarray of shape (C,)
        Biased batch variance per channel (divided by ``m``).
    inv_std : ndarray of shape (C,)
        ``1 / sqrt(var + eps)``.
    gamma : ndarray of shape (C,)
        The scale used in the forward pass.
    eps : float
        The constant added to the variance.
    """

    x: np.ndarray
    x_hat: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    eps: float


@functools.lru_cache(maxsize=16)
def _batch_axes(ndim):
    """Every axis but the channels (axis 1): the axes BN's statistics are taken over."""
    return (0,) + tuple(range(2, ndim))


def _per_channel(v, ndim):
    """Reshape a ``(C,)`` vector to broadcast against a ``(N, C, *spatial)`` array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _as_batch(x, name="x"):
    """``x`` as a float array of at least 2 dimensions.

    Not scanned for NaN or infinity: the statistics scan ``x`` anyway, and a non-finite
    value makes them non-finite (see ``centred_moments`` in ``_standardize.py``).
    """
    arr = as_float_array(x, name)
    if arr.ndim < 2:
        check_batch(arr, name)  # raises the shared message for fewer than 2 dimensions
    return arr


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Batch-normalise ``x`` with batch statistics (training mode).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
        A mini-batch. Statistics are per channel (axis 1) over all other axes.
    gamma : ndarray of shape (C,)
        Scale, one entry per channel.
    beta : ndarray of shape (C,)
        Shift, one entry per channel.
    eps : float, default 1e-5
        Added to the variance for numerical safety (PyTorch's default).

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : BatchNormCache
        Everything :func:`batchnorm_backward` needs; ``cache.mean`` and
        ``cache.var`` are the batch mean and the biased batch variance.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 dimensions or a non-finite value, if a channel
        has fewer than 2 values ("Expected more than 1 value per channel when
        training"), if ``gamma``/``beta`` are not of shape ``(C,)``, if
        ``eps`` is negative, if ``eps == 0`` and a channel is constant
        (variance 0: the normalisation would divide by zero), or if the
        variance does not fit in the dtype of ``x``.

    Notes
    -----
    Algorithm 1 of Ioffe & Szegedy (2015), with ``m`` values per channel:

    .. math::

        \\mu = \\frac{1}{m}\\sum_i x_i, \\quad
        \\sigma^2 = \\frac{1}{m}\\sum_i (x_i - \\mu)^2, \\quad
        \\hat x_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad
        y_i = \\gamma \\hat x_i + \\beta.

    The first three are the standardisation over every axis but the channels
    (``standardize`` in ``bnlib/_standardize.py``). The variance is biased
    (divided by ``m``) and computed from centred values (two passes), so a
    large common offset does not cancel it away. float32 input stays float32,
    with the sums accumulated in float64.

    This function checks its arguments; the formulas are the body of
    ``_batchnorm_forward`` right below it, which ``bnlib.nn`` calls after
    torch's own checks.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import batchnorm_forward
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> y, cache = batchnorm_forward(x, np.ones(2), np.zeros(2), eps=0.0)
    >>> y
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> cache.mean, cache.var
    (array([ 2., 20.]), array([  1., 100.]))
    """
    x = _as_batch(x)
    eps = eps if type(eps) is float and 0.0 <= eps < math.inf else check_eps(eps)  # a float in range as it is
    check_training_batch(x.shape)
    c = x.shape[1]
    gamma, beta = check_params(c, x.dtype, gamma=gamma, beta=beta)
    return _batchnorm_forward(x, gamma, beta, eps)


def _batchnorm_forward(x, gamma, beta, eps):
    """The body of :func:`batchnorm_forward`, on checked arguments (``bnlib.nn`` checks its own)."""
    # mu, sigma^2 and x_hat, per channel: over every axis but axis 1
    x_hat, mean, var, inv_std = standardize(x, _batch_axes(x.ndim), eps, "x", "the batch variance")
    # y = gamma * x_hat + beta (the addition in place), gamma and beta shaped like the statistics
    y = x_hat * gamma.reshape(mean.shape)
    y += beta.reshape(mean.shape)
    return y, BatchNormCache(x, x_hat, mean.reshape(-1), var.reshape(-1), inv_std.reshape(-1), gamma, eps)


def _check_dy(dy, cache):
    """``dy`` in the cache's dtype, after checking its shape and that the cast keeps it finite."""
    if not isinstance(cache, BatchNormCache):
        raise TypeError(
            f"cache must be the BatchNormCache returned by batchnorm_forward, "
            f"got {type(cache).__name__}"
        )
    dy = as_float_array(dy, "dy")
    if dy.shape != cache.x.shape:
        raise ValueError(
            f"dy must have the same shape as the cached input {cache.x.shape}, "
            f"got shape {dy.shape}"
        )
    return dy if dy.dtype == cache.x_hat.dtype else _cast(dy, cache.x_hat.dtype)


def _cast(dy, dtype):
    """``dy`` in ``dtype``: a finite value too large for it is an error, not an infinity."""
    with np.errstate(over="ignore"):
        cast = dy.astype(dtype)
    if not np.isfinite(cast).all():
        check_finite(dy, "dy")
        raise ValueError(
            f"dy has finite values as large as {float(np.abs(dy).max()):.3g}, beyond the range "
            f"of {np.dtype(dtype)}, the dtype of the forward pass; rescale dy or run the forward "
            f"pass in float64"
        )
    return cast


def batchnorm_backward(dy, cache):
    """Gradients of Batch Normalization, in the compact closed form.

    Parameters
    ----------
    dy : ndarray of the shape of the forward input
        Upstream gradient ``dL/dy``.
    cache : BatchNormCache
        From :func:`batchnorm_forward`.

    Returns
    -------
    dx : ndarray of the shape of ``dy``
    dgamma : ndarray of shape (C,)
    dbeta : ndarray of shape (C,)

    Notes
    -----
    With ``m`` values per channel and sums over them,

    .. math::

        \\frac{\\partial L}{\\partial \\beta} = \\sum_i dy_i, \\qquad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum_i dy_i \\hat x_i,

        \\frac{\\partial L}{\\partial x_i} = \\frac{\\gamma}{\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(dy_i - \\frac{1}{m}\\sum_j dy_j - \\hat x_i \\frac{1}{m}\\sum_j dy_j \\hat x_j\\Big).

    The last line is the backward pass of the standardisation
    (``standardize_backward`` in ``bnlib/_standardize.py``) with the factor
    ``gamma``, constant over the channel's values, moved into its scale; the
    two sums it needs are ``dbeta`` and ``dgamma``. It follows that ``dx``
    sums to zero per channel and, when ``eps = 0``, is orthogonal to ``x_hat``
    per channel. :func:`batchnorm_backward_graph` computes the same numbers
    node by node. Sums are accumulated in float64. The formula is the body of
    ``_batchnorm_backward``, right below this function, which checks ``dy``.

    Raises
    ------
    ValueError
        If ``dy`` does not have the shape of the forward input, has a
        non-finite value, or has values beyond the range of the forward
        pass's dtype, or if ``dx`` itself is beyond that range (a float32
        intermediate that overflows is redone in float64 first).
    TypeError
        If ``cache`` is not a :class:`BatchNormCache`, or ``dy`` is not real.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import batchnorm_forward, batchnorm_backward
    >>> x = np.array([[1.0], [2.0], [4.0]])
    >>> y, cache = batchnorm_forward(x, np.ones(1), np.zeros(1))
    >>> dx, dgamma, dbeta = batchnorm_backward(np.ones_like(x), cache)
    >>> bool(np.abs(dx).max() < 1e-12), dbeta
    (True, array([3.]))
    """
    dy = _check_dy(dy, cache)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are checked below
        dx, dgamma, dbeta = _batchnorm_backward(dy, cache)
    if all_finite(dx) and all_finite(dgamma + dbeta):  # the usual case, in two checks
        return dx, dgamma, dbeta
    check_finite(dy, "dy")  # a NaN or inf in dy makes the gradients non-finite
    # else a float32 intermediate overflowed: the same formula in float64, or a clear error
    return fit_dtype((dx, dgamma, dbeta), dy.dtype, lambda: _batchnorm_backward(
        dy.astype(np.float64), _as_float64(cache)), "dx (the gradient for this dy)")


def _as_float64(cache):
    return BatchNormCache(*(f.astype(np.float64) if isinstance(f, np.ndarray) else f for f in cache))


def _batchnorm_backward(dy, cache):
    """The body of :func:`batchnorm_backward`, for a checked ``dy`` (non-finite sums unchecked)."""
    scale = _per_channel(cache.gamma * cache.inv_std, dy.ndim)  # gamma / sqrt(var + eps)
    # dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat));  dbeta, dgamma: the sums
    dx, dbeta, dgamma = standardize_backward(dy, cache.x_hat, scale, _batch_axes(dy.ndim))
    return dx, dgamma.reshape(-1).astype(dy.dtype), dbeta.reshape(-1).astype(dy.dtype)


@np.errstate(over="ignore", invalid="ignore")  # an overflow is checked by fit_dtype at the end
def batchnorm_backward_graph(dy, cache):
    """Gradients of Batch Normalization, node by node through the computational graph.

    Parameters
    ----------
    dy : ndarray of the shape of the forward input
        Upstream gradient ``dL/dy``.
    cache : BatchNormCache
        From :func:`batchnorm_forward`.

    Returns
    -------
    dx : ndarray of the shape of ``dy``
    dgamma : ndarray of shape (C,)
    dbeta : ndarray of shape (C,)

    Same result as :func:`batchnorm_backward`; slower, written for reading.
    The forward graph, per channel, is::

        mu = mean(x)            xc = x - mu          var = mean(xc**2)
        std = sqrt(var + eps)   inv = 1 / std        x_hat = xc * inv
        y = gamma * x_hat + beta

    and each line of the body below is the local derivative of one node,
    visited in reverse order.

    Notes
    -----
    These are the paper's equations for ``dL/dx_hat``, ``dL/dvar``,
    ``dL/dmu`` and ``dL/dx`` (Ioffe & Szegedy, 2015, Section 3), with the
    ``dL/dmu`` term through the variance kept: it is zero in exact arithmetic
    because ``sum(xc) = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import (batchnorm_forward, batchnorm_backward,
    ...                              batchnorm_backward_graph)
    >>> rng = np.random.default_rng(0)
    >>> x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    >>> _, cache = batchnorm_forward(x, np.ones(3), np.zeros(3))
    >>> a, b = batchnorm_backward(dy, cache), batchnorm_backward_graph(dy, cache)
    >>> all(np.allclose(u, v) for u, v in zip(a, b))
    True
    """
    dy = _check_dy(dy, cache)
    check_finite(dy, "dy")
    x = cache.x
    ndim = x.ndim
    m = values_per_channel(x.shape)
    axes = _batch_axes(ndim)

    def per_channel(v):
        return _per_channel(v, ndim)

    # Forward graph, recomputed node by node.
    mu = x.mean(axis=axes)
    xc = x - per_channel(mu)
    var = (xc**2).mean(axis=axes)
    std = np.sqrt(var + cache.eps)
    inv = 1.0 / std
    x_hat = xc * per_channel(inv)

    # y = gamma * x_hat + beta
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx_hat = dy * per_channel(cache.gamma)
    # x_hat = xc * inv: two inputs
    dinv = (dx_hat * xc).sum(axis=axes)
    dxc = dx_hat * per_channel(inv)
    # inv = 1 / std
    dstd = -dinv / std**2
    # std = sqrt(var + eps)
    dvar = 0.5 * dstd / std
    # var = mean(xc ** 2)
    dxc = dxc + per_channel(dvar) * 2.0 * xc / m
    # xc = x - mu: two inputs
    dmu = -dxc.sum(axis=axes)
    dx = dxc.copy()
    # mu = mean(x)
    dx += per_channel(dmu) / m
    grads = tuple(g.astype(x.dtype, copy=False) for g in (dx, dgamma, dbeta))
    return fit_dtype(grads, x.dtype, lambda: batchnorm_backward_graph(
        dy.astype(np.float64), _as_float64(cache)), "the gradients for this dy")


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Batch-normalise ``x`` with fixed statistics (inference / eval mode).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
        Any batch size, including 1.
    gamma, beta : ndarray of shape (C,)
    running_mean, running_var : ndarray of shape (C,)
        Estimates of the population mean and variance (see
        :func:`update_running_stats` and :func:`population_statistics`).
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``

    Raises
    ------
    ValueError
        If a parameter is not of shape ``(C,)``, if ``running_var`` is negative,
        or if it is 0 in a channel while ``eps == 0`` (a division by zero).

    Notes
    -----
    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, an
    affine map per channel: ``y = a x + b`` with ``a = gamma / sqrt(var + eps)``
    and ``b = beta - a * mean`` (Algorithm 2 of Ioffe & Szegedy, 2015). It is
    evaluated centred, ``(x - running_mean) * a + beta``, which keeps the
    digits a large mean would cancel in ``a x + b``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import batchnorm_inference
    >>> batchnorm_inference(np.array([[3.0]]), np.ones(1), np.zeros(1),
    ...                     np.array([1.0]), np.array([4.0]), eps=0.0)
    array([[1.]])
    """
    x = check_batch(x)
    eps = check_eps(eps)
    c = x.shape[1]
    gamma = check_param(gamma, "gamma", c, x.dtype)
    beta = check_param(beta, "beta", c, x.dtype)
    running_mean = check_param(running_mean, "running_mean", c, x.dtype)
    running_var = check_param(running_var, "running_var", c, x.dtype)
    _check_non_negative(running_var, "running_var")
    # y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
    scale = gamma * inverse_std(running_var, eps, "running_var")
    ndim = x.ndim
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is checked by fit_dtype
        y = (x - _per_channel(running_mean, ndim)) * _per_channel(scale, ndim) + _per_channel(beta, ndim)
    return fit_dtype((y,), x.dtype, lambda: (batchnorm_inference(
        *(a.astype(np.float64) for a in (x, gamma, beta, running_mean, running_var)), eps),),
        "y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta")[0]


def update_running_stats(
    running_mean, running_var, batch_mean, batch_var, n, momentum=0.1, *, num_batches_tracked=None
):
    """One update of the running mean and variance, with PyTorch's conventions.

    Parameters
    ----------
    running_mean, running_var : ndarray of shape (C,)
        Current estimates (PyTorch starts them at zeros and ones). Not modified.
    batch_mean : ndarray of shape (C,)
        Mean of the current batch.
    batch_var : ndarray of shape (C,)
        *Biased* variance of the current batch, over ``n`` values per channel
        (``cache.var`` of :func:`batchnorm_forward`).
    n : int
        Values per channel in the batch (``N * prod(spatial)``), at least 2.
    momentum : float in [0, 1] or None, default 0.1
        Weight of the *new* batch. ``None`` gives a cumulative (equal-weight)
        average, and then ``num_batches_tracked`` must say which step this is.
    num_batches_tracked : int, keyword-only
        The step count *after* this batch (1 for the first batch), as torch's
        counter; required when ``momentum is None``.

    Returns
    -------
    mean, var : ndarray of shape (C,)
        New estimates; ``var`` uses the unbiased batch variance.

    Notes
    -----
    ``mean = (1 - momentum) * running_mean + momentum * batch_mean`` and
    ``var = (1 - momentum) * running_var + momentum * batch_var * n / (n - 1)``.
    With ``momentum=None`` the factor is ``1 / num_batches_tracked``. Keras
    and CS231n call ``1 - momentum`` the momentum; see the book's chapter on
    inference for the table of conventions.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import update_running_stats
    >>> update_running_stats(np.zeros(1), np.ones(1), np.array([2.0]),
    ...                      np.array([1.0]), n=2, momentum=0.5)
    (array([1.]), array([1.5]))
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer count of values per channel, got {n!r}")
    if n < 2:
        raise ValueError(
            f"n must be at least 2 to form the unbiased variance n/(n-1), got n={n}"
        )
    if momentum is None:
        if num_batches_tracked is None:
            raise ValueError(
                "momentum=None means a cumulative average: pass the step count as "
                "num_batches_tracked=k (1 for the first batch)"
            )
        steps = num_batches_tracked
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"num_batches_tracked must be a positive integer, got {steps!r}")
        factor = 1.0 / float(num_batches_tracked)
    else:
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")
        factor = float(momentum)
    running_mean = as_float_array(running_mean, "running_mean")
    if running_mean.ndim != 1:
        raise ValueError(f"running_mean must have shape (C,), got shape {running_mean.shape}")
    c = running_mean.shape[0]
    dtype = running_mean.dtype
    running_var = check_param(running_var, "running_var", c, dtype)
    batch_mean = check_param(batch_mean, "batch_mean", c, dtype)
    batch_var = check_param(batch_var, "batch_var", c, dtype)
    check_finite(running_mean, "running_mean")
    _check_non_negative(running_var, "running_var")
    _check_non_negative(batch_var, "batch_var")
    mean, var = _update_running_stats(running_mean, running_var, batch_mean, batch_var, int(n), factor)
    return mean.astype(dtype, copy=False), var.astype(dtype, copy=False)


def _update_running_stats(running_mean, running_var, batch_mean, batch_var, n, factor):
    """The body of :func:`update_running_stats`, on checked arguments, ``factor`` the momentum."""
    mean = (1.0 - factor) * running_mean + factor * batch_mean
    var = (1.0 - factor) * running_var + factor * (n / (n - 1.0)) * batch_var  # the unbiased batch variance
    return mean, var


def population_statistics(batches):
    """Population mean and variance from mini-batches: Algorithm 2 of Ioffe & Szegedy (2015).

    Parameters
    ----------
    batches : iterable of ndarray, each of shape (m_N, C) or (m_N, C, *spatial)
        Equally sized mini-batches of a layer's input, with ``m`` values per
        channel each.

    Returns
    -------
    mean : ndarray of shape (C,)
        ``E[x] = mean over batches of the batch means``.
    var : ndarray of shape (C,)
        ``Var[x] = m / (m - 1) * mean over batches of the biased batch variances``.

    Notes
    -----
    The ``m/(m-1)`` factor makes the average of biased batch variances an
    unbiased estimate of the population variance; at ``m = 2`` it doubles it.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import population_statistics
    >>> population_statistics([np.array([[0.0], [2.0]]), np.array([[2.0], [4.0]])])
    (array([2.]), array([2.]))
    """
    total_mean = total_var = None
    shape = None
    count = 0
    for batch in batches:
        b = _as_batch(batch, "batch")
        check_training_batch(b.shape)
        if shape is None:
            shape = b.shape
        elif b.shape != shape:
            raise ValueError(
                f"All batches must have the same shape (Algorithm 2 assumes equal batch "
                f"size m); the first had shape {shape}, batch {count} has {b.shape}"
            )
        _, mean, var = centred_moments(b, _batch_axes(b.ndim), "batch")
        mean, var = mean.reshape(-1), var.reshape(-1)
        total_mean = mean if total_mean is None else total_mean + mean
        total_var = var if total_var is None else total_var + var
        count += 1
    if count == 0:
        raise ValueError("population_statistics needs at least one batch, got none")
    m = values_per_channel(shape)
    return total_mean / count, total_var / count * (m / (m - 1.0))


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    """Fold an inference-mode BN into the Linear or Conv layer before it.

    Parameters
    ----------
    weight : ndarray of shape (out, in) or (out, in, *kernel)
        The preceding layer's weight (torch's layout).
    bias : ndarray of shape (out,) or None
        Its bias; ``None`` is treated as zeros.
    gamma, beta, running_mean, running_var : ndarray of shape (out,)
        The BN layer's parameters and statistics.
    eps : float, default 1e-5

    Returns
    -------
    weight : ndarray of the shape of ``weight``
    bias : ndarray of shape (out,)

    Raises
    ------
    ValueError
        If ``weight`` has fewer than 2 dimensions or a non-finite value, if a
        per-channel argument is not of shape ``(out,)``, if ``running_var`` is
        negative, or if it is 0 in a channel while ``eps == 0``.

    Notes
    -----
    With ``a = gamma / sqrt(running_var + eps)``, ``BN(W x + b) = (a W) x +
    (a (b - running_mean) + beta)``: each output channel's weights are scaled
    by ``a`` and the bias absorbs the shift. Same result as
    ``torch.nn.utils.fusion.fuse_linear_bn_weights`` / ``fuse_conv_bn_weights``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.batchnorm import fold_batchnorm
    >>> w, b = fold_batchnorm(np.array([[2.0]]), None, np.array([1.0]), np.array([0.5]),
    ...                       np.array([1.0]), np.array([4.0]), eps=0.0)
    >>> w, b
    (array([[1.]]), array([0.]))
    """
    weight = as_float_array(weight, "weight")
    if weight.ndim < 2:
        raise ValueError(
            f"weight must have shape (out, in) or (out, in, *kernel), got shape {weight.shape}"
        )
    check_finite(weight, "weight")
    eps = check_eps(eps)
    out = weight.shape[0]
    dtype = weight.dtype
    bias = np.zeros(out, dtype=dtype) if bias is None else check_param(bias, "bias", out, dtype)
    gamma = check_param(gamma, "gamma", out, dtype)
    beta = check_param(beta, "beta", out, dtype)
    running_mean = check_param(running_mean, "running_mean", out, dtype)
    running_var = check_param(running_var, "running_var", out, dtype)
    _check_non_negative(running_var, "running_var")
    scale = gamma * inverse_std(running_var, eps, "running_var")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is checked by fit_dtype
        new_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        new_bias = (bias - running_mean) * scale + beta
    return fit_dtype((new_weight.astype(dtype, copy=False), new_bias.astype(dtype, copy=False)), dtype,
                     lambda: fold_batchnorm(*(a.astype(np.float64) for a in (
                         weight, bias, gamma, beta, running_mean, running_var)), eps), "the folded weight * gamma / sqrt(running_var + eps), or its bias,")


def _check_non_negative(var, name):
    """A variance cannot be negative: refuse one rather than return NaN."""
    if (var < 0).any():
        raise ValueError(f"{name} must be non-negative (it is a variance), got minimum {float(var.min())!r}")
