"""The cost-model protocol: what prices every node of a graph, and how one is chosen.

A cost model is any object with a ``name`` and a ``node_seconds(graph)`` method returning
a float64 array with one duration in seconds per node, computed column-wise (no Python
loop per node). It reads everything it needs from the graph: the template table (op,
shape, bytes, FLOPs, HBM bytes, phase), the collective instances and their groups, and
each pool's hardware. :func:`dagen.cost.estimate` simulates the schedule with those
durations; nothing else in the estimate depends on the model.

:class:`~dagen.cost.roofline.Roofline` is the default (:func:`default_cost_model`).
:class:`Scaled` and :class:`TableModel` are small models of the protocol's own, useful to
test a schedule and to replay measured per-op times.

Example:
    >>> import dagen
    >>> model = dagen.cost.default_cost_model()
    >>> model.name
    'roofline'
    >>> est = dagen.cost.estimate(graph, cost_model=Scaled(model, 2.0))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from dagen.errors import DagenError
from dagen.graph.ir import Graph, Op
from dagen.graph.ops import OPS
from dagen.plan.model import CostModelName, Plan

__all__ = [
    "CostModel",
    "CostModelError",
    "Scaled",
    "TableModel",
    "default_cost_model",
    "model_for",
    "node_seconds",
]

F64 = npt.NDArray[np.float64]


class CostModelError(DagenError):
    """A cost model returned durations that are not one finite, non-negative number per node."""


@runtime_checkable
class CostModel(Protocol):
    """Prices every node of a graph (see the module docstring)."""

    @property
    def name(self) -> str:
        """A short name shown in outputs (``roofline``, ``measured``, …)."""
        ...

    def node_seconds(self, graph: Graph) -> F64:
        """float64 ``[n_nodes]``: each node's own duration in seconds (a recv's is 0: it
        ends when its send's data has arrived)."""
        ...


def default_cost_model() -> CostModel:
    """The roofline and alpha-beta model (:class:`dagen.cost.roofline.Roofline`)."""
    from dagen.cost.roofline import Roofline  # roofline implements this protocol

    return Roofline()


def node_seconds(model: CostModel, graph: Graph) -> F64:
    """``model.node_seconds(graph)``, checked: one finite, non-negative float per node.

    Raises:
        CostModelError: the model returned another shape, NaN, infinity or a negative time.
    """
    seconds = np.asarray(model.node_seconds(graph), dtype=np.float64)
    if seconds.shape != (graph.n_nodes,):
        raise CostModelError(
            f"cost model {model.name!r} returned {seconds.shape} durations for "
            f"{graph.n_nodes:,} nodes; expected one per node. Fix: return a float64 array "
            "of length graph.n_nodes"
        )
    bad = ~np.isfinite(seconds) | (seconds < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CostModelError(
            f"cost model {model.name!r} gave {int(bad.sum()):,} nodes a duration that is not a "
            f"finite number ≥ 0; first: {graph.node_id(i)} = {seconds[i]}. Fix: price every "
            "node, in seconds"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Scaled:
    """Another model's durations times ``factor`` (a model to test schedules with)."""

    base: CostModel
    factor: float

    @property
    def name(self) -> str:
        return f"{self.base.name}×{self.factor:g}"

    def node_seconds(self, graph: Graph) -> F64:
        out: F64 = np.asarray(self.base.node_seconds(graph), dtype=np.float64) * self.factor
        return out


@dataclass(frozen=True, slots=True)
class TableModel:
    """Seconds per op from a table; ops it lacks are priced by ``fallback``.

    Example:
        >>> TableModel({Op.ATTN_CORE: 1e-3}, default_cost_model()).name
        'table+roofline'
    """

    seconds: Mapping[Op, float]
    fallback: CostModel

    @property
    def name(self) -> str:
        return f"table+{self.fallback.name}"

    def node_seconds(self, graph: Graph) -> F64:
        out = np.asarray(self.fallback.node_seconds(graph), dtype=np.float64).copy()
        table = np.full(len(OPS), np.nan)
        for op, value in self.seconds.items():
            table[int(op)] = value
        given = table[graph.op]
        known = ~np.isnan(given)
        out[known] = given[known]
        return out


def model_for(plan: Plan) -> CostModel:
    """The cost model ``plan.cost`` names (``cost.model``; ``cost.table`` for ``table``).

    Raises:
        CostModelError: ``table`` without a readable, valid ``cost.table`` file.
    """
    from dagen.cost.roofline import Roofline

    name = plan.cost.model
    if name is CostModelName.ROOFLINE:
        return Roofline()
    if name is CostModelName.TABLE:
        from dagen.cost.table import load_table_model

        if not plan.cost.table:
            raise CostModelError(
                f"{_at(plan, 'cost.model')}cost.model is table but cost.table is not set. "
                "Fix: set cost.table to a CSV or Parquet file with columns op, seconds "
                "(and optionally shape, dtype)"
            )
        base = Path(plan.source).parent if plan.source else Path(".")
        return load_table_model(base / plan.cost.table, Roofline())
    from dagen.cost.measured import Measured

    return Measured(plan.cost.backend, auto=name is CostModelName.AUTO)


def _at(plan: Plan, path: str) -> str:
    loc = plan.where(path)
    if loc is None or loc.line is None:
        return ""
    return f"{plan.source}:{loc.line}:{loc.column}: "
