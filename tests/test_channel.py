"""Channels and basic.* on the sans-IO core: channel open/close from both sides and channel-level
errors, content assembly (several body frames, bad content), byte-exact delivery of properties,
consumers (generated tags, round robin, no_ack, qos, cancel), acknowledgements and requeue order,
basic.get, nack/reject, publisher confirms, mandatory returns, and delivery across connections.
"""

from __future__ import annotations

import datetime
import re
import struct
from decimal import Decimal

import pytest
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from tests.frames import FakeClock, Peer, content, method, open_peer, publish

FRAME = struct.Struct(">BHI")


def header_frame(channel: int, body_size: int) -> bytes:
    return pamqp_frame.marshal(ContentHeader(0, body_size, commands.Basic.Properties()), channel)


def body_frame(channel: int, data: bytes) -> bytes:
    return pamqp_frame.marshal(pamqp_body.ContentBody(data), channel)


def raw_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split broker output into ``(frame type, channel, payload)`` without decoding anything."""
    frames = []
    while data:
        frame_type, channel, size = FRAME.unpack_from(data)
        assert data[7 + size] == 0xCE
        frames.append((frame_type, channel, data[7 : 7 + size]))
        data = data[8 + size :]
    return frames


def messages(frames: list) -> list[tuple[int, object, ContentHeader, bytes]]:
    """Group Deliver/GetOk/Return with their content: ``(channel, method, header, body)``."""
    found, pending = [], None
    for channel, value in frames:
        if isinstance(value, (commands.Basic.Deliver, commands.Basic.GetOk, commands.Basic.Return)):
            pending = [channel, value, None, b""]
            found.append(pending)
        elif isinstance(value, ContentHeader):
            pending[2] = value
        elif isinstance(value, pamqp_body.ContentBody):
            pending[3] += value.value
    return [tuple(m) for m in found]


def bodies(frames: list) -> list[bytes]:
    return [body for _, _, _, body in messages(frames)]


def of_type(frames: list, kind: type) -> list:
    return [value for _, value in frames if isinstance(value, kind)]


def declare(peer: Peer, queue: str, channel: int = 1, **arguments) -> commands.Queue.DeclareOk:
    peer.send_method(channel, commands.Queue.Declare(queue=queue, **arguments))
    [declare_ok] = of_type(peer.frames(), commands.Queue.DeclareOk)
    return declare_ok


def consume(peer: Peer, queue: str, channel: int = 1, tag: str = "", **arguments) -> tuple[str, list]:
    """Start a consumer; return its tag and whatever was delivered right away."""
    peer.send_method(channel, commands.Basic.Consume(queue=queue, consumer_tag=tag, **arguments))
    frames = peer.frames()
    [consume_ok] = of_type(frames, commands.Basic.ConsumeOk)
    return consume_ok.consumer_tag, frames


def publish_bodies(peer: Peer, queue: str, payloads, channel: int = 1) -> None:
    peer.send(b"".join(publish(channel, queue, payload) for payload in payloads))


def message_count(peer: Peer, queue: str, channel: int) -> int:
    return declare(peer, queue, channel, passive=True).message_count


def channel_close(frames: list, channel: int) -> commands.Channel.Close:
    closes = [value for ch, value in frames if ch == channel and isinstance(value, commands.Channel.Close)]
    assert len(closes) == 1, f"expected one channel.close on channel {channel}, got {frames}"
    return closes[0]


def connection_close(frames: list) -> commands.Connection.Close:
    closes = of_type(frames, commands.Connection.Close)
    assert len(closes) == 1, f"expected one connection.close, got {frames}"
    return closes[0]


def ack(peer: Peer, tag: int, multiple: bool = False, channel: int = 1) -> list:
    peer.send_method(channel, commands.Basic.Ack(delivery_tag=tag, multiple=multiple))
    return peer.frames()


# ------------------------------------------------------------------ open / close


def test_client_closes_channel_and_reopens_it():
    peer = open_peer()
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    assert [(ch, type(v)) for ch, v in peer.frames()] == [(1, commands.Channel.CloseOk)]
    peer.open_channel(1)
    assert declare(peer, "q").queue == "q"


def test_channel_error_closes_only_that_channel():
    peer = open_peer()
    peer.open_channel(2)
    peer.send_method(1, commands.Queue.Declare(queue="x", passive=True))
    frames = peer.frames()
    close = channel_close(frames, 1)
    assert (close.reply_code, close.reply_text) == (404, "NOT_FOUND - no queue 'x' in vhost '/'")
    assert (close.class_id, close.method_id) == (50, 10)
    assert of_type(frames, commands.Connection.Close) == []
    assert declare(peer, "q", channel=2).queue == "q"
    peer.send_method(1, commands.Channel.CloseOk())
    assert peer.frames() == []
    peer.open_channel(1)
    assert declare(peer, "q", channel=1).queue == "q"
    assert not peer.connection.should_close


def test_frames_on_a_closing_channel_are_discarded_until_close_ok():
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "q", channel=2)
    peer.send_method(1, commands.Queue.Declare(queue="x", passive=True))
    channel_close(peer.frames(), 1)
    peer.send(publish(1, "q", b"dropped"))
    peer.send_method(1, commands.Queue.Declare(queue="after"))
    peer.send_method(1, commands.Basic.Qos(prefetch_count=1))
    peer.send_method(1, commands.Basic.Get(queue="q"))
    assert peer.frames() == []
    peer.send_method(1, commands.Channel.CloseOk())
    assert peer.frames() == []
    assert message_count(peer, "q", 2) == 0
    peer.send_method(2, commands.Queue.Declare(queue="after", passive=True))
    assert channel_close(peer.frames(), 2).reply_code == 404
    peer.open_channel(1)


def test_client_close_crossing_the_broker_close_gets_close_ok_and_waits_for_the_clients_close_ok():
    """Both sides close at once (a publish to a missing exchange, then the client closes).

    As RabbitMQ: we answer the client's close, the channel stays closing until the client's
    close-ok for our close arrives, and then the number is free again; the connection lives on.
    """
    peer = open_peer()
    peer.send(publish(1, "k", b"abc", exchange="missing"))
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    frames = peer.frames()
    assert [(ch, type(v)) for ch, v in frames] == [(1, commands.Channel.Close), (1, commands.Channel.CloseOk)]
    assert channel_close(frames, 1).reply_code == 404
    assert 1 in peer.connection.channels  # still closing
    peer.send_method(1, commands.Queue.Declare(queue="ignored-while-closing"))
    assert peer.frames() == []
    peer.send_method(1, commands.Channel.CloseOk())
    assert peer.frames() == []
    assert 1 not in peer.connection.channels
    assert not peer.connection.should_close
    peer.open_channel(1)
    assert declare(peer, "q").queue == "q"
    assert "ignored-while-closing" not in peer.broker.vhosts["/"].queues


def test_channel_open_after_a_crossing_close_but_before_close_ok_is_a_connection_error():
    """The number is not free until the client's close-ok: RabbitMQ says 'second channel.open seen'."""
    peer = open_peer()
    peer.send_method(1, commands.Queue.Declare(queue="x", passive=True))
    channel_close(peer.frames(), 1)
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    assert [(ch, type(v)) for ch, v in peer.frames()] == [(1, commands.Channel.CloseOk)]
    peer.send_method(1, commands.Channel.Open())
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (504, "CHANNEL_ERROR - second 'channel.open' seen")


