"""The tolerant output comparison of ``make nbval`` (``tests/nbval_tolerance.py``).

Unit tests of the rule, property tests, and one end-to-end run of ``pytest --nbval`` with the
plugin on a small notebook whose stored outputs were edited: within tolerance it passes; a
changed word, a deleted row and a number outside its tolerance fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.nbval_tolerance import DEFAULT, Tolerance, split_numbers, texts_match

ROOT = Path(__file__).resolve().parents[1]


def test_split_numbers_reads_separators_signs_and_exponents():
    layout, values, literals = split_numbers("dense 1,067,023 B, err -3.8e-12, 34.6x, 87.3%")
    assert values == [1067023.0, -3.8e-12, 34.6, 87.3]
    assert literals == ["1,067,023", "-3.8e-12", "34.6", "87.3"]
    assert layout == ["dense ", " B, err ", ", ", "x, ", "%"]


def test_names_versions_and_layer_names_are_words():
    assert split_numbers("fc1.weight conv2 x3 numpy 2.4.6")[1] == []


def test_rounding_noise_passes_by_default():
    assert texts_match("max |dW - dW_fd| 9.6e-12", "max |dW - dW_fd| 3.8e-12")


def test_last_digit_of_a_figure_fails_by_default():
    assert not texts_match("accuracy 0.8907", "accuracy 0.8908")
    assert not texts_match("35,940 bytes", "35,941 bytes")


def test_cell_tolerance_admits_a_trained_figure():
    tol = Tolerance(atol=0.01, rtol=0.0)
    assert texts_match("accuracy 0.8907", "accuracy 0.8990", tol)
    assert not texts_match("accuracy 0.8907", "accuracy 0.9100", tol)


def test_relative_tolerance_scales_with_the_stored_value():
    tol = Tolerance(rtol=0.01, atol=0.0)
    assert texts_match("35,940 bytes", "36,200 bytes", tol)
    assert not texts_match("35,940 bytes", "39,534 bytes", tol)  # +10%


def test_changed_word_fails_even_with_a_loose_tolerance():
    tol = Tolerance(atol=1.0, rtol=1.0)
    assert not texts_match("pruned 0.50", "shrunk 0.50", tol)
    assert not texts_match("speed-up 1.8x", "speed-up 1.8%", tol)


def test_deleted_or_added_row_fails():
    table = "| a | 0.1 |\n| b | 0.2 |\n| c | 0.3 |\n"
    tol = Tolerance(atol=1.0, rtol=1.0)
    assert not texts_match(table, "| a | 0.1 |\n| c | 0.3 |\n", tol)
    assert not texts_match(table, table + "| d | 0.4 |\n", tol)


def test_table_padding_and_rules_may_grow_with_a_number():
    stored = "| layer | bytes |\n|-------|-------|\n| fc1   |   999 |\n"
    new = "| layer | bytes |\n|-------|--------|\n| fc1   |   1,001 |\n"
    assert texts_match(stored, new, Tolerance(atol=5.0))
    assert not texts_match(stored, new)


def test_tolerance_from_metadata_validates():
    assert Tolerance.from_metadata({}) == DEFAULT
    assert Tolerance.from_metadata({"nbval-tolerance": {"atol": 0.01}}) == Tolerance(
        rtol=DEFAULT.rtol, atol=0.01
    )
    with pytest.raises(ValueError, match="nbval-tolerance"):
        Tolerance.from_metadata({"nbval-tolerance": {"atl": 0.01}})
    with pytest.raises(ValueError, match="atol"):
        Tolerance(atol=-1.0)
    with pytest.raises(TypeError, match="rtol"):
        Tolerance(rtol="0.1")


_words = st.text(alphabet="abcdefgh |:", min_size=1, max_size=8)
_numbers = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 4))


@given(st.lists(st.tuples(_words, _numbers), min_size=1, max_size=6), st.floats(0.0, 0.99))
def test_numbers_moved_within_tolerance_match(pairs, fraction):
    tol = Tolerance(rtol=0.0, atol=0.5)
    stored = "".join(f"{w} {v:.4f} " for w, v in pairs)
    moved = "".join(f"{w} {v + fraction * 0.5:.4f} " for w, v in pairs)
    assert texts_match(stored, moved, tol)


@given(st.lists(st.tuples(_words, _numbers), min_size=1, max_size=6), st.data())
def test_one_number_moved_beyond_tolerance_fails(pairs, data):
    tol = Tolerance(rtol=0.0, atol=0.5)
    i = data.draw(st.integers(0, len(pairs) - 1))
    stored = "".join(f"{w} {v:.4f} " for w, v in pairs)
    moved = "".join(f"{w} {v + (0.6 if j == i else 0.0):.4f} " for j, (w, v) in enumerate(pairs))
    assert not texts_match(stored, moved, tol)


# -- end to end: pytest --nbval with the plugin --------------------------------------------------
def _cell(source: str, stored: str, tolerance: dict | None = None) -> dict:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {"nbval-tolerance": tolerance} if tolerance else {},
        "outputs": [{"output_type": "stream", "name": "stdout", "text": stored}],
        "source": source,
    }


def test_nbval_with_the_plugin_end_to_end(tmp_path):
    table = "print('| a | 0.1000 |'); print('| b | 0.2000 |')"
    cells = [
        # 0: inside its tolerance -> passes
        _cell("print('acc 0.8907')", "acc 0.8950\n", {"atol": 0.01}),
        # 1: outside its tolerance -> fails
        _cell("print('acc 0.8907')", "acc 0.9100\n", {"atol": 0.01}),
        # 2: a changed word -> fails
        _cell("print('acc 0.8907')", "err 0.8907\n", {"atol": 0.01}),
        # 3: a deleted row -> fails
        _cell(table, "| a | 0.1000 |\n", {"atol": 0.01}),
        # 4: rounding noise under the default tolerance -> passes
        _cell("print(f'{3.8e-12:.1e}')", "9.6e-12\n"),
        # 5: a deterministic count changed by 10% under the default tolerance -> fails
        _cell("print('1,067,023 bytes')", "1,173,725 bytes\n"),
    ]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "probe.ipynb"
    path.write_text(json.dumps(nb))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-p", "no:xdist", "--nbval", "--nbval-current-env", "-p", "tests.nbval_tolerance",
         "-rA", "--rootdir", str(tmp_path), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = re.findall(r"^(PASSED|FAILED) \S*::Cell (\d+)", proc.stdout, re.MULTILINE)
    outcome = {int(cell): result for result, cell in found}
    assert outcome == {
        0: "PASSED", 1: "FAILED", 2: "FAILED", 3: "FAILED", 4: "PASSED", 5: "FAILED"
    }, proc.stdout[-3000:]  # fmt: skip
