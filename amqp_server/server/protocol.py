"""``asyncio.Protocol`` ↔ ``core.Connection``: bytes in, one coalesced write per loop tick out.

The core calls ``on_output`` the first time it queues something in a tick; we
schedule one flush with ``call_soon``, so a read that produces many replies and
deliveries costs one ``transport.write``.  Heartbeats use one timer handle per
connection, re-armed from ``Connection.next_deadline()``.  ``pause_writing`` /
``resume_writing`` (the transport's buffer limits) stop and restart deliveries
to this connection, so a slow consumer cannot grow our memory.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.broker import Broker
from ..core.connection import Connection

log = logging.getLogger("amqp_server.protocol")


class AMQPProtocol(asyncio.Protocol):
    def __init__(self, broker: Broker, connections: set["AMQPProtocol"]) -> None:
        self._broker = broker
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.connection: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.connection = Connection(self._broker, peer=f"{peer[0]}:{peer[1]}" if peer else "?",
                                     on_output=self._schedule_flush)
        self._connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        connection.receive_data(data)
        if connection.is_publisher and self._broker.flow.blocked and not connection.blocked:
            self.apply_flow(True)

    def apply_flow(self, blocked: bool) -> None:
        """Memory alarm: stop reading from a publishing connection until it clears."""
        connection = self.connection
        connection.apply_flow(blocked)
        if self._transport is None or self._transport.is_closing():
            return
        if connection.blocked:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self.connection is not None:
            self.connection.on_output = None
            self.connection.connection_lost()

    def pause_writing(self) -> None:
        self.connection.set_writable(False)

    def resume_writing(self) -> None:
        self.connection.set_writable(True)

    def close(self, reply_text: str) -> None:
        """Broker shutdown: CONNECTION_FORCED, then flush and close."""
        self.connection.force_close(reply_text)
        self._flush()

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
