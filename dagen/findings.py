"""Findings: what a check reports. Data, not exceptions; the CLI picks the exit status.

Plan rules, graph checks and cost verdicts all return lists of :class:`Finding`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Finding", "Severity", "count", "has_errors", "rank_list"]


class Severity(enum.StrEnum):
    """How bad a finding is. ``error`` fails ``dagen check`` (exit 1)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One result of a check.

    Example:
        >>> f = Finding(code="PLAN-WORLD", severity=Severity.ERROR, message="…")
        >>> f.severity
        <Severity.ERROR: 'error'>
    """

    code: str
    """Stable code, e.g. ``PLAN-WORLD`` or ``GRAPH-CYCLE``; documented in docs/checks.md."""
    severity: Severity
    message: str
    """What was found, with the arithmetic."""
    fix: str = ""
    """What to change."""
    path: str = ""
    """YAML path of the field involved, when there is one."""
    line: int | None = None
    column: int | None = None
    nodes: tuple[str, ...] = ()
    """Readable ids of the graph nodes involved (at most a few dozen)."""
    ranks: tuple[int, ...] = ()
    """Global ranks involved."""
    data: dict[str, Any] = field(default_factory=dict, compare=False)
    """Machine-readable details (numbers behind the message) for ``--format json``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, keys in a fixed order."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "nodes": list(self.nodes),
            "ranks": list(self.ranks),
            "data": self.data,
        }

    def render(self, source: str = "") -> str:
        """One or two lines of text: ``severity CODE where: message`` then the fix."""
        where = ""
        if self.line is not None:
            where = (
                f"{source}:{self.line}:{self.column or 1}: "
                if source
                else f"{self.line}:{self.column or 1}: "
            )
        field_ = f"{self.path}: " if self.path else ""
        text = f"{self.severity.value} {self.code} {where}{field_}{self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        if self.nodes:
            text += (
                "\n    nodes: "
                + ", ".join(self.nodes[:12])
                + (" …" if len(self.nodes) > 12 else "")
            )
        return text


def has_errors(findings: list[Finding]) -> bool:
    """Whether any finding is error-level."""
    return any(f.severity is Severity.ERROR for f in findings)


def count(x: int, noun: str, plural: str = "") -> str:
    """``1 send``, ``1,024 sends``: a number with its noun, for messages.

    >>> count(1024, "send")
    '1,024 sends'
    """
    word = noun if x == 1 else (plural or noun + "s")
    return f"{x:,} {word}"


def rank_list(ranks: npt.ArrayLike) -> str:
    """Short text for a set of ranks: ``0, 1, 5`` or ``0, 1, … (300 ranks)``.

    >>> rank_list([3, 1, 3])
    '1, 3'
    """
    r = np.unique(np.asarray(ranks)).tolist()
    if len(r) <= 8:
        return ", ".join(map(str, r))
    return ", ".join(map(str, r[:6])) + f", … ({len(r):,} ranks)"
