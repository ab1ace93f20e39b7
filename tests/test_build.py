"""The graph builder against the closed forms of docs/graph.md and the mesh.

Every expectation here is computed independently of dagen.graph: node counts from the
closed form written out below, groups from :mod:`dagen.mesh`, expert ids from
``expert_placement``, FLOPs from the formulas of docs/graph.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_plan
from hypothesis import HealthCheck, given, settings
from strategies import small_plans

from dagen.errors import PlanInfeasible
from dagen.graph.build import build_graph
from dagen.graph.counts import nodes_per_rank
from dagen.graph.ir import COLLECTIVE_OPS, Coll, EdgeKind, Graph, GroupKind, Kind, Op
from dagen.mesh import build_mesh, expert_placement
from dagen.plan.model import Phase, Plan
from dagen.plan.split import stage_layers

PLANS = Path(__file__).parent / "data" / "plans"


# --- the closed form of docs/graph.md, written out independently -------------------


def even(n: int, parts: int) -> list[int]:
    """vLLM's rule: the remainder goes one each to the stages before the last."""
    base, extra = divmod(n, parts)
    return [base + (parts - 1 - extra <= s < parts - 1) for s in range(parts)]


def split(plan: Plan) -> list[int]:
    p, n = plan.parallel, plan.model.layers
    if p.layers_per_stage is not None:
        return list(p.layers_per_stage)
    first, last = p.first_stage_layers, p.last_stage_layers
    if p.pp == 1 or (first is None and last is None):
        return even(n, p.pp)
    free = p.pp - (first is not None) - (last is not None)
    middle = even(n - (first or 0) - (last or 0), free) if free else []
    return ([first] if first is not None else []) + middle + ([last] if last is not None else [])


def layer_nodes(plan: Plan, layer: int) -> int:
    p, moe = plan.parallel, plan.model.moe
    tp1 = int(p.tp > 1)
    sp = int(p.sequence_parallel and p.tp > 1)
    attention = 5 + tp1 + sp + int(p.cp > 1)  # norm qkv core out residual [ar|rs] [ag] [cp]
    is_moe = (
        moe is not None
        and layer >= moe.first_dense_layers
        and (layer + 1) % moe.moe_layer_freq == 0
    )
    if not is_moe:
        return attention + 4 + tp1 + sp  # norm up down residual [ar|rs] [ag]
    assert moe is not None
    slots = (moe.experts + p.redundant_experts) // p.ep
    shared = (1 + tp1 + sp) if moe.shared_experts else 0  # [ag] shared [ar|rs]
    return attention + 4 + 2 * int(p.ep > 1) + slots + int(p.etp > 1) + shared


def expected_nodes(plan: Plan) -> np.ndarray:
    """Nodes per stage: steps·mbs·block + chain recv/send, then spread over ranks."""
    p, w = plan.parallel, plan.workload
    steps = w.decode_steps if w.phase is Phase.DECODE else 1
    sizes, start, per_stage = split(plan), 0, []
    for s, n in enumerate(sizes):
        block = sum(layer_nodes(plan, layer) for layer in range(start, start + n))
        start += n
        block += (2 if p.tp > 1 else 1) if s == 0 else 1  # embed [+ar|rs] | recv
        sp = int(p.sequence_parallel and p.tp > 1)
        head = 3 + int(p.tp > 1) + sp  # final.norm [lm.allgather] lm.head [logits.ag] sample
        block += head if s == p.pp - 1 else 1  # head | send
        chain = (steps - 1) if p.pp > 1 and s in (0, p.pp - 1) else 0
        per_stage.append(w.micro_batches * (steps * block + chain))
    mesh = build_mesh(p, plan.hardware.gpus_per_node)
    return np.asarray(per_stage)[mesh.stage]


