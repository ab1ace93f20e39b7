"""Pieces of the Markdown report: the stage table, the Mermaid chart, the estimate.

Nothing here holds text from the plan file (names are rendered by the template,
escaped), so the Mermaid chart needs only to keep its own syntax intact (:func:`_mm`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dagen.export.estimate import MEMORY_PARTS, memory_table
from dagen.export.fold import fold_stages
from dagen.export.overview import Block, BlockKind, Overview
from dagen.export.summary import human_bytes
from dagen.graph.ir import Graph

__all__ = ["estimate_part", "mermaid", "stage_rows"]

_MERMAID_CLASSES = {
    BlockKind.EMBED: "io",
    BlockKind.HEAD: "io",
    BlockKind.DENSE: "dense",
    BlockKind.MOE: "moe",
    BlockKind.ATTENTION: "dense",
}
_MERMAID_STYLES = (
    "classDef io fill:#e3e3e3,stroke:#555",
    "classDef dense fill:#cfe2f3,stroke:#555",
    "classDef moe fill:#fce5cd,stroke:#555",
)


def _mm(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for its syntax characters)."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def _comms(blocks: list[Block]) -> str:
    """Collectives per layer; prefixed by the layer span when the stage's blocks differ."""
    texts = [", ".join(f"{c} ×{n} ({k.upper()})" for c, k, n in b.comms) or "none" for b in blocks]
    if len(set(texts)) <= 1:
        return texts[0] if texts else "—"
    return "; ".join(f"{b.title.split(' ')[0]}: {t}" for b, t in zip(blocks, texts, strict=True))


def stage_rows(ov: Overview, graph: Graph) -> list[dict[str, Any]]:
    """One row per pipeline stage for the report's table."""
    sends: dict[int, list[str]] = {}
    for link in ov.links:
        what = "next token" if link.decode else "activations"
        sends.setdefault(link.src, []).append(
            f"{what} → stage {link.dst}: {human_bytes(link.bytes_per_rank)}/rank × {link.ranks}"
        )
    rows = []
    for s in ov.stages:
        layer_blocks = [b for b in s.blocks if b.first >= 0]
        comms = _comms(layer_blocks)
        experts = sorted({b.experts_per_rank for b in layer_blocks if b.kind is BlockKind.MOE})
        rows.append(
            {
                "index": s.index,
                "ranks": s.ranks,
                "hosts": s.hosts,
                "layers": s.layers,
                "blocks": "; ".join(b.title for b in s.blocks),
                "experts": ", ".join(map(str, experts)) or "—",
                "comms": comms,
                "sends": "; ".join(sends.get(s.index, [])) or "—",
            }
        )
    return rows


def _short(line: str) -> str:
    """A block's detail line, shortened for the chart (the stage table has it in full)."""
    for long, short in _SHORTER:
        line = line.replace(long, short)
    return line


_SHORTER = (
    ("all-reduce", "AR"), ("all-gather", "AG"), ("reduce-scatter", "RS"), ("all-to-all", "A2A"),
    ("heads/rank", "heads"), ("per layer: ", ""), ("collectives: ", ""), ("attention: ", "attn "),
    ("experts: ", ""), (" (replicated)", ""),
)  # fmt: skip


def mermaid(ov: Overview) -> str:
    """A Mermaid flowchart of the stages and their blocks (GitHub renders it).

    Stages stack top to bottom, each stage's blocks run left to right inside it, and a
    pipeline send joins two stage boxes (never a block inside one, so no arrow crosses
    a stage's title). Runs of like middle stages are folded into one box
    (:func:`fold_stages`). Collectives are abbreviated (AR all-reduce, AG all-gather,
    RS reduce-scatter, A2A all-to-all), as the note under the chart says.
    """
    lines = ["flowchart TB"]
    runs, links = fold_stages(ov.stages, ov.links)
    for s in runs:
        inside = "<br/>(sends between them as on the arrow out)" if s.folded else ""
        lines.append(f'  subgraph s{s.index}["{_mm(s.heading)}{inside}"]')
        lines.append("    direction LR")
        for i, b in enumerate(s.blocks):
            detail = "<br/>".join(_mm(_short(x)) for x in b.lines if not x.startswith("compute"))
            lines.append(
                f'    s{s.index}b{i}["<b>{_mm(b.title)}</b><br/>{detail}"]:::{_MERMAID_CLASSES[b.kind]}'
            )
        for i in range(len(s.blocks) - 1):
            lines.append(f"    s{s.index}b{i} --> s{s.index}b{i + 1}")
        lines.append("  end")
    for link in links:
        arrow = "-.->" if link.decode else "==>"
        what = "next token" if link.decode else "activations"
        text = f"{what} {human_bytes(link.bytes_per_rank)}/rank × {link.ranks}"
        lines.append(f'  s{link.src} {arrow}|"{_mm(text)}"| s{link.dst}')
    lines += [f"  {style}" for style in _MERMAID_STYLES]
    return "\n".join(lines)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    x = float(value)
    if not np.isfinite(x):
        return str(x)
    return f"{x:.4g} {unit}".strip()


def _seconds(value: Any) -> str:
    if value is None or not np.isfinite(float(value)):
        return _fmt(value)
    x = float(value)
    return f"{x * 1e3:.4g} ms" if abs(x) < 1 else f"{x:.4g} s"


def _metrics(est: Any) -> list[tuple[str, str]]:
    busy = np.asarray(getattr(est, "busy_fraction", ()), dtype=np.float64)
    rows = [
        ("simulated step (makespan)", _seconds(getattr(est, "makespan_s", None))),
        ("time to first token", _seconds(getattr(est, "ttft_s", None))),
        ("time per output token", _seconds(getattr(est, "tpot_s", None))),
        ("throughput", _fmt(getattr(est, "tokens_per_s", None), "tokens/s")),
        ("throughput per GPU", _fmt(getattr(est, "tokens_per_s_per_gpu", None), "tokens/s")),
        ("pipeline bubble", _fmt(getattr(est, "bubble_fraction", None))),
    ]
    if busy.size:
        rows.append(
            (
                "GPU busy fraction (min / mean / max)",
                f"{busy.min():.3g} / {busy.mean():.3g} / {busy.max():.3g}",
            )
        )
    return rows


def _memory_rows(est: Any) -> tuple[str, list[tuple[str, str]]]:
    table = memory_table(est)
    worst = table.get("max", {})
    cap = table["capacity_bytes"]
    names = {"routed": "of which routed experts", "kv": "KV cache"}
    # Binary units, as nvidia-smi and the frameworks report memory: 1 GiB = 2^30 bytes.
    rows = [(names.get(p, p), human_bytes(worst[p])) for p in MEMORY_PARTS if p in worst]
    if cap:
        rows.append(("capacity", human_bytes(cap)))
        if "total" in worst:
            rows.append(("used", f"{100 * worst['total'] / cap:.1f} %"))
    return ("rank " + str(table["max_rank"])) if "max_rank" in table else "—", rows


def estimate_part(est: Any | None) -> dict[str, Any] | None:
    """The report's estimate section, or ``None`` without an estimate."""
    if est is None:
        return None
    memory_rank, memory = _memory_rows(est)
    return {"metrics": _metrics(est), "memory_rank": memory_rank, "memory": memory}
