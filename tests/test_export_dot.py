"""The DOT, SVG and PNG pictures: golden DOT, re-parsing, rendering, hostile names.

DOT is re-parsed with pydot (an independent parser); SVG is parsed as XML. Tests that
need a Graphviz engine are marked ``graphviz``.
"""

from __future__ import annotations

import dataclasses
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydot
import pytest
from conftest import make_plan
from golden import assert_golden

from dagen.codes import Code
from dagen.errors import ExportError
from dagen.export import ExportContext, emit, select_nodes
from dagen.export import svg as svg_mod
from dagen.export.dot import source
from dagen.export.fold import fold_stages
from dagen.export.mdparts import mermaid, stage_rows
from dagen.export.overview import overview
from dagen.export.ranks import selection
from dagen.findings import finding
from dagen.graph.build import build_graph
from dagen.graph.ir import OP_LABELS, Graph, Kind, Op
from dagen.plan.loader import load_plan

PLANS = Path(__file__).parent / "data" / "plans"
# pydot 4 calls pyparsing's camelCase names, which pyparsing 3.2 deprecates.
pytestmark = pytest.mark.filterwarnings(r"ignore:'\w+' deprecated - use:DeprecationWarning")
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
# Elements Graphviz writes; a name smuggled into a label must not add any other.
SVG_TAGS = {"svg", "g", "title", "text", "polygon", "path", "ellipse", "polyline", "a"}
HOSTILE = 'x" ] ; evil -> pwn [label="<b>h</b>" \\N {braces} <script>alert(1)</script> &amp; ünï€ 模型\n\tend\\'


@pytest.fixture(scope="module")
def moe() -> Graph:
    return build_graph(load_plan(PLANS / "tiny_moe.yaml"))


@pytest.fixture(scope="module")
def dense() -> Graph:
    return build_graph(load_plan(PLANS / "tiny_dense.yaml"))


def _bytes(fmt: str, ctx: ExportContext) -> bytes:
    buf = io.BytesIO()
    emit(fmt, ctx, buf)
    return buf.getvalue()


def _parse(dot_text: str) -> pydot.Dot:
    graphs = pydot.graph_from_dot_data(dot_text)
    assert graphs is not None and len(graphs) == 1
    graph: pydot.Dot = graphs[0]
    return graph


def _all_nodes(g: pydot.Graph) -> list[pydot.Node]:
    nodes = [n for n in g.get_nodes() if n.get_name() not in ("node", "edge", "graph")]
    for sub in g.get_subgraphs():
        nodes += _all_nodes(sub)
    return nodes


def _ranks_ctx(g: Graph, **kw: object) -> ExportContext:
    return ExportContext(
        graph=g, view="ranks", ranks=frozenset({0, 4}), microbatches=frozenset({0}), **kw
    )  # type: ignore[arg-type]


# --- DOT -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_dense", "tiny_moe"])
def test_overview_dot_matches_golden(name: str) -> None:
    g = build_graph(load_plan(PLANS / f"{name}.yaml"))
    assert_golden(f"{name}.overview.dot", _bytes("dot", ExportContext(graph=g)))


def test_ranks_dot_matches_golden(moe: Graph) -> None:
    assert_golden("tiny_moe.ranks.dot", _bytes("dot", _ranks_ctx(moe)))


def test_overview_shows_stages_blocks_and_sends(moe: Graph) -> None:
    parsed = _parse(source(ExportContext(graph=moe)))
    clusters = [s.get_name() for s in parsed.get_subgraphs()]
    assert clusters == ["cluster_stage0", "cluster_stage1", "cluster_legend"]
    labels = " ".join(str(n.get("label")) for n in _all_nodes(parsed))
    assert "L0–1 · MoE (2 layers)" in labels and "L2–3 · MoE (2 layers)" in labels
    assert "experts: EP4, 2/rank of 8, top-2" in labels
    assert "all-to-all ×2 (EP)" in labels and "all-reduce ×1 (TP)" in labels
    send = np.flatnonzero(moe.op == Op.PP_SEND)[0]
    nbytes = int(moe.tmpl_bytes[moe.tmpl[send]])
    link = next(e for e in parsed.get_edges() if e.get_destination() == "s1head")
    assert f"{nbytes / 1024:.1f} KiB/rank/micro-batch × 4 ranks" in str(link.get("label"))


