"""COST-CONCURRENCY: the largest serving concurrency whose KV cache fits in memory.

A serving plan whose requests in flight overflow the KV pool gets, besides COST-OOM, the
largest concurrency ``N`` that fits, with the arithmetic. Memory depends on the
concurrency twice: through the KV cache (``N_r = N / dp`` requests per replica, each
holding ``kv_seq`` bytes on a rank: its prompt and half its output, paged) and through
the activations of one iteration (the decode batch grows with ``N``), which shrink the
pool. So ``N`` is found by bisection over the concurrencies the plan's rules admit
(multiples of ``dp · micro_batches``), each weighed by the same memory rules as the
estimate (:func:`dagen.cost.memory.pool_memory_report` of the plan's pool, not expanded).
Memory grows with ``N``, so the fit is monotone and the bisection exact.

Example:
    >>> fit = largest_concurrency(plan)  # doctest: +SKIP
    >>> fit.concurrency, fit.step  # doctest: +SKIP
    (2136, 8)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dagen.codes import Code
from dagen.cost.bounds import fmt
from dagen.cost.memory import GIB, MemoryReport, pool_memory_report
from dagen.cost.verdicts import Verdict, VerdictKind
from dagen.graph.build import describe_pool
from dagen.plan.model import Plan

__all__ = ["ConcurrencyFit", "concurrency_verdict", "largest_concurrency"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyFit:
    """The largest concurrency that fits, and the memory at it and one step above."""

    concurrency: int
    """Largest fitting concurrency (0: not even one step fits)."""
    step: int
    """Concurrencies the rules admit are multiples of this: ``dp · micro_batches``."""
    at: MemoryReport | None
    """Memory at ``concurrency`` (None when it is 0)."""
    above: MemoryReport
    """Memory at ``concurrency + step``, which overflows."""


def _at(plan: Plan, concurrency: int) -> Plan:
    w = dataclasses.replace(plan.workload, batch=concurrency, concurrency=concurrency)
    return dataclasses.replace(plan, workload=w)


def _memory(plan: Plan, concurrency: int) -> MemoryReport:
    return pool_memory_report(describe_pool(_at(plan, concurrency)))


def _fits(mem: MemoryReport) -> bool:
    return mem.overflow_rank is None and bool((mem.kv_pool_bytes >= 0).all())


def largest_concurrency(plan: Plan) -> ConcurrencyFit:
    """Bisect the largest multiple of ``dp · micro_batches`` ≤ the plan's concurrency that
    fits (the plan's own concurrency must not fit)."""
    step = plan.parallel.attn_dp() * plan.workload.micro_batches
    lo, hi = 0, plan.workload.batch // step  # multiples: lo fits (or is 0), hi does not
    cache: dict[int, MemoryReport] = {}

    def mem(k: int) -> MemoryReport:
        if k not in cache:
            cache[k] = _memory(plan, k * step)
        return cache[k]

    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _fits(mem(mid)) else (lo, mid)
    return ConcurrencyFit(
        concurrency=lo * step, step=step, at=mem(lo) if lo else None, above=mem(lo + 1)
    )


def _tightest(mem: MemoryReport) -> int:
    """The rank with the least KV headroom."""
    return int(np.argmax(mem.kv_bytes - mem.kv_pool_bytes))


def _rank_text(mem: MemoryReport, n: int) -> str:
    r = _tightest(mem)
    pool, per = float(mem.kv_pool_bytes[r]), float(mem.kv_seq_bytes[r])
    need = float(mem.kv_bytes[r])
    return (
        f"at {n:,}: rank {r} holds {fmt(need / GIB)} GiB of KV "
        f"({n:,} / {int(mem.replicas[r]):,} replicas × {fmt(per / 2**20)} MiB per request) "
        f"in a {fmt(pool / GIB)} GiB pool"
    )


def concurrency_verdict(plan: Plan, mem: MemoryReport | None) -> Verdict | None:
    """COST-CONCURRENCY for a single-pool serving plan whose KV cache overflows, else None."""
    if not plan.workload.serving or mem is None or len(mem.framework) != 1:
        return None
    if mem.overflow_rank is None or (mem.kv_pool_bytes < 0).any():
        return None  # it fits, or the weights alone overflow (COST-OOM says so)
    fit = largest_concurrency(plan)
    n, above = fit.concurrency, fit.above
    lines = [f"concurrencies step by dp·micro_batches = {fit.step}"]
    if fit.at is not None:
        lines.append(_rank_text(fit.at, n) + " → fits")
    lines.append(_rank_text(above, n + fit.step) + " → overflows")
    text = "; ".join(lines)
    claim = f"concurrency {plan.workload.batch:,} fits in memory"
    return Verdict(
        claim=claim, path="workload.concurrency", unit="requests fit",
        target=float(plan.workload.batch), estimate=float(n), bound=None,
        verdict=VerdictKind.FAILS, code=Code.COST_CONCURRENCY,
        arithmetic=f"the largest concurrency that fits is {n:,}: {text}.",
    )  # fmt: skip
