"""Hardware presets. Every number's public source is in docs/hardware.md.

Bandwidths are per GPU and per direction; FLOP/s are dense (no 2:4 sparsity): vendor
datasheets print the sparse figure for NVIDIA parts, halved here. Latencies are per
message, rounded from NCCL's own per-hop constants (docs/hardware.md says which).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS"]

_PRESETS: dict[str, dict[str, Any]] = {
    "H100-SXM-80GB": {
        "memory_gib": 81559 / 1024,  # nvidia-smi memory.total 81,559 MiB
        "peak_tflops": {"fp32": 66.9, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
        "hbm_tbps": 3.35,
        "gpus_per_node": 8,
        "intra_node_gbps": 450.0,
        "inter_node_gbps": 50.0,
        "intra_node_latency_us": 3.0,
        "inter_node_latency_us": 10.0,
    },
    "H200": {
        "memory_gib": 143771 / 1024,  # nvidia-smi memory.total 143,771 MiB
        "peak_tflops": {"fp32": 66.9, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
        "hbm_tbps": 4.8,
        "gpus_per_node": 8,
        "intra_node_gbps": 450.0,
        "inter_node_gbps": 50.0,
        "intra_node_latency_us": 3.0,
        "inter_node_latency_us": 10.0,
    },
    "A100-80GB": {
        "memory_gib": 81920 / 1024,  # nvidia-smi memory.total 81,920 MiB
        "peak_tflops": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0},
        "hbm_tbps": 2.039,
        "gpus_per_node": 8,
        "intra_node_gbps": 300.0,
        "inter_node_gbps": 25.0,
        "intra_node_latency_us": 3.0,
        "inter_node_latency_us": 10.0,
    },
    "B200": {
        "memory_gib": 183359 / 1024,  # nvidia-smi memory.total 183,359 MiB
        "peak_tflops": {"fp32": 75.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0, "fp4": 9000.0},
        "hbm_tbps": 7.7,
        "gpus_per_node": 8,
        "intra_node_gbps": 900.0,
        "inter_node_gbps": 50.0,
        "intra_node_latency_us": 3.0,
        "inter_node_latency_us": 10.0,
    },
    "MI300X": {
        "memory_gib": 192.0,  # 8 HBM3 stacks x 24 GiB
        "peak_tflops": {"fp32": 163.4, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
        "hbm_tbps": 5.3,
        "gpus_per_node": 8,
        # 7 xGMI links x 64 GB/s per direction; one peer pair gets only 64 (docs/hardware.md).
        "intra_node_gbps": 448.0,
        "inter_node_gbps": 50.0,
        "intra_node_latency_us": 3.0,
        "inter_node_latency_us": 10.0,
    },
}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {k: MappingProxyType(v) for k, v in _PRESETS.items()}
)
"""Preset name → Hardware field values (before overrides)."""
