"""The typed plan: frozen records whose field metadata is the schema.

Each field carries its documentation, unit and bounds in ``metadata`` (see :func:`spec`);
the loader validates YAML against it, ``dagen schema plan`` prints a JSON Schema made
from it, and ``docs/plan-format.md`` documents it. There is one source of truth.

Values here are as declared, with defaults filled in. Whether they are *consistent*
(heads divisible by tp, degrees multiplying to the world, …) is the business of
:mod:`dagen.plan.rules`, which reports findings rather than raising.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from dagen.findings import Origin
from dagen.plan.claims import Claim, Metric
from dagen.plan.fields import spec
from dagen.plan.formats import RATE_KEYS, WIDER, DType, Formats, Precision
from dagen.plan.runtime import (
    AllToAll,
    Cost,
    CostModelName,
    Framework,
    Overlap,
    Runtime,
    Scheduling,
)
from dagen.plan.workload import Mode, Phase, Workload

__all__ = [
    "RATE_KEYS",
    "AllToAll",
    "Claim",
    "Convention",
    "Cost",
    "CostModelName",
    "DType",
    "ExpertLayout",
    "Formats",
    "Framework",
    "Hardware",
    "Metric",
    "Mla",
    "Mode",
    "Model",
    "Moe",
    "Overlap",
    "Parallel",
    "Phase",
    "Plan",
    "Precision",
    "Runtime",
    "Scheduling",
    "Targets",
    "Workload",
    "spec",
]


class Convention(enum.StrEnum):
    """How the parallel degrees are read.

    ``megatron``: Megatron-Core parallel folding. Attention and dense layers decompose
    the world as tp·cp·dp·pp; expert layers decompose the *same* GPUs as
    etp·ep·edp·pp with edp derived. ``orthogonal``: every degree is its own mesh
    dimension, world = tp·cp·ep·dp·pp; attention is then data-parallel over ep·dp.
    """

    MEGATRON = "megatron"
    ORTHOGONAL = "orthogonal"


class ExpertLayout(enum.StrEnum):
    """How the expert dimensions (etp, ep, edp) are laid over a pipeline stage's ranks.

    Both unflatten each stage's ranks, taken in the attention's rank order with ``pp``
    skipped, into etp·ep·edp in the order string's order (docs/parallelism.md).
    ``megatron`` also requires Megatron-Core's condition that the slots before ``pp``
    hold as many ranks for experts as for attention (its two rank generators then agree
    on the pipeline groups); ``stage`` drops it, which lets an expert group span ranks on
    both sides of ``pp`` (vLLM's EP group over TP·PCP·DP with PP in between).
    """

    MEGATRON = "megatron"
    STAGE = "stage"


_BIG = 1 << 24  # a size past this is a typo, not a model
_RECORD = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_RECORD)
class Moe:
    """Mixture-of-Experts block of the model."""

    experts: int = spec("Routed experts per MoE layer.", minimum=1, maximum=65536)
    top_k: int = spec("Experts each token is routed to.", minimum=1, maximum=1024)
    expert_ffn_size: int = spec(
        "Intermediate size of one routed expert's FFN.", minimum=1, maximum=_BIG
    )
    shared_experts: int = spec(
        "Shared (always-active) experts per MoE layer.", default=0, minimum=0, maximum=64
    )
    shared_expert_ffn_size: int | None = spec(
        "Intermediate size of one shared expert; defaults to expert_ffn_size.",
        default=None,
        minimum=1,
        maximum=_BIG,
    )
    first_dense_layers: int = spec(
        "The first k layers are dense (DeepSeek-V3: first_k_dense_replace = 3).",
        default=0,
        minimum=0,
        maximum=100000,
    )
    moe_layer_freq: int = spec(
        "Every n-th layer is MoE, counting from 1 (Llama-4 Maverick: 2 → layers 1, 3, 5, …).",
        default=1,
        minimum=1,
        maximum=1024,
    )

    def is_moe_layer(self, layer: int) -> bool:
        """Whether 0-based ``layer`` is an MoE layer.

        >>> Moe(experts=8, top_k=2, expert_ffn_size=8, first_dense_layers=1).is_moe_layer(0)
        False
        """
        return layer >= self.first_dense_layers and (layer + 1) % self.moe_layer_freq == 0

    @property
    def shared_ffn(self) -> int:
        """Resolved shared-expert FFN size."""
        return self.shared_expert_ffn_size or self.expert_ffn_size


@dataclass(**_RECORD)
class Mla:
    """Multi-head latent attention dimensions (DeepSeek-V2/V3)."""

    q_lora_rank: int = spec("Rank of the query down-projection (0: none).", minimum=0, maximum=_BIG)
    kv_lora_rank: int = spec("Rank of the compressed KV latent.", minimum=1, maximum=_BIG)
    qk_nope_head_dim: int = spec("Per-head query/key dims without RoPE.", minimum=1, maximum=_BIG)
    qk_rope_head_dim: int = spec("Per-head query/key dims with RoPE.", minimum=0, maximum=_BIG)
    v_head_dim: int = spec("Per-head value dims.", minimum=1, maximum=_BIG)


@dataclass(**_RECORD)
class Model:
    """The transformer being deployed."""

    name: str = spec("Model name, shown in outputs.")
    layers: int = spec("Transformer layers.", minimum=1, maximum=100000)
    hidden_size: int = spec("Model (residual) width.", minimum=1, maximum=_BIG)
    heads: int = spec("Attention (query) heads.", minimum=1, maximum=65536)
    kv_heads: int = spec(
        "Key/value heads (GQA/MQA); defaults to heads.", minimum=1, maximum=65536, derived=True
    )
    head_dim: int = spec(
        "Per-head dimension; defaults to hidden_size / heads.",
        minimum=1,
        maximum=65536,
        derived=True,
    )
    ffn_size: int = spec("Intermediate size of the dense FFN.", minimum=1, maximum=_BIG)
    vocab_size: int = spec("Vocabulary size.", minimum=1, maximum=1 << 28)
    dtype: DType = spec("Weight and activation format.", default=DType.BF16)
    gated_ffn: bool = spec("FFNs are gated (SwiGLU: three matrices instead of two).", default=True)
    tied_embeddings: bool = spec("Input embedding and LM head share weights.", default=False)
    moe: Moe | None = spec("Mixture-of-Experts block; absent for a dense model.", default=None)
    mla: Mla | None = spec("Multi-head latent attention; absent for MHA/GQA/MQA.", default=None)
    params: float | None = spec(
        "Declared parameter count, checked against the computed one (±10%).",
        default=None,
        unit="parameters",
        minimum=1,
    )
    hf_config: str | None = spec(
        "Path to a local Hugging Face config.json to read the model from (never downloaded).",
        default=None,
    )


@dataclass(**_RECORD)
class Parallel:
    """How the model is laid over the GPUs."""

    convention: Convention = spec(
        "How the degrees are read: megatron (folded EP) or orthogonal.",
        default=Convention.MEGATRON,
    )
    tp: int = spec("Tensor-parallel degree.", default=1, minimum=1, maximum=65536)
    cp: int = spec("Context-parallel degree.", default=1, minimum=1, maximum=65536)
    dp: int = spec(
        "Data-parallel degree (attention and dense layers).", default=1, minimum=1, maximum=1 << 20
    )
    pp: int = spec("Pipeline-parallel degree (stages).", default=1, minimum=1, maximum=65536)
    ep: int = spec("Expert-parallel degree.", default=1, minimum=1, maximum=65536)
    etp: int = spec("Expert tensor-parallel degree.", default=1, minimum=1, maximum=65536)
    redundant_experts: int = spec(
        "Extra replicas of hot experts per MoE layer, spread over the EP ranks (EPLB).",
        default=0,
        minimum=0,
        maximum=65536,
    )
    sequence_parallel: bool = spec(
        "Sequence parallelism: TP all-reduce becomes reduce-scatter + all-gather.", default=False
    )
    order: str = spec(
        "Rank order, fastest-varying first (Megatron convention).", default="tp-cp-ep-dp-pp"
    )
    expert_layout: ExpertLayout = spec(
        "How expert groups are laid: megatron (Megatron-Core's rank generator) or stage "
        "(over a stage's ranks in attention order; vLLM's EP across PP).",
        default=ExpertLayout.MEGATRON,
    )
    layers_per_stage: tuple[int, ...] | None = spec(
        "Explicit layers on each stage, first to last; default an even split.", default=None
    )
    first_stage_layers: int | None = spec(
        "Layers on the first stage; the rest split evenly (Megatron).", default=None, minimum=0
    )
    last_stage_layers: int | None = spec(
        "Layers on the last stage; the rest split evenly (Megatron).", default=None, minimum=0
    )
    world_size: int | None = spec(
        "Declared number of GPUs, checked against the degrees.", default=None, minimum=1
    )

    def attn_dp(self) -> int:
        """Data-parallel degree of attention: dp, or ep·dp under the orthogonal reading."""
        return self.dp * self.ep if self.convention is Convention.ORTHOGONAL else self.dp

    def world(self) -> int:
        """World size implied by the degrees under this plan's convention."""
        return self.tp * self.cp * self.attn_dp() * self.pp

    def edp(self) -> int:
        """Expert data-parallel degree: world / (etp·ep·pp), floored (rules check it divides)."""
        return self.world() // (self.etp * self.ep * self.pp)

    @property
    def sp_active(self) -> bool:
        """Sequence parallelism in effect: requested, and tp > 1 (with tp = 1 there is no
        TP group to split the sequence over)."""
        return self.sequence_parallel and self.tp > 1


@dataclass(**_RECORD)
class Hardware:
    """The GPUs and their links. A preset fills every field; any field may be overridden."""

    preset: str | None = spec("Hardware preset name (see docs/hardware.md).", default=None)
    memory_gib: float = spec(
        "Memory per GPU as the driver reports it (nvidia-smi memory.total); derived from "
        "memory_gb when only that is given.",
        default=0.0,
        unit="GiB (2^30 bytes)",
        minimum=0,
        exclusive_minimum=True,
        derived=True,
    )
    memory_gb: float | None = spec(
        "Memory per GPU in decimal GB (1e9 bytes); when given, overrides memory_gib.",
        default=None,
        unit="GB (1e9 bytes)",
        minimum=0,
        exclusive_minimum=True,
    )
    peak_tflops: Mapping[str, float] = spec(
        "Peak dense FLOP/s per format (keys bf16, fp16, fp8, fp4, fp32).", unit="TFLOP/s"
    )
    hbm_tbps: float = spec("HBM bandwidth per GPU.", unit="TB/s", minimum=0, exclusive_minimum=True)
    gpus_per_node: int = spec("GPUs per host.", minimum=1, maximum=1024)
    intra_node_gbps: float = spec(
        "Intra-node bandwidth per GPU, one direction (NVLink, xGMI).",
        unit="GB/s",
        minimum=0,
        exclusive_minimum=True,
    )
    inter_node_gbps: float = spec(
        "Inter-node bandwidth per GPU, one direction (InfiniBand/RoCE NIC).",
        unit="GB/s",
        minimum=0,
        exclusive_minimum=True,
    )
    intra_node_latency_us: float = spec(
        "Intra-node latency per message.", default=3.0, unit="µs", minimum=0
    )
    inter_node_latency_us: float = spec(
        "Inter-node latency per message.", default=10.0, unit="µs", minimum=0
    )
    flops_efficiency: float = spec(
        "Achievable fraction of peak FLOP/s.",
        default=0.6,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    hbm_efficiency: float = spec(
        "Achievable fraction of HBM bandwidth.",
        default=0.8,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    net_efficiency: float = spec(
        "Achievable fraction of link bandwidth.",
        default=0.8,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )

    @property
    def capacity_bytes(self) -> int:
        """Bytes of memory per GPU: ``memory_gb`` · 10⁹ when given, else ``memory_gib`` · 2³⁰."""
        if self.memory_gb is not None:
            return round(self.memory_gb * 1e9)
        return round(self.memory_gib * 2**30)

    def tflops(self, dtype: DType) -> float:
        """Peak dense TFLOP/s of a matmul in ``dtype``; a format the GPU has no tensor-core
        rate for (fp8 on A100, fp4 before Blackwell) runs at the next wider one it has
        (weight-only quantisation: the weights are widened before the multiply)."""
        table = self.peak_tflops
        for key in WIDER[dtype.math]:
            if key in table:
                return table[key]
        return 0.0


@dataclass(**_RECORD)
class Targets:
    """Claims the plan makes, checked against estimates. All optional."""

    ttft_s: float | None = spec(
        "Time to first token at most.", default=None, unit="s", minimum=0, exclusive_minimum=True
    )
    tpot_ms: float | None = spec(
        "Time per output token at most.", default=None, unit="ms", minimum=0, exclusive_minimum=True
    )
    tokens_per_s_per_gpu: float | None = spec(
        "Throughput per GPU at least (100 tokens/ms = 100000).",
        default=None,
        unit="tokens/s",
        minimum=0,
        exclusive_minimum=True,
    )
    tokens_per_s: float | None = spec(
        "Total throughput at least.",
        default=None,
        unit="tokens/s",
        minimum=0,
        exclusive_minimum=True,
    )
    max_memory_fraction: float | None = spec(
        "Peak memory per GPU at most this fraction of capacity.",
        default=None,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    gpu_utilization: float | None = spec(
        "GPU utilisation at least: compute-stream busy time over the makespan, mean over GPUs.",
        default=None, minimum=0, maximum=1, exclusive_minimum=True,
    )  # fmt: skip
    mfu: float | None = spec(
        "Model FLOPs utilisation at least: model FLOPs per second over every GPU's peak.",
        default=None, minimum=0, maximum=1, exclusive_minimum=True,
    )  # fmt: skip
    max_comm_share: float | None = spec(
        "Communication on the critical path at most this fraction of the step.",
        default=None, minimum=0, maximum=1,
    )  # fmt: skip
    memory_per_gpu_gb: float | None = spec(
        "A stated memory use per GPU (fullest GPU), in decimal GB, to agree with the estimate.",
        default=None, unit="GB", minimum=0, exclusive_minimum=True,
    )  # fmt: skip
    memory_per_gpu_gib: float | None = spec(
        "The same in GiB (2³⁰ bytes); give one of the two.",
        default=None, unit="GiB", minimum=0, exclusive_minimum=True,
    )  # fmt: skip
    memory_tolerance: float = spec(
        "How far the stated memory may be from the estimate and still agree (0.1 = 10 %).",
        default=0.1, minimum=0, maximum=1,
    )  # fmt: skip


@dataclass(**_RECORD)
class Plan:
    """A validated plan: the five sections, plus where each value came from."""

    name: str = spec("Plan name; defaults to the file's stem.", derived=True)
    model: Model = spec("The model.")
    parallel: Parallel = spec("Parallel degrees and layout.")
    workload: Workload = spec("The served workload.")
    hardware: Hardware = spec("The GPUs and links.")
    precision: Precision = spec(
        "Number formats per tensor (weights, activations, KV cache, MoE messages).",
        default=Precision(),
    )
    runtime: Runtime = spec(
        "The serving runtime (memory accounting, CUDA graphs).", default=Runtime()
    )
    cost: Cost = spec("Which cost model prices the nodes.", default=Cost())
    schedule: Scheduling = spec(
        "How each rank orders its micro-batches (two-batch overlap).", default=Scheduling()
    )
    targets: Targets = spec("Claims to verify.", default=Targets())
    claims: tuple[Claim, ...] = spec(
        "More claims: a bound on any metric, or a change against an alternative plan.",
        default=(),
    )
    alternatives: tuple[Plan | None, ...] = field(
        default=(),
        metadata={
            "doc": "For each claim, the plan its vs makes (None for an absolute claim).",
            "internal": True,
        },
    )
    source: str = field(
        default="", metadata={"doc": "File the plan was read from.", "internal": True}
    )
    locations: Mapping[str, Origin] = field(
        default_factory=dict,
        metadata={
            "doc": "Dotted path → where it was written (file position or flag).",
            "internal": True,
        },
    )

    @property
    def dtypes(self) -> Formats:
        """Every tensor's format, defaults filled from ``model.dtype``."""
        return self.precision.resolve(self.model.dtype)

    def where(self, path: str) -> Origin | None:
        """Where the value at dotted ``path`` was written, or its nearest present parent."""
        while path:
            loc = self.locations.get(path)
            if loc is not None:
                return loc
            path = path.rpartition(".")[0]
        return self.locations.get("")
