"""The ``measured`` and ``auto`` cost models: kernel times from aiconfigurator-core.

Matmul, attention (MHA/GQA and DeepSeek's MLA), routed-expert and intra-node collective
nodes are priced from NVIDIA aiconfigurator-core's measured tables
(:mod:`dagen.cost.kernels`) for the pool's GPU and the chosen backend; every other node,
and every node whose shape, format or placement the tables do not cover, keeps the
roofline's time (:mod:`dagen.cost.roofline`) and :attr:`Measured.notes` says what fell
back. :meth:`Measured.node_sources` says which priced each node, so the estimate reports
the measured share.

* **Matmul**: ``m`` rows and ``n`` columns of the output read off the template,
  ``k = FLOPs / (2·m·n)`` (a gated FFN is one GEMM of the same FLOPs and weights).
* **Attention**: decode is a generation-attention call of the rank's sequences, mean
  context and heads; prefill a context-attention call; a serving iteration's prefill
  chunks add one causal context call of the same query-key pairs. MLA uses the MLA
  tables (measured for DeepSeek-V3's latent: ``kv_lora_rank`` 512, RoPE 64, nope 128, v 128).
* **Routed experts** (``moe.expert``, one node per expert slot): the fused-MoE time of
  a rank at the same tokens per expert, ``num_tokens = slot_tokens · experts / top_k``,
  divided over the rank's ``experts / ep`` experts (``moe_tp_size = etp``,
  ``moe_ep_size = ep``); past the measured token counts, under ``auto`` too, the
  roofline's fused layer.
* **Collectives** inside one host: :mod:`dagen.cost.measured_comm`.

``measured`` prices only shapes inside the tables' grid; ``auto`` also takes their
extrapolation: for matmuls and MHA/GQA attention the edge of the grid scaled by the
roofline (:mod:`dagen.cost.trends`), elsewhere the tables' power laws.

Example:
    >>> from dagen.cost.measured import Measured
    >>> Measured(auto=True).name
    'auto'
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt

from dagen.cost.kernels import SYSTEMS, KernelTables, available
from dagen.cost.kernels_grid import Coverage
from dagen.cost.measured_comm import collective_seconds
from dagen.cost.roofline import Roofline
from dagen.cost.trends import attention_trend, gemm_trend
from dagen.graph.codes import Block, Engine, Kind
from dagen.graph.dims import Dims
from dagen.graph.ir import Graph
from dagen.graph.ops import OP_BLOCK, OP_ENGINE, Op
from dagen.graph.pool import Pool
from dagen.plan.formats import DType

__all__ = ["MLA_MEASURED", "SOURCES", "Measured"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

SOURCES = ("roofline", "measured")
"""Labels of the codes :meth:`Measured.node_sources` returns."""

MLA_MEASURED = (512, 64, 128, 128)
"""(kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim) the MLA tables measure
(DeepSeek-V3's latent)."""

_GEMM_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block",
               "nvfp4": "nvfp4"}  # fmt: skip
_MOE_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block",
              "nvfp4": "nvfp4", "mxfp4": "w4a16_mxfp4"}  # fmt: skip


