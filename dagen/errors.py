"""The exceptions dagen raises: one base, one subclass per layer, named for the failure.

Every message is a single string a user can act on: where (YAML path with line and
column), what was found, what was expected, and how to fix it. The CLI turns any
:class:`DagenError` into that message and exit status 2, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DagenError",
    "ExportError",
    "GraphError",
    "MeshError",
    "PlanError",
    "PlanInfeasible",
    "Problem",
]


class DagenError(Exception):
    """Base of every error dagen raises on purpose."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with a plan file."""

    code: str
    """Stable identifier, e.g. ``P-UNKNOWN-KEY``."""
    path: str
    """Dotted YAML path, e.g. ``parallel.tp``; empty for the whole document."""
    line: int | None
    """1-based line in the YAML file, when known."""
    column: int | None
    """1-based column in the YAML file, when known."""
    message: str
    """What was found and what was expected."""
    fix: str = ""
    """How to fix it (may be empty when the message says it all)."""

    def render(self, source: str = "") -> str:
        """Return ``source:line:col: path: message (fix)`` as one line."""
        where = source
        if self.line is not None:
            where = (
                f"{where}:{self.line}:{self.column or 1}"
                if where
                else f"{self.line}:{self.column or 1}"
            )
        head = f"{where}: " if where else ""
        field = f"{self.path}: " if self.path else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return (
            f"{head}{field}{self.message}.{fix}"
            if not self.message.endswith(".")
            else f"{head}{field}{self.message}{fix}"
        )


class PlanError(DagenError):
    """The file is not a valid plan: every problem found, in file order."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.path, p.code))
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))


class PlanInfeasible(DagenError):
    """The plan is well formed but cannot be expanded (error-level plan findings)."""


class MeshError(DagenError):
    """The parallel degrees do not factor the world into a mesh."""


class GraphError(DagenError):
    """The graph IR violates one of its invariants (see ``Graph.lint``)."""


class ExportError(DagenError):
    """An output could not be produced (unknown format, missing engine, size limit)."""
