"""Shared test helpers: a factory of small valid plans.

``make_plan(**overrides)`` returns a tiny dense plan (4 layers, 8 GPUs' worth of model at
most); each keyword goes to the record that has a field of that name: model, moe, mla,
parallel, workload, hardware, runtime or schedule. Giving any Moe field (``experts``, ``top_k``, …) makes the
model MoE; any Mla field adds MLA. ``moe=None`` / ``mla=None`` keep them off.

>>> make_plan(tp=2, experts=8, phase="decode").model.moe.experts
8
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagen.plan.model import (
    AllToAll,
    Convention,
    DType,
    Hardware,
    Mla,
    Model,
    Moe,
    Overlap,
    Parallel,
    Phase,
    Plan,
    Runtime,
    Scheduling,
    Workload,
)

if TYPE_CHECKING:
    from dagen.api import Analysis

_MODEL: dict[str, Any] = dict(
    name="tiny",
    layers=4,
    hidden_size=64,
    heads=4,
    kv_heads=2,
    head_dim=16,
    ffn_size=256,
    vocab_size=128,
)
_MOE: dict[str, Any] = dict(experts=8, top_k=2, expert_ffn_size=128)
_MLA: dict[str, Any] = dict(
    q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16
)
_WORKLOAD: dict[str, Any] = dict(batch=8, prompt_len=16)
_HARDWARE: dict[str, Any] = dict(
    memory_gb=80.0,
    peak_tflops={"bf16": 989.0, "fp8": 1979.0},
    hbm_tbps=3.35,
    gpus_per_node=8,
    intra_node_gbps=450.0,
    inter_node_gbps=50.0,
)
_ENUMS = {
    "phase": Phase,
    "dtype": DType,
    "convention": Convention,
    "overlap": Overlap,
    "all_to_all": AllToAll,
}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _take(overrides: dict[str, Any], cls: type, base: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name in _fields(cls) & set(overrides):
        value = overrides.pop(name)
        out[name] = _ENUMS[name](value) if name in _ENUMS and isinstance(value, str) else value
    return out


def make_plan(**overrides: Any) -> Plan:
    """A small valid plan; keyword overrides go to the record that has the field."""
    overrides = dict(overrides)
    want_moe = bool(_fields(Moe) & set(overrides)) and overrides.get("moe", True) is not None
    want_mla = bool(_fields(Mla) & set(overrides)) and overrides.get("mla", True) is not None
    moe = Moe(**_take(overrides, Moe, _MOE)) if want_moe else None
    mla = Mla(**_take(overrides, Mla, _MLA)) if want_mla else None
    overrides.pop("moe", None)
    overrides.pop("mla", None)
    name = overrides.pop("plan_name", "tiny")
    model = Model(**_take(overrides, Model, _MODEL), moe=moe, mla=mla)
    parallel = Parallel(**_take(overrides, Parallel, {}))
    workload = Workload(**_take(overrides, Workload, _WORKLOAD))
    hardware = Hardware(**_take(overrides, Hardware, _HARDWARE))
    runtime = Runtime(**_take(overrides, Runtime, {}))
    schedule = Scheduling(**_take(overrides, Scheduling, {}))
    if overrides:
        raise TypeError(f"make_plan: unknown fields {sorted(overrides)}")
    return Plan(name=name, model=model, parallel=parallel, workload=workload, hardware=hardware,
                runtime=runtime, schedule=schedule)  # fmt: skip


SAMPLES = Path(__file__).resolve().parent.parent / "samples"
"""The bundled sample plans."""
UNBUILDABLE_SAMPLES = frozenset({"seed-moe-10b.yaml"})
"""Samples that must not build (their plan has errors on purpose)."""


def buildable_samples() -> list[str]:
    """File names of every sample that builds, sorted."""
    return sorted(p.name for p in SAMPLES.glob("*.yaml") if p.name not in UNBUILDABLE_SAMPLES)


@functools.cache
def analysed_sample(name: str) -> Analysis:
    """``dagen.analyse`` of sample ``name``, once per test session (several modules export
    every sample; analysing one takes seconds)."""
    import dagen

    return dagen.analyse(dagen.load_plan(SAMPLES / name))
