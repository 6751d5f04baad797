"""Broker-wide event counts behind RabbitMQ's Prometheus ``*_total`` counters.

Object churn (connections and channels opened and closed, queues declared, created
and deleted) and login attempts are counted here, once per event: those are not per-message work.
Message counts live on each channel as plain integers (``Channel.stat_*``, bumped
where the channel already handles the message) and are read at scrape time; when a
channel goes away its counts are added to ``retired`` so that the broker-wide totals
never go down (a Prometheus counter that drops reads as a reset and a false spike).

The management API's statistics (``core/stats_sampler.py``) read the same counts, and
need them per vhost: ``retired_by_vhost`` keeps what closed channels counted and what
closed connections sent and received, by the vhost they were open on.
"""

from __future__ import annotations

import bisect
from typing import Any

# Upper bounds (bytes) of the message size histogram: RabbitMQ's (rabbit_msg_size_metrics); one more takes the rest.
SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000, 100_000_000)
SMALLEST_BUCKET = SIZE_BUCKETS[0]  # the common case, tested inline before calling ``bucket_of``


def bucket_of(size: int) -> int:
    """The index of the histogram bucket a body of ``size`` bytes falls in (``len(SIZE_BUCKETS)``: above them all)."""
    return bisect.bisect_left(SIZE_BUCKETS, size)


# The per-channel message counts, as ``channel_counts`` returns them (and ``retired`` sums them).
CHANNEL_COUNTS = (
    "publish",  # basic.publish received
    "publish_bytes",  # their body bytes
    "return_unroutable",  # mandatory, routed nowhere: basic.return
    "drop_unroutable",  # not mandatory, routed nowhere: dropped
    "confirm_publish",  # received on a channel in confirm mode
    "confirm",  # confirmed to the publisher (basic.ack)
    "deliveries",  # delivery tags given: basic.deliver and basic.get-ok
    "get",  # basic.get-ok, manual ack
    "get_no_ack",  # basic.get-ok, automatic ack
    "get_empty",  # basic.get-empty
    "deliver_no_ack",  # basic.deliver, automatic ack
    "redeliver",  # deliveries flagged redelivered
    "ack",  # deliveries acknowledged
)


def channel_counts(channel: Any) -> dict[str, int]:
    """One channel's message counts (``CHANNEL_COUNTS``), from its ``stat_*`` integers and confirm sequence."""
    confirms = channel.confirms
    return {
        "publish": sum(channel.stat_sizes),  # the size histogram counts each basic.publish once
        "publish_bytes": channel.stat_publish_bytes,
        "return_unroutable": channel.stat_return_unroutable,
        "drop_unroutable": channel.stat_drop_unroutable,
        "confirm_publish": confirms.published if confirms is not None else 0,
        "confirm": confirms.acked - channel.stat_nack if confirms is not None else 0,
        "deliveries": channel.next_delivery_tag - 1,  # each basic.deliver and get-ok took a tag
        "get": channel.stat_get,
        "get_no_ack": channel.stat_get_no_ack,
        "get_empty": channel.stat_get_empty,
        "deliver_no_ack": channel.stat_deliver_no_ack,
        "redeliver": channel.stat_redeliver,
        "ack": channel.stat_ack,
    }


# the churn and login counts: the Counters fields a snapshot copies as they are
CHURN = (
    "connections_opened",
    "connections_closed",
    "channels_opened",
    "channels_closed",
    "queues_declared",
    "queues_created",
    "queues_deleted",
    "auth_attempts",
    "auth_failed",
)


class Counters:
    """Plain integer counts of one broker, bumped where the events happen (see the module docstring)."""

    __slots__ = (
        *CHURN,
        "retired",
        "retired_sizes",
        "retired_by_vhost",
    )

    def __init__(self) -> None:
        self.connections_opened = 0  # reached connection.open-ok
        self.connections_closed = 0  # of those, finished
        self.channels_opened = 0
        self.channels_closed = 0
        self.queues_declared = 0  # queue.declare (not passive), whether or not it created the queue
        self.queues_created = 0
        self.queues_deleted = 0
        self.auth_attempts = 0  # connection.start-ok with credentials that could be parsed
        self.auth_failed = 0  # of those, refused
        self.retired = dict.fromkeys(CHANNEL_COUNTS, 0)  # the message counts of channels that closed
        self.retired_sizes = [0] * (len(SIZE_BUCKETS) + 1)  # and their size histograms
        # per vhost: closed channels' counts (CHANNEL_COUNTS) and closed connections' "recv_oct"/"send_oct"
        self.retired_by_vhost: dict[str, dict[str, int]] = {}

    def channel_closed(self, channel: Any) -> None:
        """``channel`` is gone: count it, and keep its message counts in ``retired``."""
        self.channels_closed += 1
        retired, by_vhost = self.retired, self._retired_of(channel.connection.vhost.name)
        for name, value in channel_counts(channel).items():
            retired[name] += value
            by_vhost[name] = by_vhost.get(name, 0) + value
        for index, count in enumerate(channel.stat_sizes):
            self.retired_sizes[index] += count

    def connection_closed(self, connection: Any) -> None:
        """``connection`` (counted in ``connections_opened``) is gone: count it, and keep its octets."""
        self.connections_closed += 1
        by_vhost = self._retired_of(connection.vhost.name)
        by_vhost["recv_oct"] = by_vhost.get("recv_oct", 0) + connection.recv_oct
        by_vhost["send_oct"] = by_vhost.get("send_oct", 0) + connection.send_oct

    def _retired_of(self, vhost: str) -> dict[str, int]:
        found = self.retired_by_vhost.get(vhost)
        if found is None:
            found = self.retired_by_vhost[vhost] = {}
        return found
