"""Render the harness's results as docs/BENCHMARKS.md."""

from __future__ import annotations

from typing import Any

from bench.parquet import section as parquet_section
from bench.targets import targets_section

GZ_ABOVE_NODES = 30_000_000

TARGETS = """\
Targets (issue 6, this 2-core machine): build + all graph checks ≥ 5 M nodes/s at the
10 M-node scale; ≥ 30× faster than the networkx baseline and ≤ 1/10 of its memory;
resident memory ≤ 100 bytes per node, edges included; JSON export ≥ 150 MB/s with flat
memory; the 32,768-GPU plan within 24 GiB.
"""


def _f(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _row(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"| {r['rung']} | failed: {' '.join(r['failed'])} |" + " |" * 11
    n = r["nodes"]
    bc = r["build_s"] + r["check_s"]
    return (
        "| "
        + " | ".join(
            [
                r["rung"],
                f"{r['gpus']:,}",
                f"{n:,}",
                f"{r['edges']:,}",
                _f(r["build_s"], 3),
                _f(r["check_s"], 3),
                _f(n / bc / 1e6, 2),
                _f(r["simulate_s"], 2),
                f"{_f(r['json_s'], 2)} ({_f(r['json_bytes'] / r['json_s'] / 1e6, 0)} MB/s)",
                r.get("json_format", "json"),
                _f(r["peak_rss_build_check"] / 2**20, 0),
                _f(r["peak_rss_build_check"] / n, 1),
                _f(r["ir_bytes"] / n, 1),
            ]
        )
        + " |"
    )


def _baseline_rows(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        b = r.get("baseline")
        if not b:
            continue
        ours = r["build_s"] + r["check_s"]
        theirs = b["build_s"] + b["check_s"]
        rows.append(
            f"| {r['rung']} | {r['nodes']:,} | {_f(ours, 3)} | {_f(theirs, 2)} | {_f(theirs / ours, 0)}× "
            f"| {_f(r['peak_rss_build_check'] / 2**20, 0)} | {_f(b['peak_rss'] / 2**20, 0)} "
            f"| {_f(b['peak_rss'] / max(r['peak_rss_build_check'], 1), 1)}× | {b['acyclic']} |"
        )
    return rows


def render(info: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}, numpy {info['numpy']}, networkx {info['networkx']}; "
        f"dagen {info['dagen_rev']}; {info['date']}. "
        f"Disk sequential write (fsync'd, the JSON writer's physical limit): {info['disk_write_mb_s']:,} MB/s.",
        "",
        TARGETS,
        *targets_section(results),
        "Times are medians of the rung's repeats (build and check; simulate and JSON once). "
        "Peak RSS is the rise of the child process's high-water mark over its RSS before the build. "
        f"Rungs over {GZ_ABOVE_NODES // 1_000_000} M nodes export `.json.gz` (column *export "
        "format*; its MB/s counts compressed bytes): plain JSON of the 66 M-node rung is ~22 GB.",
        "",
        "| rung | GPUs | nodes | edges | build s | check s | build+check M nodes/s | simulate s | export s | export format | peak RSS MiB | RSS B/node | IR B/node |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        *[_row(r) for r in results],
        "",
        "## networkx baseline (same graph, same run)",
        "",
        "| rung | nodes | dagen build+check s | networkx build+check s | speed-up | dagen MiB | networkx MiB | memory ratio | networkx acyclic |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *_baseline_rows(results),
        "",
        *parquet_section(info, results),
        "Rungs:",
        "",
        *[f"- `{r['rung']}`: {r.get('what', '')}" for r in results],
        "",
    ]
    return "\n".join(lines)
