"""The narrow interface between the broker core and durable storage.

The core writes definitions (durable exchanges, queues, bindings, policies) and persistent
messages on durable queues through ``Store``. It reads back in two places only: once at
start, through ``recover``, through ``read_message`` for a persistent message paged
out of memory (the tail of a long queue, or a backlog ``recover`` handed back as
``StoredMessage`` references) when it reaches the head of its queue, and through
``read_stream`` for stream consumers reading old offsets.  Writes may be
buffered: nothing is promised to be durable until ``sync`` returns, which is the
group-commit point the server's persister calls once for many writes before releasing
publisher confirms.
Records are frozen dataclasses of plain values so any engine can serialise them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ExchangeRecord:
    vhost: str
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueRecord:
    vhost: str
    name: str
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingRecord:
    vhost: str
    source: str
    destination: str
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)
    destination_kind: str = "queue"


@dataclass(frozen=True)
class PolicyRecord:
    """A policy (``operator`` False) or operator policy; ``definition`` holds JSON values only."""

    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any] = field(default_factory=dict)
    priority: int | float = 0
    apply_to: str = "all"
    operator: bool = False


BindingKey = tuple[str, str, str, str, str, str]
PolicyKey = tuple[str, bool, str]  # vhost, operator, name


def policy_key(record: PolicyRecord) -> PolicyKey:
    return (record.vhost, record.operator, record.name)


def binding_key(record: BindingRecord) -> BindingKey:
    """A hashable identity for a binding (its arguments are a table, so not hashable themselves)."""
    return (
        record.vhost,
        record.source,
        record.destination_kind,
        record.destination,
        record.routing_key,
        repr(sorted(record.arguments.items())),
    )


@dataclass(frozen=True)
class MessageRecord:
    """A persistent message as stored: routing info, the raw content header, the body.

    ``expires_at``: when the message expires in this queue (per-message or queue TTL), as wall-clock
    seconds since the epoch, so that a TTL keeps counting from the publish across a restart, downtime
    included (as in RabbitMQ); None when no TTL applies — or for a record written before expiry was
    stored, which the broker tells apart by the TTLs it would have had.
    """

    exchange: str
    routing_key: str
    header: bytes  # the content header payload exactly as published (class, weight, size, properties)
    body: bytes
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A recovered message left on disk: read it with ``Store.read_message`` when it is needed."""

    body_size: int
    expires_at: float | None = None  # as in ``MessageRecord``


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One message of a stream (``x-queue-type: stream``) at its offset.

    Streams are append-only logs: a record is never acked or removed one by one, only dropped with
    everything before it by retention (``Store.truncate_stream``).  ``timestamp``: wall-clock seconds
    at the append (``x-max-age`` retention and timestamp offsets use it).
    """

    offset: int
    timestamp: float
    message: MessageRecord


@dataclass
class StreamIndex:
    """What recovery hands back per stream: its offset range and, per record from ``first`` on, its size
    (``len(header) + len(body)``) and timestamp — enough to rebuild segments and retention without reading
    the bodies, which consumers read on demand with ``Store.read_stream``.  ``first == next`` when empty."""

    first: int
    sizes: array[int] = field(default_factory=lambda: array("q"))
    timestamps: array[float] = field(default_factory=lambda: array("d"))

    @property
    def next(self) -> int:
        """The offset the next append gets."""
        return self.first + len(self.sizes)


@dataclass
class Recovered:
    """Everything a store hands back at start; messages per (vhost, queue) in queue order.

    A store may hand out large backlogs as ``StoredMessage`` references instead of full records.
    """

    exchanges: list[ExchangeRecord] = field(default_factory=list)
    queues: list[QueueRecord] = field(default_factory=list)
    bindings: list[BindingRecord] = field(default_factory=list)
    policies: list[PolicyRecord] = field(default_factory=list)
    messages: dict[tuple[str, str], list[tuple[int, MessageRecord | StoredMessage]]] = field(default_factory=dict)
    streams: dict[tuple[str, str], StreamIndex] = field(default_factory=dict)  # per stream appended to
    # held messages of delayed exchanges (x-delayed-message): (vhost, exchange) -> [(delayed id, fire_at)] in id
    # order, without their bodies (read each with ``Store.read_delayed`` when it fires); see ``Store.put_delayed``
    delayed: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)


class Store(Protocol):
    """What the core needs from storage. Message ids are per queue and increase in queue order."""

    def recover(self) -> Recovered:
        """Return every durable definition and stored message (called once, before serving)."""

    def put_exchange(self, record: ExchangeRecord) -> None: ...

    def delete_exchange(self, vhost: str, name: str) -> None:
        """Forget the exchange, its bindings (as source or destination), and its delayed messages."""

    def put_queue(self, record: QueueRecord) -> None: ...

    def delete_queue(self, vhost: str, name: str) -> None:
        """Forget the queue, its bindings as destination, and its messages (or its stream log)."""

    def put_binding(self, record: BindingRecord) -> None: ...

    def delete_binding(self, record: BindingRecord) -> None: ...

    def put_policy(self, record: PolicyRecord) -> None:
        """Add or replace a policy (keyed by vhost, kind and name)."""

    def delete_policy(self, vhost: str, name: str, operator: bool = False) -> None:
        """Forget a policy; an unknown one is ignored."""

    def put_message(self, vhost: str, queue: str, message_id: int, record: MessageRecord) -> None: ...

    def remove_messages(self, vhost: str, queue: str, message_ids: Iterable[int]) -> None:
        """Forget acknowledged (or purged, or expired) messages; unknown ids are ignored."""

    def read_message(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        """A stored message read back, written or only buffered (for messages paged out of memory)."""

    # Streams: an append-only log per stream queue (the queue itself is a ``put_queue`` definition as any other).

    def append_stream(self, vhost: str, queue: str, record: StreamRecord) -> None:
        """Append to the stream's log (buffered like ``put_message``: durable once ``sync`` returns).
        ``record.offset`` is the stream's next offset: offsets are contiguous from the first one kept."""

    def read_stream(self, vhost: str, queue: str, start: int, count: int) -> list[StreamRecord]:
        """Up to ``count`` records from offset ``start`` on, in order, written or only buffered
        (``start`` below the first offset kept: from the first one; past the end: none)."""

    def truncate_stream(self, vhost: str, queue: str, first: int) -> None:
        """Retention: forget every record below offset ``first`` (durable with the next ``sync``)."""

    # Delayed messages (an ``x-delayed-message`` exchange holding a persistent message until ``fire_at``,
    # wall-clock seconds since the epoch): keyed by (vhost, exchange, delayed id), ids unique per exchange.
    # Written, buffered and made durable by ``sync`` like queue messages; ``recover`` lists them in
    # ``Recovered.delayed`` (id and fire time only) and ``read_delayed`` reads a body back when it fires.

    def put_delayed(self, vhost: str, exchange: str, delayed_id: int, fire_at: float, record: MessageRecord) -> None:
        """Hold ``record`` for ``exchange`` until ``fire_at`` (the same id stored again: the newer record wins)."""

    def remove_delayed(self, vhost: str, exchange: str, delayed_ids: Iterable[int]) -> None:
        """Forget delayed messages that fired; unknown ids are ignored."""

    def read_delayed(self, vhost: str, exchange: str, delayed_id: int) -> MessageRecord:
        """A held message read back, written or only buffered (``KeyError`` if there is none)."""

    def sync(self) -> None:
        """Make everything written so far durable (one sync for many writes)."""

    def close(self) -> None: ...
