"""Write student notebooks, and the instructor's nbgrader source version, of every chapter.

    python scripts/make_student.py            # -> student/NN_name.ipynb and
                                              #    nbgrader/source/NN_name/NN_name.ipynb (make student)
    python scripts/make_student.py --out DIR --nbgrader-course DIR2   # somewhere else
    python scripts/make_student.py --no-nbgrader                      # student notebooks only

Student notebooks: a gated solution is everything from a ``{solution-start}`` directive to its
``{solution-end}``, including the code cells in between; it goes, and so does nothing else. The
exercises, their starter cells (tag ``exercise-starter``: the function with
``raise NotImplementedError  # your code here``) and their self-check cells (tag ``self-check``)
stay, and so does the Colab install cell. Outputs and execution counts are cleared.

nbgrader source (the course directory's ``source/<assignment>/``, one assignment per chapter): the
student notebook in which each starter cell holds its solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (the body of the function of the same name in the chapter's gated solution,
tag ``exercise-solution``) and is an nbgrader solution cell, and each self-check cell is an
autograded test cell worth :data:`POINTS_PER_CHECK` points that asserts the check passed
(``assert check_x(fn)``: a failing check raises, so nbgrader gives no points).
``nbgrader generate_assignment NN_name`` then writes the release (starters with ``# YOUR CODE
HERE``) and ``nbgrader autograde NN_name`` scores submissions; see instructors.md.

The functions are importable for other tools (e.g. the notebook-edition generator rendering the
markdown): :func:`strip_solutions`, :func:`student_notebook`, :func:`nbgrader_source_notebook`,
:func:`exercises`; the writers accept ``postprocess(nb, chapter) -> nb``.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_install_cell import toc_chapters  # noqa: E402  (scripts/ is not a package)

# A directive fence: ``` or ::: (three or more), the directive, then up to the closing fence.
SOLUTION_START = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-start\}[^\n]*\n(?:.*?\n)??(?P=fence)[ \t]*$\n?", re.M | re.S)
SOLUTION_END = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-end\}[^\n]*\n(?:.*?\n)??(?P=fence)[ \t]*$\n?", re.M | re.S)


STARTER_TAG, CHECK_TAG, SOLUTION_TAG = "exercise-starter", "self-check", "exercise-solution"
PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)raise NotImplementedError\b.*#\s*your code here\s*$", re.M)
CHECK_CALL = re.compile(r"^(?P<call>check_\w+\(\s*\w+\s*\));?\s*$")
EXERCISE_LABEL = re.compile(r"\{exercise-start\}[^\n]*\n:label:\s*(?P<label>[\w-]+)")
SOLUTION_LABEL = re.compile(r"\{solution-start\}\s*(?P<label>[\w-]+)")
POINTS_PER_CHECK = 1


class UnbalancedSolution(ValueError):
    pass


class ExerciseFormError(ValueError):
    """An exercise's cells do not follow the form that student and nbgrader versions rely on."""


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


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@dataclass
class Exercise:
    """One exercise of a chapter notebook: its label and the indices of its tagged code cells."""

    label: str
    starters: list[int] = field(default_factory=list)  # exercise-starter cells, outside the solution
    checks: list[int] = field(default_factory=list)  # self-check cells, outside the solution
    solutions: list[int] = field(default_factory=list)  # exercise-solution cells, inside the solution


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of a chapter notebook (solutions included), in order, with their tagged cells."""
    found: dict[str, Exercise] = {}
    current = None  # the exercise (or solution) whose cells come next
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for m in EXERCISE_LABEL.finditer(cell.source):
                current = found.setdefault(m.group("label"), Exercise(m.group("label")))
            for m in SOLUTION_LABEL.finditer(cell.source):
                current = found.setdefault(m.group("label"), Exercise(m.group("label")))
            continue
        tags = _tags(cell)
        for tag, attribute in ((STARTER_TAG, "starters"), (CHECK_TAG, "checks"), (SOLUTION_TAG, "solutions")):
            if tag in tags:
                if current is None:
                    raise ExerciseFormError(f"cell {index} is tagged {tag} but comes before any exercise")
                getattr(current, attribute).append(index)
    return list(found.values())


def _functions(source: str, where: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(source)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if not defs or len(defs) != len(tree.body):
        raise ExerciseFormError(f"{where}: expected function definitions only, got:\n{source}")
    return defs


def _function_body(source: str, node: ast.FunctionDef) -> str:
    """The lines of a function's body (comments just above its first statement included), dedented."""
    lines = source.splitlines()
    start = node.body[0].lineno - 1
    while start - 1 > node.lineno - 1 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return textwrap.dedent("\n".join(lines[start:node.end_lineno]))


def _check_call(source: str, where: str) -> str:
    m = CHECK_CALL.match(source.strip())
    if not m:
        raise ExerciseFormError(f"{where}: a self-check cell holds one call, check_x(your_function); got {source!r}")
    return m.group("call")


def solution_for(nb: nbformat.NotebookNode, exercise: Exercise, starter_index: int) -> str:
    """The solution cell's source that defines the starter's function."""
    (name,) = _functions(nb.cells[starter_index].source, f"{exercise.label} starter")
    for index in exercise.solutions:
        if name in _functions(nb.cells[index].source, f"{exercise.label} solution"):
            return nb.cells[index].source
    raise ExerciseFormError(f"{exercise.label}: no exercise-solution cell defines {name}()")


