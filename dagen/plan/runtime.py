"""The serving runtime and the cost model a plan asks for.

:class:`Runtime` names the framework whose memory rules apply (docs/cost-model.md,
"Memory") and whether decode replays CUDA graphs; :class:`Cost` names the cost model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dagen.plan.fields import spec

__all__ = ["AllToAll", "Cost", "CostModelName", "Framework", "Overlap", "Runtime", "Scheduling"]

_RECORD = {"frozen": True, "slots": True, "kw_only": True}


class Framework(enum.StrEnum):
    """The serving framework whose memory rules apply (docs/cost-model.md, "Memory")."""

    NONE = "none"
    VLLM = "vllm"
    SGLANG = "sglang"
    TRTLLM = "trtllm"


class CostModelName(enum.StrEnum):
    """Which cost model prices the nodes (docs/cost-model.md)."""

    ROOFLINE = "roofline"
    MEASURED = "measured"
    TABLE = "table"
    AUTO = "auto"


class Overlap(enum.StrEnum):
    """How a replica's micro-batches share its time (docs/cost-model.md, "Two-batch overlap")."""

    NONE = "none"
    """One micro-batch after another on each rank."""
    TWO_BATCH = "two_batch"
    """Two micro-batches interleaved: one's dispatch/combine under the other's compute."""


class AllToAll(enum.StrEnum):
    """The DeepEP kernels MoE dispatch/combine run on (docs/cost-model.md, "DeepEP")."""

    AUTO = "auto"
    """low_latency for decode, normal for prefill (DeepEP's own advice)."""
    NORMAL = "normal"
    """Throughput kernels: NVLink inside a node, RDMA between nodes with NVLink forwarding."""
    LOW_LATENCY = "low_latency"
    """Pure-RDMA kernels for small decode batches."""


@dataclass(**_RECORD)
class Scheduling:
    """How each rank orders its micro-batches."""

    overlap: Overlap = spec(
        "none, or two_batch: two micro-batches interleaved so one's MoE dispatch/combine "
        "overlaps the other's attention and experts (DeepSeek, SGLang two-batch overlap).",
        default=Overlap.NONE,
    )


@dataclass(**_RECORD)
class Runtime:
    """The serving runtime: whose memory rules apply, and how kernels are launched."""

    framework: Framework = spec(
        "Serving framework whose memory accounting applies (none: the whole GPU).",
        default=Framework.NONE,
    )
    memory_fraction: float | None = spec(
        "vLLM gpu_memory_utilization (of total), SGLang mem_fraction_static (of total), "
        "TRT-LLM kv_cache_free_gpu_memory_fraction (of what is free after weights); "
        "default the framework's own.",
        default=None,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    cuda_graphs: bool = spec(
        "Decode steps replay CUDA graphs (no per-kernel CPU launch).", default=True
    )
    all_to_all: AllToAll = spec(
        "MoE dispatch/combine kernels: auto (low_latency for decode, normal for prefill), "
        "normal (DeepEP throughput), low_latency (DeepEP pure RDMA).",
        default=AllToAll.AUTO,
    )


@dataclass(**_RECORD)
class Cost:
    """Which cost model prices the nodes."""

    model: CostModelName = spec(
        "roofline, measured (aiconfigurator-core kernel tables), table (a CSV/Parquet of "
        "your own), or auto (measured where the tables cover an op, else roofline).",
        default=CostModelName.ROOFLINE,
    )
    table: str | None = spec(
        "cost.model table: path of a CSV or Parquet file with columns op, shape, dtype, "
        "seconds (relative to the plan file).",
        default=None,
    )
    backend: str = spec(
        "cost.model measured/auto: the aiconfigurator backend whose kernels were measured.",
        default="trtllm",
    )
