"""The notebook edition (launch notebooks for Binder/Colab, student notebooks), its install cell,
the sources' jupytext form, binder/ and the launch buttons."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import jupytext
import nbclient
import nbformat
import pytest
import yaml
from markdown_it import MarkdownIt

from conftest import ROOT, load_script, toc_documents

CHAPTERS = [ROOT / f"{d}.md" for d in toc_documents(ROOT / "_toc.yml") if d.startswith("chapters/")]
IDS = [p.stem for p in CHAPTERS]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REGENERATE = "run `make notebooks` (on a built book) to regenerate it"


@pytest.fixture(scope="module")
def add_install_cell():
    return load_script("add_install_cell")


@pytest.fixture(scope="module")
def make_notebooks():
    return load_script("make_notebooks")


# --- what a front end would show: no MyST ------------------------------------------------------

MARKDOWN = MarkdownIt("commonmark").enable("table")
ROLE_NAME = re.compile(r"\{[a-zA-Z][\w:.-]*\}$")


def myst_left(text: str) -> list[str]:
    """MyST syntax in ``text`` as a CommonMark parser (markdown-it-py) sees it: the raw text a
    notebook front end would show. Roles, directive fences (backtick or colon), options, targets."""
    found = []
    for token in MARKDOWN.parse(text):
        if token.type in ("fence", "code_block") and token.info.strip().startswith("{"):
            found.append(f"directive {token.info.strip()!r}")
        if token.type != "inline":
            continue
        children = token.children or []
        for child, after in zip(children, [*children[1:], None]):
            if child.type != "text":
                continue
            role = ROLE_NAME.search(child.content)
            if role and after is not None and after.type == "code_inline":
                found.append(f"role {role.group(0)}`{after.content}`")
            if re.fullmatch(r"\([^()\s]+\)=", child.content.strip()):
                found.append(f"target {child.content.strip()}")
            if re.match(r":{3,}", child.content) or re.match(r":[\w-]+:( |$)", child.content):
                found.append(f"colon fence or option {child.content[:40]!r}")
            if "{glue" in child.content:
                found.append("{glue")
    return found


def markdown_text(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_the_myst_detector_finds_myst():
    text = (
        "(my-label)=\n# T\n\nA {glue:text}`x:.2f` and {cite:t}`ioffe2015batch`.\n\n:::{admonition} Goals\n:class: tip\n\n"
        "Body\n:::\n\n```{literalinclude} ../x.py\n:pyobject: f\n```\n"
    )
    found = myst_left(text)
    assert any(f.startswith("target") for f in found) and any("glue:text" in f for f in found)
    assert any("cite:t" in f for f in found) and any(f.startswith("directive") for f in found)
    assert any(f.startswith("colon fence") for f in found)
    assert myst_left("Plain `code`, $x^{2}$, a [link](#a) and\n\n```python\n{glue:text}\n```\n") == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_launch_notebook_has_no_myst(chapter):
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    left = {f"cell {i}": myst_left(c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"}
    left = {k: v for k, v in left.items() if v}
    assert not left, f"{chapter.stem}.ipynb shows MyST as raw text: {dict(list(left.items())[:5])}"


@pytest.fixture(scope="module")
def book_cache(book, monkeypatch_module):
    """The test session's book build; its execution cache feeds make_notebooks/make_student."""
    assert book.returncode == 0, book.log[-3000:]
    cache = book.html.parent / ".jupyter_cache"
    monkeypatch_module.setenv("BNLIB_JUPYTER_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def student_notebooks(book_cache, tmp_path_factory):
    make_student = load_script("make_student")
    out = tmp_path_factory.mktemp("student")
    written = make_student.write_student_notebooks(out, CHAPTERS)
    return {p.stem: nbformat.read(p, as_version=4) for p in written}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_notebook_has_no_myst(student_notebooks, chapter):
    nb = student_notebooks[chapter.stem]
    left = {i: myst_left(c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"}
    left = {k: v for k, v in left.items() if v}
    assert not left, f"student {chapter.stem}.ipynb shows MyST as raw text: {dict(list(left.items())[:5])}"
    assert "Solutions" not in markdown_text(nb) and not any("#@title Solution" in c.source for c in nb.cells)


# --- the notebook edition against the built website ---------------------------------------------


@pytest.fixture(scope="module")
def edition(book_cache, make_notebooks):
    """The launch notebooks made from the test session's own book build (its execution cache)."""
    book = make_notebooks.book_for()
    return {
        chapter.stem: make_notebooks.launch_notebook(chapter, make_notebooks.chapter_glue(chapter, book_cache), book)
        for chapter in CHAPTERS
    }


def page(book, chapter) -> str:
    return (book.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf-8")


def plain(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def words(text: str) -> list[str]:
    """Letters and digits only: the same for "$N(0, 1)$", "\\(N(0, 1)\\)" and rendered maths."""
    return re.findall(r"[A-Za-z0-9]+", text)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_number_the_website_shows_is_in_the_notebook(book, edition, chapter):
    shown = [plain(v) for v in re.findall(r'<span class="pasted-text">(.*?)</span>', page(book, chapter), re.S)]
    assert shown, f"{chapter.stem}: no glued number on the page?"
    text = markdown_text(edition[chapter.stem])
    missing = sorted({v for v in shown if v not in text})
    assert not missing, f"{chapter.stem}: numbers on the website but not in the notebook: {missing[:10]}"
    assert "{glue" not in text


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_caption_is_in_the_notebook_with_the_website_number(book, edition, chapter):
    captions = re.findall(
        r'<span class="caption-number">Fig\. ([\d.]+) </span><span class="caption-text">(.*?)</p>\s*</figcaption>',
        page(book, chapter), re.S)
    n_captioned = sum(1 for c in jupytext.read(chapter).cells if c.metadata.get("mystnb", {}).get("figure", {}).get("caption"))
    assert len(captions) == n_captioned, f"{chapter.stem}: {len(captions)} figure captions on the page, {n_captioned} in the source"
    cells = {m.group(1): m.group(2) for c in edition[chapter.stem].cells if c.cell_type == "markdown"
             for m in [re.match(r"\*\*Figure ([\d.]+)\.\*\* (.*)", c.source, re.S)] if m}
    for number, caption in captions:
        assert number in cells, f"{chapter.stem}: no caption cell for Figure {number}"
        # a reference inside a caption reads "Fig. 2.1" on the site, "Figure 2.1" in the notebook
        assert words(re.sub(r"Figure (\d+\.\d+)", r"Fig. \1", cells[number])) == words(plain(caption)), (
            f"{chapter.stem}: Figure {number}'s caption differs")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_headings_and_exercises_are_numbered_as_on_the_website(book, edition, chapter):
    text = page(book, chapter)
    site_sections = re.findall(r'<h[1-6]><span class="section-number">([\d.]+)\. </span>', text)
    site_exercises = re.findall(r'<span class="caption-number">Exercise ([\d.]+) </span>', text)
    nb = edition[chapter.stem]
    sections, exercises = [], []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for token in MARKDOWN.parse(cell.source):
            if token.type == "inline" and token.map and cell.source.split("\n")[token.map[0]].startswith("#"):
                m = re.match(r"([\d.]+)\. ", token.content)
                if m:
                    sections.append(m.group(1))
                m = re.match(r"Exercise ([\d.]+)", token.content)
                if m:
                    exercises.append(m.group(1))
    assert sections == site_sections
    assert exercises == site_exercises
    # and {numref}s point at those numbers: "Fig. 4.2" on the site is "Figure 4.2" in the notebook
    refs = re.findall(r'<span class="std std-numref">Fig\. ([\d.]+)</span>', text)
    nb_text = markdown_text(nb)
    assert all(f"Figure {r}" in nb_text for r in refs)


# --- the committed launch notebooks ------------------------------------------------------------------


class AnyGlue(dict):
    """Every glue key present with the value 0: regenerates a notebook's structure without a build."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return {"text/plain": "0"}


def masked(text: str) -> str:
    """``text`` with every number (and list of numbers) as '#'."""
    text = re.sub(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?%?", "#", text)
    return re.sub(r"#(?:, #)+", "#", text)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_launch_notebook_is_in_sync_with_its_chapter(chapter, make_notebooks):
    """The committed notebook is what `make notebooks` writes from the current chapter, up to the
    glued numbers (which need a build, and some of which are timings)."""
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} is missing: {REGENERATE}"
    committed = nbformat.read(notebook, as_version=4)
    nbformat.validate(committed)
    fresh = make_notebooks.launch_notebook(chapter, AnyGlue())
    assert [(c.cell_type, masked(c.source)) for c in committed.cells] == [(c.cell_type, masked(c.source)) for c in fresh.cells], (
        f"{notebook.name} differs from {chapter.name}: {REGENERATE}")
    assert committed.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in committed.metadata
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook.name} carries outputs: {REGENERATE}"


def test_every_notebook_has_its_chapter():
    stray = [p.name for p in (ROOT / "chapters").glob("*.ipynb") if not p.with_suffix(".md").is_file()]
    assert not stray, f"notebooks without a chapter: {stray}"


def test_sphinx_never_reads_the_notebooks():
    assert "**.ipynb" in CONFIG["exclude_patterns"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_solutions_are_collapsed_at_the_end(chapter):
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    heads = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Solutions")]
    n_solutions = chapter.read_text().count("{solution-start}")
    assert len(heads) == 1, f"{chapter.stem}: expected one Solutions section"
    start = heads[0]
    assert nb.cells[start].metadata.get("jp-MarkdownHeadingCollapsed") is True
    assert all(c.cell_type == "markdown" or c.source.startswith("#@title Solution") for c in nb.cells[start:])
    solution_heads = [c.source.split("\n")[0] for c in nb.cells[start:] if c.source.startswith("### Solution to Exercise")]
    assert len(solution_heads) == n_solutions
    exercise_heads = [c.source.split("\n")[0] for c in nb.cells[:start] if re.match(r"#+ Exercise \d", c.source)]
    assert [h.split("Exercise ")[1] for h in solution_heads] == [h.split("Exercise ")[1].split(" ")[0] for h in exercise_heads]
    for cell in nb.cells[start:]:
        if cell.cell_type == "code":
            assert cell.metadata["jupyter"]["source_hidden"] is True and cell.metadata["cellView"] == "form"
    # the hidden cells before: the install cell and the website's hide-input cells
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source.startswith("#@title Setup") and first_code.metadata["jupyter"]["source_hidden"]


@pytest.fixture(scope="module")
def ran_launch_notebook():
    """Chapter 4's launch notebook, run top to bottom by nbclient as a reader's Run All runs it."""
    chapter = ROOT / "chapters" / "04_batch_normalization.md"
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(chapter.parent)}}).execute()
    return chapter, nb


def test_the_numbers_are_those_a_reader_gets_by_running_the_notebook(ran_launch_notebook, make_notebooks):
    chapter, ran = ran_launch_notebook
    glue = make_notebooks.glue_data(ran)
    assert len(glue) >= 10
    again = make_notebooks.launch_notebook(chapter, glue)
    committed = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    assert [c.source for c in again.cells] == [c.source for c in committed.cells], (
        "the notebook's numbers differ from those its own run computes (or it is stale: " + REGENERATE + ")")


def test_run_all_runs_the_solutions_last_and_they_pass(ran_launch_notebook):
    _, ran = ran_launch_notebook
    start = next(i for i, c in enumerate(ran.cells) if c.source.startswith("## Solutions"))
    checked = 0
    for cell in ran.cells[start:]:
        if cell.cell_type == "code" and re.search(r"^(?!\s*def ).*\bcheck_\w+\(", cell.source, re.M):
            printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert "passed" in printed, printed
            checked += 1
    assert checked >= 1


# --- the converter, on a small book of its own -----------------------------------------------------

TOC = """format: jb-book
root: intro
parts:
  - caption: Part
    numbered: true
    chapters:
      - file: chapters/01_one
      - file: chapters/02_two
"""
BIB = """@article{ioffe2015batch, author = {Ioffe, Sergey and Szegedy, Christian}, title = {BN}, year = {2015},
  doi = {10.5555/3045118.3045167}}
@article{santurkar2018does, author = {Santurkar, S. and Tsipras, D. and Ilyas, A. and M{\\k{a}}dry, A.}, title = {How}, year = {2018}}
"""
HEADER = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n    format_version: 0.13\nkernelspec:\n  name: python3\n  display_name: Python 3 (ipykernel)\n  language: python\n---\n\n"
ONE = HEADER + """(one)=
# One

```{code-cell} ipython3
x = 1
```

(one-sec)=
## A section

We measured {glue:text}`one-ratio:.2f`, {glue:text}`one-share:.1%` of {glue:text}`one-n:,d` and {glue}`one-word`
(see {numref}`two-fig`, {numref}`Plot %s <two-fig>`, {ref}`one-sec`, {ref}`the next chapter <two>` and
[the other section](two-sec)). As {cite:t}`ioffe2015batch` showed {cite:p}`ioffe2015batch,santurkar2018does`.
Code `{glue:text}` stays code.

:::{admonition} Learning goals
:class: tip

- first
- second {glue:text}`one-n`
:::
After.

:::{admonition} The library's `f`
:class: dropdown

```{literalinclude} ../lib.py
:pyobject: f
```
:::

## Exercises

```{exercise-start}
:label: one-ex-a
```

Write `g`.

```{code-cell} ipython3
:tags: [exercise-starter]

def g(v):
    raise NotImplementedError  # your code here
```

```{code-cell} ipython3
:tags: [self-check]

check_g(g);
```

```{exercise-end}
```

```{solution-start} one-ex-a
:class: dropdown
```

Double it.

```{code-cell} ipython3
def g(v):
    return 2 * v
```

```{solution-end}
```

```{exercise-start} Think
:label: one-ex-b
```

Why? See {ref}`one-ex-a`.

```{exercise-end}
```
"""
TWO = HEADER + """(two)=
# Two

(two-sec)=
## Its section

```{code-cell} ipython3
---
tags: [hide-input]
mystnb:
  figure:
    caption: A plot of {glue:text}`two-v:.1f` things.
    name: two-fig
---
print(2)
```
"""
LIB = '''import functools


def other():
    pass


@functools.lru_cache
def f(a):
    """Doc."""
    return a + 1
'''


@pytest.fixture
def small_book(tmp_path, make_notebooks):
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "references.bib").write_text(BIB)
    (tmp_path / "lib.py").write_text(LIB)
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "01_one.md").write_text(ONE)
    (tmp_path / "chapters" / "02_two.md").write_text(TWO)
    chapters = [tmp_path / "chapters" / "01_one.md", tmp_path / "chapters" / "02_two.md"]
    return make_notebooks.Book(tmp_path, chapters), chapters


GLUE_ONE = {"one-ratio": {"text/plain": "1.2345"}, "one-share": {"text/plain": "0.25"},
            "one-n": {"text/plain": "12345"}, "one-word": {"text/plain": "'ZCA'"}}


def test_converter_writes_plain_markdown(small_book, make_notebooks):
    book, (one, two) = small_book
    nb = make_notebooks.convert(jupytext.read(one), one, book, GLUE_ONE, solutions=True)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n\n".join(md)
    assert md[0] == "# 1. One" and "## 1.1. A section" in text
    assert "We measured 1.23, 25.0% of 12,345 and ZCA" in text
    assert "(see [Figure 2.1](02_two.ipynb), [Plot 2.1](02_two.ipynb), [A section](#1.1.-A-section), " \
           "[the next chapter](02_two.ipynb) and\n[the other section](02_two.ipynb#2.1.-Its-section))" in text
    assert "As [Ioffe and Szegedy (2015)](https://doi.org/10.5555/3045118.3045167) showed " \
           "([Ioffe and Szegedy, 2015](https://doi.org/10.5555/3045118.3045167); Santurkar et al., 2018)." in text
    assert "Code `{glue:text}` stays code." in text
    assert "> **Learning goals**\n>\n> - first\n> - second 12345\n\nAfter." in text
    assert "<details>\n<summary><strong>The library's <code>f</code></strong></summary>\n\n```python\n" \
           "@functools.lru_cache\ndef f(a):\n    \"\"\"Doc.\"\"\"\n    return a + 1\n```\n\n</details>" in text
    assert "### Exercise 1.1\n\nWrite `g`." in text and "### Exercise 1.2 (Think)\n\nWhy? See [Exercise 1.1](#Exercise-1.1)." in text
    assert myst_left(text) == []
    # both exercise code cells stay in place, runnable; the solution moves to the collapsed end
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source.split("\n")[0] for c in code] == ["x = 1", "def g(v):", "check_g(g);", "#@title Solution to Exercise 1.1"]
    assert code[1].metadata["tags"] == ["exercise-starter"] and code[2].metadata["tags"] == ["self-check"]
    sources = [c.source for c in nb.cells]
    solutions = sources.index(next(s for s in sources if s.startswith("## Solutions")))
    assert sources.index("Double it.") > solutions > sources.index(code[2].source)
    assert nb.cells[solutions].metadata["jp-MarkdownHeadingCollapsed"] is True
    # the student edition: the same without any solution
    student = make_notebooks.convert(jupytext.read(one), one, book, GLUE_ONE, solutions=False)
    assert "Double it." not in markdown_text(student) and "Solution" not in markdown_text(student)
    assert [c.source for c in student.cells if c.cell_type == "code"] == [c.source for c in code[:3]]


def test_converter_writes_captions_and_collapses_hidden_cells(small_book, make_notebooks):
    book, (one, two) = small_book
    nb = make_notebooks.convert(jupytext.read(two), two, book, {"two-v": {"text/plain": "2.25"}})
    code = next(c for c in nb.cells if c.cell_type == "code")
    assert code.source == "#@title Code for Figure 2.1\nprint(2)"
    assert code.metadata["jupyter"]["source_hidden"] is True and "mystnb" not in code.metadata
    after = nb.cells[nb.cells.index(code) + 1]
    assert after.cell_type == "markdown" and after.source == "**Figure 2.1.** A plot of 2.2 things."
    assert "jupytext" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"


def test_converter_refuses_what_it_cannot_express(small_book, make_notebooks):
    book, (one, two) = small_book
    with pytest.raises(make_notebooks.ConversionError, match="no glued value 'one-ratio'"):
        make_notebooks.convert(jupytext.read(one), one, book, {})
    broken = jupytext.reads(ONE.replace("{ref}`one-sec`", "{ref}`nowhere`"), fmt="md:myst")
    with pytest.raises(make_notebooks.ConversionError, match="no label 'nowhere'"):
        make_notebooks.convert(broken, one, book, GLUE_ONE)


def test_without_a_cache_entry_the_chapter_is_executed_and_cached(tmp_path, make_notebooks, monkeypatch):
    chapter = tmp_path / "c.md"
    chapter.write_text(HEADER + "# C\n\n```{code-cell} ipython3\nfrom myst_nb import glue\n"
                       "glue('c-pi', 3.14159, display=False)\n```\n\nPi is {glue:text}`c-pi:.3f`.\n")
    cache = tmp_path / "cache"
    glue = make_notebooks.chapter_glue(chapter, cache)
    assert make_notebooks.format_plain_text(glue["c-pi"]["text/plain"], ".3f") == "3.142"
    make_notebooks._GLUE_MEMO.clear()
    monkeypatch.setattr(make_notebooks, "execute_chapter", lambda *a: pytest.fail("executed again"))
    assert make_notebooks.chapter_glue(chapter, cache) == glue  # from the cache this time


# --- the sources as JupyterLab saves them ---------------------------------------------------------------


def test_kernelspec_is_what_jupyterlab_writes(add_install_cell):
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert add_install_cell.KERNELSPEC == {"name": "python3", "display_name": spec.display_name, "language": spec.language}


def test_opening_and_saving_every_chapter_in_jupyterlab_changes_nothing(tmp_path, add_install_cell):
    """As JupyterLab does: jupytext's contents manager reads the .md as a notebook, the front end
    starts the kernel (which sets kernelspec and language_info), collapses a cell, and saves."""
    from jupytext import AsyncTextFileContentsManager

    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    (tmp_path / "chapters").mkdir()
    for chapter in CHAPTERS:
        shutil.copy(chapter, tmp_path / "chapters" / chapter.name)
    shutil.copy(CHAPTERS[0].with_suffix(".ipynb"), tmp_path / "chapters" / CHAPTERS[0].with_suffix(".ipynb").name)

    async def open_and_save(cm, path):
        model = await cm.get(path, type="notebook", content=True)
        nb = json.loads(json.dumps(model["content"]))  # through the browser, as JSON
        nb["metadata"]["kernelspec"] = dict(add_install_cell.KERNELSPEC)
        nb["metadata"]["language_info"] = {"name": "python", "pygments_lexer": "ipython3", "version": sys.version.split()[0],
                                           "codemirror_mode": {"name": "ipython", "version": 3}}
        nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
        nb["cells"][1].setdefault("metadata", {})["jupyter"] = {"source_hidden": True}
        nb["cells"][1]["metadata"]["scrolled"] = True
        await cm.save({"type": "notebook", "format": "json", "content": nb}, path)

    async def run():
        cm = AsyncTextFileContentsManager(root_dir=str(tmp_path))
        for chapter in CHAPTERS:
            await open_and_save(cm, f"chapters/{chapter.name}")
        await open_and_save(cm, f"chapters/{CHAPTERS[0].stem}.ipynb")  # the launch notebook: no pairing

    asyncio.run(run())
    changed = [c.name for c in CHAPTERS if (tmp_path / "chapters" / c.name).read_bytes() != c.read_bytes()]
    assert not changed, f"a save in JupyterLab rewrites {changed}: run `make notebooks` (scripts/add_install_cell.py)"
    assert sorted(p.name for p in (tmp_path / "chapters").iterdir() if p.name != ".ipynb_checkpoints") == sorted(
        [c.name for c in CHAPTERS] + [CHAPTERS[0].with_suffix(".ipynb").name])


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_is_in_the_form_jupyterlab_saves(chapter, add_install_cell):
    text = chapter.read_text()
    assert add_install_cell.canonical_text(text, add_install_cell.install_code()) == text, (
        f"{chapter.name}: not in the form JupyterLab saves, or an old install cell: run `make notebooks`")


def test_jupytext_config_pairs_nothing():
    config = (ROOT / "jupytext.toml").read_text()
    assert not re.search(r"^\s*formats\s*=", config, re.M), "pairing would let a save overwrite the launch notebook"


# --- the install cell -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_first_code_cell_installs_bnlib_and_is_hidden(chapter, add_install_cell):
    first = next(c for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert "remove-cell" in first.metadata.get("tags", []) and first.source == add_install_cell.install_code()
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert f'REPOSITORY = "{url}"' in first.source and f"git+{{REPOSITORY}}@{branch}" in first.source


def run_install_cell(monkeypatch, absent=(), returncode=0):
    """Execute the install cell with pip replaced by a recorder; return the commands it ran."""
    import importlib.util

    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: could not connect")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real_find_spec(name, *a))
    exec(compile(load_script("add_install_cell").install_code(), "install-cell", "exec"), {})
    return calls


def test_install_cell_does_nothing_where_everything_is_installed(monkeypatch):
    assert run_install_cell(monkeypatch) == []


def test_install_cell_installs_each_missing_package_separately(monkeypatch):
    calls = run_install_cell(monkeypatch, absent={"bnlib", "myst_nb"})
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert [cmd for cmd, _ in calls] == [
        [sys.executable, "-m", "pip", "install", "-q", f"bnlib[viz] @ git+{url}@{branch}"],
        [sys.executable, "-m", "pip", "install", "-q", "myst-nb<2"],
    ]


def test_install_cell_failing_pip_says_what_to_do(monkeypatch):
    with pytest.raises(Exception, match=r"Could not install scikit-learn .*Binder.*pip install") as info:
        run_install_cell(monkeypatch, absent={"sklearn"}, returncode=1)
    assert type(info.value).__name__ == "InstallError"


def test_unreachable_repository_gets_one_sentence_in_a_kernel(add_install_cell):
    """A real kernel and a real pip, with the repository at an address nothing listens on."""
    unreachable = "https://127.0.0.1:9/nobody/nothing"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import importlib.util as _u\n_real = _u.find_spec\n"
                                  "_u.find_spec = lambda n, *a: None if n == 'bnlib' else _real(n, *a)"),
        nbformat.v4.new_code_cell(add_install_cell.install_code(url=unreachable)),
    ])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1, nb.cells[1].outputs
    sentence = errors[0].traceback[0]
    assert sentence.startswith(f"Could not install bnlib from {unreachable}") and sentence.count(". ") == 0
    assert "Binder" in sentence and "pip install" in sentence


def test_canonical_form_is_idempotent_and_replaces_old_install_cells(add_install_cell):
    old = HEADER.replace("Python 3 (ipykernel)", "Python 3") + (
        "# A chapter\n\n```{code-cell} ipython3\n:tags: [remove-cell]\n\nimport subprocess\n"
        "subprocess.run(['pip', 'install', 'bnlib @ git+https://example.org/old'])\n```\n\nText.\n\n"
        "```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: |\n      A long caption\n      on two lines.\n"
        "    name: f\n---\nimport numpy as np\n```\n")
    code = add_install_cell.install_code()
    once = add_install_cell.canonical_text(old, code)
    assert "example.org/old" not in once and once.count("pip") == code.count("pip")
    assert once.index("REPOSITORY") < once.index("Text.") < once.index("import numpy")
    assert "caption: A long caption on two lines." in once and "display_name: Python 3 (ipykernel)" in once
    assert add_install_cell.canonical_text(once, code) == once


# --- binder/ and make lab -------------------------------------------------------------------------------


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
    assert {"jupyterlab", "jupyterlab-myst", "jupytext"} <= set(binder_pins), "Binder's JupyterLab renders MyST and opens .md"
    post_build = binder / "postBuild"
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    assert re.search(r"pip install .*-e \.", post_build.read_text())
    numpy_needs = (3, 11)  # numpy 2.4 needs Python 3.11
    version = re.fullmatch(r"python-(\d+)\.(\d+)\s*", (binder / "runtime.txt").read_text())
    assert version and tuple(map(int, version.groups())) >= numpy_needs


def test_make_lab_runs_as_root_with_myst_rendering():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "--allow-root" in recipe and "--no-browser" in recipe and "pip install" not in recipe
    assert "jupyterlab-myst" in (ROOT / "requirements.txt").read_text()
    notebooks = re.search(r"^notebooks:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "add_install_cell.py" in notebooks and "make_notebooks.py" in notebooks


# --- the launch buttons on the built site ------------------------------------------------------------------


def launch_links(page_path):
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page_path.read_text(encoding="utf-8"))]
    binder = [h for h in hrefs if h.startswith(CONFIG["launch_buttons"]["binderhub_url"])]
    colab = [h for h in hrefs if h.startswith(CONFIG["launch_buttons"]["colab_url"])]
    return binder, colab


def test_launch_buttons_open_the_chapter_notebooks(book):
    assert book.returncode == 0, book.log[-3000:]
    org_repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    checked = 0
    for chapter in CHAPTERS:
        page_path = book.html / chapter.relative_to(ROOT).with_suffix(".html")
        binder, colab = launch_links(page_path)
        assert len(binder) == 1 and len(colab) == 1, f"{page_path.name}: expected one Binder and one Colab button"
        b = urlparse(binder[0])
        assert b.path == f"/v2/gh/{org_repo}/{branch}", binder[0]
        target = parse_qs(b.query)["urlpath"][0]
        assert target.startswith("lab/tree/"), binder[0]
        c = urlparse(colab[0])
        prefix = f"/github/{org_repo}/blob/{branch}/"
        assert c.path.startswith(prefix), colab[0]
        for path in (target.removeprefix("lab/tree/"), c.path.removeprefix(prefix)):
            assert path == chapter.relative_to(ROOT).with_suffix(".ipynb").as_posix(), path
            assert (ROOT / path).is_file(), f"{page_path.name}: the launch button opens {path}, which is not in the repository"
        checked += 1
    assert checked == len(CHAPTERS)


def test_the_website_hides_the_install_cell(book):
    assert book.returncode == 0, book.log[-3000:]
    for chapter in CHAPTERS:
        text = (book.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf-8")
        assert "REPOSITORY" not in text and "importlib.invalidate_caches" not in text, chapter.name
