"""The architecture rules of docs/ARCHITECTURE.md, as import-linter contracts (pyproject.toml):
they hold for the tree, and they fail when a forbidden import is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("engine", "webapp", "workers")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's packages, not the installed ones
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the project's packages and contracts to break."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_every_contract(tree):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("engine/leak.py", "from django.conf import settings", "The engine imports neither Django"),
    ("engine/leak.py", "import webapp.runs.models", "The engine imports neither Django"),
    ("webapp/runs/leak.py", "from workers.execution import execute_run", "never imports the workers"),
    ("webapp/projects/leak.py", "from webapp.runs.models import Run", "Web apps import each other only downward"),
    ("webapp/datasets/leak.py", "from webapp.review import selectors", "Web apps import each other only downward"),
    ("engine/tasks/leak.py", "import engine.grpo", "No import loops"),
])
def test_a_forbidden_import_breaks_its_contract(tree, module, line, contract):
    (tree / module).write_text(f"{line}\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = " ".join(result.stdout.split("Broken contracts", 1)[-1].split())  # unwrapped lines
    assert contract in broken, result.stdout
