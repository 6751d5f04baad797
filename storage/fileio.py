"""The few low-level file operations both store files use, in one place (and one place for tests to fail them).

Callers go through the module (``fileio.pwrite_all(...)``), so a test can
replace a function here to simulate ENOSPC or EIO for every file of the store.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger("storage.fileio")

datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # size changes are flushed by both


def pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view, offset = view[written:], offset + written


def fsync_dir(path: Path) -> None:
    """New, renamed and deleted files only persist once their directory is fsynced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def release_tail(fd: int, size: int) -> None:
    """After a failed append, cut the file back to ``size``: the space a partial write took is what the
    small writes that free space (acks) need on a full disk.  Best effort."""
    try:
        os.ftruncate(fd, size)
    except OSError as error:
        log.debug("could not truncate after a failed write: %s", error)
