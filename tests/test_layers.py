"""The layers of DESIGN.md hold: imports point down only, and no module imports itself back.

::

    portledger → devnet → gateway → node → proofs → contracts → consensus

A package may import its own modules and any package below it, with two exceptions that keep
the roles apart: ``gateway`` never imports ``node`` (it reaches a node over JSON-RPC), and
``consensus`` imports nothing of the project. Every import counts, wherever it is written (a
function-level import is still an edge); imports under ``if TYPE_CHECKING:`` count for the
layers but not for cycles, since they never run. Importing ``a.b.c`` runs ``a/__init__`` and
``a/b/__init__`` first, so those are edges too.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Bottom to top.
LAYERS = ("consensus", "contracts", "proofs", "node", "gateway", "devnet", "portledger")
#: (importer, imported) pairs forbidden although the imported package is lower.
FORBIDDEN = {("gateway", "node")}


def _module_name(root: Path, file: Path) -> str:
    parts = file.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, runtime: bool = True) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement under ``tree`` with whether it runs (not TYPE_CHECKING-only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports_of(child, False)
            for child in node.orelse:
                yield from _imports_of(child, runtime)
        else:
            yield from _imports_of(node, runtime)


def _imports_of(node: ast.AST, runtime: bool) -> Iterator[tuple[ast.AST, bool]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, runtime
    else:
        yield from _imports(node, runtime)


def import_graph(root: Path) -> dict[str, dict[str, bool]]:
    """Module -> {imported project module: runs at import time or later (not type-only)}."""
    files = {_module_name(root, f): f for layer in LAYERS if (root / layer).is_dir()
             for f in sorted((root / layer).rglob("*.py"))}
    graph: dict[str, dict[str, bool]] = {}
    for module, file in files.items():
        edges: dict[str, bool] = {}
        package = module if file.name == "__init__.py" else module.rpartition(".")[0]
        for node, runtime in _imports(ast.parse(file.read_text(), str(file))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                assert isinstance(node, ast.ImportFrom)
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for target in targets:
                if target.split(".")[0] not in LAYERS:
                    continue
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    # The packages above the target run first, but this module's own packages
                    # are running already: only a name it imports explicitly is an edge.
                    implicit = i < len(parts) and module.startswith(name + ".")
                    if name in files and name != module and not implicit:
                        edges[name] = edges.get(name, False) or runtime
        graph[module] = edges
    return graph


#: The gateway's feature packages, bottom to top: each may import the core and those before it.
GATEWAY_FEATURES = ("events", "confidential", "writepath", "accounts", "ui", "readside",
                    "telemetry", "tracking", "intake", "feeds", "subscriptions", "alerts",
                    "land", "declarations", "proofs_api", "web")
#: Core modules that compose the features (the top of the gateway).
GATEWAY_COMPOSERS = ("gateway.app", "gateway.cli")


def gateway_violations(graph: dict[str, dict[str, bool]]) -> list[str]:
    """Edges inside the gateway that point up its feature order (type-only imports excepted)."""

    def rank(module: str) -> int:
        parts = module.split(".")
        if module in GATEWAY_COMPOSERS:
            return len(GATEWAY_FEATURES) + 1
        if len(parts) > 1 and parts[1] in GATEWAY_FEATURES:
            return GATEWAY_FEATURES.index(parts[1]) + 1
        return 0  # the core

    found = []
    for module, edges in sorted(graph.items()):
        if not module.startswith("gateway."):
            continue
        for target, runtime in sorted(edges.items()):
            if runtime and target.startswith("gateway.") and rank(target) > rank(module):
                found.append(f"{module} -> {target}")
    return found


def layer_violations(graph: dict[str, dict[str, bool]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        mine = module.split(".")[0]
        for target in sorted(edges):
            theirs = target.split(".")[0]
            if mine == theirs:
                continue
            if LAYERS.index(theirs) > LAYERS.index(mine):
                found.append(f"{module} -> {target}: {mine} is below {theirs}")
            elif (mine, theirs) in FORBIDDEN or mine == "consensus":
                found.append(f"{module} -> {target}: {mine} may not import {theirs}")
    return found


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components of more than one module over run-time edges (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        work = [(start, iter(sorted(t for t, rt in graph[start].items() if rt)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(t for t, rt in graph[child].items() if rt))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_imports_point_down_only() -> None:
    assert layer_violations(import_graph(ROOT)) == []


def test_gateway_features_point_down_only() -> None:
    assert gateway_violations(import_graph(ROOT)) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_every_layer_is_a_package() -> None:
    assert [layer for layer in LAYERS if not (ROOT / layer / "__init__.py").is_file()] == []


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A copy of the project's packages to plant bad imports in."""
    for layer in LAYERS:
        shutil.copytree(ROOT / layer, tmp_path / layer,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.vy", "static",
                                                      "specs"))
    return tmp_path


def test_a_planted_upward_import_is_found(planted: Path) -> None:
    target = planted / "node" / "chain.py"
    target.write_text(target.read_text() + "\n\ndef _up() -> None:\n    import gateway.config\n")
    assert layer_violations(import_graph(planted)) == [
        "node.chain -> gateway: node is below gateway",
        "node.chain -> gateway.config: node is below gateway",
    ]


def test_gateway_importing_node_is_found(planted: Path) -> None:
    (planted / "gateway" / "planted.py").write_text("from node.chain import Ledger\n")
    assert layer_violations(import_graph(planted)) == [
        "gateway.planted -> node: gateway may not import node",
        "gateway.planted -> node.chain: gateway may not import node",
    ]


def test_a_planted_upward_gateway_import_is_found(planted: Path) -> None:
    (planted / "gateway" / "events" / "planted.py").write_text(
        "from gateway.tracking import service\n")
    assert gateway_violations(import_graph(planted)) == [
        "gateway.events.planted -> gateway.tracking",
        "gateway.events.planted -> gateway.tracking.service",
    ]


def test_a_planted_cycle_is_found(planted: Path) -> None:
    (planted / "gateway" / "planted_a.py").write_text("from gateway import planted_b\n")
    (planted / "gateway" / "planted_b.py").write_text("import gateway.planted_a\n")
    assert ["gateway.planted_a", "gateway.planted_b"] in cycles(import_graph(planted))


def test_a_type_checking_import_is_no_cycle(planted: Path) -> None:
    (planted / "gateway" / "planted_a.py").write_text("from gateway import planted_b\n")
    (planted / "gateway" / "planted_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gateway.planted_a\n")
    assert not [c for c in cycles(import_graph(planted)) if "gateway.planted_a" in c]
