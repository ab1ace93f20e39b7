"""Plain summaries the exporters share: the plan and mesh as JSON-able dicts, and text.

Everything here is format-neutral: the JSON exporter serialises these dicts, the DOT
and Markdown exporters quote or escape the text they take from here. User-written text
(plan and model names) is passed through unchanged; escaping is each format's job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from dagen.graph.ir import Graph
from dagen.mesh import GROUP_DIMS, Mesh
from dagen.plan.summary import plain

__all__ = [
    "human_bytes",
    "human_count",
    "mesh_summary",
    "plain",
    "rank_ranges",
    "runs",
]


def mesh_summary(mesh: Mesh) -> dict[str, Any]:
    """World, hosts, rank order, degrees and every rank's coordinate per dimension."""
    return {
        "world": mesh.world,
        "gpus_per_node": mesh.gpus_per_node,
        "hosts": mesh.hosts,
        "order": list(mesh.order),
        "convention": mesh.convention.value,
        "sizes": {d: int(mesh.sizes[d]) for d in GROUP_DIMS},
        "host": mesh.host.tolist(),
        "coords": {d: mesh.coords[d].tolist() for d in GROUP_DIMS},
    }


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct integers as ascending runs ``(first, last)``.

    Example:
        >>> runs([3, 0, 1, 2, 8])
        [(0, 3), (8, 8)]
    """
    out: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def rank_ranges(ranks: Iterable[int], limit: int = 4) -> str:
    """Sorted integers as ranges: ``0–3, 8–11``; past ``limit`` ranges, ``…`` and a count.

    Example:
        >>> rank_ranges([0, 1, 2, 3, 8, 9, 10, 11])
        '0–3, 8–11'
        >>> rank_ranges(range(0, 20, 2), limit=2)
        '0, 2, … (10 in all)'
    """
    spans = runs(ranks)
    if not spans:
        return "none"
    text = [f"{a}" if a == b else f"{a}–{b}" for a, b in spans[:limit]]
    if len(spans) > limit:
        text.append(f"… ({sum(b - a + 1 for a, b in spans)} in all)")
    return ", ".join(text)


_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KiB``.

    Example:
        >>> human_bytes(8192), human_bytes(3 * 2**30)
        ('8.0 KiB', '3.0 GiB')
    """
    if not math.isfinite(n):
        return str(n)
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_BINARY) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_BINARY[unit]}"


def human_count(n: float, unit: str = "") -> str:
    """``2.5e9`` → ``2.5 G`` (decimal prefixes), with an optional unit.

    Example:
        >>> human_count(2.5e9, "FLOP")
        '2.5 GFLOP'
    """
    if not math.isfinite(n):
        return f"{n} {unit}".strip()
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {prefix}{unit}"
    return f"{n:g} {unit}".strip()


def graph_totals(graph: Graph) -> dict[str, int]:
    """Node, edge, collective-instance and group counts."""
    return {
        "nodes": graph.n_nodes,
        "edges": graph.n_edges,
        "collectives": graph.n_inst,
        "groups": int(graph.group_kind.shape[0]),
    }
