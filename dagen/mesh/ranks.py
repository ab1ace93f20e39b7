"""The rank mesh: which GPU holds which coordinate of every parallel dimension.

A mesh is the world of ranks laid out as an n-d array with named dimensions, in
Megatron-Core's rank order (``RankGenerator`` in megatron/core/parallel_state.py of
NVIDIA/Megatron-LM). The order string names the dimensions fastest-varying first:
``rank = Σ coord_d · stride_d`` with ``stride_d`` the product of the sizes of the
dimensions before ``d``. The groups along a dimension are "move that dimension last,
reshape" (as in ``torch.distributed.device_mesh``); nothing loops over ranks.

The same ranks are decomposed twice (MoE parallel folding, arXiv:2504.14960):

* attention and dense layers: ``tp``, ``cp``, ``dp``, ``pp`` (the order's ``ep`` slot has
  size 1 under :attr:`Convention.MEGATRON`; under :attr:`Convention.ORTHOGONAL` it keeps
  its degree and attention DP spans both the ``ep`` and ``dp`` slots);
* expert layers: the same order string with ``tp→etp``, ``cp→1``, ``ep→ep``, ``dp→edp``,
  ``pp→pp`` and ``edp = world / (etp·ep·pp)``.

Both share the pipeline: a rank has the same ``pp`` coordinate under both, else
:func:`build_mesh` raises :class:`MeshError` (Megatron asserts the same).

NOTE: a worked example. TP2·DP16·PP4 attention with EP16·ETP1 experts on 128 GPUs,
order ``tp-cp-ep-dp-pp``. Attention strides: tp 1, dp 2, pp 32. Expert strides: etp 1,
ep 1, edp 16, pp 32, with edp = 128 / (1·16·4) = 2.

======  ============  ==================  ===============  ================  ==========
rank    tp group      dp group            pp group         ep group          edp group
======  ============  ==================  ===============  ================  ==========
0       [0, 1]        [0, 2, …, 30]       [0, 32, 64, 96]  [0, 1, …, 15]     [0, 16]
37      [36, 37]      [33, 35, …, 63]     [5, 37, 69, 101] [32, 33, …, 47]   [37, 53]
======  ============  ==================  ===============  ================  ==========

Rank 37 = tp 1 + 2·(dp 2) + 32·(pp 1) = ep 5 + 16·(edp 0) + 32·(pp 1).

>>> from dagen.plan.model import Parallel
>>> mesh = build_mesh(Parallel(tp=2, dp=16, pp=4, ep=16, etp=1), gpus_per_node=8)
>>> mesh.groups("dp")[mesh.group_of("dp")[37]].tolist()[:3]
[33, 35, 37]
>>> mesh.groups("edp")[mesh.group_of("edp")[37]].tolist()
[37, 53]
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from dagen.codes import Code
from dagen.errors import LayoutFault, MeshError
from dagen.mesh.grid import attention_grid, expert_grid, groups, index_and_position
from dagen.plan.model import Convention, ExpertLayout, Model, Parallel, Plan

__all__ = [
    "GROUP_DIMS",
    "ORDER_NAMES",
    "Mesh",
    "build_mesh",
    "check_order",
    "mesh_of",
    "spans_hosts",
]

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int32]

GROUP_DIMS = ("tp", "cp", "dp", "pp", "ep", "etp", "edp")
"""Every dimension a rank has a coordinate and a group in."""

ORDER_NAMES = ("tp", "cp", "ep", "dp", "pp")
"""The names an order string may use (Megatron's ``--order``)."""

ATTENTION_DIMS = ("tp", "cp", "dp", "pp")
"""The dimensions :meth:`Mesh.rank_of` accepts."""

MAX_WORLD = 1 << 22
"""Largest world the mesh enumerates (4M ranks); larger plans are absurd, not slow."""

# Which decomposition each dimension lives in, and which order slots its group spans.
_ATTENTION, _EXPERT = "attention", "expert"
_SLOTS: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType(
    {
        "tp": (_ATTENTION, ("tp",)),
        "cp": (_ATTENTION, ("cp",)),
        "dp": (_ATTENTION, ("dp",)),  # widened to ("ep", "dp") under ORTHOGONAL
        "pp": (_ATTENTION, ("pp",)),
        "ep": (_EXPERT, ("ep",)),
        "etp": (_EXPERT, ("tp",)),
        "edp": (_EXPERT, ("dp",)),
    }
)


def frozen(a: IntArray) -> IntArray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, slots=True, kw_only=True)
class Mesh:
    """Every rank's coordinate and group in every parallel dimension.

    Build one with :func:`build_mesh`; all arrays are read-only and indexed by rank.

    >>> from dagen.plan.model import Parallel
    >>> m = build_mesh(Parallel(tp=2, pp=2, dp=2), gpus_per_node=4)
    >>> m.groups("pp").tolist()
    [[0, 4], [1, 5], [2, 6], [3, 7]]
    >>> m.rank_of(tp=1, dp=1, pp=1)
    7
    """

    world: int
    """Number of ranks (GPUs)."""
    gpus_per_node: int
    """GPUs per host; ranks fill hosts in order."""
    order: tuple[str, ...]
    """Rank order, fastest-varying first, completed with absent size-1 names."""
    convention: Convention
    """How the degrees were read (folded EP or orthogonal)."""
    sizes: Mapping[str, int]
    """Degree of every dimension of :data:`GROUP_DIMS` (``dp`` is attention DP)."""
    coords: Mapping[str, IntArray]
    """Per dimension, int32 ``[world]``: each rank's index inside its group."""
    stage: IntArray
    """int32 ``[world]``: pipeline stage (``coords["pp"]``)."""
    replica: IntArray
    """int32 ``[world]``: attention data-parallel replica (``coords["dp"]``)."""
    host: IntArray
    """int32 ``[world]``: ``rank // gpus_per_node``."""
    group_table: Mapping[str, IntArray]
    """Per dimension, int32 ``[world // size, size]``: the groups (see :meth:`groups`)."""
    group_index: Mapping[str, IntArray]
    """Per dimension, int32 ``[world]``: each rank's row in ``group_table`` (:meth:`group_of`)."""

    @property
    def hosts(self) -> int:
        """Hosts the ranks fill: ``ceil(world / gpus_per_node)``."""
        return -(-self.world // self.gpus_per_node)

    def groups(self, dim: str) -> IntArray:
        """The groups of ``dim``: int32 ``[world // size, size]``.

        Each row ascends; rows are sorted by their first member.

        >>> from dagen.plan.model import Parallel
        >>> build_mesh(Parallel(tp=2, dp=2)).groups("dp").tolist()
        [[0, 2], [1, 3]]
        """
        return self.group_table[_dim(dim)]

    def group_of(self, dim: str) -> IntArray:
        """int32 ``[world]``: the row of :meth:`groups` holding each rank."""
        return self.group_index[_dim(dim)]

    def crosses_hosts(self, dim: str) -> npt.NDArray[np.bool_]:
        """bool ``[n_groups]``: whether each group of ``dim`` spans more than one host.

        >>> from dagen.plan.model import Parallel
        >>> build_mesh(Parallel(tp=2, dp=2), gpus_per_node=2).crosses_hosts("dp").tolist()
        [True, True]
        """
        table = self.groups(dim)
        n, size = table.shape
        offsets = np.arange(n + 1, dtype=np.int64) * size
        return spans_hosts(self.host, offsets, table.ravel())

    def rank_of(self, **coords: int) -> int:
        """The rank at attention coordinates ``tp``, ``cp``, ``dp``, ``pp`` (absent = 0).

        ``dp`` is the attention replica (under the orthogonal reading, the combined
        ep·dp index). Raises :class:`MeshError` for other names or out-of-range values.

        >>> from dagen.plan.model import Parallel
        >>> build_mesh(Parallel(tp=2, dp=16, pp=4, ep=16)).rank_of(tp=1, dp=2, pp=1)
        37
        """
        rank = 0
        for name, value in coords.items():
            if name not in ATTENTION_DIMS:
                raise MeshError(
                    f"rank_of: unknown coordinate {name!r}; expected one of {', '.join(ATTENTION_DIMS)}."
                )
            if not 0 <= value < self.sizes[name]:
                raise MeshError(
                    f"rank_of: {name}={value} is out of range; expected 0 ≤ {name} < {self.sizes[name]}."
                )
            # Rank is additive over the order's slots; row 0 is the group of rank 0,
            # whose other coordinates are all 0, so its entry c is coordinate c's share.
            rank += int(self.group_table[name][0, value])
        return rank


def spans_hosts(
    host: IntArray, offsets: npt.NDArray[np.int64], members: IntArray
) -> npt.NDArray[np.bool_]:
    """bool ``[groups]``: whether each group (CSR ``offsets`` over ``members`` ranks) has
    members on more than one host (``host[rank]``). An empty group spans none.

    >>> spans_hosts(np.array([0, 0, 1]), np.array([0, 2, 3, 3]), np.array([0, 2, 1])).tolist()
    [True, False, False]
    """
    out = np.zeros(offsets.shape[0] - 1, dtype=np.bool_)
    nonempty = np.diff(offsets) > 0
    if nonempty.any():
        hosts = host[members]
        starts = offsets[:-1][nonempty]
        out[nonempty] = np.minimum.reduceat(hosts, starts) != np.maximum.reduceat(hosts, starts)
    return out


def _dim(dim: str) -> str:
    if dim not in GROUP_DIMS:
        raise MeshError(f"unknown mesh dimension {dim!r}; expected one of {', '.join(GROUP_DIMS)}.")
    return dim


def _parse_order(order: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (names as written, names completed with the absent ones appended)."""
    given = tuple(t.strip() for t in order.lower().split("-"))
    if any(t not in ORDER_NAMES for t in given) or len(set(given)) != len(given):
        raise MeshError(
            f"parallel.order: found {order!r}; expected names from {', '.join(ORDER_NAMES)} "
            "joined by '-', each at most once. Fix: use e.g. 'tp-cp-ep-dp-pp' (Megatron's default)."
        )
    # Megatron's RankGenerator appends absent names (they must have size 1) at the end.
    return given, given + tuple(n for n in ORDER_NAMES if n not in given)


def _slot_sizes(p: Parallel, world: int) -> tuple[dict[str, int], dict[str, int]]:
    """Sizes of the order's slots under the attention and the expert decomposition."""
    orthogonal = p.convention is Convention.ORTHOGONAL
    attention = {"tp": p.tp, "cp": p.cp, "ep": p.ep if orthogonal else 1, "dp": p.dp, "pp": p.pp}
    etp_ep_pp = p.etp * p.ep * p.pp
    if world % etp_ep_pp:
        raise MeshError(
            f"parallel: etp·ep·pp = {p.etp}·{p.ep}·{p.pp} = {etp_ep_pp} does not divide the world "
            f"{_world_formula(p)} = {world}, so the expert data-parallel degree edp = world/(etp·ep·pp) "
            f"is not whole. Fix: choose etp and ep so that etp·ep·pp divides {world}."
        )
    expert = {"tp": p.etp, "cp": 1, "ep": p.ep, "dp": world // etp_ep_pp, "pp": p.pp}
    return attention, expert


def _world_formula(p: Parallel) -> str:
    if p.convention is Convention.ORTHOGONAL:
        return f"tp·cp·ep·dp·pp = {p.tp}·{p.cp}·{p.ep}·{p.dp}·{p.pp}"
    return f"tp·cp·dp·pp = {p.tp}·{p.cp}·{p.dp}·{p.pp}"


def _check_absent(order: str, given: tuple[str, ...], slots: Mapping[str, dict[str, int]]) -> None:
    for kind, sizes in slots.items():
        for name, size in sizes.items():
            if name not in given and size != 1:
                label = {"tp": "etp", "dp": "edp"}.get(name, name) if kind == _EXPERT else name
                raise MeshError(
                    f"parallel.order: {label} = {size} ({kind} layers) needs the '{name}' slot, "
                    f"but the order {order!r} does not name it. Fix: add '{name}' to the order, "
                    "e.g. 'tp-cp-ep-dp-pp'."
                )


def _check_shared_pp(
    order: tuple[str, ...], slots: Mapping[str, dict[str, int]], p: Parallel
) -> None:
    before = order[: order.index("pp")]
    attention = math.prod(slots[_ATTENTION][n] for n in before)
    expert = math.prod(slots[_EXPERT][n] for n in before)
    if p.pp > 1 and attention != expert:
        names = {"tp": "etp", "dp": "edp"}
        a = "·".join(before) + " = " + "·".join(str(slots[_ATTENTION][n]) for n in before)
        e = "·".join(names.get(n, n) for n in before)
        e += " = " + "·".join(str(slots[_EXPERT][n]) for n in before)
        raise LayoutFault(
            f"parallel.order: with order {'-'.join(order)!r} the slots before pp hold "
            f"{attention} ranks for attention ({a}) but {expert} for experts ({e}), so a "
            "rank's pipeline stage would differ between the two (Megatron-Core asserts they "
            "agree). Fix: put pp last in the order, make the two products equal (e.g. "
            "etp = tp, Megatron's default), or set expert_layout: stage (expert groups "
            "over each stage's ranks, as vLLM lays them).",
            Code.PLAN_PP_GROUPS,
            "parallel.order",
        )


def build_mesh(parallel: Parallel, gpus_per_node: int = 8) -> Mesh:
    """Lay the plan's degrees over ``world`` ranks (see the module docstring).

    Raises :class:`MeshError` with the arithmetic when the degrees do not factor.

    >>> from dagen.plan.model import Parallel
    >>> m = build_mesh(Parallel(tp=8, ep=8), gpus_per_node=8)
    >>> (m.world, m.sizes["ep"], m.sizes["edp"], m.groups("ep").tolist())
    (8, 8, 1, [[0, 1, 2, 3, 4, 5, 6, 7]])
    """
    if gpus_per_node < 1:
        raise MeshError(f"gpus_per_node = {gpus_per_node}; expected at least 1.")
    world = parallel.world()
    if world > MAX_WORLD:
        raise MeshError(
            f"parallel: the world {_world_formula(parallel)} = {world} GPUs exceeds the "
            f"{MAX_WORLD} the mesh enumerates. Fix: check the degrees."
        )
    order, attention, expert = _checked_slots(parallel)
    grid = attention_grid(order, attention, world)
    grids = {_ATTENTION: (grid, tuple(reversed(order))), _EXPERT: expert_grid(grid, order, expert)}
    tables: dict[str, IntArray] = {}
    index: dict[str, IntArray] = {}
    coords: dict[str, IntArray] = {}
    for dim, (kind, span) in _SLOTS.items():
        if dim == "dp" and parallel.convention is Convention.ORTHOGONAL:
            span = ("ep", "dp")
        tables[dim] = frozen(groups(*grids[kind], span))
        idx, pos = index_and_position(tables[dim])
        index[dim], coords[dim] = frozen(idx), frozen(pos)
    mesh = Mesh(
        world=world,
        gpus_per_node=gpus_per_node,
        order=order,
        convention=parallel.convention,
        sizes=MappingProxyType({d: int(tables[d].shape[1]) for d in GROUP_DIMS}),
        coords=MappingProxyType(coords),
        stage=coords["pp"],
        replica=coords["dp"],
        host=frozen(np.arange(world, dtype=np.int32) // np.int32(gpus_per_node)),
        group_table=MappingProxyType(tables),
        group_index=MappingProxyType(index),
    )
    logger.debug("mesh: world %d, order %s, sizes %s", world, "-".join(order), dict(mesh.sizes))
    return mesh


def _checked_slots(
    parallel: Parallel,
) -> tuple[tuple[str, ...], dict[str, int], dict[str, int]]:
    """The full order and the attention and expert slot sizes, once the order string is
    checked against them (:class:`MeshError` / :class:`LayoutFault` otherwise)."""
    given, order = _parse_order(parallel.order)
    attention, expert = _slot_sizes(parallel, parallel.world())
    slots = {_ATTENTION: attention, _EXPERT: expert}
    _check_absent(parallel.order, given, slots)
    if parallel.expert_layout is ExpertLayout.MEGATRON:
        _check_shared_pp(order, slots, parallel)
    return order, attention, expert


def check_order(parallel: Parallel, model: Model) -> None:
    """Raise what :func:`mesh_for` would raise about ``parallel``'s rank order
    (``PLAN-PP-GROUPS`` and the other order faults) without laying out a rank.

    >>> from dagen.plan.model import Model, Parallel
    >>> m = Model(name="d", layers=2, hidden_size=8, heads=2, kv_heads=2, head_dim=4,
    ...           ffn_size=16, vocab_size=10)
    >>> check_order(Parallel(tp=2, dp=2, pp=2, order="tp-cp-ep-pp-dp"), m)
    """
    if model.moe is None and parallel.etp != parallel.tp:
        parallel = dataclasses.replace(parallel, etp=parallel.tp)
    _checked_slots(parallel)


def mesh_for(parallel: Parallel, model: Model, gpus_per_node: int) -> Mesh:
    """The mesh of ``parallel`` serving ``model`` on hosts of ``gpus_per_node``.

    A dense model has no expert layers, so its expert decomposition is moot; it is laid
    with etp = tp (Megatron-Core's default for expert_tensor_parallel_size), which makes it
    coincide with the attention one and lets any valid order string, ``tp-pp-dp`` among
    them, build.
    """
    if model.moe is None and parallel.etp != parallel.tp:
        parallel = dataclasses.replace(parallel, etp=parallel.tp)
    return build_mesh(parallel, gpus_per_node)


def mesh_of(plan: Plan) -> Mesh:
    """The mesh of a whole plan: its degrees over its hardware's hosts (:func:`mesh_for`)."""
    return mesh_for(plan.parallel, plan.model, plan.hardware.gpus_per_node)
