"""The search bench: ``dagen search`` over more than 1,000 layouts of a 4,096-GPU plan.

``python -m bench.search [--budget S] [--out bench/out/search.json]`` (``make bench-search``)
runs the search of ``bench/data/search-llama3-70b-4096.yaml`` on its 4,096 GPUs over
the full space with cp ∈ {1, 2} and micro-batches ∈ {1, 2, 4, 8}, prints a progress line
per 25 estimates on stderr, and writes one JSON record: layouts, estimated, pruned,
seconds by step, the representative replicas' GPUs against the full worlds', and the
verdict. docs/search.md, "Benchmark", quotes the last run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dagen.plan.loader import load_plan
from dagen.study.candidates import Status
from dagen.study.search import parse_only, search

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "bench" / "data" / "search-llama3-70b-4096.yaml"
ONLY = ["cp=1,2", "mb=1,2,4,8"]
TARGET = {"layouts": 1000, "seconds": 60.0}
"""Issue 11, item 4: at least 1,000 candidates for a 4,096-GPU deployment in ≤ 60 s."""


class _Meter:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: dict[str, float] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.marks.setdefault(phase, time.perf_counter())
        if done % 25 == 0 or done == total:
            took = time.perf_counter() - self.t0
            print(f"bench.search: {phase} {done}/{total} ({took:.0f} s)", file=sys.stderr)


def run(budget_s: float) -> dict[str, Any]:
    """One search, timed; the record the bench writes."""
    plan = load_plan(PLAN)
    meter = _Meter()
    t0 = time.perf_counter()
    r = search(plan, only=parse_only(ONLY), full=True, budget_s=budget_s, meter=meter)
    total = time.perf_counter() - t0
    est = meter.marks.get("estimating candidates", t0)
    checked = meter.marks.get("checking the best", time.perf_counter())
    by = Counter(c.status.value for c in r.candidates)
    priced = [c.replicas_priced for c in r.candidates if c.status is Status.ESTIMATED]
    survivors = sum(c.status not in (Status.RULES, Status.WEIGHTS) for c in r.candidates)
    return {
        "plan": str(PLAN.relative_to(ROOT)),
        "gpus": r.gpus,
        "only": ONLY,
        "layouts": r.size,
        "by_status": dict(sorted(by.items())),
        "seconds": {
            "total": round(total, 2),
            "enumerate_and_prune": round(est - t0, 2),
            "estimate": round(checked - est, 2),
            "check_best_and_given": round(t0 + total - checked, 2),
        },
        "survivors_estimated": survivors,
        "per_estimate_ms": round(1e3 * (checked - est) / max(survivors, 1), 1),
        "mean_gpus_priced": round(sum(priced) / max(len(priced), 1), 1),
        "verdict": r.verdict.text,
        "target": TARGET,
        "met": r.size >= TARGET["layouts"] and total <= TARGET["seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.search")
    ap.add_argument("--budget", type=float, default=3600.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "search.json")
    args = ap.parse_args()
    record = run(args.budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
