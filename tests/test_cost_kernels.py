"""Measured kernel tables of aiconfigurator-core: exact rows, interpolation, extrapolation.

Every table assertion reads the real parquet files of the pinned package, the expected
values independently with pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiconfigurator_core")

import pyarrow.compute as pc
import pyarrow.parquet as pq

from dagen.cost.kernels import (
    SYSTEMS,
    Coverage,
    KernelDataError,
    KernelTables,
    available,
)
from dagen.cost.kernels_data import systems, systems_root, version_key
from dagen.cost.kernels_grid import Axis, SlicedTable
from dagen.graph.codes import Coll

Row = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def h100() -> KernelTables:
    return KernelTables.load("h100_sxm")


@pytest.fixture(scope="module")
def h100_monotone() -> KernelTables:
    return KernelTables.load("h100_sxm", monotone=True)


def _rows(path: Path, count: int, seed: int = 0, /, **equal: object) -> Row:
    """``count`` random rows of a parquet table (all columns as numpy), filtered by equality."""
    table = pq.read_table(path)
    for col, value in equal.items():
        table = table.filter(pc.equal(table[col], value))
    pick = np.random.default_rng(seed).choice(
        table.num_rows, size=min(count, table.num_rows), replace=False
    )
    return {
        c: np.asarray(table.column(c).to_numpy(zero_copy_only=False))[pick]
        for c in table.column_names
    }


def _path(t: KernelTables, family: str, table: str) -> Path:
    return systems_root() / "data" / t.system / family / t.backend / t.version / f"{table}.parquet"


ExactCase = tuple[
    str, str, dict[str, object], Callable[[KernelTables, Row, np.ndarray], np.ndarray]
]
EXACT: list[ExactCase] = [
    (
        "gemm",
        "gemm_perf",
        {},
        lambda t, r, c: t.gemm(r["m"], r["n"], r["k"], r["gemm_dtype"], coverage=c),
    ),
    (
        "attention",
        "context_attention_perf",
        {"window_size": 0},
        lambda t, r, c: t.context_attention(
            r["batch_size"], r["isl"], r["num_heads"], r["num_key_value_heads"], r["head_dim"],
            r["attn_dtype"], r["kv_cache_dtype"], coverage=c,
        ),
    ),
    (
        "attention",
        "generation_attention_perf",
        {"window_size": 128},
        lambda t, r, c: t.generation_attention(
            r["batch_size"], r["step"], r["num_heads"], r["num_key_value_heads"], r["head_dim"],
            r["attn_dtype"], r["kv_cache_dtype"], window=128, coverage=c,
        ),
    ),
    (
        "mla",
        "generation_mla_perf",
        {},
        lambda t, r, c: t.mla_generation(
            r["batch_size"], r["step"], r["num_heads"], r["kv_cache_dtype"], r["mla_dtype"], coverage=c
        ),
    ),
    (
        "moe",
        "moe_perf",
        {},
        lambda t, r, c: t.moe(
            r["num_tokens"], r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"],
            r["moe_tp_size"], r["moe_ep_size"], r["moe_dtype"], distribution=r["distribution"],
            coverage=c,
        ),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("family", "table", "equal", "ask"), EXACT, ids=[e[1] for e in EXACT])
def test_a_measured_point_returns_its_row(
    h100: KernelTables,
    family: str,
    table: str,
    equal: dict[str, object],
    ask: Callable[..., np.ndarray],
) -> None:
    rows = _rows(_path(h100, family, table), 300, **equal)
    cover = np.empty(len(rows["latency"]), dtype=np.int8)
    seconds = ask(h100, rows, cover)
    np.testing.assert_allclose(seconds, rows["latency"] * 1e-3, rtol=1e-12)
    assert (cover == Coverage.MEASURED).all()


def _gemm_axis(t: KernelTables, dtype: str, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = _rows(_path(t, "gemm", "gemm_perf"), 10**6, gemm_dtype=dtype, n=n, k=k)
    order = np.argsort(rows["m"])
    return rows["m"][order].astype(float), rows["latency"][order] * 1e-3


@pytest.mark.parametrize(("dtype", "n", "k"), [("bfloat16", 4096, 4096), ("fp8", 8192, 2048)])
def test_a_midpoint_lies_between_its_neighbours(
    h100: KernelTables, dtype: str, n: int, k: int
) -> None:
    m, lat = _gemm_axis(h100, dtype, n, k)
    mid = np.sqrt(m[:-1] * m[1:])
    cover = np.empty(len(mid), dtype=np.int8)
    got = h100.gemm(mid, n, k, dtype, coverage=cover)
    lo, hi = np.minimum(lat[:-1], lat[1:]), np.maximum(lat[:-1], lat[1:])
    assert (got >= lo * (1 - 1e-12)).all() and (got <= hi * (1 + 1e-12)).all()
    assert (cover == Coverage.MEASURED).all()
    # In log-log space the midpoint is the geometric mean of its neighbours.
    np.testing.assert_allclose(got, np.sqrt(lat[:-1] * lat[1:]), rtol=1e-9)


def test_a_point_inside_a_cell_lies_within_its_corners(h100: KernelTables) -> None:
    corners = h100.gemm(
        np.array([512, 768])[:, None, None], np.array([4096, 5120])[None, :, None],
        np.array([2048, 2560])[None, None, :], "bfloat16",
    )  # fmt: skip
    inside = h100.gemm(640, 4500, 2300, "bfloat16")
    assert corners.min() <= inside <= corners.max()


def test_the_raw_gemm_table_is_not_monotone_in_m(h100: KernelTables) -> None:
    """Why ``monotone`` exists: neighbouring m values differ in kernel and tile fit."""
    _, lat = _gemm_axis(h100, "bfloat16", 4096, 4096)
    drops = lat[1:] < lat[:-1] * 0.95
    assert drops.any(), "the measured table became monotone; revisit the docs"


@pytest.mark.parametrize("dtype", ["bfloat16", "fp8", "fp8_block"])
def test_gemm_latency_never_falls_as_m_grows_when_monotone(
    h100_monotone: KernelTables, dtype: str
) -> None:
    m = np.unique(np.round(np.geomspace(1, 2 * 32768, 300)))[:, None, None]
    n = np.array([1000, 4096, 7168, 30000])[None, :, None]
    k = np.array([512, 4096, 18432])[None, None, :]
    lat = h100_monotone.gemm(m, n, k, dtype)
    assert np.isfinite(lat).all()
    assert (np.diff(lat, axis=0) >= -1e-12 * lat[:-1]).all()


def test_monotone_never_exceeds_the_measurement(
    h100: KernelTables, h100_monotone: KernelTables
) -> None:
    m = np.geomspace(1, 32768, 50)[:, None]
    n = np.array([1024, 4096, 16384])[None, :]
    raw, env = h100.gemm(m, n, 4096), h100_monotone.gemm(m, n, 4096)
    assert (env <= raw * (1 + 1e-12)).all()


def test_fp8_gemm_beats_bf16_when_large_on_h100(h100: KernelTables) -> None:
    size = np.array([4096, 8192, 16384])
    fp8, bf16 = h100.gemm(size, size, size, "fp8"), h100.gemm(size, size, size, "bfloat16")
    # fp8 includes its dynamic activation quantisation, so the gain grows with size.
    assert (fp8 < bf16).all() and (fp8[1:] < 0.7 * bf16[1:]).all()
    # And bf16 runs at a plausible fraction of H100's 989 TFLOP/s dense peak.
    assert 0.5 < 2 * 8192**3 / bf16[1] / 989e12 < 1.0


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "alltoall"])
def test_nccl_latency_grows_with_size(
    h100: KernelTables, h100_monotone: KernelTables, op: str
) -> None:
    gpus = np.array([2, 4, 8])[:, None]
    big = 2.0 ** np.arange(21, 30)[None, :]  # 2 MiB .. 512 MiB: bandwidth-bound
    assert (np.diff(h100.nccl(op, gpus, big), axis=1) > 0).all()
    every = 2.0 ** np.arange(9, 30)[None, :]
    lat = h100_monotone.nccl(op, gpus, every)
    assert (np.diff(lat, axis=1) >= -1e-12 * lat[:, :-1]).all()
    assert (lat[:, -1] > 50 * lat[:, 0]).all()


def test_nccl_takes_a_collective_code_and_checks_the_dtype(h100: KernelTables) -> None:
    by_code = h100.nccl(Coll.ALL_TO_ALL, 8, 1 << 20)
    assert by_code == h100.nccl("all-to-all", 8, 1 << 20) == h100.nccl("alltoall", 8, 1 << 20)
    with pytest.raises(KernelDataError, match="expected one of"):
        h100.nccl("all_reduce", 8, 1 << 20, dtype="float32")


def test_gpu_counts_outside_the_node_are_not_extrapolated(h100: KernelTables) -> None:
    cover = np.empty(3, dtype=np.int8)
    lat = h100.nccl("all_reduce", [4, 8, 16], 1 << 20, coverage=cover)
    assert np.isfinite(lat[:2]).all() and np.isnan(lat[2])
    assert cover.tolist() == [Coverage.MEASURED, Coverage.MEASURED, Coverage.MISSING]


def test_above_the_grid_latency_scales_with_the_work(h100: KernelTables) -> None:
    cover = np.empty(3, dtype=np.int8)
    lat = h100.gemm([32768, 65536, 131072], 4096, 4096, coverage=cover)
    np.testing.assert_allclose(lat[1:] / lat[0], [2.0, 4.0], rtol=1e-9)
    assert cover.tolist() == [Coverage.MEASURED, Coverage.EXTRAPOLATED, Coverage.EXTRAPOLATED]
    # Causal prefill grows with the square of the sequence beyond the grid.
    long = h100.context_attention(1, [16384, 32768], 32, 8, 128)
    assert long[1] / long[0] == pytest.approx(4.0)


def test_below_the_grid_latency_is_clamped(h100: KernelTables) -> None:
    cover = np.empty(2, dtype=np.int8)
    lat = h100.gemm(64, [32, 8], 4096, coverage=cover)
    assert lat[1] == lat[0]
    assert cover.tolist() == [Coverage.MEASURED, Coverage.EXTRAPOLATED]


def test_unmeasured_keys_give_nan(h100: KernelTables) -> None:
    cover = np.empty(2, dtype=np.int8)
    lat = h100.gemm(128, 4096, 4096, ["fp8", "nvfp4"], coverage=cover)
    assert np.isfinite(lat[0]) and np.isnan(lat[1])
    assert cover[1] == Coverage.MISSING
    assert np.isnan(h100.context_attention(1, 1024, 7, 7, 100))


def test_queries_broadcast(h100: KernelTables) -> None:
    m = np.array([1, 16, 256, 4096])[:, None]
    n = np.array([1024, 4096, 8192])[None, :]
    dtype = np.array(["bfloat16", "fp8", "fp8_block"])[None, :]
    cover = np.empty((4, 3), dtype=np.int8)
    lat = h100.gemm(m, n, 2048, dtype, coverage=cover)
    assert lat.shape == (4, 3) and np.isfinite(lat).all()
    assert lat[2, 1] == h100.gemm(256, 4096, 2048, "fp8")
    assert h100.gemm(16, 1024, 2048).shape == ()
    batch = h100.generation_attention([[1], [64]], [1023, 8191], 32, 8, 128)
    assert batch.shape == (2, 2) and (batch[1] > batch[0]).all()


def test_gqa_heads_between_measured_counts_interpolate(h100: KernelTables) -> None:
    """(heads, kv_heads) is looked up at its group size and interpolated over kv_heads."""
    lat = h100.context_attention(4, 2048, [32, 48, 64], [4, 6, 8], 128)
    assert lat[0] < lat[1] < lat[2]


def test_every_other_table_answers_on_h100(h100: KernelTables) -> None:
    assert h100.mla_context(2, 4096, 16) > h100.mla_context(1, 4096, 16) > 0
    assert h100.custom_all_reduce(8, 1 << 24) > h100.custom_all_reduce(8, 1 << 12) > 0
    for mode in ("normal", "low_latency"):
        for phase in ("dispatch", "combine"):
            lat = h100.deepep(mode, phase, [1, 128], 7168, 8, 256)
            assert 0 < lat[0] < lat[1] < 1e-2
    path = h100.table_path("wideep_deepep_ll_perf")
    assert path is not None and path.parts[-3] == "sglang"  # DeepEP is served from SGLang's tree


def test_unknown_system_lists_the_available_ones() -> None:
    with pytest.raises(KernelDataError, match=r"available: .*h100_sxm") as err:
        KernelTables.load("h800")
    assert "H100-SXM-80GB" in str(err.value)


def test_unknown_backend_and_version_list_the_available_ones() -> None:
    with pytest.raises(KernelDataError, match=r"available: .*sglang.*trtllm.*vllm"):
        KernelTables.load("h100_sxm", "tensorrt")
    with pytest.raises(KernelDataError, match=r"available: .*1\.3\.0rc20"):
        KernelTables.load("h100_sxm", "trtllm", "9.9")


def test_a_missing_table_names_where_it_exists() -> None:
    vllm = KernelTables.load("h100_sxm", "vllm")
    with pytest.raises(KernelDataError, match=r"context_mla_perf.*trtllm/1\.3\.0rc20"):
        vllm.mla_context(1, 1024, 16)


def test_each_table_comes_from_the_newest_directory_at_or_below_the_version() -> None:
    default = KernelTables.load("h100_sxm")
    assert default.version == "1.3.0rc20"  # query_versions.yaml's current, not rc23
    assert default.source == "aiconfigurator-core 0.12.0 h100_sxm/trtllm/1.3.0rc20"
    newer = KernelTables.load("h100_sxm", version="1.3.0rc23")
    newer.gemm(1, 1024, 1024)
    newer.moe(1, 7168, 2048, 256, 8, 1, 8)
    gemm, moe = newer.table_path("gemm_perf"), newer.table_path("moe_perf")
    assert gemm is not None and gemm.parts[-2] == "1.3.0rc20"
    assert moe is not None and moe.parts[-2] == "1.3.0rc23"


def test_the_dagen_presets_name_measured_systems() -> None:
    assert available()
    assert set(SYSTEMS.values()) <= set(systems())
    assert KernelTables.load("H200").system == "h200_sxm"


def test_versions_sort_like_releases() -> None:
    ordered = [
        "0.1.dev19262",
        "1.0.0",
        "1.2.0rc5",
        "1.3.0rc10",
        "1.3.0rc20",
        "1.3.0",
        "1.3.0.post1",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_holes_are_filled_and_flagged() -> None:
    """A 2x2 grid missing its large corner: filled with the m-proportional value."""
    table = SlicedTable(
        keys=("dtype",),
        axes=(Axis("m", 1.0), Axis("n", 1.0)),
        columns={"dtype": np.array(["a"] * 3), "m": np.array([1, 2, 1]), "n": np.array([1, 1, 2])},
        seconds=np.array([1.0, 2.0, 3.0]),
    )
    keys = [np.array(["a"] * 3)]
    lat, cover = table.query(keys, [np.array([2.0, 1.0, 1.5]), np.array([2.0, 1.0, 1.0])])
    assert lat[0] == pytest.approx(6.0)  # from (1, 2) along m, the first axis filled
    assert cover.tolist() == [Coverage.EXTRAPOLATED, Coverage.MEASURED, Coverage.MEASURED]
