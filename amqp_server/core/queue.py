"""A queue: ready messages in order, a ring of consumers, requeue in original order.

Delivery is pull-free: whenever something changes that may let a message move
(a publish, an ack freeing prefetch credit, a new consumer, a transport that can
take writes again), the owner calls ``dispatch``, which hands ready messages to
consumers round-robin until the queue is empty or no consumer has credit.
The queue writes persistent messages through the vhost's store and forgets them
there once settled; it knows nothing about frames (``Channel.deliver`` does).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterable

from storage.api import QueueRecord

from ..wire.methods import shortstr
from .message import Entry, Message

if TYPE_CHECKING:
    from .channel import Channel
    from .connection import Connection
    from .vhost import VirtualHost


class Consumer:
    """One ``basic.consume`` on one channel; prefetch credit is counted here (per-consumer QoS)."""

    __slots__ = ("channel", "tag", "tag_shortstr", "queue", "no_ack", "exclusive", "prefetch_count", "unacked")

    def __init__(self, channel: "Channel", tag: str, queue: "Queue", no_ack: bool, exclusive: bool,
                 prefetch_count: int) -> None:
        self.channel = channel
        self.tag = tag
        self.tag_shortstr = shortstr(tag)  # spliced into every Basic.Deliver
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch_count = 0 if no_ack else prefetch_count
        self.unacked = 0

    def has_credit(self) -> bool:
        return (not self.prefetch_count or self.unacked < self.prefetch_count) and self.channel.can_deliver(self)


class Queue:
    __slots__ = ("vhost", "name", "durable", "exclusive_owner", "auto_delete", "arguments", "_ready",
                 "consumers", "_next_id", "_had_consumer", "deleted", "bindings")

    def __init__(self, vhost: "VirtualHost", name: str, durable: bool = False, auto_delete: bool = False,
                 arguments: dict[str, Any] | None = None, exclusive_owner: "Connection | None" = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.exclusive_owner = exclusive_owner
        self._ready: deque[Entry] = deque()
        self.consumers: deque[Consumer] = deque()
        self._next_id = 1
        self._had_consumer = False
        self.deleted = False
        self.bindings: set[tuple[str, str]] = set()  # (exchange name, binding key) pointing here

    @property
    def message_count(self) -> int:
        return len(self._ready)

    def record(self) -> QueueRecord:
        return QueueRecord(self.vhost.name, self.name, self.durable, self.auto_delete, dict(self.arguments))

    def publish(self, message: Message) -> bool:
        """Append a routed message; True if it was written to the store (persistent, durable queue)."""
        stored = message.persistent and self.durable
        entry = Entry(message, self._next_id, stored)
        self._next_id += 1
        if stored:
            self.vhost.store.put_message(self.vhost.name, self.name, entry.message_id, message.to_record())
            self.vhost.sync_barrier.request()
        self._ready.append(entry)
        if self.consumers:
            self.dispatch()
        return stored

    def restore(self, message_id: int, message: Message) -> None:
        """Re-add a message recovered from the store; it counts as delivered before (RabbitMQ does the same)."""
        self._ready.append(Entry(message, message_id, stored=True, redelivered=True))
        self._next_id = max(self._next_id, message_id + 1)

    def dispatch(self) -> None:
        """Hand ready messages to consumers with credit, round-robin, until one side runs out."""
        ready, consumers = self._ready, self.consumers
        while ready and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.has_credit():
                    break
            else:
                return
            entry = ready.popleft()
            consumer.channel.deliver(consumer, entry)
            if consumer.no_ack:
                self.settle((entry,))

    def get(self) -> Entry | None:
        """Take the head message for ``basic.get``."""
        return self._ready.popleft() if self._ready else None

    def settle(self, entries: Iterable[Entry]) -> None:
        """The messages are done with (acked, or delivered without ack): forget them in the store."""
        stored = [entry.message_id for entry in entries if entry.stored]
        if stored and not self.deleted:
            self.vhost.store.remove_messages(self.vhost.name, self.name, stored)
            self.vhost.sync_barrier.request()

    def requeue(self, entries: list[Entry]) -> None:
        """Put unacked messages back in their original positions, marked redelivered."""
        if self.deleted or not entries:
            return
        for entry in entries:
            entry.redelivered = True
        entries.sort(key=_message_id)
        ready = self._ready
        if not ready or entries[-1].message_id < ready[0].message_id:
            ready.extendleft(reversed(entries))
        else:
            self._ready = deque(sorted((*ready, *entries), key=_message_id))
        self.dispatch()

    def purge(self) -> int:
        count = len(self._ready)
        self.settle(self._ready)
        self._ready.clear()
        return count

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._had_consumer = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Forget a consumer; an auto-delete queue goes away with its last one."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if self.auto_delete and self._had_consumer and not self.consumers and not self.deleted:
            self.vhost.delete_queue(self)

    def has_exclusive_consumer(self) -> bool:
        return any(consumer.exclusive for consumer in self.consumers)


def _message_id(entry: Entry) -> int:
    return entry.message_id
