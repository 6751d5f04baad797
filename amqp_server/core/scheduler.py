"""Timers for the sans-IO core: message TTL, queue expiry.

The core never sleeps or reads a clock on its own: it asks the injected
``clock`` for "now" and registers callbacks here.  The I/O layer (or a test)
calls ``run_due(now)`` at ``next_deadline()``; ``on_change`` tells it when a
new, earlier deadline appeared, so it can re-arm its single loop timer.

``run_due`` is the error boundary of every timer: a callback that raises is
logged with its traceback and the other due timers still run.  It runs only
the timers that were due when it was called, so a callback that re-arms at a
deadline already passed runs again at the next pass, never in a loop within
this one (which would freeze the event loop).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Callable

log = logging.getLogger("amqp_server.scheduler")


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
        """Run every timer due at ``now`` (each at most once); a raising callback is logged, not propagated."""
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        for timer in due:
            if timer.cancelled:  # also by an earlier callback of this pass
                continue
            try:
                timer.callback(now)
            except Exception:
                log.exception("timer callback %r failed", timer.callback)
