"""``dagen ranks``, ``schema``, ``compare``, ``import``, ``explain`` and ``search``."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dagen import api
from dagen.cli.app import main
from dagen.cli.common import (
    EXIT_FINDINGS,
    State,
    cost_opt,
    costed,
    plan_arg,
    plan_only,
    print_findings,
    term_width,
    user_errors,
)
from dagen.findings import Severity, printable
from dagen.mesh import MAX_WORLD, mesh_of
from dagen.plan.importers import FRAMEWORKS

_EPILOG_RANKS = """\b
Examples:
  dagen ranks samples/seed-moe-10b-fixed.yaml
  dagen ranks plan.yaml --json | jq '.[0]'
"""
_EPILOG_SCHEMA = """\b
Examples:
  dagen schema plan > plan.schema.json
  dagen schema dag > dag.schema.json
"""
_EPILOG_COMPARE = """\b
Examples:
  dagen compare samples/seed-moe-10b-fixed.yaml samples/qwen3-moe-235b.yaml
  dagen compare samples/seed-moe-10b-fixed.yaml --vary pp=2,4 --vary micro_batches=4,8 --format markdown
"""


_EPILOG_IMPORT = """\b
Examples:
  dagen import vllm -tp 4 -dp 2 --enable-expert-parallel --model-config config.json -o plan.yaml
  dagen import sglang --tp-size 8 --dp-size 8 --enable-dp-attention --moe-a2a-backend deepep \\
      --model-config config.json -o plan.yaml
  dagen import megatron --tensor-model-parallel-size 2 --pipeline-model-parallel-size 4 \\
      --expert-model-parallel-size 8 --world-size 64 --model-config config.json -o plan.yaml

\b
Flags read (framework flags as the framework reads them; --hardware, --phase, --batch,
--prompt-len, --gen-len, --micro-batches are dagen's, and say what the plan serves):
""" + "\n".join(
    f"  {fw.name} ({fw.source}): " + ", ".join("/".join(f.names) for f in fw.flags)
    for fw in FRAMEWORKS.values()
)


_EPILOG_EXPLAIN = """\b
Examples:
  dagen explain PLAN-WORLD
  dagen explain            # every code, its severity and summary
"""


@main.command(epilog=_EPILOG_RANKS)
@plan_arg
@click.option("--json", "as_json", is_flag=True, help="Emit the table as JSON.")
@click.pass_obj
def ranks(state: State, plan: Path, as_json: bool) -> None:
    """Print every rank's host, coordinates and groups under both decompositions."""
    from dagen.mesh import rank_table

    with user_errors(state, "json" if as_json else "text"):
        p = plan_only(plan)
        rows = rank_table(mesh_of(p))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    click.echo("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        click.echo("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths, strict=True)))


@main.command(epilog=_EPILOG_SCHEMA)
@click.argument("which", type=click.Choice(["plan", "deployment", "dag"]))
def schema(which: str) -> None:
    """Print the JSON Schema of the plan file, the deployment file or the DAG JSON output."""
    make: Callable[[], dict[str, Any]]
    if which == "plan":
        from dagen.plan.schema import plan_schema as make
    elif which == "deployment":
        from dagen.plan.deploy import deployment_schema as make
    else:
        from dagen.export.json_ import dag_schema as make
    click.echo(json.dumps(make(), indent=2, sort_keys=True))


@main.command(epilog=_EPILOG_COMPARE)
@click.argument("plans", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--vary",
    "varies",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Write each value over the one plan given (repeatable: every combination).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@cost_opt
@click.pass_obj
def compare(
    state: State, plans: tuple[Path, ...], varies: tuple[str, ...], fmt: str, cost: str | None
) -> None:
    """Compare plans side by side: size, memory, TTFT, TPOT, throughput, utilisation,
    communication, bubble and verdicts, with each plan's changed fields as a diff."""
    from dagen.study import compare as run
    from dagen.study import vary_plans
    from dagen.study.render import as_json, as_markdown, as_text

    with user_errors(state, fmt):
        if varies and len(plans) != 1:
            raise click.UsageError("--vary takes exactly one plan")
        if not varies and len(plans) < 2:
            raise click.UsageError("give two or more plans, or one plan with --vary")
        given = vary_plans(plans[0], varies) if varies else [(str(p), plan_only(p)) for p in plans]
        result = run([(label, costed(p, cost)) for label, p in given], progress=state.progress)
    render = {"json": as_json, "markdown": as_markdown}.get(fmt, as_text)
    click.echo(render(result), nl=False)


@main.command(
    "import",
    epilog=_EPILOG_IMPORT,
    context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]},
)
@click.argument("framework", type=click.Choice(list(FRAMEWORKS)))
@click.argument("flags", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--model-config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The model's Hugging Face config.json (read, never downloaded).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plan YAML to write.",
)
@click.pass_obj
def import_(
    state: State, framework: str, flags: tuple[str, ...], model_config: Path, output: Path
) -> None:
    """Write a plan from a vLLM, SGLang or Megatron command line's parallel flags."""
    from dagen.plan.importers import write_plan

    with user_errors(state):
        imported = api.import_flags(framework, flags, model_config=model_config, output=output)
        write_plan(output, imported.text)
    print_findings(imported.findings, str(output), "text", state.quiet)
    if not state.quiet:
        click.echo(f"wrote {printable(str(output))} ({framework} flags)", err=True)
    sys.exit(EXIT_FINDINGS if any(f.severity is Severity.ERROR for f in imported.findings) else 0)


