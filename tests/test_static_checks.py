"""The static checks, run by the README's test command so that CI enforces them: ruff's linter and
formatter, and mypy.

Both are test dependencies (``pip install -e '.[test]'``) and run as modules of this interpreter, with
their configuration in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``); a missing tool fails the test
instead of skipping it. mypy keeps its cache in .mypy_cache, so a run after the first rechecks only what
changed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: it is a test dependency, `pip install -e '.[test]'`")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes() -> None:
    result = _run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert result.returncode == 0, (
        f"ruff check found problems (many are fixed by `ruff check --fix`):\n{result.stdout}{result.stderr}"
    )


def test_ruff_format_leaves_every_file_unchanged() -> None:
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, f"files `ruff format` would change (run it):\n{result.stdout}{result.stderr}"


def test_mypy_passes() -> None:
    result = _run("mypy")
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"
