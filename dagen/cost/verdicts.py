"""Verdicts on the plan's claims (``targets``): holds, fails, impossible, or unverified.

Each claim is weighed twice: against the simulated estimate, and against a
first-principles bound (:mod:`dagen.cost.bounds`) that no implementation can beat. A
claim beyond the bound is ``impossible`` whatever the model's details; otherwise the
estimate says ``holds`` or ``fails``; with no estimate (the plan cannot be built) a
claim within the bound is ``unverified``. Arithmetic: docs/cost-model.md ("Verdicts").

Example:
    >>> from dagen.cost.verdicts import judge_plan_bounds
    >>> [v.verdict.value for v in judge_plan_bounds(plan)]  # doctest: +SKIP
    ['holds', 'impossible', 'unverified']
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from dagen.codes import Code
from dagen.cost.bounds import bound_world, fmt, peak_flops, token_flops, total_weight_bytes
from dagen.cost.hbm import step_bytes_bound
from dagen.cost.memory import GIB, MemoryReport
from dagen.plan.model import Phase, Plan

__all__ = [
    "EstimateParts",
    "Verdict",
    "VerdictKind",
    "decide",
    "judge_targets",
    "target_functions",
]


class VerdictKind(enum.StrEnum):
    """The outcome of weighing one claim."""

    HOLDS = "holds"
    FAILS = "fails"
    IMPOSSIBLE = "impossible"
    """Beyond a first-principles bound: no schedule or kernel can meet it."""
    UNVERIFIED = "unverified"
    """Within the bound, but no estimate exists (the plan could not be simulated)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One claim weighed against the estimate and the bound."""

    claim: str
    """The claim in words, e.g. ``time to first token ≤ 10 s``."""
    path: str
    """YAML path of the target (``targets.ttft_s``; ``hardware.memory_gb`` for fitting)."""
    unit: str
    target: float
    estimate: float | None
    """The simulated figure, in ``unit``; None when nothing was simulated."""
    bound: float | None
    """The first-principles limit in ``unit``: a floor for a claim that the figure is at
    most the target (times, memory), a ceiling for one that it is at least (throughput,
    utilisation)."""
    verdict: VerdictKind
    arithmetic: str
    code: Code | None = None
    """The finding code, when the path alone does not tell it (a ``claims`` entry)."""
    at_least: bool = False
    """The claim is that the figure is at least the target (its bound is a ceiling)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimateParts:
    """The figures the verdicts weigh; None where the phase does not give one."""

    world: int
    ttft_s: float | None = None
    tpot_s: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_gpu: float | None = None
    memory: MemoryReport | None = None


def decide(
    at_most: bool, target: float, estimate: float | None, bound: float | None
) -> VerdictKind:
    """``at_most``: the claim is ``value ≤ target`` (bound is a floor), else ``≥`` (ceiling)."""
    if bound is not None and (bound > target if at_most else bound < target):
        return VerdictKind.IMPOSSIBLE
    if estimate is None:
        return VerdictKind.UNVERIFIED
    ok = estimate <= target if at_most else estimate >= target
    return VerdictKind.HOLDS if ok else VerdictKind.FAILS


def _closing(kind: VerdictKind, estimate: float | None, unit: str) -> str:
    if estimate is None:
        return "not simulated (the plan does not build), so the bound is all there is"
    return f"simulated {fmt(estimate)} {unit}".rstrip()


def _needs(at_most: bool, target: float, estimate: float | None, bound: float) -> str:
    """How much of the physical limit the claim needs, and how much the estimate reaches:
    a time claim ``≤ target`` with floor ``bound`` needs ``bound / target`` of peak; a rate
    claim ``≥ target`` with ceiling ``bound`` needs ``target / bound``."""
    if bound <= 0 or target <= 0:
        return ""
    need = bound / target if at_most else target / bound
    text = f" The claim needs {_percent(need)} of the datasheet peak"
    if estimate is not None and estimate > 0:
        reach = bound / estimate if at_most else estimate / bound
        text += f"; the estimate reaches {_percent(reach)}"
    return text + "."


