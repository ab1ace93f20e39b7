"""The JSON exporter, the row builder under it, and the output registry.

Outputs are real exports of graphs built from the tiny plans; they are checked against
golden files, the published schema, networkx's reader and the graph they came from.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import jsonschema
import networkx as nx
import numpy as np
import pytest
from conftest import make_plan
from golden import assert_golden

import dagen.export as export
from dagen.errors import ExportError
from dagen.export import (
    FORMATS,
    ExportContext,
    Format,
    emit,
    format_for,
    outputs,
    registry,
    write_outputs,
)
from dagen.export import json_ as json_mod
from dagen.export.json_ import dag_schema
from dagen.export.schema import OP_PATTERN
from dagen.findings import Finding, Severity
from dagen.graph.build import build_graph
from dagen.graph.ir import OP_LABELS, Graph
from dagen.graph.text import cat, fixed, istr, keyed, strip
from dagen.plan.loader import load_plan

PLANS = Path(__file__).parent / "data" / "plans"
TINY = ("tiny_dense", "tiny_moe")


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> tuple[str, Graph]:
    return request.param, build_graph(load_plan(PLANS / f"{request.param}.yaml"))


@pytest.fixture(scope="module")
def decode_graph() -> Graph:
    return build_graph(make_plan(phase="decode", decode_steps=3, pp=2, tp=2, experts=8, ep=2))


def _json(ctx: ExportContext, fmt: str = "json") -> bytes:
    buf = io.BytesIO()
    emit(fmt, ctx, buf)
    return buf.getvalue()


def _doc(ctx: ExportContext) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_json(ctx))
    return doc


# --- the document ------------------------------------------------------------------


def test_json_matches_golden(tiny: tuple[str, Graph]) -> None:
    name, graph = tiny
    assert_golden(f"{name}.json", _json(ExportContext(graph=graph)))


def test_json_validates_against_its_schema(tiny: tuple[str, Graph]) -> None:
    jsonschema.Draft202012Validator.check_schema(dag_schema())
    doc = _doc(ExportContext(graph=tiny[1]))
    jsonschema.validate(doc, dag_schema())
    assert doc["format"] == "dagen.dag" and doc["version"] == 1


def test_schema_rejects_a_broken_document(tiny: tuple[str, Graph]) -> None:
    doc = _doc(ExportContext(graph=tiny[1]))
    coll = next(n for n in doc["nodes"] if n["kind"] == "collective")
    del coll["inst"]  # a collective must name its instance
    with pytest.raises(jsonschema.ValidationError, match="inst"):
        jsonschema.validate(doc, dag_schema())
    doc = _doc(ExportContext(graph=tiny[1]))
    doc["nodes"][0]["op"] = "Attn Magic"  # not an op label
    with pytest.raises(jsonschema.ValidationError, match="Attn Magic"):
        jsonschema.validate(doc, dag_schema())


def test_schema_accepts_an_op_a_newer_dagen_adds(tiny: tuple[str, Graph]) -> None:
    doc = _doc(ExportContext(graph=tiny[1]))
    doc["nodes"][0]["op"] = "attn.qknorm"  # not an op of this dagen, but one a later may add
    jsonschema.validate(doc, dag_schema())
    op = dag_schema()["properties"]["nodes"]["items"]["properties"]["op"]
    assert "enum" not in op and op["examples"] == list(OP_LABELS)
    assert all(re.fullmatch(OP_PATTERN, label) for label in OP_LABELS)


def test_node_rows_match_the_graph(tiny: tuple[str, Graph]) -> None:
    g = tiny[1]
    doc = _doc(ExportContext(graph=g))
    nodes = doc["nodes"]
    assert [n["id"] for n in nodes] == g.node_ids(np.arange(g.n_nodes))
    assert [n["rank"] for n in nodes] == g.rank.tolist()
    assert [n["stage"] for n in nodes] == g.mesh.stage[g.rank].tolist()
    assert [n["host"] for n in nodes] == g.mesh.host[g.rank].tolist()
    assert [n["bytes"] for n in nodes] == g.tmpl_bytes[g.tmpl].tolist()
    assert [n["shape"] for n in nodes] == [list(g.tmpl_shape[t]) for t in g.tmpl.tolist()]
    coll = [i for i, n in enumerate(nodes) if n["kind"] == "collective"]
    assert coll and [nodes[i]["inst"] for i in coll] == g.inst[coll].tolist()
    assert [nodes[i]["group"] for i in coll] == g.aux[coll].tolist()
    p2p = [i for i, n in enumerate(nodes) if n["kind"] in ("send", "recv")]
    assert p2p and [nodes[i]["peer"] for i in p2p] == g.aux[p2p].tolist()
    assert len(doc["collectives"]) == g.n_inst and len(doc["groups"]) == len(g.group_kind)
    assert doc["groups"][0]["members"] == g.group(0).tolist()


def test_decode_ids_carry_the_step_and_experts(decode_graph: Graph) -> None:
    g = decode_graph
    doc = _doc(ExportContext(graph=g))
    ids = [n["id"] for n in doc["nodes"]]
    assert ids == g.node_ids(np.arange(g.n_nodes))
    assert len(set(ids)) == len(ids)
    assert any("/t2/" in i for i in ids) and any(".e" in i for i in ids)
    jsonschema.validate(doc, dag_schema())


def test_networkx_reads_it_back_as_the_same_graph(tiny: tuple[str, Graph]) -> None:
    g = tiny[1]
    loaded = nx.node_link_graph(_doc(ExportContext(graph=g)))
    expected = g.to_networkx()
    assert loaded.is_directed() and loaded.is_multigraph()
    assert sorted(loaded.nodes) == sorted(expected.nodes)
    for node, attrs in expected.nodes(data=True):
        got = loaded.nodes[node]
        for key in (
            "rank",
            "stage",
            "layer",
            "mb",
            "step",
            "op",
            "kind",
            "expert",
            "bytes",
            "flops",
        ):
            assert got[key] == attrs[key], (node, key)
    edges = sorted((u, v, d["kind"]) for u, v, d in loaded.edges(data=True))
    assert edges == sorted((u, v, d["kind"]) for u, v, d in expected.edges(data=True))


def test_chunk_boundaries_do_not_change_the_bytes(
    tiny: tuple[str, Graph], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _json(ExportContext(graph=tiny[1]))
    monkeypatch.setattr(json_mod, "CHUNK_ROWS", 7)
    assert _json(ExportContext(graph=tiny[1])) == whole


def test_findings_and_estimate_are_included(tiny: tuple[str, Graph]) -> None:
    from dagen.cost import estimate

    g = tiny[1]
    finding = Finding(
        code="X-TEST", severity=Severity.WARNING, message='say "hi" \\ <b>', nodes=(g.node_id(0),)
    )
    est = estimate(g)
    doc = _doc(ExportContext(graph=g, findings=(finding,), estimate=est))
    jsonschema.validate(doc, dag_schema())
    assert doc["findings"][0]["message"] == 'say "hi" \\ <b>'
    start = np.array([n["start_s"] for n in doc["nodes"]])
    duration = np.array([n["duration_s"] for n in doc["nodes"]])
    np.testing.assert_allclose(start, est.start_s, atol=1e-12)
    np.testing.assert_allclose(duration, est.duration_s, atol=1e-12)
    assert doc["estimate"]["makespan_s"] == pytest.approx(est.makespan_s)
    assert doc["estimate"]["critical_path"]["nodes"] == g.node_ids(est.critical_path)


def test_json_gz_is_the_same_document_and_deterministic(tiny: tuple[str, Graph]) -> None:
    ctx = ExportContext(graph=tiny[1])
    packed = _json(ctx, "json.gz")
    assert gzip.decompress(packed) == _json(ctx)
    assert (
        _json(ExportContext(graph=build_graph(load_plan(PLANS / f"{tiny[0]}.yaml"))), "json.gz")
        == packed
    )


def test_schema_is_printable_json() -> None:
    schema = dag_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"].startswith("https://json-schema.org/")


# --- the row builder ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [[3, -1, 12, 0], list(range(-5, 5000, 7)), [10**12, -(10**9), 7]]
)
def test_istr_spells_integers(values: list[int]) -> None:
    text = strip(cat(istr(np.array(values)), b",", n=len(values)))
    assert text == b"".join(f"{v},".encode() for v in values)


def test_fixed_rounds_to_the_digit_and_writes_null() -> None:
    x = np.array([0.0, 1.5, 2e-9, -0.25, -1e-13, 3e7, np.inf, np.nan, 123.456789012345678])
    text = strip(cat(fixed(x), b" ", n=x.size)).decode().split()
    assert text[-3:-1] == ["null", "null"] and text[0] == "0.000000000000"
    for value, word in zip(x, text, strict=True):
        if np.isfinite(value):
            assert abs(float(word) - value) <= 5e-13 * max(1.0, abs(value))
    assert text[4] == "0.000000000000"  # no "-0"


def test_keyed_renders_each_key_once_in_both_paths() -> None:
    calls: list[int] = []

    def render(u: np.ndarray) -> np.ndarray:
        calls.append(u.size)
        return cat(b"<", istr(u), b">", n=u.size)

    for keys in (np.array([5, 3, 5, 3, 9]), np.array([1, 10**9, 1])):
        calls.clear()
        assert strip(keyed(keys, render)) == b"".join(f"<{k}>".encode() for k in keys)
        assert calls == [np.unique(keys).size]


# --- the registry and atomic writes ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("dag.json", "json"),
        ("out/DAG.JSON.GZ", "json.gz"),
        ("timeline.json", "timeline"),
        ("run.trace.json", "timeline"),
        ("mytimeline.json", "json"),
        ("dag.gv", "dot"),
        ("report.markdown", "md"),
        ("pic.png", "png"),
    ],
)
def test_format_for_takes_the_longest_suffix(name: str, fmt: str) -> None:
    assert format_for(Path(name)) == fmt


def test_format_override_and_unknown_formats_list_the_valid_ones() -> None:
    assert format_for("whatever.bin", "SVG") == "svg"
    assert format_for("x", ".json.gz") == "json.gz"
    with pytest.raises(ExportError) as err:
        format_for(Path("dag.xyz"))
    for f in FORMATS.values():
        assert f.name in str(err.value)
        assert (f.suffixes[0] if f.suffixes else "a directory, with --to") in str(err.value)
    assert "dag.xyz" in str(err.value) and "--to" in str(err.value)
    with pytest.raises(ExportError, match="--to"):
        format_for("dag.json", "yaml")


def test_missing_exporter_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Format(
        name="nope",
        suffixes=(".nope",),
        module="dagen.export._absent",
        function="emit",
        description="x",
    )
    monkeypatch.setattr(registry, "FORMATS", {**FORMATS, "nope": broken})
    with pytest.raises(
        ExportError, match=r"nope exporter cannot be loaded.*dagen\.export\._absent"
    ):
        export.emitter("nope")


def test_write_outputs_writes_every_format_with_normal_permissions(
    tiny: tuple[str, Graph], tmp_path: Path
) -> None:
    ctx = ExportContext(graph=tiny[1])
    outs = [
        (tmp_path / "d.json", None),
        (tmp_path / "d.json.gz", None),
        (tmp_path / "d.dot", None),
        (tmp_path / "r.md", None),
    ]
    write_outputs(ctx, outs)
    assert json.loads((tmp_path / "d.json").read_bytes()) == json.loads(
        gzip.decompress((tmp_path / "d.json.gz").read_bytes())
    )
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "d.json").stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.dot", "d.json", "d.json.gz", "r.md"]


def _failing_emitter(ctx: ExportContext, out: Any) -> None:
    out.write(b'{"partial": ')
    raise ExportError("injected failure mid-write")


def test_a_failure_mid_write_leaves_no_partial_file_and_keeps_old_outputs(
    tiny: tuple[str, Graph], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = ExportContext(graph=tiny[1])
    good, bad = tmp_path / "good.json", tmp_path / "bad.dot"
    good.write_text("old good", encoding="utf-8")
    bad.write_text("old bad", encoding="utf-8")
    real = outputs.emitter
    monkeypatch.setattr(
        outputs, "emitter", lambda name: _failing_emitter if name == "dot" else real(name)
    )
    with pytest.raises(ExportError, match="injected"):
        write_outputs(ctx, [(good, None), (bad, None)])
    # the JSON was written in full first, but must not replace its target alone
    assert good.read_text(encoding="utf-8") == "old good"
    assert bad.read_text(encoding="utf-8") == "old bad"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dot", "good.json"]
    fresh = tmp_path / "fresh.dot"
    with pytest.raises(ExportError):
        write_outputs(ctx, [(fresh, None)])
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.dot",
        "good.json",
    ]


def test_bad_outputs_are_refused_before_anything_is_written(
    tiny: tuple[str, Graph], tmp_path: Path
) -> None:
    ctx = ExportContext(graph=tiny[1])
    first = tmp_path / "a.json"
    with pytest.raises(ExportError, match="does not exist"):
        write_outputs(ctx, [(first, None), (tmp_path / "no" / "b.json", None)])
    with pytest.raises(ExportError, match="given twice"):
        write_outputs(ctx, [(first, None), (tmp_path / "." / "a.json", "json")])
    with pytest.raises(ExportError, match="known format"):
        write_outputs(ctx, [(first, None), (tmp_path / "b.xyz", None)])
    assert list(tmp_path.iterdir()) == []


def test_context_rejects_unknown_views() -> None:
    g = build_graph(load_plan(PLANS / "tiny_dense.yaml"))
    with pytest.raises(ExportError, match="overview, ranks"):
        ExportContext(graph=g, view="sideways")


class _Recorder(io.BytesIO):
    """A stream that remembers the size of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, b: Any) -> int:
        self.sizes.append(len(b))
        return super().write(b)


