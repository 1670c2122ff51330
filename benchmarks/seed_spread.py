"""Spread of a notebook's printed figures over seeds and BLAS thread counts; the cells' tolerances.

A figure that comes from training is not a fixed number: another seed, or another order of the
same floating-point sums (another CPU, another thread count), moves it. The book promises that
its stored outputs reproduce *within the spread of such runs* and that every claim it asserts
holds for every seed tried. This script measures that spread.

Every notebook that trains takes its randomness from ``SEED = 0`` in its first code cell. For
each seed asked for, the script re-executes the notebook with that line changed, collects every
code cell's text output (after the sanitizers of ``tests/nbval_sanitize.cfg``) and every error
(a failing ``assert`` is one), and compares each printed number with the stored output, in the
comparison rule of ``make nbval`` (``tests/nbval_tolerance.py``). Per cell it reports the largest
absolute and relative deviation, the mean and standard deviation of every number that moved,
whether the layout (the words between the numbers) changed, and the tolerance that admits every
run, widened by ``--margin``. With ``--write`` that tolerance is stored in the cells' metadata.

Usage::

    python benchmarks/seed_spread.py chapters/04_unit_pruning.ipynb --seeds 0-5
    python benchmarks/seed_spread.py chapters/*.ipynb --seeds 0 --threads 2   # summation order
    python benchmarks/seed_spread.py NB --seeds 0-5 --write --out benchmarks/results/x.json

Takes a few minutes per notebook and seed set (runs in parallel with ``--jobs``); not part of
``make test``. Results: a Markdown report on stdout, the raw figures in ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbval.plugin import coalesce_streams  # noqa: E402

from tests.nbval_tolerance import DEFAULT, METADATA_KEY, Tolerance, split_numbers  # noqa: E402

SEED_LINE = re.compile(r"^SEED = \d+\b", re.MULTILINE)
STORED_SEED = 0  # the seed of the stored outputs
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def parse_seeds(text: str) -> list[int]:
    """``"0-5"`` -> [0, 1, 2, 3, 4, 5]; ``"0,3,7"`` -> [0, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-"))
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    return seeds


def sanitizers() -> list[tuple[str, str]]:
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.MULTILINE)


