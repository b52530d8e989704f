"""The normalization family: layer, instance and group normalization, batch renormalization.

Every method here is Batch Normalization's standardisation, ``x_hat = (x - mean) /
sqrt(var + eps)`` (``standardize`` in ``bnlib/_standardize.py``), taken over other axes of
the same ``(N, C, *spatial)`` array, followed by a learned scale and shift:

===================  ==========================================  =====================
method               axes the statistics are taken over          gamma, beta shape
===================  ==========================================  =====================
batch (BN)           N and space, per channel                    ``(C,)``
layer (LN)           C and space, per sample                     ``x.shape[1:]``
instance (IN)        space, per sample and channel               ``(C,)``
group (GN)           a group of C/G channels and space,          ``(C,)``
                     per sample and group
===================  ==========================================  =====================

Conventions follow PyTorch (``torch.nn.functional.layer_norm`` with
``normalized_shape = x.shape[1:]``, ``instance_norm`` and ``group_norm``): ``eps=1e-5``
inside the square root, the biased variance. Batch renormalization (Ioffe, 2017) keeps
BN's axes and corrects the batch statistics towards the running ones with two factors,
``r`` and ``d``, that are clipped and held constant in the backward pass.

Functions are pure (no argument is modified); bad input gets the errors of
:func:`bnlib.batchnorm_forward`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, check_eps, check_finite, check_param, check_training_batch
from ._standardize import inverse_std, standardize, standardize_backward
from .batchnorm import _as_batch, _batch_axes, _cast

__all__ = [
    "NormCache",
    "layernorm_forward",
    "layernorm_backward",
    "instancenorm_forward",
    "instancenorm_backward",
    "groupnorm_forward",
    "groupnorm_backward",
    "BatchRenormCache",
    "batchrenorm_forward",
    "batchrenorm_backward",
]


class NormCache(NamedTuple):
    """What the forward pass of LN, IN or GN keeps for its backward pass.

    Attributes
    ----------
    method : str
        ``"layer"``, ``"instance"`` or ``"group"``.
    x_shape : tuple
        Shape of the input.
    x_hat : ndarray
        The standardised input, in the *statistics layout*: ``x``'s shape for LN and IN,
        ``(N, G, C // G, *spatial)`` for GN.
    axes : tuple of int
        The axes of ``x_hat`` the statistics were taken over.
    mean, var, inv_std : ndarray
        The statistics, of ``x_hat``'s shape with 1 on ``axes``.
    gamma : ndarray
        The scale used in the forward pass, shaped to broadcast against ``x``.
    eps : float
    """

    method: str
    x_shape: tuple
    x_hat: np.ndarray
    axes: tuple
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    eps: float


def _per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(x_hat, gamma, beta):
    """``y = gamma * x_hat + beta`` (gamma and beta already broadcastable)."""
    y = x_hat * gamma
    y += beta
    return y


def _param(p, name, shape, dtype):
    """A parameter of exactly ``shape`` (LN's gamma and beta), finite, in ``dtype``."""
    arr = as_float_array(p, name)
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have the shape of one sample, x.shape[1:] = {shape}, got shape {arr.shape}"
        )
    check_finite(arr, name)
    return arr.astype(dtype, copy=False)


# --------------------------------------------------------------------------- layer normalization


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer-normalise ``x``: each sample standardised over all its values (Ba et al., 2016).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
    gamma, beta : ndarray of shape ``x.shape[1:]``
        One scale and shift per value of a sample (torch's ``elementwise_affine``).
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : NormCache

    Notes
    -----
    ``mu_n = mean(x[n])``, ``var_n = mean((x[n] - mu_n)**2)`` over the ``C * prod(spatial)``
    values of sample ``n``; ``y = gamma * (x - mu_n) / sqrt(var_n + eps) + beta``. Same as
    ``torch.nn.functional.layer_norm(x, x.shape[1:], gamma, beta, eps)``. Nothing is
    shared between samples, so training and inference compute the same function and a
    batch of one is fine.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib import layernorm_forward
    >>> y, _ = layernorm_forward(np.array([[1.0, 3.0], [10.0, 30.0]]), np.ones(2), np.zeros(2), eps=0.0)
    >>> y
    array([[-1.,  1.],
           [-1.,  1.]])
    """
    x = _as_batch(x)
    eps = check_eps(eps)
    gamma = _param(gamma, "gamma", x.shape[1:], x.dtype)
    beta = _param(beta, "beta", x.shape[1:], x.dtype)
    axes = tuple(range(1, x.ndim))  # every axis but the batch
    x_hat, mean, var, inv_std = standardize(x, axes, eps, "x", "the variance of a sample")
    y = _affine(x_hat, gamma[None], beta[None])
    return y, NormCache("layer", x.shape, x_hat, axes, mean, var, inv_std, gamma[None], eps)


def _check_dy(dy, cache, method):
    if not isinstance(cache, NormCache) or cache.method != method:
        got = (f"the cache of {cache.method}norm_forward" if isinstance(cache, NormCache)
               else type(cache).__name__)
        raise TypeError(f"cache must be the NormCache returned by {method}norm_forward, got {got}")
    dy = as_float_array(dy, "dy")
    if dy.shape != cache.x_shape:
        raise ValueError(
            f"dy must have the same shape as the cached input {cache.x_shape}, got shape {dy.shape}"
        )
    check_finite(dy, "dy")
    return dy if dy.dtype == cache.x_hat.dtype else _cast(dy, cache.x_hat.dtype)


def _dx(dy, cache):
    """``dx`` through the standardisation: ``dx_hat = gamma * dy`` in the statistics layout."""
    dx_hat = (dy * cache.gamma).reshape(cache.x_hat.shape)
    dx, _, _ = standardize_backward(dx_hat, cache.x_hat, cache.inv_std, cache.axes)
    return dx.reshape(cache.x_shape).astype(dy.dtype, copy=False)


def layernorm_backward(dy, cache):
    """Gradients of :func:`layernorm_forward`: ``(dx, dgamma, dbeta)``.

    Notes
    -----
    ``dx`` is the standardisation's backward pass over each sample's values with
    ``dx_hat = gamma * dy``; ``dgamma = sum_n dy * x_hat`` and ``dbeta = sum_n dy`` are
    sums over the batch, of the shape of one sample.
    """
    dy = _check_dy(dy, cache, "layer")
    dgamma = (dy * cache.x_hat).sum(axis=0, dtype=np.float64)
    dbeta = dy.sum(axis=0, dtype=np.float64)
    return _dx(dy, cache), dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)


# --------------------------------------------------------------------------- instance normalization


def instancenorm_forward(x, gamma, beta, eps=1e-5):
    """Instance-normalise ``x``: each sample's each channel over space (Ulyanov et al., 2016).

    Parameters
    ----------
    x : ndarray of shape (N, C, *spatial), at least one spatial axis
        With more than one spatial value (torch: "Expected more than 1 spatial element
        when training").
    gamma, beta : ndarray of shape (C,)
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : NormCache

    Notes
    -----
    Statistics per ``(n, c)`` over ``prod(spatial)`` values; then ``gamma``, ``beta`` per
    channel. Same as ``torch.nn.functional.instance_norm(x, weight=gamma, bias=beta,
    eps=eps)`` (``use_input_stats=True``, which torch's modules use unless
    ``track_running_stats=True`` and in eval mode).
    """
    x = _as_batch(x)
    if x.ndim < 3:
        raise ValueError(
            f"Instance normalization needs x of shape (N, C, *spatial) with at least one spatial "
            f"axis, got a {x.ndim}-D array of shape {x.shape}"
        )
    spatial = int(np.prod(x.shape[2:]))
    if spatial < 2:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input of shape {x.shape}"
        )
    eps = check_eps(eps)
    c = x.shape[1]
    gamma = _per_channel(check_param(gamma, "gamma", c, x.dtype), x.ndim)
    beta = _per_channel(check_param(beta, "beta", c, x.dtype), x.ndim)
    axes = tuple(range(2, x.ndim))  # space: per sample and channel
    x_hat, mean, var, inv_std = standardize(x, axes, eps, "x", "the variance of an instance")
    y = _affine(x_hat, gamma, beta)
    return y, NormCache("instance", x.shape, x_hat, axes, mean, var, inv_std, gamma, eps)


def instancenorm_backward(dy, cache):
    """Gradients of :func:`instancenorm_forward`: ``(dx, dgamma, dbeta)``, ``dgamma``/``dbeta`` of shape (C,)."""
    dy = _check_dy(dy, cache, "instance")
    axes = _batch_axes(dy.ndim)
    dgamma = (dy * cache.x_hat).sum(axis=axes, dtype=np.float64)
    dbeta = dy.sum(axis=axes, dtype=np.float64)
    return _dx(dy, cache), dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)


# --------------------------------------------------------------------------- group normalization


def _check_groups(num_groups, c):
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
    if c % num_groups:
        raise ValueError(
            f"Expected number of channels in input to be divisible by num_groups, but got input "
            f"with {c} channels and num_groups={num_groups}"
        )
    return int(num_groups)


def groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5):
    """Group-normalise ``x``: each sample over groups of ``C / num_groups`` channels and space (Wu & He, 2018).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
    num_groups : int dividing C
        ``num_groups=1`` is layer normalization with per-channel ``gamma``, ``beta``;
        ``num_groups=C`` is instance normalization.
    gamma, beta : ndarray of shape (C,)
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : NormCache
        ``cache.x_hat`` has the grouped shape ``(N, G, C // G, *spatial)``.

    Notes
    -----
    ``x`` is viewed as ``(N, G, C // G, *spatial)`` and standardised over every axis after
    the second, then scaled and shifted per channel. Same as
    ``torch.nn.functional.group_norm(x, num_groups, gamma, beta, eps)``.
    """
    x = _as_batch(x)
    eps = check_eps(eps)
    n, c = x.shape[:2]
    g = _check_groups(num_groups, c)
    gamma = _per_channel(check_param(gamma, "gamma", c, x.dtype), x.ndim)
    beta = _per_channel(check_param(beta, "beta", c, x.dtype), x.ndim)
    grouped = x.reshape((n, g, c // g) + x.shape[2:])
    axes = tuple(range(2, grouped.ndim))  # the group's channels and space, per sample
    x_hat, mean, var, inv_std = standardize(grouped, axes, eps, "x", "the variance of a group")
    y = _affine(x_hat.reshape(x.shape), gamma, beta)
    return y, NormCache("group", x.shape, x_hat, axes, mean, var, inv_std, gamma, eps)


def groupnorm_backward(dy, cache):
    """Gradients of :func:`groupnorm_forward`: ``(dx, dgamma, dbeta)``, ``dgamma``/``dbeta`` of shape (C,)."""
    dy = _check_dy(dy, cache, "group")
    axes = _batch_axes(dy.ndim)
    dgamma = (dy * cache.x_hat.reshape(dy.shape)).sum(axis=axes, dtype=np.float64)
    dbeta = dy.sum(axis=axes, dtype=np.float64)
    return _dx(dy, cache), dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)


# --------------------------------------------------------------------------- batch renormalization


class BatchRenormCache(NamedTuple):
    """What :func:`batchrenorm_forward` keeps: BN's batch statistics plus ``r`` and ``d``.

    ``x_hat_batch`` is the batch-standardised input; ``r`` and ``d`` (shape (C,)) are the
    clipped corrections; ``mean`` and ``var`` the batch mean and biased variance.
    """

    x_hat_batch: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    r: np.ndarray
    d: np.ndarray
    gamma: np.ndarray
    eps: float


def batchrenorm_forward(x, gamma, beta, running_mean, running_var, r_max=3.0, d_max=5.0, eps=1e-5):
    """Batch renormalization in training mode (Ioffe, 2017, Algorithm 1).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
    gamma, beta : ndarray of shape (C,)
    running_mean, running_var : ndarray of shape (C,)
        The moving averages BN keeps for inference (not updated here: see
        :func:`bnlib.update_running_stats` with ``cache.mean`` and ``cache.var``).
    r_max : float >= 1, default 3.0
    d_max : float >= 0, default 5.0
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : BatchRenormCache

    Notes
    -----
    With the batch statistics ``mu_B``, ``sigma_B = sqrt(var_B + eps)`` and the running
    ones ``mu``, ``sigma = sqrt(running_var + eps)``, per channel:

        r = clip(sigma_B / sigma, 1 / r_max, r_max)
        d = clip((mu_B - mu) / sigma, -d_max, d_max)
        x_hat = (x - mu_B) / sigma_B * r + d
        y = gamma * x_hat + beta

    ``r`` and ``d`` are treated as constants by the backward pass. Unclipped,
    ``x_hat = (x - mu) / sigma``: the output is what inference computes, so training and
    inference agree. With ``r_max=1, d_max=0``, ``r = 1`` and ``d = 0``: exactly BN.
    """
    x = _as_batch(x)
    eps = check_eps(eps)
    check_training_batch(x.shape)
    for name, value, low in (("r_max", r_max, 1.0), ("d_max", d_max, 0.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < np.inf:
            raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    c = x.shape[1]
    gamma = check_param(gamma, "gamma", c, x.dtype)
    beta = check_param(beta, "beta", c, x.dtype)
    running_mean = check_param(running_mean, "running_mean", c, x.dtype)
    running_var = check_param(running_var, "running_var", c, x.dtype)
    if (running_var < 0).any():
        raise ValueError(f"running_var must be non-negative, got minimum {float(running_var.min())!r}")
    x_hat_b, mean, var, inv_std = standardize(x, _batch_axes(x.ndim), eps, "x", "the batch variance")
    mean, var, inv_std = mean.reshape(c), var.reshape(c), inv_std.reshape(c)
    inv_sigma = inverse_std(running_var, eps, "running_var")  # 1 / sigma
    r = np.clip(inv_sigma / inv_std, 1.0 / r_max, r_max)  # sigma_B / sigma
    d = np.clip((mean - running_mean) * inv_sigma, -d_max, d_max)
    x_hat = x_hat_b * _per_channel(r, x.ndim) + _per_channel(d, x.ndim)
    y = _affine(x_hat, _per_channel(gamma, x.ndim), _per_channel(beta, x.ndim))
    return y, BatchRenormCache(x_hat_b, mean, var, inv_std, r, d, gamma, eps)


def batchrenorm_backward(dy, cache):
    """Gradients of :func:`batchrenorm_forward` with ``r`` and ``d`` held constant.

    Notes
    -----
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * x_hat)`` with ``x_hat = r * x_hat_B + d``, and
    ``dx`` is BN's backward pass with ``gamma`` replaced by ``gamma * r``.
    """
    if not isinstance(cache, BatchRenormCache):
        raise TypeError(
            f"cache must be the BatchRenormCache returned by batchrenorm_forward, got {type(cache).__name__}"
        )
    dy = as_float_array(dy, "dy")
    if dy.shape != cache.x_hat_batch.shape:
        raise ValueError(
            f"dy must have the same shape as the cached input {cache.x_hat_batch.shape}, got shape {dy.shape}"
        )
    check_finite(dy, "dy")
    dy = dy if dy.dtype == cache.x_hat_batch.dtype else _cast(dy, cache.x_hat_batch.dtype)
    ndim, axes = dy.ndim, _batch_axes(dy.ndim)
    scale = _per_channel(cache.gamma * cache.r * cache.inv_std, ndim)
    dx, sum_dy, sum_dy_xhat_b = standardize_backward(dy, cache.x_hat_batch, scale, axes)
    c = dy.shape[1]
    dbeta = sum_dy.reshape(c)
    dgamma = cache.r * sum_dy_xhat_b.reshape(c) + cache.d * dbeta  # sum(dy * (r x_hat_B + d))
    return dx, dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)

