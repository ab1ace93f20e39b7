"""The Parquet export case: write speed of ``dag.parquet`` against the disk.

Each rung run by ``make bench`` also writes ``dag.parquet`` (:func:`measure`), and the
report renders the "Parquet export" section (:func:`section`). To measure this case
alone and splice its section into docs/BENCHMARKS.md without rerunning the ladder:
``python -m bench.parquet [RUNG ...]`` (each rung in its own child process: build,
then the write).

The write is timed from the call to ``write_outputs`` until the file is fsync'd, so it
is comparable with the disk's fsync'd sequential bandwidth the harness measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEADING = "## Parquet export"
DEFAULT_RUNGS = ("qwen3-1024", "qwen3-4096", "llama405b-16384")
"""Rungs of 1.7, 9.9 and 23 M nodes (the ladder's plain-JSON rungs of at least 1 M)."""


def measure(graph: Any, findings: tuple[Any, ...]) -> dict[str, Any]:
    """Write ``graph`` as ``dag.parquet`` once; seconds (write + fsync), bytes, extra RSS."""
    import dagen.export.parquet  # noqa: F401  (pyarrow's import, ~45 MB, is not the writer's)
    from bench.measure import peak_rss_bytes, reset_peak, rss_bytes
    from dagen.export import ExportContext, write_outputs

    ctx = ExportContext(graph=graph, findings=findings)
    with tempfile.TemporaryDirectory(dir=os.environ.get("DAGEN_BENCH_TMP")) as tmp:
        out = Path(tmp) / "dag.parquet"
        rss0 = rss_bytes()
        reset_peak()
        t0, cpu0 = time.perf_counter(), time.process_time()
        write_outputs(ctx, [(out, "parquet")])
        wrote, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        total = time.perf_counter() - t0
        return {
            "parquet_s": total,
            "parquet_write_s": wrote,
            "parquet_cpu_s": cpu,
            "parquet_bytes": out.stat().st_size,
            "parquet_extra_rss": peak_rss_bytes() - rss0,
        }


def _row(r: dict[str, Any], disk: float) -> str:
    mb = r["parquet_bytes"] / 1e6
    return (
        f"| {r['rung']} | {r['nodes']:,} | {r['edges']:,} | {mb:,.1f} | "
        f"{r['parquet_bytes'] / r['nodes']:.1f} | {r['parquet_s']:.2f} | "
        f"{r['parquet_cpu_s']:.2f} | {r['nodes'] / r['parquet_cpu_s'] / 1e6:.2f} | "
        f"{mb / r['parquet_s']:.1f} | "
        f"{mb / disk:.2f} | {r['parquet_extra_rss'] / 2**20:,.0f} |"
    )


def section(info: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """The "Parquet export" section's lines (empty when no rung measured it)."""
    rows = [r for r in results if "parquet_s" in r]
    if not rows:
        return []
    disk = float(info["disk_write_mb_s"])
    return [
        HEADING,
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, pyarrow "
        f"{info.get('pyarrow', '?')}; dagen {info['dagen_rev']}; {info['date']}. Disk "
        f"sequential write, fsync'd: {disk:,} MB/s.",
        "",
        "`-o dag.parquet` (the node table with `deps`, zstd level 1, no estimate), timed from "
        "`write_outputs` until the file is fsync'd (*wall s*); *CPU s* is the process's CPU "
        "time over the same span (on this shared machine the wall time also holds the time "
        "other sessions' processes held the cores). *Disk s* is the time the disk alone "
        "needs for the same bytes (file MB / disk MB/s): the write is CPU-bound while its "
        "time exceeds that. Extra RSS is the rise of the high-water mark during the write "
        "(pyarrow imported before).",
        "",
        "| rung | nodes | edges | file MB | B/node | wall s | CPU s | M nodes per CPU s | MB/s (wall) | disk s | extra RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[_row(r, disk) for r in rows],
        "",
    ]


def splice(text: str, lines: list[str], heading: str = HEADING) -> str:
    """``text`` with its section ``heading`` (the Parquet one by default) replaced by
    ``lines`` (appended if absent)."""
    head, sep, rest = text.partition(heading)
    if not sep:
        return text.rstrip("\n") + "\n\n" + "\n".join(lines).rstrip("\n") + "\n"
    after = rest.find("\n## ")
    tail = rest[after + 1 :] if after >= 0 else ""
    return head + "\n".join(lines) + ("\n" + tail if tail else "")


def _child(name: str) -> dict[str, Any]:
    from bench.ladder import RUNGS
    from dagen.graph.build import build_graph
    from dagen.mesh import mesh_of

    rung = next(r for r in RUNGS if r.name == name)
    plan = rung.make()
    graph = build_graph(plan, mesh_of(plan))
    res: dict[str, Any] = {"rung": name, "nodes": graph.n_nodes, "edges": graph.n_edges}
    return res | measure(graph, ())


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(_child(sys.argv[2])))
        return
    import pyarrow

    from bench.__main__ import ROOT, disk_write_mb_s, machine

    info = machine() | {"pyarrow": pyarrow.__version__}
    info["disk_write_mb_s"] = round(disk_write_mb_s(), 1)
    results = []
    for name in sys.argv[1:] or DEFAULT_RUNGS:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.parquet", "--child", name],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"bench.parquet: {results[-1]}", file=sys.stderr, flush=True)
    out = ROOT / "docs" / "BENCHMARKS.md"
    out.write_text(splice(out.read_text(encoding="utf-8"), section(info, results)), "utf-8")
    print(f"bench.parquet: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
