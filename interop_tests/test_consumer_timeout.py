"""Delivery acknowledgement timeout with pika: the channel closes with 406, the message goes to another consumer.

Runs against a broker of its own started with ``--consumer-timeout 2000``; with ``AMQP_URL`` against that broker,
which must have the same timeout (RabbitMQ: ``consumer_timeout = 2000`` in rabbitmq.conf).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest

from amqp_server.ops.embedding import running

from .broker_process import BrokerProcess, external_url

TIMEOUT_MS = 2000
WAIT = 75.0  # s: RabbitMQ 3.10 checks on its channel tick, up to a minute after the timeout (measured)


@pytest.fixture(scope="module")
def timeout_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    external = external_url()
    if external is not None:
        yield SimpleNamespace(host=external[0], port=external[1])
        return
    data_dir: Path = tmp_path_factory.mktemp("consumer-timeout")
    process = BrokerProcess(data_dir, "--consumer-timeout", str(TIMEOUT_MS)).start()
    try:
        yield SimpleNamespace(host=process.host, port=process.port)
    finally:
        process.stop()


def connect(broker: SimpleNamespace) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(broker.host, broker.port, connection_attempts=1, socket_timeout=5, stack_timeout=10)
    )


def test_unacked_delivery_closes_the_channel_and_is_redelivered(timeout_broker: SimpleNamespace, unique: str) -> None:
    slow = connect(timeout_broker)
    try:
        channel = slow.channel()
        channel.queue_declare(unique)  # not auto-delete: the close cancels the consumer
        channel.basic_publish("", unique, b"job")
        closed: list[pika.exceptions.ChannelClosed] = []
        channel._impl.add_on_close_callback(lambda _channel, reason: closed.append(reason))
        got: list[bytes] = []
        channel.basic_consume(unique, lambda _ch, _method, _props, body: got.append(body))
        deadline = time.monotonic() + WAIT
        while not closed:
            assert time.monotonic() < deadline, "the channel was not closed"
            slow.process_data_events(time_limit=0.1)
        assert got == [b"job"]
        assert closed[0].reply_code == 406
        assert closed[0].reply_text == (
            f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel.channel_number} timed out. "
            f"Timeout value used: {TIMEOUT_MS} ms. "
            "This timeout value can be configured, see consumers doc guide to learn more"
        )
        other = slow.channel()
        deadline = time.monotonic() + 5
        while (message := other.basic_get(unique, auto_ack=True))[0] is None:
            assert time.monotonic() < deadline, "the message was not requeued"
            slow.sleep(0.05)
        assert message[0].redelivered and message[2] == b"job"
        other.queue_delete(unique)
    finally:
        if slow.is_open:
            slow.close()


def test_a_consumers_own_timeout_beats_the_queues(unique: str) -> None:
    """``x-consumer-timeout`` on basic.consume (RabbitMQ 3.12): consumer, then queue, then broker.

    On a virtual clock: a minute of timeouts in milliseconds.
    """
    with running(virtual_clock=True) as broker:  # the broker's own timeout: the default 30 minutes
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            closed: list[pika.exceptions.ChannelClosed] = []
            patient, hasty = connection.channel(), connection.channel()
            for channel in (patient, hasty):
                channel._impl.add_on_close_callback(lambda channel, reason: closed.append((channel, reason)))
            patient.queue_declare(unique, arguments={"x-consumer-timeout": 1000})
            hasty.queue_declare(unique + "-hasty")
            for queue in (unique, unique + "-hasty"):
                patient.basic_publish("", queue, b"job")
            patient.basic_consume(unique, lambda *_: None, arguments={"x-consumer-timeout": 60_000})
            hasty.basic_consume(unique + "-hasty", lambda *_: None, arguments={"x-consumer-timeout": 3000})
            connection.process_data_events(time_limit=0.2)  # both deliveries sent
            for _ in range(6):
                broker.advance(1)
            connection.process_data_events(time_limit=0.2)
            assert [(channel.channel_number, reason.reply_code) for channel, reason in closed] == [
                (hasty.channel_number, 406)
            ]
            assert "Timeout value used: 3000 ms" in closed[0][1].reply_text
            for _ in range(60):
                broker.advance(1)
            connection.process_data_events(time_limit=0.2)
            assert len(closed) == 2 and "Timeout value used: 60000 ms" in closed[1][1].reply_text
        finally:
            if connection.is_open:
                connection.close()


def test_a_stream_consumers_own_timeout_closes_its_channel(unique: str) -> None:
    """A stream consumer's ``x-consumer-timeout`` counts too: its deliveries await acks (the prefetch credit).

    It was dropped on the way to the stream consumer, which then waited the broker's 30 minutes.
    """
    with running(virtual_clock=True) as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            channel = connection.channel()
            closed: list[pika.exceptions.ChannelClosed] = []
            channel._impl.add_on_close_callback(lambda _channel, reason: closed.append(reason))
            channel.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
            channel.confirm_delivery()
            channel.basic_publish("", unique, b"m0")
            channel.basic_qos(prefetch_count=1)
            got: list[bytes] = []
            arguments = {"x-stream-offset": "first", "x-consumer-timeout": 3000}
            channel.basic_consume(unique, lambda _ch, _method, _props, body: got.append(body), arguments=arguments)
            connection.process_data_events(time_limit=0.2)  # the delivery sent
            for _ in range(6):
                broker.advance(1)
            connection.process_data_events(time_limit=0.2)
            assert got == [b"m0"]
            assert [(reason.reply_code, reason.reply_text) for reason in closed] == [
                (
                    406,
                    f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel.channel_number} timed out. "
                    "Timeout value used: 3000 ms. "
                    "This timeout value can be configured, see consumers doc guide to learn more",
                )
            ]
            connection.channel().queue_delete(unique)
        finally:
            if connection.is_open:
                connection.close()
