"""The CLI through click's CliRunner: help, exit codes, error paths, outputs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagen.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TINY_MOE = ROOT / "tests" / "data" / "plans" / "tiny_moe.yaml"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_examples(runner: CliRunner, command: str) -> None:
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert "dagen " + command in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dagen, version ")


def test_seed_check_fails_with_world_size_arithmetic(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", str(SAMPLES / "seed-moe-10b.yaml")])
    assert result.exit_code == 1, result.output
    assert "PLAN-WORLD" in result.output
    # both readings, with their products
    assert "256" in result.output and "16" in result.output
    assert "Traceback" not in result.output


def test_check_json_findings(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", str(SAMPLES / "seed-moe-10b.yaml"), "--format", "json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    codes = {f["code"] for f in findings}
    assert "PLAN-WORLD" in codes
    world = next(f for f in findings if f["code"] == "PLAN-WORLD")
    assert world["line"] is not None and world["path"].startswith("parallel")


def test_bad_input_exits_2_without_traceback(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {layers: [1, 2\n", encoding="utf-8")
    result = runner.invoke(main, ["check", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert ":1:" in result.stderr or ":2:" in result.stderr


def test_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_output_suffix_lists_formats(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "dag.xyz"
    result = runner.invoke(main, ["build", str(TINY_MOE), "-o", str(out)])
    assert result.exit_code == 2
    assert "json" in result.stderr and "svg" in result.stderr
    assert not out.exists()


def test_bad_rank_filter_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main,
        [
            "build",
            str(TINY_MOE),
            "-o",
            str(tmp_path / "d.dot"),
            "--view",
            "ranks",
            "--ranks",
            "3-1",
        ],
    )
    assert result.exit_code == 2
    assert "0-3,32" in result.output


def test_build_writes_every_format(runner: CliRunner, tmp_path: Path) -> None:
    outs = [tmp_path / n for n in ("dag.json", "dag.dot", "report.md", "timeline.json")]
    args = ["build", str(TINY_MOE)]
    for o in outs:
        args += ["-o", str(o)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    for o in outs:
        assert o.stat().st_size > 0, o
    doc = json.loads(outs[0].read_text(encoding="utf-8"))
    assert doc["nodes"] and doc["edges"]


def test_build_is_byte_deterministic(runner: CliRunner, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert runner.invoke(main, ["build", str(TINY_MOE), "-o", str(a)]).exit_code == 0
    assert runner.invoke(main, ["build", str(TINY_MOE), "-o", str(b)]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_build_of_broken_plan_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "dag.json"
    result = runner.invoke(main, ["build", str(SAMPLES / "seed-moe-10b.yaml"), "-o", str(out)])
    assert result.exit_code == 1
    assert not out.exists()


def test_ranks_table_and_json(runner: CliRunner) -> None:
    text = runner.invoke(main, ["ranks", str(TINY_MOE)])
    assert text.exit_code == 0, text.output
    rows = json.loads(runner.invoke(main, ["ranks", str(TINY_MOE), "--json"]).output)
    assert [r["rank"] for r in rows] == list(range(len(rows)))
    assert len(text.output.strip().splitlines()) == len(rows) + 1


@pytest.mark.parametrize("which", ["plan", "dag"])
def test_schema_prints_json_schema(runner: CliRunner, which: str) -> None:
    result = runner.invoke(main, ["schema", which])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["$schema"].startswith("https://json-schema.org/")


def test_every_sample_passes_plan_and_graph_checks(runner: CliRunner) -> None:
    for sample in sorted(SAMPLES.glob("*.yaml")):
        if sample.name == "seed-moe-10b.yaml":
            continue
        result = runner.invoke(main, ["check", str(sample), "--format", "json"])
        assert result.exit_code in (0, 1), (sample, result.output)
        findings = json.loads(result.stdout)
        structural = [
            f for f in findings if f["severity"] == "error" and not f["code"].startswith("COST-")
        ]
        assert structural == [], (sample.name, structural)


@pytest.mark.parametrize("ranks", ["99999999999999999999", "0-99999999999", "0,,3", ""])
def test_rank_filter_out_of_range_is_usage_error(
    runner: CliRunner, tmp_path: Path, ranks: str
) -> None:
    out = tmp_path / "d.dot"
    args = ["build", str(TINY_MOE), "-o", str(out), "--view", "ranks", "--ranks", ranks]
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "--ranks" in result.output
    assert not out.exists()


def test_output_that_is_not_a_regular_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "dag.json"
    os.mkfifo(target)  # a pipe: replacing it with a file would be wrong
    result = runner.invoke(main, ["build", str(TINY_MOE), "-o", str(target)])
    assert result.exit_code == 2
    assert "not a regular file" in result.stderr
    assert stat.S_ISFIFO(target.stat().st_mode)


def test_check_prints_estimates_and_the_seed_fixed_verdicts(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["check", str(SAMPLES / "seed-moe-10b-fixed.yaml")], env={"COLUMNS": "1000"}
    )
    # The layout is fixed; the report's 100 tokens/ms per GPU (12,800 tokens/ms in all)
    # is still impossible, and every other claim of the report is judged.
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error ")]
    assert [e.split()[1] for e in errors] == ["COST-THROUGHPUT-GPU", "COST-THROUGHPUT"]
    assert all("impossible" in e for e in errors)
    judged = {line.split()[1] for line in result.stdout.splitlines() if " COST-" in line}
    assert {"COST-UTILIZATION", "COST-MEMORY-FIGURE", "COST-CLAIM", "COST-COMPARE"} <= judged
    assert "graph: 28,160 nodes" in result.stdout
    assert "memory: fullest rank" in result.stdout and "TTFT (prefill makespan)" in result.stdout
    assert "tokens/s per GPU" in result.stdout
    assert "critical path: 385 nodes from r0/s0/mb0/embed to r96/s3/mb3/sample" in result.stdout


def test_verbose_shows_the_library_log_on_stderr() -> None:
    # A real process: pytest's own logging capture would swallow the records in-process.
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dagen", "-v", "check", str(TINY_MOE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "dagen: dagen.graph.build: built" in proc.stderr
    quiet = subprocess.run(cmd[:3] + cmd[4:], capture_output=True, text=True, check=False)
    assert "dagen.graph.build" not in quiet.stderr


def test_check_prints_a_headline_per_finding_and_wraps_the_arithmetic(runner: CliRunner) -> None:
    plan = str(SAMPLES / "deepseek-v3-decode.yaml")
    result = runner.invoke(main, ["check", plan], env={"COLUMNS": "72"})
    lines = result.stdout.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith(("error ", "warning ", "info "))]
    assert len(heads) == 3  # one failing claim, two that hold
    first = lines[heads[1] : heads[2]]
    # headline: severity, code, place, field, one-sentence verdict (continued by 2 spaces)
    verdict = " ".join(x.strip() for x in first if not x.startswith("    "))
    assert verdict.startswith(
        f"warning COST-THROUGHPUT-GPU {plan}:91:25: targets.tokens_per_s_per_gpu:"
    )
    assert verdict.endswith(
        "throughput ≥ 1,850 tokens/s per GPU: fails (estimate 470 tokens/s/GPU; "
        "ceiling 2,418 tokens/s/GPU)."
    )
    # the arithmetic and the fix indented below, every line within the width
    body = [x for x in first if x.startswith("    ")]
    assert body[0].startswith("    tokens/s per GPU ≤ peak") and any("fix: " in x for x in body)
    assert all(len(x) <= 72 for x in lines[: heads[-1]] if " " in x.strip())


def test_check_output_not_on_a_terminal_wraps_at_the_default_width(runner: CliRunner) -> None:
    from dagen.cli import WRAP_DEFAULT

    result = runner.invoke(main, ["check", str(SAMPLES / "seed-moe-10b.yaml")], env={"COLUMNS": ""})
    assert max(len(x) for x in result.stdout.splitlines()) <= WRAP_DEFAULT


def test_explain_prints_the_registry_entry_and_its_docs(runner: CliRunner) -> None:
    result = runner.invoke(main, ["explain", "plan-world"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "PLAN-WORLD (error by default)"
    assert "docs: docs/plan-checks.md#plan-world" in result.stdout
    assert "computes both readings" in result.stdout  # the docs row's text
    assert "target: targets.tpot_ms" in runner.invoke(main, ["explain", "COST-TPOT"]).stdout


def test_explain_lists_every_code_and_refuses_an_unknown_one(runner: CliRunner) -> None:
    from dagen.codes import Code

    listed = runner.invoke(main, ["explain"]).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [c.value for c in Code]
    bad = runner.invoke(main, ["explain", "PLAN-WORL"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "'PLAN-WORL' is not a finding code; did you mean PLAN-WORLD" in bad.stderr
