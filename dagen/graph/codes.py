"""The small closed sets the graph IR is coded in: node and edge kinds, group dimensions,
collectives, phases and op blocks.

Each is an ``IntEnum`` whose value is the code stored in a uint8 column and whose
``label`` is the readable name the outputs print.

>>> Kind.SEND.label, Coll.ALL_TO_ALL.label, GroupKind.EDP.label, Phase.DECODE.label
('send', 'all-to-all', 'edp', 'decode')
"""

from __future__ import annotations

import enum

__all__ = ["Block", "Coll", "EdgeKind", "GroupKind", "Kind", "Phase"]


class _Coded(enum.IntEnum):
    """A small integer code of a column, with a readable ``label``."""

    @property
    def label(self) -> str:
        """The member's name in lower case (``compute``, ``p2p``, ``tp``, …)."""
        return self.name.lower()


class Kind(_Coded):
    """What a node is."""

    COMPUTE = 0
    COLLECTIVE = 1
    SEND = 2
    RECV = 3


class EdgeKind(_Coded):
    """Why an edge exists."""

    DATA = 0
    ORDER = 1
    P2P = 2


class GroupKind(_Coded):
    """Which mesh dimension a process group spans (see :mod:`dagen.mesh`)."""

    TP = 0
    CP = 1
    DP = 2
    PP = 3
    EP = 4
    ETP = 5
    EDP = 6


class Coll(_Coded):
    """Collective operation of an instance."""

    ALL_REDUCE = 0
    ALL_GATHER = 1
    REDUCE_SCATTER = 2
    ALL_TO_ALL = 3

    @property
    def label(self) -> str:
        """``all-reduce``, ``all-gather``, ``reduce-scatter``, ``all-to-all``."""
        return self.name.lower().replace("_", "-")


class Phase(_Coded):
    """The phase a template (one op's priced instance) belongs to.

    Inference has two; training would add forward, backward and optimizer phases as new
    members, and the same ops would be priced once per phase instead of twinned.
    """

    PREFILL = 0
    DECODE = 1


class Engine(_Coded):
    """The kind of kernel a compute op runs, which sets its cost model's constants."""

    NONE = 0
    """Not a kernel (communication)."""
    GEMM = 1
    """A matmul against weights: streams its weights at small m, compute-bound at large."""
    ATTENTION = 2
    """The attention core: reads the KV cache in decode, compute-bound in prefill."""
    ELEMENTWISE = 3
    """Norms, residual adds, top-k, sampling, lookups: memory-bound and small."""


class Block(_Coded):
    """The part of the model an op belongs to (what the overview groups by)."""

    EMBEDDING = 0
    ATTENTION = 1
    FFN = 2
    MOE = 3
    HEAD = 4
    PIPELINE = 5
