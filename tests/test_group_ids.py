"""One group id per process group, the same in ``dagen ranks --json`` and the DAG JSON.

Each plan is run through the CLI twice, ``dagen ranks --json`` and ``dagen build -o
dag.json``; every rank's ``<dim>_group`` must name a group of that dimension in the DAG's
``groups`` that holds the rank, and every collective node's ``group`` must be its rank's
group of the collective's dimension.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagen.cli import main
from dagen.graph.ops import COLLECTIVE_OPS
from dagen.mesh import GROUP_DIMS

DATA = Path(__file__).parent / "data" / "plans"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PLANS = [DATA / "tiny_moe.yaml", DATA / "tiny_dense.yaml", DATA / "seed_moe_10b_orthogonal.yaml",
         SAMPLES / "mixtral-8x7b-ep8.yaml"]  # fmt: skip

DIM_OF_OP = {op.label: dim for op, (dim, _) in COLLECTIVE_OPS.items()}


def _outputs(plan: Path, tmp: Path) -> tuple[list[dict[str, int]], dict[str, object]]:
    runner = CliRunner()
    ranks = runner.invoke(main, ["ranks", str(plan), "--json"])
    assert ranks.exit_code == 0, ranks.output
    built = runner.invoke(main, ["-q", "build", str(plan), "-o", str(tmp / "dag.json")])
    assert built.exit_code == 0, built.output
    return json.loads(ranks.output), json.loads((tmp / "dag.json").read_text())


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_ranks_json_and_dag_json_use_the_same_group_ids(plan: Path, tmp_path: Path) -> None:
    rows, doc = _outputs(plan, tmp_path)
    groups = {g["id"]: g for g in doc["groups"]}  # type: ignore[attr-defined]
    assert len(rows) == doc["mesh"]["world"]  # type: ignore[index]
    for row in rows:
        for dim in GROUP_DIMS:
            group = groups[row[f"{dim}_group"]]
            assert group["kind"] == dim and row["rank"] in group["members"], (row, dim)
    used = 0
    for node in doc["nodes"]:  # type: ignore[attr-defined]
        if node["kind"] == "collective":
            dim = DIM_OF_OP[node["op"]].label
            assert node["group"] == rows[node["rank"]][f"{dim}_group"], node["id"]
            used += 1
    assert used > 0
