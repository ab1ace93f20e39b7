"""The timeline's integer-nanosecond slices and its flow events, on every sample.

On every sample's trace: no two slices on one track overlap, not even by 1 ns; every
flow event lies inside a slice of its own track; every p2p flow runs from a send to the
recv its edge names; every collective flow runs through all traced members of its
instance; collectives carry their collective and group in ``args``. The checker is
shown to catch each fault on traces with the fault put in. A larger sample's trace is
cut to its first ranks; the whole schedule of every sample is checked for overlap on the
nanosecond times themselves, where the rounding the trace used before (``ts`` and
``dur`` each rounded) overlaps on every sample.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import analysed_sample, buildable_samples, make_plan

from dagen.cost import estimate
from dagen.export.base import ExportContext
from dagen.export.timeline import emit, slice_ns
from dagen.graph.build import build_graph
from dagen.graph.ir import Coll, EdgeKind, Graph, GroupKind, Kind

TRACE_LIMIT = 120_000
"""A larger sample is traced on its first ranks only, up to about this many nodes (the
checks below hold for any rank filter; a whole 700k-node trace parses to GBs of dicts)."""


def _ns(us: float) -> int:
    return round(us * 1000)


def _trace(ctx: ExportContext) -> list[dict[str, Any]]:
    buf = io.BytesIO()
    emit(ctx, buf)
    events: list[dict[str, Any]] = orjson.loads(buf.getvalue())["traceEvents"]
    return events


def problems(events: list[dict[str, Any]]) -> list[str]:
    """Every broken rule of the trace: overlapping slices and flows outside any slice."""
    tracks: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append((_ns(e["ts"]), _ns(e["dur"]), e["args"]["id"]))
    out: list[str] = []
    starts: dict[tuple[int, int], np.ndarray] = {}
    for key, slices in tracks.items():
        slices.sort()
        a = np.array([(s, d) for s, d, _ in slices], dtype=np.int64)
        over = np.flatnonzero(a[1:, 0] < a[:-1, 0] + a[:-1, 1])
        out += [f"{key}: {slices[i][2]} overlaps {slices[i + 1][2]}" for i in over]
        starts[key] = a
    for e in events:
        if e["ph"] in ("s", "t", "f"):
            a, t = starts.get((e["pid"], e["tid"])), _ns(e["ts"])
            if a is None or not np.any((a[:, 0] <= t) & (t <= a[:, 0] + a[:, 1])):
                out.append(f"flow {e['cat']} {e['id']} at {t} ns joins no slice on {e['pid']}")
    return out


def _slice_at(events: list[dict[str, Any]]) -> dict[tuple[int, int, int], str]:
    """(pid, tid, ns) → the id of the slice starting there last (flows bind at ts)."""
    at: dict[tuple[int, int, int], str] = {}
    for e in events:
        if e["ph"] == "X":
            at[(e["pid"], e["tid"], _ns(e["ts"]))] = e["args"]["id"]
    return at


def _flows(events: list[dict[str, Any]], cat: str) -> dict[int, list[dict[str, Any]]]:
    flows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["ph"] in ("s", "t", "f") and e["cat"] == cat:
            flows[e["id"]].append(e)
    return flows


def _ctx(name: str) -> ExportContext:
    analysis = analysed_sample(name)
    graph = analysis.graph
    assert graph is not None and analysis.estimate is not None
    ranks = None
    if graph.n_nodes > TRACE_LIMIT:
        keep = max(1, graph.world * TRACE_LIMIT // graph.n_nodes)
        ranks = frozenset(range(keep))
    return ExportContext(graph=graph, estimate=analysis.estimate, ranks=ranks)


@pytest.mark.parametrize("name", buildable_samples())
def test_sample_trace_has_no_overlap_and_every_flow_joins_slices(name: str) -> None:
    ctx = _ctx(name)
    events = _trace(ctx)
    assert problems(events) == []
    graph = ctx.graph
    _check_p2p(graph, events)
    _check_collectives(graph, events)


def _check_p2p(graph: Graph, events: list[dict[str, Any]]) -> None:
    ids = {e["args"]["id"]: e for e in events if e["ph"] == "X"}
    for flow, (s, f) in ((k, v) for k, v in _flows(events, "p2p").items()):
        assert (s["ph"], f["ph"]) == ("s", "f")
        recv = graph.dst[(graph.src == flow) & (graph.ekind == EdgeKind.P2P)]
        assert recv.size == 1
        send = ids[graph.node_id(flow)]
        assert send["cat"] == "send" and (send["pid"], send["tid"]) == (s["pid"], s["tid"])
        assert _ns(send["ts"]) <= _ns(s["ts"]) <= _ns(send["ts"]) + _ns(send["dur"])
        r = ids[graph.node_id(int(recv[0]))]
        assert r["cat"] == "recv" and r["pid"] == f["pid"] and r["tid"] == f["tid"]
        assert _ns(r["ts"]) <= _ns(f["ts"]) <= _ns(r["ts"]) + _ns(r["dur"])
    shown = {int(i) for i in np.flatnonzero(graph.kind == Kind.SEND)}
    traced = {graph.node_id(i) for i in shown} & set(ids)
    assert len(_flows(events, "p2p")) <= len(traced)


def _check_collectives(graph: Graph, events: list[dict[str, Any]]) -> None:
    xs = [e for e in events if e["ph"] == "X" and e["cat"] == "collective"]
    members: dict[int, set[int]] = defaultdict(set)
    slices = {(e["args"]["inst"], e["pid"]): e for e in xs}
    for e in xs:
        args, inst = e["args"], e["args"]["inst"]
        assert args["coll"] == Coll(int(graph.inst_coll[inst])).label
        assert args["group"] == int(graph.inst_group[inst])
        assert e["pid"] in graph.group(args["group"]).tolist()
        members[inst].add(e["pid"])
    flows = _flows(events, "collective")
    for inst, ranks in members.items():
        if len(ranks) < 2:
            assert inst not in flows
            continue
        chain = flows[inst]
        assert [e["ph"] for e in chain] == ["s", *["t"] * (len(ranks) - 2), "f"]
        assert [e["pid"] for e in chain] == sorted(ranks)
        for e in chain:  # mid-slice of that rank's member
            x = slices[(inst, e["pid"])]
            assert _ns(x["ts"]) <= _ns(e["ts"]) <= _ns(x["ts"]) + _ns(x["dur"])
            assert _ns(x["dur"]) < 2 or _ns(x["ts"]) < _ns(e["ts"]) < _ns(x["ts"]) + _ns(x["dur"])
        assert {e["name"] for e in chain} == {Coll(int(graph.inst_coll[inst])).label}
    assert set(flows) <= set(members)


@pytest.fixture(scope="module")
def small() -> ExportContext:
    graph = build_graph(make_plan(tp=2, pp=2, dp=2, micro_batches=2, experts=4, top_k=2, ep=2))
    return ExportContext(graph=graph, estimate=estimate(graph))


def test_checker_catches_a_one_ns_overlap(small: ExportContext) -> None:
    events = _trace(small)
    assert problems(events) == []
    track = [e for e in events if e["ph"] == "X" and (e["pid"], e["tid"]) == (0, 0)]
    first, second = track[0], track[1]
    first["dur"] = (_ns(second["ts"]) - _ns(first["ts"]) + 1) / 1000  # ends 1 ns late
    assert any("overlaps" in p for p in problems(events))


def test_checker_catches_a_flow_outside_every_slice(small: ExportContext) -> None:
    events = _trace(small)
    flow = next(e for e in events if e["ph"] == "f")
    flow["ts"] = max(_ns(e["ts"]) + _ns(e["dur"]) for e in events if e["ph"] == "X") / 1000 + 1
    assert any("joins no slice" in p for p in problems(events))


def test_float_microseconds_would_overlap_and_integer_ns_do_not() -> None:
    """The fault integer nanoseconds fix: ts and dur rounded each from floats give
    ts + dur 1 ns past the next slice's ts; slice_ns never does."""

    class Est:
        start_s = np.array([1.6e-9, 3.2e-9])  # the second starts when the first ends
        duration_s = np.array([1.6e-9, 1e-9])

    start, dur = slice_ns(Est)
    assert np.all(start[1:] >= start[:-1] + dur[:-1])
    ts = np.rint(Est.start_s * 1e9)
    naive_dur = np.rint(Est.duration_s * 1e9)
    assert np.any(ts[1:] < ts[:-1] + naive_dur[:-1])


