"""Read a model's dimensions from a local Hugging Face ``config.json``.

``model.hf_config`` in a plan names such a file (relative to the plan's directory);
it is read, never downloaded. :func:`read_hf_config` maps its keys onto
:class:`~dagen.plan.model.Model` fields; fields written in the plan's ``model``
block override the file's. The mapping by ``model_type`` (see
``docs/plan-format.md`` for the table; key meanings follow the configuration
classes in huggingface/transformers ``src/transformers/models/*/configuration_*.py``):

* ``llama``, ``mistral``, ``qwen2``, ``qwen3`` (dense): ``num_hidden_layers`` →
  layers, ``hidden_size``, ``num_attention_heads`` → heads, ``num_key_value_heads``
  → kv_heads, ``head_dim``, ``intermediate_size`` → ffn_size, ``vocab_size``,
  ``tie_word_embeddings`` → tied_embeddings, ``max_position_embeddings``, ``torch_dtype`` (or ``dtype``) → dtype;
* ``mixtral``: also ``num_local_experts`` → moe.experts, ``num_experts_per_tok`` →
  moe.top_k, and ``intermediate_size`` is each expert's FFN;
* ``qwen3_moe``, ``qwen2_moe``: ``num_experts``, ``num_experts_per_tok``,
  ``moe_intermediate_size`` → moe.expert_ffn_size, ``decoder_sparse_step`` →
  moe.moe_layer_freq, ``mlp_only_layers`` (a prefix 0…k-1) → moe.first_dense_layers,
  and for qwen2_moe ``shared_expert_intermediate_size`` → one shared expert;
* ``deepseek_v3``, ``deepseek_v2``: ``n_routed_experts``, ``num_experts_per_tok``,
  ``moe_intermediate_size``, ``n_shared_experts`` → moe.shared_experts (each of
  ``moe_intermediate_size``), ``first_k_dense_replace`` → moe.first_dense_layers,
  ``moe_layer_freq`` (1 only), and MLA's ``q_lora_rank``, ``kv_lora_rank``,
  ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``; a
  ``quantization_config`` with ``quant_method: fp8`` makes the dtype fp8.

Example:
    >>> from pathlib import Path
    >>> hf = read_hf_config(Path("tests/data/hf/mixtral-8x7b.json"))  # doctest: +SKIP
    >>> hf.values["moe"]["experts"], hf.origins["moe.experts"]  # doctest: +SKIP
    (8, 'num_local_experts')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagen.plan.files import Refused, read_limited

__all__ = ["FAMILIES", "HfModel", "read_hf_config"]

_MAX_BYTES = 1 << 20
_MAX_DEPTH = 64
"""JSON nesting reported as too deep (a config.json nests two or three levels)."""

_COMMON = {
    "layers": "num_hidden_layers",
    "hidden_size": "hidden_size",
    "heads": "num_attention_heads",
    "ffn_size": "intermediate_size",
    "vocab_size": "vocab_size",
}
_OPTIONAL = {
    "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "tied_embeddings": "tie_word_embeddings",
    "max_position_embeddings": "max_position_embeddings",
}
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float8_e4m3fn": "fp8"}
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}


@dataclass(slots=True)
class HfModel:
    """Model field values read from a config, with the config key each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    """Model field → value; ``moe`` and ``mla`` are nested dicts."""
    origins: dict[str, str] = field(default_factory=dict)
    """Dotted model field (``moe.experts``) → config key (``num_local_experts``)."""
    issues: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Dotted model field (``""`` for the whole file) → (what is wrong, how to fix)."""

    def take(self, cfg: dict[str, Any], target: str, key: str, *, required: bool = True) -> None:
        """Copy ``cfg[key]`` to the dotted model field ``target``."""
        if key not in cfg or cfg[key] is None:
            if required:
                msg = f"the config has no '{key}'"
                self.issues[target] = (msg, f"add '{key}' to the config or set model.{target}")
            return
        self.put(target, cfg[key], key)

    def put(self, target: str, value: Any, key: str) -> None:
        """Set the dotted model field ``target`` to ``value``, read from ``key``."""
        head, _, leaf = target.rpartition(".")
        box = self.values.setdefault(head, {}) if head else self.values
        box[leaf] = value
        self.origins[target] = key


def _common(cfg: dict[str, Any], hf: HfModel) -> None:
    for target, key in _COMMON.items():
        hf.take(cfg, target, key)
    for target, key in _OPTIONAL.items():
        hf.take(cfg, target, key, required=False)
    dtype_key = "torch_dtype" if "torch_dtype" in cfg else "dtype"
    raw = cfg.get(dtype_key)
    if isinstance(raw, str) and raw in _DTYPES:
        hf.put("dtype", _DTYPES[raw], dtype_key)
    elif raw is not None:
        msg = f"'{dtype_key}' is {raw!r}, which dagen does not know"
        hf.issues["dtype"] = (
            msg,
            f"set model.dtype to one of {', '.join(sorted(_DTYPES.values()))}",
        )


def _dense(cfg: dict[str, Any], hf: HfModel) -> None:
    _common(cfg, hf)


def _mixtral(cfg: dict[str, Any], hf: HfModel) -> None:
    _common(cfg, hf)
    hf.take(cfg, "moe.experts", "num_local_experts")
    hf.take(cfg, "moe.top_k", "num_experts_per_tok")
    hf.take(cfg, "moe.expert_ffn_size", "intermediate_size")


def _dense_prefix(cfg: dict[str, Any], hf: HfModel) -> None:
    layers = cfg.get("mlp_only_layers") or []
    if not isinstance(layers, list) or layers != list(range(len(layers))):
        msg = (
            f"'mlp_only_layers' is {layers!r}; dagen represents only a prefix 0…k-1 of dense layers"
        )
        hf.issues["moe.first_dense_layers"] = (msg, "set model.moe.first_dense_layers by hand")
        return
    if layers:
        hf.put("moe.first_dense_layers", len(layers), "mlp_only_layers")


def _qwen_moe(cfg: dict[str, Any], hf: HfModel) -> None:
    _common(cfg, hf)
    hf.take(cfg, "moe.experts", "num_experts")
    hf.take(cfg, "moe.top_k", "num_experts_per_tok")
    hf.take(cfg, "moe.expert_ffn_size", "moe_intermediate_size")
    hf.take(cfg, "moe.moe_layer_freq", "decoder_sparse_step", required=False)
    _dense_prefix(cfg, hf)
    if cfg.get("shared_expert_intermediate_size"):
        hf.put("moe.shared_experts", 1, "shared_expert_intermediate_size")
        hf.take(cfg, "moe.shared_expert_ffn_size", "shared_expert_intermediate_size")


def _deepseek(cfg: dict[str, Any], hf: HfModel) -> None:
    _common(cfg, hf)
    hf.take(cfg, "moe.experts", "n_routed_experts")
    hf.take(cfg, "moe.top_k", "num_experts_per_tok")
    hf.take(cfg, "moe.expert_ffn_size", "moe_intermediate_size")
    hf.take(cfg, "moe.shared_experts", "n_shared_experts", required=False)
    hf.take(cfg, "moe.first_dense_layers", "first_k_dense_replace", required=False)
    freq = cfg.get("moe_layer_freq", 1)
    if freq != 1:  # DeepSeek counts MoE layers as layer % freq == 0, dagen (layer+1) % freq
        msg = f"'moe_layer_freq' is {freq!r}; dagen reads DeepSeek configs with 1 only"
        hf.issues["moe.moe_layer_freq"] = (msg, "set model.moe.moe_layer_freq by hand")
    for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        hf.take(cfg, f"mla.{key}", key)
    hf.put("mla.q_lora_rank", cfg.get("q_lora_rank") or 0, "q_lora_rank")
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) and quant.get("quant_method") == "fp8":
        hf.put("dtype", "fp8", "quantization_config.quant_method")


FAMILIES: dict[str, Callable[[dict[str, Any], HfModel], None]] = {
    "llama": _dense,
    "mistral": _dense,
    "qwen2": _dense,
    "qwen3": _dense,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
}
"""``model_type`` → mapper."""


def _model_type(cfg: dict[str, Any]) -> str | None:
    kind = cfg.get("model_type")
    if isinstance(kind, str) and kind in FAMILIES:
        return kind
    archs = cfg.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return _ARCHITECTURES.get(archs[0])
    return None


def _read_json(path: Path) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    where = "download it yourself (dagen never downloads) and give its path relative to the plan"
    try:
        data = json.loads(read_limited(path, _MAX_BYTES).decode("utf-8"))
    except Refused as exc:
        if exc.size is not None:
            return None, (f"{path} is {exc.size:,} bytes; a config.json is a few KB", where)
        return None, (exc.reason, exc.fix)
    except FileNotFoundError:
        return None, (f"no file {path}", where)
    except (OSError, UnicodeDecodeError) as exc:
        return None, (f"cannot read {path}: {exc}", "check the path and its permissions")
    except json.JSONDecodeError as exc:
        msg = f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return None, (msg, "give the model's config.json as published")
    except RecursionError:
        line, col = _too_deep_at(path)
        msg = f"{path} nests JSON more than {_MAX_DEPTH} levels deep at line {line} column {col}"
        return None, (msg, "give the model's config.json as published (a few levels deep)")
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        return None, (
            f"{path} holds a value dagen cannot read: {exc}",
            "give the model's config.json as published",
        )
    if not isinstance(data, dict):
        return None, (f"{path} holds a JSON {type(data).__name__}, not an object", where)
    return data, None


def _too_deep_at(path: Path) -> tuple[int, int]:
    """Line and column where the JSON at ``path`` first nests past :data:`_MAX_DEPTH`."""
    text = read_limited(path, _MAX_BYTES).decode("utf-8", errors="replace")
    depth, quoted, escaped, line, col = 0, False, False, 1, 0
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif quoted:
            escaped, quoted = (not escaped and ch == "\\"), quoted and (escaped or ch != '"')
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return line, col
        elif ch in "]}":
            depth -= 1
    return line, col


def read_hf_config(path: Path) -> HfModel:
    """Map the Hugging Face config at ``path`` onto model fields.

    Never raises for a bad file: what is wrong is in :attr:`HfModel.issues`
    (key ``""`` when nothing could be read).
    """
    hf = HfModel()
    cfg, issue = _read_json(path)
    if cfg is None:
        hf.issues[""] = issue or ("unreadable", "")
        return hf
    kind = _model_type(cfg)
    if kind is None:
        found = cfg.get("model_type", cfg.get("architectures"))
        msg = f"model_type {found!r} is not one dagen maps"
        fix = f"use one of {', '.join(FAMILIES)}, or write the model's fields in the plan"
        hf.issues[""] = (msg, fix)
        return hf
    FAMILIES[kind](cfg, hf)
    name = cfg.get("_name_or_path")
    if isinstance(name, str) and name:
        hf.put("name", name, "_name_or_path")
    else:
        hf.put("name", path.parent.name if path.stem == "config" else path.stem, "(file name)")
    return hf
