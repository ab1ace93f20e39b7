"""``dagen import megatron``: a plan from Megatron-LM flags (Megatron-Core 0.16.1).

The rules, each from Megatron's source (docs/import.md cites them in full):

* the world is the job's (torchrun's ``WORLD_SIZE``; here ``--world-size``, default
  TP·CP·PP), DP = world / (TP·PP·CP) and EDP = world / (ETP·EP·PP), both whole
  (``megatron/core/parallel_state.py``, ``initialize_model_parallel``);
* two ``RankGenerator``\\ s over order ``tp-cp-ep-dp-pp``, or ``tp-cp-ep-pp-dp`` with
  ``--use-tp-pp-dp-mapping`` (``megatron/training/initialize.py``): dagen's Megatron
  folding, which is that rule; ``--expert-tensor-parallel-size`` defaults to TP
  (``ModelParallelConfig.__post_init__``), unlike dagen's 1;
* what Megatron refuses: order not ending in pp with PP > 1 and EDP ≠ DP, and pipeline
  groups that differ between the two generators (``initialize_model_parallel``);
  sequence parallelism without TP (``ModelParallelConfig``); heads not divisible by TP,
  query groups neither a multiple nor a divisor of TP, and an uneven first/last stage
  split (``TransformerConfig.__post_init__`` in
  ``megatron/core/transformer/transformer_config.py``).
"""

from __future__ import annotations

from dagen.plan.importers.draft import WORKLOAD_FLAGS, Draft, Facts, Traced, workload_sections
from dagen.plan.importers.flags import Flag, Given, reject

__all__ = ["FLAGS", "NAME", "translate"]

NAME = "megatron"
SOURCE = "Megatron-Core 0.16.1"

FLAGS: tuple[Flag, ...] = (
    Flag(names=("--tensor-model-parallel-size",), default=1),
    Flag(names=("--pipeline-model-parallel-size",), default=1),
    Flag(names=("--context-parallel-size",), default=1),
    Flag(names=("--expert-model-parallel-size",), default=1),
    Flag(names=("--expert-tensor-parallel-size",), default=None),
    Flag(names=("--use-tp-pp-dp-mapping",), default=False),
    Flag(names=("--num-layers-in-first-pipeline-stage",), default=None),
    Flag(names=("--num-layers-in-last-pipeline-stage",), default=None),
    Flag(names=("--sequence-parallel",), default=False),
    Flag(names=("--world-size",), default=None),
    *WORKLOAD_FLAGS,
)

_PS = "megatron/core/parallel_state.py, initialize_model_parallel"
_TC = "megatron/core/transformer/transformer_config.py, TransformerConfig.__post_init__"


def _degrees(given: Given) -> dict[str, int]:
    tp = given["tensor_model_parallel_size"]
    pp, cp = given["pipeline_model_parallel_size"], given["context_parallel_size"]
    etp = given["expert_tensor_parallel_size"] or tp
    world = given["world_size"] or tp * pp * cp
    return {
        "tp": tp,
        "pp": pp,
        "cp": cp,
        "ep": given["expert_model_parallel_size"],
        "etp": etp,
        "world": world,
    }


def _check_world(given: Given, d: dict[str, int]) -> None:
    world = given.origin("world_size")
    model = d["tp"] * d["pp"] * d["cp"]
    if d["world"] % model:
        flags = given.origin("tensor_model_parallel_size", "pipeline_model_parallel_size")
        reject(
            NAME,
            f"{world}; {flags}; {given.origin('context_parallel_size')}",
            f"TP·PP·CP = {model} does not divide the world {d['world']}",
            f"Megatron raises 'world_size is not divisible by {model}' ({_PS})",
            f"use a world size that is a multiple of {model}",
        )
    expert = d["etp"] * d["ep"] * d["pp"]
    if d["world"] % expert:
        flags = given.origin("expert_tensor_parallel_size", "expert_model_parallel_size")
        reject(
            NAME,
            f"{world}; {flags}",
            f"ETP·EP·PP = {expert} does not divide the world {d['world']}",
            "Megatron raises 'world_size is not divisible by "
            f"expert_tensor_model_pipeline_parallel size' ({_PS})",
            f"use a world size that is a multiple of {expert}, or lower EP/ETP",
        )
    dp, edp = d["world"] // model, d["world"] // max(expert, 1)
    if given["use_tp_pp_dp_mapping"] and d["pp"] > 1 and edp != dp:
        reject(
            NAME,
            f"{given.origin('use_tp_pp_dp_mapping')}; {given.origin('pipeline_model_parallel_size')}",
            f"the order tp-cp-ep-pp-dp does not end in pp and EDP {edp} ≠ DP {dp}",
            "Megatron asserts that the data-parallel sizes of attention and MoE layers are "
            f"equal when not using pp-last ordering ({_PS})",
            "drop --use-tp-pp-dp-mapping, or make ETP·EP = TP·CP",
        )


