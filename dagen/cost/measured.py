"""The ``measured`` and ``auto`` cost models: kernel times from aiconfigurator-core.

Matmul and attention nodes are priced from NVIDIA aiconfigurator-core's measured
tables (:mod:`dagen.cost.kernels`) for the pool's GPU and the chosen backend; every
other node, and every node whose shape or format the tables do not cover, keeps the
roofline's time (:mod:`dagen.cost.roofline`). :meth:`Measured.node_sources` says which
priced each node, so the estimate reports the measured share.

A matmul node's shape is read off its template: ``m`` rows and ``n`` columns of its
output, ``k = FLOPs / (2·m·n)`` (a gated FFN or an expert is one GEMM of the same FLOPs
and weights). Decode attention is a generation-attention call of the rank's sequences,
context and heads; prefill attention a context-attention call. ``measured`` prices only
shapes inside the tables' grid; ``auto`` also takes their extrapolation.

Example:
    >>> from dagen.cost.measured import Measured
    >>> Measured(auto=True).name
    'auto'
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from dagen.cost.kernels import SYSTEMS, KernelTables, available
from dagen.cost.kernels_grid import Coverage
from dagen.cost.roofline import Roofline
from dagen.graph.codes import Engine
from dagen.graph.ir import Graph
from dagen.graph.ops import OP_ENGINE
from dagen.graph.pool import Pool

__all__ = ["SOURCES", "Measured"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

SOURCES = ("roofline", "measured")
"""Labels of the codes :meth:`Measured.node_sources` returns."""

_GEMM_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block",
               "nvfp4": "nvfp4"}  # fmt: skip


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

    def _templates(self, graph: Graph, pool: Pool, tmpls: npt.NDArray[np.int64]) -> F64:
        """Seconds per template of the pool (NaN where the tables do not price it)."""
        tables = self._load(pool)
        out = np.full(len(graph.tmpl_shape), np.nan)
        if tables is None:
            return out
        d, f = pool.dims, pool.formats
        ops = np.zeros(len(graph.tmpl_shape), dtype=np.int64)
        ops[graph.tmpl[pool.node0 : pool.node1]] = graph.op[pool.node0 : pool.node1]
        engine = OP_ENGINE[ops]
        gemm = tmpls[engine[tmpls] == Engine.GEMM]
        dtype = _GEMM_DTYPE.get(f.weights.value)
        if gemm.size and dtype is not None:
            m = np.array([max(graph.tmpl_shape[t][0], 1) for t in gemm], dtype=np.float64)
            n = np.array([graph.tmpl_shape[t][-1] for t in gemm], dtype=np.float64)
            k = graph.tmpl_flops[gemm] / np.maximum(2 * m * n, 1)
            out[gemm] = self._ask(tables.gemm, m, n, np.maximum(k, 1), dtype)
        attn = tmpls[engine[tmpls] == Engine.ATTENTION]
        if attn.size and d.mla is None and not d.pf_tokens:
            kv = "fp8" if f.kv_cache.nbytes <= 1 else "bfloat16"
            if d.prefill:
                sec = self._ask(tables.context_attention, d.seqs, d.prompt // d.cp,
                                d.heads, d.kv_heads, d.head_dim, "bfloat16", kv)  # fmt: skip
            else:
                ctx = d.pairs / max(d.seqs, 1)
                sec = self._ask(tables.generation_attention, d.seqs, ctx, d.heads,
                                d.kv_heads, d.head_dim, "bfloat16", kv)  # fmt: skip
            out[attn] = sec
        return out

    def _ask(self, fn: object, *args: object) -> F64:
        cov = np.zeros(
            np.broadcast(*[np.asarray(a) for a in args if not isinstance(a, str)]).shape,
            dtype=np.int8,
        )
        sec = np.asarray(fn(*args, coverage=cov), dtype=np.float64)  # type: ignore[operator]
        worst = Coverage.EXTRAPOLATED if self.auto else Coverage.MEASURED
        return np.where(cov <= worst, sec, np.nan)

    def _priced(self, graph: Graph) -> tuple[F64, U8]:
        if self._last is not None and self._last[0] is graph:
            return self._last[1], self._last[2]
        seconds = np.asarray(self.fallback.node_seconds(graph), dtype=np.float64).copy()
        source = np.zeros(graph.n_nodes, dtype=np.uint8)
        for p, pool in enumerate(graph.pools):
            at = graph.node_slice(p)
            tmpl = graph.tmpl[at].astype(np.int64)
            table = self._templates(graph, pool, np.unique(tmpl))
            given = table[tmpl]
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
