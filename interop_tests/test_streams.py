"""Stream queues (``x-queue-type: stream``) through pika, as RabbitMQ 3.10 serves them over AMQP 0-9-1.

Runs against the session broker, or RabbitMQ with ``AMQP_URL`` (the management test with
``AMQP_HTTP_URL`` too): offsets of every kind, the ``x-stream-offset`` header, ten consumers at ten
offsets, RabbitMQ's refusals (codes and texts probed on 3.10.8), retention by bytes.  Retention by
age runs on the virtual-clock broker; restart and kill -9 durability on brokers of their own; one
aio-pika consumer reads from an offset.
"""

from __future__ import annotations

import asyncio
import datetime
import signal
import threading
import time
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .conftest import TIMEOUT
from .management_client import poll, q

STREAM = {"x-queue-type": "stream"}


def declare(channel: BlockingChannel, name: str, **arguments: Any) -> None:
    channel.queue_declare(name, durable=True, arguments={**STREAM, **arguments})


def publish(channel: BlockingChannel, name: str, bodies: list[bytes], headers: dict | None = None) -> None:
    for body in bodies:
        channel.basic_publish("", name, body, pika.BasicProperties(headers=headers))


def read(
    channel: BlockingChannel, name: str, offset: Any = None, count: int = 1000, prefetch: int = 100
) -> list[tuple[int, bytes]]:
    """``(x-stream-offset, body)`` of what a consumer at ``offset`` gets (acking each) until it goes quiet."""
    channel.basic_qos(prefetch_count=prefetch)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    got: list[tuple[int, bytes]] = []
    for method, properties, body in channel.consume(name, arguments=arguments, inactivity_timeout=1.0):
        if method is None:
            break
        got.append((properties.headers["x-stream-offset"], body))
        channel.basic_ack(method.delivery_tag)
        if len(got) >= count:
            break
    channel.cancel()
    return got


TEN = [b"m%d" % n for n in range(10)]


@pytest.mark.parametrize(
    ("offset", "first"),
    [("first", 0), ("last", 9), ("next", 10), (None, 10), (0, 0), (4, 4), (-5, 0), (1_000_000, 10)],
)
def test_a_consumer_starts_at_the_offset_it_asked_for(channel, unique, offset, first):
    declare(channel, unique)
    publish(channel, unique, TEN)
    assert [o for o, _ in read(channel, unique, offset)] == list(range(first, 10))


def test_timestamp_and_interval_offsets(channel, unique):
    declare(channel, unique)
    publish(channel, unique, TEN)
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert len(read(channel, unique, an_hour_ago)) == 10
    assert read(channel, unique, datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)) == []
    for interval in ("1h", "30m", "7D", "1M", "1Y"):
        assert [o for o, _ in read(channel, unique, interval)] == list(range(10)), interval


def test_deliveries_carry_their_offset_and_keep_everything_else(channel, unique):
    declare(channel, unique)
    publish(channel, unique, [b"a", b"b"], headers={"h": 1})
    channel.basic_qos(prefetch_count=10)
    seen = []
    for method, properties, body in channel.consume(
        unique, arguments={"x-stream-offset": "first"}, inactivity_timeout=1.0
    ):
        if method is None:
            break
        seen.append((body, properties.headers, method.redelivered, method.exchange, method.routing_key))
        channel.basic_ack(method.delivery_tag)
    channel.cancel()
    assert seen == [
        (b"a", {"h": 1, "x-stream-offset": 0}, False, "", unique),
        (b"b", {"h": 1, "x-stream-offset": 1}, False, "", unique),
    ]


def test_unacked_deliveries_stop_at_the_prefetch_count_and_nothing_is_removed(channel, unique):
    declare(channel, unique)
    publish(channel, unique, TEN)
    channel.basic_qos(prefetch_count=3)
    held = []
    for method, _properties, _body in channel.consume(
        unique, arguments={"x-stream-offset": "first"}, inactivity_timeout=1.0
    ):
        if method is None:
            break
        held.append(method.delivery_tag)
    channel.cancel()
    assert len(held) == 3
    assert len(read(channel, unique, "first")) == 10  # consuming took nothing away


