"""The two pipeline axes of ``dagen search``: the rank order and the layer split.

Both matter only with pipeline stages, and each is tried only where it changes the
deployment, so the space does not grow where it cannot:

* **rank order** (``parallel.order``): Megatron-Core's default ``tp-cp-ep-dp-pp`` and the
  pp-before-dp order it also accepts, ``tp-cp-ep-pp-dp`` (``RankGenerator`` in
  megatron/core/parallel_state.py reads any order string). With ``pp = 1`` or one
  replica the two give the same groups, so only the plan's own order is tried; an order
  the plan rules reject (``PLAN-ORDER-EDP``: pp not last needs expert DP = DP;
  ``PLAN-PP-GROUPS``: attention and experts must agree on a rank's stage) is not tried;
* **layer split** (``parallel.layers_per_stage``): the even split; the splits that take
  one layer off the stage holding the embedding (the first) or the LM head (the last),
  which is what Megatron-Core's ``decoder_first_pipeline_num_layers`` /
  ``decoder_last_pipeline_num_layers`` (``num_layers_in_first/last_pipeline_stage`` of
  ``TransformerConfig``) exist for; and the cost-balanced split (:func:`balanced`).

Example:
    >>> splits(layers=8, pp=2, head=0.0)
    {'even': (4, 4), 'first': (3, 5), 'last': (5, 3)}
    >>> splits(layers=8, pp=2, head=2.0)["balanced"]
    (5, 3)
"""

from __future__ import annotations

import dataclasses
import functools

from dagen.errors import MeshError
from dagen.mesh.ranks import check_order
from dagen.plan.model import Convention, Plan
from dagen.plan.params import active_params
from dagen.plan.split import even_split
from dagen.plan.world import order_findings

__all__ = [
    "DEFAULT_ORDER",
    "ORDERS",
    "PP_BEFORE_DP",
    "SPLIT_NAMES",
    "balanced",
    "head_weight",
    "orders",
    "parse_order",
    "parse_split",
    "splits",
]

DEFAULT_ORDER = "tp-cp-ep-dp-pp"
"""Megatron-Core's default rank order (``--order`` of megatron/training/arguments.py)."""
PP_BEFORE_DP = "tp-cp-ep-pp-dp"
"""The pp-before-dp order: each replica is a contiguous block of tp·cp·pp ranks."""
ORDERS = (DEFAULT_ORDER, PP_BEFORE_DP)
"""The orders a search tries (besides the plan's own), in the order of a layout's key."""
SPLIT_NAMES = ("even", "first", "last", "balanced")
"""``--only split=`` names: the even split, one layer off the first or the last stage,
the cost-balanced split (a split may carry several names)."""
_DIMS = frozenset({"tp", "cp", "ep", "dp", "pp"})


def orders(plan: Plan, tp: int, cp: int, dp: int, pp: int, ep: int, etp: int) -> list[str]:
    """The rank orders tried for these degrees: the plan's own, and where pp > 1 and the
    attention has more than one replica, :data:`ORDERS` the plan rules accept (lower case,
    deduplicated, in that order)."""
    own = plan.parallel.order.lower()
    replicas = dp * ep if plan.parallel.convention is Convention.ORTHOGONAL else dp
    if pp == 1 or replicas == 1:
        return [own]
    out = [own]
    for order in ORDERS:
        if order in out:
            continue
        par = dataclasses.replace(
            plan.parallel, tp=tp, cp=cp, dp=dp, pp=pp, ep=ep, etp=etp, order=order
        )
        if _accepted(dataclasses.replace(plan, parallel=par)):
            out.append(order)
    return out


def _accepted(plan: Plan) -> bool:
    """Neither ``PLAN-ORDER-EDP`` nor the mesh's order faults (``PLAN-PP-GROUPS``:
    attention and experts would disagree on a rank's stage) reject ``plan``'s order."""
    if order_findings(plan):
        return False
    try:
        check_order(plan.parallel, plan.model)
    except MeshError:
        return False
    return True


