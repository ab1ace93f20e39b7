"""The graph as a directory of per-rank files: ``rank.<r>.jsonl`` and ``index.json``.

A rank's file holds one JSON object per line: its nodes, in program order, as the DAG
JSON writes them (``id``, attributes, template figures, and the simulated times when there
is an estimate), then the edges that leave them (``source``, ``target``, ``kind``; a
``p2p`` edge's target is on another rank). ``index.json`` holds the DAG JSON's header
(format, version, graph, plan, mesh, meta) and the list of rank files. Consumers that
work rank by rank (a simulator feeding one trace per GPU) read one file each.
``--ranks`` writes only those ranks.

Example:
    >>> write_outputs(ctx, [("ranks", "per-rank")])  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import orjson

from dagen.export.base import ExportContext
from dagen.export.estimate import node_times
from dagen.export.json_ import CHUNK_ROWS, Rows, header
from dagen.export.outputs import OutDir
from dagen.export.summary import plain

__all__ = ["emit", "rank_file"]

I64 = npt.NDArray[np.int64]


def rank_file(rank: int) -> str:
    """The file of rank ``rank``: ``rank.<r>.jsonl``."""
    return f"rank.{rank}.jsonl"


def _spans(idx: I64) -> list[I64]:
    return [idx[i : i + CHUNK_ROWS] for i in range(0, idx.shape[0], CHUNK_ROWS)]


def emit(ctx: ExportContext, out: OutDir) -> None:
    """Write every (selected) rank's file and the index."""
    g = ctx.graph
    rows = Rows(g, node_times(ctx.estimate, g.n_nodes), sep=b"", end=b"\n")
    node_order = np.argsort(g.rank, kind="stable")  # program order within each rank
    node_start = np.searchsorted(g.rank[node_order], np.arange(g.world + 1))
    owner = g.rank[g.src]
    edge_order = np.argsort(owner, kind="stable")
    edge_start = np.searchsorted(owner[edge_order], np.arange(g.world + 1))
    ranks = range(g.world) if ctx.ranks is None else sorted(r for r in ctx.ranks if r < g.world)
    for done, r in enumerate(ranks, 1):
        nodes = node_order[node_start[r] : node_start[r + 1]].astype(np.int64)
        edges = edge_order[edge_start[r] : edge_start[r + 1]].astype(np.int64)
        with out.open(rank_file(r)) as fh:
            for chunk in _spans(nodes):
                fh.write(rows.nodes(chunk))
            for chunk in _spans(edges):
                fh.write(rows.edges(chunk))
        ctx.tick(done, len(ranks))
    index = header(ctx) | {"files": [rank_file(r) for r in ranks]}
    with out.open("index.json") as fh:
        fh.write(orjson.dumps(plain(index), option=orjson.OPT_INDENT_2) + b"\n")
