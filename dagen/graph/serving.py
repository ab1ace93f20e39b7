"""The steady state of a continuously batching server: what one iteration holds.

A serving workload keeps ``C`` requests in flight over the deployment (``C_r = C / dp``
per attention replica). Each request is prefilled in ``k`` iterations (its prompt of
``I`` tokens in chunks of at most the token budget ``B``: ``k = ⌈I / B⌉``, 1 without
chunking), then decodes ``O / a`` iterations, where ``a`` is the tokens one decode step
yields (1, or ``1 + p + … + pⁿ`` with ``n`` draft tokens accepted with probability
``p``). In steady state a request finishes, and a new one starts, every
``(k + O/a) / C_r`` iterations, so one iteration holds

* ``D = C_r · (O/a) / (k + O/a)`` decoding requests, each verifying ``1 + n`` tokens, and
* ``P = C_r · I / (k + O/a)`` prompt tokens of the requests being prefilled,

which the graph prices as one mixed batch of ``D·(1+n) + P`` tokens (vLLM, SGLang and
TensorRT-LLM batch decode tokens and prefill chunks into one forward). The budget must
hold them: ``D·(1+n) + P ≤ B`` when ``B`` is given, else the iteration is as large as
it needs to be. Figures (docs/cost-model.md, "Serving"): TPOT = iteration time / a,
TTFT = k iterations, output tokens/s = ``C · a / (k + O/a)`` per iteration time… over
the deployment, i.e. ``dp · D · a / t``.

Example:
    >>> s = steady_state(concurrency=64, prompt=1024, gen=256, chunk=None, replicas=1)
    >>> round(s.decode_seqs, 2), round(s.prefill_tokens, 1)
    (63.75, 254.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SteadyState", "steady_state"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SteadyState:
    """One iteration of one attention replica (see the module docstring)."""

    requests: float
    """``C_r``: requests in flight on the replica."""
    chunks: float
    """``k``: iterations a prompt's prefill takes (``E[⌈I / B⌉]`` over a distribution)."""
    decode_iters: float
    """``O / a``: iterations a request decodes."""
    decode_seqs: float
    """``D``: requests decoding in one iteration."""
    prefill_tokens: float
    """``P``: prompt tokens prefilled in one iteration."""
    step_tokens: float
    """``a``: output tokens one decode step yields per request."""
    verify: int
    """``1 + n``: tokens each decoding request runs through the model per iteration."""
    context: float
    """Mean keys a decode token attends to: ``I + O/2`` (``E[I] + E[O²]/(2·E[O])``)."""
    chunk_context: float
    """Mean keys a prefill token attends to: half its prompt, ``I / 2``
    (``E[I²]/(2·E[I])``: a longer prompt has more tokens)."""

    @property
    def tokens(self) -> float:
        """Tokens of the iteration's batch: ``D·(1+n) + P``."""
        return self.decode_seqs * self.verify + self.prefill_tokens


def steady_state(
    *,
    concurrency: float,
    prompt: float,
    gen: float,
    chunk: int | None,
    replicas: int,
    draft: int = 0,
    step_tokens: float = 1.0,
    prompt_sq: float | None = None,
    gen_sq: float | None = None,
    chunks: float | None = None,
) -> SteadyState:
    """The iteration of one replica of ``replicas`` (the module docstring's figures).

    ``prompt`` and ``gen`` are the mean lengths; over a distribution ``prompt_sq`` and
    ``gen_sq`` are ``E[I²]`` and ``E[O²]`` and ``chunks`` is ``E[⌈I / B⌉]`` (by default
    those of fixed lengths). Requests spend ``k + O/a`` iterations in flight, so the
    shares are ratios of expectations (renewal-reward): ``D = C_r·E[O/a]/E[k + O/a]``.
    """
    requests = concurrency / replicas
    if chunks is None:
        chunks = max(1, math.ceil(prompt / chunk)) if chunk else 1
    decode_iters = max(gen, 1) / step_tokens
    life = chunks + decode_iters
    psq = prompt * prompt if prompt_sq is None else prompt_sq
    gsq = gen * gen if gen_sq is None else gen_sq
    return SteadyState(
        requests=requests, chunks=chunks, decode_iters=decode_iters,
        decode_seqs=requests * decode_iters / life, prefill_tokens=requests * prompt / life,
        step_tokens=step_tokens, verify=1 + draft,
        context=prompt + (gsq / (2 * gen) if gen > 0 else 0.0),
        chunk_context=psq / (2 * prompt),
    )  # fmt: skip
