"""Node columns as JSON text, column by column: ids, attributes, template figures.

The JSON document (:mod:`dagen.export.json_`) and the timeline
(:mod:`dagen.export.timeline`) spell nodes the same way; both take the text from here.

Example:
    >>> from dagen.graph.text import cat, strip
    >>> text = NodeText(graph)  # doctest: +SKIP
    >>> strip(cat(*text.id_fields(np.arange(2)), b"\\n", n=2))  # doctest: +SKIP
    b'r0/s0/mb0/embed\\nr0/s0/L0/mb0/attn.norm\\n'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.graph.ids import KIND_TEXT, OP_TEXT, IdText, Keys
from dagen.graph.ir import Graph
from dagen.graph.text import Bytes, Field, bytes_table, cat, istr, keyed

__all__ = ["KIND_TEXT", "OP_TEXT", "NodeText", "template_table"]

I64 = npt.NDArray[np.int64]


class NodeText(IdText):
    """Node ids (:class:`dagen.graph.ids.IdText`) and the JSON attributes beside them.

    Compute the nodes' :class:`~dagen.graph.ids.Keys` once (:meth:`keys`) and pass them to
    each field; every distinct key is rendered once (:func:`keyed`).
    """

    def _rank_attrs(self, rank: I64) -> Bytes:
        ranks = self.g.ranks
        return cat(
            b',"rank":',
            istr(rank),
            b',"host":',
            istr(ranks.host[rank]),
            b',"replica":',
            istr(ranks.replica[rank]),
            b',"stage":',
            istr(ranks.stage[rank]),
            n=rank.size,
        )

    @staticmethod
    def _lms_attrs(k: Keys) -> Callable[[I64], Bytes]:
        def render(key: I64) -> Bytes:
            layer, mb, step, _ = k.split_lms(key)
            return cat(
                b',"layer":', istr(layer), b',"mb":', istr(mb), b',"step":', istr(step), n=key.size
            )

        return render

    @staticmethod
    def _oke_attrs(k: Keys) -> Callable[[I64], Bytes]:
        def render(key: I64) -> Bytes:
            op, kind, expert = k.split_oke(key)
            return cat(
                b',"op":"',
                OP_TEXT[op],
                b'","kind":"',
                KIND_TEXT[kind],
                b'","expert":',
                istr(expert),
                n=key.size,
            )

        return render

    def name_field(self, k: Keys) -> Bytes:
        """The op label of the nodes, with ``.e<expert>`` for routed experts."""
        return keyed(k.oke, self.label(k))

    def attr_fields(self, k: Keys) -> list[Field]:
        """Fields ``,"rank":…`` through ``,"expert":…`` of the nodes."""
        return [
            keyed(k.rank, self._rank_attrs),
            keyed(k.lms, self._lms_attrs(k)),
            keyed(k.oke, self._oke_attrs(k)),
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
