"""Stream queues (``x-queue-type: stream``) over AMQP 0-9-1, as RabbitMQ 3.10 has them.

A stream is an append-only log: a publish appends at the next offset (the message carries an
``x-stream-offset`` header, a long, from then on), a consumer reads from the offset it asked for
(``x-stream-offset`` on basic.consume: ``first``, ``last``, ``next``, a number, a timestamp, or an
interval such as ``1h``; ``next`` when absent) and on as messages arrive.  Nothing is removed by
consuming: an ack only gives the consumer its prefetch credit back, so consumers need manual acks and a
per-consumer ``basic.qos`` prefetch count.  Retention (``x-max-length-bytes``, ``x-max-age``) drops whole
segments (``offset_log``).  basic.get, no-ack consumers, queue.purge, nack and reject are refused with
RabbitMQ's errors.

``StreamQueue`` is a ``queue.Queue`` to the rest of the broker (declarations, bindings, routing, policies,
deletion, the management API), with the queue-side methods replaced; its consumers are
``StreamConsumer``s, a ``delivery.Consumer`` with a cursor.  The log is ``offset_log.OffsetLog``; the
records are the store's (``Store.append_stream`` and friends).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from pamqp import commands

from ..errors import (
    argument_crash,
    invalid_stream_offset,
    stream_prefetch_not_set,
    stream_unsupported,
)
from .dead_letter import with_headers
from .delivery import Consumer, ConsumerOwner, Unacked
from .offset_log import DEFAULT_SEGMENT_SIZE, OffsetLog
from .queue import QUEUE_CLASSES, Enqueued, Queue, QueueHost
from .queue_arguments import QueueOptions, age_seconds

if TYPE_CHECKING:
    from storage.api import StreamIndex

    from .message import Entry, Message


class StreamConsumer(Consumer):
    """A consumer of a stream: ``offset`` is the next offset it reads."""

    __slots__ = ("offset", "arguments")

    def __init__(
        self,
        channel: ConsumerOwner,
        tag: str,
        queue: StreamQueue,
        exclusive: bool,
        prefetch_count: int,
        priority: int,
        offset: int,
        arguments: dict[str, Any],
        timeout: int | None = None,
    ) -> None:
        super().__init__(channel, tag, queue, False, exclusive, prefetch_count, priority, timeout)
        self.offset = offset
        self.arguments = arguments  # shown by the management API, as RabbitMQ does for stream consumers


def consumer_for(
    channel: ConsumerOwner,
    tag: str,
    queue: Queue,
    method: commands.Basic.Consume,
    prefetch_count: int,
    priority: int,
    timeout: int | None = None,
) -> Consumer:
    """The consumer a basic.consume makes: on a stream, checked in RabbitMQ's order (a per-consumer prefetch
    count first, then manual acks, then ``x-stream-offset``) and placed at its offset."""
    if not isinstance(queue, StreamQueue):
        return Consumer(channel, tag, queue, method.no_ack, method.exclusive, prefetch_count, priority, timeout)
    if not prefetch_count:
        raise stream_prefetch_not_set(queue.name, queue.vhost.name)
    if method.no_ack:
        raise stream_unsupported("automatic acknowledgement", queue.name, queue.vhost.name)
    arguments = dict(method.arguments or {})
    offset = queue.start_offset(arguments.get("x-stream-offset"))
    return StreamConsumer(channel, tag, queue, method.exclusive, prefetch_count, priority, offset, arguments, timeout)


def check_settlement(taken: Iterable[Unacked]) -> None:
    """basic.nack and basic.reject of a stream delivery: RabbitMQ's 540 (nothing can go back into a log)."""
    for item in taken:
        if isinstance(item.queue, StreamQueue):
            raise stream_unsupported("basic.nack and basic.reject", item.queue.name, item.queue.vhost.name)


def check_recover(taken: Iterable[Unacked]) -> None:
    """basic.recover with stream deliveries unacked: RabbitMQ 3.10's channel crashes (a bare 541)."""
    if any(isinstance(item.queue, StreamQueue) for item in taken):
        raise argument_crash()


