"""The rules a deployment's pools must keep between them, each a finding that names the
pool and the field, with the arithmetic (docs/plan-checks.md):

- ``PLAN-POOL-MODEL``: every pool serves the same model (a pool that writes its own
  ``model`` and differs: each differing field with both values);
- ``PLAN-POOL-KV-DTYPE``: the decode pool holds the cache in the format prefill writes it
  (bytes per token and layer on both sides);
- ``PLAN-POOL-LAYOUT``: the layouts can hand a cache over: one prefill and one decode pool,
  no context parallelism, the same prompt length, and KV heads that split over both TP
  degrees.

Each pool's own plan rules run too (:func:`dagen.plan.rules.plan_findings`), their paths
prefixed with ``pools.<name>.``.

Example:
    >>> [f.code for f in deployment_findings(dep)]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import dataclasses

from dagen.findings import Code, Finding, finding
from dagen.plan.deploy import Deployment, PoolPlan
from dagen.plan.rules import plan_findings

__all__ = ["deployment_findings", "kv_bytes_per_token_layer"]


def kv_bytes_per_token_layer(pool: PoolPlan) -> tuple[int, float]:
    """(elements, bytes) of one token's KV cache in one layer, in the pool's KV format."""
    m = pool.plan.model
    width = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim if m.mla else 2 * m.kv_heads * m.head_dim
    return width, width * pool.plan.dtypes.kv_cache.nbytes


def _at(dep: Deployment, code: Code, path: str, message: str, fix: str) -> Finding:
    return finding(code, message, fix=fix, path=path, origin=dep.where(path))


def _model(dep: Deployment) -> list[Finding]:
    first = dep.pools[0]
    out = []
    for pool in dep.pools[1:]:
        if pool.plan.model == first.plan.model:
            continue
        diffs = [
            (f.name, getattr(first.plan.model, f.name), getattr(pool.plan.model, f.name))
            for f in dataclasses.fields(first.plan.model)
            if getattr(first.plan.model, f.name) != getattr(pool.plan.model, f.name)
        ]
        name, a, _ = diffs[0]
        text = "; ".join(f"model.{n}: {first.name} {x!r}, {pool.name} {y!r}" for n, x, y in diffs)
        out.append(_at(dep, Code.PLAN_POOL_MODEL, f"pools.{pool.name}.model.{name}",
                       f"pool {pool.name!r} serves another model than pool {first.name!r}: {text}; "
                       "a cache made by one model is no cache for another",
                       f"remove pools.{pool.name}.model (the shared model applies) or make "
                       f"model.{name} {a!r}"))  # fmt: skip
    return out


def _kv_dtype(dep: Deployment) -> list[Finding]:
    pre, dec = _phases(dep)
    if pre is None or dec is None:
        return []
    a, b = pre.plan.dtypes.kv_cache, dec.plan.dtypes.kv_cache
    if a == b:
        return []
    (n, ba), (_, bb) = kv_bytes_per_token_layer(pre), kv_bytes_per_token_layer(dec)
    return [_at(dep, Code.PLAN_POOL_KV_DTYPE, f"pools.{dec.name}.precision.kv_cache",
                f"pool {pre.name!r} writes the KV cache in {a.value} and pool {dec.name!r} holds "
                f"it in {b.value}: {n:,} elements per token and layer are {n:,} × {a.nbytes:g} = "
                f"{ba:,.0f} B sent against {n:,} × {b.nbytes:g} = {bb:,.0f} B reserved",
                f"set precision.kv_cache: {a.value} in both pools (or convert on one side and "
                "model it)")]  # fmt: skip


def _phases(dep: Deployment) -> tuple[PoolPlan | None, PoolPlan | None]:
    pre = [p for p in dep.pools if not p.plan.workload.decoding]
    dec = [p for p in dep.pools if p.plan.workload.decoding]
    return (pre[0] if len(pre) == 1 else None), (dec[0] if len(dec) == 1 else None)


def _layout(dep: Deployment) -> list[Finding]:
    pre, dec = _phases(dep)
    if pre is None or dec is None:
        phases = ", ".join(f"{p.name}: {p.plan.workload.phase.value}" for p in dep.pools)
        return [_at(dep, Code.PLAN_POOL_LAYOUT, f"pools.{dep.pools[-1].name}.workload.phase",
                    f"the pools' phases are {phases}; a disaggregated deployment has exactly one "
                    "prefill and one decode pool", "set workload.phase: prefill in one pool and "
                    "decode in the other")]  # fmt: skip
    out = []
    for pool in (pre, dec):
        if pool.plan.parallel.cp != 1:
            out.append(_at(dep, Code.PLAN_POOL_LAYOUT, f"pools.{pool.name}.parallel.cp",
                           f"pool {pool.name!r} has cp {pool.plan.parallel.cp}; the transfer is "
                           "modelled per (stage, replica, tp rank) without context parallelism",
                           "use cp: 1 in a disaggregated pool"))  # fmt: skip
    if pre.plan.workload.prompt_len != dec.plan.workload.prompt_len:
        a, b = pre.plan.workload.prompt_len, dec.plan.workload.prompt_len
        out.append(_at(dep, Code.PLAN_POOL_LAYOUT, f"pools.{dec.name}.workload.prompt_len",
                       f"prefill makes caches of {a:,} tokens and decode reserves {b:,} per "
                       "request", "write prompt_len once, in the shared workload"))  # fmt: skip
    m = pre.plan.model
    if m.mla is None:
        for pool in (pre, dec):
            tp = pool.plan.parallel.tp
            if m.kv_heads % tp and tp % m.kv_heads:
                out.append(_at(dep, Code.PLAN_POOL_LAYOUT, f"pools.{pool.name}.parallel.tp",
                               f"kv_heads {m.kv_heads} and tp {tp} divide neither way "
                               f"({m.kv_heads} mod {tp} = {m.kv_heads % tp}, {tp} mod "
                               f"{m.kv_heads} = {tp % m.kv_heads}): no rank holds whole KV heads",
                               "pick a tp that divides kv_heads or a multiple of it"))  # fmt: skip
    return out


def deployment_findings(dep: Deployment) -> list[Finding]:
    """Every pool's plan rules (paths under ``pools.<name>``), then the rules between pools."""
    out: list[Finding] = []
    for pool in dep.pools:
        for f in plan_findings(pool.plan):
            out.append(dataclasses.replace(f, path=f"pools.{pool.name}.{f.path}" if f.path else
                                           f"pools.{pool.name}", message=f"pool {pool.name!r}: "
                                           f"{f.message}"))  # fmt: skip
    return out + _model(dep) + _kv_dtype(dep) + _layout(dep)
