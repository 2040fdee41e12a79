"""Lint, format and layer contracts run with the test command (README): ruff and import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail(f"{name} is not installed: run scripts/setup.sh (it installs the dev extra)")
        return found
    return str(path)


@pytest.mark.parametrize(
    "args",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["lint-imports"]],
    ids=["ruff-check", "ruff-format", "import-linter"],
)
def test_tool_passes(args):
    res = subprocess.run([tool(args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_no_import_cycles():
    """No module imports one that (directly or not) imports it back, lazy imports included."""
    import grimp

    g = grimp.build_graph("core", "trainer", "audits", "curate")
    cycles = sorted(
        (m, imp)
        for m in g.modules
        for imp in g.find_modules_directly_imported_by(m)
        if imp in g.modules and m < imp and g.chain_exists(importer=imp, imported=m)
    )
    assert not cycles, cycles
