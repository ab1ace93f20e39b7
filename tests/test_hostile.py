"""Hostile inputs and conditions: none may crash dagen, hang it, exhaust the machine or
leave a partial file.

Every case asserts the exit status, the message (its code and the words that say what
and where) and what is left on disk (the directory holds exactly what it held, plus
the outputs of a run that succeeds). Cases run in-process through CliRunner; only
signals, stdout failures and non-UTF-8 file names run a subprocess.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from test_plan_rules import changed

from dagen.cli import main
from dagen.plan.loader import load_plan_text
from dagen.plan.schema import SECTIONS, FKind, record_fields

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "plans" / "tiny_dense.yaml"
TINY_MOE = ROOT / "tests" / "data" / "plans" / "tiny_moe.yaml"
HF = ROOT / "tests" / "data" / "hf" / "llama-3-70b.json"
BASE: dict[str, Any] = yaml.safe_load(TINY.read_text(encoding="utf-8"))
CONTROL = "\x1b[31m\x07\x08\x00\x9b\u202e"
"""ESC (a colour), BEL, backspace, NUL, C1 CSI and a bidirectional override."""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "1000", **(env or {})})
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, args, catch_exceptions=True)
    finally:
        os.chdir(old)


def _listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def _no_crash(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


def _write(tmp: Path, doc: dict[str, Any] | str, name: str = "plan.yaml") -> Path:
    p = tmp / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), "utf-8")
    return p


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    return changed(BASE, changes)


def _yaml_with(key: str, raw: str) -> str:
    """BASE as YAML with the line of ``key`` (``  batch:``) replaced by ``raw``."""
    lines = TINY.read_text(encoding="utf-8").splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith(f"  {key}:"))
    lines[at] = f"  {key}: {raw}"
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- plan text: exit 2

BIG_INT = "1" + "0" * 400
HUGE_INT = "1" + "0" * 5000

TEXT_CASES: list[tuple[str, str, str, str]] = [
    # (id, the plan's text, the code, words of the message)
    ("empty", "", "P-EMPTY", "holds no YAML document"),
    ("only-comment", "# nothing\n", "P-EMPTY", "holds no YAML document"),
    ("null-doc", "null\n", "P-EMPTY", "no"),
    ("list-doc", "- 1\n- 2\n", "P-NOT-MAPPING", "a plan is a mapping"),
    ("scalar-doc", "42\n", "P-NOT-MAPPING", "a plan is a mapping"),
    ("two-docs", "a: 1\n---\nb: 2\n", "P-MULTI-DOC", "more than one"),
    ("tab-indent", "model:\n\tname: x\n", "P-YAML-SYNTAX", "YAML syntax error"),
    ("unclosed", "model: {name: x\n", "P-YAML-SYNTAX", "YAML syntax error"),
    ("python-tag", "model: !!python/object/apply:os.system ['true']\n", "P-TAG", "python"),
    ("custom-tag", "model: !custom x\n", "P-TAG", "custom"),
    ("merge-key", "base: &b {tp: 2}\nparallel:\n  <<: *b\n", "P-MERGE", "merge"),
    ("alias-bomb", "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "P-ALIAS-BOMB", "100,000"),
    ("deep-nesting", "a: " + "[" * 40 + "]" * 40 + "\n", "P-TOO-DEEP", "32"),
    ("duplicate-key", TINY.read_text(encoding="utf-8") + "model: {}\n", "P-DUPLICATE-KEY",
     "model"),
    ("list-key", "? [a]\n: 1\n", "P-KEY-TYPE", "key"),
    ("unknown-key", _yaml_with("batch", "8\n  batchh: 3"), "P-UNKNOWN-KEY", "batchh"),
    ("control-key", _yaml_with("batch", "8\n  \"b\\e[2Jx\": 3"), "P-UNKNOWN-KEY", "\\x1b[2J"),
    ("big-int", _yaml_with("batch", BIG_INT), "P-RANGE", "a 401-digit integer"),
    ("huge-int", _yaml_with("batch", HUGE_INT), "P-RANGE", "a 5,001-digit integer"),
    ("int64-max", _yaml_with("batch", "9223372036854775807"), "P-RANGE", "at most"),
    ("int64-over", _yaml_with("batch", "9223372036854775808"), "P-RANGE", "at most"),
    ("negative", _yaml_with("batch", "-8"), "P-RANGE", "at least 1"),
    ("zero-tp", _yaml_with("tp", "0"), "P-RANGE", "at least 1"),
    ("exp-1e400", _yaml_with("batch", "1e400"), "P-RANGE", "beyond the largest finite"),
    ("exp-neg-1e400", _yaml_with("batch", "-1e400"), "P-RANGE", "beyond the largest finite"),
    ("inf", _yaml_with("batch", ".inf"), "P-RANGE", "finite"),
    ("neg-inf", _yaml_with("batch", "-.inf"), "P-RANGE", "finite"),
    ("nan", _yaml_with("batch", ".nan"), "P-RANGE", "finite"),
    ("exp-no-dot", _yaml_with("batch", "1e9"), "P-TYPE", "write 1.0e+9"),
    ("exp-no-sign", _yaml_with("batch", "1.0e9"), "P-TYPE", "write 1.0e+9"),
    ("exp-upper", _yaml_with("batch", "2.5E3"), "P-TYPE", "write 2.5e+3"),
    ("float-int", _yaml_with("batch", "8.0"), "P-TYPE", "without the decimal point"),
    ("quoted-int", _yaml_with("batch", '"8"'), "P-TYPE", "remove the quotes"),
    ("bool-int", _yaml_with("batch", "true"), "P-TYPE", "integer"),
    ("list-int", _yaml_with("batch", "[8]"), "P-TYPE", "integer"),
    ("map-int", _yaml_with("batch", "{a: 1}"), "P-TYPE", "integer"),
    ("null-required", _yaml_with("batch", "null"), "P-TYPE", "null"),
    ("underscore-int", _yaml_with("batch", '"1_0"'), "P-TYPE", "integer"),
    ("date", _yaml_with("batch", "2024-01-01"), "P-TYPE", "integer"),
    ("bad-enum", _yaml_with("phase", "prefil"), "P-ENUM", "prefill"),
    ("bad-order", "parallel: {order: tp-tp}\n", "P-ORDER", "order"),
    ("bad-preset", _yaml_with("preset", "H1000"), "P-PRESET", "preset"),
    ("missing-sections", "model: {name: x}\n", "P-MISSING", "parallel"),
    ("section-list", _yaml_with("tp", "2").replace("parallel:", "parallel: []\nx:"),
     "P-NOT-MAPPING", "parallel"),
    ("memory-inf", _yaml_with("preset", "H100-SXM-80GB\n  memory_gib: .inf"), "P-RANGE",
     "finite"),
    ("memory-1e400", _yaml_with("preset", "H100-SXM-80GB\n  memory_gib: 1e400"), "P-RANGE",
     "beyond"),
    ("memory-over-cap", _yaml_with("preset", "H100-SXM-80GB\n  memory_gib: 1.0e+16"),
     "P-RANGE", "at most"),
    ("bandwidth-1e300", _yaml_with("preset", "H100-SXM-80GB\n  hbm_tbps: 1.5e+300"),
     "P-RANGE", "at most"),
    ("peak-nan", _yaml_with("preset", "H100-SXM-80GB\n  peak_tflops: {bf16: .nan}"),
     "P-RANGE", "finite"),
    ("stages-over", _yaml_with("tp", "2\n  layers_per_stage: [40000, 1]"), "P-RANGE",
     "32,767"),
    ("layers-over", _yaml_with("layers", "32768"), "P-RANGE", "at most 32,767"),
    ("tokens-overflow", _yaml_with("batch", "1073741824").replace(
        "prompt_len: 16", "prompt_len: 67108864"), "P-RANGE", "2^62"),
    ("activation-overflow", _yaml_with("hidden_size", "16777216").replace(
        "prompt_len: 16", "prompt_len: 67108864").replace("batch: 8", "batch: 1048576"),
     "P-RANGE", "activation bytes"),
    ("weights-overflow", _yaml_with("hidden_size", "16777216").replace(
        "ffn_size: 256", "ffn_size: 16777216").replace("layers: 4", "layers: 32767"),
     "P-RANGE", "weight bytes"),
    ("not-utf8", "model:\n  name: \udcff\n", "P-FILE", "not UTF-8"),
    ("bom-and-nul", "\x00\x00\x00", "P-", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "code", "words"), [pytest.param(*c[1:], id=c[0]) for c in TEXT_CASES]
)
def test_bad_plan_text_is_exit_2_with_its_code_and_nothing_written(
    tmp_path: Path, text: str, code: str, words: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    before = _listing(tmp_path)
    result = _run(["check", "plan.yaml"], tmp_path)
    _no_crash(result)
    assert result.exit_code == 2, result.output
    assert code in result.stderr and words in result.stderr, result.stderr
    assert not _raw_controls(result.output)
    assert _listing(tmp_path) == before
    as_json = _run(["check", "plan.yaml", "--format", "json"], tmp_path)
    assert as_json.exit_code == 2
    doc = json.loads(as_json.stdout)
    assert doc["location"]["file"] == "plan.yaml" and doc["code"] == doc["problems"][0]["code"]
    assert any(p["code"].startswith(code) for p in doc["problems"])
    assert all(p["code"].startswith("P-") for p in doc["problems"])


# ------------------------------------------------- every documented bound is enforced


def _numeric_fields() -> list[tuple[str, Any]]:
    out = []
    for path, cls in SECTIONS:
        if path in ("(top level)", "claims[]"):
            continue
        for f in record_fields(cls):
            if f.kind in (FKind.INT, FKind.FLOAT, FKind.COUNT) and f.maximum is not None:
                out.append((f"{path}.{f.name}", f))
    return out


NUMERIC = _numeric_fields()
_MOE = {"experts": 8, "top_k": 2, "expert_ffn_size": 128}
_MLA = {"kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 16}


def _doc_setting(dotted: str, value: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {dotted: value}
    if dotted.startswith("model.moe."):
        changes = {"model.moe": {**_MOE, dotted.rsplit(".", 1)[1]: value}}
    if dotted.startswith("model.mla."):
        changes = {"model.mla": {**_MLA, dotted.rsplit(".", 1)[1]: value}}
    return _with(changes)


def _problems_at(doc: dict[str, Any], dotted: str) -> list[str]:
    from dagen.errors import PlanError

    try:
        load_plan_text(yaml.safe_dump(doc, sort_keys=False), source="b.yaml")
    except PlanError as err:
        return [p.code for p in err.problems if p.path == dotted]
    return []


def _step(f: Any, value: float) -> float:
    return value + 1 if f.kind is FKind.INT else value * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize(("dotted", "f"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_documented_maximum_is_the_enforced_one(dotted: str, f: Any) -> None:
    top = int(f.maximum) if f.kind is FKind.INT else float(f.maximum)
    assert "P-RANGE" not in _problems_at(_doc_setting(dotted, top), dotted)
    assert f"≤ {f.bounds_text().split('≤ ')[-1]}" in f.bounds_text()
    past = _step(f, top)
    assert _problems_at(_doc_setting(dotted, past), dotted) == ["P-RANGE"]


@pytest.mark.parametrize(("dotted", "f"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_past_the_maximum_is_exit_2_p_range_through_the_cli(
    tmp_path: Path, dotted: str, f: Any
) -> None:
    past = _step(f, int(f.maximum) if f.kind is FKind.INT else float(f.maximum))
    _write(tmp_path, _doc_setting(dotted, past))
    before = _listing(tmp_path)
    result = _run(["check", "plan.yaml", "--format", "json"], tmp_path)
    _no_crash(result)
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    hits = [p for p in doc["problems"] if p["path"] == dotted]
    assert hits and hits[0]["code"] == "P-RANGE" and "at most" in hits[0]["message"]
    assert _listing(tmp_path) == before


def test_the_layer_bound_is_the_int16_column() -> None:
    from dagen.graph.ir import INT16_MAX

    layers = next(f for n, f in NUMERIC if n == "model.layers")
    assert layers.maximum == INT16_MAX == 32767
    assert "≤ 32,767" in (ROOT / "docs" / "plan-format.md").read_text(encoding="utf-8")


# -------------------------------------------------------------- files that are not files


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "pipe.yaml")
    return "pipe.yaml"


FILE_CASES: list[tuple[str, Callable[[Path], str], str, str]] = [
    ("fifo", _fifo, "P-FILE", "a FIFO (named pipe), not a regular file"),
    ("dev-zero", lambda _t: "/dev/zero", "P-FILE", "a character device"),
    ("dev-null", lambda _t: "/dev/null", "P-FILE", "a character device"),
    ("dev-urandom", lambda _t: "/dev/urandom", "P-FILE", "a character device"),
    ("directory", lambda t: str(t), "P-FILE", "a directory"),
    ("absent", lambda _t: "nope.yaml", "P-FILE", "no plan file at nope.yaml"),
    ("over-1MiB", lambda t: str(_write(t, "#" * (1 << 20) + "\n", "big.yaml").name),
     "P-TOO-LARGE", "1,048,576"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "code", "words"), [pytest.param(*c[1:], id=c[0]) for c in FILE_CASES]
)
def test_a_plan_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, make: Callable[[Path], str], code: str, words: str
) -> None:
    name = make(tmp_path)
    before = _listing(tmp_path)
    result = _run(["check", name], tmp_path)  # a FIFO would block here if opened
    _no_crash(result)
    assert result.exit_code == 2 and code in result.stderr and words in result.stderr
    assert _listing(tmp_path) == before


def _deep_json(tmp: Path) -> str:
    (tmp / "config.json").write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "utf-8")
    return "config.json"


def _copy_hf(tmp: Path) -> str:
    (tmp / "config.json").write_text(HF.read_text(encoding="utf-8"), "utf-8")
    return "config.json"


HF_CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("hf-fifo", lambda t: _fifo(t), "a FIFO (named pipe), not a regular file"),
    ("hf-dev-zero", lambda _t: "/dev/zero", "a character device"),
    ("hf-dev-null", lambda _t: "/dev/null", "a character device"),
    ("hf-directory", lambda t: str(t), "a directory"),
    ("hf-deep", _deep_json, "nests JSON more than 64 levels deep at line 1 column 70"),
    ("hf-not-json", lambda t: str(_write(t, "{nope", "config.json").name), "is not JSON"),
    ("hf-array", lambda t: str(_write(t, "[1, 2]", "config.json").name), "not an object"),
    ("hf-huge-int", lambda t: str(_write(t, '{"a": ' + "9" * 5000 + "}", "config.json").name),
     "dagen cannot read"),
    ("hf-over-1MiB", lambda t: str(_write(t, " " * (1 << 20) + "{}", "config.json").name),
     "a config.json is a few KB"),
    ("hf-absent", lambda _t: "missing.json", "no file"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "words"), [pytest.param(*c[1:], id=c[0]) for c in HF_CASES])
def test_an_hf_config_that_cannot_be_read_is_located(
    tmp_path: Path, make: Callable[[Path], str], words: str
) -> None:
    ref = make(tmp_path)
    doc = _with({"model": {"hf_config": ref}})
    _write(tmp_path, doc)
    before = _listing(tmp_path)
    result = _run(["check", "plan.yaml"], tmp_path)
    _no_crash(result)
    assert result.exit_code == 2 and "P-HF-CONFIG" in result.stderr, result.output
    assert words in result.stderr and "plan.yaml:" in result.stderr
    assert _listing(tmp_path) == before


# ------------------------------------------------------------------- CLI filters


FILTERS: list[tuple[str, list[str], str]] = [
    ("open-range", ["--ranks", "0-"], "closed ascending range"),
    ("open-start", ["--ranks", "-3"], "closed ascending range"),
    ("descending", ["--layers", "3-1"], "closed ascending range"),
    ("empty", ["--ranks", ""], "closed ascending range"),
    ("empty-part", ["--ranks", "0,,1"], "closed ascending range"),
    ("letters", ["--microbatches", "a"], "closed ascending range"),
    ("arabic-digit", ["--ranks", "\u0663"], "closed ascending range"),
    ("underscore", ["--ranks", "1_0"], "closed ascending range"),
    ("plus", ["--ranks", "+1"], "closed ascending range"),
    ("past-max-world", ["--ranks", "0-99999999"], "from 0 to 4,194,303"),
    ("control", ["--ranks", "\x1b[2J"], "\\x1b[2J"),
    ("ranks-none-in-plan", ["--ranks", "8-9"], "--ranks: selects nothing of the plan's 8 ranks"),
    ("ranks-partly", ["--ranks", "0-8"], "1 value(s) past the end"),
    ("layers-none", ["--layers", "4"], "--layers: selects nothing of the plan's 4 layers"),
    ("mb-none", ["--microbatches", "2-5"], "--microbatches: selects nothing of the plan's 2"),
]  # fmt: skip
FORMATS = ["dag.json", "dag.svg", "report.md", "timeline.json", "dag.dot"]


@pytest.mark.parametrize("out", FORMATS)
@pytest.mark.parametrize(("flags", "words"), [pytest.param(*c[1:], id=c[0]) for c in FILTERS])
def test_filters_are_checked_for_every_format(
    tmp_path: Path, flags: list[str], words: str, out: str
) -> None:
    plan = _write(tmp_path, BASE)
    before = _listing(tmp_path)
    result = _run(["build", plan.name, "-o", out, *flags], tmp_path)
    _no_crash(result)
    assert result.exit_code == 2 and words in result.output, result.output
    assert not _raw_controls(result.output)
    assert _listing(tmp_path) == before


def test_filter_errors_are_json_under_format_json(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    for flags, code in ((["--ranks", "0-"], "P-USAGE"), (["--layers", "9"], "P-USAGE")):
        result = _run(["build", "plan.yaml", "-o", "d.json", "--format", "json", *flags],
                      tmp_path)  # fmt: skip
        assert result.exit_code == 2
        doc = json.loads(result.stdout)
        assert doc["code"] == code and doc["error"]
    assert _listing(tmp_path) == {"plan.yaml"}


# ------------------------------------------------------------------------- outputs


OUTPUTS: list[tuple[str, list[str], str]] = [
    ("missing-dir", ["-o", "no/such/dag.json"], "does not exist"),
    ("output-is-dir", ["-o", "sub"], "is a directory; a directory output needs its format"),
    ("dev-null", ["-o", "/dev/null", "--to", "json"], "is not a regular file"),
    ("file-as-dir", ["-o", "plan.yaml", "--to", "per-rank"], "exists and is not a directory"),
    ("unknown-suffix", ["-o", "dag.exe"], "dag.exe"),
    ("twice", ["-o", "a.json", "-o", "./a.json"], "given twice"),
    ("to-unknown", ["-o", "x", "--to", "nope"], "nope"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "words"), [pytest.param(*c[1:], id=c[0]) for c in OUTPUTS])
def test_bad_outputs_write_nothing(tmp_path: Path, flags: list[str], words: str) -> None:
    _write(tmp_path, BASE)
    (tmp_path / "sub").mkdir()
    before = _listing(tmp_path)
    result = _run(["build", "plan.yaml", *flags], tmp_path)
    _no_crash(result)
    assert result.exit_code == 2 and words in result.output, result.output
    assert "P-OUTPUT" in result.output or "P-USAGE" in result.output
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444 | 0o200, 0o755])
def test_replacing_a_file_keeps_its_permissions(tmp_path: Path, mode: int) -> None:
    _write(tmp_path, BASE)
    target = tmp_path / "dag.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(mode)
    result = _run(["build", "plan.yaml", "-o", "dag.json"], tmp_path)
    assert result.exit_code in (0, 1), result.output
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text(encoding="utf-8") != "old"
    assert _listing(tmp_path) == {"plan.yaml", "dag.json"}


@pytest.mark.parametrize("suffix", [".json", ".md", ".svg"])
def test_a_name_near_name_max_gets_a_short_temp_name(tmp_path: Path, suffix: str) -> None:
    _write(tmp_path, BASE)
    name = "d" * (255 - len(suffix)) + suffix  # the longest name the file system takes
    result = _run(["build", "plan.yaml", "-o", name], tmp_path)
    assert result.exit_code in (0, 1), result.output
    assert _listing(tmp_path) == {"plan.yaml", name}


@pytest.mark.parametrize("out", ["report.md", "dag.svg", "dag.dot", "dag.json", "timeline.json"])
@pytest.mark.parametrize("where", ["model.name", "name"])
def test_control_characters_never_reach_an_output(tmp_path: Path, out: str, where: str) -> None:
    _write(tmp_path, _with({where: f"tiny{CONTROL}\nend"}))
    result = _run(["build", "plan.yaml", "-o", out], tmp_path)
    _no_crash(result)
    assert result.exit_code in (0, 1), result.output
    text = (tmp_path / out).read_text(encoding="utf-8")
    assert not _raw_controls(text) and "\u202e" not in text and not _raw_controls(result.output)
    if out.endswith(".json"):
        json.loads(text)
    assert _listing(tmp_path) == {"plan.yaml", out}


def test_control_characters_in_findings_are_escaped_on_the_terminal(tmp_path: Path) -> None:
    _write(tmp_path, _with({"parallel.order": f"tp-{CONTROL}"}))
    result = _run(["check", "plan.yaml"], tmp_path)
    assert result.exit_code == 2 and "\\x1b[31m" in result.stderr
    assert not _raw_controls(result.output) and "\u202e" not in result.output
    claims = _with({"claims": [{"says": f"fast{CONTROL}", "metric": "ttft_s", "at_most": 1.0}]})
    _write(tmp_path, claims)
    for args in (["check", "plan.yaml"], ["report", "plan.yaml"],
                 ["check", "plan.yaml", "--format", "json"]):  # fmt: skip
        result = _run(args, tmp_path)
        _no_crash(result)
        assert not _raw_controls(result.output) and "\u202e" not in result.output, args


# ------------------------------------------------------------ §2 layout faults via CLI


def test_layout_faults_exit_1_not_2(tmp_path: Path) -> None:
    doc = yaml.safe_load(TINY_MOE.read_text(encoding="utf-8"))
    doc["model"]["moe"]["experts"] = 2
    doc["parallel"].update({"ep": 2, "redundant_experts": 4})
    _write(tmp_path, doc)
    result = _run(["build", "plan.yaml", "-o", "d.json"], tmp_path)
    _no_crash(result)
    assert result.exit_code == 1 and "PLAN-EXPERT-PLACE" in result.output
    assert _listing(tmp_path) == {"plan.yaml"}


def test_memory_guard_refuses_before_allocating(tmp_path: Path) -> None:
    doc = _with({"workload.phase": "decode", "workload.gen_len": 4096,
                 "workload.decode_steps": 4096, "workload.micro_batches": 2})  # fmt: skip
    _write(tmp_path, doc)
    for args, peak in ((["check", "plan.yaml"], "simulate"),
                       (["build", "plan.yaml", "-o", "d.json"], "export")):  # fmt: skip
        result = _run(args, tmp_path, env={"DAGEN_MEMORY_LIMIT": "16M"})
        _no_crash(result)
        assert result.exit_code == 2 and "P-TOO-BIG" in result.stderr, result.output
        assert f"{peak} would peak at about" in result.stderr
        assert "decode_steps 4,096 → at most" in result.stderr
        assert "16.0 MiB" in result.stderr or "0.0 GiB allowed" in result.stderr
    bad = _run(["check", "plan.yaml"], tmp_path, env={"DAGEN_MEMORY_LIMIT": "lots"})
    assert bad.exit_code == 2 and "DAGEN_MEMORY_LIMIT='lots' is not a size" in bad.stderr
    assert _listing(tmp_path) == {"plan.yaml"}


# --------------------------------------------- subprocesses: signals, stdout, file names


def _dagen(args: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from dagen.cli import main; sys.exit(main())"
    streams = {} if "stdout" in kw else {"capture_output": True}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, timeout=120,
                          check=False, **streams, **kw)  # fmt: skip


_SIGNALLED = textwrap.dedent("""
    import os, signal, sys
    import dagen.export.outputs as o
    sig = getattr(signal, sys.argv[1])
    real = o.emitter
    def emitter(name):
        inner = real(name)
        def write(ctx, fh):
            if hasattr(fh, "open"):  # a directory output: one file of it first
                with fh.open("r0.json") as one:
                    one.write(b"partial")
            else:
                fh.write(b"partial")
                fh.flush()
            os.kill(os.getpid(), sig)
            inner(ctx, fh)
        return write
    o.emitter = emitter
    from dagen.cli import main
    sys.argv = ["dagen", *sys.argv[2:]]
    main()
