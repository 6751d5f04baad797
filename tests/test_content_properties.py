"""Content properties at the door, and the error boundaries behind it.

A publish whose property list RabbitMQ could not decode (a headers table with an
unknown field type, a value longer than its table, a key without a value; a
shortstr past the end; trailing bytes) closes the publisher's connection with
RabbitMQ's exact reply (probed on 3.10.8: 541 'INTERNAL_ERROR', class 0, method 0);
nothing is routed or confirmed.  Every table RabbitMQ accepts still passes.

Behind the door, a message with an undecodable header can still exist (stored by an
older version, recovered from disk): the operations that edit or decode headers later
(dead-lettering from a passive declare, a reject, a drop-head, the TTL timer; a
quorum queue's basic.get) handle it as best they can, log it with its traceback, and
cost nobody's connection, no timer and no other message.  Store sync callbacks and
the access reload are error boundaries too.
"""

from __future__ import annotations

import logging
import math
import struct

import pytest
from pamqp import commands

from amqp_server.core import channel as channel_module
from amqp_server.core.broker import Broker
from amqp_server.core.confirms import SyncBarrier
from amqp_server.wire.content import decode_properties
from amqp_server.wire.properties import MAX_NESTING, ContentHeader, PropertiesError, check_properties
from storage.api import MessageRecord
from storage.memory import MemoryStore
from tests.frames import FakeClock, method, open_peer, publish
from tests.test_channel import channel_close, connection_close, declare, messages, of_type, raw_frames

HEADERS = 1 << 13
DELIVERY_MODE = 1 << 12
EXPIRATION = 1 << 8
CONTENT_TYPE = 1 << 15


def entry(key: bytes, tag: bytes, value: bytes = b"") -> bytes:
    return bytes((len(key),)) + key + tag + value


def long_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def headers_property(table: bytes) -> bytes:
    return long_prefixed(table)


def content_header(flags: int, properties: bytes, body_size: int) -> bytes:
    return struct.pack(">HHQH", 60, 0, body_size, flags) + properties


def raw_publish(channel: int, routing_key: str, header: bytes, body: bytes, exchange: str = "") -> bytes:
    """basic.publish + a hand-built content header payload + one body frame."""
    return (
        method(channel, commands.Basic.Publish(exchange=exchange, routing_key=routing_key))
        + struct.pack(">BHI", 2, channel, len(header))
        + header
        + b"\xce"
        + struct.pack(">BHI", 3, channel, len(body))
        + body
        + b"\xce"
    )


def with_table(table: bytes, body: bytes = b"body") -> bytes:
    return content_header(HEADERS, headers_property(table), len(body))


# Every field type RabbitMQ 3.10 decodes, nested tables and arrays included, plus what it lets
# through unchecked (an empty key, a key that is not UTF-8).
EVERY_TYPE = b"".join(
    [
        entry(b"t", b"t", b"\x02"),
        entry(b"b", b"b", b"\xff"),
        entry(b"B", b"B", b"\xff"),
        entry(b"s", b"s", b"\x80\x00"),
        entry(b"u", b"u", b"\xff\xff"),
        entry(b"I", b"I", b"\x80\x00\x00\x00"),
        entry(b"i", b"i", b"\xff\xff\xff\xff"),
        entry(b"l", b"l", bytes(8)),
        entry(b"L", b"L", b"\xff" * 8),
        entry(b"f", b"f", struct.pack(">f", 1.5)),
        entry(b"d", b"d", struct.pack(">d", -2.25)),
        entry(b"D", b"D", b"\x02\x00\x00\x01\x00"),
        entry(b"T", b"T", struct.pack(">Q", 1700000000)),
        entry(b"V", b"V"),
        entry(b"S", b"S", long_prefixed("é".encode())),
        entry(b"x", b"x", long_prefixed(b"\x00\xff")),
        entry(
            b"A",
            b"A",
            long_prefixed(
                b"V"
                + b"t\x01"
                + b"S"
                + long_prefixed(b"z")
                + b"A"
                + long_prefixed(b"")
                + b"F"
                + long_prefixed(entry(b"k", b"I", bytes(4)))
            ),
        ),
        entry(
            b"F", b"F", long_prefixed(entry(b"inner", b"F", long_prefixed(entry(b"deep", b"A", long_prefixed(b"V")))))
        ),
        entry(b"", b"V"),
        entry(b"\xff\xfe", b"V"),
        entry(b"empty", b"F", long_prefixed(b"")),
    ]
)

