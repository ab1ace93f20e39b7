"""What stands between a command and the process: signals, stdout, and errors as JSON.

* SIGINT, SIGTERM and SIGHUP unwind the command like an exception, so every output
  being written removes its ``.part`` file (:mod:`dagen.export.outputs` cleans up on
  any exception); the exit status is 128 + the signal (130, 143, 129), never the
  findings code.
* A write to stdout that fails (a closed stdout, ``/dev/full``, a pipe whose reader
  left) is exit 2 with a message on stderr, never a traceback at interpreter exit.
* Any error that exits 2 (``P-…``) is, under ``--format json``, one JSON document on
  stdout: the error, its code and where.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from dagen.codes import Code
from dagen.errors import DagenError, PlanError
from dagen.findings import printable

__all__ = [
    "EXIT_USAGE",
    "Interrupted",
    "dagen_error_document",
    "error_document",
    "guarded",
    "wants_json",
]

EXIT_USAGE = 2
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, not caught as an Exception."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


class _ClosedStdout(io.TextIOBase):
    """Stands in for a closed stdout: every write fails as writing to fd 1 would."""

    def write(self, _text: str) -> int:
        raise OSError(errno.EBADF, "stdout is closed")

    def writable(self) -> bool:
        return True


def wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for ``--format json``."""
    pairs = zip(args, [*args[1:], ""], strict=True)
    return any(a == "--format=json" or (a == "--format" and b == "json") for a, b in pairs)


def error_document(message: str, code: Code | str, location: dict[str, Any] | None = None,
                   problems: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    """The JSON document of an exit-2 error."""
    doc: dict[str, Any] = {"error": printable(message, lines=True), "code": str(code),
                           "location": location or {}}  # fmt: skip
    if problems is not None:
        doc["problems"] = problems
    return json.dumps(doc, indent=2, ensure_ascii=True)


def dagen_error_document(exc: DagenError) -> str:
    """:func:`error_document` of a DagenError: a plan's problems each with its place."""
    if isinstance(exc, PlanError) and exc.problems:
        first = exc.problems[0]
        where = {"file": printable(exc.source), "path": first.path, "line": first.line,
                 "column": first.column}  # fmt: skip
        return error_document(str(exc), exc.code, where, [p.to_dict() for p in exc.problems])
    where = {"path": exc.path} if hasattr(exc, "path") else {}
    return error_document(str(exc), exc.code, where)


def _stdout_error(exc: OSError) -> None:
    reason = exc.strerror or str(exc)
    click.echo(
        f"error {Code.P_OUTPUT}: cannot write to stdout: {reason}. Fix: send the output to "
        "a file with room (or -o FILE), or keep the reading end of the pipe open",
        err=True,
    )


@contextmanager
def _handlers() -> Iterator[None]:
    try:
        old = {s: signal.signal(s, _raise) for s in _SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _flush() -> None:
    out = sys.stdout
    if out is not None:
        out.flush()


@contextmanager
def guarded(args: Sequence[str]) -> Iterator[None]:
    """Run a command under the guard (see the module docstring)."""
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    try:
        with _handlers():
            yield
            _flush()
    except KeyboardInterrupt:
        click.echo("dagen: interrupted (SIGINT); outputs not written", err=True)
        raise click.exceptions.Exit(128 + signal.SIGINT) from None
    except Interrupted as sig:
        name = signal.Signals(sig.signum).name
        click.echo(f"dagen: interrupted ({name}); outputs not written", err=True)
        raise click.exceptions.Exit(128 + sig.signum) from None
    except click.UsageError as exc:
        message = printable(exc.format_message(), lines=True)
        if wants_json(args):
            param = getattr(exc, "param", None)
            where = {"flag": "/".join(param.opts)} if param is not None else {}
            click.echo(error_document(message, Code.P_USAGE, where))
        else:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
            click.echo(f"error {Code.P_USAGE}: {message}", err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except OSError as exc:
        if not _is_stdout(exc):
            raise
        _stdout_error(exc)
        _silence_stdout()
        raise click.exceptions.Exit(EXIT_USAGE) from None


def _is_stdout(exc: OSError) -> bool:
    """A failed write to stdout: click's echo and print raise it bare, with no file name."""
    return exc.filename is None and exc.errno in {errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO}


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        if sys.stdout is not None and sys.stdout.fileno() == 1:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
    except (OSError, ValueError):
        pass
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
