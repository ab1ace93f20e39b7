"""Assemble expanded pools into one :class:`~dagen.graph.ir.Graph`.

Each pool's expansion fills its own columns in pool-local numbering. One pool becomes
the graph with no copy; several are laid end to end, every index shifted past the
earlier pools': ranks (and the peer ranks of sends and recvs), hosts, node indices of
edges, group ids (of collectives and instances), instance ids and template ids.

Example:
    >>> graph = assemble(plan, parts, max_nodes=10**8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.errors import MemoryLimit
from dagen.graph.budget import Peak, check_budget
from dagen.graph.expand import Expansion
from dagen.graph.ir import COLUMN_DTYPES, Graph, Kind
from dagen.graph.pool import Pool, rank_table
from dagen.graph.pricing import PriceTable
from dagen.plan.model import Plan
from dagen.plan.summary import plan_summary

__all__ = ["MAX_NODES", "PoolPart", "assemble"]

MAX_NODES = 400_000_000
"""Default ceiling on nodes; the memory guard (:mod:`dagen.graph.budget`) refuses far
fewer on most machines."""

_INT32 = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class PoolPart:
    """One pool, expanded but not yet filled in."""

    pool: Pool
    exp: Expansion
    costs: PriceTable


def _guard(plan: Plan, parts: Sequence[PoolPart], max_nodes: int, peak: Peak) -> None:
    n = sum(p.exp.nodes.total for p in parts)
    m = sum(p.exp.edges.total for p in parts)
    inst = sum(p.exp.n_inst for p in parts)
    limit = min(max_nodes, _INT32)
    if n > limit or m > _INT32 or inst > _INT32:
        raise MemoryLimit(
            f"{plan.source or 'plan'}: the graph would have {n:,} nodes and {m:,} edges; "
            f"expected at most {limit:,} nodes (int32 indices). Fix: model "
            "fewer micro-batches or decode steps, or pass a larger max_nodes"
        )
    check_budget(plan.source or plan.name or "plan", n, m, peak,
                 steps=plan.workload.unrolled_steps, micro_batches=plan.workload.micro_batches,
                 world=sum(p.pool.parallel.world() for p in parts))  # fmt: skip


def _fill(part: PoolPart) -> dict[str, Any]:
    """Every column and side table of one pool, in its own numbering."""
    exp = part.exp
    n, m = exp.nodes.total, exp.edges.total
    cols: dict[str, Any] = {c: np.empty(n, dtype=COLUMN_DTYPES[c]) for c in Graph.NODE_COLUMNS}
    exp.node_columns(cols)
    for c in Graph.EDGE_COLUMNS:
        cols[c] = np.empty(m, dtype=COLUMN_DTYPES[c])
    exp.edge_columns(cols["src"], cols["dst"], cols["ekind"])
    cols["inst_coll"], cols["inst_group"] = exp.instance_tables()
    tmpl = part.costs.tables()
    cols |= {"tmpl_shape": tmpl.shape, "tmpl_bytes": tmpl.nbytes, "tmpl_flops": tmpl.flops,
             "tmpl_hbm": tmpl.hbm, "tmpl_phase": tmpl.phase}  # fmt: skip
    cols |= {"group_kind": exp.group_kind, "group_offsets": exp.group_offsets,
             "group_members": exp.group_members}  # fmt: skip
    return cols


def _shift(
    cols: dict[str, Any], rank0: int, node0: int, group0: int, inst0: int, tmpl0: int
) -> None:
    """Renumber one pool's columns past the earlier pools' (in place)."""
    if not (rank0 or node0 or group0 or inst0 or tmpl0):
        return
    kind = cols["kind"]
    coll = kind == Kind.COLLECTIVE
    p2p = (kind == Kind.SEND) | (kind == Kind.RECV)
    cols["rank"] += np.int32(rank0)
    cols["aux"][coll] += np.int32(group0)
    cols["aux"][p2p] += np.int32(rank0)
    cols["inst"][coll] += np.int32(inst0)
    cols["tmpl"] += np.int32(tmpl0)
    cols["src"] += np.int32(node0)
    cols["dst"] += np.int32(node0)
    cols["inst_group"] += np.int32(group0)
    cols["group_members"] = cols["group_members"] + np.int32(rank0)


def _concat(filled: list[dict[str, Any]]) -> dict[str, Any]:
    """Lay several pools' columns end to end (already shifted)."""
    out: dict[str, Any] = {}
    for name in (*Graph.NODE_COLUMNS, *Graph.EDGE_COLUMNS, "tmpl_bytes", "tmpl_flops",
                 "tmpl_hbm", "tmpl_phase", "inst_coll", "inst_group", "group_kind",
                 "group_members"):  # fmt: skip
        out[name] = np.concatenate([f[name] for f in filled])
    out["tmpl_shape"] = [s for f in filled for s in f["tmpl_shape"]]
    sizes = np.concatenate([np.diff(f["group_offsets"]) for f in filled])
    out["group_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return out


def assemble(
    plans: Sequence[Plan], parts: Sequence[PoolPart], max_nodes: int = MAX_NODES,
    peak: Peak = Peak.BUILD,
) -> Graph:  # fmt: skip
    """The graph of ``parts``, each expanded from the plan of the same position; refused
    before any column is allocated when ``peak``'s run would not fit in memory."""
    plan = plans[0]
    _guard(plan, parts, max_nodes, peak)
    filled = [_fill(p) for p in parts]
    group0 = inst0 = tmpl0 = 0
    groups: list[dict[str, npt.NDArray[np.int32]]] = []
    for part, cols in zip(parts, filled, strict=True):
        _shift(cols, part.pool.rank0, part.pool.node0, group0, inst0, tmpl0)
        groups.append({d: g + np.int32(group0) for d, g in part.exp.group_ids.items()})
        group0 += int(cols["group_kind"].shape[0])
        inst0 += int(cols["inst_coll"].shape[0])
        tmpl0 += len(cols["tmpl_shape"])
    cols = filled[0] if len(filled) == 1 else _concat(filled)
    pools = tuple(p.pool for p in parts)
    meta = _meta(parts[0]) if len(parts) == 1 else {"pools": {p.pool.name: _meta(p) for p in parts}}
    source = (
        plan_summary(plan) if len(plans) == 1
        else {"pools": {p.pool.name: plan_summary(q) for p, q in zip(parts, plans, strict=True)}}
    )  # fmt: skip
    return Graph(name=plan.name, model=plan.model, pools=pools, ranks=rank_table(pools, groups),
                 source=MappingProxyType(source), meta=meta, **cols)  # fmt: skip


def _meta(part: PoolPart) -> dict[str, object]:
    """Free-form facts of one pool's build; ``template_sizes`` lists, per stage, each run of
    one template: (its rows, the first step it covers, the step after its last)."""
    exp, pool = part.exp, part.pool
    step = [st.step for st in exp.sched.stages]
    runs = [
        [(r.template.size, int(step[s][r.b0]), int(step[s][r.b0 + r.count - 1]) + 1)
         for r in exp.runs if r.stage == s]
        for s in range(exp.pp)
    ]  # fmt: skip
    return {
        "stage_layers": [[r.start, r.stop] for r in pool.stage_layers],
        "steps": pool.workload.unrolled_steps,
        "tokens_per_microbatch": pool.dims.tokens,
        "sequences_per_microbatch": pool.dims.seqs,
        "template_sizes": runs,
    }
