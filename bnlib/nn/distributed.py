"""Batch Normalization across processes: ``SyncBatchNorm`` on ``torch.distributed``, ``GhostBatchNorm``.

:class:`SyncBatchNorm` is a drop-in for ``torch.nn.SyncBatchNorm`` that runs on
any ``torch.distributed`` backend, gloo on CPU processes included (torch's own
module refuses CPU tensors). In training it normalises every process's slice of
the batch with the statistics of the *whole* batch of its process group, so k
processes with ``m / k`` examples each compute what one process would compute
on all ``m``. :class:`GhostBatchNorm` (Hoffer et al., 2017) does the opposite:
it normalises fixed-size slices of one process's batch with their own
statistics.

The per-process arithmetic is ``bnlib``'s numpy core
(:func:`bnlib.batchnorm.batchnorm_inference` applied with the group's
statistics, :func:`bnlib.batchnorm.update_running_stats` with the group's
count); only the sums that cross processes go through ``torch.distributed``
collectives, in float64.

This module imports torch; the core ``bnlib`` package never imports it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from ..batchnorm import batchnorm_inference, update_running_stats
from .batchnorm import batch_norm

__all__ = [
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "GhostBatchNorm",
    "local_moments",
    "merge_moments",
    "check_merge_two",
]


# --------------------------------------------------------------------------- numpy pieces


def _channel_axes(ndim):
    """Every axis but axis 1 (the channels)."""
    return (0,) + tuple(range(2, ndim))


def _per_channel(v, ndim):
    """Reshape a ``(C,)`` vector to broadcast against ``(N, C, *spatial)``."""
    return np.asarray(v).reshape((1, -1) + (1,) * (ndim - 2))


def local_moments(x):
    """Count, mean and centred sum of squares per channel of one process's batch.

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial)
        ``N`` may be 0.

    Returns
    -------
    count : int
        Values per channel, ``m = N * prod(spatial)``.
    mean : ndarray of shape (C,), float64
        Zeros when ``count == 0``.
    m2 : ndarray of shape (C,), float64
        ``sum((x - mean) ** 2)`` per channel, from centred values (two passes).

    Examples
    --------
    >>> import numpy as np
    >>> count, mean, m2 = local_moments(np.array([[1.0], [3.0]]))
    >>> count, mean.tolist(), m2.tolist()
    (2, [2.0], [2.0])
    """
    axes = _channel_axes(x.ndim)
    count = int(x.size // x.shape[1])
    if count == 0:
        zeros = np.zeros(x.shape[1], np.float64)
        return 0, zeros, zeros.copy()
    mean = x.mean(axis=axes, dtype=np.float64)
    centred = x.astype(np.float64, copy=False) - _per_channel(mean, x.ndim)
    return count, mean, (centred * centred).sum(axis=axes)


def merge_moments(counts, means, m2s):
    """Merge per-process moments into those of the whole batch (Chan et al.).

    Parameters
    ----------
    counts : ndarray of shape (k,)
        Values per channel on each of ``k`` processes (0 allowed).
    means, m2s : ndarray of shape (k, C)
        Each process's mean and centred sum of squares (:func:`local_moments`).

    Returns
    -------
    count : int
    mean : ndarray of shape (C,)
    var : ndarray of shape (C,)
        The biased variance ``m2 / count`` of the whole batch.

    Notes
    -----
    With ``n = sum(n_i)``, ``mean = sum(n_i * mean_i) / n`` and

    .. math::

        M_2 = \\sum_i M_{2,i} + \\sum_i n_i (\\bar x_i - \\bar x)^2,

    Chan, Golub & LeVeque's (1983) pairwise update applied to all parts at
    once.
    Every term is a sum of squares of *centred* values, so nothing cancels; the
    textbook alternative ``sum(x**2) / n - mean**2`` subtracts two numbers of
    size ``mean**2`` and, in float32, loses the variance entirely once
    ``|mean| / std`` reaches about ``1 / sqrt(float32 eps)`` (~3000).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0], [2.0], [4.0], [7.0]])
    >>> parts = [local_moments(x[:1]), local_moments(x[1:])]
    >>> n, mean, var = merge_moments(*(np.array(p) for p in zip(*parts)))
    >>> n, mean.tolist(), var.tolist() == x.var(axis=0).tolist()
    (4, [3.5], True)
    """
    counts = np.asarray(counts, np.float64)
    means = np.asarray(means, np.float64)
    m2s = np.asarray(m2s, np.float64)
    n = counts.sum()
    if n == 0:
        return 0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    weights = counts[:, None]
    mean = (weights * means).sum(axis=0) / n
    m2 = m2s.sum(axis=0) + (weights * (means - mean) ** 2).sum(axis=0)
    return int(round(n)), mean, m2 / n


def _normalize_with(x, gamma, beta, mean, var, eps):
    """``gamma * (x - mean) / sqrt(var + eps) + beta``: bnlib's :func:`batchnorm_inference`.

    The core refuses NaN and infinity with a ``ValueError``; torch propagates them (and
    ``GradScaler`` relies on that), and in a process group a refusal on one process would
    leave the others waiting in the next collective. So non-finite values take the same
    formula in plain numpy, which propagates them.
    """
    try:
        return batchnorm_inference(x, gamma, beta, mean, var, eps=eps)
    except ValueError:
        with np.errstate(all="ignore"):
            scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
            nd = x.ndim
            y = (x - _per_channel(mean, nd)) * _per_channel(scale, nd) + _per_channel(beta, nd)
        return y.astype(x.dtype, copy=False)


def _updated_running_stats(running_mean, running_var, mean, var, n, momentum):
    """:func:`bnlib.batchnorm.update_running_stats`, or its formula where the core refuses NaN."""
    try:
        return update_running_stats(running_mean, running_var, mean, var, n, momentum=momentum)
    except ValueError:
        with np.errstate(all="ignore"):
            new_mean = (1 - momentum) * running_mean + momentum * mean
            new_var = (1 - momentum) * running_var + momentum * var * (n / (n - 1.0))
        return new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)


def check_merge_two(fn, verbose=True):
    """Self-check for chapter 12's exercise: ``fn`` merges the moments of two parts.

    ``fn(n_a, mean_a, m2_a, n_b, mean_b, m2_b) -> (n, mean, m2)`` with counts, ``(C,)``
    means and ``(C,)`` centred sums of squares (:func:`local_moments`), compared with
    :func:`merge_moments` on uneven parts, an empty part and single examples, through
    :func:`bnlib.checks.compare`.
    """
    from .. import checks

    def reference(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
        n, mean, var = merge_moments([n_a, n_b], [mean_a, mean_b], [m2_a, m2_b])
        return n, mean, var * n

    x = np.random.default_rng(12).normal(5.0, 2.0, size=(23, 4))
    splits = {"uneven parts": (0, 7, 23), "an empty first part": (0, 0, 23),
              "an empty second part": (0, 9, 9), "one example each": (3, 4, 5),
              "far from zero": (0, 11, 23)}
    cases = []
    for name, (start, middle, end) in splits.items():
        data = x + 1e4 if name == "far from zero" else x
        parts = local_moments(data[start:middle]) + local_moments(data[middle:end])
        cases.append((name, parts))
    return checks.compare(fn, reference, cases, name="check_merge_two",
                          output_names=("n", "mean", "m2"), verbose=verbose)


# --------------------------------------------------------------------------- tensors <-> numpy


def _to_numpy(t):
    """A numpy view (CPU) or copy (other devices; half precision computed in float32)."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.cpu().numpy()


