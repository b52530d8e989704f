"""Write student notebooks: every chapter in ``_toc.yml`` with its solutions removed.

    python scripts/make_student.py            # -> student/NN_name.ipynb (make student)
    python scripts/make_student.py --out DIR  # somewhere else

A gated solution is everything from a ``{solution-start}`` directive to its ``{solution-end}``,
including the code cells in between; it goes, and so does nothing else. The exercises, their
starting code and their self-check calls stay, and so does the Colab install cell. Outputs and
execution counts are cleared (the chapters carry none, but the notebook is for running).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_install_cell import toc_chapters  # noqa: E402  (scripts/ is not a package)

# A directive fence: ``` or ::: (three or more), the directive, then up to the closing fence.
SOLUTION_START = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-start\}[^\n]*\n(?:.*?\n)??(?P=fence)[ \t]*$\n?", re.M | re.S)
SOLUTION_END = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-end\}[^\n]*\n(?:.*?\n)??(?P=fence)[ \t]*$\n?", re.M | re.S)


class UnbalancedSolution(ValueError):
    pass


def _strip_markdown(text: str, inside: bool) -> tuple[str, bool]:
    """Remove the solution parts of one markdown cell; return what is left and the state after it."""
    kept, pos = [], 0
    while True:
        if not inside:
            m = SOLUTION_START.search(text, pos)
            if m is None:
                kept.append(text[pos:])
                break
            kept.append(text[pos:m.start()])
            inside, pos = True, m.end()
        else:
            end = SOLUTION_END.search(text, pos)
            nested = SOLUTION_START.search(text, pos)
            if nested is not None and (end is None or nested.start() < end.start()):
                raise UnbalancedSolution("a solution-start inside a solution (missing solution-end?)")
            if end is None:
                break
            inside, pos = False, end.end()
    left = "".join(kept)
    left = re.sub(r"\n{3,}", "\n\n", left).strip("\n")
    return left, inside


def strip_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without its gated solutions and outputs."""
    out = nbformat.from_dict(nb)
    cells, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text, inside_after = _strip_markdown(cell.source, inside)
            inside = inside_after
            if text.strip():
                new = nbformat.from_dict(cell)
                new.source = text
                cells.append(new)
        elif not inside:
            new = nbformat.from_dict(cell)
            if new.cell_type == "code":
                new.outputs = []
                new.execution_count = None
            cells.append(new)
    if inside:
        raise UnbalancedSolution("a solution-start without its solution-end")
    out.cells = cells
    return out


def student_notebook(chapter: Path) -> nbformat.NotebookNode:
    """The chapter without its solutions, as a plain notebook (scripts/make_notebooks.py's edition)."""
    import make_notebooks

    return make_notebooks.student_notebook(chapter, nb=strip_solutions(jupytext.read(chapter)))


def write_student_notebooks(out_dir: Path, chapters: list[Path] | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters or toc_chapters(ROOT):
        target = out_dir / f"{chapter.stem}.ipynb"
        nbformat.write(student_notebook(chapter), target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "student", help="output directory (default: student/)")
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: those in _toc.yml)")
    args = parser.parse_args(argv)
    for path in write_student_notebooks(args.out, args.chapters or None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
