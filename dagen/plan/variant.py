"""Plans written over plans: a claim's alternative (``vs``) and ``dagen compare --vary``.

An override is a partial plan laid over the file's YAML tree before anything is read
from it, so the variant goes through every step a plan file does (presets, hf_config,
types, bounds) and each problem points at the value that caused it: a ``vs`` value at
its own line, a ``--vary`` value at its flag.

A ``--vary`` key is a dotted plan path (``parallel.pp``, ``workload.batch``) or the bare
name of a ``parallel``, ``workload`` or ``hardware`` field (``pp`` means ``parallel.pp``).

Example:
    >>> o = parse_vary("pp=2,4")
    >>> [(v.path, v.value, v.flag) for v in o]
    [('parallel.pp', 2, '--vary pp=2'), ('parallel.pp', 4, '--vary pp=4')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dagen.errors import PlanError
from dagen.findings import Code, Origin, finding
from dagen.plan.schema import SECTIONS, record_fields
from dagen.plan.ynode import Kind, YNode, plain

__all__ = ["Override", "flag_origins", "overlay", "override_node", "parse_vary"]

_SHORT_SECTIONS = ("parallel", "workload", "hardware")
"""Sections whose field names may be given bare to ``--vary``, searched in this order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """One value written over a plan."""

    path: str
    """Dotted plan path, e.g. ``parallel.pp``."""
    value: Any
    flag: str
    """The flag that gave it, for messages (``--vary pp=2``)."""


def overlay(base: YNode, top: YNode) -> YNode:
    """``top`` written over ``base``; mappings merge key by key, anything else replaces."""
    if base.kind is not Kind.MAPPING or top.kind is not Kind.MAPPING:
        return top
    entries = dict(base.entries)
    for key, child in top.entries.items():
        entries[key] = overlay(base.entries[key], child) if key in base.entries else child
    return dataclasses.replace(top, entries=entries, keys={**base.keys, **top.keys})


def override_node(overrides: Sequence[Override]) -> YNode:
    """One YAML tree holding every override, each value naming its flag."""
    tree: dict[str, Any] = {}
    for o in overrides:
        *parents, leaf = o.path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = plain(o.value, 0, 0, f"flag {o.flag}")
    return _tree(tree)


def _tree(values: dict[str, Any]) -> YNode:
    entries = {k: v if isinstance(v, YNode) else _tree(v) for k, v in values.items()}
    return YNode(kind=Kind.MAPPING, entries=entries, keys=dict.fromkeys(entries, (0, 0)))


def flag_origins(overrides: Iterable[Override]) -> dict[str, Origin]:
    """Where each overridden value came from: its flag."""
    return {o.path: Origin(flag=o.flag) for o in overrides}


def _known_paths() -> dict[str, str]:
    """Every settable dotted path, and the bare names of the short sections' fields."""
    paths: dict[str, str] = {}
    for section, cls in SECTIONS:
        if section.startswith("(") or section.endswith("[]"):
            continue
        for f in record_fields(cls):
            paths[f"{section}.{f.name}"] = f"{section}.{f.name}"
    for section in reversed(_SHORT_SECTIONS):
        for path in list(paths):
            if path.startswith(section + ".") and path.count(".") == 1:
                paths[path.split(".", 1)[1]] = path
    return paths


def _bad_flag(flag: str, message: str, fix: str) -> PlanError:
    found = finding(Code.P_UNKNOWN_KEY, message, fix=fix, origin=Origin(flag=flag))
    return PlanError([found], "")


def parse_vary(spec: str) -> list[Override]:
    """``key=v1,v2,…`` → one :class:`Override` per value (values read as YAML scalars).

    Raises:
        PlanError: the key is not a plan field, or no value is given.
    """
    key, sep, values = spec.partition("=")
    key = key.strip()
    flag = f"--vary {spec}"
    if not sep or not values.strip():
        raise _bad_flag(flag, f"'{spec}' gives no value", "write --vary KEY=V1,V2 (e.g. pp=2,4)")
    path = _known_paths().get(key)
    if path is None:
        raise _bad_flag(
            flag,
            f"'{key}' is not a plan field",
            "use a dotted path such as parallel.pp or workload.batch, or a bare parallel, "
            "workload or hardware field such as tp, pp, dp, ep, micro_batches",
        )
    out = []
    for text in values.split(","):
        value = yaml.safe_load(text.strip()) if text.strip() else None
        out.append(Override(path=path, value=value, flag=f"--vary {key}={text.strip()}"))
    return out
