"""Dead-lettering (``x-dead-letter-exchange``), as RabbitMQ 3.10 does it, through pika and one raw client.

Covers the four reasons a message is dead-lettered (``rejected`` by basic.reject
or basic.nack with requeue=false, ``expired`` by queue TTL or per-message
expiration, ``maxlen`` by drop-head or reject-publish-dlx overflow, and
``delivery_limit`` from a quorum queue), the routing of the dead-lettered copy
(``x-dead-letter-routing-key`` or the original routing key), and the headers
RabbitMQ adds: the ``x-death`` list (newest first, one entry per queue and
reason, with a ``count``) and ``x-first-death-reason/queue/exchange``.  Also
cycle detection: a message expiring round a cycle is dropped; one rejected
round it is not.

RabbitMQ writes each ``x-death`` entry as a table (count: signed 64-bit ``l``;
reason, queue, exchange: longstr ``S``; time: timestamp ``T`` in seconds;
routing-keys: array of longstr; original-expiration: longstr, only when the
message had an ``expiration`` property, which is removed).  pika decodes ``l``
to ``pika.compat.long`` and ``T`` to an aware datetime; the raw test reads the
type tags from the wire.
"""

from __future__ import annotations

import datetime
import struct
import time
from typing import Any

import pika
import pika.compat
import pika.exceptions
import pytest
from pamqp import commands

from .raw_client import RawClient
from .test_queue_features import (  # noqa: F401  (names is a fixture)
    Names,
    get_bodies,
    get_body,
    message_count,
    names,
    publish,
    stays_true,
    wait_for_empty,
    wait_for_message,
    wait_until,
)


@pytest.fixture
def dead_letters(channel, names: Names) -> tuple[str, str]:
    """A direct exchange and the queue bound to it with routing key ``dead``: ``(exchange, queue)``."""
    exchange, queue = names.exchange("dlx"), names.queue("dlq")
    channel.exchange_declare(exchange, "direct")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "dead")
    return exchange, queue


def take(channel, queue: str) -> pika.spec.Basic.GetOk:
    """basic.get without auto-ack, waiting for the message; the caller settles it."""
    method, _, _ = wait_for_message(channel, queue, auto_ack=False)
    return method


