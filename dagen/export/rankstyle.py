"""How the ranks view looks: fills, shapes, line styles, and the legend that explains them.

The legend lists only what the picture holds: the operator families, node kinds,
collective kinds and edge kinds of the drawn nodes. It is one table node (Graphviz's
HTML-like label, with dagen's own text only, escaped).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from types import MappingProxyType

import graphviz
import numpy as np
import numpy.typing as npt

from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Graph, Kind

__all__ = ["COLL_COLORS", "EDGE_STYLES", "KIND_SHAPES", "OP_COLORS", "legend"]

OP_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "embed": "#e3e3e3",
        "attn": "#d9ead3",
        "ffn": "#cfe2f3",
        "moe": "#fce5cd",
        "final": "#ead1dc",
        "lm": "#ead1dc",
        "logits": "#ead1dc",
        "sample": "#ead1dc",
        "pp": "#f4cccc",
    }
)
"""Fill by operator family (the part of the op label before the dot)."""

KIND_SHAPES: Mapping[Kind, str] = MappingProxyType(
    {Kind.COMPUTE: "box", Kind.COLLECTIVE: "hexagon", Kind.SEND: "rarrow", Kind.RECV: "larrow"}
)
"""Shape by node kind."""

COLL_COLORS: Mapping[Coll, str] = MappingProxyType(
    {
        Coll.ALL_REDUCE: "#1f77b4",
        Coll.ALL_GATHER: "#2ca02c",
        Coll.REDUCE_SCATTER: "#9467bd",
        Coll.ALL_TO_ALL: "#d62728",
    }
)
"""Colour of a collective instance and its dashed member lines."""

EDGE_STYLES: Mapping[EdgeKind, Mapping[str, str]] = MappingProxyType(
    {
        EdgeKind.DATA: MappingProxyType({"color": "#666666"}),
        EdgeKind.ORDER: MappingProxyType({"color": "#aaaaaa", "style": "dotted"}),
        EdgeKind.P2P: MappingProxyType(
            {"color": "#c0392b", "penwidth": "2", "fontcolor": "#c0392b", "constraint": "false"}
        ),
    }
)
"""Style by edge kind."""

_KIND_TEXT = {
    Kind.COMPUTE: "box: a compute op",
    Kind.COLLECTIVE: "hexagon: one rank's part of a collective",
    Kind.SEND: "right arrow: a point-to-point send",
    Kind.RECV: "left arrow: a point-to-point recv",
}
_EDGE_TEXT = {
    EdgeKind.DATA: "grey arrow: data dependency on a rank",
    EdgeKind.ORDER: "dotted arrow: stream order on a rank",
    EdgeKind.P2P: "bold red arrow: send to recv across ranks, with its bytes",
}


def _row(fill: str, text: str, font: str = "#000000") -> str:
    return (
        f'<tr><td bgcolor="{fill}" width="18"> </td>'
        f'<td align="left"><font color="{font}">{html.escape(text)}</font></td></tr>'
    )


def legend(
    dot: graphviz.Digraph,
    g: Graph,
    idx: npt.NDArray[np.int64],
    hubs: set[Coll],
) -> None:
    """Add the legend node for the nodes ``idx`` and the collective kinds ``hubs`` drawn
    (the caller places it above the first column)."""
    families = sorted({OP_LABELS[int(op)].split(".")[0] for op in np.unique(g.op[idx]).tolist()})
    rows = [_row(OP_COLORS.get(f, "#ffffff"), f"{f}.* ops") for f in families]
    rows += [_row("#ffffff", _KIND_TEXT[Kind(int(k))]) for k in np.unique(g.kind[idx]).tolist()]
    for kind in sorted(hubs, key=lambda c: c.value):
        rows.append(
            _row(
                "#ffffff",
                f"oval: one {kind.label}, dashed to its drawn members",
                COLL_COLORS[kind],
            )
        )
    keep = np.zeros(g.n_nodes, dtype=np.bool_)
    keep[idx] = True
    kinds = np.unique(g.ekind[keep[g.src] & keep[g.dst]]).tolist()
    rows += [_row("#ffffff", _EDGE_TEXT[EdgeKind(int(k))]) for k in kinds]
    table = (
        '<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">'
        '<tr><td colspan="2" align="left"><b>legend</b></td></tr>' + "".join(rows) + "</table>>"
    )
    dot.node("legend", label=table, shape="box", style="rounded", color="#bbbbbb", fontsize="9")
