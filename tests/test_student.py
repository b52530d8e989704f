"""Student notebooks (``make student``): solutions gone, exercises kept, and they run.

The solution regions are found here from the chapter's raw text, independently of
scripts/make_student.py, so that the test does not share the script's mistakes.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import jupytext
import nbclient
import nbformat
import pytest

from conftest import ROOT, load_script, toc_documents

CHAPTERS = [ROOT / f"{d}.md" for d in toc_documents(ROOT / "_toc.yml") if d.startswith("chapters/")]
IDS = [p.stem for p in CHAPTERS]

SOLUTION = re.compile(r"^```\{solution-start\}.*?^```\{solution-end\}[^\n]*\n```[ \t]*$", re.M | re.S)
EXERCISE = re.compile(r"^```\{exercise-start\}\n:label: (?P<label>[\w-]+)\n.*?^```\{exercise-end\}\n```[ \t]*$", re.M | re.S)
FENCE_LINE = re.compile(r"^(`{3,}|:{3,})|^:\w[\w-]*:|^\+\+\+")


@pytest.fixture(scope="module")
def make_student():
    return load_script("make_student")


@pytest.fixture(scope="module")
def student_dir(make_student, tmp_path_factory, book):
    # the numbers in the text come from the session's book build (its execution cache)
    assert book.returncode == 0, book.log[-3000:]
    mp = pytest.MonkeyPatch()
    mp.setenv("BNLIB_JUPYTER_CACHE", str(book.html.parent / ".jupyter_cache"))
    out = tmp_path_factory.mktemp("student")
    try:
        written = make_student.write_student_notebooks(out, CHAPTERS)
    finally:
        mp.undo()
    assert sorted(p.name for p in written) == sorted(f"{p.stem}.ipynb" for p in CHAPTERS)
    return out


def student(student_dir, chapter) -> nbformat.NotebookNode:
    return nbformat.read(student_dir / f"{chapter.stem}.ipynb", as_version=4)


def significant_lines(text: str) -> set[str]:
    """Lines worth looking for: not blank, not a directive fence or option, not trivially short."""
    return {s for s in (line.strip() for line in text.splitlines()) if len(s) >= 6 and not FENCE_LINE.match(s)}


def test_the_chapters_have_gated_solutions():
    assert CHAPTERS, "no chapter in _toc.yml"
    for chapter in CHAPTERS:
        assert SOLUTION.search(chapter.read_text()), f"{chapter.name}: no gated solution found"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_no_solution_text_remains(student_dir, chapter):
    text = chapter.read_text()
    solutions = "\n".join(m.group(0) for m in SOLUTION.finditer(text))
    elsewhere = SOLUTION.sub("", text)
    # library code the chapter shows ({literalinclude}) may share a line with a solution
    library = set().union(*(significant_lines(f.read_text()) for f in (ROOT / "bnlib").rglob("*.py")))
    secret = significant_lines(solutions) - significant_lines(elsewhere) - library
    assert secret, f"{chapter.name}: solutions with no line of their own?"
    nb = student(student_dir, chapter)
    left = set()
    for cell in nb.cells:
        assert "solution-start" not in cell.source and "solution-end" not in cell.source, chapter.name
        left |= {line.strip() for line in cell.source.splitlines()}
    leaked = sorted(secret & left)
    assert not leaked, f"{chapter.name}: solution lines left in the student notebook: {leaked[:5]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_exercise_and_every_other_cell_remains(student_dir, chapter):
    text = chapter.read_text()
    nb = student(student_dir, chapter)
    source = "\n".join(cell.source for cell in nb.cells)
    exercises = list(EXERCISE.finditer(text))
    assert len(exercises) >= 2, f"{chapter.name}: expected 2-4 exercises"
    headings = re.findall(r"^#+ Exercise \d+\.\d+", source, re.M)
    assert len(headings) == len(exercises), f"{chapter.name}: {len(headings)} exercise headings for {len(exercises)} exercises"
    for m in exercises:
        # plain notebooks (scripts/make_notebooks.py): the exercise is a numbered heading, its roles resolved
        lines = {s for s in significant_lines(m.group(0)) if not re.search(r"\{[\w:.-]+\}`", s)}
        missing = lines - {line.strip() for line in source.splitlines()}
        assert not missing, f"{chapter.name}: {m.group('label')} lost {sorted(missing)[:3]}"
    # the code cells outside the solutions, in order: the install cell, the chapter, the exercises' starting code
    outside = jupytext.reads(SOLUTION.sub("", text), fmt="md:myst")
    expected = [c.source for c in outside.cells if c.cell_type == "code"]
    got = [re.sub(r"\A#@title [^\n]*\n", "", c.source) for c in nb.cells if c.cell_type == "code"]  # Colab's form title
    assert got == expected, f"{chapter.name}: code cells differ from the chapter's outside its solutions"
    assert "pip" in got[0] and "remove-cell" in nb.cells[[c.cell_type for c in nb.cells].index("code")].metadata.get("tags", [])


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_outputs_are_cleared(student_dir, chapter):
    nb = student(student_dir, chapter)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_stripping_handles_solutions_inside_markdown_cells(make_student):
    nb = jupytext.reads(
        "# T\n\n```{exercise-start}\n:label: ex\n```\n\nDo it.\n\n```{code-cell} ipython3\n# your code\n```\n\n"
        "```{exercise-end}\n```\n\n```{solution-start} ex\n:class: dropdown\n```\n\nSECRET prose.\n\n"
        "```{code-cell} ipython3\nsecret = 42\n```\n\nMore SECRET.\n\n```{solution-end}\n```\n\nAfter.\n\n"
        ":::{solution-start} ex\n:::\n\nSECRET too.\n\n:::{solution-end}\n:::\n",
        fmt="md:myst",
    )
    out = make_student.strip_solutions(nb)
    text = "\n".join(c.source for c in out.cells)
    assert "SECRET" not in text and "secret = 42" not in text
    assert "Do it." in text and "# your code" in text and "After." in text and "exercise-end" in text


def test_unbalanced_solutions_are_an_error(make_student):
    nb = jupytext.reads("```{solution-start} ex\n```\n\nNo end.\n", fmt="md:myst")
    with pytest.raises(make_student.UnbalancedSolution):
        make_student.strip_solutions(nb)


@pytest.fixture(scope="module")
def executed(student_dir):
    """Every student notebook executed top to bottom, as many at a time as there are CPU cores.

    What a student runs: every cell, the exercises' placeholders included. Each notebook's
    result is ``(notebook, error or None, seconds)``.
    """

    async def run(chapter, slots):
        async with slots:
            nb = nbformat.read(student_dir / f"{chapter.stem}.ipynb", as_version=4)
            client = nbclient.NotebookClient(
                nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(chapter.parent)}}
            )
            start = time.perf_counter()
            try:
                await client.async_execute()
                error = None
            except Exception as exc:  # CellExecutionError names the cell; reported by the test
                error = exc
            return chapter.stem, (nb, error, time.perf_counter() - start)

    async def run_all():
        slots = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
        return dict(await asyncio.gather(*(run(chapter, slots) for chapter in CHAPTERS)))

    return asyncio.run(run_all())


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_notebook_runs_top_to_bottom(executed, chapter):
    """Without an error; the placeholders raise NotImplementedError inside the function, and the
    self-check reports "not written yet" instead of failing."""
    nb, error, seconds = executed[chapter.stem]
    assert error is None, f"{chapter.stem}.ipynb (student): {error}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    calls_a_check = re.compile(r"^(?!\s*def ).*\bcheck_\w+\(", re.M)  # a call, not a definition
    if any(calls_a_check.search(c.source) for c in nb.cells if c.cell_type == "code"):
        assert "not written yet" in printed, f"{chapter.stem}: a self-check on a placeholder should say so"
    print(f"{chapter.stem}.ipynb (student): ran in {seconds:.1f} s")
