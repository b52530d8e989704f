"""Keep every chapter source in shape for Colab and for JupyterLab.

    python scripts/add_install_cell.py                  # every chapter in _toc.yml
    python scripts/add_install_cell.py chapters/09_*.md # some chapters
    python scripts/add_install_cell.py --check          # exit 1 if a chapter needs the update

Two things, both idempotent (``make notebooks`` runs this first):

1. **The install cell.** Colab opens a single ``.ipynb`` without the repository, so a chapter
   installs what Colab lacks itself: its first code cell installs each missing package with its
   own ``pip`` call (so one failure names its package), and does nothing where everything is
   installed (a local ``make lab``, Binder, the book build). When the repository cannot be
   reached it stops with one sentence saying what to do (Binder, or ``pip install`` a downloaded
   copy) instead of a ``CalledProcessError`` and git's traceback. The cell is tagged
   ``remove-cell``: the website never shows it, and the notebook edition collapses it. The
   repository URL and branch come from ``_config.yml`` (``repository.url``/``branch``), the one
   place they are set. An existing install cell (any ``remove-cell`` code cell that pip-installs
   ``bnlib``) is replaced by the current one.

2. **The form JupyterLab saves.** JupyterLab opens a chapter ``.md`` through jupytext and saves it
   with jupytext's writer and the repository's ``jupytext.toml``. A chapter already in that form
   is saved byte for byte unchanged; anything else (a ``caption: |`` block, which jupytext's YAML
   writer re-flows into a quoted string) would be rewritten by the first autosave. So the chapter
   is written here as that writer writes it: captions on one logical line (YAML folds it),
   and the kernelspec of ipykernel's ``python3`` kernel (``KERNELSPEC``), which JupyterLab puts
   into the notebook when the kernel starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml
from jupytext.config import load_jupytext_config

ROOT = Path(__file__).resolve().parents[1]

# What JupyterLab writes into a notebook's metadata when ipykernel's python3 kernel starts, in its
# key order (jupytext keeps the order; tests/test_notebooks.py checks it against the kernel's spec).
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
INSTALL_TAG = "remove-cell"

INSTALL_TEMPLATE = '''\
# Colab opens this notebook alone: install what it lacks, one package at a time
# (nothing happens where everything is installed).
import importlib.util
import subprocess
import sys

REPOSITORY = "{url}"  # set in the book's _config.yml
_needed = {{"bnlib": f"bnlib[viz] @ git+{{REPOSITORY}}@{branch}",
           "myst_nb": "myst-nb<2", "sklearn": "scikit-learn"}}


class InstallError(Exception):
    def _render_traceback_(self):  # IPython shows this sentence instead of a traceback
        return [str(self)]


for _module, _package in _needed.items():
    if importlib.util.find_spec(_module) is None:
        _pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", _package],
                              capture_output=True, text=True)
        if _pip.returncode != 0:
            _what = f"bnlib from {{REPOSITORY}}" if _module == "bnlib" else _package
            raise InstallError(
                f"Could not install {{_what}} (no connection?): open this chapter with the Binder "
                f"button instead, or download the repository and run "
                f"`pip install \\"<its folder>[viz]\\"` in this notebook's environment.")
        importlib.invalidate_caches()
'''


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "") or "main")
    if not url.startswith("https://"):
        raise SystemExit(f"_config.yml: repository.url must be an https URL, got {url!r}")
    return url, branch


def install_code(root: Path = ROOT, url: str | None = None, branch: str | None = None) -> str:
    """The install cell's Python source, for the repository in ``_config.yml`` (or ``url``)."""
    config_url, config_branch = repository(root)
    return INSTALL_TEMPLATE.format(url=url or config_url, branch=branch or config_branch).rstrip("\n")


def is_install_cell(cell) -> bool:
    return (
        cell.cell_type == "code"
        and INSTALL_TAG in cell.metadata.get("tags", [])
        and "pip" in cell.source
        and "install" in cell.source
        and "bnlib" in cell.source
    )


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


def jupytext_config(root: Path = ROOT):
    """The repository's jupytext configuration (``jupytext.toml``), as JupyterLab loads it."""
    config = load_jupytext_config(str(root / "chapters"))
    if config is None:
        raise SystemExit(f"no jupytext configuration found above {root / 'chapters'}")
    return config


def one_line(text: str) -> str:
    """A caption's text with its line breaks as spaces (paragraph breaks kept)."""
    paragraphs = [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def canonical_notebook(nb: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    """``nb`` with ``code`` as its first code cell, no other install cell, and JupyterLab's form."""
    # where the first code cell (or the old install cell) stands, before or after removing it
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    if first_code is None:
        raise ValueError("no code cell: is this a MyST-Markdown notebook?")
    cells = [c for c in nb.cells[:first_code] if not is_install_cell(c)]
    install = nbformat.v4.new_code_cell(code, metadata={"tags": [INSTALL_TAG]})
    install.pop("id", None)
    cells += [install] + [c for c in nb.cells[first_code:] if not is_install_cell(c)]
    for cell in cells:
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        if isinstance(figure.get("caption"), str):
            figure["caption"] = one_line(figure["caption"])
    nb.cells = cells
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def canonical_text(text: str, code: str, config=None) -> str:
    """The chapter source ``text`` as JupyterLab would save it, with the current install cell."""
    nb = canonical_notebook(jupytext.reads(text, fmt="md:myst"), code)
    return jupytext.writes(nb, fmt="md:myst", config=config or jupytext_config())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="MyST-Markdown chapters (default: those in _toc.yml)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a chapter needs the update")
    args = parser.parse_args(argv)
    code, config = install_code(), jupytext_config()
    stale = []
    for path in args.chapters or toc_chapters():
        text = path.read_text(encoding="utf-8")
        new = canonical_text(text, code, config)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(f"{path}: {'out of date (run make notebooks)' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
