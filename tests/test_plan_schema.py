"""The plan's JSON Schema and docs come from the field metadata and stay in step with
the loader: sample plans validate, bad plans do not, the docs hold the generated tables
and list every code."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from test_plan_load import BAD

from dagen.plan.loader import load_plan_text
from dagen.plan.model import Hardware, Model
from dagen.plan.rules import plan_findings
from dagen.plan.schema import SECTIONS, FKind, format_table_markdown, plan_schema, record_fields

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "tests" / "data" / "plans"
DOCS = ROOT / "docs"


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = plan_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(doc: Any) -> list[str]:
    return [e.message for e in _validator().iter_errors(doc)]


def test_schema_is_draft_2020_12_and_closed() -> None:
    schema = plan_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    for name, sub in schema["$defs"].items():
        assert sub["additionalProperties"] is False, name
        for prop, spec in sub["properties"].items():
            assert spec["description"], f"{name}.{prop}"


def test_schema_carries_metadata() -> None:
    defs = plan_schema()["$defs"]
    tp = defs["Parallel"]["properties"]["tp"]
    assert (tp["type"], tp["minimum"], tp["maximum"], tp["default"]) == ("integer", 1, 65536, 1)
    assert "GiB" in defs["Hardware"]["properties"]["memory_gib"]["description"]
    assert defs["Hardware"]["properties"]["memory_gib"]["exclusiveMinimum"] == 0
    assert defs["Model"]["properties"]["dtype"]["enum"] == [
        "bf16",
        "fp16",
        "fp8",
        "fp32",
        "fp8_block",
        "nvfp4",
        "mxfp4",
    ]
    assert set(defs["Moe"]["required"]) == {"experts", "top_k", "expert_ffn_size"}
    assert "kv_heads" not in str(defs["Model"].get("anyOf"))  # derived: not required


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_sample_plan_validates(path: Path) -> None:
    assert _errors(yaml.safe_load(path.read_text())) == []


SCHEMA_CODES = {
    "P-TYPE",
    "P-RANGE",
    "P-ENUM",
    "P-UNKNOWN-KEY",
    "P-MISSING",
    "P-NOT-MAPPING",
    "P-ORDER",
}
# JSON Schema counts 4.0 as an integer and has no notion of finiteness.
SCHEMA_BLIND = {"float-int", "inf-memory"}


@pytest.mark.parametrize(
    "case",
    [c for c in BAD if c[2] in SCHEMA_CODES and c[0] not in SCHEMA_BLIND],
    ids=lambda c: c[0],
)
def test_bad_plans_fail_the_schema_too(case: tuple[Any, ...]) -> None:
    doc = yaml.safe_load(case[1])
    assert _errors(doc), f"the schema accepts {case[0]}, the loader does not"


def test_schema_accepts_what_the_loader_accepts_and_rejects_a_bad_plan() -> None:
    doc = yaml.safe_load((PLANS / "tiny_moe.yaml").read_text())
    assert _errors(doc) == []
    doc["parallel"]["tp"] = "two"
    doc["model"]["moe"]["experts"] = 0
    doc["workload"]["stages"] = 3
    assert len(_errors(doc)) == 3


def test_hf_config_or_preset_replaces_required_fields() -> None:
    doc = {
        "model": {"hf_config": "x.json"},
        "parallel": {},
        "workload": {"batch": 1, "prompt_len": 1},
        "hardware": {"preset": "H200"},
    }
    assert _errors(doc) == []
    doc["hardware"] = {"memory_gb": 80}
    assert _errors(doc)


def test_record_fields_cover_the_dataclasses() -> None:
    kinds = {f.name: f.kind for f in record_fields(Model)}
    assert kinds["moe"] is FKind.RECORD and kinds["params"] is FKind.COUNT
    assert {f.name: f.kind for f in record_fields(Hardware)}["peak_tflops"] is FKind.DTYPE_MAP
    assert all(not f.required for f in record_fields(Model) if f.derived)


def test_plan_format_doc_holds_the_generated_tables() -> None:
    doc = (DOCS / "plan-format.md").read_text(encoding="utf-8")
    tables = format_table_markdown()
    assert tables in doc, "regenerate the tables in docs/plan-format.md (see the comment there)"
    for path, cls in SECTIONS:
        for f in record_fields(cls):
            assert f"| `{f.name}` |" in tables, (path, f.name)


def test_plan_format_example_loads_clean() -> None:
    doc = (DOCS / "plan-format.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert example is not None
    plan = load_plan_text(example.group(1))
    assert plan.parallel.world() == 128 and plan.parallel.edp() == 2
    assert plan_findings(plan) == []
