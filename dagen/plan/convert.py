"""Typed conversion of a YAML tree into plan records, driven by the field metadata.

:func:`convert_record` walks a :class:`~dagen.plan.yamlsrc.YNode` mapping against
:func:`dagen.plan.schema.record_fields` of a record class and returns the record,
or :data:`BAD` after adding a ``P-…`` finding to the context for each
value that is wrong. The rules:

* ``int`` fields take YAML integers only (not ``2.0``, ``true`` or ``"2"``);
  ``float`` fields take integers too; ``bool`` fields take ``true``/``false``;
* enums take one of their values (``P-ENUM`` with "did you mean");
* bounds come from ``minimum``/``maximum``/``exclusive_minimum`` (``P-RANGE``);
* a count field (``model.params``) also takes text such as ``10B`` or ``671e9``;
* ``parallel.order`` names only tp, cp, ep, dp, pp, each at most once (``P-ORDER``);
* unknown keys are ``P-UNKNOWN-KEY``, absent required ones ``P-MISSING``;
* derived fields are filled: ``model.kv_heads``, ``model.head_dim``, ``name``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from dagen.findings import Code, printable
from dagen.plan.aliases import ALIASES
from dagen.plan.context import BAD, Context, join, missing, section_name
from dagen.plan.derive import derive
from dagen.plan.model import RATE_KEYS
from dagen.plan.numbers import LAYERS_MAX, fmt_number, int_fix, is_int, number_problem
from dagen.plan.params import parse_count
from dagen.plan.schema import FieldInfo, FKind, record_fields
from dagen.plan.ynode import Kind, YNode

__all__ = ["BAD", "Context", "convert_record", "join"]


_ORDER_NAMES = ("tp", "cp", "ep", "dp", "pp")


# ------------------------------------------------------------------ scalars


def _bounds(info: FieldInfo, value: float, node: YNode, path: str, ctx: Context) -> Any:
    lo, hi = info.minimum, info.maximum
    if lo is not None and (value <= lo if info.exclusive_minimum else value < lo):
        sign, want = (">", "more than") if info.exclusive_minimum else ("≥", "at least")
        msg = f"found {fmt_number(value)}; expected {want} {fmt_number(lo)}"
        return ctx.bad(Code.P_RANGE, path, node, msg, f"use a value {sign} {fmt_number(lo)}")
    if hi is not None and value > hi:
        msg = f"found {fmt_number(value)}; expected at most {fmt_number(hi)} (a larger {info.name} is a typo, not a model)"
        return ctx.bad(Code.P_RANGE, path, node, msg, f"use a value ≤ {fmt_number(hi)}")
    return value


def _not_finite(node: YNode, path: str, ctx: Context) -> Any:
    """The problem of inf, NaN or an exponent PyYAML reads as a string; None if none."""
    hit = number_problem(node.value)
    return None if hit is None else ctx.bad(hit[0], path, node, hit[1], hit[2])


def _int(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is not Kind.SCALAR or not is_int(node.value):
        bad = _not_finite(node, path, ctx) if node.kind is Kind.SCALAR else None
        if bad is not None:
            return bad
        msg = f"found {node.describe()}; expected an integer"
        return ctx.bad(Code.P_TYPE, path, node, msg, int_fix(node.value))
    return _bounds(info, node.value, node, path, ctx)


def _float(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    value = node.value
    if (
        node.kind is not Kind.SCALAR
        or isinstance(value, bool)
        or not isinstance(value, int | float)
    ):
        bad = _not_finite(node, path, ctx) if node.kind is Kind.SCALAR else None
        if bad is not None:
            return bad
        msg = f"found {node.describe()}; expected a number"
        fix = "write a number such as 1.5 (without quotes; 1e9 must be written 1.0e+9)"
        return ctx.bad(Code.P_TYPE, path, node, msg, fix)
    bad = _not_finite(node, path, ctx)
    if bad is not None:
        return bad
    out = _bounds(info, value, node, path, ctx)
    if out is not BAD and isinstance(value, int):
        value = float(value)
    return out if out is BAD else value


def _count(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    value = node.value
    if node.kind is Kind.SCALAR and isinstance(value, str):
        parsed = parse_count(value)
        if parsed is None:
            msg = f"found {value!r}; expected a number or a count such as 10B, 46.7B or 671e9"
            return ctx.bad(Code.P_TYPE, path, node, msg, "write e.g. params: 10B")
        return _bounds(info, parsed, node, path, ctx)
    return _float(info, node, path, ctx)


def _bool(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is not Kind.SCALAR or not isinstance(node.value, bool):
        msg = f"found {node.describe()}; expected true or false"
        return ctx.bad(
            Code.P_TYPE, path, node, msg, f"write {info.name}: true or {info.name}: false"
        )
    return node.value


def _order_problem(text: str) -> str:
    parts = text.lower().split("-")
    bad = sorted({p for p in parts if p not in _ORDER_NAMES or parts.count(p) > 1})
    return f"unknown or repeated: {', '.join(bad)}" if bad else ""


def _str(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is not Kind.SCALAR or not isinstance(node.value, str):
        msg = f"found {node.describe()}; expected a string"
        return ctx.bad(Code.P_TYPE, path, node, msg, f'quote it: {info.name}: "{node.value}"')
    if path == "parallel.order":
        issue = _order_problem(node.value)
        if issue:
            msg = f"found '{node.value}' ({issue}); expected names from tp, cp, ep, dp, pp, each at most once, joined by '-'"
            return ctx.bad(Code.P_ORDER, path, node, msg, "write e.g. order: tp-cp-ep-dp-pp")
    # Control characters never travel on: every output shows them as escapes.
    return node.value if path.endswith("hf_config") else printable(node.value)


def _suggest(word: str, choices: list[str]) -> str:
    alias = ALIASES.get(word)
    if alias in choices:
        return f"did you mean '{alias}'?"
    folded = {c.lower(): c for c in choices}
    close = folded.get(word.lower()) or next(
        iter(difflib.get_close_matches(word, choices, n=1, cutoff=0.6)), None
    )
    if close:
        return f"did you mean '{close}'?"
    return f"use one of {', '.join(choices)}"


def _enum(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    assert info.enum is not None
    values = [m.value for m in info.enum]
    if node.kind is Kind.SCALAR and node.value in values:
        return info.enum(node.value)
    msg = f"found {node.describe()}; expected one of {', '.join(values)}"
    return ctx.bad(Code.P_ENUM, path, node, msg, _suggest(str(node.value), values))


# ------------------------------------------------------------- collections


def _int_tuple(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is not Kind.SEQUENCE:
        msg = f"found {node.describe()}; expected a list of integers"
        return ctx.bad(Code.P_TYPE, path, node, msg, f"write e.g. {info.name}: [16, 16, 15, 14]")
    out = []
    for i, item in enumerate(node.items):
        sub = join(path, str(i))
        if item.kind is not Kind.SCALAR or not is_int(item.value):
            msg = f"found {item.describe()}; expected an integer"
            out.append(ctx.bad(Code.P_TYPE, sub, item, msg, int_fix(item.value)))
        elif not 0 <= item.value <= LAYERS_MAX:
            msg = f"found {fmt_number(item.value)}; expected a count ≥ 0 and ≤ {LAYERS_MAX:,}"
            out.append(
                ctx.bad(Code.P_RANGE, sub, item, msg, f"use a count from 0 to {LAYERS_MAX:,}")
            )
        else:
            out.append(item.value)
    return BAD if BAD in out else tuple(out)


def _dtype_map(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is not Kind.MAPPING:
        msg = f"found {node.describe()}; expected a mapping of dtype to {info.unit}"
        return ctx.bad(Code.P_TYPE, path, node, msg, "write e.g. {bf16: 989, fp8: 1979}")
    names = list(RATE_KEYS)
    if not node.entries:
        return ctx.bad(Code.P_MISSING, path, node, "found no entry", "give at least bf16")
    out: dict[str, Any] = {}
    number = dataclasses.replace(info, minimum=0, exclusive_minimum=True)
    for key, child in node.entries.items():
        if key not in names:
            line, col = node.keys[key]
            where = YNode(kind=Kind.SCALAR, value=key, line=line, column=col, origin=child.origin)
            msg = f"found the key '{key}'; expected a dtype: {', '.join(names)}"
            out[key] = ctx.bad(Code.P_ENUM, join(path, key), where, msg, _suggest(key, names))
            continue
        out[key] = _float(number, child, join(path, key), ctx)
    return BAD if BAD in out.values() else dict(sorted(out.items()))


def _record(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    assert info.record is not None
    if node.kind is not Kind.MAPPING:
        msg = f"found {node.describe()}; expected a mapping of {info.record.__name__} fields"
        return ctx.bad(
            Code.P_NOT_MAPPING, path, node, msg, f"write {info.name}: followed by indented keys"
        )
    return convert_record(info.record, node, path, ctx)


def _record_list(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    assert info.record is not None
    name = info.record.__name__
    if node.kind is not Kind.SEQUENCE:
        msg = f"found {node.describe()}; expected a list of {name} mappings"
        return ctx.bad(Code.P_TYPE, path, node, msg, f"write {info.name}: then '- ' items")
    out = []
    for i, item in enumerate(node.items):
        sub = join(path, str(i))
        if item.kind is not Kind.MAPPING:
            msg = f"found {item.describe()}; expected a mapping of {name} fields"
            out.append(ctx.bad(Code.P_NOT_MAPPING, sub, item, msg, "write '- key: value'"))
        else:
            out.append(convert_record(info.record, item, sub, ctx))
    return BAD if BAD in out else tuple(out)


def _override(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    """A partial plan, kept as plain data; the loader builds and validates the plan it
    makes (:mod:`dagen.plan.variant`)."""
    if node.kind is not Kind.MAPPING or not node.entries:
        msg = f"found {node.describe()}; expected a mapping of plan sections to change"
        return ctx.bad(Code.P_NOT_MAPPING, path, node, msg, "write e.g. vs: {parallel: {pp: 2}}")
    return _plain(node)


def _plain(node: YNode) -> Any:
    if node.kind is Kind.MAPPING:
        return {k: _plain(v) for k, v in node.entries.items()}
    if node.kind is Kind.SEQUENCE:
        return [_plain(v) for v in node.items]
    return node.value


_CONVERT: dict[FKind, Callable[[FieldInfo, YNode, str, Context], Any]] = {
    FKind.INT: _int,
    FKind.FLOAT: _float,
    FKind.BOOL: _bool,
    FKind.STR: _str,
    FKind.ENUM: _enum,
    FKind.RECORD: _record,
    FKind.INT_TUPLE: _int_tuple,
    FKind.DTYPE_MAP: _dtype_map,
    FKind.COUNT: _count,
    FKind.RECORD_LIST: _record_list,
    FKind.OVERRIDE: _override,
}


def _value(info: FieldInfo, node: YNode, path: str, ctx: Context) -> Any:
    if node.kind is Kind.SCALAR and node.value is None:
        if info.optional:
            return None
        fix = f"write a value, or delete the key to use the default {info.default_text()}"
        if info.required or info.derived:
            fix = f"write a value ({info.doc[0].lower()}{info.doc[1:].rstrip('.')})"
        return ctx.bad(Code.P_TYPE, path, node, f"found null; expected {info.kind.value}", fix)
    return _CONVERT[info.kind](info, node, path, ctx)


# ------------------------------------------------------------------ records


def _unknown_keys(node: YNode, names: list[str], path: str, ctx: Context) -> None:
    for key in node.entries:
        if key in names:
            continue
        line, col = node.keys[key]
        where = YNode(kind=Kind.SCALAR, value=key, line=line, column=col)
        msg = f"found the key '{key}', which {section_name(path)} does not have"
        ctx.bad(Code.P_UNKNOWN_KEY, join(path, key), where, msg, _suggest(key, names))


def convert_record(cls: type[Any], node: YNode, path: str, ctx: Context) -> Any:
    """The record ``cls`` read from the mapping ``node`` at ``path``, or :data:`BAD`."""
    infos = record_fields(cls)
    _unknown_keys(node, [f.name for f in infos], path, ctx)
    values: dict[str, Any] = {}
    ok = True
    for info in infos:
        child = node.get(info.name)
        if child is None:
            if info.required:
                missing(info, node, path, ctx)
                ok = False
            continue
        value = _value(info, child, join(path, info.name), ctx)
        ok = ok and value is not BAD
        values[info.name] = value
    if not ok or not derive(cls, values, node, path, ctx):
        return BAD
    return cls(**values)
