"""``dagen import vllm``: a plan from ``vllm serve`` flags (read against vLLM 0.33.0).

The rules, each from vLLM's source (docs/import.md cites them in full):

* rank order ``ExternalDP × DP × PP × PCP × TP``, TP fastest
  (``vllm/distributed/parallel_state.py``, ``initialize_model_parallel``): dagen order
  ``tp-cp-pp-dp``, with ``-pcp`` as dagen's ``cp``;
* the MoE group of a rank is every rank of its pipeline stage, TP·PCP·DP of them, in
  (DP, PCP, TP) order (the ``_EP`` group there; ``FusedMoEParallelConfig.make`` in
  ``vllm/model_executor/layers/fused_moe/config.py`` flattens the same three):
  ``--enable-expert-parallel`` makes it the EP group (etp 1), otherwise the experts are
  tensor-split over it (ep 1, etp = TP·PCP·DP). With PP > 1 that group sits on both
  sides of PP, so the plan says ``expert_layout: stage``;
* what vLLM refuses: degrees below 1 (``ParallelConfig`` fields, ``ge=1``), heads not
  divisible by TP and EP on a dense model (``ModelConfig.verify_with_parallel_config``),
  an expert FFN not divisible by its TP (``FusedMoEConfig.__post_init__``), a memory
  fraction outside (0, 1] (``CacheConfig.gpu_memory_utilization``).
"""

from __future__ import annotations

from dagen.errors import FlagError
from dagen.plan.importers.draft import WORKLOAD_FLAGS, Draft, Facts, Traced, workload_sections
from dagen.plan.importers.flags import Flag, Given, reject

__all__ = ["FLAGS", "NAME", "translate"]

NAME = "vllm"
SOURCE = "vLLM 0.33.0"

FLAGS: tuple[Flag, ...] = (
    Flag(names=("--tensor-parallel-size", "-tp"), default=1),
    Flag(names=("--pipeline-parallel-size", "-pp"), default=1),
    Flag(names=("--data-parallel-size", "-dp"), default=1),
    Flag(names=("--prefill-context-parallel-size", "-pcp"), default=1),
    Flag(names=("--decode-context-parallel-size", "-dcp"), default=1),
    Flag(names=("--enable-expert-parallel", "-ep"), default=False, negatable=True),
    Flag(names=("--gpu-memory-utilization",), default=0.92),
    *WORKLOAD_FLAGS,
)


def _check(given: Given, facts: Facts) -> None:
    tp = given["tensor_parallel_size"]
    if facts.heads % tp:
        reject(
            NAME,
            given.origin("tensor_parallel_size"),
            f"the model's {facts.heads} attention heads do not split over {tp} ranks",
            "vLLM requires total_num_attention_heads % tensor_parallel_size == 0 "
            "(vllm/config/model.py, ModelConfig.verify_with_parallel_config)",
            f"use a tensor-parallel size that divides {facts.heads}",
        )
    if given["enable_expert_parallel"] and not facts.moe:
        reject(
            NAME,
            given.origin("enable_expert_parallel"),
            "the model has no experts",
            "vLLM requires an MoE model for expert parallelism "
            "(ModelConfig._verify_with_expert_parallelism)",
            "drop --enable-expert-parallel",
        )
    if given["decode_context_parallel_size"] != 1:
        raise FlagError(
            f"{NAME}: {given.origin('decode_context_parallel_size')}: dagen does not model "
            "decode context parallelism (DCP shards the KV cache over the TP ranks, "
            "vllm/distributed/parallel_state.py _DCP). Fix: drop -dcp."
        )
    util = given["gpu_memory_utilization"]
    if not 0 < util <= 1:
        reject(
            NAME,
            given.origin("gpu_memory_utilization"),
            f"{util} is not a fraction",
            "vLLM requires 0 < gpu_memory_utilization ≤ 1 (vllm/config/cache.py, CacheConfig)",
            "use e.g. 0.9",
        )


def _experts(given: Given, facts: Facts, flat: int) -> dict[str, Traced]:
    where = given.origin(
        "tensor_parallel_size",
        "prefill_context_parallel_size",
        "data_parallel_size",
        "enable_expert_parallel",
    )
    ep = given["enable_expert_parallel"]
    etp = 1 if ep else flat
    if facts.expert_ffn % etp:
        reject(
            NAME,
            where,
            f"without expert parallelism the experts are tensor-split over TP·PCP·DP = {flat} "
            f"ranks, which does not divide their intermediate size {facts.expert_ffn}",
            "vLLM asserts intermediate_size % tp_size == 0 for the flattened MoE TP "
            "(vllm/model_executor/layers/fused_moe/config.py, FusedMoEConfig.__post_init__)",
            "add --enable-expert-parallel, or choose degrees whose product divides "
            f"{facts.expert_ffn}",
        )
    return {
        "ep": Traced(flat if ep else 1, f"TP·PCP·DP = {flat} with EP, else 1: {where}"),
        "etp": Traced(etp, f"1 with EP, else TP·PCP·DP = {flat}: {where}"),
        "expert_layout": Traced("stage", "vLLM's MoE group: every rank of a PP stage"),
    }


def translate(given: Given, facts: Facts) -> Draft:
    """The plan of a ``vllm serve`` command line (see the module docstring).

    Raises:
        FlagError: a value vLLM itself rejects, or DCP, which dagen does not model.
    """
    _check(given, facts)
    tp, pp = given["tensor_parallel_size"], given["pipeline_parallel_size"]
    dp, pcp = given["data_parallel_size"], given["prefill_context_parallel_size"]
    parallel = {
        "convention": Traced("megatron", "vLLM folds EP into the attention ranks"),
        "tp": Traced(tp, given.origin("tensor_parallel_size")),
        "cp": Traced(pcp, given.origin("prefill_context_parallel_size")),
        "dp": Traced(dp, given.origin("data_parallel_size")),
        "pp": Traced(pp, given.origin("pipeline_parallel_size")),
        "order": Traced("tp-cp-pp-dp-ep", "vLLM's rank order ExternalDP × DP × PP × PCP × TP"),
    }
    if facts.moe:
        parallel.update(_experts(given, facts, tp * pcp * dp))
    workload, hardware = workload_sections(given, dp)
    runtime = {
        "framework": Traced("vllm", "dagen import vllm"),
        "memory_fraction": Traced(
            given["gpu_memory_utilization"], given.origin("gpu_memory_utilization")
        ),
    }
    notes = [f"Read as {SOURCE} lays it out: world = TP·PCP·PP·DP = {tp * pcp * pp * dp}."]
    return Draft(
        hardware=hardware, parallel=parallel, workload=workload, runtime=runtime, notes=notes
    )
