"""The IR contract: lint catches corruption, ids and networkx export are faithful."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from conftest import make_plan

from dagen.errors import GraphError
from dagen.graph.build import build_graph, build_pools
from dagen.graph.ids import IdText
from dagen.graph.ir import (
    COLLECTIVE_OPS,
    COLUMN_DTYPES,
    OP_LABELS,
    Coll,
    EdgeKind,
    Graph,
    Kind,
    Op,
)


@pytest.fixture(scope="module")
def tiny() -> Graph:
    plan = make_plan(tp=2, pp=2, dp=2, ep=4, experts=8, micro_batches=2)
    return build_graph(plan)


def _corrupt(g: Graph, **cols: np.ndarray) -> Graph:
    return dataclasses.replace(g, **cols)


def test_built_graph_lints(tiny: Graph) -> None:
    tiny.lint()


def test_lint_catches_edge_out_of_range(tiny: Graph) -> None:
    dst = tiny.dst.copy()
    dst[5] = tiny.n_nodes
    with pytest.raises(GraphError, match="'dst'"):
        _corrupt(tiny, dst=dst).lint()


def test_lint_catches_backwards_edge(tiny: Graph) -> None:
    i = int(np.flatnonzero(tiny.ekind == EdgeKind.DATA)[3])
    src, dst = tiny.src.copy(), tiny.dst.copy()
    src[i], dst[i] = tiny.dst[i], tiny.src[i]
    with pytest.raises(GraphError, match="program order"):
        _corrupt(tiny, src=src, dst=dst).lint()


def test_lint_catches_cross_rank_data_edge(tiny: Graph) -> None:
    i = int(np.flatnonzero(tiny.ekind == EdgeKind.DATA)[0])
    dst = tiny.dst.copy()
    dst[i] = tiny.n_nodes - 1  # the last node sits on the last rank
    with pytest.raises(GraphError, match="joins two ranks"):
        _corrupt(tiny, dst=dst).lint()


def test_lint_catches_p2p_edge_on_one_rank(tiny: Graph) -> None:
    i = int(np.flatnonzero(tiny.ekind == EdgeKind.P2P)[0])
    dst = tiny.dst.copy()
    dst[i] = tiny.src[i] + 1
    with pytest.raises(GraphError, match="p2p edge stays"):
        _corrupt(tiny, dst=dst).lint()


def test_lint_catches_self_loop(tiny: Graph) -> None:
    dst = tiny.dst.copy()
    dst[0] = tiny.src[0]
    with pytest.raises(GraphError, match="self-loop"):
        _corrupt(tiny, dst=dst).lint()


def test_lint_catches_wrong_column_length(tiny: Graph) -> None:
    with pytest.raises(GraphError, match="'layer'"):
        _corrupt(tiny, layer=tiny.layer[:-1]).lint()


def test_lint_catches_wrong_dtype(tiny: Graph) -> None:
    with pytest.raises(GraphError, match="'rank' has dtype int64"):
        _corrupt(tiny, rank=tiny.rank.astype(np.int64)).lint()


def test_lint_catches_instance_on_a_compute_node(tiny: Graph) -> None:
    inst = tiny.inst.copy()
    inst[int(np.flatnonzero(tiny.kind == Kind.COMPUTE)[0])] = 0
    with pytest.raises(GraphError, match="inst must be set exactly"):
        _corrupt(tiny, inst=inst).lint()


def test_lint_catches_peer_out_of_range(tiny: Graph) -> None:
    aux = tiny.aux.copy()
    aux[int(np.flatnonzero(tiny.kind == Kind.SEND)[0])] = tiny.mesh.world
    with pytest.raises(GraphError, match="peer"):
        _corrupt(tiny, aux=aux).lint()


def test_to_networkx_round_trip(tiny: Graph) -> None:
    nxg = tiny.to_networkx()
    ids = tiny.node_ids(np.arange(tiny.n_nodes))
    assert list(nxg.nodes) == ids
    got = {
        name: np.array([a[name] for _, a in nxg.nodes(data=True)])
        for name in ("rank", "layer", "mb", "step", "expert", "inst", "aux")
    }
    for name, values in got.items():
        np.testing.assert_array_equal(values, getattr(tiny, name))
    ops = [a["op"] for _, a in nxg.nodes(data=True)]
    assert ops == [OP_LABELS[o] for o in tiny.op]
    kinds = [a["kind"] for _, a in nxg.nodes(data=True)]
    assert kinds == [Kind(k).label for k in tiny.kind]
    nbytes = np.array([a["bytes"] for _, a in nxg.nodes(data=True)])
    np.testing.assert_array_equal(nbytes, tiny.tmpl_bytes[tiny.tmpl])
    stages = np.array([a["stage"] for _, a in nxg.nodes(data=True)])
    np.testing.assert_array_equal(stages, tiny.mesh.stage[tiny.rank])
    edges = Counter((u, v, k) for u, v, k in nxg.edges(data="kind"))
    want = Counter(
        (ids[s], ids[d], EdgeKind(k).label)
        for s, d, k in zip(tiny.src.tolist(), tiny.dst.tolist(), tiny.ekind.tolist(), strict=True)
    )
    assert edges == want


def test_to_networkx_refuses_large_graphs(tiny: Graph) -> None:
    with pytest.raises(GraphError, match="over the limit"):
        tiny.to_networkx(max_nodes=10)


def test_node_id_format(tiny: Graph) -> None:
    assert tiny.node_id(0) == "r0/s0/mb0/embed"
    expert = int(np.flatnonzero(tiny.op == Op.MOE_EXPERT)[0])
    assert tiny.node_id(expert) == "r0/s0/L0/mb0/moe.expert.e0"


def _id_graphs() -> list[Graph]:
    moe = {"experts": 8, "top_k": 2, "ep": 2}
    prefill = make_plan(pp=2, tp=2, micro_batches=2, batch=4, **moe)
    decode = make_plan(tp=2, dp=2, phase="decode", decode_steps=2, gen_len=4, batch=8, **moe)
    both = build_pools([("prefill", prefill), ("decode", decode)])
    return [build_graph(prefill), build_graph(decode), both]


@pytest.mark.parametrize("g", _id_graphs(), ids=["prefill", "decode-steps", "two-pools"])
def test_one_node_ids_match_the_column_path_on_every_node(g: Graph) -> None:
    every = np.arange(g.n_nodes)
    text = IdText(g)
    assert g.n_nodes > 64
    assert [text.one(int(i)) for i in every] == text.ids(every)
    assert len(set(text.ids(every))) == g.n_nodes


def test_nbytes_counts_node_and_edge_columns(tiny: Graph) -> None:
    per_node = sum(np.dtype(COLUMN_DTYPES[c]).itemsize for c in Graph.NODE_COLUMNS)
    per_edge = sum(np.dtype(COLUMN_DTYPES[c]).itemsize for c in Graph.EDGE_COLUMNS)
    assert per_node == 26 and per_edge == 9
    assert tiny.nbytes() == per_node * tiny.n_nodes + per_edge * tiny.n_edges


def test_collective_ops_match_their_labels() -> None:
    words = {
        "allreduce": Coll.ALL_REDUCE,
        "allgather": Coll.ALL_GATHER,
        "reducescatter": Coll.REDUCE_SCATTER,
        "dispatch": Coll.ALL_TO_ALL,
        "combine": Coll.ALL_TO_ALL,
        "etp_reduce": Coll.ALL_REDUCE,
    }
    for op in Op:
        word = next((w for w in words if op.label.endswith(w)), None)
        if word is None:
            assert op not in COLLECTIVE_OPS
        else:
            assert COLLECTIVE_OPS[op][1] is words[word], op
