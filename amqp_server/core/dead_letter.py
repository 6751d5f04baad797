"""Dead-lettering: republish a message that was rejected, expired or pushed out, with ``x-death``.

The ``x-death`` header is what RabbitMQ 3.x writes: a list of tables, newest
first, one per (queue, reason) with a ``count``; plus ``x-first-death-*``
headers set once; the headers table key-sorted, as RabbitMQ leaves it.  The
``expiration`` property is removed (kept as ``original-expiration``) so the
message does not expire again on arrival.  Only the changed headers are
encoded; the publisher's other properties and headers stay byte-for-byte.

This runs inside other clients' operations (a passive declare that expires the
head, a reject, a publish that pushes the head out) and in timers, so it is an
error boundary: a message whose header cannot be read (stored before the door
checked properties) loses the unreadable part, logged with the traceback, and a
message that cannot be dead-lettered at all is dropped with a log line — never
the caller's connection, a timer, or the other messages of the same operation.
"""

from __future__ import annotations

import datetime
import logging
import struct
from typing import TYPE_CHECKING, Any, Protocol

from ..wire.content import BASIC_CLASS_ID
from ..wire.properties import ContentHeader, RawValue, decode_value, encode_value
from .message import Message

if TYPE_CHECKING:
    from .queue_arguments import QueueOptions


class DeadLetterHost(Protocol):
    """The virtual host a dead-lettered copy is republished in."""

    @property
    def name(self) -> str: ...

    def dead_letter(self, message: Message) -> None: ...


class DeadLetterSource(Protocol):
    """The queue a message died in, as dead-lettering sees it (read-only: a queue's richer host fits)."""

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> QueueOptions: ...

    @property
    def vhost(self) -> DeadLetterHost: ...


REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"

log = logging.getLogger("amqp_server.dead_letter")

_NO_PROPERTIES = struct.Struct(">HHQH")  # class id, weight, body size, flags


def republish(message: Message, queue: DeadLetterSource, reason: str, now: datetime.datetime) -> None:
    """Send ``message``, leaving ``queue``, to the queue's dead-letter exchange — or drop it, logged."""
    try:
        queue.vhost.dead_letter(dead_lettered_copy(message, queue, reason, now))
    except Exception:
        log.exception(
            "queue '%s' in vhost '%s': a message could not be dead-lettered (%s); dropping it",
            queue.name,
            queue.vhost.name,
            reason,
        )


def dead_lettered_copy(message: Message, queue: DeadLetterSource, reason: str, now: datetime.datetime) -> Message:
    """The message as it leaves ``queue`` for its dead-letter exchange."""
    header, entries = _editable(message, queue)
    entries.pop("x-delivery-count", None)
    routing_keys = [message.routing_key, *string_list(_decoded(entries, "CC"))]
    death: dict[str, Any] = {
        "count": 1,
        "reason": reason,
        "queue": queue.name,
        "time": now,
        "exchange": message.exchange,
        "routing-keys": routing_keys,
    }
    expiration = header.shortstr("expiration")
    if expiration is not None:
        death["original-expiration"] = expiration
        header.set_shortstr("expiration", None)
    deaths = _deaths(entries)
    for index, earlier in enumerate(deaths):
        if earlier.get("queue") == queue.name and earlier.get("reason") == reason:
            count = earlier.get("count")
            count = count if isinstance(count, int) and not isinstance(count, bool) else 0
            death = dict(sorted({**earlier, "count": count + 1, "time": now}.items()))
            del deaths[index]
            break
    entries["x-death"] = encode_value([death, *deaths])
    for key, value in (
        ("x-first-death-exchange", message.exchange),
        ("x-first-death-queue", queue.name),
        ("x-first-death-reason", reason),
    ):
        entries.setdefault(key, encode_value(value))
    header.set_header_entries(dict(sorted(entries.items())))
    options = queue.options
    routing_key = options.dead_letter_routing_key
    copy = Message(
        options.dead_letter_exchange or "",
        message.routing_key if routing_key is None else routing_key,
        header.encode(),
        message.body,
        message.persistent,
    )
    copy.extra_routing_keys = tuple(routing_keys[1:]) if routing_key is None else ()
    return copy


def is_cycle(message: Message, target: DeadLetterSource) -> bool:
    """A dead-lettered message reaching a queue it already died in, with no rejection on the way, is dropped.

    ``message`` is a copy ``dead_lettered_copy`` made: its header is always readable.
    """
    deaths = _deaths(ContentHeader(message.header).header_entries())
    return any(death.get("queue") == target.name for death in deaths) and not any(
        death.get("reason") == REJECTED for death in deaths
    )


def with_headers(message: Message, updates: dict[str, Any], remove: tuple[str, ...] = ()) -> Message:
    """A copy of ``message`` with headers set (encoded as RabbitMQ types them) and others removed.

    A message whose header cannot be read (stored before the door checked properties) comes
    back as it is, without the added headers (logged): a quorum queue's requeue or
    ``basic.get`` goes on, for it and for the other messages of the same operation.
    """
    try:
        header = ContentHeader(message.header)
        entries = header.header_entries()
    except ValueError:
        log.exception("a message's headers cannot be decoded; it goes on without the headers %s", sorted(updates))
        return message
    entries = {key: value for key, value in entries.items() if key not in remove}
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


def _editable(message: Message, queue: DeadLetterSource) -> tuple[ContentHeader, dict[str, bytes]]:
    """The message's header split for editing, and its headers table; what cannot be read is left out."""
    try:
        header = ContentHeader(message.header)
    except ValueError:
        log.exception(
            "queue '%s' in vhost '%s': a dead-lettered message's properties cannot be decoded; it goes on without them",
            queue.name,
            queue.vhost.name,
        )
        header = ContentHeader(_NO_PROPERTIES.pack(BASIC_CLASS_ID, 0, len(message.body), 0))
        if message.persistent:
            header.fields["delivery_mode"] = b"\x02"
        return header, {}
    try:
        return header, header.header_entries()
    except ValueError:
        log.exception(
            "queue '%s' in vhost '%s': a dead-lettered message's headers table cannot be decoded; "
            "it goes on without it",
            queue.name,
            queue.vhost.name,
        )
        return header, {}


def _deaths(entries: dict[str, bytes]) -> list[dict[str, Any]]:
    return [death for death in _decoded(entries, "x-death") or [] if isinstance(death, dict)]


def _decoded(entries: dict[str, bytes], key: str) -> Any:
    """One header decoded with pamqp; None (logged) when pamqp cannot decode what RabbitMQ accepts
    (a key that is not UTF-8, a timestamp past the year 9999)."""
    raw = entries.get(key)
    if raw is None:
        return None
    try:
        return decode_value(raw)
    except Exception:
        log.exception("header %r cannot be decoded; ignoring it", key)
        return None
