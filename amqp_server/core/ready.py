"""The ready messages of a queue, in delivery order: FIFO, or by priority for ``x-max-priority``.

Both keep messages in per-queue id order within a priority, so requeued
messages go back to their original positions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .message import Entry


def _message_id(entry: Entry) -> int:
    return entry.message_id


class FifoReady:
    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def append(self, entry: Entry) -> None:
        self._entries.append(entry)

    def peek(self) -> Entry | None:
        return self._entries[0] if self._entries else None

    def popleft(self) -> Entry:
        return self._entries.popleft()

    def restore(self, entries: list[Entry]) -> None:
        """Put entries (sorted by id) back where they were."""
        ready = self._entries
        if not ready or entries[-1].message_id < ready[0].message_id:
            ready.extendleft(reversed(entries))
        else:
            self._entries = deque(sorted((*ready, *entries), key=_message_id))

    def clear(self) -> list[Entry]:
        entries = list(self._entries)
        self._entries.clear()
        return entries


class PriorityReady:
    """One FIFO per priority level; the highest non-empty level is delivered first."""

    __slots__ = ("_levels", "_count")

    def __init__(self, max_priority: int) -> None:
        self._levels = [FifoReady() for _ in range(max_priority + 1)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Entry]:
        for level in reversed(self._levels):
            yield from level

    def _level(self, entry: Entry) -> FifoReady:
        return self._levels[min(entry.message.priority, len(self._levels) - 1)]

    def append(self, entry: Entry) -> None:
        self._level(entry).append(entry)
        self._count += 1

    def peek(self) -> Entry | None:
        for level in reversed(self._levels):
            if len(level):
                return level.peek()
        return None

    def popleft(self) -> Entry:
        for level in reversed(self._levels):
            if len(level):
                self._count -= 1
                return level.popleft()
        raise IndexError("pop from an empty queue")

    def restore(self, entries: list[Entry]) -> None:
        by_level: dict[int, list[Entry]] = {}
        for entry in entries:
            by_level.setdefault(id(self._level(entry)), []).append(entry)
        for level in self._levels:
            group = by_level.get(id(level))
            if group:
                level.restore(group)
        self._count += len(entries)

    def clear(self) -> list[Entry]:
        entries = list(self)
        for level in self._levels:
            level.clear()
        self._count = 0
        return entries
