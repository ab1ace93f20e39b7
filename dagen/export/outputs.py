"""Write outputs atomically: files and directories, all of them or none.

Every output is written to a temporary file (or directory) beside its target; only when
all succeeded do they replace their targets, each by one rename. On any error the
temporaries are removed and existing targets are left as they were.

A directory output (a format with ``directory=True``: one file per rank, say) carries a
marker file, :data:`MARKER`, naming its format. An existing directory is replaced only
when it is empty or carries the marker (it was written by dagen); any other directory is
refused unless ``force``.

Example:
    >>> write_outputs(ctx, [("dag.json", None), ("ranks", "per-rank")])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from dagen.errors import ExportError
from dagen.export.base import Emitter, ExportContext
from dagen.export.registry import FORMATS, emitter, format_for
from dagen.plan.files import kept_mode, new_file_mode, temp_prefix

__all__ = ["MARKER", "DirEmitter", "OutDir", "Phases", "write_outputs"]

log = logging.getLogger(__name__)

MARKER = ".dagen"
"""The file that marks a directory as one dagen wrote (it holds the format's name)."""

Phases = Callable[[str, int, int], None]
"""``meter(phase, done, total)``: progress of each output, named ``writing <file>``."""


class OutDir:
    """A directory being written: :meth:`open` gives a binary stream for one file in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: list[str] = []

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """Write the file ``name`` (a plain name, no separators)."""
        if not name or "/" in name or name in (".", "..") or name == MARKER:
            raise ExportError(
                f"directory output: {name!r} is not a file name an exporter may write"
            )
        with open(self.root / name, "wb", buffering=1 << 20) as fh:
            yield fh
        self.names.append(name)


DirEmitter = Callable[[ExportContext, OutDir], None]
"""The signature of a directory exporter."""


@dataclass(frozen=True, slots=True)
class _Planned:
    path: Path
    name: str
    write: Any
    directory: bool


def _check_directory(path: Path, force: bool) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise ExportError(
            f"output {os.fspath(path)!r} exists and is not a directory; the format writes a "
            "directory. Fix: name a directory path."
        )
    entries = list(path.iterdir())
    if entries and not (path / MARKER).is_file() and not force:
        raise ExportError(
            f"output {os.fspath(path)!r} is a directory dagen did not write ({len(entries)} "
            f"entries, no {MARKER} marker); it is not replaced. Fix: name a new or empty "
            "directory, or pass --force to replace it."
        )


def _check_file(path: Path) -> None:
    if path.exists() and not path.is_file():  # a directory, /dev/null, a pipe…
        raise ExportError(
            f"output {os.fspath(path)!r} exists and is not a regular file; dagen replaces "
            "its outputs whole. Fix: name a file path."
        )


def _plan_outputs(
    outputs: Sequence[tuple[str | os.PathLike[str], str | None]], force: bool
) -> list[_Planned]:
    """Check every output before writing any: format, exporter, directory, duplicates."""
    planned: list[_Planned] = []
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
        directory = FORMATS[name].directory
        _check_directory(path, force) if directory else _check_file(path)
        planned.append(_Planned(path, name, emitter(name), directory))
    return planned


def _write_error(path: Path, exc: OSError) -> ExportError:
    return ExportError(
        f"cannot write output {os.fspath(path)!r}: {exc.strerror or exc}. "
        "Fix: check that the directory is writable and has space."
    )


def _write_file(ctx: ExportContext, path: Path, write: Emitter, mode: int) -> Path:
    """Write one output to a temporary file beside ``path``; return the temporary path."""
    mode = kept_mode(path, mode)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".part")
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


def _write_dir(ctx: ExportContext, p: _Planned, mode: int) -> Path:
    """Write one directory output into a temporary directory beside its target."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=p.path.parent, prefix=temp_prefix(p.path), suffix=".part"))
    except OSError as exc:
        raise _write_error(p.path, exc) from exc
    try:
        out = OutDir(tmp)
        p.write(ctx, out)
        (tmp / MARKER).write_text(f"{p.name}\n", encoding="utf-8")
        for name in [*out.names, MARKER]:
            os.chmod(tmp / name, mode)
        os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # readable means listable
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(p.path, exc) from exc
        raise
    return tmp


def _replace(temp: Path, target: Path) -> None:
    """Put ``temp`` in place of ``target``: a file by one rename, a directory by moving the
    old one aside first (then removing it)."""
    if temp.is_dir() and target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(target), suffix=".old"))
        os.replace(target, old / "x")
        os.replace(temp, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(temp, target)


def _phase(meter: Phases, path: Path) -> Callable[[int, int], None]:
    return lambda done, total: meter(f"writing {path.name}", done, total)


def write_outputs(
    ctx: ExportContext,
    outputs: Sequence[tuple[str | os.PathLike[str], str | None]],
    meter: Phases | None = None,
    *,
    force: bool = False,
) -> None:
    """Write each ``(path, format)`` of ``outputs``; all of them or none.

    ``format`` may be ``None`` to take it from the suffix (a directory format needs its
    name). ``force`` replaces a directory dagen did not write. ``meter(f"writing {name}",
    done, total)`` follows each streamed output.

    Raises:
        ExportError: unknown format, missing directory, duplicate output, a directory
            dagen did not write, an exporter's refusal (e.g. a view over the size
            limit), or an I/O error.
    """
    planned = _plan_outputs(outputs, force)
    mode = new_file_mode()
    temps: list[tuple[Path, Path]] = []
    try:
        for p in planned:
            log.info("writing %s (%s)", p.path, p.name)
            own = ctx if meter is None else replace(ctx, meter=_phase(meter, p.path))
            temp = (
                _write_dir(own, p, mode) if p.directory else _write_file(own, p.path, p.write, mode)
            )
            temps.append((temp, p.path))
        for temp, path in temps:
            try:
                _replace(temp, path)
            except OSError as exc:
                raise _write_error(path, exc) from exc
    finally:
        for temp, _ in temps:
            if temp.is_dir():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)
