"""Run the benchmark ladder and write docs/BENCHMARKS.md.

``python -m bench [--only RUNG ...] [--out docs/BENCHMARKS.md]``. Each rung runs in its
own child process so its peak RSS is its own; the networkx baseline runs in that same
child, after dagen, on the rungs it can finish.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ladder import ROOT, RUNGS
from bench.report import render


def _keep_search_section(path: Path, text: str) -> str:
    """``text`` with the search section ``python -m bench.search`` spliced into ``path``."""
    from bench.search import BEGIN, END

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN not in old or END not in old:
        return text
    block = old[old.index(BEGIN) : old.index(END) + len(END)]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def disk_write_mb_s(size_mb: int = 1024) -> float:
    """Sequential write bandwidth of the bench's temp dir, with fsync (the physical limit)."""
    block = os.urandom(1 << 20)
    with tempfile.NamedTemporaryFile(dir=os.environ.get("DAGEN_BENCH_TMP")) as fh:
        t0 = time.perf_counter()
        for _ in range(size_mb):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
        return size_mb / (time.perf_counter() - t0)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    import networkx
    import numpy
    import pyarrow

    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "networkx": networkx.__version__,
        "pyarrow": pyarrow.__version__,
        "dagen_rev": rev,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_rung(name: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.measure", name, "--baseline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {"rung": name, "failed": proc.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--only", nargs="*", help="rung names to run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument(
        "--against", help="also time build + check of this git revision, in the same run"
    )
    args = ap.parse_args()
    rungs = [r for r in RUNGS if not args.only or r.name in args.only]
    info = machine()
    info["disk_write_mb_s"] = round(disk_write_mb_s(), 1)
    results = []
    for r in rungs:
        print(f"bench: {r.name} …", file=sys.stderr, flush=True)
        res = run_rung(r.name)
        print(f"bench: {json.dumps(res)}", file=sys.stderr, flush=True)
        results.append(res)
    text = _keep_search_section(args.out, render(info, results))
    if args.against:
        from bench.against import ALL_RUNGS, compare
        from bench.against import render as render_against

        names = tuple(r for r in ALL_RUNGS if not args.only or r in args.only)
        text += "\n" + render_against(compare(args.against, names))
        from bench import instructions

        counted = tuple(r for r in instructions.RUNGS if not args.only or r in args.only)
        text += "\n" + instructions.render(instructions.compare(args.against, counted))
    args.out.write_text(text, encoding="utf-8")
    print(f"bench: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
