"""Exporters: one module per format, a registry from name and suffix to exporter.

Every exporter is ``emit(ctx, out)`` (see :class:`ExportContext`). :func:`format_for`
picks a format from a file name, :func:`write_outputs` writes several outputs
atomically: each goes to a temporary file beside its target and replaces the target
only once *every* output has been written, so a failure leaves no partial file and no
half-updated set of outputs.

Example:
    >>> from pathlib import Path
    >>> format_for(Path("out/dag.json.gz"))
    'json.gz'
    >>> ctx = ExportContext(graph=graph)  # doctest: +SKIP
    >>> write_outputs(ctx, [(Path("dag.svg"), "svg"), (Path("dag.json"), "json")])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, cast

from dagen.errors import ExportError
from dagen.export.base import Emitter, ExportContext, View, select_nodes

__all__ = [
    "FORMATS",
    "Emitter",
    "ExportContext",
    "Format",
    "Phases",
    "View",
    "emit",
    "emitter",
    "format_for",
    "select_nodes",
    "write_outputs",
]

log = logging.getLogger(__name__)


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
    return "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in FORMATS.values())


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
                return f.name
        raise ExportError(
            f"output format {fmt!r} is unknown; expected one of: {_known()}. "
            "Fix: pass one of these names to --to."
        )
    name = "." + Path(path).name.lower()
    matches = [(len(s), f.name) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    if not matches:
        raise ExportError(
            f"output {os.fspath(path)!r}: the file name has no known format suffix; expected "
            f"one of: {_known()}. Fix: rename the output or pass --to FORMAT."
        )
    return max(matches)[1]


def emitter(name: str) -> Emitter:
    """The exporter of format ``name``, importing its module on first use.

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
    return cast(Emitter, getattr(module, fmt.function))


def emit(name: str, ctx: ExportContext, out: BinaryIO) -> None:
    """Write ``ctx`` in format ``name`` to the binary stream ``out``."""
    emitter(name)(ctx, out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plan_outputs(
    outputs: Sequence[tuple[str | os.PathLike[str], str | None]],
) -> list[tuple[Path, str, Emitter]]:
    """Check every output before writing any: format, exporter, directory, duplicates."""
    planned: list[tuple[Path, str, Emitter]] = []
    seen: dict[Path, Path] = {}
    for raw, fmt in outputs:
        path = Path(raw)
        name = format_for(path, fmt)
        key = path.resolve()
        if key in seen:
            raise ExportError(
                f"output {os.fspath(path)!r} is given twice (also as {os.fspath(seen[key])!r}). "
                "Fix: name each output once."
            )
        seen[key] = path
        parent = path.parent
        if not parent.is_dir():
            raise ExportError(
                f"output {os.fspath(path)!r}: directory {os.fspath(parent)!r} does not exist. "
                "Fix: create it first (mkdir -p) or write elsewhere."
            )
        if path.exists() and not path.is_file():  # a directory, /dev/null, a pipe…
            raise ExportError(
                f"output {os.fspath(path)!r} exists and is not a regular file; dagen replaces "
                "its outputs whole. Fix: name a file path."
            )
        planned.append((path, name, emitter(name)))
    return planned


def _write_temp(ctx: ExportContext, path: Path, write: Emitter, mode: int) -> Path:
    """Write one output to a temporary file beside ``path``; return the temporary path."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    temp = Path(tmp)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            write(ctx, fh)
        os.chmod(temp, mode)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    return temp


def _write_error(path: Path, exc: OSError) -> ExportError:
    return ExportError(
        f"cannot write output {os.fspath(path)!r}: {exc.strerror or exc}. "
        "Fix: check that the directory is writable and has space."
    )


Phases = Callable[[str, int, int], None]
"""``meter(phase, done, total)``: progress of each output, named ``writing <file>``."""


def _phase(meter: Phases, path: Path) -> Callable[[int, int], None]:
    return lambda done, total: meter(f"writing {path.name}", done, total)


def write_outputs(
    ctx: ExportContext,
    outputs: Sequence[tuple[str | os.PathLike[str], str | None]],
    meter: Phases | None = None,
) -> None:
    """Write each ``(path, format)`` of ``outputs``; all of them or none.

    ``format`` may be ``None`` to take it from the suffix. Every output is written to a
    temporary file in its target's directory; only when all succeeded do they replace
    their targets (``os.replace``, atomic per file). On any error the temporary files
    are removed and existing targets are left as they were.

    Raises:
        ExportError: unknown format, missing directory, duplicate output, an exporter's
            refusal (e.g. a view over the size limit), or an I/O error.

    ``meter(f"writing {name}", done, total)`` follows each streamed output.
    """
    planned = _plan_outputs(outputs)
    mode = 0o666 & ~_umask()
    temps: list[tuple[Path, Path]] = []
    try:
        for path, name, write in planned:
            log.info("writing %s (%s)", path, name)
            own = ctx if meter is None else replace(ctx, meter=_phase(meter, path))
            temps.append((_write_temp(own, path, write, mode), path))
        for temp, path in temps:
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise _write_error(path, exc) from exc
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
