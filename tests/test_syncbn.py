"""bnlib.nn.SyncBatchNorm: real processes over loopback (gloo) against one process on the whole batch.

One launch of three processes runs every distributed check (process start-up dominates the
time): the cases use the whole world or a two-process subgroup, (N, C) and (N, C, H, W)
input, uneven shards and shards with no example at all. The oracle is torch's own
BatchNorm on the concatenated batch, in float64.
"""

import importlib
import inspect

import numpy as np
import pytest
import torch
import torch.distributed as dist

from bnlib.nn import BatchNorm1d, BatchNorm2d, SyncBatchNorm
from bnlib.nn.distributed import local_moments, merge_moments
from bnlib.replicas import launch

TOL = 1e-10
WORLD = 3

# name: (ranks in the group, examples per rank, (C, *spatial), affine, momentum)
CASES = {
    "2d-uneven-world": ((0, 1, 2), (5, 2, 4), (4,), True, 0.1),
    "2d-empty-world": ((0, 1, 2), (3, 0, 4), (4,), True, 0.3),
    "4d-uneven-world": ((0, 1, 2), (2, 1, 3), (3, 4, 5), True, 0.1),
    "4d-empty-world": ((0, 1, 2), (0, 2, 3), (3, 2, 3), True, None),
    "2d-pair": ((0, 1), (3, 6), (5,), True, 0.1),
    "4d-pair-one-empty": ((0, 1), (1, 0), (2, 3, 3), False, 0.1),
}
STEPS = 2  # training steps per case: the running statistics accumulate


def rel(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def case_data(name):
    """Inputs, upstream gradients and parameters of one case (the same in every process)."""
    ranks, sizes, feature_shape, affine, momentum = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    c = feature_shape[0]
    steps = []
    for _ in range(STEPS):
        xs = [rng.normal(3.0, 2.0, size=(n, *feature_shape)) for n in sizes]
        dys = [rng.normal(size=(n, *feature_shape)) for n in sizes]
        steps.append((xs, dys))
    x_eval = rng.normal(3.0, 2.0, size=(4, *feature_shape))
    weight, bias = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    return ranks, sizes, feature_shape, affine, momentum, steps, x_eval, weight, bias


def _bn_module(cls, c, affine, momentum, weight, bias, **kwargs):
    bn = cls(c, affine=affine, momentum=momentum, dtype=torch.float64, **kwargs)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(weight))
            bn.bias.copy_(torch.from_numpy(bias))
    return bn


def _grads(bn):
    if bn.weight is None:
        return None, None
    out = bn.weight.grad.numpy().copy(), bn.bias.grad.numpy().copy()
    bn.weight.grad, bn.bias.grad = None, None
    return out


def _run_case(name, rank, group):
    ranks, sizes, feature_shape, affine, momentum, steps, x_eval, weight, bias = case_data(name)
    i = ranks.index(rank)
    bn = _bn_module(SyncBatchNorm, feature_shape[0], affine, momentum, weight, bias, process_group=group)
    record = {"steps": []}
    for xs, dys in steps:
        x = torch.tensor(xs[i], requires_grad=True)
        y = bn(x)
        y.backward(torch.from_numpy(dys[i]))
        record["steps"].append((y.detach().numpy().copy(), x.grad.numpy().copy(), _grads(bn)))
    record["running"] = (bn.running_mean.numpy().copy(), bn.running_var.numpy().copy(),
                         int(bn.num_batches_tracked))
    bn.eval()
    record["eval"] = bn(torch.from_numpy(x_eval)).detach().numpy()
    return record


def _ddp_data():
    rng = np.random.default_rng(15)
    sizes = (4, 0, 5)
    x = rng.normal(1.0, 2.0, size=(sum(sizes), 6))
    labels = rng.integers(0, 3, size=sum(sizes))
    return sizes, x, labels


def _ddp_net(bn_cls):
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 5, bias=False), bn_cls(5), torch.nn.ReLU(), torch.nn.Linear(5, 3),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