def test_collective_args_name_the_collective_and_group(small: ExportContext) -> None:
    graph = small.graph
    xs = [e for e in _trace(small) if e["ph"] == "X" and e["cat"] == "collective"]
    assert len(xs) == int((graph.kind == Kind.COLLECTIVE).sum())
    kinds = {GroupKind(int(graph.group_kind[e["args"]["group"]])).label for e in xs}
    assert kinds >= {"tp", "ep"}
    assert {e["args"]["coll"] for e in xs} >= {"all-reduce", "all-to-all"}


@pytest.mark.parametrize("name", buildable_samples())
def test_every_track_of_every_sample_is_free_of_overlap(name: str) -> None:
    """The whole schedule, every rank (the traced subset above shows the trace writes
    these numbers): on each (rank, stream), a slice starts at or after the previous end."""
    analysis = analysed_sample(name)
    graph, est = analysis.graph, analysis.estimate
    assert graph is not None and est is not None
    stream = np.asarray(est.stream)

    def overlaps(start: np.ndarray, dur: np.ndarray) -> int:
        order = np.lexsort((np.arange(graph.n_nodes), start, stream, graph.rank))
        s, d, r, t = start[order], dur[order], graph.rank[order], stream[order]
        same = (r[1:] == r[:-1]) & (t[1:] == t[:-1])
        return int(np.sum(same & (s[1:] < s[:-1] + d[:-1])))

    start, dur = slice_ns(est)
    assert (dur >= 0).all() and overlaps(start, dur) == 0
    # The fault: ts and dur each rounded from the float seconds (the trace before integer
    # nanoseconds) overlap by 1 ns on every sample.
    naive = [np.rint(np.asarray(x) * 1e9).astype(np.int64) for x in (est.start_s, est.duration_s)]
    assert overlaps(*naive) > 0
