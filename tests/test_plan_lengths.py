"""Prompt and output lengths as distributions: parsing, validation, expectations, physics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dagen.cli import main
from dagen.cost.memory import memory_report
from dagen.errors import PlanError
from dagen.graph.build import build_graph
from dagen.graph.dims import steady
from dagen.plan.lengths import Dist, Lengths
from dagen.plan.loader import load_plan_text

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT / "tests/data/plans/published/trtllm-deepseek-r1-h200-dep8-c1024-1024-2048.yaml"
FIXED_LINES = (
    "  prompt_len: 1024        # --input-mean 1024 --input-stdev 0\n"
    "  gen_len: 2048           # --output-mean 2048 --output-stdev 0\n"
)


def _serving(lengths: str) -> str:
    text = SERVING.read_text(encoding="utf-8")
    assert FIXED_LINES in text
    return text.replace(FIXED_LINES, lengths)


def _problems(lengths: str) -> list[str]:
    with pytest.raises(PlanError) as err:
        load_plan_text(_serving(lengths), "bad.yaml")
    return [f"{p.path}: {p.message}" for p in err.value.problems]


NORMAL = (
    "  prompt_dist: {dist: normal, mean: 1024, stdev: 256, min: 16, max: 4096}\n"
    "  gen_dist: {dist: uniform, min: 1024, max: 3072}\n"
)


def test_a_distribution_parses_and_sets_the_mean_length() -> None:
    plan = load_plan_text(_serving(NORMAL), "dist.yaml")
    w = plan.workload
    assert w.prompt_dist == Lengths(dist=Dist.NORMAL, mean=1024, stdev=256, min=16, max=4096)
    assert w.gen_dist is not None and w.gen_dist.dist is Dist.UNIFORM
    assert (w.prompt_len, w.gen_len) == (1024, 2048)  # the rounded means


def test_expectations_of_each_shape() -> None:
    uni = Lengths(dist=Dist.UNIFORM, min=1024, max=3072)
    x = np.arange(1024, 3073, dtype=float)
    assert uni.expect(lambda v: v) == pytest.approx(x.mean())
    assert uni.expect(np.square) == pytest.approx((x * x).mean())
    wide = Lengths(dist=Dist.NORMAL, mean=5000, stdev=300, min=1)  # clipping never binds
    assert wide.expect(lambda v: v) == pytest.approx(5000, rel=1e-6)
    assert wide.expect(np.square) == pytest.approx(5000**2 + 300**2, rel=1e-5)
    logn = Lengths(dist=Dist.LOGNORMAL, mean=800, stdev=400, min=1)
    assert logn.expect(lambda v: v) == pytest.approx(800, rel=2e-3)
    assert logn.expect(np.square) - 800**2 == pytest.approx(400**2, rel=2e-2)
    # clipping moves the mass beyond a bound onto the bound: a normal clipped at its mean
    half = Lengths(dist=Dist.NORMAL, mean=1000, stdev=100, min=1000, max=5000)
    assert half.expect(lambda v: v) == pytest.approx(1000 + 100 / np.sqrt(2 * np.pi), rel=1e-3)


def test_fixed_distribution_equals_fixed_lengths() -> None:
    fixed = load_plan_text(_serving(FIXED_LINES), "a.yaml")
    dist = load_plan_text(
        _serving("  prompt_dist: {mean: 1024}\n  gen_dist: {dist: fixed, mean: 2048}\n"), "b.yaml"
    )
    a, b = memory_report(build_graph(fixed)), memory_report(build_graph(dist))
    np.testing.assert_array_equal(a.kv_bytes, b.kv_bytes)
    assert steady(fixed.workload, 8) == steady(dist.workload, 8)


def test_varied_outputs_hold_more_kv_per_request_by_e_o2() -> None:
    """A request that decodes longer stays longer: mean context E[I] + E[O²]/(2E[O])."""
    fixed = load_plan_text(_serving(FIXED_LINES), "a.yaml")
    varied = load_plan_text(
        _serving("  prompt_len: 1024\n  gen_dist: {dist: uniform, min: 1024, max: 3072}\n"),
        "b.yaml",
    )
    o = np.arange(1024, 3073, dtype=float)
    want = (1024 + (o * o).mean() / (2 * o.mean())) / (1024 + 2048 / 2)
    a, b = memory_report(build_graph(fixed)), memory_report(build_graph(varied))
    assert b.kv_seq_bytes[0] / a.kv_seq_bytes[0] == pytest.approx(want, rel=1e-3)
    ss = steady(varied.workload, 8)
    assert ss.context == pytest.approx(1024 + (o * o).mean() / (2 * o.mean()))


def test_chunked_prefill_counts_expected_chunks() -> None:
    plan = load_plan_text(
        _serving("  prompt_dist: {dist: uniform, min: 1000, max: 1300}\n  gen_len: 2048\n"),
        "c.yaml",
    )
    x = np.arange(1000, 1301)
    ss = steady(plan.workload, 8)
    assert ss.chunks == pytest.approx(np.ceil(x / 1151).mean())  # prefill_chunk 1151
    assert 1 < ss.chunks < 2


@pytest.mark.parametrize(
    ("lengths", "expect"),
    [
        ("  prompt_dist: {dist: uniform, min: 10}\n  gen_len: 5\n",
         "workload.prompt_dist.max: a uniform distribution needs max"),
        ("  prompt_dist: {dist: normal, mean: 100}\n  gen_len: 5\n",
         "workload.prompt_dist.stdev: a normal distribution needs stdev > 0"),
        ("  prompt_dist: {dist: lognormal, stdev: 3}\n  gen_len: 5\n",
         "workload.prompt_dist.mean: a lognormal distribution needs mean"),
        ("  prompt_len: 100\n  gen_dist: {mean: 50, min: 60}\n",
         "workload.gen_dist.mean: mean 50 lies outside [min, max] = [60, ∞]"),
        ("  prompt_len: 100\n  gen_dist: {dist: uniform, min: 60, max: 20}\n",
         "workload.gen_dist.max: max 20 is below min 60"),
        ("  prompt_len: 100\n  prompt_dist: {mean: 100}\n  gen_len: 5\n",
         "workload.prompt_len: prompt_len and prompt_dist both give the prompt length"),
        ("  gen_len: 5\n", "workload.prompt_len"),
        ("  prompt_dist: {dist: poisson, mean: 9}\n  gen_len: 5\n", "workload.prompt_dist.dist"),
        ("  prompt_len: 100\n  gen_dist: {mean: 50, width: 3}\n", "workload.gen_dist.width"),
    ],
)  # fmt: skip
def test_bad_distributions_name_the_field(lengths: str, expect: str) -> None:
    found = _problems(lengths)
    assert any(p.startswith(expect) for p in found), found


def test_the_cli_refuses_a_bad_distribution_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_serving("  prompt_dist: {dist: uniform, min: 10}\n  gen_len: 5\n"))
    out = CliRunner(env={"COLUMNS": "1000"}).invoke(main, ["check", str(path)])
    assert out.exit_code == 2
    assert "bad.yaml:" in out.output and "prompt_dist.max" in out.output
    assert "Traceback" not in out.output


def test_lengths_are_a_frozen_record() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Lengths(mean=3).mean = 4  # type: ignore[misc]


def test_the_documented_example_loads() -> None:
    doc = (ROOT / "docs" / "plan-format.md").read_text(encoding="utf-8")
    block = doc.split("## Lengths as distributions", 1)[1].split("```yaml\n", 1)[1]
    lines = [s for s in block.split("```", 1)[0].splitlines() if s.strip().endswith("}")]
    assert len(lines) == 2
    plan = load_plan_text(_serving("\n".join(lines) + "\n"), "doc.yaml")
    assert plan.workload.prompt_dist is not None and plan.workload.gen_dist is not None
    assert (plan.workload.prompt_len, plan.workload.gen_len) == (1024, 512)