BAD_HEADERS = {
    "unknown field type": with_table(entry(b"a", b"Z")),
    "value longer than the table": with_table(entry(b"a", b"S", b"\x00\x00\x00\x09z")),
    "key without a value": with_table(b"\x01a"),
    "key longer than the table": with_table(b"\x09a"),
    "fixed-size value cut short": with_table(entry(b"a", b"l", b"\x00\x00")),
    "NaN float": with_table(entry(b"a", b"f", struct.pack(">f", math.nan))),
    "infinite double": with_table(entry(b"a", b"d", struct.pack(">d", math.inf))),
    "bad entry in a nested table": with_table(entry(b"a", b"F", long_prefixed(entry(b"b", b"Z")))),
    "bad value in a nested array": with_table(entry(b"a", b"A", long_prefixed(b"Z"))),
    "bad value deep inside": with_table(entry(b"a", b"A", long_prefixed(b"F" + long_prefixed(b"\x01b")))),
    "table longer than the header": content_header(HEADERS, struct.pack(">I", 50) + entry(b"a", b"V"), 4),
    "headers flag without a table": content_header(HEADERS, b"\x00\x00", 4),
    "shortstr past the end": content_header(CONTENT_TYPE, b"\x09ab", 4),
    "trailing bytes": content_header(DELIVERY_MODE, b"\x02\x00\x00", 4),
    "continuation flag word": content_header(1, b"\x00\x00", 4),
    "delivery_mode flag without its octet": content_header(DELIVERY_MODE, b"", 4),
    "truncated expiration": content_header(EXPIRATION, b"\x09ab", 4),
}


def assert_rabbitmq_541(frames: list) -> None:
    close = connection_close(frames)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (541, "INTERNAL_ERROR", 0, 0)
    assert not of_type(frames, commands.Basic.Ack)


# ------------------------------------------------------------------ the door


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "frame-by-frame"])
@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_undecodable_properties_close_the_publisher_like_rabbitmq_and_nothing_is_routed(header, split):
    broker = Broker(clock=FakeClock())
    bystander = open_peer(broker)
    declare(bystander, "q")
    publisher = open_peer(broker)
    publisher.send_method(1, commands.Confirm.Select())
    publisher.frames()
    data = raw_publish(1, "q", header, b"body")
    if split:
        for offset in range(0, len(data), 9):
            publisher.send(data[offset : offset + 9])
    else:
        publisher.send(data)
    assert_rabbitmq_541(publisher.frames())
    assert declare(bystander, "q", passive=True).message_count == 0
    assert consume_raw(bystander, "q") == 0


def test_every_field_type_rabbitmq_accepts_passes_and_is_delivered_byte_for_byte():
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    declare(peer, "q")
    header = content_header(HEADERS | DELIVERY_MODE | (1 << 1), headers_property(EVERY_TYPE) + b"\x02", 4)
    peer.send_method(1, commands.Confirm.Select())
    peer.send(raw_publish(1, "q", header, b"body"))
    assert of_type(peer.frames(), commands.Basic.Ack)
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    out = peer.connection.data_to_send()
    assert header in out  # the content header frame's payload, unchanged


def test_a_missing_exchange_is_reported_before_undecodable_properties():
    """RabbitMQ checks permission and the exchange first (404 closes the channel), then decodes."""
    peer = open_peer()
    peer.send(raw_publish(1, "q", BAD_HEADERS["unknown field type"], b"body", exchange="missing"))
    close = channel_close(peer.frames(), 1)
    assert close.reply_code == 404


def test_undecodable_properties_are_reported_before_a_bad_expiration():
    peer = open_peer()
    header = content_header(HEADERS | EXPIRATION, headers_property(entry(b"a", b"Z")) + b"\x03abc", 4)
    peer.send(raw_publish(1, "q", header, b"body"))
    assert_rabbitmq_541(peer.frames())


# ------------------------------------------------------------------ behind the door


BAD_TABLE = with_table(entry(b"a", b"Z"), b"bad")


@pytest.fixture
def no_door(monkeypatch):
    """Publishes skip the property check, as they did before it existed (the message gets stored)."""
    monkeypatch.setattr(channel_module, "check_properties", lambda header: None, raising=False)