class Measured:
    """Measured kernel times where the tables cover a node, else the roofline's."""

    def __init__(self, backend: str = "trtllm", *, auto: bool = False) -> None:
        self.backend = backend
        self.auto = auto
        self.fallback = Roofline()
        self.notes: list[str] = []
        self._tables: dict[str, KernelTables | None] = {}
        self._last: tuple[Graph, F64, U8] | None = None

    @property
    def name(self) -> str:
        return "auto" if self.auto else "measured"

    def _load(self, pool: Pool) -> KernelTables | None:
        preset = pool.hardware.preset or ""
        if preset not in self._tables:
            tables = None
            if not available():
                self.notes.append(
                    "aiconfigurator-core is not installed: every node priced by the roofline (pip install 'dagen[measured]')"
                )
            elif preset not in SYSTEMS:
                self.notes.append(
                    f"no measured tables for hardware {preset or '(no preset)'!r} (have {', '.join(SYSTEMS)}): pool {pool.name or 0} priced by the roofline"
                )
            else:
                tables = KernelTables.load(preset, self.backend, monotone=True)
            self._tables[preset] = tables
        return self._tables[preset]

    def _note(
        self, tables: KernelTables, what: str, why: str, instead: str = "priced by the roofline"
    ) -> None:
        self.notes.append(f"{what}: {why} in {tables.source}; {instead}")

    def _templates(self, graph: Graph, p: int, tmpls: I64) -> F64:
        """Seconds per template of pool ``p`` (NaN where the tables do not price it)."""
        pool = graph.pools[p]
        tables = self._load(pool)
        out = np.full(len(graph.tmpl_shape), np.nan)
        if tables is None:
            return out
        at = graph.node_slice(p)
        ops = np.zeros(len(graph.tmpl_shape), dtype=np.int64)
        ops[graph.tmpl[at]] = graph.op[at]
        engine = OP_ENGINE[ops]
        experts = tmpls[ops[tmpls] == Op.MOE_EXPERT]
        gemm = tmpls[(engine[tmpls] == Engine.GEMM) & (ops[tmpls] != Op.MOE_EXPERT)]
        in_attn = OP_BLOCK[ops[gemm]] == Block.ATTENTION
        self._gemm(graph, pool, tables, gemm[~in_attn], pool.formats.weights, out)
        self._gemm(graph, pool, tables, gemm[in_attn], pool.formats.attention, out)
        attn = tmpls[engine[tmpls] == Engine.ATTENTION]
        if attn.size:
            out[attn] = self._attention(pool, tables)
        if experts.size:
            out[experts] = self._experts(pool, tables)
        return out

    def _gemm(
        self, graph: Graph, pool: Pool, tables: KernelTables, gemm: I64, weights: DType, out: F64
    ) -> None:
        """Matmul templates ``gemm``, whose weights are in ``weights``."""
        dtype = _GEMM_DTYPE.get(weights.value)
        if not gemm.size:
            return
        if dtype is None:
            self._note(tables, "matmuls", f"no GEMM table for {weights.value}")
            return
        m = np.array([max(graph.tmpl_shape[t][0], 1) for t in gemm], dtype=np.float64)
        n = np.array([graph.tmpl_shape[t][-1] for t in gemm], dtype=np.float64)
        k = graph.tmpl_flops[gemm] / np.maximum(2 * m * n, 1)
        trend = gemm_trend(pool, weights) if self.auto else None
        out[gemm] = self._ask(
            tables, "matmuls", tables.gemm, m, n, np.maximum(k, 1), dtype, trend=trend
        )

    def _attention(self, pool: Pool, tables: KernelTables) -> float:
        """Seconds of the attention core: a context-attention call in prefill, a
        generation call in decode; a serving iteration adds its prefill chunks as one
        causal context call of the same query-key pairs (``s = √(2·pf_pairs)``)."""
        d = pool.dims
        if d.mla is not None:
            a = d.mla
            shape = (a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_head_dim)
            if shape != MLA_MEASURED:
                why = f"latent {shape} is not the measured {MLA_MEASURED}"
                self._note(tables, "MLA attention", why)
                return float("nan")
        if d.prefill:
            return self._attn_call(pool, tables, True, d.seqs, d.prompt // d.cp)
        ctx = (d.pairs - d.pf_pairs) / max(d.seqs, 1)
        sec = self._attn_call(pool, tables, False, d.seqs, ctx)
        if d.pf_pairs:
            sec += self._attn_call(pool, tables, True, 1, math.sqrt(2 * d.pf_pairs))
        return sec

    def _attn_call(
        self, pool: Pool, tables: KernelTables, prefill: bool, batch: float, x: float
    ) -> float:
        d = pool.dims
        kv = "fp8" if pool.formats.kv_cache.nbytes <= 1 else "bfloat16"
        if d.mla is not None:
            mla = tables.mla_context if prefill else tables.mla_generation
            return float(self._ask(tables, "MLA attention", mla, batch, x, d.heads, kv))
        mha = tables.context_attention if prefill else tables.generation_attention
        args = (batch, x, d.heads, d.kv_heads, d.head_dim, "bfloat16", kv)
        trend = attention_trend(pool, prefill=prefill) if self.auto else None
        return float(self._ask(tables, "attention", mha, *args, trend=trend))

    def _experts(self, pool: Pool, tables: KernelTables) -> float:
        d: Dims = pool.dims
        dtype = _MOE_DTYPE.get(pool.formats.weights.value)
        ep, etp = pool.mesh.sizes["ep"], pool.mesh.sizes["etp"]
        if dtype is None or not d.top_k:
            self._note(tables, "moe.expert", f"no MoE table for {pool.formats.weights.value}")
            return float("nan")
        tokens = d.slot_tokens * d.experts / d.top_k
        inter = d.expert_ffn * etp
        what = (f"moe.expert (hidden {d.h}, inter {inter}, top-{d.top_k} of {d.experts}, "
                f"etp {etp}, ep {ep}, {dtype})")  # fmt: skip
        # Outside the grid (auto too) and for a missing slice, the layer is left to the
        # roofline's fused form, not to one GEMM call per slot from the GEMM table (46–73 %
        # off the MoE table at ≥ 8,192 tokens): the tables' skewed routing, carried 20×
        # past their largest token count, made SGLang's EP32 prefill 2× too slow.
        sec = self._ask(tables, what, tables.moe, tokens, d.h, inter, d.experts, d.top_k,
                        etp, ep, dtype, worst=Coverage.MEASURED,
                        instead="priced by the roofline's fused MoE layer")  # fmt: skip
        return float(sec) / max(d.experts / ep, 1.0)

    def _ask(
        self,
        tables: KernelTables,
        what: str,
        fn: object,
        *args: object,
        worst: Coverage | None = None,
        instead: str = "priced by the roofline",
        **kw: object,
    ) -> F64:
        """Seconds of ``fn(*args)``, NaN where coverage is worse than ``worst`` (default:
        extrapolated under auto, measured otherwise), noting what fell back."""
        cov = np.zeros(
            np.broadcast(*[np.asarray(a) for a in args if not isinstance(a, str)]).shape,
            dtype=np.int8,
        )
        sec = np.asarray(fn(*args, coverage=cov, **kw), dtype=np.float64)  # type: ignore[operator]
        if worst is None:
            worst = Coverage.EXTRAPOLATED if self.auto else Coverage.MEASURED
        if (cov == Coverage.MISSING).any():
            self._note(tables, what, "no table rows for its keys", instead)
        elif (cov > worst).any():
            self._note(tables, what, "the shape lies outside the measured grid", instead)
        return np.where(cov <= worst, sec, np.nan)

    def _priced(self, graph: Graph) -> tuple[F64, U8]:
        if self._last is not None and self._last[0] is graph:
            return self._last[1], self._last[2]
        seconds = np.asarray(self.fallback.node_seconds(graph), dtype=np.float64).copy()
        source = np.zeros(graph.n_nodes, dtype=np.uint8)
        for p, pool in enumerate(graph.pools):
            at = graph.node_slice(p)
            tmpl = graph.tmpl[at].astype(np.int64)
            given = self._templates(graph, p, np.unique(tmpl))[tmpl]
            given[graph.kind[at] != Kind.COMPUTE] = np.nan
            tables = self._load(pool)
            if tables is not None:
                comm = collective_seconds(graph, p, tables, auto=self.auto, notes=self.notes)
                given = np.where(np.isfinite(comm), comm, given)
            known = np.isfinite(given)
            seconds[at] = np.where(known, given, seconds[at])
            source[at] = known.astype(np.uint8)
        self._last = (graph, seconds, source)  # held: an id could be reused
        return seconds, source

    def node_seconds(self, graph: Graph) -> F64:
        """Measured seconds where covered, the roofline's elsewhere."""
        return self._priced(graph)[0]

    def node_sources(self, graph: Graph) -> U8:
        """uint8 ``[n_nodes]``: index into :data:`SOURCES` of what priced each node."""
        return self._priced(graph)[1]