def layer_edges(plan: Plan, layer: int) -> int:
    """Data edges of one layer: one per producer a node reads (the residual reads two)."""
    p, moe = plan.parallel, plan.model.moe
    tp1, sp, cp1 = int(p.tp > 1), int(p.sequence_parallel and p.tp > 1), int(p.cp > 1)
    attention = 6 + tp1 + sp + cp1
    is_moe = (
        moe is not None
        and layer >= moe.first_dense_layers
        and (layer + 1) % moe.moe_layer_freq == 0
    )
    if not is_moe:
        return attention + 5 + tp1 + sp
    assert moe is not None
    slots = (moe.experts + p.redundant_experts) // p.ep
    e = 3 + (2 + slots if p.ep > 1 else 2 * slots)  # norm router topk; [dispatch] experts
    out = slots
    if p.etp > 1:
        e, out = e + out, 1
    if p.ep > 1:
        e, out = e + out, 1
    shared = int(moe.shared_experts > 0)
    return attention + e + shared * (1 + tp1 + sp) + 1 + out + shared


def expected_edges(plan: Plan) -> np.ndarray:
    """Edges whose source sits on each rank (a send's p2p edge counts at the sender)."""
    p, w = plan.parallel, plan.workload
    steps = w.decode_steps if w.phase is Phase.DECODE else 1
    mbs, k, tp1 = w.micro_batches, steps * w.micro_batches, int(p.tp > 1)
    sizes, start, per_stage = split(plan), 0, []
    for s, n in enumerate(sizes):
        block = sum(layer_edges(plan, layer) for layer in range(start, start + n))
        start += n
        block += tp1 if s == 0 else 0  # embed.allreduce (SP: reducescatter) ← embed
        sp = int(p.sequence_parallel and p.tp > 1)
        block += 3 + tp1 + sp if s == p.pp - 1 else 2  # head | send (data + p2p)
        chain = 0
        if p.pp > 1 and s == 0:
            chain = 1  # embed ← recv from step 1 on
        elif p.pp > 1 and s == p.pp - 1:
            chain = 2  # send ← sample, and its p2p edge, all steps but the last
        on_rank = (steps - 1) * mbs if p.pp == 1 else 0  # sample → next step's embed
        order = 0 if p.pp == 1 and steps > 1 and mbs == 1 else k - 1
        per_stage.append(mbs * (steps * block + (steps - 1) * chain) + order + on_rank)
    mesh = build_mesh(p, plan.hardware.gpus_per_node)
    return np.asarray(per_stage)[mesh.stage]


# --- invariants every built graph must satisfy --------------------------------------


def check_counts(plan: Plan, g: Graph) -> None:
    got = np.bincount(g.rank, minlength=g.mesh.world)
    np.testing.assert_array_equal(got, expected_nodes(plan))
    np.testing.assert_array_equal(got, nodes_per_rank(plan, g.mesh))
    edges = np.bincount(g.rank[g.src], minlength=g.mesh.world)
    np.testing.assert_array_equal(edges, expected_edges(plan))


def check_collectives(g: Graph) -> None:
    coll = np.flatnonzero(g.kind == Kind.COLLECTIVE)
    order = coll[np.lexsort((g.rank[coll], g.inst[coll]))]
    inst = g.inst[order]
    sizes = np.diff(g.group_offsets)[g.inst_group]
    np.testing.assert_array_equal(np.bincount(inst, minlength=g.n_inst), sizes)
    members = np.concatenate([g.group(int(x)) for x in g.inst_group] + [np.zeros(0, np.int32)])
    np.testing.assert_array_equal(g.rank[order], members)
    first = order[np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)[: sizes.size]]
    for col in (g.op, g.layer, g.mb, g.step):  # every member calls the same thing
        np.testing.assert_array_equal(col[order], np.repeat(col[first], sizes))
    np.testing.assert_array_equal(g.aux[coll], g.inst_group[g.inst[coll]])
    starts = {k: int(np.flatnonzero(g.group_kind == k)[0]) for k in np.unique(g.group_kind)}
    for op, (dim, kind) in COLLECTIVE_OPS.items():
        nodes = coll[g.op[coll] == op]
        if not nodes.size:
            continue
        assert (g.inst_coll[g.inst[nodes]] == kind).all()
        assert (g.group_kind[g.aux[nodes]] == dim).all()
        rows = g.mesh.group_of(dim.label)[g.rank[nodes]]  # the mesh's own answer
        np.testing.assert_array_equal(g.aux[nodes] - starts[int(dim)], rows)
    for k, s in starts.items():
        table = g.mesh.groups(GroupKind(k).label)
        got = g.group_members[g.group_offsets[s] : g.group_offsets[s + table.shape[0]]]
        np.testing.assert_array_equal(got, table.ravel())


