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

A cancelled timer stays in the heap until it reaches the top, which for a
long deadline (a message TTL of an hour, on a queue whose head changes) is
long after it stopped mattering, and it keeps its callback's queue alive.
So, as asyncio's event loop does, the heap is rebuilt without them once they
are more than half of it (and more than ``COMPACT_MIN``): amortised O(1) per cancel.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger("amqp_server.scheduler")


COMPACT_MIN = 100  # cancelled timers tolerated in the heap before a rebuild is considered


class Timer:
    __slots__ = ("when", "callback", "cancelled", "_scheduler")

    def __init__(self, when: float, callback: Callable[[float], None], scheduler: Scheduler | None = None) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._scheduler = scheduler  # set while the timer is in that scheduler's heap

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._scheduler is not None:
                self._scheduler._timer_cancelled()


class Scheduler:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.on_change: Callable[[], None] | None = None
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cancelled = 0  # cancelled timers still in the heap

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` once ``run_due`` is called with ``now >= when``."""
        timer = Timer(when, callback, self)
        earliest = self.next_deadline()
        heapq.heappush(self._heap, (when, next(self._order), timer))
        if self.on_change is not None and (earliest is None or when < earliest):
            self.on_change()
        return timer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            self._popped(heapq.heappop(heap)[2])
        return heap[0][0] if heap else None

    def _popped(self, timer: Timer) -> None:
        """``timer`` left the heap: a later cancel() no longer counts."""
        timer._scheduler = None
        if timer.cancelled:
            self._cancelled -= 1

    def _timer_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled > COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            live = []
            for entry in self._heap:
                if entry[2].cancelled:
                    entry[2]._scheduler = None
                else:
                    live.append(entry)
            heapq.heapify(live)
            self._heap[:] = live  # in place: run_due may hold a reference to the list
            self._cancelled = 0

    def run_due(self, now: float) -> None:
        """Run every timer due at ``now`` (each at most once); a raising callback is logged, not propagated."""
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            self._popped(timer)
            due.append(timer)
        for timer in due:
            if timer.cancelled:  # also by an earlier callback of this pass
                continue
            try:
                timer.callback(now)
            except Exception:
                log.exception("timer callback %r failed", timer.callback)
