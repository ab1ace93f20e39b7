"""``dagen check``, ``build`` and ``report``: the commands that analyse one plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dagen import api, study
from dagen.cli.app import main
from dagen.cli.common import (
    EXIT_FINDINGS,
    State,
    analyse_any,
    analyse_plan,
    cost_opt,
    format_opt,
    int_set,
    plan_arg,
    print_findings,
    user_errors,
)
from dagen.findings import printable
from dagen.graph.ir import INT16_MAX
from dagen.mesh import MAX_WORLD

_EPILOG_CHECK = """\b
Examples:
  dagen check samples/seed-moe-10b.yaml
  dagen check plan.yaml --format json > findings.json
"""
_EPILOG_BUILD = """\b
Examples:
  dagen build samples/seed-moe-10b-fixed.yaml -o dag.svg -o dag.json -o report.md
  dagen build plan.yaml -o ranks.svg --view ranks --ranks 0-1 --layers 0 --microbatches 0-1
  dagen build plan.yaml -o dag.json.gz -o timeline.json --strict
  dagen build plan.yaml -o ranks/ --to per-rank
  dagen build plan.yaml -o dag.parquet -o dag.graphml
  dagen build plan.yaml -o tables/ --to parquet
  dagen build plan.yaml -o traces/ --to chakra
"""
_EPILOG_REPORT = """\b
Examples:
  dagen report samples/seed-moe-10b-fixed.yaml > report.md
"""


@main.command(epilog=_EPILOG_CHECK)
@plan_arg
@format_opt
@cost_opt
@click.pass_obj
def check(state: State, plan: Path, fmt: str, cost: str | None) -> None:
    """Check a plan: its rules, its graph (deadlock, completeness, comms) and its claims."""
    with user_errors(state, fmt):
        analysis = analyse_any(state, plan, cost)
    print_findings(analysis.findings, str(plan), fmt, state.quiet)
    if fmt == "text" and not state.quiet:
        for line in analysis.summary():
            click.echo(line)
    sys.exit(0 if analysis.ok else EXIT_FINDINGS)


@main.command(epilog=_EPILOG_BUILD)
@plan_arg
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Output file, format from its suffix; or a directory with --to (repeatable).",
)
@click.option("--to", "to", default=None, help="Format for every output, overriding suffixes.")
@click.option(
    "--view",
    type=click.Choice(["overview", "ranks"]),
    default="overview",
    help="Picture view (DOT/SVG).",
)
@click.option(
    "--ranks",
    callback=int_set("ranks", MAX_WORLD - 1),
    help="Ranks to draw in the ranks view (and trace in a timeline), e.g. 0-3,32.",
)
@click.option("--layers", callback=int_set("layers", INT16_MAX), help="Layers to draw, e.g. 0-1.")
@click.option(
    "--microbatches", callback=int_set("micro-batches", INT16_MAX), help="Micro-batches, e.g. 0."
)
@click.option(
    "--max-nodes",
    "max_detail_nodes",
    default=5000,
    show_default=True,
    help="Refuse a detailed view above this many nodes.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Any error-level finding fails the build (exit 1) and writes nothing.",
)
@click.option("--force", is_flag=True, help="Replace an output directory dagen did not write.")
@format_opt
@cost_opt
@click.pass_obj
def build(
    state: State,
    /,
    plan: Path,
    outputs: tuple[Path, ...],
    to: str | None,
    strict: bool,
    force: bool,
    fmt: str,
    cost: str | None,
    **view: Any,
) -> None:
    """Build the per-GPU graph, check it, and write DOT, SVG, JSON, Parquet, GraphML,
    Markdown, timeline."""
    from dagen.export import format_for

    with user_errors(state, fmt):
        targets = [(p, format_for(p, to)) for p in outputs]
        analysis = analyse_any(state, plan, cost, view)
        if analysis.graph is None or (strict and not analysis.ok):
            print_findings(analysis.findings, str(plan), fmt, state.quiet)
            click.echo("error: not writing outputs: the plan has error-level findings", err=True)
            sys.exit(EXIT_FINDINGS)
        state.progress(f"writing {len(targets)} output(s)")
        if isinstance(analysis, study.DeploymentAnalysis):
            study.write_deployment(analysis, targets, force=force, **view)
        else:
            api.write(analysis, targets, meter=state.bars, force=force, **view)
    print_findings(analysis.findings, str(plan), fmt, state.quiet)
    if not state.quiet:
        for p, f in targets:
            click.echo(f"wrote {printable(str(p))} ({f})", err=True)


@main.command(epilog=_EPILOG_REPORT)
@plan_arg
@click.pass_obj
def report(state: State, plan: Path) -> None:
    """Print the Markdown review report (plan, mesh, findings, estimates, verdicts)."""
    from dagen.export.markdown import render_markdown

    with user_errors(state):
        analysis = analyse_plan(state, plan)
        click.echo(render_markdown(analysis), nl=False)
    sys.exit(0 if analysis.ok else EXIT_FINDINGS)
