"""Test helpers for the sans-IO core: build client frames, parse broker output, drive a Connection.

``Peer`` plays the client side of one ``core.Connection`` with no sockets: it
sends frames as bytes, and ``frames()`` decodes everything the broker queued
(via pamqp, independently of our own codecs).  ``FakeClock`` is the injected
time source, so heartbeats are tested without sleeping.
"""

from __future__ import annotations

from typing import Any

from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp.base import Frame as PamqpMethod

from amqp_server.core.broker import Broker
from amqp_server.core.connection import Connection

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def method(channel: int, value: PamqpMethod) -> bytes:
    return pamqp_frame.marshal(value, channel)


def content(
    channel: int, body: bytes, properties: commands.Basic.Properties | None = None, frame_max: int = 131072
) -> bytes:
    """A content header frame and body frames for ``body``."""
    out = [
        pamqp_frame.marshal(
            pamqp_header.ContentHeader(0, len(body), properties or commands.Basic.Properties()), channel
        )
    ]
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):
        out.append(pamqp_frame.marshal(pamqp_body.ContentBody(body[start : start + chunk]), channel))
    return b"".join(out)


def publish(
    channel: int,
    routing_key: str,
    body: bytes,
    exchange: str = "",
    mandatory: bool = False,
    properties: commands.Basic.Properties | None = None,
) -> bytes:
    return method(
        channel, commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
    ) + content(channel, body, properties)


def parse(data: bytes) -> list[tuple[int, Any]]:
    """Decode broker output into ``(channel, frame)`` pairs with pamqp."""
    frames = []
    while data:
        if data.startswith(b"AMQP"):
            frames.append((0, data[:8]))
            data = data[8:]
            continue
        consumed, channel, value = pamqp_frame.unmarshal(data)
        frames.append((channel, value))
        data = data[consumed:]
    return frames


def run_persister(broker: Broker) -> None:
    """What the server's persister does after a read: one store sync, then the held confirms and replies."""
    barrier = broker.sync_barrier
    while barrier.requested:
        snapshot = barrier.begin()
        broker.store.sync()
        barrier.end(snapshot, True)


class Peer:
    """The client end of one in-process ``Connection``; ``auto_sync`` runs the persister after each send."""

    def __init__(self, broker: Broker, peer: str = "127.0.0.1:5555", auto_sync: bool = True) -> None:
        self.broker = broker
        self.connection = Connection(broker, peer=peer)
        self.auto_sync = auto_sync

    def send(self, data: bytes) -> None:
        self.connection.receive_data(data)
        if self.auto_sync:
            run_persister(self.broker)

    def send_method(self, channel: int, value: PamqpMethod) -> None:
        self.send(method(channel, value))

    def frames(self) -> list[tuple[int, Any]]:
        return parse(self.connection.data_to_send())

    def methods(self) -> list[tuple[int, Any]]:
        """Only the method frames of ``frames()``."""
        return [(ch, f) for ch, f in self.frames() if isinstance(f, PamqpMethod)]

    def handshake(
        self, vhost: str = "/", heartbeat: int = 0, frame_max: int = 131072, capabilities: dict[str, Any] | None = None
    ) -> None:
        """Run the whole client handshake and drop the broker's replies."""
        self.send(PROTOCOL_HEADER)
        caps = {"authentication_failure_close": True, "consumer_cancel_notify": True, **(capabilities or {})}
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": caps}, mechanism="PLAIN", response="\0guest\0guest"
            ),
        )
        self.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=frame_max, heartbeat=heartbeat))
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        replies = self.methods()
        assert isinstance(replies[-1][1], commands.Connection.OpenOk), replies

    def drain(self, queue: str, channel: int = 1) -> list[bytes]:
        """Every message in ``queue``, taken with basic.get no-ack: their bodies, in order."""
        bodies = []
        while True:
            self.send_method(channel, commands.Basic.Get(queue=queue, no_ack=True))
            frames = self.frames()
            if any(isinstance(value, commands.Basic.GetEmpty) for _, value in frames):
                return bodies
            bodies.append(b"".join(value.value for _, value in frames if isinstance(value, pamqp_body.ContentBody)))

    def open_channel(self, channel: int = 1) -> None:
        self.send_method(channel, commands.Channel.Open())
        assert isinstance(self.methods()[-1][1], commands.Channel.OpenOk)


def open_peer(broker: Broker | None = None, **handshake: Any) -> Peer:
    """A connected peer with channel 1 open."""
    peer = Peer(broker or Broker(clock=FakeClock()))
    peer.handshake(**handshake)
    peer.open_channel(1)
    return peer
