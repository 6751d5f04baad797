"""Memory flow control: block publishers while queued messages hold too much memory.

Like RabbitMQ's memory alarm: when the message data held in queues passes the
high watermark, connections that publish get ``connection.blocked`` (if they
advertised the capability) and the I/O layer stops reading from them; below
the low watermark they get ``connection.unblocked`` and reading resumes.
Consumers keep working, which is what brings the level down.  The level is an
accounting of message sizes (body, header and a per-message overhead for the
Python objects), so it is deterministic and falls as messages leave.
"""

from __future__ import annotations

from typing import Callable

MESSAGE_OVERHEAD = 400  # bytes of Python objects per queued message (Entry, Message, deque slot), measured


class MemoryFlow:
    def __init__(self, high_watermark: int | None = None) -> None:
        self.high_watermark = high_watermark  # None: never block
        self.queued_bytes = 0
        self.blocked = False
        self.on_change: Callable[[bool], None] | None = None

    @property
    def low_watermark(self) -> int:
        return int(self.high_watermark * 0.8) if self.high_watermark is not None else 0

    def add(self, size: int) -> None:
        self.queued_bytes += size + MESSAGE_OVERHEAD
        if not self.blocked and self.high_watermark is not None and self.queued_bytes > self.high_watermark:
            self._set(True)

    def remove(self, size: int) -> None:
        self.queued_bytes -= size + MESSAGE_OVERHEAD
        if self.blocked and self.queued_bytes <= self.low_watermark:
            self._set(False)

    def _set(self, blocked: bool) -> None:
        self.blocked = blocked
        if self.on_change is not None:
            self.on_change(blocked)
