"""``dagen compare``: plans side by side, in text, JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import dagen
from dagen.cli import main
from dagen.study import compare, vary_plans

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "plans" / "tiny_dense.yaml"
TINY_MOE = ROOT / "tests" / "data" / "plans" / "tiny_moe.yaml"
SAMPLES = ROOT / "samples"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_rows_carry_each_plans_own_analysis_and_the_fields_that_changed() -> None:
    plans = vary_plans(TINY, ["micro_batches=1,2", "tp=2"])
    assert [label for label, _ in plans] == ["micro_batches=1 tp=2", "micro_batches=2 tp=2"]
    cmp = compare(plans)
    for (label, plan), row in zip(plans, cmp.rows, strict=True):
        alone = dagen.analyse(plan).estimate
        assert row.figures is not None and alone is not None
        assert row.figures.ttft_s == alone.ttft_s and row.label == label
    assert cmp.rows[0].changed == ()
    assert cmp.rows[1].changed == (("workload.micro_batches", 1, 2),)


def test_json_has_every_figure_and_markdown_a_table_and_a_diff(runner: CliRunner) -> None:
    args = ["compare", str(TINY), str(TINY_MOE)]
    as_json = runner.invoke(main, [*args, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    a, b = data["plans"]
    assert a["figures"]["ttft_s"] > 0 and b["figures"]["tokens_per_s_per_gpu"] > 0
    assert {"path": "parallel.ep", "from": 1, "to": 4} in b["changed"]
    md = runner.invoke(main, [*args, "--format", "markdown"]).stdout
    assert md.startswith("## Plans compared\n") and "| TTFT s |" in md
    assert "```diff\n" in md and "+ parallel.ep: 4" in md
    text = runner.invoke(main, args).stdout
    assert "tokens/s/GPU" in text and "- parallel.ep: 1" in text


def test_a_variant_that_breaks_a_rule_is_a_row_not_a_crash(runner: CliRunner) -> None:
    result = runner.invoke(main, ["compare", str(TINY), "--vary", "pp=2,4", "--format", "json"])
    assert result.exit_code == 0, result.output
    ok, broken = json.loads(result.stdout)["plans"]
    assert ok["verdict"] in ("ok",) or ok["verdict"].endswith("warning(s)")
    assert broken["verdict"].startswith("not built (PLAN-") and broken["figures"] is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--vary", "tq=2"], "'tq' is not a plan field"),
        (["--vary", "tp=two"], "--vary tp=two"),
        (["--vary", "tp="], "gives no value"),
    ],
)
def test_bad_vary_flags_exit_2_naming_the_flag(
    runner: CliRunner, args: list[str], words: str
) -> None:
    result = runner.invoke(main, ["compare", str(TINY), *args])
    assert result.exit_code == 2 and words in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors(runner: CliRunner) -> None:
    one = runner.invoke(main, ["compare", str(TINY)])
    assert one.exit_code == 2 and "two or more plans" in one.output
    both = runner.invoke(main, ["compare", str(TINY), str(TINY_MOE), "--vary", "tp=1"])
    assert both.exit_code == 2 and "exactly one plan" in both.output
    missing = runner.invoke(main, ["compare", str(TINY), "nope.yaml"])
    assert missing.exit_code == 2 and "no plan file" in missing.stderr
