"""Speed and float32 accuracy of bnlib's Batch Normalization against torch; ``import bnlib`` time.

What is measured (budgets from design section 7 and issue #11):

* the numpy core, ``batchnorm_forward`` then ``batchnorm_backward``, against
  ``torch.nn.functional.batch_norm`` forward + backward (autograd, gradients reset each
  call), CPU, one thread each, float32: <= 1.0x at (60, 100) (the batch of the BN paper's
  Figure 1 network), <= 1.1x at (64, 64, 32, 32); (512, 4096) reported (<= 1.7x);
* one SGD step of the Figure 1 network (3 x 100 sigmoid MLP with BN, batch 60, the book's
  8 x 8 digits as input) with ``bnlib.nn.BatchNorm1d`` against ``torch.nn.BatchNorm1d``
  (<= 1.3x), and one step of a Conv -> BN -> ReLU block with ``bnlib.nn.BatchNorm2d``
  against ``torch.nn.BatchNorm2d`` (reported);
* the float32 error of y, dx, dgamma and dbeta against float64 on the same data, largest
  and root-mean-square, bnlib's next to torch's (bnlib's must be no larger, or both within
  float32's epsilon, where which one is smaller is a matter of one rounding);
* the backward pass node by node (``batchnorm_backward_graph``) against the compact one;
* ``import bnlib`` in a fresh interpreter (<= 0.3 s, and no torch/matplotlib pulled in).

Runs are interleaved (bnlib, torch, bnlib, torch, ...) so that both see the same machine
load, and timed in CPU time of the calling thread, to which waiting for a core does not
add. Each line reports the medians and, more robust on a shared machine, the median and
interquartile range of the paired ratios (each bnlib run over the torch run right after
it). Run from the project root:

    python benchmarks/bench_batchnorm.py [--repeats-scale 1.0]

On some machines OPENBLAS_CORETYPE is set to work around old OpenBLAS builds; it slows a
current numpy. The script prints which OpenBLAS kernel numpy runs; to compare with an
unrestricted numpy, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

from __future__ import annotations

import os

# One thread for BLAS and OpenMP; must be set before numpy or torch is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnlib  # noqa: E402

# shape -> (budget or None, interleaved runs at --repeats-scale 1)
CORE_SHAPES = {(60, 100): (1.0, 400), (64, 64, 32, 32): (1.1, 30), (512, 4096): (1.7, 40)}
BUDGET_MLP = 1.3
BUDGET_IMPORT_S = 0.3
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def make_inputs(shape, rng):
    """float32 x (per-channel offsets of about 3 standard deviations), gamma, beta, dy."""
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    x += rng.normal(0.0, 3.0, (1, c) + (1,) * (len(shape) - 2)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.normal(1.0, 0.3, c).astype(np.float32)
    beta = rng.normal(0.0, 1.0, c).astype(np.float32)
    return x, gamma, beta, dy


def bnlib_step(x, gamma, beta, dy):
    y, cache = bnlib.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = bnlib.batchnorm_backward(dy, cache)
    return y, dx, dgamma, dbeta


def torch_step_factory(torch, x, gamma, beta, dy):
    """Forward + backward through torch's fused kernel, on tensors of their own."""
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    dyt = torch.tensor(dy)

    def step():
        xt.grad = gt.grad = bt.grad = None
        y = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True)
        y.backward(dyt)
        return y, xt.grad, gt.grad, bt.grad

    return step


def interleaved_times(funcs, repeats, warmup=3):
    """CPU times (s) of each function, calling them in turn ``repeats`` times.

    Each function always runs right after the other one (A B A B ...), never after itself,
    which would find its code and data warm in the processor's caches. The clock is this
    thread's CPU time (``time.thread_time``): on a loaded machine, time spent waiting for a
    core is not counted. Both numpy and torch (one thread, autograd included) compute on
    the calling thread.
    """
    for _ in range(warmup):
        for f in funcs.values():
            f()
    times = {name: [] for name in funcs}
    clock = time.thread_time
    for _ in range(repeats):
        for name, f in funcs.items():
            start = clock()
            f()
            times[name].append(clock() - start)
    return times


