"""PyTorch modules whose arithmetic is ``bnlib``'s: drop-in ``BatchNorm1d/2d/3d``.

:class:`BatchNorm1d`, :class:`BatchNorm2d` and :class:`BatchNorm3d` subclass
torch's modules of the same names, so they have the same constructor, the same
parameters and buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), the same ``state_dict``, ``repr``, reset methods and
input checks. Only ``forward`` differs: instead of torch's fused kernel it calls
:func:`batch_norm` below, which moves the tensors to numpy and runs
:func:`bnlib.batchnorm.batchnorm_forward`, :func:`~bnlib.batchnorm.batchnorm_backward`,
:func:`~bnlib.batchnorm.batchnorm_inference` and
:func:`~bnlib.batchnorm.update_running_stats` inside ``torch.autograd.Function``\\ s.

This module imports torch; the core ``bnlib`` package never imports it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..batchnorm import (
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference,
    update_running_stats,
)

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "BatchNormInferenceFunction",
    "batch_norm",
]


# --------------------------------------------------------------------------- tensors <-> numpy


def _to_numpy(t):
    """A numpy view (CPU) or copy (other devices, half precision) of a tensor, or None."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; bnlib computes half in float32
        t = t.float()
    return t.cpu().numpy()


def _to_tensor(arr, like):
    """``arr`` as a tensor on ``like``'s device with ``like``'s dtype."""
    return torch.from_numpy(np.asarray(arr)).to(device=like.device, dtype=like.dtype)


def _channel_sum(a):
    """Sum over every axis but axis 1 (the channels), shape ``(C,)``."""
    return a.sum(axis=(0,) + tuple(range(2, a.ndim)))


def _per_channel(v, ndim):
    """Reshape a ``(C,)`` vector to broadcast against ``(N, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _ones_like_channels(x_np):
    return np.ones(x_np.shape[1], dtype=x_np.dtype)


def _zeros_like_channels(x_np):
    return np.zeros(x_np.shape[1], dtype=x_np.dtype)


# --------------------------------------------------------------------------- autograd Functions


class BatchNormFunction(torch.autograd.Function):
    """Training-mode Batch Normalization with batch statistics, by ``bnlib``.

    ``BatchNormFunction.apply(x, weight, bias, eps) -> (y, batch_mean, batch_var)``

    Parameters
    ----------
    x : Tensor of shape (N, C) or (N, C, *spatial)
    weight, bias : Tensor of shape (C,) or None
        ``gamma`` and ``beta``; ``None`` means ones and zeros (``affine=False``)
        and gets no gradient.
    eps : float

    Returns
    -------
    y : Tensor of the shape, dtype and device of ``x``
        Differentiable with respect to ``x``, ``weight`` and ``bias``.
    batch_mean, batch_var : Tensor of shape (C,), on ``x``'s device
        The batch mean and the *biased* batch variance (``cache.mean`` and
        ``cache.var`` of :func:`bnlib.batchnorm.batchnorm_forward`), marked
        non-differentiable; :func:`batch_norm` feeds them to the running
        statistics.

    Notes
    -----
    The forward pass is :func:`bnlib.batchnorm.batchnorm_forward`, the backward
    pass :func:`bnlib.batchnorm.batchnorm_backward` (the compact closed form).
    When only ``weight``/``bias`` need a gradient, ``dx`` is not computed:
    ``dgamma = sum(dy * x_hat)`` and ``dbeta = sum(dy)`` come straight from the
    cache. Backward is differentiable once (no double backward).

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import BatchNormFunction
    >>> x = torch.tensor([[1.0], [3.0]], dtype=torch.float64, requires_grad=True)
    >>> y, mean, var = BatchNormFunction.apply(x, None, None, 0.0)
    >>> y.detach().ravel().tolist(), mean.tolist(), var.tolist()
    ([-1.0, 1.0], [2.0], [1.0])
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x_np = _to_numpy(x)
        gamma = _to_numpy(weight) if weight is not None else _ones_like_channels(x_np)
        beta = _to_numpy(bias) if bias is not None else _zeros_like_channels(x_np)
        y, cache = batchnorm_forward(x_np, gamma, beta, eps=eps)
        ctx.cache = cache
        # Saved for torch's version-counter check only: modifying x or weight in
        # place between forward and backward raises, as it does with torch's BN.
        ctx.save_for_backward(x, weight)
        # In bnlib's computing dtype (float32 for half input), on x's device.
        mean = torch.from_numpy(cache.mean).to(x.device)
        var = torch.from_numpy(cache.var).to(x.device)
        ctx.mark_non_differentiable(mean, var)
        return _to_tensor(y, x), mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _dmean, _dvar):
        x, weight = ctx.saved_tensors
        cache = ctx.cache
        need_dx, need_dweight, need_dbias = ctx.needs_input_grad[:3]
        dy_np = _to_numpy(dy).astype(cache.x_hat.dtype, copy=False)
        if need_dx:
            dx, dgamma, dbeta = batchnorm_backward(dy_np, cache)
        else:
            dx = None
            dgamma = _channel_sum(dy_np * cache.x_hat) if need_dweight else None
            dbeta = _channel_sum(dy_np) if need_dbias else None
        grad_x = _to_tensor(dx, x) if need_dx else None
        grad_weight = _to_tensor(dgamma, weight) if need_dweight else None
        grad_bias = _to_tensor(dbeta, weight) if need_dbias else None
        return grad_x, grad_weight, grad_bias, None


