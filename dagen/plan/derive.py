"""Plan fields filled from others while the YAML tree is converted (the ``derived``
fields of the schema): ``name``, ``model.kv_heads`` and ``head_dim``, the hardware's
capacity in GiB, the workload's batch and lengths, and the one form a claim takes.
Each function adds a ``P-…`` problem to the context and returns False when it cannot.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dagen.findings import Code
from dagen.plan.claims import Claim
from dagen.plan.context import Context, join, missing
from dagen.plan.model import Hardware, Mode, Model, Phase, Plan, Workload
from dagen.plan.schema import record_fields
from dagen.plan.ynode import YNode

__all__ = ["derive"]


def derive(cls: type[Any], values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    if cls is Plan:
        values.setdefault("name", ctx.stem)
    if cls is Model:
        return _derive_model(values, node, path, ctx)
    if cls is Workload:
        return _derive_workload(values, node, path, ctx)
    if cls is Hardware:
        return _derive_hardware(values, node, path, ctx)
    if cls is Claim:
        return _claim_form(values, node, path, ctx)
    return True


def _claim_form(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """A claim is absolute (``at_most`` or ``at_least``) or comparative (``vs`` with
    ``change``), exactly one of the three."""
    given = [k for k in ("at_most", "at_least", "vs") if values.get(k) is not None]
    if len(given) == 1 and (values.get("change") is not None) == (given[0] == "vs"):
        return True
    if given == ["vs"]:
        msg, fix = "the claim names an alternative (vs) but no change", "add 'change: -0.4'"
    elif values.get("change") is not None and not given:
        msg, fix = "the claim gives a change but no alternative", "add 'vs: {parallel: {pp: 2}}'"
    else:
        has = ", ".join(given + (["change"] if values.get("change") is not None else []))
        msg = f"the claim needs exactly one of at_most, at_least or vs + change; it has {has or 'none'}"
        fix = "keep one form per claim; write two claims for two statements"
    ctx.bad(Code.P_TYPE, path, node, msg, fix)
    return False


def _derive_hardware(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """Capacity in GiB from ``memory_gb`` (decimal) when only that is written."""
    if values.get("memory_gb") is not None:
        values["memory_gib"] = values["memory_gb"] * 1e9 / 2**30
    if "memory_gib" not in values:
        return _required(Hardware, "memory_gib", node, path, ctx)
    return True


def _required(cls: type[Any], name: str, node: YNode, path: str, ctx: Context) -> bool:
    """Report a derived field that nothing could derive as missing (always False)."""
    info = next(f for f in record_fields(cls) if f.name == name)
    missing(dataclasses.replace(info, derived=False, required=True), node, path, ctx)
    return False


def _lengths(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """A length and its distribution are one or the other; a distribution is consistent
    and gives the length its rounded mean."""
    ok = True
    for length, key in (("prompt_len", "prompt_dist"), ("gen_len", "gen_dist")):
        dist = values.get(key)
        if dist is None:
            continue
        if (given := node.get(length)) is not None:
            msg = f"{length} and {key} both give the {length.split('_')[0]} length"
            ctx.bad(Code.P_TYPE, join(path, length), given, msg,
                    f"keep {key} (its mean sets {length}) or delete it")  # fmt: skip
            ok = False
            continue
        for sub, msg, fix in dist.problems():
            at = node.get(key)
            where = (at.get(sub) if at is not None else None) or at or node
            ctx.bad(Code.P_RANGE, join(path, f"{key}.{sub}"), where, msg, fix)
            ok = False
        if ok:
            mean = round(dist.expect(lambda x: x))
            values[length] = max(mean, 1) if length == "prompt_len" else mean
    if ok and "prompt_len" not in values:
        return _required(Workload, "prompt_len", node, path, ctx)
    return ok


def _derive_workload(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """Serving: batch is the concurrency and the step is a decode iteration; static:
    batch is required and concurrency meaningless. Lengths: :func:`_lengths`."""
    if not _lengths(values, node, path, ctx):
        return False
    if values.get("mode", Mode.STATIC) is Mode.SERVING:
        conc = values.get("concurrency")
        if conc is None:
            conc = values.get("batch")
        if conc is None:
            msg = "workload.mode is serving but has no 'concurrency' (requests in flight)"
            fix = "add 'concurrency: …' under workload (a benchmark's max concurrency)"
            ctx.bad(Code.P_MISSING, join(path, "concurrency"), node, msg, fix)
            return False
        values.update(concurrency=conc, batch=conc, phase=Phase.DECODE)
        return True
    if "batch" not in values:
        return _required(Workload, "batch", node, path, ctx)
    if values.get("concurrency") is not None or values.get("prefill_chunk") is not None:
        key = "concurrency" if values.get("concurrency") is not None else "prefill_chunk"
        at = node.get(key) or node
        msg = f"{key} applies to serving workloads only; workload.mode is static"
        ctx.bad(Code.P_TYPE, join(path, key), at, msg, "set 'mode: serving' or delete the key")
        return False
    return True


def _derive_model(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    values.setdefault("kv_heads", values["heads"])
    if "head_dim" in values:
        return True
    mla = values.get("mla")
    hidden, heads = values["hidden_size"], values["heads"]
    if mla is not None:
        values["head_dim"] = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    elif hidden % heads == 0:
        values["head_dim"] = hidden // heads
    else:
        at = node.get("heads") or node
        msg = (
            f"head_dim is not given and hidden_size {hidden} is not a multiple of heads {heads} "
            f"({hidden} / {heads} = {hidden / heads:g})"
        )
        fix = f"set {join(path, 'head_dim')} (e.g. {max(1, hidden // heads)}) or use heads dividing {hidden}"
        ctx.bad(Code.P_HEAD_DIM, join(path, "head_dim"), at, msg, fix)
        return False
    return True
