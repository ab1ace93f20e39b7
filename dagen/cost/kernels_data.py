"""Where aiconfigurator-core keeps its measured tables, and which version of each to read.

The installed package holds one directory per system and a YAML beside it::

    aiconfigurator_core/systems/<system>.yaml            (gpu, node, misc.nccl_version)
    aiconfigurator_core/systems/query_versions.yaml      (the "current" version per backend)
    aiconfigurator_core/systems/data/<system>/<family>/<backend>/<version>/<table>.parquet

``<family>`` groups tables (``gemm``, ``attention``, ``mla``, ``moe``, ``comm``, …) and each
family is upgraded on its own, so one backend version rarely has every table. Like
aiconfigurator's own loader (``sdk/perf_database.py``, "backward fill"), a table is read
from the newest version directory at or below the requested version that holds it. NCCL
tables sit under the pseudo-backend ``nccl`` and follow the system YAML's
``misc.nccl_version``.

Example:
    >>> version_key("1.3.0rc20") < version_key("1.3.0rc23") < version_key("1.3.0")
    True
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from dagen.errors import DagenError

__all__ = [
    "KernelDataError",
    "backend_versions",
    "current_version",
    "nccl_version",
    "package_version",
    "read_columns",
    "resolve_table",
    "systems",
    "systems_root",
    "version_key",
    "where_table",
]

NCCL = "nccl"
"""The pseudo-backend directory of nccl-tests curves (``comm/nccl/<nccl version>``)."""


class KernelDataError(DagenError):
    """The measured kernel tables asked for are not installed or do not exist."""


def systems_root() -> Path:
    """``aiconfigurator_core/systems`` of the installed package.

    Raises:
        KernelDataError: aiconfigurator-core is not installed.
    """
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or spec.origin is None:
        raise KernelDataError(
            "aiconfigurator-core is not installed: measured kernel tables need it; "
            "install it with: pip install 'dagen[measured]'"
        )
    return Path(spec.origin).parent / "systems"


def package_version() -> str:
    """The installed aiconfigurator-core's version string."""
    return importlib.metadata.version("aiconfigurator-core")


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a version string: dev < rc < release < post.

    >>> sorted(["0.5.6.post2", "0.5.14", "0.1.dev19262", "0.5.10"], key=version_key)
    ['0.1.dev19262', '0.5.6.post2', '0.5.10', '0.5.14']
    """
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    base = (int(m[1]), int(m[2]), int(m[3] or 0)) if m else (0, 0, 0)
    rest = version[m.end() :] if m else version
    pre = re.search(r"(dev|rc)(\d+)", rest)
    stage = ((-1 if pre[1] == "dev" else 0), int(pre[2])) if pre else (1, 0)
    post = re.search(r"post(\d+)", rest)
    return (*base, *stage, int(post[1]) if post else 0)


@cache
def systems() -> tuple[str, ...]:
    """Systems that have a YAML and at least one measured table, sorted."""
    root = systems_root()
    found = {p.parts[-5] for p in (root / "data").glob("*/*/*/*/*.parquet")}
    return tuple(sorted(s for s in found if (root / f"{s}.yaml").is_file()))


@cache
def backend_versions(system: str) -> Mapping[str, tuple[str, ...]]:
    """Backend -> its version directories holding tables (oldest first), on one system."""
    found: dict[str, set[str]] = {}
    for p in (systems_root() / "data" / system).glob("*/*/*/*.parquet"):
        found.setdefault(p.parts[-3], set()).add(p.parts[-2])
    return {b: tuple(sorted(v, key=version_key)) for b, v in sorted(found.items())}


@cache
def _yaml(path: Path) -> dict[str, object]:
    with path.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return doc if isinstance(doc, dict) else {}


def current_version(system: str, backend: str) -> str:
    """The version aiconfigurator queries by default, else the newest directory.

    aiconfigurator's ``systems/query_versions.yaml`` names a maintained "current" version
    per backend (with per-system overrides); newer directories are partial drops.
    """
    versions = backend_versions(system)[backend]
    slots = _yaml(systems_root() / "query_versions.yaml")
    override = _get(slots, "overrides", system, backend)
    entry = override if isinstance(override, dict) else _get(slots, "defaults", backend)
    current = entry.get("current") if isinstance(entry, dict) else None
    return str(current) if current is not None and str(current) in versions else versions[-1]


def nccl_version(system: str) -> str:
    """The NCCL version the system YAML names (``misc.nccl_version``), else the newest."""
    named = _get(_yaml(systems_root() / f"{system}.yaml"), "misc", "nccl_version")
    versions = backend_versions(system).get(NCCL, ())
    if named is not None and str(named) in versions:
        return str(named)
    return versions[-1] if versions else ""


def _get(doc: object, *path: str) -> object:
    for step in path:
        doc = doc.get(step) if isinstance(doc, dict) else None
    return doc


def resolve_table(system: str, backend: str, version: str, table: str) -> Path | None:
    """The ``<table>.parquet`` of the newest version directory ≤ ``version``, if any."""
    root = systems_root() / "data" / system
    usable = [
        p
        for p in root.glob(f"*/{backend}/*/{table}.parquet")
        if version_key(p.parts[-2]) <= version_key(version)
    ]
    return max(usable, key=lambda p: version_key(p.parts[-2]), default=None)


def where_table(system: str, table: str) -> list[str]:
    """``backend/version`` directories holding ``table`` on a system (for messages)."""
    root = systems_root() / "data" / system
    return sorted(f"{p.parts[-3]}/{p.parts[-2]}" for p in root.glob(f"*/*/*/{table}.parquet"))


def read_columns(path: Path, columns: list[str]) -> dict[str, npt.NDArray[np.generic]]:
    """The named columns of a parquet file that exist in it, as numpy arrays."""
    import pyarrow.parquet as pq

    present = [c for c in columns if c in pq.read_schema(path).names]
    table = pq.read_table(path, columns=present)
    return {c: _numpy(table.column(c)) for c in present}


def _numpy(column: Any) -> npt.NDArray[np.generic]:
    """A pyarrow column as numpy; strings as a fixed-width unicode array, via a dictionary."""
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return np.asarray(column.to_numpy())
    coded = column.combine_chunks().dictionary_encode()
    words = np.asarray(coded.dictionary.to_pylist(), dtype=np.str_)
    out: npt.NDArray[np.generic] = words[np.asarray(coded.indices.to_numpy(zero_copy_only=False))]
    return out
