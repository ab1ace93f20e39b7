"""The Chrome trace-event timeline of a simulated schedule: structure Perfetto accepts."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from conftest import make_plan

import dagen.export.timeline as timeline
from dagen.cost import estimate
from dagen.errors import ExportError
from dagen.export.base import ExportContext
from dagen.export.timeline import STREAM_NAMES, emit
from dagen.graph.build import build_graph

PLAN = dict(tp=2, pp=2, dp=2, micro_batches=2, batch=4, experts=4, top_k=2, ep=2, gpus_per_node=4)


@pytest.fixture(scope="module")
def ctx() -> ExportContext:
    graph = build_graph(make_plan(**PLAN))
    return ExportContext(graph=graph, estimate=estimate(graph))


def _trace(ctx: ExportContext) -> dict[str, Any]:
    buf = io.BytesIO()
    emit(ctx, buf)
    doc: dict[str, Any] = json.loads(buf.getvalue())
    return doc


def test_every_node_is_a_complete_event_on_its_rank_and_stream(ctx: ExportContext) -> None:
    doc = _trace(ctx)
    assert doc["displayTimeUnit"] == "ms"
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    graph, est = ctx.graph, ctx.estimate
    assert len(xs) == graph.n_nodes
    by_id = {e["args"]["id"]: e for e in xs}
    for i in range(graph.n_nodes):
        e = by_id[graph.node_id(i)]
        assert {"name", "cat", "pid", "tid", "ts", "dur"} <= set(e)
        assert e["pid"] == int(graph.rank[i]) and e["tid"] == int(est.stream[i])
        assert e["ts"] == pytest.approx(est.start_s[i] * 1e6, abs=1e-3)
        assert e["dur"] == pytest.approx(est.duration_s[i] * 1e6, abs=1e-3)
        assert e["dur"] >= 0


def test_tracks_are_named_and_time_ordered(ctx: ExportContext) -> None:
    events = _trace(ctx)["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    procs = {e["pid"] for e in meta if e["name"] == "process_name"}
    world = ctx.graph.mesh.world
    assert procs == set(range(world))
    assert names == {(r, t): STREAM_NAMES[t] for r in range(world) for t in (0, 1)}
    first_x = next(k for k, e in enumerate(events) if e["ph"] == "X")
    assert all(e["ph"] == "M" for e in events[:first_x])  # metadata before any event
    ts: dict[tuple[int, int], list[float]] = defaultdict(list)
    for e in events[first_x:]:
        if e["ph"] == "X":
            ts[(e["pid"], e["tid"])].append(e["ts"])
    assert all(t == sorted(t) for t in ts.values())


def test_critical_path_nodes_are_marked(ctx: ExportContext) -> None:
    xs = [e for e in _trace(ctx)["traceEvents"] if e["ph"] == "X"]
    marked = {e["args"]["id"] for e in xs if e["args"].get("critical")}
    assert marked == set(ctx.graph.node_ids(ctx.estimate.critical_path))


def test_output_is_byte_stable_and_streamed_in_chunks(
    ctx: ExportContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = io.BytesIO()
    emit(ctx, whole)
    monkeypatch.setattr(timeline, "CHUNK", 7)
    writes: list[bytes] = []

    class Sink(io.BytesIO):
        def write(self, b: Any) -> int:
            writes.append(bytes(b))
            return super().write(b)

    chunked = Sink()
    emit(ctx, chunked)
    assert chunked.getvalue() == whole.getvalue()
    assert len(writes) > ctx.graph.n_nodes // 7


def test_view_filters_keep_only_the_chosen_ranks(ctx: ExportContext) -> None:
    small = ExportContext(graph=ctx.graph, estimate=ctx.estimate, ranks=frozenset({1, 5}))
    events = _trace(small)["traceEvents"]
    assert {e["pid"] for e in events} == {1, 5}
    assert sum(e["ph"] == "X" for e in events) == int(np.isin(ctx.graph.rank, [1, 5]).sum())


def test_no_estimate_is_an_export_error(ctx: ExportContext) -> None:
    with pytest.raises(ExportError, match="no simulated schedule"):
        emit(ExportContext(graph=ctx.graph), io.BytesIO())
    other = build_graph(make_plan())
    with pytest.raises(ExportError, match="do not match"):
        emit(ExportContext(graph=other, estimate=ctx.estimate), io.BytesIO())