""")


@pytest.mark.parametrize(("sig", "status"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
@pytest.mark.parametrize("out", ["dag.json", "ranks"])
def test_a_signal_mid_write_removes_the_part_files(
    tmp_path: Path, sig: str, status: int, out: str
) -> None:
    _write(tmp_path, BASE)
    (tmp_path / "keep.json").write_text("old", encoding="utf-8")
    extra = ["--to", "per-rank"] if out == "ranks" else []
    run = subprocess.run(
        [sys.executable, "-c", _SIGNALLED, sig, "build", "plan.yaml", "-o", out, *extra],
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == status, run.stderr
    assert f"interrupted ({sig})" in run.stderr.decode() and b"Traceback" not in run.stderr
    assert _listing(tmp_path) == {"plan.yaml", "keep.json"}
    assert (tmp_path / "keep.json").read_text(encoding="utf-8") == "old"


def test_a_full_stdout_is_exit_2_with_a_message(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    with open("/dev/full", "wb") as full:
        run = _dagen(["check", "plan.yaml"], tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert run.returncode == 2 and b"P-OUTPUT" in run.stderr and b"No space left" in run.stderr
    assert b"Traceback" not in run.stderr and b"Exception ignored" not in run.stderr


def test_a_closed_stdout_is_exit_2_with_a_message(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    code = "import os, sys; os.close(1); sys.stdout = None; from dagen.cli import main; main()"
    run = subprocess.run([sys.executable, "-c", code, "check", "plan.yaml"], cwd=tmp_path,
                         stderr=subprocess.PIPE, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 2 and b"stdout is closed" in run.stderr
    assert b"Traceback" not in run.stderr


def test_a_reader_that_leaves_is_exit_2_not_a_traceback(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write raises EPIPE
    try:
        run = _dagen(["schema", "plan"], tmp_path, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert run.returncode == 2 and b"P-OUTPUT" in run.stderr and b"Traceback" not in run.stderr


@pytest.mark.parametrize("out", ["dag.json", "dag.svg", "report.md", "dag.dot", "timeline.json"])
def test_non_utf8_file_names_work_in_every_format(tmp_path: Path, out: str) -> None:
    raw = os.fsencode(tmp_path) + b"/plan-\xff\xfe.yaml"
    with open(raw, "wb") as fh:
        fh.write(TINY.read_bytes())
    target = b"out-\xff-" + out.encode()
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from dagen.cli import main; sys.exit(main())",
         "build", raw, "-o", target], cwd=tmp_path, capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stderr
    assert b"Traceback" not in run.stderr and b"\\xff" in run.stderr
    text = (tmp_path / os.fsdecode(target)).read_bytes().decode("utf-8")
    if out.endswith(".json"):
        json.loads(text)
    assert set(os.listdir(os.fsencode(tmp_path))) == {b"plan-\xff\xfe.yaml", target}


# ------------------------------------- every writer: import and search keep modes too


MIXTRAL = str(ROOT / "tests" / "data" / "hf" / "mixtral-8x7b.json")


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_import_replaces_a_plan_keeping_its_permissions(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "plan.yaml"
    target.write_text("old", encoding="utf-8")
    target.chmod(mode)
    result = _run(["import", "vllm", "-tp", "2", "--model-config", MIXTRAL, "-o", "plan.yaml"],
                  tmp_path)  # fmt: skip
    _no_crash(result)
    assert result.exit_code in (0, 1), result.output
    assert stat.S_IMODE(target.stat().st_mode) == mode and target.read_text() != "old"
    assert _listing(tmp_path) == {"plan.yaml"}


def test_import_into_a_missing_directory_is_exit_2(tmp_path: Path) -> None:
    result = _run(["import", "vllm", "--model-config", MIXTRAL, "-o", "no/p.yaml"], tmp_path)
    _no_crash(result)
    assert (
        result.exit_code == 2 and "P-IMPORT" in result.stderr and "no directory no" in result.stderr
    )
    assert _listing(tmp_path) == set()


def test_search_replaces_a_frontier_keeping_its_permissions(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    target = tmp_path / "f.md"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    result = _run(["search", "plan.yaml", "--only", "pp=1,2", "--top", "1", "-o", "f.md"],
                  tmp_path)  # fmt: skip
    _no_crash(result)
    assert result.exit_code in (0, 1), result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() != "old"
    assert _listing(tmp_path) == {"plan.yaml", "f.md"}


@pytest.mark.parametrize("raw", [HUGE_INT, "!!int 12x"])
def test_a_value_the_parser_cannot_read_is_reported_once(raw: str) -> None:
    from dagen.errors import PlanError

    with pytest.raises(PlanError) as err:
        load_plan_text(_yaml_with("batch", raw), source="p.yaml")
    assert [p.code for p in err.value.problems if p.path == "workload.batch"] in (
        ["P-RANGE"],
        ["P-TAG"],
    )
