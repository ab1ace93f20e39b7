"""Protobuf wire encoding column by column: one message per row, no Python object per row.

A :class:`Ragged` is a column of byte strings (a flat ``uint8`` buffer and row offsets).
Fields are encoded for every row at once (:func:`varints`, :func:`scalar`,
:func:`delimited`, :func:`packed`) and joined row-wise (:func:`concat`) in field-number
order, which is the order protobuf's own serializer writes; tests check that every row
parses with the ``protobuf`` package and serializes back to the same bytes.

Encoding rules (https://protobuf.dev/programming-guides/encoding/): a field is its tag
(``number << 3 | wire type``, as a varint) then a varint (wire type 0) or a varint length
and that many bytes (wire type 2: strings, messages, packed repeated scalars). proto3
leaves out a scalar field equal to zero unless it belongs to a ``oneof``.

Example:
    >>> r = concat(scalar(1, np.array([1, 300], dtype=np.uint64)), const(b"\\x10\\x01", 2))
    >>> [r.row(i).hex() for i in range(2)]
    ['08011001', '08ac021001']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LEN",
    "VARINT",
    "Ragged",
    "concat",
    "const",
    "delimited",
    "frame",
    "group",
    "lines",
    "packed",
    "scalar",
    "strings",
    "tag",
    "take",
    "varints",
]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

VARINT = 0
"""Wire type of integers, booleans and enums."""
LEN = 2
"""Wire type of strings, bytes, messages and packed repeated scalars."""
_MAX_VARINT = 10
"""Bytes of the longest varint (a 64-bit value)."""


@dataclass(frozen=True, slots=True)
class Ragged:
    """Byte strings in a column: row ``i`` is ``data[off[i]:off[i + 1]]``."""

    data: U8
    off: I64
    """``n + 1`` offsets, ``off[0] == 0`` and ``off[-1] == len(data)``."""

    @property
    def n(self) -> int:
        return int(self.off.shape[0]) - 1

    @property
    def lens(self) -> I64:
        lens: I64 = np.diff(self.off)
        return lens

    def row(self, i: int) -> bytes:
        """Row ``i`` as bytes."""
        return self.data[self.off[i] : self.off[i + 1]].tobytes()


def _offsets(lens: I64) -> I64:
    off = np.zeros(lens.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    return off


def _prefixed(head: bytes, values: npt.ArrayLike, keep: Bool | None = None) -> Ragged:
    """``head`` then the varint of each value, in rows where ``keep`` (empty elsewhere):
    built as one padded byte matrix and compressed, with no row-wise join."""
    v = np.asarray(values, dtype=np.uint64)
    width = max(1, -(-int(v.max(initial=0)).bit_length() // 7))  # longest varint here
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((v[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    lens = np.ones(v.shape[0], dtype=np.int64)
    for k in range(1, width):
        lens += v >= np.uint64(1 << (7 * k))
    col = np.arange(width)[None, :]
    groups |= (col < (lens - 1)[:, None]).astype(np.uint8) << np.uint8(7)
    fixed = np.broadcast_to(np.frombuffer(head, dtype=np.uint8), (v.shape[0], len(head)))
    lens += len(head)
    if keep is not None:
        lens[~keep] = 0
    matrix = np.hstack([fixed, groups])
    return Ragged(matrix[np.arange(matrix.shape[1])[None, :] < lens[:, None]], _offsets(lens))


def varints(values: npt.ArrayLike) -> Ragged:
    """One varint per value (non-negative integers below 2⁶⁴)."""
    return _prefixed(b"", values)


@functools.cache
def tag(number: int, wire: int) -> bytes:
    """The encoded tag of field ``number`` with wire type ``wire``."""
    return varints([number << 3 | wire]).row(0)


def const(chunk: bytes, n: int, mask: Bool | None = None) -> Ragged:
    """``chunk`` in every row (or only where ``mask``), empty elsewhere."""
    lens = np.full(n, len(chunk), dtype=np.int64)
    if mask is not None:
        lens[~mask] = 0
    rows = int(np.count_nonzero(lens)) if len(chunk) else 0
    data = np.tile(np.frombuffer(chunk, dtype=np.uint8), rows)
    return Ragged(data, _offsets(lens))


def _empty_where(r: Ragged, mask: Bool | None) -> Ragged:
    if mask is None or bool(mask.all()):
        return r
    lens = np.where(mask, r.lens, 0)
    keep = np.repeat(mask, r.lens)
    return Ragged(r.data[keep], _offsets(lens))


def concat(*parts: Ragged) -> Ragged:
    """Row-wise concatenation: row ``i`` is every part's row ``i``, in order."""
    n = parts[0].n
    off = _offsets(sum((p.lens for p in parts), np.zeros(n, dtype=np.int64)))
    data = np.empty(int(off[-1]), dtype=np.uint8)
    base = off[:-1].copy()
    for p in parts:
        lens = p.lens
        data[np.arange(p.data.shape[0]) + np.repeat(base - p.off[:-1], lens)] = p.data
        base += lens
    return Ragged(data, off)


def take(r: Ragged, idx: I64) -> Ragged:
    """Rows ``idx`` of ``r``, in that order (repeats allowed)."""
    lens = r.lens[idx]
    off = _offsets(lens)
    at = np.arange(int(off[-1])) + np.repeat(r.off[idx] - off[:-1], lens)
    return Ragged(r.data[at], off)


def group(r: Ragged, counts: I64) -> Ragged:
    """Join runs of consecutive rows: row ``i`` of the result is the next ``counts[i]``
    rows of ``r`` (``counts`` sums to ``r.n``)."""
    return Ragged(r.data, r.off[_offsets(np.asarray(counts, dtype=np.int64))])


def scalar(number: int, values: npt.ArrayLike, mask: Bool | None = None) -> Ragged:
    """A varint field in every row where ``mask`` (default: where the value is non-zero,
    proto3's rule outside a ``oneof``)."""
    v = np.asarray(values, dtype=np.uint64)
    return _prefixed(tag(number, VARINT), v, v != 0 if mask is None else mask)


def delimited(number: int, payload: Ragged, mask: Bool | None = None) -> Ragged:
    """A length-delimited field holding each row's ``payload`` where ``mask`` (default:
    where the payload is not empty)."""
    lens = payload.lens
    keep = lens > 0 if mask is None else mask
    return concat(_prefixed(tag(number, LEN), lens, keep), _empty_where(payload, keep))


def packed(number: int, values: npt.ArrayLike, counts: I64) -> Ragged:
    """A packed repeated varint field: row ``i`` holds the next ``counts[i]`` values
    (absent when it holds none)."""
    return delimited(number, group(varints(values), counts))


def strings(items: list[bytes]) -> Ragged:
    """A column of the given byte strings."""
    lens = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
    return Ragged(np.frombuffer(b"".join(items), dtype=np.uint8), _offsets(lens))


def lines(text: bytes) -> Ragged:
    """A column of the lines of ``text``, each ended by ``\\n`` (which is dropped)."""
    raw = np.frombuffer(text, dtype=np.uint8)
    newline = raw == ord("\n")
    ends = np.flatnonzero(newline)
    lens = np.diff(ends, prepend=-1) - 1
    return Ragged(raw[~newline], _offsets(lens.astype(np.int64)))


def frame(messages: Ragged) -> bytes:
    """The messages as one length-prefixed stream (a varint length before each)."""
    return concat(varints(messages.lens), messages).data.tobytes()
