"""What converting a YAML tree into plan records collects, shared by
:mod:`dagen.plan.convert` (the typed walk) and :mod:`dagen.plan.derive` (the fields
filled from others): the problems found, where each value sits, and the marker of a
value that could not be converted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagen.findings import Code, Finding, Origin, problem
from dagen.plan.schema import FieldInfo
from dagen.plan.ynode import Kind, YNode

__all__ = ["BAD", "Context", "join", "missing", "section_name"]


class _Bad:
    """Marker for a value that could not be converted (a problem was recorded)."""

    def __repr__(self) -> str:
        return "BAD"


BAD: Any = _Bad()


def join(path: str, key: str) -> str:
    """Dotted path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


@dataclass(slots=True)
class Context:
    """What a conversion collects: problems and where values sit."""

    problems: list[Finding] = field(default_factory=list)
    locations: dict[str, Origin] = field(default_factory=dict)
    quiet: set[str] = field(default_factory=set)
    """Record paths whose missing keys are not reported (their source failed)."""
    stem: str = "plan"
    """Default plan name."""

    def bad(self, code: Code, path: str, node: YNode, message: str, fix: str) -> Any:
        """Record a problem at ``node``; return :data:`BAD`."""
        if node.origin:
            message = f"{message} (from {node.origin})"
        self.problems.append(
            problem(code, message, fix, path=path, line=node.line, column=node.column)
        )
        return BAD


def section_name(path: str) -> str:
    return path or "the top level"


def missing(info: FieldInfo, node: YNode, path: str, ctx: Context) -> None:
    if path in ctx.quiet:
        return
    loc = ctx.locations.get(path) or Origin(line=node.line, column=node.column)
    where = YNode(kind=Kind.SCALAR, line=loc.line or node.line, column=loc.column or node.column)
    msg = f"{section_name(path)} has no '{info.name}' ({info.doc.rstrip('.')}), which is required"
    fix = f"add '{info.name}: …' under {section_name(path)}"
    if path == "hardware":
        fix += " or set 'preset:'"
    elif path == "model":
        fix += " or set 'hf_config:' to a config.json"
    ctx.bad(Code.P_MISSING, join(path, info.name), where, msg, fix)
