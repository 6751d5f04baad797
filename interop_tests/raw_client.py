"""A tiny raw-socket AMQP 0-9-1 client for sending bad input to a broker process.

Frames are encoded and decoded with pamqp (independently of the broker's own
codecs); ``send_frame`` can forge any header, size or end byte.  Every socket
operation has a timeout, so a broker that never answers fails the test instead
of hanging it.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.base import Frame as PamqpMethod

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE
_HEADER = struct.Struct(">BHI")

CLIENT_PROPERTIES = {
    "product": "raw-client",
    "capabilities": {
        "authentication_failure_close": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "publisher_confirms": True,
    },
}


class ServerClosed(Exception):
    """The broker closed the socket (EOF or reset) while we waited for data."""


def method_payload(method: PamqpMethod) -> bytes:
    """The payload (class id, method id, arguments) of ``method``'s frame."""
    return pamqp_frame.marshal(method, 0)[7:-1]


class RawClient:
    def __init__(self, host: str, port: int, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------ sending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(
        self, frame_type: int, channel: int, payload: bytes, end: int = FRAME_END, size: int | None = None
    ) -> None:
        """Send one frame; ``end`` and ``size`` may lie about the frame."""
        self.send(_HEADER.pack(frame_type, channel, len(payload) if size is None else size) + payload + bytes([end]))

    def send_method(self, channel: int, method: PamqpMethod) -> None:
        self.send(pamqp_frame.marshal(method, channel))

    def send_marshalled(self, channel: int, value: Any) -> None:
        """Send a pamqp content header, body or heartbeat."""
        self.send(pamqp_frame.marshal(value, channel))

    # ------------------------------------------------------------ receiving

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the broker in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError as error:
            raise ServerClosed("connection reset") from error
        if not data:
            raise ServerClosed("EOF")
        self._buffer += data

    def recv_exactly(self, count: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buffer) < count:
            self._fill(deadline)
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_frame(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next ``(channel, pamqp frame)``; raises ``ServerClosed`` or ``socket.timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self._buffer) >= 7:
                size = _HEADER.unpack_from(self._buffer)[2]
                if len(self._buffer) >= 7 + size + 1:
                    consumed, channel, value = pamqp_frame.unmarshal(self._buffer)
                    self._buffer = self._buffer[consumed:]
                    return channel, value
            self._fill(deadline)

    def expect(self, method_type: type, channel: int = 0, timeout: float | None = None) -> Any:
        """Read frames, skipping heartbeats, until one arrives; it must be ``method_type`` on ``channel``."""
        while True:
            got_channel, value = self.read_frame(timeout)
            if getattr(value, "name", None) == "Heartbeat":
                continue
            assert isinstance(value, method_type) and got_channel == channel, (
                f"expected {method_type.__name__} on channel {channel}, got {value!r} on channel {got_channel}"
            )
            return value

    def expect_connection_close(self, timeout: float | None = None) -> commands.Connection.Close:
        """The broker's ``connection.close``; answered with close-ok."""
        close = self.expect(commands.Connection.Close, 0, timeout)
        self.send_method(0, commands.Connection.CloseOk())
        return close

    def wait_closed(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Read until the broker closes the socket; return the frames seen first.

        Raises ``socket.timeout`` if the socket is still open when ``timeout`` runs out.
        """
        frames = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frames.append(self.read_frame(deadline - time.monotonic()))
            except ServerClosed:
                return frames

    def read_raw_until_closed(self, timeout: float | None = None) -> bytes:
        """Every byte the broker sends until it closes the socket."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline)
            except ServerClosed:
                data, self._buffer = self._buffer, b""
                return data

    # ------------------------------------------------------------ handshake

    def start(self) -> commands.Connection.Start:
        self.send(PROTOCOL_HEADER)
        return self.expect(commands.Connection.Start)

    def start_ok(
        self,
        username: str = "guest",
        password: str = "guest",
        mechanism: str = "PLAIN",
        client_properties: dict | None = None,
    ) -> None:
        response = f"\0{username}\0{password}"
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties=CLIENT_PROPERTIES if client_properties is None else client_properties,
                mechanism=mechanism,
                response=response,
            ),
        )

    def handshake(
        self, vhost: str = "/", frame_max: int = 131072, channel_max: int = 2047, heartbeat: int = 0
    ) -> RawClient:
        """Protocol header through ``connection.open-ok``."""
        self.start()
        self.start_ok()
        self.expect(commands.Connection.Tune)
        self.send_method(
            0, commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat)
        )
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        self.expect(commands.Connection.OpenOk)
        return self

    def open_channel(self, channel: int = 1) -> int:
        self.send_method(channel, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk, channel)
        return channel
