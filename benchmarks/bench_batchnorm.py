"""Speed and accuracy of bnlib's Batch Normalization against torch, and the cost of ``import bnlib``.

Budgets (design section 7): bnlib's forward + backward (``batchnorm_forward`` then
``batchnorm_backward``) takes at most 1.0x the time of ``torch.nn.functional.batch_norm``
forward + backward (autograd, gradients reset each call) on CPU, one thread each, float32,
at (512, 4096) and (64, 64, 32, 32); ``import bnlib`` takes at most 0.3 s.

Runs are interleaved (bnlib, torch, bnlib, torch, ...) so that both see the same machine
load, and medians are reported. Run from the project root:

    python benchmarks/bench_batchnorm.py [--repeats 30]
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

SHAPES = [(512, 4096), (64, 64, 32, 32)]
BUDGET_RATIO = 1.0
BUDGET_IMPORT_S = 0.3


def make_inputs(shape, rng):
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
        return y

    return step


def interleaved_times(funcs, repeats, warmup=3):
    """Wall times (s) of each function, calling them in turn ``repeats`` times."""
    for _ in range(warmup):
        for f in funcs.values():
            f()
    times = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, f in funcs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(funcs, repeats, warmup=3):
    """Median wall time (s) of each function, calling them in turn ``repeats`` times."""
    return {name: statistics.median(t) for name, t in interleaved_times(funcs, repeats, warmup).items()}


def float32_errors(x, gamma, beta, dy):
    """Largest error of bnlib's float32 y and dx against its float64 result, relative to max |.|."""
    y32, dx32, *_ = bnlib_step(x, gamma, beta, dy)
    y64, dx64, *_ = bnlib_step(*(a.astype(np.float64) for a in (x, gamma, beta, dy)))
    rel = [float(np.abs(a - b).max() / np.abs(b).max()) for a, b in ((y32, y64), (dx32, dx64))]
    return rel


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved runs per shape (default 30)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, torch {torch.__version__}, one thread each, float32, "
          f"{args.repeats} interleaved runs, medians")
    print()
    print("forward + backward         bnlib ms   torch ms   ratio  (budget <= 1.0)   paired ratios: median [IQR]"
          "   float32 rel. error y / dx")
    ok = True
    for shape in SHAPES:
        x, gamma, beta, dy = make_inputs(shape, rng)
        funcs = {
            "bnlib": lambda: bnlib_step(x, gamma, beta, dy),
            "torch": torch_step_factory(torch, x, gamma, beta, dy),
        }
        times = interleaved_times(funcs, args.repeats)
        med = {name: statistics.median(t) for name, t in times.items()}
        ratio = med["bnlib"] / med["torch"]
        # each bnlib run against the torch run right after it: robust to the machine's drift
        q1, q2, q3 = statistics.quantiles([a / b for a, b in zip(times["bnlib"], times["torch"])], n=4)
        ok &= ratio <= BUDGET_RATIO
        err_y, err_dx = float32_errors(x, gamma, beta, dy)
        verdict = "ok" if ratio <= BUDGET_RATIO else "OVER"
        print(f"{str(shape):24s} {med['bnlib'] * 1e3:9.2f}  {med['torch'] * 1e3:9.2f}  {ratio:6.2f}  {verdict:16s}"
              f"  {q2:5.2f} [{q1:.2f}, {q3:.2f}]          {err_y:.1e} / {err_dx:.1e}")

    print()
    shape = (512, 2048)
    x, gamma, beta, dy = make_inputs(shape, rng)
    _, cache = bnlib.batchnorm_forward(x, gamma, beta)
    med = interleaved_medians(
        {
            "graph": lambda: bnlib.batchnorm_backward_graph(dy, cache),
            "compact": lambda: bnlib.batchnorm_backward(dy, cache),
        },
        max(5, args.repeats // 3),
    )
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