def test_ten_consumers_at_ten_offsets(connection, channel, unique):
    declare(channel, unique)
    publish(channel, unique, TEN)
    channel.basic_qos(prefetch_count=100)
    got: dict[str, list[int]] = {}

    def on_message(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        got.setdefault(method.consumer_tag, []).append(properties.headers["x-stream-offset"])
        ch.basic_ack(method.delivery_tag)

    for n in range(10):
        channel.basic_consume(unique, on_message, consumer_tag=f"c{n}", arguments={"x-stream-offset": n})
    publish(channel, unique, [b"for everyone"])
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, got.values())) < 65 and time.monotonic() < deadline:
        connection.process_data_events(0.1)
    assert got == {f"c{n}": list(range(n, 11)) for n in range(10)}


# ------------------------------------------------------------------ refusals

QUEUE_IN = "queue '{}' in vhost '/'"


def closed_with(params: pika.ConnectionParameters, action) -> tuple[int, str]:
    connection = pika.BlockingConnection(params)
    try:
        action(connection.channel())
        connection.process_data_events(0.5)
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as error:
        return error.reply_code, error.reply_text
    finally:
        if connection.is_open:
            connection.close()
    raise AssertionError("the broker accepted it")


@pytest.fixture
def stream(channel, unique) -> str:
    declare(channel, unique)
    publish(channel, unique, TEN)
    return unique


def consume_with(qos: dict | None, no_ack: bool = False, arguments: dict | None = None):
    def action(name: str):
        def run(ch: BlockingChannel) -> None:
            if qos is not None:
                ch.basic_qos(**qos)
            ch.basic_consume(name, lambda *a: None, auto_ack=no_ack, arguments=arguments)

        return run

    return action


def settle_with(kind: str, requeue: bool):
    def action(name: str):
        def run(ch: BlockingChannel) -> None:
            ch.basic_qos(prefetch_count=10)
            for method, _p, _b in ch.consume(name, arguments={"x-stream-offset": "first"}, inactivity_timeout=2):
                assert method is not None
                if kind == "nack":
                    ch.basic_nack(method.delivery_tag, requeue=requeue)
                else:
                    ch.basic_reject(method.delivery_tag, requeue=requeue)
                ch.basic_qos(prefetch_count=10)  # a round trip: the refusal arrives before this returns
                break

        return run

    return action


NO_PREFETCH = "PRECONDITION_FAILED - consumer prefetch count is not set for '{}'"
UNSUPPORTED = "NOT_IMPLEMENTED - %s not supported by stream queues {}"
NACK = UNSUPPORTED % "basic.nack and basic.reject"
BAD_UNIT = (
    "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {}: {{invalid_stream_offset_arg,{{longstr,<<\"2x\">>}}}}"
)
QOS = {"prefetch_count": 10}


@pytest.mark.parametrize(
    ("make_action", "code", "text"),
    [
        (lambda name: lambda ch: ch.basic_get(name), 540, UNSUPPORTED % "basic.get"),
        (lambda name: lambda ch: ch.queue_purge(name), 540, UNSUPPORTED % "queue.purge"),
        (consume_with(None), 406, NO_PREFETCH),
        (consume_with(None, no_ack=True), 406, NO_PREFETCH),
        (consume_with({**QOS, "global_qos": True}), 406, NO_PREFETCH),
        (consume_with(QOS, no_ack=True), 540, UNSUPPORTED % "automatic acknowledgement"),
        (consume_with(QOS, arguments={"x-stream-offset": "2x"}), 406, BAD_UNIT),
        (consume_with(QOS, arguments={"x-stream-offset": "bogus"}), 541, "INTERNAL_ERROR"),
        (settle_with("nack", True), 540, NACK),
        (settle_with("nack", False), 540, NACK),
        (settle_with("reject", True), 540, NACK),
        (settle_with("reject", False), 540, NACK),
    ],
    ids=[
        "get",
        "purge",
        "no-qos",
        "no-qos-no-ack",
        "global-qos",
        "no-ack",
        "bad-unit",
        "no-integer",
        "nack-requeue",
        "nack",
        "reject-requeue",
        "reject",
    ],
)
def test_what_a_stream_refuses(params, stream, make_action, code, text):
    assert closed_with(params, make_action(stream)) == (code, text.format(QUEUE_IN.format(stream)))