def test_overview_reads_layer_kinds_off_the_graph() -> None:
    g = build_graph(
        make_plan(layers=6, pp=2, tp=2, experts=8, ep=2, first_dense_layers=1, moe_layer_freq=2)
    )
    titles = [b.title for s in overview(g).stages for b in s.blocks]
    assert titles == [
        "embedding",
        "L0 · dense (1 layer)",
        "L1 · MoE (1 layer)",
        "L2 · dense (1 layer)",
        "L3 · MoE (1 layer)",
        "L4 · dense (1 layer)",
        "L5 · MoE (1 layer)",
        "LM head",
    ]


def test_decode_overview_draws_the_token_going_back() -> None:
    g = build_graph(make_plan(phase="decode", decode_steps=2, pp=2))
    links = overview(g).links
    assert [(lk.src, lk.dst, lk.decode) for lk in links] == [(0, 1, False), (1, 0, True)]
    assert "style=dashed" in source(ExportContext(graph=g))


def test_overview_folds_like_middle_stages_into_one_box() -> None:
    g = build_graph(make_plan(pp=6, layers=12, tp=2))
    parsed = _parse(source(ExportContext(graph=g)))
    clusters = [s.get_name() for s in parsed.get_subgraphs()]
    assert clusters == ["cluster_stage0", "cluster_stage1", "cluster_stage5", "cluster_legend"]
    labels = " ".join(str(n.get("label")) for n in _all_nodes(parsed))
    assert "stages 1–4 (4 stages, 2 layers each): L2–9, 2 GPUs each" in labels
    assert "L2–9 · dense (2 layers per stage)" in labels and "L4–5" not in labels
    sends = sorted((e.get_source(), e.get_destination()) for e in parsed.get_edges())
    assert ("s0b1", "s1head") in sends and ("s1b0", "s5head") in sends
    assert not any(dst in ("s2head", "s3head", "s4head") for _, dst in sends)
    # The per-stage table of the report stays unfolded.
    rows = stage_rows(overview(g), g)
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4, 5]
    chart = mermaid(overview(g))
    assert chart.count("subgraph") == 3 and "s1 ==>" in chart and "s2b0" not in chart


def test_overview_keeps_unlike_middle_stages_apart() -> None:
    # first_dense_layers=3 puts dense layers on stage 1 (layers 2–3) only.
    plan = make_plan(pp=6, layers=12, tp=2, experts=8, ep=2, first_dense_layers=3)
    ov = overview(build_graph(plan))
    runs, links = fold_stages(ov.stages, ov.links)
    assert [[s.index for s in r.stages] for r in runs] == [[0], [1], [2, 3, 4], [5]]
    assert [(lk.src, lk.dst) for lk in links] == [(0, 1), (1, 2), (2, 5)]
    # Fewer than three like stages stay apart; a shorter minimum folds them.
    pp4 = overview(build_graph(make_plan(pp=4, layers=8)))
    assert len(fold_stages(pp4.stages, pp4.links)[0]) == 4
    assert len(fold_stages(pp4.stages, pp4.links, min_run=2)[0]) == 3


def test_ranks_view_draws_exactly_the_selection(moe: Graph) -> None:
    ctx = _ranks_ctx(moe)
    parsed = _parse(source(ctx))
    picked = select_nodes(moe, ctx.ranks, None, ctx.microbatches)
    names = {n.get_name() for n in _all_nodes(parsed)}
    drawn = {int(n[1:]) for n in names if re.fullmatch(r"n\d+", n)}
    assert drawn == set(picked.tolist())
    clusters = [s.get_name() for s in parsed.get_subgraphs() if s.get_name().startswith("cluster")]
    assert clusters == ["cluster_rank0", "cluster_rank4"]
    # instances joining both ranks (TP groups are {0,1} and {4,5}: none); p2p 0 → 4 is drawn
    p2p = [e for e in parsed.get_edges() if e.get("penwidth") == "2"]
    assert len(p2p) == int(np.sum((moe.kind[picked] == Kind.SEND) & np.isin(moe.aux[picked], [4])))


def _pair_ctx(moe: Graph) -> ExportContext:
    """The ranks view of ranks 0 and 1 (a TP pair, half an EP group), layer 0, mb 0."""
    return ExportContext(
        graph=moe,
        view="ranks",
        ranks=frozenset({0, 1}),
        layers=frozenset({0}),
        microbatches=frozenset({0}),
    )


def test_ranks_view_joins_collective_members_to_a_shared_instance(moe: Graph) -> None:
    ctx = _pair_ctx(moe)
    parsed = _parse(source(ctx))
    inst_nodes = [n.get_name() for n in _all_nodes(parsed) if re.fullmatch(r"i\d+", n.get_name())]
    picked = select_nodes(moe, ctx.ranks, ctx.layers, ctx.microbatches)
    coll = picked[moe.kind[picked] == Kind.COLLECTIVE]
    insts = {int(i) for i in moe.inst[coll].tolist()}
    assert {int(n[1:]) for n in inst_nodes} == insts
    dashed = [e for e in parsed.get_edges() if e.get("style") == "dashed"]
    assert len(dashed) == coll.size


