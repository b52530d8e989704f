#!/usr/bin/env python3
"""Measure the book against its budgets (design section 7) and print the figures.

* build time from an empty execution cache (execute + HTML), budget 3 min on 2 cores;
* rebuild time with nothing changed, budget 20 s;
* per chapter, executed top to bottom in a fresh kernel (jupytext + nbclient): wall time
  (budget 30 s) and the kernel's peak resident memory (budget 1 GB);
* per interactive figure, the live redraw time in that kernel (budget 100 ms);
* per page, everything a first-time visitor's browser loads for it, in headless Chromium
  (scripts/page_weight.py; budget 3 MB).

Usage::

    python benchmarks/bench_book.py                 # everything
    python benchmarks/bench_book.py --no-build      # chapters only
    python benchmarks/bench_book.py --no-chapters   # builds only

This prints measurements; tests check behaviour, not time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = {"build": 180.0, "rebuild": 20.0, "chapter": 30.0, "rss_mb": 1024.0, "redraw_ms": 100.0, "page_mb": 3.0}

# Run inside the chapter's kernel after the chapter: time live redraws of its interactive figures.
_REDRAW_PROBE = r"""
import json as _json, time as _time
try:
    from bnlib import viz as _viz
    _handles = list(_viz._INSTANCES)
except Exception:
    _handles = []
_out = []
for _h in _handles:
    try:
        _h.build_widget()
    except ImportError:
        break
    _pick = [(n, w) for n, w in _h._inputs.items() if len(_h.controls[n].values) > 1]
    if not _pick:
        continue
    _name, _w = _pick[0]
    _vals = _h.controls[_name].values
    _times = []
    for _i in range(1, 9):
        _v = _vals[_i % len(_vals)]
        if _v == _w.value:
            continue
        _t = _time.perf_counter(); _w.value = _v; _times.append(_time.perf_counter() - _t)
    _out.append({"figure": _h.uid, "control": _name, "mode": _h.live,
                 "frame_ms": round(_h.frame_seconds * 1e3, 1), "ms": [round(t * 1e3, 1) for t in _times]})
print("BNLIB_REDRAW " + _json.dumps(_out))
"""


def fmt_status(value, budget):
    return "ok" if value <= budget else "OVER BUDGET"


def run_build(out: Path) -> tuple[float, int, str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, proc.stdout + proc.stderr


def page_weights(html: Path) -> list[tuple[str, int, int]]:
    """Each page with everything a first-time visitor's browser loads (scripts/page_weight.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("page_weight", ROOT / "scripts" / "page_weight.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.weigh(html)