def check_p2p(g: Graph) -> None:
    p2p = g.ekind == EdgeKind.P2P
    s, d = g.src[p2p], g.dst[p2p]
    sends, recvs = np.flatnonzero(g.kind == Kind.SEND), np.flatnonzero(g.kind == Kind.RECV)
    np.testing.assert_array_equal(np.sort(s), sends)  # each send: exactly one edge
    np.testing.assert_array_equal(np.sort(d), recvs)  # each recv: exactly one edge
    assert (g.aux[s] == g.rank[d]).all() and (g.aux[d] == g.rank[s]).all()
    assert (g.mb[s] == g.mb[d]).all()
    assert (g.tmpl_bytes[g.tmpl[s]] == g.tmpl_bytes[g.tmpl[d]]).all()
    stage, pp = g.mesh.stage, g.mesh.sizes["pp"]
    forward = stage[g.rank[d]] == stage[g.rank[s]] + 1
    chain = (stage[g.rank[s]] == pp - 1) & (stage[g.rank[d]] == 0)
    assert (forward | chain).all()
    assert (g.step[d][forward] == g.step[s][forward]).all()
    assert (g.step[d][chain] == g.step[s][chain] + 1).all()
    for dim in ("tp", "cp", "dp"):  # peers sit at the same attention coordinates
        c = g.mesh.coords[dim]
        assert (c[g.rank[s]] == c[g.rank[d]]).all()


def check_experts(plan: Plan, g: Graph) -> None:
    ex = np.flatnonzero(g.op == Op.MOE_EXPERT)
    moe = plan.model.moe
    if moe is None:
        assert ex.size == 0
        return
    p = plan.parallel
    place = expert_placement(moe.experts, p.ep, p.redundant_experts)
    per_layer = g.expert[ex].reshape(-1, place.shape[1])  # consecutive: program order
    owner = g.rank[ex][:: place.shape[1]]
    np.testing.assert_array_equal(per_layer, place[g.mesh.coords["ep"][owner]])


def check_order(g: Graph) -> None:
    o = g.ekind == EdgeKind.ORDER
    assert (g.src[o] + 1 == g.dst[o]).all()  # last node of a block → first of the next
    k = g.step.astype(np.int64) * g.pools[0].workload.micro_batches + g.mb
    assert (k[g.dst[o]] == k[g.src[o]] + 1).all()


def check_all(plan: Plan, g: Graph) -> None:
    g.lint()
    check_counts(plan, g)
    check_collectives(g)
    check_p2p(g)
    check_experts(plan, g)
    check_order(g)


