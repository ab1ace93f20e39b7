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
from dataclasses import dataclass, field
from typing import Any

from dagen.findings import Code, Finding, Origin, printable, problem
from dagen.plan.aliases import ALIASES
from dagen.plan.claims import Claim
from dagen.plan.model import RATE_KEYS, Hardware, Mode, Model, Phase, Plan, Workload
from dagen.plan.numbers import LAYERS_MAX, fmt_number, int_fix, is_int, number_problem
from dagen.plan.params import parse_count
from dagen.plan.schema import FieldInfo, FKind, record_fields
from dagen.plan.ynode import Kind, YNode

__all__ = ["BAD", "Context", "convert_record", "join"]


class _Bad:
    """Marker for a value that could not be converted (a problem was recorded)."""

    def __repr__(self) -> str:
        return "BAD"


BAD: Any = _Bad()

_ORDER_NAMES = ("tp", "cp", "ep", "dp", "pp")


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


def _section_name(path: str) -> str:
    return path or "the top level"


def _unknown_keys(node: YNode, names: list[str], path: str, ctx: Context) -> None:
    for key in node.entries:
        if key in names:
            continue
        line, col = node.keys[key]
        where = YNode(kind=Kind.SCALAR, value=key, line=line, column=col)
        msg = f"found the key '{key}', which {_section_name(path)} does not have"
        ctx.bad(Code.P_UNKNOWN_KEY, join(path, key), where, msg, _suggest(key, names))


def _missing(info: FieldInfo, node: YNode, path: str, ctx: Context) -> None:
    if path in ctx.quiet:
        return
    loc = ctx.locations.get(path) or Origin(line=node.line, column=node.column)
    where = YNode(kind=Kind.SCALAR, line=loc.line or node.line, column=loc.column or node.column)
    msg = f"{_section_name(path)} has no '{info.name}' ({info.doc.rstrip('.')}), which is required"
    fix = f"add '{info.name}: …' under {_section_name(path)}"
    if path == "hardware":
        fix += " or set 'preset:'"
    elif path == "model":
        fix += " or set 'hf_config:' to a config.json"
    ctx.bad(Code.P_MISSING, join(path, info.name), where, msg, fix)


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
                _missing(info, node, path, ctx)
                ok = False
            continue
        value = _value(info, child, join(path, info.name), ctx)
        ok = ok and value is not BAD
        values[info.name] = value
    if not ok or not _derive(cls, values, node, path, ctx):
        return BAD
    return cls(**values)


