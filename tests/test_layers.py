"""The one direction of flow: a module imports only the layers to its left."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dagen"

# plan → mesh → graph → checks → cost → export → api → study → cli; errors/findings are shared bases.
LAYERS = [
    "errors",
    "codes",
    "findings",
    "plan",
    "mesh",
    "graph",
    "checks",
    "cost",
    "export",
    "api",
    "study",
    "cli",
]
BASES = {"errors": 0, "codes": 0, "findings": 0}
ONLY_IN = {
    "click": {"cli"},
    "graphviz": {"export"},
    "pydot": {"export"},
    "pygraphviz": {"export"},
    "jinja2": {"export"},
    "google": {"export"},  # protobuf: the Chakra traces
    "matplotlib": {"export", "study"},
}


def _layer_of(module_parts: list[str]) -> str:
    return module_parts[0]


def _rank(layer: str) -> int:
    return BASES.get(layer, LAYERS.index(layer))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[Path]:
    return [
        p
        for p in sorted(PKG.rglob("*.py"))
        if p.name not in {"__init__.py", "__main__.py"} or p.parent != PKG
    ]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_only_layers_to_its_left(path: Path) -> None:
    own = _layer_of(list(path.relative_to(PKG).with_suffix("").parts))
    for name in _imports(path):
        top, *rest = name.split(".")
        if top == "dagen" and rest:
            used = rest[0]
            assert _rank(used) <= _rank(own), (
                f"{path.name} ({own}) imports {name} ({used}), which is to its right"
            )
        allowed = ONLY_IN.get(top)
        if allowed is not None:
            assert own in allowed, f"{path.name} imports {top}; only {sorted(allowed)} may"


def test_every_layer_exists() -> None:
    for layer in LAYERS:
        assert (PKG / layer).is_dir() or (PKG / f"{layer}.py").is_file(), layer


def _reaches_for_a_plan(path: Path) -> list[int]:
    """Lines of ``path`` that read ``.plan`` off a graph-like value (graph, g, view, ctx.graph)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "plan":
            base = node.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name in {"graph", "g", "view"}:
                lines.append(node.lineno)
    return lines


def test_nothing_after_the_graph_layer_reads_a_plan_off_the_graph() -> None:
    from dagen.graph.ir import Graph

    assert "plan" not in {f for f in Graph.__dataclass_fields__}
    later = [
        p
        for p in _modules()
        if _layer_of(list(p.relative_to(PKG).parts)) in {"graph", "checks", "cost", "export"}
    ]
    offenders = {str(p.relative_to(PKG)): lines for p in later if (lines := _reaches_for_a_plan(p))}
    assert offenders == {}


def test_checks_hold_checks_only() -> None:
    """Graph algorithms live in dagen/graph/algo; every public function of checks/ is a
    check (``check_…``) or the oracle (``expected``)."""
    for path in sorted((PKG / "checks").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                assert node.name.startswith("check_") or node.name in {
                    "expected",
                    "expected_targets",
                    "expected_sources",
                    "disagree",
                    "inst_label",
                    "place",
                    "make",
                }, f"{path.name}: {node.name} is not a check"
