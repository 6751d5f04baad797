"""A compact id -> location map for ids handed out in increasing order (a delayed exchange's held messages).

``SegmentStore`` keeps where each stored record is.  For queue messages that is a dict, but a delayed
exchange may hold millions of messages for a minute or more, removed in fire order (random against
their ids), and a dict of Python ints costs ~108 bytes an entry.  Here the ids from ``base`` on sit in
one ``array('q')`` (8 bytes a slot, ``EMPTY`` once removed); the run of removed slots at the front is
cut off once it is more than half the array, so memory follows the span of live ids.  An id far
from that span (an id reused from below it, or a jump ahead) goes to a small dict instead, so any
id order works, as the ``Store`` contract allows.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

EMPTY = -1
MAX_GAP = 4096  # ids skipped ahead at most, filled with EMPTY, before an id goes to the dict instead
TRIM_AT = 4096  # removed slots at the front worth cutting off


class LocationIndex:
    """``id -> location`` (locations are non-negative ints): ``put``, ``pop``, ``items``, ``len``."""

    __slots__ = ("_base", "_slots", "_head", "_others", "_live")

    def __init__(self) -> None:
        self._base = 0  # the id of _slots[0]
        self._slots = array("q")
        self._head = 0  # every slot before it is EMPTY
        self._others: dict[int, int] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def put(self, key: int, location: int) -> int | None:
        """Set ``key``'s location; returns the location it replaces, if any."""
        replaced = self.pop(key)
        slots = self._slots
        if self._live == len(self._others):  # the array holds nothing: start it here
            del slots[:]
            self._base, self._head = key, 0
        offset = key - self._base
        if 0 <= offset < len(slots):
            slots[offset] = location
            self._head = min(self._head, offset)
        elif len(slots) <= offset <= len(slots) + MAX_GAP:
            slots.extend([EMPTY] * (offset - len(slots)))
            slots.append(location)
        else:
            self._others[key] = location
        self._live += 1
        return replaced

    def pop(self, key: int) -> int | None:
        """Remove ``key``; its location, or None if it was not there."""
        offset = key - self._base
        slots = self._slots
        if 0 <= offset < len(slots) and slots[offset] != EMPTY:
            location = slots[offset]
            slots[offset] = EMPTY
            self._live -= 1
            if offset == self._head:
                self._advance_head()
            return location
        if key not in self._others:
            return None
        self._live -= 1
        return self._others.pop(key)

    def _advance_head(self) -> None:
        slots, head = self._slots, self._head
        while head < len(slots) and slots[head] == EMPTY:
            head += 1
        if head >= TRIM_AT and head * 2 > len(slots):
            del slots[:head]
            self._base += head
            head = 0
        self._head = head

    def get(self, key: int) -> int:
        """``key``'s location; ``KeyError`` if there is none."""
        offset = key - self._base
        if 0 <= offset < len(self._slots) and self._slots[offset] != EMPTY:
            return self._slots[offset]
        return self._others[key]

    def items(self) -> Iterator[tuple[int, int]]:
        """``(id, location)`` in id order."""
        base, slots = self._base, self._slots
        array_items = ((base + offset, at) for offset, at in enumerate(slots) if at != EMPTY)
        if not self._others:
            yield from array_items
            return
        yield from sorted([*array_items, *self._others.items()])

    def values(self) -> Iterator[int]:
        return (at for _, at in self.items())
