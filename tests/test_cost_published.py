"""The cost model against published measurements of real deployments.

Each plan under tests/data/plans/published/ writes one measurement as its target (the
file's header cites the source). This test recomputes dagen's figure for it and checks
that docs/cost-model.md ("Validation") still reports that figure, so the table cannot
go stale; and that no error exceeds the band the table documents.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dagen.cost import CostModel, estimate
from dagen.graph.build import build_graph
from dagen.plan.loader import load_plan
from dagen.plan.model import Phase, Plan

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted((ROOT / "tests" / "data" / "plans" / "published").glob("*.yaml"))
DOC = ROOT / "docs" / "cost-model.md"
WORST = 1.5
"""The largest relative error the table admits (+144%, long-context decode)."""


def static_batch_tokens_per_gpu(plan: Plan, model: CostModel | None = None) -> float:
    """Output tokens/s per GPU of a static batch: one prefill, then gen_len decode steps,
    each priced at the mean context prompt + gen/2 (the decode twin of the plan)."""
    w = plan.workload
    prefill = estimate(build_graph(plan), cost_model=model).makespan_s
    twin = dataclasses.replace(
        w, phase=Phase.DECODE, prompt_len=w.prompt_len + w.gen_len // 2 - 1, gen_len=1
    )
    step = estimate(build_graph(dataclasses.replace(plan, workload=twin)), cost_model=model).tpot_s
    assert step is not None
    return w.batch * w.gen_len / (prefill + w.gen_len * step) / plan.parallel.world()


def dagen_figure(plan: Plan, model: CostModel | None = None) -> float:
    """dagen's figure for the plan's one target, in the target's unit."""
    t, w = plan.targets, plan.workload
    static_run = not w.serving and w.phase is Phase.PREFILL and w.gen_len > 1
    if t.tokens_per_s_per_gpu is not None and static_run:
        return static_batch_tokens_per_gpu(plan, model)
    if t.tokens_per_s is not None and static_run:
        return static_batch_tokens_per_gpu(plan, model) * plan.parallel.world()
    est = estimate(build_graph(plan), cost_model=model)
    if t.tokens_per_s_per_gpu is not None:
        return est.tokens_per_s_per_gpu
    if t.tokens_per_s is not None:
        return est.tokens_per_s
    if t.tpot_ms is not None:
        assert est.tpot_s is not None
        return est.tpot_s * 1e3
    assert t.ttft_s is not None and est.ttft_s is not None
    return est.ttft_s


def measured(plan: Plan) -> float:
    t = plan.targets
    value = t.tokens_per_s_per_gpu or t.tokens_per_s or t.tpot_ms or t.ttft_s
    assert value is not None
    return value


def documented(name: str) -> tuple[float, float]:
    """(dagen estimate, error) of the validation table's row for ``name``."""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and f"{name}" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            number = re.compile(r"[-+−]?[0-9][0-9,]*\.?[0-9]*")
            est = number.search(cells[3])
            err = number.search(cells[4])
            assert est and err, line
            return (
                float(est.group().replace(",", "")),
                float(err.group().replace(",", "").replace("−", "-")) / 100,
            )
    raise AssertionError(f"docs/cost-model.md has no validation row for {name}")


def test_there_are_at_least_three_published_measurements() -> None:
    assert len(PUBLISHED) >= 3


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
def test_estimate_matches_the_documented_row(path: Path) -> None:
    plan = load_plan(path)
    figure, truth = dagen_figure(plan), measured(plan)
    if plan.targets.ttft_s is not None:
        figure *= 1e3  # the table shows latencies in ms
        truth *= 1e3
    doc_estimate, doc_error = documented(path.name)
    assert figure == pytest.approx(doc_estimate, rel=0.02), "update docs/cost-model.md"
    assert figure / truth - 1 == pytest.approx(doc_error, abs=0.02)
    assert abs(figure / truth - 1) <= WORST
