"""``dagen import sglang``: a plan from ``sglang.launch_server`` flags (SGLang 0.5.23).

The rules, each from SGLang's source (docs/import.md cites them in full):

* ``--tp-size`` is the whole TP group of a pipeline stage; PP groups stride over TP
  groups (``sglang/srt/distributed/parallel_state.py``, ``initialize_model_parallel``);
* inside a TP group attention is (attn DP, attn CP, attn TP) with attn TP fastest and
  attn TP = TP / (attn DP · attn CP) (``derive_attn_tp_size`` in
  ``sglang/srt/runtime_context.py``), and the MoE layers are (MoE DP, EP, MoE TP) with
  MoE TP fastest and MoE TP = TP / (EP · MoE DP) (``derive_parallel_widths``): dagen's
  Megatron folding with order ``tp-cp-ep-dp-pp``;
* ``--dp-size N --enable-dp-attention`` is the deprecated spelling of ``--attn-dp-size
  N`` (``handle_deprecated_dp_attention`` in ``sglang/srt/arg_groups/parallel_hook.py``);
  a plain ``--dp-size`` is separate replicas, each ``tp·pp`` GPUs from ``r·tp·pp`` on
  (``sglang/srt/managers/data_parallel_controller.py``): dagen's dp after pp, order
  ``tp-cp-ep-pp-dp``, experts per stage (``expert_layout: stage``);
* an all-to-all backend that spans the TP group (DeepEP and others) sets EP = TP
  (``_a2a_ep_size`` in ``sglang/srt/arg_groups/overrides.py``);
* what SGLang refuses (``handle_context_parallelism``, ``handle_data_parallelism``).
"""

from __future__ import annotations

from dagen.plan.importers.draft import WORKLOAD_FLAGS, Draft, Facts, Traced, workload_sections
from dagen.plan.importers.flags import Flag, Given, reject

__all__ = ["FLAGS", "NAME", "translate"]

NAME = "sglang"
SOURCE = "SGLang 0.5.23"

A2A_BACKENDS = (
    "none",
    "deepep",
    "mooncake",
    "nixl",
    "mori",
    "ascend_fuseep",
    "flashinfer",
    "megamoe",
    "deepep_v2",
    "ascend_tp",
    "pplx",
    "flashinfer_megamoe",
)
"""``--moe-a2a-backend`` choices (``moe_a2a_backend`` in sglang/srt/arg_groups/fields/exec_.py)."""
EP_SPANNING = frozenset(
    {"megamoe", "deepep", "deepep_v2", "mooncake", "nixl", "ascend_fuseep", "flashinfer"}
    | {"flashinfer_megamoe", "mori", "pplx"}
)
"""Backends that set EP = TP (``_A2A_EP_SPANNING_BACKENDS`` in overrides.py)."""

FLAGS: tuple[Flag, ...] = (
    Flag(names=("--tp-size", "--tensor-parallel-size"), default=1),
    Flag(names=("--pp-size", "--pipeline-parallel-size"), default=1),
    Flag(names=("--dp-size", "--data-parallel-size"), default=1),
    Flag(names=("--attn-dp-size", "--attention-data-parallel-size"), default=1),
    Flag(names=("--enable-dp-attention",), default=False),
    Flag(names=("--attn-cp-size", "--attention-context-parallel-size"), default=1),
    Flag(names=("--ep-size", "--expert-parallel-size", "--ep"), default=1),
    Flag(names=("--moe-dp-size", "--moe-data-parallel-size"), default=1),
    Flag(names=("--moe-a2a-backend",), default="none", choices=A2A_BACKENDS),
    *WORKLOAD_FLAGS,
)

_HOOK = "sglang/srt/arg_groups/parallel_hook.py"


def _attention(given: Given) -> tuple[int, int, str, str]:
    """(attention DP, replicas) and their origins, the deprecated spelling resolved."""
    attn_dp, replicas = given["attn_dp_size"], given["dp_size"]
    dp_from, rep_from = given.origin("attn_dp_size"), given.origin("dp_size")
    if given["enable_dp_attention"] and attn_dp == 1:
        attn_dp, replicas = replicas, 1
        dp_from = given.origin("dp_size", "enable_dp_attention")
        rep_from = f"1: {dp_from} is attention DP"
    if attn_dp > 1 and replicas > 1:
        reject(
            NAME,
            f"{dp_from}; {rep_from}",
            f"{replicas} replicas and attention DP {attn_dp} together",
            "SGLang refuses data-parallel replicas combined with attention data "
            f"parallelism ({_HOOK}, handle_data_parallelism)",
            "use one of --dp-size (replicas) or --attn-dp-size (attention DP)",
        )
    return attn_dp, replicas, dp_from, rep_from


def _ep(given: Given) -> tuple[int, str]:
    backend = given["moe_a2a_backend"]
    if backend in EP_SPANNING:
        tp = given["tp_size"]
        return tp, f"{given.origin('moe_a2a_backend')} sets ep = {given.origin('tp_size')}"
    return given["ep_size"], given.origin("ep_size")