def declare_dead_letter_pair(peer, queue: str, **arguments) -> None:
    declare(peer, "dead")
    declare(peer, queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead", **arguments})


def dead_letters(peer) -> list[tuple[bytes, dict]]:
    """Everything in the 'dead' queue: (body, headers)."""
    found = []
    while True:
        peer.send_method(1, commands.Basic.Get(queue="dead", no_ack=True))
        got = messages(peer.frames())
        if not got:
            return found
        _, _, header, body = got[0]
        found.append((body, header.properties.headers or {}))


def raw_methods(peer) -> list[tuple[int, int]]:
    """(class id, method id) of each method frame the broker wrote (without decoding the content:
    pamqp refuses the undecodable headers these tests deliver)."""
    return [
        struct.unpack_from(">HH", payload)
        for frame_type, _, payload in raw_frames(peer.connection.data_to_send())
        if frame_type == 1
    ]


CONNECTION_CLOSE, GET_OK, DELIVER = (10, 50), (60, 71), (60, 60)


def consume_raw(peer, queue: str) -> int:
    """Consume ``queue``; the number of messages delivered at once."""
    peer.send_method(1, commands.Basic.Consume(queue=queue))
    return raw_methods(peer).count(DELIVER)


def assert_logged_with_traceback(caplog) -> None:
    assert any(record.exc_info for record in caplog.records if record.levelno >= logging.ERROR), caplog.text


def test_a_passive_declare_that_expires_an_undecodable_message_costs_the_bystander_nothing(no_door, caplog):
    clock = FakeClock()
    broker = Broker(clock=clock)
    bystander = open_peer(broker)
    declare_dead_letter_pair(bystander, "ttl", **{"x-message-ttl": 1000})
    publisher = open_peer(broker)
    publisher.send(raw_publish(1, "ttl", BAD_TABLE, b"bad") + publish(1, "ttl", b"good"))
    clock.advance(2)
    assert declare(bystander, "ttl", passive=True).message_count == 0
    dead = dead_letters(bystander)
    assert [body for body, _ in dead] == [b"bad", b"good"]
    assert all(headers["x-first-death-reason"] == "expired" for _, headers in dead)  # the bad one: a new table
    assert_logged_with_traceback(caplog)


def test_the_ttl_timer_survives_an_undecodable_message_and_other_queues_keep_expiring(no_door, caplog):
    clock = FakeClock()
    broker = Broker(clock=clock)
    peer = open_peer(broker)
    declare_dead_letter_pair(peer, "ttl-bad", **{"x-message-ttl": 1000})
    declare(
        peer,
        "ttl-good",
        arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"},
    )
    peer.send(raw_publish(1, "ttl-bad", BAD_TABLE, b"bad") + publish(1, "ttl-good", b"good"))
    broker.scheduler.run_due(clock.advance(2))
    assert sorted(body for body, _ in dead_letters(peer)) == [b"bad", b"good"]
    peer.send(publish(1, "ttl-good", b"later"))
    broker.scheduler.run_due(clock.advance(2))
    assert [body for body, _ in dead_letters(peer)] == [b"later"]


def test_another_clients_publish_that_pushes_out_an_undecodable_message_is_confirmed(no_door, caplog):
    broker = Broker(clock=FakeClock())
    owner = open_peer(broker)
    declare_dead_letter_pair(owner, "short", **{"x-max-length": 1})
    owner.send(raw_publish(1, "short", BAD_TABLE, b"bad"))
    bystander = open_peer(broker)
    bystander.send_method(1, commands.Confirm.Select())
    bystander.send(publish(1, "short", b"good"))
    frames = bystander.frames()
    assert of_type(frames, commands.Basic.Ack) and not of_type(frames, commands.Connection.Close)
    assert [body for body, _ in dead_letters(owner)] == [b"bad"]
    assert_logged_with_traceback(caplog)


def test_rejecting_an_undecodable_message_dead_letters_it_and_keeps_the_connection(no_door, caplog):
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    declare_dead_letter_pair(peer, "work")
    peer.send(raw_publish(1, "work", BAD_TABLE, b"bad"))
    assert consume_raw(peer, "work") == 1
    peer.send_method(1, commands.Basic.Reject(delivery_tag=1, requeue=False))
    assert CONNECTION_CLOSE not in raw_methods(peer)
    assert [body for body, _ in dead_letters(peer)] == [b"bad"]


def test_basic_get_of_an_undecodable_message_on_a_quorum_queue_delivers_it_without_the_count(no_door, caplog):
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    declare(peer, "qq", durable=True, arguments={"x-queue-type": "quorum"})
    peer.send(raw_publish(1, "qq", BAD_TABLE, b"bad") + publish(1, "qq", b"good"))
    peer.send_method(1, commands.Basic.Get(queue="qq", no_ack=True))
    peer.send_method(1, commands.Basic.Get(queue="qq", no_ack=True))
    out = peer.connection.data_to_send()
    assert BAD_TABLE in out  # sent as stored, without x-delivery-count
    methods = [struct.unpack_from(">HH", payload) for kind, _, payload in raw_frames(out) if kind == 1]
    assert methods == [GET_OK, GET_OK]
    assert_logged_with_traceback(caplog)


def recovered_broker(headers: list[bytes], **arguments) -> Broker:
    """A broker restarted over a store holding ``headers`` in durable queue 'work' (bodies b'0', b'1', …):
    messages that never went through the door, as an older version may have stored them."""
    store = MemoryStore()
    peer = open_peer(Broker(store=store, clock=FakeClock()))
    declare(peer, "dead", durable=True)
    declare(
        peer,
        "work",
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead", **arguments},
    )
    for message_id, header in enumerate(headers, 1):
        body = str(message_id - 1).encode()
        header = header[:4] + struct.pack(">Q", len(body)) + header[12:]
        store.put_message("/", "work", message_id, MessageRecord("", "work", header, body))
    store.sync()
    return Broker(store=store, clock=FakeClock())


GOOD = content_header(DELIVERY_MODE, b"\x02", 1)


def test_nack_multiple_without_requeue_over_good_bad_good_dead_letters_all_three(caplog):
    broker = recovered_broker([GOOD, BAD_TABLE, GOOD])
    peer = open_peer(broker)
    assert consume_raw(peer, "work") == 3
    peer.send_method(1, commands.Basic.Nack(delivery_tag=3, multiple=True, requeue=False))
    assert not of_type(peer.frames(), commands.Connection.Close)
    dead = dead_letters(peer)
    assert [body for body, _ in dead] == [b"0", b"1", b"2"]
    assert all(headers["x-death"][0]["reason"] == "rejected" for _, headers in dead)
    assert_logged_with_traceback(caplog)


def test_a_stored_message_with_truncated_properties_does_not_stop_recovery(caplog):
    truncated = content_header(DELIVERY_MODE | EXPIRATION, b"\x02\x09ab", 1)
    broker = recovered_broker([truncated, GOOD])
    peer = open_peer(broker)
    assert declare(peer, "work", passive=True).message_count == 2
    assert consume_raw(peer, "work") == 2
    peer.send_method(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=False))
    assert not of_type(peer.frames(), commands.Connection.Close)
    dead = dead_letters(peer)
    assert [body for body, _ in dead] == [b"0", b"1"]
    assert_logged_with_traceback(caplog)


