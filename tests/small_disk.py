"""A small tmpfs mounted for a test, so "the disk is full" is real (ENOSPC from the kernel), not simulated.

Mounting needs root, which developers and CI have here.  Where mounting is
impossible the test is skipped -- except under ``CI=true``, where it fails:
CI runs on the same kind of machine, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE = 8 * 1024 * 1024


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: int = SIZE) -> Iterator[Path]:
    """``path`` (created) with a ``size``-byte tmpfs mounted on it, unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        problem = result.stderr.strip() if result.returncode else None
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    if problem is not None:
        message = f"cannot mount a {size}-byte tmpfs on {path}: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
            # still busy (a failed test left a file open): detach it now, freed once the file is closed
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=30, check=True)


def used(path: Path) -> int:
    """Bytes in use on the filesystem of ``path``, as df reports them."""
    return shutil.disk_usage(path).used


def free(path: Path) -> int:
    return shutil.disk_usage(path).free
