"""When a queued message expires: per-message and per-queue TTLs, on the scheduler's clock.

RabbitMQ's rule: the smaller of the queue's ``x-message-ttl`` (or policy) and the
message's own ``expiration`` applies, counted from when it was enqueued.  A stored
message keeps its expiry as wall-clock time, so after a restart it expires when it
would have without one (the TTL counts the downtime too, as RabbitMQ's does).
"""

from __future__ import annotations

from collections.abc import Callable

from .message import Message


def expiry_for(queue_ttl: int | None, message: Message | None, now: float) -> float | None:
    """When a message enqueued at ``now`` expires (milliseconds TTLs, seconds clock).

    ``message`` None (still on disk): only the queue's TTL is known.
    """
    ttls = [ttl for ttl in (queue_ttl, message.ttl if message is not None else None) if ttl is not None]
    return now + min(ttls) / 1000 if ttls else None


def recovered_expiry(
    queue_ttl: int | None,
    message: Message | None,
    stored: float | None,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
) -> float | None:
    """A recovered message's expiry on the scheduler's ``clock``, from the ``wall_clock`` expiry it was stored
    with.  The clocks are read only when there is an expiry (recovery calls this once per message).

    A record without one that would have a TTL here was written before expiries were stored: its
    publish time is unknown, so its TTL counts from the restart.
    """
    if stored is not None:
        return clock() + (stored - wall_clock())
    if queue_ttl is None and (message is None or message.ttl is None):
        return None
    return expiry_for(queue_ttl, message, clock())