def bench_builds(keep: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bnlib-bench-book-"))
    print(f"== book build (jupyter-book build . -W -n --keep-going), output in {tmp}")
    seconds, rc, log = run_build(tmp)
    print(f"build from an empty cache: {seconds:7.1f} s  (budget {BUDGET['build']:.0f} s: {fmt_status(seconds, BUDGET['build'])})"
          + ("" if rc == 0 else f"  FAILED (exit {rc})"))
    if rc != 0:
        print(log[-3000:])
        return
    seconds, rc, _ = run_build(tmp)
    print(f"rebuild, nothing changed:  {seconds:7.1f} s  (budget {BUDGET['rebuild']:.0f} s: {fmt_status(seconds, BUDGET['rebuild'])})")
    html = tmp / "_build" / "html"
    print(f"\n== pages as a first-time visitor's browser loads them (budget {BUDGET['page_mb']:.0f} MB each)")
    try:
        weights = page_weights(html)
    except Exception as error:  # no Chromium here: say so and go on
        print(f"  not measured: {type(error).__name__}: {error}".splitlines()[0])
        weights = []
    for name, total, own in weights:
        print(f"  {name:45s} {total / 1e6:6.2f} MB with its assets, of which {own / 1e6:5.2f} MB its own HTML and images"
              f"  {fmt_status(total / 1e6, BUDGET['page_mb'])}")
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def run_one(path: Path) -> dict:
    """Execute one chapter in a fresh kernel; return wall time, peak kernel RSS, redraw times."""
    import jupytext
    import nbformat
    import psutil
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    peak = [0]
    stop = threading.Event()

    def sample(pid):
        try:
            proc = psutil.Process(pid)
            while not stop.is_set():
                # proportional set size where the OS has it: worker processes forked from the kernel
                # share its pages, which a sum of resident sizes would count once per process
                rss = sum(_memory(p) for p in [proc, *proc.children(recursive=True)])
                peak[0] = max(peak[0], rss)
                stop.wait(0.02)
        except psutil.Error:
            pass

    def _memory(p):
        try:
            return p.memory_full_info().pss
        except (AttributeError, psutil.AccessDenied):
            return p.memory_info().rss

    t_start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        sampler = threading.Thread(target=sample, args=(pid,), daemon=True)
        sampler.start()
        t_cells = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        cells_seconds = time.perf_counter() - t_cells
        probe = nbformat.v4.new_code_cell(_REDRAW_PROBE)
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
        stop.set()
        sampler.join()
    total_seconds = time.perf_counter() - t_start
    # the kernel was this process's child and has been reaped: its max RSS is exact
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    redraws = []
    for out in probe.outputs:
        text = out.get("text", "")
        if "BNLIB_REDRAW " in text:
            redraws = json.loads(text.split("BNLIB_REDRAW ", 1)[1].strip().splitlines()[0])
    return {
        "chapter": path.name,
        "cells_s": cells_seconds,
        "total_s": total_seconds,
        "peak_rss_mb": max(peak[0] / 2**20, children_kb / 1024),
        "redraws": redraws,
    }


def bench_chapters(pattern: str) -> None:
    chapters = sorted((ROOT / "chapters").glob(pattern))
    print(f"\n== chapters, each in a fresh kernel ({os.cpu_count()} CPUs here; budgets: "
          f"{BUDGET['chapter']:.0f} s, {BUDGET['rss_mb']:.0f} MB, live redraw {BUDGET['redraw_ms']:.0f} ms)")
    if not chapters:
        print("  (no chapters/*.md yet)")
        return
    print(f"  {'chapter':34s} {'cells s':>8s} {'+kernel s':>9s} {'peak MB':>8s}  live change ms: median/max (mode, one draw ms)")
    for path in chapters:
        proc = subprocess.run(
            [sys.executable, __file__, "--run-one", str(path)], capture_output=True, text=True, cwd=ROOT
        )
        if proc.returncode != 0:
            print(f"  {path.name:34s} FAILED: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        redraw = []
        over = False
        for fig in r["redraws"]:
            ms = sorted(fig["ms"])
            if ms:
                med = ms[len(ms) // 2]
                redraw.append(f"{med:.0f}/{ms[-1]:.0f} ({fig.get('mode', '?')}, draw {fig.get('frame_ms', 0):.0f})")
                over |= med > BUDGET["redraw_ms"]
        flags = []
        if r["cells_s"] > BUDGET["chapter"]:
            flags.append("TIME OVER BUDGET")
        if r["peak_rss_mb"] > BUDGET["rss_mb"]:
            flags.append("MEMORY OVER BUDGET")
        if over:
            flags.append("REDRAW OVER BUDGET")
        print(f"  {r['chapter']:34s} {r['cells_s']:8.1f} {r['total_s']:9.1f} {r['peak_rss_mb']:8.0f}  "
              f"{', '.join(redraw) or '-'}  {' '.join(flags)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true", help="skip the two book builds")
    ap.add_argument("--no-chapters", action="store_true", help="skip executing the chapters one by one")
    ap.add_argument("--chapters", default="[0-9][0-9]_*.md", help="glob under chapters/ (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary build directory")
    ap.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one:
        print(json.dumps(run_one(args.run_one.resolve())))
        return 0
    if not args.no_build:
        bench_builds(args.keep)
    if not args.no_chapters:
        bench_chapters(args.chapters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
