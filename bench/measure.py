"""Measure one rung in this process: build, check, simulate, export; print one JSON line.

Run by the harness as a child process per rung, so peak RSS belongs to that rung alone:
``python -m bench.measure RUNG [--baseline]``.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ladder import RUNGS
from bench.report import GZ_ABOVE_NODES


def rss_bytes() -> int:
    """Current resident set size."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(name: str, with_baseline: bool) -> dict[str, Any]:
    from dagen.checks import check_graph
    from dagen.cost import estimate
    from dagen.export import ExportContext, write_outputs
    from dagen.graph.build import build_graph
    from dagen.mesh import mesh_of

    rung = next(r for r in RUNGS if r.name == name)
    plan = rung.make()
    mesh = mesh_of(plan)
    res: dict[str, Any] = {
        "rung": name,
        "what": rung.what,
        "gpus": mesh.world,
        "repeats": rung.repeats,
    }
    base_rss = rss_bytes()
    reset_peak()
    res["build_s"], graph = timed(lambda: build_graph(plan, mesh), rung.repeats)
    res["nodes"], res["edges"] = graph.n_nodes, graph.n_edges
    res["ir_bytes"] = graph.nbytes()
    res["check_s"], findings = timed(lambda: check_graph(graph), rung.repeats)
    res["errors"] = sum(f.severity == "error" for f in findings)
    res["peak_rss_build_check"] = peak_rss_bytes() - base_rss
    res["peak_rss_abs_build_check"] = peak_rss_bytes()
    reset_peak()
    res["simulate_s"], _ = timed(lambda: estimate(graph), 1)
    res["peak_rss_simulate"] = peak_rss_bytes() - base_rss
    fmt = "json.gz" if graph.n_nodes > GZ_ABOVE_NODES else "json"
    res["json_format"] = fmt
    with tempfile.TemporaryDirectory(dir=os.environ.get("DAGEN_BENCH_TMP")) as tmp:
        out = Path(tmp) / f"dag.{fmt}"
        ctx = ExportContext(graph=graph, findings=tuple(findings))
        rss0 = rss_bytes()
        reset_peak()
        res["json_s"], _ = timed(lambda: write_outputs(ctx, [(out, fmt)]), 1)
        res["json_bytes"] = out.stat().st_size
        res["json_extra_rss"] = peak_rss_bytes() - rss0
    from bench.parquet import measure as parquet_case

    res |= parquet_case(graph, tuple(findings))
    if with_baseline and rung.baseline:
        from bench.baseline import networkx_baseline

        res["baseline"] = networkx_baseline(graph)
    return res


def main() -> None:
    name = sys.argv[1]
    print(json.dumps(run(name, "--baseline" in sys.argv[2:])))


if __name__ == "__main__":
    main()
