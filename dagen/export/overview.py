"""The deployment at a glance: pipeline stages, blocks of like layers, pipeline sends.

The overview is read off the built graph, not recomputed from the plan: for each stage
it takes the stage's first rank at the first micro-batch and step, groups consecutive
layers whose operators and collectives match into blocks, and counts the collectives
per layer. Sizes per rank (heads, experts, FFN columns) come from the graph's model and
its pool's mesh. The graph must have one pool.
The DOT picture and the Markdown report (table and Mermaid chart) both draw this; the
pictures first fold runs of like middle stages into one box
(:func:`dagen.export.fold.fold_stages`).

Example:
    >>> ov = overview(graph)  # doctest: +SKIP
    >>> [b.title for b in ov.stages[0].blocks]  # doctest: +SKIP
    ['embedding', 'L0–1 · MoE (2 layers)']
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

import numpy as np

from dagen.export.summary import human_bytes, human_count, rank_ranges
from dagen.graph.codes import Block as OpBlock
from dagen.graph.ir import Coll, Graph, GroupKind, Kind, Op

__all__ = ["Block", "BlockKind", "Link", "Overview", "Stage", "overview"]


class BlockKind(enum.StrEnum):
    """What a box of the overview holds."""

    EMBED = "embedding"
    DENSE = "dense"
    MOE = "moe"
    ATTENTION = "attention"
    HEAD = "head"


_BOX = (  # the first op block present decides what a layer's box is
    (OpBlock.MOE, BlockKind.MOE),
    (OpBlock.FFN, BlockKind.DENSE),
    (OpBlock.EMBEDDING, BlockKind.EMBED),
    (OpBlock.HEAD, BlockKind.HEAD),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """Consecutive layers (or the embedding, or the head) built alike on one stage."""

    kind: BlockKind
    first: int
    """First layer, or -1 for the embedding and the head."""
    last: int
    """Last layer (inclusive), or -1."""
    title: str
    """``L4–7 · MoE (4 layers)``, ``embedding``, ``LM head``."""
    lines: tuple[str, ...]
    """Per-rank detail: sharding, experts, collectives per layer, compute."""
    comms: tuple[tuple[str, str, int], ...]
    """(collective, group kind, count per layer) on a rank, e.g. ``("all-to-all", "ep", 2)``."""
    experts_per_rank: int
    """Routed experts one rank computes per layer (0 outside MoE)."""
    flops: float
    """FLOPs per layer on one rank for one micro-batch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One pipeline stage."""

    index: int
    n_ranks: int
    ranks: str
    """Its ranks as ranges, e.g. ``0–31``."""
    hosts: str
    blocks: tuple[Block, ...]
    rank_ids: tuple[int, ...] = ()
    """Its ranks, ascending (``ranks`` is their short form)."""
    host_ids: tuple[int, ...] = ()
    """Its hosts, ascending."""

    @property
    def layers(self) -> str:
        """``L0–7`` or ``—`` when the stage holds no layer."""
        ls = [b for b in self.blocks if b.first >= 0]
        return f"L{ls[0].first}–{ls[-1].last}" if ls else "—"

    @property
    def n_layers(self) -> int:
        """Decoder layers the stage holds."""
        return sum(b.last - b.first + 1 for b in self.blocks if b.first >= 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """Point-to-point traffic from one stage to another, per micro-batch."""

    src: int
    dst: int
    bytes_per_rank: int
    """Bytes one sending rank sends per micro-batch (and step)."""
    ranks: int
    """Ranks of ``src`` that send."""
    decode: bool
    """The send carries the next decode step's token back to an earlier stage."""

    @property
    def label(self) -> str:
        """``send 8.0 KiB/rank/micro-batch × 4 ranks``."""
        what = "next token" if self.decode else "activations"
        return f"{what}: {human_bytes(self.bytes_per_rank)}/rank/micro-batch × {self.ranks} ranks"


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """Stages, their blocks, and the sends between them."""

    stages: tuple[Stage, ...]
    links: tuple[Link, ...]


