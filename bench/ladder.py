"""The ladder of plans the harness measures, from the seed to 32,768 GPUs.

Rungs are the bundled samples plus generated variants: a sample's model with larger
degrees and more micro-batches. Each rung is a function returning a :class:`Plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dagen.plan.loader import load_plan
from dagen.plan.model import Plan

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rung:
    """One step of the ladder."""

    name: str
    what: str
    make: Callable[[], Plan]
    repeats: int = 3
    baseline: bool = True
    """Also run the networkx baseline (only where it can finish)."""


def _sample(name: str) -> Callable[[], Plan]:
    return lambda: load_plan(SAMPLES / name)


def _variant(name: str, *, parallel: dict[str, object], workload: dict[str, object]) -> Callable[[], Plan]:
    def make() -> Plan:
        plan = load_plan(SAMPLES / name)
        par = dataclasses.replace(plan.parallel, **parallel)  # type: ignore[arg-type]
        work = dataclasses.replace(plan.workload, **workload)  # type: ignore[arg-type]
        return dataclasses.replace(plan, parallel=par, workload=work, name=f"{plan.name}-{par.world()}gpu")

    return make


RUNGS: tuple[Rung, ...] = (
    Rung(name="seed-128", what="seed-moe-10b-fixed.yaml: 128 GPUs, TP2·DP16·PP4, EP16", make=_sample("seed-moe-10b-fixed.yaml")),
    Rung(name="dsv3-decode-320", what="deepseek-v3-decode.yaml: 320 GPUs, TP4·DP80 attention, EP320", make=_sample("deepseek-v3-decode.yaml")),
    Rung(
        name="qwen3-4096",
        what="Qwen3-235B-A22B prefill, TP4·DP128·PP8 = 4,096 GPUs, EP32, 8 micro-batches",
        make=_variant(
            "qwen3-235b-a22b.yaml",
            parallel={"tp": 4, "dp": 128, "pp": 8, "ep": 32, "etp": 1, "cp": 1, "layers_per_stage": None, "first_stage_layers": None, "last_stage_layers": None, "world_size": None, "redundant_experts": 0},
            workload={"batch": 128 * 8, "micro_batches": 8},
        ),
        repeats=3,
        baseline=False,
    ),
    Rung(
        name="llama405b-16384",
        what="Llama-3.1-405B-style dense, TP8·DP128·PP16 = 16,384 GPUs, 16 micro-batches",
        make=_variant(
            "llama3-405b.yaml",
            parallel={"tp": 8, "dp": 128, "pp": 16, "ep": 1, "etp": 1, "cp": 1, "layers_per_stage": None, "first_stage_layers": None, "last_stage_layers": None, "world_size": None},
            workload={"batch": 128 * 16, "micro_batches": 16},
        ),
        repeats=1,
        baseline=False,
    ),
)
