"""Course tooling: nbgrader-style marking, the student edition, and grading.

The exercise and lab notebooks follow nbgrader's conventions (cell metadata schema 3 and the
``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers), so a course that runs nbgrader can take
them as they are. This module is the little glue that the book needs without nbgrader's server
and database: it uses only ``nbformat`` and ``nbclient`` (both already needed by nbval).

Commands (``python tools/course.py --help``)::

    mark NOTEBOOK...           add the metadata and markers to source notebooks (idempotent)
    student [--out DIR]        write the student edition of every exercise and lab notebook
    grade NOTEBOOK [--stored]  run a notebook and print each check's points and the total
    book-src OUT               a copy of the book's sources with the student notebooks in it

How a notebook is read. An exercise is a MyST ``{exercise}`` block followed by a solution between
``{solution-start}`` and ``{solution-end}`` cells. Inside it, the last code cell that contains an
``assert`` (or a ``numpy.testing.assert_*`` call) is the *check* (an nbgrader "autograder
tests" cell, 1 point unless its metadata says otherwise, ``grade_id`` = the exercise's label
plus ``-check``); every other cell is the *solution* (code: an "autograded answer"; Markdown: a
"manually graded answer" worth 0 points until a lecturer gives it some). A lone code cell that
computes, prints, then asserts is split in two before its first assert after the last print (the
notebook must then be re-executed). Cells that already carry ``nbgrader`` metadata keep it.

The student edition replaces the solution region of each code answer by nbgrader's own stub
(``# YOUR CODE HERE`` / ``raise NotImplementedError()``) under a comment naming what the check
uses, replaces Markdown answers by ``YOUR ANSWER HERE``, drops the ``{solution-start}`` and
``{solution-end}`` fences, and clears every output.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
STUDENT_DIRS = ("exercises", "labs")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
SCHEMA = 3
START_RE = re.compile(r"```\{solution-start\}\s*(\S+)")
END_RE = re.compile(r"```\{solution-end\}")
# A check: an assert statement or a call of numpy.testing's assert functions.
ASSERT_RE = re.compile(r"^\s*(assert\b|(np|numpy)\.testing\.assert_)", re.MULTILINE)
DEFINE_PREFIX = "# Define: "


# --- reading ------------------------------------------------------------------------------------
def source_notebooks(root: Path = ROOT) -> list[Path]:
    """Every exercise and lab notebook of the book (the ones with a student edition)."""
    return sorted(
        p
        for d in STUDENT_DIRS
        if (root / d).is_dir()
        for p in (root / d).glob("*.ipynb")
    )


def meta(cell) -> dict | None:
    return cell.get("metadata", {}).get("nbgrader")


def is_solution(cell) -> bool:
    m = meta(cell)
    return bool(m and m.get("solution"))


def is_check(cell) -> bool:
    m = meta(cell)
    return bool(m and m.get("grade") and cell.cell_type == "code")


def is_fence(cell) -> bool:
    return cell.cell_type == "markdown" and bool(
        START_RE.search(cell.source) or END_RE.search(cell.source)
    )


def solution_blocks(nb) -> list[tuple[str, list[int]]]:
    """(label, indices of the cells between the fences) for each solution block."""
    blocks, label, inside = [], None, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and START_RE.search(cell.source):
            label, inside = START_RE.search(cell.source).group(1), []
        elif cell.cell_type == "markdown" and END_RE.search(cell.source):
            if label is not None:
                blocks.append((label, inside))
            label = None
        elif label is not None:
            inside.append(i)
    return blocks


# --- marking ------------------------------------------------------------------------------------
def _nbgrader(grade_id: str, *, solution: bool, grade: bool, points: float | None) -> dict:
    m = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": SCHEMA,
         "solution": solution, "task": False}
    if grade:
        m["points"] = points
    return m


def _is_check_statement(node) -> bool:
    """An assert, or a loop or branch of asserts (that prints nothing)."""
    if isinstance(node, ast.Assert) or ASSERT_RE.match(ast.unparse(node)):
        return True
    return (isinstance(node, ast.For | ast.If | ast.With)
            and bool(ASSERT_RE.search(ast.unparse(node))) and not _prints(node))


def _prints(node) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
               for n in ast.walk(node))


def _split_trailing_asserts(source: str) -> tuple[str, str] | None:
    """(computation, check) of a cell that computes, prints, then asserts; None otherwise.

    The check starts at the first assert after the last statement that prints.
    """
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    last_print = max([i for i, node in enumerate(body) if _prints(node)], default=-1)
    starts = [i for i, node in enumerate(body)
              if i > last_print and _is_check_statement(node)]
    if not starts or starts[0] == 0:
        return None
    lines = source.splitlines()
    cut = body[starts[0]].lineno - 1
    # comments right above the first assert belong to the check
    while cut > 0 and lines[cut - 1].lstrip().startswith("#"):
        cut -= 1
    return "\n".join(lines[:cut]).rstrip() + "\n", "\n".join(lines[cut:]).strip() + "\n"


def _names(source: str, ctx) -> set[str]:
    try:
        tree = ast.parse(_strip_markers(source))
    except SyntaxError:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ctx):
            out.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and ctx is ast.Store:
            out.add(node.name)
    return out


def _strip_markers(source: str) -> str:
    return "\n".join(
        line for line in source.splitlines()
        if line.strip() not in (BEGIN, END) and not line.startswith(DEFINE_PREFIX)
    )


def mark(nb) -> tuple[object, list[str]]:
    """Return a marked copy of ``nb`` and a list of the cells that were split.

    Idempotent: cells that carry ``nbgrader`` metadata already are left as they are.
    """
    nb = copy.deepcopy(nb)
    split: list[str] = []
    for label, idx in reversed(solution_blocks(nb)):
        cells = [nb.cells[i] for i in idx]
        if any(meta(c) for c in cells):
            continue
        codes = [i for i in idx if nb.cells[i].cell_type == "code"]
        checks = [i for i in codes if ASSERT_RE.search(nb.cells[i].source)]
        check = checks[-1] if checks else None
        if check is not None and codes == [check]:
            parts = _split_trailing_asserts(nb.cells[check].source)
            if parts is not None:
                head, tail = parts
                new = nbformat.v4.new_code_cell(head)
                # what the cell printed moves to the answer, with its nbval tolerance
                new.metadata.update({k: copy.deepcopy(v) for k, v in nb.cells[check].metadata
                                     .items() if k not in ("nbgrader", "execution")})
                nb.cells[check].source = tail
                nb.cells.insert(check, new)
                idx = [i if i < check else i + 1 for i in idx]
                idx.insert(idx.index(check + 1), check)
                check += 1
                split.append(label)
            else:
                check = None           # everything in it is the solution
        check_loads = (_names(nb.cells[check].source, ast.Load)
                       - _names(nb.cells[check].source, ast.Store)) if check is not None else set()
        n_sol = 0
        for i in idx:
            cell = nb.cells[i]
            if i == check:
                cell.metadata["nbgrader"] = _nbgrader(f"{label}-check", solution=False,
                                                      grade=True, points=1)
            elif cell.cell_type == "code":
                n_sol += 1
                used = sorted(_names(cell.source, ast.Store) & check_loads)
                head = [f"{DEFINE_PREFIX}{', '.join(used)} (the check below uses them)"] if used \
                    else []
                cell.source = "\n".join([*head, BEGIN, cell.source.rstrip("\n"), END])
                cell.metadata["nbgrader"] = _nbgrader(f"{label}-answer-{n_sol}", solution=True,
                                                      grade=False, points=None)
            else:
                n_sol += 1
                cell.metadata["nbgrader"] = _nbgrader(f"{label}-answer-{n_sol}", solution=True,
                                                      grade=True, points=0)
    return nb, split


def is_marked(nb) -> bool:
    """Every solution block of ``nb`` carries nbgrader metadata."""
    return all(any(meta(nb.cells[i]) for i in idx) for _, idx in solution_blocks(nb))


# --- the student edition --------------------------------------------------------------------------
def solution_lines(cell) -> list[str]:
    """The lines of a solution cell that the student edition must not show."""
    if cell.cell_type != "code":
        return cell.source.splitlines()
    lines = cell.source.splitlines()
    if BEGIN not in [s.strip() for s in lines]:
        return lines
    out, inside = [], False
    for line in lines:
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside:
            out.append(line)
    return out


def _clear_solution(cell) -> None:
    if cell.cell_type != "code":
        cell.source = TEXT_STUB
        return
    lines = cell.source.splitlines()
    if BEGIN not in [s.strip() for s in lines]:
        cell.source = CODE_STUB
        return
    out, inside = [], False
    for line in lines:
        if line.strip() == BEGIN:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in CODE_STUB.splitlines())
        elif line.strip() == END:
            inside = False
        elif not inside:
            out.append(line)
    cell.source = "\n".join(out)


def student_edition(nb):
    """The student edition of a (marked or unmarked) source notebook."""
    nb, _ = mark(nb)
    cells = []
    for cell in nb.cells:
        if is_fence(cell):
            continue
        cell = copy.deepcopy(cell)
        if is_solution(cell):
            _clear_solution(cell)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cells.append(cell)
    nb.cells = cells
    return nb


def write_student(out: Path, notebooks: list[Path] | None = None) -> list[Path]:
    written = []
    for path in notebooks or source_notebooks():
        path = path.resolve()
        try:
            dest = out / path.relative_to(ROOT)
        except ValueError:                      # a notebook outside the book: keep its folder
            dest = out / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), dest)
        written.append(dest)
    return written


# --- grading ------------------------------------------------------------------------------------
def checks(nb) -> list[tuple[int, str, float]]:
    """(cell index, grade_id, points) of every autograded check of a marked notebook."""
    return [(i, meta(c)["grade_id"], float(meta(c).get("points", 0)))
            for i, c in enumerate(nb.cells) if is_check(c)]


def _error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}".strip()
    return None


def execute(nb, cwd: Path, timeout: int = 1800):
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def grade(path: Path, *, stored: bool = False, timeout: int = 1800, out=sys.stdout):
    """Run ``path`` (or read its stored outputs) and score its checks.

    Returns ``(rows, score, total)`` with one ``(grade_id, points earned, points, error)`` row per
    check. A check passes when its cell runs without an error.
    """
    path = Path(path)
    nb, _ = mark(nbformat.read(path, as_version=4))
    if not stored:
        nb = execute(nb, path.resolve().parent, timeout)
    rows = []
    for i, gid, pts in checks(nb):
        cell = nb.cells[i]
        err = _error(cell)
        if cell.execution_count is None and err is None:
            err = "not run"
        rows.append((gid, 0.0 if err else pts, pts, err))
    score, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    width = max([len(r[0]) for r in rows] + [10])
    for gid, got, pts, err in rows:
        status = "pass" if err is None else f"FAIL  {err.splitlines()[0][:100]}"
        print(f"{gid:<{width}}  {_num(got)}/{_num(pts)}  {status}", file=out)
    print(f"{path}: {_num(score)}/{_num(total)} points", file=out)
    return rows, score, total


def _num(x: float) -> str:
    return f"{x:g}"


# --- the student HTML book ------------------------------------------------------------------------
def book_src(out: Path) -> Path:
    """Copy the book's sources to ``out`` with the student notebooks in place of the sources."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, out / name)
    for d in ("book", "chapters"):
        if (ROOT / d).is_dir():
            shutil.copytree(ROOT / d, out / d, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    write_student(out)
    return out


# --- command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mark", help="add nbgrader metadata and markers to source notebooks")
    p.add_argument("notebooks", nargs="+", type=Path)
    p = sub.add_parser("student", help="write the student edition")
    p.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    p.add_argument("notebooks", nargs="*", type=Path)
    p = sub.add_parser("grade", help="run a notebook and score its checks")
    p.add_argument("notebook", type=Path)
    p.add_argument("--stored", action="store_true", help="score the stored outputs, do not run")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    p = sub.add_parser("book-src", help="the book's sources with the student notebooks")
    p.add_argument("out", type=Path)
    args = ap.parse_args(argv)

    if args.cmd == "mark":
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            marked, split = mark(nb)
            if marked == nb:
                print(f"{path}: already marked")
                continue
            nbformat.write(marked, path)
            note = f"; split {', '.join(split)}: re-execute it (make execute NOTEBOOKS={path})" \
                if split else ""
            print(f"{path}: marked{note}")
    elif args.cmd == "student":
        written = write_student(args.out, args.notebooks or None)
        print(f"student edition: {len(written)} notebooks under {args.out}")
        for w in written:
            print(f"  {w}")
    elif args.cmd == "grade":
        if not args.notebook.is_file():
            print(f"grade: no notebook {args.notebook}", file=sys.stderr)
            return 2
        rows, score, total = grade(args.notebook, stored=args.stored, timeout=args.timeout)
        return 0 if rows and score == total else 1
    elif args.cmd == "book-src":
        print(book_src(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
