"""Run a function in several processes joined by ``torch.distributed`` (gloo on this machine).

Chapter 12 and the SyncBatchNorm tests start real processes that talk through
real collectives over the loopback interface. :func:`launch` starts them
(``spawn``: each is a fresh Python that imports the function by module and
name, which is why worker functions live in a module and not in a notebook
cell), initialises one process group, calls the function on every rank and
returns what each returned, in rank order. Errors in any process are raised in
the caller.

This module imports torch; ``import bnlib`` does not import it.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["free_port", "launch"]


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


def launch(fn, world_size, *args, backend="gloo", timeout=300.0, threads=1):
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
    with tempfile.TemporaryDirectory(prefix="bnlib-replicas-") as out_dir:
        context = mp.start_processes(
            _entry,
            args=(fn, world_size, args, free_port(), backend, out_dir, threads),
            nprocs=world_size,
            join=False,
            start_method="spawn",
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
