"""The statistics sampler and the views the management API reads: RabbitMQ-shaped dicts per object.

The hot path only bumps plain integer attributes on objects it already touches (a
channel's ``stat_*``, read through ``counters.channel_counts``; a queue's ``counters``; an
exchange's ``stat_publish_in/out``; a connection's ``recv_oct``...); ``_read`` and the
helpers above it are the one place here that knows those names.  Everything else happens off the hot path:

- every ``INTERVAL_MS`` (RabbitMQ's collect_statistics_interval, on the wall clock's
  5 s grid) the scheduler runs ``tick``: each queue, exchange, channel and connection has
  its counters read into its ``Series``, and each vhost's sums into the vhost's (and the
  broker's) own series, from which rates come;
- a vhost's (and so the overview's) message_stats are the sums over its channels and
  connections, including those that closed: ``core/counters.Counters`` keeps what each
  closed one counted by vhost (``retired_by_vhost``, the same counts Prometheus reads), so
  a channel that lived less than one interval still counts;
- unacknowledged messages are counted per queue from the channels that hold them
  (``Census``), once per tick and once per view, never on the hot path.

``view(ranges)`` gives a ``View``: one census and one refresh, then a dict per object.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from .counters import CHANNEL_COUNTS, channel_counts
from .scheduler import Scheduler, Timer
from .stats import (
    CHURN,
    DATA,
    DELIVER,
    DISK,
    FINE,
    INTERVAL_MS,
    LENGTHS,
    NO_RANGES,
    PUBLISH_IN,
    PUBLISH_OUT,
    QUEUE_PUBLISH,
    RETENTION_MS,
    Range,
    Ranges,
    Series,
    Ticks,
    Values,
    add,
    merged,
    put_group,
)


class StatsHost(Protocol):
    """The broker as the sampler sees it (a Protocol: ``broker`` imports this module)."""

    vhosts: dict[str, Any]
    connections: set[Any]
    scheduler: Scheduler
    counters: Any  # core.counters.Counters: churn, and what closed channels and connections counted

    def wall_clock(self) -> float: ...


_LISTED = frozenset(("OPEN", "CLOSING"))  # connection states RabbitMQ lists (by name: no import of connection)
CAPACITY_SAMPLES = 12  # consumer_utilisation averages this many samples (a minute)


# ------------------------------------------------------------------ reading the counters


def _fine_of(counts: dict[str, int]) -> Values:
    """The publish-side group (FINE) from ``counters.channel_counts``."""
    return (counts["publish"], counts["confirm"], counts["return_unroutable"], counts["drop_unroutable"])


def _deliver_group(get: int, get_no_ack: int, deliver: int, deliver_no_ack: int, rest: tuple[int, int, int]) -> Values:
    redeliver, ack, get_empty = rest
    return (
        get,
        get_no_ack,
        deliver,
        deliver_no_ack,
        redeliver,
        ack,
        get + get_no_ack + deliver + deliver_no_ack,
        get_empty,
    )


def _deliver_of(counts: dict[str, int]) -> Values:
    """The deliver-side group (DELIVER) from ``counters.channel_counts``: every delivery and get-ok takes a
    delivery tag, so the deliveries with ack are what the tags leave over."""
    get, get_no_ack, deliver_no_ack = counts["get"], counts["get_no_ack"], counts["deliver_no_ack"]
    deliver = counts["deliveries"] - get - get_no_ack - deliver_no_ack
    rest = (counts["redeliver"], counts["ack"], counts["get_empty"])
    return _deliver_group(get, get_no_ack, deliver, deliver_no_ack, rest)


def _channel_groups(channel: Any) -> tuple[Values, Values]:
    counts = channel_counts(channel)
    return _fine_of(counts), _deliver_of(counts)


def _churn_of(counters: Any) -> Values:
    """RabbitMQ's churn_rates (CHURN, in its order) from the broker's ``Counters``."""
    return (
        counters.connections_opened,
        counters.connections_closed,
        counters.channels_opened,
        counters.channels_closed,
        counters.queues_declared,
        counters.queues_created,
        counters.queues_deleted,
    )


def _retired(counters: Any, vhost: str) -> _Totals:
    """What ``vhost``'s closed channels and connections counted (``Counters.retired_by_vhost``)."""
    totals = _Totals()
    counts = counters.retired_by_vhost.get(vhost)
    if counts:
        full = dict.fromkeys(CHANNEL_COUNTS, 0) | counts
        totals.fine, totals.deliver = _fine_of(full), _deliver_of(full)
        totals.data = (counts.get("recv_oct", 0), counts.get("send_oct", 0))
    return totals


