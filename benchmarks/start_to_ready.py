"""Start-to-ready benchmark: how long from "start the broker" to the first completed AMQP handshake.

Why this exists: a broker that test suites start per session (or per test)
must be ready fast.  For each way of starting a broker this measures, over
``--runs`` fresh starts (fresh data dir each time), the wall time from the
start call to the first client handshake that gets ``connection.open-ok`` --
the client polls the port every millisecond, so "ready" means ready for AMQP,
not just a bound socket -- and then the time to stop it:

- ``python -m amqp_server``: a new interpreter, polled on a port picked up front;
- ``running()``: ``amqp_server.running()`` (``amqp_server.ops.embedding``), the broker in a thread of
  this process (the server modules are imported once before timing);
- ``running(process=True)``: the same API starting ``python -m amqp_server``;
- RabbitMQ, when ``rabbitmq-server`` is installed (skip with ``--no-rabbitmq``):
  ``/work/shared/tools/rabbitmq-ref.sh start PORT`` on a spare port
  (``--rabbitmq-port``, default 5699) with its data dir wiped before each run,
  stopped with ``rabbitmq-ref.sh stop PORT``.  Never the shared one on 5673.

    .venv/bin/python benchmarks/start_to_ready.py [--runs 10] [--rabbitmq-runs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path

from pamqp import commands, frame

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from amqp_server.ops.embedding import running  # noqa: E402

# The broker's management API on a free port (not 15672, which another broker here may hold), unless the
# caller's environment chooses (AMQP_SERVER_MANAGEMENT_PORT=-1 measures without the API).
MANAGEMENT_ENV = {"AMQP_SERVER_MANAGEMENT_PORT": "0", **os.environ}

RABBITMQ_REF = Path("/work/shared/tools/rabbitmq-ref.sh")
POLL_INTERVAL_S = 0.001
READY_TIMEOUT_S = 30.0
RABBITMQ_READY_TIMEOUT_S = 180.0


class NotReady(Exception):
    """The handshake did not complete (refused, reset, or the broker closed the connection)."""


@dataclass
class Result:
    label: str
    ready_s: list[float] = field(default_factory=list)
    stop_s: list[float] = field(default_factory=list)


# ------------------------------------------------------------------ the probe


def handshake(port: int, timeout: float = 5.0) -> None:
    """One AMQP 0-9-1 handshake as guest/guest on vhost '/', up to open-ok, then a polite close."""
    try:
        with closing(socket.create_connection(("127.0.0.1", port), timeout=timeout)) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            expect(sock, commands.Connection.Start)
            sock.sendall(frame.marshal(commands.Connection.StartOk(mechanism="PLAIN", response="\0guest\0guest"), 0))
            tune = expect(sock, commands.Connection.Tune)
            sock.sendall(
                frame.marshal(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0)
                + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
            )
            expect(sock, commands.Connection.OpenOk)
            sock.sendall(frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 0))
            expect(sock, commands.Connection.CloseOk)
    except OSError as error:
        raise NotReady(str(error)) from error


def expect(sock: socket.socket, wanted: type) -> object:
    header = recv_exactly(sock, 7)
    _, _, size = struct.unpack(">BHI", header)
    method = frame.unmarshal(header + recv_exactly(sock, size + 1))[2]
    if isinstance(method, commands.Connection.Close):
        raise NotReady(f"broker closed the connection: {method.reply_code} {method.reply_text}")
    if not isinstance(method, wanted):
        raise NotReady(f"expected {wanted.__name__}, got {method.name}")
    return method


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise NotReady("connection closed by the broker")
        data += chunk
    return data


def await_handshake(port: int, started: float, timeout: float, alive: Callable[[], bool]) -> float:
    """Poll until a handshake succeeds; seconds since ``started``."""
    deadline = started + timeout
    while True:
        try:
            handshake(port)
            return time.perf_counter() - started
        except NotReady as error:
            if not alive():
                raise RuntimeError("the broker exited before it was ready") from error
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no AMQP handshake on port {port} within {timeout} s: {error}") from error
            time.sleep(POLL_INTERVAL_S)


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ------------------------------------------------------------------ the brokers


def python_m_amqp_server(result: Result) -> None:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="amqp-start-bench-")
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amqp_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=MANAGEMENT_ENV,
    )
    try:
        result.ready_s.append(await_handshake(port, started, READY_TIMEOUT_S, lambda: child.poll() is None))
        stopping = time.perf_counter()
        child.terminate()
        child.wait(READY_TIMEOUT_S)
        result.stop_s.append(time.perf_counter() - stopping)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def with_running(process: bool) -> Callable[[Result], None]:
    def measure(result: Result) -> None:
        started = time.perf_counter()
        with redirect_stderr(io.StringIO()), running(process=process, log_level="warning") as broker:
            result.ready_s.append(await_handshake(broker.port, started, READY_TIMEOUT_S, lambda: True))
            stopping = time.perf_counter()
        result.stop_s.append(time.perf_counter() - stopping)

    return measure


def rabbitmq(port: int) -> Callable[[Result], None]:
    base = Path(f"/tmp/rabbitmq-ref-{port}")

    def measure(result: Result) -> None:
        shutil.rmtree(base, ignore_errors=True)  # a first boot every time, like our fresh data dirs
        started = time.perf_counter()
        script = subprocess.Popen(
            ["bash", str(RABBITMQ_REF), "start", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result.ready_s.append(
                await_handshake(port, started, RABBITMQ_READY_TIMEOUT_S, lambda: script.poll() in (None, 0))
            )
        finally:
            script.wait(RABBITMQ_READY_TIMEOUT_S)
            stopping = time.perf_counter()
            subprocess.run(
                ["bash", str(RABBITMQ_REF), "stop", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=RABBITMQ_READY_TIMEOUT_S,
                check=False,
            )
            deadline = stopping + RABBITMQ_READY_TIMEOUT_S
            while not port_is_free(port) and time.perf_counter() < deadline:
                time.sleep(0.05)
            result.stop_s.append(time.perf_counter() - stopping)
            shutil.rmtree(base, ignore_errors=True)

    return measure


# ------------------------------------------------------------------ main


def rabbitmq_version() -> str:
    try:
        info = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return info.stdout.split("-")[0]


def format_table(results: list[Result]) -> str:
    rows = [("broker", "runs", "ready median ms", "min ms", "max ms", "stop median ms")]
    for result in results:
        ready = [seconds * 1000 for seconds in result.ready_s]
        if not ready:  # e.g. --rabbitmq-runs 0
            continue
        rows.append(
            (
                result.label,
                str(len(ready)),
                f"{statistics.median(ready):.1f}",
                f"{min(ready):.1f}",
                f"{max(ready):.1f}",
                f"{statistics.median(result.stop_s) * 1000:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per way of running our broker (default 10)")
    parser.add_argument("--rabbitmq-runs", type=int, default=3, help="RabbitMQ starts (default 3; each takes seconds)")
    parser.add_argument("--rabbitmq-port", type=int, default=5699, help="spare port for RabbitMQ (default 5699)")
    parser.add_argument("--no-rabbitmq", action="store_true", help="skip RabbitMQ even if it is installed")
    args = parser.parse_args(argv)

    import amqp_server.server.server  # noqa: F401  (so in-thread runs do not pay for the first import)

    plans: list[tuple[str, Callable[[Result], None], int]] = [
        ("python -m amqp_server", python_m_amqp_server, args.runs),
        ("amqp_server.running() (thread)", with_running(process=False), args.runs),
        ("amqp_server.running(process=True)", with_running(process=True), args.runs),
    ]
    if not args.no_rabbitmq and shutil.which("rabbitmq-server") and RABBITMQ_REF.exists():
        if args.rabbitmq_port == 5673:
            parser.error("5673 is the shared reference RabbitMQ: pick another --rabbitmq-port")
        if not port_is_free(args.rabbitmq_port):
            parser.error(f"port {args.rabbitmq_port} is in use: pick another --rabbitmq-port")
        plans.append(
            (
                f"RabbitMQ {rabbitmq_version()} (rabbitmq-ref.sh)".replace("  ", " "),
                rabbitmq(args.rabbitmq_port),
                args.rabbitmq_runs,
            )
        )

    results = []
    for label, measure, runs in plans:
        result = Result(label)
        for _ in range(runs):
            measure(result)
        results.append(result)
        print(f"{label}: done", file=sys.stderr, flush=True)
    print("start -> first AMQP handshake (connection.open-ok), fresh data dir each run")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
