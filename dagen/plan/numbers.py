"""Reading numbers of a plan: what counts as an integer, how a value is shown in a
message, and the fix for what PyYAML reads as a string.

PyYAML follows YAML 1.1, whose float needs a dot in the mantissa and a sign in the
exponent: ``1.0e+9`` is a float, ``1e9`` and ``1.0e9`` are strings (its resolver's
regular expression, ``yaml/resolver.py``). :func:`exponent_fix` gives the spelling it
reads, or a range problem when the value is past float range.

Example:
    >>> exponent_fix("1e9")[2], fmt_number(10**30)
    ('write 1.0e+9', '100000… (a 31-digit integer)')
"""

from __future__ import annotations

import math
import re
from typing import Any

from dagen.codes import Code

__all__ = ["LAYERS_MAX", "exponent_fix", "fmt_number", "int_fix", "is_int", "number_problem"]


def is_int(value: Any) -> bool:
    """A YAML integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_fix(value: Any) -> str:
    """The fix for a value that is not an integer."""
    if isinstance(value, float) and value.is_integer():
        return f"write {int(value)} without the decimal point"
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return f"remove the quotes: {value.strip()}"
    return "write a whole number such as 8"


LAYERS_MAX = 32767  # the graph's layer column is int16
DIGITS_SHOWN = 24


def fmt_number(value: float) -> str:
    """``1,024``, ``0.5``; an integer too long to read is shown by its digit count."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(abs(value))
        if len(text) > DIGITS_SHOWN:
            return f"{'-' if value < 0 else ''}{text[:6]}… (a {len(text):,}-digit integer)"
        return f"{value:,}"
    v = float(value)
    return f"{int(v):,}" if v.is_integer() and abs(v) < 1e16 else f"{v:g}"


_EXPONENT = re.compile(r"\s*([-+]?)([0-9]+)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)\s*")


def exponent_fix(text: str) -> tuple[Code, str, str] | None:
    """(code, message, fix) for an exponent number PyYAML reads as a string: YAML 1.1
    (PyYAML's resolver) needs a dot in the mantissa and a sign in the exponent, so
    ``1e9`` and ``1.0e9`` are strings and ``1.0e+9`` is a float; past float range
    (``1e400``) it is a range error."""
    m = _EXPONENT.fullmatch(text)
    if m is None:
        return None
    sign, whole, frac, esign, exp = m.groups()
    written = f"{sign}{whole}.{frac or '0'}e{esign or '+'}{exp}"
    if not math.isfinite(float(written)):
        msg = f"found {text.strip()!r}, beyond the largest finite number (about 1.8e+308)"
        return Code.P_RANGE, msg, "write a finite number within the field's bounds"
    msg = f"found {text.strip()!r}, which YAML reads as a string (PyYAML needs a dot and an exponent sign)"
    return Code.P_TYPE, msg, f"write {written}"


def number_problem(value: Any) -> tuple[Code, str, str] | None:
    """(code, message, fix) for inf, NaN, or an exponent PyYAML left a string; else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return Code.P_RANGE, f"found {value}; expected a finite number", "write a finite number"
    return exponent_fix(value) if isinstance(value, str) else None
