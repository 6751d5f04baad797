"""The live message tail: watch what passes through a vhost, an exchange or a queue, without consuming it.

A ``Watcher`` is a tap on the vhost's tracing hook (``core.tracing``), like the firehose:
it exists only while someone watches (no watcher, no cost), and it never blocks the broker —
it keeps at most ``limit`` records (and ``limit_bytes``), dropping (and counting) the oldest
when its reader falls behind, and each record holds a 2 KiB preview of the body, not the message.  The reader (the
management API's ``/api/tail``) is woken by ``notify`` and turns the records into JSON lines
with ``take``, off the hot path: the properties are decoded there, not when the message passes.

``TailOperations`` is the part of the broker's public operations that starts and stops
watchers (``core.operations.BrokerOperations`` holds one as ``tail``).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import AMQPError, not_found
from .broker import Broker
from .info import properties_info
from .tracing import Passing
from .vhost import VirtualHost

PREVIEW_BYTES = 2048  # of each body: what a line shows
WATCHER_LIMIT = 1000  # records a watcher holds for its reader (each at most ~2 KiB + its content header)
WATCHER_LIMIT_BYTES = 4 * 1024 * 1024  # and bytes: a few records with big headers must not pin megabytes each

# kind, exchange, routing keys, queue, content header, body preview, body size, ms since the epoch, routed, redelivered
Record = tuple[str, str, list[str], str | None, bytes, bytes, int, float, list[str], bool]


class Watcher:
    """What one tail reader watches, and the bounded queue of what passed since it last looked.

    ``exchange`` / ``queue``: only messages published to that exchange (and their deliveries), or
    published to and delivered from that queue; neither: the whole vhost.  ``may_read(kind, name)``,
    if given, hides what the reader may not read: publishes to exchanges, deliveries from queues.
    """

    def __init__(
        self,
        vhost: VirtualHost,
        exchange: str | None = None,
        queue: str | None = None,
        may_read: Callable[[str, str], bool] | None = None,
        notify: Callable[[], None] | None = None,
        limit: int = WATCHER_LIMIT,
        limit_bytes: int = WATCHER_LIMIT_BYTES,
    ) -> None:
        self.vhost = vhost
        self.exchange = exchange
        self.queue = queue
        self.may_read = may_read
        self.notify = notify
        self.records: deque[Record] = deque()
        self.limit = limit
        self.limit_bytes = limit_bytes  # of previews and content headers (a header may be as big as a frame)
        self.held = 0  # bytes of previews and content headers in ``records``
        self.dropped = 0  # records dropped since the last ``take``

    def __call__(self, passing: Passing) -> None:
        if not self._wants(passing):
            return
        message = passing.message
        preview = message.body[:PREVIEW_BYTES]
        records = self.records
        records.append(
            (
                passing.kind,
                message.exchange,
                [message.routing_key, *message.extra_routing_keys],
                passing.queue,
                message.header,
                preview,
                len(message.body),
                self.vhost.wall_clock() * 1000.0,
                passing.routed,
                passing.redelivered,
            )
        )
        self.held += len(preview) + len(message.header)
        while len(records) > self.limit or self.held > self.limit_bytes:  # the reader is behind: drop the oldest
            oldest = records.popleft()
            self.held -= len(oldest[4]) + len(oldest[5])
            self.dropped += 1
        if self.notify is not None:
            self.notify()

    def _wants(self, passing: Passing) -> bool:
        deliver = passing.kind == "deliver"
        if self.exchange is not None and passing.message.exchange != self.exchange:
            return False
        if self.queue is not None and (passing.queue != self.queue if deliver else self.queue not in passing.routed):
            return False
        if self.may_read is None:
            return True
        if deliver:
            return self.may_read("queue", passing.queue or "")
        return self.may_read("exchange", passing.message.exchange or "amq.default")

    def take(self) -> list[dict[str, Any]]:
        """What passed since the last call, oldest first, as the tail's JSON objects; first a ``dropped`` one
        if the reader fell behind."""
        lines: list[dict[str, Any]] = []
        if self.dropped:
            lines.append({"kind": "dropped", "count": self.dropped})
            self.dropped = 0
        records = self.records
        while records:
            lines.append(line(records.popleft()))
        self.held = 0
        return lines


def line(record: Record) -> dict[str, Any]:
    """One record as the tail shows it: properties as ``/api/queues/{vhost}/{queue}/get`` shows them."""
    kind, exchange, routing_keys, queue, header, preview, size, timestamp, routed, redelivered = record
    payload, encoding = _preview(preview, size)
    found: dict[str, Any] = {
        "kind": kind,
        "exchange": exchange,
        "routing_keys": routing_keys,
        "queue": queue,
        "properties": properties_info(header),
        "payload": payload,
        "payload_encoding": encoding,
        "payload_bytes": size,
        "timestamp": timestamp,
    }
    if kind == "publish":
        found["routed_queues"] = routed
    else:
        found["redelivered"] = redelivered
    return found


def _preview(preview: bytes, size: int) -> tuple[str, str]:
    """The preview as text if it is UTF-8 (a cut may split the last character: up to 3 bytes are given up for
    it), else base64."""
    cuts = range(4) if size > len(preview) else range(1)
    for cut in cuts:
        try:
            return preview[: len(preview) - cut].decode("utf-8"), "string"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(preview).decode(), "base64"


class TailOperations:
    """Start and stop live-tail watchers of one broker's vhosts."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def watch(
        self,
        vhost: str,
        exchange: str | None = None,
        queue: str | None = None,
        reader: str | None = None,
        notify: Callable[[], None] | None = None,
    ) -> Watcher:
        """A watcher tapping ``vhost`` from now on (``unwatch`` it when done).

        ``reader``: the user watching, whose read permission decides what it sees: the named
        exchange or queue must be readable (else the 403 ``AMQPError``; then it sees all that
        passes through it, as a queue it bound there or its consumer would), and on a whole vhost
        only what it may read is shown (publishes to readable exchanges, deliveries from readable
        queues); None: everything (monitoring and administrator users).
        Raises the 404 ``AMQPError`` for a vhost, exchange or queue that does not exist.
        """
        host = self._broker.vhosts.get(vhost)
        if host is None:
            raise not_found("vhost", vhost, vhost)
        if exchange is not None and exchange not in host.exchanges:
            raise not_found("exchange", exchange, vhost)
        if queue is not None and queue not in host.queues:
            raise not_found("queue", queue, vhost)
        may_read = None
        if reader is not None:
            if exchange is None and queue is None:  # a named object is checked once, here
                may_read = self._reader_check(reader, vhost)
            access = self._broker.access
            if exchange is not None:
                access.check(reader, vhost, "read", "exchange", exchange or "amq.default")
            if queue is not None:
                access.check(reader, vhost, "read", "queue", queue)
        watcher = Watcher(host, exchange, queue, may_read, notify)
        host.taps.append(watcher)
        return watcher

    def _reader_check(self, reader: str, vhost: str) -> Callable[[str, str], bool]:
        def may_read(kind: str, name: str) -> bool:
            try:
                self._broker.access.check(reader, vhost, "read", kind, name)  # the access in effect now
            except AMQPError:
                return False
            return True

        return may_read

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in watcher.vhost.taps:
            watcher.vhost.taps.remove(watcher)

    def watching(self, watcher: Watcher) -> bool:
        """False once the watcher's vhost is gone (deleted): its reader should stop."""
        return self._broker.vhosts.get(watcher.vhost.name) is watcher.vhost
