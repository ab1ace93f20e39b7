"""The Chakra execution-trace schema as protobuf messages, built when imported.

The schema's one source is ``et_def.proto`` beside this module, written from the field
numbers of mlcommons/chakra ``schema/protobuf/et_def.proto`` (docs/chakra.md). This module
reads that file's small grammar (``syntax``, ``package``, ``message``, ``enum``,
``oneof``, scalar, enum and message fields, ``repeated``) into a
``FileDescriptorProto`` and lets protobuf's own ``message_factory`` make the classes, so
neither protoc nor a generated ``_pb2`` module is needed.

An ``.et`` file is a stream of messages, each preceded by its length as a varint: one
:data:`GlobalMetadata`, then :data:`Node` after :data:`Node` (:func:`frames`).

Example:
    >>> node = Node(id=3, name="r0/s0/mb0/embed", type=COMP_NODE)
    >>> Node.FromString(node.SerializeToString()).name
    'r0/s0/mb0/embed'
    >>> list(frames(varint(2) + b"\\x08\\x01"))
    [b'\\x08\\x01']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "ALL_GATHER",
    "ALL_REDUCE",
    "ALL_TO_ALL",
    "ATTR_TYPES",
    "COLL_NAMES",
    "COMM_COLL_NODE",
    "COMM_GROUP_FILE",
    "COMM_RECV_NODE",
    "COMM_SEND_NODE",
    "COMP_NODE",
    "NODE_TYPE_NAMES",
    "PACKAGE",
    "REDUCE_SCATTER",
    "VERSION",
    "AttributeProto",
    "GlobalMetadata",
    "Node",
    "frames",
    "varint",
]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    name: getattr(_F, f"TYPE_{name.upper()}")
    for name in ("double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
                 "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes")
}  # fmt: skip
_BLOCK = re.compile(r"^(message|enum|oneof)\s+(\w+)\s*\{$")
_FIELD = re.compile(r"^(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+);$")
_VALUE = re.compile(r"^(\w+)\s*=\s*(\d+);$")
_HEADER = re.compile(r'^(syntax|package)\s*=?\s*"?([\w.]+)"?;$')


class _Parser:
    """The grammar of ``et_def.proto``, line by line: nothing nests inside an enum or a
    oneof, and an enum is declared before a field names it."""

    def __init__(self) -> None:
        self.file = descriptor_pb2.FileDescriptorProto(name="et_def.proto")
        self.stack: list[Any] = []
        self.oneof: int | None = None
        self.enums: set[str] = set()

    def line(self, text: str) -> None:
        text = text.split("//", 1)[0].strip()
        if not text:
            return
        if text == "}":
            self._close()
        elif m := _HEADER.match(text):
            setattr(self.file, m[1], m[2])
        elif m := _BLOCK.match(text):
            self._open(m[1], m[2])
        elif (m := _VALUE.match(text)) and self._in_enum():
            self.stack[-1].value.add(name=m[1], number=int(m[2]))
        elif m := _FIELD.match(text):
            self._field(bool(m[1]), m[2], m[3], int(m[4]))
        else:
            raise ValueError(f"et_def.proto: cannot read line {text!r}")

    def _in_enum(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1], descriptor_pb2.EnumDescriptorProto)

    def _open(self, kind: str, name: str) -> None:
        if kind == "oneof":
            self.oneof = len(self.stack[-1].oneof_decl)
            self.stack[-1].oneof_decl.add(name=name)
            self.stack.append("oneof")
            return
        self.enums.update({name} if kind == "enum" else set())
        parent = self.file if not self.stack else self.stack[-1]
        table = parent.enum_type if kind == "enum" else parent.message_type
        self.stack.append(table.add(name=name))

    def _close(self) -> None:
        if self.stack.pop() == "oneof":
            self.oneof = None

    def _field(self, repeated: bool, type_: str, name: str, number: int) -> None:
        label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        message = self.stack[-2] if self.oneof is not None else self.stack[-1]
        field = message.field.add(name=name, number=number, label=label)
        if type_ in _SCALARS:
            field.type = _SCALARS[type_]
        else:
            field.type = _F.TYPE_ENUM if type_ in self.enums else _F.TYPE_MESSAGE
            field.type_name = f".{self.file.package}.{type_}"
        if self.oneof is not None:
            field.oneof_index = self.oneof


def _file() -> descriptor_pb2.FileDescriptorProto:
    parser = _Parser()
    text = resources.files("dagen.export").joinpath("et_def.proto").read_text(encoding="utf-8")
    for line in text.splitlines():
        parser.line(line)
    return parser.file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
PACKAGE = "ChakraProtoMsg"
"""The schema's protobuf package."""


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def _enum(name: str) -> dict[str, int]:
    values = _POOL.FindEnumTypeByName(f"{PACKAGE}.{name}").values
    return {v.name: v.number for v in values}


