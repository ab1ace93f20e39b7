"""Golden files: exporter outputs of the tiny plans, compared byte for byte.

Regenerate them only on purpose, after checking the change is intended::

    DAGEN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_export_json.py tests/test_export_dot.py tests/test_export_md.py

(An environment variable rather than a pytest option: options must be registered in
the root conftest, which the export tests do not own.)
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent
UPDATE = os.environ.get("DAGEN_UPDATE_GOLDEN") == "1"


def assert_golden(name: str, data: bytes) -> None:
    """``data`` equals ``tests/golden/<name>``, or rewrite it when DAGEN_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(data)
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with DAGEN_UPDATE_GOLDEN=1")
    expected = path.read_bytes()
    if data == expected:
        return
    diff = difflib.unified_diff(
        expected.decode("utf-8", "replace").splitlines(),
        data.decode("utf-8", "replace").splitlines(),
        f"golden/{name}",
        "now",
        lineterm="",
        n=1,
    )
    shown = "\n".join(line[:300] for line in list(diff)[:40])
    pytest.fail(
        f"output differs from golden/{name} (if intended, regenerate with "
        f"DAGEN_UPDATE_GOLDEN=1):\n{shown}"
    )
