"""Claims a plan makes: its ``targets`` (fixed bounds on the main figures) and its
``claims`` list, absolute ones on any metric and comparative ones against an
alternative plan.

A comparative claim names the alternative as a partial override of the plan (``vs``),
the metric, and the relative change it claims for *this* plan against the alternative:
``change = this / alternative − 1``. "40 % TTFT improvement vs PP=2" is
``{metric: ttft_s, vs: {parallel: {pp: 2, dp: 32}}, change: -0.40}``: it holds when this
plan's TTFT is at least 40 % below the alternative's. For a metric where more is better
(throughput), a claimed ``+0.25`` holds when this plan is at least 25 % above.

Example:
    >>> Metric.TTFT_S.lower_is_better, Metric.MFU.lower_is_better
    (True, False)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagen.plan.fields import spec

__all__ = ["Claim", "Metric", "Targets"]


class Metric(enum.StrEnum):
    """A figure of the estimate a claim can name (docs/cost-model.md, "Metrics")."""

    TTFT_S = "ttft_s"
    TPOT_MS = "tpot_ms"
    TOKENS_PER_S = "tokens_per_s"
    TOKENS_PER_S_PER_GPU = "tokens_per_s_per_gpu"
    MEMORY_GIB = "memory_gib"
    """Peak memory of the fullest GPU, GiB."""
    MEMORY_FRACTION = "memory_fraction"
    GPU_UTILIZATION = "gpu_utilization"
    """Compute-stream busy time over the makespan, mean over GPUs."""
    MFU = "mfu"
    """Model FLOPs per second over the datasheet peak of every GPU."""
    COMM_S = "comm_s"
    """Communication time on the critical path (exposed communication), s."""
    COMM_SHARE = "comm_share"
    """Exposed communication over the makespan."""
    BUBBLE = "bubble_fraction"

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller value is the better one (times, memory, overheads)."""
        return self not in _HIGHER_IS_BETTER

    @property
    def unit(self) -> str:
        """The unit the metric is shown in."""
        return _UNITS.get(self, "")


_HIGHER_IS_BETTER = frozenset(
    {Metric.TOKENS_PER_S, Metric.TOKENS_PER_S_PER_GPU, Metric.GPU_UTILIZATION, Metric.MFU}
)
_UNITS = {
    Metric.TTFT_S: "s",
    Metric.TPOT_MS: "ms",
    Metric.TOKENS_PER_S: "tokens/s",
    Metric.TOKENS_PER_S_PER_GPU: "tokens/s/GPU",
    Metric.MEMORY_GIB: "GiB",
    Metric.COMM_S: "s",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """One claim: a bound on a metric, or a change against an alternative plan."""

    metric: Metric = spec("The figure the claim is about.")
    says: str = spec("The claim in the words of whoever made it (shown in findings).", default="")
    at_most: float | None = spec("The metric is at most this (absolute claim).", default=None)
    at_least: float | None = spec("The metric is at least this (absolute claim).", default=None)
    vs: Mapping[str, Any] | None = spec(
        "The alternative: a partial plan written over this one, e.g. {parallel: {pp: 2}}.",
        default=None,
    )
    change: float | None = spec(
        "Claimed relative change of this plan against the alternative, this / vs − 1 "
        "(−0.4: 40 % lower); a claim of at least that much improvement.",
        default=None,
        minimum=-1,
    )
    tolerance: float = spec(
        "Slack for the verdict: a comparative claim holds within this many points of the "
        "change (0.05 = 5 points); an absolute one within this fraction of its value.",
        default=0.0,
        minimum=0,
        maximum=1,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Claims the plan makes, checked against estimates. All optional."""

    ttft_s: float | None = spec(
        "Time to first token at most.", default=None, unit="s", minimum=0, exclusive_minimum=True
    )
    tpot_ms: float | None = spec(
        "Time per output token at most.", default=None, unit="ms", minimum=0, exclusive_minimum=True
    )
    tokens_per_s_per_gpu: float | None = spec(
        "Throughput per GPU at least (100 tokens/ms = 100000).",
        default=None,
        unit="tokens/s",
        minimum=0,
        exclusive_minimum=True,
    )
    tokens_per_s: float | None = spec(
        "Total throughput at least.",
        default=None,
        unit="tokens/s",
        minimum=0,
        exclusive_minimum=True,
    )
    max_memory_fraction: float | None = spec(
        "Peak memory per GPU at most this fraction of capacity.",
        default=None,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    gpu_utilization: float | None = spec(
        "GPU utilisation at least: compute-stream busy time over the makespan, mean over GPUs.",
        default=None, minimum=0, maximum=1, exclusive_minimum=True,
    )  # fmt: skip
    mfu: float | None = spec(
        "Model FLOPs utilisation at least: model FLOPs per second over every GPU's peak.",
        default=None, minimum=0, maximum=1, exclusive_minimum=True,
    )  # fmt: skip
    max_comm_share: float | None = spec(
        "Communication on the critical path at most this fraction of the step.",
        default=None, minimum=0, maximum=1,
    )  # fmt: skip
    memory_per_gpu_gb: float | None = spec(
        "A stated memory use per GPU (fullest GPU), in decimal GB, to agree with the estimate.",
        default=None, unit="GB", minimum=0, exclusive_minimum=True,
    )  # fmt: skip
    memory_per_gpu_gib: float | None = spec(
        "The same in GiB (2³⁰ bytes); give one of the two.",
        default=None, unit="GiB", minimum=0, exclusive_minimum=True,
    )  # fmt: skip
    memory_tolerance: float = spec(
        "How far the stated memory may be from the estimate and still agree (0.1 = 10 %).",
        default=0.1, minimum=0, maximum=1,
    )  # fmt: skip
