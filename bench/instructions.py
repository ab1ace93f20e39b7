"""Build + check cost of this checkout against another revision, in instructions.

``python -m bench.instructions REV [--rungs a b …] [--write]`` runs each rung's build and check
under valgrind's callgrind, in this checkout and in REV (a git worktree), and reports the
instructions one build + check executes. Unlike seconds, an instruction count does not
depend on what else the machine runs, so the comparison holds on a shared machine
(valgrind's manual, "Callgrind": the count is exact for the same binary and input).

Each rung runs twice per tree (after a native run that writes the bytecode caches; hash
seed fixed), with 1 and with 1 + k build + check repeats (k = 2; 20 for the small
``seed-128``, whose single repeats vary by millions of instructions); the difference
over k is one repeat's count, free of interpreter start-up, imports and plan loading,
which both runs share. It does not see memory stalls: a change that trades instructions
for cache misses shows in ``python -m bench.against`` (seconds) only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.against import ROOT, _run_child, worktree
from bench.parquet import splice

RUNGS = ("seed-128", "dsv3-decode-320", "qwen3-1024")
"""Rungs counted by default: under callgrind a rung runs ~50× slower than natively."""

HEADING = "## Instructions against"

VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def _count(tree: Path, rung: str, repeats: int) -> tuple[int, int]:
    """(nodes, instructions) of a child that builds and checks ``rung`` ``repeats`` times."""
    out = _run_child(tree, rung, repeats, VALGRIND)
    m = re.search(r"Collected\s*:\s*(\d+)", out["stderr"])
    if m is None:
        raise RuntimeError(f"{tree} {rung}: callgrind printed no count")
    return int(out["nodes"]), int(m.group(1))


EXTRA = {"seed-128": 20}
"""Extra repeats per rung (default 2): a small rung's count of one repeat varies by some
millions of instructions (allocator and collector timing), so it is averaged over more."""


def per_build_check(tree: Path, rung: str) -> dict[str, Any]:
    """Nodes, instructions of one build + check, and nodes per million instructions.

    A native run first writes the tree's bytecode caches: a fresh worktree would
    otherwise compile its modules in the first counted child only."""
    _run_child(tree, rung, 1)
    extra = EXTRA.get(rung, 2)
    nodes, one = _count(tree, rung, 1)
    _, more = _count(tree, rung, 1 + extra)
    instr = (more - one) / extra
    return {"nodes": nodes, "instructions": instr, "nodes_per_minstr": nodes / instr * 1e6}


def compare(rev: str, rungs: tuple[str, ...]) -> dict[str, Any]:
    other = worktree(rev)
    try:
        rows = []
        for rung in rungs:
            row: dict[str, Any] = {"rung": rung}
            row["against"] = per_build_check(other, rung)
            row["this"] = per_build_check(ROOT, rung)
            row["change"] = row["this"]["nodes_per_minstr"] / row["against"]["nodes_per_minstr"] - 1
            print(f"bench.instructions: {row}", file=sys.stderr, flush=True)
            rows.append(row)
        rev_short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return {"rev": rev_short, "rows": rows}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)


def render(result: dict[str, Any]) -> str:
    """The Markdown section of a comparison."""
    rev = result["rev"]
    lines = [
        f"{HEADING} {rev} (same run)",
        "",
        "Instructions of one build + all checks (callgrind; `python -m bench.instructions`), "
        "the difference of a (1 + k)-repeat and a 1-repeat child over k (k = 20 for seed-128, "
        "else 2). *Change* is the change in "
        "nodes per instruction: positive is faster.",
        "",
        f"| rung | nodes | {rev} M instr | this M instr | {rev} nodes/M instr | "
        "this nodes/M instr | change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        a, t = r["against"], r["this"]
        lines.append(
            f"| {r['rung']} | {t['nodes']:,} | {a['instructions'] / 1e6:,.1f} | "
            f"{t['instructions'] / 1e6:,.1f} | {a['nodes_per_minstr']:,.0f} | "
            f"{t['nodes_per_minstr']:,.0f} | {r['change']:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions")
    ap.add_argument("rev")
    ap.add_argument("--rungs", nargs="*", default=list(RUNGS))
    ap.add_argument("--write", action="store_true", help="splice into docs/BENCHMARKS.md")
    args = ap.parse_args()
    text = render(compare(args.rev, tuple(args.rungs)))
    print(text)
    if args.write:
        out = ROOT / "docs" / "BENCHMARKS.md"
        out.write_text(splice(out.read_text("utf-8"), text.splitlines(), HEADING), "utf-8")


if __name__ == "__main__":
    main()