class StreamQueue(Queue):
    """A stream: one ``OffsetLog``, consumers as cursors into it."""

    __slots__ = ("log",)

    def __init__(
        self,
        vhost: QueueHost,
        name: str,
        durable: bool = True,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        exclusive_owner: object | None = None,
        options: QueueOptions | None = None,
    ) -> None:
        super().__init__(vhost, name, durable, auto_delete, arguments, exclusive_owner, options)
        self.log = OffsetLog(vhost.store, vhost.name, name)

    def restore_stream(self, index: StreamIndex) -> None:
        """The log recovered from the store (offsets, sizes, timestamps; bodies stay there until read)."""
        self.log = OffsetLog(self.vhost.store, self.vhost.name, self.name, index)
        self.log.rebuild_segments(self.segment_size)

    @property
    def segment_size(self) -> int:
        return self.options.max_segment_size or DEFAULT_SEGMENT_SIZE

    # -- what AMQP and the management API see --------------------------------------------------

    @property
    def message_count(self) -> int:
        """What queue.declare-ok and delete-ok report for a stream: 0, as RabbitMQ 3.10 does (probed)."""
        return 0

    @property
    def ready_bytes(self) -> int:
        return self.log.total_bytes

    def start_offset(self, spec: object) -> int:
        """Where a consumer with ``x-stream-offset: spec`` starts (RabbitMQ's parsing and errors, probed)."""
        log = self.log
        if spec is None:
            return log.next
        if isinstance(spec, bool):
            raise argument_crash()
        if isinstance(spec, int):
            return min(max(spec, log.first), log.next)
        if isinstance(spec, datetime.datetime):
            moment = spec if spec.tzinfo is not None else spec.replace(tzinfo=datetime.UTC)
            return log.offset_at(moment.timestamp())
        if isinstance(spec, bytes):
            spec = spec.decode("utf-8", "replace")
        if not isinstance(spec, str):
            raise argument_crash()
        if spec == "first":
            return log.first
        if spec == "last":  # the last chunk: here every message is a chunk of its own
            return max(log.first, log.next - 1)
        if spec == "next":
            return log.next
        seconds = age_seconds(spec)
        if seconds is None:
            raise invalid_stream_offset(self.name, self.vhost.name, spec)
        return log.offset_at(self.vhost.wall_clock() - seconds)

    # -- publish and deliver --------------------------------------------------------------------

    def publish(self, message: Message) -> Enqueued:
        """Append at the next offset (stored whatever its delivery mode: a stream is a log on disk)."""
        self.counters.publish += 1
        log = self.log
        message = with_headers(message, {"x-stream-offset": log.next})
        now = self.vhost.wall_clock()
        rolled = log.append(message, now, self.segment_size)
        self.vhost.sync_barrier.request()
        if rolled:
            log.apply_retention(self.options.max_length_bytes, self.options.max_age, now)
        if self.consumers:
            self.dispatch()
        return Enqueued.STORED

    def dispatch(self, now: float | None = None) -> None:
        """Give every consumer with credit the entries from its offset on."""
        log = self.log
        for consumer in cast("Iterable[StreamConsumer]", self.consumers):
            if consumer.offset < log.first:  # retention dropped what it was to read next
                consumer.offset = log.first
            delivered = 0
            deliver = consumer.deliver
            while consumer.offset < log.next and consumer.has_credit():
                entry = log.entry(consumer.offset)
                consumer.offset += 1
                if entry is not None:  # None: the store cannot return it (logged there); skipped
                    deliver(entry)
                    delivered += 1
            consumer.tally[0] += delivered

    def options_changed(self, options: QueueOptions) -> None:
        """A policy changed retention or the segment size: applied from the next segment on, as in RabbitMQ."""
        self.options = options

    # -- what a log cannot do -------------------------------------------------------------------

    def get(self) -> Entry | None:
        raise stream_unsupported("basic.get", self.name, self.vhost.name)

    def purge(self) -> int:
        raise stream_unsupported("queue.purge", self.name, self.vhost.name)

    def settle(self, entries: Iterable[Entry]) -> None:
        """An ack gives credit back (the channel counts it); the log keeps the message."""

    def requeue(self, entries: list[Entry]) -> None:
        """Unacked stream deliveries of a closed channel or cancelled consumer: nothing goes back."""

    def reject(self, entries: list[Entry]) -> None:
        """Refused before it gets here (``check_settlement``)."""

    def release_ready(self) -> list[Entry]:
        """The stream is being deleted: its records go with the store's ``delete_queue``."""
        return []

    def restore(
        self, message_id: int, message: Message | None, body_size: int = 0, expires_at: float | None = None
    ) -> None:
        """Streams recover through ``restore_stream``: the store has no queue messages for them."""


QUEUE_CLASSES["stream"] = StreamQueue  # Queue.with_arguments makes streams of x-queue-type stream