def test_stray_content_frame_on_a_closing_channel_is_505():
    peer = open_peer()
    peer.send_method(1, commands.Queue.Declare(queue="x", passive=True))
    channel_close(peer.frames(), 1)
    peer.send(header_frame(1, 5))
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
    )


def test_channel_open_on_a_channel_awaiting_close_ok_is_a_connection_error():
    peer = open_peer()
    peer.send_method(1, commands.Queue.Declare(queue="x", passive=True))
    channel_close(peer.frames(), 1)
    peer.send_method(1, commands.Channel.Open())
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (504, "CHANNEL_ERROR - second 'channel.open' seen")
    assert (close.class_id, close.method_id) == (20, 10)


def test_many_channels_on_one_connection():
    peer = open_peer()
    numbers = range(2, 202)
    for number in numbers:
        peer.send_method(number, commands.Channel.Open())
    assert [(ch, type(v)) for ch, v in peer.frames()] == [(n, commands.Channel.OpenOk) for n in numbers]
    declare(peer, "q")
    publish_bodies(peer, "q", [b"%d" % n for n in numbers])
    for number in numbers:
        peer.send_method(number, commands.Basic.Get(queue="q", no_ack=True))
    got = messages(peer.frames())
    assert [(ch, body) for ch, _, _, body in got] == [(n, b"%d" % n) for n in numbers]


