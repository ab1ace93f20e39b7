"""Hypothesis strategies shared by the property tests: random small valid plans."""

from __future__ import annotations

from typing import Any

from conftest import make_plan
from hypothesis import strategies as st

from dagen.plan.model import Plan


@st.composite
def small_plans(draw: st.DrawFn, *, every_stage_has_layers: bool = False) -> Plan:
    """Dense and MoE, prefill and decode, every degree 1-3 where the model allows it.

    With ``every_stage_has_layers`` the plan has at least one layer per stage; without,
    a stage may be empty (the builder must cope; the checks warn about idle ranks).
    """
    tp, cp, dp = (draw(st.sampled_from(v)) for v in ([1, 2], [1, 2], [1, 2, 3]))
    pp = draw(st.integers(1, 3))
    layers = draw(st.integers(pp if every_stage_has_layers else 1, 6))
    per_stage = tp * cp * dp
    moe = draw(st.booleans())
    etp = draw(st.sampled_from([e for e in (1, 2) if per_stage % e == 0]))
    ep = draw(st.sampled_from([e for e in (1, 2, 3, 4, 6) if per_stage % (e * etp) == 0]))
    mbs = draw(st.integers(1, 3))
    over: dict[str, Any] = dict(
        tp=tp, cp=cp, dp=dp, pp=pp, layers=layers, micro_batches=mbs, etp=etp if moe else 1,
        ep=ep if moe else 1, sequence_parallel=draw(st.booleans()),
        batch=dp * mbs * draw(st.sampled_from([1, 2])),
        phase=draw(st.sampled_from(["prefill", "decode"])), decode_steps=draw(st.integers(1, 3)),
    )  # fmt: skip
    if moe:
        over |= dict(
            experts=12, top_k=2, shared_experts=draw(st.sampled_from([0, 1])),
            redundant_experts=ep * draw(st.sampled_from([0, 1])) if ep > 1 else 0,
            first_dense_layers=draw(st.integers(0, 2)), moe_layer_freq=draw(st.sampled_from([1, 2])),
        )  # fmt: skip
    return make_plan(**over)
