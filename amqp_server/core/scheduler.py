"""Timers for the sans-IO core: message TTL, queue expiry.

The core never sleeps or reads a clock on its own: it asks the injected
``clock`` for "now" and registers callbacks here.  The I/O layer (or a test)
calls ``run_due(now)`` at ``next_deadline()``; ``on_change`` tells it when a
new, earlier deadline appeared, so it can re-arm its single loop timer.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[float], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.on_change: Callable[[], None] | None = None
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` once ``run_due`` is called with ``now >= when``."""
        timer = Timer(when, callback)
        earliest = self.next_deadline()
        heapq.heappush(self._heap, (when, next(self._order), timer))
        if self.on_change is not None and (earliest is None or when < earliest):
            self.on_change()
        return timer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                timer.callback(now)
