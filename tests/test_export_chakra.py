"""The Chakra export (dagen/export/chakra.py): schema, byte round-trip, ASTRA-sim's rules,
the replay against dagen's own makespan, injected faults, and the CLI's refusals."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import buildable_samples, make_plan
from hypothesis import given, settings
from hypothesis import strategies as st

from dagen import api
from dagen.cli import main
from dagen.codes import Code
from dagen.cost import estimate
from dagen.errors import ExportError
from dagen.export import ExportContext, write_outputs
from dagen.export import chakra_schema as et
from dagen.export.chakra import NODE_TYPES, trace_file, trace_name
from dagen.export.chakra_read import Rule, check_traces, read_traces
from dagen.export.chakra_replay import replay
from dagen.findings import finding
from dagen.graph.build import build_graph
from dagen.graph.ir import Coll, EdgeKind, Graph, Kind

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BUILDS = buildable_samples()
"""Every sample with a graph (the seed's world size is wrong on purpose)."""
REPLAYED = ["llama3-405b.yaml", "mixtral-8x7b-ep8.yaml", "seed-moe-10b-fixed.yaml"]
"""Samples read, checked and replayed whole (the reader parses ~20 µs a node in Python; the
two 700k-node samples would take a minute, and their files are round-tripped below)."""


@cache
def _analysis(name: str) -> api.Analysis:
    return api.analyse(api.load_plan(SAMPLES / name))


def _export(ctx: ExportContext, out: Path) -> Path:
    write_outputs(ctx, [(out, "chakra")])
    return out


def _sample_traces(name: str, tmp: Path) -> tuple[api.Analysis, Path]:
    a = _analysis(name)
    assert a.graph is not None and a.estimate is not None
    ctx = ExportContext(graph=a.graph, findings=a.findings, estimate=a.estimate)
    return a, _export(ctx, tmp / "traces")


def _tiny(**over: Any) -> ExportContext:
    """Four ranks: TP2 with sequence parallelism, PP2 (sends and recvs), EP2, two
    micro-batches: every node kind and collective dagen emits."""
    fields: dict[str, Any] = dict(tp=2, pp=2, experts=8, ep=2, micro_batches=2,
                                  sequence_parallel=True)  # fmt: skip
    g = build_graph(make_plan(**(fields | over)))
    return ExportContext(graph=g, estimate=estimate(g))


# The public schema's numbers (mlcommons/chakra schema/protobuf/et_def.proto), typed in
# from that file: the .proto dagen parses must agree with them.
PUBLIC_FIELDS = {
    "Node": {"id": 1, "name": 2, "type": 3, "ctrl_deps": 4, "data_deps": 5,
             "start_time_micros": 6, "duration_micros": 7, "inputs": 8, "outputs": 9, "attr": 10},
    "GlobalMetadata": {"version": 1, "attr": 2},
    "AttributeProto": {"name": 1, "doc_string": 2, "double_val": 3, "float_val": 5,
                       "int32_val": 7, "int64_val": 9, "uint32_val": 11, "uint64_val": 13,
                       "sint32_val": 15, "sint64_val": 17, "fixed32_val": 19, "fixed64_val": 21,
                       "sfixed32_val": 23, "sfixed64_val": 25, "bool_val": 27, "string_val": 29,
                       "bytes_val": 31},
    "IOInfo": {"values": 1, "shapes": 2, "types": 3},
}  # fmt: skip
PUBLIC_ENUMS = {
    "NodeType": ["INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE", "COMP_NODE",
                 "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE", "STORAGE_NODE",
                 "BATCH_NODE", "CHECKPOINT_NODE"],
    "CollectiveCommType": ["ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER",
                           "BROADCAST", "ALL_TO_ALL", "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK",
                           "BARRIER"],
}  # fmt: skip


def test_schema_numbers_are_the_public_ones() -> None:
    for message, fields in PUBLIC_FIELDS.items():
        desc = getattr(et, message).DESCRIPTOR if hasattr(et, message) else None
        desc = desc or et.Node.DESCRIPTOR.file.message_types_by_name[message]
        assert {f.name: f.number for f in desc.fields} == fields, message
    node = et.Node.DESCRIPTOR.fields_by_name
    assert list(et.Node(ctrl_deps=[2, 1], data_deps=[3]).ctrl_deps) == [2, 1]  # repeated
    assert node["type"].enum_type.name == "NodeType"
    values = et.AttributeProto.DESCRIPTOR.oneofs_by_name["value"].fields
    assert {f.name for f in values} == set(PUBLIC_FIELDS["AttributeProto"]) - {"name", "doc_string"}
    for name, members in PUBLIC_ENUMS.items():
        enum = et.Node.DESCRIPTOR.file.enum_types_by_name[name]
        assert [(v.name, v.number) for v in enum.values] == [(m, i) for i, m in enumerate(members)]


def test_packed_deps_and_oneof_defaults_encode_as_protobuf_says() -> None:
    node = et.Node(id=1, data_deps=[0, 300], attr=[et.AttributeProto(name="x", bool_val=False)])
    # field 5 packed: tag 0x2a, 3 bytes: 0x00, 0xac 0x02; a oneof member is written even at 0.
    assert node.SerializeToString().hex() == "08012a0300ac02" + "5206" + "0a0178" + "d80100"


def test_a_line_the_schema_reader_does_not_know_is_refused() -> None:
    parser = et._Parser()
    with pytest.raises(ValueError, match="cannot read line"):
        parser.line("map<string, int32> m = 3;")


def _rank_files(g: Graph) -> list[int]:
    return list(range(g.world)) if g.world <= 16 else [0, g.world // 2, g.world - 1]


def _frames(path: Path) -> list[bytes]:
    return list(et.frames(path.read_bytes()))


@pytest.mark.parametrize("name", BUILDS)
def test_every_sample_round_trips_through_protobuf(name: str, tmp_path: Path) -> None:
    """Every node parses with protobuf and serializes back to the bytes dagen wrote, and
    says what the graph says (files of every rank up to 16 ranks, else three)."""
    a, out = _sample_traces(name, tmp_path)
    g = a.graph
    assert g is not None
    prefix = trace_name(g.name)
    assert sorted(p.name for p in out.glob("*.et")) == sorted(
        trace_file(prefix, r) for r in range(g.world)
    )
    groups = json.loads((out / et.COMM_GROUP_FILE).read_text())
    assert groups == {str(i + 1): g.group(i).tolist() for i in range(len(g.group_kind))}
    for r in _rank_files(g):
        frames = _frames(out / trace_file(prefix, r))
        meta = et.GlobalMetadata.FromString(frames[0])
        assert meta.version == et.VERSION
        nodes = [et.Node.FromString(b) for b in frames[1:]]
        assert [n.SerializeToString() for n in nodes] == frames[1:]
        _same_as_graph(g, r, nodes)


def _same_as_graph(g: Graph, r: int, nodes: list[Any]) -> None:
    mine = np.flatnonzero(g.rank == r)
    assert [n.id for n in nodes] == list(range(mine.size))
    assert [n.name for n in nodes] == g.node_ids(mine)
    assert [n.type for n in nodes] == [NODE_TYPES[Kind(k)] for k in g.kind[mine]]
    for n, i in zip(nodes, mine, strict=True):
        attrs = {a.name: a for a in n.attr}
        if g.kind[i] == Kind.COMPUTE:
            assert attrs["num_ops"].int64_val == max(1, int(np.ceil(g.tmpl_flops[g.tmpl[i]])))
        if g.kind[i] == Kind.COLLECTIVE:
            size = int(g.tmpl_bytes[g.tmpl[i]])
            if g.inst_coll[g.inst[i]] == Coll.ALL_GATHER:  # per-rank input, exactly
                size, rest = divmod(size, g.group(int(g.aux[i])).size)
                assert rest == 0
            assert attrs["comm_size"].int64_val == size
            assert attrs["pg_name"].string_val == str(g.aux[i] + 1)


@pytest.mark.parametrize("name", REPLAYED)
def test_samples_keep_every_rule_and_replay_to_dagen_s_makespan(name: str, tmp_path: Path) -> None:
    a, out = _sample_traces(name, tmp_path)
    assert a.estimate is not None
    traces = read_traces(out)
    assert [p.render() for p in check_traces(traces)] == []
    run = replay(traces)
    assert run.finished, [p.render() for p in run.problems]
    _within_bound(run.makespan_us, a.estimate.makespan_s, run.bound_us)
    blocking = replay(traces, rendezvous=True)  # sends that wait for their recv
    assert blocking.finished and blocking.makespan_us >= run.makespan_us


def _within_bound(replayed_us: int, exact_s: float, bound_us: int) -> None:
    """The tolerance: below 1 µs per stream a path enters (docs/chakra.md, "Replay"), the
    rounding to whole µs being the only difference between the replay and dagen's schedule."""
    assert abs(replayed_us - exact_s * 1e6) <= bound_us
    assert bound_us >= 1


@pytest.mark.parametrize("over", [{}, {"phase": "decode", "decode_steps": 3}])
def test_tiny_plans_replay_within_the_bound(over: dict[str, Any], tmp_path: Path) -> None:
    """A decode step's nodes last well under 1 µs each, yet no stream loses its time."""
    ctx = _tiny(**over)
    out = _export(ctx, tmp_path / "t")
    traces = read_traces(out)
    assert check_traces(traces) == []
    run = replay(traces)
    assert run.finished
    _within_bound(run.makespan_us, ctx.estimate.makespan_s, run.bound_us)
    # The decode chain's last stage sends its tokens, then posts its next recv, on one
    # stream, as the first stage does: with blocking sends each waits for the other's recv
    # (docs/chakra.md, "Replay"). Prefill has no such pair.
    assert replay(traces, rendezvous=True).finished == (not over)
    g, est = ctx.graph, ctx.estimate
    for t in traces.ranks:
        for on_comm in (False, True):
            kinds = [et.COMP_NODE] if not on_comm else [et.COMM_COLL_NODE, et.COMM_SEND_NODE]
            total = sum(n.duration_us for n in t.nodes if n.type in kinds)
            sel = (g.rank == t.rank) & ((g.kind != Kind.COMPUTE) == on_comm) & (g.kind != Kind.RECV)
            assert abs(total - est.duration_s[sel].sum() * 1e6) <= 0.5 + 1e-6


def test_a_recv_carries_its_posted_time_and_its_transfer_not_its_wait(tmp_path: Path) -> None:
    ctx = _tiny()
    traces = read_traces(_export(ctx, tmp_path / "t"))
    g, est = ctx.graph, ctx.estimate
    sends = {_key(n): n for t in traces.ranks for n in t.nodes if n.type == et.COMM_SEND_NODE}
    run = replay(traces)
    waited = 0
    for t in traces.ranks:
        mine = np.flatnonzero(g.rank == t.rank)
        for n in t.nodes:
            if n.type != et.COMM_RECV_NODE:
                continue
            send = sends[_key(n)]
            assert n.duration_us == send.duration_us  # the transfer
            i = mine[n.id]
            held = est.duration_s[i] * 1e6  # dagen's recv holds its stream while it waits
            waited += held > send.duration_us + 1
            send_rank = n.attr("comm_src")
            assert run.end_us[(t.rank, n.id)] >= run.end_us[(send_rank, send.id)]
    assert waited  # the first stage's sends come late: the split matters here


def _key(n: Any) -> tuple[Any, ...]:
    return n.attr("comm_src"), n.attr("comm_dst"), n.attr("comm_tag"), n.attr("comm_size")


# Fault injection: each rewrites one rank's file with protobuf and expects its rule.


def _rewrite(out: Path, rank: int, edit: Callable[[list[Any]], list[Any]]) -> None:
    path = next(out.glob(f"*.{rank}.et"))
    frames = _frames(path)
    nodes = edit([et.Node.FromString(b) for b in frames[1:]])
    body = [frames[0], *(n.SerializeToString() for n in nodes)]
    path.write_bytes(b"".join(et.varint(len(b)) + b for b in body))


def _first(nodes: list[Any], kind: int, k: int = 0) -> Any:
    return [n for n in nodes if n.type == kind][k]


def _set_attr(node: Any, name: str, **value: Any) -> None:
    for a in node.attr:
        if a.name == name:
            a.ClearField(a.WhichOneof("value"))
            for member, v in value.items():
                setattr(a, member, v)


def _drop_recv(nodes: list[Any]) -> list[Any]:
    gone = _first(nodes, et.COMM_RECV_NODE).id
    return [n for n in nodes if n.id != gone]


def _swap_in_group(nodes: list[Any]) -> list[Any]:
    """Swap the first two collectives of one group that differ in (type, size)."""
    colls = [n for n in nodes if n.type == et.COMM_COLL_NODE]
    a = colls[0]
    b = next(c for c in colls if _pg(c) == _pg(a) and _what(c) != _what(a))
    _swap(a, b)
    return nodes


def _swap_across_groups(nodes: list[Any]) -> list[Any]:
    colls = [n for n in nodes if n.type == et.COMM_COLL_NODE]
    a = colls[0]
    _swap(a, next(c for c in colls if _pg(c) != _pg(a)))
    return nodes


def _pg(n: Any) -> str:
    return str(next(a.string_val for a in n.attr if a.name == "pg_name"))


def _what(n: Any) -> tuple[int, int]:
    attrs = {a.name: a.int64_val for a in n.attr}
    return attrs["comm_type"], attrs["comm_size"]


def _swap(a: Any, b: Any) -> None:
    attrs_a, attrs_b = list(a.attr), list(b.attr)
    del a.attr[:], b.attr[:]
    a.attr.extend(attrs_b)
    b.attr.extend(attrs_a)


def _edit(kind: int, name: str, **value: Any) -> Callable[[list[Any]], list[Any]]:
    def edit(nodes: list[Any]) -> list[Any]:
        _set_attr(_first(nodes, kind), name, **value)
        return nodes

    return edit


def _duplicate_id(nodes: list[Any]) -> list[Any]:
    nodes[1].id = nodes[0].id
    return nodes


def _bad_type(nodes: list[Any]) -> list[Any]:
    nodes[0].type = next(k for k, v in et.NODE_TYPE_NAMES.items() if v == "MEM_LOAD_NODE")
    return nodes


FAULTS: dict[str, tuple[Callable[[list[Any]], list[Any]], Rule]] = {
    "drop a recv": (_drop_recv, Rule.P2P),
    "swap two collectives of a group": (_swap_in_group, Rule.SEQUENCE),
    "swap collectives of two groups": (_swap_across_groups, Rule.DEADLOCK),
    "comm_size as uint64": (_edit(et.COMM_COLL_NODE, "comm_size", uint64_val=8), Rule.ATTR_TYPE),
    "comm_tag as int64": (_edit(et.COMM_SEND_NODE, "comm_tag", int64_val=0), Rule.ATTR_TYPE),
    "num_ops 0": (_edit(et.COMP_NODE, "num_ops", int64_val=0), Rule.NUM_OPS),
    "is_cpu_op true": (_edit(et.COMM_COLL_NODE, "is_cpu_op", bool_val=True), Rule.CPU_OP),
    "pg_name 0": (_edit(et.COMM_COLL_NODE, "pg_name", string_val="0"), Rule.GROUP),
    "recv tag off": (_edit(et.COMM_RECV_NODE, "comm_tag", int32_val=99), Rule.P2P),
    "recv size off": (_edit(et.COMM_RECV_NODE, "comm_size", int64_val=1), Rule.P2P),
    "duplicate id": (_duplicate_id, Rule.IDS),
    "memory node": (_bad_type, Rule.NODE_TYPE),
    "broadcast": (_edit(et.COMM_COLL_NODE, "comm_type", int64_val=5), Rule.COLLECTIVE),
}


@pytest.fixture(scope="module")
def tiny_traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_tiny(), tmp_path_factory.mktemp("chakra") / "clean")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_reader_catches_each_injected_fault(
    fault: str, tiny_traces: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "t"
    shutil.copytree(tiny_traces, out)
    edit, rule = FAULTS[fault]
    rank = 2 if "recv" in fault else 0  # rank 0 is the first stage: its recvs sit on 2, 3
    _rewrite(out, rank, edit)
    traces = read_traces(out)
    found = {p.rule for p in check_traces(traces)} | {p.rule for p in replay(traces).problems}
    assert rule in found, (fault, found)


def test_the_clean_tiny_traces_break_no_rule(tiny_traces: Path) -> None:
    traces = read_traces(tiny_traces)
    assert check_traces(traces) == [] and replay(traces).finished


def test_missing_files_metadata_and_groups_are_reported(tiny_traces: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "t"
    shutil.copytree(tiny_traces, out)
    next(out.glob("*.1.et")).unlink()
    path = next(out.glob("*.2.et"))
    path.write_bytes(b"".join(et.varint(len(b)) + b for b in _frames(path)[1:]))  # no metadata
    (out / et.COMM_GROUP_FILE).write_text("[1, 2]")
    rules = {p.rule for p in check_traces(read_traces(out))}
    assert {Rule.FILES, Rule.METADATA, Rule.GROUP} <= rules


def test_a_directory_without_a_trace_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"NAME\.<rank>\.et"):
        read_traces(tmp_path)


# Refusals.


def test_ranks_and_a_serial_deadlock_are_refused(tmp_path: Path) -> None:
    ctx = _tiny()
    with pytest.raises(ExportError, match="--ranks"):
        write_outputs(
            ExportContext(graph=ctx.graph, ranks=frozenset({0})), [(tmp_path / "a", "chakra")]
        )
    serial = finding(Code.GRAPH_SERIAL_DEADLOCK, "program order deadlocks")
    with pytest.raises(ExportError, match="GRAPH-SERIAL-DEADLOCK"):
        write_outputs(
            ExportContext(graph=ctx.graph, findings=(serial,)), [(tmp_path / "b", "chakra")]
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_an_estimate_the_exporter_simulates_one(tmp_path: Path) -> None:
    ctx = _tiny()
    out = _export(ExportContext(graph=ctx.graph), tmp_path / "t")
    assert replay(read_traces(out)).finished


def test_cli_writes_traces_and_refuses_a_directory_dagen_did_not_write(tmp_path: Path) -> None:
    runner = CliRunner()
    plan = str(SAMPLES / "mixtral-8x7b-ep8.yaml")
    target = tmp_path / "traces"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = runner.invoke(main, ["build", plan, "-o", str(target), "--to", "chakra"])
    assert result.exit_code == 2, result.output
    assert "--force" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    result = runner.invoke(main, ["build", plan, "-o", str(target), "--to", "chakra", "--force"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(
        [".dagen", et.COMM_GROUP_FILE, *(f"mixtral-8x7b-ep8.{r}.et" for r in range(8))]
    )
    again = runner.invoke(main, ["build", plan, "-o", str(target), "--to", "chakra"])
    assert again.exit_code == 0, again.output  # ours now: replaced without --force
    result = runner.invoke(
        main, ["build", plan, "-o", str(tmp_path / "x"), "--to", "chakra", "--ranks", "0"]
    )
    assert result.exit_code == 2 and "--ranks" in result.output


def test_the_export_is_byte_deterministic(tmp_path: Path) -> None:
    a = _export(_tiny(), tmp_path / "a")
    b = _export(_tiny(), tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_trace_names_are_file_safe() -> None:
    assert trace_name("a b/c") == "a-b-c"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", trace_name("Ωmega..plan"))


def test_a_collective_astra_sim_does_not_simulate_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dagen.export import chakra

    kept = {c: v for c, v in chakra.COMM_TYPES.items() if c is not Coll.ALL_TO_ALL}
    monkeypatch.setattr(chakra, "COMM_TYPES", kept)
    with pytest.raises(ExportError, match="all-to-all have no ASTRA-sim network model"):
        _export(_tiny(), tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_a_rank_without_work_gets_one_idle_node() -> None:
    from dagen.export.chakra import _columns
    from dagen.export.chakra_nodes import encode_nodes

    ctx = _tiny()
    rows = encode_nodes(ctx.graph, slice(0, 0), _columns(ctx))
    node = et.Node.FromString(rows.row(0))
    assert rows.n == 1 and node.type == et.COMP_NODE
    assert {a.name: a.WhichOneof("value") for a in node.attr} == {
        "is_cpu_op": "bool_val", "num_ops": "int64_val", "tensor_size": "uint64_val"
    }  # fmt: skip
    assert next(a.int64_val for a in node.attr if a.name == "num_ops") == 1


def test_two_pools_export_keep_every_rule_and_replay(tmp_path: Path) -> None:
    """A prefill pool and a decode pool laid end to end: global ranks and group ids."""
    from dagen.graph.build import build_pools

    moe = dict(experts=8, top_k=2, ep=2)
    prefill = make_plan(pp=2, tp=2, micro_batches=2, batch=4, **moe)
    decode = make_plan(tp=2, dp=2, phase="decode", decode_steps=2, gen_len=4, batch=8, **moe)
    g = build_pools([("prefill", prefill), ("decode", decode)])
    est = estimate(g)
    traces = read_traces(_export(ExportContext(graph=g, estimate=est), tmp_path / "t"))
    assert len(traces.ranks) == g.world == 8
    assert check_traces(traces) == []
    run = replay(traces)
    assert run.finished
    _within_bound(run.makespan_us, est.makespan_s, run.bound_us)


def test_metadata_without_a_version_is_metadata(tiny_traces: Path, tmp_path: Path) -> None:
    """Chakra's own converters write a GlobalMetadata with attributes and no version."""
    import shutil

    out = tmp_path / "t"
    shutil.copytree(tiny_traces, out)
    path = next(out.glob("*.0.et"))
    meta = et.GlobalMetadata(attr=[et.AttributeProto(name="schema", string_val="x")])
    body = [meta.SerializeToString(), *_frames(path)[1:]]
    path.write_bytes(b"".join(et.varint(len(b)) + b for b in body))
    assert check_traces(read_traces(out)) == []


def test_every_order_is_a_data_dependency(tmp_path: Path) -> None:
    """ASTRA-sim's feeder reads only data_deps: the order edges and each stream's previous
    node must be there, and ctrl_deps stay empty."""
    ctx = _tiny()
    g = ctx.graph
    traces = read_traces(_export(ctx, tmp_path / "t"))
    for t in traces.ranks:
        mine = np.flatnonzero(g.rank == t.rank)
        local = {int(i): k for k, i in enumerate(mine)}
        comm = [n.id for n in t.nodes if n.type != et.COMP_NODE]
        comp = [n.id for n in t.nodes if n.type == et.COMP_NODE]
        wanted: dict[int, set[int]] = {n.id: set() for n in t.nodes}
        for chain in (comm, comp):
            for a, b in itertools.pairwise(chain):
                wanted[b].add(a)
        inside = np.isin(g.dst, mine) & np.isin(g.src, mine) & (g.ekind != EdgeKind.P2P)
        for s, d in zip(g.src[inside], g.dst[inside], strict=True):
            wanted[local[int(d)]].add(local[int(s)])
        assert {n.id: set(n.deps) for n in t.nodes} == wanted
        assert all(n.ctrl == () for n in t.nodes)


_U64 = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_U64, st.lists(_U64, max_size=4), st.text(max_size=12), _U64),
        min_size=1,
        max_size=20,
    )
)
def test_the_column_encoder_writes_what_protobuf_writes(rows: list[Any]) -> None:
    """Any ids, dependency lists, names and durations, up to 2⁶⁴ − 1: the columns
    encode each row to protobuf's own bytes for the same Node."""
    from dagen.export import wire

    ids, deps, names, durations = (list(c) for c in zip(*rows, strict=True))
    flat = np.array([d for ds in deps for d in ds], dtype=np.uint64)
    counts = np.array([len(ds) for ds in deps], dtype=np.int64)
    field = {f.name: f.number for f in et.Node.DESCRIPTOR.fields}
    encoded = wire.concat(
        wire.scalar(field["id"], np.array(ids, dtype=np.uint64)),
        wire.delimited(field["name"], wire.strings([n.encode() for n in names])),
        wire.packed(field["data_deps"], flat, counts),
        wire.scalar(field["duration_micros"], np.array(durations, dtype=np.uint64)),
    )
    for i, (id_, ds, name, dur) in enumerate(rows):
        node = et.Node(id=id_, name=name, data_deps=ds, duration_micros=dur)
        assert encoded.row(i) == node.SerializeToString()