def _percent(x: float) -> str:
    """``77%``; a share under 1 % keeps two significant digits (``0.26%``), not ``0%``."""
    return f"{x:.0%}" if x >= 0.01 else f"{100 * x:.2g}%"


def _world(plan: Plan, parts: EstimateParts | None) -> tuple[int, str]:
    if parts is not None:
        return parts.world, f"{parts.world} GPUs"
    return bound_world(plan)


def _ttft(plan: Plan, parts: EstimateParts | None, target: float) -> Verdict:
    w = plan.workload
    tf = token_flops(plan, Phase.PREFILL)
    rate, rate_text = peak_flops(plan)
    world, world_text = _world(plan, parts)
    total = w.batch * w.prompt_len * tf.per_token
    bound = total / (world * rate)
    est = parts.ttft_s if parts is not None else None
    kind = decide(True, target, est, bound)
    text = (
        f"TTFT ≥ prompt FLOPs ÷ (GPUs × peak FLOP/s) = {w.batch} prompts × "
        f"{w.prompt_len} tokens × {fmt(tf.per_token)} FLOP/token = {fmt(total)} FLOP ÷ "
        f"({world_text} × {rate_text}) = {fmt(bound)} s; claimed ≤ {fmt(target)} s → "
        f"{kind.value}; {_closing(kind, est, 's')}.{_needs(True, target, est, bound)} "
        f"Per token: {tf.text}."
    )
    return Verdict(
        claim=f"time to first token ≤ {fmt(target)} s", path="targets.ttft_s", unit="s",
        target=target, estimate=est, bound=bound, verdict=kind, arithmetic=text,
    )  # fmt: skip


def _decode_floor(plan: Plan, parts: EstimateParts | None) -> tuple[float, str]:
    """Seconds a decode step takes at least, and why (the larger of FLOPs and bytes; the
    FLOPs per token are derived once, by the caller)."""
    tf = token_flops(plan, Phase.DECODE)
    rate, rate_text = peak_flops(plan)
    world, world_text = _world(plan, parts)
    flops = plan.workload.batch * tf.per_token / (world * rate)
    memory = parts.memory if parts is not None else None
    hbm, hbm_text = step_bytes_bound(plan, memory, world)
    text = (
        f"a decode step ≥ max(FLOPs: {plan.workload.batch} tokens × {fmt(tf.per_token)} "
        f"FLOP/token ÷ ({world_text} × {rate_text}) = {fmt(flops)} s, bytes: {hbm_text}) "
        f"= {fmt(max(flops, hbm))} s."
    )
    return max(flops, hbm), text


def _tpot(plan: Plan, parts: EstimateParts | None, target: float) -> Verdict:
    floor, why = _decode_floor(plan, parts)
    bound = floor * 1e3
    est = parts.tpot_s * 1e3 if parts is not None and parts.tpot_s is not None else None
    kind = decide(True, target, est, bound)
    text = (
        f"TPOT ≥ one decode step: {why} Claimed ≤ {fmt(target)} ms → {kind.value}; "
        f"{_closing(kind, est, 'ms')}.{_needs(True, target, est, bound)} "
        f"Per token: {token_flops(plan, Phase.DECODE).text}."
    )
    return Verdict(
        claim=f"time per output token ≤ {fmt(target)} ms", path="targets.tpot_ms", unit="ms",
        target=target, estimate=est, bound=bound, verdict=kind, arithmetic=text,
    )  # fmt: skip


def _per_gpu_ceiling(plan: Plan, parts: EstimateParts | None) -> tuple[float, str]:
    """Tokens/s one GPU can give at most, and why (without the FLOPs-per-token derivation,
    which the verdict states once at its end)."""
    tf = token_flops(plan)
    rate, rate_text = peak_flops(plan)
    ceiling = rate / tf.per_token
    text = (
        f"tokens/s per GPU ≤ peak FLOP/s ÷ FLOPs per token = {rate_text} ÷ "
        f"{fmt(tf.per_token)} FLOP/token = {fmt(ceiling)}"
    )
    if plan.workload.phase is Phase.DECODE:
        floor, why = _decode_floor(plan, parts)
        world, _ = _world(plan, parts)
        by_step = plan.workload.batch / (floor * world)
        text += f"; and ≤ batch ÷ (step × GPUs) = {fmt(by_step)}, since {why}"
        ceiling = min(ceiling, by_step)
    return ceiling, text.rstrip(".")


