"""What a graph says about itself: its pools and the table of its ranks.

A deployment is one or more *pools* (a prefill pool and a decode pool, say), each with
its own parallel layout, phase, workload and hardware, expanded on its own; the graph
is their concatenation, pool ``p``'s ranks numbered from ``rank0``. A single-pool plan
is one pool whose ``rank0`` is 0.

:class:`Pool` carries what later layers need about a pool, derived once by the graph
layer: its mesh, per-rank sizes, layer split, schedule and (on first use) resident bytes. Later layers
read these, never the plan. :class:`RankTable` holds every rank's pool, host, pipeline
stage, replica, coordinates and group ids, indexed by global rank.

Example:
    >>> graph.pools[0].mesh.world == graph.ranks.world  # a single-pool graph  # doctest: +SKIP
    True
    >>> graph.ranks.stage[graph.rank[0]]  # doctest: +SKIP
    0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Phase
from dagen.graph.dims import Dims
from dagen.graph.pricing import PriceTable
from dagen.graph.residency import Residency, residency
from dagen.graph.schedule import Schedule
from dagen.mesh import GROUP_DIMS, Mesh
from dagen.plan.model import Formats, Hardware, Parallel, Runtime, Workload

__all__ = ["Pool", "RankTable", "rank_table"]

I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """One pool of a deployment, as the graph layer expanded it."""

    name: str
    """``prefill``, ``decode`` or a plan's own pool name."""
    index: int
    """Position in ``Graph.pools``."""
    phase: Phase
    rank0: int
    """Global rank of the pool's rank 0."""
    host0: int
    """Global host of the pool's host 0 (pools never share a host)."""
    node0: int
    """First node of the pool (nodes are rank-major, so a pool's nodes are contiguous)."""
    node1: int
    """One past its last node."""
    mesh: Mesh
    """The pool's mesh, in pool-local ranks."""
    parallel: Parallel
    workload: Workload
    hardware: Hardware
    runtime: Runtime
    """The serving runtime (its memory rules; whether decode replays CUDA graphs)."""
    formats: Formats
    """Every tensor's number format."""
    dims: Dims
    """Per-rank sizes of one micro-batch (what every template was priced from)."""
    stage_layers: tuple[range, ...]
    schedule: Schedule
    tied_embeddings: bool = False
    """The input embedding and the LM head share weights (counted once in
    :attr:`residency`)."""
    units: int = 1
    """Identical units of this pool the deployment runs (the graph expands one)."""
    mix: tuple[tuple[float, Dims], ...] = ()
    """A serving pool's kinds of iteration, ``(share, sizes)``, when they differ from the
    mean :attr:`dims` (:func:`dagen.graph.dims.iteration_mix`); the estimate weighs them."""
    prices: PriceTable | None = field(default=None, compare=False, repr=False)
    """The pool's template pricing, to price :attr:`mix` (its rows are this pool's
    templates, in order)."""
    _cache: dict[str, Residency] = field(default_factory=dict, init=False, compare=False,
                                         repr=False)  # fmt: skip

    @property
    def residency(self) -> Residency:
        """What one rank of each stage holds (:func:`dagen.graph.residency.residency`),
        derived on first use: only the cost model reads it, not the build or the checks."""
        if "residency" not in self._cache:
            self._cache["residency"] = residency(
                self.schedule, self.dims, self.workload, replicas=self.mesh.sizes["dp"],
                tied=self.tied_embeddings,
            )  # fmt: skip
        return self._cache["residency"]

    @property
    def world(self) -> int:
        return self.mesh.world

    @property
    def ranks(self) -> range:
        """Its global ranks."""
        return range(self.rank0, self.rank0 + self.mesh.world)


@dataclass(frozen=True, slots=True, kw_only=True)
class RankTable:
    """Every rank's place in the deployment (int arrays ``[world]``, by global rank)."""

    world: int
    pool: I16
    host: I32
    """Global host."""
    stage: I32
    """Pipeline stage within its pool."""
    replica: I32
    """Attention data-parallel replica within its pool."""
    coords: Mapping[str, I32]
    """Per dimension of :data:`dagen.mesh.GROUP_DIMS`: the rank's index in its group."""
    group: Mapping[str, I32]
    """Per dimension: the global id of the rank's group (a row of the graph's group table)."""


def _frozen(a: npt.NDArray[Any]) -> Any:
    a.setflags(write=False)
    return a


def rank_table(pools: Sequence[Pool], groups: Sequence[Mapping[str, I32]]) -> RankTable:
    """The rank table of ``pools`` laid end to end; ``groups[p][dim]`` is each pool-local
    rank's global group id of ``dim``."""
    if len(pools) == 1:  # no copy: the mesh's own arrays
        m = pools[0].mesh
        return RankTable(
            world=m.world, pool=_frozen(np.zeros(m.world, dtype=np.int16)), host=m.host,
            stage=m.stage, replica=m.replica, coords=m.coords, group=MappingProxyType(dict(groups[0])),
        )  # fmt: skip

    def cat(values: list[npt.NDArray[Any]]) -> Any:
        return _frozen(np.concatenate(values))

    return RankTable(
        world=sum(p.world for p in pools),
        pool=cat([np.full(p.world, p.index, np.int16) for p in pools]),
        host=cat([p.mesh.host + np.int32(p.host0) for p in pools]),
        stage=cat([p.mesh.stage for p in pools]),
        replica=cat([p.mesh.replica for p in pools]),
        coords=MappingProxyType({d: cat([p.mesh.coords[d] for p in pools]) for d in GROUP_DIMS}),
        group=MappingProxyType({d: cat([g[d] for g in groups]) for d in GROUP_DIMS}),
    )
