"""Small pika helpers shared by the interop suites."""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from .broker_process import BrokerProcess
from .conftest import TIMEOUT


def connect(
    broker: BrokerProcess, user: str = "guest", password: str = "guest", vhost: str = "/", name: str | None = None
) -> BlockingConnection:
    """A blocking connection to ``broker`` as ``user``: one attempt, every wait bounded (a refusal raises at once).

    ``name``: the client's ``connection_name``, as the management API shows it."""
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            broker.host,
            broker.port,
            vhost,
            pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=5,
            stack_timeout=10,
            blocked_connection_timeout=5,
            client_properties={"connection_name": name} if name else None,
        )
    )


def publish(channel: BlockingChannel, queue: str, *bodies: bytes) -> None:
    for body in bodies:
        channel.basic_publish("", queue, body)


def message_count(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_for_message_count(channel: BlockingChannel, queue: str, expected: int) -> None:
    """Poll until the queue holds ``expected`` ready messages (requeues are asynchronous in RabbitMQ)."""
    deadline = time.monotonic() + TIMEOUT
    while (count := message_count(channel, queue)) != expected:
        assert time.monotonic() < deadline, f"queue {queue!r} holds {count} messages, expected {expected}"
        channel.connection.sleep(0.02)


def get_all(channel: BlockingChannel, queue: str) -> list[tuple[bytes, bool]]:
    """Drain the queue with basic.get (auto-ack): ``[(body, redelivered), ...]``."""
    got = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def wait_until(connection: BlockingConnection, predicate: Callable[[], bool], what: str) -> None:
    """Process events until ``predicate()`` holds (bounded by TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {what}"
        connection.process_data_events(time_limit=min(0.05, remaining))
