"""The search bench: ``dagen search`` over more than 1,000 layouts of a 4,096-GPU plan,
and aiconfigurator's search of the same deployment in the same run as the reference.

``python -m bench.search [--budget S] [--progress] [--no-aiconfigurator] [--out J]``
(``make bench-search``) runs the search of ``bench/data/search-llama3-70b-4096.yaml`` on
its 4,096 GPUs over the full space with cp ∈ {1, 2} and micro-batches ∈ {1, 2, 4, 8},
then ``aiconfigurator cli default`` (from ``bench/.aic-venv``, PyPI
``aiconfigurator==0.12.0``; never in CI) on the same model, GPUs and prompt length. It
draws a progress bar on stderr when stderr is a terminal (or with ``--progress``), and
writes one JSON record (``bench/out/search.json``) and the Markdown table of
docs/BENCHMARKS.md's search section (spliced between its markers). Wall and CPU seconds
are both reported: the machine is shared, and CPU seconds are what the work costs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from dagen.plan.loader import load_plan
from dagen.study.candidates import Status
from dagen.study.search import parse_only, search

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "bench" / "data" / "search-llama3-70b-4096.yaml"
HF = ROOT / "tests" / "data" / "hf" / "llama-3-70b.json"
ONLY = ["cp=1,2", "mb=1,2,4,8", "split=even,balanced"]
TARGET = {"layouts": 1000, "seconds": 60.0}
"""Issue 11, item 4: at least 1,000 candidates for a 4,096-GPU deployment in ≤ 60 s."""
AIC = ROOT / "bench" / ".aic-venv" / "bin" / "aiconfigurator"
AIC_OUT = ROOT / "bench" / "out" / "aic-search"
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- search: written by python -m bench.search -->", "<!-- /search -->"


class _Bar:
    """``meter(phase, done, total)`` drawn as one line per phase on ``out``."""

    def __init__(self, out: TextIO | None) -> None:
        self.out, self.t0, self.phase = out, time.perf_counter(), ""
        self.marks: dict[str, float] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.marks.setdefault(phase, time.perf_counter())
        if self.out is None:
            return
        if phase != self.phase and self.phase:
            self.out.write("\n")
        self.phase = phase
        width = 30
        fill = width * done // max(total, 1)
        took = time.perf_counter() - self.t0
        self.out.write(f"\rbench.search: {phase:<22} [{'#' * fill}{'.' * (width - fill)}] "
                       f"{done}/{total} {took:5.1f} s")  # fmt: skip
        if done >= total:
            self.out.write("\n")
            self.phase = ""
        self.out.flush()


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_dagen(budget_s: float, bar: _Bar) -> dict[str, Any]:
    """One search, timed; its part of the record."""
    plan = load_plan(PLAN)
    t0, c0 = time.perf_counter(), _cpu()
    r = search(plan, only=parse_only(ONLY), full=True, budget_s=budget_s, meter=bar)
    total, cpu = time.perf_counter() - t0, _cpu() - c0
    est = bar.marks.get("estimating candidates", t0)
    checked = bar.marks.get("checking the best", time.perf_counter())
    by = Counter(c.status.value for c in r.candidates)
    ranks = [c.replicas_priced for c in r.candidates if c.status is Status.ESTIMATED]
    survivors = sum(c.status not in (Status.RULES, Status.WEIGHTS) for c in r.candidates)
    return {
        "plan": str(PLAN.relative_to(ROOT)),
        "gpus": r.gpus,
        "only": ONLY,
        "layouts": r.size,
        "by_status": dict(sorted(by.items())),
        "seconds": {
            "total": round(total, 2),
            "cpu": round(cpu, 2),
            "enumerate_and_prune": round(est - t0, 2),
            "estimate": round(checked - est, 2),
            "check_best_and_given": round(t0 + total - checked, 2),
        },
        "survivors_estimated": survivors,
        "per_estimate_ms": round(1e3 * (checked - est) / max(survivors, 1), 1),
        "mean_ranks_simulated": round(sum(ranks) / max(len(ranks), 1), 1),
        "verdict": r.verdict.text,
        "target": TARGET,
        "met": r.size >= TARGET["layouts"] and total <= TARGET["seconds"],
        "met_cpu": r.size >= TARGET["layouts"] and cpu <= TARGET["seconds"],
    }


def aic_command() -> list[str]:
    """``aiconfigurator cli default`` on the bench's deployment: Llama-3-70B on 4,096
    H100s, aggregated serving, prompts of 2,048 tokens and two output tokens (its
    shortest request that still has a decode step), the SLA filters opened wide so
    every configuration it evaluates is kept."""
    model = AIC_OUT / "llama-3-70b"
    return [str(AIC), "cli", "default", "--model-path", str(model), "--total-gpus", "4096",
            "--system", "h100_sxm", "--backend", "trtllm", "--serving-mode", "agg",
            "--isl", "2048", "--osl", "2", "--ttft", "1000000", "--tpot", "1000000",
            "--save-dir", str(AIC_OUT / "runs"), "--no-color", "--log-level", "DEBUG"]  # fmt: skip


def run_aiconfigurator() -> dict[str, Any]:
    """aiconfigurator's search, timed (wall and the child's CPU); ``{"skipped": why}``
    when its virtualenv is missing."""
    if not AIC.exists():
        return {"skipped": f"{AIC.relative_to(ROOT)} is missing: run `make bench-search`"}
    (AIC_OUT / "llama-3-70b").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HF, AIC_OUT / "llama-3-70b" / "config.json")
    cmd = aic_command()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log = done.stdout + done.stderr
    kept = re.search(r"Experiment agg completed with (\d+) results", log)
    best = _top_row(log)
    return {
        "command": " ".join(["aiconfigurator", *cmd[1:]]).replace(str(ROOT) + "/", ""),
        "exit": done.returncode,
        "seconds": {"total": round(wall, 2), "cpu": round(cpu, 2)},
        "evaluated": log.count("mix_step_energy"),
        "kept": int(kept.group(1)) if kept else None,
        "best": best,
    }


def _top_row(log: str) -> dict[str, Any] | None:
    """Rank 1 of aiconfigurator's "agg Top Configurations" table, by its own header."""
    header: list[str] | None = None
    for line in log.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["Rank", "backend"]:
            header = cells
        elif header and len(cells) == len(header) and cells[0] == "1":
            row = dict(zip(header, cells, strict=True))
            return {"tokens_per_s_per_gpu": float(row["tokens/s/gpu"]),
                    "ttft_ms": float(row["TTFT"]), "parallel": row["parallel"],
                    "batch": int(row["bs"])}  # fmt: skip
    return None


