"""The Markdown report: golden files, escaping, the comment-size limit, plans without graphs."""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from pathlib import Path

import pytest
from conftest import make_plan
from golden import assert_golden

from dagen.export import ExportContext
from dagen.export.markdown import MAX_CHARS, md, render_markdown
from dagen.findings import Finding, Origin, Severity
from dagen.graph.build import build_graph
from dagen.plan.loader import load_plan
from dagen.plan.model import Targets

PLANS = Path(__file__).parent / "data" / "plans"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _table_rows(text: str, header: str) -> list[str]:
    """The body rows of the table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _cells(row: str) -> int:
    """Cells of a table row, counting only unescaped pipes."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


@pytest.mark.parametrize("name", ["tiny_dense", "tiny_moe"])
def test_report_matches_golden(name: str) -> None:
    g = build_graph(load_plan(PLANS / f"{name}.yaml"))
    assert_golden(f"{name}.md", render_markdown(ExportContext(graph=g)).encode("utf-8"))


def test_template_ships_as_package_data() -> None:
    assert (importlib.resources.files("dagen.templates") / "report.md.j2").is_file()


def test_report_describes_stages_and_has_a_balanced_mermaid_chart() -> None:
    g = build_graph(make_plan(layers=8, pp=4, tp=2, dp=2, experts=8, ep=4, first_dense_layers=1))
    text = render_markdown(ExportContext(graph=g))
    rows = _table_rows(text, "| Stage |")
    assert len(rows) == 4 and all(_cells(r) == 8 for r in rows)
    assert "L0 · dense (1 layer)" in rows[0] and "L1 · MoE (1 layer)" in rows[0]
    chart = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    assert chart.startswith("flowchart TB")
    assert chart.count("subgraph ") == 4 == len(re.findall(r"^  end$", chart, re.M))
    assert len(re.findall(r"==>", chart)) == 3


def test_user_text_is_escaped() -> None:
    hostile = "evil | [link](javascript:alert(1)) <script>x</script> *b* `c` # h\nnext"
    g = build_graph(make_plan(plan_name=hostile, name="m|<img src=x>", pp=2, tp=2))
    finding = Finding(
        code="X-1",
        severity=Severity.ERROR,
        message="a | b <i>",
        fix="use `x`",
        path="parallel.tp",
        origin=Origin(line=4),
    )
    text = render_markdown(ExportContext(graph=g, findings=(finding,)))
    assert "<script>" not in text and "<img" not in text
    assert not re.search(r"(?<!\\)\]\(", text)  # no link survives: "](" only as "\]("
    assert text.splitlines()[0] == "# dagen report: " + md(hostile)
    rows = _table_rows(text, "| Severity |")
    assert len(rows) == 1 and _cells(rows[0]) == 5
    assert "a \\| b &lt;i&gt;" in rows[0] and "use \\`x\\`" in rows[0]
    assert "**✗ 1 error, 0 warnings.**" in text


def test_md_escape_round_trip_examples() -> None:
    assert md("a_b") == "a\\_b"
    assert md("x & y") == "x &amp; y"
    assert md("line\nbreak\ttab") == "line break tab"


def test_report_stays_under_githubs_comment_limit() -> None:
    g = build_graph(load_plan(PLANS / "tiny_moe.yaml"))
    findings = tuple(
        Finding(
            code=f"X-{i}", severity=Severity.WARNING, message="long message " * 20, fix="fix " * 10
        )
        for i in range(3000)
    )
    text = render_markdown(ExportContext(graph=g, findings=findings))
    assert len(text) <= MAX_CHARS
    listed = len(_table_rows(text, "| Severity |"))
    assert 0 < listed < 3000
    assert f"_{3000 - listed} more finding(s) not listed" in text


def test_report_of_a_plan_with_errors_has_no_graph_but_shows_the_findings() -> None:
    from dagen.api import Analysis

    plan = make_plan(tp=3)  # 4 heads do not split over 3 ranks
    finding = Finding(
        code="PLAN-HEADS",
        severity=Severity.ERROR,
        message="heads 4 not divisible by tp 3",
        path="parallel.tp",
    )
    text = render_markdown(Analysis(plan=plan, findings=(finding,)))
    assert "PLAN-HEADS" in text and "## Pipeline stages" not in text and "mermaid" not in text
    assert "## Mesh" in text