def test_detail_view_refuses_to_draw_too_much_and_says_how_to_narrow(moe: Graph) -> None:
    ctx = ExportContext(graph=moe, view="ranks", max_detail_nodes=40)
    with pytest.raises(ExportError) as err:
        source(ctx)
    msg = str(err.value)
    default = selection(moe, None, None, None)  # every rank, the first micro-batch
    assert set(moe.mb[default].tolist()) == {0} and default.size == int(np.sum(moe.mb == 0))
    assert f"would draw {default.size:,} nodes, over the limit of 40" in msg
    assert "--ranks 0-1 --layers 0 --microbatches 0" in msg
    suggested = selection(moe, frozenset({0, 1}), frozenset({0}), frozenset({0})).size
    assert f"draws {suggested:,} nodes" in msg
    assert source(
        ExportContext(
            graph=moe,
            view="ranks",
            ranks=frozenset({0, 1}),
            layers=frozenset({0}),
            microbatches=frozenset({0}),
            max_detail_nodes=suggested,
        )
    )


def test_empty_selection_is_an_error(moe: Graph) -> None:
    with pytest.raises(ExportError, match="selects no node"):
        source(ExportContext(graph=moe, view="ranks", ranks=frozenset({99})))


def test_dot_is_deterministic(moe: Graph) -> None:
    again = build_graph(load_plan(PLANS / "tiny_moe.yaml"))
    for ctx_a, ctx_b in (
        (ExportContext(graph=moe), ExportContext(graph=again)),
        (_ranks_ctx(moe), _ranks_ctx(again)),
    ):
        assert _bytes("dot", ctx_a) == _bytes("dot", ctx_b)


def test_hostile_names_stay_text_in_dot() -> None:
    g = build_graph(
        make_plan(
            plan_name=HOSTILE, name='<img src=x onerror=alert(1)>"}{', pp=2, tp=2, experts=8, ep=2
        )
    )
    for ctx in (ExportContext(graph=g), _ranks_ctx(g)):
        parsed = _parse(source(ctx))
        names = {n.get_name() for n in _all_nodes(parsed)}
        assert "pwn" not in names and "evil" not in names
        title = parsed.get_graph_defaults()[0]["label"]
        assert "<script>alert(1)</script>" in title and "\\\\N" in title and "模型" in title
        assert "\n" not in title and "\t" not in title


# --- SVG and PNG -----------------------------------------------------------------------


@pytest.mark.graphviz
def test_svg_is_xml_with_a_tooltip_per_node(moe: Graph) -> None:
    ctx = _ranks_ctx(moe)
    root = ET.fromstring(_bytes("svg", ctx))
    assert root.tag == f"{SVG}svg"
    picked = select_nodes(moe, ctx.ranks, None, ctx.microbatches)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    titles = {g.findtext(f"{SVG}title") for g in groups}
    assert {f"n{i}" for i in picked.tolist()} <= titles
    tips = {a.get(f"{XLINK}title", "") for a in root.iter(f"{SVG}a")}
    assert any(t.startswith(moe.node_id(int(picked[0]))) for t in tips)


@pytest.mark.graphviz
def test_svg_bytes_are_equal_across_runs(moe: Graph) -> None:
    ctx = ExportContext(graph=moe)
    assert _bytes("svg", ctx) == _bytes(
        "svg", ExportContext(graph=build_graph(load_plan(PLANS / "tiny_moe.yaml")))
    )


@pytest.mark.graphviz
def test_hostile_names_inject_no_svg_markup() -> None:
    g = build_graph(make_plan(plan_name=HOSTILE, name="<svg onload=alert(1)>", pp=2))
    for ctx in (ExportContext(graph=g), _ranks_ctx(g)):
        root = ET.fromstring(_bytes("svg", ctx))
        assert {el.tag.removeprefix(SVG) for el in root.iter()} <= SVG_TAGS
        texts = " ".join(el.text or "" for el in root.iter(f"{SVG}text"))
        assert "<script>alert(1)</script>" in texts and "<svg onload=alert(1)>" in texts


@pytest.mark.graphviz
def test_png_renders(dense: Graph) -> None:
    assert _bytes("png", ExportContext(graph=dense)).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.graphviz
