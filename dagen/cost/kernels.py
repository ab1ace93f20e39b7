"""Measured kernel latencies from NVIDIA aiconfigurator-core's tables, by shape.

:class:`KernelTables` reads one system's tables for one serving backend (TensorRT-LLM,
vLLM or SGLang) from the ``aiconfigurator-core`` package (optional extra
``dagen[measured]``; layout and version choice in :mod:`dagen.cost.kernels_data`) and
answers vectorised queries in seconds: GEMM, context and generation attention, MLA,
fused MoE, NCCL collectives, the backend's custom all-reduce and DeepEP dispatch/combine.

What was measured. The wheel ships the tables, not the collector; its own summary is
"Silicon benchmarks measure isolated kernel time" (``aiconfigurator_core/sdk/backends/
base_backend.py``, ``_prefill_dispatch_overhead_ms``). The collector
(``collector/helper.py`` ``benchmark_with_power`` and ``collector/<backend>/collect_*.py``
in the ai-dynamo/aiconfigurator repository) shows what that means:

- GEMM, attention, MLA, MoE and custom all-reduce: one framework module call
  (e.g. TensorRT-LLM's ``Linear.forward``, which for fp8 includes the dynamic
  activation quantisation) captured in a CUDA graph, warmed up, replayed and timed with
  CUDA events: GPU time per call, all kernels of the call and the gaps between them,
  without CPU launch overhead. GEMM weights cycle through up to five copies so they do
  not sit in L2. MoE times one rank's routing and expert compute for the token
  distribution named (no all-to-all). Tables are in ms.
- NCCL: nccl-tests' out-of-place "time" (``collector/network/collect_nccl.py``): wall
  time per collective over back-to-back eager launches (launch cost included), one node
  of 2–8 GPUs. ``message_size`` counts elements of the nccl-tests size (2-byte ``half``
  or 1-byte ``int8``); :meth:`KernelTables.nccl` takes bytes.
- DeepEP (``collector/wideep/sglang``): DeepEP's intranode benchmarks, in µs; the
  low-latency kernels timed by kernel profile. The tables live under SGLang and serve
  every backend here.

Version: the backend's "current" version from the package's
``systems/query_versions.yaml``, each table from the newest directory at or below it.

Interpolation and extrapolation: :mod:`dagen.cost.kernels_grid` (piecewise power laws
between measured points; clamped below the grid, proportional to the work above it).
Pass an int8 array as ``coverage=`` to any query to receive its :class:`Coverage` codes.

Example (m = 65536 is twice the largest measured m, so it is extrapolated):
    >>> t = KernelTables.load("H100-SXM-80GB")  # doctest: +SKIP
    >>> cover = np.empty(3, dtype=np.int8)
    >>> t.gemm([1, 4096, 65536], 4096, 4096, "fp8", coverage=cover).round(7)  # doctest: +SKIP
    array([1.8500e-05, 1.5070e-04, 2.1828e-03])
    >>> cover  # doctest: +SKIP
    array([0, 0, 1], dtype=int8)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from dagen.cost.kernels_data import (
    NCCL,
    KernelDataError,
    backend_versions,
    current_version,
    nccl_version,
    package_version,
    resolve_table,
    systems,
    systems_root,
    where_table,
)
from dagen.cost.kernels_grid import Coverage, SlicedTable, Trend
from dagen.cost.kernels_specs import (
    CONTEXT_ATTENTION,
    CUSTOM_ALL_REDUCE,
    DEEPEP,
    GEMM,
    GENERATION_ATTENTION,
    MLA_CONTEXT,
    MLA_GENERATION,
    MOE,
    NCCL_DTYPES,
    NCCL_OPS,
    NCCL_TABLE,
    DeepEPMode,
    DeepEPPhase,
    Spec,
    gqa_group,
    load_table,
)
from dagen.graph.codes import Coll

__all__ = [
    "SYSTEMS",
    "Coverage",
    "DeepEPMode",
    "DeepEPPhase",
    "KernelDataError",
    "KernelTables",
    "available",
]

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
Arr = npt.NDArray[np.generic]
Like = npt.ArrayLike

SYSTEMS: Mapping[str, str] = MappingProxyType(
    {"H100-SXM-80GB": "h100_sxm", "H200": "h200_sxm", "A100-80GB": "a100_sxm", "B200": "b200_sxm"}
)
"""dagen hardware preset -> aiconfigurator system directory."""


def available() -> bool:
    """Whether aiconfigurator-core is importable."""
    return importlib.util.find_spec("aiconfigurator_core") is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelTables:
    """One system's measured tables for one backend; every query returns seconds.

    Arguments broadcast against each other (numpy rules); string keys (dtypes) may be
    arrays too. Unmeasured categorical keys give NaN with :attr:`Coverage.MISSING`.
    """

    system: str
    backend: str
    version: str
    source: str
    """e.g. ``aiconfigurator-core 0.12.0 h100_sxm/trtllm/1.3.0rc20``."""
    monotone: bool = False
    """Make latency non-decreasing in every work axis (see :class:`SlicedTable`)."""
    _tables: dict[Spec, SlicedTable] = field(default_factory=dict, init=False, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def load(
        cls,
        system: str,
        backend: str = "trtllm",
        version: str | None = None,
        *,
        monotone: bool = False,
    ) -> KernelTables:
        """The tables of ``system`` (a directory name or a :data:`SYSTEMS` preset).

        ``version`` defaults to the backend's current one; ``monotone`` takes, for every
        shape, the least latency measured at an equal or larger shape.

        Raises:
            KernelDataError: the package, system, backend or version does not exist;
                the message lists those that do.
        """
        system = SYSTEMS.get(system, system)
        if system not in systems():
            raise KernelDataError(
                f"aiconfigurator-core has no measured system {system!r} under {systems_root()}; "
                f"available: {', '.join(systems())} (dagen presets: {dict(SYSTEMS)})"
            )
        versions = {b: v for b, v in backend_versions(system).items() if b != NCCL}
        if backend not in versions:
            raise KernelDataError(
                f"{system} has no tables for backend {backend!r}; available: {', '.join(versions)}"
            )
        version = version or current_version(system, backend)
        if version not in versions[backend]:
            raise KernelDataError(
                f"{system}/{backend} has no version {version!r}; available: {', '.join(versions[backend])}"
            )
        label = f"aiconfigurator-core {package_version()} {system}/{backend}/{version}"
        return cls(system=system, backend=backend, version=version, source=label, monotone=monotone)

    def table_path(self, table: str) -> Path | None:
        """Parquet file a table (e.g. ``gemm_perf``) was read from, once it has been queried."""
        return self._paths.get(table)

    def _table(self, spec: Spec) -> SlicedTable:
        if spec not in self._tables:
            path = self._resolve(spec)
            self._paths[spec.table] = path
            self._tables[spec] = load_table(path, spec, monotone=self.monotone)
        return self._tables[spec]

    def _resolve(self, spec: Spec) -> Path:
        if spec is NCCL_TABLE:
            path = resolve_table(self.system, NCCL, nccl_version(self.system), spec.table)
        else:
            path = resolve_table(self.system, self.backend, self.version, spec.table)
        if path is None and spec.donor is not None and spec.donor in backend_versions(self.system):
            donor_version = current_version(self.system, spec.donor)
            path = resolve_table(self.system, spec.donor, donor_version, spec.table)
        if path is None:
            raise KernelDataError(
                f"{self.source} has no table {spec.table} at or below that version; "
                f"it exists under: {', '.join(where_table(self.system, spec.table)) or 'none'}"
            )
        return path

    def _ask(
        self,
        spec: Spec,
        keys: list[Like],
        xs: list[Like],
        coverage: I8 | None,
        trend: Trend | None = None,
    ) -> F64:
        seconds, cover = self._table(spec).query([np.asarray(k) for k in keys], xs, trend)
        if coverage is not None:
            coverage[...] = cover
        return seconds

    def gemm(
        self,
        m: Like,
        n: Like,
        k: Like,
        dtype: Like = "bfloat16",
        *,
        coverage: I8 | None = None,
        trend: Trend | None = None,
    ) -> F64:
        """``[m, k] @ [k, n]`` (dtype ``bfloat16``, ``fp8``, ``fp8_block``, …); ``trend``
        (of the key ``(dtype,)`` and ``[m, n, k]``) extrapolates above the grid."""
        return self._ask(GEMM, [dtype], [m, n, k], coverage, trend)

    def context_attention(
        self,
        batch: Like,
        seq: Like,
        heads: Like,
        kv_heads: Like,
        head_dim: Like,
        dtype: Like = "bfloat16",
        kv_dtype: Like = "bfloat16",
        *,
        window: Like = 0,
        coverage: I8 | None = None,
        trend: Trend | None = None,
    ) -> F64:
        """Causal prefill attention of ``batch`` sequences of ``seq`` tokens (heads per rank).

        Looked up at the GQA ratio ``heads / kv_heads``, interpolated over kv_heads;
        ``head_dim`` must be measured (64, 128, 192, 256 on H100; 64 carries gpt-oss's
        attention sinks). ``window`` is a sliding-window size, 0 for full attention.
        """
        keys = [dtype, kv_dtype, head_dim, window, gqa_group(heads, kv_heads)]
        return self._ask(CONTEXT_ATTENTION, keys, [batch, seq, kv_heads], coverage, trend)

    def generation_attention(
        self,
        batch: Like,
        ctx: Like,
        heads: Like,
        kv_heads: Like,
        head_dim: Like,
        dtype: Like = "bfloat16",
        kv_dtype: Like = "bfloat16",
        *,
        window: Like = 0,
        coverage: I8 | None = None,
        trend: Trend | None = None,
    ) -> F64:
        """One decode step: ``batch`` new tokens, each attending ``ctx`` cached tokens + itself.

        ``ctx`` is the tables' ``step`` (the collector's cached prompt length). The
        attention ``trend`` takes the key ``(dtype, kv_dtype, head_dim, window, group)``
        and ``[batch, ctx or seq, kv_heads]``.
        """
        keys = [dtype, kv_dtype, head_dim, window, gqa_group(heads, kv_heads)]
        return self._ask(GENERATION_ATTENTION, keys, [batch, ctx, kv_heads], coverage, trend)

    def mla_context(
        self,
        batch: Like,
        seq: Like,
        heads: Like,
        kv_dtype: Like = "bfloat16",
        dtype: Like = "bfloat16",
        *,
        coverage: I8 | None = None,
    ) -> F64:
        """DeepSeek-V3 MLA prefill attention (kv_lora_rank 512, rope 64), heads per rank."""
        return self._ask(MLA_CONTEXT, [dtype, kv_dtype], [batch, seq, heads], coverage)

    def mla_generation(
        self,
        batch: Like,
        ctx: Like,
        heads: Like,
        kv_dtype: Like = "bfloat16",
        dtype: Like = "bfloat16",
        *,
        coverage: I8 | None = None,
    ) -> F64:
        """DeepSeek-V3 MLA decode step over ``ctx`` cached tokens, heads per rank."""
        return self._ask(MLA_GENERATION, [dtype, kv_dtype], [batch, ctx, heads], coverage)

    def moe(
        self,
        tokens: Like,
        hidden: Like,
        inter: Like,
        experts: Like,
        topk: Like,
        tp: Like,
        ep: Like,
        dtype: Like = "bfloat16",
        *,
        distribution: Like = "power_law_1.01",
        coverage: I8 | None = None,
    ) -> F64:
        """One rank's fused MoE for ``tokens`` input tokens (model-wide hidden/inter/experts)."""
        keys = [dtype, hidden, inter, topk, experts, tp, ep, distribution]
        return self._ask(MOE, keys, [tokens], coverage)

    def nccl(
        self,
        op: Coll | str,
        n_gpus: Like,
        nbytes: Like,
        dtype: str = "half",
        *,
        coverage: I8 | None = None,
    ) -> F64:
        """An intra-node NCCL collective of nccl-tests size ``nbytes`` over ``n_gpus`` GPUs.

        ``op``: a :class:`Coll` or ``all_reduce``, ``all_gather``, ``reduce_scatter``,
        ``alltoall``. ``dtype`` ``half`` (also bfloat16/float16) or ``int8`` (also fp8).
        """
        name = NCCL_OPS[op] if isinstance(op, Coll) else op.replace("-", "_")
        name = "alltoall" if name == "all_to_all" else name
        if dtype not in NCCL_DTYPES:
            raise KernelDataError(f"nccl dtype {dtype!r}: expected one of {sorted(NCCL_DTYPES)}")
        table_dtype, width = NCCL_DTYPES[dtype]
        elements = np.asarray(nbytes, dtype=np.float64) / width
        return self._ask(NCCL_TABLE, [name, table_dtype], [n_gpus, elements], coverage)

    def custom_all_reduce(self, n_gpus: Like, nbytes: Like, *, coverage: I8 | None = None) -> F64:
        """The backend's own (non-NCCL) bf16 all-reduce of ``nbytes`` bytes, one node."""
        elements = np.asarray(nbytes, dtype=np.float64) / 2
        return self._ask(CUSTOM_ALL_REDUCE, ["bfloat16"], [n_gpus, elements], coverage)

    def deepep(
        self,
        mode: DeepEPMode | str,
        phase: DeepEPPhase | str,
        tokens: Like,
        hidden: Like,
        topk: Like,
        experts: Like,
        *,
        nodes: Like = 1,
        sms: Like = 12,
        coverage: I8 | None = None,
    ) -> F64:
        """DeepEP dispatch or combine of ``tokens`` tokens per rank (8 GPUs per node).

        ``sms``: SMs given to a normal-mode kernel (aiconfigurator's default is 12).
        """
        spec = DEEPEP[DeepEPMode(mode), DeepEPPhase(phase)]
        xs = [tokens] if DeepEPMode(mode) is DeepEPMode.LOW_LATENCY else [sms, tokens]
        return self._ask(spec, [nodes, hidden, topk, experts], xs, coverage)