def _check_model(given: Given, facts: Facts, tp: int) -> None:
    where = given.origin("tensor_model_parallel_size")
    if facts.heads % tp:
        reject(
            NAME,
            where,
            f"the model's {facts.heads} attention heads do not split over it",
            f"Megatron requires num_attention_heads % tensor_model_parallel_size == 0 ({_TC})",
            f"use a TP that divides {facts.heads}",
        )
    groups = facts.kv_heads
    if groups % tp and tp % groups:
        reject(
            NAME,
            where,
            f"the model's {groups} KV heads (query groups) neither divide nor are a multiple of {tp}",
            f"Megatron requires num_query_groups to be a multiple or divisor of TP ({_TC})",
            f"use a TP that divides {groups} or is a multiple of it",
        )
    if given["sequence_parallel"] and tp == 1:
        reject(
            NAME,
            f"{given.origin('sequence_parallel')}; {where}",
            "sequence parallelism with TP 1",
            "Megatron raises 'Cannot use sequence parallelism without tensor parallelism' "
            "(megatron/core/model_parallel_config.py, ModelParallelConfig.__post_init__)",
            "drop --sequence-parallel or raise TP",
        )


def _check_split(given: Given, facts: Facts, pp: int) -> None:
    layers, stages = facts.layers, pp
    for dest in ("num_layers_in_first_pipeline_stage", "num_layers_in_last_pipeline_stage"):
        n = given[dest]
        if n is None:
            continue
        layers, stages = layers - n, stages - 1
    if layers < 0 or (layers != 0) != (stages != 0) or (stages and layers % stages):
        flags = given.origin(
            "num_layers_in_first_pipeline_stage",
            "num_layers_in_last_pipeline_stage",
            "pipeline_model_parallel_size",
        )
        reject(
            NAME,
            flags,
            f"{layers} middle layers of {facts.layers} over {stages} middle stages",
            f"Megatron requires the middle layers to split evenly over the middle stages ({_TC})",
            "choose first/last stage layers that leave a multiple of the middle stages",
        )


def _parallel(given: Given, d: dict[str, int], dp: int) -> dict[str, Traced]:
    sizes = "tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"
    order = "tp-cp-ep-pp-dp" if given["use_tp_pp_dp_mapping"] else "tp-cp-ep-dp-pp"
    world_from = given.origin("world_size", *sizes)
    return {
        "convention": Traced("megatron", "Megatron-Core's MoE parallel folding"),
        "tp": Traced(d["tp"], given.origin("tensor_model_parallel_size")),
        "cp": Traced(d["cp"], given.origin("context_parallel_size")),
        "dp": Traced(dp, f"world/(TP·PP·CP) = {d['world']}/{d['world'] // dp}: {world_from}"),
        "pp": Traced(d["pp"], given.origin("pipeline_model_parallel_size")),
        "order": Traced(order, given.origin("use_tp_pp_dp_mapping")),
        "sequence_parallel": Traced(given["sequence_parallel"], given.origin("sequence_parallel")),
    }


def _experts(given: Given, d: dict[str, int]) -> dict[str, Traced]:
    etp_from = given.origin("expert_tensor_parallel_size")
    if not given.given("expert_tensor_parallel_size"):
        tp_from = given.origin("tensor_model_parallel_size")
        etp_from = f"--expert-tensor-parallel-size (default TP: {tp_from})"
    return {
        "ep": Traced(d["ep"], given.origin("expert_model_parallel_size")),
        "etp": Traced(d["etp"], etp_from),
    }


def translate(given: Given, facts: Facts) -> Draft:
    """The plan of a Megatron-LM command line (see the module docstring).

    Raises:
        FlagError: a value Megatron itself rejects.
    """
    d = _degrees(given)
    _check_world(given, d)
    _check_model(given, facts, d["tp"])
    _check_split(given, facts, d["pp"])
    dp = d["world"] // (d["tp"] * d["pp"] * d["cp"])
    parallel = _parallel(given, d, dp)
    if facts.moe:
        parallel.update(_experts(given, d))
    for key, dest in (
        ("first_stage_layers", "num_layers_in_first_pipeline_stage"),
        ("last_stage_layers", "num_layers_in_last_pipeline_stage"),
    ):
        if given[dest] is not None:
            parallel[key] = Traced(given[dest], given.origin(dest))
    sizes = "tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"
    parallel["world_size"] = Traced(d["world"], given.origin("world_size", *sizes))
    workload, hardware = workload_sections(given, dp)
    notes = [f"Read as {SOURCE} lays it out: world {d['world']}, DP {dp}."]
    return Draft(hardware=hardware, parallel=parallel, workload=workload, notes=notes)