def test_second_channel_open_is_a_connection_error():
    peer = open_peer()
    peer.send_method(1, commands.Channel.Open())
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (504, "CHANNEL_ERROR - second 'channel.open' seen")
    assert (close.class_id, close.method_id) == (20, 10)


@pytest.mark.parametrize(
    "frame,reply_code,reply_text,class_method",
    [
        pytest.param(
            method(5, commands.Queue.Declare(queue="x")),
            504,
            "CHANNEL_ERROR - expected 'channel.open'",
            (50, 10),
            id="queue.declare",
        ),
        pytest.param(
            method(5, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0)),
            504,
            "CHANNEL_ERROR - expected 'channel.open'",
            (20, 40),
            id="channel.close",
        ),
        pytest.param(
            method(5, commands.Channel.CloseOk()),
            504,
            "CHANNEL_ERROR - expected 'channel.open'",
            (20, 41),
            id="channel.close-ok",
        ),
        pytest.param(
            content(5, b"hello"),
            505,
            "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
            (0, 0),
            id="content",
        ),
    ],
)
def test_frames_on_a_never_opened_channel_are_refused(frame, reply_code, reply_text, class_method):
    peer = open_peer()
    peer.send(frame)
    frames = peer.frames()
    close = connection_close(frames)
    assert (close.reply_code, close.reply_text) == (reply_code, reply_text)
    assert (close.class_id, close.method_id) == class_method
    assert [ch for ch, _ in frames] == [0]


# ------------------------------------------------------------------ publish and deliver

ALL_PROPERTIES = commands.Basic.Properties(
    content_type="application/json",
    content_encoding="gzip",
    headers={
        "string": "text",
        "int": 42,
        "negative": -7,
        "big": 2**40,
        "bool": True,
        "float": 1.5,
        "decimal": Decimal("1.23"),
        "time": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
        "void": None,
        "nested": {"list": [1, "two", {"three": [3.0, False]}], "empty": {}},
    },
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="reply.queue",
    expiration="600000",
    message_id="msg-1",
    timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    message_type="kind",
    user_id="guest",
    app_id="tests",
)


def test_publish_and_consume_deliver_body_and_properties_byte_exact():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    payload = bytes(range(256)) * 3
    sent_header = ContentHeader(0, len(payload), ALL_PROPERTIES).marshal()
    peer.send(method(1, commands.Basic.Publish(exchange="", routing_key="q")) + content(1, payload, ALL_PROPERTIES))
    out = raw_frames(peer.connection.data_to_send())
    assert [(frame_type, ch) for frame_type, ch, _ in out] == [(1, 1), (2, 1), (3, 1)]
    assert out[1][2] == sent_header
    assert out[2][2] == payload
    deliver = commands.Basic.Deliver()
    deliver.unmarshal(out[0][2][4:])
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered, deliver.exchange, deliver.routing_key) == (
        "c",
        1,
        False,
        "",
        "q",
    )


def test_get_ok_and_return_carry_the_header_byte_exact():
    peer = open_peer()
    declare(peer, "q")
    sent_header = ContentHeader(0, 4, ALL_PROPERTIES).marshal()
    peer.send(method(1, commands.Basic.Publish(exchange="", routing_key="q")) + content(1, b"body", ALL_PROPERTIES))
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.send(
        method(1, commands.Basic.Publish(exchange="", routing_key="nowhere", mandatory=True))
        + content(1, b"body", ALL_PROPERTIES)
    )
    out = raw_frames(peer.connection.data_to_send())
    headers = [payload for frame_type, _, payload in out if frame_type == 2]
    assert headers == [sent_header, sent_header]


def test_server_generated_consumer_tags():
    peer = open_peer()
    declare(peer, "q")
    first, _ = consume(peer, "q")
    second, _ = consume(peer, "q")
    for tag in (first, second):
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag
    assert first != second
    publish_bodies(peer, "q", [b"1", b"2"])
    assert sorted(d.consumer_tag for _, d, _, _ in messages(peer.frames())) == sorted([first, second])


