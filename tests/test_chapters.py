"""Every chapter in the table of contents executes top to bottom and follows the book's rules."""

import pathlib
import re
import time

import jupytext
import nbclient
import pytest

from conftest import toc_documents

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHAPTERS = [ROOT / f"{doc}.md" for doc in toc_documents(ROOT / "_toc.yml") if doc.startswith("chapters/")]


def test_every_chapter_file_is_in_the_toc():
    on_disk = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
    assert sorted(CHAPTERS) == on_disk


@pytest.fixture(scope="module", params=CHAPTERS, ids=lambda p: p.stem)
def executed(request):
    path = request.param
    nb = jupytext.read(path)
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return path, nb, time.perf_counter() - start


def test_chapter_executes_without_errors(executed):
    path, nb, seconds = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    print(f"{path.name}: executed in {seconds:.1f} s")


def test_every_figure_has_a_caption(executed):
    path, nb, _ = executed
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        has_png = any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        if has_png:
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("caption"), f"{path.name}: cell {i} draws a figure without a caption"


def test_chapter_structure(executed):
    path, nb, _ = executed
    text = path.read_text()
    assert text.startswith("---\njupytext:"), f"{path.name}: needs the full jupytext header"
    assert re.search(r"^\(\w[\w-]*\)=\s*\n# ", text, re.M), f"{path.name}: needs a label and a title"
    assert re.search(r"learning goals|you will learn", text, re.I), f"{path.name}: no learning goals"
    assert re.search(r"^## Summary", text, re.M), f"{path.name}: no Summary section"
    n_exercises = len(re.findall(r"```\{exercise-start\}", text))
    assert 2 <= n_exercises <= 4, f"{path.name}: has {n_exercises} exercises, expected 2 to 4"
    assert len(re.findall(r"```\{solution-start\}", text)) == n_exercises
    assert "{glue" in text, f"{path.name}: numbers in the prose must be glued from code"


# The reader never sees the names the book's Korean source documents had for the authors (000-004,
# "the sources", "the paper review"): a claim is attributed to a paper, or described in words.
UNNAMED_SOURCE = re.compile(
    r"source 00[0-4]|\b00[0-4], paper|\bthe sources\b|\bof the sources\b|"
    r"one of (the|this book's|this chapter's) sources|\bthe paper review\b|claim \d+ of the|"
    r"\bthe source posts?\b|\bthe source's\b|\bsource documents\b",
    re.I,
)
READER_PAGES = [ROOT / f"chapters/{c.stem}.md" for c in CHAPTERS] + [
    ROOT / name for name in ("intro.md", "notation.md", "glossary.md", "instructors.md")
]


@pytest.mark.parametrize("page", READER_PAGES, ids=lambda p: p.stem)
def test_no_unnamed_sources_in_the_readers_text(page):
    text = page.read_text(encoding="utf-8")
    found = [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in UNNAMED_SOURCE.finditer(text)]
    assert not found, f"{page.name}: attribute these to a paper or describe them in words: {found}"
