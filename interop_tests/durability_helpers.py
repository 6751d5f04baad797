"""Raw AMQP helpers for the durability tests: exact bytes in, exact bytes out.

``AmqpSocket`` is a small blocking client that keeps the content header and
body of every delivery as the bytes on the wire, so a test can check that a
message recovered from disk is byte-for-byte the message that was published.
``ConfirmPublisher`` pipelines publishes under publisher confirms in a thread
(a window of unconfirmed messages, not one round trip per message) and records
which were confirmed before the broker died.  Every socket wait has a timeout.
"""

from __future__ import annotations

import datetime
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_MAX = 131072
FRAME_HEAD = struct.Struct(">BHI")
FRAME_END = b"\xce"
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8


class BrokerGone(Exception):
    """The socket died (EOF, reset, broken pipe): the broker process is gone."""


@dataclass(frozen=True)
class Sent:
    """A message as published: its content header payload and body, exactly as sent."""

    key: str  # its message-id property, unique per test
    header: bytes  # content header frame payload (class, weight, body size, flags, properties)
    body: bytes

    def publish_frames(self, channel: int, exchange: str, routing_key: str, frame_max: int = FRAME_MAX) -> bytes:
        parts = [
            pamqp_frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), channel),
            _frame(HEADER, channel, self.header),
        ]
        step = frame_max - 8
        parts.extend(_frame(BODY, channel, self.body[start : start + step]) for start in range(0, len(self.body), step))
        return b"".join(parts)


@dataclass(frozen=True)
class Delivered:
    key: str | None
    delivery_tag: int
    redelivered: bool
    header: bytes
    body: bytes

    def is_copy_of(self, sent: Sent) -> bool:
        """Content header and body byte-for-byte as published."""
        return (self.header, self.body) == (sent.header, sent.body)


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(frame_type, channel, len(payload)) + payload + FRAME_END


def describe(method: Any) -> str:
    """A method frame with its arguments, for assertion messages."""
    return f"{method.name}{dict(method)}"


def make_message(key: str, body: bytes, **properties: Any) -> Sent:
    """A message whose message-id is ``key``; other properties as pamqp's ``Basic.Properties`` names them."""
    properties.setdefault("delivery_mode", 2)
    content = pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties(message_id=key, **properties))
    return Sent(key, pamqp_frame.marshal(content, 0)[7:-1], body)


def message_key(header_payload: bytes) -> str | None:
    _, _, content = pamqp_frame.unmarshal(_frame(HEADER, 0, header_payload))
    assert isinstance(content, pamqp_header.ContentHeader)
    return content.properties.message_id


def varied_messages(rng: random.Random, prefix: str, count: int, big_every: int = 97) -> list[Sent]:
    """``count`` persistent messages with varied properties and body sizes.

    Sizes include 0 and 1 byte, exactly one full body frame, and bodies larger
    than frame_max (several body frames); the rest are small.
    """
    special = [0, 1, FRAME_MAX - 8, FRAME_MAX + 1000, 3 * FRAME_MAX + 17]
    messages = []
    for index in range(count):
        if index < len(special):
            size = special[index]
        elif index % big_every == 0:
            size = rng.randrange(FRAME_MAX, 2 * FRAME_MAX)
        else:
            size = rng.randrange(0, 3000)
        messages.append(make_message(f"{prefix}-{index}", rng.randbytes(size), **_varied_properties(rng, index)))
    return messages


def _varied_properties(rng: random.Random, index: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "headers": {
            "index": index,
            "text": f"é ☃ {index}",
            "flag": index % 2 == 0,
            "ratio": index / 7,
            "big": -(2**40) - index,
            "nested": {"list": [1, "two", None, {"deep": True}]},
            "raw": bytearray([index % 256, 0, 255]),
        },
    }
    if index % 3:
        properties["content_type"] = rng.choice(["application/json", "text/plain", "application/octet-stream"])
        properties["content_encoding"] = rng.choice(["utf-8", "gzip"])
    if index % 4:
        properties["correlation_id"] = f"corr-{rng.random()}"
        properties["reply_to"] = f"replies-{index % 3}"
    if index % 5:
        properties["priority"] = index % 10
        properties["timestamp"] = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=index)
        properties["message_type"] = "durability-test"
        properties["app_id"] = "interop-tests"
    if index % 7 == 1:
        properties["expiration"] = "86400000"
    if index % 11 == 2:
        properties["user_id"] = "guest"
    return properties


