"""The Chakra export on every sample: write speed, rules, replay against the estimate.

``python -m bench.chakra`` prints the table of docs/chakra.md ("Replay"): for each sample
that builds, the export's wall time (after the build and the estimate), its size, the
problems :func:`dagen.export.chakra_read.check_traces` finds, whether the replay finishes
every rank, and the replayed makespan against the estimate's with the replay's bound.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from dagen import api
from dagen.export import ExportContext, write_outputs
from dagen.export.chakra_read import check_traces, read_traces
from dagen.export.chakra_replay import replay
from dagen.plan.deploy import is_deployment, load_deployment
from dagen.study import analyse_deployment

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
HEAD = (
    "| sample | nodes | ranks | write (s) | nodes/s | MB | problems | finished | "
    "estimate (µs) | replay (µs) | difference (µs) | `bound_us` |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
)


def row(plan: Path, tmp: Path) -> str | None:
    """The table row of one sample (None when it has no graph); a deployment of several
    pools is analysed as one (its graph holds one unit of each pool)."""
    if is_deployment(plan.read_text(encoding="utf-8")):
        a = analyse_deployment(load_deployment(plan))
    else:
        a = api.analyse(api.load_plan(plan))
    if a.graph is None or a.estimate is None:
        return None
    g, out = a.graph, tmp / plan.stem
    ctx = ExportContext(graph=g, findings=a.findings, estimate=a.estimate)
    t0 = time.perf_counter()
    write_outputs(ctx, [(out, "chakra")])
    wall = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    traces = read_traces(out)
    problems, run = check_traces(traces), replay(traces)
    est = a.estimate.makespan_s * 1e6
    return (
        f"| {plan.stem} | {g.n_nodes:,} | {g.world} | {wall:.2f} | {g.n_nodes / wall / 1e3:.0f}k "
        f"| {size:.1f} | {len(problems)} | {'yes' if run.finished else 'no'} | {est:.1f} "
        f"| {run.makespan_us} | {run.makespan_us - est:+.1f} | {run.bound_us} |"
    )


def main() -> None:
    print(HEAD)
    with tempfile.TemporaryDirectory() as tmp:
        for plan in sorted(SAMPLES.glob("*.yaml")):
            line = row(plan, Path(tmp))
            if line is not None:
                print(line, flush=True)


if __name__ == "__main__":
    main()