def _to_tensor(arr, like):
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=like.device, dtype=like.dtype)


def _group_size(process_group):
    return dist.get_world_size(process_group)


# --------------------------------------------------------------------------- autograd Function


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode Batch Normalization over the batch of a whole process group.

    ``SyncBatchNormFunction.apply(x, weight, bias, eps, process_group) -> (y, mean, var, count)``

    Every process of ``process_group`` must call it, in the same order as its
    other collectives, also with an empty batch (``N = 0``).

    Parameters
    ----------
    x : Tensor of shape (N, C) or (N, C, *spatial)
        This process's slice of the batch.
    weight, bias : Tensor of shape (C,) or None
        ``gamma`` and ``beta`` (``None``: ones and zeros, no gradient).
    eps : float
    process_group : ProcessGroup or None
        ``None`` is the default (world) group.

    Returns
    -------
    y : Tensor of the shape, dtype and device of ``x``
    mean, var : Tensor of shape (C,), float64
        The group's batch mean and *biased* batch variance (non-differentiable).
    count : int
        Values per channel in the group's batch.

    Notes
    -----
    **Forward.** Each process computes its count ``n_i``, mean and centred sum
    of squares per channel (:func:`local_moments`); one ``all_gather`` of these
    ``2C + 1`` float64 numbers gives every process all of them, and
    :func:`merge_moments` (Chan's formula) turns them into the group's mean and
    variance. Then ``y = batchnorm_inference(x, gamma, beta, mean, var, eps)``,
    bnlib's per-channel affine map, is exactly training-mode BN with the group's
    statistics. NaN and infinity propagate to every process (as in torch) instead of
    raising on one and leaving the others waiting. An all-gather (as torch's module) rather than all-reducing
    ``(n, sum x, sum x**2)``: the sums of squares would cancel in float32 (see
    :func:`merge_moments`), while Chan's merge only adds non-negative terms.

    **Backward.** With ``x_hat`` normalised by the group's statistics and
    ``m`` the group's count, the gradient of BN is

    .. math::

        dx_i = \\frac{\\gamma}{\\sqrt{\\sigma^2+\\epsilon}}\\Big(dy_i
        - \\tfrac{1}{m}\\textstyle\\sum_j dy_j
        - \\hat x_i \\tfrac{1}{m}\\sum_j dy_j \\hat x_j\\Big),

    where the sums run over the *whole* group's batch: one ``all_reduce`` of
    the local ``sum(dy)`` and ``sum(dy * x_hat)`` (``2C`` numbers) supplies
    them. The gradients of ``weight`` and ``bias`` are the *local* sums; data
    parallelism (``DistributedDataParallel``) adds them up across processes,
    exactly as it does for every other parameter. Backward is differentiable
    once.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, process_group):
        x_np = _to_numpy(x)
        c = x_np.shape[1]
        count, mean_i, m2_i = local_moments(x_np)
        mine = torch.from_numpy(np.concatenate([[float(count)], mean_i, m2_i])).to(x.device)
        gathered = [torch.empty_like(mine) for _ in range(_group_size(process_group))]
        dist.all_gather(gathered, mine, group=process_group)
        table = torch.stack(gathered).cpu().numpy()  # (k, 2C + 1)
        n, mean, var = merge_moments(table[:, 0], table[:, 1 : c + 1], table[:, c + 1 :])
        if n < 2:  # every process sees the same n, so every process raises
            raise ValueError(
                "Expected more than 1 value per channel when training, got "
                f"{n} value(s) per channel over the whole process group"
            )
        gamma = _to_numpy(weight) if weight is not None else np.ones(c, x_np.dtype)
        beta = _to_numpy(bias) if bias is not None else np.zeros(c, x_np.dtype)
        inv_std = 1.0 / np.sqrt(var + eps)
        if count > 0:
            y = _normalize_with(x_np, gamma, beta, mean, var, eps)
        else:
            y = np.empty_like(x_np)
        ctx.save_for_backward(x, weight)
        ctx.stats = (n, mean, var, inv_std, gamma, eps, process_group)
        mean_t, var_t = torch.from_numpy(mean).to(x.device), torch.from_numpy(var).to(x.device)
        ctx.mark_non_differentiable(mean_t, var_t)
        return _to_tensor(y, x), mean_t, var_t, n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _dmean, _dvar, _dcount):
        x, weight = ctx.saved_tensors
        n, mean, var, inv_std, gamma, eps, process_group = ctx.stats
        need_dx, need_dweight, need_dbias = ctx.needs_input_grad[:3]
        x_np = _to_numpy(x)
        c, axes = x_np.shape[1], _channel_axes(x_np.ndim)
        dy_np = _to_numpy(dy).astype(x_np.dtype, copy=False)
        if x_np.size > 0:
            ones, zeros = np.ones(c, x_np.dtype), np.zeros(c, x_np.dtype)
            x_hat = _normalize_with(x_np, ones, zeros, mean, var, eps)
            sum_dy = dy_np.sum(axis=axes, dtype=np.float64)
            sum_dy_x_hat = (dy_np * x_hat).sum(axis=axes, dtype=np.float64)
        else:
            x_hat = x_np  # empty
            sum_dy, sum_dy_x_hat = np.zeros(c, np.float64), np.zeros(c, np.float64)
        grad_x = grad_weight = grad_bias = None
        if need_dx:
            sums = torch.from_numpy(np.concatenate([sum_dy, sum_dy_x_hat])).to(x.device)
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=process_group)
            total = sums.cpu().numpy()
            mean_dy, mean_dy_x_hat = total[:c] / n, total[c:] / n
            scale = gamma.astype(np.float64) * inv_std
            nd = x_np.ndim
            with np.errstate(all="ignore"):  # NaN/inf propagate, as in torch
                dx = _per_channel(scale, nd) * (
                    dy_np - _per_channel(mean_dy, nd) - x_hat * _per_channel(mean_dy_x_hat, nd)
                )
            grad_x = _to_tensor(dx, x)
        if need_dweight:
            grad_weight = _to_tensor(sum_dy_x_hat, weight)
        if need_dbias:
            grad_bias = _to_tensor(sum_dy, weight)
        return grad_x, grad_weight, grad_bias, None, None