def test_round_robin_across_three_consumers():
    peer = open_peer()
    declare(peer, "q")
    tags = [consume(peer, "q", tag=tag)[0] for tag in ("a", "b", "c")]
    publish_bodies(peer, "q", [b"%d" % i for i in range(9)])
    got = [(d.consumer_tag, body) for _, d, _, body in messages(peer.frames())]
    assert [body for _, body in got] == [b"%d" % i for i in range(9)]
    order = [tag for tag, _ in got]
    assert sorted(order[:3]) == tags
    assert order == order[:3] * 3


def test_no_ack_consumer_messages_are_settled_on_delivery():
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "q")
    consume(peer, "q", no_ack=True)
    publish_bodies(peer, "q", [b"1", b"2", b"3"], channel=2)
    assert bodies(peer.frames()) == [b"1", b"2", b"3"]
    close = channel_close(ack(peer, 1), 1)
    assert (close.reply_code, close.reply_text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")
    peer.send_method(1, commands.Channel.CloseOk())
    assert message_count(peer, "q", 2) == 0


@pytest.mark.parametrize("tag,multiple,left", [(2, False, 2), (2, True, 1), (3, True, 0), (0, True, 0)])
def test_basic_ack_single_and_multiple(tag, multiple, left):
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "q")
    consume(peer, "q")
    publish_bodies(peer, "q", [b"1", b"2", b"3"], channel=2)
    assert bodies(peer.frames()) == [b"1", b"2", b"3"]
    assert ack(peer, tag, multiple) == []
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    peer.frames()
    assert message_count(peer, "q", 2) == left


@pytest.mark.parametrize(
    "settle",
    [
        commands.Basic.Ack(delivery_tag=99),
        commands.Basic.Ack(delivery_tag=99, multiple=True),
        commands.Basic.Nack(delivery_tag=99),
        commands.Basic.Reject(delivery_tag=99),
    ],
    ids=["ack", "ack-multiple", "nack", "reject"],
)
def test_settling_an_unknown_delivery_tag_is_406(settle):
    peer = open_peer()
    peer.send_method(1, settle)
    close = channel_close(peer.frames(), 1)
    assert (close.reply_code, close.reply_text) == (406, "PRECONDITION_FAILED - unknown delivery tag 99")
    assert (close.class_id, close.method_id) == (settle.index >> 16, settle.index & 0xFFFF)


def test_acking_the_same_tag_twice_is_406():
    peer = open_peer()
    declare(peer, "q")
    publish_bodies(peer, "q", [b"1"])
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.frames()
    assert ack(peer, 1) == []
    close = channel_close(ack(peer, 1), 1)
    assert (close.reply_code, close.reply_text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_qos_prefetch_count_limits_unacked_deliveries():
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "q")
    peer.send_method(1, commands.Basic.Qos(prefetch_count=2))
    assert of_type(peer.frames(), commands.Basic.QosOk)
    consume(peer, "q")
    publish_bodies(peer, "q", [b"%d" % i for i in range(1, 7)], channel=2)
    assert bodies(peer.frames()) == [b"1", b"2"]
    assert bodies(ack(peer, 1)) == [b"3"]
    assert bodies(ack(peer, 3, multiple=True)) == [b"4", b"5"]
    assert bodies(ack(peer, 5, multiple=True)) == [b"6"]


# ------------------------------------------------------------------ requeue order


def close_channel(peer: Peer) -> None:
    peer.send_method(2, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))


def close_connection(peer: Peer) -> None:
    peer.send_method(0, commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0))


def lose_connection(peer: Peer) -> None:
    peer.connection.connection_lost()


@pytest.mark.parametrize(
    "end",
    [close_channel, close_connection, lose_connection],
    ids=["channel.close", "connection.close", "connection lost"],
)
def test_unacked_messages_are_requeued_in_original_order_and_redelivered(end):
    broker = Broker(clock=FakeClock())
    publisher, consumer = open_peer(broker), open_peer(broker)
    declare(publisher, "q")
    consumer.open_channel(2)
    consume(consumer, "q", channel=2, tag="first")
    publish_bodies(publisher, "q", [b"%d" % i for i in range(1, 6)])
    assert bodies(consumer.frames()) == [b"1", b"2", b"3", b"4", b"5"]
    consumer.send_method(2, commands.Basic.Cancel(consumer_tag="first"))  # its deliveries stay unacked
    consumer.frames()
    assert ack(consumer, 2, channel=2) == []
    assert ack(consumer, 4, channel=2) == []
    publish_bodies(publisher, "q", [b"6", b"7", b"8"])
    end(consumer)
    consumer.frames()
    _, delivered = consume(publisher, "q", tag="next")
    again = [(d.redelivered, body) for _, d, _, body in messages(delivered)]
    assert again == [(True, b"1"), (True, b"3"), (True, b"5"), (False, b"6"), (False, b"7"), (False, b"8")]


