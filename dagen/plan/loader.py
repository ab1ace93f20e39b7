"""Load a plan file into a :class:`~dagen.plan.model.Plan`, or report every problem.

The steps, each collecting ``P-…`` findings (:func:`dagen.findings.problem`) rather than
stopping at the first:

1. read the text safely (:mod:`dagen.plan.yamlsrc`: size limit, no tags executed,
   alias bombs and duplicate keys refused, every value with its line and column);
2. fill the ``model`` block from ``model.hf_config`` (:mod:`dagen.plan.hf`) and the
   ``hardware`` block from ``hardware.preset`` (:data:`dagen.plan.presets.PRESETS`);
   keys written in the plan override both, ``peak_tflops`` per dtype;
3. check every value against its field's type and bounds, read from the dataclass
   metadata (:func:`dagen.plan.schema.record_fields`), unknown keys answered with
   "did you mean";
4. derive ``model.kv_heads`` (= heads), ``model.head_dim`` (= hidden_size / heads,
   or qk_nope + qk_rope with MLA) and ``name`` (= the file's stem).

If anything is wrong, one :class:`~dagen.errors.PlanError` carries all of it.
Otherwise the plan's ``locations`` map every dotted path (``parallel.tp``,
``model.moe.experts``, ``""`` for the document) to where it was written; a value
from hf_config or a preset points at the ``hf_config``/``preset`` line.

Example:
    >>> plan = load_plan("tests/data/plans/tiny_moe.yaml")  # doctest: +SKIP
    >>> plan.parallel.ep, plan.where("parallel.ep")  # doctest: +SKIP
    (4, Origin(file='', line=22, column=7, flag=''))
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagen.errors import PlanError
from dagen.findings import Code, Finding, Origin, printable, problem
from dagen.plan.convert import BAD, Context, convert_record, join
from dagen.plan.files import Refused, read_limited
from dagen.plan.hf import read_hf_config
from dagen.plan.model import Plan
from dagen.plan.presets import PRESETS
from dagen.plan.products import product_problems
from dagen.plan.variant import Override, flag_origins, overlay, override_node
from dagen.plan.yamlsrc import MAX_BYTES, compose_text, too_large
from dagen.plan.ynode import Kind, YNode, plain

__all__ = ["flag_comments", "load_plan", "load_plan_root", "load_plan_text"]


def load_plan(path: str | os.PathLike[str], overrides: Sequence[Override] | None = None) -> Plan:
    """Load and validate the plan file at ``path``.

    Raises:
        PlanError: with every problem found, each with its line and column.
    """
    p = Path(path)
    source = str(p)
    try:
        text = read_limited(p, MAX_BYTES).decode("utf-8")
    except Refused as exc:
        big = too_large(exc.size) if exc.size is not None else None
        raise PlanError([big or _file_problem(exc.reason, exc.fix)], source) from None
    except FileNotFoundError:
        problem = _file_problem(f"no plan file at {source}", "check the path")
        raise PlanError([problem], source) from None
    except UnicodeDecodeError as exc:
        msg = f"the file is not UTF-8 text (byte {exc.start})"
        raise PlanError([_file_problem(msg, "save the plan as UTF-8 YAML")], source) from None
    except OSError as exc:
        msg = f"cannot read {source}: {exc.strerror or exc}"
        raise PlanError(
            [_file_problem(msg, "check the path and its permissions")], source
        ) from None
    return load_plan_text(text, source=source, base_dir=p.parent, overrides=overrides)


def _first_at_each(problems: list[Finding]) -> list[Finding]:
    """Drop the ``found null`` a value the parser could not read leaves behind: the
    parser's own problem (P-TAG, P-RANGE) at the same path says it."""
    unread = {p.path for p in problems if p.code in (Code.P_TAG, Code.P_RANGE)}
    return [p for p in problems if not (p.code == Code.P_TYPE and p.path in unread)]


def _file_problem(message: str, fix: str) -> Finding:
    return problem(Code.P_FILE, message, fix)


def load_plan_text(
    text: str,
    source: str = "<string>",
    base_dir: Path | None = None,
    overrides: Sequence[Override] | None = None,
) -> Plan:
    """Load and validate a plan from YAML ``text``.

    Args:
        text: The YAML.
        source: Name used in messages; its stem is the plan's default name.
        base_dir: Directory ``model.hf_config`` is relative to (default: the
            current directory).
        overrides: Values written over the file's (``dagen compare --vary``), each
            naming the flag that gave it.

    Raises:
        PlanError: with every problem found.

    Example:
        >>> try:
        ...     load_plan_text("parallel: {tp: 2.5}\\n")
        ... except PlanError as err:
        ...     sorted({p.code for p in err.problems})
        ['P-MISSING', 'P-TYPE']
    """
    root, problems = compose_text(text)
    if root is None:
        raise PlanError(problems, source)
    if root.kind is not Kind.MAPPING:
        msg = f"the document is {root.describe()}; a plan is a mapping of sections"
        fix = "start the file with 'model:', 'parallel:', 'workload:' and 'hardware:' sections"
        problems.append(_at(Code.P_NOT_MAPPING, "", root, msg, fix))
        raise PlanError(problems, source)
    return load_plan_root(root, problems, source, base_dir, overrides, text)


