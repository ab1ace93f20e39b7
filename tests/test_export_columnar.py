"""The Parquet tables and the GraphML document, read back by the tools consumers use.

Parquet is read with pyarrow, pandas (through pyarrow), polars and DuckDB; GraphML with
``networkx.read_graphml``. Every read-back is compared with the graph it came from.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import networkx as nx
import numpy as np
import orjson
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import analysed_sample, buildable_samples, make_plan

import dagen.export.parquet as parquet
from dagen.cli import main
from dagen.cost import estimate
from dagen.export import ExportContext, emit, write_outputs
from dagen.export.parquet import EDGE_SCHEMA, GROUP_SCHEMA, NODE_SCHEMA
from dagen.graph.build import build_graph
from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Kind

DATA = Path(__file__).parent / "data" / "plans"
PLAN = dict(tp=2, pp=2, dp=2, micro_batches=2, batch=4, experts=4, top_k=2, ep=2, gpus_per_node=4)


@pytest.fixture(scope="module")
def ctx() -> ExportContext:
    graph = build_graph(make_plan(**PLAN))
    return ExportContext(graph=graph, estimate=estimate(graph))


def _bytes(fmt: str, ctx: ExportContext) -> bytes:
    buf = io.BytesIO()
    emit(fmt, ctx, buf)
    return buf.getvalue()


def _nodes(ctx: ExportContext) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(_bytes("parquet", ctx))).to_pandas()


def test_node_table_holds_every_column_of_the_graph(ctx: ExportContext) -> None:
    g, df = ctx.graph, _nodes(ctx)
    assert list(df.columns) == NODE_SCHEMA.names and len(df) == g.n_nodes
    assert (df["id"].to_numpy() == np.arange(g.n_nodes)).all()
    assert df["name"].tolist() == g.node_ids(np.arange(g.n_nodes))
    for col in ("rank", "layer", "mb", "step", "expert"):
        assert (df[col].to_numpy() == getattr(g, col)).all(), col
    assert df["op"].astype(str).tolist() == [OP_LABELS[o] for o in g.op]
    assert df["kind"].astype(str).tolist() == [Kind(int(k)).label for k in g.kind]
    assert (df["bytes"].to_numpy() == g.tmpl_bytes[g.tmpl]).all()
    assert [list(s) for s in df["shape"]] == [list(g.tmpl_shape[t]) for t in g.tmpl]
    assert (df["start_s"].to_numpy() == ctx.estimate.start_s).all()


def test_not_applicable_values_are_null_and_every_column_is_typed(ctx: ExportContext) -> None:
    g, df = ctx.graph, _nodes(ctx)
    coll, p2p = g.kind == Kind.COLLECTIVE, (g.kind == Kind.SEND) | (g.kind == Kind.RECV)
    assert df["peer"].notna().to_numpy().tolist() == p2p.tolist()
    for col in ("coll", "inst", "group"):
        assert df[col].notna().to_numpy().tolist() == coll.tolist(), col
    assert (df.loc[coll, "inst"].to_numpy() == g.inst[coll]).all()
    assert (df.loc[coll, "group"].to_numpy() == g.aux[coll]).all()
    assert (df.loc[p2p, "peer"].to_numpy() == g.aux[p2p]).all()
    labels = [Coll(int(c)).label for c in g.inst_coll[g.inst[coll]]]
    assert df.loc[coll, "coll"].astype(str).tolist() == labels
    # The first row is a compute node (no coll, inst, group or peer), which is where
    # a schema inferred from the first row loses columns; this one comes whole from the file.
    assert not p2p[0] and not coll[0]
    assert pq.read_schema(io.BytesIO(_bytes("parquet", ctx))).remove_metadata() == NODE_SCHEMA


def test_deps_are_the_entering_edges(ctx: ExportContext) -> None:
    g, df = ctx.graph, _nodes(ctx)
    pairs = sorted(zip(g.dst.tolist(), g.src.tolist(), strict=True))
    from_deps = sorted((i, int(s)) for i, deps in enumerate(df["deps"]) for s in deps)
    assert from_deps == pairs


def test_without_an_estimate_times_are_null_columns(ctx: ExportContext) -> None:
    df = _nodes(ExportContext(graph=ctx.graph))
    assert list(df.columns) == NODE_SCHEMA.names
    assert df["start_s"].isna().all() and df["duration_s"].isna().all()


def test_polars_and_duckdb_read_every_column(ctx: ExportContext, tmp_path: Path) -> None:
    g, path = ctx.graph, tmp_path / "dag.parquet"
    write_outputs(ctx, [(path, None)])
    frame = pl.read_parquet(path)
    assert frame.columns == NODE_SCHEMA.names and frame.height == g.n_nodes
    p2p = int(np.isin(g.kind, [Kind.SEND, Kind.RECV]).sum())
    assert frame["peer"].drop_nulls().len() == p2p > 0
    rows = duckdb.sql(
        f"SELECT kind, count(*), count(peer), count(inst) FROM '{path}' GROUP BY kind ORDER BY kind"
    ).fetchall()
    counts = {Kind(k).label: int((g.kind == k).sum()) for k in Kind}
    assert {r[0]: r[1] for r in rows} == {k: v for k, v in counts.items() if v}
    assert sum(r[2] for r in rows) == p2p and sum(r[3] for r in rows) == counts["collective"]


def test_bytes_are_stable_and_batches_change_nothing(
    ctx: ExportContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _bytes("parquet", ctx)
    assert _bytes("parquet", ctx) == whole
    monkeypatch.setattr(parquet, "BATCH_ROWS", 37)
    monkeypatch.setattr(parquet, "GROUP_BATCHES", 3)
    small = _bytes("parquet", ctx)
    assert pq.ParquetFile(io.BytesIO(small)).num_row_groups > 1
    a, b = pq.read_table(io.BytesIO(whole)), pq.read_table(io.BytesIO(small))
    assert a.equals(b)


def test_directory_form_writes_the_four_tables(ctx: ExportContext, tmp_path: Path) -> None:
    g, out = ctx.graph, tmp_path / "tables"
    write_outputs(ctx, [(out, "parquet")])  # --to parquet on a directory: the tables
    names = sorted(p.name for p in out.iterdir())
    assert names == [".dagen", "collectives.parquet", "edges.parquet", "groups.parquet",
                     "index.json", "nodes.parquet"]  # fmt: skip
    edges = pq.read_table(out / "edges.parquet")
    assert edges.schema.remove_metadata() == EDGE_SCHEMA
    e = edges.to_pandas()
    assert (e["src"].to_numpy() == g.src).all() and (e["dst"].to_numpy() == g.dst).all()
    assert e["kind"].astype(str).tolist() == [EdgeKind(int(k)).label for k in g.ekind]
    groups = pq.read_table(out / "groups.parquet")
    assert groups.schema.remove_metadata() == GROUP_SCHEMA
    members = groups.column("members").to_pylist()
    assert members == [g.group(i).tolist() for i in range(len(g.group_kind))]
    assert pl.read_parquet(out / "groups.parquet")["members"].to_list() == members
    sql = f"SELECT count(*) FROM '{out / 'edges.parquet'}' WHERE kind = 'p2p'"
    assert duckdb.sql(sql).fetchall() == [(int((g.ekind == EdgeKind.P2P).sum()),)]
    colls = pq.read_table(out / "collectives.parquet").to_pandas()
    assert (colls["group"].to_numpy() == g.inst_group).all()
    assert (colls["size"].to_numpy() == [len(members[x]) for x in g.inst_group]).all()
    nodes = pq.read_table(out / "nodes.parquet")
    assert nodes.equals(pq.read_table(io.BytesIO(_bytes("parquet", ctx))))
    index = orjson.loads((out / "index.json").read_bytes())
    assert (index["format"], index["version"]) == ("dagen.parquet", 1)
    assert index["files"] == [
        "nodes.parquet",
        "edges.parquet",
        "collectives.parquet",
        "groups.parquet",
    ]
    assert index["graph"]["nodes"] == g.n_nodes
    meta = orjson.loads(nodes.schema.metadata[b"dagen"])
    assert meta["table"] == "nodes" and meta["graph"]["edges"] == g.n_edges


def predecessors(nodes: pd.DataFrame) -> pd.DataFrame:
    """What must finish before each op (docs/parquet-format.md): its ``deps``, and for a
    collective the ``deps`` of every member of its instance. Columns ``id``, ``pred``."""
    direct = nodes[["id", "deps"]].explode("deps").dropna().rename(columns={"deps": "pred"})
    members = nodes.loc[nodes["inst"].notna(), ["id", "inst"]]
    pairs = members.merge(members, on="inst", suffixes=("", "_member"))
    via = pairs.merge(direct, left_on="id_member", right_on="id", suffixes=("", "_m"))
    joined = pd.concat([direct, via[["id", "pred"]]]).astype({"pred": "int64"})
    return joined.drop_duplicates().reset_index(drop=True)


def test_the_documented_join_gives_what_must_finish_first(ctx: ExportContext) -> None:
    """Every op starts after all its predecessors by the join end (a recv: it is posted
    early and ends once its send, the dependency on another rank, has ended); the join
    reaches other ranks' nodes from collectives."""
    nodes = _nodes(ctx)
    preds = predecessors(nodes)
    end = (nodes["start_s"] + nodes["duration_s"]).to_numpy()
    start, kind = nodes["start_s"].to_numpy(), nodes["kind"].astype(str).to_numpy()
    ids, pred = preds["id"].to_numpy(), preds["pred"].to_numpy()
    remote = (kind[ids] == "recv") & (kind[pred] == "send")  # the p2p edges
    assert remote.sum() == int((ctx.graph.ekind == EdgeKind.P2P).sum()) > 0
    assert (start[ids[~remote]] >= end[pred[~remote]] - 1e-15).all()
    assert (end[ids[remote]] >= end[pred[remote]] - 1e-15).all()
    assert not (start[ids[remote]] >= end[pred[remote]] - 1e-15).all()  # posted before
    # Through its instance, a collective waits for other ranks' nodes, which no edge names.
    rank = nodes["rank"].to_numpy()
    across = (kind[ids] == "collective") & (rank[ids] != rank[pred])
    assert across.any()


