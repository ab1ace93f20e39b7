"""Figures of a disaggregated deployment: each pool's latency and rate, the KV transfer
per request, how many prefill units a decode unit needs, and goodput under SLOs.

From the estimate of the deployment's graph (one unit of each pool and the transfers
between them; docs/disaggregation.md has every formula):

- prefill: TTFT = its makespan without the transfer; input rate ``P`` = prompt tokens of
  its batch / TTFT per unit;
- decode: TPOT = its makespan from the first decode op / (steps · tokens per step); output
  rate ``D`` = sequences · tokens per step / TPOT per unit;
- transfer per request: from the first of its messages' ``kv.send`` start to the last one's
  end, in the simulated schedule (priced on the inter-node link with its latency);
- rate match: requests/s a prefill unit admits ``λp = P / prompt_len`` against the
  requests/s a decode unit retires ``λd = D / gen_len``; the balancing ratio of prefill to
  decode units is ``λd / λp``; the deployment's request rate is ``min(units_p · λp,
  units_d · λd)`` and the other pool idles in proportion;
- goodput: that request rate when TTFT ≤ the SLO and TPOT ≤ the SLO, else 0 (the
  estimate is one deterministic schedule: every request meets an SLO or none does).

Example:
    >>> d = disagg_figures(graph, est, ttft_slo_s=2.0, tpot_slo_ms=50)  # doctest: +SKIP
    >>> d.units_ratio  # prefill units per decode unit  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dagen.cost.estimator import Estimate
from dagen.graph.ir import Graph, Op
from dagen.graph.lookup import transfer_rows

__all__ = ["Disagg", "PoolRate", "disagg_figures"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolRate:
    """One pool of the deployment: one unit's latency and rate, and how many units run."""

    name: str
    phase: str
    units: int
    gpus_per_unit: int
    latency_s: float
    """Prefill: TTFT; decode: TPOT."""
    tokens_per_s: float
    """Per unit: prompt tokens (prefill) or output tokens (decode) per second."""
    requests_per_s: float
    """Per unit: λp = P / prompt_len or λd = D / gen_len."""
    gpus_per_node: int

    @property
    def tokens_per_s_per_node(self) -> float:
        return self.tokens_per_s / self.gpus_per_unit * self.gpus_per_node


@dataclass(frozen=True, slots=True, kw_only=True)
class Disagg:
    """The deployment's figures (see the module docstring)."""

    prefill: PoolRate
    decode: PoolRate
    transfer_s: float
    """Mean over requests of one request's KV transfer time."""
    transfer_max_s: float
    transfer_bytes_per_request: float
    units_ratio: float
    """λd / λp: prefill units that keep one decode unit busy."""
    requests_per_s: float
    bottleneck: str
    """The pool whose units set the deployment's rate (``prefill`` or ``decode``)."""
    gpus: int
    output_tokens_per_s: float
    input_tokens_per_s: float
    tokens_per_s_per_gpu: float
    """Output tokens per second per GPU of the whole deployment."""
    ttft_s: float
    """Prefill's TTFT (the first token comes out of prefill)."""
    second_token_s: float
    """TTFT + the request's transfer + one TPOT: when decode's first token is out."""
    tpot_s: float
    goodput_requests_per_s: float
    slo_note: str


def _rate(graph: Graph, est: Estimate, p: int) -> PoolRate:
    pool, fig = graph.pools[p], est.pools[p]
    w = pool.workload
    if w.decoding:
        latency = float(fig.tpot_s or 0.0)
        tokens = fig.tokens_per_s
        reqs = tokens / w.gen_len
    else:
        latency = float(fig.ttft_s or 0.0)
        tokens = fig.tokens_per_s
        reqs = tokens / w.prompt_len
    return PoolRate(
        name=pool.name, phase="decode" if w.decoding else "prefill", units=pool.units, gpus_per_unit=pool.world,
        latency_s=latency, tokens_per_s=tokens, requests_per_s=reqs,
        gpus_per_node=pool.hardware.gpus_per_node,
    )  # fmt: skip


def _transfer(graph: Graph, est: Estimate) -> tuple[float, float, float]:
    """(mean, max transfer seconds per request, bytes per request)."""
    tr = graph.transfers
    assert tr is not None
    sends = np.flatnonzero(graph.op == Op.KV_SEND)
    rows = transfer_rows(graph, sends, True)
    ok = rows >= 0
    r, node = rows[ok], sends[ok]
    cnt = (tr.req1[r] - tr.req0[r]).astype(np.int64)
    offs = np.repeat(np.r_[0, np.cumsum(cnt)][:-1], cnt)
    q = np.repeat(tr.req0[r].astype(np.int64), cnt) + np.arange(int(cnt.sum())) - offs
    start = np.full(tr.requests, np.inf)
    end = np.zeros(tr.requests)
    per = np.zeros(tr.requests)
    np.minimum.at(start, q, np.repeat(est.start_s[node], cnt))
    np.maximum.at(end, q, np.repeat(est.start_s[node] + est.duration_s[node], cnt))
    np.add.at(per, q, np.repeat(tr.nbytes[r] / np.maximum(cnt, 1), cnt))
    span = np.where(np.isfinite(start), end - start, 0.0)
    return float(span.mean()), float(span.max()), float(per.mean())


def disagg_figures(
    graph: Graph,
    est: Estimate,
    *,
    ttft_slo_s: float | None = None,
    tpot_slo_ms: float | None = None,
) -> Disagg:
    """The figures of a disaggregated deployment's graph and its estimate."""
    tr = graph.transfers
    if tr is None:
        raise ValueError("disagg_figures: the graph has no KV transfers")
    pre, dec = _rate(graph, est, tr.prefill), _rate(graph, est, tr.decode)
    mean, worst, nbytes = _transfer(graph, est)
    lam_p, lam_d = pre.units * pre.requests_per_s, dec.units * dec.requests_per_s
    rate = min(lam_p, lam_d)
    w = graph.pools[tr.decode].workload
    gpus = pre.units * pre.gpus_per_unit + dec.units * dec.gpus_per_unit
    ttft, tpot = pre.latency_s, dec.latency_s
    fails = []
    if ttft_slo_s is not None and ttft > ttft_slo_s:
        fails.append(f"TTFT {ttft:.4g} s > {ttft_slo_s:g} s")
    if tpot_slo_ms is not None and tpot * 1e3 > tpot_slo_ms:
        fails.append(f"TPOT {tpot * 1e3:.4g} ms > {tpot_slo_ms:g} ms")
    note = (
        "every request meets the SLOs"
        if not fails
        else "no request meets the SLOs: " + "; ".join(fails)
    )
    return Disagg(
        prefill=pre, decode=dec, transfer_s=mean, transfer_max_s=worst,
        transfer_bytes_per_request=nbytes,
        units_ratio=dec.requests_per_s / pre.requests_per_s if pre.requests_per_s else float("inf"),
        requests_per_s=rate, bottleneck="prefill" if lam_p < lam_d else "decode", gpus=gpus,
        output_tokens_per_s=rate * w.gen_len, input_tokens_per_s=rate * w.prompt_len,
        tokens_per_s_per_gpu=rate * w.gen_len / gpus, ttft_s=ttft,
        second_token_s=ttft + mean + tpot, tpot_s=tpot,
        goodput_requests_per_s=0.0 if fails else rate, slo_note=note,
    )  # fmt: skip