def _ddp_steps(net, x, labels, world_factor, n_total, n_steps=3):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        out = net(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(labels), reduction="sum")
        (loss * world_factor / n_total).backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _ddp_case(rank, world_size):
    sizes, x, labels = _ddp_data()
    start = sum(sizes[:rank])
    net = SyncBatchNorm.convert_sync_batchnorm(_ddp_net(torch.nn.BatchNorm1d))
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    sl = slice(start, start + sizes[rank])
    # DDP averages gradients over processes: scale by world_size / N for the full batch's mean
    losses = _ddp_steps(ddp, x[sl], labels[sl], world_size, sum(sizes))
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    try:  # torch's own module in a CPU model: DDP refuses it (why bnlib has its own)
        torch.nn.parallel.DistributedDataParallel(torch.nn.SyncBatchNorm(3))
        refusal = None
    except ValueError as err:
        refusal = str(err)
    return losses, state, refusal


def worker(rank, world_size):
    """Every distributed check, in one process group; returns what the parent compares."""
    pair = dist.new_group([0, 1])  # every rank must call new_group, members or not
    results = {}
    for name, spec in CASES.items():
        ranks = spec[0]
        if rank in ranks:
            results[name] = _run_case(name, rank, None if len(ranks) == world_size else pair)
    results["ddp"] = _ddp_case(rank, world_size)
    # A process group of one process: no synchronisation, plain BN on the local batch.
    results["is_sync_skipped_alone"] = _alone_check(rank)
    results["one_value_error"] = _one_value_check(rank, pair)
    results["nan"] = _nan_check(rank)
    results["float32"] = _float32_case(rank)
    return results


def _float32_shards():
    rng = np.random.default_rng(32)
    x = 1000.0 + rng.normal(size=(3000, 2))  # |mean| / std = 1000: sums of squares would lose ~6%
    return np.split(x, [1000, 2500])


def _float32_case(rank):
    x = torch.from_numpy(_float32_shards()[rank]).float()
    bn = SyncBatchNorm(2)
    return bn(x).detach().numpy(), bn.running_var.numpy().copy()


def _nan_check(rank):
    """A NaN on one process makes every process's output NaN, as torch's BN on the whole batch."""
    x = torch.ones((2, 3), dtype=torch.float64) * (rank + 1)
    if rank == 1:
        x[0, 0] = float("nan")
    x.requires_grad_(True)
    bn = SyncBatchNorm(3, dtype=torch.float64)
    y = bn(x)
    y.sum().backward()
    return (bool(torch.isnan(y[:, 0]).all()), bool(torch.isfinite(y[:, 1:]).all()),
            bool(torch.isnan(bn.running_mean[0])))


def _one_value_check(rank, pair):
    """One value per channel in the whole group: every member raises (none waits forever)."""
    if rank not in (0, 1):
        return None
    x = torch.ones((1 - rank, 2), dtype=torch.float64)  # one example on rank 0, none on rank 1
    try:
        SyncBatchNorm(2, process_group=pair, dtype=torch.float64)(x)
    except ValueError as err:
        return str(err)
    return None


def _alone_check(rank):
    alone = dist.new_group([0])
    if rank != 0:
        return None
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = SyncBatchNorm(3, process_group=alone, dtype=torch.float64)(x)
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64)(x)
    return rel(y.detach(), ref.detach())


@pytest.fixture(scope="module")
def results():
    # DDP and torch.optim import torch's compiler stack on first use, seconds per process;
    # imported once here, the forked processes inherit it.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    importlib.import_module("torch.fx.experimental.symbolic_shapes")
    return launch(worker, WORLD, timeout=240)