def _read_queue_deliver(queue: Any) -> Values:
    counters = queue.counters
    rest = (counters.redeliver, counters.ack, counters.get_empty)
    deliver, deliver_no_ack = counters.delivered[0], counters.delivered_no_ack[0]
    return _deliver_group(counters.get, counters.get_no_ack, deliver, deliver_no_ack, rest)


def _read_connection_data(connection: Any) -> Values:
    return (connection.recv_oct, connection.send_oct)


class Census:
    """Unacknowledged deliveries per queue (count, body bytes), counted from the channels that hold them."""

    def __init__(self, channels: Iterable[Any]) -> None:
        self.unacked: dict[Any, list[int]] = {}
        for channel in channels:
            for item in channel.unacked.values():
                counts = self.unacked.get(item.queue)
                if counts is None:
                    counts = self.unacked[item.queue] = [0, 0]
                counts[0] += 1
                counts[1] += item.entry.body_size

    def lengths(self, queue: Any) -> Values:
        if queue.options.queue_type == "stream":  # its log, all "ready": RabbitMQ 3.10 counts no unacked there
            length = len(queue.log)
            return (length, 0, length)
        ready = queue.message_count  # expired heads go first, as they would have by now in RabbitMQ
        unacked = self.unacked.get(queue, (0, 0))[0]
        return (ready, unacked, ready + unacked)

    def unacked_bytes(self, queue: Any) -> int:
        return self.unacked.get(queue, (0, 0))[1]


# ------------------------------------------------------------------ what is sampled


QUEUE, EXCHANGE, CHANNEL, CONNECTION = "queue", "exchange", "channel", "connection"
STREAM_HIDES = (
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "consumer_utilisation",
    "consumer_capacity",
    "idle_since",
)

_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    QUEUE: (QUEUE_PUBLISH, DELIVER, LENGTHS),
    EXCHANGE: (PUBLISH_IN, PUBLISH_OUT),
    CHANNEL: (FINE, DELIVER),
    CONNECTION: (DATA,),
}


def _read(kind: str, subject: Any, census: Census) -> tuple[Values, ...]:
    """The values of each of ``kind``'s groups (``_GROUPS[kind]``), read from ``subject`` now."""
    if kind == QUEUE:
        return ((subject.counters.publish,), _read_queue_deliver(subject), census.lengths(subject))
    if kind == EXCHANGE:
        return ((subject.stat_publish_in,), (subject.stat_publish_out,))
    if kind == CHANNEL:
        return _channel_groups(subject)
    return (_read_connection_data(subject),)


class _Track:
    """One sampled object: its series (one per group, made at its first tick) and when it last changed."""

    __slots__ = ("subject", "kind", "vhost", "series", "changed", "capacity")

    def __init__(self, subject: Any, kind: str, vhost: str, now: int) -> None:
        self.subject = subject
        self.kind = kind
        self.vhost = vhost
        self.series: list[Series] = []
        self.changed = now  # wall ms of the last tick that saw a counter move (or of discovery)
        self.capacity: deque[float] = deque(maxlen=CAPACITY_SAMPLES)

    def sample(self, timestamp: int, census: Census) -> tuple[Values, ...]:
        values = _read(self.kind, self.subject, census)
        series = self.series
        if not series:
            series = self.series = [Series(timestamp) for _ in values]
        changed = False
        for one, value in zip(series, values, strict=True):
            if one.add(timestamp, value):
                changed = True
        if changed:  # a series grows only when it changes: only then can it need pruning
            self.changed = timestamp
            for one in series:
                one.prune(timestamp - RETENTION_MS)
        return values