# --------------------------------------------------------------------------- modules


class SyncBatchNorm(_BatchNorm):
    """Batch Normalization with the statistics of a whole process group, on any backend.

    A drop-in for ``torch.nn.SyncBatchNorm``: the same constructor
    (``process_group`` included), parameters, buffers, ``state_dict`` keys,
    ``repr`` and train/eval behaviour, and a :meth:`convert_sync_batchnorm`
    classmethod. Unlike torch's module it runs on CPU tensors with the gloo
    backend (torch's refuses them, and ``DistributedDataParallel`` refuses
    torch's module in a CPU model), and on GPUs with NCCL unchanged.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels (axis 1 of the input).
    eps : float, default 1e-5
    momentum : float or None, default 0.1
        Weight of the *new* batch in the running statistics; ``None`` gives a
        cumulative average.
    affine : bool, default True
    track_running_stats : bool, default True
    process_group : ProcessGroup or None, default None
        The processes whose batches are normalised together; ``None`` is the
        whole world.
    device, dtype : optional
    bias : bool, keyword-only, default True

    Notes
    -----
    In training, when ``torch.distributed`` is initialised and the group has
    more than one process, :class:`SyncBatchNormFunction` normalises with the
    group's batch statistics: each process may hold a different number of
    examples, and a process with none still takes part in the collectives (it
    must call the module). The running statistics are updated with the group's
    mean and unbiased variance over the group's count, so they are identical on
    every process and equal those of one process that saw the whole batch.
    Otherwise (eval mode, a single process, or no process group) the module is
    :func:`bnlib.nn.batch_norm`, plain BN, as torch's falls back to
    ``F.batch_norm``. The gradients of ``weight`` and ``bias`` are local; wrap
    the model in ``DistributedDataParallel`` to sum them (average, with DDP's
    convention) across processes.

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import SyncBatchNorm
    >>> SyncBatchNorm(3)
    SyncBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        process_group=None,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats,
            device=device, dtype=dtype, bias=bias,
        )
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _check_non_zero_input_channels(self, input):
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    def forward(self, input):
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        if self.training:
            bn_training = True
        else:
            bn_training = self.running_mean is None and self.running_var is None
        running_mean = self.running_mean if not self.training or self.track_running_stats else None
        running_var = self.running_var if not self.training or self.track_running_stats else None

        group = self.process_group if self.process_group is not None else dist.group.WORLD
        need_sync = (
            bn_training and self.training and dist.is_available() and dist.is_initialized()
            and _group_size(group) > 1
        )
        if not need_sync:
            return batch_norm(
                input, running_mean, running_var, self.weight, self.bias,
                bn_training, factor, self.eps,
            )
        if self.eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {self.eps}")
        y, mean, var, n = SyncBatchNormFunction.apply(input, self.weight, self.bias, self.eps, group)
        if running_mean is not None and running_var is not None:
            new_mean, new_var = _updated_running_stats(
                _to_numpy(running_mean), _to_numpy(running_var),
                mean.cpu().numpy(), var.cpu().numpy(), n, factor,
            )
            with torch.no_grad():
                running_mean.copy_(torch.from_numpy(new_mean))
                running_var.copy_(torch.from_numpy(new_var))
        return y

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Replace every BatchNorm layer in ``module`` by a :class:`SyncBatchNorm`, keeping its state.

        Parameters
        ----------
        module : torch.nn.Module
            Any model; its ``BatchNorm1d/2d/3d`` layers, torch's or ``bnlib``'s
            (anything derived from torch's ``_BatchNorm``), are converted.
        process_group : ProcessGroup or None
            Passed to every new layer.

        Returns
        -------
        torch.nn.Module
            ``module`` itself with its BN layers replaced, or a new
            :class:`SyncBatchNorm` when ``module`` is a BN layer. Parameters and
            buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
            ``num_batches_tracked``) are the *same* tensors, not copies, and the
            training flag is kept, as in torch's method. :class:`GhostBatchNorm`
            layers are left as they are: their ghost batches are per process
            by design.

        Examples
        --------
        >>> import torch
        >>> from bnlib.nn import SyncBatchNorm
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        >>> SyncBatchNorm.convert_sync_batchnorm(net)[1]
        SyncBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
        """
        output = module
        if isinstance(module, _BatchNorm) and not isinstance(module, GhostBatchNorm):
            output = cls(
                module.num_features, module.eps, module.momentum, module.affine,
                module.track_running_stats, process_group, bias=module.bias is not None,
            )
            if module.affine:
                with torch.no_grad():
                    output.weight = module.weight
                    output.bias = module.bias
            output.running_mean = module.running_mean
            output.running_var = module.running_var
            output.num_batches_tracked = module.num_batches_tracked
            output.training = module.training
            if hasattr(module, "qconfig"):
                output.qconfig = module.qconfig
        for name, child in module.named_children():
            output.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return output


