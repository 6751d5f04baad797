"""The broker's log on stderr: text by default, JSON lines with ``--log-format json``.

Both formats keep the startup contract: the exact line
``amqp-server listening on HOST:PORT, data dir DIR`` (not a log record).
Connections are logged when accepted (peer), opened (user, vhost) and closed;
refused logins carry peer, user and mechanism; connection errors their reply code.
In JSON mode those are fields of the record, not only words in the message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
import pytest
from pamqp import commands

from .broker_process import BrokerProcess
from .raw_client import RawClient

LISTENING_LINE = re.compile(r"^amqp-server listening on 127\.0\.0\.1:(\d+), data dir (.+)$")
# every line printed for tooling rather than logged: the AMQP one, the management API's and Prometheus'
PRINTED_LINE = re.compile(r"^amqp-server (management |prometheus )?listening on ")
TEXT_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+$")
TIMEOUT = 10.0


def start(data_dir: Path, *args: str) -> BrokerProcess:
    return BrokerProcess(data_dir, *args).start()


@pytest.fixture(scope="module")
def text_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = start(tmp_path_factory.mktemp("text-log"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def json_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = start(tmp_path_factory.mktemp("json-log"), "--log-format", "json")
    try:
        yield process
    finally:
        process.stop()


def lines(process: BrokerProcess) -> list[str]:
    return [line.rstrip("\n") for line in list(process.log)]


def records(process: BrokerProcess) -> list[dict[str, Any]]:
    """Every JSON record so far (the listening line is the one line that is not JSON)."""
    return [json.loads(line) for line in lines(process) if not PRINTED_LINE.match(line)]


def wait_for(process: BrokerProcess, predicate: Callable[[Any], bool], parse: Callable = records) -> Any:
    """The first record (or line) that satisfies ``predicate``, waiting for the stderr reader to catch up."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = [entry for entry in parse(process) if predicate(entry)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "no such log entry:\n" + "\n".join(lines(process))
        time.sleep(0.02)


def local_peer(client: RawClient) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def refused_login(port: int) -> str:
    """Log in with a wrong password; return the client's address as the broker sees it."""
    with RawClient("127.0.0.1", port) as client:
        client.start()
        client.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism="PLAIN",
                response="\0guest\0wrong",
            ),
        )
        assert client.expect(commands.Connection.Close).reply_code == 403
        return local_peer(client)


# ------------------------------------------------------------------ text (default)


def test_text_mode_prints_the_listening_line_and_timestamped_records(text_broker: BrokerProcess) -> None:
    wait_for(text_broker, lambda line: "recovered 0 messages" in line, parse=lines)
    listening = [line for line in lines(text_broker) if LISTENING_LINE.match(line)]
    assert listening == [f"amqp-server listening on 127.0.0.1:{text_broker.port}, data dir {text_broker.data_dir}"]
    others = [line for line in lines(text_broker) if line and not PRINTED_LINE.match(line)]
    assert others and all(TEXT_RECORD.match(line) for line in others), others


def test_text_mode_logs_a_connection_accepted_opened_and_closed(text_broker: BrokerProcess) -> None:
    with RawClient("127.0.0.1", text_broker.port) as client:
        client.handshake()
        peer = local_peer(client)
        client.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        client.expect(commands.Connection.CloseOk)
    wait_for(
        text_broker,
        lambda line: line.endswith(f"INFO amqp_server.protocol: accepted AMQP connection from {peer}"),
        parse=lines,
    )
    wait_for(
        text_broker,
        lambda line: line.endswith(
            f"connection from {peer}: user 'guest' authenticated and granted access to vhost '/'"
        ),
        parse=lines,
    )
    wait_for(text_broker, lambda line: f"closed connection from {peer} (user 'guest', vhost '/'" in line, parse=lines)


def test_text_mode_logs_a_refused_login_as_a_warning(text_broker: BrokerProcess) -> None:
    peer = refused_login(text_broker.port)
    wait_for(text_broker, lambda line: " WARNING " in line and "guest" in line and peer in line, parse=lines)


# ------------------------------------------------------------------ JSON lines


def test_json_mode_keeps_the_exact_listening_line(json_broker: BrokerProcess) -> None:
    assert lines(json_broker)[0] == (
        f"amqp-server listening on 127.0.0.1:{json_broker.port}, data dir {json_broker.data_dir}"
    )


def test_json_mode_every_other_line_is_a_json_record_with_the_base_keys(json_broker: BrokerProcess) -> None:
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host="127.0.0.1", port=json_broker.port, socket_timeout=5, connection_attempts=1)
    )
    connection.close()
    wait_for(json_broker, lambda record: record["message"].startswith("closed connection"))
    for record in records(json_broker):
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert record["logger"].startswith(("amqp_server", "asyncio"))
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None


def test_json_mode_connection_records_carry_peer_user_and_vhost(json_broker: BrokerProcess) -> None:
    with RawClient("127.0.0.1", json_broker.port) as client:
        client.handshake()
        peer = local_peer(client)
        client.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        client.expect(commands.Connection.CloseOk)
    accepted = wait_for(json_broker, lambda r: r.get("peer") == peer and r["message"].startswith("accepted"))
    assert (accepted["level"], accepted["logger"]) == ("INFO", "amqp_server.protocol")
    opened = wait_for(json_broker, lambda r: r.get("peer") == peer and "authenticated" in r["message"])
    assert (opened["user"], opened["vhost"]) == ("guest", "/")
    closed = wait_for(json_broker, lambda r: r.get("peer") == peer and r["message"].startswith("closed"))
    assert (closed["user"], closed["vhost"]) == ("guest", "/")


def test_json_mode_refused_login_carries_peer_user_and_mechanism(json_broker: BrokerProcess) -> None:
    peer = refused_login(json_broker.port)
    refused = wait_for(json_broker, lambda r: peer in r["message"] and r["level"] == "WARNING")
    assert (refused.get("peer"), refused.get("user"), refused.get("mechanism")) == (peer, "guest", "PLAIN"), refused


def test_json_mode_connection_error_carries_the_reply_code(json_broker: BrokerProcess) -> None:
    with RawClient("127.0.0.1", json_broker.port) as client:
        client.start()
        client.start_ok()
        client.expect(commands.Connection.Tune)
        client.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host="no-such-vhost"))
        assert client.expect_connection_close().reply_code == 530
        peer = local_peer(client)
    error = wait_for(json_broker, lambda r: peer in r["message"] and "no-such-vhost" in r["message"])
    assert error.get("reply_code") == 530, error
    assert error.get("peer") == peer, error


def test_json_mode_honours_the_log_level(tmp_path: Path) -> None:
    process = start(tmp_path / "data", "--log-format", "json", "--log-level", "warning")
    try:
        peer = refused_login(process.port)
        wait_for(process, lambda r: r["level"] == "WARNING" and peer in r["message"])
        assert all(record["level"] != "INFO" for record in records(process)), records(process)
    finally:
        process.stop()