def test_an_exclusive_consumer_is_accepted(channel, stream):
    channel.basic_qos(prefetch_count=10)
    assert channel.basic_consume(stream, lambda *a: None, exclusive=True)


FAILED = "PRECONDITION_FAILED - "
BY_TYPE = FAILED + "invalid arg '%s' for {} of queue type rabbit_stream_queue"


@pytest.mark.parametrize(
    ("declare_args", "text"),
    [
        ({"durable": False}, FAILED + "invalid property 'non-durable' for {}"),
        ({"exclusive": True}, FAILED + "invalid property 'exclusive-owner' for {}"),
        ({"auto_delete": True}, FAILED + "invalid property 'auto-delete' for {}"),
        ({"arguments": {"x-message-ttl": 1000}}, BY_TYPE % "x-message-ttl"),
        ({"arguments": {"x-max-priority": 5}}, BY_TYPE % "x-max-priority"),
        ({"arguments": {"x-max-age": "10"}}, FAILED + "invalid arg 'x-max-age' for {}: invalid_max_age"),
        ({"arguments": {"x-max-age": 5}}, FAILED + "invalid arg 'x-max-age' for {}: {{unacceptable_type,signedint}}"),
        (
            {"arguments": {"x-stream-max-segment-size-bytes": -5}},
            FAILED + "invalid arg 'x-stream-max-segment-size-bytes' for {}: {{value_negative,-5}}",
        ),
    ],
    ids=["non-durable", "exclusive", "auto-delete", "ttl", "priority", "age-unit", "age-type", "segment-size"],
)
def test_declarations_a_stream_refuses(params, unique, declare_args, text):
    fields = {"durable": True, **declare_args, "arguments": {**STREAM, **declare_args.get("arguments", {})}}
    expected = (406, text.format(QUEUE_IN.format(unique)))
    assert closed_with(params, lambda ch: ch.queue_declare(unique, **fields)) == expected


def test_declare_ok_reports_no_messages(channel, stream):
    assert channel.queue_declare(stream, durable=True, arguments=STREAM).method.message_count == 0


# ------------------------------------------------------------------ retention


def test_max_length_bytes_drops_the_oldest_whole_segments(channel, unique):
    declare(channel, unique, **{"x-max-length-bytes": 3000, "x-stream-max-segment-size-bytes": 1000})
    bodies = [b"%03d" % n + b"x" * 97 for n in range(100)]
    publish(channel, unique, bodies)
    kept = read(channel, unique, "first")
    offsets = [o for o, _ in kept]
    # RabbitMQ (osiris) starts each segment with a tracking chunk that takes an offset: its offsets of a
    # retained tail are increasing with gaps; here they are contiguous (offset = messages published before)
    assert 0 < len(kept) < 100 and offsets[0] > 0 and offsets == sorted(set(offsets))
    assert [body for _, body in kept] == bodies[-len(kept) :]  # the newest, in order, the oldest gone


def test_max_age_drops_segments_once_they_are_old(amqp_virtual_broker):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_virtual_broker.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, "aged", **{"x-max-age": "1h", "x-stream-max-segment-size-bytes": 1000})
        publish(channel, "aged", [b"old" + b"x" * 100] * 30)
        amqp_virtual_broker.advance(30 * 60)
        publish(channel, "aged", [b"mid" + b"x" * 100] * 30)
        assert read(channel, "aged", "first")[0][0] == 0  # nothing is an hour old yet
        amqp_virtual_broker.advance(45 * 60)
        publish(channel, "aged", [b"new" + b"x" * 100] * 30)  # new segments: retention looks at the old ones
        kept = read(channel, "aged", "first")
        assert [body[:3] for _, body in kept].count(b"old") < 10  # at most the segment that was being written
        assert [o for o, _ in kept] == list(range(kept[0][0], 90))
        assert [body[:3] for _, body in kept][-60:] == [b"mid"] * 30 + [b"new"] * 30
    finally:
        connection.close()


# ------------------------------------------------------------------ management API


