"""What every ``dagen`` command shares: exit codes, the run state, the error guard,
the findings printer and the common options."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from dagen import api, study
from dagen.cli.guard import dagen_error_document
from dagen.errors import DagenError, PlanError, PlanInfeasible
from dagen.findings import Finding, Severity, printable
from dagen.plan.deploy import Deployment, is_deployment, load_deployment
from dagen.plan.files import Refused, read_limited
from dagen.plan.model import CostModelName, Plan
from dagen.plan.yamlsrc import MAX_BYTES

EXIT_FINDINGS = 1
EXIT_USAGE = 2
WRAP_DEFAULT = 100
"""Columns findings wrap to when the output is not a terminal and ``COLUMNS`` is unset."""
WRAP_MIN = 40


class Bars:
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


class State:
    def __init__(self, quiet: bool, verbose: int, debug: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.debug = debug
        self.live = not quiet and sys.stderr.isatty()
        self.bars = Bars() if self.live else None
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
def user_errors(state: State, fmt: str = "text") -> Iterator[None]:
    """Turn any DagenError into its message (or, under ``--format json``, its JSON
    document on stdout) and exit status 2."""
    try:
        yield
    except DagenError as exc:
        if state.debug:
            raise
        if fmt == "json":
            click.echo(dagen_error_document(exc))
        elif isinstance(exc, PlanError):  # findings, each rendered with severity and code
            click.echo(str(exc), err=True)
        else:
            click.echo(f"error {exc.code}: {printable(str(exc), lines=True)}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        if state.bars is not None:
            state.bars.close()


_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def int_set(
    what: str, limit: int
) -> Callable[[click.Context, click.Parameter, str | None], frozenset[int] | None]:
    """A click callback: ``0-3,32`` → {0, 1, 2, 3, 32}, every value in 0 … ``limit``.
    Open ranges (``0-``, ``-3``), descending ones, empty parts and non-ASCII digits are
    refused; whether the values exist in the plan is :func:`check_filters`' business."""

    def parse(
        _ctx: click.Context, _param: click.Parameter, text: str | None
    ) -> frozenset[int] | None:
        if text is None:
            return None
        out: set[int] = set()
        for part in text.split(","):
            m = _RANGE.fullmatch(part.strip())
            start, stop = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (1, 0)
            if not 0 <= start <= stop <= limit:
                raise click.BadParameter(
                    f"{printable(text)!r} is not a list of {what} like 0-3,32 ({printable(part)!r}: "
                    f"each part a number or a closed ascending range lo-hi, from 0 to {limit:,}). "
                    "Fix: write e.g. 0-3,32"
                )
            out.update(range(start, stop + 1))
        return frozenset(out)

    return parse


def term_width() -> int:
    """Columns to wrap findings to: the terminal's (or ``COLUMNS``), else
    :data:`WRAP_DEFAULT`; never under :data:`WRAP_MIN`."""
    return max(WRAP_MIN, shutil.get_terminal_size((WRAP_DEFAULT, 24)).columns)


def print_findings(findings: tuple[Finding, ...], source: str, fmt: str, quiet: bool) -> None:
    if fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2))
        return
    width = term_width()
    for f in findings:
        if quiet and f.severity is not Severity.ERROR:
            continue
        click.echo(f.render(source, width))
    if not quiet:
        errors = sum(f.severity is Severity.ERROR for f in findings)
        warnings = sum(f.severity is Severity.WARNING for f in findings)
        click.echo(f"{errors} error(s), {warnings} warning(s)", err=True)


plan_arg = click.argument("plan", type=click.Path(path_type=Path))  # the loader refuses non-files
format_opt = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Findings format."
)


def costed(plan: Plan, cost: str | None) -> Plan:
    """``--cost`` overrides the plan's ``cost.model``."""
    if cost is None:
        return plan
    return dataclasses.replace(plan, cost=dataclasses.replace(plan.cost, model=CostModelName(cost)))