GRID: dict[str, dict[str, Any]] = {
    "dense-1gpu": {},
    "dense-tp2-pp2-dp2": dict(tp=2, pp=2, dp=2, micro_batches=2),
    "moe-tp2-pp2-dp2-ep4": dict(tp=2, pp=2, dp=2, ep=4, experts=8, micro_batches=2),
    "decode-pp2-steps3": dict(tp=2, pp=2, micro_batches=2, phase="decode", decode_steps=3),
    "decode-pp1-steps3": dict(phase="decode", decode_steps=3),
    "decode-pp1-steps3-mb2": dict(phase="decode", decode_steps=3, micro_batches=2),
    "decode-pp3-steps2": dict(pp=3, layers=6, phase="decode", decode_steps=2, micro_batches=2),
    "cp2-prefill": dict(cp=2, tp=2, pp=2),
    "cp2-decode": dict(cp=2, phase="decode", decode_steps=2),
    "sp-dense": dict(tp=2, sequence_parallel=True, pp=2),
    "sp-moe-etp": dict(tp=2, sequence_parallel=True, experts=8, ep=2, etp=2, dp=2),
    "moe-shared-redundant": dict(experts=8, ep=4, dp=4, shared_experts=1, redundant_experts=4),
    "sp-moe-shared": dict(tp=2, sequence_parallel=True, experts=8, ep=2, dp=2, shared_experts=1),
    "moe-etp2-tp1": dict(experts=4, ep=2, etp=2, dp=4, pp=2),
    "uneven-5-over-2": dict(layers=5, pp=2),
    "uneven-7-over-3": dict(layers=7, pp=3),
    "layers-per-stage": dict(layers=4, pp=2, layers_per_stage=(1, 3)),
    "first-stage-layers": dict(layers=7, pp=3, first_stage_layers=1),
    "last-stage-layers": dict(layers=6, pp=3, last_stage_layers=1),
    "empty-middle-stage": dict(layers=2, pp=3, layers_per_stage=(1, 0, 1)),
    "first-k-dense": dict(layers=4, experts=8, ep=2, dp=2, first_dense_layers=1),
    "moe-freq-2": dict(layers=4, experts=8, ep=2, dp=2, moe_layer_freq=2),
    "orthogonal-ep": dict(convention="orthogonal", tp=2, ep=2, experts=4, pp=2, batch=8),
    "stages-interleaved": dict(tp=2, etp=2, pp=2, dp=2, order="tp-cp-ep-pp-dp"),
    "mla-prefill": dict(mla=True, q_lora_rank=32, tp=2),
    "mla-decode": dict(kv_lora_rank=16, tp=2, phase="decode", decode_steps=2),
}


@pytest.mark.parametrize("name", sorted(GRID))
def test_grid_of_plans(name: str) -> None:
    overrides = dict(GRID[name])
    overrides.pop("mla", None)
    plan = make_plan(**overrides)
    check_all(plan, build_graph(plan))


def test_ids_unique_and_readable() -> None:
    plan = make_plan(**GRID["decode-pp2-steps3"] | dict(experts=8, ep=2))
    g = build_graph(plan)
    ids = g.node_ids(np.arange(g.n_nodes))
    assert len(set(ids)) == len(ids)
    assert ids[0] == "r0/s0/t0/mb0/embed"
    assert "r3/s1/t1/L3/mb1/moe.expert.e6" in ids  # rank 3 = ep coordinate 1 → e4..e7


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_plans())
def test_random_small_plans(plan: Plan) -> None:
    check_all(plan, build_graph(plan))


# --- files, dataflow, formulas ------------------------------------------------------


def _load(name: str) -> Plan:
    from dagen.plan.loader import load_plan

    return load_plan(PLANS / f"{name}.yaml")


def test_tiny_plans_worked_counts() -> None:
    """The worked counts of docs/graph.md."""
    counts = {}
    for name in ("tiny_dense", "tiny_moe"):
        plan = _load(name)
        g = build_graph(plan)
        check_all(plan, g)
        counts[name] = (g.n_nodes, g.n_edges, g.n_inst)
    assert counts == {"tiny_dense": (416, 480, 40), "tiny_moe": (512, 640, 40)}


def _node(g: Graph, nid: str) -> int:
    ids = g.node_ids(np.arange(g.n_nodes))
    return ids.index(nid)


def _preds(g: Graph, i: int) -> set[str]:
    """Producers of node ``i`` (data and p2p edges; stream order left out)."""
    return set(g.node_ids(g.src[(g.dst == i) & (g.ekind != EdgeKind.ORDER)]))


def _succs(g: Graph, i: int) -> set[str]:
    return set(g.node_ids(g.dst[(g.src == i) & (g.ekind != EdgeKind.ORDER)]))


def test_moe_dataflow() -> None:
    g = build_graph(make_plan(experts=8, ep=2, dp=2, etp=1, shared_experts=1, tp=1))
    p = "r0/s0/L0/mb0/"
    for e in range(4):
        x = _node(g, f"{p}moe.expert.e{e}")
        assert _preds(g, x) == {f"{p}moe.dispatch"}  # experts are independent
        assert _succs(g, x) == {f"{p}moe.combine"}
    assert _preds(g, _node(g, f"{p}moe.dispatch")) == {f"{p}moe.norm", f"{p}moe.topk"}
    res = _node(g, f"{p}moe.residual")
    assert _preds(g, res) == {f"{p}attn.residual", f"{p}moe.combine", f"{p}moe.shared"}
    assert _preds(g, _node(g, "r0/s0/L1/mb0/attn.residual")) == {
        f"{p}moe.residual",
        "r0/s0/L1/mb0/attn.out",
    }


