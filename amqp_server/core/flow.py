"""Resource alarms: block publishers while queued messages hold too much memory or free disk runs low.

Like RabbitMQ's ``rabbit_alarm``: ``Alarms`` is the set of resource alarms in
effect ("memory", "disk").  While it is not empty, connections that publish get
``connection.blocked`` (if they advertised the capability) and the I/O layer
stops reading from them; when the last alarm clears they get
``connection.unblocked`` and reading resumes.  Consumers keep working, which
is what brings the level down.  ``Connection.apply_flow`` is the one place that
turns the alarm set into a connection's state.

Two sources raise alarms:

- ``MemoryFlow``: an accounting of message sizes held in queues (body, header
  and a per-message overhead for the Python objects), so it is deterministic
  and falls as messages leave; high watermark on, low watermark (80 %) off.
- ``DiskMonitor``: the free space of the data dir's filesystem, measured by an
  injected function on the broker's ``Scheduler`` (so tests drive it with a fake
  clock and fake sizes), at an interval that shrinks as free space nears the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .scheduler import Scheduler, Timer

log = logging.getLogger("amqp_server.flow")

MESSAGE_OVERHEAD = 400  # bytes of Python objects per queued message (Entry, Message, deque slot), measured
MEMORY, DISK = "memory", "disk"

DISK_CHECK_MIN_INTERVAL = 0.1  # seconds, as RabbitMQ's disk monitor
DISK_CHECK_MAX_INTERVAL = 10.0  # seconds, as RabbitMQ's disk monitor
# RabbitMQ re-checks every 10 s while alarmed (it forks df each time); statvfs costs microseconds, so we look
# every second and unblock publishers soon after space returns.
DISK_CHECK_ALARMED_INTERVAL = 1.0
DISK_FAST_FILL_RATE = 250_000_000  # bytes/s: RabbitMQ's FAST_RATE; the interval is 2 x headroom / this rate


class Alarms:
    """The resource alarms in effect; ``blocked`` is true while any is (publishers stay blocked until all clear)."""

    def __init__(self) -> None:
        self._active: set[str] = set()
        self.blocked = False  # a plain attribute: the I/O layer reads it on every read
        self.on_change: Callable[[], None] | None = None

    @property
    def active(self) -> frozenset[str]:
        """The alarms in effect, e.g. ``frozenset({"disk"})`` (for the management API)."""
        return frozenset(self._active)

    @property
    def reason(self) -> str | None:
        """The connection.blocked text, RabbitMQ's: "low on disk", "low on memory", "low on disk & memory"."""
        return "low on " + " & ".join(sorted(self._active)) if self._active else None

    def set(self, resource: str, active: bool) -> None:
        if active == (resource in self._active):
            return
        if active:
            self._active.add(resource)
        else:
            self._active.discard(resource)
        self.blocked = bool(self._active)
        if self.on_change is not None:
            self.on_change()


class MemoryFlow:
    def __init__(self, high_watermark: int | None = None) -> None:
        self.high_watermark = high_watermark  # None: never block
        self.queued_bytes = 0
        self.blocked = False
        self.on_change: Callable[[bool], None] | None = None

    @property
    def low_watermark(self) -> int:
        return int(self.high_watermark * 0.8) if self.high_watermark is not None else 0

    def add(self, size: int) -> None:
        self.queued_bytes += size + MESSAGE_OVERHEAD
        if not self.blocked and self.high_watermark is not None and self.queued_bytes > self.high_watermark:
            self._set(True)

    def remove(self, size: int) -> None:
        self.queued_bytes -= size + MESSAGE_OVERHEAD
        if self.blocked and self.queued_bytes <= self.low_watermark:
            self._set(False)

    def _set(self, blocked: bool) -> None:
        self.blocked = blocked
        if self.on_change is not None:
            self.on_change(blocked)


def _not_started() -> int:
    raise OSError("the disk monitor was not started")


class DiskMonitor:
    """The disk alarm: raised while free space is below ``limit`` bytes (RabbitMQ's ``disk_free_limit``).

    ``start(limit, free_space)`` measures at once (a broker started on a full disk
    blocks its first publisher) and then re-measures on the scheduler.  Not
    alarmed, the next check is RabbitMQ's: in 2 x headroom / 250 MB/s, kept
    between 0.1 and 10 s, so it comes sooner as free space nears the limit;
    alarmed, every second.
    """

    def __init__(self, alarms: Alarms, scheduler: Scheduler) -> None:
        self._alarms = alarms
        self._scheduler = scheduler
        self._free_space: Callable[[], int] = _not_started  # set by start, before the first measurement
        self._timer: Timer | None = None
        self._failing = False
        self.limit = 0  # bytes; 0: disabled
        self.free: int | None = None  # bytes at the last check (None: never measured)

    @property
    def alarmed(self) -> bool:
        return DISK in self._alarms.active

    def start(self, limit: int, free_space: Callable[[], int]) -> None:
        """Check free space now and from then on (a new limit replaces the old); 0 disables the alarm."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.limit = limit
        self._free_space = free_space
        if limit > 0:
            log.debug("free disk space limit: %d bytes", limit)
            self._check(self._scheduler.clock())
        else:
            self._alarms.set(DISK, False)

    def _check(self, now: float) -> None:
        self._timer = self._scheduler.call_at(now + self._measure(), self._check)

    def _measure(self) -> float:
        """Update the alarm from one measurement; the seconds until the next one."""
        try:
            free = self._free_space()
        except OSError as error:  # the data dir vanished, a stale mount...: keep the last state, retry later
            if not self._failing:
                log.warning("cannot measure free disk space: %s", error)
            self._failing = True
            return DISK_CHECK_MAX_INTERVAL
        self._failing = False
        self.free = free
        alarmed = free < self.limit
        if alarmed != self.alarmed:  # RabbitMQ's log line
            log.warning(
                "Free disk space is %s. Free bytes: %d. Limit: %d",
                "insufficient" if alarmed else "sufficient",
                free,
                self.limit,
            )
            self._alarms.set(DISK, alarmed)
        if alarmed:
            return DISK_CHECK_ALARMED_INTERVAL
        ideal = 2 * (free - self.limit) / DISK_FAST_FILL_RATE
        return max(DISK_CHECK_MIN_INTERVAL, min(DISK_CHECK_MAX_INTERVAL, ideal))