GlobalMetadata: Any = _message("GlobalMetadata")
"""The first message of every ``.et`` file."""
Node: Any = _message("Node")
"""One operator, collective, send or recv of a rank."""
AttributeProto: Any = _message("AttributeProto")
"""A named, typed value (``oneof value``) on a node or the metadata."""

_NODE_TYPES = _enum("NodeType")
_COLLS = _enum("CollectiveCommType")
NODE_TYPE_NAMES: dict[int, str] = {v: k for k, v in _NODE_TYPES.items()}
"""``NodeType`` names by number."""
COLL_NAMES: dict[int, str] = {v: k for k, v in _COLLS.items()}
"""``CollectiveCommType`` names by number."""
COMP_NODE = _NODE_TYPES["COMP_NODE"]
COMM_SEND_NODE = _NODE_TYPES["COMM_SEND_NODE"]
COMM_RECV_NODE = _NODE_TYPES["COMM_RECV_NODE"]
COMM_COLL_NODE = _NODE_TYPES["COMM_COLL_NODE"]
ALL_REDUCE = _COLLS["ALL_REDUCE"]
ALL_GATHER = _COLLS["ALL_GATHER"]
ALL_TO_ALL = _COLLS["ALL_TO_ALL"]
REDUCE_SCATTER = _COLLS["REDUCE_SCATTER"]

COMM_GROUP_FILE = "comm_group.json"
"""ASTRA-sim's communicator groups beside the ``.et`` files: ``{"<pg_name>": [ranks…]}``."""

VERSION = "0.0.4"
"""``GlobalMetadata.version``: the Chakra ET schema version (mlcommons/chakra's PyTorch
converter tags its schema ``…-chakra.0.0.4``; ASTRA-sim does not read the field)."""

ATTR_TYPES: dict[str, str] = {
    "is_cpu_op": "bool_val",
    "num_ops": "int64_val",
    "tensor_size": "uint64_val",
    "comm_type": "int64_val",
    "comm_size": "int64_val",
    "pg_name": "string_val",
    "comm_src": "int32_val",
    "comm_dst": "int32_val",
    "comm_tag": "int32_val",
}
"""The member of ``AttributeProto.value`` each node attribute dagen writes is read from.

These are the types ASTRA-sim's Chakra feeder reads (issue 12, probed on ASTRA-sim's
analytical backend): an attribute in another member silently reads as 0 there, so the
exporter writes these and :mod:`dagen.export.chakra_read` refuses any other."""


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative ``value`` (protobuf's length prefix).

    >>> varint(300).hex()
    'ac02'
    """
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frames(data: bytes) -> Iterator[bytes]:
    """The messages of a length-prefixed stream, in order.

    Raises:
        ValueError: a length prefix is cut off or runs past the end of ``data``.
    """
    pos, end = 0, len(data)
    while pos < end:
        size, shift = 0, 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError(f"length prefix at byte {pos} is cut off")
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + size > end:
            raise ValueError(f"message at byte {pos} has {size} bytes; only {end - pos} remain")
        yield data[pos : pos + size]
        pos += size