def _reference(name):
    ranks, sizes, feature_shape, affine, momentum, steps, x_eval, weight, bias = case_data(name)
    cls = torch.nn.BatchNorm1d if len(feature_shape) == 1 else torch.nn.BatchNorm2d
    bn = _bn_module(cls, feature_shape[0], affine, momentum, weight, bias)
    out = []
    for xs, dys in steps:
        x = torch.tensor(np.concatenate(xs), requires_grad=True)
        y = bn(x)
        y.backward(torch.from_numpy(np.concatenate(dys)))
        out.append((y.detach().numpy(), x.grad.numpy(), _grads(bn)))
    running = (bn.running_mean.numpy(), bn.running_var.numpy(), int(bn.num_batches_tracked))
    bn.eval()
    return out, running, bn(torch.from_numpy(x_eval)).detach().numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_sync_equals_one_process_on_whole_batch(results, name):
    ranks, sizes = CASES[name][:2]
    ref_steps, ref_running, ref_eval = _reference(name)
    records = [results[r][name] for r in ranks]
    for step, (y_ref, dx_ref, grads_ref) in enumerate(ref_steps):
        y = np.concatenate([rec["steps"][step][0] for rec in records])
        dx = np.concatenate([rec["steps"][step][1] for rec in records])
        assert y.shape == y_ref.shape and rel(y, y_ref) <= TOL
        assert rel(dx, dx_ref) <= TOL
        if grads_ref[0] is None:
            assert all(rec["steps"][step][2] == (None, None) for rec in records)
        else:  # parameter gradients are local: their sum over processes is the whole batch's
            for j in range(2):
                summed = sum(rec["steps"][step][2][j] for rec in records)
                assert rel(summed, grads_ref[j]) <= TOL
    for rec in records:  # every process holds the whole batch's running statistics
        assert rel(rec["running"][0], ref_running[0]) <= TOL
        assert rel(rec["running"][1], ref_running[1]) <= TOL
        assert rec["running"][2] == ref_running[2] == STEPS
        assert rel(rec["eval"], ref_eval) <= TOL


def test_ddp_with_sync_bn_takes_the_steps_of_one_process(results):
    sizes, x, labels = _ddp_data()
    net = _ddp_net(torch.nn.BatchNorm1d)
    ref_losses = _ddp_steps(net, x, labels, 1, len(x))
    ref_state = net.state_dict()
    for rank, (losses, state, refusal) in enumerate(r["ddp"] for r in results):
        assert "only work with GPU modules" in refusal
        # each process's loss is over its own examples; they add up to the whole batch's
        assert state.keys() == ref_state.keys()
        for key, value in ref_state.items():
            assert rel(state[key], value.numpy()) <= TOL, key
    summed = np.sum([r["ddp"][0] for r in results], axis=0)
    assert rel(summed, ref_losses) <= TOL


def test_one_value_in_the_whole_group_raises_on_every_member(results):
    for rank in (0, 1):
        assert "Expected more than 1 value per channel when training" in results[rank]["one_value_error"]


def test_float32_far_from_zero_keeps_its_variance(results):
    whole = np.concatenate(_float32_shards())
    ref = torch.nn.BatchNorm1d(2, dtype=torch.float64)
    y_ref = ref(torch.from_numpy(whole)).detach().numpy()
    y = np.concatenate([r["float32"][0] for r in results])
    # float32 rounds x itself at 1000 * 6e-8 of a standard deviation; the variance is intact
    assert rel(y, y_ref) < 2e-4
    for r in results:
        assert rel(r["float32"][1], ref.running_var.numpy()) < 1e-5


def test_nan_on_one_process_propagates_to_all(results):
    assert all(r["nan"] == (True, True, True) for r in results)


def test_group_of_one_is_plain_bn(results):
    assert results[0]["is_sync_skipped_alone"] <= 1e-14


# --------------------------------------------------------------------------- one process