def _derive(cls: type[Any], values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    if cls is Plan:
        values.setdefault("name", ctx.stem)
    if cls is Model:
        return _derive_model(values, node, path, ctx)
    if cls is Workload:
        return _derive_workload(values, node, path, ctx)
    if cls is Hardware:
        return _derive_hardware(values, node, path, ctx)
    if cls is Claim:
        return _claim_form(values, node, path, ctx)
    return True


def _claim_form(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """A claim is absolute (``at_most`` or ``at_least``) or comparative (``vs`` with
    ``change``), exactly one of the three."""
    given = [k for k in ("at_most", "at_least", "vs") if values.get(k) is not None]
    if len(given) == 1 and (values.get("change") is not None) == (given[0] == "vs"):
        return True
    if given == ["vs"]:
        msg, fix = "the claim names an alternative (vs) but no change", "add 'change: -0.4'"
    elif values.get("change") is not None and not given:
        msg, fix = "the claim gives a change but no alternative", "add 'vs: {parallel: {pp: 2}}'"
    else:
        has = ", ".join(given + (["change"] if values.get("change") is not None else []))
        msg = f"the claim needs exactly one of at_most, at_least or vs + change; it has {has or 'none'}"
        fix = "keep one form per claim; write two claims for two statements"
    ctx.bad(Code.P_TYPE, path, node, msg, fix)
    return False


def _derive_hardware(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """Capacity in GiB from ``memory_gb`` (decimal) when only that is written."""
    if values.get("memory_gb") is not None:
        values["memory_gib"] = values["memory_gb"] * 1e9 / 2**30
    if "memory_gib" not in values:
        return _required(Hardware, "memory_gib", node, path, ctx)
    return True


def _required(cls: type[Any], name: str, node: YNode, path: str, ctx: Context) -> bool:
    """Report a derived field that nothing could derive as missing (always False)."""
    info = next(f for f in record_fields(cls) if f.name == name)
    _missing(dataclasses.replace(info, derived=False, required=True), node, path, ctx)
    return False


def _lengths(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """A length and its distribution are one or the other; a distribution is consistent
    and gives the length its rounded mean."""
    ok = True
    for length, key in (("prompt_len", "prompt_dist"), ("gen_len", "gen_dist")):
        dist = values.get(key)
        if dist is None:
            continue
        if (given := node.get(length)) is not None:
            msg = f"{length} and {key} both give the {length.split('_')[0]} length"
            ctx.bad(Code.P_TYPE, join(path, length), given, msg,
                    f"keep {key} (its mean sets {length}) or delete it")  # fmt: skip
            ok = False
            continue
        for sub, msg, fix in dist.problems():
            at = node.get(key)
            where = (at.get(sub) if at is not None else None) or at or node
            ctx.bad(Code.P_RANGE, join(path, f"{key}.{sub}"), where, msg, fix)
            ok = False
        if ok:
            mean = round(dist.expect(lambda x: x))
            values[length] = max(mean, 1) if length == "prompt_len" else mean
    if ok and "prompt_len" not in values:
        return _required(Workload, "prompt_len", node, path, ctx)
    return ok


def _derive_workload(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    """Serving: batch is the concurrency and the step is a decode iteration; static:
    batch is required and concurrency meaningless. Lengths: :func:`_lengths`."""
    if not _lengths(values, node, path, ctx):
        return False
    if values.get("mode", Mode.STATIC) is Mode.SERVING:
        conc = values.get("concurrency")
        if conc is None:
            conc = values.get("batch")
        if conc is None:
            msg = "workload.mode is serving but has no 'concurrency' (requests in flight)"
            fix = "add 'concurrency: …' under workload (a benchmark's max concurrency)"
            ctx.bad(Code.P_MISSING, join(path, "concurrency"), node, msg, fix)
            return False
        values.update(concurrency=conc, batch=conc, phase=Phase.DECODE)
        return True
    if "batch" not in values:
        return _required(Workload, "batch", node, path, ctx)
    if values.get("concurrency") is not None or values.get("prefill_chunk") is not None:
        key = "concurrency" if values.get("concurrency") is not None else "prefill_chunk"
        at = node.get(key) or node
        msg = f"{key} applies to serving workloads only; workload.mode is static"
        ctx.bad(Code.P_TYPE, join(path, key), at, msg, "set 'mode: serving' or delete the key")
        return False
    return True


def _derive_model(values: dict[str, Any], node: YNode, path: str, ctx: Context) -> bool:
    values.setdefault("kv_heads", values["heads"])
    if "head_dim" in values:
        return True
    mla = values.get("mla")
    hidden, heads = values["hidden_size"], values["heads"]
    if mla is not None:
        values["head_dim"] = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    elif hidden % heads == 0:
        values["head_dim"] = hidden // heads
    else:
        at = node.get("heads") or node
        msg = (
            f"head_dim is not given and hidden_size {hidden} is not a multiple of heads {heads} "
            f"({hidden} / {heads} = {hidden / heads:g})"
        )
        fix = f"set {join(path, 'head_dim')} (e.g. {max(1, hidden // heads)}) or use heads dividing {hidden}"
        ctx.bad(Code.P_HEAD_DIM, join(path, "head_dim"), at, msg, fix)
        return False
    return True
