"""The groups dagen's mesh gives an imported plan, against each framework's own.

Every expected list below was derived by reading the framework's group construction in
its wheel's source (the file and function are named per framework, in ``V``, ``S`` and
``M``), never by running it: a group per row, rows in any order, members ascending.
Dimensions a case compares but does not list hold only singleton groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dagen.mesh import mesh_of
from dagen.plan.importers import import_plan

HF = Path(__file__).parent / "data" / "hf"
MIXTRAL = HF / "mixtral-8x7b.json"
"""MoE: 32 heads, 8 KV heads, 8 experts of FFN 14336, 32 layers."""
LLAMA = HF / "llama-3-70b.json"
"""Dense: 64 heads, 8 KV heads, 80 layers."""

V = "vllm/distributed/parallel_state.py initialize_model_parallel (vLLM 0.33.0): all_ranks reshaped (-1, DP, PP, PCP, TP), TP/PCP/PP/DP groups by transposing that axis last; the MoE group is all_ranks.transpose(1, 2) reshaped to DP·PCP·TP"
S = "sglang/srt/distributed/parallel_state.py initialize_model_parallel (SGLang 0.5.23): the loops building _ATTN_TP, _ATTN_CP, _MOE_EP, _MOE_TP, _MOE_DP inside each TP group and _PP across them"
M = "megatron/core/parallel_state.py initialize_model_parallel (Megatron-Core 0.16.1): RankGenerator(tp, ep=1, dp, pp, cp) and RankGenerator(etp, ep, edp, pp, cp=1) over the order, generate_masked_orthogonal_rank_groups"


@dataclass(frozen=True)
class Case:
    name: str
    framework: str
    argv: str
    model: Path
    dims: str
    """The dagen dimensions the framework builds a group for."""
    source: str
    """Where the expected groups come from."""
    groups: dict[str, list[list[int]]]


CASES = [
    Case(
        "V1",
        "vllm",
        "-tp 2 -pp 2 -dp 2 --enable-expert-parallel",
        MIXTRAL,
        "tp cp pp dp ep etp",
        V,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7]],
            "pp": [[0, 2], [1, 3], [4, 6], [5, 7]],
            "dp": [[0, 4], [1, 5], [2, 6], [3, 7]],
            "ep": [[0, 1, 4, 5], [2, 3, 6, 7]],
        },
    ),
    Case(
        "V2",
        "vllm",
        "-tp 2 -pp 2 -dp 2",
        MIXTRAL,
        "tp cp pp dp ep etp",
        V,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7]],
            "pp": [[0, 2], [1, 3], [4, 6], [5, 7]],
            "dp": [[0, 4], [1, 5], [2, 6], [3, 7]],
            "etp": [[0, 1, 4, 5], [2, 3, 6, 7]],
        },
    ),
    Case(
        "V3",
        "vllm",
        "-tp=2 -pcp 2 -pp 2 -dp 2 -ep",
        MIXTRAL,
        "tp cp pp dp ep etp",
        V,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "cp": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]],
            "pp": [[0, 4], [1, 5], [2, 6], [3, 7], [8, 12], [9, 13], [10, 14], [11, 15]],
            "dp": [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]],
            "ep": [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]],
        },
    ),
    Case(
        "V4",
        "vllm",
        "--tensor-parallel-size 4 --data-parallel-size=2 --enable-expert-parallel",
        MIXTRAL,
        "tp cp pp dp ep etp",
        V,
        {
            "tp": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "dp": [[0, 4], [1, 5], [2, 6], [3, 7]],
            "ep": [[0, 1, 2, 3, 4, 5, 6, 7]],
        },
    ),
    Case(
        "V5",
        "vllm",
        "-tp 2 -pp 4",
        LLAMA,
        "tp cp pp dp",
        V,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7]],
            "pp": [[0, 2, 4, 6], [1, 3, 5, 7]],
        },
    ),
    Case(
        "S1",
        "sglang",
        "--tp-size 8 --dp-size 8 --enable-dp-attention --moe-a2a-backend deepep",
        MIXTRAL,
        "tp cp pp ep etp edp",
        S,
        {
            "ep": [[0, 1, 2, 3, 4, 5, 6, 7]],
        },
    ),
    Case(
        "S2",
        "sglang",
        "--tp-size 8 --attn-dp-size 2 --ep-size 4",
        MIXTRAL,
        "tp cp pp ep etp edp",
        S,
        {
            "tp": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "ep": [[0, 2, 4, 6], [1, 3, 5, 7]],
            "etp": [[0, 1], [2, 3], [4, 5], [6, 7]],
        },
    ),
    Case(
        "S3",
        "sglang",
        "--tp-size 4 --pp-size 2 --ep-size 2 --dp-size 2",
        MIXTRAL,
        "tp cp pp ep etp",
        S,
        {
            "tp": [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]],
            "ep": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]],
            "etp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "pp": [[0, 4], [1, 5], [2, 6], [3, 7], [8, 12], [9, 13], [10, 14], [11, 15]],
        },
    ),
    Case(
        "S4",
        "sglang",
        "--tp-size 8 --attn-cp-size 2 --moe-dp-size 2 --ep 4",
        MIXTRAL,
        "tp cp pp ep etp edp",
        S,
        {
            "tp": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "cp": [[0, 4], [1, 5], [2, 6], [3, 7]],
            "ep": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "edp": [[0, 4], [1, 5], [2, 6], [3, 7]],
        },
    ),
    Case(
        "S5",
        "sglang",
        "--tp-size=4 --pp-size 2 --attn-dp-size 2 --ep-size 4",
        MIXTRAL,
        "tp cp pp ep etp edp",
        S,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7]],
            "ep": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "pp": [[0, 4], [1, 5], [2, 6], [3, 7]],
        },
    ),
    Case(
        "M1",
        "megatron",
        "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --expert-model-parallel-size 4 --world-size 16",
        MIXTRAL,
        "tp cp dp pp ep etp edp",
        M,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "dp": [[0, 2, 4, 6], [1, 3, 5, 7], [8, 10, 12, 14], [9, 11, 13, 15]],
            "pp": [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]],
            "ep": [[0, 2, 4, 6], [1, 3, 5, 7], [8, 10, 12, 14], [9, 11, 13, 15]],
            "etp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
        },
    ),
    Case(
        "M2",
        "megatron",
        "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --context-parallel-size 2 --expert-model-parallel-size 2 --expert-tensor-parallel-size 1 --world-size 16",
        MIXTRAL,
        "tp cp dp pp ep etp edp",
        M,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "cp": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]],
            "dp": [[0, 4], [1, 5], [2, 6], [3, 7], [8, 12], [9, 13], [10, 14], [11, 15]],
            "pp": [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]],
            "ep": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "edp": [[0, 2, 4, 6], [1, 3, 5, 7], [8, 10, 12, 14], [9, 11, 13, 15]],
        },
    ),
    Case(
        "M3",
        "megatron",
        "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --expert-model-parallel-size 2 --expert-tensor-parallel-size 1 --use-tp-pp-dp-mapping --world-size 16",
        MIXTRAL,
        "tp cp dp pp ep etp edp",
        M,
        {
            "tp": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "dp": [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]],
            "pp": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]],
            "ep": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
            "edp": [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]],
        },
    ),
    Case(
        "M4",
        "megatron",
        "--tensor-model-parallel-size 4 --expert-model-parallel-size 8 --expert-tensor-parallel-size 1 --world-size 8",
        MIXTRAL,
        "tp cp dp pp ep etp edp",
        M,
        {
            "tp": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "dp": [[0, 4], [1, 5], [2, 6], [3, 7]],
            "ep": [[0, 1, 2, 3, 4, 5, 6, 7]],
        },
    ),
    Case(
        "M5",
        "megatron",
        "--tensor-model-parallel-size 8 --pipeline-model-parallel-size 2 --context-parallel-size 2 --sequence-parallel --world-size 64",
        LLAMA,
        "tp cp dp pp",
        M,
        {
            "tp": [
                [0, 1, 2, 3, 4, 5, 6, 7],
                [8, 9, 10, 11, 12, 13, 14, 15],
                [16, 17, 18, 19, 20, 21, 22, 23],
                [24, 25, 26, 27, 28, 29, 30, 31],
                [32, 33, 34, 35, 36, 37, 38, 39],
                [40, 41, 42, 43, 44, 45, 46, 47],
                [48, 49, 50, 51, 52, 53, 54, 55],
                [56, 57, 58, 59, 60, 61, 62, 63],
            ],
            "cp": [
                [0, 8],
                [1, 9],
                [2, 10],
                [3, 11],
                [4, 12],
                [5, 13],
                [6, 14],
                [7, 15],
                [16, 24],
                [17, 25],
                [18, 26],
                [19, 27],
                [20, 28],
                [21, 29],
                [22, 30],
                [23, 31],
                [32, 40],
                [33, 41],
                [34, 42],
                [35, 43],
                [36, 44],
                [37, 45],
                [38, 46],
                [39, 47],
                [48, 56],
                [49, 57],
                [50, 58],
                [51, 59],
                [52, 60],
                [53, 61],
                [54, 62],
                [55, 63],
            ],
            "dp": [
                [0, 16],
                [1, 17],
                [2, 18],
                [3, 19],
                [4, 20],
                [5, 21],
                [6, 22],
                [7, 23],
                [8, 24],
                [9, 25],
                [10, 26],
                [11, 27],
                [12, 28],
                [13, 29],
                [14, 30],
                [15, 31],
                [32, 48],
                [33, 49],
                [34, 50],
                [35, 51],
                [36, 52],
                [37, 53],
                [38, 54],
                [39, 55],
                [40, 56],
                [41, 57],
                [42, 58],
                [43, 59],
                [44, 60],
                [45, 61],
                [46, 62],
                [47, 63],
            ],
            "pp": [
                [0, 32],
                [1, 33],
                [2, 34],
                [3, 35],
                [4, 36],
                [5, 37],
                [6, 38],
                [7, 39],
                [8, 40],
                [9, 41],
                [10, 42],
                [11, 43],
                [12, 44],
                [13, 45],
                [14, 46],
                [15, 47],
                [16, 48],
                [17, 49],
                [18, 50],
                [19, 51],
                [20, 52],
                [21, 53],
                [22, 54],
                [23, 55],
                [24, 56],
                [25, 57],
                [26, 58],
                [27, 59],
                [28, 60],
                [29, 61],
                [30, 62],
                [31, 63],
            ],
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_groups_follow_the_framework(case: Case, tmp_path: Path) -> None:
    imported = import_plan(
        case.framework, case.argv.split(), model_config=case.model, output=tmp_path / "p.yaml"
    )
    mesh = mesh_of(imported.plan)
    for dim in case.dims.split():
        got = sorted(sorted(g) for g in mesh.groups(dim).tolist())
        if dim in case.groups:
            assert got == sorted(case.groups[dim]), (case.name, dim, case.source)
        else:
            assert all(len(g) == 1 for g in got), (case.name, dim, got)


def test_at_least_twelve_flag_sets_over_three_frameworks() -> None:
    assert len(CASES) >= 12
    assert {c.framework for c in CASES} == {"vllm", "sglang", "megatron"}
