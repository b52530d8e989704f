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
In training it calls their bodies (``_batchnorm_forward`` and the like, right below
each public function): the formulas, without the core's argument checks, since
torch's checks have run by then (validation once per call, not in every function).

**Torch's semantics are the contract.** What torch's module does, these do:
the same errors with the same types and messages (input dimensions, one value
per channel, ``eps``, integer and mixed dtypes, wrong channel counts), empty
batches, NaN and infinity propagated forward and backward (``GradScaler``
relies on it), any ``momentum``, a negative running variance giving NaN,
channels-last memory format kept, correct second derivatives, ``torch.func``
transforms, ``torch.compile`` and the meta device. Where numpy cannot follow,
the same formulas are evaluated with torch operations instead (see
:func:`batch_norm`, "Which arithmetic runs"); TorchScript is refused with a
clear error.

This module imports torch; the core ``bnlib`` package never imports it.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from .._checks import all_finite

# The formulas without the core's argument checks: torch's checks (below) have run by then.
from ..batchnorm import (
    _batchnorm_backward,
    _batchnorm_forward,
    _update_running_stats,
    batchnorm_inference,
)

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "BatchNormInferenceFunction",
    "batch_norm",
]

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_HALVES = (torch.float16, torch.bfloat16)
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


# --------------------------------------------------------------------------- tensors <-> numpy


def _to_numpy(t):
    """A numpy view of a CPU tensor (a float32 copy for half precision: numpy has no bfloat16)."""
    t = t.detach()
    if t.dtype in _HALVES:
        t = t.float()
    return t.numpy()


def _from_numpy(arr, dtype):
    """``arr`` as a CPU tensor of ``dtype`` (no copy when the dtypes agree)."""
    t = torch.from_numpy(arr)
    return t if t.dtype == dtype else t.to(dtype)