def without_times(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` with each x-death entry's ``time`` checked (an aware datetime, about now) and removed."""
    deaths = []
    for death in headers["x-death"]:
        death = dict(death)
        stamp = death.pop("time")
        assert isinstance(stamp, datetime.datetime), stamp
        assert abs(stamp.timestamp() - time.time()) < 10, stamp
        deaths.append(death)
    return {**headers, "x-death": deaths}


def death(
    queue: str, reason: str, exchange: str = "", routing_keys: list[str] | None = None, count: int = 1, **extra: str
) -> dict[str, Any]:
    return {
        "count": count,
        "reason": reason,
        "queue": queue,
        "exchange": exchange,
        "routing-keys": [queue] if routing_keys is None else routing_keys,
        **extra,
    }


def first_death(queue: str, reason: str, exchange: str = "") -> dict[str, str]:
    return {"x-first-death-exchange": exchange, "x-first-death-queue": queue, "x-first-death-reason": reason}


# ------------------------------------------------------------------ rejected


def test_reject_without_requeue_dead_letters_with_the_dead_letter_routing_key(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"})
    publish(channel, queue, b"bad", message_id="m-1", headers={"app": "kept"})

    channel.basic_reject(take(channel, queue).delivery_tag, requeue=False)
    method, properties, body = wait_for_message(channel, dlq)

    assert (method.exchange, method.routing_key, method.redelivered) == (exchange, "dead", False)
    assert body == b"bad"
    assert properties.message_id == "m-1"
    assert without_times(properties.headers) == {
        "app": "kept",
        "x-death": [death(queue, "rejected")],
        **first_death(queue, "rejected"),
    }
    assert type(properties.headers["x-death"][0]["count"]) is pika.compat.long  # a 64-bit 'l' on the wire
    assert message_count(channel, queue) == 0


def test_nack_without_requeue_dead_letters_with_the_original_routing_key(channel, names, dead_letters):
    exchange, dlq = dead_letters
    source = names.exchange("source")
    queue = names.queue()
    channel.exchange_declare(source, "direct")
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange})
    channel.queue_bind(queue, source, "dead")
    channel.basic_publish(source, "dead", b"bad")

    channel.basic_nack(take(channel, queue).delivery_tag, requeue=False)
    method, properties, body = wait_for_message(channel, dlq)

    assert (method.exchange, method.routing_key, body) == (exchange, "dead", b"bad")
    assert without_times(properties.headers) == {
        "x-death": [death(queue, "rejected", exchange=source, routing_keys=["dead"])],
        **first_death(queue, "rejected", exchange=source),
    }


def test_nack_multiple_without_requeue_dead_letters_every_message(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"})
    publish(channel, queue, b"1", b"2", b"3")
    for _ in range(2):
        take(channel, queue)
    last = take(channel, queue)

    channel.basic_nack(last.delivery_tag, multiple=True, requeue=False)

    assert [wait_for_message(channel, dlq)[2] for _ in range(3)] == [b"1", b"2", b"3"]


def test_requeued_rejection_is_not_dead_lettered(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"})
    publish(channel, queue, b"again")

    channel.basic_reject(take(channel, queue).delivery_tag, requeue=True)

    method, properties, body = wait_for_message(channel, queue)
    assert (body, method.redelivered, properties.headers) == (b"again", True, None)
    assert get_body(channel, dlq) is None


def test_dead_letter_exchange_that_does_not_exist_drops_the_message(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": names.exchange("missing")})
    publish(channel, queue, b"gone")

    channel.basic_reject(take(channel, queue).delivery_tag, requeue=False)

    assert channel.is_open
    assert message_count(channel, queue) == 0


# ------------------------------------------------------------------ expired


def test_queue_ttl_expiry_dead_letters_with_reason_expired(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(
        queue, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"}
    )
    publish(channel, queue, b"late")

    _, properties, body = wait_for_message(channel, dlq)

    assert body == b"late"
    assert without_times(properties.headers) == {"x-death": [death(queue, "expired")], **first_death(queue, "expired")}
    assert properties.expiration is None


def test_expiration_property_expiry_records_original_expiration_and_drops_the_property(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"})
    publish(channel, queue, b"late", expiration="100", message_id="m-2")

    _, properties, body = wait_for_message(channel, dlq)

    assert (body, properties.message_id, properties.expiration) == (b"late", "m-2", None)
    assert without_times(properties.headers) == {
        "x-death": [death(queue, "expired", **{"original-expiration": "100"})],
        **first_death(queue, "expired"),
    }


# ------------------------------------------------------------------ maxlen


def test_drop_head_overflow_dead_letters_the_oldest_with_reason_maxlen(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(
        queue, arguments={"x-max-length": 1, "x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"}
    )

    publish(channel, queue, b"oldest", b"newest")

    _, properties, body = wait_for_message(channel, dlq)
    assert body == b"oldest"
    assert without_times(properties.headers) == {"x-death": [death(queue, "maxlen")], **first_death(queue, "maxlen")}
    assert get_bodies(channel, queue) == [b"newest"]


def test_reject_publish_dlx_nacks_and_dead_letters_the_refused_message(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(
        queue,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": exchange,
            "x-dead-letter-routing-key": "dead",
        },
    )
    publish(channel, queue, b"kept")

    with pytest.raises(pika.exceptions.NackError):
        publish(channel, queue, b"refused")

    _, properties, body = wait_for_message(channel, dlq)
    assert body == b"refused"
    assert without_times(properties.headers) == {"x-death": [death(queue, "maxlen")], **first_death(queue, "maxlen")}
    assert get_bodies(channel, queue) == [b"kept"]


def test_reject_publish_does_not_dead_letter(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(
        queue,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": exchange,
            "x-dead-letter-routing-key": "dead",
        },
    )
    publish(channel, queue, b"kept")

    with pytest.raises(pika.exceptions.NackError):
        publish(channel, queue, b"refused")

    stays_true(channel.connection, lambda: message_count(channel, dlq) == 0, "the refused message was dead-lettered")


# ------------------------------------------------------------------ delivery_limit (quorum)


def test_quorum_delivery_limit_dead_letters_with_reason_delivery_limit(channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": exchange,
            "x-dead-letter-routing-key": "dead",
        },
    )
    publish(channel, queue, b"poison", headers={"app": "kept"})

    for _ in range(2):
        channel.basic_nack(take(channel, queue).delivery_tag, requeue=True)

    _, properties, body = wait_for_message(channel, dlq)
    assert body == b"poison"
    assert without_times(properties.headers) == {  # x-delivery-count is not carried over
        "app": "kept",
        "x-death": [death(queue, "delivery_limit")],
        **first_death(queue, "delivery_limit"),
    }


# ------------------------------------------------------------------ repeated deaths and cycles


def test_second_death_in_another_queue_is_prepended(channel, names):
    first, second, last = names.queue("first"), names.queue("second"), names.queue("last")
    channel.queue_declare(last)
    channel.queue_declare(second, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": last})
    channel.queue_declare(
        first, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": second}
    )
    publish(channel, first, b"m")

    channel.basic_reject(take(channel, second).delivery_tag, requeue=False)
    method, properties, body = wait_for_message(channel, last)

    assert (method.routing_key, body) == (last, b"m")
    assert without_times(properties.headers) == {
        "x-death": [death(second, "rejected", routing_keys=[second]), death(first, "expired")],
        **first_death(first, "expired"),
    }


def test_rejection_cycle_back_into_the_same_queue_counts_up(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue})
    publish(channel, queue, b"boomerang")

    for _ in range(3):
        channel.basic_reject(take(channel, queue).delivery_tag, requeue=False)
    method, properties, body = wait_for_message(channel, queue)

    assert (body, method.redelivered) == (b"boomerang", False)
    assert without_times(properties.headers) == {
        "x-death": [death(queue, "rejected", count=3)],
        **first_death(queue, "rejected"),
    }


def test_expiry_cycle_back_into_the_same_queue_drops_the_message(channel, names):
    queue = names.queue()
    channel.queue_declare(
        queue, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}
    )
    publish(channel, queue, b"ouroboros")

    wait_for_empty(channel, queue)

    stays_true(channel.connection, lambda: get_body(channel, queue) is None, "the expired message came back")


def test_cycle_containing_a_rejection_keeps_going_and_counts_per_queue_and_reason(channel, names):
    first, second = names.queue("first"), names.queue("second")
    channel.queue_declare(
        first, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": second}
    )
    channel.queue_declare(second, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": first})
    publish(channel, first, b"m")

    for _ in range(2):  # first -(expired)-> second -(rejected)-> first ...
        channel.basic_reject(take(channel, second).delivery_tag, requeue=False)
    _, properties, _ = wait_for_message(channel, second)

    # the entry just updated moves to the front of x-death
    assert without_times(properties.headers) == {
        "x-death": [death(first, "expired", count=3), death(second, "rejected", count=2)],
        **first_death(first, "expired"),
    }


def test_expiry_only_cycle_through_two_queues_drops_the_message(channel, names):
    first, second = names.queue("first"), names.queue("second")
    channel.queue_declare(
        second, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": first}
    )
    channel.queue_declare(
        first, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": second}
    )
    publish(channel, first, b"ouroboros")

    connection = channel.connection
    connection.sleep(0.3)  # first -> second -> dropped (it would re-enter first)
    stays_true(
        connection,
        lambda: message_count(channel, first) + message_count(channel, second) == 0,
        "the message is still cycling",
    )


# ------------------------------------------------------------------ wire types


def typed_value(data: bytes, offset: int) -> tuple[tuple[str, Any], int]:
    """Decode one field value, keeping its type tag: ``((tag, value), new_offset)``."""
    tag = chr(data[offset])
    offset += 1
    if tag == "S":
        (length,) = struct.unpack_from(">I", data, offset)
        return (tag, data[offset + 4 : offset + 4 + length].decode()), offset + 4 + length
    if tag in "lT":
        return (tag, struct.unpack_from(">q" if tag == "l" else ">Q", data, offset)[0]), offset + 8
    if tag == "A":
        (length,) = struct.unpack_from(">I", data, offset)
        end, items, offset = offset + 4 + length, [], offset + 4
        while offset < end:
            item, offset = typed_value(data, offset)
            items.append(item)
        return (tag, items), offset
    if tag == "F":
        (length,) = struct.unpack_from(">I", data, offset)
        return (tag, typed_table(data[offset + 4 : offset + 4 + length])), offset + 4 + length
    raise AssertionError(f"unexpected field type {tag!r} at {offset - 1}")


def typed_table(data: bytes) -> list[tuple[str, tuple[str, Any]]]:
    """A field table's ``(key, (tag, value))`` pairs, in wire order."""
    pairs, offset = [], 0
    while offset < len(data):
        key_length = data[offset]
        key = data[offset + 1 : offset + 1 + key_length].decode()
        value, offset = typed_value(data, offset + 1 + key_length)
        pairs.append((key, value))
    return pairs


def raw_get_headers(client: RawClient, queue: str) -> list[tuple[str, tuple[str, Any]]]:
    """basic.get over the raw client; the content header's headers table, typed, in wire order."""
    client.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    frame_type, _, size = struct.unpack(">BHI", client.recv_exactly(7))
    assert frame_type == 1
    client.recv_exactly(size + 1)  # Basic.GetOk
    frame_type, _, size = struct.unpack(">BHI", client.recv_exactly(7))
    payload = client.recv_exactly(size + 1)[:-1]
    assert frame_type == 2
    flags = struct.unpack_from(">H", payload, 12)[0]
    assert flags == 1 << 13, f"only the headers property was expected, flags {flags:#06x}"
    (length,) = struct.unpack_from(">I", payload, 14)
    return typed_table(payload[18 : 18 + length])


def test_x_death_wire_types_and_key_order(broker, channel, names, dead_letters):
    exchange, dlq = dead_letters
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "dead"})
    publish(channel, queue, b"late", expiration="100")
    wait_until(channel.connection, lambda: message_count(channel, dlq) == 1, "the message to be dead-lettered")

    with RawClient(broker.host, broker.port) as client:
        client.handshake()
        client.open_channel(1)
        headers = raw_get_headers(client, dlq)

    (x_death_key, (array_tag, entries)), *rest = headers
    assert (x_death_key, array_tag, len(entries)) == ("x-death", "A", 1)
    entry_tag, entry = entries[0]
    stamp = dict(entry)["time"]
    assert stamp[0] == "T" and abs(stamp[1] - time.time()) < 10
    assert (entry_tag, entry) == (
        "F",
        [
            ("count", ("l", 1)),
            ("reason", ("S", "expired")),
            ("queue", ("S", queue)),
            ("time", stamp),
            ("exchange", ("S", "")),
            ("routing-keys", ("A", [("S", queue)])),
            ("original-expiration", ("S", "100")),
        ],
    )
    assert rest == [
        ("x-first-death-exchange", ("S", "")),
        ("x-first-death-queue", ("S", queue)),
        ("x-first-death-reason", ("S", "expired")),
    ]
