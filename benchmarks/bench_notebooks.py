#!/usr/bin/env python3
"""Time ``make notebooks`` on a built book (design section 7: budget 60 s) and print the figures.

``make notebooks`` is two commands: ``scripts/add_install_cell.py`` (the sources in the form
JupyterLab saves) and ``scripts/make_notebooks.py`` (the notebook edition, with the numbers read
from the execution cache of the last ``make book``). Both are timed as ``make`` runs them, as
fresh processes, into a temporary directory so the repository is not touched: ``--check`` for
the first (it reads and re-serialises every chapter, as the real run does, and writes nothing),
``--out`` for the second. Each is run ``--repeat`` times; the median and the range are printed.

    python benchmarks/bench_notebooks.py              # needs a built book (make book)
    python benchmarks/bench_notebooks.py --repeat 5

A chapter missing from the cache would be executed (tens of seconds each): the script says so
and stops, since that measures the chapters, not ``make notebooks``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 60.0  # seconds, design section 7


def run(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # --check exits 1 when a chapter would change
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_notebooks

    uncached = [c.name for c in make_notebooks.toc_chapters(ROOT) if make_notebooks.cached_execution(c) is None]
    if uncached:
        print(f"not in the execution cache (run `make book` first): {', '.join(uncached)}")
        return 1
    times = {"add_install_cell.py": [], "make_notebooks.py": [], "total": []}
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as out:
        for _ in range(args.repeat):
            first, _ = run([sys.executable, "scripts/add_install_cell.py", "--check"])
            second, printed = run([sys.executable, "scripts/make_notebooks.py", "--out", out])
            times["add_install_cell.py"].append(first)
            times["make_notebooks.py"].append(second)
            times["total"].append(first + second)
    n = len(make_notebooks.toc_chapters(ROOT))
    print(f"make notebooks on a built book, {n} chapters, {args.repeat} runs (machine load affects these):")
    for name, values in times.items():
        print(f"  {name:22s} median {statistics.median(values):6.1f} s   range {min(values):.1f}-{max(values):.1f} s")
    median = statistics.median(times["total"])
    print(f"  budget {BUDGET:.0f} s: {'within' if median <= BUDGET else 'OVER'} ({median / BUDGET:.0%} of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
