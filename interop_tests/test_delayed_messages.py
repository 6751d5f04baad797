"""Delayed messages (x-delayed-message, as rabbitmq-delayed-message-exchange) through pika against a broker
process: firing order, routing by x-delayed-type, restarts and kill -9, exchange deletion, refusals,
the management API's ``messages_delayed``, and the virtual clock making a 30 s delay take no time.

The plugin is not installed on the reference RabbitMQ, so these run against our broker only. Nothing
here asserts how long anything took: a message held for a few seconds is checked absent right after
publishing, then waited for with a bounded timeout.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from amqp_server.ops.embedding import RunningBroker

from .broker_process import BrokerProcess
from .conftest import TIMEOUT
from .management_client import Api

DELAYED = "x-delayed-message"
LONG = 4000  # ms: long enough to check "not yet" right after publishing (or after a restart)


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    started = BrokerProcess(tmp_path_factory.mktemp("delayed-data")).start()
    try:
        yield started
    finally:
        started.stop()


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = TIMEOUT
    params.stack_timeout = 2 * TIMEOUT
    return pika.BlockingConnection(params)


@pytest.fixture
def channel(process: BrokerProcess) -> Iterator[BlockingChannel]:
    connection = connect(process.url)
    try:
        opened = connection.channel()
        opened.confirm_delivery()
        yield opened
    finally:
        if connection.is_open:
            connection.close()


def declare(channel: BlockingChannel, name: str, delayed_type: str = "direct", durable: bool = True) -> None:
    channel.exchange_declare(name, DELAYED, durable=durable, arguments={"x-delayed-type": delayed_type})


def bound_queue(channel: BlockingChannel, exchange: str, queue: str, key: str = "", **arguments: Any) -> None:
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, key, arguments=arguments or None)


def send(channel: BlockingChannel, exchange: str, key: str, body: bytes, delay: int | None, **options: Any) -> None:
    headers = dict(options.pop("headers", {}))
    if delay is not None:
        headers["x-delay"] = delay
    properties = pika.BasicProperties(delivery_mode=options.pop("delivery_mode", 2), headers=headers)
    channel.basic_publish(exchange, key, body, properties, **options)


def receive(channel: BlockingChannel, queue: str, count: int, timeout: float = 15.0) -> list[bytes]:
    """The bodies of the next ``count`` messages of ``queue``, polling up to ``timeout``."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        _, _, body = channel.basic_get(queue, auto_ack=True)
        if body is None:
            channel.connection.sleep(0.02)
        else:
            got.append(body)
    return got


def is_empty(channel: BlockingChannel, queue: str) -> bool:
    return channel.queue_declare(queue, passive=True).method.message_count == 0


# ------------------------------------------------------------------ holding, firing, routing


def test_delays_fire_in_delay_order_not_publish_order(channel: BlockingChannel) -> None:
    declare(channel, "order")
    bound_queue(channel, "order", "order-q", "k")
    for delay, body in ((900, b"third"), (300, b"first"), (600, b"second"), (None, b"now"), (-100, b"negative")):
        send(channel, "order", "k", body, delay)
    assert receive(channel, "order-q", 5) == [b"now", b"negative", b"first", b"second", b"third"]


@pytest.mark.parametrize(
    ("delayed_type", "bindings", "key", "headers", "expected"),
    [
        ("direct", (("k", {}), ("other", {})), "k", {}, [0]),
        ("topic", (("orders.*", {}), ("#.eu", {}), ("x.#", {})), "orders.eu", {}, [0, 1]),
        ("fanout", (("a", {}), ("b", {})), "ignored", {}, [0, 1]),
        ("headers", (("", {"x-match": "all", "r": "eu"}), ("", {"x-match": "any", "r": "us"})), "", {"r": "eu"}, [0]),
    ],
)
def test_a_fired_message_routes_by_x_delayed_type(
    channel: BlockingChannel, unique: str, delayed_type, bindings, key, headers, expected
) -> None:
    declare(channel, unique, delayed_type)
    queues = [f"{unique}-{n}" for n in range(len(bindings))]
    for queue, (binding_key, arguments) in zip(queues, bindings, strict=True):
        bound_queue(channel, unique, queue, binding_key, **arguments)
    send(channel, unique, key, b"m", LONG, headers=headers)
    assert all(is_empty(channel, queue) for queue in queues)  # held
    assert [receive(channel, queues[n], 1) for n in expected] == [[b"m"]] * len(expected)
    assert all(is_empty(channel, queue) for n, queue in enumerate(queues) if n not in expected)


def test_a_held_mandatory_message_is_not_returned(channel: BlockingChannel, unique: str) -> None:
    declare(channel, unique)
    bound_queue(channel, unique, unique, "k")
    returned: list[bytes] = []
    channel.add_on_return_callback(lambda _ch, _method, _props, body: returned.append(body))
    send(channel, unique, "nowhere", b"held", 200, mandatory=True)  # confirmed, no basic.return
    send(channel, unique, "k", b"marker", 400)
    assert receive(channel, unique, 1) == [b"marker"]
    assert returned == []
    with pytest.raises(pika.exceptions.UnroutableError):
        send(channel, unique, "nowhere", b"now", None, mandatory=True)


