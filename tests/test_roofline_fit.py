"""The roofline's kernel constants against the measured tables they were fitted to.

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
    c = roofline.GEMM[fmt]
    w = 2.0 if fmt == "bf16" else 1.0  # weight bytes per element
    peak = float(H100["peak_tflops"]["bf16" if fmt == "bf16" else "fp8"]) * 1e12
    bw = float(H100["hbm_tbps"]) * 1e12
    moved = n * k * w + 2 * m * k + 2 * m * n  # weights, 16-bit input and output
    quant = 0.0 if fmt == "bf16" else 1.5 * 2 * m * k  # the activation-quantisation pass
    predicted = c.t0 + np.maximum(2 * m * n * k / (peak * c.eta_f), moved / (bw * c.eta_m))
    predicted += quant / (bw * c.eta_m)
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
    c = roofline.DECODE_ATTENTION
    bw = float(H100["hbm_tbps"]) * 1e12
    predicted = c.t0 + items * roofline.DECODE_ITEM_S + streamed / (bw * c.eta_m)
    err = _median_error(predicted, measured)
    assert err <= 0.21, f"median |error| {err:.1%} over {sel.sum()} rows"
    # the former parallelism-only form was more than twice as far off
    former = 5e-6 + streamed / (bw * 0.85 * items / (items + 32))
    assert _median_error(former, measured) > 2 * err
