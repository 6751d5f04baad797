"""Drives the core's ``Scheduler`` (message TTL, queue expiry) with one asyncio timer handle.

Timers registered before the driver exists (queues and messages recovered at
start) are armed when it is created.

On a virtual clock (``core.clock``, for tests) a deadline in the future is left
to ``VirtualClock.advance``, which runs the timers itself; only timers already
due (registered at or before "now") get a loop callback, at once; whoever
advances calls ``scheduler.on_change`` after, so the driver looks again.
"""

from __future__ import annotations

import asyncio

from ..core.scheduler import Scheduler


class SchedulerDriver:
    def __init__(self, scheduler: Scheduler, virtual: bool = False) -> None:
        self._scheduler = scheduler
        self._virtual = virtual
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.Handle | None = None
        self._armed_for: float | None = None
        scheduler.on_change = self._arm
        self._arm()

    def _arm(self) -> None:
        deadline = self._scheduler.next_deadline()
        if deadline == self._armed_for and not self._virtual:  # virtual: "due" changes as the clock moves
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = deadline
        if deadline is None:
            self._handle = None
        elif not self._virtual:
            self._handle = self._loop.call_at(deadline, self._fire)
        else:  # virtual: advance() runs what is due later; nothing to arm for it
            self._handle = self._loop.call_soon(self._fire) if deadline <= self._scheduler.clock() else None

    def _fire(self) -> None:
        self._handle = self._armed_for = None
        try:
            self._scheduler.run_due(self._scheduler.clock() if self._virtual else self._loop.time())
        finally:  # the loop timer stays armed for the timers still to come, whatever happened
            self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._scheduler.on_change = None
