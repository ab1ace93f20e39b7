"""Every finding code, registered once: its default severity, its page of the docs and what
it means.

A member of :class:`Code` *is* its registry entry, and its value is the stable code
string (``PLAN-WORLD``) that outputs print. The one factory of findings
(:func:`dagen.findings.finding`) takes a :class:`Code` and fills the severity from here
unless the check decides otherwise; ``dagen explain CODE`` prints the entry; a test keeps
the docs' tables and this one equal. Codes fall in four families:

* ``P-…``: the plan file is not a plan, or the run is refused (exit 2, nothing is built);
* ``PLAN-…``: the plan is well formed but inconsistent;
* ``GRAPH-…``: the expanded graph is unsound;
* ``COST-…``: memory and the plan's claims against the estimate and the bounds.

Example:
    >>> Code.PLAN_WORLD.severity.value, Code.PLAN_WORLD.doc
    ('error', 'docs/plan-checks.md#plan-world')
    >>> Code.of("GRAPH-CYCLE") is Code.GRAPH_CYCLE
    True
"""

from __future__ import annotations

import enum

__all__ = ["Code", "Severity"]


class Severity(enum.StrEnum):
    """How bad a finding is. ``error`` fails ``dagen check`` (exit 1)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO
_PLAN, _GRAPH, _COST = "plan-checks.md", "graph-checks.md", "cost-model.md"


class Code(enum.StrEnum):
    """Every finding code (see the module docstring)."""

    severity: Severity
    """The severity a finding of this code has unless its check says otherwise."""
    page: str
    """The page of docs/ that documents it."""
    summary: str
    """What it means, in one sentence."""

    def __new__(cls, code: str, severity: Severity, page: str, summary: str) -> Code:
        member = str.__new__(cls, code)
        member._value_ = code
        member.severity, member.page, member.summary = severity, page, summary
        return member

    @property
    def doc(self) -> str:
        """``docs/<page>#<anchor>``: where the code is documented."""
        return f"docs/{self.page}#{self.value.lower()}"

    @staticmethod
    def of(text: str) -> Code:
        """The code of ``text`` (``PLAN-WORLD``). Raises KeyError for an unknown one."""
        return _BY_VALUE[text.upper()]

    # fmt: off
    # The plan file is not a plan.
    P_FILE = "P-FILE", _E, _PLAN, "The plan file does not exist, cannot be read, or is not UTF-8."
    P_TOO_LARGE = "P-TOO-LARGE", _E, _PLAN, "The file is over 1 MiB, or holds more than 100,000 values."
    P_YAML_SYNTAX = "P-YAML-SYNTAX", _E, _PLAN, "The YAML does not parse."
    P_EMPTY = "P-EMPTY", _E, _PLAN, "The file holds no document."
    P_MULTI_DOC = "P-MULTI-DOC", _E, _PLAN, "The file holds more than one YAML document."
    P_NOT_MAPPING = "P-NOT-MAPPING", _E, _PLAN, "The document or a section is not a mapping."
    P_TAG = "P-TAG", _E, _PLAN, "A tag other than YAML's core ones (never executed)."
    P_MERGE = "P-MERGE", _E, _PLAN, "A << merge key."
    P_ALIAS_BOMB = "P-ALIAS-BOMB", _E, _PLAN, "Aliases expand past 100,000 values, or one refers to its own container."
    P_TOO_DEEP = "P-TOO-DEEP", _E, _PLAN, "Values nest more than 32 levels."
    P_DUPLICATE_KEY = "P-DUPLICATE-KEY", _E, _PLAN, "A key is written twice in one mapping."
    P_KEY_TYPE = "P-KEY-TYPE", _E, _PLAN, "A key is a list or a mapping instead of a name."
    P_UNKNOWN_KEY = "P-UNKNOWN-KEY", _E, _PLAN, "A key the record does not have."
    P_MISSING = "P-MISSING", _E, _PLAN, "A required field is absent, or peak_tflops is empty."
    P_TYPE = "P-TYPE", _E, _PLAN, "A value of the wrong type."
    P_RANGE = "P-RANGE", _E, _PLAN, "A value past its bounds, or not finite."
    P_ENUM = "P-ENUM", _E, _PLAN, "A value that is not one of its enum's."
    P_ORDER = "P-ORDER", _E, _PLAN, "parallel.order names something other than tp, cp, ep, dp, pp, or one twice."
    P_PRESET = "P-PRESET", _E, _PLAN, "hardware.preset is not a known preset."
    P_HF_CONFIG = "P-HF-CONFIG", _E, _PLAN, "model.hf_config cannot be read, or lacks a key the plan does not supply."
    P_HEAD_DIM = "P-HEAD-DIM", _E, _PLAN, "No head_dim, and heads does not divide hidden_size."
    P_USAGE = "P-USAGE", _E, _PLAN, "A command-line flag or argument is invalid."
    P_OUTPUT = "P-OUTPUT", _E, _PLAN, "An output cannot be written (path, disk, stdout)."
    P_IMPORT = "P-IMPORT", _E, _PLAN, "A framework's flags cannot be imported."
    P_TOO_BIG = "P-TOO-BIG", _E, _PLAN, "The run would need more memory than allowed."
    P_MESH = "P-MESH", _E, _PLAN, "The degrees cannot be laid out over the ranks."
    # The plan is inconsistent.
    PLAN_WORLD = "PLAN-WORLD", _E, _PLAN, "The declared world_size is not what the degrees give under the plan's convention."
    PLAN_EP_STAGE = "PLAN-EP-STAGE", _E, _PLAN, "ep·etp does not divide the GPUs of a pipeline stage."
    PLAN_CONVENTION = "PLAN-CONVENTION", _I, _PLAN, "The convention is not written and the other reading means another GPU count."
    PLAN_TP_HEADS = "PLAN-TP-HEADS", _E, _PLAN, "tp is more than the attention heads."
    PLAN_HEADS_TP = "PLAN-HEADS-TP", _E, _PLAN, "heads is not divisible by tp."
    PLAN_GQA = "PLAN-GQA", _E, _PLAN, "heads is not a multiple of kv_heads."
    PLAN_KV_REPLICATED = "PLAN-KV-REPLICATED", _I, _PLAN, "kv_heads < tp: each KV head is replicated over tp/kv_heads ranks."
    PLAN_KV_TP = "PLAN-KV-TP", _E, _PLAN, "kv_heads and tp divide neither way."
    PLAN_FFN_TP = "PLAN-FFN-TP", _E, _PLAN, "A dense or shared-expert FFN size is not divisible by tp."
    PLAN_HIDDEN_TP = "PLAN-HIDDEN-TP", _W, _PLAN, "hidden_size is not divisible by tp."
    PLAN_VOCAB_TP = "PLAN-VOCAB-TP", _W, _PLAN, "vocab_size is not divisible by tp, so the embedding is padded."
    PLAN_MOE_DENSE = "PLAN-MOE-DENSE", _E, _PLAN, "ep, etp, redundant_experts or expert_balance is set on a dense model."
    PLAN_EXPERTS_EP = "PLAN-EXPERTS-EP", _E, _PLAN, "experts + redundant_experts is not divisible by ep."
    PLAN_EP_EXPERTS = "PLAN-EP-EXPERTS", _E, _PLAN, "ep is more than experts + redundant_experts."
    PLAN_TOPK = "PLAN-TOPK", _E, _PLAN, "top_k is more than the experts."
    PLAN_ETP_FFN = "PLAN-ETP-FFN", _E, _PLAN, "expert_ffn_size is not divisible by etp."
    PLAN_NO_MOE_LAYER = "PLAN-NO-MOE-LAYER", _W, _PLAN, "first_dense_layers and moe_layer_freq leave no MoE layer."
    PLAN_ORDER = "PLAN-ORDER", _E, _PLAN, "parallel.order leaves out a dimension whose degree is more than 1."
    PLAN_PP_LAYERS = "PLAN-PP-LAYERS", _E, _PLAN, "More pipeline stages than layers, with no explicit layers_per_stage."
    PLAN_LAYERS_SPLIT = "PLAN-LAYERS-SPLIT", _E, _PLAN, "The layers do not split over the stages by Megatron's rule."
    PLAN_LAYERS_STAGES = "PLAN-LAYERS-STAGES", _E, _PLAN, "layers_per_stage does not list pp stages."
    PLAN_LAYERS_SUM = "PLAN-LAYERS-SUM", _E, _PLAN, "layers_per_stage does not sum to the layers."
    PLAN_LAYERS_CONFLICT = "PLAN-LAYERS-CONFLICT", _E, _PLAN, "layers_per_stage and first/last_stage_layers are both given."
    PLAN_EMPTY_STAGE = "PLAN-EMPTY-STAGE", _W, _PLAN, "A stage in layers_per_stage holds no layer."
    PLAN_BATCH_DP = "PLAN-BATCH-DP", _E, _PLAN, "batch is not divisible by the attention data-parallel degree."
    PLAN_MICROBATCH = "PLAN-MICROBATCH", _E, _PLAN, "The per-replica batch is not divisible by micro_batches."
    PLAN_CP_PROMPT = "PLAN-CP-PROMPT", _W, _PLAN, "prompt_len does not split over cp (an error) or 2·cp (a warning)."
    PLAN_OVERLAP = "PLAN-OVERLAP", _E, _PLAN, "two_batch overlap with no MoE all-to-all to hide, or under two micro-batches a replica."
    PLAN_DECODE_STEPS = "PLAN-DECODE-STEPS", _W, _PLAN, "decode_steps is more than the tokens generated."
    PLAN_PARAMS = "PLAN-PARAMS", _E, _PLAN, "The declared parameter count is more than 10% off the dimensions'."
    PLAN_FP8_HW = "PLAN-FP8-HW", _W, _PLAN, "dtype fp8 on hardware that lists no fp8 peak."
    PLAN_TP_NODES = "PLAN-TP-NODES", _W, _PLAN, "tp spans more GPUs than a node has."
    PLAN_POOL_MODEL = "PLAN-POOL-MODEL", _E, _PLAN, "A pool serves another model than the first."
    PLAN_POOL_KV_DTYPE = "PLAN-POOL-KV-DTYPE", _E, _PLAN, "Decode keeps KV in another format."
    PLAN_POOL_LAYOUT = "PLAN-POOL-LAYOUT", _E, _PLAN, "The pools' layouts cannot hand a cache over."
    PLAN_SP_TP1 = "PLAN-SP-TP1", _W, _PLAN, "sequence_parallel with tp = 1."
    PLAN_SP_TOKENS = "PLAN-SP-TOKENS", _W, _PLAN, "Under SP, tp does not divide the tokens."
    PLAN_ORDER_EDP = "PLAN-ORDER-EDP", _E, _PLAN, "pp not last in the order, edp ≠ dp."
    PLAN_CONTEXT = "PLAN-CONTEXT", _E, _PLAN, "The context passes max_position_embeddings."
    PLAN_PP_GROUPS = "PLAN-PP-GROUPS", _E, _PLAN, "Attention and experts disagree on stages."
    PLAN_EXPERT_PLACE = "PLAN-EXPERT-PLACE", _E, _PLAN, "Redundant experts cannot be placed."
    # The graph is unsound.
    GRAPH_IR = "GRAPH-IR", _E, _GRAPH, "The graph's columns do not index what they claim."
    GRAPH_CYCLE = "GRAPH-CYCLE", _E, _GRAPH, "The graph has a cycle: its ranks deadlock."
    GRAPH_SERIAL_DEADLOCK = "GRAPH-SERIAL-DEADLOCK", _W, _GRAPH, "Acyclic, but running each rank's ops in program order deadlocks."
    GRAPH_MISSING = "GRAPH-MISSING", _E, _GRAPH, "An op the plan calls for is absent."
    GRAPH_DUPLICATE = "GRAPH-DUPLICATE", _E, _GRAPH, "An op is computed more than once."
    GRAPH_UNEXPECTED = "GRAPH-UNEXPECTED", _E, _GRAPH, "Nodes the plan does not call for."
    GRAPH_EXPERT_MISSING = "GRAPH-EXPERT-MISSING", _E, _GRAPH, "A routed expert runs on no rank of an expert-parallel group."
    GRAPH_EXPERT_DUPLICATE = "GRAPH-EXPERT-DUPLICATE", _E, _GRAPH, "Experts run more often than the planned redundant replicas."
    GRAPH_IDLE_RANK = "GRAPH-IDLE-RANK", _E, _GRAPH, "A rank runs no compute op."
    GRAPH_MB_SKIPS_STAGE = "GRAPH-MB-SKIPS-STAGE", _E, _GRAPH, "A micro-batch never passes through a stage of its replica."
    GRAPH_UNMATCHED_SEND = "GRAPH-UNMATCHED-SEND", _E, _GRAPH, "A send with no recv, or with more than one."
    GRAPH_UNMATCHED_RECV = "GRAPH-UNMATCHED-RECV", _E, _GRAPH, "A recv with no send, or with more than one."
    GRAPH_P2P_PEER = "GRAPH-P2P-PEER", _E, _GRAPH, "A send and its recv join ranks the schedule does not pair."
    GRAPH_P2P_BYTES = "GRAPH-P2P-BYTES", _E, _GRAPH, "A send and its recv move different bytes."
    GRAPH_P2P_MB = "GRAPH-P2P-MB", _E, _GRAPH, "A recv's micro-batch or step is not its send's, by the schedule."
    GRAPH_KV_REPLICA = "GRAPH-KV-REPLICA", _E, _GRAPH, "A cache reaches 0 or 2+ decode replicas."
    GRAPH_KV_INCOMPLETE = "GRAPH-KV-INCOMPLETE", _E, _GRAPH, "A decode rank lacks part of a cache."
    GRAPH_KV_BYTES = "GRAPH-KV-BYTES", _E, _GRAPH, "A KV message's bytes are not the model's."
    GRAPH_KV_NODES = "GRAPH-KV-NODES", _E, _GRAPH, "A KV message lacks a kv node, or vice versa."
    GRAPH_KV_ORDER = "GRAPH-KV-ORDER", _E, _GRAPH, "A kv.recv late or a kv.send early."
    GRAPH_COLL_MEMBERS = "GRAPH-COLL-MEMBERS", _E, _GRAPH, "A collective is not joined by exactly its group's members."
    GRAPH_COLL_SIZE = "GRAPH-COLL-SIZE", _E, _GRAPH, "The members of a collective move different bytes."
    GRAPH_COLL_OP = "GRAPH-COLL-OP", _E, _GRAPH, "A collective runs another op, group kind or place than its op calls for."
    GRAPH_COLL_ORDER = "GRAPH-COLL-ORDER", _E, _GRAPH, "The members of a group issue its collectives in different orders."
    # The claims against the estimate and the bounds.
    COST_TTFT = "COST-TTFT", _I, _COST, "The time-to-first-token claim, against the estimate and the prefill bound."
    COST_TPOT = "COST-TPOT", _I, _COST, "The time-per-output-token claim, against the estimate and the decode-step bound."
    COST_THROUGHPUT_GPU = "COST-THROUGHPUT-GPU", _I, _COST, "The tokens/s-per-GPU claim, against the estimate and the FLOP ceiling."
    COST_THROUGHPUT = "COST-THROUGHPUT", _I, _COST, "The total tokens/s claim, against the estimate and the FLOP ceiling."
    COST_MEMORY = "COST-MEMORY", _I, _COST, "The peak-memory claim, against the estimate and the weights floor."
    COST_OOM = "COST-OOM", _E, _COST, "The plan does not fit in GPU memory."
    COST_CONCURRENCY = "COST-CONCURRENCY", _E, _COST, "A serving concurrency whose KV cache does not fit: the largest that does."
    COST_UTILIZATION = "COST-UTILIZATION", _I, _COST, "The GPU-utilisation claim: mean compute busy time over the makespan."
    COST_MFU = "COST-MFU", _I, _COST, "The model-FLOPs-utilisation claim."
    COST_COMM = "COST-COMM", _I, _COST, "The claim on the communication share of the step (critical path)."
    COST_MEMORY_FIGURE = "COST-MEMORY-FIGURE", _I, _COST, "A stated memory figure per GPU, against the estimate within a tolerance."
    COST_CLAIM = "COST-CLAIM", _I, _COST, "An absolute claim of the claims list, on any metric."
    COST_POOL_MEMORY = "COST-POOL-MEMORY", _E, _COST, "A pool cannot hold its weights and caches."
    COST_POOL_SLO = "COST-POOL-SLO", _W, _COST, "A deployment misses its TTFT/TPOT SLO (goodput 0)."
    COST_COMPARE = "COST-COMPARE", _I, _COST, "A claim against an alternative plan, on one metric."

    # fmt: on


_BY_VALUE: dict[str, Code] = {c.value: c for c in Code}
