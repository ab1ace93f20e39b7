"""Read a directory of Chakra traces back and check the rules ASTRA-sim relies on.

:func:`read_traces` parses ``<name>.<rank>.et`` and ``comm_group.json`` with the
``protobuf`` package (any producer's traces, not only dagen's); :func:`check_traces`
returns every broken rule as a :class:`Problem` (docs/chakra.md, "Rules"), and
:func:`dagen.export.chakra_replay.replay` runs the traces. Each rule was probed on a real
ASTRA-sim run (issue 12); breaking one makes ASTRA-sim abort, stall or silently misread:

* files ``NAME.0.et … NAME.<N-1>.et``, each a ``GlobalMetadata`` then at least one node;
* node ids unique in a file, every dependency (data or control) in the same file;
* only compute, collective, send and recv nodes; only all-reduce, all-gather, all-to-all
  and reduce-scatter collectives;
* attributes in the members ASTRA-sim reads (:data:`~dagen.export.chakra_schema.ATTR_TYPES`),
  ``num_ops`` ≥ 1 on compute nodes, ``is_cpu_op`` false on communication nodes;
* ``pg_name`` an integer key ≥ 1 of ``comm_group.json`` whose group holds the rank;
* the members of a group issue identical collective sequences (type and size);
* every send has one recv with the same src, dst, tag and size, and the reverse.

Example:
    >>> traces = read_traces(Path("traces"))  # doctest: +SKIP
    >>> [p.rule for p in check_traces(traces)]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import enum
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from dagen.errors import ExportError
from dagen.export import chakra_schema as et

__all__ = ["Problem", "RankTrace", "Rule", "TraceNode", "Traces", "check_traces", "read_traces"]

_FILE = re.compile(r"^(?P<name>.+)\.(?P<rank>\d+)\.et$")
_KINDS = {et.COMP_NODE, et.COMM_COLL_NODE, et.COMM_SEND_NODE, et.COMM_RECV_NODE}
_COMM = {et.COMM_COLL_NODE, et.COMM_SEND_NODE, et.COMM_RECV_NODE}
_NETWORK = {et.ALL_REDUCE, et.ALL_GATHER, et.ALL_TO_ALL, et.REDUCE_SCATTER}
_REQUIRED = {
    et.COMP_NODE: ("num_ops", "tensor_size"),
    et.COMM_COLL_NODE: ("comm_type", "comm_size", "pg_name", "is_cpu_op"),
    et.COMM_SEND_NODE: ("comm_src", "comm_dst", "comm_tag", "comm_size", "is_cpu_op"),
    et.COMM_RECV_NODE: ("comm_src", "comm_dst", "comm_tag", "comm_size", "is_cpu_op"),
}
"""The attributes each node type must carry."""


class Rule(enum.StrEnum):
    """A rule a trace must keep (docs/chakra.md, "Rules")."""

    FILES = "files"
    METADATA = "metadata"
    EMPTY = "empty"
    IDS = "ids"
    DEPS = "deps"
    NODE_TYPE = "node-type"
    COLLECTIVE = "collective"
    ATTR_TYPE = "attr-type"
    ATTR_MISSING = "attr-missing"
    NUM_OPS = "num-ops"
    CPU_OP = "cpu-op"
    GROUP = "group"
    SEQUENCE = "sequence"
    P2P = "p2p"
    DEADLOCK = "deadlock"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One broken rule: where, what."""

    rule: Rule
    file: str
    node: int | None
    message: str

    def render(self) -> str:
        at = self.file if self.node is None else f"{self.file}: node {self.node}"
        return f"{at}: [{self.rule}] {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceNode:
    """One parsed node (the reader's view; the exporter writes columns, not these)."""

    id: int
    name: str
    type: int
    deps: tuple[int, ...]
    """``data_deps``: what the node waits for (ASTRA-sim's feeder reads only these)."""
    ctrl: tuple[int, ...]
    """``ctrl_deps``, which ASTRA-sim ignores (they must still name nodes of the file)."""
    duration_us: int
    attrs: dict[str, tuple[str | None, Any]]
    """By name: (the ``oneof value`` member set, its value)."""

    def attr(self, name: str) -> Any:
        """The attribute's value, or ``None`` when absent."""
        got = self.attrs.get(name)
        return None if got is None else got[1]