class _Totals:
    """A vhost's (or the broker's) sums: the message_stats groups, octets and queue lengths."""

    __slots__ = ("fine", "deliver", "data", "lengths")

    def __init__(self) -> None:
        self.fine: Values = (0,) * len(FINE)
        self.deliver: Values = (0,) * len(DELIVER)
        self.data: Values = (0,) * len(DATA)
        self.lengths: Values = (0,) * len(LENGTHS)

    def add_channel(self, fine: Values, deliver: Values) -> None:
        self.fine = add(self.fine, fine)
        self.deliver = add(self.deliver, deliver)

    def add_totals(self, other: _Totals) -> None:
        self.add_channel(other.fine, other.deliver)
        self.data = add(self.data, other.data)
        self.lengths = add(self.lengths, other.lengths)

    def copy(self) -> _Totals:
        totals = _Totals()
        totals.add_totals(self)
        return totals

    def groups(self) -> tuple[Values, Values, Values, Values]:
        return (self.fine, self.deliver, self.data, self.lengths)


def _sample_totals(series: list[Series] | None, timestamp: int, totals: _Totals) -> list[Series]:
    """Add one sample of ``totals`` to ``series`` (fine, deliver, data, lengths), made at the first call."""
    if series is None:
        series = [Series(timestamp) for _ in range(4)]
    oldest = timestamp - RETENTION_MS
    for one, values in zip(series, totals.groups(), strict=True):
        one.add(timestamp, values)
        one.prune(oldest)
    return series


# ------------------------------------------------------------------ the sampler


