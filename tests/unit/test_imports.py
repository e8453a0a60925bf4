"""Dependency rules read from the source: adapters/ stays a pure translator, and JSON goes through
msgspec everywhere (the `json` module is banned)."""

import ast
import sys
from pathlib import Path

import pytest

from tests.support import paths

REPO = paths.REPO
ADAPTERS = sorted((REPO / "adapters").rglob("*.py"))
GATEWAY = sorted((REPO / "gateway").rglob("*.py"))

# adapters/__init__.py: "Nothing in this package opens a socket, reads configuration or the
# environment, logs, or looks at a clock". Standard-library modules that would do exactly that.
IMPURE_STDLIB = {"asyncio", "logging", "os", "random", "secrets", "socket", "subprocess", "threading", "time"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, nested ones included; a relative
    import is reported as `.` plus its module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_walk_sees_the_modules_and_every_kind_of_import(tmp_path: Path) -> None:
    names = {rel(path) for path in ADAPTERS + GATEWAY}
    assert {
        "adapters/openai/provider.py",
        "adapters/base.py",
        "adapters/schema.py",
        "gateway/config/schema/root.py",
    } <= names
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json as j, os.path\nfrom . import base\nfrom ..x import y\n"
        "def f():\n    from json.decoder import JSONDecodeError\n",
        encoding="utf-8",
    )
    assert imported_modules(sample) == [
        (1, "json"),
        (1, "os.path"),
        (2, "."),
        (3, "..x"),
        (5, "json.decoder"),
    ]


@pytest.mark.parametrize("path", ADAPTERS, ids=rel)
def test_adapters_import_only_stdlib_msgspec_and_themselves(path: Path) -> None:
    for line, module in imported_modules(path):
        root = module.split(".")[0]
        allowed = module.startswith(".") or root in {"adapters", "msgspec"} or root in sys.stdlib_module_names
        assert allowed, f"{rel(path)}:{line} imports {module}"
        assert root not in IMPURE_STDLIB, f"{rel(path)}:{line} imports {module}"


@pytest.mark.parametrize("path", ADAPTERS + GATEWAY, ids=rel)
def test_no_module_imports_json(path: Path) -> None:
    for line, module in imported_modules(path):
        assert module.split(".")[0] != "json", f"{rel(path)}:{line} imports {module}; use msgspec.json"