def load_plan_root(
    root: YNode,
    problems: list[Finding],
    source: str,
    base_dir: Path | None = None,
    overrides: Sequence[Override] | None = None,
    text: str = "",
) -> Plan:
    """The plan of a composed YAML mapping ``root`` (``problems``: the composer's), as
    :func:`load_plan_text`; a deployment's pools are each loaded this way.

    Raises:
        PlanError: with every problem found.
    """
    if overrides:
        root = overlay(root, override_node(overrides))
    base = base_dir or Path.cwd()
    ctx = Context(problems=problems, stem=_stem(source))
    plan = _convert(root, base, ctx)
    if plan is not BAD and plan.claims:
        plan = dataclasses.replace(plan, alternatives=_alternatives(root, plan, base, ctx))
    flags = flag_comments(text)
    if ctx.problems or plan is BAD:
        raise PlanError([_flagged(p, flags) for p in _first_at_each(ctx.problems)], source)
    written = {k: _flag_origin(v, flags) for k, v in ctx.locations.items()}
    locations = dict(sorted({**written, **flag_origins(overrides or ())}.items()))
    out: Plan = dataclasses.replace(plan, source=printable(source), locations=locations)
    overflow = product_problems(out)
    if overflow:
        raise PlanError(overflow, source)
    return out


def _convert(root: YNode, base_dir: Path, ctx: Context) -> Any:
    """The plan ``root`` describes (sources filled in), or :data:`BAD`."""
    _record_locations(root, "", ctx.locations, key_at=(root.line, root.column))
    return convert_record(Plan, _with_sources(root, base_dir, ctx), "", ctx)


def _alternatives(root: YNode, plan: Plan, base_dir: Path, ctx: Context) -> tuple[Any, ...]:
    """For each claim, the plan its ``vs`` writes over this one (claims and targets
    left out), or None; a problem in one is reported at its own line, naming the claim."""
    items = root.entries["claims"].items
    bare = dataclasses.replace(
        root, entries={k: v for k, v in root.entries.items() if k not in ("claims", "targets")}
    )
    out: list[Any] = []
    for i, claim in enumerate(plan.claims):
        vs = items[i].get("vs")
        if vs is None:
            out.append(None)
            continue
        sub = Context(stem=f"{plan.name}.vs{i}")
        alt = _convert(overlay(bare, vs), base_dir, sub)
        what = f"claims.{i}" + (f" ({claim.says!r})" if claim.says else "")
        for p in sub.problems:
            message = f"{what}: the alternative plan: {p.message}"
            ctx.problems.append(dataclasses.replace(p, message=message))
        out.append(None if alt is BAD else alt)
    return tuple(out)


_FLAG_COMMENT = re.compile(r"(?:^|\s)#\s*flag:\s*(?P<flag>\S.*?)\s*$")


def flag_comments(text: str) -> dict[int, str]:
    """Line (1-based) → the flag a ``# flag: …`` comment at its end names.

    ``dagen import`` writes one after every value it traced to a command-line flag, so
    findings on the plan point at that flag as well as at the line.

    >>> flag_comments("parallel:\\n  tp: 4  # flag: -tp 4\\n")
    {2: '-tp 4'}
    """
    out: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FLAG_COMMENT.search(line)
        if match is not None and line.lstrip()[:1] != "#":
            out[number] = match["flag"]
    return out


def _flag_origin(origin: Origin, flags: dict[int, str]) -> Origin:
    flag = flags.get(origin.line or 0)
    if flag is None or origin.flag:
        return origin
    return dataclasses.replace(origin, flag=flag)


def _flagged(f: Finding, flags: dict[int, str]) -> Finding:
    if f.origin is None or not flags:
        return f
    return dataclasses.replace(f, origin=_flag_origin(f.origin, flags))


def _stem(source: str) -> str:
    if source.startswith("<"):
        return "plan"
    return Path(source).stem or "plan"


def _at(code: Code, path: str, node: YNode, message: str, fix: str) -> Finding:
    return problem(code, message, fix, path=path, line=node.line, column=node.column)


