"""What a deployment serves: the phase, the batch or the serving concurrency, lengths.

:class:`Workload` is the plan's ``workload`` section; :mod:`dagen.graph.serving` turns a
serving one into the steady-state iteration the graph prices.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.plan.fields import spec
from dagen.plan.lengths import Lengths

__all__ = ["Mode", "Phase", "Workload"]

_RECORD = {"frozen": True, "slots": True, "kw_only": True}
F64 = npt.NDArray[np.float64]


def _same(x: F64) -> F64:
    return x


class Phase(enum.StrEnum):
    """Inference phase the graph models."""

    PREFILL = "prefill"
    DECODE = "decode"


class Mode(enum.StrEnum):
    """What the workload models."""

    STATIC = "static"
    """One phase of a fixed batch: a prefill of every prompt, or decode steps."""
    SERVING = "serving"
    """The steady state of a continuously batching server: each iteration decodes one
    token of every running request and prefills a chunk of new prompts."""


@dataclass(**_RECORD)
class Workload:
    """What the deployment serves in the modelled step."""

    mode: Mode = spec(
        "static (one phase of a fixed batch) or serving (continuous batching, steady state).",
        default=Mode.STATIC,
    )
    phase: Phase = spec(
        "prefill (the prompt) or decode (one token per step); serving: decode (derived).",
        default=Phase.PREFILL,
    )
    batch: int = spec(
        "Global batch, in sequences, over all DP replicas; serving: the concurrency.",
        minimum=1,
        maximum=1 << 30,
        derived=True,
    )
    concurrency: int | None = spec(
        "Serving: requests in flight over the whole deployment (a benchmark's max concurrency).",
        default=None,
        minimum=1,
        maximum=1 << 30,
    )
    prompt_len: int = spec(
        "Prompt length; with prompt_dist: its mean, rounded (derived).",
        unit="tokens", minimum=1, maximum=1 << 26, derived=True,
    )  # fmt: skip
    gen_len: int = spec(
        "Tokens generated per sequence; with gen_dist: its mean, rounded (derived).",
        default=1, unit="tokens", minimum=0, maximum=1 << 26,
    )  # fmt: skip
    prompt_dist: Lengths | None = spec(
        "Prompt lengths as a distribution (instead of prompt_len): dist, mean, stdev, min, max.",
        default=None,
    )
    gen_dist: Lengths | None = spec(
        "Output lengths as a distribution (instead of gen_len): dist, mean, stdev, min, max.",
        default=None,
    )
    prefill_chunk: int | None = spec(
        "Serving: chunked-prefill token budget of one iteration (vLLM max_num_batched_tokens, "
        "SGLang chunked_prefill_size, TRT-LLM max_num_tokens); default: one whole prompt.",
        default=None,
        unit="tokens",
        minimum=1,
        maximum=1 << 26,
    )
    speculative_tokens: int = spec(
        "Draft tokens verified per decode step (MTP or speculative decoding); 0: none.",
        default=0,
        minimum=0,
        maximum=64,
    )
    acceptance: float = spec(
        "Probability each draft token is accepted, given the previous one was "
        "(DeepSeek-V3 MTP: 0.85-0.9).",
        default=0.0,
        minimum=0,
        maximum=1,
    )
    expert_balance: float | None = spec(
        "MoE routing as measured on your traffic: mean over max (token, expert) pairs per "
        "expert-parallel rank (SGLang's balancedness); default: balanced routing, whose "
        "busiest rank is only its random fluctuation (docs/cost-model.md).",
        default=None,
        minimum=0.01,
        maximum=1,
    )
    micro_batches: int = spec(
        "Micro-batches per DP replica.", default=1, minimum=1, maximum=1 << 20
    )
    decode_steps: int = spec(
        "Decode steps the graph unrolls (decode only), chained last stage → first.",
        default=1,
        minimum=1,
        maximum=4096,
    )

    @property
    def decoding(self) -> bool:
        """Whether the modelled step is decode (else prefill)."""
        return self.phase is Phase.DECODE

    @property
    def serving(self) -> bool:
        """Whether the workload is a serving steady state."""
        return self.mode is Mode.SERVING

    @property
    def unrolled_steps(self) -> int:
        """Steps the graph unrolls: ``decode_steps`` in decode, 1 in prefill."""
        return self.decode_steps if self.decoding else 1

    def prompt_mean(self, fn: Callable[[F64], F64] = _same) -> float:
        """``E[fn(I)]`` over prompt lengths ``I`` (``prompt_len`` when fixed)."""
        if self.prompt_dist is None:
            return float(fn(np.array([float(self.prompt_len)]))[0])
        return self.prompt_dist.expect(fn)

    def gen_mean(self, fn: Callable[[F64], F64] = _same) -> float:
        """``E[fn(O)]`` over output lengths ``O`` (``gen_len`` when fixed)."""
        if self.gen_dist is None:
            return float(fn(np.array([float(self.gen_len)]))[0])
        return self.gen_dist.expect(fn)

    @property
    def kv_context(self) -> float:
        """Mean tokens of KV cache a sequence holds: static ``E[I] + E[O]`` (the batch at
        its last step); serving ``E[I] + E[O²] / (2·E[O])``, the mean over the requests in
        flight, a request that decodes longer staying longer (``I + O/2`` when fixed)."""
        prompt, gen = self.prompt_mean(), self.gen_mean()
        if not self.serving:
            return prompt + gen
        return prompt + (self.gen_mean(np.square) / (2 * gen) if gen > 0 else 0.0)

    @property
    def tokens_per_step(self) -> float:
        """Tokens each sequence gains per decode step: 1 + a + a² + … + aⁿ for n draft
        tokens accepted with probability a each (a draft counts only if every earlier
        one was accepted)."""
        a = self.acceptance
        return 1.0 + sum(a**i for i in range(1, self.speculative_tokens + 1))
