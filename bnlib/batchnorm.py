"""Batch Normalization: forward, two backward passes, inference, running statistics, folding.

Shapes follow PyTorch: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; statistics are
per channel (axis 1) over every other axis, so each channel is normalised over
``m = N * prod(spatial)`` values. Conventions are PyTorch's: ``eps=1e-5``, the
biased batch variance for normalising, the unbiased one for the running
estimate, ``momentum`` as the weight of the *new* batch, ``running_var``
starting at ones.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

from ._checks import (
    as_float_array,
    check_batch,
    check_eps,
    check_finite,
    check_param,
    check_training_batch,
    values_per_channel,
)

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
        The input, as a C-contiguous float array: ``x`` itself (not a copy)
        unless it had to be converted.
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

    ``cache.x_hat``, the normalised input ``(x - mean) / sqrt(var + eps)``, is
    computed when asked for: the forward pass does not store it, and the
    backward pass recomputes it block by block while the block is in the CPU
    cache, which is cheaper than writing and reading a whole array.
    """

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    eps: float

    @property
    def x_hat(self):
        """The normalised input ``(x - mean) * inv_std``, shape of ``x``."""
        ndim = self.x.ndim
        return (self.x - _per_channel(self.mean, ndim)) * _per_channel(self.inv_std, ndim)


