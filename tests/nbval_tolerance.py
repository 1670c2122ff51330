"""pytest plugin: nbval with a numeric tolerance for the numbers in text outputs.

nbval re-executes a notebook and compares each cell's new text output with the stored one
character for character. A figure that comes from training moves in its last digits on another
CPU (another BLAS kernel sums in another order), so an exact comparison fails everywhere but on
the machine that stored the outputs. This plugin keeps nbval and changes one thing: in text
outputs (streams, ``text/plain``, ``text/html``, ...) the *numbers* compare with a tolerance,
everything else exactly.

The rule
--------
A text is split into numbers and the words, signs and layout between them
(:func:`split_numbers`). Two texts match when

* the words between the numbers are identical, after runs of spaces and runs of table-rule
  characters (``-``, ``=``, ``─``) are shortened (a table whose column grew by a digit still
  matches; a changed word, a changed sign such as ``x`` for ``%``, a missing row or an extra
  row does not), and
* every pair of numbers satisfies ``|new - stored| <= atol + rtol * |stored|`` (the rule of
  :func:`numpy.isclose`).

The default tolerance (:data:`DEFAULT`) is tight: ``rtol = 1e-6`` and ``atol = 1e-9``, so values
at rounding level pass but a printed figure that changes in its last digit fails. A cell whose
figures come from training sets its own tolerance in its metadata, from the spread of those
figures over seeds (``benchmarks/seed_spread.py`` measures it and can write it)::

    "metadata": {"nbval-tolerance": {"atol": 0.01, "rtol": 0.005}}

Use: ``pytest --nbval -p tests.nbval_tolerance ...`` (``make nbval`` does).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

METADATA_KEY = "nbval-tolerance"

# A number: optional sign, digits with optional thousands separators, optional fraction and
# exponent. Not part of a word or of a dotted name: "fc1", "x2" and "conv3.weight" are words.
# Version-like runs ("2.4.6") are words too. The groups are atomic, so a run of digits is never
# split into a shorter number and a rest.
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?>\.\d+)?(?>[eE][-+]?\d+)?(?!\.\d)"
)
_SPACES = re.compile(r"[ \t]+")
_RULES = re.compile(r"([-=─━])\1+")


@dataclass(frozen=True)
class Tolerance:
    """``|new - stored| <= atol + rtol * |stored|`` for every number of a text."""

    rtol: float = 1e-6
    atol: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{METADATA_KEY}: {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{METADATA_KEY}: {name} must be finite and >= 0, got {value!r}")

    @classmethod
    def from_metadata(cls, metadata: dict) -> Tolerance:
        """The cell's tolerance: :data:`DEFAULT`, with ``metadata["nbval-tolerance"]`` over it."""
        spec = metadata.get(METADATA_KEY, {})
        if not isinstance(spec, dict) or set(spec) - {"rtol", "atol"}:
            raise ValueError(
                f"cell metadata {METADATA_KEY!r} must be a dict with keys 'rtol' and/or 'atol', "
                f"got {spec!r}"
            )
        return cls(**{**DEFAULT.__dict__, **spec})

    def close(self, new: float, stored: float) -> bool:
        return abs(new - stored) <= self.atol + self.rtol * abs(stored)


DEFAULT = Tolerance()


def split_numbers(text: str) -> tuple[list[str], list[float], list[str]]:
    """Split ``text`` into its layout (the text between numbers) and its numbers.

    Returns ``(layout, values, literals)``: ``layout`` has one more entry than ``values``, with
    spaces and table rules normalized; ``literals`` are the numbers as printed.

    >>> split_numbers("acc 0.8907 at 1,024 units (fc1)")
    (['acc ', ' at ', ' units (fc1)'], [0.8907, 1024.0], ['0.8907', '1,024'])
    """
    layout, values, literals = [], [], []
    start = 0
    for m in _NUMBER.finditer(text):
        layout.append(text[start : m.start()])
        literals.append(m.group())
        values.append(float(m.group().replace(",", "")))
        start = m.end()
    layout.append(text[start:])
    layout = [_RULES.sub(r"\1\1", _SPACES.sub(" ", part)) for part in layout]
    return layout, values, literals


def texts_match(stored: str, new: str, tol: Tolerance = DEFAULT) -> bool:
    """Whether ``new`` equals ``stored`` up to ``tol`` on their numbers (see the module rule)."""
    if stored == new:
        return True
    layout_a, values_a, _ = split_numbers(stored)
    layout_b, values_b, _ = split_numbers(new)
    if layout_a != layout_b:  # same layout implies the same count of numbers
        return False
    return all(tol.close(b, a) for a, b in zip(values_a, values_b, strict=True))


class TolerantText(str):
    """A stored or new output text whose ``==`` is :func:`texts_match` under a tolerance.

    nbval compares outputs with ``ref != test``; handing it these strings from ``sanitize``
    changes that comparison and nothing else (its failure report still shows the two texts).
    """

    tolerance: Tolerance

    def __new__(cls, text: str, tolerance: Tolerance) -> TolerantText:
        obj = super().__new__(cls, text)
        obj.tolerance = tolerance
        return obj

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        return texts_match(str(self), str(other), self.tolerance)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # equality with a tolerance is not an equivalence: never a dict key


class TolerantCell(IPyNbCell):
    """An nbval cell whose text outputs compare with the cell's :class:`Tolerance`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tolerance = Tolerance.from_metadata(self.cell.metadata)

    def sanitize(self, s):
        s = super().sanitize(s)
        return TolerantText(s, self.tolerance) if isinstance(s, str) else s


class TolerantNotebook(IPyNbFile):
    """nbval's notebook collector, yielding :class:`TolerantCell` items."""

    def collect(self):
        for item in super().collect():
            yield TolerantCell.from_parent(
                self, name=item.name, cell_num=item.cell_num, cell=item.cell, options=item.options
            )


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    """Replace the collector nbval made for a notebook by a :class:`TolerantNotebook`."""
    collectors = yield
    return [
        TolerantNotebook.from_parent(parent, path=file_path) if type(c) is IPyNbFile else c
        for c in collectors
    ]
