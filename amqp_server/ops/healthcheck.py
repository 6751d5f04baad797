"""``python -m amqp_server.ops.healthcheck``: exit 0 if a broker completes a real AMQP handshake, else 1.

It connects, sends the protocol header, logs in with PLAIN, tunes, opens the
virtual host and closes the connection cleanly — so "healthy" means the broker
accepts logins and serves the vhost, not merely that the port is open.  Used by
the Docker image's ``HEALTHCHECK``; works against RabbitMQ too.

The user and password come from ``--user``/``--password`` or the environment
variables ``AMQP_SERVER_HEALTHCHECK_USER``/``AMQP_SERVER_HEALTHCHECK_PASSWORD``
(default ``guest``/``guest``, which may log in from loopback only).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time
from typing import Any

from pamqp import commands, frame

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_HEADER = struct.Struct(">BHI")
# authentication_failure_close: a refused login is answered with 403 (a reason), not a dropped socket
CLIENT_PROPERTIES = {"product": "amqp-server healthcheck", "capabilities": {"authentication_failure_close": True}}


class HealthCheckFailed(Exception):
    pass


class _Client:
    """Just enough of a client for the handshake: every read is bounded by one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def send(self, method: Any) -> None:
        self.sock.sendall(frame.marshal(method, 0))

    def expect(self, method_type: type) -> Any:
        """The next method on channel 0 (heartbeats skipped); a connection.close or EOF fails the check."""
        while True:
            received = self._read_frame()
            if isinstance(received, commands.Connection.Close):
                raise HealthCheckFailed(f"broker closed the connection: {received.reply_code} {received.reply_text}")
            if isinstance(received, method_type):
                return received
            if getattr(received, "name", None) != "Heartbeat":
                raise HealthCheckFailed(f"expected {method_type.__name__}, got {type(received).__name__}")

    def _read_frame(self) -> Any:
        while True:
            if len(self.buffer) >= FRAME_HEADER.size:
                size = FRAME_HEADER.unpack_from(self.buffer)[2]
                if len(self.buffer) >= FRAME_HEADER.size + size + 1:
                    consumed, _, value = frame.unmarshal(self.buffer)
                    self.buffer = self.buffer[consumed:]
                    return value
            if self.buffer.startswith(b"AMQP") and len(self.buffer) >= 8:
                raise HealthCheckFailed(f"broker refused the protocol version, it speaks {self.buffer[:8]!r}")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise HealthCheckFailed("timed out waiting for the broker")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise HealthCheckFailed("broker closed the socket")
            self.buffer += data


def check(host: str, port: int, user: str, password: str, vhost: str = "/", timeout: float = 5.0) -> None:
    """Handshake, open ``vhost``, close; raises ``HealthCheckFailed`` or ``OSError`` if anything goes wrong."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        client = _Client(sock, deadline)
        sock.sendall(PROTOCOL_HEADER)
        start = client.expect(commands.Connection.Start)
        if "PLAIN" not in start.mechanisms.split():
            raise HealthCheckFailed(f"broker does not offer PLAIN (offers {start.mechanisms})")
        client.send(
            commands.Connection.StartOk(
                client_properties=CLIENT_PROPERTIES, mechanism="PLAIN", response=f"\0{user}\0{password}"
            )
        )
        tune = client.expect(commands.Connection.Tune)
        client.send(commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        client.send(commands.Connection.Open(virtual_host=vhost))
        client.expect(commands.Connection.OpenOk)
        client.send(commands.Connection.Close(reply_code=200, reply_text="healthcheck", class_id=0, method_id=0))
        client.expect(commands.Connection.CloseOk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m amqp_server.ops.healthcheck",
        description="Exit 0 if an AMQP 0-9-1 broker completes a handshake, else 1.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="broker address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="broker port (default 5672)")
    parser.add_argument(
        "--user",
        default=os.environ.get("AMQP_SERVER_HEALTHCHECK_USER", "guest"),
        help="user to log in as (default guest) [AMQP_SERVER_HEALTHCHECK_USER]",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("AMQP_SERVER_HEALTHCHECK_PASSWORD", "guest"),
        help="its password (default guest) [AMQP_SERVER_HEALTHCHECK_PASSWORD]",
    )
    parser.add_argument("--vhost", default="/", help="virtual host to open (default /)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for the whole check (default 5)")
    args = parser.parse_args(argv)
    try:
        check(args.host, args.port, args.user, args.password, args.vhost, args.timeout)
    except (HealthCheckFailed, OSError) as error:
        print(f"unhealthy: {args.host}:{args.port}: {error or type(error).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
