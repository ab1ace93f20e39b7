"""Node columns as JSON text, column by column: ids, attributes, template figures.

The JSON document (:mod:`dagen.export.json_`) and the timeline
(:mod:`dagen.export.timeline`) spell nodes the same way; both take the text from here.

Example:
    >>> from dagen.export.rows import cat, strip
    >>> text = NodeText(graph)  # doctest: +SKIP
    >>> strip(cat(*text.id_fields(np.arange(2)), b"\\n", n=2))  # doctest: +SKIP
    b'r0/s0/mb0/embed\\nr0/s0/L0/mb0/attn.norm\\n'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.export.rows import Bytes, Field, bytes_table, cat, istr, keyed
from dagen.graph.ir import OP_LABELS, Graph, Kind

__all__ = ["KIND_TEXT", "OP_TEXT", "NodeText", "template_table"]

I64 = npt.NDArray[np.int64]

OP_TEXT = bytes_table([label.encode() for label in OP_LABELS])
"""Op labels by op code."""
KIND_TEXT = bytes_table([k.label.encode() for k in Kind])
"""Kind labels by kind code."""


class NodeText:
    """The text of node columns, rendered once per distinct key.

    Small-integer keys that several node columns share, and their text.

    A chunk of nodes covers few ranks, few (layer, micro-batch, step) triples and few
    (op, kind, expert) triples; each distinct key is rendered once (:func:`keyed`).
    """

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.n_mb = int(g.mb.max()) + 1 if g.n_nodes else 1
        self.n_step = int(g.step.max()) + 1 if g.n_nodes else 1
        self.n_expert = int(g.expert.max()) + 2 if g.n_nodes else 1
        self.decode = g.plan.workload.decode_steps > 1  # as Graph.node_id

    def _lms(self, idx: I64) -> I64:
        g = self.g
        layer = g.layer[idx].astype(np.int64) + 1
        return (layer * self.n_mb + g.mb[idx]) * self.n_step + g.step[idx]

    def _split_lms(self, key: I64) -> tuple[I64, I64, I64]:
        rest, step = np.divmod(key, self.n_step)
        layer, mb = np.divmod(rest, self.n_mb)
        return layer - 1, mb, step

    def _oke(self, idx: I64) -> I64:
        g = self.g
        op_kind = g.op[idx].astype(np.int64) * len(Kind) + g.kind[idx]
        return op_kind * self.n_expert + g.expert[idx] + 1

    def _split_oke(self, key: I64) -> tuple[I64, I64, I64]:
        op_kind, expert = np.divmod(key, self.n_expert)
        op, kind = np.divmod(op_kind, len(Kind))
        return op, kind, expert - 1

    def _rank_id(self, rank: I64) -> Bytes:
        return cat(b"r", istr(rank), b"/s", istr(self.g.mesh.stage[rank]), b"/", n=rank.size)

    def _lms_id(self, key: I64) -> Bytes:
        layer, mb, step = self._split_lms(key)
        n = key.size
        in_layer = cat(b"L", istr(layer), b"/", n=n)
        in_layer[layer < 0] = b""
        parts: list[Field] = [b"t", istr(step), b"/"] if self.decode else []
        return cat(*parts, in_layer, b"mb", istr(mb), b"/", n=n)

    def _oke_id(self, key: I64) -> Bytes:
        op, _, expert = self._split_oke(key)
        routed = cat(b".e", istr(expert), n=key.size)
        routed[expert < 0] = b""
        return cat(OP_TEXT[op], routed, n=key.size)

    def id_fields(self, idx: I64) -> list[Field]:
        """Fields spelling :meth:`Graph.node_id` of nodes ``idx`` (``r17/s1/L5/mb2/attn.qkv``)."""
        return [
            keyed(self.g.rank[idx], self._rank_id),
            keyed(self._lms(idx), self._lms_id),
            keyed(self._oke(idx), self._oke_id),
        ]

    def _rank_attrs(self, rank: I64) -> Bytes:
        mesh = self.g.mesh
        return cat(
            b',"rank":',
            istr(rank),
            b',"host":',
            istr(mesh.host[rank]),
            b',"replica":',
            istr(mesh.replica[rank]),
            b',"stage":',
            istr(mesh.stage[rank]),
            n=rank.size,
        )

    def _lms_attrs(self, key: I64) -> Bytes:
        layer, mb, step = self._split_lms(key)
        return cat(
            b',"layer":', istr(layer), b',"mb":', istr(mb), b',"step":', istr(step), n=key.size
        )

    def _oke_attrs(self, key: I64) -> Bytes:
        op, kind, expert = self._split_oke(key)
        return cat(
            b',"op":"',
            OP_TEXT[op],
            b'","kind":"',
            KIND_TEXT[kind],
            b'","expert":',
            istr(expert),
            n=key.size,
        )

    def name_field(self, idx: I64) -> Bytes:
        """The op label of nodes ``idx``, with ``.e<expert>`` for routed experts."""
        return keyed(self._oke(idx), self._oke_id)

    def attr_fields(self, idx: I64) -> list[Field]:
        """Fields ``,"rank":…`` through ``,"expert":…`` of nodes ``idx``."""
        return [
            keyed(self.g.rank[idx], self._rank_attrs),
            keyed(self._lms(idx), self._lms_attrs),
            keyed(self._oke(idx), self._oke_attrs),
        ]


def template_table(g: Graph, dumps: Callable[[Any], bytes], shape: bool = True) -> Bytes:
    """Per template: ``,"shape":[…],"bytes":…,"flops":…`` (a small side table to gather
    by ``g.tmpl``); without ``shape`` the shape is left out."""
    rows = [
        (b',"shape":' + dumps(list(dims)) if shape else b"")
        + b',"bytes":'
        + dumps(int(nbytes))
        + b',"flops":'
        + dumps(float(flops))
        for dims, nbytes, flops in zip(
            g.tmpl_shape, g.tmpl_bytes.tolist(), g.tmpl_flops.tolist(), strict=True
        )
    ]
    return bytes_table(rows)