def test_report_with_an_estimate_lists_memory_and_verdicts() -> None:
    from dagen.cost import estimate, judge_estimate

    base = make_plan(pp=2, tp=2)
    plan = dataclasses.replace(base, targets=Targets(ttft_s=10.0, max_memory_fraction=0.9))
    g = build_graph(plan)
    est = estimate(g)
    est = dataclasses.replace(est, verdicts=judge_estimate(plan, est))
    text = render_markdown(ExportContext(graph=g, estimate=est))
    assert "## Estimate" in text and "time to first token" in text
    rows = _table_rows(text, "| Claim |")
    assert len(rows) == len(est.verdicts) > 0
    assert all(_cells(r) == 5 for r in rows)
    assert any("holds" in r or "fails" in r for r in rows)


def _analysed(path: Path) -> object:
    from dagen.api import analyse

    return analyse(load_plan(path))


def test_headline_lists_every_claim_and_is_not_a_tick_when_a_claim_fails() -> None:
    # samples/deepseek-v3-decode.yaml passes every check, but some of its claims fail:
    # the report once opened with "✓ No errors … passed every check" for it.
    analysis = _analysed(SAMPLES / "deepseek-v3-decode.yaml")
    text = render_markdown(analysis)  # type: ignore[arg-type]
    first = text.split("\n## ", 1)[0]  # everything above the first section
    assert "✓" not in first.splitlines()[2] and first.splitlines()[2].startswith("**⚠ ")
    claims = [f for f in analysis.findings if "verdict" in f.data]  # type: ignore[attr-defined]
    failing = sum(f.data["verdict"] != "holds" for f in claims)
    assert 1 <= failing < len(claims)
    fails = f"{failing} fails" if failing == 1 else f"{failing} fail"
    holding = len(claims) - failing
    assert f"{fails}, {holding} {'holds' if holding == 1 else 'hold'}" in first
    rows = _table_rows(first, "| Claim |")
    assert len(rows) == len(claims) == 3 and all(_cells(r) == 5 for r in rows)
    for f, row in zip(claims, rows, strict=True):
        assert md(f.data["claim"]) in row and f.data["verdict"] in row
    assert "| **Model** |" in first and "| **World** |" in first and "| **Estimate** |" in first


def test_tick_only_when_every_check_and_claim_holds() -> None:
    from dagen.api import analyse

    base = make_plan(pp=2, tp=2)
    holds = analyse(dataclasses.replace(base, targets=Targets(ttft_s=1e3)))
    fails = analyse(dataclasses.replace(base, targets=Targets(ttft_s=1e-9)))
    assert render_markdown(holds).splitlines()[2].startswith("**✓ Every check passes")
    line = render_markdown(fails).splitlines()[2]
    assert line.startswith("**✗ ") and "1 impossible" in line


def test_claim_arithmetic_is_written_once() -> None:
    text = render_markdown(_analysed(SAMPLES / "deepseek-v3-decode.yaml"))  # type: ignore[arg-type]
    # Each claim's FLOP/token derivation appears once: under Claims, not in Findings too.
    derivation = "2 × 35.70B matmul weights"
    assert text.count(derivation) == 2  # the two claims that rest on FLOPs per token
    findings = text.split("## Findings", 1)[1].split("## Claims", 1)[0]
    assert derivation not in findings and "Arithmetic under Claims" in findings


def test_mermaid_sends_join_stage_boxes_not_blocks() -> None:
    g = build_graph(make_plan(layers=8, pp=4, tp=2, dp=2, experts=8, ep=4, first_dense_layers=1))
    chart = render_markdown(ExportContext(graph=g)).split("```mermaid\n", 1)[1].split("\n```")[0]
    sends = re.findall(r"^  (\S+) ==>\|[^|]*\| (\S+)$", chart, re.M)
    assert sends == [("s0", "s1"), ("s1", "s2"), ("s2", "s3")]  # no arrow into a block
    assert chart.count("direction LR") == 4
