"""Dead-lettering: republish a message that was rejected, expired or pushed out, with ``x-death``.

The ``x-death`` header is what RabbitMQ 3.x writes: a list of tables, newest
first, one per (queue, reason) with a ``count``; plus ``x-first-death-*``
headers set once.  The ``expiration`` property is removed (and kept as
``original-expiration``) so the message does not expire again on arrival.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from ..wire.content import decode_properties, encode_header
from .message import Message

if TYPE_CHECKING:
    from .queue import Queue

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"


def dead_lettered_copy(message: Message, queue: "Queue", reason: str, now: datetime.datetime) -> Message:
    """The message as it leaves ``queue`` for its dead-letter exchange."""
    properties = decode_properties(message.header)
    headers = dict(properties.headers or {})
    routing_keys = [message.routing_key, *string_list(headers.get("CC"))]
    entry = {
        "count": 1,
        "reason": reason,
        "queue": queue.name,
        "time": now,
        "exchange": message.exchange,
        "routing-keys": routing_keys,
    }
    if properties.expiration is not None:
        entry["original-expiration"] = properties.expiration
        properties.expiration = None
    deaths = [death for death in headers.get("x-death") or [] if isinstance(death, dict)]
    for index, death in enumerate(deaths):
        if death.get("queue") == queue.name and death.get("reason") == reason:
            entry = {**death, "count": int(death.get("count", 0)) + 1, "time": now}
            del deaths[index]
            break
    headers["x-death"] = [entry, *deaths]
    headers.setdefault("x-first-death-exchange", message.exchange)
    headers.setdefault("x-first-death-queue", queue.name)
    headers.setdefault("x-first-death-reason", reason)
    properties.headers = headers
    options = queue.options
    exchange = options.dead_letter_exchange or ""
    routing_key = options.dead_letter_routing_key
    copy = Message(exchange, routing_key if routing_key is not None else message.routing_key,
                   encode_header(len(message.body), properties), message.body, message.persistent)
    copy.extra_routing_keys = () if routing_key is not None else tuple(routing_keys[1:])
    return copy


def is_cycle(message: Message, target: "Queue") -> bool:
    """A dead-lettered message reaching a queue it already died in, with no rejection on the way, is dropped."""
    deaths = decode_properties(message.header).headers.get("x-death") or []
    seen = [death for death in deaths if isinstance(death, dict)]
    return (any(death.get("queue") == target.name for death in seen)
            and not any(death.get("reason") == REJECTED for death in seen))


def string_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item.decode() if isinstance(item, bytes) else item for item in value if isinstance(item, (str, bytes))]


def with_headers(message: Message, updates: dict[str, object], remove: tuple[str, ...] = ()) -> Message:
    """A copy of ``message`` whose headers table has ``updates`` applied (and ``remove`` deleted)."""
    properties = decode_properties(message.header)
    headers = {key: value for key, value in (properties.headers or {}).items() if key not in remove}
    headers.update(updates)
    properties.headers = headers or None
    copy = Message(message.exchange, message.routing_key, encode_header(len(message.body), properties),
                   message.body, message.persistent)
    copy.extra_routing_keys = message.extra_routing_keys
    return copy
