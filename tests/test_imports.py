"""The package's import graph: no cycles among minisip's modules, and no imports hidden in functions.

Each module's imports are read with ``ast`` (module level, including those under ``if TYPE_CHECKING:``,
which still say one module depends on another); an edge to a package counts as an edge to its
``__init__``. A cycle makes start-up order fragile and modules impossible to test alone; an import
inside a function hides a dependency (and usually a cycle) from readers and tools.
"""

from __future__ import annotations

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import minisip

ROOT = os.path.dirname(os.path.abspath(minisip.__file__))
# Imports inside functions that are there on purpose: the global reactor, which must not be imported
# before twistd installs its own (DESIGN: no module imports the global reactor at import time).
ALLOWED_LOCAL = {("minisip.tap", "twisted.internet.reactor"), ("minisip.tap", "twisted.internet")}


def modules() -> dict[str, str]:
    found = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


def resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not modules_is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


_PACKAGES: set[str] = set()


def modules_is_package(module: str) -> bool:
    return module in _PACKAGES


def imports(module: str, path: str) -> tuple[set[str], list[tuple[str, int]]]:
    """(modules imported at module level, [(module, line)] imported inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    top: set[str] = set()
    local: list[tuple[str, int]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            return [f"{target}.{a.name}" for a in node.names] + [target]
        return []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for name in names(child):
                (local.append((name, child.lineno)) if in_function else top.add(name))
            visit(child, inner)

    visit(tree, False)
    return top, local


class ImportGraphTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.mods = modules()
        _PACKAGES.update(m for m, p in self.mods.items() if p.endswith("__init__.py"))
        self.graph: dict[str, set[str]] = {}
        self.local: dict[str, list[tuple[str, int]]] = {}
        for mod, path in self.mods.items():
            top, local = imports(mod, path)
            self.graph[mod] = {self.owner(n) for n in top} - {None, mod}  # type: ignore[operator]
            self.local[mod] = local

    def owner(self, name: str) -> str | None:
        """The minisip module an imported name belongs to (``minisip.sip.uri.parse_uri`` -> ``minisip.sip.uri``)."""
        parts = name.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in self.mods:
                return candidate
            parts.pop()
        return None

    def test_no_cycles(self) -> None:
        cycles: list[list[str]] = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def walk(mod: str) -> None:
            state[mod] = 1
            stack.append(mod)
            for dep in sorted(self.graph.get(mod, ())):
                if dep in _PACKAGES and mod.startswith(dep + "."):
                    continue   # a package's own __init__ (empty here) imported by its modules
                if state.get(dep) == 1:
                    cycles.append(stack[stack.index(dep):] + [dep])
                elif dep not in state:
                    walk(dep)
            stack.pop()
            state[mod] = 2

        for mod in sorted(self.graph):
            if mod not in state:
                walk(mod)
        self.assertEqual(cycles, [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles))

    def test_no_imports_inside_functions(self) -> None:
        hidden = [f"{mod}:{line} imports {name}" for mod, found in sorted(self.local.items())
                  for name, line in found if (mod, name) not in ALLOWED_LOCAL
                  and not name.startswith("twisted.internet.reactor")]
        hidden = [h for h in hidden if not any(h.startswith(f"{m}:") and n in h for m, n in ALLOWED_LOCAL)]
        self.assertEqual(hidden, [])
