"""Safe YAML reading: a tree of plain values that remember where they were written.

PyYAML's parser (libyaml's when available) turns text into events that carry marks
(line and column). :func:`compose_text` builds :class:`YNode` values from them with a
small non-recursive composer: scalars are resolved to ``str``/``int``/``float``/
``bool``/``None`` by YAML's core rules only, mappings are keyed by ``str``, sequences
become tuples, and no object is ever constructed from a tag, so no tag can run code.
It reports, as ``P-…`` findings (:func:`dagen.findings.problem`) rather than exceptions:

* ``P-TOO-LARGE``: the text is over :data:`MAX_BYTES` (checked before parsing), or
  holds more than :data:`MAX_NODES` values without aliases;
* ``P-YAML-SYNTAX``: the parser's own error, with its line and column;
* ``P-EMPTY``: no document; ``P-MULTI-DOC``: more than one;
* ``P-TAG``: a tag other than YAML's core ones (``!!python/object``, ``!foo``, …);
* ``P-MERGE``: a ``<<`` merge key (not supported: write the keys out);
* ``P-ALIAS-BOMB``: aliases that expand past :data:`MAX_NODES` values, or refer to
  themselves;
* ``P-TOO-DEEP``: nesting past :data:`MAX_DEPTH`;
* ``P-DUPLICATE-KEY``: a key written twice in one mapping;
* ``P-KEY-TYPE``: a key that is not a plain name.

Example:
    >>> node, problems = compose_text("a: 1\\nb: [2, 3]\\n")
    >>> node.get("b").items[1].value, node.get("b").items[1].line, problems
    (3, 2, [])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from dagen.findings import Code, Finding, problem
from dagen.plan.ynode import Kind, YNode

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "compose_text", "too_large"]

MAX_BYTES = 1 << 20
"""Largest plan file read (1 MiB); a plan is a few hundred bytes."""
MAX_NODES = 100_000
"""Most values a document may expand to, counting each alias expansion again."""
MAX_DEPTH = 32
"""Deepest nesting accepted; a plan nests four levels."""

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP = _CORE + "timestamp"
_MERGE = _CORE + "merge"
_SEQ = _CORE + "seq"
_MAP = _CORE + "map"

try:  # libyaml's parser is ~10x faster; marks and tags are the same.
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class _Budget(Exception):
    """Raised inside composition when a limit is hit; carries the problem."""

    def __init__(self, problem: Finding) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(slots=True, kw_only=True)
class _Frame:
    """A mapping or sequence being composed."""

    kind: Kind
    path: str
    line: int
    column: int
    anchor: str | None
    tag: str | None
    entries: dict[str, YNode] = field(default_factory=dict)
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    items: list[YNode] = field(default_factory=list)
    key: str | None = None
    """The key waiting for its value (mappings)."""
    skip_value: bool = False
    """The pending key was refused; drop its value."""
    size: int = 1

    def child_path(self) -> str:
        """Path of the next child value."""
        if self.kind is Kind.SEQUENCE:
            return _join(self.path, str(len(self.items)))
        return _join(self.path, self.key) if self.key is not None else self.path

    def expects_key(self) -> bool:
        return self.kind is Kind.MAPPING and self.key is None and not self.skip_value


class _Composer:
    """YAML events → :class:`YNode` tree without recursion.

    NOTE: aliases share the anchored (immutable) subtree, so nothing is expanded;
    instead each alias adds the anchored subtree's size to a running count, which
    stops an alias bomb after :data:`MAX_NODES` values at the cost of a few
    additions, not after building billions of values.
    """

    def __init__(self) -> None:
        self.problems: list[Finding] = []
        self.total = 0
        self.via_alias = 0
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[YNode, int]] = {}
        self.open_anchors: set[str] = set()
        self.root: YNode | None = None
        self.resolver = yaml.resolver.Resolver()
        self.constructor = SafeConstructor()

    def feed(self, event: yaml.Event) -> None:
        """Consume one parser event."""
        if isinstance(event, yaml.ScalarEvent):
            self._scalar(event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._open(event)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self._close()

    def _path(self) -> str:
        return self.stack[-1].child_path() if self.stack else ""

    def _count(self, n: int, line: int, column: int, *, alias: bool = False) -> None:
        self.total += n
        self.via_alias += n if alias else 0
        if self.total <= MAX_NODES:
            return
        if self.via_alias * 2 > self.total:
            raise _Budget(_at(Code.P_ALIAS_BOMB, self._path(), line, column, _bomb_message()))
        msg = f"the document holds more than {MAX_NODES:,} values; a plan holds a few dozen"
        fix = "a plan is a few hundred bytes: check that this is the right file"
        raise _Budget(_at(Code.P_TOO_LARGE, self._path(), line, column, msg, fix))

    def _open(self, event: yaml.CollectionStartEvent) -> None:
        line, column = _mark(event)
        path = self._path()
        self._count(1, line, column)
        if len(self.stack) >= MAX_DEPTH:
            msg = f"values nest more than {MAX_DEPTH} levels deep"
            raise _Budget(_at(Code.P_TOO_DEEP, path, line, column, msg, "flatten the document"))
        kind = Kind.MAPPING if isinstance(event, yaml.MappingStartEvent) else Kind.SEQUENCE
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append(
            _Frame(
                kind=kind, path=path, line=line, column=column, anchor=event.anchor, tag=event.tag
            )
        )

    def _close(self) -> None:
        frame = self.stack.pop()
        want = _MAP if frame.kind is Kind.MAPPING else _SEQ
        if frame.tag not in (None, "!", want):
            self._bad_tag(frame.tag, frame.path, frame.line, frame.column)
        node = YNode(
            kind=frame.kind,
            line=frame.line,
            column=frame.column,
            entries=frame.entries,
            keys=frame.keys,
            items=tuple(frame.items),
        )
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (node, frame.size)
        self._attach(node, frame.size, frame.line, frame.column)

    def _alias(self, event: yaml.AliasEvent) -> None:
        line, column = _mark(event)
        if event.anchor in self.open_anchors:
            msg = f"the alias *{event.anchor} refers to the collection that contains it, which never ends"
            raise _Budget(_at(Code.P_ALIAS_BOMB, self._path(), line, column, msg))
        if event.anchor not in self.anchors:
            msg = (
                f"YAML syntax error: the alias *{event.anchor} refers to no anchor &{event.anchor}"
            )
            fix = f"define &{event.anchor} before it, or remove the '*'"
            raise _Budget(_at(Code.P_YAML_SYNTAX, self._path(), line, column, msg, fix))
        node, size = self.anchors[str(event.anchor)]
        self._count(size, line, column, alias=True)
        moved = YNode(
            kind=node.kind,
            value=node.value,
            line=line,
            column=column,
            entries=node.entries,
            keys=node.keys,
            items=node.items,
        )
        self._attach(moved, size, line, column)

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        line, column = _mark(event)
        self._count(1, line, column)
        tag = event.tag
        if tag is None or tag == "!":
            tag = str(self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit))  # type: ignore[no-untyped-call]
        if self.stack and self.stack[-1].expects_key():
            self._take_key(tag, event.value, line, column)
            return
        value = self._value(tag, event.value, line, column)
        node = YNode(kind=Kind.SCALAR, value=value, line=line, column=column)
        if event.anchor is not None:
            self.anchors[event.anchor] = (node, 1)
        self._attach(node, 1, line, column)

    def _value(self, tag: str, text: str, line: int, column: int) -> Any:
        if tag == _TIMESTAMP:  # a date stays the text written
            return text
        if tag not in _SCALAR_TAGS:
            self._bad_tag(tag, self._path(), line, column)
            return None
        try:
            return self.constructor.construct_object(yaml.ScalarNode(tag, text))
        except (ConstructorError, ValueError) as exc:
            digits = sum(c.isdigit() for c in text)
            if tag.endswith(":int") and digits > 24:  # past Python's int digit limit
                msg = f"found a {digits:,}-digit integer ({text[:6]}…); no field takes one"
                fix = "write a value within the field's bounds (docs/plan-format.md)"
                self.problems.append(_at(Code.P_RANGE, self._path(), line, column, msg, fix))
                return None
            shown = text if len(text) <= 40 else f"{text[:40]}…"
            msg = f"cannot read {shown!r} as {tag.removeprefix(_CORE)}: {str(exc)[:200]}"
            self.problems.append(_at(Code.P_TAG, self._path(), line, column, msg, _UNTAG))
            return None

    def _attach(self, node: YNode, size: int, line: int, column: int) -> None:
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        frame.size += size
        if frame.kind is Kind.SEQUENCE:
            frame.items.append(node)
        elif frame.skip_value:
            frame.skip_value = False
        elif frame.key is None:  # a collection or alias used as a key
            self._key_problem(line, column)
            frame.skip_value = True
        else:
            frame.entries[frame.key] = node
            frame.key = None

    def _take_key(self, tag: str, text: str, line: int, column: int) -> None:
        frame = self.stack[-1]
        if tag == _MERGE:
            msg = "found a '<<' merge key; merges are not supported in plans"
            fix = "write the merged keys out in this mapping"
            self.problems.append(_at(Code.P_MERGE, frame.path, line, column, msg, fix))
            frame.skip_value = True
        elif text in frame.keys:
            first = frame.keys[text][0]
            msg = f"the key '{text}' is written twice in this mapping (first on line {first})"
            fix = f"keep one '{text}' and delete the other"
            path = _join(frame.path, text)
            self.problems.append(_at(Code.P_DUPLICATE_KEY, path, line, column, msg, fix))
            frame.skip_value = True
        else:
            frame.keys[text] = (line, column)
            frame.key = text

    def _key_problem(self, line: int, column: int) -> None:
        frame = self.stack[-1]
        msg = "found a key that is a list or mapping; keys are plain names"
        fix = "use a plain name such as 'tp' as the key"
        self.problems.append(_at(Code.P_KEY_TYPE, frame.path, line, column, msg, fix))

    def _bad_tag(self, tag: str, path: str, line: int, column: int) -> None:
        msg = f"found the tag {tag!r}; plans hold plain YAML values and tags are never executed"
        fix = "remove the tag and write the value as a plain number, string, list or mapping"
        self.problems.append(_at(Code.P_TAG, path, line, column, msg, fix))


_UNTAG = "remove the explicit tag"


def _bomb_message() -> str:
    return (
        f"the document expands to more than {MAX_NODES:,} values through aliases "
        "(an alias bomb); reading stopped"
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mark(event: yaml.Event) -> tuple[int, int]:
    mark = event.start_mark
    if mark is None:  # pragma: no cover - the parser always sets marks
        return 1, 1
    return mark.line + 1, mark.column + 1


def _at(code: Code, path: str, line: int, column: int, message: str, fix: str = "") -> Finding:
    if code is Code.P_ALIAS_BOMB and not fix:
        fix = "write the values out instead of repeating aliases of lists or mappings"
    return problem(code, message, fix, path=path, line=line, column=column)


def _syntax_problem(exc: yaml.YAMLError, text: str) -> Finding:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {what}" + (f" ({context})" if context else "")
    fix = "check the indentation and the ':' after each key near this place"
    if mark is not None and text[mark.index : mark.index + 1] == "\t":
        fix = "indent with spaces: YAML does not allow tab characters for indentation"
    return problem(Code.P_YAML_SYNTAX, message, fix, line=line, column=col)


def too_large(size: int) -> Finding | None:
    """``P-TOO-LARGE`` if ``size`` bytes is over :data:`MAX_BYTES`, else None."""
    if size <= MAX_BYTES:
        return None
    msg = f"the file is {size:,} bytes; plans are limited to {MAX_BYTES:,} bytes (1 MiB)"
    fix = "a plan is a few hundred bytes: check that this is the right file"
    return problem(Code.P_TOO_LARGE, msg, fix)


def _empty() -> Finding:
    msg = "the file holds no YAML document (it is empty or only comments)"
    fix = "write the plan's sections: model, parallel, workload, hardware"
    return problem(Code.P_EMPTY, msg, fix, line=1, column=1)


def _run(text: str) -> tuple[YNode | None, list[Finding]]:
    comp = _Composer()
    docs = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            docs += 1
            if docs > 1:
                line, column = _mark(event)
                msg = (
                    "the file holds more than one YAML document (separated by '---'); a plan is one"
                )
                fix = "put each plan in its own file"
                raise _Budget(_at(Code.P_MULTI_DOC, "", line, column, msg, fix))
        comp.feed(event)
    return comp.root, comp.problems


def compose_text(text: str) -> tuple[YNode | None, list[Finding]]:
    """Parse ``text`` safely into a :class:`YNode` tree and the problems met.

    The tree is None when the text cannot be read at all (too large, syntax error,
    empty, alias bomb); otherwise the problems are local and the tree holds the rest.
    """
    big = too_large(len(text.encode("utf-8", "surrogatepass")))
    if big is not None:
        return None, [big]
    try:
        root, problems = _run(text)
    except yaml.YAMLError as exc:
        return None, [_syntax_problem(exc, text)]
    except _Budget as stop:
        return None, [stop.problem]
    if root is None or (root.kind is Kind.SCALAR and root.value is None):
        return None, [_empty()]
    return root, problems
