"""Write the TensorRT-LLM v1.0 perf-overview rows as published plans.

``python -m bench.perf_overview`` writes one plan under ``tests/data/plans/published/``
for every row of two tables of NVIDIA/TensorRT-LLM ``docs/source/performance/
perf-overview.md`` (commit 00f3768, the v1.0 data) for its dense models on the GPUs
dagen has presets for (H100, H200, B200; not GB200 or RTX 6000), taken whole: Llama 3.1
8B (H200 and H100, TP1, FP8), Llama 3.3 70B (B200 TP1 FP4, H200 TP1 FP8, H100 TP2 FP8) and
Llama 3.1 405B (B200 TP4 FP4, H200 and H100 TP8 FP8), ten ISL/OSL pairs each.

The page runs ``trtllm-bench throughput`` with every request queued at once, so what
runs concurrently is what the tool admits. Each plan's header gives the derivation:

* **concurrency**: the lesser of trtllm-bench's ``max_batch_size`` (its heuristic,
  ``tensorrt_llm/bench/build/tuning.py`` at commit 04cba88: the requests whose ISL+OSL
  cache fits ``kv_cache_gpu_mem_fraction`` of the memory left after the weights, capped at
  4,096, rounded up to a multiple of 32, 128 or 256) and the requests whose whole ISL+OSL
  cache fits the KV pool, since the default capacity scheduler (``GUARANTEED_NO_EVICT``,
  ``tensorrt_llm/llmapi/llm_args.py`` ``SchedulerConfig``) reserves a request's blocks to
  completion. The pool is dagen's (``dagen.cost.memory``) under
  ``runtime.memory_fraction``.
* **prefill_chunk**: the heuristic's ``max_num_tokens``.
* **memory_fraction 0.95**: the page's ``--kv_cache_free_gpu_mem_fraction 0.95``.
* **KV cache FP8**: the ModelOpt checkpoints' ``kv_cache_quant_algo`` (assumed: the page
  does not say; a BF16 cache would halve the concurrency).

Not run in CI; the plans it writes are committed and validated by
``tests/test_cost_published.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dagen.cost.memory import pool_memory_report
from dagen.graph.build import describe_pool
from dagen.plan.loader import load_plan_text
from dagen.plan.presets import PRESETS

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "plans" / "published"
PAGE = (
    "NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md (commit 00f3768, the\n"
    '# v1.0 tables), "Throughput Measurements"'
)
PAIRS = ((128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (1000, 2000),
         (2048, 128), (2048, 2048), (5000, 500), (20000, 2000))  # fmt: skip


@dataclass(frozen=True)
class Model:
    key: str
    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    params: float
    """Parameters, approximately (the Hugging Face checkpoints' counts; they only size the
    heuristic's engine estimate, so a 1 % error moves no concurrency by more than one)."""
    config: str


@dataclass(frozen=True)
class Column:
    model: Model
    gpu: str
    preset: str
    tp: int
    weights: str
    """dagen's format: fp8 or nvfp4."""
    label: str
    """The page's column head."""
    totals: tuple[int, ...]
    """Total Output Throughput (tokens/sec), one per ISL/OSL pair of :data:`PAIRS`."""


MODELS = {
    m.key: m
    for m in (
        Model("llama3.1-8b", "Llama-3.1-8B", 32, 4096, 32, 14336, 8.03e9,
              "meta-llama/Llama-3.1-8B-Instruct config.json"),
        Model("llama3.3-70b", "Llama-3.3-70B", 80, 8192, 64, 28672, 70.6e9,
              "meta-llama/Llama-3.3-70B-Instruct config.json"),
        Model("llama3.1-405b", "Llama-3.1-405B", 126, 16384, 128, 53248, 405.9e9,
              "meta-llama/Llama-3.1-405B-Instruct config.json"),
    )
}  # fmt: skip

PAGE_TABLES = """
llama3.1-8b   H200 TP1 (FP8)  27911 26221 18027 20770 17744 16828 3538 12194 3902 1804
llama3.1-8b   H100 TP1 (FP8)  28312 22714 14325 17660 15220 13899 3450  9305 3459 1351
llama3.3-70b  B200 TP1 (FP4)  11147  9922  6831  7762  7007  6271 1339  4783 1459  665
llama3.3-70b  H200 TP1 (FP8)   3803  4336  2872  3666  2909  2994  442  2003  566  283
llama3.3-70b  H100 TP2 (FP8)   6378  6651  4199  5222  4205  4146  762  3082  898  437
llama3.1-405b B200 TP4 (FP4)   6281  8020  6345  6244  5209  4933  749  4212 1048  672
llama3.1-405b H200 TP8 (FP8)   3814  5348  4741  4724  3330  3722  456  2948  650  505
llama3.1-405b H100 TP8 (FP8)   3627  4340  3116  3994  2919  2895  453  2296  610  345
"""
"""The page's Total Output Throughput (tokens/sec): model, column head, then one figure per
ISL/OSL pair of :data:`PAIRS`, as the page prints them."""

PRESET = {"H200": "H200", "H100": "H100-SXM-80GB", "B200": "B200"}


def _columns() -> tuple[Column, ...]:
    out = []
    for line in PAGE_TABLES.strip().splitlines():
        key, gpu, tp, fmt, *totals = line.split()
        out.append(Column(MODELS[key], gpu.lower(), PRESET[gpu], int(tp[2:]),
                          "nvfp4" if fmt == "(FP4)" else "fp8", f"{gpu} {tp} {fmt}",
                          tuple(int(t) for t in totals)))  # fmt: skip
    return tuple(out)


COLUMNS = _columns()

KV_HEADS, HEAD_DIM, VOCAB = 8, 128, 128256
FRACTION = 0.95


def _rounded(x: float, floor: int, bands: tuple[tuple[float, int], ...]) -> int:
    """``x`` rounded up to the multiple of the first band whose limit it is under, at least
    ``floor`` (tuning.py's fine-tuning of both settings)."""
    multiple = next(m for limit, m in bands if x < limit)
    return max(floor, multiple * math.ceil(x / multiple))


def heuristic(c: Column, isl: int, osl: int) -> tuple[int, int]:
    """trtllm-bench's (max_batch_size, max_num_tokens) for one run (tuning.py's rule)."""
    wbytes = 0.5 if c.weights == "nvfp4" else 1.0
    kv_token_gib = 2 * c.model.layers * max(c.tp, KV_HEADS) * HEAD_DIM * 1 / 2**30  # FP8 KV
    free = float(PRESETS[c.preset]["memory_gib"]) * c.tp - c.model.params * wbytes / 2**30
    requests = free * FRACTION / (kv_token_gib * (isl + osl))
    raw_bs = min(requests, 4096)
    bs = _rounded(raw_bs, 64, ((256, 32), (1024, 128), (math.inf, 256)))
    raw_tokens = min(raw_bs * (1 + isl / osl), 32768)
    tokens = _rounded(raw_tokens, 2048, ((4096, 256), (8192, 512), (math.inf, 1024)))
    return bs, tokens


def body(c: Column, isl: int, osl: int, concurrency: int, chunk: int, target: int) -> str:
    m = c.model
    fmt = "FP4" if c.weights == "nvfp4" else "FP8"
    return f"""name: {name(c, isl, osl)}
model:
  name: {m.name}
  layers: {m.layers}              # num_hidden_layers
  hidden_size: {m.hidden}       # hidden_size
  heads: {m.heads}               # num_attention_heads
  kv_heads: {KV_HEADS}             # num_key_value_heads
  head_dim: {HEAD_DIM}           # hidden_size / num_attention_heads
  ffn_size: {m.ffn}         # intermediate_size
  vocab_size: {VOCAB}      # vocab_size
  dtype: fp8
  tied_embeddings: false  # tie_word_embeddings: false
parallel:
  tp: {c.tp}                   # the column's TP{c.tp}
  dp: 1
  pp: 1
workload:
  mode: serving
  concurrency: {concurrency}        # see the header
  prompt_len: {isl}         # --input-mean {isl} --input-stdev 0
  gen_len: {osl}            # --output-mean {osl} --output-stdev 0
  prefill_chunk: {chunk}     # trtllm-bench's max_num_tokens
precision:
  weights: {c.weights}            # nvidia/{m.name}-Instruct-{fmt}
  kv_cache: fp8           # assumed (see the header)
runtime:
  framework: trtllm
  memory_fraction: {FRACTION}   # --kv_cache_free_gpu_mem_fraction 0.95
  cuda_graphs: true       # cuda_graph_config: enable_padding, batch sizes 1-8192
hardware:
  preset: {c.preset}
targets:
  tokens_per_s_per_gpu: {target}  # {c.totals[PAIRS.index((isl, osl))]:,} tokens/s over {c.tp} GPU(s)
"""


def name(c: Column, isl: int, osl: int) -> str:
    return f"trtllm-v1.0-{c.model.key}-{c.gpu}-tp{c.tp}-{isl}-{osl}"


def plan_file(c: Column, isl: int, osl: int) -> str:
    total = c.totals[PAIRS.index((isl, osl))]
    target = round(total / c.tp)
    bs, chunk = heuristic(c, isl, osl)
    probe = load_plan_text(body(c, isl, osl, 1, chunk, target))
    pool = float(pool_memory_report(describe_pool(probe)).kv_pool_bytes.min())
    per_token = 2 * c.model.layers * KV_HEADS * HEAD_DIM / c.tp  # FP8 KV bytes per rank
    fits = int(pool // (per_token * (isl + osl)))
    concurrency = min(bs, fits)
    fmt = "FP4" if c.weights == "nvfp4" else "FP8"
    table = c.model.name.replace("-", " ")
    head = f"""# TensorRT-LLM v1.0 perf overview, {c.label}: {c.model.name}, ISL {isl} / OSL {osl}
# -> {total:,} output tokens/s on {c.tp} GPU(s), {target:,} per GPU.
#
# Source: {PAGE}, table "{table}", column "{c.label}":
#   | {isl}/{osl} | ... {total:,} ... |
# Method: trtllm-bench throughput (PyTorch backend) on prepare_dataset.py token-norm-dist
# (--input-stdev 0 --output-stdev 0), every request queued at once; nvidia/{c.model.name}-Instruct-{fmt}.
# Derived (bench/perf_overview.py):
#   concurrency {concurrency} = min(trtllm-bench's max_batch_size {bs} (its heuristic,
#   tensorrt_llm/bench/build/tuning.py @04cba88), the {fits} requests whose whole
#   {isl + osl}-token FP8 cache ({per_token:,.0f} B per token per GPU) fits the
#   {pool / 2**30:.2f} GiB KV pool: the default GUARANTEED_NO_EVICT scheduler reserves a
#   request's blocks to completion); prefill_chunk = the heuristic's max_num_tokens.
#   KV cache FP8: assumed (the ModelOpt checkpoints' kv_cache_quant_algo; not stated).
# Model: {c.model.config}.
"""
    return head + body(c, isl, osl, concurrency, chunk, target)


def main() -> None:
    for c in COLUMNS:
        for isl, osl in PAIRS:
            path = OUT / f"{name(c, isl, osl)}.yaml"
            path.write_text(plan_file(c, isl, osl), encoding="utf-8")
            print(path.name)


if __name__ == "__main__":
    main()