def _per_channel(v, ndim):
    """Reshape a ``(C,)`` vector to broadcast against a ``(N, C, *spatial)`` array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# ----------------------------------------------------------------------------------------
# How the arithmetic is organised (for speed; the formulas are in the public functions)
#
# Batch norm is a few elementwise operations and per-channel sums. numpy performs one
# operation per pass over its operands, so on whole arrays every operation streams them
# through main memory, and every intermediate result is a new array. The helpers below walk
# the batch in blocks of whole samples small enough to stay in the CPU cache from one
# operation to the next, write into preallocated arrays (the ufuncs' third argument, their
# ``out``, passed by position because numpy parses that faster), and take per-channel sums
# as matrix-vector products (BLAS). Each computes the whole-array expression in its
# docstring, up to rounding. Folding constants together saves whole passes, and where that
# rounds a large value, _SHORTCUT_LIMIT bounds the cost in accuracy.

_BLOCK_ELEMENTS = 1 << 18  # per block and operand: 1 MiB of float32
_LONG_ROW = 16384  # numpy broadcasts a row cheaply when it is longer than its 8192-element buffer


@functools.lru_cache(maxsize=64)
def _ones(n, dtype):
    """A read-only vector of ``n`` ones, made once per length and dtype."""
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


def _channel_sum(a, out):
    """``a.sum(axis=(0, 2, 3, ...))`` of a C-contiguous ``(n, C, *spatial)`` array, by BLAS.

    Written into ``out``, of shape ``(C,)`` and the dtype of ``a``, which is returned.
    """
    n, c = a.shape[:2]
    if a.ndim > 2:
        spatial = math.prod(a.shape[2:])
        a = np.matmul(a.reshape(n * c, spatial), _ones(spatial, a.dtype)).reshape(n, c)
    if n == 1:
        np.copyto(out, a[0])  # a (1, C) matrix-vector product is a slow special case in OpenBLAS
    else:
        np.matmul(_ones(n, a.dtype), a, out=out)
    return out


def _channel_dot(a, b, work, out):
    """``(a * b).sum(axis=(0, 2, 3, ...))`` of two C-contiguous ``(n, C, *spatial)`` arrays.

    Written into ``out`` as in :func:`_channel_sum`. ``work`` (which may be ``a`` or ``b``)
    receives ``a * b`` when there is no spatial axis.
    """
    n, c = a.shape[:2]
    if a.ndim == 2:
        # faster than einsum's column-wise sum of products: one product, one BLAS sum
        return _channel_sum(np.multiply(a, b, work), out)
    spatial = math.prod(a.shape[2:])
    per_sample = np.vecdot(a.reshape(n * c, spatial), b.reshape(n * c, spatial))
    return _channel_sum(per_sample.reshape(n, c), out)


class _Layout:
    """A batch ``(N, C, *spatial)`` as rows of whole samples, walked a block of rows at a time.

    A row holds ``reps`` consecutive samples, at least ``_LONG_ROW`` elements, and each
    per-channel vector is laid out once over one row. A block combines with such a vector
    by plain elementwise loops over long rows, where broadcasting a ``(1, C, 1, ...)`` vector
    would make numpy run many short loops. Samples left over at the end (fewer than
    ``reps``) form a last block in the batch's own shape, with the vectors as broadcastable
    columns.
    """

    def __init__(self, shape, dtype):
        n = shape[0]
        self.shape = tuple(shape)
        self.sample_shape = self.shape[1:]
        self.dtype = dtype
        sample_size = math.prod(self.sample_shape)
        self.reps = max(1, min(n, -(-_LONG_ROW // max(1, sample_size))))
        self.rows = n // self.reps
        self.width = self.reps * sample_size
        self.rows_per_block = max(1, _BLOCK_ELEMENTS // max(1, self.width))
        if math.prod(self.shape) == 0:
            self.num_blocks = 0
        else:
            has_tail = self.rows * self.reps < n
            self.num_blocks = -(-self.rows // self.rows_per_block) + has_tail

    def blocks(self, arrays, vectors=(), scratch=0, reverse=False):
        """Yield ``(*array_blocks, *scratch_blocks, *vector_rows)`` for each block.

        ``arrays`` are C-contiguous arrays of the batch's shape (their blocks are views, so
        writing into a block writes into the array); ``vectors`` have shape ``(C,)``;
        ``scratch`` is the number of work arrays, each the size of a block, to hand out.
        ``reverse`` walks the blocks from the end of the batch to its start.
        """
        assert all(a.shape == self.shape and a.flags.c_contiguous for a in arrays)
        if math.prod(self.shape) == 0:
            return  # nothing to compute
        whole = self.rows * self.reps  # samples in whole rows
        rows = [a[:whole].reshape(self.rows, self.width) for a in arrays]
        columns = [_per_channel(np.asarray(v, self.dtype), len(self.shape)) for v in vectors]
        row_vectors = [np.empty((self.reps,) + self.sample_shape, self.dtype) for _ in columns]
        for row, column in zip(row_vectors, columns):
            row[...] = column
        row_vectors = [row.reshape(1, -1) for row in row_vectors]
        block_shape = (min(self.rows_per_block, self.rows), self.width)
        work = [np.empty(block_shape, self.dtype) for _ in range(scratch)]
        starts = range(0, self.rows, self.rows_per_block)
        if whole < self.shape[0] and reverse:
            yield self._tail(arrays, work, columns, whole)
        for start in reversed(starts) if reverse else starts:
            block = slice(start, start + self.rows_per_block)
            size = min(self.rows_per_block, self.rows - start)
            yield (*(r[block] for r in rows), *(w[:size] for w in work), *row_vectors)
        if whole < self.shape[0] and not reverse:
            yield self._tail(arrays, work, columns, whole)

    def _tail(self, arrays, work, columns, whole):
        """The block of the samples after ``whole``, in the batch's own shape."""
        tail_shape = (self.shape[0] - whole,) + self.sample_shape
        size = math.prod(tail_shape)
        work = [w.reshape(-1)[:size].reshape(tail_shape) for w in work]
        return (*(a[whole:] for a in arrays), *work, *columns)

    def partial_sums(self):
        """An array for one per-channel sum per block, ``(num_blocks, C)``, to add up at the end.

        Each row holds one block's sums in the batch's dtype (BLAS sums a block in that
        precision); ``partial_sums().sum(axis=0, dtype=np.float64)`` adds the blocks in
        float64. Writing each block's sums into a row is cheaper than adding them into a
        float64 total block by block.
        """
        return np.empty((self.num_blocks, self.shape[1]), self.dtype)

    def channel_sum(self, block, out):
        """Per-channel sum of a block, written into ``out`` of shape ``(C,)``."""
        return _channel_sum(block.reshape((-1,) + self.sample_shape), out)

    def channel_dot(self, block_a, block_b, work, out):
        """Per-channel sum of the product of two blocks, into ``out``; may overwrite ``work``."""
        samples = (-1,) + self.sample_shape
        return _channel_dot(*(b.reshape(samples) for b in (block_a, block_b, work)), out)


