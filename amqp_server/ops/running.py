"""Is a broker running on this data dir, and where does its management API listen?  ``<data_dir>/running.json``.

The broker holds an exclusive ``flock`` on the file for as long as it runs and writes
``{"pid": …, "management_url": "http://127.0.0.1:15672" or null}`` into it once its
listeners are bound.  The admin CLI asks the lock, not the file's contents: the kernel
drops a flock when its process ends, however it ends, so a broker killed with SIGKILL
never leaves a stale "running" behind (a pid file would, and a pid can be reused), and
it works whatever store the broker uses (the store's own ``LOCK`` is taken only by the
segment store).  The port comes from the file because ``--management-port 0`` picks
one that no configuration knows.

Ordering makes the CLI's choice between "edit access.json" and "call the API" safe:
the broker takes this lock *before* it reads ``access.json`` (``startup_access``, under
``access.lock``), and the CLI probes it while holding ``access.lock``.  So either no
broker holds the lock and any broker starting now reads the file after the CLI's edit,
or a broker holds it and the edit goes through its API.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from storage.fileio import DataDirLocked

RUNNING_FILE = "running.json"
CLAIM_TIMEOUT = 1.0  # seconds a starting broker retries the lock: a CLI's probe holds it for microseconds
PUBLISH_TIMEOUT = 30.0  # seconds the CLI waits for a starting broker (recovering its store) to say where it listens


log = logging.getLogger("amqp_server.running")


class AlreadyRunning(DataDirLocked):
    """Another broker runs on this data dir (one whose store does not lock it, or the segment store would have)."""


class RunningClaim:
    """The broker's side: the lock, held from start to stop, and the address it publishes."""

    def __init__(self, data_dir: Path) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / RUNNING_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + CLAIM_TIMEOUT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    raise AlreadyRunning(f"data dir {data_dir} is already in use by another broker") from None
                time.sleep(0.01)
        os.ftruncate(self._fd, 0)  # what a previous broker wrote is not ours

    def publish(self, management_url: str | None) -> None:
        """Say where the management API listens (``None``: it is turned off); a full disk only costs a warning."""
        text = json.dumps({"pid": os.getpid(), "management_url": management_url}) + "\n"
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode("utf-8"), 0)
        except OSError as error:
            log.warning("cannot write %s (%s): admin commands will not find the management API", self.path, error)

    def release(self) -> None:
        """Empty the file and drop the lock (the file stays: unlinking it would let a CLI lock a dead inode)."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Running:
    """A broker found running on a data dir: its pid and management URL (``None``: API off, or not yet known)."""

    pid: int | None
    management_url: str | None
    published: bool  # False while the broker is still starting (nothing written yet)


def probe(data_dir: Path) -> Running | None:
    """The broker running on ``data_dir`` now, or ``None``; never blocks and never changes the file."""
    try:
        fd = os.open(Path(data_dir) / RUNNING_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            return None  # nobody holds it: no broker (the shared lock goes with the close below)
        raw = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:
        return Running(None, None, published=False)
    url = data.get("management_url") if isinstance(data, dict) else None
    pid = data.get("pid") if isinstance(data, dict) else None
    return Running(pid if isinstance(pid, int) else None, url if isinstance(url, str) else None, published=True)


def wait_published(data_dir: Path, timeout: float = PUBLISH_TIMEOUT) -> Running | None:
    """``probe`` until the broker has published its address (a starting broker), within ``timeout``.

    Returns ``None`` if the broker stopped meanwhile; the last unpublished ``Running`` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe(data_dir)
        if found is None or found.published or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
