"""A disaggregated deployment: named pools (prefill, decode) sharing one model and one
serving workload, each with its own layout, hardware and count of units.

A deployment file is a plan file with a ``pools`` section. Everything outside
``pools`` (``model``, ``workload``, ``precision``, ``runtime``, ``cost``) is shared;
each pool writes its own ``parallel``, ``hardware``, ``units`` and the ``workload``
fields of its phase (``phase``, ``batch``, ``micro_batches``, ``decode_steps``) over
the shared ones, and is then loaded as a plan of its own (every value keeps its line
and column). ``claims`` at the top level are the deployment's: a comparative claim's
``vs`` is written over the *decode* pool's plan (``{workload: {mode: serving}}``: the
same layout serving prefill and decode co-located), and is judged on the same GPUs
(docs/disaggregation.md). ``slo`` gives the TTFT and TPOT bounds of goodput.

A file without ``pools`` is a plain plan (:func:`dagen.plan.loader.load_plan`).

Example:
    >>> dep = load_deployment("samples/deepseek-v3-disagg.yaml")  # doctest: +SKIP
    >>> [(p.name, p.units, p.plan.mesh_world) for p in dep.pools]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagen.errors import PlanError
from dagen.findings import Code, Finding, Origin, problem
from dagen.plan.claims import Claim
from dagen.plan.convert import BAD, Context, convert_record
from dagen.plan.fields import spec
from dagen.plan.loader import load_plan_root
from dagen.plan.model import Plan
from dagen.plan.schema import plan_schema, record_schema
from dagen.plan.variant import overlay
from dagen.plan.yamlsrc import compose_text
from dagen.plan.ynode import Kind, YNode

__all__ = [
    "Deployment",
    "PoolPlan",
    "Slo",
    "deployment_schema",
    "is_deployment",
    "load_deployment",
]

POOL_KEYS = ("units", "model", "parallel", "hardware", "workload", "precision", "runtime",
             "targets")  # fmt: skip
"""What a pool may write; ``model`` only so that a disagreeing one can be named."""
_DEPLOYMENT_ONLY = ("pools", "claims", "slo", "targets")


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    """The service-level objectives goodput counts against (None: unbounded)."""

    ttft_s: float | None = spec(
        "Time to first token at most this.",
        default=None,
        unit="s",
        minimum=0,
        exclusive_minimum=True,
    )
    tpot_ms: float | None = spec(
        "Time per output token at most this.",
        default=None,
        unit="ms",
        minimum=0,
        exclusive_minimum=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolPlan:
    """One pool: its name, how many identical units of it serve, and its plan."""

    name: str
    units: int
    plan: Plan
    path: str
    """``pools.<name>``: where the pool is written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """Every pool of a deployment, its claims, SLOs and the co-located alternative."""

    name: str
    source: str
    pools: tuple[PoolPlan, ...]
    claims: tuple[Claim, ...] = ()
    alternatives: tuple[Plan | None, ...] = ()
    """Per claim, the plan its ``vs`` writes over the decode pool's (None: absolute)."""
    slo: Slo = Slo()
    locations: Mapping[str, Origin] = dataclasses.field(default_factory=dict)
    """``pools.<name>.<field>`` and ``claims.<i>`` → where it was written."""

    def pool(self, phase: str) -> PoolPlan:
        """The first pool of ``phase`` (``prefill`` or ``decode``)."""
        return next(p for p in self.pools if p.plan.workload.phase.value == phase)

    def where(self, path: str) -> Origin | None:
        """Where ``path`` (``pools.decode.hardware.memory_gib``) was written, if known."""
        if path in self.locations:
            return self.locations[path]
        parts = path.split(".")
        if len(parts) > 2 and parts[0] == "pools":
            for p in self.pools:
                if p.name == parts[1]:
                    return p.plan.where(".".join(parts[2:]))
        return None