class BatchNormInferenceFunction(torch.autograd.Function):
    """Eval-mode Batch Normalization with fixed statistics, by ``bnlib``.

    ``BatchNormInferenceFunction.apply(x, weight, bias, running_mean, running_var, eps) -> y``

    Parameters
    ----------
    x : Tensor of shape (N, C) or (N, C, *spatial)
        Any batch size, including 1.
    weight, bias : Tensor of shape (C,) or None
        ``None`` means ones and zeros and gets no gradient.
    running_mean, running_var : Tensor of shape (C,)
        Treated as constants (no gradient), as torch does.
    eps : float

    Returns
    -------
    y : Tensor of the shape, dtype and device of ``x``

    Notes
    -----
    The forward pass is :func:`bnlib.batchnorm.batchnorm_inference`, the affine
    map ``y = a x + b`` per channel with ``a = gamma / sqrt(running_var + eps)``.
    Its backward pass, with sums over every axis but the channel axis:

    .. math::

        \\frac{\\partial L}{\\partial x} = a\\, dy, \\qquad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum dy\\, \\hat x, \\qquad
        \\frac{\\partial L}{\\partial \\beta} = \\sum dy,

    where ``x_hat = (x - running_mean) / sqrt(running_var + eps)`` is itself
    ``batchnorm_inference(x, 1, 0, running_mean, running_var, eps)``. Unlike
    training mode, there is no term through the statistics: they do not depend
    on the batch.

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import BatchNormInferenceFunction
    >>> x = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
    >>> one = torch.ones(1, dtype=torch.float64)
    >>> y = BatchNormInferenceFunction.apply(x, None, None, one, 4 * one, 0.0)
    >>> y.backward(torch.ones_like(y))
    >>> y.item(), x.grad.item()
    (1.0, 0.5)
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        x_np = _to_numpy(x)
        gamma = _to_numpy(weight) if weight is not None else _ones_like_channels(x_np)
        beta = _to_numpy(bias) if bias is not None else _zeros_like_channels(x_np)
        y = batchnorm_inference(x_np, gamma, beta, _to_numpy(running_mean), _to_numpy(running_var), eps=eps)
        ctx.eps = eps
        ctx.save_for_backward(x, weight, running_mean, running_var)
        return _to_tensor(y, x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight, running_mean, running_var = ctx.saved_tensors
        need_dx, need_dweight, need_dbias = ctx.needs_input_grad[:3]
        x_np = _to_numpy(x)
        dy_np = _to_numpy(dy).astype(x_np.dtype, copy=False)
        mean_np = _to_numpy(running_mean).astype(x_np.dtype, copy=False)
        var_np = _to_numpy(running_var).astype(x_np.dtype, copy=False)
        grad_x = grad_weight = grad_bias = None
        if need_dx:
            gamma = _to_numpy(weight).astype(x_np.dtype, copy=False) if weight is not None else 1.0
            scale = gamma / np.sqrt(var_np + x_np.dtype.type(ctx.eps))
            grad_x = _to_tensor(dy_np * _per_channel(np.asarray(scale, dtype=x_np.dtype), dy_np.ndim), x)
        if need_dweight:
            ones, zeros = _ones_like_channels(x_np), _zeros_like_channels(x_np)
            x_hat = batchnorm_inference(x_np, ones, zeros, mean_np, var_np, eps=ctx.eps)
            grad_weight = _to_tensor(_channel_sum(dy_np * x_hat), weight)
        if need_dbias:
            grad_bias = _to_tensor(_channel_sum(dy_np), weight)
        return grad_x, grad_weight, grad_bias, None, None, None


# --------------------------------------------------------------------------- functional form


def _verify_batch_size(size):
    """torch's check (``torch.nn.functional._verify_batch_size``), with torch's message."""
    values = size[0]
    for s in size[2:]:
        values *= s
    if values == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {size}"
        )


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    """Batch Normalization with ``bnlib``'s formulas, the signature of ``torch.nn.functional.batch_norm``.

    Parameters
    ----------
    input : Tensor of shape (N, C) or (N, C, *spatial)
    running_mean, running_var : Tensor of shape (C,) or None
        In training, updated **in place** when given (as torch does); in eval
        mode, the statistics used to normalise (then required).
    weight, bias : Tensor of shape (C,) or None
        ``gamma`` and ``beta``; ``None`` means ones and zeros.
    training : bool, default False
        ``True``: normalise with the batch mean and biased batch variance.
        ``False``: normalise with ``running_mean`` and ``running_var``.
    momentum : float, default 0.1
        Weight of the *new* batch in the running-statistics update (torch's
        meaning; Keras and CS231n call ``1 - momentum`` the momentum). Must be
        a number here: the modules turn ``momentum=None`` into
        ``1 / num_batches_tracked`` before calling this function, as torch does.
    eps : float, default 1e-5
        Added to the variance; must be positive in training, as in torch.

    Returns
    -------
    Tensor of the shape, dtype and device of ``input``

    Raises
    ------
    ValueError
        torch's errors, with torch's messages: one value per channel in
        training, ``eps <= 0`` in training or ``eps < 0`` in eval. Also
        ``bnlib``'s: non-finite values in ``input``, parameters of the wrong
        shape.

    Notes
    -----
    Training mode runs :class:`BatchNormFunction` (forward
    :func:`bnlib.batchnorm.batchnorm_forward`, backward
    :func:`bnlib.batchnorm.batchnorm_backward`) and then
    :func:`bnlib.batchnorm.update_running_stats` with the batch's mean and
    biased variance over ``m = N * prod(spatial)`` values per channel, which
    stores the unbiased ``m / (m - 1)`` variance:
    ``running = (1 - momentum) * running + momentum * batch``. Eval mode runs
    :class:`BatchNormInferenceFunction`.

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import batch_norm
    >>> x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    >>> rm, rv = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    >>> batch_norm(x, rm, rv, training=True, momentum=0.5, eps=1e-12).ravel().tolist()
    [-1.0, 1.0]
    >>> rm.tolist(), rv.tolist()  # unbiased batch variance is 2
    ([1.0], [1.5])
    """
    if training:
        _verify_batch_size(input.size())
        if eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")

    if not training:
        if running_mean is None or running_var is None:
            # torch's exception type and wording, plus the fix
            raise RuntimeError(
                "running_mean must be defined in evaluation mode (training=False); "
                "pass running_mean and running_var, or training=True to normalise "
                "with batch statistics"
            )
        return BatchNormInferenceFunction.apply(input, weight, bias, running_mean, running_var, eps)

    y, batch_mean, batch_var = BatchNormFunction.apply(input, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        new_mean, new_var = update_running_stats(
            _to_numpy(running_mean),
            _to_numpy(running_var),
            _to_numpy(batch_mean),
            _to_numpy(batch_var),
            int(input.numel() // input.size(1)),
            momentum=momentum,
        )
        with torch.no_grad():
            running_mean.copy_(torch.from_numpy(new_mean))
            running_var.copy_(torch.from_numpy(new_var))
    return y


# --------------------------------------------------------------------------- modules


class _BnlibForward:
    """``_BatchNorm.forward`` of torch, line for line, with ``F.batch_norm`` replaced by :func:`batch_norm`."""

    def forward(self, input):
        self._check_input_dim(input)

        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum

        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                # Incremented before the batch is checked, as in torch: a batch that
                # raises "Expected more than 1 value ..." still counts.
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average
                    exponential_average_factor = 1.0 / float(self.num_batches_tracked)
                else:  # exponential moving average
                    exponential_average_factor = self.momentum

        # Batch statistics in training, and in eval mode when there are no buffers.
        if self.training:
            bn_training = True
        else:
            bn_training = (self.running_mean is None) and (self.running_var is None)

        # Buffers are passed only to be updated (training, tracked) or used (eval).
        return batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            bn_training,
            exponential_average_factor,
            self.eps,
        )


_SHARED_DOC = """
    Parameters
    ----------
    num_features : int
        ``C``, the number of channels (axis 1 of the input).
    eps : float, default 1e-5
        Added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the *new* batch in the running statistics:
        ``running = (1 - momentum) * running + momentum * batch``. ``None``
        gives a cumulative average, factor ``1 / num_batches_tracked``.
    affine : bool, default True
        Learn ``weight`` (gamma, initialised to ones) and ``bias`` (beta, zeros).
    track_running_stats : bool, default True
        Keep ``running_mean`` (zeros at start), ``running_var`` (ones) and
        ``num_batches_tracked`` (a long tensor) as buffers and use them in eval
        mode. ``False``: batch statistics in both modes, and the three buffers
        are ``None``.
    device, dtype : optional
        Where and in which dtype to create parameters and buffers.
    bias : bool, keyword-only, default True
        With ``affine=True``, ``bias=False`` keeps ``weight`` only (as torch).

    Notes
    -----
    **Conventions are torch's**, so this module is a drop-in replacement for
    ``torch.nn.{name}`` (it subclasses it): the same constructor, parameters,
    buffers, ``state_dict`` keys (``load_state_dict`` works both ways),
    ``repr``, ``reset_parameters()``, ``reset_running_stats()`` and input
    checks ({dims}). In training, the batch mean and *biased* batch variance
    normalise; the running variance stores the *unbiased* one; the counter
    ``num_batches_tracked`` is incremented. In eval mode, the running
    statistics normalise.

    **The arithmetic is bnlib's**: :meth:`forward` calls
    :func:`bnlib.nn.batch_norm`, which computes forward and backward with
    :func:`bnlib.batchnorm.batchnorm_forward`,
    :func:`~bnlib.batchnorm.batchnorm_backward`,
    :func:`~bnlib.batchnorm.batchnorm_inference` and
    :func:`~bnlib.batchnorm.update_running_stats` in numpy, never torch's
    ``batch_norm`` kernel.

    Differences from torch: no double backward; non-finite inputs or upstream
    gradients raise ``ValueError`` instead of propagating NaN; tensors on an
    accelerator make a round trip through CPU memory; half precision is
    computed in float32.
