"""The finding registry: every code registered once, documented once, at its anchor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagen.codes import Code, Severity
from dagen.findings import Finding, Origin, finding

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROW = re.compile(r'^\| <a id="([a-z0-9-]+)"></a>`((?:P|PLAN|GRAPH|COST)-[A-Z0-9-]+)` \|', re.M)


def _documented() -> dict[str, tuple[str, str]]:
    out = {}
    for page in ("plan-checks.md", "graph-checks.md", "cost-model.md"):
        for anchor, code in ROW.findall((DOCS / page).read_text(encoding="utf-8")):
            assert code not in out, f"{code} documented twice"
            out[code] = (page, anchor)
    return out


def test_every_registered_code_is_documented_at_its_anchor_and_nothing_else_is() -> None:
    documented = _documented()
    assert set(documented) == {c.value for c in Code}
    for code in Code:
        page, anchor = documented[code.value]
        assert code.doc == f"docs/{page}#{anchor}"
        assert code.summary.endswith(".") and len(code.summary) <= 100, code


def test_families_and_default_severities() -> None:
    assert {c.value.split("-")[0] for c in Code} == {"P", "PLAN", "GRAPH", "COST"}
    assert all(c.severity is Severity.ERROR for c in Code if c.value.startswith("P-"))
    assert (
        Code.PLAN_CONVENTION.severity is Severity.INFO and Code.COST_OOM.severity is Severity.ERROR
    )


def test_the_factory_takes_only_registered_codes_and_their_severity() -> None:
    f = finding(Code.PLAN_HIDDEN_TP, "hidden 100 over tp 3")
    assert (f.code, f.severity) == ("PLAN-HIDDEN-TP", Severity.WARNING)
    assert finding(Code.PLAN_HIDDEN_TP, "x", severity=Severity.ERROR).severity is Severity.ERROR
    with pytest.raises(TypeError, match="not a registered Code"):
        finding("PLAN-NOPE", "x")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        Code.of("PLAN-NOPE")


def test_one_renderer_for_file_positions_and_flags() -> None:
    at_file = finding(Code.P_TYPE, "found 2.5", fix="write 2", path="parallel.tp",
                      origin=Origin(line=11, column=7))  # fmt: skip
    assert (
        at_file.render("p.yaml")
        == "error P-TYPE p.yaml:11:7: parallel.tp: found 2.5\n    fix: write 2"
    )
    at_flag = finding(Code.PLAN_HEADS_TP, "64 heads over tp 3", path="parallel.tp",
                      origin=Origin(flag="--tensor-parallel-size"))  # fmt: skip
    assert at_flag.render("ignored.yaml").startswith("error PLAN-HEADS-TP --tensor-parallel-size: ")
    assert at_flag.to_dict()["flag"] == "--tensor-parallel-size"
    assert "flag" not in at_file.to_dict() and at_file.to_dict()["line"] == 11
    assert isinstance(at_file, Finding)


def test_render_puts_the_verdict_on_the_headline_and_wraps_what_follows() -> None:
    long = (
        "declared world_size 128 does not match the degrees: " + "under megatron 2·2·4 = 16; " * 8
    )
    f = finding(Code.PLAN_WORLD, long, fix="use dp=16 " * 12, path="parallel.world_size",
                origin=Origin(file="p.yaml", line=5, column=3))  # fmt: skip
    head, rest = f.headline()
    assert head == "declared world_size 128 does not match the degrees"
    assert rest.startswith("under megatron")
    text = f.render(width=60)
    lines = text.splitlines()
    assert lines[0].startswith("error PLAN-WORLD p.yaml:5:3: parallel.world_size:")
    assert all(len(x) <= 60 for x in lines)
    body = next(i for i, x in enumerate(lines) if x.startswith("    "))
    assert all(x.startswith("  ") and not x.startswith("    ") for x in lines[1:body])
    assert lines[body].startswith("    under megatron") and all(
        x.startswith("    ") for x in lines[body:]
    )
    assert any(x.startswith("    fix: use dp=16") for x in lines)
    assert f.render() == "\n".join(  # unwrapped: one line each
        [
            f"error PLAN-WORLD p.yaml:5:3: parallel.world_size: {head}",
            f"    {rest}",
            f"    fix: {f.fix}",
        ]
    )
