"""The ``dagen`` command: a thin click layer over :mod:`dagen.api`.

Exit status: 0 clean, 1 error-level findings, 2 bad input or usage. A
:class:`~dagen.errors.DagenError` becomes its message on stderr, never a traceback
(unless ``--debug``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from dagen import __version__, api, study
from dagen.errors import DagenError, PlanError, PlanInfeasible
from dagen.findings import Finding, Severity
from dagen.graph.ir import INT16_MAX
from dagen.mesh import MAX_WORLD, mesh_of
from dagen.plan.deploy import is_deployment, load_deployment
from dagen.plan.importers import FRAMEWORKS
from dagen.plan.model import CostModelName, Plan

EXIT_FINDINGS = 1
EXIT_USAGE = 2
WRAP_DEFAULT = 100
"""Columns findings wrap to when the output is not a terminal and ``COLUMNS`` is unset."""
WRAP_MIN = 40

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
_EPILOG_REPORT = """\b
Examples:
  dagen report samples/seed-moe-10b-fixed.yaml > report.md
"""


class _Bars:
    """A click progress bar per phase (``meter(phase, done, total)``), drawn on stderr."""

    def __init__(self) -> None:
        self.phase = ""
        self.bar: Any = None
        self.shown = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = click.progressbar(length=total, label=f"dagen: {phase}", file=sys.stderr)
        self.bar.update(done - self.shown)
        self.shown = done
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()
        self.phase, self.bar, self.shown = "", None, 0


class _State:
    def __init__(self, quiet: bool, verbose: int, debug: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.debug = debug
        self.live = not quiet and sys.stderr.isatty()
        self.bars = _Bars() if self.live else None
        if verbose:
            # -v: the library's timings and counts (INFO); -vv: its debug detail.
            level = logging.INFO if verbose == 1 else logging.DEBUG
            logging.basicConfig(
                level=level, format="dagen: %(name)s: %(message)s", stream=sys.stderr
            )

    def progress(self, message: str) -> None:
        if self.live:
            click.echo(f"dagen: {message} …", err=True)


@contextmanager
def _user_errors(state: _State) -> Iterator[None]:
    """Turn any DagenError into its message and exit status 2."""
    try:
        yield
    except DagenError as exc:
        if state.debug:
            raise
        # A plan error is findings, each rendered with its severity and code already.
        click.echo(str(exc) if isinstance(exc, PlanError) else f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        if state.bars is not None:
            state.bars.close()


def _int_set(
    what: str, limit: int
) -> Callable[[click.Context, click.Parameter, str | None], frozenset[int] | None]:
    """A click callback: ``0-3,32`` → {0, 1, 2, 3, 32}, every value in 0 … ``limit``."""

    def parse(
        _ctx: click.Context, _param: click.Parameter, text: str | None
    ) -> frozenset[int] | None:
        if text is None:
            return None
        out: set[int] = set()
        try:
            for part in text.split(","):
                lo, _, hi = part.strip().partition("-")
                start, stop = int(lo), int(hi or lo)
                if not 0 <= start <= stop <= limit:
                    raise ValueError(part)
                out.update(range(start, stop + 1))
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not a list of {what} like 0-3,32 (ranges ascending, each value "
                f"from 0 to {limit:,}). Fix: write e.g. 0-3,32"
            ) from None
        return frozenset(out)

    return parse


def _width() -> int:
    """Columns to wrap findings to: the terminal's (or ``COLUMNS``), else
    :data:`WRAP_DEFAULT`; never under :data:`WRAP_MIN`."""
    return max(WRAP_MIN, shutil.get_terminal_size((WRAP_DEFAULT, 24)).columns)


def _print_findings(findings: tuple[Finding, ...], source: str, fmt: str, quiet: bool) -> None:
    if fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2))
        return
    width = _width()
    for f in findings:
        if quiet and f.severity is not Severity.ERROR:
            continue
        click.echo(f.render(source, width))
    if not quiet:
        errors = sum(f.severity is Severity.ERROR for f in findings)
        warnings = sum(f.severity is Severity.WARNING for f in findings)
        click.echo(f"{errors} error(s), {warnings} warning(s)", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dagen")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress.")
@click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of clean messages.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int, debug: bool) -> None:
    """dagen: expand a parallel deployment plan into its per-GPU DAG, prove it, export it.

    \b
    Examples:
      dagen check samples/seed-moe-10b.yaml
      dagen build samples/seed-moe-10b-fixed.yaml -o dag.svg -o dag.json -o report.md
      dagen ranks samples/seed-moe-10b-fixed.yaml
    """
    ctx.obj = _State(quiet, verbose, debug)


_plan_arg = click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
_format_opt = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Findings format."
)


def _costed(plan: Plan, cost: str | None) -> Plan:
    """``--cost`` overrides the plan's ``cost.model``."""
    if cost is None:
        return plan
    return dataclasses.replace(plan, cost=dataclasses.replace(plan.cost, model=CostModelName(cost)))


