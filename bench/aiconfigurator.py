"""NVIDIA aiconfigurator's predictions for the published cases, for the validation table.

``python -m bench.aiconfigurator`` (``make bench-aiconfigurator``; ``make bench`` runs it
too) runs ``aiconfigurator cli estimate`` from its own virtualenv (``bench/.aic-venv``,
PyPI ``aiconfigurator==0.12.0``; never in CI) on every plan under
``tests/data/plans/published/`` it can express, and writes
``bench/results/aiconfigurator.csv``: the case, aiconfigurator's figure in the unit of the
case's target (latencies in ms), its raw TTFT / TPOT / tokens/s/gpu and the exact command.

What it can express: Llama-style dense models (Llama 2, Mistral 7B written as
``LlamaForCausalLM``: its 4,096-token sliding window never binds at these lengths),
Mixtral (``MixtralForCausalLM``) and DeepSeek-V3/R1 (``DeepseekV3ForCausalLM``), on the
GPUs it has tables for. GPT-J and Falcon (parallel attention + MLP, non-gated GELU FFN)
have no aiconfigurator model and are listed as skipped. Each case's ``config.json`` is
written from the plan's own ``model`` section (which the plans took from the Hugging Face
configs) under ``bench/out/aic-models/``.

Figures: static batches (``--estimate-mode static``) give TTFT and TPOT, decode-phase plans
(``static_gen``, ``--isl`` the plan's context, two output tokens) TPOT; TTFT targets read
TTFT, TPOT targets TPOT, throughput targets the dagen formula of ``tests/published.py``
(``batch · output / (TTFT + (output − 1)·TPOT) / GPUs``, prefill-only cases
``batch · input / TTFT / GPUs``, decode-only ``batch · tokens per step / TPOT / GPUs``), so
both tools are scored on the same definition. Serving plans use ``--estimate-mode agg``
with the plan's token budget (``--ctx-tokens`` = ``prefill_chunk``) and its tokens/s/gpu.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from dagen.plan.loader import load_plan
from dagen.plan.model import Phase, Plan

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted((ROOT / "tests" / "data" / "plans" / "published").glob("*.yaml"))
AIC = ROOT / "bench" / ".aic-venv" / "bin" / "aiconfigurator"
MODELS = ROOT / "bench" / "out" / "aic-models"
OUT = ROOT / "bench" / "results" / "aiconfigurator.csv"
COLUMNS = ("case", "aiconfigurator", "unit", "ttft_ms", "tpot_ms", "tokens_per_s_per_gpu",
           "status", "command")  # fmt: skip

SYSTEM = {"H100-SXM-80GB": "h100_sxm", "H200": "h200_sxm", "A100-80GB": "a100_sxm",
          "B200": "b200_sxm"}  # fmt: skip
QUANT = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block",
         "nvfp4": "nvfp4"}  # fmt: skip
KV = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8"}


def hf_config(plan: Plan) -> dict[str, Any] | None:
    """A Hugging Face ``config.json`` for the plan's model, or None if aiconfigurator has
    no architecture for it."""
    m = plan.model
    if not m.gated_ffn:
        return None
    base: dict[str, Any] = {
        "hidden_size": m.hidden_size, "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads, "num_key_value_heads": m.kv_heads,
        "head_dim": m.head_dim, "intermediate_size": m.ffn_size, "vocab_size": m.vocab_size,
        "max_position_embeddings": 163840, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "tie_word_embeddings": m.tied_embeddings, "torch_dtype": "bfloat16",
    }  # fmt: skip
    if m.moe is None:
        return base | {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    if m.mla is None:
        return base | {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
                       "num_local_experts": m.moe.experts, "num_experts_per_tok": m.moe.top_k}  # fmt: skip
    a = m.mla
    return base | {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "n_routed_experts": m.moe.experts, "num_experts_per_tok": m.moe.top_k,
        "moe_intermediate_size": m.moe.expert_ffn_size, "n_shared_experts": m.moe.shared_experts,
        "first_k_dense_replace": m.moe.first_dense_layers, "moe_layer_freq": m.moe.moe_layer_freq,
        "q_lora_rank": a.q_lora_rank, "kv_lora_rank": a.kv_lora_rank,
        "qk_nope_head_dim": a.qk_nope_head_dim, "qk_rope_head_dim": a.qk_rope_head_dim,
        "v_head_dim": a.v_head_dim, "n_group": 8, "topk_group": 4,
        "num_nextn_predict_layers": 1,
    }  # fmt: skip


def command(plan: Plan, model_dir: Path) -> list[str]:
    """The ``aiconfigurator cli estimate`` command of one plan."""
    p, w, pr = plan.parallel, plan.workload, plan.dtypes
    dp_attention = plan.model.moe is not None and p.tp == 1 and p.dp > 1
    replicas = 1 if dp_attention else p.dp
    decode = not w.serving and w.phase is Phase.DECODE
    mode = "agg" if w.serving else "static_gen" if decode else "static"
    isl, osl = (w.prompt_len, 2) if decode else (w.prompt_len, max(w.gen_len, 1))
    framework = plan.runtime.framework.value
    args = [str(AIC), "cli", "estimate", "--model-path", str(model_dir),
            "--system", SYSTEM[plan.hardware.preset or ""],
            "--backend", framework if framework in ("sglang", "vllm") else "trtllm",
            "--estimate-mode", mode, "--isl", str(isl), "--osl", str(osl),
            "--batch-size", str(w.batch // replicas // (p.dp if dp_attention else 1)),
            "--tp-size", str(p.tp), "--pp-size", str(p.pp),
            "--gemm-quant-mode", QUANT[pr.weights.value],
            "--kvcache-quant-mode", KV.get(pr.kv_cache.value, "bfloat16")]  # fmt: skip
    if plan.model.moe is not None:
        args += ["--moe-quant-mode", QUANT[pr.weights.value],
                 "--moe-tp-size", str(p.etp), "--moe-ep-size", str(p.ep)]  # fmt: skip
        if dp_attention:
            args += ["--attention-dp-size", str(p.dp)]
    if w.serving and w.prefill_chunk is not None:  # the same token budget as dagen's
        args += ["--ctx-tokens", str(w.prefill_chunk)]
    if w.speculative_tokens:
        args += ["--nextn", str(w.speculative_tokens), "--nextn-accepted", str(w.acceptance)]
    return [*args, "--log-level", "ERROR", "--no-color"]


def _read(text: str, label: str) -> float | None:
    found = re.search(rf"^\s*{re.escape(label)}:\s*([0-9.,]+)", text, re.MULTILINE)
    return float(found.group(1).replace(",", "")) if found else None


def figure(plan: Plan, ttft: float, tpot: float, per_gpu: float) -> tuple[float, str]:
    """aiconfigurator's figure for the plan's target (ms for latencies), by the dagen
    formula of the module docstring."""
    t, w = plan.targets, plan.workload
    gpus = plan.parallel.world()
    if t.ttft_s is not None:
        return ttft, "ms TTFT"
    if t.tpot_ms is not None:
        return tpot, "ms TPOT"
    if w.serving:
        value = per_gpu
    elif w.phase is Phase.DECODE:
        step_tokens = 1 + w.speculative_tokens * w.acceptance
        value = w.batch * step_tokens / (tpot / 1e3) / gpus
    elif w.gen_len <= 1:
        value = w.batch * w.prompt_len / (ttft / 1e3) / gpus
    else:
        value = w.batch * w.gen_len / ((ttft + (w.gen_len - 1) * tpot) / 1e3) / gpus
    if t.tokens_per_s is not None:
        return value * gpus, "tok/s"
    return value, "tok/s/GPU"


def run_case(path: Path) -> dict[str, Any]:
    """One CSV row: aiconfigurator's figure for one published plan, or why it has none."""
    plan = load_plan(path)
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row["case"] = path.name
    config = hf_config(plan)
    if config is None or (plan.hardware.preset or "") not in SYSTEM:
        row["status"] = "skipped: no aiconfigurator model or system for this plan"
        return row
    model_dir = MODELS / path.stem
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    args = command(plan, model_dir)
    row["command"] = shlex.join(["aiconfigurator", *args[1:]]).replace(str(ROOT) + "/", "")
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
    ttft, tpot = _read(done.stdout, "TTFT"), _read(done.stdout, "TPOT")
    per_gpu = _read(done.stdout, "tokens/s/gpu")
    if ttft is None and plan.workload.phase is Phase.DECODE:
        ttft = 0.0  # static_gen reports the decode steps only
    if done.returncode != 0 or ttft is None or tpot is None or per_gpu is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        tail = tail.replace(str(ROOT) + "/", "")[:200]
        row["status"] = f"failed: {tail}"
        return row
    value, unit = figure(plan, ttft, tpot, per_gpu)
    row.update(aiconfigurator=f"{value:.6g}", unit=unit, ttft_ms=ttft, tpot_ms=tpot,
               tokens_per_s_per_gpu=per_gpu, status="ok")  # fmt: skip
    return row


def main(argv: list[str]) -> int:
    if not AIC.exists():
        print(f"{AIC} is missing: run `make bench-aiconfigurator`", file=sys.stderr)
        return 2
    only = set(argv)
    rows = [run_case(p) for p in PUBLISHED if not only or p.stem in only or p.name in only]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        out.writeheader()
        out.writerows(rows)
    for r in rows:
        print(f"{r['case']}: {r['aiconfigurator'] or '-'} {r['unit']} ({r['status']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
