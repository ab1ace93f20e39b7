"""The memory guard: refuse a graph before allocating it when its work would not fit.

The peak resident bytes of each way of running dagen grow with the graph's nodes (edges
are about 1.2-1.4 per node). Measured on this repository's ladder
(``docs/cost-model.md``, "Memory guard"): build and every graph check peak at about 67
bytes per node, the schedule simulation at about 187 (its event arrays on top of the
graph), and a streamed JSON or timeline export after the simulation at about 276.
:data:`PEAK_BYTES_PER_NODE` rounds those up. The allowance is ``DAGEN_MEMORY_LIMIT``
(bytes, or with a K/M/G/T suffix, powers of 1024) or else 75 % of the machine's
physical memory, so that the other processes of a CI runner keep the rest.

Example:
    >>> estimate_bytes(10_000_000, 13_000_000, Peak.SIMULATE) / 2**30  # doctest: +ELLIPSIS
    1.7...
"""

from __future__ import annotations

import enum
import math
import os
import re

from dagen.errors import MemoryLimit

__all__ = ["PEAK_BYTES_PER_NODE", "Peak", "check_budget", "estimate_bytes", "memory_limit"]


class Peak(enum.StrEnum):
    """How far the run goes after the build: what sets its peak memory."""

    BUILD = "build"
    """Build and graph checks (``dagen check`` of a plan whose graph is broken)."""
    SIMULATE = "simulate"
    """Build, checks and the schedule simulation (``dagen check``, ``dagen report``)."""
    EXPORT = "export"
    """All of that, then a streamed export (``dagen build``)."""


PEAK_BYTES_PER_NODE = {Peak.BUILD: 72, Peak.SIMULATE: 192, Peak.EXPORT: 288}
"""Peak resident bytes per node, measured (module docstring) and rounded up."""
EDGES_PER_NODE = 1.35
"""Edges per node of the measured plans (1.23 to 1.35); more edges scale the estimate."""
SHARE = 0.75
"""Fraction of physical memory allowed when ``DAGEN_MEMORY_LIMIT`` is unset."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_LIMIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)


def memory_limit() -> int:
    """Bytes a run may use: ``DAGEN_MEMORY_LIMIT``, else :data:`SHARE` of physical memory.

    Raises:
        MemoryLimit: ``DAGEN_MEMORY_LIMIT`` is not a size such as ``8G`` or ``500000000``.
    """
    text = os.environ.get("DAGEN_MEMORY_LIMIT")
    if text:
        m = _LIMIT.fullmatch(text)
        if m is None:
            raise MemoryLimit(
                f"DAGEN_MEMORY_LIMIT={text!r} is not a size. Fix: write bytes or a size "
                "with a unit, e.g. DAGEN_MEMORY_LIMIT=8G"
            )
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # no sysconf: assume the 24 GiB of the CI machine
        total = 24 << 30
    return int(total * SHARE)


def estimate_bytes(nodes: int, edges: int, peak: Peak) -> int:
    """Peak resident bytes of a run of ``peak`` on a graph of that size."""
    scale = max(1.0, edges / max(nodes, 1) / EDGES_PER_NODE)
    return math.ceil(nodes * PEAK_BYTES_PER_NODE[peak] * scale)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_budget(name: str, nodes: int, edges: int, peak: Peak, *, steps: int = 1,
                 micro_batches: int = 1, world: int = 1) -> None:  # fmt: skip
    """Raise :class:`MemoryLimit` when the run would pass :func:`memory_limit`, with the
    estimate and how to shrink the job (the graph grows with each of ``steps``,
    ``micro_batches`` and ``world``)."""
    need, limit = estimate_bytes(nodes, edges, peak), memory_limit()
    if need <= limit:
        return
    factor = math.ceil(need / limit)
    ways = [f"{label} {v:,} → at most {max(1, v // factor):,}"
            for label, v in (("decode_steps", steps), ("micro_batches", micro_batches),
                             ("GPUs", world)) if v > 1]  # fmt: skip
    how = "; or ".join(ways) if ways else "a smaller plan"
    cheaper = ""
    if peak is not Peak.BUILD:
        lower = Peak.SIMULATE if peak is Peak.EXPORT else Peak.BUILD
        cheaper = f"; {lower.value} alone would need {_gib(estimate_bytes(nodes, edges, lower))}"
    raise MemoryLimit(
        f"{name}: the graph would have {nodes:,} nodes and {edges:,} edges; {peak.value} "
        f"would peak at about {_gib(need)} ({PEAK_BYTES_PER_NODE[peak]} B/node measured, "
        f"docs/cost-model.md#memory-guard), over the {_gib(limit)} allowed "
        f"(DAGEN_MEMORY_LIMIT, default 75% of physical memory){cheaper}. Refused before "
        f"allocating. Fix: shrink the graph {factor}×: {how}"
    )
