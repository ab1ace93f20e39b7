"""Exporters: one module per format, a registry from name and suffix to exporter.

Every stream exporter is ``emit(ctx, out)``; a directory exporter (one file per rank)
``emit(ctx, out: OutDir)``. :func:`format_for` picks a format from a file name,
:func:`write_outputs` writes several outputs atomically: each goes to a temporary file
or directory beside its target and replaces the target only once *every* output has been
written, so a failure leaves no partial file and no half-updated set of outputs.

Example:
    >>> from pathlib import Path
    >>> format_for(Path("out/dag.json.gz"))
    'json.gz'
    >>> ctx = ExportContext(graph=graph)  # doctest: +SKIP
    >>> write_outputs(ctx, [(Path("dag.svg"), "svg"), (Path("dag.json"), "json")])  # doctest: +SKIP
"""

from __future__ import annotations

from dagen.export.base import Emitter, ExportContext, View, select_nodes
from dagen.export.outputs import DirEmitter, OutDir, Phases, write_outputs
from dagen.export.registry import FORMATS, Format, emit, emitter, format_for

__all__ = [
    "FORMATS",
    "DirEmitter",
    "Emitter",
    "ExportContext",
    "Format",
    "OutDir",
    "Phases",
    "View",
    "emit",
    "emitter",
    "format_for",
    "select_nodes",
    "write_outputs",
]