def test_basic_recover_requeues_unacked_as_redelivered():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    publish_bodies(peer, "q", [b"1", b"2"])
    assert bodies(peer.frames()) == [b"1", b"2"]
    peer.send_method(1, commands.Basic.Recover(requeue=True))
    frames = peer.frames()
    assert of_type(frames, commands.Basic.RecoverOk)
    assert [(d.redelivered, body) for _, d, _, body in messages(frames)] == [(True, b"1"), (True, b"2")]


# ------------------------------------------------------------------ cancel / get / nack / reject


def test_basic_cancel_stops_deliveries():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    peer.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
    [cancel_ok] = of_type(peer.frames(), commands.Basic.CancelOk)
    assert cancel_ok.consumer_tag == "c"
    publish_bodies(peer, "q", [b"1"])
    assert peer.frames() == []
    assert message_count(peer, "q", 1) == 1


def test_cancel_of_an_unknown_consumer_tag_gets_cancel_ok():
    peer = open_peer()
    peer.send_method(1, commands.Basic.Cancel(consumer_tag="nosuch"))
    [(channel, cancel_ok)] = peer.frames()
    assert (channel, type(cancel_ok), cancel_ok.consumer_tag) == (1, commands.Basic.CancelOk, "nosuch")


def test_duplicate_consumer_tag_on_a_channel_is_a_530_connection_error():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="dup")
    peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="dup"))
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'")
    assert (close.class_id, close.method_id) == (60, 20)


def test_basic_get_reports_remaining_count_then_get_empty():
    peer = open_peer()
    declare(peer, "q")
    publish_bodies(peer, "q", [b"1", b"2", b"3"])
    for expected_tag, expected_body, remaining in ((1, b"1", 2), (2, b"2", 1), (3, b"3", 0)):
        peer.send_method(1, commands.Basic.Get(queue="q"))
        [(channel, get_ok, _, body)] = messages(peer.frames())
        assert (
            channel,
            get_ok.delivery_tag,
            get_ok.redelivered,
            get_ok.exchange,
            get_ok.routing_key,
            get_ok.message_count,
            body,
        ) == (1, expected_tag, False, "", "q", remaining, expected_body)
    peer.send_method(1, commands.Basic.Get(queue="q"))
    assert [type(v) for _, v in peer.frames()] == [commands.Basic.GetEmpty]


def get_one(peer: Peer) -> tuple[commands.Basic.GetOk, bytes] | None:
    peer.send_method(1, commands.Basic.Get(queue="q"))
    got = messages(peer.frames())
    return (got[0][1], got[0][3]) if got else None


@pytest.mark.parametrize(
    "settle",
    [
        lambda tag, requeue: commands.Basic.Nack(delivery_tag=tag, requeue=requeue),
        lambda tag, requeue: commands.Basic.Reject(delivery_tag=tag, requeue=requeue),
    ],
    ids=["nack", "reject"],
)
def test_nack_and_reject_with_requeue_redeliver(settle):
    peer = open_peer()
    declare(peer, "q")
    publish_bodies(peer, "q", [b"1", b"2"])
    get_ok, body = get_one(peer)
    peer.send_method(1, settle(get_ok.delivery_tag, True))
    assert peer.frames() == []
    again, body_again = get_one(peer)
    assert (again.redelivered, body_again) == (True, b"1")


@pytest.mark.parametrize(
    "settle",
    [
        lambda tag, requeue: commands.Basic.Nack(delivery_tag=tag, requeue=requeue),
        lambda tag, requeue: commands.Basic.Reject(delivery_tag=tag, requeue=requeue),
    ],
    ids=["nack", "reject"],
)
def test_nack_and_reject_without_requeue_drop(settle):
    peer = open_peer()
    declare(peer, "q")
    publish_bodies(peer, "q", [b"1", b"2"])
    get_ok, _ = get_one(peer)
    peer.send_method(1, settle(get_ok.delivery_tag, False))
    assert peer.frames() == []
    next_ok, body = get_one(peer)
    assert (next_ok.redelivered, body) == (False, b"2")
    assert get_one(peer) is None


