"""Rates from periodic samples: the arithmetic behind RabbitMQ's ``*_details`` objects.

Counters are cumulative integers (messages published, bytes received) or gauges (queue
lengths).  ``Series`` keeps one object's samples of one group of them: (timestamp, values)
pairs, appended only when the values changed, so an idle object costs one entry.  A value
at any instant is the last sample at or before it (zeros before the object existed).

RabbitMQ's two ways of reading a series back (``rabbit_mgmt_stats``):

- no range (a plain GET): the count, and ``{"rate": r}`` where r is the difference of
  the last two samples over their interval, per second; 0.0 when the last sample is
  older than one interval (the sampler stalled).  An object newer than the sample before
  counts from zero there (every counter starts at 0 with its object), where RabbitMQ shows
  0.0 until its second sample: a queue loaded as soon as it is declared shows its rate at once;
- a ``Range`` (``?msg_rates_age=60&msg_rates_incr=5``): points from ``last`` back to
  ``first`` every ``incr`` ms, newest first, as ``samples``; the count is the newest point,
  ``rate`` the difference of the newest two over ``incr``; with more than one point also
  ``avg_rate`` (newest minus oldest over the span) and ``avg`` (the mean of the points).

Everything here is plain data and arithmetic: the sampler (``stats_sampler``) decides
what to sample and when.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INTERVAL_MS = 5000  # RabbitMQ's collect_statistics_interval
RETENTION_MS = 605_000  # RabbitMQ's first "basic" retention policy: 5 s samples for ten minutes
MAX_RANGE = 500  # most points a range may ask for (RabbitMQ's ?MAX_RANGE)

# The groups RabbitMQ samples together, in its order (rabbit_mgmt_stats:format_rate/3).
FINE = ("publish", "confirm", "return_unroutable", "drop_unroutable")  # channel_stats_fine_stats
DELIVER = ("get", "get_no_ack", "deliver", "deliver_no_ack", "redeliver", "ack", "deliver_get", "get_empty")
QUEUE_PUBLISH = ("publish",)  # queue_stats_publish
PUBLISH_IN = ("publish_in",)  # exchange_stats_publish_in
PUBLISH_OUT = ("publish_out",)  # exchange_stats_publish_out
LENGTHS = ("messages_ready", "messages_unacknowledged", "messages")  # queue_msg_stats
DATA = ("recv_oct", "send_oct")  # connection_stats_coarse_conn_stats (without reductions)
DISK = ("disk_reads", "disk_writes")  # vhost_msg_rates: this broker counts none
CHURN = (
    "connection_created",
    "connection_closed",
    "channel_created",
    "channel_closed",
    "queue_declared",
    "queue_created",
    "queue_deleted",
)  # connection_churn_rates

Values = tuple[int, ...]


class Series:
    """One object's samples of one group of counters, for the last ``RETENTION_MS``."""

    __slots__ = ("since", "times", "values")

    def __init__(self, since: int) -> None:
        self.since = since  # the first sample's timestamp: before it the object did not exist
        self.times: list[int] = []
        self.values: list[Values] = []

    def add(self, timestamp: int, values: Values) -> bool:
        """Record ``values`` as sampled at ``timestamp``; True if they changed since the last sample."""
        if self.values and self.values[-1] == values:
            return False
        self.times.append(timestamp)
        self.values.append(values)
        return True

    def at(self, timestamp: int, width: int) -> Values:
        """The values at ``timestamp``: the last sample at or before it; zeros before the first."""
        index = bisect.bisect_right(self.times, timestamp)
        return self.values[index - 1] if index else (0,) * width

    def prune(self, oldest: int) -> None:
        """Forget samples older than ``oldest``, keeping the one that still gives the value at ``oldest``."""
        times = self.times
        if len(times) < 2 or times[1] > oldest:
            return
        index = bisect.bisect_right(times, oldest) - 1
        if index > 0:
            del self.times[:index]
            del self.values[:index]


@dataclass(frozen=True)
class Ticks:
    """When the sampler last ran: ``last`` and ``previous`` sample timestamps (ms), and now."""

    now: int
    last: int | None = None
    previous: int | None = None


class RangeError(ValueError):
    """Bad ``*_age``/``*_incr`` parameters: the HTTP layer answers 400 with this text."""


@dataclass(frozen=True)
class Range:
    """The points a ``*_age``/``*_incr`` pair asks for, in ms: ``last``, ``last - incr``, ... ``first``."""

    first: int
    last: int
    incr: int

    def points(self) -> range:
        return range(self.last, self.first - 1, -self.incr)


