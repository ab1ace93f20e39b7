"""Measured latency tables as grids, interpolated in log(shape)–log(latency) space.

A table's rows are split into slices by their categorical keys (dtype, head_dim, …).
Within a slice the numeric axes (m, n, k; batch, sequence, …) span a grid: the sorted
distinct values of each axis. Cells the collector skipped (out of memory, a large
corner) are filled once at build time along each axis in turn, the same way a query
outside the grid is answered, and remembered as filled.

A query is answered by multilinear interpolation between the 2^d bracketing cells in
log coordinates, i.e. piecewise power laws. Outside an axis's range:

- below the smallest measured value the latency is that of the smallest (clamped: small
  kernels are launch- and latency-bound there);
- above the largest it grows as ``(x / x_max) ** power`` (``power`` 1 for an axis the
  work is proportional to, 2 for a causal-attention sequence length); an axis with no
  power (a GPU count) is not extrapolated and yields NaN;
- or, given a *trend* (a physical model of the kernel's seconds, e.g. the roofline),
  the latency at the grid's edge times ``trend(x) / trend(edge)``: the table sets the
  level, the model the growth beyond it.

Every answer carries a :class:`Coverage` code.

Example:
    >>> import numpy as np
    >>> t = SlicedTable(
    ...     keys=("dtype",), axes=(Axis("m", 1.0),),
    ...     columns={"dtype": np.array(["bf16", "bf16"]), "m": np.array([1, 4])},
    ...     seconds=np.array([1.0, 4.0]),
    ... )
    >>> s, c = t.query([np.array(["bf16"] * 3)], [np.array([2.0, 4.0, 8.0])])
    >>> s.round(6).tolist(), c.tolist()
    ([2.0, 4.0, 8.0], [0, 0, 1])
"""

from __future__ import annotations

import enum
import functools
import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Axis", "Coverage", "Grid", "SlicedTable", "Trend", "factorize"]

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Arr = npt.NDArray[np.generic]

_TINY = 1e-300

Trend = Callable[[tuple[Hashable, ...], list[F64]], F64]
"""Model seconds of a slice (its key) at axis values (one array per axis)."""


class Coverage(enum.IntEnum):
    """How a query element was answered (int8 codes, the worst over its axes)."""

    MEASURED = 0
    """At a measured point, or interpolated between measured points."""
    EXTRAPOLATED = 1
    """Outside the measured range of some axis, or through a cell filled by extrapolation."""
    MISSING = 2
    """No table slice for its categorical keys, or an axis that is not extrapolated: NaN."""


@dataclass(frozen=True, slots=True)
class Axis:
    """One numeric axis of a table."""

    column: str
    """Column of the parquet table."""
    power: float | None
    """Latency ∝ x**power above the largest measured x; None: no extrapolation (NaN)."""


