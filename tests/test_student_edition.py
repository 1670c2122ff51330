"""The student edition and the grader (``tools/course.py``, ``make student``, ``make grade``).

Over every exercise and lab notebook, including ones added later: the source carries nbgrader's
metadata; its student edition shows no line of a solution, a stub in place of each answer and
every check unchanged; the untouched student edition scores 0 and the source (its stored,
nbval-verified outputs) full marks. A small notebook built here tests the grader end to end.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402

SOURCES = course.source_notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in SOURCES]
# Lines that carry no solution (brackets, keywords) may appear anywhere.
TRIVIAL = re.compile(r"^[\s()\[\]{},:;.#'\"`*_-]*(else:|try:|finally:|pass|return|continue|break)?"
                     r"[\s()\[\]{},:;.]*$")


def _read(path: Path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_source_is_marked_for_nbgrader(path: Path) -> None:
    nb = _read(path)
    assert course.is_marked(nb), (
        f"{path.name}: a solution block has no nbgrader metadata. Run "
        f"`.venv/bin/python tools/course.py mark {path.relative_to(ROOT)}` (it says if the "
        "notebook must then be re-executed)"
    )
    assert course.mark(nb)[0] == nb, f"{path.name}: marking again would change it"
    for cell in nb.cells:
        m = course.meta(cell)
        if m:
            assert m["schema_version"] == 3
            assert {"grade", "solution", "locked", "grade_id"} <= set(m)
            if m["grade"]:
                assert isinstance(m.get("points"), int | float) and m["points"] >= 0


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_checks_carry_points(path: Path) -> None:
    nb, _ = course.mark(_read(path))
    checks = course.checks(nb)
    assert checks, f"{path.name} has no graded check"
    ids = [gid for _, gid, _ in checks]
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate grade_id"
    assert all(points > 0 for _, _, points in checks)
    for i, _, _ in checks:
        assert course.ASSERT_RE.search(nb.cells[i].source)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_no_solution_line_survives(path: Path) -> None:
    source, _ = course.mark(_read(path))
    student = course.student_edition(_read(path))
    shown = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    elsewhere = {line.strip() for cell in source.cells if not course.is_solution(cell)
                 for line in cell.source.splitlines()}
    leaked = sorted(
        line.strip()
        for cell in source.cells if course.is_solution(cell)
        for line in course.solution_lines(cell)
        if line.strip() and not TRIVIAL.match(line) and line.strip() not in elsewhere
        and line.strip() in shown
    )
    assert not leaked, f"{path.name}: solution lines in the student edition: {leaked[:5]}"
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert not any(course.is_fence(c) for c in student.cells)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_answers_become_stubs_and_checks_stay(path: Path) -> None:
    source, _ = course.mark(_read(path))
    student = course.student_edition(_read(path))
    answers = [c for c in student.cells if course.is_solution(c)]
    assert answers
    for cell in answers:
        stub = course.CODE_STUB if cell.cell_type == "code" else course.TEXT_STUB
        assert stub in cell.source
    src_checks = [source.cells[i].source for i, _, _ in course.checks(source)]
    assert [student.cells[i].source for i, _, _ in course.checks(student)] == src_checks


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_source_scores_full_marks(path: Path) -> None:
    # The stored outputs are what `make nbval` re-executes and compares.
    rows, score, total = course.grade(path, stored=True, out=io.StringIO())
    failed = [(gid, err) for gid, _, _, err in rows if err]
    assert total > 0 and score == total, f"{path.name}: checks failing: {failed}"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_untouched_student_edition_scores_zero(path: Path, tmp_path: Path) -> None:
    (dest,) = course.write_student(tmp_path, [path])
    rows, score, total = course.grade(dest, timeout=600, out=io.StringIO())
    passed = [gid for gid, got, _, _ in rows if got]
    assert total > 0 and score == 0, f"{path.name}: checks pass without an answer: {passed}"


# --- the grader end to end, on a notebook made here --------------------------------------------
def _fence(kind: str, label: str) -> str:
    return f"```{{solution-{kind}}} {label}\n:class: dropdown\n```" if kind == "start" \
        else "```{solution-end}\n```"


def _exercise_notebook() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        code("SEED = 0\nimport math"),
        md("```{exercise} Squares\n:label: ex-sq\n\nDefine `square(x)`.\n```"),
        md(_fence("start", "ex-sq")),
        md("Multiply the number by itself."),
        code("def square(x):\n    return x * x"),
        code("assert square(3) == 9 and square(-2) == 4"),
        md(_fence("end", "ex-sq")),
        md("```{exercise} Hypotenuse\n:label: ex-hyp\n\nCompute `h` for legs 3 and 4.\n```"),
        md(_fence("start", "ex-hyp")),
        code("h = math.hypot(3, 4)\nprint(f'h = {h}')\nassert h > 0\nassert h == 5"),
        md(_fence("end", "ex-hyp")),
    ]
    return nb


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "course.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_mark_splits_a_lone_cell_and_is_idempotent() -> None:
    marked, split = course.mark(_exercise_notebook())
    assert split == ["ex-hyp"]
    (i,) = [i for i, c in enumerate(marked.cells) if c.source.startswith("assert h > 0")]
    assert "### BEGIN SOLUTION" in marked.cells[i - 1].source
    assert marked.cells[i - 1].source.startswith("# Define: h ")
    assert course.mark(marked) == (marked, [])
    assert [gid for _, gid, _ in course.checks(marked)] == ["ex-sq-check", "ex-hyp-check"]


def test_grade_command(tmp_path: Path) -> None:
    src = tmp_path / "exercises" / "99_demo.ipynb"
    src.parent.mkdir()
    nbformat.write(_exercise_notebook(), src)

    full = _run("grade", str(src))
    assert full.returncode == 0, full.stdout + full.stderr
    assert "ex-sq-check" in full.stdout and full.stdout.strip().endswith("2/2 points")

    out = tmp_path / "student"
    assert _run("student", "--out", str(out), str(src)).returncode == 0
    student = out / "exercises" / "99_demo.ipynb"
    zero = _run("grade", str(student))
    assert zero.returncode == 1 and zero.stdout.strip().endswith("0/2 points"), zero.stdout
    assert "NameError" in zero.stdout

    # A student who answers the first exercise only gets its point and a failing exit code.
    nb = _read(student)
    answers = [c for c in nb.cells if course.is_solution(c) and c.cell_type == "code"]
    answers[0].source = answers[0].source.replace(course.CODE_STUB,
                                                  "def square(x):\n    return x ** 2")
    nbformat.write(nb, student)
    half = _run("grade", str(student))
    assert half.returncode == 1 and half.stdout.strip().endswith("1/2 points"), half.stdout

    answers[1].source = answers[1].source.replace(course.CODE_STUB, "h = (3**2 + 4**2) ** 0.5")
    nbformat.write(nb, student)
    done = _run("grade", str(student))
    assert done.returncode == 0 and done.stdout.strip().endswith("2/2 points"), done.stdout


def test_make_grade_needs_a_notebook() -> None:
    assert _run("grade", "no/such.ipynb").returncode == 2


def test_book_src_holds_the_student_notebooks(tmp_path: Path) -> None:
    # `make book-student` builds the HTML book from this tree.
    out = course.book_src(tmp_path / "book")
    assert (out / "_toc.yml").is_file() and (out / "_config.yml").is_file()
    assert (out / "chapters").is_dir() and (out / "book" / "references.bib").is_file()
    for path in SOURCES:
        nb = _read(out / path.relative_to(ROOT))
        assert not any(course.is_fence(c) for c in nb.cells)
        assert any(course.CODE_STUB in c.source for c in nb.cells if c.cell_type == "code")
