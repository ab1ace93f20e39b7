"""The graph's template table: every (op, variant) priced once from the op registry.

A node's ``tmpl`` column points at a row of this table, which holds the op's output
shape, its bytes (the output, or the message of a communication), its FLOPs, the HBM
bytes a compute op reads and writes, and the phase it was priced in. Prices come from
the op's :class:`~dagen.graph.ops.OpSpec`.

Example:
    >>> from dagen.graph.ops import Op
    >>> table = PriceTable(dims)  # doctest: +SKIP
    >>> table.id(Op.ATTN_QKV) == table.id(Op.ATTN_QKV)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph import opcost
from dagen.graph.dims import Cost, Dims
from dagen.graph.ops import Op

__all__ = ["PriceTable", "TemplateTable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateTable:
    """The template table as the graph stores it (one entry per template id)."""

    shape: list[tuple[int, ...]]
    nbytes: npt.NDArray[np.int64]
    flops: npt.NDArray[np.float64]
    hbm: npt.NDArray[np.float64]
    phase: npt.NDArray[np.uint8]


class PriceTable:
    """Prices each (op, variant) once; its row number is the node's ``tmpl``."""

    def __init__(self, dims: Dims) -> None:
        self.dims = dims
        self._ids: dict[tuple[int, bool], int] = {}
        """Keyed by the op's code: an int hashes in C, an enum member in Python."""
        self._rows: list[tuple[Cost, float]] = []

    def id(self, op: Op, *, tokens: bool = False) -> int:
        """Template id of ``op``; ``tokens`` prices a send/recv of sampled token ids."""
        key = (int(op), tokens)
        found = self._ids.get(key)
        if found is not None:
            return found
        if key not in self._ids:
            d, spec = self.dims, op.spec
            cost = opcost.token_ids(d) if tokens else spec.cost(d)
            hbm = spec.traffic(d).total if spec.traffic is not None else 0.0
            self._ids[key] = len(self._rows)
            self._rows.append((cost, hbm))
        return self._ids[key]

    def repriced(self, dims: Dims) -> TemplateTable:
        """Every template priced so far, in id order, at other sizes (a serving pool's
        other kind of iteration: :func:`dagen.graph.dims.iteration_mix`)."""
        other = PriceTable(dims)
        for (op, tokens), _ in sorted(self._ids.items(), key=lambda kv: kv[1]):
            other.id(Op.of(op), tokens=tokens)
        return other.tables()

    def tables(self) -> TemplateTable:
        """The table in id order."""
        n = len(self._rows)
        return TemplateTable(
            shape=[c.shape for c, _ in self._rows],
            nbytes=np.array([c.nbytes for c, _ in self._rows], dtype=np.int64),
            flops=np.array([c.flops for c, _ in self._rows], dtype=np.float64),
            hbm=np.array([h for _, h in self._rows], dtype=np.float64),
            phase=np.full(n, int(self.dims.phase), dtype=np.uint8),
        )