def _record_locations(
    node: YNode, path: str, out: dict[str, Origin], key_at: tuple[int, int]
) -> None:
    """Map each dotted path to its value (scalars) or its key (lists and mappings)."""
    if node.kind is Kind.SCALAR:
        out[path] = Origin(line=node.line, column=node.column)
        return
    out[path] = Origin(line=key_at[0], column=key_at[1])
    if node.kind is Kind.MAPPING:
        for key, child in node.entries.items():
            _record_locations(child, join(path, key), out, node.keys[key])
    else:
        for i, child in enumerate(node.items):
            _record_locations(child, join(path, str(i)), out, (child.line, child.column))


# ------------------------------------------------------- hf_config and presets


def _synthetic(
    values: dict[str, Any], origins: dict[str, str], prefix: str, at: YNode, what: str
) -> YNode:
    """A mapping node for values read from elsewhere, each naming its origin."""
    entries: dict[str, YNode] = {}
    for key, value in values.items():
        sub = join(prefix, key)
        if isinstance(value, dict) and key in ("moe", "mla"):
            entries[key] = _synthetic(value, origins, sub, at, what)
            continue
        origin = f"{what} '{origins[sub]}'" if sub in origins else what
        entries[key] = plain(value, at.line, at.column, origin)
    keys = dict.fromkeys(entries, (at.line, at.column))
    return YNode(kind=Kind.MAPPING, line=at.line, column=at.column, entries=entries, keys=keys)


def _locate_synthetic(node: YNode, path: str, ctx: Context, at: YNode) -> None:
    for key, child in node.entries.items():
        sub = join(path, key)
        ctx.locations.setdefault(sub, Origin(line=at.line, column=at.column))
        if child.kind is Kind.MAPPING:
            _locate_synthetic(child, sub, ctx, at)


def _given(node: YNode, dotted: str) -> bool:
    for part in dotted.split("."):
        child = node.get(part) if node.kind is Kind.MAPPING else None
        if child is None:
            return False
        node = child
    return True


def _model_from_hf(model: YNode, base_dir: Path, ctx: Context) -> YNode:
    ref = model.get("hf_config")
    if ref is None or ref.kind is not Kind.SCALAR or not isinstance(ref.value, str):
        return model  # absent, or a type problem the record check reports
    hf = read_hf_config((base_dir / ref.value).expanduser())
    for target, (msg, fix) in hf.issues.items():
        if target and _given(model, target):
            continue  # the plan overrides the value the config lacks
        path = "model.hf_config" if not target else f"model.{target}"
        ctx.problems.append(_at(Code.P_HF_CONFIG, path, ref, f"hf_config {ref.value}: {msg}", fix))
    if "" in hf.issues:
        ctx.quiet.add("model")
        return model
    base = _synthetic(hf.values, hf.origins, "", ref, "hf_config key")
    _locate_synthetic(base, "model", ctx, ref)
    return overlay(base, model)


def _preset_problem(ref: YNode, name: str) -> Finding:
    names = list(PRESETS)
    folded = {n.lower(): n for n in names}
    guess = folded.get(name.lower()) or next(
        iter(difflib.get_close_matches(name, names, n=1, cutoff=0.5)), None
    )
    hint = f"did you mean '{guess}'? " if guess else ""
    msg = f"found the preset '{name}'; dagen has no such hardware preset"
    fix = f"{hint}presets: {', '.join(names)} (or write every hardware field yourself)"
    return _at(Code.P_PRESET, "hardware.preset", ref, msg, fix)


def _hardware_from_preset(hardware: YNode, ctx: Context) -> YNode:
    ref = hardware.get("preset")
    if ref is None or ref.kind is not Kind.SCALAR or not isinstance(ref.value, str):
        return hardware
    if ref.value not in PRESETS:
        ctx.problems.append(_preset_problem(ref, ref.value))
        ctx.quiet.add("hardware")
        return hardware
    values = {k: dict(v) if isinstance(v, Mapping) else v for k, v in PRESETS[ref.value].items()}
    base = _synthetic(values, {}, "", ref, f"preset '{ref.value}'")
    _locate_synthetic(base, "hardware", ctx, ref)
    return overlay(base, hardware)


def _with_sources(root: YNode, base_dir: Path, ctx: Context) -> YNode:
    entries = dict(root.entries)
    model = entries.get("model")
    if model is not None and model.kind is Kind.MAPPING:
        entries["model"] = _model_from_hf(model, base_dir, ctx)
    hardware = entries.get("hardware")
    if hardware is not None and hardware.kind is Kind.MAPPING:
        entries["hardware"] = _hardware_from_preset(hardware, ctx)
    return dataclasses.replace(root, entries=entries)
