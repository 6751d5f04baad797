"""A published message and its place in one queue.

A ``Message`` is shared by every queue it was routed to; its content header is
kept as the raw payload the publisher sent, so deliveries copy it byte-for-byte.
The few properties the broker acts on (persistence, priority, per-message TTL)
are peeked once, here.  An ``Entry`` is the message's place in one queue: its
per-queue id (queue order, also the store's message id), expiry time, and
delivery history.
"""

from __future__ import annotations

import logging
import re

from storage.api import MessageRecord

from ..wire.content import peek_properties
from ..wire.methods import shortstr

log = logging.getLogger("amqp_server.message")

_NO_PROPERTIES = bytes(14)  # a content header with no property flags: Message() takes the defaults


class Message:
    __slots__ = (
        "exchange",
        "routing_key",
        "header",
        "body",
        "persistent",
        "priority",
        "ttl",
        "extra_routing_keys",
        "exchange_shortstr",
        "routing_key_shortstr",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
        persistent: bool | None = None,
        exchange_shortstr: bytes | None = None,
        routing_key_shortstr: bytes | None = None,
    ) -> None:
        """Raises ValueError for a malformed property list or an ``expiration`` that is not a number.

        ``exchange_shortstr`` / ``routing_key_shortstr``: the names already encoded (a publish has them).
        """
        self.exchange = exchange
        self.routing_key = routing_key
        self.header = header
        self.body = body
        self.extra_routing_keys: tuple[str, ...] = ()  # CC keys, for dead-lettering
        # encoded once here (or taken from the publish) instead of once per delivery
        self.exchange_shortstr = exchange_shortstr if exchange_shortstr is not None else shortstr(exchange)
        self.routing_key_shortstr = routing_key_shortstr if routing_key_shortstr is not None else shortstr(routing_key)
        # Flag word (bytes 12-13) without delivery_mode, priority, expiration or a field before them:
        # the defaults, without a call to peek them. measured: Message() 0.54 → 0.44 µs (timeit)
        if len(header) >= 14 and not header[12] & 0x1F and not header[13] & 0x80:
            self.priority = 0
            self.ttl = None
            self.persistent = False if persistent is None else persistent
            return
        try:
            delivery_mode, self.priority, expiration = peek_properties(header)
        except (IndexError, ValueError) as error:
            raise ValueError(f"malformed content header properties: {error}") from None
        self.persistent = delivery_mode == 2 if persistent is None else persistent
        self.ttl = _parse_expiration(expiration) if expiration is not None else None

    def to_record(self, expires_at: float | None = None) -> MessageRecord:
        """``expires_at``: its expiry in the queue it is stored for, in wall-clock seconds."""
        return MessageRecord(self.exchange, self.routing_key, self.header, self.body, expires_at)

    @classmethod
    def from_record(cls, record: MessageRecord) -> Message:
        """A message read back from the store; its delivery_mode is the one published (a quorum queue
        stores transient ones).

        One whose properties cannot be peeked (stored before the door checked them) is kept byte
        for byte with the defaults — no priority, no per-message TTL, persistent — and logged:
        recovery and paging in never fail on it, and the operations that edit headers handle it later.
        """
        try:
            return cls(record.exchange, record.routing_key, record.header, record.body)
        except Exception:
            log.exception(
                "a stored message on exchange '%s' has content properties that cannot be decoded; "
                "keeping it without priority or per-message TTL",
                record.exchange,
            )
            message = cls(record.exchange, record.routing_key, _NO_PROPERTIES, record.body, persistent=True)
            message.header = record.header
            return message


class InvalidExpiration(ValueError):
    """``expiration`` must be a non-negative integer number of milliseconds."""


def _parse_expiration(expiration: str) -> int:
    """Milliseconds, parsed the way RabbitMQ does (Erlang's string:to_integer) with its error texts."""
    match = re.match(r"[+-]?\d+", expiration)
    if match is None:
        reason = "no_integer"
    elif match.end() != len(expiration):
        reason = f'{{leftover_string,"{expiration[match.end() :]}"}}'
    elif int(match.group()) < 0:
        reason = f"{{value_negative,{int(match.group())}}}"
    else:
        return int(match.group())
    raise InvalidExpiration(f"invalid expiration '{expiration}': {reason}")


class Entry:
    """``paged_out`` while the message is only in the store: then ``message`` is unset (the sizes are kept for
    accounting), and only the queue, which pages it back in before it lets the entry go, reads it then."""

    __slots__ = (
        "message",
        "paged_out",
        "message_id",
        "redelivered",
        "stored",
        "expires_at",
        "delivery_count",
        "body_size",
        "size",
    )

    def __init__(
        self,
        message: Message,
        message_id: int,
        stored: bool,
        redelivered: bool = False,
        expires_at: float | None = None,
    ) -> None:
        self.message = message
        self.paged_out = False
        self.body_size = len(message.body)
        self.size = self.body_size + len(message.header)
        self.message_id = message_id
        self.stored = stored
        self.redelivered = redelivered
        self.expires_at = expires_at
        self.delivery_count = 0  # times returned to the queue (quorum queues' x-delivery-count)

    @classmethod
    def on_disk(cls, message_id: int, body_size: int, expires_at: float | None = None) -> Entry:
        """A recovered message still on disk (read back when it reaches the head)."""
        entry = cls.__new__(cls)
        entry.paged_out, entry.message_id, entry.stored, entry.redelivered = True, message_id, True, True
        entry.expires_at, entry.delivery_count, entry.body_size, entry.size = expires_at, 0, body_size, body_size
        return entry
