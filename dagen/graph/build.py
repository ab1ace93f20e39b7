"""Build the per-GPU graph of a plan: templates per stage, expanded over the mesh.

Example:
    >>> from dagen.graph.build import build_graph
    >>> graph = build_graph(plan)  # doctest: +SKIP
    >>> graph.node_id(0)  # doctest: +SKIP
    'r0/s0/mb0/embed'

What the graph holds, and every formula behind its bytes and FLOPs, is in
``docs/graph.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dagen.errors import MeshError, PlanInfeasible
from dagen.graph.dims import Dims, derive_dims
from dagen.graph.expand import Expansion
from dagen.graph.ir import COLUMN_DTYPES, INT16_MAX, Graph
from dagen.graph.pricing import PriceTable
from dagen.graph.schedule import Schedule
from dagen.graph.schedules import decode_chain, pipeline
from dagen.graph.templates import Programs, StageContext
from dagen.mesh import Mesh, expert_placement, mesh_of
from dagen.plan.model import Plan, Workload
from dagen.plan.rules import blocking, plan_findings
from dagen.plan.split import stage_layers

__all__ = [
    "MAX_NODES",
    "SchedulePass",
    "build_graph",
    "default_schedule",
    "nodes_per_rank_formula",
    "plan_schedule",
]

log = logging.getLogger(__name__)

MAX_NODES = 400_000_000
"""Default ceiling on nodes (≈ 15 GB of columns); past it the plan is refused, not built."""

_INT32 = (1 << 31) - 1


def _refuse_infeasible(plan: Plan) -> None:
    """The plan rules decide whether a plan can be laid out; the IR adds its own limits."""
    errors = blocking(plan_findings(plan))
    if errors:
        raise PlanInfeasible("\n".join(f.render(plan.source) for f in errors))
    m, w = plan.model, plan.workload
    experts = m.moe.experts + plan.parallel.redundant_experts if m.moe else 0
    for path, value in (
        ("model.layers", m.layers),
        ("workload.micro_batches", w.micro_batches),
        ("workload.decode_steps", w.decode_steps),
        ("model.moe.experts", experts),
    ):
        if value > INT16_MAX:
            loc = plan.where(path)
            where = f"{plan.source or 'plan'}" + (f":{loc.line}:{loc.column}" if loc else "")
            raise PlanInfeasible(
                f"{where}: {path}: found {value}; expected at most {INT16_MAX} (the IR's int16 "
                "columns). Fix: model fewer of them"
            )


def _context(plan: Plan, mesh: Mesh) -> tuple[Dims, PriceTable, StageContext]:
    dims = derive_dims(plan, mesh)
    costs = PriceTable(dims)
    ctx = StageContext(
        dims=dims,
        costs=costs,
        moe=plan.model.moe,
        layers=stage_layers(plan),
        ep=mesh.sizes["ep"],
        etp=mesh.sizes["etp"],
        sp=plan.parallel.sp_active,
    )
    return dims, costs, ctx


def _placement(plan: Plan, mesh: Mesh) -> npt.NDArray[np.int32] | None:
    moe = plan.model.moe
    if moe is None:
        return None
    try:
        return expert_placement(moe.experts, mesh.sizes["ep"], plan.parallel.redundant_experts)
    except MeshError as err:
        raise PlanInfeasible(f"parallel.redundant_experts: {err}") from err


def _guard(plan: Plan, exp: Expansion, max_nodes: int) -> None:
    n, m = exp.nodes.total, exp.edges.total
    limit = min(max_nodes, _INT32)
    if n > limit or m > _INT32 or exp.n_inst > _INT32:
        raise PlanInfeasible(
            f"{plan.source or 'plan'}: the graph would have {n:,} nodes and {m:,} edges; "
            f"expected at most {limit:,} nodes (int32 indices, ~37 bytes each). Fix: model "
            "fewer micro-batches or decode steps, or pass a larger max_nodes"
        )


SchedulePass = Callable[[Programs, Workload], Schedule]
"""A schedule pass: the blocks, pairing and links of every stage, from the stage
programs (built on demand) and the workload (micro-batches, steps)."""


def default_schedule(programs: Programs, workload: Workload) -> Schedule:
    """The prefill pipeline, or the decode chain over the unrolled steps."""
    if workload.decoding:
        return decode_chain(programs, workload.micro_batches, workload.unrolled_steps)
    return pipeline(programs, workload.micro_batches)


def build_graph(
    plan: Plan,
    mesh: Mesh | None = None,
    *,
    max_nodes: int = MAX_NODES,
    schedule: SchedulePass = default_schedule,
) -> Graph:
    """Expand ``plan`` into its per-GPU operator and communication graph.

    Args:
        plan: A plan that passed the plan rules.
        mesh: Its mesh; built from ``plan.parallel`` when omitted.
        max_nodes: Refuse (with :class:`PlanInfeasible`) graphs larger than this.
        schedule: The schedule pass (:mod:`dagen.graph.schedule`); its result is linted.

    Raises:
        PlanInfeasible: the plan cannot be expanded (an error of the plan rules, a count
            past the IR's int16 columns, or a graph over ``max_nodes``).
    """
    t0 = time.perf_counter()
    _refuse_infeasible(plan)
    mesh = mesh or mesh_of(plan)
    dims, costs, ctx = _context(plan, mesh)
    steps = plan.workload.unrolled_steps
    sched = schedule(Programs(ctx), plan.workload)
    sched.lint()
    exp = Expansion(mesh, sched, placement=_placement(plan, mesh))
    _guard(plan, exp, max_nodes)
    graph = _assemble(plan, mesh, exp, costs)
    graph.meta.update(_meta(ctx, dims, exp, steps))
    log.info(
        "built %s nodes, %s edges, %s collective instances in %.3f s",
        f"{graph.n_nodes:,}",
        f"{graph.n_edges:,}",
        f"{graph.n_inst:,}",
        time.perf_counter() - t0,
    )
    return graph


def plan_schedule(
    plan: Plan, mesh: Mesh | None = None, schedule: SchedulePass = default_schedule
) -> Schedule:
    """The schedule ``plan`` is laid out by, without building the graph.

    >>> plan_schedule(plan).stages[0].size  # blocks of stage 0  # doctest: +SKIP
    4
    """
    _refuse_infeasible(plan)
    sched = schedule(Programs(_context(plan, mesh or mesh_of(plan))[2]), plan.workload)
    sched.lint()
    return sched


def _assemble(plan: Plan, mesh: Mesh, exp: Expansion, costs: PriceTable) -> Graph:
    n, m = exp.nodes.total, exp.edges.total
    cols = {name: np.empty(n, dtype=COLUMN_DTYPES[name]) for name in Graph.NODE_COLUMNS}
    exp.node_columns(cols)
    src, dst = np.empty(m, dtype=np.int32), np.empty(m, dtype=np.int32)
    ekind = np.empty(m, dtype=np.uint8)
    exp.edge_columns(src, dst, ekind)
    inst_coll, inst_group = exp.instance_tables()
    tmpl = costs.tables()
    return Graph(
        plan=plan,
        mesh=mesh,
        schedule=exp.sched,
        rank=cols["rank"],
        layer=cols["layer"],
        mb=cols["mb"],
        step=cols["step"],
        op=cols["op"],
        kind=cols["kind"],
        expert=cols["expert"],
        inst=cols["inst"],
        aux=cols["aux"],
        tmpl=cols["tmpl"],
        src=src,
        dst=dst,
        ekind=ekind,
        tmpl_shape=tmpl.shape,
        tmpl_bytes=tmpl.nbytes,
        tmpl_flops=tmpl.flops,
        tmpl_hbm=tmpl.hbm,
        tmpl_phase=tmpl.phase,
        inst_coll=inst_coll,
        inst_group=inst_group,
        group_kind=exp.group_kind,
        group_offsets=exp.group_offsets,
        group_members=exp.group_members,
    )


def _meta(ctx: StageContext, dims: Dims, exp: Expansion, steps: int) -> dict[str, object]:
    """Free-form facts of the build; ``template_sizes`` lists, per stage, each run of one
    template: (its rows, the first step it covers, the step after its last)."""
    step = [st.step for st in exp.sched.stages]
    runs = [
        [(r.template.size, int(step[s][r.b0]), int(step[s][r.b0 + r.count - 1]) + 1)
         for r in exp.runs if r.stage == s]
        for s in range(exp.pp)
    ]  # fmt: skip
    return {
        "stage_layers": [[r.start, r.stop] for r in ctx.layers],
        "steps": steps,
        "tokens_per_microbatch": dims.tokens,
        "sequences_per_microbatch": dims.seqs,
        "template_sizes": runs,
    }


def _layer_nodes(plan: Plan, mesh: Mesh, layer: int) -> int:
    """Nodes of one layer on one rank for one micro-batch (docs/graph.md, closed form)."""
    p, m = plan.parallel, plan.model
    tp, cp, ep, etp = (mesh.sizes[d] for d in ("tp", "cp", "ep", "etp"))
    tpc = int(tp > 1)
    sp = int(p.sp_active)
    attn = 5 + tpc + sp + int(cp > 1)
    if m.moe is None or not m.moe.is_moe_layer(layer):
        return attn + 4 + tpc + sp
    slots = (m.moe.experts + p.redundant_experts) // ep
    shared = (1 + tpc + sp) if m.moe.shared_experts else 0  # [SP: ag] shared [ar|rs]
    return attn + 4 + 2 * int(ep > 1) + slots + int(etp > 1) + shared


def nodes_per_rank_formula(plan: Plan, mesh: Mesh) -> npt.NDArray[np.int64]:
    """Closed-form node count of every rank (the formula of docs/graph.md).

    The build does not use it; it lets callers size a graph before building it.
    """
    pp, tp = mesh.sizes["pp"], mesh.sizes["tp"]
    steps, mbs = plan.workload.unrolled_steps, plan.workload.micro_batches
    per_stage = []
    for s, layers in enumerate(stage_layers(plan)):
        block = sum(_layer_nodes(plan, mesh, layer) for layer in layers)
        sp = int(plan.parallel.sp_active)  # lm.allgather under SP
        block += (1 + int(tp > 1)) * (s == 0) + (3 + int(tp > 1) + sp) * (s == pp - 1)
        block += int(s > 0) + int(s < pp - 1)
        chain = (steps - 1) * int(pp > 1 and (s == 0 or s == pp - 1))
        per_stage.append(block * steps * mbs + chain * mbs)
    return np.asarray(per_stage, dtype=np.int64)[mesh.stage]