@dataclass(frozen=True, slots=True)
class Grid:
    """One slice's latencies on the full grid of its distinct axis values."""

    axes: tuple[Axis, ...]
    logx: tuple[F64, ...]
    """log of each axis's sorted distinct values."""
    logt: F64
    """log seconds, shape ``[len(x) for x in logx]``, holes filled."""
    filled: Bool
    """Cells that were not measured."""

    @classmethod
    def build(
        cls, axes: tuple[Axis, ...], points: Sequence[Arr], seconds: F64, *, monotone: bool = False
    ) -> Grid:
        """Grid of measured ``seconds`` at ``points`` (one array per axis, distinct rows).

        ``monotone``: replace each cell by the least latency at any cell at least as large
        along every axis that has a power (see :class:`SlicedTable`).
        """
        values = [np.unique(np.asarray(p, dtype=np.float64)) for p in points]
        idx = tuple(np.searchsorted(v, p) for v, p in zip(values, points, strict=True))
        logt = np.full([len(v) for v in values], np.nan)
        logt[idx] = np.log(np.maximum(seconds, _TINY))
        filled = np.isnan(logt)
        logx = tuple(np.log(v) for v in values)
        _fill(logt, logx, axes)
        for a, axis in enumerate(axes):
            if monotone and axis.power is not None:
                logt = np.flip(np.minimum.accumulate(np.flip(logt, a), axis=a), a)
        return cls(axes=axes, logx=logx, logt=logt, filled=filled)

    def eval(
        self, xs: Sequence[F64], trend: Callable[[list[F64]], F64] | None = None
    ) -> tuple[F64, I8]:
        """Seconds and coverage at query points (1-D arrays, one per axis); above the
        grid ``trend`` (model seconds at axis values), when given, replaces the powers."""
        lows, highs, weights = [], [], []
        extra = np.zeros(len(xs[0]))
        cover = np.zeros(len(xs[0]), dtype=np.int8)
        above: list[F64] = []
        edge: list[F64] = []
        for axis, g, x in zip(self.axes, self.logx, xs, strict=True):
            lx = np.log(np.maximum(x, _TINY))
            c = np.clip(lx, g[0], g[-1])
            above.append(np.exp(np.maximum(lx, g[0])))
            edge.append(np.exp(c))
            outside = lx != c
            cover[outside] = Coverage.EXTRAPOLATED
            if axis.power is None:
                cover[outside] = Coverage.MISSING
            else:
                extra += axis.power * np.maximum(lx - g[-1], 0.0)
            lo = np.clip(np.searchsorted(g, c, side="right") - 1, 0, max(len(g) - 2, 0))
            hi = np.minimum(lo + 1, len(g) - 1)
            span = g[hi] - g[lo]
            lows.append(lo)
            highs.append(hi)
            weights.append(np.divide(c - g[lo], span, out=np.zeros_like(c), where=span > 0))
        logt, through_filled = self._corners(lows, highs, weights)
        cover[through_filled & (cover == Coverage.MEASURED)] = Coverage.EXTRAPOLATED
        if trend is not None:
            out = extra > 0
            extra = np.zeros_like(extra)
            if out.any():
                ratio = trend([a[out] for a in above]) / trend([e[out] for e in edge])
                extra[out] = np.log(np.maximum(ratio, _TINY))
        seconds = np.exp(logt + extra)
        seconds[cover == Coverage.MISSING] = np.nan
        return seconds, cover

    def _corners(self, lows: list[I64], highs: list[I64], weights: list[F64]) -> tuple[F64, Bool]:
        """Multilinear blend of the 2^d bracketing cells; whether a filled one had weight."""
        total = np.zeros(len(weights[0]))
        hit = np.zeros(len(weights[0]), dtype=np.bool_)
        for corner in itertools.product((False, True), repeat=len(weights)):
            idx = tuple(h if up else lo for lo, h, up in zip(lows, highs, corner, strict=True))
            w = np.prod([wt if up else 1 - wt for wt, up in zip(weights, corner, strict=True)], 0)
            total += w * self.logt[idx]
            hit |= (w > 0) & self.filled[idx]
        return total, hit


def _fill(logt: F64, logx: tuple[F64, ...], axes: tuple[Axis, ...]) -> None:
    """Fill NaN cells in place along each axis in turn until none is left.

    Along one line of the grid a hole between measured cells is interpolated, one
    below them takes the smallest measured value, one above grows with the axis power.
    """
    while np.isnan(logt).any():
        before = int(np.isnan(logt).sum())
        for a, axis in enumerate(axes):
            lines = np.moveaxis(logt, a, -1).reshape(-1, logt.shape[a])
            todo = np.flatnonzero(np.isnan(lines).any(1) & ~np.isnan(lines).all(1))
            for r in todo:
                lines[r] = _fill_line(lines[r], logx[a], axis.power or 0.0)
            np.moveaxis(logt, a, -1)[...] = lines.reshape(np.moveaxis(logt, a, -1).shape)
        if int(np.isnan(logt).sum()) == before:
            raise ValueError("grid holes cannot be filled")  # unreachable: a slice has a row


def _fill_line(line: F64, lx: F64, power: float) -> F64:
    ok = ~np.isnan(line)
    out: F64 = np.interp(lx, lx[ok], line[ok])
    top = lx[ok][-1]
    above = lx > top
    out[above] = line[ok][-1] + power * (lx[above] - top)
    return out