def table(rec: dict[str, Any], aic: dict[str, Any], when: str) -> str:
    """The Markdown of docs/BENCHMARKS.md's search section."""
    s, m = rec["seconds"], rec["machine"]
    rows = [
        "## Search (`make bench-search`)",
        "",
        f"`python -m bench.search`, {when}, on {m}. dagen searches "
        f"`{rec['plan']}` (Llama-3-70B prefill, 8,192 prompts of 2,048 tokens, "
        f"{rec['gpus']:,} H100s) over the full space with `--only {' --only '.join(ONLY)}`; "
        "aiconfigurator 0.12.0 searches the same model, GPUs and prompt length with its "
        "own default space, in the same run. Wall and CPU seconds: the machine is shared.",
        "",
        "| | dagen search | aiconfigurator cli default |",
        "| --- | --- | --- |",
    ]
    a = aic.get("seconds", {})
    best = aic.get("best") or {}
    rows += [
        f"| space | {rec['layouts']:,} layouts (tp, cp, dp, pp, micro-batches, sp, order, split) | "
        f"{aic.get('evaluated', '-')} points (tp ∈ 1, 2, 4, 8 · pp 1 · its batch sizes; "
        f"counted by its debug log's per-point lines), {aic.get('kept', '-')} kept |",
        f"| estimated | {rec['survivors_estimated']:,} survivors of the plan rules and "
        f"weights; {rec['mean_ranks_simulated']} ranks simulated each on average | "
        "its operator-table model per point |",
        f"| wall s | {s['total']} (enumerate {s['enumerate_and_prune']}, estimate "
        f"{s['estimate']}, check the best 3 and the given plan {s['check_best_and_given']}) | "
        f"{a.get('total', '-')} |",
        f"| CPU s | {s['cpu']} | {a.get('cpu', '-')} |",
        f"| CPU ms per candidate | {1e3 * s['cpu'] / rec['layouts']:.0f} a layout, "
        f"{1e3 * s['cpu'] / max(rec['survivors_estimated'], 1):.0f} an estimate | "
        f"{_per(a.get('cpu'), aic.get('evaluated'))} a point |",
        f"| best | {rec['verdict'].split(':')[0].removeprefix('beaten by ')} | "
        f"{best.get('parallel', '-')} (batch {best.get('batch', '-')}, TTFT "
        f"{best.get('ttft_ms', '-')} ms, {best.get('tokens_per_s_per_gpu', '-')} output "
        "tokens/s/GPU) |",
        "",
        f"Target (issue 11): ≥ {TARGET['layouts']:,} candidates in ≤ {TARGET['seconds']:.0f} s: "
        f"{'met' if rec['met'] else 'not met'} on the wall clock, "
        f"{'met' if rec['met_cpu'] else 'not met'} in CPU seconds.",
    ]
    return "\n".join(rows) + "\n"


def _per(cpu: float | None, n: int | None) -> str:
    return f"{1e3 * cpu / n:.0f}" if cpu is not None and n else "-"


def splice(doc: str, block: str) -> str:
    """``doc`` with the search section replaced (or appended) between the markers."""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        return head + BEGIN + "\n" + block + rest[rest.index(END) :]
    return doc.rstrip("\n") + "\n\n" + BEGIN + "\n" + block + END + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.search")
    ap.add_argument("--budget", type=float, default=3600.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "search.json")
    ap.add_argument("--progress", action="store_true", help="draw the bar even off a terminal")
    ap.add_argument("--no-aiconfigurator", action="store_true")
    ap.add_argument("--no-docs", action="store_true", help="do not splice docs/BENCHMARKS.md")
    args = ap.parse_args()
    bar = _Bar(sys.stderr if args.progress or sys.stderr.isatty() else None)
    record = run_dagen(args.budget, bar)
    record["machine"] = _machine()
    aic = {"skipped": "--no-aiconfigurator"} if args.no_aiconfigurator else run_aiconfigurator()
    record["aiconfigurator"] = aic
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if not args.no_docs:
        DOC.write_text(splice(DOC.read_text(encoding="utf-8"), table(record, aic, when)),
                       encoding="utf-8")  # fmt: skip
    print(json.dumps(record, indent=2))


def _machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores (load average {load} at the end)"


if __name__ == "__main__":
    main()
