"""Run a real broker inside a test suite: ``with amqp_server.running() as broker: ...``.

``running()`` starts the broker on a free loopback port (``port=0``) with a
throw-away data dir, yields a ``RunningBroker`` whose ``url`` clients connect
to, and stops it (and removes the data dir) on exit.  By default the broker runs
in a background thread with its own asyncio event loop, which starts in
milliseconds and lets the test create virtual hosts (``add_vhost``);
``process=True`` runs ``python -m amqp_server`` as a subprocess instead, for
isolation from the test process (its own GIL, its own crash).

The pytest fixtures built on this live in ``amqp_server.ops.pytest_plugin``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .config import Config
from .running import connect_host

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
VHOST_TIMEOUT_S = 10.0
LISTENING = re.compile(r"listening on (\S+):(\d+),")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds amqp_server/ and storage/


@dataclass
class RunningBroker:
    """A started broker: where it listens, where its data lives, and vhost creation."""

    host: str
    port: int
    data_dir: Path
    _add_vhost: Callable[[str], None] | None = field(default=None, repr=False)
    _advance: Callable[[float], None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``amqp://guest:guest@HOST:PORT/`` (the default vhost ``/``)."""
        return self.vhost_url("/")

    def vhost_url(self, name: str) -> str:
        """The URL of virtual host ``name`` on this broker (``/`` is spelled as the empty path)."""
        host = connect_host(self.host)
        path = "" if name == "/" else quote(name, safe="")
        return f"amqp://guest:guest@{host}:{self.port}/{path}"

    def add_vhost(self, name: str) -> str:
        """Create virtual host ``name`` (no-op if it exists), let ``guest`` do anything in it, return its URL.

        Like a vhost made through RabbitMQ's HTTP API, which grants its creator
        full permissions.  Runs on the broker's event loop thread.  Only an
        in-thread broker can do this: ``running(process=True)`` raises.
        """
        if not name or len(name.encode()) > 255:
            raise ValueError(f"a vhost name is 1 to 255 bytes of UTF-8, not {name!r}")
        if self._add_vhost is None:
            raise RuntimeError("add_vhost needs the in-thread broker: running(process=True) cannot create vhosts")
        self._add_vhost(name)
        return self.vhost_url(name)

    def advance(self, seconds: float) -> None:
        """Move the broker's virtual clock ``seconds`` ahead (``running(virtual_clock=True)`` only).

        Message TTLs and queue ``x-expires`` that fall due meanwhile take effect
        before this returns (dead-lettering, deletes, deliveries), in deadline
        order; heartbeats stay on real time (see ``amqp_server.core.clock``).
        """
        if self._advance is None:
            raise RuntimeError("advance needs running(virtual_clock=True)")
        self._advance(seconds)


@contextmanager
def running(
    host: str = "127.0.0.1",
    port: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    process: bool = False,
    virtual_clock: bool = False,
    timeout: float = START_TIMEOUT_S,
    **options: Any,
) -> Iterator[RunningBroker]:
    """Start a broker, yield its ``RunningBroker``, stop it on exit.

    ``port=0`` picks a free port (read it from ``.port``/``.url``).  ``data_dir=None``
    uses a fresh temp dir that is removed afterwards; a given dir is kept, so a
    second ``running(data_dir=...)`` recovers what the first one stored.
    ``options`` are further ``Config`` fields (``heartbeat``, ``frame_max``,
    ``channel_max``, ``max_connections`` …); with ``process=True`` only
    ``log_level`` (a command-line flag) is accepted.  The management HTTP API and
    the Prometheus metrics are off unless ``management_port`` / ``prometheus_port``
    is given (in a thread).  In a thread the broker logs through this process's ``logging`` (logger ``amqp_server``), so
    ``log_level`` matters only with ``process=True``.  ``timeout`` bounds the start.
    """
    owned = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="amqp-server-")) if data_dir is None else Path(data_dir)
    try:
        if process and virtual_clock:
            raise TypeError("virtual_clock=True needs the in-thread broker, not process=True")
        if virtual_clock:
            options = {**options, "virtual_clock": True}
        start = _in_process if process else _in_thread
        with start(host, port, directory, timeout, options) as broker:
            yield broker
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ in a thread


@contextmanager
def _in_thread(
    host: str, port: int, data_dir: Path, timeout: float, options: dict[str, Any]
) -> Iterator[RunningBroker]:
    from ..core.clock import VirtualClock
    from ..server.embedded import BrokerThread  # the server stack loads only when a broker starts

    # the HTTP API and the Prometheus metrics only when asked (management_port=0, prometheus_port=0: a free port)
    options = {"management_port": -1, "prometheus_port": -1, **options}
    clock = VirtualClock(time.time()) if options.pop("virtual_clock", False) else None
    thread = BrokerThread(Config(host=host, port=port, data_dir=data_dir, **options), clock)
    thread.start()
    if not thread.listening.wait(timeout):
        thread.stop(STOP_TIMEOUT_S)
        raise RuntimeError(f"the broker did not start listening within {timeout} s")
    if thread.address is None:  # serve() failed before binding: data dir locked, port in use …
        thread.join(STOP_TIMEOUT_S)
        assert thread.error is not None
        raise thread.error
    try:
        yield RunningBroker(
            thread.address[0],
            thread.address[1],
            data_dir,
            lambda name: thread.add_vhost(name, VHOST_TIMEOUT_S),
            None if clock is None else lambda seconds: thread.advance(seconds, VHOST_TIMEOUT_S),
        )
    finally:
        thread.stop(STOP_TIMEOUT_S)
    if thread.error is not None:  # serve() crashed while the test ran
        raise thread.error


# ------------------------------------------------------------------ in a process


@contextmanager
def _in_process(
    host: str, port: int, data_dir: Path, timeout: float, options: dict[str, Any]
) -> Iterator[RunningBroker]:
    unsupported = sorted(set(options) - {"log_level"})
    if unsupported:
        raise TypeError(f"running(process=True) accepts only the log_level option, not {', '.join(unsupported)}")
    env = dict(os.environ)
    if str(PACKAGE_ROOT) not in sys.path:  # a source checkout: let the child import this very code
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amqp_server",
            "--host",
            host,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            options.get("log_level", "warning"),
            "--prometheus-port",  # off, as in a thread: brokers side by side must not all want 15692
            "-1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: deque[str] = deque(maxlen=50)
    threading.Thread(target=_read_lines, args=(child, lines, log), name="amqp-server-stderr", daemon=True).start()
    try:
        address = _await_listening(lines, timeout)
        if address is None:
            _terminate(child)
            raise RuntimeError(f"python -m amqp_server did not start (exit code {child.returncode}):\n" + "".join(log))
        yield RunningBroker(address[0], address[1], data_dir)
    finally:
        _terminate(child)


def _read_lines(child: subprocess.Popen[str], lines: queue.Queue[str | None], log: deque[str]) -> None:
    """Forward the child's stderr line by line (and keep reading, so it never blocks on a full pipe)."""
    assert child.stderr is not None
    for line in child.stderr:
        log.append(line)
        lines.put(line)
    lines.put(None)


def _await_listening(lines: queue.Queue[str | None], timeout: float) -> tuple[str, int] | None:
    """The ``listening on HOST:PORT`` address, or None if the process ended or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            return None
        if line is None:
            return None
        if match := LISTENING.search(line):
            return match.group(1), int(match.group(2))
    return None


def _terminate(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()  # SIGTERM: the broker syncs its store and exits
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
