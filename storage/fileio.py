"""The low-level file operations of the store's files, in one place (and one place for tests to fail them).

Callers go through the module (``fileio.pwrite_all(...)``), so a test can
replace a function here to simulate ENOSPC or EIO for every file of the store.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

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


class DataDirLocked(RuntimeError):
    """Another store (normally another running broker) has this data dir open."""


def lock_data_dir(data_dir: Path) -> int:
    """flock ``LOCK`` so that two brokers never share a data dir (each would corrupt the other's files)."""
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DataDirLocked(
            f"data dir {data_dir} is already in use by another store (pid {owner}); is another broker running on it?"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