class Sampler:
    """Samples every object of a broker every ``INTERVAL_MS`` (once ``start``ed) and makes ``View``s."""

    def __init__(self, broker: StatsHost) -> None:
        self._broker = broker
        self._tracks: dict[Any, _Track] = {}
        self._vhost_series: dict[str, list[Series]] = {}  # per vhost: fine, deliver, data, lengths
        self._overview_series: list[Series] | None = None
        self._churn_series: Series | None = None
        self.last: int | None = None  # the last tick's timestamp (wall ms, on the 5 s grid)
        self.previous: int | None = None
        self._timer: Timer | None = None

    def _wall_ms(self) -> int:
        return int(self._broker.wall_clock() * 1000)

    def start(self) -> None:
        """Sample now and then on the broker's scheduler, on the wall clock's 5 s grid (as RabbitMQ's stamps are).

        The first sample is the baseline the first interval's rates are measured from.
        """
        if self._timer is None:
            self.tick(self._wall_ms() // INTERVAL_MS * INTERVAL_MS)
            self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        scheduler = self._broker.scheduler
        delay = (INTERVAL_MS - self._wall_ms() % INTERVAL_MS) / 1000 + 0.001
        self._timer = scheduler.call_at(scheduler.clock() + delay, self._on_timer)

    def _on_timer(self, now: float) -> None:
        try:
            self.tick(self._wall_ms() // INTERVAL_MS * INTERVAL_MS)
        finally:
            self._arm()

    # ------------------------------------------------------------ membership

    def _live(self) -> Iterator[tuple[Any, str, str]]:
        """(object, kind, vhost name) for every object to sample."""
        for vhost in self._broker.vhosts.values():
            for queue in vhost.queues.values():
                yield queue, QUEUE, vhost.name
            for exchange in vhost.exchanges.values():
                yield exchange, EXCHANGE, vhost.name
        for connection in self._broker.connections:
            if connection.state.name in _LISTED:
                name = connection.vhost.name
                yield connection, CONNECTION, name
                for channel in connection.channels.values():
                    yield channel, CHANNEL, name

    def _refresh(self) -> None:
        """Track new objects, forget gone ones (deleted queues and exchanges; closed channels went already)."""
        now = self._wall_ms()
        tracks = self._tracks
        live = set()
        for subject, kind, vhost in self._live():
            live.add(subject)
            if subject not in tracks:
                tracks[subject] = _Track(subject, kind, vhost, now)
        if len(live) != len(tracks):
            for subject in [subject for subject in tracks if subject not in live]:
                del tracks[subject]

    def _channels(self) -> Iterator[Any]:
        return (track.subject for track in self._tracks.values() if track.kind == CHANNEL)

    # ------------------------------------------------------------ sampling

    def tick(self, timestamp: int) -> None:
        """Take one sample of everything, stamped ``timestamp`` (wall ms)."""
        if self.last is not None and timestamp <= self.last:
            return  # the timer fired twice in one slot of the grid
        self._refresh()
        census = Census(self._channels())
        counters = self._broker.counters
        vhosts = {name: _retired(counters, name) for name in self._broker.vhosts}
        lengths = {name: [0, 0] for name in vhosts}  # ready, unacked: summed in place (no tuple per queue)
        for track in self._tracks.values():
            values = track.sample(timestamp, census)
            totals = vhosts.get(track.vhost)
            if totals is None:
                continue
            kind = track.kind
            if kind == QUEUE:
                ready, unacked, _ = values[2]
                summed = lengths[track.vhost]
                summed[0] += ready
                summed[1] += unacked
                if track.subject.consumers:
                    track.capacity.append(_capacity(track.subject.consumers, ready))
            elif kind == CHANNEL:
                totals.add_channel(values[0], values[1])
            elif kind == CONNECTION:
                totals.data = add(totals.data, values[0])
        overview = _Totals()
        for name, totals in vhosts.items():
            ready, unacked = lengths[name]
            totals.lengths = (ready, unacked, ready + unacked)
            self._vhost_series[name] = _sample_totals(self._vhost_series.get(name), timestamp, totals)
            overview.add_totals(totals)
        for name in [name for name in self._vhost_series if name not in vhosts]:
            del self._vhost_series[name]
        self._overview_series = _sample_totals(self._overview_series, timestamp, overview)
        if self._churn_series is None:
            self._churn_series = Series(timestamp)
        self._churn_series.add(timestamp, _churn_of(counters))
        self._churn_series.prune(timestamp - RETENTION_MS)
        self.previous, self.last = self.last, timestamp

    def view(self, ranges: Ranges = NO_RANGES) -> View:
        """What the management API shows now, with ``ranges`` (from the request's query) for the details."""
        self._refresh()
        return View(self, ranges)


def _capacity(consumers: Iterable[Any], ready: int) -> float:
    """1.0 if the queue could hand a message to a consumer now (RabbitMQ's consumer capacity, sampled)."""
    return 1.0 if not ready or any(consumer.has_credit() for consumer in consumers) else 0.0


def _timestamp_text(ms: int) -> str:
    """RabbitMQ's ``idle_since`` format: ``2026-12-02T00:31:36.577+00:00``."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------ views


class View:
    """RabbitMQ-shaped statistics of a broker's objects at one moment (``Sampler.view``)."""

    def __init__(self, sampler: Sampler, ranges: Ranges) -> None:
        self._sampler = sampler
        self._ranges = ranges
        self._ticks = Ticks(sampler._wall_ms(), sampler.last, sampler.previous)
        self._census = Census(sampler._channels())
        self._vhost_totals: dict[str, _Totals] | None = None

    def _series(self, subject: Any, kind: str) -> list[Series | None]:
        track = self._sampler._tracks.get(subject)
        if track is None or not track.series:
            return [None] * len(_GROUPS[kind])
        return list(track.series)

    def _put(
        self, out: dict[str, Any], keys: tuple[str, ...], totals: Values, series: Series | None, window: Range | None
    ) -> None:
        put_group(out, keys, totals, series, self._ticks, window)

    def _message_stats(self, groups: Iterable[tuple[tuple[str, ...], Values, Series | None]]) -> dict[str, Any]:
        """A message_stats dict: each group that ever counted something (RabbitMQ omits the others)."""
        out: dict[str, Any] = {}
        for keys, totals, series in groups:
            if any(totals):
                self._put(out, keys, totals, series, self._ranges.msg_rates)
        return out

    def _idle_since(self, subject: Any) -> dict[str, str]:
        track = self._sampler._tracks.get(subject)
        last = self._ticks.last
        if track is None or last is None or track.changed >= last:
            return {}
        return {"idle_since": _timestamp_text(track.changed)}

    def queue(self, queue: Any) -> dict[str, Any]:
        """A queue's message_stats, lengths with rates, bytes, consumers and utilisation, idle_since, state."""
        publish, deliver, lengths = self._series(queue, QUEUE)
        out: dict[str, Any] = {}
        published, ready_bytes = queue.counters.publish, queue.ready_bytes
        stats = self._message_stats(
            ((QUEUE_PUBLISH, (published,), publish), (DELIVER, _read_queue_deliver(queue), deliver))
        )
        if stats:
            out["message_stats"] = stats
        counts = self._census.lengths(queue)
        self._put(out, LENGTHS, counts, lengths, self._ranges.lengths)
        ready = counts[0]
        unacked_bytes = self._census.unacked_bytes(queue)
        out["message_bytes"] = ready_bytes + unacked_bytes
        out["message_bytes_ready"] = ready_bytes
        out["message_bytes_unacknowledged"] = unacked_bytes
        consumers = queue.consumers
        out["consumers"] = len(consumers)
        utilisation: float = 0
        if consumers:
            track = self._sampler._tracks.get(queue)
            samples = [*(track.capacity if track is not None else ()), _capacity(consumers, ready)]
            utilisation = sum(samples) / len(samples)
        out["consumer_utilisation"] = out["consumer_capacity"] = utilisation
        out.update(self._idle_since(queue))
        out["state"] = "running"
        if queue.options.queue_type == "stream":  # RabbitMQ 3.10 shows none of these for a stream
            for key in STREAM_HIDES:
                out.pop(key, None)
        return out

    def exchange(self, exchange: Any) -> dict[str, Any]:
        """An exchange's message_stats (publish_in, publish_out), or nothing if it never routed a message."""
        publish_in, publish_out = self._series(exchange, EXCHANGE)
        stats = self._message_stats(
            (
                (PUBLISH_IN, (exchange.stat_publish_in,), publish_in),
                (PUBLISH_OUT, (exchange.stat_publish_out,), publish_out),
            )
        )
        return {"message_stats": stats} if stats else {}

    def channel(self, channel: Any) -> dict[str, Any]:
        """A channel's message_stats (publish side and deliver side) and idle_since."""
        fine, deliver = self._series(channel, CHANNEL)
        out: dict[str, Any] = {}
        fine_now, deliver_now = _channel_groups(channel)
        stats = self._message_stats(((FINE, fine_now, fine), (DELIVER, deliver_now, deliver)))
        if stats:
            out["message_stats"] = stats
        out.update(self._idle_since(channel))
        return out

    def connection(self, connection: Any) -> dict[str, Any]:
        """A connection's octets and packets in and out, with rates for the octets."""
        (data,) = self._series(connection, CONNECTION)
        out: dict[str, Any] = {}
        self._put(out, DATA, _read_connection_data(connection), data, self._ranges.data_rates)
        out["recv_cnt"] = connection.recv_cnt
        out["send_cnt"] = connection.send_cnt
        out["send_pend"] = 0
        return out

    # ------------------------------------------------------------ aggregates

    def _totals(self) -> dict[str, _Totals]:
        """Every vhost's sums now: retired + live channels and connections, and its queues' lengths."""
        if self._vhost_totals is None:
            sampler = self._sampler
            totals = {name: _retired(sampler._broker.counters, name) for name in sampler._broker.vhosts}
            for track in sampler._tracks.values():
                vhost = totals.get(track.vhost)
                if vhost is None:
                    continue
                subject = track.subject
                if track.kind == CHANNEL:
                    vhost.add_channel(*_channel_groups(subject))
                elif track.kind == CONNECTION:
                    vhost.data = add(vhost.data, _read_connection_data(subject))
                elif track.kind == QUEUE:
                    vhost.lengths = add(vhost.lengths, self._census.lengths(subject))
            self._vhost_totals = totals
        return self._vhost_totals

    def _aggregate(self, totals: _Totals, sampled: list[Series] | None, has_queues: bool, disk: bool) -> dict[str, Any]:
        series: list[Series | None] = list(sampled) if sampled is not None else [None] * 4
        groups = [(FINE, totals.fine, series[0]), (DELIVER, totals.deliver, series[1])]
        out: dict[str, Any] = {}
        stats = self._message_stats(groups)
        if stats and disk:
            self._put(stats, DISK, (0, 0), None, self._ranges.msg_rates)
        out["message_stats"] = stats
        lengths: dict[str, Any] = {}
        if has_queues or any(totals.lengths):
            self._put(lengths, LENGTHS, totals.lengths, series[3], self._ranges.lengths)
        out["lengths"] = lengths
        data: dict[str, Any] = {}
        if any(totals.data):
            self._put(data, DATA, totals.data, series[2], self._ranges.data_rates)
        out["data"] = data
        return out

    def vhost(self, name: str) -> dict[str, Any]:
        """A vhost's message_stats, lengths (messages*, with rates) and octets (recv_oct, send_oct, with rates)."""
        totals = self._totals().get(name)
        vhost = self._sampler._broker.vhosts.get(name)
        if totals is None or vhost is None:
            return {}
        parts = self._aggregate(totals, self._sampler._vhost_series.get(name), bool(vhost.queues), disk=False)
        out: dict[str, Any] = {}
        if parts["message_stats"]:
            out["message_stats"] = parts["message_stats"]
        out.update(parts["lengths"])
        out.update(parts["data"])
        return out

    def overview(self, vhosts: Iterable[str] | None = None) -> dict[str, Any]:
        """The overview's ``message_stats``, ``churn_rates`` and ``queue_totals`` (``{}`` while there is nothing),
        over every vhost or only ``vhosts`` (what a ``management`` user sees: the vhosts it may use)."""
        sampler = self._sampler
        every = list(sampler._broker.vhosts)
        names = every if vhosts is None else [name for name in vhosts if name in sampler._broker.vhosts]
        overview = _Totals()
        for name in names:
            overview.add_totals(self._totals()[name])
        series = sampler._overview_series
        if names != every:  # rates of a part: the sums of its vhosts' series
            parts_series = [sampler._vhost_series[name] for name in names if name in sampler._vhost_series]
            series = [merged([one[i] for one in parts_series]) for i in range(4)] if parts_series else None
        has_queues = any(sampler._broker.vhosts[name].queues for name in names)
        parts = self._aggregate(overview, series, has_queues, disk=True)
        churn: dict[str, Any] = {}
        values = _churn_of(self._sampler._broker.counters)
        if any(values):
            # RabbitMQ reads churn with the lengths range (``lengths_age``), not msg_rates
            self._put(churn, CHURN, values, self._sampler._churn_series, self._ranges.lengths)
        return {"message_stats": parts["message_stats"], "churn_rates": churn, "queue_totals": parts["lengths"]}