def test_streams_in_the_management_api(management, unique):
    connection = pika.BlockingConnection(pika.URLParameters(management.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, unique, **{"x-max-age": "7D"})
        publish(channel, unique, TEN)
        channel.basic_qos(prefetch_count=5)
        channel.basic_consume(unique, lambda *a: None, arguments={"x-stream-offset": "first"})
        info = poll(
            lambda: management.api.ok("GET", f"/api/queues/%2F/{q(unique)}"),
            lambda info: info.get("messages") == 10 and info.get("consumers") == 1,
            "stream counts",
            timeout=15,
        )
        assert info["type"] == "stream"
        assert (info["messages_ready"], info["messages_unacknowledged"]) == (10, 0)
        assert info["arguments"] == {"x-max-age": "7D", "x-queue-type": "stream"}
        for field in ("members", "online", "readers", "state", "durable", "auto_delete", "exclusive", "node"):
            assert field in info, field
        for field in ("backing_queue_status", "message_bytes", "single_active_consumer_tag", "consumer_utilisation"):
            assert field not in info, field
        assert list(info["readers"].values()) == [1]
        (consumer,) = info["consumer_details"]
        assert consumer["arguments"] == {"x-stream-offset": "first"} and consumer["prefetch_count"] == 5
        listed = [item for item in management.api.ok("GET", "/api/queues/%2F") if item["name"] == unique]
        assert listed[0]["type"] == "stream"
        connection.process_data_events(0.5)  # dispatched: pika would reject undispatched ones at close (a 540)
    finally:
        connection.close()
    management.api.ok("DELETE", f"/api/queues/%2F/{q(unique)}")


# ------------------------------------------------------------------ durability


def open_confirmed(url: str) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
def test_confirmed_messages_keep_their_offsets_across_a_restart(tmp_path: Path, start_broker, sig):
    broker = start_broker(tmp_path)
    connection, channel = open_confirmed(broker.url)
    declare(channel, "durable-stream", **{"x-stream-max-segment-size-bytes": 4000})
    bodies = [b"%04d" % n * 20 for n in range(300)]
    publish(channel, "durable-stream", bodies)
    connection.close()
    broker.stop(sig)
    broker = start_broker(tmp_path)
    connection, channel = open_confirmed(broker.url)
    assert read(channel, "durable-stream", "first") == list(enumerate(bodies))
    publish(channel, "durable-stream", [b"after"])
    assert read(channel, "durable-stream", "last") == [(300, b"after")]
    connection.close()


def test_kill_9_while_publishing_loses_no_confirmed_message(tmp_path: Path, start_broker):
    broker = start_broker(tmp_path)
    connection, channel = open_confirmed(broker.url)
    declare(channel, "busy")
    confirmed: list[bytes] = []

    def keep_publishing() -> None:
        n = 0
        try:
            while True:
                body = b"%06d" % n
                channel.basic_publish("", "busy", body)
                confirmed.append(body)  # basic_publish returned: the broker confirmed it
                n += 1
        except (pika.exceptions.AMQPError, OSError):
            return

    publisher = threading.Thread(target=keep_publishing)
    publisher.start()
    deadline = time.monotonic() + TIMEOUT
    while len(confirmed) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    broker.stop(signal.SIGKILL)
    publisher.join(TIMEOUT)
    assert len(confirmed) >= 200
    broker = start_broker(tmp_path)
    connection, channel = open_confirmed(broker.url)
    kept = read(channel, "busy", "first", count=10**6, prefetch=1000)
    assert kept[: len(confirmed)] == list(enumerate(confirmed))  # every confirmed one, at its offset
    connection.close()


# ------------------------------------------------------------------ aio-pika


async def test_aio_pika_reads_a_stream_from_an_offset(broker, unique) -> None:
    connection = await asyncio.wait_for(aio_pika.connect(broker.url), TIMEOUT)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=5)
        queue = await channel.declare_queue(unique, durable=True, arguments=STREAM)
        for n in range(10):
            await channel.default_exchange.publish(aio_pika.Message(b"m%d" % n), routing_key=unique)
        got = []
        async with queue.iterator(arguments={"x-stream-offset": 6}) as messages:
            async for message in messages:
                async with message.process():
                    got.append((message.headers["x-stream-offset"], message.body))
                if len(got) == 4:
                    break
        assert got == [(n, b"m%d" % n) for n in range(6, 10)]
    finally:
        await asyncio.wait_for(connection.close(), TIMEOUT)
