"""JSON Schema of the ``dagen.dag`` document (``dagen schema dag`` prints it).

The schema requires every key a reader relies on and pins the enumerated labels; it
accepts unknown keys everywhere, since dagen may add keys within version 1. The one open
set of labels is a node's ``op``: ops are added within version 1 (an op is three lines,
docs/architecture.md), so ``op`` is any string of the label grammar :data:`OP_PATTERN`,
and the ops this dagen writes are listed under ``examples``, not ``enum``: a consumer's
validator does not reject a document written by a newer dagen.
"""

from __future__ import annotations

from typing import Any

from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, GroupKind, Kind

__all__ = ["FORMAT", "OP_PATTERN", "VERSION", "dag_schema"]

FORMAT = "dagen.dag"
"""Value of the document's ``format`` key."""
VERSION = 1
"""Value of the document's ``version`` key; bumped when a reader would break."""

OP_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
"""Grammar of op labels: dot-separated lower-case words (``attn.qkv``, ``moe.etp_reduce``)."""

_INT: dict[str, Any] = {"type": "integer"}
_NAT: dict[str, Any] = {"type": "integer", "minimum": 0}
_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}


def _enum(values: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": values}


def _object(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    # Open objects: a version-1 reader must accept keys added later (docs/json-format.md).
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


def _node() -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": {"type": "string", "description": "Readable id, e.g. r17/s1/L5/mb2/attn.qkv."},
        "rank": _NAT,
        "host": _NAT,
        "replica": _NAT,
        "stage": _NAT,
        "layer": {"type": "integer", "minimum": -1, "description": "-1 outside layers."},
        "mb": _NAT,
        "step": _NAT,
        "op": {
            "type": "string",
            "pattern": OP_PATTERN,
            "description": "Operator label; new ops may appear within version 1, the known "
            "ones are listed in examples (docs/graph.md describes each).",
            "examples": list(OP_LABELS),
        },
        "kind": _enum([k.label for k in Kind]),
        "expert": {"type": "integer", "minimum": -1, "description": "-1 unless routed."},
        "coll": _enum([c.label for c in Coll]),
        "inst": _NAT,
        "group": _NAT,
        "peer": _NAT,
        "shape": {"type": "array", "items": _NAT},
        "bytes": _NAT,
        "flops": _NUM_OR_NULL,
        "start_s": _NUM_OR_NULL,
        "duration_s": _NUM_OR_NULL,
    }
    required = [
        k for k in props if k not in {"coll", "inst", "group", "peer", "start_s", "duration_s"}
    ]
    node = _object(props, required)
    collective = {"properties": {"kind": {"const": Kind.COLLECTIVE.label}}}
    p2p = {"properties": {"kind": _enum([Kind.SEND.label, Kind.RECV.label])}}
    node["allOf"] = [
        {"if": collective, "then": {"required": ["coll", "inst", "group"]}},
        {"if": p2p, "then": {"required": ["peer"]}},
        {"dependentRequired": {"start_s": ["duration_s"], "duration_s": ["start_s"]}},
    ]
    return node


def _finding() -> dict[str, Any]:
    nullable_int: dict[str, Any] = {"type": ["integer", "null"]}
    strings: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    props: dict[str, Any] = {
        "code": {"type": "string"},
        "severity": _enum(["error", "warning", "info"]),
        "message": {"type": "string"},
        "fix": {"type": "string"},
        "path": {"type": "string"},
        "line": nullable_int,
        "column": nullable_int,
        "nodes": strings,
        "ranks": {"type": "array", "items": _NAT},
        "data": {"type": "object"},
    }
    return _object(props)


def _estimate() -> dict[str, Any]:
    props: dict[str, Any] = {
        "makespan_s": _NUM_OR_NULL,
        "ttft_s": _NUM_OR_NULL,
        "tpot_s": _NUM_OR_NULL,
        "tokens_per_s": _NUM_OR_NULL,
        "tokens_per_s_per_gpu": _NUM_OR_NULL,
        "bubble_fraction": _NUM_OR_NULL,
        "memory": {"type": "object", "required": ["capacity_bytes", "per_rank"]},
        "busy_fraction": {"type": ["array", "null"], "items": {"type": "number"}},
        "critical_path": _object(
            {"length": _NAT, "nodes": {"type": "array", "items": {"type": "string"}}}
        ),
        "verdicts": {"type": "array", "items": {"type": "object"}},
        "priced_by": {"type": "object", "additionalProperties": {"type": "number"}},
        "cost_notes": {"type": "array", "items": {"type": "string"}},
    }
    required = [k for k in props if k not in ("priced_by", "cost_notes")]
    return {"oneOf": [{"type": "null"}, _object(props, required)]}


def _mesh() -> dict[str, Any]:
    per_rank = {"type": "array", "items": _NAT}
    props: dict[str, Any] = {
        "world": {"type": "integer", "minimum": 1},
        "gpus_per_node": {"type": "integer", "minimum": 1},
        "hosts": {"type": "integer", "minimum": 1},
        "order": {"type": "array", "items": {"type": "string"}},
        "convention": {"type": "string"},
        "sizes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "host": per_rank,
        "coords": {"type": "object", "additionalProperties": per_rank},
    }
    return _object(props)


def _rows() -> dict[str, Any]:
    group = _object(
        {
            "id": _NAT,
            "kind": _enum([k.label for k in GroupKind]),
            "members": {"type": "array", "items": _NAT, "minItems": 1},
        }
    )
    inst = _object({"id": _NAT, "coll": _enum([c.label for c in Coll]), "group": _NAT})
    edge = _object(
        {
            "source": {"type": "string"},
            "target": {"type": "string"},
            "kind": _enum([k.label for k in EdgeKind]),
        }
    )
    return {
        "groups": {"type": "array", "items": group},
        "collectives": {"type": "array", "items": inst},
        "nodes": {"type": "array", "items": _node()},
        "edges": {"type": "array", "items": edge},
    }


def dag_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every ``dagen.dag`` document validates against.

    Example:
        >>> dag_schema()["properties"]["format"]["const"]
        'dagen.dag'
    """
    graph_keys = ["name", "model", "world", "nodes", "edges", "collectives", "groups"]
    plan_keys = ["name", "model", "parallel", "workload", "hardware", "world"]
    one_plan = {"type": "object", "required": plan_keys}
    pools = {  # a deployment: each pool's plan by its name
        "type": "object",
        "required": ["pools"],
        "properties": {"pools": {"type": "object", "additionalProperties": one_plan}},
    }
    props: dict[str, Any] = {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "directed": {"const": True},
        "multigraph": {"const": True},
        "graph": {"type": "object", "required": graph_keys},
        "plan": {"anyOf": [one_plan, pools]},
        "mesh": _mesh(),
        "meta": {"type": "object"},
        "findings": {"type": "array", "items": _finding()},
        "estimate": _estimate(),
    } | _rows()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dagen.dag: a per-GPU operator and communication DAG",
        "description": "Written by dagen's JSON exporter; see docs/json-format.md.",
    } | _object(props)
