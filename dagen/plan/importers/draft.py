"""A plan being imported: values traced to flags, the model's facts, the YAML text.

An importer turns :class:`~dagen.plan.importers.flags.Given` into a :class:`Draft`: the
``parallel``, ``workload`` and ``runtime`` values, each a :class:`Traced` that names the
flags it came from. :func:`render` writes the plan YAML with that origin as a
``# flag: …`` comment after every value; the loader reads those comments back
(:func:`dagen.plan.loader.flag_comments`), so findings on the file point at the flag.

Example:
    >>> print(render_section("parallel", {"tp": Traced(4, "-tp 4")}), end="")
    parallel:
      tp: 4  # flag: -tp 4
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagen.errors import FlagError
from dagen.plan.hf import read_hf_config
from dagen.plan.importers.flags import Flag, Given
from dagen.plan.presets import PRESETS

__all__ = [
    "WORKLOAD_FLAGS",
    "Draft",
    "Facts",
    "Traced",
    "model_facts",
    "render",
    "render_section",
    "workload_sections",
]


@dataclass(frozen=True, slots=True)
class Traced:
    """A plan value and the flags it came from."""

    value: Any
    origin: str


@dataclass(slots=True, kw_only=True)
class Draft:
    """What an importer made of the flags: plan sections of traced values."""

    hardware: Traced
    """The hardware preset."""
    parallel: dict[str, Traced] = field(default_factory=dict)
    workload: dict[str, Traced] = field(default_factory=dict)
    runtime: dict[str, Traced] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Header lines: how the framework's degrees were read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the framework rules need to know of the model (from its config.json)."""

    heads: int
    kv_heads: int
    layers: int
    experts: int
    """Routed experts per MoE layer; 0 for a dense model."""
    expert_ffn: int
    """One routed expert's intermediate size; 0 for a dense model."""

    @property
    def moe(self) -> bool:
        return self.experts > 0


def model_facts(path: Path) -> Facts:
    """The model's heads, layers and experts, read from the HF ``config.json`` at ``path``.

    Raises:
        FlagError: on ``--model-config``, when the file cannot be read as a model.
    """
    hf = read_hf_config(path)
    problem = hf.issues.get("") or next(
        (hf.issues[k] for k in ("heads", "layers", "moe.experts") if k in hf.issues), None
    )
    if problem is not None:
        raise FlagError(f"--model-config {path}: {problem[0]}. Fix: {problem[1]}.")
    v = hf.values
    moe = v.get("moe") or {}
    return Facts(
        heads=int(v["heads"]),
        kv_heads=int(v.get("kv_heads") or v["heads"]),
        layers=int(v["layers"]),
        experts=int(moe.get("experts", 0)),
        expert_ffn=int(moe.get("expert_ffn_size", 0)),
    )


WORKLOAD_FLAGS: tuple[Flag, ...] = (
    Flag(names=("--hardware",), default="H100-SXM-80GB", choices=tuple(PRESETS)),
    Flag(names=("--phase",), default="prefill", choices=("prefill", "decode")),
    Flag(names=("--batch",), default=None),
    Flag(names=("--prompt-len",), default=1024),
    Flag(names=("--gen-len",), default=1),
    Flag(names=("--micro-batches",), default=1),
)
"""dagen's own flags, the same for every framework: what the plan serves, and on what.
A framework flag that says the same (Megatron's ``--seq-length``) may stand in for one."""


def workload_sections(given: Given, dp: int) -> tuple[dict[str, Traced], Traced]:
    """The workload section and the hardware preset from :data:`WORKLOAD_FLAGS`.

    The default batch is 8 sequences per attention data-parallel replica (``dp``).
    """
    batch = Traced(given["batch"], given.origin("batch"))
    if given["batch"] is None:
        batch = Traced(8 * dp, f"--batch (default 8 per DP replica · {dp})")
    workload = {
        "phase": Traced(given["phase"], given.origin("phase")),
        "batch": batch,
        "prompt_len": Traced(given["prompt_len"], given.origin("prompt_len")),
        "gen_len": Traced(given["gen_len"], given.origin("gen_len")),
        "micro_batches": Traced(given["micro_batches"], given.origin("micro_batches")),
    }
    return workload, Traced(given["hardware"], given.origin("hardware"))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _line(indent: str, key: str, t: Traced) -> str:
    text = f"{indent}{key}: {_scalar(t.value)}"
    return f"{text}  # flag: {t.origin}\n" if t.origin else text + "\n"


def render_section(name: str, values: Mapping[str, Traced]) -> str:
    """One plan section, a traced value a line."""
    return f"{name}:\n" + "".join(_line("  ", k, t) for k, t in values.items())


def render(
    *,
    command: str,
    name: Traced,
    model_config: Traced,
    draft: Draft,
) -> str:
    """The plan YAML of an import: a header, then every section, every value traced."""
    head = [
        f"# Imported by `{command}`.",
        "# Every value names the flag it came from (`# flag: ...`); dagen's findings on",
        "# this plan point at that flag. See docs/import.md.",
        *(f"# {n}" for n in draft.notes),
    ]
    parts = [
        "\n".join(head) + "\n",
        _line("", "name", name),
        render_section("model", {"hf_config": model_config}),
        render_section("parallel", draft.parallel),
        render_section("workload", draft.workload),
        render_section("hardware", {"preset": draft.hardware}),
    ]
    if draft.runtime:
        parts.append(render_section("runtime", draft.runtime))
    return "".join(parts)