def _overflow_error(name, arr):
    return ValueError(
        f"The batch statistics of {name} overflow {arr.dtype}: {name} has finite values as "
        f"large as {float(np.abs(arr).max()):.3g}. Rescale {name} or use float64."
    )


def _batch_statistics(x, name="x"):
    """Per-channel mean and biased variance of a C-contiguous batch, from centred values.

    Centred on a first estimate ``mu`` of the mean (from the first block of samples), the
    values ``d = x - mu`` give ``mean = mu + sum(d) / m`` and
    ``var = sum(d**2) / m - (sum(d) / m)**2``: the corrected two-pass algorithm (Chan,
    Golub & LeVeque, 1983), as accurate as centring on the exact mean as long as ``mu`` is
    within a few standard deviations of it. When it is not (a batch sorted along a
    channel), the pass is repeated around the mean just found. Partial sums are accumulated
    in float64. A NaN or infinity in ``x`` makes the sums non-finite, and only then is
    ``x`` scanned, to raise the usual error.
    """
    layout = _Layout(x.shape, x.dtype)
    m = values_per_channel(x.shape)
    first_block = x[: layout.rows_per_block * layout.reps]
    with np.errstate(over="ignore", invalid="ignore"):
        first_sum = _channel_sum(first_block, np.empty(x.shape[1], x.dtype))
        mu = first_sum / values_per_channel(first_block.shape)
        partial_d, partial_d2 = layout.partial_sums(), layout.partial_sums()
        for attempt in range(2):
            blocks = layout.blocks((x,), (mu,), scratch=1)
            for i, (x_block, d, mu_row) in enumerate(blocks):
                np.subtract(x_block, mu_row, d)
                layout.channel_sum(d, out=partial_d[i])
                layout.channel_dot(d, d, work=d, out=partial_d2[i])  # d is not needed after
            sum_d = partial_d.sum(axis=0, dtype=np.float64)
            sum_d2 = partial_d2.sum(axis=0, dtype=np.float64)
            correction = sum_d / m
            mean = mu.astype(x.dtype) + correction
            var = np.maximum(sum_d2 / m - correction**2, 0.0)
            # The first block holds a fraction f of the batch, so correction**2 is at most
            # var * (1 - f) / f: this repeats only for batches of over 100 blocks, if sorted.
            if not (correction**2 > 100.0 * var).any():
                break
            mu = mean
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        check_finite(x, name)
        raise _overflow_error(name, x)
    return mean.astype(x.dtype), var.astype(x.dtype)


# Two shortcuts below each save a pass over the batch by rounding a value that can be larger
# than the result: folding an offset into the centring shift (_folded_shift), and summing
# dy * x uncentred in the backward pass (_gradient_sums). Each is taken only when that value is
# at most _SHORTCUT_LIMIT times the result's natural size, so the extra rounding error stays
# within that factor of the error of centred arithmetic.
_SHORTCUT_LIMIT = 16.0


