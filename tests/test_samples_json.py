"""Every sample's DAG JSON validates against ``dagen schema dag`` and loads in networkx.

Each sample in ``samples/`` (except ``seed-moe-10b.yaml``, which must not build) is
analysed with its estimate and exported by the library call, as a user would, and the
written document is validated with ``jsonschema`` against
:func:`dagen.export.json_.dag_schema`.

``jsonschema`` validates about 3,500 nodes or edges per second on the 2-core CI
machine, so only graphs up to :data:`FULL_LIMIT` nodes are validated whole. For larger
ones the file is read as a stream and the document is validated after truncating
``nodes`` and ``edges`` to their first :data:`KEEP` entries; every row is still counted,
and the counts must equal the graph's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import networkx as nx
import orjson
import pytest
from conftest import analysed_sample, plan_samples

from dagen.api import Analysis
from dagen.api import write as export_outputs
from dagen.export.json_ import dag_schema

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
UNBUILDABLE = {"seed-moe-10b.yaml"}
FULL_LIMIT = 50_000
"""Graphs with at most this many nodes are validated whole."""
KEEP = 2_000
"""Nodes and edges kept of a larger graph's document before validation."""
SLOW = {"seed-moe-10b-fixed.yaml"}
"""Samples whose test takes more than 10 s here (measured)."""

VALIDATOR = jsonschema.Draft202012Validator(dag_schema())


def _samples() -> list[object]:
    names = [p.name for p in plan_samples() if p.name not in UNBUILDABLE]
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _export(name: str, out: Path) -> Analysis:
    analysis = analysed_sample(name)
    assert analysis.graph is not None, f"{name} does not build"
    assert analysis.estimate is not None, f"{name} was not simulated"
    export_outputs(analysis, [(out, "json")])
    return analysis


def _rows(lines: Iterator[bytes], keep: int) -> tuple[list[bytes], int]:
    """Read one streamed array's rows (one per line) up to its ``]``: the first ``keep``
    rows, without their separators, and how many there were."""
    kept: list[bytes] = []
    for count, line in enumerate(lines):
        if line.startswith(b"]"):
            return kept, count
        if count < keep:
            kept.append(line.rstrip(b"\r\n").rstrip(b","))
    raise AssertionError("the JSON document ends inside an array")


def _truncated(path: Path, keep: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The document at ``path`` with ``nodes`` and ``edges`` cut to ``keep`` rows each,
    and the full row counts of those two arrays, read without loading the whole file."""
    parts: list[bytes] = []
    counts: dict[str, int] = {}
    with path.open("rb") as f:
        lines = iter(f)
        for line in lines:
            key = line.split(b'"', 2)[1].decode() if line.startswith(b'"') else ""
            if key in ("nodes", "edges") and line.rstrip().endswith(b"["):
                kept, counts[key] = _rows(lines, keep)
                parts.append(orjson.dumps(key) + b": [" + b",".join(kept) + b"]")
                parts.append(b"," if key == "nodes" else b"")
            else:
                parts.append(line)
    return orjson.loads(b"".join(parts)), counts


@pytest.mark.parametrize("name", _samples())
def test_sample_json_validates(name: str, tmp_path: Path) -> None:
    out = tmp_path / "dag.json"
    graph = _export(name, out).graph
    assert graph is not None
    if graph.n_nodes <= FULL_LIMIT:
        doc = orjson.loads(out.read_bytes())
        counts = {"nodes": len(doc["nodes"]), "edges": len(doc["edges"])}
    else:
        doc, counts = _truncated(out, KEEP)
        assert len(doc["nodes"]) == KEEP and len(doc["edges"]) == KEEP
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}"
    assert counts == {"nodes": graph.n_nodes, "edges": graph.n_edges}
    assert doc["graph"]["nodes"] == graph.n_nodes and doc["graph"]["edges"] == graph.n_edges
    assert doc["estimate"] is not None and doc["estimate"]["makespan_s"] > 0


def test_seed_fixed_json_loads_in_networkx(tmp_path: Path) -> None:
    out = tmp_path / "dag.json"
    graph = _export("seed-moe-10b-fixed.yaml", out).graph
    assert graph is not None
    g = nx.node_link_graph(orjson.loads(out.read_bytes()), edges="edges")
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_nodes() == graph.n_nodes == 28_160
    assert g.number_of_edges() == graph.n_edges
    assert g.nodes["r0/s0/mb0/embed"]["rank"] == 0


def test_truncation_keeps_counts_and_rows(tmp_path: Path) -> None:
    """The stream reader above must see every row: checked on a small sample whose
    document also loads whole."""
    out = tmp_path / "dag.json"
    graph = _export("mixtral-8x7b-ep8.yaml", out).graph
    assert graph is not None
    whole = orjson.loads(out.read_bytes())
    doc, counts = _truncated(out, 10)
    assert counts == {"nodes": graph.n_nodes, "edges": graph.n_edges}
    assert doc["nodes"] == whole["nodes"][:10] and doc["edges"] == whole["edges"][:10]
    assert {k: v for k, v in doc.items() if k not in ("nodes", "edges")} == {
        k: v for k, v in whole.items() if k not in ("nodes", "edges")
    }
    assert VALIDATOR.is_valid(doc)
    doc["nodes"][3]["op"] = "Attn Bogus"  # the validation above can fail (not an op label)
    del doc["edges"][0]["kind"]
    assert len(list(VALIDATOR.iter_errors(doc))) == 2
