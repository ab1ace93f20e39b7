"""Node ids, the one place they are spelled: ``r17/s1/L5/mb2/attn.qkv``.

An id is ``r<rank>/s<stage>/`` then ``t<step>/`` when the rank's pool unrolls more than
one decode step, ``L<layer>/`` for nodes inside a layer, ``mb<micro-batch>/``, and the
op's label, with ``.e<expert>`` for a routed expert. Ids are unique and deterministic.

They are built column by column (:mod:`dagen.graph.text`): a set of nodes covers few
ranks, few (layer, micro-batch, step) triples and few (op, kind, expert) triples, and
each distinct one is rendered once. :meth:`dagen.graph.ir.Graph.node_ids` and the
exporters' text (:mod:`dagen.export.nodetext`) both use :class:`IdText`.

Example:
    >>> IdText(graph).ids(np.arange(2))  # doctest: +SKIP
    ['r0/s0/mb0/embed', 'r0/s0/L0/mb0/attn.norm']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Kind
from dagen.graph.ops import OP_LABELS
from dagen.graph.text import Bytes, Field, bytes_table, cat, istr, keyed_table, strip

if TYPE_CHECKING:
    from dagen.graph.ir import Graph

__all__ = ["KIND_TEXT", "OP_TEXT", "IdText", "Keys"]

I64 = npt.NDArray[np.int64]
Render = Callable[[I64], Bytes]

_FEW = 64
"""Up to this many nodes, ids are formatted one by one (the column path's set-up costs
more)."""

OP_TEXT = bytes_table([label.encode() for label in OP_LABELS])
"""Op labels by op code."""
KIND_TEXT = bytes_table([k.label.encode() for k in Kind])
"""Kind labels by kind code."""


class Keys:
    """The three small keys of some nodes, and how to split them back into columns.

    ``lms`` packs (layer, micro-batch, step, shows-step); ``oke`` packs (op, kind,
    expert). The packing bases come from the nodes themselves, so building keys costs
    O(nodes) and never a pass over the whole graph.
    """

    def __init__(self, g: Graph, idx: I64, show: npt.NDArray[np.bool_]) -> None:
        self.rank = g.rank[idx].astype(np.int64)
        mb, step, layer = g.mb[idx], g.step[idx], g.layer[idx].astype(np.int64) + 1
        expert = g.expert[idx].astype(np.int64) + 1
        self.n_mb = int(mb.max(initial=0)) + 1
        self.n_step = int(step.max(initial=0)) + 1
        self.n_expert = int(expert.max(initial=0)) + 1
        shown = show[g.ranks.pool[self.rank]].astype(np.int64) if show.size > 1 else show[0]
        self.lms = ((layer * self.n_mb + mb) * self.n_step + step) * 2 + shown
        op_kind = g.op[idx].astype(np.int64) * len(Kind) + g.kind[idx]
        self.oke = op_kind * self.n_expert + expert

    def split_lms(self, key: I64) -> tuple[I64, I64, I64, I64]:
        """(layer, micro-batch, step, shows-step) of ``lms`` keys."""
        rest, shown = np.divmod(key, 2)
        rest, step = np.divmod(rest, self.n_step)
        layer, mb = np.divmod(rest, self.n_mb)
        return layer - 1, mb, step, shown

    def split_oke(self, key: I64) -> tuple[I64, I64, I64]:
        """(op, kind, expert) of ``oke`` keys."""
        op_kind, expert = np.divmod(key, self.n_expert)
        op, kind = np.divmod(op_kind, len(Kind))
        return op, kind, expert - 1


class IdText:
    """The id text of any set of nodes of ``g`` (see the module docstring)."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.show = np.array([p.workload.unrolled_steps > 1 for p in g.pools], dtype=np.bool_)

    def keys(self, idx: I64) -> Keys:
        """The packed keys of nodes ``idx``."""
        return Keys(self.g, np.asarray(idx, dtype=np.int64), self.show)

    def _rank_id(self, rank: I64) -> Bytes:
        return cat(b"r", istr(rank), b"/s", istr(self.g.ranks.stage[rank]), b"/", n=rank.size)

    @staticmethod
    def _lms_id(k: Keys) -> Render:
        def render(key: I64) -> Bytes:
            layer, mb, step, shown = k.split_lms(key)
            n = key.size
            in_layer = cat(b"L", istr(layer), b"/", n=n)
            in_layer[layer < 0] = b""
            steps = cat(b"t", istr(step), b"/", n=n)
            steps[shown == 0] = b""
            return cat(steps, in_layer, b"mb", istr(mb), b"/", n=n)

        return render

    @staticmethod
    def label(k: Keys) -> Render:
        """Render ``oke`` keys as op labels, with ``.e<expert>`` for routed experts."""

        def render(key: I64) -> Bytes:
            op, _, expert = k.split_oke(key)
            routed = cat(b".e", istr(expert), n=key.size)
            routed[expert < 0] = b""
            return cat(OP_TEXT[op], routed, n=key.size)

        return render

    def id_fields(self, idx: I64, k: Keys | None = None) -> list[Field]:
        """Fields spelling the ids of nodes ``idx``."""
        return [table[inverse] for table, inverse in self.id_tables(idx, k)]

    def id_tables(self, idx: I64, k: Keys | None = None) -> list[tuple[Bytes, I64]]:
        """The three parts of the ids of nodes ``idx``, each as (distinct texts, which
        one each node has): :func:`dagen.graph.text.keyed_table`."""
        k = k or self.keys(idx)
        return [
            keyed_table(k.rank, self._rank_id),
            keyed_table(k.lms, self._lms_id(k)),
            keyed_table(k.oke, self.label(k)),
        ]

    def ids(self, idx: npt.ArrayLike) -> list[str]:
        """The ids of nodes ``idx``, in order (column by column past a few nodes)."""
        nodes = np.asarray(idx, dtype=np.int64).ravel()
        if nodes.size <= _FEW:
            return [self.one(int(i)) for i in nodes]
        text = strip(cat(*self.id_fields(nodes), b"\n", n=nodes.size)).decode()
        return text.split("\n")[:-1]

    def one(self, i: int) -> str:
        """The id of node ``i``, spelled by plain string formatting (the same spelling:
        ``tests/test_ir.py`` holds the two paths equal on every node of several graphs)."""
        g = self.g
        r = int(g.rank[i])
        parts = [f"r{r}", f"s{int(g.ranks.stage[r])}"]
        if self.show[int(g.ranks.pool[r]) if self.show.size > 1 else 0]:
            parts.append(f"t{int(g.step[i])}")
        layer = int(g.layer[i])
        if layer >= 0:
            parts.append(f"L{layer}")
        parts.append(f"mb{int(g.mb[i])}")
        e = int(g.expert[i])
        label = OP_LABELS[int(g.op[i])]
        parts.append(f"{label}.e{e}" if e >= 0 else label)
        return "/".join(parts)
