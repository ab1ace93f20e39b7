"""The roofline's kernel constants against the measured tables they were fitted to, and
the roofline as the trend that carries a table past its grid (``auto``).

docs/cost-model.md ("Kernel constants (roofline)") quotes, per engine, the median relative
error of the roofline's form with dagen's constants over every row of aiconfigurator-core's
H100 tables. These tests recompute those medians from the tables, so a constant that
drifts from its fit (or a form that stops matching the kernels) fails here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from dagen.cost import kernels_data, roofline
from dagen.cost.kernels import available
from dagen.cost.kernels_grid import Coverage, SlicedTable
from dagen.cost.kernels_specs import GEMM, MOE, load_table
from dagen.plan.formats import DType
from dagen.plan.model import Hardware
from dagen.plan.presets import PRESETS

if not available():
    pytest.skip("aiconfigurator-core is not installed", allow_module_level=True)

import pyarrow.parquet as pq

F64 = npt.NDArray[np.float64]
H100 = PRESETS["H100-SXM-80GB"]


def _table(name: str) -> dict[str, np.ndarray]:
    system = "h100_sxm"
    version = kernels_data.current_version(system, "trtllm")
    path = kernels_data.resolve_table(system, "trtllm", version, name)
    assert path is not None, name
    return {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}


def _median_error(predicted: F64, measured: F64) -> float:
    return float(np.median(np.abs(predicted / measured - 1)))


def _hardware() -> Hardware:
    return Hardware(preset="H100-SXM-80GB", **H100)


@pytest.mark.parametrize(
    ("fmt", "table_dtype", "bound"),
    [("bf16", "bfloat16", 0.075), ("fp8", "fp8", 0.06), ("fp8_block", "fp8_block", 0.16)],
)
def test_gemm_constants_match_the_measured_matmuls(
    fmt: str, table_dtype: str, bound: float
) -> None:
    t = _table("gemm_perf")
    sel = t["gemm_dtype"] == table_dtype
    m, n, k = (t[c][sel].astype(np.float64) for c in ("m", "n", "k"))
    measured = t["latency"][sel] * 1e-3
    predicted = roofline.gemm_seconds(_hardware(), DType(fmt), m, n, k)
    err = _median_error(predicted, measured)
    assert err <= bound, f"{fmt}: median |error| {err:.1%} over {sel.sum()} shapes"
    # and no systematic bias: as many shapes above as below
    assert 0.4 <= float(np.mean(predicted > measured)) <= 0.6


def test_decode_attention_constants_match_the_measured_kernels() -> None:
    t = _table("generation_attention_perf")
    sel = t["window_size"] == 0
    kv_bytes = np.where(t["kv_cache_dtype"][sel] == "fp8", 1, 2)
    items = (t["batch_size"] * t["num_key_value_heads"])[sel].astype(np.float64)
    ctx = t["step"][sel] + 1.0
    streamed = items * ctx * t["head_dim"][sel] * 2 * kv_bytes
    measured = t["latency"][sel] * 1e-3
    predicted = roofline.decode_attention_seconds(_hardware(), items, streamed)
    err = _median_error(predicted, measured)
    assert err <= 0.21, f"median |error| {err:.1%} over {sel.sum()} rows"
    # the former parallelism-only form was more than twice as far off
    bw = float(H100["hbm_tbps"]) * 1e12
    former = 5e-6 + streamed / (bw * 0.85 * items / (items + 32))
    assert _median_error(former, measured) > 2 * err


@pytest.mark.parametrize("dtype", ["bfloat16", "fp8", "fp8_block"])
def test_the_roofline_trend_carries_a_matmul_table_past_its_grid(dtype: str) -> None:
    # Hold out the two largest m of the H100 GEMM table and predict them from the rest:
    # the edge scaled by the roofline beats the power law in m (auto's extrapolation).
    t = _table("gemm_perf")
    sel = t["gemm_dtype"] == dtype
    cols = {c: t[c][sel] for c in ("gemm_dtype", "m", "n", "k")}
    seconds = t["latency"][sel] * 1e-3
    held = cols["m"] >= 16384
    train = SlicedTable(
        keys=("gemm_dtype",), axes=GEMM.axes,
        columns={c: v[~held] for c, v in cols.items()}, seconds=seconds[~held],
    )  # fmt: skip
    fmt = DType({"bfloat16": "bf16"}.get(dtype, dtype))
    hw = _hardware()

    def trend(_key: object, xs: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
        return roofline.gemm_seconds(hw, fmt, *xs)

    keys = [cols["gemm_dtype"][held]]
    xs = [cols[c][held] for c in ("m", "n", "k")]
    power, cover = train.query(keys, xs)
    anchored, _ = train.query(keys, xs, trend)
    assert (cover == Coverage.EXTRAPOLATED).all()
    err, base = _median_error(anchored, seconds[held]), _median_error(power, seconds[held])
    assert err <= 0.05 and err < base, f"{dtype}: anchored {err:.1%}, power law {base:.1%}"


def test_mla_decode_constants_match_the_measured_kernels() -> None:
    # One latent KV head (kv_lora_rank 512 + RoPE 64) shared by all query heads; work items
    # are sequences × groups of 8 query heads. The MHA form's KV-head items would count 128.
    t = _table("generation_mla_perf")
    latent = np.where(t["kv_cache_dtype"] == "fp8", 1, 2) * 576.0
    seqs, heads = t["batch_size"].astype(np.float64), t["num_heads"].astype(np.float64)
    ctx = t["step"] + 1.0
    c, hw = roofline.MLA_DECODE, _hardware()
    flops = 2 * seqs * heads * ctx * (576 + 512)
    streamed = seqs * ctx * latent
    work = np.maximum(
        flops / (hw.tflops(DType.BF16) * 1e12 * c.eta_f), streamed / (hw.hbm_tbps * 1e12 * c.eta_m)
    )
    items = seqs * np.maximum(heads // 8, 1)
    predicted = c.t0 + items * roofline.MLA_ITEM_S + work
    err = _median_error(predicted, t["latency"] * 1e-3)
    assert err <= 0.08, f"median |error| {err:.1%} over {len(seqs)} rows"


@pytest.mark.parametrize(
    ("system", "preset", "fmt", "table_dtype", "bound"),
    [
        ("h100_sxm", "H100-SXM-80GB", "bf16", "bfloat16", 0.145),
        ("h100_sxm", "H100-SXM-80GB", "fp8", "fp8", 0.13),
        ("h100_sxm", "H100-SXM-80GB", "fp8_block", "fp8_block", 0.125),
        ("b200_sxm", "B200", "nvfp4", "nvfp4", 0.18),
    ],
)
def test_fused_moe_constants_match_the_measured_moe_layers(
    system: str, preset: str, fmt: str, table_dtype: str, bound: float
) -> None:
    # One rank's fused MoE layer (aiconfigurator's moe_perf, balanced routing), every
    # model shape, tp and ep of the table.
    version = kernels_data.current_version(system, "trtllm")
    path = kernels_data.resolve_table(system, "trtllm", version, "moe_perf")
    assert path is not None
    table = load_table(path, MOE)
    cols, seconds = table._columns, table._seconds
    sel = (cols["moe_dtype"] == table_dtype) & (cols["distribution"] == "balanced")
    c = {k: np.asarray(v)[sel].astype(np.float64) for k, v in cols.items()
         if k not in ("moe_dtype", "distribution")}  # fmt: skip
    hw = Hardware(preset=preset, **PRESETS[preset])
    predicted = roofline.moe_seconds(
        hw, DType(fmt), c["num_tokens"], c["hidden_size"], c["inter_size"] / c["moe_tp_size"],
        c["num_experts"], c["topk"], c["moe_ep_size"],
    )  # fmt: skip
    err = _median_error(predicted, seconds[sel])
    assert err <= bound, f"{fmt}: median |error| {err:.1%} over {sel.sum()} layers"
    assert 0.3 <= float(np.mean(predicted > seconds[sel])) <= 0.6
    # One GEMM call per expert slot, as the roofline priced them before, is several times
    # further off: the fused kernel pays its launch once per layer.
    g = roofline.GEMM[fmt]
    slots = c["num_experts"] / c["moe_ep_size"]
    m = c["num_tokens"] * c["topk"] / c["num_experts"]
    inter = c["inter_size"] / c["moe_tp_size"]
    per_slot = g.t0 + np.maximum(
        6 * m * c["hidden_size"] * inter / (hw.tflops(DType(fmt)) * 1e12 * g.eta_f),
        3 * c["hidden_size"] * inter * DType(fmt).nbytes / (hw.hbm_tbps * 1e12 * g.eta_m),
    )
    assert _median_error(slots * per_slot, seconds[sel]) > 2.5 * err