_INTEGER = re.compile(r"[+-]?[0-9]+")  # what Erlang's list_to_integer accepts


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and _INTEGER.fullmatch(text) else None


def parse_range(params: Mapping[str, str], prefix: str, now: int, ceil: bool = False) -> Range | None:
    """The range ``{prefix}_age``/``{prefix}_incr`` ask for (seconds), or None if either is missing or not a number.

    As ``rabbit_mgmt_util:range/3``: the newest point is ``now`` rounded down to a multiple of
    the increment (up with ``ceil``, which RabbitMQ uses for a single queue's lengths).
    """
    age, incr = _integer(params.get(prefix + "_age")), _integer(params.get(prefix + "_incr"))
    if age is None or incr is None:
        return None
    if not (age > 0 and incr > 0 and age // incr <= MAX_RANGE):
        raise RangeError(f"Invalid range parameters: age {age}, incr {incr}")
    incr_ms = incr * 1000
    last = now // incr_ms * incr_ms
    if ceil and last != now:
        last += incr_ms
    return Range(last - age * 1000, last, incr_ms)


@dataclass(frozen=True)
class Ranges:
    """The three families of ranges a request may ask for (RabbitMQ's ``lengths``, ``msg_rates``, ``data_rates``)."""

    lengths: Range | None = None
    msg_rates: Range | None = None
    data_rates: Range | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], now: int, ceil_lengths: bool = False) -> Ranges:
        """From a request's query parameters; raises ``RangeError`` for a bad pair."""
        return cls(
            parse_range(params, "lengths", now, ceil_lengths),
            parse_range(params, "msg_rates", now),
            parse_range(params, "data_rates", now),
        )


NO_RANGES = Ranges()


def instant_rates(series: Series | None, width: int, ticks: Ticks) -> list[float]:
    """Per-second rates over the last sample interval (``rabbit_mgmt_stats:format_no_range``)."""
    last, previous = ticks.last, ticks.previous
    if (
        series is None
        or last is None
        or previous is None
        or last < ticks.now // INTERVAL_MS * INTERVAL_MS - INTERVAL_MS  # not live
    ):
        return [0.0] * width
    newer, older = series.at(last, width), series.at(previous, width)
    span = last - previous
    return [(a - b) * 1000 / span for a, b in zip(newer, older, strict=True)]


def put_group(
    out: dict[str, Any],
    keys: Sequence[str],
    totals: Values,
    series: Series | None,
    ticks: Ticks,
    window: Range | None,
) -> None:
    """Add ``key: count`` and ``key_details: {...}`` for each key of a group to ``out``.

    Without a range the counts are ``totals`` (read from the objects now: fresher than
    RabbitMQ's, which are the last sample's); with one, the newest point, as RabbitMQ.
    """
    width = len(keys)
    if window is None:
        for key, total, rate in zip(keys, totals, instant_rates(series, width, ticks), strict=True):
            out[key] = total
            out[key + "_details"] = {"rate": rate}
        return
    stamps = list(window.points())
    points = [series.at(stamp, width) if series is not None else (0,) * width for stamp in stamps]
    length = len(points)
    for i, key in enumerate(keys):
        column = [point[i] for point in points]
        details: dict[str, Any] = {
            "rate": (column[0] - column[1]) * 1000 / window.incr if length > 1 else 0.0,
            "samples": [{"sample": value, "timestamp": stamp} for value, stamp in zip(column, stamps, strict=True)],
        }
        if length > 1:
            details["avg_rate"] = (column[0] - column[-1]) * 1000 / (stamps[0] - stamps[-1])
            details["avg"] = sum(column) / length
        out[key] = column[0]
        out[key + "_details"] = details


def add(totals: Values, more: Values) -> Values:
    return tuple(a + b for a, b in zip(totals, more, strict=True))


def merged(parts: Sequence[Series]) -> Series:
    """The series of the sums of ``parts`` (a management user's overview: the sum of its vhosts')."""
    width = len(parts[0].values[0]) if parts and parts[0].values else 0
    total = Series(min((part.since for part in parts), default=0))
    for timestamp in sorted({stamp for part in parts for stamp in part.times}):
        values = (0,) * width
        for part in parts:
            values = add(values, part.at(timestamp, width))
        total.add(timestamp, values)
    return total