@pytest.mark.parametrize("name", buildable_samples())
def test_every_sample_exports_its_tables(name: str, tmp_path: Path) -> None:
    analysis = analysed_sample(name)
    g = analysis.graph
    assert g is not None
    ctx = ExportContext(graph=g, estimate=analysis.estimate)
    write_outputs(ctx, [(tmp_path / "t", "parquet")])
    nodes = pq.read_table(tmp_path / "t" / "nodes.parquet", columns=["rank", "peer", "deps"])
    assert nodes.num_rows == g.n_nodes
    assert nodes.column("peer").null_count == g.n_nodes - int(
        np.isin(g.kind, [Kind.SEND, Kind.RECV]).sum()
    )
    assert sum(len(d) for d in nodes.column("deps").to_numpy(zero_copy_only=False)) == g.n_edges
    assert pq.read_metadata(tmp_path / "t" / "edges.parquet").num_rows == g.n_edges
    assert pq.read_metadata(tmp_path / "t" / "collectives.parquet").num_rows == g.n_inst


def _graphml(ctx: ExportContext) -> nx.DiGraph:
    return nx.read_graphml(io.BytesIO(_bytes("graphml", ctx)))


def test_graphml_loads_in_networkx_with_scalar_attributes(ctx: ExportContext) -> None:
    g, G = ctx.graph, _graphml(ctx)
    ids = g.node_ids(np.arange(g.n_nodes))
    assert list(G.nodes) == ids and G.number_of_edges() == g.n_edges
    assert G.graph["world"] == g.world and G.graph["name"] == g.name
    for i in (
        0,
        int(np.flatnonzero(g.kind == Kind.COLLECTIVE)[0]),
        int(np.flatnonzero(g.kind == Kind.SEND)[0]),
    ):
        attrs = G.nodes[ids[i]]
        assert attrs["rank"] == int(g.rank[i]) and attrs["op"] == OP_LABELS[g.op[i]]
        assert attrs["shape"] == "[" + ",".join(map(str, g.tmpl_shape[g.tmpl[i]])) + "]"
        assert attrs["bytes"] == int(g.tmpl_bytes[g.tmpl[i]])
        assert attrs["start_s"] == pytest.approx(float(ctx.estimate.start_s[i]), abs=1e-12)
        assert ("inst" in attrs) == (g.kind[i] == Kind.COLLECTIVE)
        assert ("peer" in attrs) == (g.kind[i] == Kind.SEND)
    assert all(not isinstance(v, list) for _, a in G.nodes(data=True) for v in a.values())
    kinds = {(u, v): d["kind"] for u, v, d in G.edges(data=True)}
    assert kinds[(ids[int(g.src[0])], ids[int(g.dst[0])])] == EdgeKind(int(g.ekind[0])).label
    assert _bytes("graphml", ctx) == _bytes("graphml", ctx)


