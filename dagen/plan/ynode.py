"""A YAML value that remembers where it was written: :class:`YNode`.

The safe composer (:mod:`dagen.plan.yamlsrc`) makes them from the text; :func:`plain`
makes them from values read elsewhere (a Hugging Face config, a preset), naming where.

Example:
    >>> plain({"tp": 2}, 3, 1, "preset").get("tp").value
    2
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Kind", "YNode", "plain"]


class Kind(enum.StrEnum):
    """What a :class:`YNode` holds."""

    SCALAR = "scalar"
    MAPPING = "mapping"
    SEQUENCE = "sequence"


@dataclass(frozen=True, slots=True, kw_only=True)
class YNode:
    """One YAML value and where it was written (1-based line and column).

    ``origin`` names where a value that was not written in the plan came from
    (``hf_config key num_hidden_layers``, ``preset H100-SXM-80GB``); it is empty
    for values written in the plan.
    """

    kind: Kind
    value: Any = None
    """The scalar value (``str``, ``int``, ``float``, ``bool`` or ``None``)."""
    line: int = 0
    column: int = 0
    entries: dict[str, YNode] = field(default_factory=dict)
    """Mapping entries in file order."""
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Mapping key → (line, column) of the key itself."""
    items: tuple[YNode, ...] = ()
    """Sequence items."""
    origin: str = ""

    def get(self, key: str) -> YNode | None:
        """Entry ``key`` of a mapping, or None."""
        return self.entries.get(key)

    def describe(self) -> str:
        """Short description for messages: ``10 (an integer)``, ``a mapping``."""
        if self.kind is Kind.MAPPING:
            return "a mapping"
        if self.kind is Kind.SEQUENCE:
            return "a list"
        return f"{self.value!r} ({_type_name(self.value)})"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    return "a string"


def plain(value: Any, line: int, column: int, origin: str) -> YNode:
    """A :class:`YNode` for a Python value that did not come from the YAML text.

    Dicts become mappings and lists sequences, all at the given location.
    """
    if isinstance(value, dict):
        entries = {str(k): plain(v, line, column, origin) for k, v in value.items()}
        keys = dict.fromkeys(entries, (line, column))
        return YNode(
            kind=Kind.MAPPING, line=line, column=column, entries=entries, keys=keys, origin=origin
        )
    if isinstance(value, (list, tuple)):
        items = tuple(plain(v, line, column, origin) for v in value)
        return YNode(kind=Kind.SEQUENCE, line=line, column=column, items=items, origin=origin)
    return YNode(kind=Kind.SCALAR, value=value, line=line, column=column, origin=origin)
