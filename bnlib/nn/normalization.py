"""PyTorch modules for the normalization family, computed by ``bnlib``'s formulas.

* :class:`LayerNorm`, :class:`GroupNorm`, :class:`InstanceNorm1d`, :class:`InstanceNorm2d`
  subclass torch's modules of the same names (same constructor, parameters, buffers,
  ``state_dict``, ``repr``); their ``forward`` runs :mod:`bnlib.normalization`'s numpy
  forward and backward passes inside a ``torch.autograd.Function``.
* :class:`BatchRenorm1d`, :class:`BatchRenorm2d` (torch has none): BatchNorm's
  constructor and buffers plus ``r_max``, ``d_max`` and the warm-up schedule of Ioffe
  (2017); training runs :func:`bnlib.batchrenorm_forward` / ``_backward``.
* :class:`DecorrelatedBatchNorm` (Huang et al., 2018): ZCA whitening over groups of
  channels, written with torch operations so that autograd differentiates through the
  eigendecomposition; its whitening is :func:`bnlib.zca_whiten`'s.

The numpy-backed modules need CPU tensors of float32 or float64 (half precision is
computed in float32) and are differentiable once: a second derivative raises torch's
error for a ``once_differentiable`` function. An input with a NaN or an infinity is handed to
torch's own module, so that it propagates as there (``GradScaler`` relies on that); bnlib's
numpy core refuses such input. TorchScript, ``torch.func`` transforms and other devices are
not supported (bnlib.nn's BatchNorm modules cover those; these modules
are for reading and for the book's experiments).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import batchnorm as _bn
from .. import normalization as _norm

__all__ = [
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "DecorrelatedBatchNorm",
]

_HALVES = (torch.float16, torch.bfloat16)


def _np(t):
    t = t.detach()
    return (t.float() if t.dtype in _HALVES else t).numpy()


def _torch(arr, dtype):
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t if t.dtype == dtype else t.to(dtype)


def _require_cpu(x, name):
    if x.device.type != "cpu" or torch._C._are_functorch_transforms_active():
        raise RuntimeError(
            f"bnlib.nn.{name} computes with numpy and needs plain CPU tensors; got a tensor on "
            f"{x.device} (or inside a torch.func transform). Use torch.nn's module there."
        )


class _NumpyNorm(torch.autograd.Function):
    """``y = forward(x, gamma, beta)`` and its gradients, both from ``bnlib``'s numpy code.

    ``forward_fn(x, gamma, beta) -> (y, cache)`` and ``backward_fn(dy, cache) -> (dx, dgamma,
    dbeta)`` are numpy functions; ``gamma`` and ``beta`` are tensors (ones and zeros when the
    module has no affine parameters, which then get no gradient).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, forward_fn, backward_fn):
        y, cache = forward_fn(_np(x), _np(weight), _np(bias))
        ctx.cache, ctx.backward_fn, ctx.dtypes = cache, backward_fn, (x.dtype, weight.dtype, bias.dtype)
        return _torch(y, x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        dx, dgamma, dbeta = ctx.backward_fn(_np(dy.contiguous()), ctx.cache)
        grads = [_torch(g, dt) for g, dt in zip((dx, dgamma, dbeta), ctx.dtypes)]
        needs = ctx.needs_input_grad[:3]
        return tuple(g if need else None for g, need in zip(grads, needs)) + (None, None)


def _params(module, shape, like):
    """The module's weight and bias, or constant ones and zeros of ``shape``."""
    weight = module.weight if module.weight is not None else torch.ones(shape, dtype=like.dtype)
    bias = module.bias if getattr(module, "bias", None) is not None else torch.zeros(shape, dtype=like.dtype)
    return weight, bias


# --------------------------------------------------------------------------- LayerNorm, GroupNorm


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` computed by :func:`bnlib.layernorm_forward` / ``_backward``.

    The input's last ``len(normalized_shape)`` axes are standardised per position of the
    leading axes: the leading axes are flattened into bnlib's batch axis, so the statistics
    are taken over every axis but that one. Same in training and eval mode.

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import LayerNorm
    >>> ln = LayerNorm(3, dtype=torch.float64)
    >>> ln(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)).detach().numpy().round(4)
    array([[-1.2247,  0.    ,  1.2247]])
    """

    def forward(self, input):
        _require_cpu(input, type(self).__name__)
        if not bool(torch.isfinite(input).all()):  # NaN/inf propagate as in torch's module (bnlib's core refuses them)
            return super().forward(input)
        ns = tuple(self.normalized_shape)
        if tuple(input.shape[input.dim() - len(ns):]) != ns or input.dim() < len(ns):
            raise RuntimeError(
                f"Given normalized_shape={list(ns)}, expected input with shape [*, "
                f"{', '.join(map(str, ns))}], but got input of size{list(input.shape)}"
            )
        flat = input.reshape((-1,) + ns)
        weight, bias = _params(self, ns, input)
        eps = self.eps
        y = _NumpyNorm.apply(flat, weight, bias,
                             lambda x, g, b: _norm.layernorm_forward(x, g, b, eps), _norm.layernorm_backward)
        return y.reshape(input.shape)


class GroupNorm(torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by :func:`bnlib.groupnorm_forward` / ``_backward``.

    Same in training and eval mode; accepts ``(N, C, *)`` input.

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import GroupNorm
    >>> GroupNorm(2, 4)(torch.randn(3, 4, 5)).shape
    torch.Size([3, 4, 5])
    """

    def forward(self, input):
        _require_cpu(input, type(self).__name__)
        if not bool(torch.isfinite(input).all()):  # NaN/inf propagate as in torch's module (bnlib's core refuses them)
            return super().forward(input)
        if input.dim() < 2 or input.shape[1] != self.num_channels:
            raise RuntimeError(
                f"Expected input of shape (N, {self.num_channels}, *), got {list(input.shape)}"
            )
        weight, bias = _params(self, (self.num_channels,), input)
        groups, eps = self.num_groups, self.eps
        return _NumpyNorm.apply(input, weight, bias,
                                lambda x, g, b: _norm.groupnorm_forward(x, groups, g, b, eps),
                                _norm.groupnorm_backward)


# --------------------------------------------------------------------------- InstanceNorm


class _InstanceNormForward:
    """torch's ``_InstanceNorm.forward`` with ``F.instance_norm`` replaced by bnlib's formulas.

    Training (or no running statistics): per-instance statistics through
    :func:`bnlib.instancenorm_forward`; with ``track_running_stats=True`` the buffers are
    updated as torch does, with the batch average of the instances' means and unbiased
    variances. Eval with running statistics: :func:`bnlib.batchnorm_inference`'s formula.
    """

    def forward(self, input):
        _require_cpu(input, type(self).__name__)
        if not bool(torch.isfinite(input).all()):  # NaN/inf propagate as in torch's module (bnlib's core refuses them)
            return super().forward(input)
        self._check_input_dim(input)
        unbatched = input.dim() == self._get_no_batch_dim()
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            if self.affine:
                raise ValueError(
                    f"expected input's size at dim=1 to match num_features ({self.num_features}), "
                    f"but got: {x.shape[1]}."
                )
        c = x.shape[1]
        weight, bias = _params(self, (c,), x)
        eps = self.eps
        if self.training or not self.track_running_stats:
            y = _NumpyNorm.apply(x, weight, bias, lambda a, g, b: _norm.instancenorm_forward(a, g, b, eps),
                                 _norm.instancenorm_backward)
            if self.training and self.track_running_stats:
                self._update_running(x)
        else:  # eval with running statistics: BN's inference formula per channel
            shape = (1, -1) + (1,) * (x.dim() - 2)
            inv = torch.rsqrt(self.running_var.reshape(shape).to(x.dtype) + eps)
            y = (x - self.running_mean.reshape(shape).to(x.dtype)) * inv * weight.reshape(shape) \
                + bias.reshape(shape)
        return y.squeeze(0) if unbatched else y

    @torch.no_grad()
    def _update_running(self, x):
        axes = tuple(range(2, x.dim()))
        m = math.prod(x.shape[2:])
        xs = _np(x).astype(np.float64)
        mean = xs.mean(axis=axes).mean(axis=0)  # the batch average of the instances' statistics
        var = xs.var(axis=axes).mean(axis=0)
        momentum = 0.1 if self.momentum is None else self.momentum  # torch: None -> 0.1 here too
        rm, rv = _bn.update_running_stats(_np(self.running_mean).astype(np.float64),
                                          _np(self.running_var).astype(np.float64), mean, var, m, momentum)
        self.running_mean.copy_(torch.from_numpy(rm))
        self.running_var.copy_(torch.from_numpy(rv))


class InstanceNorm1d(_InstanceNormForward, torch.nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` over ``(N, C, L)`` or ``(C, L)``, computed by ``bnlib``."""


class InstanceNorm2d(_InstanceNormForward, torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` over ``(N, C, H, W)`` or ``(C, H, W)``, computed by ``bnlib``."""


# --------------------------------------------------------------------------- batch renormalization


class _BatchRenorm:
    """Batch renormalization (Ioffe, 2017) with BatchNorm's constructor, buffers and state_dict.

    Extra keyword arguments: ``r_max=3.0``, ``d_max=5.0`` and ``warmup=(5000, 40000,
    25000)``, the paper's schedule in steps (counted by ``num_batches_tracked``): ``r_max=1``
    and ``d_max=0`` (plain BN) for the first ``warmup[0]`` steps, then relaxed linearly to
    reach ``r_max`` at step ``warmup[1]`` and ``d_max`` at step ``warmup[2]``. Pass
    ``warmup=None`` to use ``r_max`` and ``d_max`` from the first step. Eval mode is BN's
    inference with the running statistics; training mode runs
    :func:`bnlib.batchrenorm_forward` and updates the running statistics as BN does
    (:func:`bnlib.update_running_stats`).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, r_max=3.0, d_max=5.0, warmup=(5000, 40000, 25000)):
        if not track_running_stats:
            raise ValueError("batch renormalization corrects towards the running statistics: "
                             "track_running_stats must be True")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        if not r_max >= 1 or not d_max >= 0:
            raise ValueError(f"need r_max >= 1 and d_max >= 0, got r_max={r_max!r}, d_max={d_max!r}")
        if warmup is not None and not (len(warmup) == 3 and 0 <= warmup[0] <= min(warmup[1:])):
            raise ValueError(f"warmup must be (constant_steps, r_max_step, d_max_step) with "
                             f"constant_steps first, got {warmup!r}")
        self.r_max, self.d_max, self.warmup = float(r_max), float(d_max), warmup

    def extra_repr(self):
        return super().extra_repr() + f", r_max={self.r_max}, d_max={self.d_max}, warmup={self.warmup}"

    def limits(self, step=None):
        """``(r_max, d_max)`` in force at ``step`` (default: the current ``num_batches_tracked``)."""
        if self.warmup is None:
            return self.r_max, self.d_max
        step = int(self.num_batches_tracked) if step is None else step
        start, r_end, d_end = self.warmup

        def ramp(end):
            return 1.0 if step >= end else max(0.0, (step - start) / max(end - start, 1))

        return 1.0 + (self.r_max - 1.0) * ramp(r_end), self.d_max * ramp(d_end)

    def forward(self, input):
        _require_cpu(input, type(self).__name__)
        self._check_input_dim(input)
        c = input.shape[1]
        weight, bias = _params(self, (c,), input)
        if not self.training:
            shape = (1, -1) + (1,) * (input.dim() - 2)
            inv = torch.rsqrt(self.running_var.reshape(shape).to(input.dtype) + self.eps)
            return (input - self.running_mean.reshape(shape).to(input.dtype)) * inv * weight.reshape(shape) \
                + bias.reshape(shape)
        r_max, d_max = self.limits()
        self.num_batches_tracked.add_(1)
        rm, rv, eps = _np(self.running_mean), _np(self.running_var), self.eps
        holder = {}

        def forward_fn(x, g, b):
            y, cache = _norm.batchrenorm_forward(x, g, b, rm.astype(x.dtype), rv.astype(x.dtype), r_max, d_max, eps)
            holder["cache"] = cache
            return y, cache

        y = _NumpyNorm.apply(input, weight, bias, forward_fn, _norm.batchrenorm_backward)
        cache = holder["cache"]
        self.last_r, self.last_d = cache.r, cache.d  # for inspection
        momentum = self.momentum
        n = input.numel() // c
        with torch.no_grad():
            new_mean, new_var = _bn.update_running_stats(
                rm, rv, cache.mean.astype(rm.dtype), cache.var.astype(rm.dtype), n, momentum,
                num_batches_tracked=int(self.num_batches_tracked))
            self.running_mean.copy_(torch.from_numpy(np.asarray(new_mean)))
            self.running_var.copy_(torch.from_numpy(np.asarray(new_var)))
        return y


class BatchRenorm1d(_BatchRenorm, torch.nn.BatchNorm1d):
    __doc__ = "Batch renormalization over ``(N, C)`` or ``(N, C, L)`` input.\n\n" + _BatchRenorm.__doc__


class BatchRenorm2d(_BatchRenorm, torch.nn.BatchNorm2d):
    __doc__ = "Batch renormalization over ``(N, C, H, W)`` input.\n\n" + _BatchRenorm.__doc__


# --------------------------------------------------------------------------- decorrelated BN


class DecorrelatedBatchNorm(torch.nn.Module):
    """Decorrelated Batch Normalization (Huang et al., 2018): ZCA whitening over groups of channels.

    Parameters
    ----------
    num_features : int
        ``C``, the channels of an ``(N, C)`` or ``(N, C, *spatial)`` input.
    group_size : int, default 16
        Channels whitened together (``C`` must be a multiple); ``group_size=1`` is BN.
    eps : float, default 1e-5
        Added to the covariance's diagonal: ``W = (Sigma + eps I)^(-1/2)``.
    momentum : float, default 0.1
        Weight of the new batch in the running mean and running whitening matrix.
    affine : bool, default True
        A per-channel scale and shift after the whitening (the representation recovery).
    iterations : int, optional
        ``None`` (default): the eigendecomposition, exact ZCA (Huang et al., 2018). An int
        ``T``: IterNorm (Huang et al., 2019), ``T`` Newton iterations towards
        ``(Sigma + eps I)^(-1/2)`` instead, only matrix products: stable when the batch has
        fewer values than the group has channels (``Sigma`` singular, repeated eigenvalues,
        where the eigendecomposition's gradient divides by zero), and an approximate
        whitening for small ``T`` (the paper uses 5).

    Notes
    -----
    In training, per group of channels, with ``m = N * prod(spatial)`` values per channel:
    ``mu`` the mean, ``Sigma`` the biased covariance, ``Sigma + eps I = U diag(lam) U^T``,
    ``W = U diag(lam^-1/2) U^T`` and ``x_white = W (x - mu)``: the ZCA whitening of
    :func:`bnlib.zca_whiten`. Autograd differentiates through ``torch.linalg.eigh``. Eval
    mode uses the running mean and running ``W``. One eigendecomposition of a
    ``group_size``-square matrix per group and step: the cost the paper's grouping bounds.

    IterNorm: with ``S = (Sigma + eps I) / tr(Sigma + eps I)``, ``P_0 = I`` and
    ``P_k = (3 P_{k-1} - P_{k-1}^3 S) / 2``, ``W = P_T / sqrt(tr(Sigma + eps I))``; ``P_k``
    converges to ``S^(-1/2)`` because the eigenvalues of ``S`` lie in ``(0, 1]``. This uncoupled
    iteration amplifies rounding errors once converged, so many more iterations than needed
    (tens, for a well-conditioned ``S``) drift away again; the paper uses 5.
    """

    def __init__(self, num_features, group_size=16, eps=1e-5, momentum=0.1, affine=True, device=None, dtype=None,
                 *, iterations=None):
        super().__init__()
        if iterations is not None and (isinstance(iterations, bool) or int(iterations) != iterations
                                       or iterations < 1):
            raise ValueError(f"iterations must be None (eigendecomposition) or a positive int, got {iterations!r}")
        self.iterations = iterations
        if group_size < 1 or num_features % group_size:
            raise ValueError(f"num_features ({num_features}) must be a multiple of group_size ({group_size})")
        self.num_features, self.group_size = num_features, group_size
        self.eps, self.momentum, self.affine = eps, momentum, affine
        kw = {"device": device, "dtype": dtype}
        g = num_features // group_size
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features, **kw))
            self.bias = torch.nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(g, group_size, 1, **kw))
        self.register_buffer("running_whitening", torch.eye(group_size, **kw).repeat(g, 1, 1))

    def extra_repr(self):
        return (f"{self.num_features}, group_size={self.group_size}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}"
                + ("" if self.iterations is None else f", iterations={self.iterations}"))

    def _grouped(self, x):
        """``x`` as ``(G, group_size, m)``: each group's channels by their ``m`` values."""
        c = x.shape[1]
        if x.dim() < 2 or c != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, *), got {list(x.shape)}")
        cols = x.transpose(0, 1).reshape(c, -1)
        return cols.reshape(c // self.group_size, self.group_size, -1)

    def whitening(self, x):
        """Training-mode ``(mean, W)`` of ``x`` per group: shapes ``(G, g, 1)`` and ``(G, g, g)``."""
        xg = self._grouped(x)
        m = xg.shape[-1]
        if m < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input of shape "
                             f"{list(x.shape)}")
        mean = xg.mean(-1, keepdim=True)
        xc = xg - mean
        eye = torch.eye(self.group_size, dtype=x.dtype, device=x.device)
        cov = xc @ xc.transpose(1, 2) / m + self.eps * eye  # Sigma + eps I
        if self.iterations is None:
            lam, u = torch.linalg.eigh(cov)
            w = u @ torch.diag_embed(lam.rsqrt()) @ u.transpose(1, 2)  # U diag(lam^-1/2) U^T
            return mean, w
        trace = cov.diagonal(dim1=1, dim2=2).sum(-1).reshape(-1, 1, 1)
        s = cov / trace  # eigenvalues in (0, 1]
        p = eye.expand_as(cov)
        for _ in range(self.iterations):  # P_k = (3 P - P^3 S) / 2
            p = 1.5 * p - 0.5 * (p @ p @ p @ s)
        return mean, p / trace.sqrt()

    def forward(self, input):
        xg = self._grouped(input)
        if self.training:
            mean, w = self.whitening(input)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_whitening.lerp_(w.detach(), self.momentum)
        else:
            mean, w = self.running_mean, self.running_whitening
        white = w @ (xg - mean)  # (G, g, m)
        c = input.shape[1]
        spatial = input.shape[2:]
        y = white.reshape(c, input.shape[0], *spatial).transpose(0, 1)
        if self.affine:
            shape = (1, -1) + (1,) * (input.dim() - 2)
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y.contiguous()