def is_deployment_file(path: Path) -> bool:
    """Whether ``path`` is a deployment file (a ``pools`` section; docs/disaggregation.md).
    A file that cannot be read safely is not: the plan loader then says what is wrong."""
    try:
        return is_deployment(read_limited(path, MAX_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, Refused):
        return False


def plan_only(path: Path) -> Plan:
    """``path``'s plan; a deployment file is refused (exit 2) for commands of one plan."""
    if is_deployment_file(path):
        raise PlanInfeasible(
            f"{path}: pools: a deployment of several pools; this command takes one plan. "
            "Fix: run dagen check or dagen build on the deployment, or this command on a "
            "plan of one pool"
        )
    return api.load_plan(path)


def analyse_any(
    state: State, path: Path, cost: str | None = None, view: dict[str, Any] | None = None
) -> api.Analysis | study.DeploymentAnalysis:
    """A deployment file's analysis (:func:`dagen.study.analyse_deployment`), else the
    plan's (:func:`analyse_plan`)."""
    if is_deployment_file(path):
        dep = load_deployment(path)
        if view is not None:
            check_deployment_filters(dep, view)
        if cost is not None:  # every pool and the co-located alternative priced alike
            dep = dataclasses.replace(
                dep,
                pools=tuple(dataclasses.replace(p, plan=costed(p.plan, cost)) for p in dep.pools),
                alternatives=tuple(a and costed(a, cost) for a in dep.alternatives),
            )
        return study.analyse_deployment(dep, progress=state.progress)
    return analyse_plan(state, path, cost, view)


def analyse_plan(
    state: State, path: Path, cost: str | None = None, view: dict[str, Any] | None = None
) -> api.Analysis:
    """Load, check the view filters against the plan, then analyse (``view`` given: for
    an export, which the memory guard counts)."""
    plan = costed(plan_only(path), cost)
    if view is not None:
        check_filters(plan, view)
    return api.analyse(plan, progress=state.progress, meter=state.bars,
                       exporting=view is not None)  # fmt: skip


_FILTERS = {"ranks": ("--ranks", "ranks"), "layers": ("--layers", "layers"),
            "microbatches": ("--microbatches", "micro-batches")}  # fmt: skip


def check_filters(plan: Plan, view: dict[str, Any]) -> None:
    """``--ranks``, ``--layers``, ``--microbatches`` name only what the plan has, whatever
    the output format. Raises DagenError (P-USAGE) naming the flag."""
    _check_limits({"ranks": plan.parallel.world(), "layers": plan.model.layers,
                   "microbatches": plan.workload.micro_batches}, view)  # fmt: skip


def check_deployment_filters(dep: Deployment, view: dict[str, Any]) -> None:
    """The same for a deployment's graph: one unit of each pool, ranks numbered pool
    after pool (docs/disaggregation.md)."""
    plans = [p.plan for p in dep.pools]
    _check_limits({"ranks": sum(p.parallel.world() for p in plans),
                   "layers": plans[0].model.layers,
                   "microbatches": max(p.workload.micro_batches for p in plans)}, view)  # fmt: skip


def _check_limits(have: dict[str, int], view: dict[str, Any]) -> None:
    for key, (flag, noun) in _FILTERS.items():
        chosen, n = view.get(key), have[key]
        if chosen is None:
            continue
        past = sorted(v for v in chosen if v >= n)
        if past:
            what = "nothing" if len(past) == len(chosen) else f"{len(past)} value(s) past the end"
            raise DagenError(
                f"{flag}: selects {what} of the plan's {n:,} {noun} (0 … {n - 1:,}); "
                f"{past[0]:,} is not one. Fix: choose values in 0-{n - 1}"
            )


cost_opt = click.option(
    "--cost",
    type=click.Choice([m.value for m in CostModelName]),
    default=None,
    help="Cost model, overriding the plan's cost.model (auto: measured where covered).",
)