def _check_tp(given: Given, attn_dp: int, where: str) -> None:
    tp, cp = given["tp_size"], given["attn_cp_size"]
    if tp % (attn_dp * cp):
        reject(
            NAME,
            f"{given.origin('tp_size')}; {where}; {given.origin('attn_cp_size')}",
            f"attention DP · CP = {attn_dp}·{cp} does not divide TP {tp}",
            "SGLang asserts tp_size % (attn_dp_size · attn_cp_size) == 0 "
            f"({_HOOK}, handle_context_parallelism and handle_data_parallelism)",
            "choose attention DP and CP whose product divides --tp-size",
        )


def _check_moe(given: Given, ep: int, ep_from: str) -> None:
    tp, moe_dp, cp = given["tp_size"], given["moe_dp_size"], given["attn_cp_size"]
    flags = f"{given.origin('tp_size')}; {ep_from}; {given.origin('moe_dp_size')}"
    rule = f"({_HOOK}, handle_context_parallelism)"
    if tp % (ep * moe_dp):
        reject(
            NAME,
            flags,
            f"EP · MoE DP = {ep}·{moe_dp} does not divide TP {tp}",
            "SGLang lays MoE TP = tp_size / (ep_size · moe_dp_size) inside the TP group "
            "(sglang/srt/runtime_context.py derive_parallel_widths)",
            "choose EP and MoE DP whose product divides --tp-size",
        )
    if moe_dp > 1 and ep > 1 and ep * moe_dp != tp:
        reject(
            NAME,
            flags,
            f"EP · MoE DP = {ep * moe_dp} ≠ TP {tp}",
            f"SGLang asserts ep_size * moe_dp_size == tp_size when both are > 1 {rule}",
            "make EP · MoE DP equal --tp-size",
        )
    if moe_dp > 1 and given["pp_size"] > 1:
        reject(
            NAME,
            f"{given.origin('moe_dp_size')}; {given.origin('pp_size')}",
            "MoE DP with pipeline parallelism",
            f"SGLang asserts pp_size == 1 when moe_dp_size > 1 {rule}",
            "drop one",
        )
    if cp != moe_dp and moe_dp != 1:
        reject(
            NAME,
            f"{given.origin('attn_cp_size')}; {given.origin('moe_dp_size')}",
            f"attention CP {cp} ≠ MoE DP {moe_dp}",
            f"SGLang asserts moe_dp_size == 1 when attn_cp_size != moe_dp_size {rule}",
            "set --moe-dp-size to 1 or to --attn-cp-size",
        )


def _experts(given: Given, ep: int, ep_from: str) -> dict[str, Traced]:
    tp, moe_dp = given["tp_size"], given["moe_dp_size"]
    etp = tp // (ep * moe_dp)
    where = given.origin("tp_size", "moe_dp_size")
    return {
        "ep": Traced(ep, ep_from),
        "etp": Traced(etp, f"MoE TP = TP/(EP·MoE DP) = {tp}/({ep}·{moe_dp}): {where}"),
    }


def translate(given: Given, facts: Facts) -> Draft:
    """The plan of an SGLang command line (see the module docstring).

    Raises:
        FlagError: a value SGLang itself rejects.
    """
    attn_dp, replicas, dp_from, rep_from = _attention(given)
    _check_tp(given, attn_dp, dp_from)
    ep, ep_from = _ep(given)
    _check_moe(given, ep, ep_from)
    tp, cp, pp = given["tp_size"], given["attn_cp_size"], given["pp_size"]
    attn_tp = tp // (attn_dp * cp)
    tp_from = f"attention TP = TP/(attn DP·attn CP) = {tp}/({attn_dp}·{cp}): " + given.origin(
        "tp_size", "attn_cp_size"
    )
    dp = Traced(attn_dp * replicas, f"attention DP {attn_dp} ({dp_from}) · replicas ({rep_from})")
    parallel = {
        "convention": Traced("megatron", "SGLang folds the MoE layout into the TP group"),
        "tp": Traced(attn_tp, tp_from),
        "cp": Traced(cp, given.origin("attn_cp_size")),
        "dp": dp,
        "pp": Traced(pp, given.origin("pp_size")),
        "order": Traced("tp-cp-ep-dp-pp", "SGLang's TP group (attn DP, CP, TP) below PP"),
    }
    if replicas > 1:
        parallel["order"] = Traced("tp-cp-ep-pp-dp", f"replicas after PP: {rep_from}")
    if facts.moe:
        parallel.update(_experts(given, ep, ep_from))
        parallel["expert_layout"] = Traced("stage", "SGLang's MoE groups inside each TP group")
    workload, hardware = workload_sections(given, attn_dp * replicas)
    notes = [f"Read as {SOURCE} lays it out: world = replicas·TP·PP = {replicas * tp * pp}."]
    if not facts.moe:
        notes.append(
            "The model is dense: --ep-size, --moe-dp-size and --moe-a2a-backend lay nothing."
        )
    runtime = {"framework": Traced("sglang", "dagen import sglang")}
    return Draft(
        hardware=hardware, parallel=parallel, workload=workload, runtime=runtime, notes=notes
    )
