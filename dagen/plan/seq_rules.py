"""Plan rules of the sequence: sequence parallelism and the model's longest context.

* ``PLAN-SP-TP1``: ``sequence_parallel`` with tp = 1 has no TP group to split the
  sequence over; Megatron-LM's ``validate_args`` turns it off ("Disabling sequence
  parallelism because tensor model parallelism is disabled"), and so does the graph.
* ``PLAN-SP-TOKENS``: under SP each TP rank holds tokens/tp of a micro-batch's stream;
  the graph rounds it up (:func:`dagen.graph.dims.derive_dims`), Megatron-Core's
  ``_split_along_first_dim`` asserts it divides.
* ``PLAN-CONTEXT``: prompt + generated tokens past ``model.max_position_embeddings``.

Example:
    >>> [f.code for f in sequence_findings(plan)]  # doctest: +SKIP
    ['PLAN-SP-TOKENS']
"""

from __future__ import annotations

from dagen.findings import Code, Finding, Severity
from dagen.plan.model import Plan
from dagen.plan.world import finding

__all__ = ["micro_batch_tokens", "sequence_findings"]


def micro_batch_tokens(plan: Plan) -> tuple[int, str] | None:
    """Tokens of one micro-batch's stream on one rank before SP splits it, with the
    arithmetic; None for serving steady states (their token count is fractional)."""
    wl, par = plan.workload, plan.parallel
    if wl.serving:
        return None
    dp = par.attn_dp()
    seqs = wl.batch // (dp * wl.micro_batches)
    if wl.decoding:
        per = 1 + wl.speculative_tokens
        how = f"{seqs} sequences · (1 + {wl.speculative_tokens} draft) tokens"
    else:
        per = wl.prompt_len // par.cp
        how = f"{seqs} sequences · {wl.prompt_len}/{par.cp} (prompt_len/cp) tokens"
    seqs_how = f"batch {wl.batch} / ({dp} replicas · {wl.micro_batches} micro-batches)"
    return seqs * per, f"{how} = {seqs * per} ({seqs} = {seqs_how})"


def _sp(plan: Plan) -> list[Finding]:
    par = plan.parallel
    if not par.sequence_parallel:
        return []
    if par.tp == 1:
        msg = (
            "sequence_parallel is true but tp = 1: there is no tensor-parallel group to split "
            "the sequence over (Megatron-LM turns SP off in this case, and so does the graph)"
        )
        fix = "remove sequence_parallel, or use tp > 1"
        return [
            finding(
                plan, Code.PLAN_SP_TP1, Severity.WARNING, "parallel.sequence_parallel", msg, fix
            )
        ]
    tokens = micro_batch_tokens(plan)
    if tokens is None or tokens[0] % par.tp == 0:
        return []
    n, how = tokens
    padded = -(-n // par.tp)
    msg = (
        f"under sequence parallelism each of the tp={par.tp} ranks holds 1/tp of a "
        f"micro-batch's {n} tokens ({how}), which tp does not divide: the graph pads to "
        f"⌈{n}/{par.tp}⌉ = {padded} per rank ({padded * par.tp - n} padding tokens); "
        "Megatron-Core asserts the sequence divides by tp"
    )
    fix = f"make the tokens of a micro-batch a multiple of {par.tp} (batch, micro_batches, prompt_len), or drop sequence_parallel"
    return [
        finding(plan, Code.PLAN_SP_TOKENS, Severity.WARNING, "parallel.sequence_parallel", msg,
                fix, tokens=n, padded=padded)
    ]  # fmt: skip


def _context(plan: Plan) -> list[Finding]:
    limit, wl = plan.model.max_position_embeddings, plan.workload
    if limit is None:
        return []
    draft = wl.speculative_tokens if wl.decoding else 0
    need = wl.prompt_len + wl.gen_len + draft
    if need <= limit:
        return []
    parts = f"prompt_len {wl.prompt_len} + gen_len {wl.gen_len}"
    if draft:
        parts += f" + speculative_tokens {draft}"
    msg = f"{parts} = {need:,} tokens is more than the model's max_position_embeddings {limit:,}"
    fix = f"keep prompt_len + gen_len ≤ {limit:,} (e.g. prompt_len: {max(1, limit - wl.gen_len - draft)})"
    return [
        finding(plan, Code.PLAN_CONTEXT, Severity.ERROR, "workload.prompt_len", msg, fix,
                tokens=need, limit=limit)
    ]  # fmt: skip


def sequence_findings(plan: Plan) -> list[Finding]:
    """``PLAN-SP-TP1``, ``PLAN-SP-TOKENS`` and ``PLAN-CONTEXT`` of ``plan``."""
    return _sp(plan) + _context(plan)