def _validate(nb: nbformat.NotebookNode, found: list[Exercise], where: str) -> None:
    for ex in found:
        for index in ex.starters:
            source = nb.cells[index].source
            if len(PLACEHOLDER.findall(source)) != 1:
                raise ExerciseFormError(f"{where}, {ex.label}: a starter holds one "
                                        f"'raise NotImplementedError  # your code here' line:\n{source}")
            if len(_functions(source, f"{where}, {ex.label} starter")) != 1:
                raise ExerciseFormError(f"{where}, {ex.label}: a starter defines one function")
            solution_for(nb, ex, index)
        if ex.starters and not ex.checks:
            raise ExerciseFormError(f"{where}, {ex.label}: a starter without a self-check cell")
        for index in ex.checks:
            _check_call(nb.cells[index].source, f"{where}, {ex.label}")


def student_notebook(chapter: Path) -> nbformat.NotebookNode:
    """The chapter without its solutions, as a plain notebook (scripts/make_notebooks.py's edition):
    what a student runs, starters and self-checks kept."""
    chapter_nb = jupytext.read(chapter)
    _validate(chapter_nb, exercises(chapter_nb), chapter.name)
    return _plain(chapter, strip_solutions(chapter_nb))


def _plain(chapter: Path, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (MyST cells of ``chapter``) as a plain notebook, through scripts/make_notebooks.py."""
    import make_notebooks

    book = make_notebooks.book_for()
    if Path(chapter).resolve() not in book.info:  # a chapter outside the toc: a book of its own
        book = make_notebooks.book_for([chapter])
    return make_notebooks.student_notebook(chapter, nb=nb, book=book)


def nbgrader_source_notebook(chapter: Path, points: int = POINTS_PER_CHECK) -> nbformat.NotebookNode:
    """The instructor's nbgrader source version of a chapter (see the module's docstring)."""
    chapter_nb = jupytext.read(chapter)
    found = exercises(chapter_nb)
    _validate(chapter_nb, found, chapter.name)
    for ex in found:
        for n, index in enumerate(ex.starters):
            cell = chapter_nb.cells[index]
            (name,) = _functions(cell.source, ex.label)
            body = _function_body(solution_for(chapter_nb, ex, index), _functions(
                solution_for(chapter_nb, ex, index), ex.label)[name])

            def marked(m, body=body):
                indent = m.group("indent")
                return "\n".join([f"{indent}### BEGIN SOLUTION", textwrap.indent(body, indent),
                                  f"{indent}### END SOLUTION"])

            cell.source = PLACEHOLDER.sub(marked, cell.source)
            cell.metadata["nbgrader"] = _nbgrader_metadata(f"{ex.label}-code{_suffix(n)}", solution=True)
        for n, index in enumerate(ex.checks):
            cell = chapter_nb.cells[index]
            cell.source = f"assert {_check_call(cell.source, ex.label)}"
            cell.metadata["nbgrader"] = _nbgrader_metadata(f"{ex.label}-check{_suffix(n)}", grade=True,
                                                           points=points)
    # Rendered as the student edition is (plain markdown, no MyST); nbgrader's cell metadata is kept.
    nb = _plain(chapter, strip_solutions(chapter_nb))
    nb.metadata["bnlib"] = {"nbgrader_source_of": chapter.name}
    return nb


def _suffix(n: int) -> str:
    return f"-{n + 1}" if n else ""


def _nbgrader_metadata(grade_id: str, *, solution=False, grade=False, points=0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


NBGRADER_CONFIG = """\
# nbgrader configuration of the course directory written by scripts/make_student.py.
# Run nbgrader from this directory:  nbgrader generate_assignment 04_batch_normalization
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "bnlib-book"
"""


def write_student_notebooks(out_dir: Path, chapters: list[Path] | None = None, postprocess=None) -> list[Path]:
    """``out_dir/NN_name.ipynb`` for each chapter; ``postprocess(nb, chapter)`` may rewrite each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters or toc_chapters(ROOT):
        nb = student_notebook(chapter)
        nb = postprocess(nb, chapter) if postprocess else nb
        target = out_dir / f"{chapter.stem}.ipynb"
        nbformat.write(nb, target)
        written.append(target)
    return written


def write_nbgrader_course(course_dir: Path, chapters: list[Path] | None = None, postprocess=None) -> list[Path]:
    """``course_dir/source/NN_name/NN_name.ipynb`` for each chapter, and an ``nbgrader_config.py``."""
    course_dir.mkdir(parents=True, exist_ok=True)
    config = course_dir / "nbgrader_config.py"
    if not config.exists():  # the instructor's own settings win
        config.write_text(NBGRADER_CONFIG)
    written = []
    for chapter in chapters or toc_chapters(ROOT):
        nb = nbgrader_source_notebook(chapter)
        nb = postprocess(nb, chapter) if postprocess else nb
        target = course_dir / "source" / chapter.stem / f"{chapter.stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "student", help="output directory (default: student/)")
    parser.add_argument("--nbgrader-course", type=Path, default=ROOT / "nbgrader",
                        help="nbgrader course directory for the source versions (default: nbgrader/)")
    parser.add_argument("--no-nbgrader", action="store_true", help="write the student notebooks only")
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: those in _toc.yml)")
    args = parser.parse_args(argv)
    for path in write_student_notebooks(args.out, args.chapters or None):
        print(f"wrote {path}")
    if not args.no_nbgrader:
        for path in write_nbgrader_course(args.nbgrader_course, args.chapters or None):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