def test_graphviz_chatter_on_stderr_is_silenced(
    dense: Graph, capfd: pytest.CaptureFixture[str]
) -> None:
    _bytes("svg", ExportContext(graph=dense))
    assert capfd.readouterr().err == ""


def test_no_engine_says_how_to_install(dense: Graph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svg_mod, "engine", lambda: "")
    with pytest.raises(ExportError, match="pip install pygraphviz"):
        _bytes("svg", ExportContext(graph=dense))


def test_a_failing_dot_program_is_reported() -> None:
    with pytest.raises(ExportError, match="exited with status 1"):
        svg_mod._binary("false", "digraph { a }", "svg")


def test_select_nodes_keeps_non_layer_nodes_of_the_chosen_ranks(moe: Graph) -> None:
    picked = select_nodes(moe, frozenset({4}), frozenset({2}), frozenset({1}))
    assert picked.size and np.all(np.diff(picked) > 0)
    assert set(moe.rank[picked].tolist()) == {4} and set(moe.mb[picked].tolist()) == {1}
    assert set(moe.layer[picked].tolist()) == {-1, 2}
    expected = np.flatnonzero(
        (moe.rank == 4) & (moe.mb == 1) & ((moe.layer == 2) | (moe.layer < 0))
    )
    assert picked.tolist() == expected.tolist()


def _legend_labels(dot_text: str) -> list[str]:
    legend = next(s for s in _parse(dot_text).get_subgraphs() if s.get_name() == "cluster_legend")
    return [str(e.get("label")).strip('"') for e in legend.get_edges() if e.get("label")] + [
        str(n.get("label")).strip('"') for n in legend.get_nodes() if n.get("fillcolor")
    ]


def test_overview_legend_lists_only_what_the_plan_holds(moe: Graph) -> None:
    # tiny_moe: every layer MoE, PP2 (a pipeline send), prefill (no decode arrow).
    labels = _legend_labels(source(ExportContext(graph=moe)))
    assert "MoE layers: attention + routed experts" in labels and "pipeline send" in labels
    assert not any("dense" in x for x in labels) and "next decode step" not in labels
    pp1 = build_graph(make_plan(pp=1, tp=2, layers=2))  # dense, one stage
    labels = _legend_labels(source(ExportContext(graph=pp1)))
    assert "pipeline send" not in labels and "dense layers: attention + FFN" in labels
    assert not any("MoE" in x for x in labels)


def _title(dot_text: str) -> str:
    m = re.search(r'^\tgraph \[.*?label="((?:[^"\\]|\\.)*)"', dot_text, re.M)
    assert m is not None
    return m.group(1)


def test_overview_title_has_the_verdict_and_key_figures(moe: Graph) -> None:
    from dagen.cost import estimate

    est = estimate(moe)
    lines = _title(source(ExportContext(graph=moe, estimate=est))).split("\\l")
    assert lines[0] == "tiny-moe: ✓ Every check passes"
    assert lines[1].startswith("estimate: memory ") and " · TTFT " in lines[1]
    assert "tokens/s (" in lines[1]
    bad = finding(Code.GRAPH_CYCLE, "deadlock")
    title = _title(source(ExportContext(graph=moe, findings=(bad,))))
    assert title.startswith("tiny-moe: ✗ 1 error, 0 warnings")


def test_overview_stage_headers_are_left_aligned(moe: Graph) -> None:
    heads = [
        n for n in _all_nodes(_parse(source(ExportContext(graph=moe)))) if "head" in n.get_name()
    ]
    assert heads
    for n in heads:
        text = str(n.get("label")).strip('"')
        assert "\\n" not in text and text.endswith("\\l") and text.count("\\l") == 2


def _cluster_x(svg: bytes) -> dict[int, float]:
    """Each rank cluster's left edge in the rendered SVG."""
    root = ET.fromstring(svg)
    out = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        name = title.text or "" if title is not None else ""
        if g.get("class") == "cluster" and (m := re.fullmatch(r"cluster_rank(\d+)", name)):
            poly = g.find(f"{SVG}path")
            d = poly.get("d") if poly is not None else ""
            out[int(m.group(1))] = min(float(x) for x in re.findall(r"M(-?[\d.]+)", d or "M0"))
    return out