def _channels_last_format(x):
    """torch's output memory format for ``x``: channels-last in, channels-last out."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return None


def _like_input(arr, x, fmt):
    """``arr`` (numpy, shape of ``x``) as a tensor of ``x``'s dtype in ``x``'s memory format."""
    t = _from_numpy(arr, x.dtype)
    return t if fmt is None else t.contiguous(memory_format=fmt)


def _numpy_can_run(x):
    """Whether ``x`` is a plain CPU tensor that numpy can read (no torch.func wrapper, no meta or GPU)."""
    return (
        type(x) in _PLAIN_TYPES
        and x.is_cpu
        and not torch._C._are_functorch_transforms_active()
    )


# --------------------------------------------------------------------------- the formulas with torch operations


def _reduce_axes(x):
    return [0] + list(range(2, x.dim()))


def _per_channel(v, ndim):
    """Reshape a ``(C,)`` tensor to broadcast against ``(N, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _compute_dtype(x):
    """float64 for float32/float64 input (sums accumulate in float64, as the core does), float32 for half."""
    return torch.float64 if x.dtype in (torch.float32, torch.float64) else torch.float32


def _train_formulas(x, weight, bias, eps):
    """Training-mode BN with torch operations: ``(y, mean, biased var)``, differentiable.

    The formulas of :func:`bnlib.batchnorm.batchnorm_forward`:
    ``mu = mean(x)``, ``var = mean((x - mu)^2)``, ``x_hat = (x - mu) / sqrt(var + eps)``,
    ``y = gamma * x_hat + beta`` per channel, computed in float64 (float32 for half input).
    """
    axes, ndim = _reduce_axes(x), x.dim()
    xf = x.to(_compute_dtype(x))
    mean = xf.mean(axes, keepdim=True)
    xc = xf - mean
    var = (xc * xc).mean(axes, keepdim=True)
    x_hat = xc * torch.rsqrt(var + eps)
    y = x_hat
    if weight is not None:
        y = y * _per_channel(weight.to(xf.dtype), ndim)
    if bias is not None:
        y = y + _per_channel(bias.to(xf.dtype), ndim)
    stat_dtype = torch.float32 if x.dtype in _HALVES else x.dtype
    return y.to(x.dtype), mean.reshape(-1).to(stat_dtype), var.reshape(-1).to(stat_dtype)


def _train_gradients(dy, x, weight, eps, needs):
    """Gradients of training-mode BN with torch operations (differentiable: double backward).

    The compact closed form of :func:`bnlib.batchnorm.batchnorm_backward`, ``m`` values per channel:
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * x_hat)``,
    ``dx = gamma / sqrt(var + eps) * (dy - dbeta / m - x_hat * dgamma / m)``.
    """
    axes, ndim = _reduce_axes(x), x.dim()
    dtype = _compute_dtype(x)
    xf, dyf = x.to(dtype), dy.to(dtype)
    mean = xf.mean(axes, keepdim=True)
    xc = xf - mean
    var = (xc * xc).mean(axes, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    x_hat = xc * inv_std
    dbeta = dyf.sum(axes, keepdim=True)
    dgamma = (dyf * x_hat).sum(axes, keepdim=True)
    grad_x = grad_w = grad_b = None
    if needs[0]:
        m = x.numel() // x.shape[1]
        scale = inv_std if weight is None else _per_channel(weight.to(dtype), ndim) * inv_std
        grad_x = (scale * (dyf - dbeta / m - x_hat * (dgamma / m))).to(x.dtype)
    if needs[1]:
        grad_w = dgamma.reshape(-1).to(weight.dtype)
    if needs[2]:
        grad_b = dbeta.reshape(-1).to(weight.dtype if weight is not None else x.dtype)
    return grad_x, grad_w, grad_b


def _inference_formulas(x, weight, bias, running_mean, running_var, eps):
    """Eval-mode BN with torch operations, the affine map of :func:`bnlib.batchnorm.batchnorm_inference`.

    ``a = gamma / sqrt(running_var + eps)``, ``b = beta - a * running_mean``, ``y = a x + b``.
    Differentiable in ``x``, ``weight`` and ``bias``; the statistics are constants.
    """
    ndim = x.dim()
    dtype = _compute_dtype(x)
    a = torch.rsqrt(running_var.detach().to(dtype) + eps)
    if weight is not None:
        a = a * weight.to(dtype)
    b = -a * running_mean.detach().to(dtype)
    if bias is not None:
        b = b + bias.to(dtype)
    return (x.to(dtype) * _per_channel(a, ndim) + _per_channel(b, ndim)).to(x.dtype)


def _update_running_formulas(running_mean, running_var, mean, var, m, momentum):
    """``running = (1 - momentum) * running + momentum * batch`` with the unbiased variance, in place."""
    with torch.no_grad():
        mean, var = mean.detach(), var.detach() * (m / (m - 1))
        running_mean.copy_((1.0 - momentum) * running_mean + momentum * mean)
        running_var.copy_((1.0 - momentum) * running_var + momentum * var)


# --------------------------------------------------------------------------- autograd Functions


class BatchNormFunction(torch.autograd.Function):
    """Training-mode Batch Normalization with batch statistics, by ``bnlib``.

    ``BatchNormFunction.apply(x, weight, bias, eps) -> (y, batch_mean, batch_var)``

    Parameters
    ----------
    x : Tensor of shape (N, C) or (N, C, *spatial), on the CPU
    weight, bias : Tensor of shape (C,) or None
        ``gamma`` and ``beta``; ``None`` means ones and zeros (``affine=False``)
        and gets no gradient.
    eps : float

    Returns
    -------
    y : Tensor of the shape, dtype and memory format of ``x``
        Differentiable with respect to ``x``, ``weight`` and ``bias``, twice.
    batch_mean, batch_var : Tensor of shape (C,)
        The batch mean and the *biased* batch variance (``cache.mean`` and
        ``cache.var`` of :func:`bnlib.batchnorm.batchnorm_forward`, in its
        dtype), marked non-differentiable, for a caller's running statistics.
        (The modules and :func:`batch_norm` run a private Function that does
        the same and updates the running statistics in one call.)

    Notes
    -----
    The forward pass is :func:`bnlib.batchnorm.batchnorm_forward`, the backward
    pass :func:`bnlib.batchnorm.batchnorm_backward` (the compact closed form).
    When only ``weight``/``bias`` need a gradient, ``dx`` is not computed:
    ``dgamma = sum(dy * x_hat)`` and ``dbeta = sum(dy)`` come straight from the
    cache.

    Two cases run the same formulas with torch operations instead of numpy,
    so that torch's semantics hold:

    - values the core refuses with a ``ValueError`` (NaN or infinity in ``x``
      or ``dy``, a variance that overflows, ``eps`` NaN): torch propagates
      them, and so does this Function;
    - a backward pass with ``create_graph=True``: the gradient is then itself
      computed with differentiable torch operations, so second derivatives
      (Hessian-vector products, gradient penalties) are exact.

    This Function is for plain CPU tensors. :func:`batch_norm` and the modules
    choose torch operations themselves under ``torch.func`` transforms and on
    other devices; calling ``BatchNormFunction.apply`` inside ``torch.func.vmap``
    or ``grad`` raises torch's error about ``setup_context``.

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
        with np.errstate(all="ignore"):  # the core raises on what it refuses; no warnings
            y, mean, var = _train_forward(ctx, x, weight, bias, eps)
        mean, var = _as_tensor(mean), _as_tensor(var)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        return _train_backward(ctx, dy) + (None,)


def _as_tensor(a):
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


def _train_forward(ctx, x, weight, bias, eps):
    """The forward pass of the training Functions: ``(y, mean, var)``, the statistics as numpy
    arrays (the core's ``cache.mean``, ``cache.var``) or, off the numpy path, tensors."""
    x_np = _to_numpy(x)
    channels = x.shape[1]
    gamma = _to_numpy(weight) if weight is not None else np.ones(channels, x_np.dtype)
    beta = _to_numpy(bias) if bias is not None else np.zeros(channels, x_np.dtype)
    fmt = _channels_last_format(x)
    try:
        y_np, cache = _batchnorm_forward(x_np, gamma, beta, eps)  # callers silence numpy's warnings
    except ValueError:
        # NaN/inf or an overflowing variance: the core refuses, torch propagates.
        cache = None
        with torch.no_grad():
            y, mean, var = _train_formulas(x.detach(), weight, bias, eps)
        if fmt is not None:
            y = y.contiguous(memory_format=fmt)
    else:
        y = _like_input(y_np, x, fmt)
        mean, var = cache.mean, cache.var
    ctx.cache, ctx.eps, ctx.fmt = cache, eps, fmt
    # x and weight: for the double backward, and for torch's version-counter check
    # (modifying them in place between forward and backward raises, as with torch's BN).
    ctx.save_for_backward(x, weight)
    ctx.set_materialize_grads(False)  # no zero tensors for the statistics' (absent) gradients
    return y, mean, var


def _train_backward(ctx, dy):
    """``(dx, dweight, dbias)`` of the training Functions."""
    x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad[:3]
    if dy is None:  # y itself got no gradient (only possible with set_materialize_grads(False))
        return None, None, None
    cache = ctx.cache
    if torch.is_grad_enabled() or cache is None or not _numpy_can_run(dy):
        # create_graph=True (differentiable gradient), non-finite forward, or a wrapped dy
        grads = _train_gradients(dy, x, weight, ctx.eps, needs)
    else:
        grads = _numpy_train_gradients(dy, cache, x, weight, ctx.eps, needs)
    if ctx.fmt is not None and grads[0] is not None:
        grads = (grads[0].contiguous(memory_format=ctx.fmt),) + grads[1:]
    return grads


class _TrainAndUpdate(torch.autograd.Function):
    """What the modules run in training on the numpy path: :class:`BatchNormFunction` and the
    running-statistics update in one call, without handing the statistics over as tensors."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running_mean, running_var, momentum):
        with np.errstate(all="ignore"):  # the core raises on what it refuses; no warnings
            y, mean, var = _train_forward(ctx, x, weight, bias, eps)
            if running_mean is not None:
                m = x.numel() // x.shape[1]
                if isinstance(mean, torch.Tensor) or not running_mean.is_cpu:
                    mean, var = _as_tensor(mean), _as_tensor(var)
                    _update_running_formulas(running_mean, running_var, mean, var, m, momentum)
                else:
                    _update_running_numpy(running_mean, running_var, mean, var, m, momentum)
        return y

    @staticmethod
    def backward(ctx, dy):
        return _train_backward(ctx, dy) + (None,) * 4


def _numpy_train_gradients(dy, cache, x, weight, eps, needs):
    """The core's backward pass; a non-finite ``dy`` (refused by the core) goes to the torch formulas."""
    x_hat = cache.x_hat
    dy_np = _to_numpy(dy).astype(x_hat.dtype, copy=False)  # autograd gives dy in y's dtype
    with np.errstate(all="ignore"):  # non-finite sums are checked below
        if needs[0]:
            dx, dgamma, dbeta = _batchnorm_backward(dy_np, cache)
        else:
            dx = None
            axes = (0,) + tuple(range(2, x_hat.ndim))
            dgamma = (dy_np * x_hat).sum(axis=axes)
            dbeta = dy_np.sum(axis=axes)
        finite = all_finite(dgamma + dbeta)  # False for NaN or inf in either (or an overflow of the sum)
    if not finite:
        with torch.no_grad():
            return _train_gradients(dy.detach(), x.detach(), weight, eps, needs)
    param_dtype = weight.dtype if weight is not None else x.dtype
    return (
        _from_numpy(dx, x.dtype) if needs[0] else None,
        _from_numpy(dgamma, param_dtype) if needs[1] else None,
        _from_numpy(dbeta, param_dtype) if needs[2] else None,
    )


class BatchNormInferenceFunction(torch.autograd.Function):
    """Eval-mode Batch Normalization with fixed statistics, by ``bnlib``.

    ``BatchNormInferenceFunction.apply(x, weight, bias, running_mean, running_var, eps) -> y``

    Parameters
    ----------
    x : Tensor of shape (N, C) or (N, C, *spatial), on the CPU
        Any batch size, including 1.
    weight, bias : Tensor of shape (C,) or None
        ``None`` means ones and zeros and gets no gradient.
    running_mean, running_var : Tensor of shape (C,)
        Treated as constants (no gradient), as torch does.
    eps : float

    Returns
    -------
    y : Tensor of the shape, dtype and memory format of ``x``

    Notes
    -----
    The forward pass is :func:`bnlib.batchnorm.batchnorm_inference`, the affine
    map ``y = a x + b`` per channel with ``a = gamma / sqrt(running_var + eps)``
    and ``b = beta - a * running_mean``. Its backward pass, with sums over every
    axis but the channel axis:

    .. math::

        \\frac{\\partial L}{\\partial x} = a\\, dy, \\qquad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum dy\\, \\hat x, \\qquad
        \\frac{\\partial L}{\\partial \\beta} = \\sum dy,

    where ``x_hat = (x - running_mean) / sqrt(running_var + eps)`` is itself
    ``batchnorm_inference(x, 1, 0, running_mean, running_var, eps)``. Unlike
    training mode, there is no term through the statistics: they do not depend
    on the batch.

    As in :class:`BatchNormFunction`, values the core refuses (NaN/inf, a
    negative ``running_var``, ``running_var + eps == 0``) are computed with the
    same formulas in torch operations, which give NaN/inf as torch does, and a
    backward pass with ``create_graph=True`` is differentiable.

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
        channels = x.shape[1]
        gamma = _to_numpy(weight) if weight is not None else np.ones(channels, x_np.dtype)
        beta = _to_numpy(bias) if bias is not None else np.zeros(channels, x_np.dtype)
        fmt = _channels_last_format(x)
        try:
            with np.errstate(all="ignore"):
                y_np = batchnorm_inference(
                    x_np, gamma, beta, _to_numpy(running_mean), _to_numpy(running_var), eps=eps
                )
        except ValueError:  # NaN/inf, negative running_var: torch gives NaN/inf
            with torch.no_grad():
                y = _inference_formulas(x.detach(), weight, bias, running_mean, running_var, eps)
            if fmt is not None:
                y = y.contiguous(memory_format=fmt)
        else:
            y = _like_input(y_np, x, fmt)
        ctx.eps, ctx.fmt = eps, fmt
        ctx.save_for_backward(x, weight, running_mean, running_var)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, running_mean, running_var = ctx.saved_tensors
        need_dx, need_dweight, need_dbias = ctx.needs_input_grad[:3]
        eps, ndim = ctx.eps, x.dim()
        if torch.is_grad_enabled() or not _numpy_can_run(dy):
            # create_graph=True (a differentiable gradient) or a wrapped dy: torch operations
            dtype = _compute_dtype(x)
            a = torch.rsqrt(running_var.to(dtype) + eps)
            grad_x = grad_w = grad_b = None
            if need_dx:
                scale = a if weight is None else a * weight.to(dtype)
                grad_x = (dy.to(dtype) * _per_channel(scale, ndim)).to(x.dtype)
            axes = _reduce_axes(x)
            if need_dweight:
                x_hat = (x.to(dtype) - _per_channel(running_mean.to(dtype), ndim)) * _per_channel(a, ndim)
                grad_w = (dy.to(dtype) * x_hat).sum(axes).to(weight.dtype)
            if need_dbias:
                grad_b = dy.to(dtype).sum(axes).to(weight.dtype if weight is not None else x.dtype)
        else:
            grad_x, grad_w, grad_b = _numpy_inference_gradients(
                dy, x, weight, running_mean, running_var, eps, ctx.needs_input_grad
            )
        if ctx.fmt is not None and grad_x is not None:
            grad_x = grad_x.contiguous(memory_format=ctx.fmt)
        return grad_x, grad_w, grad_b, None, None, None


def _numpy_inference_gradients(dy, x, weight, running_mean, running_var, eps, needs):
    """``a dy``, ``sum(dy x_hat)``, ``sum(dy)`` in numpy, in the computing dtype of ``x``."""
    x_np = _to_numpy(x)
    dtype = x_np.dtype
    dy_np = _to_numpy(dy).astype(dtype, copy=False)
    mean_np = _to_numpy(running_mean).astype(dtype, copy=False)
    var_np = _to_numpy(running_var).astype(dtype, copy=False)
    axes = (0,) + tuple(range(2, x_np.ndim))
    shape = (1, -1) + (1,) * (x_np.ndim - 2)
    param_dtype = weight.dtype if weight is not None else x.dtype
    with np.errstate(all="ignore"):  # NaN/inf propagate, as in torch
        inv_std = (1.0 / np.sqrt(var_np + dtype.type(eps))).astype(dtype, copy=False)
        grad_x = grad_w = grad_b = None
        if needs[0]:
            scale = inv_std if weight is None else _to_numpy(weight).astype(dtype, copy=False) * inv_std
            grad_x = _from_numpy(dy_np * scale.reshape(shape), x.dtype)
        if needs[1]:
            x_hat = (x_np - mean_np.reshape(shape)) * inv_std.reshape(shape)
            grad_w = _from_numpy(np.asarray((dy_np * x_hat).sum(axis=axes)), param_dtype)
        if needs[2]:
            grad_b = _from_numpy(np.asarray(dy_np.sum(axis=axes)), param_dtype)
    return grad_x, grad_w, grad_b


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


def _type_name(dtype):
    """torch's C++ name of a dtype, as in its error messages (``Long``, ``Byte``, ``ComplexFloat``)."""
    name = torch.empty(0, dtype=dtype).type()  # e.g. "torch.LongTensor"
    return name[len("torch."):-len("Tensor")]


def _check_like_torch(input, running_mean, running_var, weight, bias, training):
    """torch's kernel checks on a non-empty batch, in torch's order, types and words."""
    channels = input.shape[1]
    if running_mean is None and not training:
        raise RuntimeError("running_mean must be defined in evaluation mode")
    if running_var is None and not training:
        raise RuntimeError("running_var must be defined in evaluation mode")
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != channels:
            raise RuntimeError(f"{name} should contain {channels} elements not {t.numel()}")
    if input.dtype not in _FLOATS:
        raise NotImplementedError(f'"batch_norm" not implemented for \'{_type_name(input.dtype)}\'')
    params = [t for t in (weight, bias, running_mean, running_var) if t is not None]
    if params and params[0].dtype != input.dtype and input.is_cpu:
        # torch's CPU rule: half-precision input may use float32 parameters, nothing else mixes
        if any(t.dtype != torch.float32 for t in params):
            raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of Float")
        if input.dtype not in _HALVES:
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")


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
        meaning; Keras and CS231n call ``1 - momentum`` the momentum). Any
        number, as in torch (values outside [0, 1] extrapolate). The modules
        turn ``momentum=None`` into ``1 / num_batches_tracked`` before calling
        this function, as torch does.
    eps : float, default 1e-5
        Added to the variance; must be positive in training, as in torch.

    Returns
    -------
    Tensor of the shape, dtype and device of ``input``; channels-last input
    gives channels-last output.

    Raises
    ------
    ValueError, RuntimeError, NotImplementedError
        torch's errors, with torch's types and messages: one value per channel
        in training; ``eps <= 0`` in training or ``eps < 0`` in eval; only one
        of the running statistics given in training; running statistics
        missing in eval; a parameter or statistic without ``C`` elements
        ("running_mean should contain 3 elements not 4"); an integer, bool or
        complex input; a float64 input with float32 parameters or any other
        mix torch's CPU kernel refuses ("mixed dtype (CPU): ...").
    RuntimeError
        Under ``torch.jit.trace`` (bnlib's own message: numpy is invisible to
        the tracer; trace with ``torch.nn.BatchNorm*d``).

    Notes
    -----
    Training mode runs the forward and backward passes of
    :class:`BatchNormFunction` (:func:`bnlib.batchnorm.batchnorm_forward`,
    :func:`bnlib.batchnorm.batchnorm_backward`) and, in the same call,
    :func:`bnlib.batchnorm.update_running_stats` with the batch's mean and
    biased variance over ``m = N * prod(spatial)`` values per channel, which
    stores the unbiased ``m / (m - 1)`` variance:
    ``running = (1 - momentum) * running + momentum * batch``. Eval mode runs
    :class:`BatchNormInferenceFunction`.

    **Empty batches** (no values at all) follow torch: the output is
    ``input.clone() * weight[0] + bias[0]`` (empty, differentiable, zero
    parameter gradients) and the running statistics are left alone.

    **Which arithmetic runs.** bnlib's numpy functions run for plain CPU
    tensors, which is every ordinary use. The same formulas are evaluated with
    torch operations (in float64, float32 for half input, as the core sums)
    when numpy cannot take part: under ``torch.func`` transforms (``vmap``,
    ``grad``, ``jacrev``, ``jvp``: numpy cannot see batched or
    gradient-tracking tensors), for tensors on other devices (meta, GPU) or of
    tensor subclasses, for values the core refuses (NaN/inf: torch propagates
    them, as do a negative running variance and a momentum outside [0, 1]),
    and for the gradient itself when ``create_graph=True``. Under
    ``torch.compile`` this function is excluded from the graph (a graph break)
    and runs eagerly, so compiled models compute with numpy too; ``torch.export``
    traces the torch-operation formulas.

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
    if torch.compiler.is_compiling():
        return _batch_norm_eager(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps):
    if torch._C._get_tracing_state() is not None:
        raise RuntimeError(
            "bnlib.nn's batch norm computes in numpy, which torch.jit.trace cannot record "
            "(the trace would hold this batch's numbers as constants). Trace or export a model "
            "with torch.nn.BatchNorm1d/2d/3d instead: it loads bnlib's state_dict unchanged."
        )
    size = input.size()
    if training:
        _verify_batch_size(size)
        if eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must either both be None or neither be None")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")

    if input.numel() == 0:
        # torch's empty-batch result, by torch's own operations (raises for C = 0, as in torch)
        out = input.clone()
        if weight is not None:
            out = out * weight.select(0, 0)
        if bias is not None:
            out = out + bias.select(0, 0)
        return out

    _check_like_torch(input, running_mean, running_var, weight, bias, training)
    numpy_path = _numpy_can_run(input)

    if not training:
        if numpy_path:
            return BatchNormInferenceFunction.apply(input, weight, bias, running_mean, running_var, eps)
        return _inference_formulas(input, weight, bias, running_mean, running_var, eps)

    if numpy_path:
        return _TrainAndUpdate.apply(input, weight, bias, eps, running_mean, running_var, momentum)
    y, batch_mean, batch_var = _train_formulas(input, weight, bias, eps)
    if running_mean is not None:
        m = input.numel() // size[1]
        _update_running_formulas(running_mean, running_var, batch_mean, batch_var, m, momentum)
    return y


_batch_norm_eager = torch.compiler.disable(
    _batch_norm,
    reason="bnlib.nn computes batch norm with numpy, which runs eagerly: compile without "
    "fullgraph=True (one graph break per bnlib BN layer), or use torch.nn.BatchNorm*d",
)


def _update_running_numpy(running_mean, running_var, batch_mean, batch_var, m, momentum):
    """:func:`bnlib.batchnorm.update_running_stats`'s formula (numpy statistics), written into the buffers.

    Any momentum, NaN statistics and a negative running variance go through the formula as in
    torch. Like torch's kernel, float32/float64 buffers are written in place through numpy.
    """
    views = _to_numpy(running_mean), _to_numpy(running_var)  # copies for half precision
    new = _update_running_stats(*views, batch_mean, batch_var, m, momentum)  # callers silence warnings
    for buffer, view, value in zip((running_mean, running_var), views, new):
        if buffer.dtype in _HALVES:
            buffer.copy_(torch.from_numpy(value))  # called from Function.forward: gradients are off
        else:
            view[...] = value


# --------------------------------------------------------------------------- modules


def _convert_sync_code():
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm.__func__.__code__


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

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every submodule before compiling.
        raise RuntimeError(
            f"bnlib.nn.{type(self).__name__} cannot be compiled by TorchScript: its forward and "
            "backward passes run bnlib's numpy code, which TorchScript cannot compile. Script a "
            f"model with torch.nn.{type(self).__name__} instead (it loads this module's "
            "state_dict unchanged), or use torch.compile, which runs bnlib.nn."
        )

    # torch.nn.SyncBatchNorm.convert_sync_batchnorm would replace this module by torch's
    # SyncBatchNorm (bnlib's arithmetic silently gone). It asks hasattr(module, "qconfig")
    # after building the replacement: that question, from that function, raises.
    @property
    def qconfig(self):
        if sys._getframe(1).f_code is _convert_sync_code():
            raise TypeError(
                f"torch.nn.SyncBatchNorm.convert_sync_batchnorm would replace bnlib.nn."
                f"{type(self).__name__} by torch's SyncBatchNorm, silently dropping bnlib's "
                "arithmetic. Use bnlib.nn.SyncBatchNorm.convert_sync_batchnorm(model), or "
                "replace the layer by torch.nn.BatchNorm*d first. (torch converts modules in "
                "order: layers before this one may already have been replaced.)"
            )
        try:
            return self.__dict__["_bnlib_qconfig"]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'qconfig'") from None

    @qconfig.setter
    def qconfig(self, value):
        self.__dict__["_bnlib_qconfig"] = value

    @qconfig.deleter
    def qconfig(self):
        self.__dict__.pop("_bnlib_qconfig", None)


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
    **Conventions and semantics are torch's**, so this module is a drop-in
    replacement for ``torch.nn.{name}`` (it subclasses it): the same
    constructor, parameters, buffers, ``state_dict`` keys (``load_state_dict``
    works both ways), ``repr``, ``reset_parameters()``,
    ``reset_running_stats()`` and input checks ({dims}). In training, the
    batch mean and *biased* batch variance normalise; the running variance
    stores the *unbiased* one; the counter ``num_batches_tracked`` is
    incremented (also for an empty batch, which leaves the statistics alone).
    In eval mode, the running statistics normalise. Errors, NaN/inf
    propagation, memory format, second derivatives, ``torch.func``
    (``vmap``, ``grad``, ``jacrev``, ``functional_call``), ``torch.compile``
    (backends ``eager``, ``aot_eager`` and ``inductor``) and the meta device
    behave as with torch's module.

    **The arithmetic is bnlib's**: :meth:`forward` calls
    :func:`bnlib.nn.batch_norm`, which computes forward and backward with
    :func:`bnlib.batchnorm.batchnorm_forward`,
    :func:`~bnlib.batchnorm.batchnorm_backward`,
    :func:`~bnlib.batchnorm.batchnorm_inference` and
    :func:`~bnlib.batchnorm.update_running_stats` in numpy, never torch's
    ``batch_norm`` kernel.

    **Differences from torch's module that remain:**

    - Where numpy cannot run, the same formulas run as torch operations (see
      :func:`bnlib.nn.batch_norm`, "Which arithmetic runs"): under
      ``torch.func`` transforms, on non-CPU devices, for non-finite values
      and for gradients taken with ``create_graph=True``. Results agree with
      torch's to rounding, not bit for bit.
    - Half precision (float16, bfloat16) is computed in float32 and rounded
      once, and float32 sums accumulate in float64: results can differ from
      torch's in the last bits.
    - Tensors on an accelerator are computed with torch operations (no
      numpy); torch's cuDNN/fused kernels are never used. (Not tested here:
      the book's machines have no GPU.)
    - On the meta device, integer input raises torch's CPU
      ``NotImplementedError`` (torch's meta kernels fail with other messages);
      mixed dtypes run there, as in torch.
    - ``vmap`` over a module that updates running statistics in training
      raises, as torch's does, but with functorch's generic in-place message
      rather than torch's BatchNorm-specific one.
    - ``torch.jit.script`` and ``torch.jit.trace`` (hence TorchScript-based
      ONNX export) raise a ``RuntimeError`` naming the alternative (torch's
      module, which loads this module's ``state_dict``).
    - ``torch.compile`` breaks the graph at each of these layers (numpy runs
      eagerly between compiled pieces): correct, but not fused, and
      ``fullgraph=True`` raises (the message says why). ``torch.export``
      records the formulas as torch operations (bnlib's, not torch's kernel).
    - ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` raises a
      ``TypeError`` instead of swapping this module for torch's
      ``SyncBatchNorm``; use ``bnlib.nn.SyncBatchNorm.convert_sync_batchnorm``.
    - Calling :class:`BatchNormFunction` directly inside ``torch.func``
      transforms raises torch's ``setup_context`` error (the modules and
      :func:`batch_norm` handle transforms themselves).
    - Python-level overhead: at small batches a call costs more than torch's
      fused kernel (an ``autograd.Function`` round trip alone costs about as
      much as torch's whole BN at (60, 100)); ``benchmarks/bench_batchnorm.py``
      measures it.
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