def head_weight(plan: Plan) -> float:
    """The LM head's cost in layers of the mean transformer layer: its ``vocab · h``
    weights against a layer's active weights, per row each multiplies (the head runs on
    one row a sequence, a layer on every token: ``prompt_len`` rows a sequence in a
    prefill, one in decode). Matmul FLOPs and weight bytes are both in proportion to
    these (docs/search.md, "Layer split")."""
    m, wl = plan.model, plan.workload
    embed = m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)
    per_layer = (active_params(m) - embed - m.hidden_size) / max(m.layers, 1)
    rows = 1 if wl.decoding else max(wl.prompt_len, 1)
    return m.vocab_size * m.hidden_size / max(per_layer * rows, 1.0)


@functools.lru_cache(maxsize=4096)
def balanced(layers: int, pp: int, head: float) -> tuple[int, ...]:
    """The split that minimises the heaviest stage's cost, a layer costing 1 and the last
    stage carrying ``head`` more (the embedding is a gather, costed 0); of the splits that
    reach it, the layers taken off come from the fullest stages, later first.

    >>> balanced(16, 4, 1.2), balanced(16, 4, 68.0)
    ((5, 4, 4, 3), (5, 5, 5, 1))
    """
    extra = [0.0] * (pp - 1) + [head]
    # the least cap M with Σ floor(M − extra_i) ≥ layers, every stage holding a layer
    caps = sorted({s + e for e in extra for s in range(1, layers + 1)})
    cap = next(c for c in caps if sum(max(1, int(c - e + 1e-9)) for e in extra) >= layers)
    sizes = [max(1, int(cap - e + 1e-9)) for e in extra]
    while sum(sizes) > layers:
        i = max((j for j in range(pp) if sizes[j] > 1), key=lambda j: (sizes[j] + extra[j], j))
        sizes[i] -= 1
    return tuple(sizes)


def _lighter(sizes: list[int], at: int) -> tuple[int, ...] | None:
    """``sizes`` with one layer moved off stage ``at`` onto the lightest other stage
    (middle stages before the other edge; later first on ties); None if ``at`` would
    be left empty."""
    if sizes[at] <= 1:
        return None
    out = list(sizes)
    out[at] -= 1
    edge = {0, len(out) - 1}
    to = min((i for i in range(len(out)) if i != at), key=lambda i: (i in edge, out[i], -i))
    out[to] += 1
    return tuple(out)


def splits(*, layers: int, pp: int, head: float) -> dict[str, tuple[int, ...]]:
    """The layer splits tried on ``pp`` stages by name (at most four distinct ones;
    ``balanced`` is omitted where it equals the even split).

    >>> splits(layers=61, pp=4, head=0.0)["first"]
    (14, 16, 16, 15)
    """
    even = tuple(even_split(layers, pp))
    if pp == 1 or layers < pp:
        return {"even": even}
    out = {"even": even}
    for name, at in (("first", 0), ("last", pp - 1)):
        lighter = _lighter(list(even), at)
        if lighter is not None:
            out[name] = lighter
    best = balanced(layers, pp, round(head, 6))
    if best != even:
        out["balanced"] = best
    return out


def parse_order(text: str) -> str:
    """``tp-cp-ep-pp-dp`` lower-cased, if it names each of tp, cp, ep, dp, pp at most once.

    Raises:
        ValueError: anything else.
    """
    names = text.strip().lower().split("-")
    if not set(names) <= _DIMS or len(set(names)) != len(names):
        raise ValueError(text)
    return "-".join(names)


def parse_split(text: str) -> str:
    """A split name of :data:`SPLIT_NAMES`, or explicit sizes ``15/16/16/14``.

    Raises:
        ValueError: anything else.
    """
    word = text.strip().lower()
    if word in SPLIT_NAMES:
        return word
    sizes = [int(s) for s in word.split("/")]
    if not sizes or min(sizes) < 1:
        raise ValueError(text)
    return "/".join(map(str, sizes))
