"""Student notebooks (``make student``): solutions gone, exercises kept, and they run.

The solution regions are found here from the chapter's raw text, independently of
scripts/make_student.py, so that the test does not share the script's mistakes.
"""

from __future__ import annotations

import ast
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


CALLS_A_CHECK = re.compile(r"^(?!\s*(def|from|import) ).*\bcheck_\w+\(", re.M)  # a call, not a definition


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_notebook_runs_top_to_bottom(executed, chapter):
    """Without an error; the placeholders raise NotImplementedError inside the function, and every
    self-check reports "not written yet", once (its return value displays nothing more)."""
    nb, error, seconds = executed[chapter.stem]
    assert error is None, f"{chapter.stem}.ipynb (student): {error}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    check_cells = [c for c in nb.cells if c.cell_type == "code" and CALLS_A_CHECK.search(c.source)]
    for cell in check_cells:
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert re.fullmatch(r"check_\w+: not written yet \(.*\)\.", " ".join(printed.split())), (chapter.stem, printed)
        assert not [o for o in cell.outputs if o.output_type != "stream"], f"{chapter.stem}: {cell.source} displays more"
    print(f"{chapter.stem}.ipynb (student): ran in {seconds:.1f} s, {len(check_cells)} self-checks not written yet")


# --- the exercises' form, and the chapters' own solutions filled into the student notebooks ----------


def tagged(nb, tag):
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


def defined_function(source):
    """The name of the one function a cell defines (and nothing else)."""
    tree = ast.parse(source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef), source
    return tree.body[0].name


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_code_exercise_has_a_starter_then_its_self_check(chapter):
    """In the chapter itself (so on the website and in every edition): each exercise that asks for a
    function has a runnable starter cell and, next, a cell calling its self-check with a trailing ';'."""
    text = chapter.read_text()
    nb = jupytext.reads(text, fmt="md:myst")
    starters = tagged(nb, "exercise-starter")
    assert starters, f"{chapter.name}: no exercise-starter cell"
    assert "```python" not in text[text.index("## Exercises"):], f"{chapter.name}: exercise code in a markdown block"
    for cell in starters:
        defined_function(cell.source)
        assert re.search(r"^\s+raise NotImplementedError  # your code here$", cell.source, re.M), cell.source
        following = nb.cells[nb.cells.index(cell) + 1:]
        next_code = next(c for c in following if c.cell_type == "code")
        assert "self-check" in next_code.metadata.get("tags", []), f"{chapter.name}: {cell.source} has no check after it"
        name = defined_function(cell.source)
        assert re.fullmatch(rf"check_\w+\({name}\);", next_code.source.strip()), next_code.source
    for cell in tagged(nb, "self-check"):
        assert cell.source.strip().endswith(";"), f"{chapter.name}: {cell.source} prints its result twice"
    solutions = {defined_function(c.source) for c in tagged(nb, "exercise-solution")}
    assert {defined_function(c.source) for c in starters} <= solutions, f"{chapter.name}: a starter without solution"


def solutions_by_name(chapter):
    """name -> source of the function cells inside the chapter's gated solutions (found from the raw text)."""
    found = {}
    for block in SOLUTION.finditer(chapter.read_text()):
        for cell in jupytext.reads(block.group(0), fmt="md:myst").cells:
            if cell.cell_type == "code" and "exercise-solution" in cell.metadata.get("tags", []):
                found[defined_function(cell.source)] = cell.source
    return found


def filled_notebook(student_nb, chapter):
    """The student notebook's exercises with each starter replaced by the chapter's solution: the
    check imports, the filled starters and the self-check calls, after the imports they use."""
    solutions = solutions_by_name(chapter)
    cells = [nbformat.v4.new_code_cell("import numpy as np\nimport bnlib")]
    for cell in student_nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "exercise-starter" in tags:
            cells.append(nbformat.v4.new_code_cell(solutions[defined_function(cell.source)]))
        elif "self-check" in tags or re.search(r"^from bnlib[.\w]* import .*\bcheck_", cell.source, re.M):
            cells.append(nbformat.v4.new_code_cell(cell.source))
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata = student_nb.metadata
    return nb


@pytest.fixture(scope="module")
def filled(student_dir):
    async def run(chapter, slots):
        async with slots:
            nb = filled_notebook(student(student_dir, chapter), chapter)
            client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
            try:
                await client.async_execute()
                error = None
            except Exception as exc:
                error = exc
            return chapter.stem, (nb, error)

    async def run_all():
        slots = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
        return dict(await asyncio.gather(*(run(chapter, slots) for chapter in CHAPTERS)))

    return asyncio.run(run_all())


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_the_chapters_solutions_pass_their_self_checks(filled, chapter):
    nb, error = filled[chapter.stem]
    assert error is None, f"{chapter.stem}: {error}"
    checks = [c for c in nb.cells if "self-check" in c.metadata.get("tags", []) or CALLS_A_CHECK.search(c.source)]
    checks = [c for c in checks if "import" not in c.source]
    assert checks
    for cell in checks:
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert re.fullmatch(r"check_\w+: passed all \d+ cases\.", " ".join(printed.split())), (chapter.stem, printed)


