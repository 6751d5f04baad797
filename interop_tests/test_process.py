"""The broker as a process: command line, environment variables, signals, console script.

Every test starts its own broker (``BrokerProcess`` or a bare ``subprocess``),
waits for the ``listening on HOST:PORT`` line with a deadline, and stops the
process at teardown whatever happened.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from .broker_process import LISTENING, BrokerProcess

REPO = Path(__file__).resolve().parent.parent
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


class Spawned:
    """A broker subprocess whose stderr lines are collected by a thread, so every wait has a deadline."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line containing {needle!r} in time:\n{''.join(self.log)}"
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"stderr closed before {needle!r}:\n{''.join(self.log)}"
            self.log.append(line)
            if needle in line:
                return line

    def listening_port(self) -> int:
        match = LISTENING.search(self.wait_for_line("listening on"))
        assert match is not None
        return int(match.group(2))

    def rest_of_log(self, timeout: float = 5.0) -> str:
        """Everything on stderr until it closes (the process has exited or is exiting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                break
            self.log.append(line)
        return "".join(self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def spawn() -> Iterator:
    started: list[Spawned] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Spawned:
        spawned = Spawned(args, env)
        started.append(spawned)
        return spawned

    yield start
    for spawned in started:
        spawned.stop()


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "data").start()
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMQP_SERVER_")}
    # the HTTP listeners on free ports unless a test says otherwise: 15672/15692 may be taken on this machine
    env.update(AMQP_SERVER_MANAGEMENT_PORT="0", AMQP_SERVER_PROMETHEUS_PORT="0")
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pika_connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1", port=port, socket_timeout=5, blocked_connection_timeout=5, connection_attempts=1
        )
    )


def assert_serves(port: int) -> None:
    connection = pika_connect(port)
    try:
        channel = connection.channel()
        queue_name = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue_name, b"ping")
        assert channel.basic_get(queue_name, auto_ack=True)[2] == b"ping"
    finally:
        connection.close()


def wait_for_broker_close(connection: pika.BlockingConnection, timeout: float = 5.0) -> Exception:
    """Drive pika until the broker ends the connection; return what pika raised."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection.process_data_events(time_limit=0.1)
        except pika.exceptions.AMQPError as error:
            return error
    raise AssertionError("the broker did not close the client connection in time")


def test_port_zero_picks_a_free_port_and_logs_it_with_the_data_dir(broker_process: BrokerProcess) -> None:
    assert broker_process.port > 0
    line = next(line for line in broker_process.log if "listening on" in line)
    assert f"listening on 127.0.0.1:{broker_process.port}" in line
    assert f"data dir {broker_process.data_dir}" in line
    assert broker_process.data_dir.is_dir()
    assert_serves(broker_process.port)


def test_environment_variables_configure_port_data_dir_and_log_level(spawn, tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "from-env"
    broker = spawn(
        [sys.executable, "-m", "amqp_server"],
        env=clean_env(
            AMQP_SERVER_HOST="127.0.0.1",
            AMQP_SERVER_PORT=str(port),
            AMQP_SERVER_DATA_DIR=str(data_dir),
            AMQP_SERVER_LOG_LEVEL="debug",
        ),
    )
    line = broker.wait_for_line("listening on")
    assert f"listening on 127.0.0.1:{port}, data dir {data_dir}" in line
    assert data_dir.is_dir()
    assert_serves(port)
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(10) == 0
    assert " DEBUG " in broker.rest_of_log()  # debug records are only emitted at log level debug


def test_log_level_from_the_environment_silences_info(spawn, tmp_path: Path) -> None:
    broker = spawn(
        [sys.executable, "-m", "amqp_server", "--port", "0"],
        env=clean_env(AMQP_SERVER_DATA_DIR=str(tmp_path / "data"), AMQP_SERVER_LOG_LEVEL="error"),
    )
    assert_serves(broker.listening_port())
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(10) == 0
    log = broker.rest_of_log()
    assert " INFO " not in log and " DEBUG " not in log, log


def test_flags_win_over_environment_variables(spawn, tmp_path: Path) -> None:
    flag_dir = tmp_path / "from-flag"
    broker = spawn(
        [sys.executable, "-m", "amqp_server", "--port", "0", "--data-dir", str(flag_dir)],
        env=clean_env(AMQP_SERVER_PORT=str(free_port()), AMQP_SERVER_DATA_DIR=str(tmp_path / "env")),
    )
    line = broker.wait_for_line("listening on")
    assert f"data dir {flag_dir}" in line
    port = int(LISTENING.search(line).group(2))
    assert_serves(port)
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_clients_with_connection_forced_and_exits_zero(broker_process: BrokerProcess, sig: int) -> None:
    connection = pika_connect(broker_process.port)
    channel = connection.channel()
    channel.queue_declare("", exclusive=True)
    broker_process.process.send_signal(sig)
    error = wait_for_broker_close(connection)
    assert isinstance(error, pika.exceptions.ConnectionClosedByBroker), repr(error)
    assert (error.reply_code, error.reply_text) == (320, SHUTDOWN_TEXT)
    assert broker_process.process.wait(5) == 0
    assert not connection.is_open


def test_signal_with_no_clients_exits_zero_promptly(broker_process: BrokerProcess) -> None:
    started = time.monotonic()
    broker_process.process.send_signal(signal.SIGTERM)
    assert broker_process.process.wait(5) == 0
    assert time.monotonic() - started < 3
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker_process.port), timeout=2).close()


def test_help_lists_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amqp_server", "--help"], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--log-level"):
        assert flag in result.stdout
    for variable in ("AMQP_SERVER_HOST", "AMQP_SERVER_PORT", "AMQP_SERVER_DATA_DIR", "AMQP_SERVER_LOG_LEVEL"):
        assert variable in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_bad_arguments_exit_with_usage_error(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amqp_server", *args], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_port_already_in_use_exits_nonzero(broker_process: BrokerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amqp_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(broker_process.port),
            "--data-dir",
            str(tmp_path / "second"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode != 0
    assert "address already in use" in result.stderr.lower()
    assert_serves(broker_process.port)


def test_console_script_is_installed_and_serves(spawn, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "amqp-server"
    assert script.is_file(), "the amqp-server console script is missing: pip install -e ."
    help_result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert help_result.returncode == 0 and "--data-dir" in help_result.stdout
    broker = spawn([str(script), "--port", "0", "--data-dir", str(tmp_path / "data")], env=clean_env())
    assert_serves(broker.listening_port())
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(10) == 0