def _throughput_gpu(plan: Plan, parts: EstimateParts | None, target: float) -> Verdict:
    ceiling, why = _per_gpu_ceiling(plan, parts)
    est = parts.tokens_per_s_per_gpu if parts is not None else None
    kind = decide(False, target, est, ceiling)
    need = peak_flops(plan)[0] / target
    text = (
        f"{why}. Claimed ≥ {fmt(target)} tokens/s per GPU, which needs ≤ {fmt(need)} "
        f"FLOP/token (≤ {fmt(need / 2)} matmul weights per token) → {kind.value}; "
        f"{_closing(kind, est, 'tokens/s per GPU')}.{_needs(False, target, est, ceiling)} "
        f"Per token: {token_flops(plan).text}."
    )
    return Verdict(
        claim=f"throughput ≥ {fmt(target)} tokens/s per GPU",
        path="targets.tokens_per_s_per_gpu", unit="tokens/s/GPU", target=target,
        estimate=est, bound=ceiling, verdict=kind, arithmetic=text, at_least=True,
    )  # fmt: skip


def _throughput(plan: Plan, parts: EstimateParts | None, target: float) -> Verdict:
    per_gpu, why = _per_gpu_ceiling(plan, parts)
    world, world_text = _world(plan, parts)
    ceiling = per_gpu * world
    est = parts.tokens_per_s if parts is not None else None
    kind = decide(False, target, est, ceiling)
    text = (
        f"tokens/s ≤ {world_text} × {fmt(per_gpu)} per GPU = {fmt(ceiling)}, where {why}. "
        f"Claimed ≥ {fmt(target)} → {kind.value}; {_closing(kind, est, 'tokens/s')}."
        f"{_needs(False, target, est, ceiling)} Per token: {token_flops(plan).text}."
    )
    return Verdict(
        claim=f"throughput ≥ {fmt(target)} tokens/s", path="targets.tokens_per_s",
        unit="tokens/s", target=target, estimate=est, bound=ceiling, verdict=kind,
        arithmetic=text, at_least=True,
    )  # fmt: skip


def _gib(nbytes: float) -> str:
    return f"{fmt(nbytes / GIB)} GiB"


def _weights_floor(plan: Plan, parts: EstimateParts | None) -> tuple[float, str]:
    """Bytes of weights the fullest GPU must hold, at least."""
    if parts is not None and parts.memory is not None:
        mem = parts.memory
        rank = int(mem.weights_bytes.argmax())
        held = float(mem.weights_bytes[rank])
        return held, f"rank {rank} holds {_gib(held)} of weights"
    world, world_text = _world(plan, None)
    each = total_weight_bytes(plan) / world
    return each, f"{_gib(each * world)} of weights over {world_text} = {_gib(each)} each"


def _breakdown(mem: MemoryReport, r: int) -> str:
    items = ", ".join(
        f"{name} {_gib(float(getattr(mem, key)[r]))}"
        for name, key in (("weights", "weights_bytes"), ("KV cache", "kv_bytes"),
                          ("activations", "activation_bytes"), ("buffers", "buffer_bytes"))
    )  # fmt: skip
    return f"rank {r}: {items} = {_gib(float(mem.total_bytes[r]))}"


def _memory(plan: Plan, parts: EstimateParts | None, target: float) -> Verdict:
    capacity = plan.hardware.capacity_bytes
    floor, why = _weights_floor(plan, parts)
    bound = floor / capacity
    mem = parts.memory if parts is not None else None
    est = mem.peak_fraction if mem is not None else None
    kind = decide(True, target, est, bound)
    detail = f" Fullest {_breakdown(mem, mem.peak_rank)}." if mem is not None else ""
    text = (
        f"memory ≥ the weights that must sit there: {why} ÷ {_gib(capacity)} "
        f"= {fmt(bound)} of capacity; claimed ≤ {fmt(target)} → {kind.value}; "
        f"{_closing(kind, est, 'of capacity')}.{detail}"
    )
    return Verdict(
        claim=f"peak memory ≤ {target:.1%} of capacity", path="targets.max_memory_fraction",
        unit="fraction", target=target, estimate=est, bound=bound, verdict=kind,
        arithmetic=text,
    )  # fmt: skip


