"""Build the per-GPU graph of a deployment: one or more pools, each a plan, each expanded
by its schedule over its mesh, laid end to end.

Example:
    >>> from dagen.graph.build import build_graph
    >>> graph = build_graph(plan)  # doctest: +SKIP
    >>> graph.node_id(0)  # doctest: +SKIP
    'r0/s0/mb0/embed'

What the graph holds, and every formula behind its bytes and FLOPs, is in
``docs/graph.md``; how pools, schedules and the op registry fit, in docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from dagen.errors import LayoutFault, MeshError, PlanInfeasible
from dagen.graph.assemble import MAX_NODES, PoolPart, assemble
from dagen.graph.budget import Peak
from dagen.graph.codes import Phase
from dagen.graph.dims import derive_dims, iteration_mix
from dagen.graph.expand import Expansion
from dagen.graph.ir import INT16_MAX, Graph
from dagen.graph.overlap import two_batch
from dagen.graph.pool import Pool
from dagen.graph.pricing import PriceTable
from dagen.graph.schedule import Schedule
from dagen.graph.schedules import decode_chain, pipeline
from dagen.graph.templates import Programs, StageContext
from dagen.mesh import Mesh, expert_placement, mesh_of
from dagen.plan.model import Overlap, Plan, Workload
from dagen.plan.rules import blocking, plan_findings
from dagen.plan.split import stage_layers

__all__ = [
    "MAX_NODES",
    "SchedulePass",
    "build_graph",
    "build_pools",
    "default_schedule",
    "describe_pool",
    "plan_schedule",
]

log = logging.getLogger(__name__)

SchedulePass = Callable[[Programs, Workload], Schedule]
"""A schedule pass: the blocks, pairing and links of every stage, from the stage
programs (built on demand) and the workload (micro-batches, steps)."""


def default_schedule(programs: Programs, workload: Workload) -> Schedule:
    """The prefill pipeline, or the decode chain over the unrolled steps."""
    if workload.decoding:
        return decode_chain(programs, workload.micro_batches, workload.unrolled_steps)
    return pipeline(programs, workload.micro_batches)


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


def _context(plan: Plan, mesh: Mesh) -> StageContext:
    dims = derive_dims(plan, mesh)
    return StageContext(
        dims=dims,
        costs=PriceTable(dims),
        moe=plan.model.moe,
        layers=stage_layers(plan),
        ep=mesh.sizes["ep"],
        etp=mesh.sizes["etp"],
        sp=plan.parallel.sp_active,
    )


def _placement(plan: Plan, mesh: Mesh) -> npt.NDArray[np.int32] | None:
    moe = plan.model.moe
    if moe is None:
        return None
    try:
        return expert_placement(moe.experts, mesh.sizes["ep"], plan.parallel.redundant_experts)
    except LayoutFault:
        raise  # a finding of the analysis (PLAN-EXPERT-PLACE)
    except MeshError as err:
        raise PlanInfeasible(f"parallel.redundant_experts: {err}") from err


def _pool(plan: Plan, name: str, ctx: StageContext, mesh: Mesh, sched: Schedule, **at: int) -> Pool:
    """The description of one pool (``at``: index, rank0, host0, node0, node1)."""
    phase = Phase.DECODE if plan.workload.decoding else Phase.PREFILL
    mix = tuple((share, derive_dims(plan, mesh, chunk_tokens=tokens))
                for share, tokens in iteration_mix(plan, mesh))  # fmt: skip
    return Pool(
        name=name, phase=phase, mesh=mesh, parallel=plan.parallel, workload=plan.workload,
        hardware=plan.hardware, runtime=plan.runtime, formats=plan.dtypes, dims=ctx.dims, stage_layers=tuple(ctx.layers), schedule=sched,
        tied_embeddings=plan.model.tied_embeddings, mix=mix, prices=ctx.costs, **at,
    )  # fmt: skip


def describe_pool(
    plan: Plan, name: str = "", mesh: Mesh | None = None, schedule: SchedulePass = default_schedule
) -> Pool:
    """``plan`` described as the only pool of a graph, without expanding it (for graphs
    written by hand: their nodes are the caller's)."""
    _refuse_infeasible(plan)
    mesh = mesh or mesh_of(plan)
    ctx = _context(plan, mesh)
    sched = _scheduled(schedule, ctx, plan)
    return _pool(plan, name or plan.workload.phase.value, ctx, mesh, sched, index=0, rank0=0,
                 host0=0, node0=0, node1=0)  # fmt: skip


def plan_schedule(
    plan: Plan, mesh: Mesh | None = None, schedule: SchedulePass = default_schedule
) -> Schedule:
    """The schedule ``plan`` is laid out by, without building the graph.

    >>> plan_schedule(plan).stages[0].size  # blocks of stage 0  # doctest: +SKIP
    4
    """
    return describe_pool(plan, mesh=mesh, schedule=schedule).schedule


def _scheduled(schedule: SchedulePass, ctx: StageContext, plan: Plan) -> Schedule:
    """The pass's schedule, linted unless it is dagen's own (tests lint those on every
    plan grid; a user's pass is checked every time). ``schedule.overlap: two_batch``
    turns dagen's own into :func:`~dagen.graph.overlap.two_batch`."""
    if schedule is default_schedule and plan.schedule.overlap is Overlap.TWO_BATCH:
        schedule = two_batch
    sched = schedule(Programs(ctx), plan.workload)
    if schedule is not default_schedule:
        sched.lint()
    return sched


def _expand(plan: Plan, name: str, mesh: Mesh, schedule: SchedulePass, **at: int) -> PoolPart:
    ctx = _context(plan, mesh)
    sched = _scheduled(schedule, ctx, plan)
    exp = Expansion(mesh, sched, placement=_placement(plan, mesh))
    at["node1"] = at["node0"] + exp.nodes.total
    return PoolPart(pool=_pool(plan, name, ctx, mesh, sched, **at), exp=exp, costs=ctx.costs)


def build_graph(
    plan: Plan,
    mesh: Mesh | None = None,
    *,
    max_nodes: int = MAX_NODES,
    schedule: SchedulePass = default_schedule,
    peak: Peak = Peak.BUILD,
) -> Graph:
    """Expand ``plan`` into its per-GPU operator and communication graph (one pool).

    Args:
        plan: A plan that passed the plan rules.
        mesh: Its mesh; built from ``plan.parallel`` when omitted.
        max_nodes: Refuse (with :class:`PlanInfeasible`) graphs larger than this.
        schedule: The schedule pass (:mod:`dagen.graph.schedules`); its result is linted.
        peak: How far the caller goes after the build (simulate, export), for the memory
            guard (:mod:`dagen.graph.budget`).

    Raises:
        PlanInfeasible: the plan cannot be expanded (an error of the plan rules, a count
            past the IR's int16 columns); MemoryLimit when the graph is over ``max_nodes``
            or the run would not fit in memory.
    """
    return build_pools([(plan.workload.phase.value, plan)], max_nodes=max_nodes,
                       schedule=schedule, meshes=[mesh], peak=peak)  # fmt: skip


def build_pools(
    pools: Sequence[tuple[str, Plan]],
    *,
    max_nodes: int = MAX_NODES,
    schedule: SchedulePass = default_schedule,
    meshes: Sequence[Mesh | None] = (),
    peak: Peak = Peak.BUILD,
) -> Graph:
    """Expand several pools (name, plan) of one deployment and lay them end to end.

    Every plan must describe the same model. Pool ``p``'s ranks and hosts follow the
    earlier pools'; its nodes, edges, groups, instances and templates are numbered after
    theirs. Each pool keeps its own layout, phase, workload and hardware.

    Raises:
        PlanInfeasible: a pool cannot be expanded, two pools disagree on the model, or
            the graph would exceed ``max_nodes``.
    """
    t0 = time.perf_counter()
    if not pools:
        raise PlanInfeasible("build_pools: no pool given. Fix: pass at least one (name, plan)")
    for name, plan in pools[1:]:
        if plan.model != pools[0][1].model:
            raise PlanInfeasible(
                f"pool {name!r}: its model differs from pool {pools[0][0]!r}'s; every pool "
                "of a deployment serves the same model. Fix: give every pool the same model"
            )
    parts: list[PoolPart] = []
    at = {"rank0": 0, "host0": 0, "node0": 0}
    for i, (name, plan) in enumerate(pools):
        _refuse_infeasible(plan)
        mesh = (list(meshes) + [None] * len(pools))[i] or mesh_of(plan)
        part = _expand(plan, name, mesh, schedule, index=i, **at)
        parts.append(part)
        at = {"rank0": at["rank0"] + mesh.world, "host0": at["host0"] + mesh.hosts,
              "node0": part.pool.node1}  # fmt: skip
    graph = assemble([plan for _, plan in pools], parts, max_nodes, peak)
    log.info(
        "built %s nodes, %s edges, %s collective instances in %.3f s",
        f"{graph.n_nodes:,}",
        f"{graph.n_edges:,}",
        f"{graph.n_inst:,}",
        time.perf_counter() - t0,
    )
    return graph