def test_constructor_state_dict_and_repr_match_torch():
    ours, theirs = inspect.signature(SyncBatchNorm), inspect.signature(torch.nn.SyncBatchNorm)
    assert list(ours.parameters) == list(theirs.parameters)
    for name in ours.parameters:
        assert ours.parameters[name].default == theirs.parameters[name].default, name
    kwargs = dict(eps=1e-3, momentum=None, affine=True, track_running_stats=True, bias=False)
    a, b = SyncBatchNorm(7, **kwargs), torch.nn.SyncBatchNorm(7, **kwargs)
    assert repr(a) == repr(b)
    assert a.state_dict().keys() == b.state_dict().keys()
    a.load_state_dict(b.state_dict())
    b.load_state_dict(a.state_dict())


def test_without_process_group_it_is_bnlib_batchnorm():
    assert not dist.is_initialized()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    dy = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    ours, ref = SyncBatchNorm(4, dtype=torch.float64), torch.nn.BatchNorm2d(4, dtype=torch.float64)
    for module in (ours, ref):
        x.grad = None
        module(x).backward(dy)
        module.grad_x = x.grad.clone()
    assert rel(ours.grad_x, ref.grad_x) <= TOL
    assert rel(ours.running_var, ref.running_var) <= TOL
    ours.eval(), ref.eval()
    assert rel(ours(x).detach(), ref(x).detach()) <= TOL
    with pytest.raises(ValueError, match="at least 2D"):
        ours(torch.zeros(3))


@pytest.mark.parametrize("source", [torch.nn.BatchNorm1d, BatchNorm1d, torch.nn.BatchNorm2d, BatchNorm2d])
def test_convert_keeps_state_of_torch_and_bnlib_layers(source):
    net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Sequential(source(3, momentum=0.2)))
    bn = net[1][0]
    with torch.no_grad():
        bn.weight.uniform_(), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(1, 2)
    bn.num_batches_tracked.fill_(5)
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    converted = SyncBatchNorm.convert_sync_batchnorm(net, process_group=None)
    new = converted[1][0]
    assert type(new) is SyncBatchNorm and new.momentum == 0.2 and not new.training
    assert new.weight is bn.weight and new.running_mean is bn.running_mean  # the same tensors
    for key, value in converted.state_dict().items():
        assert torch.equal(value, state[key])
    alone = SyncBatchNorm.convert_sync_batchnorm(source(2))
    assert type(alone) is SyncBatchNorm


def test_merge_moments_is_the_whole_batch_and_keeps_float32_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 3))
    parts = [local_moments(x[a:b]) for a, b in ((0, 4), (4, 4), (4, 11))]
    n, mean, var = merge_moments(*(np.array(p) for p in zip(*parts)))
    assert n == 11 and rel(mean, x.mean(axis=0)) <= 1e-14 and rel(var, x.var(axis=0)) <= 1e-14
    # float32 shards far from zero: Chan's merge keeps the variance, raw sums of squares do not
    big = (1e4 + rng.normal(size=(4000, 1))).astype(np.float32)
    shards = np.split(big, 4)
    n, mean, var = merge_moments(*(np.array(p) for p in zip(*map(local_moments, shards))))
    exact = big.astype(np.float64).var(axis=0)
    assert rel(var, exact) <= 1e-6
    s = sum(sh.sum(axis=0, dtype=np.float32) for sh in shards)
    s2 = sum((sh * sh).sum(axis=0, dtype=np.float32) for sh in shards)
    naive = s2 / np.float32(4000) - (s / np.float32(4000)) ** 2
    assert rel(naive, exact) > 0.1



def test_check_merge_two_passes_chan_and_catches_a_missing_term():
    from bnlib.nn.distributed import check_merge_two

    def chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
        n = n_a + n_b
        if n == 0:
            return 0, mean_a, m2_a
        delta = mean_b - mean_a
        return n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n

    def without_between_term(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
        n = n_a + n_b
        return n, (n_a * mean_a + n_b * mean_b) / n, m2_a + m2_b

    assert check_merge_two(chan, verbose=False).passed
    assert not check_merge_two(without_between_term, verbose=False).passed