def test_nodes_are_streamed_in_bounded_writes(
    tiny: tuple[str, Graph], monkeypatch: pytest.MonkeyPatch
) -> None:
    g = tiny[1]
    monkeypatch.setattr(json_mod, "CHUNK_ROWS", 64)
    out = _Recorder()
    json_mod.emit(ExportContext(graph=g), out)
    rows = out.getvalue().count(b"\n")
    assert len(out.sizes) > (g.n_nodes + g.n_edges) // 64
    header = len(
        b"".join(json_mod._dumps(v) for v in json_mod.header(ExportContext(graph=g)).values())
    )
    # no write holds more than a chunk of rows (or the header's largest value)
    assert max(out.sizes) < max(header, 64 * 400) and rows > g.n_nodes + g.n_edges


def test_meter_follows_every_row_of_a_streamed_output(
    tiny: tuple[str, Graph], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, g = tiny
    monkeypatch.setattr(json_mod, "CHUNK_ROWS", 5)
    seen: list[tuple[str, int, int]] = []
    write_outputs(ExportContext(graph=g), [(tmp_path / "d.json", None)], lambda *a: seen.append(a))
    rows = int(g.group_kind.shape[0]) + g.n_inst + g.n_nodes + g.n_edges
    assert {phase for phase, _, _ in seen} == {"writing d.json"}
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    assert seen[-1][1:] == (rows, rows)
    assert len(seen) > rows // 5


# --- directory outputs: one file per rank ----------------------------------------------


def _read_dir(root: Path) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    index = json.loads((root / "index.json").read_text())
    files = [
        [json.loads(line) for line in (root / f).read_text().splitlines()] for f in index["files"]
    ]
    return index, files


def test_per_rank_writes_every_node_and_edge_once(tmp_path: Path) -> None:
    g = build_graph(load_plan(PLANS / "tiny_moe.yaml"))
    write_outputs(ExportContext(graph=g), [(tmp_path / "ranks", "per-rank")])
    index, files = _read_dir(tmp_path / "ranks")
    assert index["format"] == "dagen.dag" and len(files) == g.world
    assert (tmp_path / "ranks" / ".dagen").read_text() == "per-rank\n"
    nodes = [row for f in files for row in f if "id" in row]
    edges = [row for f in files for row in f if "source" in row]
    assert len(nodes) == g.n_nodes and len({n["id"] for n in nodes}) == g.n_nodes
    assert len(edges) == g.n_edges
    for r, rows in enumerate(files):  # a rank's file: its nodes, then the edges leaving them
        mine = {row["id"] for row in rows if "id" in row}
        assert all(row["rank"] == r for row in rows if "id" in row)
        assert all(row["source"] in mine for row in rows if "source" in row)
    whole = json.loads(_json(ExportContext(graph=g)))
    assert sorted(nodes, key=lambda n: n["id"]) == sorted(whole["nodes"], key=lambda n: n["id"])


def test_a_directory_dagen_did_not_write_is_refused_unless_forced(tmp_path: Path) -> None:
    g = build_graph(load_plan(PLANS / "tiny_dense.yaml"))
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="did not write"):
        write_outputs(ExportContext(graph=g), [(target, "per-rank")])
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    write_outputs(ExportContext(graph=g), [(target, "per-rank")], force=True)
    assert not (target / "notes.txt").exists() and (target / "index.json").exists()
    write_outputs(ExportContext(graph=g, ranks=frozenset({0})), [(target, "per-rank")])  # ours now
    assert sorted(p.name for p in target.iterdir()) == [".dagen", "index.json", "rank.0.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left beside it


def test_a_failing_output_leaves_no_directory_behind(tmp_path: Path) -> None:
    g = build_graph(load_plan(PLANS / "tiny_dense.yaml"))
    ctx = ExportContext(graph=g, view="ranks", max_detail_nodes=1)  # the ranks view refuses
    with pytest.raises(ExportError, match="ranks view"):
        write_outputs(ctx, [(tmp_path / "ranks", "per-rank"), (tmp_path / "x.dot", None)])
    assert list(tmp_path.iterdir()) == []


def test_a_directory_needs_its_format_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--to with one of: per-rank"):
        format_for(tmp_path)
