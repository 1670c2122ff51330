"""Result types of the cost model: one :class:`LayerCost` row per layer, a :class:`Profile` of a
network, and :func:`summary_table` to compare profiles. See :mod:`refimpl.cost`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from typing import Any

Shape = tuple[int, ...]

CATEGORIES = ("conv", "fc", "other")


def _fmt_shape(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)

# --------------------------------------------------------------------------------------------
# Rows and profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """The cost of one layer for one input sample: one row of a :class:`Profile`.

    Parameters
    ----------
    name : str
        Dotted name, e.g. ``"layer1.0.conv2"``.
    kind : str
        What the layer is: ``"conv"``, ``"linear"``, ``"maxpool"``, ``"relu"``, ``"add"``, ...
    input_shape, output_shape : tuple of int
        Per-sample shapes, ``(C, H, W)`` or ``(features,)``.
    category : {"conv", "fc", "other"}
        Which share the row counts towards in :meth:`Profile.share`.
    params : int
        Stored trainable numbers.
    nonzero_params : int or None
        Nonzero entries of the effective weights and biases; ``None`` means ``params``.
    buffers : int
        Stored numbers that are not trained (a batch normalization's running statistics).
    macs : int
        Multiply-accumulates of the weights.
    bias_outputs : int
        Outputs that receive a bias (each costed as one more MAC in ``flops``).
    flops : int or None
        ``None`` means ``2 * (macs + bias_outputs)``.
    activations : int or None
        Elements allocated for the output; ``None`` means ``prod(output_shape)``.
    activation_bytes, stored_bytes : int or None
        ``None`` means ``activations * dtype_bytes`` and ``(params + buffers) * dtype_bytes``
        (rounded up) with the profile's ``dtype_bytes``.

    Notes
    -----
    A layer implementing ``layer_cost`` (see the module docstring) returns one of these; the
    profiler fills every ``None`` field, so the rows of a :class:`Profile` hold only ints.
    """

    name: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    category: str = "other"
    params: int = 0
    nonzero_params: int | None = None
    buffers: int = 0
    macs: int = 0
    bias_outputs: int = 0
    flops: int | None = None
    activations: int | None = None
    activation_bytes: int | None = None
    stored_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")

    def completed(self, dtype_bytes: int | float = 4) -> LayerCost:
        """Return a copy with every ``None`` field computed from the others."""
        nbytes = _bytes_counter(dtype_bytes)
        activations = math.prod(self.output_shape) if self.activations is None else self.activations
        return replace(
            self,
            input_shape=tuple(int(s) for s in self.input_shape),
            output_shape=tuple(int(s) for s in self.output_shape),
            nonzero_params=self.params if self.nonzero_params is None else self.nonzero_params,
            flops=2 * (self.macs + self.bias_outputs) if self.flops is None else self.flops,
            activations=activations,
            activation_bytes=(
                nbytes(activations) if self.activation_bytes is None else self.activation_bytes
            ),
            stored_bytes=(
                nbytes(self.params + self.buffers)
                if self.stored_bytes is None
                else self.stored_bytes
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (field name to value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _bytes_counter(dtype_bytes: int | float) -> Callable[[int], int]:
    if isinstance(dtype_bytes, bool) or not isinstance(dtype_bytes, (int, float)):
        raise TypeError(f"dtype_bytes must be a number, got {dtype_bytes!r}")
    if not dtype_bytes > 0 or not math.isfinite(dtype_bytes):
        raise ValueError(f"dtype_bytes must be positive and finite, got {dtype_bytes!r}")
    per = Fraction(str(dtype_bytes))
    return lambda n: math.ceil(n * per)


_TOTALS = (
    "params",
    "nonzero_params",
    "buffers",
    "macs",
    "flops",
    "activations",
    "activation_bytes",
    "stored_bytes",
)


@dataclass(frozen=True)
class Profile:
    """Per-layer costs of a network for one input sample, and their totals.

    Attributes
    ----------
    rows : tuple of LayerCost
        One row per layer (composites add a ``"concat"`` or ``"add"`` row), in execution order.
    input_shape, output_shape : tuple of int
        Per-sample shapes of the network's input and output.
    dtype_bytes : int or float
        Bytes per stored number and per activation element (4 for float32).
    name : str
        The network's name, if the spec had one.

    Notes
    -----
    Totals are properties: ``params``, ``nonzero_params``, ``buffers``, ``macs``, ``flops``,
    ``activations``, ``activation_bytes`` and ``stored_bytes``. :meth:`share` splits a total
    into the conv, FC and other shares; ``conv_share`` and ``fc_share`` give the shares of
    parameters and of MACs, the four percentages of Table 1 of the survey.

    Examples
    --------
    >>> p = profile(Seq([Conv(1, 2, 3), Flat(), Dense(8, 3)]), (1, 4, 4))
    >>> p.params, p.macs, p.flops
    (47, 96, 214)
    """

    rows: tuple[LayerCost, ...]
    input_shape: Shape
    output_shape: Shape
    dtype_bytes: int | float = 4
    name: str = ""

    def _total(self, attr: str) -> int:
        return int(sum(getattr(r, attr) for r in self.rows))

    @property
    def params(self) -> int:
        """Total stored trainable numbers."""
        return self._total("params")

    @property
    def nonzero_params(self) -> int:
        """Total nonzero entries of the effective weights and biases."""
        return self._total("nonzero_params")

    @property
    def buffers(self) -> int:
        """Total stored numbers that are not trained."""
        return self._total("buffers")

    @property
    def macs(self) -> int:
        """Total multiply-accumulates (convolutions and dense layers)."""
        return self._total("macs")

    @property
    def flops(self) -> int:
        """Total FLOPs, ``2 (MACs + bias outputs)``."""
        return self._total("flops")

    @property
    def activations(self) -> int:
        """Total activation elements allocated by one forward pass that keeps every output."""
        return self._total("activations")

    @property
    def activation_bytes(self) -> int:
        """``activations`` in bytes."""
        return self._total("activation_bytes")

    @property
    def stored_bytes(self) -> int:
        """Stored bytes: dense float for plain tensors, the deployed size for parametrized ones."""
        return self._total("stored_bytes")

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are zero, ``1 - nonzero_params / params``."""
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0

    def share(self, quantity: str = "params") -> dict[str, float]:
        """Split a total into the shares of convolutions, dense layers and the rest.

        Parameters
        ----------
        quantity : {"params", "nonzero_params", "macs", "flops", "stored_bytes", ...}
            A numeric :class:`LayerCost` field.

        Returns
        -------
        dict
            ``{"conv": ..., "fc": ..., "other": ...}``, fractions of the total that sum to 1
            (all 0 when the total is 0). ``"other"`` holds, e.g., batch normalization.
        """
        if quantity not in _TOTALS and quantity != "bias_outputs":
            raise ValueError(f"quantity must be one of {_TOTALS}, got {quantity!r}")
        sums = dict.fromkeys(CATEGORIES, 0)
        for row in self.rows:
            sums[row.category] += getattr(row, quantity)
        total = sum(sums.values())
        return {k: (v / total if total else 0.0) for k, v in sums.items()}

    @property
    def conv_share(self) -> dict[str, float]:
        """Share of convolutions in ``{"params": ..., "macs": ...}``."""
        return {"params": self.share("params")["conv"], "macs": self.share("macs")["conv"]}

    @property
    def fc_share(self) -> dict[str, float]:
        """Share of dense (fully-connected) layers in ``{"params": ..., "macs": ...}``."""
        return {"params": self.share("params")["fc"], "macs": self.share("macs")["fc"]}

    def totals(self) -> dict[str, int]:
        """All totals as a dict."""
        return {attr: self._total(attr) for attr in _TOTALS}

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as a list of plain dicts (ready for ``pandas.DataFrame`` if you have it)."""
        return [row.as_dict() for row in self.rows]

    def __getitem__(self, name: str) -> LayerCost:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def __iter__(self) -> Iterator[LayerCost]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def table(self, nonzero: bool | None = None, skip_empty: bool = False) -> str:
        """Format the profile as a plain-text table, one line per layer and a total line.

        Parameters
        ----------
        nonzero : bool, optional
            Show the nonzero-parameter column; by default only when some weights are zero.
        skip_empty : bool
            Leave out rows with neither parameters nor MACs (activations, pooling, ...).

        Returns
        -------
        str
        """
        if nonzero is None:
            nonzero = self.nonzero_params != self.params
        header = ["layer", "kind", "output", "params"]
        if nonzero:
            header.append("nonzero")
        header += ["MACs", "FLOPs", "activations", "stored bytes"]

        def line(name: str, kind: str, shape: str, r: Mapping[str, int]) -> list[str]:
            cells = [name, kind, shape, f"{r['params']:,}"]
            if nonzero:
                cells.append(f"{r['nonzero_params']:,}")
            cells += [
                f"{r['macs']:,}",
                f"{r['flops']:,}",
                f"{r['activations']:,}",
                f"{r['stored_bytes']:,}",
            ]
            return cells

        body = [
            line(r.name, r.kind, _fmt_shape(r.output_shape), r.as_dict())
            for r in self.rows
            if not (skip_empty and r.params == 0 and r.macs == 0)
        ]
        total = line("total", "", _fmt_shape(self.output_shape), self.totals())
        widths = [max(len(c[i]) for c in [header, *body, total]) for i in range(len(header))]

        def render(cells: list[str]) -> str:
            out = [
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        title = f"{self.name or 'network'}: input {_fmt_shape(self.input_shape)}"
        return "\n".join([title, render(header), rule, *map(render, body), rule, render(total)])

    def __str__(self) -> str:
        return self.table()


def summary_table(profiles: Mapping[str, Profile]) -> str:
    """One line per network: parameters, MACs and FLOPs with their conv/FC shares.

    The layout follows Table 1 of the survey [1]_ (parameters in millions, MACs and FLOPs in
    billions, shares in percent; ``M = 10^6``, ``B = 10^9``; stored size in MiB of float32).

    Parameters
    ----------
    profiles : mapping of str to Profile
        Network name to its profile.

    Returns
    -------
    str
    """
    header = [
        "network",
        "params",
        "conv %",
        "FC %",
        "MACs",
        "conv %",
        "FC %",
        "FLOPs",
        "size MiB",
    ]
    lines = []
    for name, p in profiles.items():
        sp, sm = p.share("params"), p.share("macs")
        lines.append(
            [
                name,
                f"{p.params / 1e6:.2f} M",
                f"{100 * sp['conv']:.1f}",
                f"{100 * sp['fc']:.1f}",
                f"{p.macs / 1e9:.3f} B",
                f"{100 * sm['conv']:.1f}",
                f"{100 * sm['fc']:.1f}",
                f"{p.flops / 1e9:.2f} B",
                f"{p.stored_bytes / 2**20:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *map(render, lines)])