def _analyse(state: _State, path: Path, cost: str | None = None) -> api.Analysis:
    plan = _costed(_plan_only(path), cost)
    return api.analyse(plan, progress=state.progress, meter=state.bars)


def _plan_only(path: Path) -> Plan:
    """``path``'s plan; a deployment file is refused (exit 2) for commands of one plan."""
    if _deployment(path):
        raise PlanInfeasible(
            f"{path}: pools: a deployment of several pools; this command takes one plan. "
            "Fix: run dagen check or dagen build on the deployment, or this command on a "
            "plan of one pool"
        )
    return api.load_plan(path)


def _deployment(path: Path) -> bool:
    """Whether ``path`` is a deployment file (a ``pools`` section; docs/disaggregation.md)."""
    try:
        return is_deployment(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False  # the plan loader says what is wrong with the file


_cost_opt = click.option(
    "--cost",
    type=click.Choice([m.value for m in CostModelName]),
    default=None,
    help="Cost model, overriding the plan's cost.model (auto: measured where covered).",
)


@main.command(epilog=_EPILOG_CHECK)
@_plan_arg
@_format_opt
@_cost_opt
@click.pass_obj
def check(state: _State, plan: Path, fmt: str, cost: str | None) -> None:
    """Check a plan: its rules, its graph (deadlock, completeness, comms) and its claims."""
    with _user_errors(state):
        analysis: api.Analysis | study.DeploymentAnalysis = (
            study.analyse_deployment(load_deployment(plan), progress=state.progress)
            if _deployment(plan) else _analyse(state, plan, cost)
        )  # fmt: skip
    _print_findings(analysis.findings, str(plan), fmt, state.quiet)
    if fmt == "text" and not state.quiet:
        for line in analysis.summary():
            click.echo(line)
    sys.exit(0 if analysis.ok else EXIT_FINDINGS)


@main.command(epilog=_EPILOG_BUILD)
@_plan_arg
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
    callback=_int_set("ranks", MAX_WORLD - 1),
    help="Ranks to draw in the ranks view (and trace in a timeline), e.g. 0-3,32.",
)
@click.option("--layers", callback=_int_set("layers", INT16_MAX), help="Layers to draw, e.g. 0-1.")
@click.option(
    "--microbatches", callback=_int_set("micro-batches", INT16_MAX), help="Micro-batches, e.g. 0."
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
@_format_opt
@_cost_opt
@click.pass_obj
def build(
    state: _State,
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

    with _user_errors(state):
        targets = [(p, format_for(p, to)) for p in outputs]
        deployment = _deployment(plan)
        analysis: api.Analysis | study.DeploymentAnalysis = (
            study.analyse_deployment(load_deployment(plan), progress=state.progress)
            if deployment else _analyse(state, plan, cost)
        )  # fmt: skip
        _print_findings(analysis.findings, str(plan), fmt, state.quiet)
        if analysis.graph is None or (strict and not analysis.ok):
            click.echo("error: not writing outputs: the plan has error-level findings", err=True)
            sys.exit(EXIT_FINDINGS)
        state.progress(f"writing {len(targets)} output(s)")
        if isinstance(analysis, study.DeploymentAnalysis):
            study.write_deployment(analysis, targets, force=force, **view)
        else:
            api.write(analysis, targets, meter=state.bars, force=force, **view)
    if not state.quiet:
        for p, f in targets:
            click.echo(f"wrote {p} ({f})", err=True)


@main.command(epilog=_EPILOG_RANKS)
@_plan_arg
@click.option("--json", "as_json", is_flag=True, help="Emit the table as JSON.")
@click.pass_obj
def ranks(state: _State, plan: Path, as_json: bool) -> None:
    """Print every rank's host, coordinates and groups under both decompositions."""
    from dagen.mesh import rank_table

    with _user_errors(state):
        p = _plan_only(plan)
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
@_cost_opt
@click.pass_obj
def compare(
    state: _State, plans: tuple[Path, ...], varies: tuple[str, ...], fmt: str, cost: str | None
) -> None:
    """Compare plans side by side: size, memory, TTFT, TPOT, throughput, utilisation,
    communication, bubble and verdicts, with each plan's changed fields as a diff."""
    from dagen.study import compare as run
    from dagen.study import vary_plans
    from dagen.study.render import as_json, as_markdown, as_text

    with _user_errors(state):
        if varies and len(plans) != 1:
            raise click.UsageError("--vary takes exactly one plan")
        if not varies and len(plans) < 2:
            raise click.UsageError("give two or more plans, or one plan with --vary")
        given = vary_plans(plans[0], varies) if varies else [(str(p), _plan_only(p)) for p in plans]
        result = run([(label, _costed(p, cost)) for label, p in given], progress=state.progress)
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
    state: _State, framework: str, flags: tuple[str, ...], model_config: Path, output: Path
) -> None:
    """Write a plan from a vLLM, SGLang or Megatron command line's parallel flags."""
    from dagen.plan.importers import write_plan

    with _user_errors(state):
        imported = api.import_flags(framework, flags, model_config=model_config, output=output)
        write_plan(output, imported.text)
    _print_findings(imported.findings, str(output), "text", state.quiet)
    if not state.quiet:
        click.echo(f"wrote {output} ({framework} flags)", err=True)
    sys.exit(EXIT_FINDINGS if any(f.severity is Severity.ERROR for f in imported.findings) else 0)


@main.command(epilog=_EPILOG_REPORT)
@_plan_arg
@click.pass_obj
def report(state: _State, plan: Path) -> None:
    """Print the Markdown review report (plan, mesh, findings, estimates, verdicts)."""
    from dagen.export.markdown import render_markdown

    with _user_errors(state):
        analysis = _analyse(state, plan)
        click.echo(render_markdown(analysis), nl=False)
    sys.exit(0 if analysis.ok else EXIT_FINDINGS)


@main.command(epilog=_EPILOG_EXPLAIN)
@click.argument("code", required=False)
@click.pass_obj
def explain(state: _State, code: str | None) -> None:
    """Explain a finding code (severity, meaning, docs), or list every code."""
    if code is None:
        for name, severity, summary in api.codes():
            click.echo(f"{name:<24} {severity:<8} {summary}")
        return
    with _user_errors(state):
        text = api.explain(code)
    width = _width()
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        click.echo(textwrap.fill(line, width, subsequent_indent=indent + "  ") if line else "")


_EPILOG_SEARCH = """\b
Examples:
  dagen search samples/seed-moe-10b-fixed.yaml -o frontier.md -o frontier.svg
  dagen search plan.yaml --gpus 64 --objective ttft --slo ttft=6 --top 5
  dagen search plan.yaml --only pp=1,2 --only mb=1,4 --full
"""


@main.command(epilog=_EPILOG_SEARCH)
@_plan_arg
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
    "--only", multiple=True, help="Keep only these values of an axis, e.g. pp=1,2 (repeatable)."
)
@click.option(
    "--full",
    is_flag=True,
    help="Every micro-batch count, etp, cp and SP choice, not the default space.",
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
    state: _State, /, plan: Path, outputs: tuple[Path, ...], slo: str | None,
    only: tuple[str, ...], budget: float | None, **opts: Any,
) -> None:  # fmt: skip
    """Search every layout on N GPUs: prune, estimate, print the Pareto frontier and a verdict."""
    from dagen.study import report
    from dagen.study import search as study
    from dagen.study.write import frontier_format, write_frontier

    with _user_errors(state):
        for p in outputs:
            frontier_format(p)
        kw = {"budget_s": budget} if budget is not None else {}
        result = study.search(
            _plan_only(plan), gpus=opts["gpus"], objective=study.Objective(opts["objective"]),
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
            click.echo(f"wrote {p}", err=True)