def _rows(g: Graph, i: int) -> int:
    return int(g.tmpl_shape[g.tmpl[i]][0])


def test_sequence_parallel_shared_expert_and_embedding() -> None:
    """Megatron SP: the shared MLP gathers the T/tp stream rows and reduce-scatters back;
    the vocab-parallel embedding is reduce-scattered, never all-reduced; the head gathers
    the last rows."""
    g = build_graph(make_plan(tp=2, sequence_parallel=True, experts=8, ep=2, dp=2,
                              shared_experts=1))  # fmt: skip
    t = g.meta["tokens_per_microbatch"]
    p = "r0/s0/L0/mb0/"
    ag, sh, rs = (
        _node(g, f"{p}moe.{n}") for n in ("shared_allgather", "shared", "shared_reducescatter")
    )
    norm, res = _node(g, f"{p}moe.norm"), _node(g, f"{p}moe.residual")
    assert _preds(g, ag) == {f"{p}moe.norm"} and _preds(g, sh) == {f"{p}moe.shared_allgather"}
    assert _preds(g, rs) == {f"{p}moe.shared"} and f"{p}moe.shared_reducescatter" in _preds(g, res)
    # rows: stream T/tp in, gathered T, shared MLP T, scattered back to the T/tp stream
    assert [_rows(g, i) for i in (norm, ag, sh, res)] == [t // 2, t, t, t // 2]
    assert _rows(g, rs) == t  # reduce-scatter sized by its input (nccl-tests convention)
    assert g.inst_coll[g.inst[ag]] == Coll.ALL_GATHER
    assert g.inst_coll[g.inst[rs]] == Coll.REDUCE_SCATTER
    assert not (g.op == Op.MOE_SHARED_ALLREDUCE).any() and not (g.op == Op.EMBED_ALLREDUCE).any()
    ers = _node(g, "r0/s0/mb0/embed.reducescatter")
    assert g.inst_coll[g.inst[ers]] == Coll.REDUCE_SCATTER
    assert _preds(g, ers) == {"r0/s0/mb0/embed"}
    h = g.model.hidden_size
    assert g.tmpl_bytes[g.tmpl[ers]] == t * h * g.model.dtype.nbytes
    assert _rows(g, _node(g, "r0/s0/L0/mb0/attn.norm")) == t // 2  # scattered: T/tp rows
    # the head scores each sequence's last row, gathered from the T/tp-row stream
    lag = _node(g, "r0/s0/mb0/lm.allgather")
    assert _preds(g, lag) == {"r0/s0/mb0/final.norm"}
    assert _preds(g, _node(g, "r0/s0/mb0/lm.head")) == {"r0/s0/mb0/lm.allgather"}
    assert g.inst_coll[g.inst[lag]] == Coll.ALL_GATHER
    assert _rows(g, lag) == g.meta["sequences_per_microbatch"]
    # without SP the same plan all-reduces both
    g2 = build_graph(make_plan(tp=2, experts=8, ep=2, dp=2, shared_experts=1))
    assert (g2.op == Op.MOE_SHARED_ALLREDUCE).any() and (g2.op == Op.EMBED_ALLREDUCE).any()
    assert not np.isin(
        g2.op, [Op.MOE_SHARED_ALLGATHER, Op.EMBED_REDUCESCATTER, Op.LM_ALLGATHER]
    ).any()


def test_every_node_but_the_sources_has_a_producer() -> None:
    plan = make_plan(**GRID["decode-pp2-steps3"] | dict(experts=8, ep=2, tp=2))
    g = build_graph(plan)
    fed = np.zeros(g.n_nodes, dtype=bool)
    fed[g.dst[g.ekind != EdgeKind.ORDER]] = True
    sources = set(g.node_ids(np.flatnonzero(~fed)))
    assert sources == {f"r{r}/s0/t0/mb{m}/embed" for r in range(2) for m in range(2)}


def test_decode_chain_on_one_stage() -> None:
    g = build_graph(make_plan(phase="decode", decode_steps=3, micro_batches=2))
    emb = _node(g, "r0/s0/t1/mb1/embed")
    assert _preds(g, emb) == {"r0/s0/t0/mb1/sample"}
    assert (g.kind != Kind.SEND).all()


def test_decode_chain_across_stages() -> None:
    g = build_graph(make_plan(pp=2, phase="decode", decode_steps=2))
    recv = _node(g, "r0/s0/t1/mb0/pp.recv")
    assert _preds(g, recv) == {"r1/s1/t0/mb0/pp.send"}
    assert _preds(g, _node(g, "r1/s1/t0/mb0/pp.send")) == {"r1/s1/t0/mb0/sample"}
    assert _succs(g, recv) == {"r0/s0/t1/mb0/embed"}
    assert g.tmpl_bytes[g.tmpl[recv]] == 8 * 4  # 8 sequences' int32 token ids


def _flops(g: Graph, op: Op) -> float:
    return float(g.tmpl_flops[g.tmpl[g.op == op]].sum())


def test_formulas_tiny_dense() -> None:
    g = build_graph(_load("tiny_dense"))
    # T = 8 / (dp 2 · mb 2) · 16 = 32 tokens; heads/tp = 2, kv/tp = 1, d = 16
    qkv = g.tmpl[_node(g, "r0/s0/L0/mb0/attn.qkv")]
    assert g.tmpl_shape[qkv] == (32, 64)
    assert g.tmpl_flops[qkv] == 2 * 32 * 64 * 64
    core = g.tmpl[_node(g, "r0/s0/L0/mb0/attn.core")]
    assert g.tmpl_flops[core] == 2 * 2 * 2 * 16**2 / 2 * 2 * 16  # 2·2·b·s²/2·H_l·d
    ar = g.tmpl[_node(g, "r0/s0/L0/mb0/attn.allreduce")]
    assert g.tmpl_bytes[ar] == 32 * 64 * 2
    up = g.tmpl[_node(g, "r0/s0/L0/mb0/ffn.up")]
    assert g.tmpl_flops[up] == 2 * 32 * 64 * 128 * 2  # gated: gate + up, ffn/tp = 128


LAYOUTS = [
    dict(),
    dict(tp=2, ep=2, etp=1, dp=1),
    dict(tp=2, dp=2, ep=4),
    dict(cp=2, ep=2),
    dict(etp=2, ep=2, dp=4),
    dict(tp=2, sequence_parallel=True, ep=2, etp=2, dp=2),
    dict(pp=2, dp=2, ep=2),
]


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_total_flops_do_not_depend_on_the_layout(phase: str) -> None:
    """Matmul work that is split (not replicated) sums to the model's work."""
    model = dict(experts=8, top_k=2, batch=8, micro_batches=1, phase=phase)
    totals = []
    for layout in LAYOUTS:
        g = build_graph(make_plan(**model | layout))
        totals.append([_flops(g, op) for op in (Op.ATTN_CORE, Op.ATTN_OUT, Op.MOE_EXPERT)])
    tokens = 8 * (16 if phase == "prefill" else 1)
    expert = 4 * tokens * 2 * 2 * 64 * 128 * 3  # layers·tokens·top_k·2·h·F·3
    core = 4 * 2 * 2 * 8 * (16**2 / 2 if phase == "prefill" else 17) * 4 * 16
    assert totals[0] == pytest.approx([core, 4 * 2 * tokens * 64 * 64, expert])
    for layout, t in zip(LAYOUTS[1:], totals[1:], strict=True):
        if phase == "decode" and "cp" in layout:  # CP ranks share the new tokens:
            t[1] /= layout["cp"]  # the output projection is replicated over them
        assert t == pytest.approx(totals[0])


def test_mla_uses_latent_dims() -> None:
    prefill = build_graph(make_plan(kv_lora_rank=16, tp=2))
    decode = build_graph(make_plan(kv_lora_rank=16, tp=2, phase="decode"))
    # layers 4 · ranks 2 · 2 · pairs · heads/tp 2 · (qk width + v width)
    # naive prefill: q·k over nope+rope (24), p·v over v (16); pairs = 8 · 16²/2
    assert _flops(prefill, Op.ATTN_CORE) == pytest.approx(4 * 2 * 2 * (8 * 128) * 2 * (24 + 16))
    # absorbed decode: q·k over latent+rope (24), p·v over latent (16); pairs = 8 · 17
    assert _flops(decode, Op.ATTN_CORE) == pytest.approx(4 * 2 * 2 * (8 * 17) * 2 * (24 + 16))


def test_mla_prefill_cp_gathers_the_per_head_keys_and_values() -> None:
    """The prefill core attends with per-head K (nope + rope) and V for every position of
    the sequence; attn.qkv up-projects only the rank's own 1/cp chunk, so the CP
    all-gather must carry the up-projected K/V, not the latent (whose remote rows would
    need an up-projection the graph never prices)."""
    g = build_graph(make_plan(kv_lora_rank=16, tp=2, cp=2))
    # b = 8 sequences of 16 tokens; heads/tp = 2; K width nope 16 + rope 8, V width 16
    gather = g.tmpl[_node(g, "r0/s0/L0/mb0/attn.cp_allgather")]
    assert g.tmpl_shape[gather] == (8 * 16, 2 * (16 + 8 + 16))
    assert g.tmpl_bytes[gather] == 8 * 16 * 2 * (16 + 8 + 16) * 2  # bf16
    qkv = g.tmpl[_node(g, "r0/s0/L0/mb0/attn.qkv")]
    q_cols = 2 * (16 + 8)
    assert g.tmpl_shape[qkv][1] - q_cols == g.tmpl_shape[gather][1]  # the K/V part of qkv


# --- splits, errors, scale ---------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "sizes"),
    [
        (dict(layers=7, pp=3), [2, 3, 2]),
        (dict(layers=22, pp=4), [5, 6, 6, 5]),
        (dict(layers=4, pp=1, first_stage_layers=4), [4]),
        (dict(layers=7, pp=3, first_stage_layers=1), [1, 3, 3]),
        (dict(layers=8, pp=3, first_stage_layers=2, last_stage_layers=2), [2, 4, 2]),
        (dict(layers=3, pp=3, layers_per_stage=(0, 2, 1)), [0, 2, 1]),
    ],
)
def test_stage_layers(over: dict[str, Any], sizes: list[int]) -> None:
    plan = make_plan(**over)
    assert [len(r) for r in stage_layers(plan)] == sizes == split(plan)


