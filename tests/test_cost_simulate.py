"""The vectorised schedule simulation against a plain event loop written here.

The reference walks nodes one by one in a topological order of the contracted graph:
a node starts when its predecessors have ended and its rank's stream is free; a
collective instance starts when all its members are ready; a recv ends when it is
posted and its send has ended. The simulator must give the same times.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from conftest import make_plan
from handgraph import HandGraph, pipeline, small_plan

from dagen.cost import Roofline, estimate
from dagen.cost.simulate import simulate
from dagen.graph.algo import HasACycle, topological_order
from dagen.graph.build import build_graph
from dagen.graph.ir import EdgeKind, Graph, Kind, Op
from dagen.plan.loader import load_plan

F64 = npt.NDArray[np.float64]
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def reference(graph: Graph, dur: F64) -> tuple[F64, F64]:
    """Start and end of every node by a one-node-at-a-time event loop."""
    preds: dict[int, list[int]] = defaultdict(list)
    sends: dict[int, list[int]] = defaultdict(list)
    for s, d, k in zip(graph.src.tolist(), graph.dst.tolist(), graph.ekind.tolist(), strict=True):
        (sends if k == EdgeKind.P2P else preds)[d].append(s)
    members: dict[int, list[int]] = defaultdict(list)
    for i in np.flatnonzero(graph.kind == Kind.COLLECTIVE).tolist():
        members[int(graph.inst[i])].append(i)
    start, end = np.zeros(graph.n_nodes), np.zeros(graph.n_nodes)
    done = np.zeros(graph.n_nodes, dtype=bool)
    free: dict[tuple[int, int], float] = {}

    def stream(i: int) -> tuple[int, int]:
        return int(graph.rank[i]), int(graph.kind[i] != Kind.COMPUTE)

    def ready(i: int) -> float:
        assert all(done[p] for p in preds[i])
        return max([free.get(stream(i), 0.0)] + [end[p] for p in preds[i]])

    for i in topological_order(graph).tolist():
        if done[i]:
            continue
        group = members[int(graph.inst[i])] if graph.kind[i] == Kind.COLLECTIVE else [i]
        t0 = max(ready(m) for m in group)
        for m in group:
            start[m] = t0
            end[m] = max([t0 + dur[m]] + [end[s] for s in sends[m]])
            done[m] = True
            free[stream(m)] = end[m]
    return start, end


def _check_against_reference(graph: Graph, dur: F64) -> None:
    got = simulate(graph, dur)
    start, end = reference(graph, dur)
    np.testing.assert_allclose(got.start_s, start, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.end_s, end, rtol=1e-12, atol=1e-12)
    assert got.makespan_s == pytest.approx(float(end.max()), rel=1e-12)


@pytest.mark.parametrize(("tp", "pp", "layers", "mbs"), [(2, 2, 2, 2), (1, 4, 4, 6), (2, 3, 3, 4)])
def test_hand_pipelines_match_the_reference(tp: int, pp: int, layers: int, mbs: int) -> None:
    graph = pipeline(tp=tp, pp=pp, layers=layers, mbs=mbs)
    rng = np.random.default_rng(tp * 100 + pp * 10 + mbs)
    _check_against_reference(graph, rng.uniform(0.1, 1.0, graph.n_nodes))


BUILT = {
    "tp2-pp2": dict(tp=2, pp=2, micro_batches=3, batch=6),
    "moe-ep4": dict(dp=4, ep=4, experts=8, top_k=2, batch=8, micro_batches=2),
    "moe-etp-shared": dict(tp=2, dp=2, ep=2, etp=2, experts=4, top_k=2, shared_experts=1, batch=4),
    "decode-steps": dict(pp=2, phase="decode", decode_steps=3, micro_batches=2, batch=4),
    "cp-sp": dict(tp=2, cp=2, sequence_parallel=True, batch=2),
    "cross-host": dict(tp=2, pp=2, dp=2, gpus_per_node=2, micro_batches=2, batch=4),
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_graphs_match_the_reference(name: str) -> None:
    graph = build_graph(make_plan(**BUILT[name]))
    rng = np.random.default_rng(len(name))
    # Random durations, and the model's own: both must agree with the event loop.
    _check_against_reference(graph, rng.uniform(0.1, 1.0, graph.n_nodes))
    _check_against_reference(graph, Roofline().node_seconds(graph))


def test_the_seed_fixed_sample_matches_the_reference() -> None:
    graph = build_graph(load_plan(SAMPLES / "seed-moe-10b-fixed.yaml"))  # 28,160 nodes
    _check_against_reference(graph, Roofline().node_seconds(graph))


def test_collective_members_start_together_and_recvs_wait_for_their_sends() -> None:
    graph = build_graph(make_plan(**BUILT["cross-host"]))
    rng = np.random.default_rng(7)
    dur = rng.uniform(0.1, 1.0, graph.n_nodes)
    s = simulate(graph, dur)
    coll = np.flatnonzero(graph.kind == Kind.COLLECTIVE)
    for inst in np.unique(graph.inst[coll]):
        starts = s.start_s[coll[graph.inst[coll] == inst]]
        assert np.all(starts == starts[0])
    p2p = graph.ekind == EdgeKind.P2P
    send, recv = graph.src[p2p], graph.dst[p2p]
    assert np.all(s.end_s[recv] == np.maximum(s.start_s[recv] + dur[recv], s.end_s[send]))
    assert np.any(s.end_s[recv] > s.start_s[recv])  # some recv did wait


def test_streams_run_one_node_at_a_time() -> None:
    graph = build_graph(make_plan(**BUILT["moe-ep4"]))
    s = simulate(graph, Roofline().node_seconds(graph))
    for stream in (0, 1):
        idx = np.flatnonzero(s.stream == stream)
        idx = idx[np.lexsort((s.start_s[idx], graph.rank[idx]))]
        same = graph.rank[idx[1:]] == graph.rank[idx[:-1]]
        assert np.all(s.start_s[idx[1:]][same] >= s.end_s[idx[:-1]][same] - 1e-15)


def test_pipeline_bubble_is_close_to_the_gpipe_formula() -> None:
    pp, m = 4, 8
    # equal stages whose compute dwarfs the sends; tiny vocabulary, so the LM head is cheap
    big = dict(hidden_size=1024, heads=8, kv_heads=8, head_dim=128, ffn_size=4096, vocab_size=64)
    plan = make_plan(pp=pp, layers=8, micro_batches=m, batch=m, prompt_len=512, **big)
    est = estimate(build_graph(plan))
    assert est.bubble_fraction == pytest.approx((pp - 1) / (m + pp - 1), abs=0.03)
    # one stage, no pipeline: nothing idles but the links
    flat = estimate(build_graph(make_plan(layers=8, micro_batches=m, batch=m, prompt_len=512)))
    assert flat.bubble_fraction < 0.01


def test_critical_path_ends_last_and_each_step_is_tight() -> None:
    graph = build_graph(make_plan(**BUILT["tp2-pp2"]))
    s = simulate(graph, Roofline().node_seconds(graph))
    path = s.critical_path
    assert s.end_s[path[-1]] == s.makespan_s
    assert s.start_s[path[0]] == 0.0
    for u, v in zip(path[:-1].tolist(), path[1:].tolist(), strict=True):
        same_instance = graph.inst[u] >= 0 and graph.inst[u] == graph.inst[v]
        waited = graph.kind[v] == Kind.RECV and s.end_s[v] == s.end_s[u]
        assert same_instance or waited or s.end_s[u] == s.start_s[v], (u, v)


def _crossed_recvs(with_data_edges: bool) -> Graph:
    """Two ranks that each post a recv before the send the other waits for."""
    h = HandGraph(small_plan(tp=1, pp=2))
    msg = h.template(4096)
    recv_a = h.node(0, Op.PP_RECV, kind=Kind.RECV, aux=1, tmpl=msg)
    send_b = h.node(0, Op.PP_SEND, kind=Kind.SEND, aux=1, tmpl=msg)
    recv_b = h.node(1, Op.PP_RECV, kind=Kind.RECV, aux=0, tmpl=msg)
    send_a = h.node(1, Op.PP_SEND, kind=Kind.SEND, aux=0, tmpl=msg)
    h.edge(send_a, recv_a, EdgeKind.P2P)
    h.edge(send_b, recv_b, EdgeKind.P2P)
    if with_data_edges:
        h.edge(recv_a, send_b)
        h.edge(recv_b, send_a)
    return h.freeze()


def test_a_serial_deadlock_falls_back_to_a_topological_issue_order() -> None:
    graph = _crossed_recvs(with_data_edges=False)
    dur = np.array([0.0, 1.0, 0.0, 1.0])
    s = simulate(graph, dur)
    p2p = graph.ekind == EdgeKind.P2P
    assert np.all(s.end_s[graph.dst[p2p]] >= s.end_s[graph.src[p2p]])
    # issued in a topological order: each rank sends first (0–1 s), then its recv ends
    # when the peer's send does (1 s)
    assert s.makespan_s == pytest.approx(1.0)
    assert s.end_s.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_a_true_cycle_is_refused() -> None:
    with pytest.raises(HasACycle):
        simulate(_crossed_recvs(with_data_edges=True), np.ones(4))
