"""Names other tools use for a plan field, mapped to dagen's (for "did you mean")."""

from __future__ import annotations

__all__ = ["ALIASES"]

ALIASES = {
    "num_layers": "layers",
    "num_hidden_layers": "layers",
    "n_layers": "layers",
    "hidden": "hidden_size",
    "d_model": "hidden_size",
    "num_attention_heads": "heads",
    "num_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "num_kv_heads": "kv_heads",
    "intermediate_size": "ffn_size",
    "ffn_hidden_size": "ffn_size",
    "num_experts": "experts",
    "n_routed_experts": "experts",
    "num_local_experts": "experts",
    "num_experts_per_tok": "top_k",
    "moe_intermediate_size": "expert_ffn_size",
    "tensor_parallel": "tp",
    "tensor_parallel_size": "tp",
    "pipeline_parallel": "pp",
    "pipeline_parallel_size": "pp",
    "data_parallel": "dp",
    "data_parallel_size": "dp",
    "expert_parallel": "ep",
    "expert_parallel_size": "ep",
    "ep_size": "ep",
    "context_parallel": "cp",
    "gpus": "world_size",
    "num_gpus": "world_size",
    "seq_len": "prompt_len",
    "batch_size": "batch",
}
"""Names other tools use for a field → dagen's name (for "did you mean")."""
