"""Binder and Colab: the notebooks beside the chapters, their install cell, binder/, launch buttons."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import jupytext
import nbformat
import pytest
import yaml

from conftest import ROOT, load_script, toc_documents

CHAPTERS = [ROOT / f"{d}.md" for d in toc_documents(ROOT / "_toc.yml") if d.startswith("chapters/")]
IDS = [p.stem for p in CHAPTERS]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REGENERATE = "run `make notebooks` to regenerate it"


@pytest.fixture(scope="module")
def add_install_cell():
    return load_script("add_install_cell")


@pytest.fixture(scope="module")
def make_notebooks():
    return load_script("make_notebooks")


# --- the paired notebooks -------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_notebook_is_in_sync_with_its_chapter(chapter, make_notebooks):
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} is missing: {REGENERATE}"
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    source = jupytext.read(chapter)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in source.cells], (
        f"{notebook.name} differs from {chapter.name}: {REGENERATE}"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook.name} carries outputs: {REGENERATE}"
    # and byte for byte what the script writes (ids from the contents: no churn in git)
    assert notebook.read_text(encoding="utf-8") == make_notebooks.notebook_text(chapter), f"{notebook.name}: {REGENERATE}"


def test_every_notebook_has_its_chapter():
    stray = [p.name for p in (ROOT / "chapters").glob("*.ipynb") if not p.with_suffix(".md").is_file()]
    assert not stray, f"notebooks without a chapter: {stray}"


def test_sphinx_never_reads_the_notebooks():
    assert "**.ipynb" in CONFIG["exclude_patterns"]


def test_regenerating_is_deterministic(tmp_path, make_notebooks):
    chapter = tmp_path / "01_x.md"
    chapter.write_text(CHAPTERS[0].read_text())
    first = make_notebooks.notebook_text(chapter)
    assert make_notebooks.notebook_text(chapter) == first
    ids = [c["id"] for c in nbformat.reads(first, as_version=4).cells]
    assert len(set(ids)) == len(ids)


# --- the install cell -------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_first_code_cell_installs_bnlib_and_is_hidden(chapter, add_install_cell):
    text = chapter.read_text()
    assert add_install_cell.with_install_cell(text, add_install_cell.install_cell()) == text, (
        f"{chapter.name}: its first code cell is not the current install cell: run `make notebooks`"
    )
    first = next(c for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert "remove-cell" in first.metadata.get("tags", [])
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert f"git+{url}@{branch}" in first.source


def run_install_cell(monkeypatch, absent=()):
    """Execute the install cell with pip replaced by a recorder; return the commands it ran."""
    import importlib.util

    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real_find_spec(name, *a))
    code = load_script("add_install_cell").install_cell()
    body = code.split("\n\n", 1)[1].rsplit("```", 1)[0]
    exec(compile(body, "install-cell", "exec"), {})
    return calls


def test_install_cell_does_nothing_where_bnlib_is_installed(monkeypatch):
    assert run_install_cell(monkeypatch) == []


def test_install_cell_installs_what_colab_lacks(monkeypatch):
    calls = run_install_cell(monkeypatch, absent={"bnlib", "myst_nb"})
    assert len(calls) == 1
    cmd, kwargs = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and kwargs.get("check") is True
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert f"bnlib[viz] @ git+{url}@{branch}" in cmd
    assert any(c.startswith("myst-nb") for c in cmd) and "scikit-learn" not in cmd


CHAPTER = """---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
import numpy as np
```

Text.

```{code-cell} ipython3
:tags: [remove-cell]

import subprocess
subprocess.run(["pip", "install", "bnlib @ git+https://example.org/old"])
```

End.
"""


def test_add_install_cell_is_idempotent_and_replaces_old_ones(add_install_cell, tmp_path):
    cell = add_install_cell.install_cell()
    once = add_install_cell.with_install_cell(CHAPTER, cell)
    assert once.count("pip") == cell.count("pip") and "example.org/old" not in once
    assert once.index(cell) < once.index("import numpy as np")
    assert once.count("```{code-cell}") == 2 and "Text.\n\nEnd.\n" in once
    assert add_install_cell.with_install_cell(once, cell) == once
    nb = jupytext.reads(once, fmt="md:myst")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "markdown"]
    path = tmp_path / "chapter.md"
    path.write_text(CHAPTER)
    assert add_install_cell.main(["--check", str(path)]) == 1
    assert add_install_cell.main([str(path)]) == 0 and path.read_text() == once
    assert add_install_cell.main(["--check", str(path)]) == 0


# --- binder/ -----------------------------------------------------------------------------------


def pins(path):
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def test_binder_has_the_same_pins_with_cpu_only_torch():
    binder = ROOT / "binder"
    root_pins, binder_pins = pins(ROOT / "requirements.txt"), pins(binder / "requirements.txt")
    assert binder_pins.pop("torch") == root_pins.pop("torch") + "+cpu"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (binder / "requirements.txt").read_text()
    differ = {k: (v, binder_pins.get(k)) for k, v in root_pins.items() if binder_pins.get(k) != v}
    assert not differ, f"binder/requirements.txt differs from requirements.txt (root, binder): {differ}"
    post_build = binder / "postBuild"
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    assert re.search(r"pip install .*-e \.", post_build.read_text())
    numpy_needs = (3, 11)  # numpy 2.4 needs Python 3.11
    version = re.fullmatch(r"python-(\d+)\.(\d+)\s*", (binder / "runtime.txt").read_text())
    assert version and tuple(map(int, version.groups())) >= numpy_needs


# --- the launch buttons on the built site ------------------------------------------------------


def launch_links(page):
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8"))]
    binder = [h for h in hrefs if h.startswith(CONFIG["launch_buttons"]["binderhub_url"])]
    colab = [h for h in hrefs if h.startswith(CONFIG["launch_buttons"]["colab_url"])]
    return binder, colab


def test_launch_buttons_open_the_chapter_notebooks(book):
    assert book.returncode == 0, book.log[-3000:]
    org_repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    checked = 0
    for chapter in CHAPTERS:
        page = book.html / chapter.relative_to(ROOT).with_suffix(".html")
        binder, colab = launch_links(page)
        assert len(binder) == 1 and len(colab) == 1, f"{page.name}: expected one Binder and one Colab button"
        b = urlparse(binder[0])
        assert b.path == f"/v2/gh/{org_repo}/{branch}", binder[0]
        target = parse_qs(b.query)["urlpath"][0]
        assert target.startswith("lab/tree/"), binder[0]
        c = urlparse(colab[0])
        prefix = f"/github/{org_repo}/blob/{branch}/"
        assert c.path.startswith(prefix), colab[0]
        for path in (target.removeprefix("lab/tree/"), c.path.removeprefix(prefix)):
            assert path == chapter.relative_to(ROOT).with_suffix(".ipynb").as_posix(), path
            assert (ROOT / path).is_file(), f"{page.name}: the launch button opens {path}, which is not in the repository"
        checked += 1
    assert checked == len(CHAPTERS)


def test_the_website_hides_the_install_cell(book):
    assert book.returncode == 0, book.log[-3000:]
    for chapter in CHAPTERS:
        text = (book.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf-8")
        assert "_missing" not in text and "importlib.invalidate_caches" not in text, chapter.name
