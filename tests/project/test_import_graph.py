"""The package's own import graph has no cycle (imports inside functions included).

Every module under ``src/dsm_lightning`` is parsed with ``ast``; each ``import`` /
``from ... import`` that names a module of the package is an edge (``from pkg import name``
points at ``pkg.name`` when that is a module, else at ``pkg``). Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "dsm_lightning"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE


def _module_names(root: Path) -> dict[str, Path]:
    """``dotted.module.name -> file`` for every ``.py`` file of the package."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """Absolute module name of a (possibly relative) ``from`` import."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """``module -> package modules it imports`` (edges within the package only)."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path, node)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module name
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_graph_sees_every_kind_of_import(tmp_path: Path):
    """The checker finds cycles through relative, function-level and package imports."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text("def f():\n    from dsm_lightning.sub import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dsm_lightning.c\n"
        "thing = 1\n"
    )
    (pkg / "c.py").write_text("import dsm_lightning.a\n")
    graph = import_graph(pkg)
    assert graph["dsm_lightning.a"] == {"dsm_lightning.sub.b"}
    assert graph["dsm_lightning.sub"] == {"dsm_lightning.sub.b"}
    assert graph["dsm_lightning.sub.b"] == set()  # TYPE_CHECKING imports never run
    assert find_cycle(graph) is None
    (pkg / "sub" / "b.py").write_text("def g():\n    from .. import c\n")
    assert find_cycle(import_graph(pkg)) == [
        "dsm_lightning.a", "dsm_lightning.sub.b", "dsm_lightning.c", "dsm_lightning.a"
    ]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "dsm_lightning.models.registry" in graph and len(graph) > 20
    cycle = find_cycle(graph)
    if cycle is not None:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_registries_are_leaves():
    """The one ``Registry`` imports nothing of the package; the backbone registry only it."""
    graph = import_graph()
    assert graph["dsm_lightning.registry"] == set()
    assert graph["dsm_lightning.models.registry"] == {"dsm_lightning.registry"}
