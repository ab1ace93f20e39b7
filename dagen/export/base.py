"""What every exporter receives, and the node selection the detailed views share.

An exporter is a function ``emit(ctx, out)`` that writes one format to a binary stream.
The :class:`ExportContext` carries the graph, the findings, the optional cost estimate
and the view options; exporters read it and never mutate it.

Example:
    >>> import io
    >>> from dagen.export import ExportContext, emit
    >>> ctx = ExportContext(graph=graph)  # doctest: +SKIP
    >>> buf = io.BytesIO(); emit("json", ctx, buf)  # doctest: +SKIP
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from dagen.cost import Meter
from dagen.errors import ExportError
from dagen.findings import Finding
from dagen.graph.ir import Graph
from dagen.graph.pool import Pool

__all__ = ["Emitter", "ExportContext", "View", "select_nodes", "single_pool"]

Mask = npt.NDArray[np.bool_]


class View(enum.StrEnum):
    """What a picture (DOT, SVG, PNG) shows."""

    OVERVIEW = "overview"
    """One cluster per pipeline stage, one box per block of like layers."""
    RANKS = "ranks"
    """Every node of the selected ranks, layers and micro-batches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportContext:
    """Everything an exporter may draw on.

    Example:
        >>> ctx = ExportContext(graph=graph, view="ranks", ranks=frozenset({0, 1}))  # doctest: +SKIP
    """

    graph: Graph
    """The built graph."""
    findings: tuple[Finding, ...] = ()
    """Plan, graph and cost findings, reported in JSON and Markdown."""
    estimate: Any | None = None
    """A :class:`dagen.cost.Estimate`, when the schedule was simulated."""
    view: str = View.OVERVIEW
    """``overview`` or ``ranks`` (pictures only; see :class:`View`)."""
    ranks: frozenset[int] | None = None
    """Ranks the ``ranks`` view draws (``None``: all)."""
    layers: frozenset[int] | None = None
    """Layers the ``ranks`` view draws (``None``: all). Nodes outside any layer stay."""
    microbatches: frozenset[int] | None = None
    """Micro-batches the ``ranks`` view draws (``None``: all)."""
    max_detail_nodes: int = 5000
    """The ``ranks`` view refuses to draw more nodes than this."""
    disagg: Any | None = None
    """A :class:`dagen.cost.disagg.Disagg`: a disaggregated deployment's figures (the report's
    per-pool tables and rate match)."""
    meter: Meter | None = None
    """Told ``(rows written, rows)`` by the streaming exporters (JSON, timeline);
    :func:`dagen.export.write_outputs` sets it per output."""

    def tick(self, done: int, total: int) -> None:
        """Report progress to :attr:`meter`, if any."""
        if self.meter is not None:
            self.meter(done, total)

    def __post_init__(self) -> None:
        if self.view not in {v.value for v in View}:
            views = ", ".join(v.value for v in View)
            raise ExportError(
                f"view {self.view!r} is unknown; expected one of {views}. "
                "Fix: pass --view overview or --view ranks."
            )
        if self.max_detail_nodes < 1:
            raise ExportError(
                f"max_detail_nodes = {self.max_detail_nodes}; expected at least 1. "
                "Fix: pass --max-nodes with a positive number."
            )


def single_pool(ctx: ExportContext, what: str) -> Pool:
    """The graph's only pool, for the pictures and the report, which draw one pool.

    Raises:
        ExportError: the graph has several pools (their pictures come with the
            disaggregated deployments; JSON, the timeline and the ranks view cover every pool).
    """
    pools = ctx.graph.pools
    if len(pools) != 1:
        raise ExportError(
            f"the {what} draws one pool and this graph has {len(pools)} "
            f"({', '.join(p.name for p in pools)}). Fix: export JSON or the timeline, or draw "
            "--view ranks of one pool's ranks"
        )
    return pools[0]


Emitter = Callable[[ExportContext, BinaryIO], None]
"""The signature of every exporter: write ``ctx`` in one format to ``out``."""


def _isin(column: npt.NDArray[Any], wanted: frozenset[int] | None) -> Mask | None:
    if wanted is None:
        return None
    return np.isin(column, np.fromiter(sorted(wanted), dtype=np.int64, count=len(wanted)))


def select_nodes(
    graph: Graph,
    ranks: frozenset[int] | None = None,
    layers: frozenset[int] | None = None,
    microbatches: frozenset[int] | None = None,
) -> npt.NDArray[np.int64]:
    """Indices of the nodes a filter keeps, ascending.

    ``layers`` keeps the nodes of those layers and every node outside a layer
    (embedding, LM head, pipeline send/recv) of the kept ranks and micro-batches.

    Example:
        >>> select_nodes(graph, ranks=frozenset({0}), microbatches=frozenset({0}))  # doctest: +SKIP
        array([0, 1, 2, ...])
    """
    keep: Mask = np.ones(graph.n_nodes, dtype=np.bool_)
    for column, wanted in ((graph.rank, ranks), (graph.mb, microbatches)):
        mask = _isin(column, wanted)
        if mask is not None:
            keep &= mask
    in_layers = _isin(graph.layer, layers)
    if in_layers is not None:
        keep &= in_layers | (graph.layer < 0)
    return np.flatnonzero(keep)
