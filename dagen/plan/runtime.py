"""The serving runtime and the cost model a plan asks for.

:class:`Runtime` names the framework whose memory rules apply (docs/cost-model.md,
"Memory") and whether decode replays CUDA graphs; :class:`Cost` names the cost model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dagen.plan.fields import spec

__all__ = ["Cost", "CostModelName", "Framework", "Runtime"]

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
