"""``dagen import``: the plan it writes, the origins it keeps, and the input it refuses.

The refusals follow each framework's own validation (the rule and file each message
cites are in docs/import.md); every one must exit 2, name the flag, leave no file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagen.cli import main
from dagen.plan.loader import load_plan

HF = Path(__file__).parent / "data" / "hf"
MIXTRAL = str(HF / "mixtral-8x7b.json")
LLAMA = str(HF / "llama-3-70b.json")


@pytest.fixture
def runner() -> CliRunner:
    # Wide enough that no finding headline wraps: the tests match whole headlines.
    return CliRunner(env={"COLUMNS": "1000"})


def _import(runner: CliRunner, tmp_path: Path, *argv: str, model: str = MIXTRAL):
    out = tmp_path / "plan.yaml"
    args = ["import", *argv, "--model-config", model, "-o", str(out)]
    return runner.invoke(main, args, catch_exceptions=False), out


def test_vllm_plan_is_written_traced_and_checks_clean(runner: CliRunner, tmp_path: Path) -> None:
    result, out = _import(runner, tmp_path, "vllm", "-tp", "2", "-pp", "2", "-dp", "2", "-ep")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    values = [ln for ln in text.splitlines() if re.match(r"^\s*\w+: \S", ln)]
    assert values and all("  # flag: " in ln for ln in values), values
    plan = load_plan(out)
    p = plan.parallel
    assert (p.tp, p.pp, p.dp, p.ep, p.etp, p.expert_layout) == (2, 2, 2, 4, 1, "stage")
    assert plan.where("parallel.tp").flag == "-tp 2"
    assert plan.where("parallel.ep").flag.endswith(", -ep")
    assert plan.where("model.layers").flag.startswith("--model-config")
    check = runner.invoke(main, ["check", str(out)], catch_exceptions=False)
    assert check.exit_code == 0, check.output


def test_ranks_json_shows_the_two_stride_ep_group(runner: CliRunner, tmp_path: Path) -> None:
    _, out = _import(runner, tmp_path, "vllm", "-tp", "2", "-pp", "2", "-dp", "2", "-ep")
    rows = json.loads(runner.invoke(main, ["ranks", str(out), "--json"]).output)
    by_group: dict[int, list[int]] = {}
    for row in rows:
        by_group.setdefault(row["ep_group"], []).append(row["rank"])
    # vllm/distributed/parallel_state.py: the EP group of stage 0 is DP·PCP·TP = [0, 1, 4, 5]
    assert sorted(by_group.values()) == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_import_is_byte_deterministic(runner: CliRunner, tmp_path: Path) -> None:
    argv = ("sglang", "--tp-size", "8", "--dp-size", "8", "--enable-dp-attention")
    first = _import(runner, tmp_path, *argv)[1].read_bytes()
    second = _import(runner, tmp_path, *argv)[1].read_bytes()
    assert first == second


def test_findings_point_at_the_flag(runner: CliRunner, tmp_path: Path) -> None:
    result, out = _import(runner, tmp_path, "vllm", "-dp", "2", "--batch", "3")
    assert result.exit_code == 1  # written, with the plan rule's error named at the flag
    assert "PLAN-BATCH-DP --batch 3 (" in result.output
    check = runner.invoke(main, ["check", str(out), "--format", "json"])
    found = {f["code"]: f for f in json.loads(check.output)}
    assert found["PLAN-BATCH-DP"]["flag"] == "--batch 3"
    assert found["PLAN-BATCH-DP"]["path"] == "workload.batch"


def test_parallel_finding_names_the_short_flag(runner: CliRunner, tmp_path: Path) -> None:
    result, _ = _import(runner, tmp_path, "vllm", "-tp", "16", model=LLAMA)
    assert result.exit_code == 0
    assert re.search(
        r"warning PLAN-TP-NODES -tp 16 \(.*plan\.yaml:\d+:\d+\): parallel\.tp", result.output
    )


def test_megatron_expert_tp_defaults_to_tp(runner: CliRunner, tmp_path: Path) -> None:
    argv = ["--tensor-model-parallel-size", "2", "--expert-model-parallel-size", "4"]
    result, out = _import(runner, tmp_path, "megatron", *argv, "--world-size", "8")
    assert result.exit_code == 0, result.output
    plan = load_plan(out)
    assert (plan.parallel.etp, plan.parallel.dp, plan.parallel.world_size) == (2, 4, 8)
    assert "default TP" in plan.where("parallel.etp").flag


def test_sglang_deepep_forces_ep_to_tp(runner: CliRunner, tmp_path: Path) -> None:
    argv = ["--tp-size", "8", "--ep-size", "2", "--moe-a2a-backend", "deepep"]
    result, out = _import(runner, tmp_path, "sglang", *argv)
    assert result.exit_code == 0, result.output
    plan = load_plan(out)
    assert (plan.parallel.ep, plan.parallel.etp) == (8, 1)
    assert "--moe-a2a-backend deepep sets ep" in plan.where("parallel.ep").flag


def test_sglang_plain_dp_is_replicas(runner: CliRunner, tmp_path: Path) -> None:
    result, out = _import(runner, tmp_path, "sglang", "--tp-size", "4", "--dp-size", "2")
    assert result.exit_code == 0, result.output
    plan = load_plan(out)
    assert (plan.parallel.tp, plan.parallel.dp, plan.parallel.order) == (4, 2, "tp-cp-ep-pp-dp")


BAD = [
    # (framework argv, model, words the message must hold)
    (["vllm", "--tensor-parallel", "4"], MIXTRAL, ["unknown flag '--tensor-parallel'", "Did you mean --tensor-parallel-size"]),
    (["vllm", "-tp", "2", "--tensor-parallel-size", "4"], MIXTRAL, ["conflicting flags -tp 2 and --tensor-parallel-size 4"]),
    (["vllm", "-tp", "3"], MIXTRAL, ["-tp 3", "total_num_attention_heads % tensor_parallel_size", "verify_with_parallel_config"]),
    (["vllm", "-tp", "0"], MIXTRAL, ["-tp", "below 1"]),
    (["vllm", "-pp", "two"], MIXTRAL, ["-pp", "not an integer"]),
    (["vllm", "-ep"], LLAMA, ["-ep", "expert parallelism", "_verify_with_expert_parallelism"]),
    (["vllm", "-tp", "2", "-dcp", "2"], MIXTRAL, ["-dcp 2", "decode context parallelism"]),
    (["vllm", "--gpu-memory-utilization", "1.5"], MIXTRAL, ["--gpu-memory-utilization 1.5", "CacheConfig"]),
    (["vllm", "-tp", "4", "-dp", "3"], MIXTRAL, ["-tp 4", "-dp 3", "FusedMoEConfig"]),
    (["sglang", "--tp-size", "8", "--dp-size", "2", "--attn-dp-size", "2"], MIXTRAL, ["--dp-size 2", "--attn-dp-size 2", "handle_data_parallelism"]),
    (["sglang", "--tp-size", "8", "--attn-dp-size", "3"], MIXTRAL, ["--tp-size 8", "--attn-dp-size 3", "attn_dp_size · attn_cp_size"]),
    (["sglang", "--tp-size", "8", "--ep-size", "3"], MIXTRAL, ["--ep-size 3", "derive_parallel_widths"]),
    (["sglang", "--tp-size", "8", "--moe-dp-size", "2", "--ep-size", "2"], MIXTRAL, ["ep_size * moe_dp_size == tp_size"]),
    (["sglang", "--tp-size", "4", "--moe-dp-size", "2", "--pp-size", "2"], MIXTRAL, ["--pp-size 2", "pp_size == 1"]),
    (["sglang", "--moe-a2a-backend", "magic"], MIXTRAL, ["--moe-a2a-backend", "invalid choice"]),
    (["megatron", "--tensor-model-parallel-size", "4", "--world-size", "6"], MIXTRAL, ["--world-size 6", "not divisible by 4"]),
    (["megatron", "--expert-model-parallel-size", "4", "--world-size", "2"], MIXTRAL, ["--expert-model-parallel-size 4", "expert_tensor_model_pipeline_parallel"]),
    (["megatron", "--sequence-parallel"], MIXTRAL, ["--sequence-parallel", "without tensor parallelism"]),
    (["megatron", "--pipeline-model-parallel-size", "4", "--num-layers-in-first-pipeline-stage", "6"], MIXTRAL, ["--num-layers-in-first-pipeline-stage 6", "middle stages"]),
    (["megatron", "--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2", "--expert-model-parallel-size", "2", "--use-tp-pp-dp-mapping", "--world-size", "16"], MIXTRAL, ["--use-tp-pp-dp-mapping", "pp-last"]),
    (["megatron", "--tensor-model-parallel-size", "3", "--world-size", "3"], LLAMA, ["--tensor-model-parallel-size 3", "num_attention_heads"]),
    (["vllm", "extra"], MIXTRAL, ["unexpected argument 'extra'"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "model", "words"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_flags_exit_2_naming_the_flag(
    runner: CliRunner, tmp_path: Path, argv: list[str], model: str, words: list[str]
) -> None:
    result, out = _import(runner, tmp_path, *argv, model=model)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Fix:" in result.output
    for word in words:
        assert word in result.output, (word, result.output)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_paths_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    missing = runner.invoke(
        main,
        [
            "import",
            "vllm",
            "--model-config",
            str(tmp_path / "no.json"),
            "-o",
            str(tmp_path / "p.yaml"),
        ],
    )
    assert missing.exit_code == 2 and "--model-config" in missing.output
    nodir = runner.invoke(
        main, ["import", "vllm", "--model-config", MIXTRAL, "-o", str(tmp_path / "a" / "p.yaml")]
    )
    assert nodir.exit_code == 2 and "-o" in nodir.output and "no directory" in nodir.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_import_keeps_an_existing_plan(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    out.write_text("keep me\n")
    result, _ = _import(runner, tmp_path, "vllm", "-tp", "3")
    assert result.exit_code == 2 and out.read_text() == "keep me\n"


def test_a_flag_comment_reaches_load_problems_too(tmp_path: Path) -> None:
    from dagen.errors import PlanError
    from dagen.plan.loader import load_plan_text

    text = (
        "model: {hf_config: mixtral-8x7b.json}\n"
        "parallel:\n"
        "  tp: two  # flag: -tp two\n"
        "workload: {batch: 1, prompt_len: 8}\n"
        "hardware: {preset: H100-SXM-80GB}\n"
    )
    with pytest.raises(PlanError) as err:
        load_plan_text(text, source="p.yaml", base_dir=HF)
    (problem,) = [p for p in err.value.problems if p.path == "parallel.tp"]
    assert problem.origin is not None and problem.origin.flag == "-tp two"
    assert "P-TYPE -tp two (p.yaml:3:7): parallel.tp" in str(err.value)
