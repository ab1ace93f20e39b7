"""Render the DOT picture to SVG or PNG with Graphviz.

The engine is pygraphviz (its wheels bundle the Graphviz libraries), else a ``dot``
program on ``PATH``; with neither, :class:`ExportError` says how to install one. All
Graphviz work, and the silencing of its C-level stderr chatter (fontconfig warnings),
is in this module.

Example:
    >>> svg = render('digraph { a -> b }', "svg")  # doctest: +SKIP
    >>> svg.startswith(b"<?xml")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dagen.errors import ExportError
from dagen.export import dot
from dagen.export.base import ExportContext

__all__ = ["emit_png", "emit_svg", "engine", "render"]

log = logging.getLogger(__name__)

RENDER_TIMEOUT_S = 600
"""A ``dot`` subprocess running longer than this is stopped."""

_INSTALL = (
    "Fix: pip install pygraphviz (its wheels bundle Graphviz), or install Graphviz so that "
    "`dot` is on PATH (apt install graphviz, brew install graphviz), or write a .dot file "
    "and render it elsewhere."
)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file; yield a reader of what was written.

    Graphviz's C libraries (and fontconfig under them) write warnings straight to fd 2,
    past Python's ``sys.stderr``.
    """
    with tempfile.TemporaryFile() as sink:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def read() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", "replace").strip()

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if text := read():
                log.debug("graphviz said: %s", text)


def engine() -> str:
    """``pygraphviz``, or the path of a ``dot`` program, or ``""`` when there is neither."""
    try:
        import pygraphviz  # noqa: F401
    except ImportError:
        return shutil.which("dot") or ""
    return "pygraphviz"


def _pygraphviz(source: str, fmt: str) -> bytes:
    import pygraphviz

    with _captured_stderr() as said:
        try:
            data = pygraphviz.AGraph(string=source).draw(format=fmt, prog="dot")
        except Exception as exc:  # pygraphviz raises bare ValueError/OSError/…
            raise ExportError(f"Graphviz could not render {fmt}: {exc} {said()}".strip()) from exc
    if not isinstance(data, bytes) or not data:
        raise ExportError(f"Graphviz rendered no {fmt} output. {said()}".strip())
    return data


def _binary(exe: str, source: str, fmt: str) -> bytes:
    try:
        done = subprocess.run(
            [exe, f"-T{fmt}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=RENDER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"running {exe} -T{fmt} failed: {exc}. {_INSTALL}") from exc
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode("utf-8", "replace").strip()
        raise ExportError(f"{exe} -T{fmt} exited with status {done.returncode}: {said}")
    return done.stdout


def render(source: str, fmt: str) -> bytes:
    """DOT ``source`` laid out by ``dot`` and rendered as ``fmt`` (``svg`` or ``png``).

    Raises:
        ExportError: no Graphviz engine, or Graphviz failed (its message included).
    """
    which = engine()
    if which == "pygraphviz":
        return _pygraphviz(source, fmt)
    if which:
        return _binary(which, source, fmt)
    raise ExportError(
        f"cannot render {fmt}: neither the pygraphviz package nor a `dot` program on PATH "
        f"was found. {_INSTALL}"
    )


def emit_svg(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the picture of ``ctx`` as SVG; node tooltips become SVG ``<title>`` text."""
    out.write(render(dot.source(ctx), "svg"))


def emit_png(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the picture of ``ctx`` as PNG."""
    out.write(render(dot.source(ctx), "png"))
