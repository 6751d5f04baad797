"""Brokers on one PostgreSQL store, one active and the others on standby, and publishers that fail over.

``LeaseBroker`` runs ``python -m amqp_server --store postgresql://… --lease-ttl …`` on fixed ports (a
standby listens on nothing until it takes over, so its AMQP port must be known in advance) and
follows its stderr: ``wait_standby`` for the ``standby: waiting for the lease`` line, ``wait_active``
for the management ``listening on`` line that follows the AMQP one.  ``FailoverPublisher``
publishes persistent messages under confirms with pika, one at a time, to the first broker of a
list that accepts it (pika's own failover: a list of ``ConnectionParameters``), records each
confirmed body, and sends a body again on a nack or when its connection failed before the confirm
(at-least-once: only such a body may be stored twice).  Used by ``test_failover.py`` and
``benchmarks/failover_time.py``.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free now, below the ephemeral range: a standby binds its ports later (AMQP only once it takes over),
    and a port the kernel hands out to clients (pika's, the brokers' database connections) could be taken by then."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class LeaseBroker:
    """One broker process on the store ``dsn``; started again (same ports, same data dir) after a kill."""

    def __init__(self, dsn: str, data_dir: Path, ttl: float = 2.0, *extra_args: str) -> None:
        self.dsn = dsn
        self.data_dir = data_dir
        self.ttl = ttl
        self.extra_args = extra_args
        self.port = free_port()
        self.management_port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.seen: list[tuple[float, str]] = []  # (time.monotonic() when read, line): for the failover benchmark
        self._standby = threading.Event()
        self._active = threading.Event()

    def start(self) -> LeaseBroker:
        self.seen = []
        self._standby.clear()
        self._active.clear()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(self.port)]
            + ["--management-port", str(self.management_port), "--prometheus-port", "-1"]
            + ["--data-dir", str(self.data_dir), "--store", self.dsn, "--lease-ttl", str(self.ttl)]
            + list(self.extra_args),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._follow, args=(self.process,), daemon=True).start()
        return self

    def _follow(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.log.append(line)
            self.seen.append((time.monotonic(), line))
            if line.startswith("amqp-server standby: waiting for the lease"):
                self._standby.set()
            elif line.startswith("amqp-server management listening on") and "(standby)" not in line:
                self._active.set()  # the last line of a start (the prometheus listener is off)

    def wait_standby(self, timeout: float = 30.0) -> bool:
        return self._standby.wait(timeout)

    def wait_active(self, timeout: float = 60.0) -> bool:
        return self._active.wait(timeout)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def parameters(self, **options: Any) -> pika.ConnectionParameters:
        return pika.ConnectionParameters("127.0.0.1", self.port, connection_attempts=1, **options)

    def health(self, check: str = "alarms") -> tuple[int, dict[str, Any]]:
        """Status and JSON body of ``GET /api/health/checks/<check>`` as guest."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.management_port}/api/health/checks/{check}")
        request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def send(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int | None:
        """The exit code, or None if still running after ``timeout``."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a test may leave it stopped
            self.process.send_signal(signum)
            if self.wait_exit(20) is None:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def seen_at(self, fragment: str) -> float | None:
        """When the first line containing ``fragment`` was read (since the last start)."""
        return next((at for at, line in self.seen if fragment in line), None)

    def text(self) -> str:
        return "".join(self.log)


class FailoverPublisher(threading.Thread):
    """Publishes ``<name>-<n>`` to ``queue`` under confirms until ``halt``; ``confirmed`` in confirm order."""

    def __init__(self, name: str, brokers: list[LeaseBroker], queue: str) -> None:
        super().__init__(name=f"publisher-{name}", daemon=True)
        self.prefix = name
        self.brokers = brokers
        self.queue = queue
        self.confirmed: list[str] = []
        self.resent: set[str] = set()  # bodies sent again after a connection failed before their confirm
        self.nacked = 0
        self.failovers = 0
        self.errors: list[str] = []  # why each connection ended, for failure messages
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()
        self.join(60)

    def run(self) -> None:
        number = 0
        pending: str | None = None
        while not self._halt.is_set():
            try:
                connection = pika.BlockingConnection([broker.parameters(heartbeat=5) for broker in self.brokers])
            except pika.exceptions.AMQPConnectionError:
                time.sleep(0.05)  # none serving yet: the standby is taking over
                continue
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare(self.queue, durable=True)
                while not self._halt.is_set():
                    body = pending or f"{self.prefix}-{number}"
                    pending = body
                    try:
                        channel.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2))
                    except pika.exceptions.NackError:
                        self.nacked += 1  # not taken (the store may still write it later): send it again
                        self.resent.add(body)
                        time.sleep(0.05)
                        continue
                    self.confirmed.append(body)
                    pending = None
                    number += 1
            except Exception as error:  # noqa: BLE001 - whatever a dying connection raises inside pika: fail over
                if pending is not None:
                    self.resent.add(pending)
                self.failovers += 1
                self.errors.append(repr(error))
            finally:
                if connection.is_open:
                    try:
                        connection.close()
                    except Exception:  # noqa: BLE001 - closing a connection that is failing anyway
                        pass

    def wait_confirms(self, count: int, timeout: float = 120.0) -> bool:
        """Wait until at least ``count`` bodies are confirmed in all."""
        deadline = time.monotonic() + timeout
        while len(self.confirmed) < count:
            if time.monotonic() > deadline or not self.is_alive():
                return False
            time.sleep(0.05)
        return True


def drain(broker: LeaseBroker, queue: str) -> list[str]:
    """Every body in ``queue`` on ``broker`` (consumed and acked), in queue order."""
    connection = pika.BlockingConnection(broker.parameters())
    try:
        channel = connection.channel()
        count = channel.queue_declare(queue, durable=True, passive=True).method.message_count
        bodies: list[str] = []
        for _method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=30):
            if body is None:
                break
            bodies.append(body.decode())
            if len(bodies) == count:
                break
        channel.cancel()
        return bodies
    finally:
        connection.close()
