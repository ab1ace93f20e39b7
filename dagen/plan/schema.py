"""The plan's schema, read from the dataclass fields of :mod:`dagen.plan.model`.

One source of truth: each field's type and ``metadata`` (doc, unit, bounds,
derived) drive the loader's type checks (:func:`record_fields`), the JSON Schema
(:func:`plan_schema`, draft 2020-12, what ``dagen schema plan`` prints) and the
field tables of ``docs/plan-format.md`` (:func:`format_table_markdown`; a test
keeps the committed document equal to it).

Example:
    >>> schema = plan_schema()
    >>> schema["properties"]["parallel"]["$ref"]
    '#/$defs/Parallel'
    >>> schema["$defs"]["Parallel"]["properties"]["tp"]["minimum"]
    1
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from dagen.plan.claims import Claim
from dagen.plan.lengths import Lengths
from dagen.plan.model import (
    RATE_KEYS,
    Cost,
    Hardware,
    Mla,
    Model,
    Moe,
    Parallel,
    Plan,
    Precision,
    Runtime,
    Scheduling,
    Targets,
    Workload,
)

__all__ = [
    "COUNT_PATTERN",
    "FKind",
    "FieldInfo",
    "format_table_markdown",
    "plan_schema",
    "record_fields",
    "record_schema",
]

COUNT_PATTERN = r"^\s*[0-9][0-9_]*(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*[kKmMbBgGtT]?\s*$"
"""A parameter count written as text: ``10B``, ``46.7B``, ``671e9``, ``1.5T``, ``7M``."""

_COUNT_FIELDS = frozenset({(Model, "params")})
"""Fields that also accept a count written as text (see :data:`COUNT_PATTERN`)."""

SECTIONS: tuple[tuple[str, type[Any]], ...] = (
    ("(top level)", Plan),
    ("model", Model),
    ("model.moe", Moe),
    ("model.mla", Mla),
    ("parallel", Parallel),
    ("workload", Workload),
    ("workload.prompt_dist", Lengths),
    ("workload.gen_dist", Lengths),
    ("hardware", Hardware),
    ("precision", Precision),
    ("runtime", Runtime),
    ("cost", Cost),
    ("schedule", Scheduling),
    ("targets", Targets),
    ("claims[]", Claim),
)
"""Every record of a plan and the YAML path where it sits."""


NUMBER_CAP = 1e15
"""The largest value of a numeric field that sets no maximum of its own (a bandwidth, a
target, a memory size): past it a value is a typo, and products of such values stay
far inside float64 and int64 (docs/plan-format.md, "Bounds")."""


class FKind(enum.StrEnum):
    """The shapes a plan field's value can take."""

    INT = "integer"
    FLOAT = "number"
    BOOL = "boolean"
    STR = "string"
    ENUM = "enum"
    RECORD = "record"
    INT_TUPLE = "list of integers"
    DTYPE_MAP = "dtype → number"
    COUNT = "count"
    RECORD_LIST = "list of records"
    OVERRIDE = "partial plan"


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldInfo:
    """What the loader, the schema and the docs need to know about one field."""

    name: str
    kind: FKind
    optional: bool
    """``None`` is an accepted value."""
    required: bool
    """Must be written (no default, not derived)."""
    default: Any
    """Default value (``MISSING`` when none)."""
    doc: str
    unit: str
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    derived: bool
    enum: type[enum.StrEnum] | None = None
    record: type[Any] | None = None

    def type_text(self) -> str:
        """Type as written in the docs."""
        if self.kind is FKind.ENUM and self.enum is not None:
            text = " / ".join(f"`{m.value}`" for m in self.enum)
        elif self.kind is FKind.RECORD and self.record is not None:
            text = f"mapping ({self.record.__name__})"
        elif self.kind is FKind.RECORD_LIST and self.record is not None:
            text = f"list of mappings ({self.record.__name__})"
        elif self.kind is FKind.COUNT:
            text = "number or count text (`10B`)"
        else:
            text = self.kind.value
        return f"{text} or null" if self.optional else text

    def bounds_text(self) -> str:
        """Bounds as written in the docs (``≥ 1``, ``> 0, ≤ 1``)."""
        parts = []
        if self.minimum is not None:
            sign = ">" if self.exclusive_minimum else "≥"
            parts.append(f"{sign} {_num(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"≤ {_num(self.maximum)}")
        if self.kind is FKind.INT_TUPLE:
            parts.append("items ≥ 0, ≤ 32,767")
        return ", ".join(parts)

    def default_text(self) -> str:
        """Default as written in the docs."""
        if self.derived:
            return "derived"
        if self.default is MISSING:
            return "required"
        if self.default is None:
            return "none"
        if self.default in ((), ""):
            return "empty"
        if isinstance(self.default, enum.Enum):
            return f"`{self.default.value}`"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if dataclasses.is_dataclass(self.default):
            return "empty"
        return f"`{self.default}`"


def _num(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; anything else → ``(tp, False)``."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _kind_of(tp: Any) -> tuple[FKind, type[Any] | None]:
    origin = typing.get_origin(tp)
    simple = {bool: FKind.BOOL, int: FKind.INT, float: FKind.FLOAT, str: FKind.STR}
    if tp in simple:
        return simple[tp], None
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        return FKind.ENUM, tp
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return FKind.RECORD, tp
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return FKind.RECORD_LIST, item
        return FKind.INT_TUPLE, None
    if origin is Mapping:
        value = typing.get_args(tp)[1]
        return (FKind.OVERRIDE if value is Any else FKind.DTYPE_MAP), None
    raise TypeError(f"no schema for field type {tp!r}")  # a model.py change needs one


_FIELDS: dict[type[Any], tuple[FieldInfo, ...]] = {}


def _maximum(kind: FKind, given: float | None) -> float | None:
    """A numeric field's own maximum, else :data:`NUMBER_CAP`."""
    if given is not None or kind not in (FKind.INT, FKind.FLOAT, FKind.COUNT, FKind.DTYPE_MAP):
        return given
    return NUMBER_CAP


def record_fields(cls: type[Any]) -> tuple[FieldInfo, ...]:
    """The user-facing fields of a plan record, in declaration order.

    Example:
        >>> [f.name for f in record_fields(Moe)][:3]
        ['experts', 'top_k', 'expert_ffn_size']
    """
    if cls not in _FIELDS:
        _FIELDS[cls] = _read_fields(cls)
    return _FIELDS[cls]


def _read_fields(cls: type[Any]) -> tuple[FieldInfo, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("internal"):
            continue
        inner, optional = _unwrap(hints[f.name])
        kind, sub = _kind_of(inner)
        if (cls, f.name) in _COUNT_FIELDS:
            kind = FKind.COUNT
        default = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = f.default_factory()
        out.append(
            FieldInfo(
                name=f.name,
                kind=kind,
                optional=optional,
                required=default is MISSING and not meta.get("derived", False),
                default=default,
                doc=str(meta.get("doc", "")),
                unit=str(meta.get("unit", "")),
                minimum=meta.get("minimum"),
                maximum=_maximum(kind, meta.get("maximum")),
                exclusive_minimum=bool(meta.get("exclusive_minimum", False)),
                derived=bool(meta.get("derived", False)),
                enum=sub if kind is FKind.ENUM else None,
                record=sub if kind in (FKind.RECORD, FKind.RECORD_LIST) else None,
            )
        )
    return tuple(out)


# ---------------------------------------------------------------- JSON Schema


def _value_schema(info: FieldInfo) -> dict[str, Any]:
    if info.kind is FKind.RECORD and info.record is not None:
        return {"$ref": f"#/$defs/{info.record.__name__}"}
    if info.kind is FKind.ENUM and info.enum is not None:
        return {"type": "string", "enum": [m.value for m in info.enum]}
    if info.kind is FKind.INT_TUPLE:
        return {"type": "array", "items": {"type": "integer", "minimum": 0}}
    if info.kind is FKind.RECORD_LIST and info.record is not None:
        return {"type": "array", "items": {"$ref": f"#/$defs/{info.record.__name__}"}}
    if info.kind is FKind.OVERRIDE:
        return {"type": "object", "description": "any subset of the plan's sections"}
    if info.kind is FKind.DTYPE_MAP:
        number = {"type": "number", "exclusiveMinimum": 0}
        return {
            "type": "object",
            "properties": {k: number for k in RATE_KEYS},
            "additionalProperties": False,
        }
    if info.kind is FKind.COUNT:
        return {
            "anyOf": [
                _bounded({"type": "number"}, info),
                {"type": "string", "pattern": COUNT_PATTERN},
            ]
        }
    return _bounded({"type": info.kind.value}, info)


def _bounded(schema: dict[str, Any], info: FieldInfo) -> dict[str, Any]:
    if info.minimum is not None:
        key = "exclusiveMinimum" if info.exclusive_minimum else "minimum"
        schema[key] = _json_number(info.minimum)
    if info.maximum is not None:
        schema["maximum"] = _json_number(info.maximum)
    return schema


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _field_schema(info: FieldInfo) -> dict[str, Any]:
    value = _value_schema(info)
    schema: dict[str, Any] = {"anyOf": [value, {"type": "null"}]} if info.optional else value
    unit = f" Unit: {info.unit}." if info.unit else ""
    schema["description"] = info.doc + unit
    if info.default is not MISSING and not dataclasses.is_dataclass(info.default):
        schema["default"] = _json_default(info.default)
    return schema


def _record_schema(cls: type[Any]) -> dict[str, Any]:
    infos = record_fields(cls)
    required = [f.name for f in infos if f.required]
    schema: dict[str, Any] = {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "properties": {f.name: _field_schema(f) for f in infos},
        "additionalProperties": False,
    }
    # A preset fills the hardware; a Hugging Face config fills the model.
    source = {Hardware: "preset", Model: "hf_config"}.get(cls)
    if source is not None:
        schema["anyOf"] = [{"required": [source]}, {"required": required}]
    elif required:
        schema["required"] = required
    if cls is Parallel:
        schema["properties"]["order"]["pattern"] = r"^(tp|cp|ep|dp|pp)(-(tp|cp|ep|dp|pp)){4}$"
    return schema


def record_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema of one record (a plan section, a deployment's ``slo``)."""
    return _record_schema(cls)


def plan_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a plan file, made from the field metadata.

    It checks shapes, types, enums and bounds; cross-field consistency (heads
    divisible by tp, …) is :func:`dagen.plan.rules.plan_findings`' business.
    """
    defs = {cls.__name__: _record_schema(cls) for _, cls in SECTIONS[1:]}
    top = _record_schema(Plan)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dagen.dev/schemas/plan.json",
        "title": "dagen plan",
        **top,
        "$defs": defs,
    }


# ---------------------------------------------------------------- docs tables


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(path: str, cls: type[Any]) -> list[str]:
    lines = [
        f"### `{path}`" if not path.startswith("(") else "### Top level",
        "",
        (cls.__doc__ or "").strip().splitlines()[0],
        "",
        "| Field | Type | Unit | Default | Bounds | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for f in record_fields(cls):
        cells = [f"`{f.name}`", f.type_text(), f.unit, f.default_text(), f.bounds_text(), f.doc]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def format_table_markdown() -> str:
    """Markdown tables of every plan field: type, unit, default, bounds, meaning.

    ``docs/plan-format.md`` embeds this text verbatim; a test fails when they drift.
    """
    lines: list[str] = []
    for path, cls in SECTIONS:
        lines += _table(path, cls)
    return "\n".join(lines).rstrip() + "\n"