@main.command(epilog=_EPILOG_EXPLAIN)
@click.argument("code", required=False)
@click.pass_obj
def explain(state: State, code: str | None) -> None:
    """Explain a finding code (severity, meaning, docs), or list every code."""
    if code is None:
        for name, severity, summary in api.codes():
            click.echo(f"{name:<24} {severity:<8} {summary}")
        return
    with user_errors(state):
        text = api.explain(code)
    width = term_width()
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        click.echo(textwrap.fill(line, width, subsequent_indent=indent + "  ") if line else "")


_EPILOG_SEARCH = """\b
Examples:
  dagen search samples/seed-moe-10b-fixed.yaml -o frontier.md -o frontier.svg
  dagen search plan.yaml --gpus 64 --objective ttft --slo ttft=6 --top 5
  dagen search plan.yaml --only pp=1,2 --only mb=1,4 --full
  dagen search plan.yaml --only order=tp-cp-ep-pp-dp --only split=even,balanced
"""


@main.command(epilog=_EPILOG_SEARCH)
@plan_arg
@click.option("--gpus", type=click.IntRange(1, MAX_WORLD), default=None,
              help="GPUs to lay the model over (default: the plan's world).")  # fmt: skip
@click.option(
    "--objective",
    type=click.Choice(["throughput", "ttft", "tpot"]),
    default="throughput",
    show_default=True,
    help="What to rank by: tokens/s per GPU, or a latency.",
)
@click.option("--slo", default=None, help="Latency bounds, e.g. ttft=6,tpot=50 (s, ms).")
@click.option("--top", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Build and graph-check this many of the best in full.")  # fmt: skip
@click.option(
    "--only",
    multiple=True,
    help="Keep only these values of an axis, e.g. pp=1,2, order=tp-cp-ep-pp-dp, "
    "split=even,balanced or split=15/16/16/14 (repeatable).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Every micro-batch count, etp, cp, SP choice and layer split, not the default space.",
)
@click.option("--budget", type=click.FloatRange(0, min_open=True), default=None,
              help="Refuse a space predicted to take longer than this many seconds (default 900).")  # fmt: skip
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the frontier: .md (Markdown), .svg or .png (plot) (repeatable).",
)
@click.pass_obj
def search(
    state: State, /, plan: Path, outputs: tuple[Path, ...], slo: str | None,
    only: tuple[str, ...], budget: float | None, **opts: Any,
) -> None:  # fmt: skip
    """Search every layout on N GPUs: prune, estimate, print the Pareto frontier and a verdict."""
    from dagen.study import report
    from dagen.study import search as study
    from dagen.study.write import frontier_format, write_frontier

    with user_errors(state):
        for p in outputs:
            frontier_format(p)
        kw = {"budget_s": budget} if budget is not None else {}
        result = study.search(
            plan_only(plan), gpus=opts["gpus"], objective=study.Objective(opts["objective"]),
            slo=study.parse_slo(slo), top=opts["top"], only=study.parse_only(only),
            full=opts["full"], meter=state.bars, **kw,
        )  # fmt: skip
        if not result.valid():
            click.echo("\n".join(report.failure_lines(result)), err=True)
            sys.exit(EXIT_FINDINGS)
        write_frontier(result, outputs)
    click.echo("\n".join(report.summary_lines(result)))
    if not state.quiet:
        for p in outputs:
            click.echo(f"wrote {printable(str(p))}", err=True)
