"""Build + check speed of this checkout against another revision, in the same run.

``python -m bench.against REV [--rungs a b …] [--rounds N]`` checks REV out into a git
worktree and, for each rung, times ``build_graph`` and ``check_graph`` in child
processes that alternate between the two trees (REV, this, REV, this, …), so both see
the same machine load. Each child builds the rung's plan from this checkout's ladder
(the plans are data, loaded by either tree's dagen) and prints its median seconds.

The harness (``python -m bench --against REV``) adds the table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_RUNGS = ("seed-128", "dsv3-decode-320", "qwen3-1024", "qwen3-4096", "llama405b-16384")
"""Rungs ``python -m bench.against`` compares by default."""
ALL_RUNGS = (*DEFAULT_RUNGS, "dsv3-32768")
"""Rungs the harness compares (``python -m bench --against``)."""


def _child(rung: str, repeats: int) -> dict[str, Any]:
    """In a child whose ``sys.path`` starts with the tree under test: time one rung of this
    checkout's ladder (loaded by file path, so the tree's own ``bench`` is not used)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ladder", ROOT / "bench" / "ladder.py")
    assert spec is not None and spec.loader is not None
    ladder = importlib.util.module_from_spec(spec)
    sys.modules["_ladder"] = ladder  # dataclasses look their module up
    spec.loader.exec_module(ladder)
    from dagen.checks import check_graph
    from dagen.graph.build import build_graph

    plan = next(r for r in ladder.RUNGS if r.name == rung).make()
    build, check = [], []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        graph = build_graph(plan)
        build.append(time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        findings = check_graph(graph)
        check.append(time.perf_counter() - t)
    return {
        "nodes": graph.n_nodes,
        "errors": sum(str(f.severity) == "error" for f in findings),
        "build_s": statistics.median(build),
        "check_s": statistics.median(check),
    }


def _run_child(
    tree: Path, rung: str, repeats: int, wrapper: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run :func:`_child` for ``tree`` in a fresh interpreter (under ``wrapper``, e.g.
    valgrind, if given); its result, with the child's stderr under ``"stderr"``."""
    code = (
        "import importlib.util, json, sys; sys.path.insert(0, sys.argv[1]); "
        "spec = importlib.util.spec_from_file_location('_against', sys.argv[4]); "
        "mod = importlib.util.module_from_spec(spec); sys.modules['_against'] = mod; "
        "spec.loader.exec_module(mod); "
        "print(json.dumps(mod._child(sys.argv[2], int(sys.argv[3]))))"
    )
    proc = subprocess.run(
        [*wrapper, sys.executable, "-c", code, str(tree), rung, str(repeats), __file__],
        cwd=tree, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{tree} {rung}: {proc.stderr.strip().splitlines()[-1:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    return out


def worktree(rev: str) -> Path:
    """A detached worktree of ``rev`` (made once per run)."""
    path = Path(tempfile.mkdtemp(prefix="dagen-against-"))
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(path), rev], cwd=ROOT, check=True
    )
    return path


def compare(rev: str, rungs: tuple[str, ...], rounds: int = 3, repeats: int = 3) -> dict[str, Any]:
    """Median build + check M nodes/s per rung for ``rev`` and this checkout."""
    other = worktree(rev)
    try:
        rows = []
        for rung in rungs:
            seen: dict[str, list[dict[str, Any]]] = {"against": [], "this": []}
            for _ in range(rounds):
                seen["against"].append(_run_child(other, rung, repeats))
                seen["this"].append(_run_child(ROOT, rung, repeats))
            row: dict[str, Any] = {"rung": rung, "nodes": seen["this"][0]["nodes"]}
            for side, runs in seen.items():
                total = statistics.median(r["build_s"] + r["check_s"] for r in runs)
                row[side] = {"nodes": runs[0]["nodes"], "build_check_s": total,
                             "mnodes_s": runs[0]["nodes"] / total / 1e6}  # fmt: skip
            row["change"] = row["this"]["mnodes_s"] / row["against"]["mnodes_s"] - 1
            rows.append(row)
            print(f"bench.against: {json.dumps(row)}", file=sys.stderr, flush=True)
        rev_short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return {"rev": rev_short, "rounds": rounds, "repeats": repeats, "rows": rows}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)


def render(result: dict[str, Any]) -> str:
    """The Markdown section of a comparison."""
    lines = [
        f"## Against {result['rev']} (same run)",
        "",
        f"Build + all checks of each rung, medians of {result['rounds']} alternating rounds of "
        f"{result['repeats']} repeats each, in child processes (`python -m bench.against`). "
        "Node counts differ where a deliberate change altered the graph.",
        "",
        f"| rung | nodes ({result['rev']}) | nodes (this) | {result['rev']} s | this s | "
        f"{result['rev']} M nodes/s | this M nodes/s | change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        a, t = r["against"], r["this"]
        lines.append(
            f"| {r['rung']} | {a['nodes']:,} | {t['nodes']:,} | {a['build_check_s']:.3f} | "
            f"{t['build_check_s']:.3f} | {a['mnodes_s']:.2f} | {t['mnodes_s']:.2f} | "
            f"{r['change']:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.against")
    ap.add_argument("rev")
    ap.add_argument("--rungs", nargs="*", default=list(DEFAULT_RUNGS))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(render(compare(args.rev, tuple(args.rungs), args.rounds)))


if __name__ == "__main__":
    main()
