"""Ranks as n-d arrays, and groups as "move the dimension last, reshape".

The two decompositions of :mod:`dagen.mesh.ranks` are two views of ``arange(world)``:

* the attention grid: the order string's slots, fastest first, as C-order axes
  (slowest first), so ``rank = Σ coord · stride``;
* the expert grid: each pipeline stage's ranks, taken in the attention grid's order with
  the ``pp`` axis skipped, unflattened into the expert slots (``pp`` kept as its own
  axis). Where the slots before ``pp`` hold as many ranks under both decompositions
  (Megatron-Core's condition), this is exactly Megatron's expert rank generator; where
  they do not, an expert group spans ranks on both sides of ``pp``, as vLLM's EP group
  over TP·PCP·DP does.

NOTE: vLLM's ``-tp 2 -pp 2 -dp 2 --enable-expert-parallel`` on 8 ranks. Order
``tp-cp-pp-dp``: tp stride 1, pp stride 2, dp stride 4. Stage 0 holds ranks 0, 1, 4, 5
(stage index 0…3 = tp + 2·dp), so its EP4 group is [0, 1, 4, 5]; stage 1's is
[2, 3, 6, 7]. No single stride describes [0, 1, 4, 5].

>>> g = attention_grid(("tp", "cp", "pp", "dp", "ep"), {"tp": 2, "cp": 1, "pp": 2, "dp": 2, "ep": 1}, 8)
>>> e, names = expert_grid(g, ("tp", "cp", "pp", "dp", "ep"), {"tp": 1, "cp": 1, "pp": 2, "dp": 1, "ep": 4})
>>> groups(e, names, ("ep",)).tolist()
[[0, 1, 4, 5], [2, 3, 6, 7]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

__all__ = ["attention_grid", "expert_grid", "groups", "index_and_position"]

IntArray = npt.NDArray[np.int32]


def attention_grid(order: tuple[str, ...], sizes: Mapping[str, int], world: int) -> IntArray:
    """Ranks as an n-d array with axes slowest-first (C order), named ``reversed(order)``."""
    return np.arange(world, dtype=np.int32).reshape([sizes[n] for n in reversed(order)])


def expert_grid(
    attention: IntArray, order: tuple[str, ...], sizes: Mapping[str, int]
) -> tuple[IntArray, tuple[str, ...]]:
    """The expert grid and its axis names: ``pp`` first, then the other slots slowest first.

    Each stage's ranks, in the attention grid's order with ``pp`` skipped, are unflattened
    into the expert slot ``sizes`` (see the module docstring).
    """
    names = tuple(reversed(order))
    pp_axis = names.index("pp")
    rest = tuple(n for n in names if n != "pp")
    by_stage = np.moveaxis(attention, pp_axis, 0).reshape(attention.shape[pp_axis], -1)
    grid = by_stage.reshape([attention.shape[pp_axis], *(sizes[n] for n in rest)])
    return grid, ("pp", *rest)


def groups(grid: IntArray, names: tuple[str, ...], span: tuple[str, ...]) -> IntArray:
    """Groups spanning the axes ``span``: move them last (slowest first), reshape.

    Rows ascend (a stage's ranks rise with its index in either grid) and are sorted by
    their first member.
    """
    moved = [i for i, n in enumerate(names) if n in span]
    kept = [i for i, n in enumerate(names) if n not in span]
    size = math.prod(grid.shape[i] for i in moved)
    table = grid.transpose(kept + moved).reshape(-1, size)
    # The expert grid's leading pp axis is not the slowest in rank terms; sort the rows.
    return np.ascontiguousarray(table[np.argsort(table[:, 0], kind="stable")])


def index_and_position(table: IntArray) -> tuple[IntArray, IntArray]:
    """int32 ``[world]`` twice: each rank's row in ``table`` and its column there."""
    n, size = table.shape
    index = np.empty(n * size, dtype=np.int32)
    position = np.empty(n * size, dtype=np.int32)
    index[table.ravel()] = np.repeat(np.arange(n, dtype=np.int32), size)
    position[table.ravel()] = np.tile(np.arange(size, dtype=np.int32), n)
    return index, position