def test_deleting_the_exchange_drops_its_held_messages(channel: BlockingChannel, unique: str) -> None:
    declare(channel, unique)
    bound_queue(channel, unique, unique, "k")
    send(channel, unique, "k", b"dropped", 300)
    channel.exchange_delete(unique)
    declare(channel, unique)
    channel.queue_bind(unique, unique, "k")
    send(channel, unique, "k", b"after", 600)
    assert receive(channel, unique, 2, timeout=5) == [b"after"]


@pytest.mark.parametrize(
    ("arguments", "code", "text"),
    [
        ({}, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (
            {"x-delayed-type": DELAYED},
            406,
            "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        ),
        ({"x-delayed-type": "nope"}, 503, "COMMAND_INVALID - invalid exchange type 'nope'"),
    ],
    ids=["missing", "itself", "unknown"],
)
def test_declare_refusals_carry_the_plugins_reply(process: BrokerProcess, arguments, code, text) -> None:
    connection = connect(process.url)
    try:
        with pytest.raises((pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker)) as error:
            connection.channel().exchange_declare("refused", DELAYED, arguments=arguments)
        assert (error.value.reply_code, error.value.reply_text) == (code, text)
    finally:
        if connection.is_open:
            connection.close()


def test_management_api_counts_held_messages_and_lists_the_type(process: BrokerProcess, channel, unique) -> None:
    api = Api(f"http://127.0.0.1:{process.management_port}")
    declare(channel, unique)
    for _ in range(3):
        send(channel, unique, "k", b"m", 60_000)
    one = api.get(f"/api/exchanges/%2F/{unique}").json
    assert (one["type"], one["arguments"], one["messages_delayed"]) == (DELAYED, {"x-delayed-type": "direct"}, 3)
    listed = {e["name"]: e for e in api.get("/api/exchanges").json}
    assert listed[unique]["messages_delayed"] == 3
    assert "messages_delayed" not in listed["amq.direct"]
    types = api.get("/api/overview").json["exchange_types"]
    assert {"name": DELAYED, "description": "Delayed Message Exchange.", "enabled": True} in types
    channel.exchange_delete(unique)


def test_management_api_declares_delayed_exchanges_and_refuses_without_x_delayed_type(process, unique) -> None:
    api = Api(f"http://127.0.0.1:{process.management_port}")
    declared = api.put(f"/api/exchanges/%2F/{unique}", {"type": DELAYED, "arguments": {"x-delayed-type": "fanout"}})
    assert declared.status == 201
    assert api.get(f"/api/exchanges/%2F/{unique}").json["messages_delayed"] == 0
    refused = api.put(f"/api/exchanges/%2F/{unique}-bad", {"type": DELAYED})
    reason = "Invalid argument, 'x-delayed-type' must be an existing exchange type"
    assert (refused.status, refused.json) == (400, {"error": "bad_request", "reason": reason})
    assert api.request("DELETE", f"/api/exchanges/%2F/{unique}").status == 204


# ------------------------------------------------------------------ restarts


def held_before_stop(url: str) -> None:
    """Durable and transient exchanges, persistent and transient messages, all held ``LONG`` ms."""
    connection = connect(url)
    channel = connection.channel()
    channel.confirm_delivery()
    declare(channel, "durable-dx")
    declare(channel, "transient-dx", durable=False)
    bound_queue(channel, "durable-dx", "out", "k")
    channel.queue_bind("out", "transient-dx", "k")
    send(channel, "durable-dx", "k", b"kept 1", LONG)
    send(channel, "durable-dx", "k", b"kept 2", LONG + 100)
    send(channel, "durable-dx", "k", b"transient message", LONG, delivery_mode=1)
    send(channel, "transient-dx", "k", b"transient exchange", LONG)
    connection.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
def test_held_persistent_messages_of_durable_exchanges_survive_a_stop(
    start_broker: Callable[[Path], BrokerProcess], tmp_path: Path, stop_signal: int
) -> None:
    first = start_broker(tmp_path)
    held_before_stop(first.url)
    first.stop(stop_signal)
    second = start_broker(tmp_path)
    connection = connect(second.url)
    try:
        channel = connection.channel()
        assert is_empty(channel, "out")  # still held after the restart
        assert receive(channel, "out", 2) == [b"kept 1", b"kept 2"]
        channel.connection.sleep(0.5)
        assert is_empty(channel, "out")  # the transient ones are gone
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.exchange_declare("transient-dx", DELAYED, passive=True)
    finally:
        connection.close()


# ------------------------------------------------------------------ virtual clock


def test_the_virtual_clock_fires_a_30_s_delay_when_advanced(amqp_virtual_broker: RunningBroker) -> None:
    connection = connect(amqp_virtual_broker.url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, "later", "topic")
        bound_queue(channel, "later", "later-q", "jobs.#")
        send(channel, "later", "jobs.retry", b"in 30 s", 30_000)
        send(channel, "later", "jobs.retry", b"in 10 s", 10_000)
        amqp_virtual_broker.advance(9.999)
        assert is_empty(channel, "later-q")
        amqp_virtual_broker.advance(0.001)
        assert receive(channel, "later-q", 1) == [b"in 10 s"]
        amqp_virtual_broker.advance(19.99)
        assert is_empty(channel, "later-q")
        amqp_virtual_broker.advance(0.01)
        assert receive(channel, "later-q", 1) == [b"in 30 s"]
    finally:
        connection.close()