@dataclass(slots=True, kw_only=True)
class RankTrace:
    """One rank's file."""

    rank: int
    file: str
    version: str = ""
    nodes: list[TraceNode] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Traces:
    """A directory of traces: each rank's file and the communicator groups."""

    name: str
    ranks: list[RankTrace]
    groups: dict[str, list[int]]
    problems: list[Problem] = field(default_factory=list)
    """What reading found (file names, metadata, the group file)."""


def _node(msg: Any) -> TraceNode:
    attrs = {}
    for a in msg.attr:
        member = a.WhichOneof("value")
        attrs[a.name] = (member, None if member is None else getattr(a, member))
    return TraceNode(
        id=int(msg.id), name=msg.name, type=int(msg.type),
        deps=tuple(msg.data_deps), ctrl=tuple(msg.ctrl_deps), duration_us=int(msg.duration_micros), attrs=attrs,
    )  # fmt: skip


def _metadata(frame: bytes) -> Any:
    """The ``GlobalMetadata`` in ``frame``, or None when it is not one: a node read as
    metadata parses too (protobuf keeps unknown fields), so a frame that reads as a node
    with a type is a node. The version may be empty (Chakra's own converters leave it so)."""
    try:
        meta = et.GlobalMetadata.FromString(frame)
    except DecodeError:
        return None
    try:
        as_node = et.Node.FromString(frame)
    except DecodeError:
        return meta
    return meta if as_node.type == 0 else None


def _read_rank(path: Path, rank: int, problems: list[Problem]) -> RankTrace:
    trace = RankTrace(rank=rank, file=path.name)
    try:
        frames = list(et.frames(path.read_bytes()))
        trace.nodes = [_node(et.Node.FromString(b)) for b in frames[1:]]
    except (ValueError, OSError, DecodeError) as exc:
        problems.append(Problem(rule=Rule.FILES, file=path.name, node=None,
                                message=f"cannot be read: {exc}"))  # fmt: skip
        return trace
    meta = _metadata(frames[0]) if frames else None
    if meta is None:
        problems.append(Problem(rule=Rule.METADATA, file=path.name, node=None,
                                message="the first message is a node, not a GlobalMetadata"))  # fmt: skip
    else:
        trace.version = meta.version
    return trace


def _files(directory: Path) -> tuple[str, dict[int, Path], list[Problem]]:
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    for p in sorted(directory.iterdir()):
        if m := _FILE.match(p.name):
            found[m["name"]][int(m["rank"])] = p
    if len(found) != 1:
        names = ", ".join(sorted(found)) or "none"
        raise ExportError(f"{directory}: expected the .et files of one trace (NAME.<rank>.et); "
                          f"found names: {names}. Fix: point at one trace's directory.")  # fmt: skip
    name, files = next(iter(found.items()))
    missing = sorted(set(range(max(files) + 1)) - set(files))
    problems = [Problem(rule=Rule.FILES, file=f"{name}.{r}.et", node=None,
                        message="missing: ranks must be numbered 0 … N-1 without gaps")
                for r in missing]  # fmt: skip
    return name, files, problems


