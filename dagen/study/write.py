"""Write a search's frontier files: Markdown (``.md``) and a plot (``.svg``, ``.png``).

Each file is written whole to a temporary name beside it and renamed over the target, so
a failed search or a failed write leaves nothing behind.

Example:
    >>> frontier_format(Path("frontier.svg"))  # doctest: +SKIP
    'svg'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dagen.errors import ExportError
from dagen.plan.files import replace_file
from dagen.study.search import SearchResult

__all__ = ["FRONTIER_FORMATS", "frontier_format", "write_frontier"]

FRONTIER_FORMATS = {".md": "markdown", ".svg": "svg", ".png": "png"}


def frontier_format(path: Path) -> str:
    """The format ``path``'s suffix names.

    Raises:
        ExportError: the suffix is not one of :data:`FRONTIER_FORMATS`.
    """
    fmt = FRONTIER_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(
            f"-o {path}: found the suffix {path.suffix or '(none)'!r}; expected one of "
            f"{', '.join(FRONTIER_FORMATS)}. Fix: e.g. -o frontier.md -o frontier.svg"
        )
    return fmt


def _render(result: SearchResult, fmt: str) -> bytes:
    if fmt == "markdown":
        from dagen.study.report import frontier_markdown

        return frontier_markdown(result).encode()
    from dagen.study.plot import plot_bytes

    return plot_bytes(result, fmt)


def _atomic(path: Path, data: bytes) -> None:
    try:
        replace_file(path, data)
    except OSError as exc:
        raise ExportError(
            f"-o {path}: cannot write it ({exc.strerror}). Fix: pick a writable directory"
        ) from exc


def write_frontier(result: SearchResult, paths: Sequence[Path]) -> None:
    """Render every output first, then write each (nothing is written if one fails to render)."""
    rendered = [(p, _render(result, frontier_format(p))) for p in paths]
    for path, data in rendered:
        _atomic(path, data)
