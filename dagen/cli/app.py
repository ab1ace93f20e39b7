"""The ``dagen`` command group; the commands register themselves on :data:`main`."""

from __future__ import annotations

import click

from dagen import __version__
from dagen.cli.common import State
from dagen.cli.guard import guarded


class DagenGroup(click.Group):
    """The group, running every command under :func:`dagen.cli.guard.guarded`."""

    def invoke(self, ctx: click.Context) -> object:
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        with guarded(args):
            return super().invoke(ctx)


@click.group(cls=DagenGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = State(quiet, verbose, debug)
