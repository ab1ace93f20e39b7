"""The rank mesh against Megatron-Core's documented rank rule.

The expected groups are built here by an independent, deliberately naive
implementation of the rule (NVIDIA/Megatron-LM megatron/core/parallel_state.py,
``RankGenerator`` / ``generate_masked_orthogonal_rank_groups``): enumerate every
coordinate tuple with ``itertools.product``, compute ``rank = Σ coord·stride`` with the
stride of a name the product of the sizes before it in the order string, and bucket
ranks that agree on every coordinate outside the group's dimensions.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagen.errors import MeshError
from dagen.mesh import GROUP_DIMS, Mesh, build_mesh, expert_placement, rank_table
from dagen.plan.model import Convention, ExpertLayout, Parallel

NAMES = ("tp", "cp", "ep", "dp", "pp")
ORTHO = Convention.ORTHOGONAL


# --- the reference: Megatron's rule, written out the obvious way ---------------------


@dataclass
class Reference:
    world: int
    groups: dict[str, list[list[int]]]
    coord: dict[str, dict[str, list[int]]]  # decomposition -> slot name -> [world]


def _enumerate(order: list[str], sizes: dict[str, int]) -> dict[int, dict[str, int]]:
    strides, acc = {}, 1
    for name in order:
        strides[name] = acc
        acc *= sizes[name]
    ranks = {}
    for values in itertools.product(*(range(sizes[n]) for n in order)):
        coord = dict(zip(order, values, strict=True))
        ranks[sum(coord[n] * strides[n] for n in order)] = coord
    return ranks


def _bucket(ranks: dict[int, dict[str, int]], span: set[str]) -> list[list[int]]:
    buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for rank, coord in ranks.items():
        buckets[tuple(v for n, v in sorted(coord.items()) if n not in span)].append(rank)
    return sorted(sorted(b) for b in buckets.values())


def reference(p: Parallel) -> Reference:
    given_order = p.order.split("-")
    order = given_order + [n for n in NAMES if n not in given_order]
    ortho = p.convention is ORTHO
    attn = {"tp": p.tp, "cp": p.cp, "ep": p.ep if ortho else 1, "dp": p.dp, "pp": p.pp}
    world = math.prod(attn.values())
    expert = {"tp": p.etp, "cp": 1, "ep": p.ep, "dp": world // (p.etp * p.ep * p.pp), "pp": p.pp}
    a, e = _enumerate(order, attn), _enumerate(order, expert)
    assert len(a) == len(e) == world
    spans = {
        "tp": (a, {"tp"}),
        "cp": (a, {"cp"}),
        "dp": (a, {"ep", "dp"} if ortho else {"dp"}),
        "pp": (a, {"pp"}),
        "ep": (e, {"ep"}),
        "etp": (e, {"tp"}),
        "edp": (e, {"dp"}),
    }
    groups = {dim: _bucket(ranks, span) for dim, (ranks, span) in spans.items()}
    coord = {
        kind: {n: [ranks[r][n] for r in range(world)] for n in NAMES}
        for kind, ranks in (("attn", a), ("expert", e))
    }
    return Reference(world=world, groups=groups, coord=coord)


def assert_matches_reference(mesh: Mesh, p: Parallel) -> None:
    ref = reference(p)
    assert mesh.world == ref.world
    for dim in GROUP_DIMS:
        assert mesh.groups(dim).tolist() == ref.groups[dim], dim
        assert mesh.sizes[dim] == len(ref.groups[dim][0]), dim
    for dim, slot, kind in [
        ("tp", "tp", "attn"),
        ("cp", "cp", "attn"),
        ("pp", "pp", "attn"),
        ("ep", "ep", "expert"),
        ("etp", "tp", "expert"),
        ("edp", "dp", "expert"),
    ]:
        assert mesh.coords[dim].tolist() == ref.coord[kind][slot], dim
    # Both decompositions share the pipeline (Megatron asserts the pp groups agree).
    assert mesh.stage.tolist() == ref.coord["attn"]["pp"] == ref.coord["expert"]["pp"]
    dp = ref.coord["attn"]["dp"]
    if p.convention is ORTHO:
        ep = ref.coord["attn"]["ep"]
        ep_first = mesh.order.index("ep") < mesh.order.index("dp")
        dp = [(e + p.ep * d) if ep_first else (d + p.dp * e) for e, d in zip(ep, dp, strict=True)]
    assert mesh.replica.tolist() == dp


CASES = {
    "folded tp2 dp16 pp4 / ep16 etp1 on 128": Parallel(tp=2, dp=16, pp=4, ep=16, etp=1),
    "tp8 ep8 on 8": Parallel(tp=8, ep=8),
    "tp4 pp2 dp2": Parallel(tp=4, pp=2, dp=2),
    "cp2 with ep4": Parallel(tp=2, cp=2, dp=2, pp=2, ep=4),
    "etp2": Parallel(tp=2, dp=4, ep=2, etp=2),
    "etp2 pp2 ep4": Parallel(tp=4, dp=4, pp=2, ep=4, etp=2),
    "order tp-cp-ep-pp-dp": Parallel(tp=2, dp=2, pp=2, ep=2, order="tp-cp-ep-pp-dp"),
    "order tp-pp-dp": Parallel(tp=2, pp=2, dp=2, etp=2, order="tp-pp-dp"),
    "pp-major pp-tp-cp-ep-dp": Parallel(tp=2, dp=2, pp=4, ep=2, order="pp-tp-cp-ep-dp"),
    "pp-major pp-dp-tp": Parallel(tp=2, dp=3, pp=2, order="pp-dp-tp"),
    "orthogonal tp2 ep2 dp2 pp2": Parallel(convention=ORTHO, tp=2, ep=2, dp=2, pp=2),
    "orthogonal dp before ep": Parallel(
        convention=ORTHO, tp=2, ep=4, dp=2, pp=2, order="tp-cp-dp-ep-pp"
    ),
    "orthogonal seed EP16 PP4 TP2 DP2": Parallel(convention=ORTHO, tp=2, ep=16, dp=2, pp=4),
    "dp32 ep32 (DeepSeek-style)": Parallel(dp=32, ep=32),
}


@pytest.mark.parametrize("name", list(CASES))
def test_groups_follow_megatron_rank_rule(name: str) -> None:
    p = CASES[name]
    mesh = build_mesh(p)
    assert_matches_reference(mesh, p)


@pytest.mark.parametrize("name", list(CASES))
def test_every_rank_in_exactly_one_group_per_dim(name: str) -> None:
    mesh = build_mesh(CASES[name])
    for dim in GROUP_DIMS:
        table = mesh.groups(dim)
        assert table.dtype == np.int32
        assert table.shape == (mesh.world // mesh.sizes[dim], mesh.sizes[dim])
        assert np.array_equal(np.sort(table.ravel()), np.arange(mesh.world))
        assert np.all(np.diff(table, axis=1) > 0)  # rows ascend
        assert np.all(np.diff(table[:, 0]) > 0)  # rows sorted by first member
        # group_of and coords invert the table.
        ranks = np.arange(mesh.world)
        assert np.array_equal(table[mesh.group_of(dim), mesh.coords[dim]], ranks)


def test_megatron_docstring_example_tp2_pp4_on_16() -> None:
    # initialize_model_parallel's docstring (megatron/core/parallel_state.py), verbatim.
    mesh = build_mesh(Parallel(tp=2, pp=4, dp=2))
    assert mesh.groups("dp").tolist() == [
        [0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15],
    ]  # fmt: skip
    assert mesh.groups("tp").tolist() == [
        [0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15],
    ]  # fmt: skip
    assert mesh.groups("pp").tolist() == [
        [0, 4, 8, 12],
        [1, 5, 9, 13],
        [2, 6, 10, 14],
        [3, 7, 11, 15],
    ]


def test_megatron_masked_groups_example_tp_pp_dp() -> None:
    # generate_masked_orthogonal_rank_groups' docstring: order tp-pp-dp, sizes 2-2-2.
    mesh = build_mesh(Parallel(tp=2, pp=2, dp=2, etp=2, order="tp-pp-dp"))
    assert mesh.groups("dp").tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert mesh.groups("pp").tolist() == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert mesh.order == ("tp", "pp", "dp", "cp", "ep")


def test_worked_example_rank_0_and_37() -> None:
    mesh = build_mesh(Parallel(tp=2, dp=16, pp=4, ep=16, etp=1))
    assert dict(mesh.sizes) == {"tp": 2, "cp": 1, "dp": 16, "pp": 4, "ep": 16, "etp": 1, "edp": 2}

    def row(dim: str, rank: int) -> list[int]:
        return [int(x) for x in mesh.groups(dim)[mesh.group_of(dim)[rank]]]

    assert row("tp", 0) == [0, 1] and row("tp", 37) == [36, 37]
    assert row("dp", 0) == list(range(0, 32, 2)) and row("dp", 37) == list(range(33, 64, 2))
    assert row("pp", 0) == [0, 32, 64, 96] and row("pp", 37) == [5, 37, 69, 101]
    assert row("ep", 0) == list(range(16)) and row("ep", 37) == list(range(32, 48))
    assert row("edp", 0) == [0, 16] and row("edp", 37) == [37, 53]
    assert row("etp", 37) == [37]
    assert {d: int(mesh.coords[d][37]) for d in GROUP_DIMS} == {
        "tp": 1, "cp": 0, "dp": 2, "pp": 1, "ep": 5, "etp": 0, "edp": 0,
    }  # fmt: skip
    assert mesh.rank_of(tp=1, dp=2, pp=1) == 37


def test_tp8_ep8_on_one_node() -> None:
    mesh = build_mesh(Parallel(tp=8, ep=8), gpus_per_node=8)
    assert mesh.groups("tp").tolist() == [list(range(8))]
    assert mesh.groups("ep").tolist() == [list(range(8))]
    assert mesh.groups("edp").tolist() == [[r] for r in range(8)]
    assert not mesh.crosses_hosts("tp").any() and not mesh.crosses_hosts("ep").any()


@pytest.mark.parametrize("name", list(CASES))
def test_rank_of_inverts_attention_coords(name: str) -> None:
    mesh = build_mesh(CASES[name])
    for rank in range(mesh.world):
        coords = {d: int(mesh.coords[d][rank]) for d in ("tp", "cp", "dp", "pp")}
        assert mesh.rank_of(**coords) == rank


def test_rank_of_rejects_bad_coords() -> None:
    mesh = build_mesh(Parallel(tp=2, dp=2, ep=2))
    assert mesh.rank_of() == 0
    with pytest.raises(MeshError, match="unknown coordinate 'ep'"):
        mesh.rank_of(ep=1)
    with pytest.raises(MeshError, match=r"dp=2 is out of range; expected 0 ≤ dp < 2"):
        mesh.rank_of(dp=2)
    with pytest.raises(MeshError, match="unknown mesh dimension 'xp'"):
        mesh.groups("xp")


def test_hosts_and_crossing() -> None:
    p = Parallel(tp=4, dp=4, pp=2, ep=8)
    mesh = build_mesh(p, gpus_per_node=8)
    assert mesh.host.tolist() == [r // 8 for r in range(32)]
    for dim in GROUP_DIMS:
        expected = [len({r // 8 for r in g}) > 1 for g in reference(p).groups[dim]]
        assert mesh.crosses_hosts(dim).tolist() == expected, dim
    assert not mesh.crosses_hosts("tp").any()  # tp 4 fastest: inside a node
    assert mesh.crosses_hosts("pp").all()  # stages 16 ranks apart
    assert mesh.crosses_hosts("dp").tolist() == [True] * 8  # dp stride 4: ranks 0,4,8,12
    assert not mesh.crosses_hosts("ep").any()  # ep 8 with etp 1: ranks 0..7


def test_partial_last_host() -> None:
    mesh = build_mesh(Parallel(tp=2, dp=3), gpus_per_node=4)
    assert mesh.host.tolist() == [0, 0, 0, 0, 1, 1]
    assert mesh.crosses_hosts("tp").tolist() == [False, False, False]
    assert mesh.crosses_hosts("dp").tolist() == [True, True]


def test_arrays_are_read_only_and_deterministic() -> None:
    p = Parallel(tp=2, dp=4, pp=2, ep=4)
    a, b = build_mesh(p), build_mesh(p)
    for dim in GROUP_DIMS:
        assert a.groups(dim).tobytes() == b.groups(dim).tobytes()
        with pytest.raises(ValueError):
            a.groups(dim)[0, 0] = 5
    with pytest.raises(ValueError):
        a.stage[0] = 1


def test_rank_table_rows() -> None:
    mesh = build_mesh(Parallel(tp=2, dp=2, pp=2, ep=4), gpus_per_node=4)
    rows = rank_table(mesh)
    assert len(rows) == 8
    assert list(rows[5]) == ["rank", "host", *GROUP_DIMS, *(f"{d}_group" for d in GROUP_DIMS)]
    # rank 5 = tp 1 + 2·dp 0 + 4·pp 1; experts: ep 1 (stride 1, size 4), pp 1.
    # Group ids are global: the rows of each dimension follow the earlier dimensions'
    # (4 tp, 8 cp, 4 dp, 4 pp, 2 ep, 8 etp groups), so rank 5's row 5 of cp is id 4 + 5.
    assert rows[5] == {
        "rank": 5, "host": 1, "tp": 1, "cp": 0, "dp": 0, "pp": 1, "ep": 1, "etp": 0, "edp": 0,
        "tp_group": 2, "cp_group": 4 + 5, "dp_group": 12 + 3, "pp_group": 16 + 1,
        "ep_group": 20 + 1, "etp_group": 22 + 5, "edp_group": 30 + 5,
    }  # fmt: skip
    assert all(type(v) is int for v in rows[5].values())


# --- errors: the degrees do not factor ------------------------------------------------


@pytest.mark.parametrize(
    ("parallel", "pattern"),
    [
        (
            Parallel(dp=6, ep=4),
            r"etp·ep·pp = 1·4·1 = 4 does not divide the world tp·cp·dp·pp = 1·1·6·1 = 6",
        ),
        (Parallel(tp=2, dp=2, pp=2, ep=4, etp=2), r"etp·ep·pp = 2·4·2 = 16 does not divide .* = 8"),
        (Parallel(order="tp-xp-dp"), r"parallel.order: found 'tp-xp-dp'"),
        (Parallel(order="tp-dp-tp"), r"each at most once"),
        (Parallel(dp=2, ep=2, order="tp-pp-dp"), r"ep = 2 \(expert layers\) needs the 'ep' slot"),
        (Parallel(cp=2, order="tp-dp-pp"), r"cp = 2 \(attention layers\) needs the 'cp' slot"),
        (Parallel(tp=2, etp=2, order="dp-pp"), r"tp = 2 \(attention layers\) needs the 'tp' slot"),
        (Parallel(cp=2, order="tp-cp"), r"edp = 2 \(expert layers\) needs the 'dp' slot"),
        (
            Parallel(tp=2, dp=2, pp=2, ep=4, order="tp-cp-ep-pp-dp"),
            r"slots before pp hold 2 ranks for attention \(tp·cp·ep = 2·1·1\) but 4 for experts \(etp·cp·ep = 1·1·4\)",
        ),
        (
            # A dense tp2 plan with pp before dp: Megatron's default etp = tp would agree.
            Parallel(tp=2, dp=2, pp=2, order="tp-pp-dp"),
            r"2 ranks for attention \(tp = 2\) but 1 for experts \(etp = 1\).*etp = tp",
        ),
        (Parallel(tp=65536, dp=65536), r"exceeds the 4194304"),
    ],
)
def test_bad_degrees_raise_mesh_error(parallel: Parallel, pattern: str) -> None:
    with pytest.raises(MeshError, match=pattern):
        build_mesh(parallel)


def test_bad_gpus_per_node() -> None:
    with pytest.raises(MeshError, match="gpus_per_node = 0"):
        build_mesh(Parallel(), gpus_per_node=0)


def test_order_is_case_insensitive_like_megatron() -> None:
    assert build_mesh(Parallel(tp=2, dp=2, order="TP-DP")).order == ("tp", "dp", "cp", "ep", "pp")


# --- property test over small random degrees -----------------------------------------


@st.composite
def parallels(draw: st.DrawFn) -> Parallel:
    small = st.integers(1, 3)
    order = draw(st.permutations(NAMES))
    keep = draw(st.integers(2, 5))
    return Parallel(
        convention=draw(st.sampled_from(list(Convention))),
        tp=draw(small),
        cp=draw(small),
        dp=draw(st.integers(1, 4)),
        pp=draw(small),
        ep=draw(st.sampled_from([1, 2, 3, 4])),
        etp=draw(st.sampled_from([1, 2])),
        order="-".join(order[:keep]),
    )


def _expected_failure(p: Parallel) -> str | None:
    """The first rule the degrees break, in the order build_mesh checks them."""
    given_order = p.order.split("-")
    ortho = p.convention is ORTHO
    world = p.tp * p.cp * p.dp * p.pp * (p.ep if ortho else 1)
    if world % (p.etp * p.ep * p.pp):
        return "does not divide the world"
    edp = world // (p.etp * p.ep * p.pp)
    need = {"tp": max(p.tp, p.etp), "cp": p.cp, "ep": p.ep, "dp": max(p.dp, edp), "pp": p.pp}
    if any(need[n] > 1 for n in NAMES if n not in given_order):
        return "needs the '"
    ref = reference(p)
    if ref.coord["attn"]["pp"] != ref.coord["expert"]["pp"]:
        return "pipeline stage would differ"
    return None


@settings(max_examples=150, deadline=None)
@given(parallels())
def test_property_mesh_equals_rule(p: Parallel) -> None:
    failure = _expected_failure(p)
    if failure is not None:
        with pytest.raises(MeshError, match=failure):
            build_mesh(p)
        return
    mesh = build_mesh(p, gpus_per_node=4)
    assert_matches_reference(mesh, p)
    assert mesh.sizes["dp"] == p.attn_dp()
    assert mesh.sizes["edp"] == p.edp()
    for dim in GROUP_DIMS:
        assert np.array_equal(np.sort(mesh.groups(dim).ravel()), np.arange(mesh.world))
        assert mesh.crosses_hosts(dim).tolist() == [
            len({r // 4 for r in g}) > 1 for g in mesh.groups(dim).tolist()
        ]


def _stage_reference(p: Parallel) -> dict[str, list[list[int]]]:
    """``expert_layout: stage`` the obvious way: a rank's stage index counts its non-pp
    attention coordinates in order (first fastest); that index, written in the expert
    slot sizes, gives its expert coordinates; a group is the ranks of one stage that
    agree outside the group's slots."""
    ref = reference(p)
    order = build_mesh(dataclasses.replace(p, expert_layout=ExpertLayout.STAGE)).order
    attn = {n: ref.coord["attn"][n] for n in order}
    ortho = p.convention is ORTHO
    a_size = {"tp": p.tp, "cp": p.cp, "ep": p.ep if ortho else 1, "dp": p.dp, "pp": p.pp}
    world = math.prod(a_size.values())
    e_size = {"tp": p.etp, "cp": 1, "ep": p.ep, "dp": world // (p.etp * p.ep * p.pp), "pp": p.pp}
    rest = [n for n in order if n != "pp"]
    out: dict[str, list[list[int]]] = {}
    for dim, slot in (("ep", "ep"), ("etp", "tp"), ("edp", "dp")):
        buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for rank in range(world):
            s, acc = 0, 1
            for n in rest:
                s, acc = s + attn[n][rank] * acc, acc * a_size[n]
            coord = {}
            for n in rest:
                coord[n], s = s % e_size[n], s // e_size[n]
            key = (attn["pp"][rank], *(coord[n] for n in rest if n != slot))
            buckets[key].append(rank)
        out[dim] = sorted(sorted(b) for b in buckets.values())
    return out


@settings(max_examples=150, deadline=None)
@given(parallels())
def test_property_stage_layout(p: Parallel) -> None:
    """Where Megatron's condition holds, ``stage`` is Megatron's layout; where it fails,
    ``stage`` still builds, with every expert group inside one pipeline stage."""
    failure = _expected_failure(p)
    stage = dataclasses.replace(p, expert_layout=ExpertLayout.STAGE)
    if failure is not None and "pipeline stage" not in failure:
        with pytest.raises(MeshError, match=failure):
            build_mesh(stage)
        return
    mesh = build_mesh(stage)
    if failure is None:
        megatron = build_mesh(p)
        for dim in GROUP_DIMS:
            assert mesh.groups(dim).tolist() == megatron.groups(dim).tolist()
    expected = _stage_reference(p)
    for dim in ("ep", "etp", "edp"):
        assert mesh.groups(dim).tolist() == expected[dim]
        assert all(len({int(mesh.stage[r]) for r in g}) == 1 for g in mesh.groups(dim))


# --- expert placement ----------------------------------------------------------------


def _blocks(experts: int, ep: int) -> list[list[int]]:
    """Each EP rank's contiguous primaries; the first experts % ep ranks hold one more."""
    counts = [experts // ep + (i < experts % ep) for i in range(ep)]
    starts = [sum(counts[:i]) for i in range(ep + 1)]
    return [list(range(starts[i], starts[i + 1])) for i in range(ep)]


def _default_hot(experts: int, ep: int) -> list[int]:
    """Each rank's first expert in turn, then each rank's second, …"""
    blocks = _blocks(experts, ep)
    return [b[k] for k in range(max(map(len, blocks))) for b in blocks if k < len(b)]


def _copies(experts: int, redundant: int, hot: list[int]) -> list[int]:
    copies = [0] * experts
    for j in range(redundant):
        copies[hot[j % len(hot)]] += 1
    return copies


def _check_placement(
    table: np.ndarray, experts: int, ep: int, redundant: int, hot: list[int]
) -> None:
    slots = (experts + redundant) // ep
    assert table.shape == (ep, slots) and table.dtype == np.int32
    for row in table.tolist():
        assert len(set(row)) == len(row)  # no EP rank hosts an expert twice
    hosted = Counter(table.ravel().tolist())
    assert [hosted[e] - 1 for e in range(experts)] == _copies(experts, redundant, hot)
    for i, block in enumerate(_blocks(experts, ep)):  # primaries: contiguous, first
        assert table[i, : len(block)].tolist() == block
        assert table[i, len(block) :].tolist() == sorted(table[i, len(block) :].tolist())


def test_placement_contiguous_like_megatron() -> None:
    assert expert_placement(8, 4).tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    table = expert_placement(256, 32)
    assert table.tolist() == np.arange(256).reshape(32, 8).tolist()
    assert expert_placement(16, 1).tolist() == [list(range(16))]


def test_placement_deepseek_v3_prefill_redundancy() -> None:
    # DeepSeek-V3 prefill (arXiv:2412.19437 §3.4): 256 routed experts + 32 redundant on
    # EP32, so 9 experts per GPU.
    table = expert_placement(256, 32, redundant=32)
    _check_placement(table, 256, 32, 32, _default_hot(256, 32))
    assert table[:, :8].tolist() == np.arange(256).reshape(32, 8).tolist()
    # Placeholder hot experts: each rank's first (0, 8, 16, …); each replica goes to the
    # next rank, so rank r + 1 holds a copy of rank r's first expert.
    assert table[:, 8].tolist() == [248, *range(0, 248, 8)]


def test_placement_one_replica_per_rank_with_large_blocks() -> None:
    # 64 experts on EP8 with one redundant slot per rank: replicating experts 0…7 (all
    # on rank 0) cannot fit in the 7 other ranks' slots; the default spreads them.
    table = expert_placement(64, 8, redundant=8)
    _check_placement(table, 64, 8, 8, _default_hot(64, 8))
    with pytest.raises(MeshError, match=r"expert 7 needs 1 redundant replicas .* owner 0"):
        expert_placement(64, 8, redundant=8, hot=list(range(8)))


def test_placement_small_literals() -> None:
    assert expert_placement(8, 4, redundant=4).tolist() == [
        [0, 1, 6], [2, 3, 0], [4, 5, 2], [6, 7, 4],
    ]  # fmt: skip
    # 6 experts on 4 ranks: ranks 0 and 1 hold two primaries, 2 and 3 one plus a replica.
    assert expert_placement(6, 4, redundant=2).tolist() == [[0, 1], [2, 3], [4, 0], [5, 2]]
    # Explicit hot list (e.g. from load statistics), hottest first.
    assert expert_placement(8, 4, redundant=4, hot=[7, 1, 2, 5]).tolist() == [
        [0, 1, 7], [2, 3, 1], [4, 5, 2], [6, 7, 5],
    ]  # fmt: skip


def test_placement_more_replicas_than_experts() -> None:
    table = expert_placement(4, 4, redundant=8)
    _check_placement(table, 4, 4, 8, _default_hot(4, 4))
    assert sorted(table.ravel().tolist()) == [e for e in range(4) for _ in range(3)]


@pytest.mark.parametrize(
    ("experts", "ep", "redundant", "hot", "pattern"),
    [
        (8, 3, 0, None, r"8 \+ 0 = 8 physical experts cannot fill ep = 3"),
        (8, 4, 1, None, r"cannot fill ep = 4"),
        (0, 1, 0, None, r"expected experts ≥ 1"),
        (
            4,
            1,
            1,
            None,
            r"expert 0 needs 1 redundant replicas on distinct EP ranks other than its owner 0",
        ),
        (2, 2, 4, None, r"expert 0 needs 2 redundant replicas"),
        (8, 4, 4, [], r"non-empty list of expert ids in 0 … 7"),
        (8, 4, 4, [8], r"non-empty list of expert ids in 0 … 7"),
        (8, 4, 4, [1, 1], r"hot experts repeat an id"),
    ],
)
def test_placement_errors(
    experts: int, ep: int, redundant: int, hot: list[int] | None, pattern: str
) -> None:
    with pytest.raises(MeshError, match=pattern):
        expert_placement(experts, ep, redundant, hot=hot)


def _placeable(experts: int, ep: int, redundant: int, hot: list[int]) -> bool:
    """Whether any placement exists: a max-flow from replicas to free slots (networkx).

    The copies of each expert flow to EP ranks other than its owner, one per rank, into
    each rank's free slots.
    """
    blocks = _blocks(experts, ep)
    owner = {e: i for i, b in enumerate(blocks) for e in b}
    slots = (experts + redundant) // ep
    g = nx.DiGraph()
    for e, c in enumerate(_copies(experts, redundant, hot)):
        g.add_edge("src", ("e", e), capacity=c)
        for r in range(ep):
            if r != owner[e]:
                g.add_edge(("e", e), ("r", r), capacity=1)
    for r in range(ep):
        g.add_edge(("r", r), "sink", capacity=slots - len(blocks[r]))
    return redundant == 0 or nx.maximum_flow_value(g, "src", "sink") == redundant


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 40), st.booleans())
def test_property_placement(experts: int, ep: int, redundant: int, lowest: bool) -> None:
    hot = list(range(experts)) if lowest else None
    if (experts + redundant) % ep:
        with pytest.raises(MeshError, match="cannot fill"):
            expert_placement(experts, ep, redundant, hot=hot)
        return
    expected_hot = hot if hot is not None else _default_hot(experts, ep)
    placeable = _placeable(experts, ep, redundant, expected_hot)
    if ep > 1 and redundant <= experts and hot is None:
        assert placeable  # the default hot list always fits one copy per expert
    if not placeable:
        with pytest.raises(MeshError, match=r"needs .* redundant replicas"):
            expert_placement(experts, ep, redundant, hot=hot)
        return
    table = expert_placement(experts, ep, redundant, hot=hot)
    _check_placement(table, experts, ep, redundant, expected_hot)
    assert table.tobytes() == expert_placement(experts, ep, redundant, hot=hot).tobytes()
