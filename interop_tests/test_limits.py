"""Configured limits, as a client sees them, and the bounded shutdown.

* ``--max-connections``: as RabbitMQ's ``connection_max`` (``rabbit_reader``'s
  node connection limit), the handshake goes through and the connection.open
  that would exceed the limit gets connection.close 530 NOT_ALLOWED.
* ``--handshake-timeout``: a client that does not finish the handshake in time
  is disconnected.
* ``--max-message-size``: a larger publish closes the channel with 406.
* ``--channel-max``, ``--frame-max``, ``--heartbeat``: proposed in connection.tune.
* SIGTERM with clients that never answer connection.close, or never read,
  still ends the process within a few seconds.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pamqp import commands

from .broker_process import BrokerProcess
from .raw_client import PROTOCOL_HEADER, RawClient

SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker with small limits (max_connections aside, which gets its own broker)."""
    process = BrokerProcess(
        tmp_path_factory.mktemp("limits"),
        "--handshake-timeout",
        "1",
        "--max-message-size",
        "1024",
        "--channel-max",
        "8",
        "--frame-max",
        "8192",
        "--heartbeat",
        "7",
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def two_connections_max(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "data", "--max-connections", "2").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "data").start()
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


def pika_connect(port: int, **options) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=port,
            socket_timeout=5,
            stack_timeout=10,
            blocked_connection_timeout=5,
            connection_attempts=1,
            **options,
        )
    )


def open_until_open_answer(client: RawClient) -> object:
    """Handshake up to connection.open; return the broker's answer to it."""
    client.start()
    client.start_ok()
    client.expect(commands.Connection.Tune)
    client.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    return client.read_frame()[1]


# ------------------------------------------------------------------ max_connections


def test_connection_over_the_limit_gets_530_at_connection_open(two_connections_max: BrokerProcess) -> None:
    port = two_connections_max.port
    with RawClient("127.0.0.1", port) as first, RawClient("127.0.0.1", port) as second:
        first.handshake()
        second.handshake()
        with RawClient("127.0.0.1", port) as third:
            answer = open_until_open_answer(third)
            assert isinstance(answer, commands.Connection.Close), answer
            assert answer.reply_code == 530
            assert answer.reply_text == "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
            assert (answer.class_id, answer.method_id) == (10, 40)


def test_pika_over_the_limit_is_closed_by_the_broker(two_connections_max: BrokerProcess) -> None:
    connections = [pika_connect(two_connections_max.port) for _ in range(2)]
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
            pika_connect(two_connections_max.port)
        assert "node connection limit (2) is reached" in repr(refused.value)
    finally:
        for connection in connections:
            connection.close()


def test_a_closed_connection_frees_its_slot(two_connections_max: BrokerProcess) -> None:
    port = two_connections_max.port
    kept = pika_connect(port)
    pika_connect(port).close()
    replacement = pika_connect(port)  # the second slot again
    try:
        assert replacement.is_open and kept.is_open
    finally:
        replacement.close()
        kept.close()


def test_connections_still_in_the_handshake_do_not_count(two_connections_max: BrokerProcess) -> None:
    port = two_connections_max.port
    with RawClient("127.0.0.1", port) as idle, RawClient("127.0.0.1", port) as starting:
        idle.send(PROTOCOL_HEADER[:4])
        starting.start()
        connections = [pika_connect(port) for _ in range(2)]
        for connection in connections:
            connection.close()


# ------------------------------------------------------------------ handshake_timeout


def test_silent_client_is_disconnected_after_the_handshake_timeout(limited: BrokerProcess) -> None:
    with RawClient("127.0.0.1", limited.port) as client:
        started = time.monotonic()
        assert client.read_raw_until_closed(timeout=5) == b""
        assert 0.8 <= time.monotonic() - started < 4


def test_client_stalled_after_connection_start_is_disconnected(limited: BrokerProcess) -> None:
    with RawClient("127.0.0.1", limited.port) as client:
        started = time.monotonic()
        client.start()
        assert client.wait_closed(timeout=5) == []  # no frame: just the socket closed
        assert 0.8 <= time.monotonic() - started < 4


def test_open_connection_outlives_the_handshake_timeout(limited: BrokerProcess) -> None:
    with RawClient("127.0.0.1", limited.port) as client:
        client.handshake(frame_max=8192, channel_max=8, heartbeat=0)
        with pytest.raises(socket.timeout):
            client.read_frame(timeout=1.5)  # nothing: not dropped
        client.open_channel(1)


# ------------------------------------------------------------------ max_message_size


def test_message_over_max_message_size_closes_the_channel_with_406(limited: BrokerProcess) -> None:
    connection = pika_connect(limited.port)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"x" * 1024)
        assert channel.basic_get(queue, auto_ack=True)[2] == b"x" * 1024
        channel.basic_publish("", queue, b"x" * 1025)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.basic_get(queue)
        assert closed.value.reply_code == 406
        assert (
            closed.value.reply_text == "PRECONDITION_FAILED - message size 1025 is larger than configured max size 1024"
        )
        assert connection.is_open
    finally:
        connection.close()


# ------------------------------------------------------------------ tune values


def test_tune_proposes_the_configured_channel_max_frame_max_and_heartbeat(limited: BrokerProcess) -> None:
    with RawClient("127.0.0.1", limited.port) as client:
        client.start()
        client.start_ok()
        tune = client.expect(commands.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (8, 8192, 7)


def test_pika_negotiates_the_configured_limits(limited: BrokerProcess) -> None:
    connection = pika_connect(limited.port)
    try:
        params = connection._impl.params  # what pika settled on after connection.tune
        assert (params.channel_max, params.frame_max, params.heartbeat) == (8, 8192, 7)
    finally:
        connection.close()


# ------------------------------------------------------------------ bounded shutdown


def test_sigterm_with_a_client_that_never_answers_close_exits_within_seconds(own_broker: BrokerProcess) -> None:
    with RawClient("127.0.0.1", own_broker.port, timeout=5) as client:
        client.handshake()
        started = time.monotonic()
        own_broker.process.send_signal(signal.SIGTERM)
        close = client.expect(commands.Connection.Close, timeout=5)  # read, but never answered with close-ok
        assert (close.reply_code, close.reply_text) == (320, SHUTDOWN_TEXT)
        assert own_broker.process.wait(10) == 0
        assert time.monotonic() - started < 5


def test_sigterm_with_a_consumer_that_stopped_reading_exits_within_seconds(own_broker: BrokerProcess) -> None:
    with RawClient("127.0.0.1", own_broker.port, timeout=5) as consumer:
        consumer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        consumer.handshake()
        consumer.open_channel(1)
        consumer.send_method(1, commands.Queue.Declare(queue="firehose"))
        consumer.expect(commands.Queue.DeclareOk, 1)
        consumer.send_method(1, commands.Basic.Consume(queue="firehose", no_ack=True))
        consumer.expect(commands.Basic.ConsumeOk, 1)
        publisher = pika_connect(own_broker.port)
        channel = publisher.channel()
        for _ in range(60):  # 15 MB the consumer never reads: the broker's socket buffer stays full
            channel.basic_publish("", "firehose", b"x" * 256 * 1024)
        publisher.close()
        started = time.monotonic()
        own_broker.process.send_signal(signal.SIGTERM)
        assert own_broker.process.wait(10) == 0
        assert time.monotonic() - started < 6