def test_nack_multiple_requeues_in_order():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    publish_bodies(peer, "q", [b"1", b"2", b"3"])
    assert bodies(peer.frames()) == [b"1", b"2", b"3"]
    peer.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
    peer.frames()
    peer.send_method(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=True))
    assert peer.frames() == []
    assert [get_one(peer)[1] for _ in range(2)] == [b"1", b"2"]


# ------------------------------------------------------------------ publisher confirms, mandatory


def test_confirm_select_then_one_coalesced_ack_per_read():
    peer = open_peer()
    declare(peer, "q")
    peer.send_method(1, commands.Confirm.Select())
    assert [type(v) for _, v in peer.frames()] == [commands.Confirm.SelectOk]
    publish_bodies(peer, "q", [b"%d" % i for i in range(5)])
    acks = peer.frames()
    assert [(ch, type(v)) for ch, v in acks] == [(1, commands.Basic.Ack)]
    assert (acks[0][1].delivery_tag, acks[0][1].multiple) == (5, True)
    publish_bodies(peer, "q", [b"one more"])
    [(_, single)] = peer.frames()
    assert (single.delivery_tag, single.multiple) == (6, False)


def test_confirm_covers_unroutable_messages_after_the_return():
    peer = open_peer()
    peer.send_method(1, commands.Confirm.Select())
    peer.frames()
    peer.send(publish(1, "nowhere", b"x", mandatory=True))
    frames = peer.frames()
    assert [type(v) for _, v in frames] == [
        commands.Basic.Return,
        ContentHeader,
        pamqp_body.ContentBody,
        commands.Basic.Ack,
    ]
    assert frames[-1][1].delivery_tag == 1


def test_mandatory_unroutable_message_is_returned_with_its_content():
    peer = open_peer()
    properties = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"})
    peer.send(publish(1, "nowhere", b"returned body", mandatory=True, properties=properties))
    [(channel, returned, header, body)] = messages(peer.frames())
    assert channel == 1
    assert (returned.reply_code, returned.reply_text, returned.exchange, returned.routing_key) == (
        312,
        "NO_ROUTE",
        "",
        "nowhere",
    )
    assert (header.properties.content_type, header.properties.headers, body) == (
        "text/plain",
        {"k": "v"},
        b"returned body",
    )


def test_unroutable_message_without_mandatory_is_dropped_silently():
    peer = open_peer()
    peer.send(publish(1, "nowhere", b"x"))
    assert peer.frames() == []


# ------------------------------------------------------------------ content assembly


def test_content_spanning_several_body_frames():
    peer = open_peer(frame_max=4096)
    declare(peer, "q")
    consume(peer, "q", tag="c")
    payload = bytes(i % 251 for i in range(10_000))
    data = method(1, commands.Basic.Publish(exchange="", routing_key="q")) + content(1, payload, frame_max=4096)
    for start in range(0, len(data), 1000):  # and delivered to the broker in arbitrary pieces
        peer.send(data[start : start + 1000])
    out = raw_frames(peer.connection.data_to_send())
    body_frames = [payload for frame_type, _, payload in out if frame_type == 3]
    assert len(body_frames) == 3
    assert all(len(part) <= 4096 - 8 for part in body_frames)
    assert b"".join(body_frames) == payload


def test_empty_body_message_has_no_body_frame():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    peer.send(publish(1, "q", b""))
    out = raw_frames(peer.connection.data_to_send())
    assert [frame_type for frame_type, _, _ in out] == [1, 2]


def test_body_longer_than_declared_is_not_delivered_and_closes_the_connection():
    peer = open_peer()
    declare(peer, "q")
    consume(peer, "q", tag="c")
    peer.send(
        method(1, commands.Basic.Publish(exchange="", routing_key="q")) + header_frame(1, 2) + body_frame(1, b"hello")
    )
    peer.send_method(1, commands.Basic.Qos(prefetch_count=1))  # at the latest, this frame is refused
    frames = peer.frames()
    assert messages(frames) == []
    assert connection_close(frames).reply_code in (501, 505)


@pytest.mark.parametrize("frame", [header_frame(1, 5), body_frame(1, b"hello")], ids=["header", "body"])
def test_content_frame_without_a_pending_publish_is_505(frame):
    peer = open_peer()
    peer.send(frame)
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
    )


