"""Findings: what a check reports. Data, not exceptions; the CLI picks the exit status.

Plan rules, graph checks and cost verdicts all return lists of :class:`Finding`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "Severity", "has_errors"]


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