def _per_rank(total: int, parts: int) -> str:
    return str(total // parts) if total % parts == 0 else f"{total}/{parts}"


def _attention_line(graph: Graph) -> str:
    sizes, m = graph.mesh.sizes, graph.model
    tp = sizes["tp"]
    kv = "1 (replicated)" if m.kv_heads < tp else _per_rank(m.kv_heads, tp)
    parts = [f"attention: TP{tp}, {_per_rank(m.heads, tp)} heads/rank, kv heads {kv}/rank"]
    if sizes["cp"] > 1:
        parts.append(f"CP{sizes['cp']}")
    if graph.pools[0].parallel.sp_active:
        parts.append("SP")
    if m.mla is not None:
        parts.append(f"MLA (kv rank {m.mla.kv_lora_rank})")
    return ", ".join(parts)


def _ffn_line(graph: Graph, kind: BlockKind, experts: int) -> str | None:
    sizes, m = graph.mesh.sizes, graph.model
    if kind is BlockKind.DENSE:
        return f"FFN: TP{sizes['tp']}, {_per_rank(m.ffn_size, sizes['tp'])} of {m.ffn_size} columns/rank"
    if kind is not BlockKind.MOE or m.moe is None:
        return None
    etp = f"·ETP{sizes['etp']}" if sizes["etp"] > 1 else ""
    edp = f" (EDP{sizes['edp']}: each expert on {sizes['edp']} ranks)" if sizes["edp"] > 1 else ""
    line = (
        f"experts: EP{sizes['ep']}{etp}, {experts}/rank of {m.moe.experts}{edp}, top-{m.moe.top_k}"
    )
    if m.moe.shared_experts:
        line += f", +{m.moe.shared_experts} shared"
    return line


def _comm_line(comms: tuple[tuple[str, str, int], ...], per: str) -> str | None:
    if not comms:
        return None
    return f"{per}: " + ", ".join(f"{c} ×{n} ({k.upper()})" for c, k, n in comms)


@dataclass(slots=True)
class _Layer:
    ops: set[Op]
    comms: Counter[tuple[str, str]]
    experts: set[int]
    flops: float

    def kind(self) -> BlockKind:
        blocks = {op.spec.block for op in self.ops}
        return next((box for block, box in _BOX if block in blocks), BlockKind.ATTENTION)

    def signature(self) -> tuple[object, ...]:
        return (self.kind(), tuple(sorted(self.comms.items())), len(self.experts), self.flops)


def _layers_of(graph: Graph, idx: np.ndarray) -> dict[int, _Layer]:
    """Per layer (-2: before the layers, -1: after them), what one rank does."""
    out: dict[int, _Layer] = {}
    seen_layer = False
    for i in idx.tolist():
        op = Op.of(int(graph.op[i]))
        layer = int(graph.layer[i])
        if layer >= 0:
            seen_layer = True
        elif op in (Op.PP_SEND, Op.PP_RECV):
            continue
        else:
            layer = -1 if (seen_layer or op.spec.block is OpBlock.HEAD) else -2
        rec = out.setdefault(layer, _Layer(set(), Counter(), set(), 0.0))
        rec.ops.add(op)
        rec.flops += float(graph.tmpl_flops[int(graph.tmpl[i])])
        if graph.kind[i] == Kind.COLLECTIVE:
            coll = Coll(int(graph.inst_coll[int(graph.inst[i])])).label
            rec.comms[(coll, GroupKind(int(graph.group_kind[int(graph.aux[i])])).label)] += 1
        if op is Op.MOE_EXPERT and graph.expert[i] >= 0:
            rec.experts.add(int(graph.expert[i]))
    return out


def _block(graph: Graph, layers: list[tuple[int, _Layer]]) -> Block:
    first, rec = layers[0]
    last = layers[-1][0]
    kind = rec.kind()
    comms = tuple((c, k, n) for (c, k), n in sorted(rec.comms.items()))
    lines: list[str | None]
    if first < 0:
        tp = graph.mesh.sizes["tp"]
        title = "embedding" if kind is BlockKind.EMBED else "LM head"
        vocab = _per_rank(graph.model.vocab_size, tp)
        lines = [f"vocab {vocab}/rank of {graph.model.vocab_size} (TP{tp})"]
        lines.append(_comm_line(comms, "collectives"))
        first = last = -1
    else:
        span = f"L{first}" if first == last else f"L{first}–{last}"
        count = last - first + 1
        label = {BlockKind.MOE: "MoE", BlockKind.DENSE: "dense"}.get(kind, "attention only")
        title = f"{span} · {label} ({count} layer{'s' if count > 1 else ''})"
        lines = [_attention_line(graph), _ffn_line(graph, kind, len(rec.experts))]
        lines.append(_comm_line(comms, "per layer"))
    if rec.flops > 0:
        per = "/layer" if first >= 0 else ""
        lines.append(f"compute: {human_count(rec.flops, 'FLOP')}/rank/micro-batch{per}")
    return Block(
        kind=kind,
        first=first,
        last=last,
        title=title,
        lines=tuple(x for x in lines if x),
        comms=comms,
        experts_per_rank=len(rec.experts),
        flops=rec.flops,
    )


def _blocks(graph: Graph, idx: np.ndarray) -> tuple[Block, ...]:
    per_layer = sorted(_layers_of(graph, idx).items(), key=lambda kv: (kv[0] == -1, kv[0]))
    runs: list[list[tuple[int, _Layer]]] = []
    for layer, rec in per_layer:
        prev = runs[-1][-1] if runs else None
        if (
            prev is not None
            and layer >= 0
            and prev[0] == layer - 1
            and prev[1].signature() == rec.signature()
        ):
            runs[-1].append((layer, rec))
        else:
            runs.append([(layer, rec)])
    return tuple(_block(graph, run) for run in runs)


def _links(graph: Graph, mb0: int, step0: int) -> tuple[Link, ...]:
    stage = graph.mesh.stage
    sel = np.flatnonzero((graph.kind == Kind.SEND) & (graph.mb == mb0) & (graph.step == step0))
    src, dst = stage[graph.rank[sel]], stage[graph.aux[sel]]
    nbytes = graph.tmpl_bytes[graph.tmpl[sel]]
    links = []
    for s, d in sorted(set(zip(src.tolist(), dst.tolist(), strict=True))):
        pick = (src == s) & (dst == d)
        links.append(
            Link(
                src=s,
                dst=d,
                bytes_per_rank=int(nbytes[pick].max()),
                ranks=int(np.unique(graph.rank[sel[pick]]).size),
                decode=d <= s,
            )
        )
    return tuple(links)


def overview(graph: Graph) -> Overview:
    """Read the overview off ``graph`` (see the module docstring)."""
    mesh = graph.mesh
    stages_idx, first_rank = np.unique(mesh.stage, return_index=True)
    mb0 = int(graph.mb.min()) if graph.n_nodes else 0
    step0 = int(graph.step.min()) if graph.n_nodes else 0
    picked = np.isin(graph.rank, first_rank) & (graph.mb == mb0) & (graph.step == step0)
    idx = np.flatnonzero(picked)
    stages = []
    for s, r0 in zip(stages_idx.tolist(), first_rank.tolist(), strict=True):
        members = np.flatnonzero(mesh.stage == s)
        hosts = np.unique(mesh.host[members]).tolist()
        stages.append(
            Stage(
                index=s,
                n_ranks=int(members.size),
                ranks=rank_ranges(members.tolist()),
                hosts=rank_ranges(hosts),
                blocks=_blocks(graph, idx[graph.rank[idx] == r0]),
                rank_ids=tuple(members.tolist()),
                host_ids=tuple(hosts),
            )
        )
    return Overview(stages=tuple(stages), links=_links(graph, mb0, step0))