def compare(funcs, repeats):
    """Medians of ``bnlib`` and ``torch`` and the paired ratios' median and quartiles.

    A pair is one bnlib run and the torch run next to it: both saw about the same load.
    """
    times = interleaved_times(funcs, repeats)
    med = {name: statistics.median(t) for name, t in times.items()}
    q1, q2, q3 = statistics.quantiles([a / b for a, b in zip(times["bnlib"], times["torch"])], n=4)
    return med["bnlib"], med["torch"], q2, (q1, q3)


def print_comparison(label, bnlib_s, torch_s, ratio, iqr, budget):
    verdict = "reported" if budget is None else ("ok" if ratio <= budget else "OVER")
    budget_text = "" if budget is None else f"<= {budget:.1f}"
    print(f"{label:34s} {bnlib_s * 1e3:9.3f}  {torch_s * 1e3:9.3f}   {ratio:5.2f} [{iqr[0]:.2f}, {iqr[1]:.2f}]"
          f"   {budget_text:7s} {verdict}")


def float32_errors(outputs32, x, gamma, beta, dy):
    """Errors of float32 y, dx, dgamma, dbeta against float64 (bnlib's, on the same values).

    Returns two lists: ``max |a32 - a64| / max |a64|`` and the root-mean-square error over the
    root-mean-square value.
    """
    exact = bnlib_step(*(a.astype(np.float64) for a in (x, gamma, beta, dy)))
    pairs = [(np.asarray(a, np.float64), b) for a, b in zip(outputs32, exact)]
    largest = [float(np.abs(a - b).max() / np.abs(b).max()) for a, b in pairs]
    rms = [float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2))) for a, b in pairs]
    return largest, rms


