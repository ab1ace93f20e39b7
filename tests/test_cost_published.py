"""The cost models against published measurements of real deployments.

Each plan under tests/data/plans/published/ writes one measurement as its target (the
file's header cites the source). :mod:`tests.published` prices each with every cost model
and renders the validation table of docs/cost-model.md ("Validation"); this test asserts
the document holds exactly that table (``DAGEN_UPDATE_GOLDEN=1`` rewrites it), so the
table cannot go stale, and that no roofline error exceeds the band the table documents.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import published
import pytest
from published import DOC, PUBLISHED, Row

WORST = 1.5
"""The largest relative error the roofline may make (+150 %; the table says where)."""


@pytest.fixture(scope="module")
def cases() -> list[Row]:
    return published.rows()


def test_there_are_at_least_three_published_measurements() -> None:
    assert len(PUBLISHED) >= 3


def test_the_documented_table_is_the_generated_one(cases: list[Row]) -> None:
    table = published.render(cases, list(published.models()))
    want = published.splice(DOC.read_text(encoding="utf-8"), table)
    if os.environ.get("DAGEN_UPDATE_GOLDEN"):
        DOC.write_text(want, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == want, (
        "DAGEN_UPDATE_GOLDEN=1 pytest tests/test_cost_published.py"
    )


def test_no_roofline_error_exceeds_the_documented_band(cases: list[Row]) -> None:
    worst = max(cases, key=lambda r: abs(r.error("roofline")))
    assert abs(worst.error("roofline")) <= WORST, worst.name


def test_the_readme_quotes_the_current_medians(cases: list[Row]) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    flat = " ".join(readme.split())
    line = flat[flat.index(f"On {len(cases)} published measurements") :].split(" - ", 1)[0]
    said = [float(x) for x in re.findall(r"(\d+\.\d) %", line)]
    same = [r for r in cases if published.PEER in r.estimates]
    (_, new), (_, rest) = published.families(cases)
    want = [
        published.summary(cases, "roofline")[0],
        published.summary(cases, "auto")[0],
        published.summary(new, "auto")[0],
        published.summary(rest, "auto")[0],
        published.summary(same, "auto")[0],
        published.summary(same, published.PEER)[0],
    ]
    assert f"on the {len(same)} that NVIDIA aiconfigurator expresses" in line
    assert f"the {len(new)} TensorRT-LLM v1.0 perf-overview rows" in line
    assert f"on the other {len(rest)}" in line
    assert said == [round(100 * w, 1) for w in want]


def test_summary_counts_the_band_and_the_median() -> None:
    rows = [
        Row(name=f"c{i}", measured=100.0, unit="tok/s", source="s", estimates={"m": est})
        for i, est in enumerate((100.0, 124.0, 80.0, 150.0, 10.0))
    ]
    median, within = published.summary(rows, "m")
    assert median == pytest.approx(0.24)
    assert within == 3
    text = published.render(rows, ["m"])
    assert "| `c3` | 100 tok/s | s | 150 | +50.0 % |" in text
    assert "median |error| 24.0 %, 3/5 (60 %) within ±25 %" in text


def test_splice_replaces_only_the_marked_block() -> None:
    doc = f"a\n{published.BEGIN}\nold\n{published.END}\nb\n"
    out = published.splice(doc, "new\n")
    assert out == f"a\n{published.BEGIN}\n\nnew\n\n{published.END}\nb\n"
    assert published.splice(out, "new\n") == out
