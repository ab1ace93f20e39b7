"""Consistency rules of a well-formed plan: findings with the arithmetic, not exceptions.

:func:`plan_findings` runs every rule and returns :class:`~dagen.findings.Finding`
records, each with a stable ``PLAN-…`` code (listed in ``docs/plan-checks.md``), a
message that shows the numbers, a fix, and the YAML path with its line and column.
The world-size rules, which need both readings of the degrees, are in
:mod:`dagen.plan.world`; the layer-split rules beside the split rule, in
:mod:`dagen.plan.split_rules`.

Example:
    >>> from dagen.plan.loader import load_plan
    >>> plan = load_plan("tests/data/plans/tiny_moe.yaml")  # doctest: +SKIP
    >>> [f.code for f in plan_findings(plan)]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import math
from collections.abc import Callable

from dagen.findings import Code, Finding, Severity
from dagen.plan.model import Convention, Plan
from dagen.plan.overlap_rules import overlap_findings
from dagen.plan.params import count_params, format_count
from dagen.plan.seq_rules import sequence_findings
from dagen.plan.split_rules import layer_findings
from dagen.plan.world import ep_fix, finding, order_findings, readings, world_findings

__all__ = ["BUILDABLE_CODES", "RULES", "blocking", "plan_findings"]

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

_PARAMS_TOLERANCE = 0.10
_VOCAB_PAD = 128  # Megatron's --make-vocab-size-divisible-by default


def _divisors(n: int, limit: int | None = None) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit)]


def _set(values: list[int]) -> str:
    return "{" + ", ".join(map(str, values)) + "}"


# ------------------------------------------------------------------ heads


def _heads(plan: Plan) -> list[Finding]:
    m, tp = plan.model, plan.parallel.tp
    if tp > m.heads:
        msg = f"tp={tp} is more than the model's {m.heads} attention heads; each TP rank needs a whole head"
        fix = f"use tp ∈ {_set(_divisors(m.heads, 64))}"
        return [
            finding(plan, Code.PLAN_TP_HEADS, ERROR, "parallel.tp", msg, fix, heads=m.heads, tp=tp)
        ]
    if m.heads % tp:
        msg = f"heads {m.heads} is not divisible by tp={tp} ({m.heads} / {tp} = {m.heads / tp:g})"
        fix = f"use tp ∈ {_set(_divisors(m.heads, 64))}"
        return [
            finding(plan, Code.PLAN_HEADS_TP, ERROR, "parallel.tp", msg, fix, heads=m.heads, tp=tp)
        ]
    return []


def _gqa(plan: Plan) -> list[Finding]:
    m = plan.model
    if m.mla is None and (m.kv_heads > m.heads or m.heads % m.kv_heads):
        msg = f"heads {m.heads} is not a multiple of kv_heads {m.kv_heads}; each KV head serves a whole group of query heads"
        fix = f"use kv_heads ∈ {_set(_divisors(m.heads))}"
        return [finding(plan, Code.PLAN_GQA, ERROR, "model.kv_heads", msg, fix)]
    return []


def _kv_heads(plan: Plan) -> list[Finding]:
    m, tp = plan.model, plan.parallel.tp
    kv = m.kv_heads
    if m.mla is not None or kv % tp == 0 or tp > m.heads:
        return []
    data = {"kv_heads": kv, "tp": tp}
    if tp % kv == 0:
        msg = (
            f"kv_heads {kv} < tp={tp}: each KV head is replicated tp/kv = {tp}/{kv} = {tp // kv} "
            "times across the TP group (as Megatron-Core and vLLM do)"
        )
        fix = "nothing to fix; the KV cache per GPU holds one head, not 1/tp of one"
        return [finding(plan, Code.PLAN_KV_REPLICATED, INFO, "model.kv_heads", msg, fix, **data)]
    msg = f"kv_heads {kv} and tp={tp} divide neither way ({kv} % {tp} = {kv % tp}, {tp} % {kv} = {tp % kv})"
    fix = f"use tp dividing {kv} or a multiple of it: tp ∈ {_set(sorted(set(_divisors(kv)) | {kv * k for k in (2, 4, 8)}))}"
    return [finding(plan, Code.PLAN_KV_TP, ERROR, "parallel.tp", msg, fix, **data)]


# ------------------------------------------------------------------- FFN


def _ffn(plan: Plan) -> list[Finding]:
    m, tp = plan.model, plan.parallel.tp
    moe = m.moe
    dense = moe is None or any(not moe.is_moe_layer(i) for i in range(m.layers))
    out = []
    if dense and m.ffn_size % tp:
        msg = f"ffn_size {m.ffn_size} is not divisible by tp={tp} ({m.ffn_size} / {tp} = {m.ffn_size / tp:g})"
        fix = f"use tp ∈ {_set(_divisors(math.gcd(m.ffn_size, m.heads), 64))}"
        out.append(finding(plan, Code.PLAN_FFN_TP, ERROR, "parallel.tp", msg, fix))
    if moe is not None and moe.shared_experts and moe.shared_ffn % tp:
        msg = f"the shared experts' ffn size {moe.shared_ffn} is not divisible by tp={tp}"
        fix = f"use tp dividing {moe.shared_ffn}"
        out.append(finding(plan, Code.PLAN_FFN_TP, ERROR, "parallel.tp", msg, fix))
    if m.hidden_size % tp:
        msg = (
            f"hidden_size {m.hidden_size} is not divisible by tp={tp} "
            f"({m.hidden_size} / {tp} = {m.hidden_size / tp:g}); sequence-parallel and "
            "reduce-scatter shards of the hidden states come out uneven"
        )
        out.append(
            finding(
                plan,
                Code.PLAN_HIDDEN_TP,
                WARNING,
                "parallel.tp",
                msg,
                "use tp dividing hidden_size",
            )
        )
    return out


def _vocab(plan: Plan) -> list[Finding]:
    v, tp = plan.model.vocab_size, plan.parallel.tp
    if v % tp == 0:
        return []
    unit = _VOCAB_PAD * tp
    padded = -(-v // unit) * unit
    msg = (
        f"vocab_size {v} is not divisible by tp={tp}; the vocabulary-parallel embedding pads it "
        f"to a multiple of {_VOCAB_PAD}·tp = {unit}: {v} → {padded} ({padded - v} padding rows)"
    )
    fix = "nothing to fix if padding is intended; the graph counts the padded size"
    return [finding(plan, Code.PLAN_VOCAB_TP, WARNING, "model.vocab_size", msg, fix, padded=padded)]


# ------------------------------------------------------------------- MoE


def _moe_on_dense(plan: Plan) -> list[Finding]:
    par = plan.parallel
    if plan.model.moe is not None:
        return []
    out = []
    for name, value in (
        ("ep", par.ep),
        ("etp", par.etp),
        ("redundant_experts", par.redundant_experts),
    ):
        bad = value > (0 if name == "redundant_experts" else 1)
        if name == "etp" and value == par.tp:  # Megatron's default: etp = tp, moot when dense
            bad = False
        if bad:
            msg = f"parallel.{name} is {value} but the model has no moe block (it is dense)"
            fix = f"remove parallel.{name}, or add model.moe with experts, top_k, expert_ffn_size"
            out.append(finding(plan, Code.PLAN_MOE_DENSE, ERROR, f"parallel.{name}", msg, fix))
    if plan.workload.expert_balance is not None:
        msg = (f"workload.expert_balance is {plan.workload.expert_balance:g} but the model has "
               "no moe block (it is dense)")  # fmt: skip
        fix = "remove workload.expert_balance, or add model.moe"
        out.append(finding(plan, Code.PLAN_MOE_DENSE, ERROR, "workload.expert_balance", msg, fix))
    return out


def _ep_fix(plan: Plan) -> str:
    """ep values dividing both the expert slots and the GPUs of a stage (under megatron a
    stage is world/pp; under orthogonal ep is its own axis, so only the slots bind)."""
    par, moe = plan.parallel, plan.model.moe
    assert moe is not None
    r = readings(par)[par.convention]
    slots = moe.experts + par.redundant_experts
    stage = r.stage if par.convention is Convention.MEGATRON else slots * par.etp
    return ep_fix(par, stage, moe.experts, par.redundant_experts)


def _experts(plan: Plan) -> list[Finding]:
    moe, par = plan.model.moe, plan.parallel
    if moe is None:
        return []
    out = []
    total = moe.experts + par.redundant_experts
    spelled = (
        f"{moe.experts} + {par.redundant_experts} redundant = {total}"
        if par.redundant_experts
        else f"{total}"
    )
    data = {"experts": moe.experts, "redundant": par.redundant_experts, "ep": par.ep}
    if par.ep > total:
        msg = f"ep={par.ep} is more than the {spelled} experts of a layer; some EP ranks would hold none"
        fix = _ep_fix(plan)
        out.append(finding(plan, Code.PLAN_EP_EXPERTS, ERROR, "parallel.ep", msg, fix, **data))
    elif total % par.ep:
        msg = f"{spelled} experts do not split over ep={par.ep} ({total} / {par.ep} = {total / par.ep:g} per rank)"
        fix = _ep_fix(plan)
        out.append(finding(plan, Code.PLAN_EXPERTS_EP, ERROR, "parallel.ep", msg, fix, **data))
    if moe.top_k > moe.experts:
        msg = f"top_k {moe.top_k} is more than the {moe.experts} experts"
        out.append(
            finding(
                plan, Code.PLAN_TOPK, ERROR, "model.moe.top_k", msg, f"use top_k ≤ {moe.experts}"
            )
        )
    if par.etp > 1 and moe.expert_ffn_size % par.etp:
        f, etp = moe.expert_ffn_size, par.etp
        msg = f"expert_ffn_size {f} is not divisible by etp={etp} ({f} / {etp} = {f / etp:g})"
        fix = f"use etp ∈ {_set(_divisors(f, 64))}"
        out.append(finding(plan, Code.PLAN_ETP_FFN, ERROR, "parallel.etp", msg, fix))
    if not any(moe.is_moe_layer(i) for i in range(plan.model.layers)):
        msg = f"no layer is MoE: first_dense_layers {moe.first_dense_layers} ≥ layers {plan.model.layers}"
        fix = "lower model.moe.first_dense_layers or drop the moe block"
        out.append(
            finding(plan, Code.PLAN_NO_MOE_LAYER, WARNING, "model.moe.first_dense_layers", msg, fix)
        )
    return out


# -------------------------------------------------------------- workload


def _batch(plan: Plan) -> list[Finding]:
    par, wl = plan.parallel, plan.workload
    dp = par.attn_dp()
    how = (
        f"dp·ep = {par.dp}·{par.ep}"
        if par.convention is Convention.ORTHOGONAL
        else f"dp = {par.dp}"
    )
    if wl.batch % dp:
        msg = f"batch {wl.batch} does not split over the {dp} attention data-parallel replicas ({how}): {wl.batch} / {dp} = {wl.batch / dp:g}"
        fix = f"use a batch that is a multiple of {dp}, e.g. {-(-wl.batch // dp) * dp}"
        return [finding(plan, Code.PLAN_BATCH_DP, ERROR, "workload.batch", msg, fix)]
    per = wl.batch // dp
    if per % wl.micro_batches:
        msg = f"the per-replica batch {wl.batch} / {dp} = {per} does not split into micro_batches {wl.micro_batches}"
        fix = f"use micro_batches ∈ {_set(_divisors(per, 4096))}"
        return [finding(plan, Code.PLAN_MICROBATCH, ERROR, "workload.micro_batches", msg, fix)]
    return []


def _cp(plan: Plan) -> list[Finding]:
    cp, n = plan.parallel.cp, plan.workload.prompt_len
    if cp == 1 or n % (2 * cp) == 0:
        return []
    if n % cp and not plan.workload.decoding:
        msg = f"prompt_len {n} is not divisible by cp={cp}: each context-parallel rank takes {n}/{cp} = {n / cp:g} tokens of the prompt"
        fix = f"pad prompts to {-(-n // cp) * cp} tokens or pick cp dividing {n}"
        return [finding(plan, Code.PLAN_CP_PROMPT, ERROR, "workload.prompt_len", msg, fix)]
    padded = -(-n // (2 * cp)) * 2 * cp
    msg = (
        f"prompt_len {n} is not divisible by 2·cp = {2 * cp}: causal load balancing cuts the "
        f"sequence into 2·cp chunks, rank i taking chunks i and 2·cp−1−i"
    )
    fix = f"pad prompts to {padded} tokens or pick cp with 2·cp dividing {n}"
    return [finding(plan, Code.PLAN_CP_PROMPT, WARNING, "workload.prompt_len", msg, fix)]


def _decode(plan: Plan) -> list[Finding]:
    wl = plan.workload
    if not wl.decoding or wl.decode_steps <= max(wl.gen_len, 1):
        return []
    msg = (
        f"decode_steps {wl.decode_steps} unrolls more steps than the {wl.gen_len} tokens generated"
    )
    return [
        finding(
            plan,
            Code.PLAN_DECODE_STEPS,
            WARNING,
            "workload.decode_steps",
            msg,
            f"use decode_steps ≤ {max(wl.gen_len, 1)}",
        )
    ]


# ------------------------------------------------------- model and hardware


def _params(plan: Plan) -> list[Finding]:
    declared = plan.model.params
    if declared is None:
        return []
    counted = count_params(plan.model)
    off = (declared - counted) / counted
    if abs(off) <= _PARAMS_TOLERANCE:
        return []
    msg = (
        f"the plan declares {format_count(declared)} parameters but the model's dimensions give "
        f"{format_count(counted)} ({counted:,}), {off:+.0%} off (tolerance ±{_PARAMS_TOLERANCE:.0%})"
    )
    fix = f"set model.params: {format_count(counted)} or correct the dimensions"
    return [
        finding(
            plan,
            Code.PLAN_PARAMS,
            ERROR,
            "model.params",
            msg,
            fix,
            declared=declared,
            counted=counted,
        )
    ]


def _fp8(plan: Plan) -> list[Finding]:
    hw = plan.hardware
    if plan.model.dtype.value != "fp8" or "fp8" in hw.peak_tflops:
        return []
    name = hw.preset or "the hardware"
    msg = f"model.dtype is fp8 but {name} lists no fp8 peak; estimates fall back to {hw.tflops(plan.model.dtype):g} TFLOP/s"
    fix = "add hardware.peak_tflops.fp8, or use bf16 on GPUs without fp8 tensor cores"
    return [finding(plan, Code.PLAN_FP8_HW, WARNING, "model.dtype", msg, fix)]


def _tp_nodes(plan: Plan) -> list[Finding]:
    tp, per_node = plan.parallel.tp, plan.hardware.gpus_per_node
    if tp <= per_node:
        return []
    msg = f"tp={tp} spans {-(-tp // per_node)} nodes of {per_node} GPUs; every layer's TP collectives cross the inter-node links"
    return [
        finding(
            plan,
            Code.PLAN_TP_NODES,
            WARNING,
            "parallel.tp",
            msg,
            f"keep tp ≤ {per_node} and use pp or dp across nodes",
        )
    ]


def _order(plan: Plan) -> list[Finding]:
    par = plan.parallel
    named = par.order.lower().split("-")
    needs = [("tp", "tp", par.tp), ("cp", "cp", par.cp), ("ep", "ep", par.ep)]
    needs += [("dp", "dp", par.dp), ("pp", "pp", par.pp)]
    if plan.model.moe is not None:  # expert layers use the tp slot for etp, dp for edp
        needs += [("tp", "etp", par.etp), ("dp", "edp", par.edp())]
    missing = sorted(
        {f"{slot} ({label} = {v})" for slot, label, v in needs if v > 1 and slot not in named}
    )
    if not missing:
        return []
    msg = f"the order '{par.order}' leaves out {', '.join(missing)}; a dimension of size > 1 needs its slot"
    fix = "name every dimension, e.g. order: tp-cp-ep-dp-pp"
    return [finding(plan, Code.PLAN_ORDER, ERROR, "parallel.order", msg, fix)]


RULES: tuple[Callable[[Plan], list[Finding]], ...] = (
    _heads,
    _gqa,
    _kv_heads,
    _ffn,
    _vocab,
    _moe_on_dense,
    _experts,
    world_findings,
    _order,
    order_findings,
    layer_findings,
    _batch,
    overlap_findings,
    _cp,
    sequence_findings,
    _decode,
    _params,
    _fp8,
    _tp_nodes,
)
"""Every plan rule, in report order."""


def plan_findings(plan: Plan) -> list[Finding]:
    """Every consistency finding of ``plan``, errors and warnings alike, in rule order."""
    return [f for rule in RULES for f in rule(plan)]


BUILDABLE_CODES = frozenset(
    {Code.PLAN_PARAMS, Code.PLAN_LAYERS_SPLIT, Code.PLAN_PP_LAYERS, Code.PLAN_CONTEXT}
)
"""Errors that leave the layout well defined, so the graph is still built, checked and
priced: a wrong declared parameter count is a claim, like a target; an uneven layer
split (Megatron refuses it) is laid out by vLLM's rule (:func:`dagen.plan.split.even_split`),
and more stages than layers leaves some stages empty (``GRAPH-IDLE-RANK`` says which); a
context past the model's maximum is a claim the model cannot keep, not a layout fault."""


def blocking(findings: list[Finding]) -> list[Finding]:
    """The error-level findings that stop the graph from being built."""
    return [f for f in findings if f.severity is ERROR and f.code not in BUILDABLE_CODES]
