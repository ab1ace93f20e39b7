"""A plan as plain JSON data: records to dicts, enums to values, tuples to lists.

:func:`plan_summary` is what the graph keeps of its plan (``Graph.source``): provenance
the outputs print, never an input to any computation.

Example:
    >>> from dagen.plan.model import Parallel
    >>> plain(Parallel(tp=2))["tp"]
    2
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from dagen.plan.model import Plan

__all__ = ["plain", "plan_summary"]


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""Types :func:`plain` returns as they are (exactly these, not subclasses such as enums)."""


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: records → dicts (internal fields dropped), enums →
    their values, mappings → dicts with sorted keys, tuples → lists, numpy → Python.

    Example:
        >>> from dagen.plan.model import Parallel
        >>> plain(Parallel(tp=2))["tp"]
        2
    """
    if type(value) in _LEAVES:  # most values: no isinstance chain
        return value
    if isinstance(value, (str, int, float, bool)) and not isinstance(value, enum.Enum):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: plain(getattr(value, name)) for name in _public_fields(type(value))}
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value)]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@functools.cache
def _public_fields(cls: type) -> tuple[str, ...]:
    """A record class's field names, internal ones left out (read once per class)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal"))


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan as declared (defaults filled), plus the world and edp its degrees imply.

    The source path and YAML locations are left out: outputs must not depend on where
    the plan file sits.
    """
    out: dict[str, Any] = plain(plan)
    out["world"] = plan.parallel.world()
    out["parallel"]["edp"] = plan.parallel.edp()
    return out
