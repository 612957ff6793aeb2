"""DESIGN.md's import arrows: protocol and crdt do no I/O; clients never import server; the
document path of the server (rooms, sessions, hooks, origins) imports no driver and no web
framework, so it runs the same behind any endpoint, store or backplane."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "starlette",
    "uvicorn",
    "websockets",
    "redis",
    "asyncpg",
    "sqlite3",
    "httpx",
    "anyio",
    "subprocess",
    "threading",
}
FORBIDDEN = {
    "protocol": IO_MODULES | {"crdt", "server", "clients", "pycrdt"},
    "crdt": IO_MODULES | {"server", "clients"},
    "clients": {"server"},
}


DRIVERS = {"starlette", "uvicorn", "websockets", "redis", "asyncpg", "sqlite3", "httpx"}
DOCUMENT_PATH = [
    "server/room.py",
    "server/rooms.py",
    "server/session.py",
    "server/registry.py",
    "server/hooks.py",
    "server/origins.py",
    "server/writers.py",
    "server/control.py",
    "server/presence.py",
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_rules(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("module", DOCUMENT_PATH)
def test_document_path_imports_no_driver(module: str) -> None:
    assert sorted(imported_modules(ROOT / module) & DRIVERS) == []
