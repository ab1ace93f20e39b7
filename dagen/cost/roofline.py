"""The default cost model: a kernel-aware roofline and alpha-beta communication.

A compute node of engine ``E`` (:class:`dagen.graph.codes.Engine`) takes

    t = t₀(E, format) + max(FLOPs / (P · η_f), bytes / (B · η_m)) + quant / (B · η_m)

with ``P`` the datasheet FLOP/s of the format the op multiplies in (matmuls: the
weights' format; attention and elementwise ops: the activations'), ``B`` the datasheet
HBM bandwidth, and:

* **GEMM**: ``t₀`` the fixed time of one framework matmul call, ``η_f`` and ``η_m`` its
  fractions of peak FLOP/s and bandwidth over every measured shape. A W8A8 / W4A4
  matmul also quantises its input on the fly: ``quant = 1.5 ×`` its input bytes (read in
  the activations' format, written in 8 bits), a separate pass.
* **ATTENTION**: decode streams the KV cache at ``η_m = 0.80`` and pays
  ``t₀ = 8 µs + u · 8.7 ns``, ``u`` = sequences × KV heads on the rank (a fixed cost per
  work item: query load, softmax reductions, output); MLA decode has its own fit, with
  ``u`` = sequences × groups of 8 query heads (one latent KV head serves them all);
  prefill pays ``t₀ + u · t_item`` with ``u`` = sequences × heads × 128-query tiles,
  then its FLOPs at ``η_f`` of the activations' peak or its Q, K, V and output bytes at
  ``η_m``.
* **ELEMENTWISE**: ``t₀ = 2 µs``, ``η_m = 0.8``.
* **Routed experts** (``moe.expert``) run as one fused MoE kernel per layer, as the
  frameworks launch it: ``t₀ = T_moe + used slots · t_slot + T·top_k · t_item`` per rank
  (``T`` the routed tokens; ``t_item`` the permute and finalize of one token–expert pair),
  spread evenly over the rank's slot nodes, with the GEMM's ``η_f`` and the MoE's own
  ``η_m`` (fitted to ``moe_perf``, balanced routing).

The constants (:mod:`dagen.cost.constants`) are fitted to NVIDIA aiconfigurator-core
0.12.0's kernel tables under TensorRT-LLM (``gemm_perf``, ``generation_attention_perf``,
``moe_perf``; the median relative error over every row): H100 SXM's serve as fractions
of the datasheet on every GPU without a fit of its own, A100 and B200 carry theirs. The
fits and their
residuals are in docs/cost-model.md ("Kernel constants (roofline)"). Without CUDA graphs
(``runtime.cuda_graphs: false``) a node takes at least the CPU's launch time, 10 µs.
``hardware.flops_efficiency`` and ``hbm_efficiency`` scale ``η_f`` and ``η_m`` relative
to their defaults (0.6, 0.8). Communication: :mod:`dagen.cost.comm`.

Example:
    >>> from dagen.cost.roofline import Roofline
    >>> seconds = Roofline().node_seconds(graph)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from dagen.cost.comm import comm_durations
from dagen.cost.constants import (
    ELEMENTWISE,
    GEMM,
    MOE,
    GpuKernels,
    KernelConstants,
    MoeConstants,
    for_hardware,
)
from dagen.cost.routing import pool_load_peak
from dagen.graph.codes import Block, Engine
from dagen.graph.dims import Dims
from dagen.graph.ir import Graph, Kind
from dagen.graph.opcost import core_flops
from dagen.graph.ops import OP_ENGINE, OPS, Op
from dagen.graph.pool import Pool
from dagen.graph.traffic import expert_hit
from dagen.plan.model import DType, Hardware

__all__ = [
    "GEMM",
    "MOE",
    "KernelConstants",
    "MoeConstants",
    "Roofline",
    "compute_durations",
    "decode_attention_seconds",
    "gemm_seconds",
    "moe_seconds",
    "prefill_attention_seconds",
]

F64 = npt.NDArray[np.float64]


PREFILL_TILE = 128
"""Query rows of one prefill-attention work item (FlashAttention's tile)."""
EAGER_LAUNCH_S = 10e-6
"""Without CUDA graphs: a node takes at least one CPU launch (PyTorch eager dispatch)."""

_DEFAULT_FLOPS_EFF = 0.6
_DEFAULT_HBM_EFF = 0.8


def _rate(hw: Hardware, fmt: DType) -> float:
    return hw.tflops(fmt) * 1e12


def _pool_tables(pool: Pool) -> tuple[F64, F64, F64, F64, F64]:
    """Per op code: t₀, FLOP/s, HBM bytes/s, quantisation bytes, and the time floor."""
    hw, f, d = pool.hardware, pool.formats, pool.dims
    n = len(OPS)
    t0, flops, hbm, quant = (np.zeros(n) for _ in range(4))
    scale_f = hw.flops_efficiency / _DEFAULT_FLOPS_EFF
    scale_m = hw.hbm_efficiency / _DEFAULT_HBM_EFF
    k = for_hardware(hw)
    attn = _attention_constants(k, d)
    chunk_s, chunk_scale = _prefill_chunks(k, hw, f.activations, d, scale_f)
    attn = replace(attn, t0=attn.t0 + chunk_s)
    for op in OPS:
        engine = Engine(int(OP_ENGINE[int(op)]))
        if op is Op.MOE_EXPERT and d.slots:
            t0[int(op)], flops[int(op)], hbm[int(op)] = _moe_slot(hw, f.weights, f.math, d)
            flops[int(op)] /= pool_load_peak(pool)  # the busiest rank's pairs set the pace
            continue
        if engine is Engine.GEMM and op.spec.resident is not None and op.label != "moe.router":
            weights, multiply = (
                (f.attention, f.attention_math) if op.spec.block is Block.ATTENTION
                else (f.weights, f.math)
            )  # fmt: skip
            c, rate = k.gemm[weights.value], _rate(hw, multiply)
            if multiply.nbytes < 2 <= f.activations.nbytes and op.spec.traffic is not None:
                quant[int(op)] = 1.5 * op.spec.traffic(d).act_in
        elif engine is Engine.GEMM:  # the router stays in the activations' format
            c, rate = k.gemm[f.activations.value], _rate(hw, f.activations)
        elif engine is Engine.ATTENTION:
            c = attn
            rate = _rate(hw, f.activations) * chunk_scale
        elif engine is Engine.ELEMENTWISE:
            c, rate = ELEMENTWISE, _rate(hw, f.activations)
        else:
            continue
        t0[int(op)] = c.t0
        flops[int(op)] = rate * min(1.0, c.eta_f * scale_f)
        hbm[int(op)] = hw.hbm_tbps * 1e12 * min(1.0, c.eta_m * scale_m)
    floor = np.where(t0 > 0, 0.0 if pool.runtime.cuda_graphs else EAGER_LAUNCH_S, 0.0)
    if d.slots:  # one launch for the fused layer, not one per slot
        floor[int(Op.MOE_EXPERT)] /= d.slots
    return t0, flops, hbm, quant, floor


def _attention_constants(k: GpuKernels, d: Dims) -> KernelConstants:
    """The attention core's constants for the pool's phase (module docstring)."""
    if d.prefill:  # a fixed cost per (sequence, head, 128-query tile) on top of the launch
        u = d.seqs * d.heads * math.ceil(d.prompt / d.cp / PREFILL_TILE)
        return replace(k.prefill, t0=k.prefill.t0 + u * k.prefill_item)
    if d.mla is not None:  # one latent head, query heads in groups of 8
        u = d.seqs * max(d.heads // 8, 1)
        return replace(k.mla, t0=k.mla.t0 + u * k.mla_item)
    u = d.seqs * d.kv_heads  # decode: a fixed cost per (sequence, KV head) on top of the launch
    return replace(k.decode, t0=k.decode.t0 + u * k.decode_item)


def _prefill_chunks(
    k: GpuKernels, hw: Hardware, activations: DType, d: Dims, scale_f: float = 1.0
) -> tuple[float, float]:
    """A serving iteration's prefill chunks, priced apart from its decode attention (the
    frameworks run context and generation attention as separate kernels): their seconds in
    prefill form, and the factor on the attention FLOP rate that leaves the node's FLOP
    term to the decode part alone. ``(0, 1)`` without chunks."""
    if d.prefill or not d.pf_pairs:
        return 0.0, 1.0
    decode, chunks = core_flops(d)
    items = d.heads * math.ceil(d.pf_tokens / PREFILL_TILE)
    c = k.prefill
    rate = hw.tflops(activations) * 1e12 * min(1.0, c.eta_f * scale_f)
    seconds = c.t0 + items * k.prefill_item + chunks / rate
    return seconds, (decode + chunks) / decode if decode > 0 else math.inf


def _moe_slot(hw: Hardware, weights: DType, multiply: DType, d: Dims) -> tuple[float, float, float]:
    """t₀, FLOP/s and bytes/s of one expert-slot node: the fused layer's fixed costs
    spread over the rank's ``d.slots`` slot nodes (module docstring)."""
    c = for_hardware(hw).moe[weights.value]
    scale_f = hw.flops_efficiency / _DEFAULT_FLOPS_EFF
    scale_m = hw.hbm_efficiency / _DEFAULT_HBM_EFF
    layer = c.t0 + d.slots * expert_hit(d) * c.slot + d.routed_tokens * d.top_k * c.item
    return (layer / d.slots, _rate(hw, multiply) * min(1.0, c.eta_f * scale_f),
            hw.hbm_tbps * 1e12 * min(1.0, c.eta_m * scale_m))  # fmt: skip


def moe_seconds(
    hw: Hardware, weights: DType, tokens: F64, hidden: F64, inter: F64, experts: F64,
    top_k: F64, ep: F64,
) -> F64:  # fmt: skip
    """One rank's fused MoE layer for ``tokens`` routed tokens (``experts`` over ``ep``
    ranks, ``inter`` the per-rank expert width, gated, 16-bit activations): the form
    :func:`_moe_slot` prices per slot, summed over the rank's slots."""
    c = for_hardware(hw).moe[weights.value]
    slots = experts / ep
    m = tokens * top_k / experts
    hit = np.where(tokens <= m, 1.0, -np.expm1(tokens * np.log1p(-np.minimum(m / tokens, 1.0))))
    flops = slots * 6.0 * m * hidden * inter
    moved = slots * (
        hit * 3.0 * hidden * inter * weights.nbytes + m * (2 * hidden + 2 * inter) * 2.0
    )
    rate = hw.tflops(weights) * 1e12 * c.eta_f
    fixed = c.t0 + slots * hit * c.slot + tokens * top_k * c.item
    out: F64 = fixed + np.maximum(flops / rate, moved / (hw.hbm_tbps * 1e12 * c.eta_m))
    return out


def gemm_seconds(hw: Hardware, weights: DType, m: F64, n: F64, k: F64) -> F64:
    """One ``[m, k] @ [k, n]`` matmul with weights in ``weights`` and 16-bit activations,
    by the GEMM form (weights, input and output streamed once; the quantisation pass of a
    W8A8 / W4A4 matmul). The measured models scale a table's edge by it (their trend)."""
    c = for_hardware(hw).gemm[weights.value]
    rate = hw.tflops(weights) * 1e12 * c.eta_f
    bw = hw.hbm_tbps * 1e12 * c.eta_m
    moved = n * k * weights.nbytes + 2.0 * m * k + 2.0 * m * n
    quant = 3.0 * m * k if weights.nbytes < 2 else 0.0
    out: F64 = c.t0 + np.maximum(2.0 * m * n * k / rate, moved / bw) + quant / bw
    return out


def decode_attention_seconds(hw: Hardware, items: F64, kv_bytes: F64) -> F64:
    """One decode attention call: ``items`` (sequence, KV head) pairs streaming
    ``kv_bytes`` of cache."""
    k = for_hardware(hw)
    c = k.decode
    out: F64 = c.t0 + items * k.decode_item + kv_bytes / (hw.hbm_tbps * 1e12 * c.eta_m)
    return out


def prefill_attention_seconds(
    hw: Hardware, activations: DType, flops: F64, items: F64, nbytes: F64
) -> F64:
    """One causal prefill attention call of ``flops`` (query-key and value products) over
    ``items`` (sequence, head, 128-query tile) work items, moving ``nbytes`` of Q, K, V and
    output."""
    k = for_hardware(hw)
    c = k.prefill
    work = np.maximum(
        flops / (hw.tflops(activations) * 1e12 * c.eta_f), nbytes / (hw.hbm_tbps * 1e12 * c.eta_m)
    )
    out: F64 = c.t0 + items * k.prefill_item + work
    return out


def compute_durations(graph: Graph) -> F64:
    """Seconds of every node on the compute stream; 0 for communication nodes (the
    module docstring's formula, each pool on its own hardware)."""
    out = np.zeros(graph.n_nodes, dtype=np.float64)
    for p, pool in enumerate(graph.pools):
        at = graph.node_slice(p)
        tmpl, op = graph.tmpl[at], graph.op[at].astype(np.int64)
        t0, flops, hbm, quant, floor = _pool_tables(pool)
        with np.errstate(divide="ignore", invalid="ignore"):
            work = np.maximum(
                np.where(flops[op] > 0, graph.tmpl_flops[tmpl] / flops[op], 0.0),
                np.where(hbm[op] > 0, graph.tmpl_hbm[tmpl] / hbm[op], 0.0),
            )
            work += np.where(hbm[op] > 0, quant[op] / hbm[op], 0.0)
        out[at] = np.maximum(t0[op] + work, floor[op])
    out[graph.kind != Kind.COMPUTE] = 0.0
    return out


class Roofline:
    """Kernel-aware roofline compute and alpha-beta communication (the module docstring)."""

    name = "roofline"

    def node_seconds(self, graph: Graph) -> F64:
        """Each node's own time: the roofline for compute nodes, alpha-beta for
        communication."""
        result: F64 = compute_durations(graph) + comm_durations(graph)
        return result