def test_cli_writes_parquet_graphml_and_refuses_a_foreign_directory(tmp_path: Path) -> None:
    runner, plan = CliRunner(), str(DATA / "tiny_moe.yaml")
    outs = ["-o", str(tmp_path / "dag.parquet"), "-o", str(tmp_path / "dag.graphml")]
    result = runner.invoke(main, ["-q", "build", plan, *outs])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(tmp_path / "dag.parquet").num_rows > 0
    assert nx.read_graphml(tmp_path / "dag.graphml").number_of_nodes() > 0
    result = runner.invoke(
        main, ["-q", "build", plan, "-o", f"{tmp_path / 'tables'}/", "--to", "parquet"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tables" / "edges.parquet").is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    result = runner.invoke(main, ["-q", "build", plan, "-o", str(foreign), "--to", "parquet"])
    assert result.exit_code == 2 and "--force" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_the_sql_join_in_the_docs_equals_the_pandas_one(ctx: ExportContext, tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "parquet-format.md").read_text()
    sql = doc.split("```sql\n", 1)[1].split("```", 1)[0]
    write_outputs(ctx, [(tmp_path / "tables", "parquet")])
    rows = duckdb.sql(sql.replace("'tables/", f"'{tmp_path / 'tables'}/")).fetchall()
    expected = predecessors(_nodes(ctx))
    assert len(rows) == len(expected) > ctx.graph.n_edges
    assert set(rows) == set(zip(expected["id"].tolist(), expected["pred"].tolist(), strict=True))


def test_the_json_join_in_the_docs_equals_the_parquet_one(ctx: ExportContext) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "json-format.md").read_text()
    code = text.split("## What must finish before an op", 1)[1].split("```python\n", 1)[1]
    scope: dict[str, object] = {"doc": orjson.loads(_bytes("json", ctx))}
    exec(code.split("```", 1)[0], scope)  # the documented snippet, as a reader runs it
    before = scope["before"]
    expected = predecessors(_nodes(ctx))
    names = ctx.graph.node_ids(np.arange(ctx.graph.n_nodes))
    want: dict[str, set[str]] = {}
    for i, p in zip(expected["id"].tolist(), expected["pred"].tolist(), strict=True):
        want.setdefault(names[i], set()).add(names[p])
    got = {n["id"]: before(n) for n in scope["doc"]["nodes"]}  # type: ignore[index, operator]
    assert {k: v for k, v in got.items() if v} == want


def test_suffixes_and_the_directory_form_of_parquet(tmp_path: Path) -> None:
    from dagen.export import format_for

    assert format_for("out/dag.parquet") == "parquet" and format_for("g.GraphML") == "graphml"
    assert format_for("out/dag.parquet", "parquet") == "parquet"
    assert format_for("tables/", "parquet") == format_for("tables", "parquet") == "parquet-dir"
    assert format_for(tmp_path, "parquet") == "parquet-dir"  # an existing directory
    assert format_for("tables", "parquet-dir") == "parquet-dir"


def test_a_multi_pool_graph_exports_its_pools_and_global_ids() -> None:
    from dagen.graph.build import build_pools

    prefill = make_plan(pp=2, tp=2, micro_batches=2, batch=4, experts=8, ep=2)
    decode = make_plan(tp=2, dp=2, phase="decode", decode_steps=2, batch=8, experts=8, ep=2)
    g = build_pools([("prefill", prefill), ("decode", decode)])
    ctx = ExportContext(graph=g, estimate=estimate(g))
    df = _nodes(ctx)
    assert (df["pool"].to_numpy() == g.ranks.pool[g.rank]).all()
    assert set(df["pool"]) == {0, 1} and set(df["phase"].astype(str)) == {"prefill", "decode"}
    coll = g.kind == Kind.COLLECTIVE
    assert (df.loc[coll, "group"].to_numpy() == g.aux[coll]).all()  # ids past pool 0's
    decode_rank0 = g.pools[1].rank0
    for gid, rank in zip(df.loc[coll, "group"], df.loc[coll, "rank"], strict=True):
        members = g.group(int(gid))
        assert rank in members and ((members >= decode_rank0).all() == (rank >= decode_rank0))
    G = _graphml(ctx)
    assert {a["pool"] for _, a in G.nodes(data=True)} == {0, 1}