def test_publish_then_a_method_instead_of_the_header_is_505():
    peer = open_peer()
    peer.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    peer.send_method(1, commands.Queue.Declare(queue="x"))
    close = connection_close(peer.frames())
    assert (close.reply_code, close.reply_text) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
    )
    assert (close.class_id, close.method_id) == (60, 40)


# ------------------------------------------------------------------ across connections


def test_publish_on_one_connection_deliver_on_another():
    broker = Broker(clock=FakeClock())
    publisher, subscriber = open_peer(broker), open_peer(broker)
    declare(subscriber, "q")
    consume(subscriber, "q", tag="sub")
    publish_bodies(publisher, "q", [b"across"])
    assert publisher.frames() == []
    [(channel, deliver, _, body)] = messages(subscriber.frames())
    assert (channel, deliver.consumer_tag, body) == (1, "sub", b"across")


PERSISTENT = commands.Basic.Properties(delivery_mode=2)


def test_confirms_go_out_in_order_and_no_multiple_ack_covers_a_nacked_publish():
    """The ack due before a refused publish goes out before its nack (as RabbitMQ), and once an
    earlier persistent publish is synced its ack goes around the nacked ones (amqp091-go takes a
    multiple ack covering a nack as acking that publish)."""
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(
        1, commands.Queue.Declare(queue="full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    )
    peer.send_method(1, commands.Queue.Declare(queue="d", durable=True))
    peer.send_method(1, commands.Queue.Declare(queue="t"))
    peer.send(publish(1, "full", b"fills it"))
    peer.send_method(1, commands.Confirm.Select())
    peer.frames()
    peer.auto_sync = False  # the test plays the persister

    def ack(tag: int, multiple: bool = False) -> bytes:
        return method(1, commands.Basic.Ack(delivery_tag=tag, multiple=multiple))

    def nack(tag: int) -> bytes:
        return method(1, commands.Basic.Nack(delivery_tag=tag, multiple=False, requeue=False))

    peer.send(publish(1, "t", b"1") + publish(1, "t", b"2") + publish(1, "full", b"3") + publish(1, "t", b"4"))
    assert peer.connection.data_to_send() == ack(2, multiple=True) + nack(3) + ack(4)

    stored = publish(1, "d", b"5", properties=PERSISTENT)
    peer.send(stored + publish(1, "full", b"6") + publish(1, "full", b"7") + publish(1, "t", b"8"))
    assert peer.connection.data_to_send() == nack(6) + nack(7)  # 5 waits for the sync, and 8 after it
    barrier = broker.sync_barrier
    barrier.end(barrier.begin(), True)
    assert peer.connection.data_to_send() == ack(5) + ack(8)


def test_publisher_confirm_frames_are_byte_exact_on_every_path():
    """Ack after routing, nack for a queue that refuses (reject-publish), nack for a failed store sync: the
    exact frames, whichever path sent them (Channel._confirm is the one writer of all three)."""
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(
        1, commands.Queue.Declare(queue="full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    )
    peer.send_method(1, commands.Queue.Declare(queue="d", durable=True))
    peer.send_method(1, commands.Confirm.Select())
    peer.frames()
    peer.auto_sync = False  # the test plays the persister

    peer.send(publish(1, "full", b"fits") + publish(1, "full", b"refused"))
    nack = method(1, commands.Basic.Nack(delivery_tag=2, multiple=False, requeue=False))
    assert peer.connection.data_to_send() == method(1, commands.Basic.Ack(delivery_tag=1, multiple=False)) + nack

    peer.send(publish(1, "d", b"a", properties=PERSISTENT) + publish(1, "d", b"b", properties=PERSISTENT))
    assert peer.connection.data_to_send() == b""  # persistent on a durable queue: waits for the sync
    barrier = broker.sync_barrier
    barrier.end(barrier.begin(), False)
    assert peer.connection.data_to_send() == method(
        1, commands.Basic.Nack(delivery_tag=4, multiple=True, requeue=False)
    )

    peer.send(publish(1, "d", b"c", properties=PERSISTENT) + publish(1, "d", b"d", properties=PERSISTENT))
    barrier.end(barrier.begin(), True)
    assert peer.connection.data_to_send() == method(1, commands.Basic.Ack(delivery_tag=6, multiple=True))