def _groups(directory: Path, problems: list[Problem]) -> dict[str, list[int]]:
    try:
        raw = json.loads((directory / et.COMM_GROUP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(rule=Rule.FILES, file=et.COMM_GROUP_FILE, node=None,
                                message=f"cannot be read: {exc}"))  # fmt: skip
        return {}
    ok = isinstance(raw, dict) and all(
        isinstance(v, list) and all(isinstance(r, int) for r in v) for v in raw.values()
    )
    if not ok:
        problems.append(Problem(rule=Rule.FILES, file=et.COMM_GROUP_FILE, node=None,
                                message='expected {"<key>": [rank, …], …}'))  # fmt: skip
        return {}
    return {str(k): list(v) for k, v in raw.items()}


def read_traces(directory: Path) -> Traces:
    """Parse every rank's file and the communicator groups of ``directory``.

    Raises:
        ExportError: the directory holds no trace, or several traces' files.
    """
    name, files, problems = _files(directory)
    ranks = [_read_rank(files[r], r, problems) for r in sorted(files)]
    return Traces(name=name, ranks=ranks, groups=_groups(directory, problems), problems=problems)


def _ids_and_deps(t: RankTrace) -> Iterator[Problem]:
    if not t.nodes:
        yield Problem(rule=Rule.EMPTY, file=t.file, node=None, message="has no node")
    ids = Counter(n.id for n in t.nodes)
    for i in sorted(i for i, c in ids.items() if c > 1):
        yield Problem(rule=Rule.IDS, file=t.file, node=i, message=f"id used {ids[i]} times")
    for n in t.nodes:
        for d in (*n.deps, *n.ctrl):
            if d not in ids or d == n.id:
                yield Problem(rule=Rule.DEPS, file=t.file, node=n.id,
                              message=f"depends on node {d}, which is not in the file")  # fmt: skip


def _attr_types(t: RankTrace, n: TraceNode) -> Iterator[Problem]:
    for name in _REQUIRED.get(n.type, ()):
        if name not in n.attrs:
            yield Problem(rule=Rule.ATTR_MISSING, file=t.file, node=n.id,
                          message=f"{et.NODE_TYPE_NAMES[n.type]} without {name}")  # fmt: skip
    for name, (member, _) in n.attrs.items():
        want = et.ATTR_TYPES.get(name)
        if want is not None and member != want:
            yield Problem(rule=Rule.ATTR_TYPE, file=t.file, node=n.id,
                          message=f"{name} is in {member}; ASTRA-sim reads {want} (else 0)")  # fmt: skip


def _node_rules(t: RankTrace, n: TraceNode) -> Iterator[Problem]:
    if n.type not in _KINDS:
        kind = et.NODE_TYPE_NAMES.get(n.type, str(n.type))
        yield Problem(rule=Rule.NODE_TYPE, file=t.file, node=n.id,
                      message=f"type {kind} is not simulated; use compute, collective, send or recv")  # fmt: skip
        return
    yield from _attr_types(t, n)
    ops = n.attr("num_ops")
    if n.type == et.COMP_NODE and isinstance(ops, int) and ops < 1:
        yield Problem(rule=Rule.NUM_OPS, file=t.file, node=n.id,
                      message=f"num_ops = {ops}; ASTRA-sim's clock never ends below 1")  # fmt: skip
    if n.type in _COMM and n.attr("is_cpu_op") is not False:
        yield Problem(rule=Rule.CPU_OP, file=t.file, node=n.id,
                      message="a communication node needs is_cpu_op = false")  # fmt: skip
    kind = n.attr("comm_type")
    if n.type == et.COMM_COLL_NODE and kind is not None and kind not in _NETWORK:
        label = et.COLL_NAMES.get(kind, str(kind))
        yield Problem(rule=Rule.COLLECTIVE, file=t.file, node=n.id,
                      message=f"{label} is not simulated on the network; lower it to "
                      "all-reduce, all-gather, all-to-all, reduce-scatter or send/recv")  # fmt: skip


def _group_rule(traces: Traces, t: RankTrace, n: TraceNode) -> Iterator[Problem]:
    pg = n.attr("pg_name")
    if not isinstance(pg, str):
        return
    members = traces.groups.get(pg) if pg.isdigit() and int(pg) >= 1 else None
    if members is None:
        yield Problem(rule=Rule.GROUP, file=t.file, node=n.id,
                      message=f"pg_name {pg!r} is not a key ≥ 1 of {et.COMM_GROUP_FILE}")  # fmt: skip
    elif t.rank not in members:
        yield Problem(rule=Rule.GROUP, file=t.file, node=n.id,
                      message=f"rank {t.rank} is not in group {pg} ({members})")  # fmt: skip


def collective_sequences(traces: Traces) -> dict[str, dict[int, list[tuple[Any, Any]]]]:
    """Per group key, per member rank: its collectives' (comm_type, comm_size) in id order."""
    seqs: dict[str, dict[int, list[tuple[Any, Any]]]] = defaultdict(lambda: defaultdict(list))
    for t in traces.ranks:
        for n in sorted(t.nodes, key=lambda n: n.id):
            if n.type == et.COMM_COLL_NODE and isinstance(n.attr("pg_name"), str):
                seqs[n.attr("pg_name")][t.rank].append((n.attr("comm_type"), n.attr("comm_size")))
    return seqs


def _sequences(traces: Traces) -> Iterator[Problem]:
    for pg, by_rank in sorted(collective_sequences(traces).items()):
        members = traces.groups.get(pg, sorted(by_rank))
        first = by_rank.get(members[0], []) if members else []
        for r in members:
            seq = by_rank.get(r, [])
            if seq != first:
                k = next((i for i, (a, b) in enumerate(zip(seq, first, strict=False)) if a != b),
                         min(len(seq), len(first)))  # fmt: skip
                yield Problem(rule=Rule.SEQUENCE, file=f"{traces.name}.{r}.et", node=None,
                              message=f"group {pg}: collective #{k} (type, size) differs from "
                              f"rank {members[0]}'s ({len(seq)} vs {len(first)} collectives); "
                              "the group would deadlock")  # fmt: skip


def p2p_key(n: TraceNode) -> tuple[Any, Any, Any, Any]:
    """(src, dst, tag, size): what pairs a send with its recv."""
    return n.attr("comm_src"), n.attr("comm_dst"), n.attr("comm_tag"), n.attr("comm_size")


def _pairs(traces: Traces) -> Iterator[Problem]:
    ends: dict[int, Counter[tuple[Any, ...]]] = {et.COMM_SEND_NODE: Counter(),
                                                 et.COMM_RECV_NODE: Counter()}  # fmt: skip
    where: dict[tuple[int, tuple[Any, ...]], tuple[str, int]] = {}
    for t in traces.ranks:
        for n in t.nodes:
            if n.type in ends:
                ends[n.type][p2p_key(n)] += 1
                where[(n.type, p2p_key(n))] = (t.file, n.id)
                own = n.attr("comm_src" if n.type == et.COMM_SEND_NODE else "comm_dst")
                if own != t.rank:
                    yield Problem(rule=Rule.P2P, file=t.file, node=n.id,
                                  message=f"names rank {own} as its own end, not {t.rank}")  # fmt: skip
    for kind, other in (
        (et.COMM_SEND_NODE, et.COMM_RECV_NODE),
        (et.COMM_RECV_NODE, et.COMM_SEND_NODE),
    ):
        for key, count in sorted(ends[kind].items(), key=repr):
            if ends[other][key] != count:
                file, node = where[(kind, key)]
                yield Problem(rule=Rule.P2P, file=file, node=node,
                              message=f"{et.NODE_TYPE_NAMES[kind]} (src, dst, tag, size) = {key} "
                              f"has {ends[other][key]} matching {et.NODE_TYPE_NAMES[other]} (want "
                              f"{count}); ASTRA-sim stalls on an unmatched recv")  # fmt: skip


def check_traces(traces: Traces) -> list[Problem]:
    """Every rule each node, each file and the whole directory break (empty: all kept).

    The replay's own finding, a deadlock, comes from
    :func:`dagen.export.chakra_replay.replay`.
    """
    problems = list(traces.problems)
    for t in traces.ranks:
        problems += _ids_and_deps(t)
        for n in t.nodes:
            problems += _node_rules(t, n)
            problems += _group_rule(traces, t, n)
    problems += _sequences(traces)
    problems += _pairs(traces)
    return problems
