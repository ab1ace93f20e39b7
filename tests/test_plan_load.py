"""Plan loading: good plans load with their locations; every bad plan is a PlanError
whose problem has the right code, path, line, column and a fix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dagen.errors import PlanError
from dagen.findings import Finding, Origin
from dagen.plan.hf import read_hf_config
from dagen.plan.loader import load_plan, load_plan_text
from dagen.plan.model import Convention, DType, Phase
from dagen.plan.params import active_params, count_params, parse_count
from dagen.plan.presets import PRESETS

DATA = Path(__file__).parent / "data"
PLANS = DATA / "plans"
HF = DATA / "hf"

BASE = """\
model:
  name: tiny
  layers: 4
  hidden_size: 64
  heads: 4
  kv_heads: 2
  ffn_size: 256
  vocab_size: 128
  dtype: bf16
parallel:
  tp: 2
  pp: 2
  dp: 2
  world_size: 8
workload:
  batch: 8
  prompt_len: 16
  micro_batches: 2
hardware:
  preset: H100-SXM-80GB
"""


def _variant(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def _problems(text: str, base_dir: Path | None = None) -> list[Finding]:
    with pytest.raises(PlanError) as info:
        load_plan_text(text, source="bad.yaml", base_dir=base_dir)
    assert info.value.problems, "a PlanError must carry its problems"
    return info.value.problems


_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)

# (id, text, code, path, line, column, words the message or fix must contain)
BAD: list[tuple[str, str, str, str, int | None, int | None, str]] = [
    (
        "float-int",
        _variant("layers: 4", "layers: 4.0"),
        "P-TYPE",
        "model.layers",
        3,
        11,
        "without the decimal",
    ),
    (
        "bool-int",
        _variant("layers: 4", "layers: true"),
        "P-TYPE",
        "model.layers",
        3,
        11,
        "whole number",
    ),
    (
        "quoted-int",
        _variant("layers: 4", 'layers: "4"'),
        "P-TYPE",
        "model.layers",
        3,
        11,
        "remove the quotes",
    ),
    (
        "zero-layers",
        _variant("layers: 4", "layers: 0"),
        "P-RANGE",
        "model.layers",
        3,
        11,
        "at least 1",
    ),
    (
        "absurd-hidden",
        _variant("hidden_size: 64", "hidden_size: 100000000"),
        "P-RANGE",
        "model.hidden_size",
        4,
        16,
        "16,777,216",
    ),
    (
        "typo-key",
        _variant("hidden_size: 64", "hiden_size: 64"),
        "P-UNKNOWN-KEY",
        "model.hiden_size",
        4,
        3,
        "did you mean 'hidden_size'?",
    ),
    (
        "alias-key",
        _variant("layers: 4", "num_layers: 4"),
        "P-UNKNOWN-KEY",
        "model.num_layers",
        3,
        3,
        "did you mean 'layers'?",
    ),
    (
        "enum-dtype",
        _variant("dtype: bf16", "dtype: bf61"),
        "P-ENUM",
        "model.dtype",
        9,
        10,
        "did you mean 'bf16'?",
    ),
    (
        "enum-case",
        _variant("dtype: bf16", "dtype: BF16"),
        "P-ENUM",
        "model.dtype",
        9,
        10,
        "did you mean 'bf16'?",
    ),
    ("float-tp", _variant("tp: 2", "tp: 2.5"), "P-TYPE", "parallel.tp", 11, 7, "whole number"),
    (
        "typo-tp",
        _variant("tp: 2", "tpp: 2"),
        "P-UNKNOWN-KEY",
        "parallel.tpp",
        11,
        3,
        "did you mean",
    ),
    (
        "negative-world",
        _variant("world_size: 8", "world_size: -8"),
        "P-RANGE",
        "parallel.world_size",
        14,
        15,
        "≥ 1",
    ),
    (
        "unknown-preset",
        _variant("preset: H100-SXM-80GB", "preset: H100"),
        "P-PRESET",
        "hardware.preset",
        20,
        11,
        "H100-SXM-80GB, H200",
    ),
    (
        "preset-case",
        _variant("preset: H100-SXM-80GB", "preset: h200"),
        "P-PRESET",
        "hardware.preset",
        20,
        11,
        "did you mean 'H200'?",
    ),
    (
        "list-batch",
        _variant("batch: 8", "batch: []"),
        "P-TYPE",
        "workload.batch",
        16,
        10,
        "expected an integer",
    ),
    (
        "python-tag",
        _variant("preset: H100-SXM-80GB", "preset: !!python/object/apply:os.system [ls]"),
        "P-TAG",
        "hardware.preset",
        20,
        11,
        "never executed",
    ),
    (
        "custom-tag",
        _variant("batch: 8", "batch: !big 8"),
        "P-TAG",
        "workload.batch",
        16,
        10,
        "remove the tag",
    ),
    (
        "duplicate",
        _variant("  tp: 2\n", "  tp: 2\n  tp: 4\n"),
        "P-DUPLICATE-KEY",
        "parallel.tp",
        12,
        3,
        "first on line 11",
    ),
    (
        "missing-heads",
        _variant("  heads: 4\n", ""),
        "P-MISSING",
        "model.heads",
        1,
        1,
        "add 'heads: …'",
    ),
    (
        "missing-section",
        _variant("workload:\n  batch: 8\n  prompt_len: 16\n  micro_batches: 2\n", ""),
        "P-MISSING",
        "workload",
        1,
        1,
        "add 'workload: …'",
    ),
    ("unknown-section", BASE + "extras: 1\n", "P-UNKNOWN-KEY", "extras", 21, 1, "use one of"),
    (
        "section-list",
        _variant("parallel:\n  tp: 2\n  pp: 2\n  dp: 2\n  world_size: 8\n", "parallel: [2, 2]\n"),
        "P-NOT-MAPPING",
        "parallel",
        10,
        11,
        "indented keys",
    ),
    (
        "moe-scalar",
        _variant("dtype: bf16", "moe: 8"),
        "P-NOT-MAPPING",
        "model.moe",
        9,
        8,
        "expected a mapping",
    ),
    (
        "moe-missing",
        _variant("dtype: bf16", "moe: {experts: 8}"),
        "P-MISSING",
        "model.moe.top_k",
        9,
        3,
        "add 'top_k: …'",
    ),
    ("empty", "", "P-EMPTY", "", 1, 1, "model, parallel"),
    ("only-comments", "# nothing here\n", "P-EMPTY", "", 1, 1, "model, parallel"),
    ("not-mapping", "- 1\n- 2\n", "P-NOT-MAPPING", "", 1, 1, "start the file with"),
    ("syntax", "model:\n  name: [tiny\n", "P-YAML-SYNTAX", "", 3, 1, "indentation"),
    ("tabs", "model:\n\tname: x\n", "P-YAML-SYNTAX", "", 2, 1, "indent with spaces"),
    ("alias-bomb", _BOMB, "P-ALIAS-BOMB", "f.0", 6, 8, "alias bomb"),
    ("recursive-alias", "x: &a [1, *a]\n", "P-ALIAS-BOMB", "x.1", 1, 11, "never ends"),
    (
        "too-deep",
        "x: " + "[" * 40 + "]" * 40 + "\n",
        "P-TOO-DEEP",
        "x" + ".0" * 31,
        1,
        35,
        "flatten",
    ),
    ("multi-doc", BASE + "---\nmodel: {}\n", "P-MULTI-DOC", "", 21, 1, "own file"),
    ("merge-key", BASE + "<<: {x: 1}\n", "P-MERGE", "", 21, 1, "write the merged keys out"),
    (
        "undefined-alias",
        _variant("layers: 4", "layers: *four"),
        "P-YAML-SYNTAX",
        "model.layers",
        3,
        11,
        "define &four",
    ),
    ("complex-key", BASE + "? [a]\n: 1\n", "P-KEY-TYPE", "", 21, 3, "plain name"),
    (
        "hf-missing",
        _variant("  name: tiny\n", "  name: tiny\n  hf_config: nowhere.json\n"),
        "P-HF-CONFIG",
        "model.hf_config",
        3,
        14,
        "never downloads",
    ),
    (
        "head-dim",
        _variant("hidden_size: 64", "hidden_size: 66"),
        "P-HEAD-DIM",
        "model.head_dim",
        5,
        10,
        "66 / 4 = 16.5",
    ),
    (
        "order",
        _variant("world_size: 8", "order: tp-dp-xp-dp"),
        "P-ORDER",
        "parallel.order",
        14,
        10,
        "unknown or repeated: dp, xp",
    ),
    (
        "convention",
        _variant("world_size: 8", "convention: megatorn"),
        "P-ENUM",
        "parallel.convention",
        14,
        15,
        "did you mean 'megatron'?",
    ),
    (
        "phase",
        _variant("micro_batches: 2", "phase: prefil"),
        "P-ENUM",
        "workload.phase",
        18,
        10,
        "did you mean 'prefill'?",
    ),
    (
        "tflops-key",
        _variant("preset: H100-SXM-80GB", "preset: H100-SXM-80GB\n  peak_tflops: {bf61: 900}"),
        "P-ENUM",
        "hardware.peak_tflops.bf61",
        21,
        17,
        "did you mean 'bf16'?",
    ),
    (
        "tflops-neg",
        _variant("preset: H100-SXM-80GB", "preset: H100-SXM-80GB\n  peak_tflops: {bf16: -1}"),
        "P-RANGE",
        "hardware.peak_tflops.bf16",
        21,
        23,
        "more than 0",
    ),
    (
        "no-preset",
        _variant("preset: H100-SXM-80GB", "memory_gb: 80"),
        "P-MISSING",
        "hardware.hbm_tbps",
        19,
        1,
        "set 'preset:'",
    ),
    (
        "stages-scalar",
        _variant("world_size: 8", "layers_per_stage: 4"),
        "P-TYPE",
        "parallel.layers_per_stage",
        14,
        21,
        "[16, 16, 15, 14]",
    ),
    (
        "stages-negative",
        _variant("world_size: 8", "layers_per_stage: [2, -1]"),
        "P-RANGE",
        "parallel.layers_per_stage.1",
        14,
        25,
        "≥ 0",
    ),
    (
        "params-text",
        _variant("dtype: bf16", "params: ten billion"),
        "P-TYPE",
        "model.params",
        9,
        11,
        "params: 10B",
    ),
    (
        "bool-text",
        _variant("dtype: bf16", "gated_ffn: yes please"),
        "P-TYPE",
        "model.gated_ffn",
        9,
        14,
        "true or",
    ),
    (
        "null-required",
        _variant("layers: 4", "layers:"),
        "P-TYPE",
        "model.layers",
        3,
        10,
        "write a value",
    ),
    (
        "number-name",
        _variant("name: tiny", "name: 405"),
        "P-TYPE",
        "model.name",
        2,
        9,
        'quote it: name: "405"',
    ),
    (
        "inf-memory",
        _variant("preset: H100-SXM-80GB", "preset: H100-SXM-80GB\n  memory_gb: .inf"),
        "P-RANGE",
        "hardware.memory_gb",
        21,
        14,
        "finite",
    ),
    (
        "target-zero",
        BASE + "targets: {ttft_s: 0}\n",
        "P-RANGE",
        "targets.ttft_s",
        21,
        19,
        "more than 0",
    ),
    (
        "efficiency",
        _variant("preset: H100-SXM-80GB", "preset: H100-SXM-80GB\n  flops_efficiency: 1.5"),
        "P-RANGE",
        "hardware.flops_efficiency",
        21,
        21,
        "at most 1",
    ),
]


@pytest.mark.parametrize(
    ("text", "code", "path", "line", "column", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD],
)
def test_bad_plan_is_reported_where_it_is(
    text: str, code: str, path: str, line: int | None, column: int | None, words: str
) -> None:
    problems = _problems(text)
    hits = [p for p in problems if p.code == code and p.path == path]
    assert hits, f"no {code} at {path} in {[(p.code, p.path) for p in problems]}"
    hit = hits[0]
    assert (hit.line, hit.column) == (line, column)
    assert hit.fix, "every problem says how to fix it"
    assert words in hit.message + " " + hit.fix


def test_bad_cases_are_distinct() -> None:
    assert len(BAD) >= 30
    assert len({case[1] for case in BAD}) == len(BAD)
    assert len({case[2] for case in BAD}) >= 18  # many distinct codes


def test_every_problem_is_collected_before_raising() -> None:
    text = BASE.replace("layers: 4", "layers: 4.5").replace("tp: 2", "tp: 0")
    text = text.replace("dtype: bf16", "dtype: int4").replace("H100-SXM-80GB", "H999")
    codes = {(p.code, p.path) for p in _problems(text)}
    assert codes == {
        ("P-TYPE", "model.layers"),
        ("P-RANGE", "parallel.tp"),
        ("P-ENUM", "model.dtype"),
        ("P-PRESET", "hardware.preset"),
    }  # and no P-MISSING noise for the hardware fields the unknown preset would fill


def test_message_renders_as_one_line_with_place_and_fix() -> None:
    with pytest.raises(PlanError) as info:
        load_plan_text(_variant("tp: 2", "tp: 2.5"), source="p.yaml")
    text = str(info.value)
    assert text == (
        "error P-TYPE p.yaml:11:7: parallel.tp: found 2.5 (a float); expected an integer\n"
        "    fix: write a whole number such as 8"
    )


def test_too_large_text_is_refused_before_parsing() -> None:
    problems = _problems("a: [" + "1," * (600 * 1024) + "1]\n")
    assert [p.code for p in problems] == ["P-TOO-LARGE"]
    assert problems[0].line is None and problems[0].fix


def test_too_many_values_without_aliases_is_too_large_not_a_bomb() -> None:
    (problem,) = _problems("x: [" + ",".join(["1"] * 100_001) + "]\n")
    assert problem.code == "P-TOO-LARGE" and "100,000 values" in problem.message


def test_too_large_file_is_refused_without_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as out:
        out.truncate((1 << 20) + 1)  # sparse: nothing is written or read
    with pytest.raises(PlanError) as info:
        load_plan(big)
    assert [p.code for p in info.value.problems] == ["P-TOO-LARGE"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no plan file"), (b"model: \xff\xfe\n", "not UTF-8")],
)
def test_unreadable_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "plan.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.code == "P-FILE" and message in problem.message and problem.fix


def test_alias_bomb_stops_fast() -> None:
    import time

    start = time.perf_counter()
    _problems(_BOMB.replace("range(8)", "") + "z: [" + ",".join(["*h"] * 9) + "]\n")
    assert time.perf_counter() - start < 1.0


def test_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    assert "P-TAG" in {p.code for p in _problems(text)}
    assert not marker.exists()


def test_mutated_plans_raise_only_plan_error() -> None:
    rng = random.Random(7)
    alphabet = "ab:-[]{}&*!?'\"# \n0.9"
    for _ in range(300):
        chars = list(BASE)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            chars[i : i + rng.randint(0, 3)] = rng.choice(alphabet)
        try:
            load_plan_text("".join(chars))
        except PlanError as exc:
            assert all(p.code.startswith("P-") for p in exc.problems)


# ------------------------------------------------------------ good plans


def test_tiny_dense_loads_with_derived_fields_and_locations() -> None:
    plan = load_plan(PLANS / "tiny_dense.yaml")
    m, par = plan.model, plan.parallel
    assert (m.layers, m.hidden_size, m.heads, m.kv_heads, m.head_dim) == (4, 64, 4, 2, 16)
    assert (par.tp, par.pp, par.dp, par.world()) == (2, 2, 2, 8)
    assert par.convention is Convention.MEGATRON and plan.workload.phase is Phase.PREFILL
    assert plan.where("parallel.tp") == Origin(line=13, column=7)
    assert plan.where("parallel.ep") == plan.locations["parallel"]  # nearest present parent
    assert plan.where("model") == Origin(line=3, column=1)
    assert plan.source.endswith("tiny_dense.yaml")


def test_tiny_moe_loads() -> None:
    plan = load_plan(PLANS / "tiny_moe.yaml")
    assert plan.model.moe is not None and plan.model.moe.experts == 8
    assert plan.parallel.ep == 4 and plan.parallel.edp() == 1
    assert plan.where("model.moe.experts") == Origin(line=14, column=14)


def test_derived_defaults() -> None:
    text = BASE.replace("  kv_heads: 2\n", "").replace(
        "  name: tiny\n", "  name: tiny\n  head_dim: 32\n"
    )
    plan = load_plan_text(text, source="/some/dir/my-plan.yaml")
    assert plan.model.kv_heads == 4 and plan.model.head_dim == 32
    assert plan.name == "my-plan"
    assert load_plan_text(BASE).name == "plan"


def test_preset_fills_and_fields_override_per_dtype() -> None:
    text = BASE + "  memory_gb: 40\n  peak_tflops: {fp8: 1000}\n"
    hw = load_plan_text(text).hardware
    preset = PRESETS["H100-SXM-80GB"]
    assert hw.memory_gb == 40.0 and hw.hbm_tbps == preset["hbm_tbps"]
    assert hw.peak_tflops["fp8"] == 1000.0
    assert hw.peak_tflops["bf16"] == preset["peak_tflops"]["bf16"]


def test_without_preset_every_hardware_field_is_given() -> None:
    hw_text = (
        "hardware:\n  memory_gb: 64\n  peak_tflops: {bf16: 400}\n  hbm_tbps: 1.8\n"
        "  gpus_per_node: 8\n  intra_node_gbps: 200\n  inter_node_gbps: 25\n"
    )
    plan = load_plan_text(_variant("hardware:\n  preset: H100-SXM-80GB\n", hw_text))
    assert plan.hardware.preset is None and plan.hardware.memory_gb == 64.0
    assert plan.hardware.flops_efficiency == 0.6  # default


@pytest.mark.parametrize(
    ("written", "value"),
    [("10B", 10e9), ("46.7B", 46.7e9), ("671e9", 671e9), ("1.5T", 1.5e12), ("7000000", 7e6)],
)
def test_params_as_number_or_text(written: str, value: float) -> None:
    plan = load_plan_text(_variant("dtype: bf16", f"params: {written}"))
    assert plan.model.params == pytest.approx(value)
    assert parse_count(written) == pytest.approx(value)


def test_every_sample_plan_loads() -> None:
    paths = sorted(PLANS.glob("*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        assert load_plan(path).name


# ------------------------------------------------------------- hf_config

# Published totals (model cards): Mixtral-8x7B 46.7B (12.9B active), Llama-3-70B
# 70.6B, Qwen3-235B-A22B 235B (22B active), DeepSeek-V3 671B (37B active).
HF_CASES = [
    ("mixtral-8x7b.json", 46.7e9, 12.9e9, (32, 4096, 32, 8, 128, 32000), (8, 2, 14336)),
    ("llama-3-70b.json", 70.6e9, 70.6e9, (80, 8192, 64, 8, 128, 128256), None),
    ("qwen3-235b-a22b.json", 235e9, 22e9, (94, 4096, 64, 4, 128, 151936), (128, 8, 1536)),
    ("deepseek-v3.json", 671e9, 37e9, (61, 7168, 128, 128, 192, 129280), (256, 8, 2048)),
]


def _hf_plan(config: str, extra: str = "") -> str:
    return (
        f"model:\n  hf_config: {config}\n{extra}parallel: {{tp: 1}}\n"
        "workload: {batch: 1, prompt_len: 8}\nhardware: {preset: H200}\n"
    )


@pytest.mark.parametrize(("config", "total", "active", "dims", "moe"), HF_CASES)
def test_hf_config_maps_and_counts(
    config: str,
    total: float,
    active: float,
    dims: tuple[int, ...],
    moe: tuple[int, int, int] | None,
) -> None:
    m = load_plan_text(_hf_plan(config), base_dir=HF).model
    assert (m.layers, m.hidden_size, m.heads, m.kv_heads, m.head_dim, m.vocab_size) == dims
    if moe is None:
        assert m.moe is None
    else:
        assert m.moe is not None
        assert (m.moe.experts, m.moe.top_k, m.moe.expert_ffn_size) == moe
    assert count_params(m) == pytest.approx(total, rel=0.02)
    assert active_params(m) == pytest.approx(active, rel=0.02)


def test_deepseek_specifics() -> None:
    m = load_plan_text(_hf_plan("deepseek-v3.json"), base_dir=HF).model
    assert m.mla is not None and (m.mla.q_lora_rank, m.mla.kv_lora_rank) == (1536, 512)
    assert m.moe is not None and (m.moe.shared_experts, m.moe.first_dense_layers) == (1, 3)
    assert m.dtype is DType.FP8  # quantization_config.quant_method: fp8


def test_plan_fields_override_hf_config() -> None:
    extra = "  layers: 8\n  dtype: fp16\n  moe: {top_k: 1}\n"
    plan = load_plan_text(_hf_plan("mixtral-8x7b.json", extra), base_dir=HF)
    m = plan.model
    assert (m.layers, m.dtype, m.heads) == (8, DType.FP16, 32)
    assert m.moe is not None and (m.moe.top_k, m.moe.experts) == (1, 8)
    assert plan.where("model.layers") == Origin(line=3, column=11)  # written in the plan
    assert plan.where("model.heads") == Origin(
        line=2, column=14
    )  # from the config: its hf_config line


def test_hf_value_problem_names_the_config_key(tmp_path: Path) -> None:
    cfg = json.loads((HF / "llama-3-70b.json").read_text())
    cfg["num_hidden_layers"] = 80.5
    del cfg["vocab_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    problems = _problems(_hf_plan("config.json"), base_dir=tmp_path)
    by_path = {p.path: p for p in problems}
    assert by_path["model.layers"].code == "P-TYPE"
    assert "hf_config key 'num_hidden_layers'" in by_path["model.layers"].message
    assert by_path["model.vocab_size"].code == "P-HF-CONFIG"
    assert (by_path["model.layers"].line, by_path["model.layers"].column) == (2, 14)


def test_hf_problems_vanish_when_the_plan_gives_the_value(tmp_path: Path) -> None:
    cfg = json.loads((HF / "llama-3-70b.json").read_text())
    del cfg["vocab_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    plan = load_plan_text(_hf_plan("config.json", "  vocab_size: 1000\n"), base_dir=tmp_path)
    assert plan.model.vocab_size == 1000


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"model_type": "gpt2"}', "not one dagen maps"),
    ],
)
def test_bad_hf_files(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "c.json").write_text(content)
    problems = _problems(_hf_plan("c.json"), base_dir=tmp_path)
    assert [p.code for p in problems] == ["P-HF-CONFIG"]  # no P-MISSING noise
    assert words in problems[0].message and problems[0].fix


def test_qwen_mlp_only_layers_prefix(tmp_path: Path) -> None:
    cfg = json.loads((HF / "qwen3-235b-a22b.json").read_text())
    cfg["mlp_only_layers"] = [0, 1]
    (tmp_path / "q.json").write_text(json.dumps(cfg))
    hf = read_hf_config(tmp_path / "q.json")
    assert hf.values["moe"]["first_dense_layers"] == 2
    cfg["mlp_only_layers"] = [5]
    (tmp_path / "q.json").write_text(json.dumps(cfg))
    assert "moe.first_dense_layers" in read_hf_config(tmp_path / "q.json").issues
