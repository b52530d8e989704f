"""Run a function in several processes joined by ``torch.distributed`` (gloo on this machine).

Chapter 12 and the SyncBatchNorm tests start real processes that talk through
real collectives over the loopback interface. :func:`launch` starts them
(forked on Linux, spawned elsewhere: then each is a fresh Python that imports
the function by module and name, which is why worker functions live in a
module and not in a notebook cell), initialises one process group, calls the function on every rank and
returns what each returned, in rank order. Errors in any process are raised in
the caller.

This module imports torch; ``import bnlib`` does not import it.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["free_port", "launch", "bn_across_devices", "sum_of_ranks", "make_net", "average_gradients", "train_on_digits", "digits_tensors"]


def free_port(host="127.0.0.1"):
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _entry(rank, fn, world_size, args, port, backend, out_dir, threads):
    """What each spawned process runs: join the group, call ``fn``, save its result."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(threads)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        with open(Path(out_dir) / f"{rank}.pkl", "wb") as f:
            pickle.dump(result, f)
        dist.barrier()  # nobody tears the group down while a peer still uses it
    finally:
        dist.destroy_process_group()


def launch(fn, world_size, *args, backend="gloo", timeout=300.0, threads=1, start_method=None):
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` new processes, joined in one group.

    Parameters
    ----------
    fn : callable
        A module-level function (it is imported by name in each process).
        Inside it, ``torch.distributed`` is initialised: the default group is
        all ``world_size`` processes, and ``torch.distributed.new_group`` makes
        smaller ones.
    world_size : int
        Number of processes, at least 1.
    *args
        Passed to ``fn`` after ``rank`` and ``world_size`` (pickled).
    backend : str, default "gloo"
        ``"gloo"`` runs on CPU tensors; ``"nccl"`` needs one GPU per process.
    timeout : float, default 300
        Seconds after which the processes are killed and ``TimeoutError`` is
        raised.
    threads : int, default 1
        ``torch.set_num_threads`` in each process.
    start_method : {"fork", "spawn", "forkserver"}, optional
        Default: ``"fork"`` where the platform has it (Linux), so the new
        processes start with torch already imported (as a ``DataLoader``'s
        workers do); ``"spawn"`` elsewhere, which imports ``fn`` by name in a
        fresh interpreter and costs a torch import per process. With
        ``"fork"``, the caller must not have initialised ``torch.distributed``
        or CUDA itself.

    Returns
    -------
    list
        ``fn``'s return value on each rank, in rank order (pickled back).

    Notes
    -----
    The processes meet at ``MASTER_ADDR=127.0.0.1`` on a free port
    (:func:`free_port`); gloo is pinned to the loopback interface with
    ``GLOO_SOCKET_IFNAME=lo`` unless that variable is set. On a cluster,
    ``torchrun`` sets the same variables and starts the processes instead.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() and os.name == "posix" \
            and sys.platform.startswith("linux") else "spawn"
    with tempfile.TemporaryDirectory(prefix="bnlib-replicas-") as out_dir:
        context = mp.start_processes(
            _entry,
            args=(fn, world_size, args, free_port(), backend, out_dir, threads),
            nprocs=world_size,
            join=False,
            start_method=start_method,
        )
        deadline = time.monotonic() + timeout
        while not context.join(timeout=0.05):
            if time.monotonic() > deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.kill()
                raise TimeoutError(f"{world_size} processes running {fn.__name__} took over {timeout} s")
        results = []
        for rank in range(world_size):
            with open(Path(out_dir) / f"{rank}.pkl", "rb") as f:
                results.append(pickle.load(f))
        return results


# --------------------------------------------------------------------------- chapter 12's experiments
#
# Run by `launch(bn_across_devices, 4, config)`: four processes, in which groups of 1, 2 and 4
# ranks play k = 1, 2, 4 replicas. Every function below is called on every rank in the same
# order (collectives and new_group demand it); ranks outside a group skip its work.


def _replica_groups(world_size):
    """``{k: (group, ranks)}`` for k = 1, 2, 4 and a second pair ``"pair2"`` = ranks 2, 3."""
    groups = {}
    for k in (1, 2, 4):
        if k <= world_size:
            ranks = list(range(k))
            groups[k] = (dist.new_group(ranks), ranks)
    if world_size >= 4:
        groups["pair2"] = (dist.new_group([2, 3]), [2, 3])
    return groups


def _batch_statistics_by_replicas(rank, groups, config):
    """Mean and variance of one BN layer's input as each replica sees it, per replica count k.

    The BN layer follows a fixed random ``Linear(64, C)`` on the digits. For every global batch of
    ``m`` examples and every k, rank ``r < k`` takes examples ``r*m/k ... (r+1)*m/k``: a plain
    ``BatchNorm1d`` with ``momentum=1`` holds that slice's statistics in its running buffers
    (the unbiased variance), a ``SyncBatchNorm`` over the k ranks those of the whole batch.
    """
    from .data import load_digits
    from .nn import BatchNorm1d, SyncBatchNorm

    x = load_digits(seed=config["seed"], dtype=np.float64).x_train
    gen = torch.Generator().manual_seed(config["seed"])
    layer = torch.nn.Linear(x.shape[1], config["stat_channels"], dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64) / 8)
        h = layer(torch.from_numpy(x))
    rng = np.random.default_rng(config["seed"])
    m = config["stat_batch"]
    batches = [rng.choice(len(x), size=m, replace=False) for _ in range(config["stat_batches"])]
    out = {}
    for k, (group, ranks) in groups.items():
        if k == "pair2" or rank not in ranks:
            continue
        size = m // k
        local, synced = [], []
        for idx in batches:
            part = h[idx[rank * size : (rank + 1) * size]]
            for bn, sink in ((BatchNorm1d(h.shape[1], momentum=1.0, affine=False), local),
                             (SyncBatchNorm(h.shape[1], momentum=1.0, affine=False, process_group=group), synced)):
                bn.to(torch.float64)(part)
                sink.append((bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()))
        out[k] = {"local": local, "synced": synced}
    return out, (h.mean(dim=0).numpy(), h.var(dim=0).numpy())


def make_net(config, bn_layer):
    """The chapter's network: ``Linear -> BN -> ReLU`` per ``config["hidden"]`` width, then ``Linear``.

    ``bn_layer(num_features)`` makes the normalisation layer; the hidden ``Linear`` layers have
    no bias (BN's ``beta`` takes its role). Weights are uniform in ``+-1/sqrt(fan_in)``
    (torch's default range) from a generator seeded with ``config["seed"]``, so every
    process and every variant starts from the same ones; float64.
    """
    gen = torch.Generator().manual_seed(config["seed"])
    layers, fan_in = [], 64
    for width in config["hidden"]:
        layers += [torch.nn.Linear(fan_in, width, bias=False), bn_layer(width), torch.nn.ReLU()]
        fan_in = width
    layers.append(torch.nn.Linear(fan_in, 10))
    net = torch.nn.Sequential(*layers).to(torch.float64)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / np.sqrt(layer.in_features)
                for p in layer.parameters():
                    p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
    return net


def average_gradients(net, group, k):
    """Replace each gradient by its mean over the ``k`` processes of ``group``.

    One ``all_reduce`` of all gradients in one flat tensor: what
    ``DistributedDataParallel`` does (in buckets, overlapped with the backward
    pass). This plain version spares each process DDP's start-up: importing
    its machinery takes seconds per process.
    """
    grads = [p.grad for p in net.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= k
    for g, chunk in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(chunk.reshape(g.shape))


def train_on_digits(net, data, config, rank_in_group, k, batch, group=None):
    """SGD with momentum 0.9 on the digits; this process trains on its slice of each global batch.

    The update is ``torch.optim.SGD``'s (``v = 0.9 v + grad``, ``p -= lr v``), written out:
    the first ``torch.optim`` optimizer a process creates imports torch's compiler stack,
    seconds of start-up in every process.

    Parameters
    ----------
    net : torch.nn.Module
        The replica; with ``group``, its gradients are averaged over the group's processes
        before every step (:func:`average_gradients`). A model wrapped in
        ``DistributedDataParallel`` does that itself: leave ``group`` at None.
    data : tuple
        From :func:`digits_tensors`.
    config : dict
        Uses ``seed`` (the batch order, the same in every process), ``lr``, ``train_steps``.
    rank_in_group, k : int
        This process takes examples ``rank_in_group * batch // k`` to
        ``(rank_in_group + 1) * batch // k`` of each global batch of ``batch``.
    batch : int
        The global batch size.
    group : ProcessGroup, optional
        Average the gradients over this group of ``k`` processes.

    Returns
    -------
    (test_accuracy, seconds_per_step, final_parameters, early_parameters)
        Accuracy in eval mode on the test set; parameters flattened into one array, after
        the last step and after ``config.get("check_steps", 1)`` steps.
    """
    x, y, x_test, y_test = data
    rng = np.random.default_rng(config["seed"] + 1)
    params = list(net.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    size = batch // k
    n_steps, step = config["train_steps"], 0
    t0 = time.perf_counter()
    while step < n_steps:
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch + 1, batch):
            idx = order[start : start + batch][rank_in_group * size : (rank_in_group + 1) * size]
            for p in params:
                p.grad = None
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            if group is not None:
                average_gradients(net, group, k)
            with torch.no_grad():  # torch.optim.SGD(lr, momentum=0.9), written out
                for p, v in zip(params, velocity):
                    v.mul_(0.9).add_(p.grad)
                    p.sub_(config["lr"] * v)
            step += 1
            if step == config.get("check_steps", 1):
                early = _flat_parameters(net)
            if step == n_steps:
                break
    seconds = (time.perf_counter() - t0) / n_steps
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x_test).argmax(dim=1) == y_test).double().mean())
    return accuracy, seconds, _flat_parameters(net), early


def _flat_parameters(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy().copy()


def digits_tensors(config):
    """``(x_train, y_train, x_test, y_test)`` of the digits as float64/int64 tensors."""
    from .data import load_digits

    d = load_digits(seed=config["seed"], dtype=np.float64)
    return (torch.from_numpy(d.x_train), torch.from_numpy(d.y_train),
            torch.from_numpy(d.x_test), torch.from_numpy(d.y_test))


def _train_replicas(rank, groups, config):
    """Per-replica BN and SyncBN with k = 1, 2, 4 replicas at one global batch, plus GroupNorm."""
    from .nn import BatchNorm1d, SyncBatchNorm

    data = digits_tensors(config)
    batch = config["train_batch"]
    # (k, mode, group key) in phases; all ranks of a group train together, others wait.
    phases = [[(2, "local", 2), (2, "sync", "pair2")], [(4, "local", 4)], [(4, "sync", 4)],
              [(1, "local", 1)]]
    out = {}
    for phase in phases:
        for k, mode, key in phase:
            group, ranks = groups[key]
            if rank not in ranks:
                continue
            net = make_net(config, BatchNorm1d)
            if mode == "sync":
                net = SyncBatchNorm.convert_sync_batchnorm(net, process_group=group)
            result = train_on_digits(net, data, config, ranks.index(rank), k, batch,
                                     group=group if k > 1 else None)
            if rank == ranks[0]:  # the replicas agree on the weights; report the first one's
                out[(k, mode)] = result
        dist.barrier()
    if rank == 1:  # GroupNorm does not look at the batch: one run stands for every k
        net = make_net(config, lambda c: torch.nn.GroupNorm(config["groups"], c))
        out[("any", "groupnorm")] = train_on_digits(net, data, config, 0, 1, batch)
    dist.barrier()
    return out


def _collective_times(rank, groups, config):
    """Median seconds of SyncBN's two collectives, and of a local BN step, per layer width C."""
    from .nn import BatchNorm1d, SyncBatchNorm

    group, ranks = groups[4] if 4 in groups else groups[max(k for k in groups if k != "pair2")]
    out = {}
    for c in config["cost_channels"]:
        stats = torch.zeros(2 * c + 1, dtype=torch.float64)
        gathered = [torch.empty_like(stats) for _ in ranks]
        sums = torch.zeros(2 * c, dtype=torch.float64)
        x = torch.randn(config["cost_batch"], c, dtype=torch.float32, requires_grad=True)
        times = {"all_gather": [], "all_reduce": [], "sync_step": [], "local_step": []}
        local, sync = BatchNorm1d(c), SyncBatchNorm(c, process_group=group)
        for _ in range(config["cost_repeats"]):
            for name, fn in (
                ("all_gather", lambda: dist.all_gather(gathered, stats, group=group)),
                ("all_reduce", lambda: dist.all_reduce(sums, group=group)),
                ("local_step", lambda: local(x).sum().backward()),
                ("sync_step", lambda: sync(x).sum().backward()),
            ):
                dist.barrier(group=group)
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        out[c] = {name: float(np.median(v)) for name, v in times.items()}
    return out


def _train_ghost(rank, groups, config):
    """Large-batch training with ghost batches of several sizes, runs spread over the ranks."""
    from .nn import GhostBatchNorm

    data = digits_tensors(config)
    runs = [(g, s) for g in config["ghost_sizes"] for s in range(config["ghost_seeds"])]
    out = {}
    for i, (ghost, seed) in enumerate(runs):
        if i % dist.get_world_size() != rank:
            continue
        cfg = dict(config, seed=config["seed"] + 100 * seed, train_steps=config["ghost_steps"],
                   lr=config["ghost_lr"])
        net = make_net(cfg, lambda c, g=ghost: GhostBatchNorm(c, virtual_batch_size=g))
        out[(ghost, seed)] = train_on_digits(net, data, cfg, 0, 1, config["ghost_batch"])[0]
    return out


def _torch_refusals(rank, groups, config):
    """What torch's own SyncBatchNorm says to CPU tensors in a process group."""
    out = {}
    try:
        torch.nn.SyncBatchNorm(3)(torch.randn(4, 3))
    except ValueError as err:
        out["torch.nn.SyncBatchNorm"] = str(err)
    return out


def sum_of_ranks(rank, world_size):
    """The smallest collective: each process adds its rank, all get the sum."""
    payload = torch.tensor([float(rank)])
    dist.all_reduce(payload)  # sum over the processes, left in each
    return rank, float(payload)


def bn_across_devices(rank, world_size, config):
    """Everything chapter 12 measures, in one process group of (up to) 4 processes.

    Returns a dict: ``"stats"`` (per-replica and synchronised batch statistics),
    ``"population"``, ``"train"`` (per-replica BN, SyncBN and GroupNorm runs),
    ``"cost"`` (collective and step times) and ``"ghost"`` (ghost batch runs).
    Each key holds this rank's part; the caller merges the ranks.
    """
    torch.manual_seed(config["seed"])
    groups = _replica_groups(world_size)
    out, seconds = {}, {}
    for name, fn in (("stats", _batch_statistics_by_replicas), ("train", _train_replicas),
                     ("cost", _collective_times), ("ghost", _train_ghost),
                     ("torch", _torch_refusals)):
        t0 = time.perf_counter()
        out[name] = fn(rank, groups, config)
        seconds[name] = time.perf_counter() - t0
    out["stats"], out["population"] = out["stats"]
    out["seconds"] = seconds
    return out
