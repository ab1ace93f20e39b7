"""Findings: what a check reports. Data, not exceptions; the CLI picks the exit status.

Plan problems, plan rules, graph checks and cost verdicts all report
:class:`Finding` records, made by one factory (:func:`finding`) from a registered
:class:`~dagen.codes.Code`, and shown by one renderer (:meth:`Finding.render`). Where a
finding points is an :class:`Origin`: a position in a file, or a command-line flag.

Example:
    >>> f = finding(Code.PLAN_WORLD, "declared 128, degrees give 16", path="parallel.world_size",
    ...             origin=Origin(file="plan.yaml", line=56, column=15))
    >>> print(f.render())
    error PLAN-WORLD plan.yaml:56:15: parallel.world_size: declared 128, degrees give 16
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.codes import Code, Severity

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_IN_TEXT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    o = ord(match.group())
    if 0xDC80 <= o <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    r"""``text`` with every control character written as an escape: C0 (ESC, BEL,
    backspace, NUL, …), DEL, C1, the line and bidirectional-override separators, and
    the undecodable bytes of a non-UTF-8 file name, so no plan value or file name can
    move a terminal's cursor, recolour it, or break a Markdown, SVG, DOT or JSON output.
    ``lines`` keeps newlines and tabs (a message's own layout).

    >>> printable("tiny\x1b[2J\x07")
    'tiny\\x1b[2J\\x07'
    >>> printable("a\nb", lines=True), printable("a\nb")
    ('a\nb', 'a\\x0ab')
    """
    return (_UNSAFE_IN_TEXT if lines else _UNSAFE).sub(_escape, text)


__all__ = [
    "HEADLINE_CHARS",
    "Code",
    "Finding",
    "Origin",
    "Severity",
    "count",
    "finding",
    "has_errors",
    "printable",
    "problem",
    "rank_list",
]


HEADLINE_CHARS = 110
"""A first sentence longer than this is cut at its first colon for the headline."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: a position in a file (1-based) or a command-line flag.

    >>> str(Origin(file="plan.yaml", line=3, column=7)), str(Origin(flag="--tensor-parallel-size"))
    ('plan.yaml:3:7', '--tensor-parallel-size')
    """

    file: str = ""
    line: int | None = None
    column: int | None = None
    flag: str = ""
    """The flag the value was given by (a plan imported from framework flags)."""

    def __str__(self) -> str:
        position = ""
        if self.line is not None:
            position = f"{self.line}:{self.column or 1}"
            position = f"{self.file}:{position}" if self.file else position
        if self.flag:  # an imported plan: the flag, and where the plan file wrote it
            return f"{self.flag} ({position})" if position else self.flag
        return position or self.file

    def at(self, file: str) -> Origin:
        """The same place, in ``file`` (when it names none and has a line).

        >>> str(Origin(line=4, column=3, flag="-tp 4").at("plan.yaml"))
        '-tp 4 (plan.yaml:4:3)'
        """
        if self.file or (self.flag and self.line is None):
            return self
        return Origin(file, self.line, self.column, self.flag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One result of a check (make one with :func:`finding`)."""

    code: str
    """A registered code (:class:`~dagen.codes.Code`), e.g. ``PLAN-WORLD``."""
    severity: Severity
    message: str
    """What was found, with the arithmetic."""
    fix: str = ""
    """What to change."""
    path: str = ""
    """Dotted path of the plan field involved, when there is one."""
    origin: Origin | None = None
    """Where that field was written (file position or flag)."""
    nodes: tuple[str, ...] = ()
    """Readable ids of the graph nodes involved (at most a few dozen)."""
    ranks: tuple[int, ...] = ()
    """Global ranks involved."""
    data: dict[str, Any] = field(default_factory=dict, compare=False)
    """Machine-readable details (numbers behind the message) for ``--format json``."""

    @property
    def line(self) -> int | None:
        return self.origin.line if self.origin is not None else None

    @property
    def column(self) -> int | None:
        return self.origin.column if self.origin is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, keys in a fixed order (never the file, so outputs do not depend
        on where the plan sits; a flag origin adds ``flag``)."""
        out: dict[str, Any] = {
            "code": str(self.code),
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
        if self.origin is not None and self.origin.flag:
            out["flag"] = self.origin.flag
        return out

    def headline(self) -> tuple[str, str]:
        """The message as (one-sentence verdict, the arithmetic after it).

        The verdict is the first sentence; one longer than :data:`HEADLINE_CHARS` ends
        at its first ``: `` or ``; `` instead (what follows is the arithmetic).

        Example:
            >>> finding(Code.PLAN_WORLD, "declared 128 ≠ 16. Under megatron: 2·2·4 = 16").headline()
            ('declared 128 ≠ 16.', 'Under megatron: 2·2·4 = 16')
        """
        text = " ".join(self.message.split())
        cut = text.find(". ")
        head, rest = (text[: cut + 1], text[cut + 2 :]) if cut >= 0 else (text, "")
        if len(head) > HEADLINE_CHARS:
            stops = [i for sep in (": ", "; ") if (i := head.find(sep, 20)) >= 0]
            if stops:
                head, rest = text[: min(stops)], text[min(stops) + 2 :]
        return head, rest

    def render(self, source: str = "", width: int | None = None) -> str:
        """The one text form, as compilers print a diagnostic: a headline ``severity CODE
        where: path: verdict``, then the arithmetic, the fix and the first nodes indented
        below. ``source`` names the file when the origin does not; ``width`` wraps every
        line to that many columns (None: no wrapping).

        Example:
            >>> f = finding(Code.PLAN_HEADS_TP, "heads 4 do not split. 4 / 3 = 1.33", fix="tp=2")
            >>> print(f.render("p.yaml"))
            error PLAN-HEADS-TP p.yaml: heads 4 do not split.
                4 / 3 = 1.33
                fix: tp=2
        """
        source = printable(source)
        origin = self.origin.at(source) if self.origin is not None else Origin(source)
        where = f"{origin}: " if str(origin) else ""
        field_ = f"{self.path}: " if self.path else ""
        head, rest = self.headline()
        lines = [(f"{self.severity.value} {self.code} {where}{field_}{head}", "  ")]
        if rest:
            lines.append((f"    {rest}", "    "))
        if self.fix:
            lines.append((f"    fix: {self.fix}", "         "))
        if self.nodes:
            more = " …" if len(self.nodes) > 12 else ""
            lines.append((f"    nodes: {', '.join(self.nodes[:12])}{more}", "           "))
        if width is None:
            return "\n".join(line for line, _ in lines)
        return "\n".join(
            textwrap.fill(
                line,
                width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            for line, indent in lines
        )


def finding(
    code: Code,
    message: str,
    *,
    fix: str = "",
    path: str = "",
    origin: Origin | None = None,
    nodes: tuple[str, ...] = (),
    ranks: tuple[int, ...] = (),
    severity: Severity | None = None,
    data: dict[str, Any] | None = None,
) -> Finding:
    """The one factory of findings: ``code``'s registered severity unless ``severity``.

    >>> finding(Code.GRAPH_CYCLE, "deadlock").severity
    <Severity.ERROR: 'error'>
    """
    if not isinstance(code, Code):
        raise TypeError(f"finding: {code!r} is not a registered Code")
    return Finding(
        code=code.value, severity=severity or code.severity,
        message=printable(message, lines=True), fix=printable(fix, lines=True),
        path=printable(path), origin=origin, nodes=nodes, ranks=ranks, data=data or {},
    )  # fmt: skip


def problem(
    code: Code,
    message: str,
    fix: str = "",
    *,
    path: str = "",
    line: int | None = None,
    column: int | None = None,
) -> Finding:
    """A finding at a position of the plan file (:func:`finding` with that origin; the file
    is named when it is rendered), e.g. a ``P-…`` problem of the loader."""
    origin = Origin(line=line, column=column) if line is not None else None
    return finding(code, message, fix=fix, path=path, origin=origin)


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
