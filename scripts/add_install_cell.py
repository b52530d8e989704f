"""Make the first code cell of every chapter the one that installs what Colab lacks.

Colab opens a single ``.ipynb`` without the repository, so a chapter must install ``bnlib``
itself. Its first code cell does that when (and only when) something is missing; where the
packages are installed (a local ``make lab``, Binder, the book build) it does nothing. The cell
is tagged ``remove-cell``, so the website never shows it.

The repository URL and branch come from ``_config.yml`` (``repository.url``/``branch``), the one
place they are set. The script is idempotent: it replaces an existing install cell (any
``remove-cell`` code cell that pip-installs ``bnlib``) by the canonical one and leaves every
other cell as it is.

    python scripts/add_install_cell.py                  # every chapter in _toc.yml
    python scripts/add_install_cell.py chapters/09_*.md # some chapters
    python scripts/add_install_cell.py --check          # exit 1 if a chapter needs the update
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CELL_TEMPLATE = """\
```{{code-cell}} ipython3
:tags: [remove-cell]

# Colab opens this notebook alone: install what is missing (a no-op where all is installed).
import importlib.util
import subprocess
import sys

_needed = {{"bnlib": "bnlib[viz] @ git+{url}@{branch}",
           "myst_nb": "myst-nb<2", "sklearn": "scikit-learn"}}
_missing = [pip for module, pip in _needed.items() if importlib.util.find_spec(module) is None]
if _missing:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *_missing], check=True)
    importlib.invalidate_caches()
```
"""

CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n.*?^```[ \t]*\n", re.S | re.M)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "") or "main")
    if not url.startswith("https://"):
        raise SystemExit(f"_config.yml: repository.url must be an https URL, got {url!r}")
    return url, branch


def install_cell(root: Path = ROOT) -> str:
    """The canonical install cell, as MyST-Markdown text ending in a newline."""
    url, branch = repository(root)
    return CELL_TEMPLATE.format(url=url, branch=branch)


def is_install_cell(block: str) -> bool:
    header = block.split("\n\n", 1)[0]
    return "remove-cell" in header and "pip" in block and "install" in block and "bnlib" in block


def toc_chapters(root: Path = ROOT) -> list[Path]:
    """The chapter files named in ``_toc.yml``, in book order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = []

    def walk(entries):
        for entry in entries or []:
            name = entry.get("file", "")
            if name.startswith("chapters/"):
                files.append(root / (name if name.endswith(".md") else f"{name}.md"))
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def with_install_cell(text: str, cell: str) -> str:
    """``text`` with ``cell`` as its first code cell and no other install cell."""
    blocks = list(CODE_CELL.finditer(text))
    if not blocks:
        raise ValueError("no code cell: is this a MyST-Markdown notebook?")
    first = blocks[0]
    out, pos = [], 0
    for block in blocks:
        if block is not first and is_install_cell(block.group(0)):
            out.append(text[pos:block.start()])
            pos = block.end()
            if text.startswith("\n", pos):  # drop the blank line the removed cell leaves
                pos += 1
            continue
        if block is first:
            out.append(text[pos:block.start()])
            out.append(cell)
            if is_install_cell(block.group(0)):
                pos = block.end()
            else:
                out.append("\n")
                pos = block.start()
    out.append(text[pos:])
    return "".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="MyST-Markdown chapters (default: those in _toc.yml)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a chapter needs the update")
    args = parser.parse_args(argv)
    cell = install_cell()
    stale = []
    for path in args.chapters or toc_chapters():
        text = path.read_text(encoding="utf-8")
        new = with_install_cell(text, cell)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(f"{path}: install cell {'out of date' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
