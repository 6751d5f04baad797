"""Drives the core's ``Scheduler`` (message TTL, queue expiry) with one asyncio timer handle.

Timers registered before the driver exists (queues and messages recovered at
start) are armed when it is created.
"""

from __future__ import annotations

import asyncio

from ..core.scheduler import Scheduler


class SchedulerDriver:
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        scheduler.on_change = self._arm
        self._arm()

    def _arm(self) -> None:
        deadline = self._scheduler.next_deadline()
        if deadline == self._armed_for:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = deadline
        self._handle = None if deadline is None else self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = self._armed_for = None
        try:
            self._scheduler.run_due(self._loop.time())
        finally:  # the loop timer stays armed for the timers still to come, whatever happened
            self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._scheduler.on_change = None