@pytest.mark.parametrize(
    ("over", "path"),
    [
        (dict(tp=8), "parallel.tp"),
        (dict(tp=4, heads=8, kv_heads=3), "parallel.tp"),
        (dict(dp=3), "workload.batch"),
        (dict(cp=2, prompt_len=15), "workload.prompt_len"),
        (dict(pp=2, layers_per_stage=(1, 2)), "parallel.layers_per_stage"),
        (dict(pp=2, first_stage_layers=5), "parallel.first_stage_layers"),
    ],
)
def test_infeasible_plans_are_refused(over: dict[str, Any], path: str) -> None:
    with pytest.raises(PlanInfeasible, match=path):
        build_graph(make_plan(**over))


def test_size_ceiling() -> None:
    with pytest.raises(PlanInfeasible, match="nodes"):
        build_graph(make_plan(micro_batches=8, batch=8), max_nodes=100)


def test_seed_sized_plan_builds_fast() -> None:
    plan = make_plan(
        layers=16, hidden_size=2048, heads=16, kv_heads=4, head_dim=128, ffn_size=8192,
        vocab_size=32000, tp=2, pp=4, dp=16, ep=16, experts=16, top_k=2,
        expert_ffn_size=1408, batch=64, prompt_len=2048, micro_batches=4,
    )  # fmt: skip
    t = time.perf_counter()
    g = build_graph(plan)
    assert time.perf_counter() - t < 1.0
    assert g.mesh.world == 128
    check_counts(plan, g)
