"""The cost-model protocol: any model prices the nodes, the estimate follows it exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest
from conftest import make_plan

import dagen
from dagen.cost import (
    CostModel,
    CostModelError,
    Roofline,
    Scaled,
    TableModel,
    default_cost_model,
    estimate,
)
from dagen.graph.build import build_graph
from dagen.graph.ir import Graph, Kind, Op
from dagen.plan.model import Targets
from dagen.plan.presets import PRESETS


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(make_plan(pp=2, tp=2, micro_batches=2, batch=4, experts=8, ep=2))


def test_the_default_model_is_the_roofline_and_satisfies_the_protocol() -> None:
    model = default_cost_model()
    assert isinstance(model, Roofline) and isinstance(model, CostModel)
    assert model.name == "roofline"


def test_doubling_every_duration_doubles_the_makespan_exactly(graph: Graph) -> None:
    base = estimate(graph)
    double = estimate(graph, cost_model=Scaled(default_cost_model(), 2.0))
    assert double.makespan_s == 2 * base.makespan_s
    np.testing.assert_array_equal(double.start_s, 2 * base.start_s)
    assert double.cost_model == "roofline×2"
    assert double.ttft_s == 2 * base.ttft_s  # type: ignore[operator]


def test_a_table_model_is_honoured_node_by_node(graph: Graph) -> None:
    table = {op: (1 + int(op)) * 1e-6 for op in Op if op.spec.kind is Kind.COMPUTE}
    model = TableModel(table, default_cost_model())
    seconds = model.node_seconds(graph)
    compute = graph.kind == Kind.COMPUTE
    want = np.array([table[Op.of(int(o))] for o in graph.op[compute]])
    np.testing.assert_array_equal(seconds[compute], want)
    np.testing.assert_array_equal(seconds[~compute], Roofline().node_seconds(graph)[~compute])
    est = estimate(graph, cost_model=model)
    np.testing.assert_allclose(est.duration_s[compute], want, rtol=1e-12)


class _Broken:
    def __init__(self, make: object) -> None:
        self.make = make

    @property
    def name(self) -> str:
        return "broken"

    def node_seconds(self, graph: Graph) -> npt.NDArray[np.float64]:
        return self.make(graph)  # type: ignore[operator, no-any-return]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda g: np.zeros(g.n_nodes - 1), "durations for"),
        (lambda g: np.full(g.n_nodes, np.nan), "not a finite number"),
        (lambda g: -np.ones(g.n_nodes), "not a finite number"),
    ],
)
def test_a_model_that_prices_badly_is_refused(graph: Graph, make: object, match: str) -> None:
    with pytest.raises(CostModelError, match=match):
        estimate(graph, cost_model=_Broken(make))


def test_analyse_takes_a_cost_model_and_judges_with_its_estimate() -> None:
    plan = make_plan(layers=2, batch=8, prompt_len=256)
    ttft = estimate(build_graph(plan)).ttft_s
    assert ttft is not None
    claim = dataclasses.replace(plan, targets=Targets(ttft_s=ttft * 1.5))
    holds = dagen.analyse(claim)
    slower = dagen.analyse(claim, cost_model=Scaled(default_cost_model(), 2.0))
    fast, slow = (next(f for f in a.findings if f.code == "COST-TTFT") for a in (holds, slower))
    assert fast.data["verdict"] == "holds"
    assert slow.data["verdict"] == "fails"
    assert slower.estimate is not None and slower.estimate.verdicts


def test_hardware_given_to_estimate_prices_every_pool_on_it(graph: Graph) -> None:
    hopper = estimate(graph)
    b200 = dagen.load_plan("samples/seed-moe-10b-fixed.yaml").hardware
    blackwell = dataclasses.replace(b200, **{k: v for k, v in PRESETS["B200"].items()})
    faster = estimate(graph, hardware=blackwell)
    assert faster.makespan_s < hopper.makespan_s
    assert faster.memory.capacity_bytes == blackwell.capacity_bytes
