"""What both picture views share: safe labels, the page title, the empty digraph.

User text (plan and model names) reaches DOT only through :func:`text`, which turns
control characters into spaces and doubles backslashes (so ``\\N`` or ``\\G`` in a name
stays as typed), and :func:`label`, which marks the result as non-HTML (so ``<b>x</b>``
is drawn as typed). The ``graphviz`` package then quotes it.
"""

from __future__ import annotations

import re

import graphviz

from dagen.export.base import ExportContext
from dagen.export.estimate import key_figures
from dagen.export.mdhead import verdict

__all__ = ["FONT", "digraph", "headline", "label", "text"]

FONT = "Helvetica"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(value: str) -> str:
    """User text made literal for a DOT label.

    Example:
        >>> print(text("a\\\\Nb\\tc"))
        a\\\\Nb c
    """
    return _CONTROL.sub(" ", value).replace("\\", "\\\\")


def label(title: str, *lines: str) -> str:
    """A label: ``title`` centred, then ``lines`` left-aligned; parts must be :func:`text`-safe.

    Example:
        >>> print(label("L0–3", "TP2"))
        L0–3\\nTP2\\l
    """
    body = "".join(f"{line}\\l" for line in lines)
    # nohtml keeps a str subclass that the graphviz package always quotes.
    result: str = graphviz.nohtml(f"{title}\\n{body}" if lines else title)
    return result


def headline(ctx: ExportContext) -> list[str]:
    """The picture's title lines: the verdict (as the report's), the key figures of the
    estimate, then plan and model, the mesh, the workload."""
    g = ctx.graph
    pool = g.pools[0]
    mesh = pool.mesh
    m, s = g.model, mesh.sizes
    model = f"{m.layers} layers, hidden {m.hidden_size}, {m.heads} heads ({m.kv_heads} kv)"
    if m.moe is not None:
        model += f", MoE {m.moe.experts} experts top-{m.moe.top_k}"
    world = f"{mesh.world} GPUs = TP{s['tp']}·CP{s['cp']}·DP{s['dp']}·PP{s['pp']} (attention)"
    if m.moe is not None:
        world += f" = ETP{s['etp']}·EP{s['ep']}·EDP{s['edp']}·PP{s['pp']} (experts)"
    lines = [
        f"{text(m.name)}: {model}",
        f"{world}; {mesh.hosts} host(s) × {mesh.gpus_per_node} GPUs",
    ]
    w = pool.workload
    work = f"{w.phase.value}: batch {w.batch}, prompt {w.prompt_len}, "
    work += f"{w.micro_batches} micro-batch(es) per replica"
    if w.decode_steps > 1:
        work += f", {w.decode_steps} decode steps"
    lines.append(f"{work}; graph {g.n_nodes:,} nodes, {g.n_edges:,} edges")
    mark, said = verdict(ctx.findings, True, ctx.estimate)
    lines.insert(0, f"{text(g.name)}: {mark} {said}")
    if figures := key_figures(ctx.estimate):
        lines.insert(1, "estimate: " + " · ".join(figures))
    return lines


def digraph(title_lines: list[str], rankdir: str = "TB") -> graphviz.Digraph:
    """An empty digraph named ``dagen`` with the title on top and dagen's fonts."""
    return graphviz.Digraph(
        name="dagen",
        graph_attr={
            "label": graphviz.nohtml("".join(f"{line}\\l" for line in title_lines)),
            "labelloc": "t",
            "labeljust": "l",
            "fontname": FONT,
            "fontsize": "14",
            "rankdir": rankdir,
            "newrank": "true",
            "nodesep": "0.3",
            "ranksep": "0.35",
        },
        node_attr={"fontname": FONT, "fontsize": "10", "shape": "box", "style": "rounded,filled"},
        edge_attr={"fontname": FONT, "fontsize": "9"},
    )
