"""No import cycle among gateway/ and adapters/: each module can be read (and imported) after the
ones it uses. Imports inside functions count, since they are how a cycle hides; imports under
`if TYPE_CHECKING:` do not, since they never run. And the configuration depends on no feature:
gateway/config/ imports only itself, and every Struct of the schema is declared in it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import paths

REPO = paths.REPO
PACKAGES = ("gateway", "adapters")


def module_files() -> dict[str, Path]:
    """Every module of the two packages by its dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST) -> Iterator[str]:
    """Dotted names a module imports when it runs: `from a.b import c` gives a.b.c (whether c is
    a module or a name is decided by the caller), `import a.b` gives a.b."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                yield from imported_names(other)
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        yield from imported_names(node)


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        used = {n for n in imported_names(ast.parse(path.read_text())) if n in files}
        # A submodule's `from gateway.ui import forms` names its package only to reach a
        # sibling: that is not an edge to the package's own code.
        graph[name] = {n for n in used if n != name and not name.startswith(n + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_packages_have_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_check_finds_a_cycle_through_an_import_inside_a_function() -> None:
    # The check itself, on a graph built from source as the real one is: a -> b at the top,
    # b -> a inside a function.
    a = ast.parse("from gateway import b\n")
    b = ast.parse("def f() -> None:\n    from gateway.a import thing\n")
    assert "gateway.b" in set(imported_names(a))
    assert "gateway.a" in set(imported_names(b))
    assert cycles({"gateway.a": {"gateway.b"}, "gateway.b": {"gateway.a"}, "gateway.c": set()}) == [
        ["gateway.a", "gateway.b"]
    ]
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.a import T\n")
    assert "gateway.a" not in set(imported_names(guarded))


def test_the_config_package_imports_no_feature() -> None:
    # Features read their settings from gateway.config, never the other way round, so the whole
    # schema is read in one package and loading it pulls in no feature's code.
    outside = {
        f"{name} -> {used}"
        for name, uses in import_graph().items()
        if name == "gateway.config" or name.startswith("gateway.config.")
        for used in uses
        if not (used == "gateway.config" or used.startswith("gateway.config."))
    }
    assert outside == set()


def test_every_struct_of_the_schema_is_declared_in_the_config_package() -> None:
    from gateway.config.schema import Config
    from gateway.docgen import config_sections

    elsewhere = {
        f"{section.struct.cls.__module__}.{section.struct.cls.__name__}"
        for section in config_sections(Config)
        if not section.struct.cls.__module__.startswith("gateway.config.schema.")
    }
    assert elsewhere == set()
