"""Every notebook of the book is committed executed, asserts its claims, and is in the book.

nbval compares a cell's new output only with a *stored* output: a code cell that was never run
(``execution_count: null``) is silently not compared, so a stripped notebook would pass ``make
nbval`` vacuously. These checks close that hole. Fix a failure with ``make execute``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("chapters", "exercises", "labs")
NOTEBOOKS = sorted(
    p
    for d in NOTEBOOK_DIRS
    if (ROOT / d).is_dir()
    for p in (ROOT / d).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)
ASSERT_RE = re.compile(r"^\s*assert\b", re.MULTILINE)


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_cells(nb: dict) -> list[tuple[int, dict]]:
    return [
        (i, c)
        for i, c in enumerate(nb.get("cells", []))
        if c.get("cell_type") == "code" and _source(c).strip()
    ]


def toc_files() -> list[str]:
    """Files listed in ``_toc.yml`` (root and every ``file:`` entry), without extension."""
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"^\s*(?:-\s*)?(?:file|root):\s*['\"]?([^\s'\"#]+)", text, re.MULTILINE)
    return [re.sub(r"\.(ipynb|md)$", "", f) for f in files]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_code_cell_executed_in_order(path: Path) -> None:
    nb = _load(path)
    cells = _code_cells(nb)
    assert cells, f"{path.name} has no code cell"
    unexecuted = [i for i, c in cells if c.get("execution_count") is None]
    assert not unexecuted, (
        f"{path.name}: code cells {unexecuted} have no execution_count (never run, or outputs "
        "stripped); nbval would not compare them. Run `make execute` and commit the result."
    )
    counts = [c["execution_count"] for _, c in cells]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        f"{path.name}: execution counts {counts} are not increasing; the notebook was not run "
        "top to bottom in one kernel. Run `make execute`."
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_error_outputs(path: Path) -> None:
    nb = _load(path)
    bad = [
        (i, out.get("ename"))
        for i, c in _code_cells(nb)
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not bad, f"{path.name}: cells with error outputs (cell index, exception): {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_svg_outputs(path: Path) -> None:
    # Matplotlib's SVG embeds a date, so nbval would fail on every re-run; PNG is not compared.
    nb = _load(path)
    svg = [
        i
        for i, c in _code_cells(nb)
        for out in c.get("outputs", [])
        if "image/svg+xml" in out.get("data", {})
    ]
    assert not svg, f"{path.name}: cells {svg} have SVG outputs; use PNG figures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_asserts_something(path: Path) -> None:
    nb = _load(path)
    assert any(ASSERT_RE.search(_source(c)) for _, c in _code_cells(nb)), (
        f"{path.name}: no code cell contains an `assert`; every notebook must check its claims"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_in_toc(path: Path) -> None:
    rel = path.relative_to(ROOT).with_suffix("").as_posix()
    assert rel in toc_files(), f"{rel} is not listed in _toc.yml, so the book does not show it"


def test_toc_entries_exist() -> None:
    missing = [
        f
        for f in toc_files()
        if not any((ROOT / f).with_suffix(ext).is_file() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
