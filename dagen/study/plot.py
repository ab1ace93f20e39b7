"""The frontier of a search as a picture (SVG or PNG), drawn with matplotlib.

Every estimated candidate within the SLO is a grey dot; the Pareto frontier is the blue
line; the given plan is the red star. The bytes are stable from run to run: no date in
the metadata, a fixed SVG id salt, the Agg renderer without pyplot's global state.

Example:
    >>> plot_bytes(result, "svg")[:5]  # doctest: +SKIP
    b'<?xml'
"""

from __future__ import annotations

import io
import textwrap

from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dagen.plan.model import Metric
from dagen.study.candidates import Candidate
from dagen.study.search import SearchResult

__all__ = ["PLOT_FORMATS", "plot_bytes"]

PLOT_FORMATS = ("svg", "png")

_LABELS = {Metric.TTFT_S: "TTFT (s)", Metric.TPOT_MS: "TPOT (ms)"}


def _xy(cands: list[Candidate], latency: Metric) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for c in cands:
        assert c.figures is not None
        x = c.figures.value(latency)
        if x is None:
            continue
        xs.append(x)
        ys.append(c.figures.tokens_per_s_per_gpu)
    return xs, ys


def _draw(r: SearchResult) -> Figure:
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs, ys = _xy(r.valid(), r.latency)
    ax.scatter(xs, ys, s=9, c="#b0b0b0", label=f"estimated ({len(xs):,})", zorder=1)
    fx, fy = _xy(list(r.frontier), r.latency)
    ax.plot(fx, fy, "o-", c="#1f5fa8", ms=5, lw=1.5, label="Pareto frontier", zorder=2)
    for c, x, y in list(zip(r.frontier, fx, fy, strict=True))[:8]:
        ax.annotate(c.layout.label(), (x, y), textcoords="offset points", xytext=(6, 4),
                    fontsize=7, color="#1f5fa8")  # fmt: skip
    if r.given.ok:
        gx, gy = _xy([r.given], r.latency)
        ax.scatter(gx, gy, marker="*", s=160, c="#c0392b", zorder=3,
                   label=f"given: {r.given.layout.label()}")  # fmt: skip
    ax.set_xlabel(_LABELS[r.latency])
    ax.set_ylabel("tokens/s per GPU")
    if xs and max(xs) > 20 * min(xs) > 0:
        ax.set_xscale("log")
    verdict = textwrap.fill(r.verdict.text.split(" (", 1)[0], 100)
    ax.set_title(f"{r.plan.name} on {r.gpus:,} GPUs\n{verdict}", fontsize=9)
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_bytes(r: SearchResult, fmt: str) -> bytes:
    """The frontier picture of ``r`` in ``fmt`` (``svg`` or ``png``)."""
    fig = _draw(r)
    buf = io.BytesIO()
    meta: dict[str, str | None] = {"Software": None}
    if fmt == "svg":
        meta = {"Date": None, "Creator": None}
    old = rcParams["svg.hashsalt"]
    rcParams["svg.hashsalt"] = "dagen-search"
    try:
        fig.savefig(buf, format=fmt, metadata=meta)
    finally:
        rcParams["svg.hashsalt"] = old
    return buf.getvalue()