@pytest.mark.graphviz
def test_ranks_view_draws_ranks_left_to_right_in_order(moe: Graph) -> None:
    # All eight ranks, joined by hubs and sends: Graphviz's crossing reduction alone draws
    # them 1, 0, 3, 2, 5, 4, 7, 6.
    ctx = ExportContext(graph=moe, view="ranks", ranks=frozenset(range(8)))
    xs = _cluster_x(_bytes("svg", ctx))
    assert sorted(xs) == list(range(8)) and sorted(xs, key=xs.__getitem__) == list(range(8))
    # and a rank's micro-batches left to right: mb0's column before mb1's
    ctx = ExportContext(graph=moe, view="ranks", ranks=frozenset({0, 4}), microbatches=None)
    two = dataclasses.replace(ctx, microbatches=frozenset({0, 1}))
    root = ET.fromstring(_bytes("svg", two))
    x: dict[tuple[int, int], list[float]] = {}
    for g in root.iter(f"{SVG}g"):
        title, label = g.find(f"{SVG}title"), next(g.iter(f"{SVG}text"), None)
        name = title.text or "" if title is not None else ""
        if g.get("class") == "node" and label is not None and re.fullmatch(r"n\d+", name):
            i = int(name[1:])
            x.setdefault((int(moe.rank[i]), int(moe.mb[i])), []).append(float(label.get("x", 0)))
    for r in (0, 4):  # column centres (a column is wider where experts run side by side)
        assert sum(x[(r, 0)]) / len(x[(r, 0)]) < sum(x[(r, 1)]) / len(x[(r, 1)])


@pytest.mark.graphviz
@pytest.mark.parametrize("ranks", [(2, 4, 6), (1, 4, 5), (3, 6, 7), (0, 1, 4, 5), (0, 2, 4, 6)])
def test_ranks_view_keeps_rank_order_when_a_send_skips_drawn_ranks(
    moe: Graph, ranks: tuple[int, ...]
) -> None:
    # Stage 0 (ranks 0-3) sends to stage 1 (4-7): rank r's peer is r + 4. In each
    # selection a drawn rank lies between a sender and its peer; a send's arrow used to
    # pull the peer next to the sender (2, 6, 4).
    ctx = ExportContext(graph=moe, view="ranks", ranks=frozenset(ranks))
    text = source(ctx)
    assert any(
        re.search(r"n(\d+) -> n(\d+) \[.*color=\"#c0392b\"", line) for line in text.splitlines()
    )
    xs = _cluster_x(_bytes("svg", ctx))
    assert sorted(xs, key=xs.__getitem__) == list(ranks)


def test_ranks_view_default_is_one_micro_batch_and_says_so(moe: Graph) -> None:
    text = source(ExportContext(graph=moe, view="ranks", ranks=frozenset({0})))
    drawn = {int(n[1:]) for n in re.findall(r"^\s+(n\d+) \[", text, re.M)}
    assert drawn and set(moe.mb[list(drawn)].tolist()) == {0}
    assert "micro-batch 0 of 0-1 (--microbatches for more)" in text


def test_ranks_view_keeps_non_layer_nodes_only_beside_drawn_layers(moe: Graph) -> None:
    # Stage 0 holds L0-1 and ends with pp.send; stage 1 holds L2-3, starts with pp.recv and
    # ends with the LM head chain.
    def ops(ranks: set[int], layers: set[int]) -> set[str]:
        idx = selection(moe, frozenset(ranks), frozenset(layers), frozenset({0}))
        return {OP_LABELS[int(o)] for o in moe.op[idx][moe.layer[idx] < 0]}

    assert "pp.send" not in ops({0}, {0}) and "embed" in ops({0}, {0})
    assert "pp.send" in ops({0}, {1}) and "embed" not in ops({0}, {1})
    head = {OP_LABELS[int(o)] for o in moe.op[moe.rank == 4]} & {"lm.head", "sample"}
    assert head and not head & ops({4}, {2}) and "pp.recv" in ops({4}, {2})
    assert head <= ops({4}, {3}) and "pp.recv" not in ops({4}, {3})


def test_ranks_view_hub_names_its_op_and_how_many_of_its_ranks_are_drawn(moe: Graph) -> None:
    ctx = _pair_ctx(moe)
    hubs = [n for n in _all_nodes(_parse(source(ctx))) if re.fullmatch(r"i\d+", n.get_name())]
    labels = {str(n.get("label")).strip('"') for n in hubs}
    assert "moe.dispatch L0 mb0\\nall-to-all over EP\\n2 of 4 ranks" in labels  # EP4: 2 drawn
    assert "attn.allreduce L0 mb0\\nall-reduce over TP\\nall 2 ranks" in labels
    legend = next(n for n in _all_nodes(_parse(source(ctx))) if n.get_name() == "legend")
    text = str(legend.get("label"))
    assert "one all-to-all, dashed to its drawn members" in text and "moe.* ops" in text
    assert "stream order" not in text or "dotted" in text
