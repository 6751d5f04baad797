"""A published message and its place in one queue.

A ``Message`` is shared by every queue it was routed to; its content header is
kept as the raw payload the publisher sent, so deliveries copy it byte-for-byte.
An ``Entry`` is the message's place in one queue: its per-queue id (queue
order, also the store's message id) and whether it was delivered before.
"""

from __future__ import annotations

from storage.api import MessageRecord

from ..wire.methods import shortstr


class Message:
    __slots__ = ("exchange", "routing_key", "header", "body", "persistent", "exchange_shortstr",
                 "routing_key_shortstr")

    def __init__(self, exchange: str, routing_key: str, header: bytes, body: bytes, persistent: bool) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.header = header
        self.body = body
        self.persistent = persistent
        # encoded once here instead of once per delivery
        self.exchange_shortstr = shortstr(exchange)
        self.routing_key_shortstr = shortstr(routing_key)

    def to_record(self) -> MessageRecord:
        return MessageRecord(self.exchange, self.routing_key, self.header, self.body)

    @classmethod
    def from_record(cls, record: MessageRecord) -> "Message":
        return cls(record.exchange, record.routing_key, record.header, record.body, persistent=True)


class Entry:
    __slots__ = ("message", "message_id", "redelivered", "stored")

    def __init__(self, message: Message, message_id: int, stored: bool, redelivered: bool = False) -> None:
        self.message = message
        self.message_id = message_id
        self.stored = stored
        self.redelivered = redelivered
