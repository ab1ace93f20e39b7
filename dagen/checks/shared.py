"""What the checks of one :func:`~dagen.checks.check_graph` run share: the graph's derived
arrays (:class:`~dagen.graph.algo.derived.Derived`), the plan's expected op table, and
what earlier checks proved.

A check called on its own builds a fresh :class:`Shared`; :func:`dagen.checks.check_graph`
builds one and hands it to every check, so each array is computed once.

Example:
    >>> sh = Shared(graph)  # doctest: +SKIP
    >>> sh.expected.pp == graph.mesh.sizes["pp"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dagen.checks.expect import Expected, expected
from dagen.graph.algo.derived import Derived
from dagen.graph.ir import Graph

__all__ = ["Shared"]


class Shared(Derived):
    """:class:`Derived` arrays, the expected op table, and the run's proofs so far."""

    __slots__ = ("certified", "members_exact")

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        self.certified = False
        """A check verified a schedule key (:mod:`dagen.graph.algo.certify`) on this graph."""
        self.members_exact = False
        """A check found every collective instance joined by exactly its group's members."""

    @property
    def expected(self) -> Expected:
        """The expected op table of the graph's pool (:func:`dagen.checks.expect.expected`;
        the per-pool checks run on one pool's view of a multi-pool graph)."""
        g = self.graph
        out: Expected = self._get("expected", lambda: expected(g.pools[0], g.model))
        return out
