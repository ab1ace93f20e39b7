"""The roofline's kernel constants, per GPU.

Each constant is fitted to NVIDIA aiconfigurator-core 0.12.0's kernel tables (PyPI,
Apache-2.0) of one GPU under TensorRT-LLM: the constants that minimise the median
relative error over every row of the table (docs/cost-model.md, "Kernel constants
(roofline)", has each fit and its residual; ``tests/test_roofline_fit.py`` recomputes
them). The H100 SXM fit is the reference: it serves every GPU without a fit of its own
(H200, whose SMs are H100's and whose tables it matches within 7.6 % on matmuls; H800;
MI300X; hardware without a preset). A100 and B200, whose kernels differ from Hopper's,
carry their own where their tables measure the engine.

Example:
    >>> from dagen.cost.constants import for_hardware
    >>> from dagen.plan.model import Hardware
    >>> from dagen.plan.presets import PRESETS
    >>> for_hardware(Hardware(preset="A100-80GB", **PRESETS["A100-80GB"])).gemm["bf16"].t0
    5.8e-06
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from dagen.plan.model import Hardware

__all__ = [
    "ATTENTION",
    "ELEMENTWISE",
    "GEMM",
    "MOE",
    "REFERENCE",
    "GpuKernels",
    "KernelConstants",
    "MoeConstants",
    "for_hardware",
]


@dataclass(frozen=True, slots=True)
class KernelConstants:
    """``t₀`` seconds, ``η_f`` and ``η_m`` of one engine in one format."""

    t0: float
    eta_f: float
    eta_m: float


@dataclass(frozen=True, slots=True)
class MoeConstants:
    """A fused MoE layer: ``t0`` per layer, ``slot`` per used expert, ``item`` per routed
    (token, expert) pair, seconds; ``eta_f``, ``eta_m`` as a GEMM's."""

    t0: float
    slot: float
    item: float
    eta_f: float
    eta_m: float


_C = TypeVar("_C", KernelConstants, MoeConstants)


def _by_format(base: Mapping[str, _C] | None, **constants: _C) -> Mapping[str, _C]:
    """``constants`` by format over ``base``: fp16 and fp32 take bf16's, mxfp4 nvfp4's (no
    table measures them apart)."""
    out: dict[str, _C] = dict(base or {})
    out.update(constants)
    for alias, of in (("fp16", "bf16"), ("fp32", "bf16"), ("mxfp4", "nvfp4")):
        if of in constants:
            out[alias] = constants[of]
    return MappingProxyType(out)


GEMM: Mapping[str, KernelConstants] = _by_format(
    None,
    bf16=KernelConstants(2.9e-6, 0.76, 0.78),
    fp8=KernelConstants(12.7e-6, 0.60, 0.78),
    fp8_block=KernelConstants(7.0e-6, 0.52, 0.78),
    nvfp4=KernelConstants(8.4e-6, 0.44, 0.54),  # B200's table: H100 has no fp4
)
"""Matmul constants by the weights' format, H100 SXM (nvfp4: B200)."""

MOE: Mapping[str, MoeConstants] = _by_format(
    None,
    bf16=MoeConstants(25.5e-6, 0.15e-6, 1.05e-9, 0.76, 0.82),
    fp8=MoeConstants(26.9e-6, 0.24e-6, 1.1e-9, 0.60, 0.81),
    fp8_block=MoeConstants(23.7e-6, 0.35e-6, 1.55e-9, 0.52, 0.81),
    nvfp4=MoeConstants(35.6e-6, 0.34e-6, 1.08e-9, 0.44, 0.40),  # B200's table
)
"""Fused-MoE constants by the experts' weight format, ``η_f`` the GEMM's; fitted to
``moe_perf`` (H100, balanced routing; nvfp4 on B200)."""

ATTENTION = KernelConstants(14.8e-6, 0.50, 0.40)
"""Prefill (context) attention, H100: ``t₀`` plus :attr:`GpuKernels.prefill_item` per
(sequence, head, 128-query tile), then the FLOPs at ``η_f`` of the bf16 peak or the Q, K,
V and output bytes at ``η_m`` (``context_attention_perf``)."""
ELEMENTWISE = KernelConstants(2.0e-6, 0.60, 0.80)
"""One small fused kernel in a CUDA graph (an assumption)."""


@dataclass(frozen=True, slots=True)
class GpuKernels:
    """One GPU's fitted kernel constants: matmuls and fused MoE layers by format, decode
    attention (``t₀``, ``η_m``, and the fixed cost per work item, s) for MHA/GQA and MLA
    (whose ``η_f`` also counts), and prefill attention (``t₀``, ``η_f``, ``η_m``, per
    work item)."""

    gemm: Mapping[str, KernelConstants]
    moe: Mapping[str, MoeConstants]
    decode: KernelConstants
    decode_item: float
    mla: KernelConstants
    mla_item: float
    prefill: KernelConstants
    prefill_item: float
    fitted: str
    """The tables the GPU's own constants come from ("" for the reference)."""


REFERENCE = GpuKernels(
    gemm=GEMM,
    moe=MOE,
    decode=KernelConstants(8.0e-6, 0.60, 0.80),
    decode_item=8.7e-9,
    mla=KernelConstants(13.6e-6, 0.65, 0.88),
    mla_item=15e-9,
    prefill=ATTENTION,
    prefill_item=30e-9,
    fitted="",
)
"""H100 SXM, TensorRT-LLM 1.3.0rc20: every GPU without its own fit."""

_BY_PRESET: Mapping[str, GpuKernels] = MappingProxyType(
    {
        # A100 SXM, TensorRT-LLM 1.0.0 (no fp8 on Ampere). Its MoE table has no balanced
        # rows: the layer's launch and bandwidth are fitted to its one-token EP1 layers,
        # where routing cannot matter (exactly top-k experts are read either way).
        "A100-80GB": replace(
            REFERENCE,
            gemm=_by_format(GEMM, bf16=KernelConstants(5.8e-6, 0.78, 0.76)),
            moe=_by_format(MOE, bf16=MoeConstants(31.7e-6, 0.15e-6, 1.05e-9, 0.78, 0.72)),
            decode=KernelConstants(13.5e-6, 0.60, 0.70),
            decode_item=17.5e-9,
            prefill=KernelConstants(14.5e-6, 0.50, 0.70),
            prefill_item=130e-9,
            fitted="a100_sxm, TensorRT-LLM 1.0.0",
        ),
        # B200 SXM, TensorRT-LLM 1.3.0rc20 (nvfp4 is already B200's in the reference).
        "B200": replace(
            REFERENCE,
            gemm=_by_format(
                GEMM,
                bf16=KernelConstants(2.3e-6, 0.64, 0.68),
                fp8=KernelConstants(14.0e-6, 0.62, 0.44),
                fp8_block=KernelConstants(7.1e-6, 0.64, 0.80),
            ),
            decode=KernelConstants(11.0e-6, 0.60, 0.94),
            decode_item=8.0e-9,
            mla=KernelConstants(9.7e-6, 0.96, 0.70),
            mla_item=15e-9,
            prefill=KernelConstants(14.1e-6, 0.34, 0.25),
            prefill_item=20e-9,
            fitted="b200_sxm, TensorRT-LLM 1.3.0rc20",
        ),
    }
)


def for_hardware(hw: Hardware) -> GpuKernels:
    """The kernel constants of ``hw``'s preset, else the reference (H100 SXM)."""
    return _BY_PRESET.get(hw.preset or "", REFERENCE)