def _folded_shift(centre, offset, scale, size, dtype):
    """The ``shift`` with ``(v - centre) * scale + offset == (v - shift) * scale``, in ``dtype``.

    ``shift = centre - offset / scale``, per channel, computed in float64. Folding the offset
    into the shift saves one operation per element, and rounding ``shift`` to ``dtype`` adds
    an error of about ``eps * |shift * scale|`` to the result. ``size`` is the result's
    natural size per channel; the fold is used only when ``|shift * scale| <= 16 * size``,
    so the error stays within a few roundings of that size. Otherwise (a mean many
    standard deviations from zero, a constant channel, ``scale == 0`` with ``offset != 0``)
    this returns None and the caller keeps the offset as a separate operation.
    """
    centre, offset, scale = (np.asarray(v, np.float64) for v in (centre, offset, scale))
    with np.errstate(all="ignore"):
        # scale == 0 folds only a zero offset
        shift = np.where(scale != 0, centre - offset / scale, np.where(offset == 0, centre, np.nan))
        fits = np.abs(shift * scale) <= _SHORTCUT_LIMIT * np.asarray(size, np.float64)
    shift = shift.astype(dtype)
    if not (fits.all() and np.isfinite(shift).all()):
        return None
    return shift


def _normalize(x, mean, inv_std, gamma, beta):
    """``y = (x - mean) * (gamma * inv_std) + beta``, per channel: ``gamma * x_hat + beta``.

    Computed as ``(x - shift) * scale`` with ``shift = mean - beta / scale`` (see
    :func:`_folded_shift`): two operations per element instead of three, and still centred
    first, so a large common offset cancels exactly before the scaling.
    """
    layout = _Layout(x.shape, x.dtype)
    y = np.empty_like(x)
    scale = gamma.astype(np.float64) * inv_std
    # y is of the size of |gamma| + |beta|
    shift = _folded_shift(mean, beta, scale, np.abs(gamma) + np.abs(beta), x.dtype)
    # Backwards: the blocks of x that _batch_statistics read last are still in cache.
    if shift is not None:
        for x_block, y_block, mu, s in layout.blocks((x, y), (shift, scale), reverse=True):
            np.subtract(x_block, mu, y_block)
            np.multiply(y_block, s, y_block)
        return y
    # Not foldable without losing accuracy: three operations.
    for x_block, y_block, mu, s, b in layout.blocks((x, y), (mean, scale, beta), reverse=True):
        np.subtract(x_block, mu, y_block)
        np.multiply(y_block, s, y_block)
        np.add(y_block, b, y_block)
    return y


def _affine(x, scale, shift):
    """``y = x * scale + shift``, per channel."""
    layout = _Layout(x.shape, x.dtype)
    y = np.empty_like(x)
    for x_block, y_block, a, b in layout.blocks((x, y), (scale, shift)):
        np.multiply(x_block, a, y_block)
        np.add(y_block, b, y_block)
    return y


def _gradient_sums(dy, x, mean, inv_std):
    """``dy`` and ``dy * x_hat`` summed per channel, in float64.

    ``sum(dy * x_hat) = inv_std * sum(dy * (x - mean)) = inv_std * (sum(dy * x) - mean *
    sum(dy))``. The last form needs no centring pass, but each product ``dy * x`` is rounded
    at the size of ``|x|`` rather than ``|x - mean|``, so its rounding error grows by about
    ``1 + |mean| * inv_std``. It is used when every channel's mean lies within 16 of its
    normalising lengths ``1 / inv_std`` of zero, as it does for the activations of a network;
    otherwise each block is centred in the CPU cache first.
    """
    layout = _Layout(dy.shape, dy.dtype)
    partial_dy, partial_dy_x = layout.partial_sums(), layout.partial_sums()
    centre = not (np.abs(mean) * inv_std <= _SHORTCUT_LIMIT).all()
    with np.errstate(over="ignore", invalid="ignore"):
        blocks = layout.blocks((dy, x), (mean,) if centre else (), scratch=1)
        for i, (dy_block, x_block, work, *mu) in enumerate(blocks):
            if centre:
                x_block = np.subtract(x_block, mu[0], work)
            layout.channel_dot(dy_block, x_block, work=work, out=partial_dy_x[i])
            layout.channel_sum(dy_block, out=partial_dy[i])
        sum_dy = partial_dy.sum(axis=0, dtype=np.float64)
        sum_dy_x = partial_dy_x.sum(axis=0, dtype=np.float64)
    if not centre:
        sum_dy_x -= mean * sum_dy
    return sum_dy, sum_dy_x * inv_std


