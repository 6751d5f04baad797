"""A queue's consumers in delivery order: which one gets the next message.

Round-robin among consumers with credit; with consumer priorities (``x-priority``)
the highest with credit wins and equals take turns; with single-active-consumer
only the first (the oldest) may take messages.  The ring is the queue's
``consumers`` deque itself (a subclass: ``len``, indexing and ``rotate`` stay the
C deque's), so the dispatch loop reads it directly.
"""

from __future__ import annotations

from collections import deque

from .delivery import Consumer


class ConsumerRing(deque[Consumer]):
    """The consumers of one queue, sorted by priority (highest first), newest last among equals."""

    __slots__ = ("single_active",)

    def __init__(self, single_active: bool) -> None:
        super().__init__()
        self.single_active = single_active  # the queue's x-single-active-consumer

    def next_with_credit(self) -> Consumer | None:
        """The consumer the next message goes to (the ring turns past it), or None when none has credit."""
        if self.single_active:
            active = self[0]
            return active if active.has_credit() else None
        if self[0].priority or self[-1].priority:
            return self._next_by_priority()
        for _ in range(len(self)):
            consumer = self[0]
            self.rotate(-1)
            if consumer.has_credit():
                return consumer
        return None

    def _next_by_priority(self) -> Consumer | None:
        """Highest ``x-priority`` with credit wins; equal priorities take turns (kept sorted, stable)."""
        chosen = None
        for consumer in self:
            if (chosen is None or consumer.priority > chosen.priority) and consumer.has_credit():
                chosen = consumer
        if chosen is not None:
            self.remove(chosen)
            self.insert_by_priority(chosen)  # behind the others of its priority: round-robin among equals
        return chosen

    def insert_by_priority(self, consumer: Consumer) -> None:
        """Add ``consumer`` behind every consumer of its priority or higher."""
        if not self or self[-1].priority >= consumer.priority:
            self.append(consumer)
            return
        index = next(i for i, other in enumerate(self) if other.priority < consumer.priority)
        self.insert(index, consumer)

    def has_exclusive(self) -> bool:
        return any(consumer.exclusive for consumer in self)
