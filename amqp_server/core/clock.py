"""A clock that tests move: message TTLs and ``x-expires`` in milliseconds of real time.

With ``amqp_server.running(virtual_clock=True)`` the broker's scheduler (message
and queue TTLs, queue ``x-expires``, statistics sampling, disk checks) and its
wall clock (stored expiries, ``x-death`` times) read a ``VirtualClock``, which
stands still until ``advance(seconds)``.  Connection deadlines (heartbeats, the
handshake and close timeouts) stay on real time: a test that jumps an hour ahead
wants its queued messages expired, not its idle client dropped for missed
heartbeats, and a RabbitMQ under a test never sees its clients' time jump either.
"""

from __future__ import annotations

from .scheduler import Scheduler

MAX_PASSES = 1_000_000  # bounds advance() should a timer keep re-arming in the past


class VirtualClock:
    """``now()`` (monotonic seconds, the scheduler's clock) and ``wall_now()`` (epoch seconds), moved together."""

    def __init__(self, wall_start: float, start: float = 0.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start

    def now(self) -> float:
        return self._now

    def wall_now(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float, scheduler: Scheduler | None = None) -> None:
        """Move time ``seconds`` ahead, running ``scheduler``'s timers in deadline order as time reaches them.

        Time steps from deadline to deadline, so what a timer sets in motion runs too:
        a message dead-lettered at 30 s into a queue with a 20 s TTL is gone after
        ``advance(60)``, and each callback sees the time it was due at as "now".
        """
        if seconds < 0:
            raise ValueError(f"time moves forward only, not by {seconds} s")
        target = self._now + seconds
        if scheduler is not None:
            for _ in range(MAX_PASSES):
                deadline = scheduler.next_deadline()
                if deadline is None or deadline > target:
                    break
                self._now = max(self._now, deadline)
                scheduler.run_due(self._now)
        self._now = target