class AmqpSocket:
    """A blocking AMQP 0-9-1 client on one socket; every read has a deadline."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = bytearray()
        self._pos = 0
        self._confirm_opened = False
        self._published = 0  # on the confirm channel

    def __enter__(self) -> AmqpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes | bytearray) -> None:
        try:
            self.sock.sendall(data)
        except (ConnectionError, BrokenPipeError) as error:
            raise BrokerGone(str(error)) from error

    def send_method(self, channel: int, method: Any) -> None:
        self.send(pamqp_frame.marshal(method, channel))

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the broker in time")
        if self._pos > 1 << 20:
            del self._buffer[: self._pos]
            self._pos = 0
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 18)
        except ConnectionError as error:
            raise BrokerGone(str(error)) from error
        if not data:
            raise BrokerGone("EOF")
        self._buffer += data

    def read_frame(self, timeout: float | None = None) -> tuple[int, int, bytes]:
        """``(frame type, channel, payload)`` of the next frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            available = len(self._buffer) - self._pos
            if available >= 7:
                frame_type, channel, size = FRAME_HEAD.unpack_from(self._buffer, self._pos)
                if available >= size + 8:
                    start = self._pos + 7
                    payload = bytes(self._buffer[start : start + size])
                    assert self._buffer[start + size] == 0xCE, "bad frame end"
                    self._pos = start + size + 1
                    return frame_type, channel, payload
            self._fill(deadline)

    def read_method(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next method frame, decoded by pamqp (a connection.close from the broker fails the test)."""
        while True:
            frame_type, channel, payload = self.read_frame(timeout)
            if frame_type == HEARTBEAT:
                continue
            assert frame_type == METHOD, f"expected a method frame, got type {frame_type}"
            method = pamqp_frame.unmarshal(_frame(METHOD, channel, payload))[2]
            assert not isinstance(method, commands.Connection.Close), f"the broker closed: {describe(method)}"
            return channel, method

    def expect(self, channel: int, method_type: type, timeout: float | None = None) -> Any:
        got_channel, method = self.read_method(timeout)
        assert isinstance(method, method_type) and got_channel == channel, (
            f"expected {method_type.__name__} on channel {channel}, got {describe(method)} on {got_channel}"
        )
        return method

    def call(self, channel: int, method: Any, reply_type: type, timeout: float | None = None) -> Any:
        self.send_method(channel, method)
        return self.expect(channel, reply_type, timeout)

    def handshake(self) -> AmqpSocket:
        self.send(PROTOCOL_HEADER)
        self.expect(0, commands.Connection.Start)
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "product": "durability-tests",
                    "capabilities": {"publisher_confirms": True, "basic.nack": True},
                },
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
        )
        tune = self.expect(0, commands.Connection.Tune)
        self.send_method(0, commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=FRAME_MAX, heartbeat=0))
        self.call(0, commands.Connection.Open(virtual_host="/"), commands.Connection.OpenOk)
        self.call(1, commands.Channel.Open(), commands.Channel.OpenOk)
        return self

    def declare_queue(self, queue: str, passive: bool = False) -> commands.Queue.DeclareOk:
        """Declare a durable queue (or check it exists, with its message count)."""
        return self.call(
            1, commands.Queue.Declare(queue=queue, passive=passive, durable=True), commands.Queue.DeclareOk
        )

    def publish_confirmed(self, messages: Iterable[Sent], routing_key: str, exchange: str = "") -> None:
        """Publish on a confirm channel (channel 2, opened on first use) and wait until the broker acks all."""
        if not self._confirm_opened:
            self.call(2, commands.Channel.Open(), commands.Channel.OpenOk)
            self.call(2, commands.Confirm.Select(), commands.Confirm.SelectOk)
            self._confirm_opened = True
        messages = list(messages)
        self.send(b"".join(message.publish_frames(2, exchange, routing_key) for message in messages))
        self._published += len(messages)
        acked = 0
        while acked < self._published:
            _, method = self.read_method()
            assert isinstance(method, commands.Basic.Ack), f"expected basic.ack, got {describe(method)}"
            acked = method.delivery_tag

    def consume_all(self, queue: str, timeout: float = 10.0) -> list[Delivered]:
        """Every message in ``queue`` (as counted by a passive declare), delivered unacked to a consumer
        that is cancelled once they are in (they stay unacked: ack them, or close to requeue them)."""
        count = self.declare_queue(queue, passive=True).message_count
        self.call(1, commands.Basic.Consume(queue=queue, consumer_tag="drain"), commands.Basic.ConsumeOk)
        deadline = time.monotonic() + timeout
        deliveries = []
        while len(deliveries) < count:
            deliveries.append(self._read_delivery(deadline - time.monotonic()))
        self.call(1, commands.Basic.Cancel(consumer_tag="drain"), commands.Basic.CancelOk)
        return deliveries

    def _read_delivery(self, timeout: float) -> Delivered:
        _, deliver = self.read_method(timeout)
        assert isinstance(deliver, commands.Basic.Deliver), f"expected basic.deliver, got {describe(deliver)}"
        frame_type, _, header = self.read_frame(timeout)
        assert frame_type == HEADER, f"expected a content header, got frame type {frame_type}"
        size = struct.unpack_from(">Q", header, 4)[0]
        body = bytearray()
        while len(body) < size:
            frame_type, _, chunk = self.read_frame(timeout)
            assert frame_type == BODY, f"expected a body frame, got frame type {frame_type}"
            body += chunk
        assert len(body) == size, f"body of {len(body)} bytes, header said {size}"
        return Delivered(message_key(header), deliver.delivery_tag, deliver.redelivered, header, bytes(body))

    def ack(self, delivery_tags: Iterable[int]) -> None:
        self.send(b"".join(pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=tag), 1) for tag in delivery_tags))

    def close(self) -> None:
        """A clean connection.close (everything sent before it is processed first; unacked are requeued)."""
        self.call(
            0,
            commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
            commands.Connection.CloseOk,
        )
        self.sock.close()


class ConfirmPublisher(threading.Thread):
    """Publishes ``messages`` to the default exchange under publisher confirms until done or the broker dies.

    Keeps up to ``window`` messages unconfirmed.  ``confirmed`` / ``nacked``
    hold the keys the broker settled; ``error`` why publishing stopped early.
    """

    def __init__(self, port: int, routing_key: str, messages: list[Sent], window: int = 128) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.routing_key = routing_key
        self.messages = messages
        self.window = window
        self.confirmed: list[str] = []
        self.nacked: list[str] = []
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with AmqpSocket(self.port, timeout=10.0) as conn:
                conn.handshake()
                conn.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
                self._publish(conn)
                conn.close()
        except BaseException as error:  # the test inspects it: BrokerGone after a kill, anything else is a failure
            self.error = error

    def _publish(self, conn: AmqpSocket) -> None:
        pending: dict[int, str] = {}  # delivery tag -> key, in tag order
        while self.sent < len(self.messages) or pending:
            batch = bytearray()
            while self.sent < len(self.messages) and len(pending) < self.window:
                message = self.messages[self.sent]
                batch += message.publish_frames(1, "", self.routing_key)
                self.sent += 1
                pending[self.sent] = message.key
            if batch:
                conn.send(batch)
            _, method = conn.read_method()
            if isinstance(method, (commands.Basic.Ack, commands.Basic.Nack)):
                settled = self.confirmed if isinstance(method, commands.Basic.Ack) else self.nacked
                tags = (
                    [tag for tag in pending if tag <= method.delivery_tag] if method.multiple else [method.delivery_tag]
                )
                for tag in tags:
                    settled.append(pending.pop(tag))
            else:
                raise AssertionError(f"unexpected {describe(method)} on a confirm channel")
