"""Delivery acknowledgement timeouts (RabbitMQ's ``consumer_timeout``), checked by sampling, never per delivery.

A delivery (basic.deliver to a consumer with acks, or basic.get-ok without
no-ack) left unacknowledged longer than the timeout closes its channel with 406
PRECONDITION_FAILED, which requeues the channel's unacked messages (redelivered).
The timeout is broker-wide (``Limits.consumer_timeout``, ms; 0 turns it off),
and a queue's ``x-consumer-timeout`` argument or ``consumer-timeout`` policy key
overrides it for deliveries from that queue (the lower of the two when both are
set, as RabbitMQ 3.12's ``args_policy_lookup`` with ``min``); a consumer's own
``x-consumer-timeout`` (a basic.consume argument) overrides both for its
deliveries, as in RabbitMQ (consumer, then queue, then broker).

The hot path reads no clock: delivery tags grow by one per delivery, so a check
that remembers each channel's ``next_delivery_tag`` at its time ``t`` knows that
every tag below it was delivered at or before ``t``.  A delivery whose tag is
below the tag sampled at a check at least ``timeout`` ago has timed out.  Checks
run every ``interval`` (a tenth of the broker's timeout, between 50 ms and 1 s),
so a delivery times out between ``timeout`` and ``timeout + 2 * interval`` after
it was sent — never early; RabbitMQ checks on a periodic channel tick, as coarse.
The timer runs only while some channel has unacked deliveries or a consumer with
acks (``wake`` is called at such a basic.consume and at each basic.get with acks);
a check costs one look at each open channel, and walks the unacked deliveries of
a channel only up to those sampled at the last check.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import delivery_ack_timeout
from .scheduler import Scheduler, Timer

if TYPE_CHECKING:
    from .delivery import Source

MIN_INTERVAL = 0.05  # s: the check interval's bounds (a tenth of the timeout in between)
MAX_INTERVAL = 1.0


def queue_timeout(queue: Source, default: int) -> int:
    """The timeout (ms, 0: none) for deliveries from ``queue``: its own (argument or policy) or the broker's."""
    options = getattr(queue, "options", None)
    own = getattr(options, "consumer_timeout", None)
    return default if own is None else own


class Samples:
    """One channel's checks: (time, next_delivery_tag) pairs, oldest first, one per tag value."""

    __slots__ = ("checks",)

    def __init__(self) -> None:
        self.checks: deque[tuple[float, int]] = deque()

    def record(self, now: float, next_tag: int, oldest_tag: int) -> None:
        checks = self.checks
        while len(checks) > 1 and checks[1][1] <= oldest_tag:
            checks.popleft()  # says nothing the next one does not about deliveries still unacked
        if not checks or checks[-1][1] != next_tag:
            checks.append((now, next_tag))

    def threshold(self, sent_before: float) -> int:
        """The tag below which every delivery was sent at or before ``sent_before`` (1: none known)."""
        tag = 1
        for when, next_tag in self.checks:
            if when > sent_before:
                break
            tag = next_tag
        return tag


class ConsumerTimeouts:
    """The broker's acknowledgement-timeout checker: a scheduler timer over every open channel."""

    def __init__(self, scheduler: Scheduler, timeout_ms: int, channels: Callable[[], Iterable[Any]]) -> None:
        self._scheduler = scheduler
        self.timeout_ms = timeout_ms
        self._channels = channels  # every open core.Channel
        self.interval = min(max(timeout_ms / 10000, MIN_INTERVAL), MAX_INTERVAL) if timeout_ms else MAX_INTERVAL
        self._timer: Timer | None = None
        self._samples: dict[Any, Samples] = {}  # channel → its checks, while it has unacked deliveries

    def wake(self) -> None:
        """A delivery needing an ack may follow: make sure the checks run (cheap when they do already)."""
        if self._timer is None:
            self._timer = self._scheduler.call_at(self._scheduler.clock() + self.interval, self._check)

    def _check(self, now: float) -> None:
        self._timer = None
        samples, self._samples = self._samples, {}
        needed = False
        for channel in list(self._channels()):
            unacked = channel.unacked
            if not unacked or channel.state.value != "open":
                needed = needed or any(not consumer.no_ack for consumer in channel.consumers.values())
                continue
            needed = True
            sampled = samples.get(channel) or Samples()
            timed_out = self._timed_out(sampled, unacked, now)
            if timed_out:
                channel.close_with_error(delivery_ack_timeout(channel.channel_id, timed_out))
                continue
            sampled.record(now, channel.next_delivery_tag, next(iter(unacked)))
            self._samples[channel] = sampled
        if needed:
            self._timer = self._scheduler.call_at(now + self.interval, self._check)

    def _timed_out(self, sampled: Samples, unacked: Any, now: float) -> int:
        """The timeout (ms) of the oldest delivery of the channel past it, or 0."""
        if not sampled.checks:
            return 0
        newest = sampled.checks[-1][1]
        thresholds: dict[int, int] = {}
        for tag, item in unacked.items():
            if tag >= newest:
                break  # sent after the last check: too recent to have timed out
            own = item.consumer.timeout if item.consumer is not None else None
            timeout = queue_timeout(item.queue, self.timeout_ms) if own is None else own
            if not timeout:
                continue
            threshold = thresholds.get(timeout)
            if threshold is None:
                threshold = thresholds[timeout] = sampled.threshold(now - timeout / 1000)
            if tag < threshold:
                return timeout
        return 0