def _input_gradient(dy, x, mean, inv_std, scale, mean_dy, mean_dy_x_hat):
    """``dx = scale * (dy - mean_dy - x_hat * mean_dy_x_hat)``, per channel.

    With ``x_hat = (x - mean) * inv_std``, the term ``mean_dy + x_hat * mean_dy_x_hat`` is
    ``(x - mean) * k + mean_dy`` with ``k = inv_std * mean_dy_x_hat``, and that is
    ``(x - shift) * k`` with ``shift = mean - mean_dy / k`` (see :func:`_folded_shift`):
    ``dx = (dy - (x - shift) * k) * scale``, four operations per element instead of five.
    """
    layout = _Layout(dy.shape, dy.dtype)
    dx = np.empty_like(dy)
    k = np.asarray(inv_std, np.float64) * mean_dy_x_hat
    # (x - mean) * k + mean_dy is of the size of |mean_dy_x_hat| + |mean_dy|
    size = np.abs(mean_dy_x_hat) + np.abs(mean_dy)
    shift = _folded_shift(mean, mean_dy, k, size, dy.dtype)
    # Backwards: the blocks that _gradient_sums read last are still in cache.
    if shift is not None:
        blocks = layout.blocks((dy, x, dx), (shift, k, scale), reverse=True)
        for dy_block, x_block, dx_block, mu, kk, s in blocks:
            np.subtract(x_block, mu, dx_block)
            np.multiply(dx_block, kk, dx_block)
            np.subtract(dy_block, dx_block, dx_block)
            np.multiply(dx_block, s, dx_block)
        return dx
    # Not foldable without losing accuracy: five operations.
    blocks = layout.blocks((dy, x, dx), (mean, k, mean_dy, scale), reverse=True)
    for dy_block, x_block, dx_block, mu, kk, a, s in blocks:
        np.subtract(x_block, mu, dx_block)
        np.multiply(dx_block, kk, dx_block)
        np.add(dx_block, a, dx_block)
        np.subtract(dy_block, dx_block, dx_block)
        np.multiply(dx_block, s, dx_block)
    return dx


def _inverse_std(var, eps, what):
    """``1 / sqrt(var + eps)`` per channel, refusing to divide by zero (``var == eps == 0``)."""
    denominator = var + eps
    if not denominator.all():
        zero = np.flatnonzero(denominator == 0)
        raise ValueError(
            f"{what} is 0 in channel(s) {zero[:5].tolist()}{' ...' if zero.size > 5 else ''} "
            f"and eps=0, so normalising divides by zero; use eps > 0 (PyTorch's default is 1e-5)"
        )
    return 1.0 / np.sqrt(denominator)


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
        ``eps`` is negative, or if ``eps == 0`` and a channel is constant
        (variance 0: the normalisation would divide by zero).

    Notes
    -----
    Algorithm 1 of Ioffe & Szegedy (2015), with ``m`` values per channel:

    .. math::

        \\mu = \\frac{1}{m}\\sum_i x_i, \\quad
        \\sigma^2 = \\frac{1}{m}\\sum_i (x_i - \\mu)^2, \\quad
        \\hat x_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad
        y_i = \\gamma \\hat x_i + \\beta.

    The variance is biased (divided by ``m``) and is computed from centred
    values (the corrected two-pass algorithm, see ``_batch_statistics``), so a
    large common offset does not cancel it away. float32 input stays float32,
    with the per-channel sums accumulated in float64.

    The code below reads like these formulas; the helpers it calls evaluate
    them block by block, in place, with BLAS for the sums, which brings the
    forward and backward pass to about the speed of PyTorch's fused C++ kernel
    (``benchmarks/bench_batchnorm.py``).

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
    eps = check_eps(eps)
    check_training_batch(x.shape)
    num_channels = x.shape[1]
    gamma = check_param(gamma, "gamma", num_channels, x.dtype)
    beta = check_param(beta, "beta", num_channels, x.dtype)

    mean, var = _batch_statistics(x)  # per channel; var is biased, from centred values
    inv_std = _inverse_std(var, eps, "the batch variance").astype(x.dtype, copy=False)
    # x_hat = (x - mean) * inv_std;  y = gamma * x_hat + beta
    y = _normalize(x, mean, inv_std, gamma, beta)
    return y, BatchNormCache(x, mean, var, inv_std, gamma, eps)