class SlicedTable:
    """A measured table: categorical key columns select a slice, each slice a :class:`Grid`.

    Rows must be distinct on keys + axes; ``keys`` must not be empty. Grids are built on
    first use. With ``monotone`` the latency never falls as an axis with a power grows: a
    smaller problem could run the kernel measured for a larger one (padded), so each cell
    takes the least latency measured at or above it. The measured tables are not monotone
    on their own (kernel selection, tile quantisation, noise).
    """

    def __init__(
        self,
        *,
        keys: tuple[str, ...],
        axes: tuple[Axis, ...],
        columns: Mapping[str, Arr],
        seconds: F64,
        monotone: bool = False,
    ) -> None:
        self.keys = keys
        self.monotone = monotone
        self.axes = axes
        self._columns = columns
        self._seconds = seconds
        self._rows: dict[tuple[Hashable, ...], I64] = _group_rows([columns[k] for k in keys])
        self._grids: dict[tuple[Hashable, ...], Grid] = {}

    @property
    def slices(self) -> list[tuple[Hashable, ...]]:
        """The key combinations measured, sorted."""
        return sorted(self._rows, key=repr)

    def grid(self, key: tuple[Hashable, ...]) -> Grid | None:
        """The grid of one slice, None when that slice was not measured."""
        if key not in self._grids and key in self._rows:
            rows = self._rows[key]
            points = [self._columns[a.column][rows] for a in self.axes]
            self._grids[key] = Grid.build(
                self.axes, points, self._seconds[rows], monotone=self.monotone
            )
        return self._grids.get(key)

    def query(
        self, keys: Sequence[Arr], xs: Sequence[npt.ArrayLike], trend: Trend | None = None
    ) -> tuple[F64, I8]:
        """Seconds and :class:`Coverage` for broadcast key and axis arrays (``trend``:
        see the module docstring)."""
        arrays = np.broadcast_arrays(*[np.asarray(k) for k in keys], *map(np.asarray, xs))
        shape = arrays[0].shape if arrays else ()
        flat = [a.ravel() for a in arrays]
        nk = len(keys)
        seconds = np.full(flat[0].size, np.nan)
        cover = np.full(flat[0].size, Coverage.MISSING, dtype=np.int8)
        for key, where in _group_rows(flat[:nk]).items():
            grid = self.grid(key)
            if grid is not None:
                xq = [np.asarray(x[where], dtype=np.float64) for x in flat[nk:]]
                at = None if trend is None else functools.partial(trend, key)
                seconds[where], cover[where] = grid.eval(xq, at)
        return seconds.reshape(shape), cover.reshape(shape)


def factorize(columns: Sequence[Arr]) -> tuple[I64, list[Arr], I64]:
    """Codes of the distinct value combinations of equally long columns.

    Returns the combination of each row, each column's sorted distinct values, and for
    each combination the index of its value in every column (``[combinations, columns]``).
    """
    uniques: list[Arr] = []
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        uniq, inv = np.unique(col, return_inverse=True)
        uniques.append(uniq)
        key = key * len(uniq) + inv.ravel()
    if np.prod([float(len(u)) for u in uniques]) >= 2.0**62:
        raise ValueError("too many distinct key combinations to code in int64")
    combos, row = np.unique(key, return_inverse=True)
    digits = []
    for uniq in reversed(uniques):
        digits.append(combos % len(uniq))
        combos = combos // len(uniq)
    return row.ravel(), uniques, np.stack(digits[::-1], 1)


def _group_rows(columns: Sequence[Arr]) -> dict[tuple[Hashable, ...], I64]:
    """Row indices of each distinct combination of the columns' values."""
    if not columns:
        return {}
    inv, uniques, combo = factorize(columns)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(combo) + 1))
    return {
        tuple(_scalar(u[c]) for u, c in zip(uniques, row, strict=True)): order[b:e]
        for row, b, e in zip(combo, bounds[:-1], bounds[1:], strict=True)
    }


def _scalar(value: object) -> Hashable:
    """A numpy scalar as the Python value it equals (so keys of any array dtype match)."""
    return value.item() if isinstance(value, np.generic) else value
