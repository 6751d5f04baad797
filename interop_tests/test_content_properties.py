"""A publish with an undecodable headers table, against the broker process, beside a pika bystander.

The raw-socket publisher gets RabbitMQ's answer (connection.close 541
'INTERNAL_ERROR', class 0, method 0 — probed on 3.10.8) and no confirm; nothing
is enqueued.  A pika bystander on another connection keeps working through
everything the bad message used to break: a passive declare and a TTL expiry
with a dead-letter exchange, a publish into an x-max-length queue, basic.get on
a quorum queue; and TTL expiry keeps working on other queues.
"""

from __future__ import annotations

import struct
import uuid
from types import SimpleNamespace

import pika
import pytest
from pamqp import commands

from .pika_helpers import get_all, message_count, wait_until
from .raw_client import RawClient, method_payload

FRAME_METHOD, FRAME_HEADER, FRAME_BODY = 1, 2, 3
HEADERS_FLAG = 1 << 13

BAD_TABLES = {
    "unknown field type": b"\x01aZ",
    "value longer than the table": b"\x01aS\x00\x00\x00\x09z",
    "key without a value": b"\x01a",
}


def publish_bad(broker: SimpleNamespace, queue: str, table: bytes) -> commands.Connection.Close:
    """Publish ``b'bad'`` with headers ``table`` (raw, confirm mode); return the broker's connection.close."""
    body = b"bad"
    header = struct.pack(">HHQH", 60, 0, len(body), HEADERS_FLAG) + struct.pack(">I", len(table)) + table
    with RawClient(broker.host, broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk, 1)
        raw.send_frame(FRAME_METHOD, 1, method_payload(commands.Basic.Publish(exchange="", routing_key=queue)))
        raw.send_frame(FRAME_HEADER, 1, header)
        raw.send_frame(FRAME_BODY, 1, body)
        return raw.expect_connection_close()  # an ack first would fail here


@pytest.fixture
def bystander(params: pika.ConnectionParameters):
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    yield connection, channel
    assert connection.is_open, "the bystander's connection was closed"
    connection.close()


def names() -> SimpleNamespace:
    tag = uuid.uuid4().hex[:8]
    return SimpleNamespace(
        ttl=f"door-ttl-{tag}",
        maxlen=f"door-max-{tag}",
        quorum=f"door-qq-{tag}",
        other=f"door-other-{tag}",
        dead=f"door-dead-{tag}",
        other_dead=f"door-other-dead-{tag}",
    )


@pytest.mark.parametrize("table", BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_bad_headers_table_closes_only_the_publisher_and_the_bystander_is_unaffected(broker, bystander, table):
    connection, channel = bystander
    q = names()
    dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q.dead}
    for name in (q.dead, q.other_dead):
        channel.queue_declare(name, auto_delete=True)
    channel.queue_declare(q.ttl, auto_delete=True, arguments={"x-message-ttl": 200, **dead_letter})
    channel.queue_declare(q.maxlen, auto_delete=True, arguments={"x-max-length": 1, **dead_letter})
    channel.queue_declare(q.quorum, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_declare(
        q.other,
        auto_delete=True,
        arguments={"x-message-ttl": 200, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q.other_dead},
    )
    try:
        for queue in (q.ttl, q.maxlen, q.quorum):
            close = publish_bad(broker, queue, table)
            assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
                541,
                "INTERNAL_ERROR",
                0,
                0,
            )
        # what the stored bad message used to break, each on the bystander's connection
        channel.basic_publish("", q.maxlen, b"pushes out the head")
        channel.basic_publish("", q.maxlen, b"pushes out the head again")
        assert channel.basic_get(q.quorum, auto_ack=True) == (None, None, None)
        channel.basic_publish("", q.other, b"expires elsewhere")
        channel.basic_publish("", q.ttl, b"expires here")
        wait_until(connection, lambda: message_count(channel, q.other_dead) == 1, "TTL expiry on another queue")
        wait_until(connection, lambda: message_count(channel, q.dead) == 2, "TTL expiry and drop-head here")
        assert message_count(channel, q.ttl) == 0  # a passive declare
        assert sorted(body for body, _ in get_all(channel, q.dead)) == [b"expires here", b"pushes out the head"]
        assert [body for body, _ in get_all(channel, q.maxlen)] == [b"pushes out the head again"]
    finally:
        channel.queue_delete(q.quorum)
