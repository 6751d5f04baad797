"""Start ``python -m amqp_server`` as a real process on a free loopback port, for real clients.

Used by the interop fixtures; ``AMQP_URL`` in the environment makes the suite
use an already-running broker (e.g. a real RabbitMQ) instead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

LISTENING = re.compile(r"^amqp-server listening on ([0-9.]+):(\d+)")
MANAGEMENT_LISTENING = re.compile(r"^amqp-server management listening on ([0-9.]+):(\d+)")
PROMETHEUS_LISTENING = re.compile(r"^amqp-server prometheus listening on ([0-9.]+):(\d+)")


class BrokerProcess:
    """A broker subprocess; ``host``/``port``/``url`` are known once ``start`` returns."""

    def __init__(self, data_dir: Path, *extra_args: str) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.process: subprocess.Popen[str] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.management_port = 0  # the management HTTP API's (a free port unless extra_args set one; 0: off)
        self.prometheus_port = 0  # the Prometheus metrics' (likewise)
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        """``http://guest:guest@HOST:PORT`` of the management API."""
        return f"http://guest:guest@{self.host}:{self.management_port}"

    def start(self, port: int = 0, timeout: float = 20.0) -> BrokerProcess:
        management = [] if "--management-port" in self.extra_args else ["--management-port", "0"]
        wants_management = "-1" not in self._flag("--management-port")
        prometheus = [] if "--prometheus-port" in self.extra_args else ["--prometheus-port", "0"]
        wants_prometheus = "-1" not in self._flag("--prometheus-port")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "amqp_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "info",
                *management,
                *prometheus,
                *self.extra_args,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stderr is not None
        for line in self.process.stderr:  # the AMQP line, then (unless off) the management and prometheus ones
            self.log.append(line)
            match = LISTENING.search(line)
            if match and not self.port:  # the plain AMQP line (an amqps one may follow)
                self.host, self.port = match.group(1), int(match.group(2))
            match = MANAGEMENT_LISTENING.search(line)
            if match:
                self.management_port = int(match.group(2))
            match = PROMETHEUS_LISTENING.search(line)
            if match:
                self.prometheus_port = int(match.group(2))
            if (
                self.port
                and bool(self.management_port) >= wants_management
                and bool(self.prometheus_port) >= (wants_prometheus)
            ):
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise RuntimeError("broker did not start:\n" + "".join(self.log))
        # keep draining stderr so the broker never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _flag(self, name: str) -> list[str]:
        """The values given to flag ``name`` in ``extra_args`` (``--flag VALUE`` or ``--flag=VALUE``)."""
        args = list(self.extra_args)
        values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]
        return values + [arg.split("=", 1)[1] for arg in args if arg.startswith(name + "=")]

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def rss(self) -> int:
        """Resident memory of the broker process, in bytes."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop the broker (SIGTERM by default, SIGKILL for crash tests) and return its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def external_url() -> tuple[str, int, str] | None:
    """``(host, port, url)`` of the broker named by ``AMQP_URL``, if set."""
    url = os.environ.get("AMQP_URL")
    if not url:
        return None
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 5672, url
