"""The ladder of plans the harness measures, from the seed to 32,768 GPUs.

Rungs are the bundled samples plus generated variants: a sample's model with larger
degrees and more micro-batches. Each rung is a function returning a :class:`Plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagen.plan.loader import load_plan_text
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


def _load(name: str) -> Plan:
    """A sample without its claims: they do not change the graph, and an older revision
    timed against this one (bench.against) may not read them."""
    data = yaml.safe_load((SAMPLES / name).read_text(encoding="utf-8"))
    for section in ("targets", "claims"):
        data.pop(section, None)
    return load_plan_text(yaml.safe_dump(data, sort_keys=False), source=name, base_dir=SAMPLES)


def _sample(name: str) -> Callable[[], Plan]:
    return lambda: _load(name)


def _variant(
    name: str, *, parallel: dict[str, object], workload: dict[str, object]
) -> Callable[[], Plan]:
    def make() -> Plan:
        plan = _load(name)
        par = dataclasses.replace(plan.parallel, **parallel)  # type: ignore[arg-type]
        work = dataclasses.replace(plan.workload, **workload)  # type: ignore[arg-type]
        return dataclasses.replace(
            plan, parallel=par, workload=work, name=f"{plan.name}-{par.world()}gpu"
        )

    return make


def _split(first: int, last: int) -> dict[str, object]:
    return {
        "layers_per_stage": None,
        "first_stage_layers": first,
        "last_stage_layers": last,
        "world_size": None,
    }


RUNGS: tuple[Rung, ...] = (
    Rung(
        name="seed-128",
        what="seed-moe-10b-fixed.yaml: 128 GPUs, TP2·DP16·PP4 attention, EP16·EDP2 experts",
        make=_sample("seed-moe-10b-fixed.yaml"),
    ),
    Rung(
        name="dsv3-decode-320",
        what="deepseek-v3-decode.yaml: 320 GPUs, TP4·DP80 attention, EP320 (DeepSeek-V3 decode unit)",
        make=_sample("deepseek-v3-decode.yaml"),
    ),
    Rung(
        name="qwen3-1024",
        what="Qwen3-235B-A22B prefill, TP4·DP32·PP8 = 1,024 GPUs, EP32, 8 micro-batches (stages 11/12×6/11 layers)",
        make=_variant(
            "qwen3-235b-a22b.yaml",
            parallel={"tp": 4, "dp": 32, "pp": 8, "cp": 1, "ep": 32, "etp": 1, **_split(11, 11)},
            workload={"batch": 32 * 8, "micro_batches": 8},
        ),
    ),
    Rung(
        name="qwen3-4096",
        what="Qwen3-235B-A22B prefill, TP4·DP128·PP8 = 4,096 GPUs, EP32, 12 micro-batches",
        make=_variant(
            "qwen3-235b-a22b.yaml",
            parallel={"tp": 4, "dp": 128, "pp": 8, "cp": 1, "ep": 32, "etp": 1, **_split(11, 11)},
            workload={"batch": 128 * 12, "micro_batches": 12},
        ),
        baseline=False,
    ),
    Rung(
        name="llama405b-16384",
        what="Llama-3.1-405B dense prefill, TP8·DP128·PP16 = 16,384 GPUs (its training layout), 16 micro-batches",
        make=_variant(
            "llama3-405b.yaml",
            parallel={"tp": 8, "dp": 128, "pp": 16, **_split(7, 7)},
            workload={"batch": 128 * 16, "micro_batches": 16},
        ),
        repeats=2,
        baseline=False,
    ),
    Rung(
        name="dsv3-32768",
        what="DeepSeek-V3 prefill, TP4·DP512·PP16 = 32,768 GPUs, EP256, 32 micro-batches (synthetic)",
        make=_variant(
            "deepseek-v3-prefill.yaml",
            parallel={
                "tp": 4,
                "dp": 512,
                "pp": 16,
                "ep": 256,
                "etp": 1,
                "redundant_experts": 0,
                **_split(3, 2),
            },
            workload={"batch": 512 * 32, "micro_batches": 32},
        ),
        repeats=1,
        baseline=False,
    ),
)
