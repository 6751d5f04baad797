"""``amqp_server.running(virtual_clock=True)`` and ``broker.advance(seconds)``, through pika.

A 30 s TTL or a queue's ``x-expires`` takes effect when the test moves the
clock, before ``advance`` returns: no sleeping for the TTL.  Heartbeats stay on
real time, so an hour's jump leaves idle connections open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from amqp_server.ops.embedding import RunningBroker, running

from .conftest import TIMEOUT

pytest_plugins = ["pytester"]


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    with running(virtual_clock=True) as started:
        yield started


@contextmanager
def open_channel(broker: RunningBroker, heartbeat: int | None = None) -> Iterator[BlockingChannel]:
    params = pika.URLParameters(broker.url)
    params.socket_timeout = params.blocked_connection_timeout = TIMEOUT
    params.stack_timeout = 2 * TIMEOUT
    params.connection_attempts = 1
    if heartbeat is not None:
        params.heartbeat = heartbeat
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def declare_retry_queue(channel: BlockingChannel) -> None:
    """``retry`` holds messages 30 s, then dead-letters them through ``dlx`` to ``dead``."""
    channel.exchange_declare("dlx", "fanout")
    channel.queue_declare("dead")
    channel.queue_bind("dead", "dlx")
    channel.queue_declare("retry", arguments={"x-message-ttl": 30_000, "x-dead-letter-exchange": "dlx"})
    channel.basic_publish("", "retry", b"try again")


def test_a_30_s_ttl_dead_letters_when_the_clock_reaches_it(broker: RunningBroker) -> None:
    with open_channel(broker) as channel:
        declare_retry_queue(channel)
        broker.advance(29.9)
        assert channel.basic_get("dead", auto_ack=True) == (None, None, None)
        assert channel.queue_declare("retry", passive=True).method.message_count == 1
        broker.advance(0.1)
        method, properties, body = channel.basic_get("dead", auto_ack=True)
        assert body == b"try again"
        assert properties.headers["x-death"][0]["reason"] == "expired"
        assert channel.queue_declare("retry", passive=True).method.message_count == 0


def test_a_consumer_of_the_dead_letter_queue_gets_the_message_after_advance(broker: RunningBroker) -> None:
    with open_channel(broker) as channel:
        declare_retry_queue(channel)
        got: list[bytes] = []
        channel.basic_consume("dead", lambda _ch, _method, _props, body: got.append(body), auto_ack=True)
        channel.connection.process_data_events(time_limit=0)
        assert got == []
        broker.advance(30)
        deadline = time.monotonic() + TIMEOUT
        while not got and time.monotonic() < deadline:  # the delivery is on its way: bounded polling
            channel.connection.process_data_events(time_limit=0.05)
        assert got == [b"try again"]


def test_x_expires_deletes_an_unused_queue_once_the_clock_passes_it(broker: RunningBroker) -> None:
    with open_channel(broker) as channel:
        channel.queue_declare("scratch", arguments={"x-expires": 10_000})
        broker.advance(9.9)
        channel.queue_declare("scratch", passive=True)  # still there
        broker.advance(10)  # well past 10 s unused, however the passive declare counted
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as error:
            channel.queue_declare("scratch", passive=True)
        assert error.value.reply_code == 404


def test_an_hour_ahead_does_not_drop_idle_connections_for_missed_heartbeats(broker: RunningBroker) -> None:
    with open_channel(broker, heartbeat=2) as channel:
        broker.advance(3600)
        channel.queue_declare("after-an-hour")
        assert channel.connection.is_open


def test_advance_needs_a_virtual_clock() -> None:
    with running() as real, pytest.raises(RuntimeError, match="virtual_clock"):
        real.advance(1)
    with pytest.raises(TypeError, match="virtual_clock"), running(process=True, virtual_clock=True):
        pass


def test_the_pytest_plugin_gives_a_test_a_broker_on_a_virtual_clock(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    pytester.makepyfile(
        """
import pika


def test_ttl(amqp_virtual_broker):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_virtual_broker.url))
    channel = connection.channel()
    channel.queue_declare("q", arguments={"x-message-ttl": 30_000})
    channel.basic_publish("", "q", b"m")
    amqp_virtual_broker.advance(29)
    assert channel.queue_declare("q", passive=True).method.message_count == 1
    amqp_virtual_broker.advance(1)
    assert channel.queue_declare("q", passive=True).method.message_count == 0
    connection.close()
"""
    )
    plugin = ("-p", "amqp_server.pytest_plugin", "-p", "no:asyncio", "-p", "no:hypothesispytest")
    pytester.runpytest(*plugin).assert_outcomes(passed=1)
    pytester.runpytest(*plugin, "--amqp-broker-url", "amqp://guest:guest@127.0.0.1:1/").assert_outcomes(skipped=1)
