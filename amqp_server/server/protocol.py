"""``asyncio.Protocol`` ↔ ``core.Connection``: bytes in, one coalesced write per loop tick out.

The core calls ``on_output`` the first time it queues something in a tick; we
schedule one flush with ``call_soon``, so a read that produces many replies and
deliveries costs one ``transport.write``.  Heartbeats use one timer handle per
connection, re-armed from ``Connection.next_deadline()``.  ``pause_writing`` /
``resume_writing`` (the transport's buffer limits) stop and restart deliveries
to this connection, so a slow consumer cannot grow our memory.

This layer also enforces ``max_connections`` (``ServerConnection``) and logs each
connection's life: accepted (peer), opened (user, vhost) and closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..core.broker import Broker
from ..core.connection import Connection, State
from ..errors import NOT_ALLOWED, node_connection_limit

log = logging.getLogger("amqp_server.protocol")

CONNECTION_OPEN_PREFIX = b"\x00\x0a\x00\x28"  # class 10, method 40: a connection.open payload starts so


class Connections:
    """Every connection of the broker (both listeners), and how many are open (past connection.open)."""

    def __init__(self, max_connections: int = 0) -> None:
        self.max_connections = max_connections  # 0: unlimited
        self.protocols: set[AMQPProtocol] = set()
        self.opened = 0

    def full(self) -> bool:
        return 0 < self.max_connections <= self.opened


class ServerConnection(Connection):
    """``core.Connection`` plus the node connection limit, checked when connection.open arrives.

    As RabbitMQ's ``connection_max``: the handshake proceeds, and a
    connection.open that would exceed the limit is answered with
    connection.close 530 NOT_ALLOWED (class 10, method 40).
    """

    def __init__(self, broker: Broker, peer: str, on_output: Callable[[], None], connections: Connections) -> None:
        super().__init__(broker, peer=peer, on_output=on_output)
        self._node_connections = connections

    def _handle_method0(self, payload: bytes) -> None:
        if (
            self.state is State.AWAITING_OPEN
            and payload.startswith(CONNECTION_OPEN_PREFIX)
            and self._node_connections.full()
        ):
            limit = self._node_connections.max_connections
            log.warning(
                "refusing connection from %s: node connection limit (%d) is reached",
                self.peer,
                limit,
                extra={"peer": self.peer, "user": self.username, "reply_code": NOT_ALLOWED},
            )
            raise node_connection_limit(limit)
        super()._handle_method0(payload)


class AMQPProtocol(asyncio.Protocol):
    def __init__(self, broker: Broker, connections: Connections, tls: bool = False) -> None:
        self._broker = broker
        self._connections = connections
        self._tls = tls
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._opened = False
        self._accepted_at = time.monotonic()
        # set by connection_made, which asyncio calls before any other callback: typed as always there
        self.connection: Connection = None  # type: ignore[assignment]
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # no isinstance(asyncio.Transport) check: uvloop's TCPTransport is not a subclass of it
        self._transport = transport  # type: ignore[assignment]
        address = transport.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if address else "?"
        self.connection = ServerConnection(self._broker, peer, self._schedule_flush, self._connections)
        local = transport.get_extra_info("sockname")
        self.connection.local_address = f"{local[0]}:{local[1]}" if local else "?"
        self.connection.tls = self._tls
        self._connections.protocols.add(self)
        log.info(
            "accepted %s connection from %s",
            "AMQPS" if self._tls else "AMQP",
            peer,
            extra={"peer": peer, "tls": self._tls},
        )
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        connection.receive_data(data)
        if not self._opened and connection.state is State.OPEN:
            self._on_opened()
        if connection.is_publisher and self._broker.alarms.blocked and not connection.blocked:
            self.apply_flow()

    def apply_flow(self) -> None:
        """Resource alarms changed: stop reading from a publishing connection until none remains."""
        connection = self.connection
        connection.apply_flow(self._broker.alarms.reason)
        if self._transport is None or self._transport.is_closing():
            return
        if connection.blocked:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close our side too

    def _on_opened(self) -> None:
        self._opened = True
        self._connections.opened += 1
        connection = self.connection
        log.info(
            "connection from %s: user '%s' authenticated and granted access to vhost '%s'",
            connection.peer,
            connection.username,
            connection.vhost.name,
            extra={"peer": connection.peer, "user": connection.username, "vhost": connection.vhost.name},
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.protocols.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        connection = self.connection
        if connection is not None:
            connection.on_output = None
            connection.connection_lost()
            duration = time.monotonic() - self._accepted_at
            if self._opened:
                self._connections.opened -= 1
                log.info(
                    "closed connection from %s (user '%s', vhost '%s', duration %.1f s)",
                    connection.peer,
                    connection.username,
                    connection.vhost.name,
                    duration,
                    extra={
                        "peer": connection.peer,
                        "user": connection.username,
                        "vhost": connection.vhost.name,
                        "duration": round(duration, 3),
                    },
                )
            else:
                log.info(
                    "closed connection from %s before it was opened (duration %.1f s)",
                    connection.peer,
                    duration,
                    extra={"peer": connection.peer, "duration": round(duration, 3)},
                )
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.connection.set_writable(False)

    def resume_writing(self) -> None:
        self.connection.set_writable(True)

    def close(self, reply_text: str) -> None:
        """Broker shutdown: CONNECTION_FORCED, then flush and close."""
        self.connection.force_close(reply_text)
        self._flush()

    def abort(self) -> None:
        """Drop the socket now, whatever is still buffered (a client too slow to take its close)."""
        if self._transport is not None:
            self._transport.abort()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        data = self.connection.data_to_send()
        if data:
            transport.write(data)
        if self.connection.should_close:
            transport.close()
        else:
            self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.connection.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.connection.handle_timer(self._loop.time())
        self._flush()