def is_deployment(text: str) -> bool:
    """Whether the YAML ``text`` has a top-level ``pools`` section."""
    root, _ = compose_text(text)
    return root is not None and root.kind is Kind.MAPPING and "pools" in root.entries


def _at(code: Code, node: YNode, path: str, message: str, fix: str) -> Finding:
    return problem(code, message, fix, path=path, line=node.line, column=node.column)


def _pool_root(root: YNode, node: YNode) -> YNode:
    """The shared sections with the pool's own written over them (units left out)."""
    shared = {k: v for k, v in root.entries.items() if k not in _DEPLOYMENT_ONLY}
    base = dataclasses.replace(root, entries=shared)
    own = dataclasses.replace(node, entries={k: v for k, v in node.entries.items() if k != "units"})
    return overlay(base, own)


def _units(name: str, node: YNode, problems: list[Finding]) -> int:
    u = node.get("units")
    if u is None:
        return 1
    if isinstance(u.value, bool) or not isinstance(u.value, int) or u.value < 1:
        problems.append(_at(Code.P_RANGE, u, f"pools.{name}.units", f"found {u.value!r}; "
                            "expected a whole number of units ≥ 1", "write units: 1 or more"))  # fmt: skip
        return 1
    return int(u.value)


def _load_pool(
    name: str, node: YNode, root: YNode, source: str, base: Path, problems: list[Finding]
) -> PoolPlan | None:
    path = f"pools.{name}"
    if node.kind is not Kind.MAPPING:
        problems.append(_at(Code.P_NOT_MAPPING, node, path, f"the pool is {node.describe()}",
                            "write each pool as a mapping of its sections"))  # fmt: skip
        return None
    for key in node.entries:
        if key not in POOL_KEYS:
            line, col = node.keys[key]
            problems.append(problem(Code.P_UNKNOWN_KEY, f"{path}.{key}: a pool has no {key!r}",
                                    f"a pool writes {', '.join(POOL_KEYS)}", path=f"{path}.{key}",
                                    line=line, column=col))  # fmt: skip
    units = _units(name, node, problems)
    try:
        plan = load_plan_root(_pool_root(root, node), [], source, base)
    except PlanError as err:
        for p in err.problems:
            problems.append(dataclasses.replace(p, message=f"{path}: {p.message}",
                                                path=f"{path}.{p.path}" if p.path else path))  # fmt: skip
        return None
    plan = dataclasses.replace(plan, name=f"{plan.name}.{name}")
    return PoolPlan(name=name, units=units, plan=plan, path=path)


def _slo(root: YNode, problems: list[Finding]) -> Slo:
    node = root.get("slo")
    if node is None:
        return Slo()
    ctx = Context(problems=problems, stem="slo")
    out = convert_record(Slo, node, "slo", ctx)
    return Slo() if out is BAD else out


def _claims(
    root: YNode, decode: PoolPlan | None, source: str, base: Path, problems: list[Finding]
) -> tuple[tuple[Claim, ...], tuple[Plan | None, ...]]:
    node = root.get("claims")
    if node is None:
        return (), ()
    claims: list[Claim] = []
    alts: list[Plan | None] = []
    for i, item in enumerate(node.items):
        ctx = Context(problems=problems, stem="claims")
        claim = convert_record(Claim, item, f"claims.{i}", ctx)
        if claim is BAD:
            continue
        claims.append(claim)
        vs = item.get("vs")
        if vs is None or decode is None:
            alts.append(None)
            continue
        pool_node = root.entries["pools"].entries[decode.name]
        bare = _pool_root(root, pool_node)
        try:
            alts.append(load_plan_root(overlay(bare, vs), [], source, base))
        except PlanError as err:
            problems += [dataclasses.replace(p, message=f"claims.{i}: the co-located alternative: "
                                             f"{p.message}") for p in err.problems]  # fmt: skip
            alts.append(None)
    return tuple(claims), tuple(alts)


