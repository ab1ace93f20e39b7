"""The output formats: a registry from name and suffix to exporter.

Every stream exporter is ``emit(ctx, out)`` (see :class:`ExportContext`); a directory
exporter is ``emit(ctx, out: OutDir)``. :func:`format_for` picks a format from a file
name or a ``--to`` name; :func:`emitter` imports a format's exporter on first use.

Example:
    >>> from pathlib import Path
    >>> format_for(Path("out/dag.json.gz")), format_for("traces", "per-rank")
    ('json.gz', 'per-rank')
    >>> format_for("dag.parquet"), format_for("tables/", "parquet")
    ('parquet', 'parquet-dir')
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from dagen.errors import ExportError
from dagen.export.base import ExportContext

__all__ = ["FORMATS", "Format", "emit", "emitter", "format_for"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Format:
    """One output format."""

    name: str
    """Name given to ``--to`` (``json``, ``svg``, …)."""
    suffixes: tuple[str, ...]
    """File-name endings that select it, lower case, with the leading dot."""
    module: str
    """Module holding the exporter, imported on first use."""
    function: str
    """The exporter's name in that module."""
    description: str
    """One line for help and error messages."""
    directory: bool = False
    """It writes a directory of files (one per rank, say), not one stream; its exporter
    is ``emit(ctx, out: OutDir)``."""
    as_directory: str | None = None
    """The format written instead when this one is named for a directory output (a path
    ending in a separator, an existing directory, or one without this format's suffix):
    ``-o tables/ --to parquet`` writes ``parquet-dir``."""


FORMATS: Mapping[str, Format] = MappingProxyType(
    {
        f.name: f
        for f in (
            Format(
                name="json",
                suffixes=(".json",),
                module="dagen.export.json_",
                function="emit",
                description="every node and edge as node-link JSON (docs/json-format.md)",
            ),
            Format(
                name="json.gz",
                suffixes=(".json.gz",),
                module="dagen.export.json_",
                function="emit_gz",
                description="the same JSON, gzip-compressed",
            ),
            Format(
                name="dot",
                suffixes=(".dot", ".gv"),
                module="dagen.export.dot",
                function="emit",
                description="Graphviz source of the picture (--view overview|ranks)",
            ),
            Format(
                name="svg",
                suffixes=(".svg",),
                module="dagen.export.svg",
                function="emit_svg",
                description="the picture rendered by Graphviz, with tooltips",
            ),
            Format(
                name="png",
                suffixes=(".png",),
                module="dagen.export.svg",
                function="emit_png",
                description="the picture as a bitmap",
            ),
            Format(
                name="md",
                suffixes=(".md", ".markdown"),
                module="dagen.export.markdown",
                function="emit",
                description="review report: plan, stages, findings, estimates, Mermaid overview",
            ),
            Format(
                name="per-rank",
                suffixes=(),
                module="dagen.export.perrank",
                function="emit",
                description="a directory: each rank's nodes and outgoing edges as JSON lines",
                directory=True,
            ),
            Format(
                name="parquet",
                suffixes=(".parquet",),
                module="dagen.export.parquet",
                function="emit",
                description="the node table with each node's dependencies, as Parquet (docs/parquet-format.md)",
                as_directory="parquet-dir",
            ),
            Format(
                name="parquet-dir",
                suffixes=(),
                module="dagen.export.parquet",
                function="emit_dir",
                description="a directory of Parquet tables: nodes, edges, collectives, groups",
                directory=True,
            ),
            Format(
                name="graphml",
                suffixes=(".graphml",),
                module="dagen.export.graphml",
                function="emit",
                description="every node and edge as GraphML with scalar attributes (networkx.read_graphml)",
            ),
            Format(
                name="chakra",
                suffixes=(),
                module="dagen.export.chakra",
                function="emit",
                description="a directory: Chakra execution traces for ASTRA-sim, <name>.<rank>.et "
                "and comm_group.json (docs/chakra.md)",
                directory=True,
            ),
            Format(
                name="timeline",
                suffixes=(".trace.json", ".timeline.json"),
                module="dagen.export.timeline",
                function="emit",
                description="simulated schedule as a Chrome/Perfetto trace (timeline.json, *.trace.json)",
            ),
        )
    }
)
"""Every format by name."""


def _known() -> str:
    return "; ".join(
        f"{f.name} ({', '.join(f.suffixes) if f.suffixes else 'a directory, with --to'})"
        for f in FORMATS.values()
    )


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format name for ``path``: ``fmt`` when given (a name or suffix), else its suffix.

    The longest matching suffix wins (``dag.json.gz`` is ``json.gz``; a file named
    ``timeline.json`` or ``*.trace.json`` is ``timeline``).

    Raises:
        ExportError: the format or suffix is unknown; the message lists the valid ones.

    Example:
        >>> format_for("run/timeline.json"), format_for("dag.gv"), format_for("x", "MD")
        ('timeline', 'dot', 'md')
    """
    if fmt is not None:
        key = fmt.strip().lower()
        for f in FORMATS.values():
            if key == f.name or "." + key.lstrip(".") in f.suffixes:
                return _directory_twin(f, path)
        raise ExportError(
            f"output format {fmt!r} is unknown; expected one of: {_known()}. "
            "Fix: pass one of these names to --to."
        )
    name = "." + Path(path).name.lower()
    matches = [(len(s), f.name) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    if not matches and (os.fspath(path).endswith(os.sep) or Path(path).is_dir()):
        dirs = ", ".join(f.name for f in FORMATS.values() if f.directory)
        raise ExportError(
            f"output {os.fspath(path)!r} is a directory; a directory output needs its format "
            f"named. Fix: pass --to with one of: {dirs}."
        )
    if not matches:
        raise ExportError(
            f"output {os.fspath(path)!r}: the file name has no known format suffix; expected "
            f"one of: {_known()}. Fix: rename the output or pass --to FORMAT."
        )
    return max(matches)[1]


def _directory_twin(f: Format, path: str | os.PathLike[str]) -> str:
    """``f``'s name, or its directory form's when ``path`` names a directory."""
    if f.as_directory is None:
        return f.name
    text = os.fspath(path)
    named_file = any(Path(text).name.lower().endswith(s) for s in f.suffixes)
    if text.endswith(os.sep) or Path(text).is_dir() or not named_file:
        return f.as_directory
    return f.name


def emitter(name: str) -> Any:
    """The exporter of format ``name`` (an :data:`Emitter`, or a :data:`DirEmitter` for a
    directory format), importing its module on first use.

    Raises:
        ExportError: unknown format, or its module is not available.
    """
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ExportError(f"output format {name!r} is unknown; expected one of: {_known()}.")
    try:
        module = importlib.import_module(fmt.module)
    except ModuleNotFoundError as exc:
        raise ExportError(
            f"the {name} exporter cannot be loaded: module {exc.name!r} is missing "
            f"(needed by {fmt.module}). Fix: reinstall dagen with its dependencies "
            "(pip install dagen), or choose another output format."
        ) from exc
    return getattr(module, fmt.function)


def emit(name: str, ctx: ExportContext, out: BinaryIO) -> None:
    """Write ``ctx`` in format ``name`` to the binary stream ``out``."""
    if FORMATS[name].directory:
        raise ExportError(f"format {name!r} writes a directory; use write_outputs")
    emitter(name)(ctx, out)