def cell_text(cell: dict, patterns: list[tuple[str, str]]) -> str:
    """The text nbval compares for one code cell: streams and ``text/plain``, sanitized.

    Stream outputs are first merged per stream name, as nbval does (a kernel under load may
    split one print into several messages).
    """
    parts = []
    for out in coalesce_streams([nbformat.from_dict(o) for o in cell.get("outputs", [])]):
        if out.get("output_type") == "stream":
            parts.append(f"[{out.get('name')}]" + "".join(out.get("text", "")))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append("".join(out.get("data", {}).get("text/plain", "")))
    text = "\n".join(parts)
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def cell_errors(cell: dict) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"[:300]
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def run_once(path: str, seed: int, threads: int, timeout: int) -> dict:
    """Execute ``path`` with ``SEED = seed`` and ``threads`` BLAS threads; texts and errors."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if SEED_LINE.search(code[0].source):
        code[0].source = SEED_LINE.sub(f"SEED = {seed}", code[0].source, count=1)
    elif seed != 0:
        raise ValueError(f"{path}: no 'SEED = <int>' line in the first code cell")
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(Path(path).parent)}},
    )  # fmt: skip
    client.execute()
    patterns = sanitizers()
    return {
        "seed": seed,
        "threads": threads,
        "seconds": time.perf_counter() - start,
        "texts": [cell_text(c, patterns) for c in code],
        "errors": [cell_errors(c) for c in code],
    }


def nice_ceiling(value: float) -> float:
    """Round up to one significant digit (0.0123 -> 0.02, 0.3 -> 0.3)."""
    if value <= 0:
        return 0.0
    exp = math.floor(math.log10(value))
    lead = math.ceil(round(value / 10**exp, 9))
    return float(f"{lead}e{exp}") if lead < 10 else float(f"1e{exp + 1}")


def analyse(stored: list[str], runs: list[dict], margin: float) -> list[dict]:
    """Per code cell: deviations from the stored text, number by number, and a tolerance."""
    cells = []
    for i, ref in enumerate(stored):
        layout0, values0, literals0 = split_numbers(ref)
        info: dict = {"cell": i, "layout_changed": [], "errors": {}, "numbers": []}
        per_number: list[list[float]] = [[] for _ in values0]
        for run in runs:
            if run["errors"][i]:
                info["errors"][f"seed {run['seed']}, {run['threads']} thr"] = run["errors"][i]
            layout, values, _ = split_numbers(run["texts"][i])
            if layout != layout0:
                info["layout_changed"].append(f"seed {run['seed']}, {run['threads']} thr")
                continue
            for k, v in enumerate(values):
                per_number[k].append(v)
        atol_need, rtol_need = 0.0, 0.0
        for k, (v0, lit) in enumerate(zip(values0, literals0, strict=True)):
            vals = per_number[k]
            if not vals:
                continue
            if v0 == STORED_SEED and vals == [float(run["seed"]) for run in runs]:
                continue  # the printed seed itself ("seed 0"), not a figure that moves with it
            dev = max(abs(v - v0) for v in vals)
            if dev <= DEFAULT.atol + DEFAULT.rtol * abs(v0):
                continue
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1))
            info["numbers"].append(
                {"stored": lit, "values": vals, "mean": mean, "std": std, "max_dev": dev}
            )
            if abs(v0) <= 1.0:
                atol_need = max(atol_need, dev)
            else:
                rtol_need = max(rtol_need, dev / abs(v0))
        if info["numbers"]:
            info["tolerance"] = {
                "atol": max(nice_ceiling(margin * atol_need), DEFAULT.atol),
                "rtol": max(nice_ceiling(margin * rtol_need), DEFAULT.rtol),
            }
        cells.append(info)
    return cells


def report(path: str, cells: list[dict], runs: list[dict], current: list[dict]) -> str:
    lines = [f"### {path}", ""]
    desc = ", ".join(f"seed {r['seed']}/{r['threads']} thr {r['seconds']:.0f} s" for r in runs)
    lines.append(f"runs: {desc}")
    lines += ["", "| cell | moved | max abs dev | max rel dev | spread (mean ± sd) | "
              "tolerance needed | stored | problems |", "|---|---|---|---|---|---|---|---|"]
    for info, meta in zip(cells, current, strict=True):
        problems = []
        if info["layout_changed"]:
            problems.append("layout changed: " + "; ".join(info["layout_changed"]))
        if info["errors"]:
            errs = "; ".join(f"{k}: {v[0]}" for k, v in info["errors"].items())
            problems.append("errors: " + errs)
        if not info["numbers"] and not problems:
            continue
        nums = info["numbers"]
        abs_dev = max((n["max_dev"] for n in nums), default=0.0)
        rel_dev = max((n["max_dev"] / abs(float(n["stored"].replace(",", ""))) for n in nums
                       if float(n["stored"].replace(",", "")) != 0), default=0.0)  # fmt: skip
        spread = "; ".join(f"{n['stored']}: {n['mean']:.4g}±{n['std']:.2g}" for n in nums[:4])
        if len(nums) > 4:
            spread += f"; (+{len(nums) - 4})"
        tol = info.get("tolerance")
        tol_text = f"atol {tol['atol']:g}, rtol {tol['rtol']:g}" if tol else ""
        lines.append(
            f"| {info['cell']} | {len(nums)} | {abs_dev:.3g} | {rel_dev:.3g} | {spread} | "
            f"{tol_text} | {meta or ''} | {' '.join(problems)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--seeds", default="0-5", help="seeds, e.g. 0-5 or 0,3 (default 0-5)")
    parser.add_argument("--threads", default="1", help="BLAS thread counts, e.g. 1,2")
    parser.add_argument("--jobs", type=int, default=2, help="notebook runs in parallel")
    parser.add_argument("--margin", type=float, default=1.5, help="tolerance = margin * spread")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--write", action="store_true", help="store tolerances in the cells")
    parser.add_argument("--out", help="JSON file for the raw figures")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    threads = [int(t) for t in args.threads.split(",")]
    jobs = [(nb, s, t) for nb in args.notebooks for s in seeds for t in threads]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_once, nb, s, t, args.timeout) for nb, s, t in jobs]
        results = [f.result() for f in futures]
    patterns = sanitizers()
    everything = {}
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        stored = [cell_text(c, patterns) for c in code]
        runs = [r for (p, _, _), r in zip(jobs, results, strict=True) if p == path]
        cells = analyse(stored, runs, args.margin)
        current = [c.metadata.get(METADATA_KEY) for c in code]
        print(report(path, cells, runs, current), flush=True)
        everything[path] = {"runs": [{k: r[k] for k in ("seed", "threads", "seconds")}
                                     for r in runs], "cells": cells}  # fmt: skip
        if args.write:
            for info, cell in zip(cells, code, strict=True):
                tol = info.get("tolerance")
                timing = "NBVAL_IGNORE_OUTPUT" in cell.source  # its output is not compared
                if tol and not info["layout_changed"] and not timing:
                    old = cell.metadata.get(METADATA_KEY, {})  # widen, never narrow
                    tol = {k: max(v, old.get(k, 0.0)) for k, v in tol.items()}
                    Tolerance(**tol)  # validates
                    cell.metadata[METADATA_KEY] = tol
            nbformat.write(nb, path)
            print(f"tolerances written to {path}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(everything, indent=1) + "\n")
    failing = [p for p, v in everything.items() for c in v["cells"] if c["errors"]]
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
