"""STYLE 1: imports go one way. app → flows, storage; flows never reaches flask or a database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "flows": {"flask", "werkzeug", "sqlite3", "sqlite_utils", "psycopg", "storage", "app"},
    "storage": {"flask", "werkzeug", "app"},
}


def imported_roots(path: Path) -> set[str]:
    """The top-level module names a source file imports."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


SOURCES = [
    (package, path) for package in FORBIDDEN for path in sorted((ROOT / package).rglob("*.py"))
]


@pytest.mark.parametrize(
    "package,path", SOURCES, ids=[str(p.relative_to(ROOT)) for _, p in SOURCES]
)
def test_package_imports_stay_in_their_layer(package: str, path: Path) -> None:
    assert imported_roots(path).isdisjoint(FORBIDDEN[package])


def test_only_app_imports_flask() -> None:
    importers = {
        str(path.relative_to(ROOT)) for path in ROOT.glob("*.py") if "flask" in imported_roots(path)
    }
    assert importers == {"app.py"}


def test_the_scan_sees_a_breach(tmp_path: Path) -> None:
    # The check must be able to fail: a file importing flask is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from flask import Flask\nimport sqlite3.dbapi2\n")
    assert imported_roots(bad) == {"flask", "sqlite3"}
