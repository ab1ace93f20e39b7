"""Disaggregated deployments: the plan with pools, the KV transfers in the graph, their
checks (each fault injected and caught), the estimates and the outputs."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dagen.checks import check_acyclic, check_graph, check_transfers
from dagen.cli import main
from dagen.cost import estimate
from dagen.cost.disagg import disagg_figures
from dagen.errors import PlanError
from dagen.export import ExportContext, emit
from dagen.graph.algo import add_edges, drop_nodes
from dagen.graph.codes import EdgeKind
from dagen.graph.deployment import build_deployment
from dagen.graph.ir import Graph, Kind, Op
from dagen.graph.lookup import _KV
from dagen.graph.reshard import head_sets, kv_units
from dagen.plan.deploy import Deployment, load_deployment
from dagen.plan.deploy_rules import deployment_findings
from dagen.study import analyse_deployment

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "deploy" / "tiny_disagg.yaml"
SAMPLE = ROOT / "samples" / "deepseek-v3-disagg.yaml"


@pytest.fixture(scope="module")
def dep() -> Deployment:
    return load_deployment(TINY)


@pytest.fixture(scope="module")
def graph(dep: Deployment) -> Graph:
    return build_deployment(dep)


def _codes(g: Graph) -> set[str]:
    return {f.code for f in check_graph(g)}


def _with(g: Graph, **cols: object) -> Graph:
    tr = g.transfers
    assert tr is not None
    return dataclasses.replace(g, transfers=dataclasses.replace(tr, **cols))


# ------------------------------------------------------------------------ the plan


def test_pools_share_the_model_and_workload_and_keep_their_own_layouts(dep: Deployment) -> None:
    pre, dec = dep.pools
    assert (pre.name, dec.name) == ("prefill", "decode")
    assert pre.plan.model == dec.plan.model
    assert (pre.plan.parallel.tp, pre.plan.parallel.pp, dec.plan.parallel.dp) == (2, 2, 4)
    assert pre.plan.workload.prompt_len == dec.plan.workload.prompt_len == 16
    assert not pre.plan.workload.decoding and dec.plan.workload.decoding
    assert dep.where("pools.decode.parallel.tp") is not None
    assert dep.slo.tpot_ms == 50 and dep.claims[0].vs == {"workload": {"mode": "serving"}}
    assert dep.alternatives[0] is not None and dep.alternatives[0].workload.serving
    assert deployment_findings(dep) == []


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = TINY.read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / "v.yaml"
    out.write_text(text.replace(old, new), encoding="utf-8")
    return out


def test_pools_that_disagree_on_the_model_are_a_finding_naming_pool_and_field(
    tmp_path: Path,
) -> None:
    p = _variant(tmp_path, "    units: 1\n    parallel: {convention: megatron, tp: 1",
                 "    units: 1\n    model: {hidden_size: 128}\n    parallel: {convention: megatron, tp: 1")  # fmt: skip
    f = next(f for f in deployment_findings(load_deployment(p)) if f.code == "PLAN-POOL-MODEL")
    assert f.path == "pools.decode.model.hidden_size"
    assert "model.hidden_size: prefill 64, decode 128" in f.message
    assert f.origin is not None and f.origin.line == 28


def test_a_kv_dtype_mismatch_is_a_finding_with_bytes_on_both_sides(tmp_path: Path) -> None:
    p = _variant(tmp_path, "    workload: {phase: decode,",
                 "    precision: {kv_cache: fp8}\n    workload: {phase: decode,")  # fmt: skip
    f = next(f for f in deployment_findings(load_deployment(p)) if f.code == "PLAN-POOL-KV-DTYPE")
    assert f.path == "pools.decode.precision.kv_cache"
    # 2 KV heads × 2 (K and V) × head_dim 16 = 64 elements per token and layer
    assert "64 × 2 = 128 B sent against 64 × 1 = 64 B reserved" in f.message


def test_incompatible_layouts_are_findings(tmp_path: Path) -> None:
    p = _variant(tmp_path, "phase: decode,", "phase: prefill,")
    f = next(f for f in deployment_findings(load_deployment(p)) if f.code == "PLAN-POOL-LAYOUT")
    assert "exactly one prefill and one decode pool" in f.message
    p = _variant(tmp_path, "tp: 1, dp: 4, ep: 4", "tp: 1, cp: 2, dp: 2, ep: 4")
    codes = {(f.code, f.path) for f in deployment_findings(load_deployment(p))}
    assert ("PLAN-POOL-LAYOUT", "pools.decode.parallel.cp") in codes


def test_a_problem_inside_a_pool_names_the_pool_and_its_line(tmp_path: Path) -> None:
    p = _variant(tmp_path, "tp: 1, dp: 4, ep: 4", "tp: 1.5, dp: 4, ep: 4")
    with pytest.raises(PlanError) as err:
        load_deployment(p)
    (problem,) = err.value.problems
    assert problem.code == "P-TYPE" and problem.message.startswith("pools.decode: ")
    assert problem.path == "pools.decode.parallel.tp"
    assert problem.origin is not None and problem.origin.line == 28


def test_decode_memory_too_small_for_the_transferred_caches(tmp_path: Path) -> None:
    p2 = _variant(tmp_path, "    hardware: {preset: H100-SXM-80GB}\n    workload: {phase: decode",
                  "    hardware: {preset: H100-SXM-80GB, memory_gib: 1}\n    workload: {phase: decode")  # fmt: skip
    f = next(f for f in analyse_deployment(load_deployment(p2)).findings
             if f.code == "COST-POOL-MEMORY")  # fmt: skip
    assert f.path == "pools.decode.hardware.memory_gib" and f.severity.value == "error"
    assert "KV cache" in f.message and "> 1 GiB on the GPU" in f.message


# ----------------------------------------------------------------------- the graph


def test_the_kv_op_codes_lookup_uses_are_the_registry_s() -> None:
    assert (int(Op.KV_SEND), int(Op.KV_RECV)) == _KV


def test_head_sets_split_or_replicate_the_kv_heads() -> None:
    assert head_sets(8, 2) == [range(0, 4), range(4, 8)]
    assert head_sets(1, 4) == [range(0, 1)] * 4  # MLA: the latent on every TP rank


def test_transfers_carry_every_byte_of_every_request_once(graph: Graph) -> None:
    tr = graph.transfers
    assert tr is not None
    units, unit = kv_units(graph.model, 2.0)  # bf16
    assert (units, unit) == (2, 64.0)  # 2 KV heads · K and V · head_dim 16 · 2 B
    assert int(tr.nbytes.sum()) == 8 * 16 * 4 * 2 * 64  # requests · tokens · layers · heads
    # prefill TP2·PP2 → decode TP1·DP4: each decode rank gets its replica's 2 requests
    # from each of the 4 prefill ranks (2 stages × 2 head shards)
    assert tr.size == 4 * 4
    assert sorted(set(tr.src.tolist())) == [0, 1, 2, 3]
    assert sorted(set(tr.dst.tolist())) == [4, 5, 6, 7]
    sends = np.flatnonzero(graph.op == Op.KV_SEND)
    recvs = np.flatnonzero(graph.op == Op.KV_RECV)
    assert sends.size == recvs.size == tr.size
    assert set(graph.kind[sends].tolist()) == {Kind.SEND}
    graph.lint()
    assert check_graph(graph) == []


def test_order_decode_posts_first_prefill_sends_last(graph: Graph) -> None:
    for r in range(graph.world):
        mine = np.flatnonzero(graph.rank == r)
        ops = graph.op[mine]
        kv = np.isin(ops, _KV)
        if r < 4:  # prefill: its sends after all its ops
            assert kv.any() and not kv[: -int(kv.sum())].any()
        else:  # decode: its recvs before all its ops
            assert kv.any() and kv[: int(kv.sum())].all()
    p2p = graph.ekind == EdgeKind.P2P
    kv_edges = np.isin(graph.op[graph.src[p2p]], _KV)
    assert int(kv_edges.sum()) == graph.transfers.size  # type: ignore[union-attr]


def test_resharding_mla_goes_to_one_decode_rank_per_request() -> None:
    dep = load_deployment(SAMPLE)
    pre = dataclasses.replace(dep.pools[0].plan, workload=dataclasses.replace(
        dep.pools[0].plan.workload, batch=64))  # fmt: skip
    g = build_deployment(dataclasses.replace(dep, pools=(dataclasses.replace(dep.pools[0], plan=pre),
                                                          dep.pools[1])))  # fmt: skip
    tr = g.transfers
    assert tr is not None and tr.heads == 1 and tr.unit_bytes == (512 + 64) * 2
    assert tr.size == 64  # DP32 → DP144, TP1: one message per request
    assert np.unique(tr.replica).size == 64
    assert int(tr.nbytes[0]) == 4383 * 61 * 576 * 2  # prompt · layers · latent · bf16
    assert check_transfers(g) == []


# -------------------------------------------------------- the checks, faults injected


def test_a_request_sent_to_two_replicas_is_caught(graph: Graph) -> None:
    tr = graph.transfers
    assert tr is not None
    cols = {f.name: getattr(tr, f.name) for f in dataclasses.fields(tr)
            if isinstance(getattr(tr, f.name), np.ndarray)}  # fmt: skip
    dup = {k: np.r_[v, v[:1]].astype(v.dtype) for k, v in cols.items()}
    dup["dst"][-1] = 5 if tr.dst[0] != 5 else 6  # the same requests to another replica
    bad = _with(graph, **dup)
    found = {f.code: f for f in check_transfers(bad)}
    assert "GRAPH-KV-REPLICA" in found
    assert found["GRAPH-KV-REPLICA"].data["many"] == int(tr.req1[0] - tr.req0[0])


def test_a_request_sent_nowhere_is_caught(graph: Graph) -> None:
    tr = graph.transfers
    assert tr is not None
    keep = tr.req0 != 0
    cols = {f.name: getattr(tr, f.name)[keep] for f in dataclasses.fields(tr)
            if isinstance(getattr(tr, f.name), np.ndarray)}  # fmt: skip
    found = {f.code: f for f in check_transfers(_with(graph, **cols))}
    assert found["GRAPH-KV-REPLICA"].data["none"] == 2
    assert "GRAPH-KV-NODES" in found  # the nodes of those messages now stand for none


def test_a_missing_layer_of_a_cache_is_caught(graph: Graph) -> None:
    tr = graph.transfers
    assert tr is not None
    layer1 = tr.layer1.copy()
    layer1[0] -= 1  # message 0 stops one layer short
    found = {f.code: f for f in check_transfers(_with(graph, layer1=layer1))}
    assert found["GRAPH-KV-INCOMPLETE"].data["cells"] == 1
    assert int(tr.dst[0]) in found["GRAPH-KV-INCOMPLETE"].ranks


def test_a_head_shard_sent_to_a_rank_that_does_not_hold_it_is_caught(dep: Deployment) -> None:
    g = build_deployment(dep)
    tr = g.transfers
    assert tr is not None
    head1 = tr.head1.copy()
    head1[0] = tr.heads + 1  # a head unit past the model's
    found = {f.code: f for f in check_transfers(_with(g, head1=head1))}
    assert found["GRAPH-KV-INCOMPLETE"].data["foreign"] >= 1


def test_wrong_bytes_are_caught_on_the_message_and_on_the_nodes(graph: Graph) -> None:
    tr = graph.transfers
    assert tr is not None
    nbytes = tr.nbytes.copy()
    nbytes[3] += 64
    found = {f.code: f for f in check_transfers(_with(graph, nbytes=nbytes))}
    f = found["GRAPH-KV-BYTES"]
    assert "1 message of 16" in f.message and "1 kv node" not in f.message
    assert "= 4,096 B" in f.message  # 2 requests × 16 tokens × 2 layers × 1 head × 64 B


def test_a_recv_with_other_bytes_than_its_send_is_caught(graph: Graph) -> None:
    recv = int(np.flatnonzero(graph.op == Op.KV_RECV)[0])
    other = int(np.flatnonzero(graph.tmpl_bytes != graph.tmpl_bytes[graph.tmpl[recv]])[0])
    tmpl = graph.tmpl.copy()
    tmpl[recv] = other
    codes = _codes(dataclasses.replace(graph, tmpl=tmpl))
    assert {"GRAPH-P2P-BYTES", "GRAPH-KV-BYTES"} <= codes


def test_a_dropped_transfer_node_is_caught(graph: Graph) -> None:
    send = int(np.flatnonzero(graph.op == Op.KV_SEND)[0])
    g = drop_nodes(graph, [send])
    g = dataclasses.replace(g, pools=(dataclasses.replace(graph.pools[0], node1=graph.pools[0].node1 - 1),
                                      dataclasses.replace(graph.pools[1], node0=graph.pools[1].node0 - 1,
                                                          node1=graph.pools[1].node1 - 1)))  # fmt: skip
    codes = _codes(g)
    assert {"GRAPH-KV-NODES", "GRAPH-UNMATCHED-RECV"} <= codes


def test_a_kv_send_to_the_wrong_decode_rank_is_caught(graph: Graph) -> None:
    sends = np.flatnonzero(graph.op == Op.KV_SEND)
    aux = graph.aux.copy()
    aux[sends[0]] = 7 if aux[sends[0]] != 7 else 6
    assert "GRAPH-P2P-PEER" in _codes(dataclasses.replace(graph, aux=aux))


def test_a_recv_issued_after_decode_starts_is_caught(graph: Graph) -> None:
    recv = int(np.flatnonzero((graph.op == Op.KV_RECV) & (graph.rank == 4))[-1])
    nxt = recv + 1  # the rank's first decode op
    perm = np.arange(graph.n_nodes)
    perm[[recv, nxt]] = perm[[nxt, recv]]
    cols = {c: getattr(graph, c)[perm] for c in Graph.NODE_COLUMNS}
    inv = np.argsort(perm)
    g = dataclasses.replace(graph, **cols, src=inv[graph.src].astype(np.int32),
                            dst=inv[graph.dst].astype(np.int32))  # fmt: skip
    found = {f.code for f in check_transfers(g)}
    assert "GRAPH-KV-ORDER" in found


def test_the_deadlock_check_covers_the_transfers(graph: Graph) -> None:
    # decode's first op feeding a prefill kv.send closes a cycle through the transfer
    send = int(np.flatnonzero(graph.op == Op.KV_SEND)[0])
    peer = int(graph.aux[send])
    first_decode = int(np.flatnonzero((graph.rank == peer) & ~np.isin(graph.op, _KV))[0])
    bad = add_edges(graph, [first_decode], [send], EdgeKind.P2P)
    found = check_acyclic(bad)
    assert [f.code for f in found] == ["GRAPH-CYCLE"]
    assert "kv" in found[0].message


# ---------------------------------------------------------------------- estimates


def test_each_pool_is_priced_on_its_own_and_the_transfer_on_the_inter_node_link(
    graph: Graph,
) -> None:
    est = estimate(graph)
    d = disagg_figures(graph, est, ttft_slo_s=1.0, tpot_slo_ms=50)
    tr = graph.transfers
    assert tr is not None
    sends = np.flatnonzero(graph.op == Op.KV_SEND)
    hw = graph.pools[0].hardware
    want = hw.inter_node_latency_us * 1e-6 + graph.tmpl_bytes[graph.tmpl[sends]] / (
        hw.inter_node_gbps * 1e9 * hw.net_efficiency)  # fmt: skip
    np.testing.assert_allclose(est.duration_s[sends], want)
    assert d.transfer_bytes_per_request == 16 * 4 * 2 * 64
    # rate match: λp = P / prompt, λd = D / gen_len, ratio λd / λp
    assert d.prefill.requests_per_s == pytest.approx(d.prefill.tokens_per_s / 16)
    assert d.decode.requests_per_s == pytest.approx(d.decode.tokens_per_s / 8)
    assert d.units_ratio == pytest.approx(d.decode.requests_per_s / d.prefill.requests_per_s)
    assert d.requests_per_s == pytest.approx(min(d.prefill.requests_per_s, d.decode.requests_per_s))
    assert d.goodput_requests_per_s == d.requests_per_s
    # decode's TPOT is measured from the last cache in, not from time 0
    assert d.tpot_s < est.makespan_s / 2
    strict = disagg_figures(graph, est, tpot_slo_ms=d.tpot_s * 1e3 / 2)
    assert strict.goodput_requests_per_s == 0 and "TPOT" in strict.slo_note


def test_the_claim_is_judged_against_the_same_gpus_co_located(dep: Deployment) -> None:
    a = analyse_deployment(dep)
    assert a.disagg is not None and a.colocated[0] is not None
    f = next(f for f in a.findings if f.code == "COST-COMPARE")
    this, other = a.disagg.tokens_per_s_per_gpu, a.colocated[0].tokens_per_s_per_gpu
    assert f"{this / other - 1:+.1%}".replace("-", "−") in f.message
    assert f.severity.value == ("info" if this >= other else "warning")


# ------------------------------------------------------------------------ outputs


def test_json_timeline_report_and_overview_include_both_pools_and_the_transfer(
    dep: Deployment,
) -> None:
    a = analyse_deployment(dep)
    assert a.graph is not None
    ctx = ExportContext(graph=a.graph, findings=a.findings, estimate=a.estimate, disagg=a.disagg)
    out = {}
    for fmt in ("json", "timeline", "md", "dot"):
        buf = io.BytesIO()
        emit(fmt, ctx, buf)
        out[fmt] = buf.getvalue().decode("utf-8")
    doc = json.loads(out["json"])
    kv = [n for n in doc["nodes"] if n["op"] in ("kv.send", "kv.recv")]
    assert len(kv) == 2 * 16 and {n["kind"] for n in kv} == {"send", "recv"}
    assert sum(n["bytes"] for n in kv if n["op"] == "kv.send") == 8 * 16 * 4 * 2 * 64
    assert "kv.send" in out["timeline"] and "kv.recv" in out["timeline"]
    md = out["md"]
    assert "### Pool `prefill`" in md and "### Pool `decode`" in md and "## Rate match" in md
    assert "balancing ratio" in md
    assert "cluster_pool0" in out["dot"] and "cluster_pool1" in out["dot"]
    assert "KV cache: 16 kv.send" in out["dot"]


def test_cli_checks_and_builds_a_deployment(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "1000"})
    result = runner.invoke(main, ["check", str(TINY)])
    assert result.exit_code == 0, result.output
    assert "rate match:" in result.output and "transfer: 8,192 B per request" in result.output
    md = tmp_path / "r.md"
    result = runner.invoke(main, ["build", str(TINY), "-o", str(md)])
    assert result.exit_code == 0 and "## Rate match" in md.read_text(encoding="utf-8")


def test_cli_cost_flag_prices_every_pool_of_a_deployment() -> None:
    # --cost applies to every pool (and the co-located alternative), as to a single plan:
    # the measured tables price the sample's H800 GEMMs differently from the roofline.
    runner = CliRunner(env={"COLUMNS": "1000"})

    def pools(cost: str) -> list[str]:
        result = runner.invoke(main, ["check", str(SAMPLE), "--cost", cost])
        assert result.exit_code == 0, result.output
        return [
            line for line in result.output.splitlines() if line.startswith(("prefill:", "decode:"))
        ]

    roofline, auto = pools("roofline"), pools("auto")
    assert len(roofline) == len(auto) == 2
    assert roofline[0] != auto[0] and roofline[1] != auto[1]


def test_cli_view_filters_are_checked_against_the_deployment(tmp_path: Path) -> None:
    # One unit of each pool: the tiny deployment's ranks are both pools' ranks together;
    # a filter past them is refused up front (exit 2, P-USAGE), before any analysis.
    runner = CliRunner(env={"COLUMNS": "1000"})
    dep = load_deployment(TINY)
    world = sum(p.plan.parallel.world() for p in dep.pools)
    out = tmp_path / "r.svg"
    args = ["build", str(TINY), "-o", str(out), "--view", "ranks", "--ranks", str(world)]
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "P-USAGE" in result.output and f"of the plan's {world:,} ranks" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    ok = runner.invoke(main, [*args[:-1], str(world - 1)])
    assert ok.exit_code == 0, ok.output


def test_the_day6_comparison_in_the_docs_is_current() -> None:
    a = analyse_deployment(load_deployment(SAMPLE))
    d = a.disagg
    assert d is not None and [f.code for f in a.findings if f.severity.value == "error"] == []
    doc = (ROOT / "docs" / "cost-model.md").read_text(encoding="utf-8")
    pre, dec = d.prefill.tokens_per_s_per_node, d.decode.tokens_per_s_per_node
    for figure in (f"{pre:,.0f}", f"{dec:,.0f}", f"{pre / 0.437:,.0f}", f"{d.units_ratio:.3g}",
                   f"{pre / (73_700 * 0.437) - 1:+.1%}".replace("-", "−").replace("%", " %"),
                   f"{dec / 14_800 - 1:+.1%}".replace("-", "−").replace("%", " %")):  # fmt: skip
        assert figure in doc, figure
    assert d.prefill.units == 24 and d.decode.units == 7
    assert d.transfer_bytes_per_request == 4383 * 61 * (512 + 64) * 2


def test_commands_of_one_plan_refuse_a_deployment_cleanly() -> None:
    runner = CliRunner(env={"COLUMNS": "1000"})
    result = runner.invoke(main, ["ranks", str(TINY)])
    assert result.exit_code == 2
    assert "a deployment of several pools; this command takes one plan" in result.output
    assert "Traceback" not in result.output


def test_a_deployment_s_json_validates_against_the_dag_schema(dep: Deployment) -> None:
    import jsonschema

    from dagen.export.schema import dag_schema

    a = analyse_deployment(dep)
    assert a.graph is not None
    buf = io.BytesIO()
    emit("json", ExportContext(graph=a.graph, findings=a.findings, estimate=a.estimate), buf)
    doc = json.loads(buf.getvalue())
    jsonschema.Draft202012Validator(dag_schema()).validate(doc)
    assert set(doc["plan"]["pools"]) == {"prefill", "decode"}
    assert doc["meta"]["transfers"] == {"messages": 16, "requests": 8, "bytes": 65536}


@pytest.mark.parametrize(
    ("prefill", "decode"),
    [
        # KV heads replicated in prefill (tp 4 > 2 KV heads), split in decode (tp 2)
        ("tp: 4, pp: 1, dp: 1, ep: 4, world_size: 4", "tp: 2, dp: 2, ep: 4, world_size: 4"),
        # stage boundaries that do not line up: prefill L0-1 | L2-3, decode L0 | L1-3
        ("tp: 2, pp: 2, dp: 1, ep: 2, world_size: 4",
         "tp: 1, pp: 2, dp: 2, ep: 2, layers_per_stage: [1, 3], world_size: 4"),
    ],
)  # fmt: skip
def test_resharding_across_tp_and_pp_layouts_is_complete(
    tmp_path: Path, prefill: str, decode: str
) -> None:
    p = _variant(tmp_path, "tp: 2, pp: 2, dp: 1, ep: 2, world_size: 4", prefill)
    text = p.read_text(encoding="utf-8").replace("tp: 1, dp: 4, ep: 4, world_size: 4", decode)
    p.write_text(text, encoding="utf-8")
    g = build_deployment(load_deployment(p))
    tr = g.transfers
    assert tr is not None
    assert int(tr.nbytes.sum()) == 8 * 16 * 4 * 2 * 64  # every byte once, whatever the layout
    assert check_graph(g) == []
    dec = g.pools[1]
    for r in dec.ranks:  # each decode rank receives exactly its stage's layers × its heads
        mine = tr.dst == r
        layers = dec.stage_layers[int(g.ranks.stage[r])]
        heads = head_sets(2, dec.mesh.sizes["tp"])[int(g.ranks.coords["tp"][r])]
        cells = ((tr.layer1 - tr.layer0) * (tr.head1 - tr.head0) * (tr.req1 - tr.req0))[mine]
        reqs = 8 // dec.mesh.sizes["dp"]
        assert int(cells.sum()) == len(layers) * len(heads) * reqs
    if "tp: 4" in prefill:  # head 0 is on prefill TP ranks 0 and 1, head 1 on 2 and 3:
        # decode TP rank b takes its head from holder b mod 2, so 0 (for b 0) and 3 (b 1)
        assert sorted(set(tr.src.tolist())) == [0, 3]


def test_outputs_of_a_deployment_are_byte_deterministic(dep: Deployment) -> None:
    def once() -> dict[str, bytes]:
        a = analyse_deployment(dep)
        assert a.graph is not None
        ctx = ExportContext(graph=a.graph, findings=a.findings, estimate=a.estimate,
                            disagg=a.disagg)  # fmt: skip
        out = {}
        for fmt in ("json", "timeline", "md", "dot"):
            buf = io.BytesIO()
            emit(fmt, ctx, buf)
            out[fmt] = buf.getvalue()
        return out

    assert once() == once()


def test_the_deployment_schema_accepts_the_sample_and_names_a_stray_pool_key() -> None:
    import jsonschema
    import yaml

    from dagen.plan.deploy import deployment_schema

    validator = jsonschema.Draft202012Validator(deployment_schema())
    for path in (SAMPLE, TINY):
        validator.validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    doc = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    doc["pools"]["decode"]["replicas"] = 2
    errors = list(validator.iter_errors(doc))
    assert errors and "replicas" in errors[0].message
    runner = CliRunner()
    result = runner.invoke(main, ["schema", "deployment"])
    assert result.exit_code == 0 and '"dagen deployment"' in result.output