def load_deployment(path: str | Path) -> Deployment:
    """Load and validate the deployment file at ``path`` (every pool as a plan).

    Raises:
        PlanError: with every problem of every pool, each message naming its pool.
    """
    p = Path(path)
    source = str(p)
    text = p.read_text(encoding="utf-8")
    root, problems = compose_text(text)
    if root is None or root.kind is not Kind.MAPPING or "pools" not in root.entries:
        raise PlanError(problems or [problem(Code.P_NOT_MAPPING, "no pools section",
                                             "write pools: {prefill: …, decode: …}")], source)  # fmt: skip
    pools_node = root.entries["pools"]
    pools: list[PoolPlan] = []
    if pools_node.kind is not Kind.MAPPING or len(pools_node.entries) < 2:
        problems.append(_at(Code.P_NOT_MAPPING, pools_node, "pools", "pools must map at least "
                            "two pool names to their sections", "write pools: {prefill: …, decode: …}"))  # fmt: skip
    else:
        for name, node in pools_node.entries.items():
            pool = _load_pool(name, node, root, source, p.parent, problems)
            if pool is not None:
                pools.append(pool)
    decode = next((q for q in pools if q.plan.workload.decoding), None)
    claims, alts = _claims(root, decode, source, p.parent, problems)
    slo = _slo(root, problems)
    if problems:
        raise PlanError(problems, source)
    locations = _locations(root)
    name_node = root.get("name")
    name = str(name_node.value) if name_node is not None else p.stem
    return Deployment(name=name, source=source, pools=tuple(pools), claims=claims,
                      alternatives=alts, slo=slo, locations=locations)  # fmt: skip


def _locations(root: YNode) -> dict[str, Origin]:
    """``pools.<name>``, ``pools.<name>.units``, ``claims.<i>`` and ``slo.*`` positions."""
    out: dict[str, Origin] = {}

    def put(path: str, node: YNode) -> None:
        out[path] = Origin(line=node.line, column=node.column)

    for name, node in root.entries["pools"].entries.items():
        put(f"pools.{name}", node)
        if node.get("units") is not None:
            put(f"pools.{name}.units", node.entries["units"])
    claims = root.get("claims")
    for i, item in enumerate(claims.items if claims is not None else ()):
        put(f"claims.{i}", item)
    slo = root.get("slo")
    for key, node in slo.entries.items() if slo is not None else ():
        put(f"slo.{key}", node)
    return out


def pool_plans(dep: Deployment) -> list[tuple[str, Plan]]:
    """(name, plan) of every pool, in file order (what :func:`build_pools` takes)."""
    return [(p.name, p.plan) for p in dep.pools]


def _loose(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with nothing required: a pool writes only what it changes."""
    return {k: v for k, v in schema.items() if k not in ("required", "anyOf")}


def deployment_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a deployment file: a plan's sections, shared, and
    ``pools`` (at least two), each a pool's own sections with nothing required (which
    fields the merged plan lacks is the loader's to say), plus ``slo``.

    >>> sorted(deployment_schema()["properties"]["pools"]["additionalProperties"]["properties"])
    ['hardware', 'model', 'parallel', 'precision', 'runtime', 'targets', 'units', 'workload']
    """
    plan = plan_schema()
    defs = {name: _loose(d) for name, d in plan["$defs"].items()}
    section = {key: plan["properties"][key] for key in POOL_KEYS if key != "units"}
    pool = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "units": {"type": "integer", "minimum": 1, "description": "Identical units of the pool."},
            **section,
        },
    }  # fmt: skip
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dagen.dev/schemas/deployment.json",
        "title": "dagen deployment",
        "type": "object",
        "description": "A disaggregated deployment: pools sharing a model and a workload.",
        "properties": {
            **plan["properties"],
            "pools": {"type": "object", "minProperties": 2, "additionalProperties": pool},
            "slo": record_schema(Slo),
        },
        "required": ["model", "pools"],
        "additionalProperties": False,
        "$defs": defs,
    }
