"""COST-CONCURRENCY: a serving concurrency that overflows memory gets the largest that fits.

The largest concurrency is checked against the full graph: built at that concurrency the
plan fits every rank's KV pool, built one admissible step above it does not.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagen.api import analyse
from dagen.cli import main
from dagen.codes import Code
from dagen.cost.concurrency import largest_concurrency
from dagen.cost.memory import memory_report
from dagen.findings import Severity
from dagen.graph.build import build_graph
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT / "tests/data/plans/published/trtllm-deepseek-r1-h200-dep8-c1024-1024-2048.yaml"


def _at(plan: Plan, n: int) -> Plan:
    w = dataclasses.replace(plan.workload, batch=n, concurrency=n)
    return dataclasses.replace(plan, workload=w)


def _fits(plan: Plan) -> bool:
    mem = memory_report(build_graph(plan))
    return mem.overflow_rank is None and bool((mem.kv_pool_bytes >= 0).all())


@pytest.fixture(scope="module")
def crowded() -> Plan:
    return _at(load_plan(SERVING), 4096)


def test_the_largest_concurrency_fits_and_one_step_more_does_not(crowded: Plan) -> None:
    fit = largest_concurrency(crowded)
    assert fit.step == 8  # dp 8 × micro_batches 1
    assert 1024 <= fit.concurrency < 4096 and fit.concurrency % fit.step == 0
    assert _fits(_at(crowded, fit.concurrency))
    assert not _fits(_at(crowded, fit.concurrency + fit.step))


def test_the_finding_names_the_concurrency_with_its_arithmetic(crowded: Plan) -> None:
    found = [f for f in analyse(crowded).findings if f.code == Code.COST_CONCURRENCY.value]
    assert len(found) == 1
    f = found[0]
    n = largest_concurrency(crowded).concurrency
    assert f.severity == Severity.ERROR
    assert f"the largest concurrency that fits is {n:,}" in f.message
    assert f"at {n:,}: rank" in f.message and "→ fits" in f.message
    assert f"at {n + 8:,}: rank" in f.message and "→ overflows" in f.message
    # the arithmetic multiplies out: requests per replica × MiB per request = GiB of KV
    got = re.search(r"at [0-9,]+: rank \d+ holds ([0-9.]+) GiB of KV \(([0-9,]+) / (\d+) "
                    r"replicas × ([0-9.]+) MiB per request\)", f.message)  # fmt: skip
    assert got is not None
    kv, conc, reps, mib = (float(g.replace(",", "")) for g in got.groups())
    assert kv == pytest.approx(conc / reps * mib / 1024, rel=0.01)


def test_a_concurrency_that_fits_gets_no_finding() -> None:
    plan = load_plan(SERVING)
    assert _fits(plan)
    assert not [f for f in analyse(plan).findings if f.code == Code.COST_CONCURRENCY.value]


def test_static_batches_get_cost_oom_only() -> None:
    plan = load_plan(ROOT / "tests/data/plans/published/trtllm-llama2-70b-tp2-b64-2048-2048.yaml")
    w = dataclasses.replace(plan.workload, batch=4096)
    codes = {f.code for f in analyse(dataclasses.replace(plan, workload=w)).findings}
    assert Code.COST_OOM.value in codes and Code.COST_CONCURRENCY.value not in codes


def test_the_cli_reports_it_at_the_concurrency_line(tmp_path: Path) -> None:
    text = SERVING.read_text(encoding="utf-8").replace(
        "  concurrency: 1024 ", "  concurrency: 4096 "
    )
    path = tmp_path / "crowded.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("  concurrency:"))
    out = CliRunner(env={"COLUMNS": "1000"}).invoke(main, ["check", str(path)])
    assert out.exit_code != 0
    hit = next(s for s in out.output.splitlines() if s.startswith("error COST-CONCURRENCY"))
    n = largest_concurrency(_at(load_plan(path), 4096)).concurrency
    assert f":{line}:" in hit and f"(estimate {n:,} requests fit)" in hit
    assert f"the largest concurrency that fits is {n:,}" in out.output


def test_cost_oom_points_at_cost_concurrency_instead_of_a_second_figure(crowded: Plan) -> None:
    oom = next(f for f in analyse(crowded).findings if f.code == Code.COST_OOM.value)
    assert "the largest concurrency that fits: COST-CONCURRENCY" in oom.message
    assert "requests in flight fit" not in oom.message
