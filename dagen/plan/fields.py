"""Plan fields whose metadata documents and bounds them: the one source of the loader's
checks, the JSON Schema and docs/plan-format.md.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class R:
    ...     tp: int = spec("Tensor-parallel degree.", default=1, minimum=1)
    >>> R.__dataclass_fields__["tp"].metadata["minimum"]
    1
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any

__all__ = ["spec"]


def spec(
    doc: str,
    *,
    default: Any = MISSING,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    derived: bool = False,
) -> Any:
    """A dataclass field whose metadata documents and bounds it.

    Args:
        doc: One sentence for the docs and the JSON Schema.
        default: Default value; absent means the field is required.
        unit: Unit shown in docs (``GB``, ``TFLOP/s``, …).
        minimum: Smallest allowed value (inclusive unless ``exclusive_minimum``).
        maximum: Largest allowed value (sizes past it are called absurd).
        exclusive_minimum: Make ``minimum`` exclusive (for positive floats).
        derived: Optional in YAML although the record needs it: the loader derives it
            (the doc says from what).
    """
    meta = {
        "doc": doc,
        "unit": unit,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "derived": derived,
    }
    if default is MISSING:
        return field(metadata=meta)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)
