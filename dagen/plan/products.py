"""Products of plan values that must stay inside int64: range problems, not overflows.

Every field is bounded (docs/plan-format.md), but products of bounded fields can pass
the 64-bit integers the graph stores bytes in: a batch of 2^30 sequences of 2^26 tokens
at a width of 2^24 is 2^82 bytes. :func:`product_problems` computes the largest such
products with Python's exact integers and reports each past :data:`LIMIT` as
``P-RANGE`` at the fields it multiplies, before anything is built.

Example:
    >>> [p.code for p in product_problems(plan)]  # doctest: +SKIP
    ['P-RANGE']
"""

from __future__ import annotations

from dagen.codes import Code
from dagen.findings import Finding, finding
from dagen.plan.model import Plan

__all__ = ["LIMIT", "product_problems"]

LIMIT = 1 << 62
"""Largest product allowed: half of int64's range, so a sum of two still fits."""

_BYTES = 4  # the widest element a byte count uses (fp32)


def _products(plan: Plan) -> list[tuple[str, str, int]]:
    """(field to point at, the product spelled out, its value)."""
    m, w = plan.model, plan.workload
    moe = m.moe
    routed = moe.expert_ffn_size * moe.top_k if moe else 0
    width = max(m.hidden_size, m.ffn_size, routed, m.vocab_size, m.heads * m.head_dim)
    per_seq = max(w.prompt_len, 1 + w.speculative_tokens)
    tokens = w.batch * (w.prompt_len + w.gen_len)
    seqs = max(1, w.batch // (plan.parallel.attn_dp() * w.micro_batches))
    act = seqs * per_seq * width * _BYTES * 3
    experts = moe.experts * moe.expert_ffn_size if moe else 0
    weights = m.layers * m.hidden_size * (m.ffn_size + experts + m.vocab_size) * 3 * _BYTES
    return [
        ("workload.batch", f"tokens = batch · (prompt_len + gen_len) = {w.batch:,} · "
         f"({w.prompt_len:,} + {w.gen_len:,})", tokens),
        ("workload.batch", f"activation bytes of a micro-batch ≤ its sequences · tokens per "
         f"sequence · widest dimension · 4 B · 3 = {seqs:,} · {per_seq:,} · {width:,} · 12", act),
        ("model.layers", f"weight bytes ≤ layers · hidden · (ffn + experts · expert_ffn + "
         f"vocab) · 3 · 4 B = {m.layers:,} · {m.hidden_size:,} · ({m.ffn_size:,} + "
         f"{experts:,} + {m.vocab_size:,}) · 12", weights),
    ]  # fmt: skip


def product_problems(plan: Plan) -> list[Finding]:
    """``P-RANGE`` for each product of ``plan``'s values past :data:`LIMIT`."""
    out = []
    for path, spelled, value in _products(plan):
        if value <= LIMIT:
            continue
        msg = (
            f"{spelled} = {value:.3e}, past the {LIMIT:.3e} (2^62) the graph's 64-bit integers hold"
        )
        fix = "these values describe no real deployment: check batch, prompt_len and the model's sizes"
        out.append(finding(Code.P_RANGE, msg, fix=fix, path=path, origin=plan.where(path)))
    return out
