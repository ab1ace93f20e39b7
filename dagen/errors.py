"""The exceptions dagen raises: one base, one subclass per layer, named for the failure.

Every message is a single string a user can act on: where (the plan field with its file
position or flag), what was found, what was expected, and how to fix it. The CLI turns
any :class:`DagenError` into that message and exit status 2, never a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagen.codes import Code

if TYPE_CHECKING:
    from dagen.findings import Finding

__all__ = [
    "DagenError",
    "ExportError",
    "FlagError",
    "GraphError",
    "LayoutFault",
    "MemoryLimit",
    "MeshError",
    "PlanError",
    "PlanInfeasible",
]


class DagenError(Exception):
    """Base of every error dagen raises on purpose."""

    code: Code = Code.P_USAGE
    """The registered code ``--format json`` reports for it (``docs/plan-checks.md``)."""


class PlanError(DagenError):
    """The file is not a valid plan: every problem found (``P-…`` findings), in file order."""

    def __init__(self, problems: list[Finding], source: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.path, p.code))
        self.source = source
        if self.problems:
            self.code = Code.of(self.problems[0].code)
        super().__init__("\n".join(p.render(source) for p in self.problems))


class FlagError(DagenError):
    """A framework's command line cannot be imported: an unknown flag, conflicting flags,
    a value the framework itself rejects, or a layout dagen cannot write."""

    code = Code.P_IMPORT


class PlanInfeasible(DagenError):
    """The plan is well formed but cannot be expanded (error-level plan findings)."""


class MemoryLimit(PlanInfeasible):
    """Building, simulating or exporting would need more memory than allowed."""

    code = Code.P_TOO_BIG


class MeshError(DagenError):
    """The parallel degrees do not factor the world into a mesh."""

    code = Code.P_MESH


class LayoutFault(MeshError):
    """A layout the plan's degrees allow but the mesh cannot lay out: pipeline groups that
    disagree, redundant experts that cannot be placed. The analysis reports it as a
    finding of ``code`` at the plan field ``path``, not as bad input."""

    def __init__(self, message: str, code: Code, path: str) -> None:
        super().__init__(message)
        self.code, self.path = code, path


class GraphError(DagenError):
    """The graph IR violates one of its invariants (see ``Graph.lint``)."""


class ExportError(DagenError):
    """An output could not be produced (unknown format, missing engine, size limit)."""

    code = Code.P_OUTPUT
