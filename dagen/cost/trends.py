"""Physical trends that carry the measured tables beyond their grids (``auto``).

Above a table's largest measured shape, ``auto`` takes the latency at the grid's edge
times the roofline's ratio between the query and that edge
(:mod:`dagen.cost.kernels_grid`): the table sets the level, the kernel model the growth.
Held out of the H100 tables, the largest measured shapes are predicted from the next
ones with a median |error| of 2.1–6.2 % for matmuls (the power law in the work: 3.5–22 %)
and, for decode attention, 8.9 % at the longest contexts (power law 24.8 %) and 10.1 % at
the largest batches (power law 7.5 %); docs/cost-model.md ("Measured and auto") has the
figures, ``tests/test_roofline_fit.py`` holds the matmul ones.

Example:
    >>> from dagen.cost.trends import gemm_trend
    >>> trend = gemm_trend(pool, pool.formats.weights)  # doctest: +SKIP
    >>> tables.gemm(65536, 8192, 8192, "fp8", trend=trend)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import numpy.typing as npt

from dagen.cost.kernels_grid import Trend
from dagen.cost.roofline import (
    PREFILL_TILE,
    decode_attention_seconds,
    gemm_seconds,
    prefill_attention_seconds,
)
from dagen.graph.pool import Pool
from dagen.plan.formats import DType

__all__ = ["attention_trend", "gemm_trend"]

F64 = npt.NDArray[np.float64]


def gemm_trend(pool: Pool, weights: DType) -> Trend:
    """Roofline seconds of ``[m, n, k]`` with weights in ``weights``."""
    hw = pool.hardware

    def trend(_key: tuple[Hashable, ...], xs: list[F64]) -> F64:
        m, n, k = xs
        return gemm_seconds(hw, weights, m, n, k)

    return trend


def attention_trend(pool: Pool, *, prefill: bool) -> Trend:
    """Roofline seconds of an attention call at ``[batch, ctx or seq, kv_heads]`` of a
    slice keyed ``(dtype, kv_dtype, head_dim, window, group)``."""
    hw, activations = pool.hardware, pool.formats.activations

    def trend(key: tuple[Hashable, ...], xs: list[F64]) -> F64:
        _, kv_dtype, head_dim, window, group = key
        batch, length, kv = xs
        hd, w = float(head_dim), float(window)  # type: ignore[arg-type]
        span = np.minimum(length, w) if w > 0 else length
        if prefill:  # causal: half the query-key pairs, QK and PV products
            pairs = batch * length * span / 2
            heads = kv * float(group)  # type: ignore[arg-type]
            flops = 4.0 * pairs * heads * hd
            items = batch * heads * np.ceil(length / PREFILL_TILE)
            nbytes = batch * length * (2 * heads + 2 * kv) * hd * activations.nbytes
            return prefill_attention_seconds(hw, activations, flops, items, nbytes)
        items = batch * kv
        width = 1.0 if kv_dtype == "fp8" else 2.0
        return decode_attention_seconds(hw, items, items * (span + 1) * hd * 2 * width)

    return trend
