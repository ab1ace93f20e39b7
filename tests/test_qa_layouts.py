"""Unusual but valid layouts build, check clean (no GRAPH- finding) and export.

Each layout is the tiny MoE (or dense) plan of tests/data/plans with a few parallel or
workload fields changed; every one is a deployment Megatron-Core or vLLM would accept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

import dagen
from dagen.api import write as export_outputs

PLANS = Path(__file__).resolve().parent / "data" / "plans"

LAYOUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dense pp1": ("tiny_dense", {"parallel.pp": 1, "parallel.dp": 4}),
    "moe tp1": ("tiny_moe", {"parallel.tp": 1, "parallel.dp": 4}),
    "moe ep1": ("tiny_moe", {"parallel.ep": 1}),
    "decode cp2": (
        "tiny_moe",
        {"parallel.cp": 2, "parallel.dp": 1, "workload.phase": "decode", "workload.batch": 4},
    ),
    "decode 3 steps pp2": (
        "tiny_moe",
        {"workload.phase": "decode", "workload.gen_len": 4, "workload.decode_steps": 3},
    ),
    "etp2": ("tiny_moe", {"parallel.etp": 2, "parallel.ep": 2}),
    "redundant experts": ("tiny_moe", {"parallel.redundant_experts": 4}),
    "orthogonal": (
        "tiny_moe",
        {"parallel.convention": "orthogonal", "parallel.dp": 1, "parallel.ep": 2},
    ),
    "order tp-ep-pp-dp, etp·ep = tp": (  # pp not last: Megatron needs edp = dp (PLAN-ORDER-EDP)
        "tiny_moe",
        {"parallel.order": "tp-ep-pp-dp", "parallel.etp": 1, "parallel.ep": 2},
    ),
    "moe_layer_freq 2": ("tiny_moe", {"model.moe.moe_layer_freq": 2}),
    "first dense layer": ("tiny_moe", {"model.moe.first_dense_layers": 1}),
    "sequence parallel": ("tiny_moe", {"parallel.sequence_parallel": True}),
    "uneven stages": ("tiny_moe", {"parallel.layers_per_stage": [1, 3]}),
}


def _plan(base: str, changes: dict[str, Any], tmp_path: Path) -> Path:
    doc = copy.deepcopy(yaml.safe_load((PLANS / f"{base}.yaml").read_text(encoding="utf-8")))
    doc["parallel"].pop("world_size", None)
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[key] = value
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _build_and_export(path: Path, out: Path) -> dagen.Analysis:
    analysis = dagen.analyse(dagen.load_plan(path))
    assert analysis.graph is not None, [f.code for f in analysis.findings]
    bad = [f.code for f in analysis.findings if f.code.startswith("GRAPH-")]
    bad += [f.code for f in analysis.findings if f.severity.value == "error"]
    assert bad == []
    outs = [(out / "x.json", "json"), (out / "x.dot", "dot"), (out / "x.md", "md")]
    export_outputs(analysis, [*outs, (out / "t.json", "timeline")])
    assert all(p.stat().st_size > 0 for p, _ in outs)
    return analysis


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_builds_clean(name: str, tmp_path: Path) -> None:
    base, changes = LAYOUTS[name]
    _build_and_export(_plan(base, changes, tmp_path), tmp_path)


@pytest.mark.parametrize("name", ["deepseek_v3_hf", "llama3_70b_hf"])
def test_hf_config_plan_builds_clean(name: str, tmp_path: Path) -> None:
    _build_and_export(PLANS / f"{name}.yaml", tmp_path)


def test_dense_order_tp_pp_dp_builds(tmp_path: Path) -> None:
    """A dense TP2·PP2·DP2 plan with Megatron's ``--order tp-pp-dp`` builds: with no
    expert layers the expert decomposition is laid with etp = tp (mesh_of), so it
    cannot disagree with the attention one about pipeline stages."""
    path = _plan("tiny_dense", {"parallel.order": "tp-pp-dp"}, tmp_path)
    _build_and_export(path, tmp_path)


def test_readme_library_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python block runs as written (from the repository root's samples)."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"samples/', f'"{root}/samples/')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "dag.json").stat().st_size > 0
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# dagen report")
