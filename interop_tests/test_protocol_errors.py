"""Bad input on the wire, sent with a raw socket to the real broker process.

Each test asserts the broker's exact answer as RabbitMQ 3.10 gives it (reply
code, reply text where RabbitMQ's text is stable rather than an Erlang term
dump, class and method ids), probed against a real RabbitMQ.  Where RabbitMQ
hangs up *without* a frame during the handshake (its "silent close" for
untrusted peers), a ``connection.close`` with the spec's code is accepted too.

After every test the autouse ``unharmed`` fixture checks that the broker process
is alive, that a pika connection opened before the bad input still works, and
that a fresh pika connection works: one bad peer must not hurt anyone else.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pytest
from pamqp import body, commands, header, heartbeat

from .raw_client import PROTOCOL_HEADER, RawClient, ServerClosed, method_payload

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8


def pika_connection(broker: SimpleNamespace) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.URLParameters(broker.url + "?socket_timeout=5&blocked_connection_timeout=5&connection_attempts=1")
    )


def assert_connection_works(connection: pika.BlockingConnection) -> None:
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"still fine")
    _, _, message = channel.basic_get(queue, auto_ack=True)
    assert message == b"still fine"
    channel.close()


@pytest.fixture(autouse=True)
def unharmed(broker: SimpleNamespace) -> Iterator[None]:
    bystander = pika_connection(broker)
    try:
        yield
        if broker.process is not None:
            assert broker.process.process.poll() is None, "the broker process died"
        assert bystander.is_open, "a connection that did nothing wrong was closed"
        assert_connection_works(bystander)
        fresh = pika_connection(broker)
        try:
            assert_connection_works(fresh)
        finally:
            fresh.close()
    finally:
        if bystander.is_open:
            bystander.close()


@pytest.fixture
def raw(broker: SimpleNamespace) -> Iterator[RawClient]:
    with RawClient(broker.host, broker.port) as client:
        yield client


@pytest.fixture
def opened(raw: RawClient) -> RawClient:
    """A raw client past ``connection.open-ok`` with channel 1 open."""
    raw.handshake()
    raw.open_channel(1)
    return raw


def assert_close(
    close: commands.Connection.Close,
    code: int,
    text: str | None = None,
    prefix: str | None = None,
    class_id: int | None = None,
    method_id: int | None = None,
) -> None:
    assert close.reply_code == code, close.reply_text
    if text is not None:
        assert close.reply_text == text
    if prefix is not None:
        assert close.reply_text.startswith(prefix), close.reply_text
    if class_id is not None:
        assert (close.class_id, close.method_id) == (class_id, method_id)


def refused_during_handshake(raw: RawClient, code: int, prefix: str) -> None:
    """The broker either closes with ``code`` or (as RabbitMQ does pre-open) just hangs up."""
    try:
        channel, value = raw.read_frame(timeout=5)
    except ServerClosed:
        return
    assert channel == 0 and isinstance(value, commands.Connection.Close), value
    assert_close(value, code, prefix=prefix)
    raw.send_method(0, commands.Connection.CloseOk())
    assert raw.wait_closed(timeout=5) == []


# ------------------------------------------------------------ protocol header


@pytest.mark.parametrize(
    "greeting",
    [
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x00\x01\x09\x01",
        b"XXXXXXXX",
        b"HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_wrong_protocol_header_gets_ours_back_then_the_socket_closes(raw: RawClient, greeting: bytes) -> None:
    raw.send(greeting)
    assert raw.read_raw_until_closed(timeout=5) == PROTOCOL_HEADER


def test_protocol_header_sent_byte_by_byte_is_accepted(raw: RawClient) -> None:
    for byte in PROTOCOL_HEADER:
        raw.send(bytes([byte]))
    start = raw.expect(commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert set(start.mechanisms.split()) >= {"PLAIN", "AMQPLAIN"}


# ------------------------------------------------------------ framing


@pytest.mark.parametrize("channel_open", [False, True])
def test_bad_frame_end_byte_is_frame_error(raw: RawClient, channel_open: bool) -> None:
    raw.handshake()
    if channel_open:
        raw.open_channel(1)
        raw.send_frame(FRAME_METHOD, 1, method_payload(commands.Queue.Declare(queue="q")), end=0x41)
    else:
        raw.send_frame(FRAME_METHOD, 1, method_payload(commands.Channel.Open()), end=0x00)
    assert_close(raw.expect_connection_close(), 501, prefix="FRAME_ERROR - ", class_id=0, method_id=0)


@pytest.mark.parametrize("frame_max, size", [(131072, 140000), (4096, 5000)])
def test_oversized_frame_is_refused_from_its_header_alone(raw: RawClient, frame_max: int, size: int) -> None:
    raw.handshake(frame_max=frame_max)
    raw.open_channel(1)
    raw.send(struct.pack(">BHI", FRAME_METHOD, 1, size))  # the payload is never sent
    close = raw.expect_connection_close(timeout=2)
    assert_close(close, 501, prefix="FRAME_ERROR - ", class_id=0, method_id=0)


def test_frame_of_exactly_frame_max_is_accepted(raw: RawClient, unique: str) -> None:
    raw.handshake(frame_max=4096)
    raw.open_channel(1)
    raw.send_method(1, commands.Queue.Declare(queue=unique, auto_delete=True))
    raw.expect(commands.Queue.DeclareOk, 1)
    payload = b"x" * (4096 - 8)
    raw.send_method(1, commands.Basic.Publish(exchange="", routing_key=unique))
    raw.send_marshalled(1, header.ContentHeader(0, len(payload), commands.Basic.Properties()))
    raw.send_frame(FRAME_BODY, 1, payload)
    raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))
    raw.expect(commands.Basic.GetOk, 1)
    assert isinstance(raw.read_frame()[1], header.ContentHeader)
    received = b""
    while len(received) < len(payload):
        channel, value = raw.read_frame()
        assert channel == 1 and isinstance(value, body.ContentBody)
        received += value.value
    assert received == payload


def test_huge_frame_before_the_handshake_completes_is_refused(raw: RawClient) -> None:
    raw.start()
    raw.send(struct.pack(">BHI", FRAME_METHOD, 0, 1_000_000) + b"\x00" * 100)
    refused_during_handshake(raw, 501, "FRAME_ERROR - ")


@pytest.mark.parametrize("channel", [0, 1])
def test_unknown_frame_type_is_frame_error(opened: RawClient, channel: int) -> None:
    opened.send_frame(9, channel, b"abc")
    assert_close(opened.expect_connection_close(), 501, prefix="FRAME_ERROR - ", class_id=0, method_id=0)


def test_heartbeat_frame_with_a_payload_is_frame_error(opened: RawClient) -> None:
    opened.send_frame(FRAME_HEARTBEAT, 0, b"ab")
    assert_close(opened.expect_connection_close(), 501, prefix="FRAME_ERROR - ", class_id=0, method_id=0)


def test_heartbeat_frame_on_a_channel_is_unexpected_frame(opened: RawClient) -> None:
    opened.send_frame(FRAME_HEARTBEAT, 1, b"")
    assert_close(opened.expect_connection_close(), 505, prefix="UNEXPECTED_FRAME - ", class_id=0, method_id=0)


# ------------------------------------------------------------ methods


@pytest.mark.parametrize("channel, class_id, method_id", [(1, 99, 1), (1, 50, 99), (0, 10, 99)])
def test_unknown_method_ends_the_connection(opened: RawClient, channel: int, class_id: int, method_id: int) -> None:
    # RabbitMQ's reader crashes and drops the socket without a frame; a graceful broker says
    # 503 COMMAND_INVALID or 540 NOT_IMPLEMENTED.  Either way the connection must end.
    opened.send_frame(FRAME_METHOD, channel, struct.pack(">HH", class_id, method_id))
    try:
        close = opened.expect_connection_close()
    except ServerClosed:
        return
    assert (close.reply_code, close.reply_text.split(" - ")[0]) in {
        (503, "COMMAND_INVALID"),
        (540, "NOT_IMPLEMENTED"),
    }, close.reply_text
    assert opened.wait_closed() == []


def test_method_frame_shorter_than_its_ids_is_frame_error(opened: RawClient) -> None:
    opened.send_frame(FRAME_METHOD, 1, b"\x00\x32")
    assert_close(opened.expect_connection_close(), 501, prefix="FRAME_ERROR - ", class_id=0, method_id=0)


@pytest.mark.parametrize("cut", ["truncated", "missing arguments table", "trailing bytes"])
def test_method_arguments_that_do_not_decode_are_frame_error(opened: RawClient, cut: str) -> None:
    payload = method_payload(commands.Queue.Declare(queue="abcdef"))
    payload = {"truncated": payload[:8], "missing arguments table": payload[:-4], "trailing bytes": payload + b"zzzz"}[
        cut
    ]
    opened.send_frame(FRAME_METHOD, 1, payload)
    assert_close(opened.expect_connection_close(), 501, prefix="FRAME_ERROR - cannot decode", class_id=50, method_id=10)


# ------------------------------------------------------------ content frames


@pytest.mark.parametrize("frame", ["header", "body"])
def test_content_frame_without_a_publish_is_unexpected_frame(opened: RawClient, frame: str) -> None:
    if frame == "header":
        opened.send_marshalled(1, header.ContentHeader(0, 5, commands.Basic.Properties()))
    else:
        opened.send_marshalled(1, body.ContentBody(b"hello"))
    assert_close(
        opened.expect_connection_close(),
        505,
        text="UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        class_id=0,
        method_id=0,
    )


def test_method_instead_of_content_header_is_unexpected_frame(opened: RawClient) -> None:
    opened.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    opened.send_method(1, commands.Queue.Declare(queue="q"))
    assert_close(
        opened.expect_connection_close(),
        505,
        text="UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
        class_id=60,
        method_id=40,
    )


def test_method_instead_of_content_body_is_unexpected_frame(opened: RawClient) -> None:
    opened.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    opened.send_marshalled(1, header.ContentHeader(0, 5, commands.Basic.Properties()))
    opened.send_method(1, commands.Queue.Declare(queue="q"))
    assert_close(
        opened.expect_connection_close(),
        505,
        text="UNEXPECTED_FRAME - expected content body, got non content body frame instead",
        class_id=60,
        method_id=40,
    )


def test_content_header_of_the_wrong_class_is_unexpected_frame(opened: RawClient) -> None:
    opened.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    # a content header for class 50 (queue): weight 0, body size 5, no property flags
    opened.send_frame(FRAME_HEADER, 1, struct.pack(">HHQH", 50, 0, 5, 0))
    assert_close(
        opened.expect_connection_close(),
        505,
        text="UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
        class_id=60,
        method_id=40,
    )


# ------------------------------------------------------------ channels


@pytest.mark.parametrize(
    "method, class_id, method_id",
    [
        (commands.Queue.Declare(queue="q"), 50, 10),
        (commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 20, 40),
        (commands.Channel.CloseOk(), 20, 41),
    ],
)
def test_method_on_a_never_opened_channel_is_channel_error(
    opened: RawClient, method, class_id: int, method_id: int
) -> None:
    opened.send_method(5, method)
    assert_close(
        opened.expect_connection_close(),
        504,
        text="CHANNEL_ERROR - expected 'channel.open'",
        class_id=class_id,
        method_id=method_id,
    )


def test_content_header_on_a_never_opened_channel_is_unexpected_frame(opened: RawClient) -> None:
    opened.send_marshalled(5, header.ContentHeader(0, 5, commands.Basic.Properties()))
    assert_close(
        opened.expect_connection_close(),
        505,
        text="UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        class_id=0,
        method_id=0,
    )


def test_second_channel_open_is_channel_error(opened: RawClient) -> None:
    opened.send_method(1, commands.Channel.Open())
    assert_close(
        opened.expect_connection_close(),
        504,
        text="CHANNEL_ERROR - second 'channel.open' seen",
        class_id=20,
        method_id=10,
    )


def test_channel_method_on_channel_zero_is_channel_error(opened: RawClient) -> None:
    opened.send_method(0, commands.Channel.Open())
    assert_close(
        opened.expect_connection_close(),
        504,
        text="CHANNEL_ERROR - unexpected method in connection state running",
        class_id=20,
        method_id=10,
    )


def test_channel_open_before_connection_open_is_unexpected_frame(raw: RawClient) -> None:
    raw.start()
    raw.start_ok()
    raw.expect(commands.Connection.Tune)
    raw.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    raw.send_method(1, commands.Channel.Open())
    assert_close(raw.expect_connection_close(), 505, prefix="UNEXPECTED_FRAME - ", class_id=0, method_id=0)


# ------------------------------------------------------------ handshake


@pytest.mark.parametrize("username, password", [("guest", "wrong"), ("nobody", "guest")])
def test_bad_credentials_are_access_refused(raw: RawClient, username: str, password: str) -> None:
    raw.start()
    raw.start_ok(username=username, password=password)
    close = raw.expect_connection_close()
    assert_close(
        close,
        403,
        text="ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.",
        class_id=0,
        method_id=0,
    )
    assert raw.wait_closed() == []


def test_bad_credentials_without_authentication_failure_close_just_hang_up(raw: RawClient) -> None:
    raw.start()
    raw.start_ok(password="wrong", client_properties={"product": "old client"})
    assert raw.wait_closed(timeout=6) == []


def test_unknown_vhost_is_not_allowed(raw: RawClient) -> None:
    raw.start()
    raw.start_ok()
    raw.expect(commands.Connection.Tune)
    raw.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    raw.send_method(0, commands.Connection.Open(virtual_host="nope"))
    assert_close(
        raw.expect_connection_close(), 530, text="NOT_ALLOWED - vhost nope not found", class_id=10, method_id=40
    )
    assert raw.wait_closed() == []


def test_tune_ok_frame_max_below_the_minimum_is_refused(raw: RawClient) -> None:
    raw.start()
    raw.start_ok()
    raw.expect(commands.Connection.Tune)
    raw.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=1000, heartbeat=0))
    raw.send_method(0, commands.Connection.Open(virtual_host="/"))
    refused_during_handshake(raw, 530, "NOT_ALLOWED - ")


def test_silent_client_is_dropped_after_two_missed_heartbeats(raw: RawClient) -> None:
    raw.handshake(heartbeat=1)
    opened_at = time.monotonic()
    frames = raw.wait_closed(timeout=6)
    silent_for = time.monotonic() - opened_at
    assert 1.5 <= silent_for <= 4.0, silent_for
    assert frames and all(isinstance(value, heartbeat.Heartbeat) and channel == 0 for channel, value in frames)


def test_client_that_sends_heartbeats_is_kept(raw: RawClient) -> None:
    raw.handshake(heartbeat=1)
    deadline = time.monotonic() + 2.5  # past two heartbeat intervals
    while time.monotonic() < deadline:
        raw.send_marshalled(0, heartbeat.Heartbeat())
        try:
            raw.read_frame(timeout=0.4)
        except TimeoutError:
            pass
    raw.open_channel(1)


def test_after_close_ok_the_broker_leaves_the_socket_to_the_client(opened: RawClient) -> None:
    """RabbitMQ keeps the socket open after its close-ok until the client closes it; closing first
    races clients that read close-ok and EOF together (amqp091-go then reports a 501 "EOF")."""
    opened.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    opened.expect(commands.Connection.CloseOk)
    with pytest.raises(socket.timeout):
        opened.wait_closed(timeout=0.5)
