"""Write the ``.ipynb`` next to every chapter, for the Binder and Colab launch buttons.

    python scripts/make_notebooks.py           # every chapter in _toc.yml (make notebooks)
    python scripts/make_notebooks.py --check   # exit 1 if a notebook is missing or out of date

The MyST-Markdown chapter (``chapters/NN_name.md``) is the source; the notebook beside it is
generated from it with jupytext, the same conversion as ``jupytext --to ipynb``, with no outputs
(Colab and Binder run the chapter; the website has the outputs). Cell ids are derived from the
cells' contents, so regenerating an unchanged chapter rewrites the same file byte for byte and
an edit changes only the ids of the edited cells. Sphinx never reads these notebooks
(``"**.ipynb"`` in ``_config.yml``'s ``exclude_patterns``); Jupyter Book's launch buttons use them
because a ``.ipynb`` of the same name sits next to the page's source.

``make notebooks`` first runs ``scripts/add_install_cell.py``, so that every notebook starts with
the cell that installs ``bnlib`` on Colab.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_install_cell import toc_chapters  # noqa: E402  (scripts/ is not a package)


def paired_notebook(chapter: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook: its cells, no outputs, ids from the cells' contents."""
    nb = jupytext.read(chapter)
    seen = Counter()
    for cell in nb.cells:
        key = f"{cell.cell_type}\n{cell.source}"
        seen[key] += 1
        cell.id = hashlib.sha1(f"{key}\n{seen[key]}".encode()).hexdigest()[:8]
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def notebook_text(chapter: Path) -> str:
    return jupytext.writes(paired_notebook(chapter), fmt="ipynb")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: those in _toc.yml)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    args = parser.parse_args(argv)
    stale = []
    for chapter in args.chapters or toc_chapters(ROOT):
        target = chapter.with_suffix(".ipynb")
        text = notebook_text(chapter)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not args.check:
                target.write_text(text, encoding="utf-8")
    for target in stale:
        print(f"{target}: {'out of date' if args.check else 'written'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