"""


class BatchNorm1d(_BnlibForward, torch.nn.BatchNorm1d):
    __doc__ = (
        """Batch Normalization over ``(N, C)`` or ``(N, C, L)`` input, computed by ``bnlib``.

    Statistics are per channel over ``N`` (or ``N * L``) values.
"""
        + _SHARED_DOC.format(name="BatchNorm1d", dims="2-D or 3-D input")
        + """
    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import BatchNorm1d
    >>> bn = BatchNorm1d(2, dtype=torch.float64)
    >>> bn
    BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    >>> y = bn(torch.tensor([[1.0, 10.0], [3.0, 30.0]], dtype=torch.float64))
    >>> bn.running_mean.tolist(), bn.running_var.tolist(), int(bn.num_batches_tracked)
    ([0.2, 2.0], [1.1, 20.9], 1)
"""
    )


class BatchNorm2d(_BnlibForward, torch.nn.BatchNorm2d):
    __doc__ = (
        """Batch Normalization over ``(N, C, H, W)`` input, computed by ``bnlib``.

    Statistics are per channel over ``N * H * W`` values (the convolutional case).
"""
        + _SHARED_DOC.format(name="BatchNorm2d", dims="4-D input")
        + """
    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import BatchNorm2d
    >>> bn = BatchNorm2d(3).eval()
    >>> bn(torch.zeros(1, 3, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
"""
    )


class BatchNorm3d(_BnlibForward, torch.nn.BatchNorm3d):
    __doc__ = (
        """Batch Normalization over ``(N, C, D, H, W)`` input, computed by ``bnlib``.

    Statistics are per channel over ``N * D * H * W`` values.
"""
        + _SHARED_DOC.format(name="BatchNorm3d", dims="5-D input")
    )
