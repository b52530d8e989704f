"""nbgrader (from PyPI, offline) on one chapter's source version written by ``make student``.

In a temporary course directory: ``nbgrader generate_assignment`` makes the release, two
submissions are made from it (one with the chapter's own solutions filled in, one untouched), and
``nbgrader autograde`` must give the first full marks and the second zero. The chapter is the one
that executes fastest (it runs twice); every chapter's source version is checked without nbgrader in
test_student.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

from conftest import ROOT, load_script

pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -r requirements.txt)")

CHAPTER = ROOT / "chapters" / "04_batch_normalization.md"
ASSIGNMENT = CHAPTER.stem


def start_nbgrader(course: Path, *args: str) -> subprocess.Popen:
    # nbgrader runs `alembic` (its database migrations) from PATH: put this environment's bin first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               JUPYTER_CONFIG_DIR=str(course / ".jupyter"))
    return subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{' '.join(proc.args[1:])} failed:\n{out[-4000:]}"


def chapter_solutions() -> dict[str, str]:
    """name -> source of each function cell in the chapter's gated solutions."""
    nb = jupytext.read(CHAPTER)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "exercise-solution" in cell.metadata.get("tags", []):
            found[ast.parse(cell.source).body[0].name] = cell.source
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    make_student = load_script("make_student")
    make_student.write_nbgrader_course(course, [CHAPTER])
    start = time.perf_counter()
    finish(start_nbgrader(course, "generate_assignment", ASSIGNMENT))
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    released = nbformat.read(release, as_version=4)

    solutions = chapter_solutions()
    solved = nbformat.from_dict(released)
    for cell in solved.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = solutions[ast.parse(cell.source).body[0].name]
    # The two submissions are graded at once, each in its own copy of the course (one SQLite
    # gradebook is not meant for two writers): wall time is one chapter's execution, not two.
    courses = {"solved": course, "untouched": course.with_name(course.name + "-copy")}
    shutil.copytree(course, courses["untouched"])
    for student, nb in [("solved", solved), ("untouched", released)]:
        target = courses[student] / "submitted" / student / ASSIGNMENT / release.name
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    running = [start_nbgrader(courses[student], "autograde", ASSIGNMENT, "--student", student) for student in courses]
    for proc in running:
        finish(proc)
    seconds = time.perf_counter() - start
    print(f"nbgrader generate_assignment + autograde of two submissions: {seconds:.1f} s (machine shared)")

    from nbgrader.api import Gradebook

    scores = {}
    for student, directory in courses.items():
        with Gradebook(f"sqlite:///{directory / 'gradebook.db'}") as gradebook:
            sub = gradebook.find_submission_notebook(release.stem, ASSIGNMENT, student)
            scores[student] = (sub.score, sub.max_score)
    return course, released, scores


def test_the_release_holds_starters_and_tests_but_no_solution(graded):
    course, released, _ = graded
    answers = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
    tests = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert answers and len(tests) >= len(answers)
    for cell in answers:
        assert "# YOUR CODE HERE" in cell.source and "raise NotImplementedError()" in cell.source
        assert "BEGIN SOLUTION" not in cell.source
    text = "\n".join(c.source for c in released.cells)
    for source in chapter_solutions().values():
        body = source.splitlines()[1:]  # the function's body lines
        assert not [line for line in body if len(line.strip()) > 12 and line in text.splitlines()]
    for cell in tests:
        assert re.fullmatch(r"assert check_\w+\(\w+\)", cell.source)


def test_autograde_gives_the_chapters_solutions_full_marks(graded):
    _, _, scores = graded
    score, max_score = scores["solved"]
    assert max_score > 0 and score == max_score, scores


def test_autograde_gives_untouched_starters_zero(graded):
    _, _, scores = graded
    score, max_score = scores["untouched"]
    assert max_score > 0 and score == 0, scores
