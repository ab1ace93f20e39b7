"""Which decode ranks receive which part of which prefill rank's KV cache.

A request's cache is written by the prefill ranks of the attention replica that ran it:
each pipeline stage holds its layers, each tensor-parallel rank its KV heads. It must
reach the decode ranks of the one decode replica that will generate for it, each of
which holds its own stage's layers and its own TP rank's heads. When TP, PP or the
attention-DP width differ between the pools the cache is *re-sharded* on the way: one
message per (prefill rank, decode rank, prefill micro-batch, run of requests), each
carrying the layers and head units both ranks share.

NOTE: the arithmetic, on ``tests/data/plans/tiny_disagg.yaml`` (4 layers, 2 KV heads):

======================  =====================  =============================
pool                    layout                 a rank holds
======================  =====================  =============================
prefill                 TP2 · PP2 · DP1        2 layers, 1 KV head
decode                  TP1 · PP1 · DP4        4 layers, 2 KV heads
======================  =====================  =============================

Requests are numbered over the prefill batch, ``q = (mb · dp_p + replica) · S + s``
(``S`` sequences per replica and micro-batch) and dealt to decode replicas in blocks,
``j = ⌊q · dp_d / Q⌋`` (``Q`` requests in all), so each request has exactly one. A
decode rank's head ``h`` comes from one prefill TP rank that holds it; when several do
(MLA's latent is replicated over TP, as are KV heads when tp > kv_heads) decode TP rank
``b`` takes it from the ``b mod n``-th of the ``n`` holders, spreading the load.

The head *unit* is one KV head (its K and V: ``2 · head_dim`` elements per token and
layer) for MHA/GQA, and the whole MLA latent (``kv_lora_rank + qk_rope_head_dim``) for
MLA; a message's bytes are requests × prompt tokens × layers × units × unit bytes, in
the KV-cache format.

Example:
    >>> tr = transfers(prefill_pool, decode_pool, model)  # doctest: +SKIP
    >>> int(tr.nbytes.sum()) == tr.requests * tr.tokens * model.layers * tr.heads * tr.unit_bytes  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.errors import PlanInfeasible
from dagen.graph.pool import Pool
from dagen.plan.model import Model

__all__ = ["Transfers", "head_sets", "kv_units", "rank_grid", "transfers"]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfers:
    """Every KV-cache message between a prefill pool and a decode pool, one row each,
    sorted by (src, mb, dst, layer0, head0); ranks are global."""

    prefill: int
    """Index of the prefill pool in ``Graph.pools``."""
    decode: int
    requests: int
    """Q: requests of the prefill batch (one graph's worth)."""
    tokens: int
    """Prompt tokens per request."""
    layers: int
    heads: int
    """Head units H (KV heads; 1 for the MLA latent)."""
    unit_bytes: float
    """Bytes of one head unit of one token and layer."""
    src: I32
    dst: I32
    mb: I32
    """The prefill micro-batch that produced the cache."""
    replica: I32
    """The decode replica (pool-local) the requests go to."""
    req0: I32
    req1: I32
    layer0: I32
    layer1: I32
    head0: I32
    head1: I32
    nbytes: I64

    @property
    def size(self) -> int:
        return int(self.src.shape[0])


def kv_units(model: Model, ekv: float) -> tuple[int, float]:
    """(head units, bytes of one unit per token and layer) of ``model``'s KV cache.

    >>> from dagen.plan.model import Mla, Model
    >>> m = Model(name="m", layers=2, hidden_size=64, heads=4, kv_heads=2, head_dim=16,
    ...           ffn_size=64, vocab_size=8)
    >>> kv_units(m, 2.0)
    (2, 64.0)
    """
    if model.mla is not None:
        return 1, float(model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * ekv
    return model.kv_heads, 2.0 * model.head_dim * ekv


def head_sets(units: int, tp: int) -> list[range]:
    """The head units each TP rank holds: a 1/tp slice, or one replicated unit when tp > H.

    >>> head_sets(2, 4), head_sets(4, 2)
    ([range(0, 1), range(0, 1), range(1, 2), range(1, 2)], [range(0, 2), range(2, 4)])
    """
    if units >= tp:
        per = units // tp
        return [range(a * per, (a + 1) * per) for a in range(tp)]
    return [range(a * units // tp, a * units // tp + 1) for a in range(tp)]


def rank_grid(pool: Pool) -> I32:
    """int32 ``[pp, replicas, tp]``: the global rank at each (stage, replica, TP rank)."""
    m = pool.mesh
    if m.sizes["cp"] != 1:
        raise PlanInfeasible(f"pool {pool.name!r}: parallel.cp is {m.sizes['cp']}; a KV-cache "
                             "transfer is modelled without context parallelism. Fix: cp: 1")  # fmt: skip
    pp, tp = m.sizes["pp"], m.sizes["tp"]
    reps = int(m.replica.max()) + 1
    grid = np.full((pp, reps, tp), -1, dtype=np.int32)
    grid[m.stage, m.replica, m.coords["tp"]] = np.arange(m.world, dtype=np.int32) + pool.rank0
    if (grid < 0).any() or pp * reps * tp != m.world:
        raise PlanInfeasible(f"pool {pool.name!r}: its ranks are not one per (stage, replica, "
                             "tp rank); a transfer needs that attention layout")  # fmt: skip
    return grid


def _pieces(src: Pool, dst: Pool, units: int) -> list[tuple[int, ...]]:
    """(decode stage, decode tp, prefill stage, prefill tp, layer0, layer1, head0, head1):
    every piece of one decode replica's cache and the prefill rank it comes from."""
    out: list[tuple[int, ...]] = []
    hp = head_sets(units, src.mesh.sizes["tp"])
    hd = head_sets(units, dst.mesh.sizes["tp"])
    for sd, dl in enumerate(dst.stage_layers):
        for sp, pl in enumerate(src.stage_layers):
            lo, hi = max(dl.start, pl.start), min(dl.stop, pl.stop)
            if lo >= hi:
                continue
            for b, heads in enumerate(hd):
                runs: list[list[int]] = []
                for h in heads:
                    holders = [a for a, s in enumerate(hp) if h in s]
                    a = holders[b % len(holders)]
                    if runs and runs[-1][1] == a and runs[-1][3] == h:
                        runs[-1][3] = h + 1
                    else:
                        runs.append([b, a, h, h + 1])
                out += [(sd, b, sp, a, lo, hi, h0, h1) for b, a, h0, h1 in runs]
    return out


def _segments(src: Pool, dst: Pool) -> tuple[I64, I64, I64, I64, I64, int]:
    """Runs of requests with one (prefill replica, micro-batch, decode replica):
    (replica, mb, decode replica, req0, req1) and Q."""
    dp_p = int(src.mesh.replica.max()) + 1
    dp_d = int(dst.mesh.replica.max()) + 1
    mbs, seqs = src.workload.micro_batches, src.dims.seqs
    q_all = dp_p * mbs * seqs
    q = np.arange(q_all, dtype=np.int64)
    block = q // seqs
    mb, rep = block // dp_p, block % dp_p
    j = q * dp_d // q_all
    key = block * dp_d + j
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stop = np.r_[start[1:], q_all]
    return rep[start], mb[start], j[start], start, stop, q_all


def transfers(src: Pool, dst: Pool, model: Model) -> Transfers:
    """The messages that carry the KV cache of ``src``'s batch to ``dst`` (see the module
    docstring).

    Raises:
        PlanInfeasible: a pool uses context parallelism, or its ranks are not one per
            (stage, replica, TP rank).
    """
    units, unit_bytes = kv_units(model, src.dims.ekv)
    gp, gd = rank_grid(src), rank_grid(dst)
    rep, mb, j, r0, r1, q_all = _segments(src, dst)
    pieces = np.asarray(_pieces(src, dst, units), dtype=np.int64).reshape(-1, 8)
    n_seg, n_pc = rep.shape[0], pieces.shape[0]
    seg = np.repeat(np.arange(n_seg), n_pc)
    pc = np.tile(np.arange(n_pc), n_seg)
    sd, b, sp, a, l0, l1, h0, h1 = (pieces[pc, k] for k in range(8))
    cols = {
        "src": gp[sp, rep[seg], a], "dst": gd[sd, j[seg], b], "mb": mb[seg], "replica": j[seg],
        "req0": r0[seg], "req1": r1[seg], "layer0": l0, "layer1": l1, "head0": h0, "head1": h1,
    }  # fmt: skip
    nbytes = np.rint((cols["req1"] - cols["req0"]) * src.workload.prompt_len * (l1 - l0)
                     * (h1 - h0) * unit_bytes).astype(np.int64)  # fmt: skip
    order = np.lexsort((cols["head0"], cols["layer0"], cols["dst"], cols["mb"], cols["src"]))
    out = {k: np.ascontiguousarray(v[order], dtype=np.int32) for k, v in cols.items()}
    return Transfers(
        prefill=src.index, decode=dst.index, requests=q_all, tokens=src.workload.prompt_len,
        layers=model.layers, heads=units, unit_bytes=unit_bytes, nbytes=nbytes[order], **out,
    )  # fmt: skip