class GhostBatchNorm(_BatchNorm):
    """Ghost Batch Normalization (Hoffer et al., 2017): BN over virtual batches within a batch.

    In training, the batch is cut along axis 0 into consecutive *ghost
    batches* of ``virtual_batch_size`` examples (the last one may be smaller),
    and each is normalised with its own statistics, as if it had been a
    mini-batch of its own. In eval mode it is ordinary BN with the running
    statistics.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels (axis 1 of the input).
    virtual_batch_size : int, default 128
        Examples per ghost batch (Hoffer et al. use 128).
    eps, momentum, affine, track_running_stats, device, dtype, bias
        As for :class:`bnlib.nn.BatchNorm1d`.

    Notes
    -----
    The running statistics are updated **once per ghost batch**, in order,
    with ``momentum`` each time, and ``num_batches_tracked`` counts ghost
    batches. That is the update of Hoffer et al.'s Algorithm 1, and it makes
    the layer exactly BN run on the ghost batches one after the other, so its
    eval-mode statistics estimate what a network trained on batches of
    ``virtual_batch_size`` would have seen. (One update with the mean of the
    ghost batches' statistics would be the other choice; it moves the running
    averages k times more slowly per step.) A ghost batch with a single value
    per channel raises torch's "Expected more than 1 value per channel when
    training"; choose a batch size that leaves none.

    Gradients flow through each ghost batch's own statistics
    (:class:`bnlib.nn.BatchNormFunction` per ghost batch).

    Examples
    --------
    >>> import torch
    >>> from bnlib.nn import GhostBatchNorm
    >>> gbn = GhostBatchNorm(1, virtual_batch_size=2, dtype=torch.float64)
    >>> x = torch.tensor([[1.0], [3.0], [10.0], [30.0]], dtype=torch.float64)
    >>> [round(v, 3) for v in gbn(x).ravel().tolist()], int(gbn.num_batches_tracked)
    ([-1.0, 1.0, -1.0, 1.0], 2)
    """

    def __init__(
        self,
        num_features,
        virtual_batch_size=128,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        if isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int) \
                or virtual_batch_size < 1:
            raise ValueError(
                f"virtual_batch_size must be a positive integer, got {virtual_batch_size!r}"
            )
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats,
            device=device, dtype=dtype, bias=bias,
        )
        self.virtual_batch_size = virtual_batch_size

    def extra_repr(self):
        return super().extra_repr() + f", virtual_batch_size={self.virtual_batch_size}"

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _factor(self):
        """The running-statistics weight of the next ghost batch (after counting it)."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def forward(self, input):
        self._check_input_dim(input)
        if not self.training:
            bn_training = self.running_mean is None and self.running_var is None
            return batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias,
                bn_training, 0.0 if self.momentum is None else self.momentum, self.eps,
            )
        n, b = input.shape[0], self.virtual_batch_size
        if n > b and n % b == 0:
            return self._equal_ghost_batches(input, n // b)
        track = self.track_running_stats
        outputs = [
            batch_norm(
                ghost,
                self.running_mean if track else None,
                self.running_var if track else None,
                self.weight, self.bias, True, self._factor(), self.eps,
            )
            for ghost in input.split(b, dim=0)
        ]
        return torch.cat(outputs, dim=0)

    def _equal_ghost_batches(self, input, k):
        """All ``k`` ghost batches in one call: ghost ``j``'s channels become channels ``j*C ... j*C + C-1``.

        ``(k*B, C, *s) -> (B, k*C, *s)``, so one BN over axis 0 normalises every ghost batch
        with its own statistics; ``weight`` and ``bias`` repeated ``k`` times receive the sum
        of the ghost batches' gradients. Same numbers as :func:`batch_norm` per ghost batch.
        """
        b, c, spatial = self.virtual_batch_size, input.shape[1], tuple(input.shape[2:])
        wide = input.reshape(k, b, c, *spatial).transpose(0, 1).reshape(b, k * c, *spatial)
        weight = self.weight.repeat(k) if self.weight is not None else None
        bias = self.bias.repeat(k) if self.bias is not None else None
        y = batch_norm(wide, None, None, weight, bias, True, 0.0, self.eps)
        if self.track_running_stats:
            count, means, m2s = local_moments(_to_numpy(wide))
            means, variances = means.reshape(k, c), (m2s / count).reshape(k, c)
            mean, var = _to_numpy(self.running_mean), _to_numpy(self.running_var)
            for j in range(k):  # in order, one update per ghost batch
                mean, var = update_running_stats(
                    mean, var, means[j], variances[j], count, momentum=self._factor(),
                )
            with torch.no_grad():
                self.running_mean.copy_(torch.from_numpy(mean))
                self.running_var.copy_(torch.from_numpy(var))
        return y.reshape(b, k, c, *spatial).transpose(0, 1).reshape(input.shape)
