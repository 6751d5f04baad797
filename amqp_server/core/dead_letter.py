"""Dead-lettering: republish a message that was rejected, expired or pushed out, with ``x-death``.

The ``x-death`` header is what RabbitMQ 3.x writes: a list of tables, newest
first, one per (queue, reason) with a ``count``; plus ``x-first-death-*``
headers set once; the headers table key-sorted, as RabbitMQ leaves it.  The
``expiration`` property is removed (kept as ``original-expiration``) so the
message does not expire again on arrival.  Only the changed headers are
encoded; the publisher's other properties and headers stay byte-for-byte.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from ..wire.properties import ContentHeader, RawValue, decode_value, encode_value
from .message import Message

if TYPE_CHECKING:
    from .queue import Queue

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"


def dead_lettered_copy(message: Message, queue: "Queue", reason: str, now: datetime.datetime) -> Message:
    """The message as it leaves ``queue`` for its dead-letter exchange."""
    header = ContentHeader(message.header)
    entries = header.header_entries()
    entries.pop("x-delivery-count", None)
    routing_keys = [message.routing_key, *string_list(_decoded(entries, "CC"))]
    death: dict[str, Any] = {"count": 1, "reason": reason, "queue": queue.name, "time": now,
                             "exchange": message.exchange, "routing-keys": routing_keys}
    expiration = header.shortstr("expiration")
    if expiration is not None:
        death["original-expiration"] = expiration
        header.set_shortstr("expiration", None)
    deaths = [d for d in _decoded(entries, "x-death") or [] if isinstance(d, dict)]
    for index, earlier in enumerate(deaths):
        if earlier.get("queue") == queue.name and earlier.get("reason") == reason:
            death = dict(sorted({**earlier, "count": int(earlier.get("count", 0)) + 1, "time": now}.items()))
            del deaths[index]
            break
    entries["x-death"] = encode_value([death, *deaths])
    for key, value in (("x-first-death-exchange", message.exchange), ("x-first-death-queue", queue.name),
                       ("x-first-death-reason", reason)):
        entries.setdefault(key, encode_value(value))
    header.set_header_entries(dict(sorted(entries.items())))
    options = queue.options
    routing_key = options.dead_letter_routing_key
    copy = Message(options.dead_letter_exchange or "", message.routing_key if routing_key is None else routing_key,
                   header.encode(), message.body, message.persistent)
    copy.extra_routing_keys = tuple(routing_keys[1:]) if routing_key is None else ()
    return copy


def is_cycle(message: Message, target: "Queue") -> bool:
    """A dead-lettered message reaching a queue it already died in, with no rejection on the way, is dropped."""
    deaths = [d for d in _decoded(ContentHeader(message.header).header_entries(), "x-death") or []
              if isinstance(d, dict)]
    return (any(death.get("queue") == target.name for death in deaths)
            and not any(death.get("reason") == REJECTED for death in deaths))


def with_headers(message: Message, updates: dict[str, Any], remove: tuple[str, ...] = ()) -> Message:
    """A copy of ``message`` with headers set (encoded as RabbitMQ types them) and others removed."""
    header = ContentHeader(message.header)
    entries = {key: value for key, value in header.header_entries().items() if key not in remove}
    entries.update((key, RawValue(encode_value(value))) for key, value in updates.items())
    header.set_header_entries(entries)
    copy = Message(message.exchange, message.routing_key, header.encode(), message.body, message.persistent)
    copy.extra_routing_keys = message.extra_routing_keys
    return copy


def string_list(value: object) -> list[str]:
    """The strings of a CC/BCC-style array (other entries are ignored, as RabbitMQ does)."""
    if not isinstance(value, list):
        return []
    return [item.decode() if isinstance(item, bytes) else item for item in value if isinstance(item, (str, bytes))]


def _decoded(entries: dict[str, bytes], key: str) -> Any:
    raw = entries.get(key)
    return decode_value(raw) if raw is not None else None
