"""STYLE.md: the sans-I/O core reads no clock, draws no randomness and touches no I/O; all are injected."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {"asyncio", "socket", "time", "random", "secrets", "os", "threading", "selectors", "subprocess"}
CORE = ["stack/wire", "stack/seq.py", "stack/tcp", "stack/host.py", "stack/addresses.py"]


def core_files():
    for entry in CORE:
        path = ROOT / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def imported_modules(path: pathlib.Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_core_files_exist():
    files = list(core_files())
    assert len(files) >= 10, files


@pytest.mark.parametrize("path", list(core_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_clock_randomness_or_io(path):
    bad = sorted(set(imported_modules(path)) & FORBIDDEN)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: inject the clock, RNG or I/O instead"