def mlp_step_factory(torch, bn_layer, x, labels, seed=0):
    """One SGD step of the Figure 1 network (3 x 100 sigmoid, BN before each sigmoid)."""
    from bnlib import experiments

    model = experiments.make_mlp(x.shape[1], hidden=(100, 100, 100), out_features=10,
                                 activation="sigmoid", batchnorm=True, bn_layer=bn_layer,
                                 generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    return step


def conv_block_step_factory(torch, bn_layer, x, channels, seed=0):
    """One SGD step of Conv2d(3x3, no bias) -> BatchNorm2d -> ReLU, loss mean(out**2)."""
    torch.manual_seed(seed)
    block = torch.nn.Sequential(
        torch.nn.Conv2d(x.shape[1], channels, 3, padding=1, bias=False), bn_layer(channels), torch.nn.ReLU()
    )
    optimizer = torch.optim.SGD(block.parameters(), lr=0.01)

    def step():
        optimizer.zero_grad()
        loss = block(x).square().mean()
        loss.backward()
        optimizer.step()

    return step


IMPORT_PROBE = """
import json, sys, time
start = time.perf_counter()
import bnlib
elapsed = time.perf_counter() - start
heavy = sorted(m for m in ("torch", "matplotlib", "ipywidgets", "scipy", "sklearn") if m in sys.modules)
print(json.dumps({"seconds": elapsed, "heavy": heavy}))
"""


def import_time(runs=7):
    """Median time of ``import bnlib`` in fresh interpreters, and the heavy modules it pulled in."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    heavy = sorted({m for r in results for m in r["heavy"]})
    return statistics.median(r["seconds"] for r in results), heavy


def blas_kernel():
    """Which OpenBLAS kernel numpy runs (threadpoolctl), or what is known without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in info) or "none"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-scale", type=float, default=1.0,
                        help="multiply every number of interleaved runs by this (default 1)")
    args = parser.parse_args()

    def runs(n):
        return max(5, round(n * args.repeats_scale))

    import torch

    import bnlib.nn

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__} (BLAS: {blas_kernel()}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}), torch {torch.__version__}; one thread each, "
          f"float32; interleaved runs, CPU time, medians")
    print()
    print("forward + backward                 bnlib ms   torch ms   bnlib/torch, paired: median [IQR]   budget")
    ok = True
    accuracy = {}
    for shape, (budget, repeats) in CORE_SHAPES.items():
        x, gamma, beta, dy = make_inputs(shape, rng)
        torch_step = torch_step_factory(torch, x, gamma, beta, dy)
        bnlib_s, torch_s, ratio, iqr = compare(
            {"bnlib": lambda: bnlib_step(x, gamma, beta, dy), "torch": torch_step}, runs(repeats)
        )
        ok &= ratio <= budget
        print_comparison(f"core {shape}", bnlib_s, torch_s, ratio, iqr, budget)
        torch_outputs = [t.detach().numpy() for t in torch_step()]
        accuracy[shape] = (float32_errors(bnlib_step(x, gamma, beta, dy), x, gamma, beta, dy),
                           float32_errors(torch_outputs, x, gamma, beta, dy))

    digits = rng.standard_normal((60, 64)).astype(np.float32)  # the 8 x 8 digits' 64 features
    labels = torch.tensor(rng.integers(0, 10, 60))
    x_mlp = torch.tensor(digits)
    bnlib_s, torch_s, ratio, iqr = compare(
        {"bnlib": mlp_step_factory(torch, bnlib.nn.BatchNorm1d, x_mlp, labels),
         "torch": mlp_step_factory(torch, torch.nn.BatchNorm1d, x_mlp, labels)}, runs(300)
    )
    ok &= ratio <= BUDGET_MLP
    print_comparison("Figure 1 MLP SGD step, batch 60", bnlib_s, torch_s, ratio, iqr, BUDGET_MLP)
    x_conv = torch.tensor(rng.standard_normal((32, 16, 16, 16)).astype(np.float32))
    bnlib_s, torch_s, ratio, iqr = compare(
        {"bnlib": conv_block_step_factory(torch, bnlib.nn.BatchNorm2d, x_conv, 32),
         "torch": conv_block_step_factory(torch, torch.nn.BatchNorm2d, x_conv, 32)}, runs(60)
    )
    print_comparison("Conv->BN->ReLU step (32,16,16,16)", bnlib_s, torch_s, ratio, iqr, None)

    print()
    print("float32 error against float64 on the same data, bnlib / torch (budget: bnlib's no larger, or both")
    print(f"within float32's epsilon {FLOAT32_EPS:.1e}, where the difference is one rounding)")
    print(f"{'shape':18s} {'error':8s} {'y':>19s} {'dx':>19s} {'dgamma':>19s} {'dbeta':>19s}")
    for shape, (ours, theirs) in accuracy.items():
        for kind, a_list, b_list in (("max", ours[0], theirs[0]), ("rms", ours[1], theirs[1])):
            ok &= all(a <= b or a <= FLOAT32_EPS for a, b in zip(a_list, b_list))
            cells = "".join(f"   {a:.1e} / {b:.1e}" for a, b in zip(a_list, b_list))
            print(f"{str(shape):18s} {kind:7s}{cells}")

    print()
    shape = (512, 2048)
    x, gamma, beta, dy = make_inputs(shape, rng)
    _, cache = bnlib.batchnorm_forward(x, gamma, beta)
    times = interleaved_times(
        {
            "graph": lambda: bnlib.batchnorm_backward_graph(dy, cache),
            "compact": lambda: bnlib.batchnorm_backward(dy, cache),
        },
        runs(15),
    )
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"backward at {shape}: graph {med['graph'] * 1e3:.2f} ms, compact {med['compact'] * 1e3:.2f} ms, "
          f"graph / compact = {med['graph'] / med['compact']:.1f}")

    seconds, heavy = import_time()
    ok &= seconds <= BUDGET_IMPORT_S and not heavy
    print(f"import bnlib: {seconds * 1e3:.0f} ms (median of 7 fresh interpreters, budget "
          f"{BUDGET_IMPORT_S * 1e3:.0f} ms); heavy modules pulled in: {', '.join(heavy) or 'none'}")
    print()
    print("all budgets met" if ok else "SOME BUDGET MISSED")


if __name__ == "__main__":
    main()
