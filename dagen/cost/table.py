"""The ``table`` cost model: your own measured seconds per op, from CSV or Parquet.

Columns: ``op`` (an op label, e.g. ``attn.core``; ``dagen explain`` and docs/graph.md
list them), ``seconds`` (≥ 0), and optionally ``shape`` (the node's output shape written
``4096x8192``; empty matches any shape) and ``dtype`` (documentation only). A node takes
the row of its op and shape, else the row of its op with no shape, else the fallback's
(the roofline's) time. Every problem is reported with its file, row and column.

Example:
    >>> # op,shape,dtype,seconds
    >>> # attn.core,,bf16,0.00012
    >>> model = load_table_model(Path("times.csv"), Roofline())  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dagen.cost.model import CostModel, CostModelError, TableModel
from dagen.graph.ir import Graph
from dagen.graph.ops import OPS, Op

__all__ = ["TableRows", "load_table_model"]

F64 = npt.NDArray[np.float64]
_LABELS = {op.label: int(op) for op in OPS}


@dataclass(frozen=True, slots=True)
class TableRows:
    """Seconds by (op code, shape text); shape ``""`` is the op's default."""

    path: str
    seconds: Mapping[tuple[int, str], float]
    fallback: CostModel

    @property
    def name(self) -> str:
        return f"table+{self.fallback.name}"

    def node_seconds(self, graph: Graph) -> F64:
        by_op = {Op.of(code): v for (code, shape), v in self.seconds.items() if not shape}
        out = TableModel(by_op, self.fallback).node_seconds(graph)
        shaped = {key: v for key, v in self.seconds.items() if key[1]}
        if not shaped:
            return out
        ops = np.zeros(len(graph.tmpl_shape), dtype=np.int64)
        ops[graph.tmpl] = graph.op
        per_tmpl = np.full(len(graph.tmpl_shape), np.nan)
        for t, shape in enumerate(graph.tmpl_shape):
            value = shaped.get((int(ops[t]), "x".join(map(str, shape))))
            if value is not None:
                per_tmpl[t] = value
        given = per_tmpl[graph.tmpl]
        known = np.isfinite(given)
        out[known] = given[known]
        return out


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        cols = list(table.column_names)
        data = [["" if v is None else str(v) for v in table.column(c).to_pylist()] for c in cols]
        return cols, [list(r) for r in zip(*data, strict=True)]
    with path.open(newline="", encoding="utf-8") as fh:
        reader = list(csv.reader(fh))
    if not reader:
        return [], []
    return [c.strip() for c in reader[0]], reader[1:]


def _bad(path: Path, row: int, col: str, what: str, fix: str) -> CostModelError:
    return CostModelError(f"{path}:{row}: column {col!r}: {what}. Fix: {fix}")


def load_table_model(path: Path, fallback: CostModel) -> TableRows:
    """The table at ``path`` (CSV, or Parquet by its suffix), over ``fallback``.

    Raises:
        CostModelError: the file is missing or unreadable, lacks the op or seconds
            column, or has an unknown op or a time that is not a finite number ≥ 0.
    """
    try:
        cols, rows = _rows(path)
    except (OSError, ValueError, ImportError) as err:
        raise CostModelError(
            f"cost.table {path}: cannot read it ({err}). Fix: give a CSV or Parquet file"
        ) from err
    missing = [c for c in ("op", "seconds") if c not in cols]
    if missing:
        raise _bad(path, 1, missing[0], f"missing (columns are {', '.join(cols) or 'none'})",
                   "write a header line: op,shape,dtype,seconds")  # fmt: skip
    at = {c: cols.index(c) for c in cols}
    out: dict[tuple[int, str], float] = {}
    for n, row in enumerate(rows, start=2):
        cell = {c: (row[i].strip() if i < len(row) else "") for c, i in at.items()}
        if cell["op"] not in _LABELS:
            raise _bad(path, n, "op", f"unknown op {cell['op']!r}",
                       f"use one of {', '.join(sorted(_LABELS))}")  # fmt: skip
        try:
            value = float(cell["seconds"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise _bad(path, n, "seconds", f"{cell['seconds']!r} is not a finite number ≥ 0",
                       "write the op's time in seconds, e.g. 1.2e-4")  # fmt: skip
        out[(_LABELS[cell["op"]], cell.get("shape", ""))] = value
    return TableRows(path=str(path), seconds=out, fallback=fallback)