def _overflow(plan: Plan, mem: MemoryReport) -> tuple[float, str] | None:
    """(GiB short, what overflows) on the worst rank, or None if every rank fits."""
    r = mem.overflow_rank
    if r is None:
        return None
    fw = mem.framework[0] if len(mem.framework) == 1 else "its framework"
    pool = float(mem.kv_pool_bytes[r])
    short = float(mem.kv_bytes[r]) - pool
    if pool < 0:
        what = (
            f"the weights, activations and buffers alone overflow what {fw} leaves on "
            f"rank {r} (its KV pool would be {_gib(pool)})"
        )
    else:
        fits = mem.max_sequences()
        # One serving pool: COST-CONCURRENCY gives the exact largest concurrency (its
        # activations shrink with it), so no second, cruder figure here.
        tail = (
            "the largest concurrency that fits: COST-CONCURRENCY"
            if plan.workload.serving and len(mem.framework) == 1
            else f"at most {fits:,} "
            f"{'requests in flight' if plan.workload.serving else 'sequences'} fit"
        )
        what = (
            f"the KV cache overflows on rank {r}: it needs {_gib(float(mem.kv_bytes[r]))} "
            f"({_gib(float(mem.kv_seq_bytes[r]))} per sequence), {fw}'s KV pool holds "
            f"{_gib(pool)}; {tail}"
        )
    return short / GIB, f"{what}. {_breakdown(mem, r)}, of {_gib(float(mem.capacity_per_rank[r]))}"


def _capacity_path(plan: Plan) -> str:
    """The field the capacity was written in: ``memory_gb`` when given, else ``memory_gib``."""
    return "hardware.memory_gb" if plan.hardware.memory_gb is not None else "hardware.memory_gib"


def _fits(plan: Plan, parts: EstimateParts | None) -> Verdict | None:
    """The implicit claim that the plan fits in memory (only reported when it can fail)."""
    gib = plan.hardware.capacity_bytes / GIB
    floor, why = _weights_floor(plan, parts)
    mem = parts.memory if parts is not None else None
    est: float | None = None
    over = _overflow(plan, mem) if mem is not None else None
    if mem is not None:
        est = gib + over[0] if over is not None else float(mem.total_bytes.max()) / GIB
    kind = decide(True, gib, est, floor / GIB)
    if kind is VerdictKind.UNVERIFIED:
        return None
    closing = over[1] if over is not None else _closing(kind, est, "GiB on the fullest rank")
    text = (
        f"every GPU must hold its weights: {why} against {fmt(gib)} GiB → {kind.value}; {closing}."
    )
    return Verdict(
        claim=f"fits in {fmt(gib)} GiB per GPU", path=_capacity_path(plan), unit="GiB",
        target=gib, estimate=est, bound=floor / GIB, verdict=kind, arithmetic=text,
    )  # fmt: skip


_CLAIMS: tuple[tuple[str, Callable[[Plan, EstimateParts | None, float], Verdict]], ...] = (
    ("ttft_s", _ttft),
    ("tpot_ms", _tpot),
    ("tokens_per_s_per_gpu", _throughput_gpu),
    ("tokens_per_s", _throughput),
    ("max_memory_fraction", _memory),
)


def judge_targets(plan: Plan, parts: EstimateParts | None) -> tuple[Verdict, ...]:
    """Weigh the time, throughput and memory targets of ``plan`` (and whether it fits).

    ``parts`` carries the simulated figures; with None only the bounds judge.
    """
    out = [
        fn(plan, parts, value)
        for name, fn in _CLAIMS
        if (value := getattr(plan.targets, name)) is not None
    ]
    fits = _fits(plan, parts)
    if fits is not None:
        out.append(fits)
    return tuple(out)


def target_functions() -> dict[str, Callable[[Plan, EstimateParts | None, float], Verdict]]:
    """The judge of each ``targets`` field this module owns, by field name."""
    return dict(_CLAIMS)
