"""Plain summaries the exporters share: the plan and mesh as JSON-able dicts, and text.

Everything here is format-neutral: the JSON exporter serialises these dicts, the DOT
and Markdown exporters quote or escape the text they take from here. User-written text
(plan and model names) is passed through unchanged; escaping is each format's job.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dagen.graph.ir import Graph
from dagen.mesh import GROUP_DIMS, Mesh
from dagen.plan.model import Plan

__all__ = [
    "human_bytes",
    "human_count",
    "mesh_summary",
    "plain",
    "plan_summary",
    "rank_ranges",
    "runs",
]


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: records → dicts (internal fields dropped), enums →
    their values, mappings → dicts with sorted keys, tuples → lists, numpy → Python.

    Example:
        >>> from dagen.plan.model import Parallel
        >>> plain(Parallel(tp=2))["tp"]
        2
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("internal")
        }
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value)]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan as declared (defaults filled), plus the world and edp its degrees imply.

    The source path and YAML locations are left out: outputs must not depend on where
    the plan file sits.
    """
    out: dict[str, Any] = plain(plan)
    out["world"] = plan.parallel.world()
    out["parallel"]["edp"] = plan.parallel.edp()
    return out


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