def test_content_header_refuses_fields_past_the_end():
    with pytest.raises(ValueError):
        ContentHeader(content_header(CONTENT_TYPE, b"\x09ab", 1))
    with pytest.raises(ValueError):
        ContentHeader(content_header(HEADERS, b"\x00\x00", 1))


# ------------------------------------------------------------------ store and reload callbacks


def test_a_failing_sync_callback_is_logged_and_the_others_still_run(caplog):
    ran = []

    def failing(ok: bool) -> None:
        raise RuntimeError("boom")

    class FakeChannel:
        def __init__(self, channel_id: int, fail: bool) -> None:
            self.channel_id, self.fail = channel_id, fail

        def synced(self, sequence: int, ok: bool) -> None:
            if self.fail:
                raise RuntimeError("boom")
            ran.append((self.channel_id, sequence, ok))

    SyncBarrier().end(
        ([(FakeChannel(1, True), 5), (FakeChannel(2, False), 7)], [failing, lambda ok: ran.append(("callback", ok))]),
        True,
    )
    assert ran == [("callback", True), (2, 7, True)]
    assert sum(1 for record in caplog.records if record.exc_info) == 2


def nested(depth: int) -> bytes:
    """A headers table with ``depth`` tables nested inside it."""
    table = b""
    for _ in range(depth):
        table = entry(b"n", b"F", long_prefixed(table))
    return content_header(HEADERS, headers_property(table), 0)


def test_nesting_is_checked_down_to_the_limit_pamqp_can_decode():
    check_properties(nested(MAX_NESTING))
    decode_properties(nested(MAX_NESTING))  # what a headers exchange or dead-lettering does later
    with pytest.raises(PropertiesError):
        check_properties(nested(MAX_NESTING + 1))