def _as_batch(x, name="x"):
    """:func:`check_batch` without its scan for non-finite values.

    Returns a C-contiguous float array. The batch statistics scan ``x`` anyway: a NaN
    or infinity makes them non-finite, and :func:`_batch_statistics` then raises.
    """
    arr = as_float_array(x, name)
    if arr.ndim < 2:
        check_batch(arr, name)  # raises the shared message for fewer than 2 dimensions
    return np.ascontiguousarray(arr)


def _check_dy(dy, cache):
    """``dy`` as a C-contiguous array in the cache's dtype, after checking its shape."""
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
    return np.ascontiguousarray(dy, dtype=cache.x.dtype)


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

        \\frac{\\partial L}{\\partial x_i} = \\frac{\\gamma}{m\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(m\\, dy_i - \\sum_j dy_j - \\hat x_i \\sum_j dy_j \\hat x_j\\Big).

    It follows that ``dx`` sums to zero per channel and, when ``eps = 0``, is
    orthogonal to ``x_hat`` per channel. :func:`batchnorm_backward_graph`
    computes the same numbers node by node. As in :func:`batchnorm_forward`,
    the helpers evaluate the formulas block by block, summing in float64.

    Raises
    ------
    ValueError
        If ``dy`` does not have the shape of the forward input, or has a
        non-finite value.
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
    x, mean, inv_std, gamma = cache.x, cache.mean, cache.inv_std, cache.gamma
    m = values_per_channel(x.shape)
    dbeta, dgamma = _gradient_sums(dy, x, mean, inv_std)  # sum(dy), sum(dy * x_hat) per channel
    if not (np.isfinite(dbeta).all() and np.isfinite(dgamma).all()):
        check_finite(dy, "dy")
        raise _overflow_error("dy", dy)
    # dx = gamma * inv_std * (dy - dbeta / m - x_hat * dgamma / m)
    dx = _input_gradient(dy, x, mean, inv_std, gamma * inv_std, dbeta / m, dgamma / m)
    return dx, dgamma.astype(dx.dtype), dbeta.astype(dx.dtype)


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
    axes = (0,) + tuple(range(2, ndim))

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
    dtype = x.dtype
    return tuple(g.astype(dtype, copy=False) for g in (dx, dgamma, dbeta))


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
    and ``b = beta - a * mean`` (Algorithm 2 of Ioffe & Szegedy, 2015).

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
    if (running_var < 0).any():
        raise ValueError(f"running_var must be non-negative, got minimum {running_var.min()!r}")
    scale = (gamma * _inverse_std(running_var, eps, "running_var")).astype(x.dtype, copy=False)
    shift = beta - scale * running_mean
    return _affine(np.ascontiguousarray(x), scale, shift)  # x * scale + shift


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
    unbiased = batch_var * (n / (n - 1.0))
    mean = (1.0 - factor) * running_mean + factor * batch_mean
    var = (1.0 - factor) * running_var + factor * unbiased
    return mean.astype(dtype, copy=False), var.astype(dtype, copy=False)


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
        mean, var = _batch_statistics(b, "batch")
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
    if (running_var < 0).any():
        raise ValueError(f"running_var must be non-negative, got minimum {running_var.min()!r}")
    scale = gamma * _inverse_std(running_var, eps, "running_var")
    new_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    new_bias = (bias - running_mean) * scale + beta
    return new_weight.astype(dtype, copy=False), new_bias.astype(dtype, copy=False)
