"""Schedules: which block every pipeline stage runs, in what order, and who talks to whom.

A :class:`Schedule` is data, like PyTorch pipelining's ``_Action`` lists: for each stage,
its *blocks* in issue order (template, micro-batch, step, chunk, and a certificate
*slot*), plus the point-to-point pairing of every send with its recv (:class:`Pairs`)
and the edges between blocks of one rank (:class:`Links`: stream order, the decode
chain on a one-stage pipeline). The expansion (:mod:`dagen.graph.expand`) lays the
graph out by it; the checks take every send's expected peer and the certificate its
slots from it (:mod:`dagen.checks.comms`, :mod:`dagen.graph.algo.certify`). A new
schedule (1F1B, interleaved virtual stages, two-batch overlap) is a new function that
returns a :class:`Schedule`; nothing else changes.

Slots: a block's slot is when it would run in a pipeline with unit-time blocks; a valid
schedule's slots strictly increase along a stage's blocks and from every send's block
to its recv's. The certificate checks this rather than trusting it.

NOTE: the two schedules of today. With ``pp`` stages, ``M`` micro-batches and ``T``
decode steps (``T = 1`` in prefill), stage ``s`` runs blocks ``k = t·M + m`` in ``k``
order with slot ``t·(M + pp) + m + s``. Block ``k`` of stage ``s`` sends to block ``k``
of stage ``s + 1``; with ``T > 1`` block ``k < (T − 1)·M`` of the last stage sends its
tokens to block ``k + M`` of stage 0, slot ``(t + 1)·(M + pp) + m``, which is
``M + 1`` after the sender's. Example: pp 2, M 2, T 2 — stage 0 slots 0, 1, 4, 5;
stage 1 slots 1, 2, 5, 6; the chain pairs (1, k=0, slot 1) → (0, k=2, slot 4).

The passes that make schedules are in :mod:`dagen.graph.schedules`.

>>> sched = decode_chain(programs, micro_batches=2, steps=2)  # doctest: +SKIP
>>> sched.stages[1].slot.tolist()  # doctest: +SKIP
[1, 2, 5, 6]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.codes import Kind
from dagen.graph.lookup import BlockIndex
from dagen.graph.templates import Carry, Template

__all__ = ["Links", "Pairs", "Schedule", "StageBlocks"]

I16 = npt.NDArray[np.int16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def _i32(values: npt.ArrayLike) -> I32:
    return np.ascontiguousarray(values, dtype=np.int32)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageBlocks:
    """One stage's blocks in issue order, as columns (one entry per block)."""

    template: I32
    """Template id (row of the schedule's ``templates``)."""
    mb: I16
    step: I16
    chunk: I16
    """Virtual-stage chunk (0 without interleaving)."""
    slot: I64
    """Certificate slot (see the module docstring)."""

    @property
    def size(self) -> int:
        return int(self.template.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Pairs:
    """Point-to-point pairing, one row per message: (stage, block, row) → (stage, block, row).

    Every send row and every recv row of every block appears exactly once.
    """

    src_stage: I32
    src_block: I32
    src_row: I32
    dst_stage: I32
    dst_block: I32
    dst_row: I32

    @property
    def size(self) -> int:
        return int(self.src_stage.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Edges between two blocks of one rank, in the order they are laid out."""

    stage: I32
    src_block: I32
    src_row: I32
    dst_block: I32
    dst_row: I32
    kind: U8
    """:class:`~dagen.graph.codes.EdgeKind` (data or order)."""

    @property
    def size(self) -> int:
        return int(self.stage.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A pipeline schedule (see the module docstring)."""

    name: str
    templates: tuple[Template, ...]
    """Every template a block names, by id."""
    stages: tuple[StageBlocks, ...]
    pairs: Pairs
    links: Links
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def pp(self) -> int:
        return len(self.stages)

    def index(self) -> BlockIndex:
        """The lookup of blocks and messages by what nodes carry (built once)."""
        if "index" not in self._cache:
            self._cache["index"] = BlockIndex(self)
        out: BlockIndex = self._cache["index"]
        return out

    def block_starts(self) -> list[I64]:
        """Per stage, int64 ``[blocks + 1]``: each block's first row within a rank's nodes."""
        sizes = np.array([t.size for t in self.templates], dtype=np.int64)
        return [np.concatenate([[0], np.cumsum(sizes[st.template])]) for st in self.stages]

    def lint(self) -> None:
        """Raise :class:`GraphError` unless the pairing and links name existing rows, every
        send and recv row is paired exactly once, and a template's peer stage per row is
        one stage (so a run of blocks of one template talks to one peer stage)."""
        rows = [np.array([t.size for t in self.templates])[st.template] for st in self.stages]
        for name, stage, block, row in (
            ("pair source", self.pairs.src_stage, self.pairs.src_block, self.pairs.src_row),
            ("pair target", self.pairs.dst_stage, self.pairs.dst_block, self.pairs.dst_row),
            ("link source", self.links.stage, self.links.src_block, self.links.src_row),
            ("link target", self.links.stage, self.links.dst_block, self.links.dst_row),
        ):
            for s in np.unique(stage).tolist():
                at = stage == s
                if s >= self.pp or np.any(block[at] >= rows[s].shape[0]):
                    raise GraphError(f"schedule {self.name}: a {name} names a missing block")
                if np.any(row[at] >= rows[s][block[at]]):
                    raise GraphError(f"schedule {self.name}: a {name} names a missing row")
        self._lint_ports()
        self._lint_flow()

    def _lint_flow(self) -> None:
        """A pair carries one micro-batch's data: the same micro-batch, at the same step, or
        at the next step for data that feeds it (the decode chain's tokens)."""
        p = self.pairs
        if p.size == 0:
            return
        step, mb = np.empty((2, p.size), np.int64), np.empty((2, p.size), np.int64)
        advance = np.zeros(p.size, dtype=np.int64)
        for side, (stage, block) in enumerate(
            ((p.src_stage, p.src_block), (p.dst_stage, p.dst_block))
        ):
            for s in range(self.pp):
                at = stage == s
                step[side, at] = self.stages[s].step[block[at]]
                mb[side, at] = self.stages[s].mb[block[at]]
        for s in range(self.pp):
            at = np.flatnonzero(p.src_stage == s)
            tmpl = self.stages[s].template[p.src_block[at]]
            carry = np.array(
                [
                    self.templates[t].carry[r]
                    for t, r in zip(tmpl.tolist(), p.src_row[at].tolist(), strict=True)
                ]
            )
            advance[at] = carry == Carry.TOKENS
        if np.any(mb[0] != mb[1]) or np.any(step[1] != step[0] + advance):
            raise GraphError(
                f"schedule {self.name}: a pair joins another micro-batch or step than the one "
                "its data belongs to (the same micro-batch, and the same step unless the data "
                "feeds the next one)"
            )

    def _lint_ports(self) -> None:
        """Every send row and every recv row paired exactly once, each pair naming a row of
        the right kind, and one peer stage per (stage, template, row)."""
        p = self.pairs
        first = np.concatenate([[0], np.cumsum([t.size for t in self.templates])])
        kinds = np.concatenate([t.kind for t in self.templates])
        blocks0 = np.concatenate([[0], np.cumsum([st.size for st in self.stages])])
        width = int(first[-1]) + 1
        for side, kind, stage, block, row, other in (
            ("send", Kind.SEND, p.src_stage, p.src_block, p.src_row, p.dst_stage),
            ("recv", Kind.RECV, p.dst_stage, p.dst_block, p.dst_row, p.src_stage),
        ):
            per_tmpl = np.array([np.count_nonzero(t.kind == kind) for t in self.templates])
            ports = sum(int(per_tmpl[st.template].sum()) for st in self.stages)
            tmpl = np.empty(p.size, dtype=np.int64)
            for s in range(self.pp):
                at = stage == s
                tmpl[at] = self.stages[s].template[block[at]]
            rows = first[tmpl] + row
            keys = (blocks0[stage] + block) * width + row
            if p.size != ports or np.unique(keys).shape[0] != ports or np.any(kinds[rows] != kind):
                raise GraphError(f"schedule {self.name}: not every {side} is paired once")
            slot = (stage.astype(np.int64) * len(self.templates) + tmpl) * width + row
            order = np.argsort(slot, kind="stable")
            same = slot[order][1:] == slot[order][:-1]
            if np.any(same & (other[order][1:] != other[order][:-1])):
                raise GraphError(
                    f"schedule {self.name}: a template's {side} row talks to two stages"
                )
