"""Expert placement: which logical expert sits in each physical slot of each EP rank.

Contiguous blocks as Megatron-Core assigns them, plus redundant replicas of hot experts
spread over the EP ranks as DeepSeek-V3 and vLLM's EPLB deploy them (docs/parallelism.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from dagen.codes import Code
from dagen.errors import LayoutFault, MeshError
from dagen.mesh.ranks import frozen

__all__ = ["expert_placement"]

IntArray = npt.NDArray[np.int32]


def expert_placement(
    experts: int, ep: int, redundant: int = 0, hot: Sequence[int] | None = None
) -> IntArray:
    """Logical expert id in each physical slot: int32 ``[ep, (experts + redundant) // ep]``.

    EP rank ``i`` hosts the contiguous block ``i·E/ep … (i+1)·E/ep - 1`` (Megatron's
    layout; when ``ep`` does not divide ``E`` the first ``E mod ep`` ranks take one more),
    then its share of the ``redundant`` replicas (DeepSeek-V3 / vLLM EPLB). Replica ``j``
    copies ``hot[j mod len(hot)]``. Without load statistics the hot experts are unknown;
    the placeholder default takes each rank's first expert in turn, then each rank's
    second, … (``0, E/ep, 2E/ep, …``): copies of ``0 … redundant-1`` alone often cannot be
    placed, since a block's owner cannot take its own replicas. A replica goes to a rank
    with a free slot, never to one already hosting that expert, nearest after its owner.
    Each row lists primaries then replicas, both ascending.

    >>> expert_placement(8, 4).tolist()
    [[0, 1], [2, 3], [4, 5], [6, 7]]
    >>> expert_placement(8, 4, redundant=4).tolist()
    [[0, 1, 6], [2, 3, 0], [4, 5, 2], [6, 7, 4]]
    """
    total = experts + redundant
    if experts < 1 or ep < 1 or redundant < 0 or total % ep:
        raise MeshError(
            f"expert placement: experts + redundant = {experts} + {redundant} = {total} "
            f"physical experts cannot fill ep = {ep} ranks equally; expected experts ≥ 1, "
            f"ep ≥ 1 and ep dividing experts + redundant. Fix: choose redundant so that "
            f"{ep} divides {experts} + redundant (e.g. {-experts % ep})."
        )
    slots = total // ep
    counts = experts // ep + (np.arange(ep) < experts % ep)
    starts = np.concatenate([[0], np.cumsum(counts)])
    ids = np.arange(experts, dtype=np.int32)
    owner = (np.searchsorted(starts, ids, side="right") - 1).astype(np.int32)
    order = _hot_order(hot, experts, ids - starts[owner], owner)
    copies = np.zeros(experts, dtype=np.int64)
    np.add.at(copies, order[np.arange(redundant) % len(order)], 1)
    rep_rank, rep_expert = _place_replicas(owner, slots - counts, copies, order)
    rank = np.concatenate([owner, rep_rank])
    expert = np.concatenate([ids, rep_expert])
    is_replica = np.concatenate([np.zeros(experts, np.int8), np.ones(redundant, np.int8)])
    layout = np.lexsort((expert, is_replica, rank))
    return frozen(expert[layout].astype(np.int32).reshape(ep, slots))


def _hot_order(
    hot: Sequence[int] | None, experts: int, position: IntArray, owner: IntArray
) -> IntArray:
    """Experts in the order they are replicated."""
    if hot is None:
        # Placeholder: round-robin over the EP ranks' blocks.
        return np.lexsort((owner, position)).astype(np.int32)
    order = np.asarray(hot, dtype=np.int64).ravel()
    if not len(order) or order.min() < 0 or order.max() >= experts:
        raise MeshError(
            f"expert placement: hot experts {list(hot)[:8]} must be a non-empty list of "
            f"expert ids in 0 … {experts - 1}. Fix: list the ids to replicate, hottest first."
        )
    if len(np.unique(order)) != len(order):
        raise MeshError(
            "expert placement: hot experts repeat an id; each replica cycles the list, so "
            "list each expert once. Fix: remove the duplicates."
        )
    return order.astype(np.int32)


def _place_replicas(
    owner: IntArray, free: npt.NDArray[np.int64], copies: npt.NDArray[np.int64], order: IntArray
) -> tuple[IntArray, IntArray]:
    """(rank, expert) of each replica, experts in ``order``; ``free`` is updated."""
    ep = len(free)
    # Replicated experts still to place, by owner: each may put one copy on a rank.
    pending = np.bincount(owner, weights=copies > 0, minlength=ep).astype(np.int64)
    ranks: list[IntArray] = []
    ids: list[IntArray] = []
    for e in order[copies[order] > 0].tolist():
        need, home = int(copies[e]), int(owner[e])
        pending[home] -= 1
        candidates = np.flatnonzero((np.arange(ep) != home) & (free > 0))
        # Fill first the ranks whose free slots are hardest to fill later: the least
        # slack between the experts still to place that may go there (one copy each,
        # never their own) and their free slots; ties go to the nearest rank after the
        # owner, which spreads a block's replicas.
        slack = (pending.sum() - pending[candidates]) - free[candidates]
        distance = (candidates - home - 1) % ep
        pick = candidates[np.lexsort((distance, slack))][:need]
        if len(pick) < need:
            raise LayoutFault(
                f"expert placement: expert {e} needs {need} redundant replicas on distinct EP "
                f"ranks other than its owner {home}, but only {len(pick)} such ranks "
                f"have a free slot (ep = {ep}, experts = {len(owner)}, redundant = "
                f"{int(copies.sum())}). Fix: lower redundant, raise ep or replicate other experts.",
                Code.PLAN_EXPERT_PLACE,
                "parallel.redundant_experts",
            )
        free[pick] -= 1
        ranks.append(pick.astype(np.int32))
        ids.append(np.full(need, e, dtype=np.int32))
    empty = np.zeros(0, dtype=np.int32)
    return (np.concatenate(ranks) if ranks else empty), (np.concatenate(ids) if ids else empty)