# --- the nbgrader source version (nbgrader itself runs in test_nbgrader.py) --------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_nbgrader_source_marks_solutions_and_grades_checks(make_student, chapter):
    nb = make_student.nbgrader_source_notebook(chapter)
    student_nb = make_student.student_notebook(chapter)
    solutions = solutions_by_name(chapter)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(answers) == len(tagged(student_nb, "exercise-starter")) >= 1
    assert len(graded) == len(tagged(student_nb, "self-check"))
    for cell in answers:
        name = defined_function(cell.source)
        assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") == 1
        inside = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        body = ast.parse(solutions[name]).body[0].body
        assert ast.dump(ast.parse("def f():\n" + inside + "\n").body[0].body[0]) == ast.dump(body[0]), name
        assert "NotImplementedError" not in cell.source
    for cell in graded:
        meta = cell.metadata["nbgrader"]
        assert meta["points"] > 0 and meta["locked"] and not meta["solution"]
        assert re.fullmatch(r"assert check_\w+\(\w+\)", cell.source), cell.source
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids))
    # no solution text outside the marked regions
    text = chapter.read_text()
    # library code the chapter shows ({literalinclude}, rendered into the notebook) may share a line
    library = set().union(*(significant_lines(f.read_text()) for f in (ROOT / "bnlib").rglob("*.py")))
    secret = (significant_lines("\n".join(m.group(0) for m in SOLUTION.finditer(text)))
              - significant_lines(SOLUTION.sub("", text)) - library)
    outside = set()
    for cell in nb.cells:
        source = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "", cell.source, flags=re.S)
        outside |= {line.strip() for line in source.splitlines()}
    assert not sorted(secret & outside), f"{chapter.name}: solution lines outside the solution regions"


def test_malformed_exercises_are_refused(make_student, tmp_path):
    # a chapter's own front matter (jupytext header and kernelspec), so the chapter converts as one
    front = CHAPTERS[0].read_text(encoding="utf-8")
    header = front[: front.index("---\n", 4)]
    base = (
        "```{exercise-start}\n:label: ex\n```\n\nDo it.\n\n```{code-cell} ipython3\n:tags: [exercise-starter]\n\n"
        "def f(x):\n    raise NotImplementedError  # your code here\n```\n\n"
        "```{code-cell} ipython3\n:tags: [self-check]\n\nCHECK\n```\n\n```{exercise-end}\n```\n\n"
        "```{solution-start} ex\n```\n\n```{code-cell} ipython3\n:tags: [exercise-solution]\n\nSOLUTION\n```\n\n"
        "```{solution-end}\n```\n"
    )
    good = base.replace("CHECK", "check_center(f);").replace("SOLUTION", "def f(x):\n    return x - x.mean(0)")
    path = tmp_path / "ok.md"
    path.write_text(header + "---\n\n" + good)
    nb = make_student.nbgrader_source_notebook(path)
    (answer,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answer.source == "def f(x):\n    ### BEGIN SOLUTION\n    return x - x.mean(0)\n    ### END SOLUTION"
    for check, solution in [("print(1)", "def f(x):\n    return x"), ("check_center(f);", "def g(x):\n    return x"),
                            ("check_center(f);", "helper = 1\ndef f(x):\n    return x")]:
        path.write_text(header + "---\n\n" + base.replace("CHECK", check).replace("SOLUTION", solution))
        with pytest.raises(make_student.ExerciseFormError):
            make_student.nbgrader_source_notebook(path)


def test_make_student_writes_both_versions(make_student, tmp_path, capsys):
    chapter = CHAPTERS[0]
    course = tmp_path / "course"
    assert make_student.main(["--out", str(tmp_path / "student"), "--nbgrader-course", str(course), str(chapter)]) == 0
    assert (tmp_path / "student" / f"{chapter.stem}.ipynb").exists()
    source = course / "source" / chapter.stem / f"{chapter.stem}.ipynb"
    nb = nbformat.read(source, as_version=4)
    assert any(c.metadata.get("nbgrader", {}).get("grade") for c in nb.cells)
    assert "course_id" in (course / "nbgrader_config.py").read_text()
    (course / "nbgrader_config.py").write_text("# the instructor's own\n")
    make_student.main(["--out", str(tmp_path / "student"), "--nbgrader-course", str(course), str(chapter)])
    assert (course / "nbgrader_config.py").read_text() == "# the instructor's own\n"  # kept
    assert str(source) in capsys.readouterr().out
