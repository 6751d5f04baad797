"""The embedded durable store: an append-only segment log with per-record CRCs and per-segment ack files.

Layout of a data dir (byte formats in ``storage.segment_format``)::

    LOCK                 flock'ed while a store has the dir open; holds the owner's pid
    definitions.json     snapshot of exchanges, queues, bindings (see ``storage.definitions_log``)
    definitions.log      the changes since that snapshot, appended to
    msgs.0000000001 ...  message segments, appended to, never rewritten
    acks.0000000001 ...  offsets of the acknowledged records of the segment with the same number
    streams/             one directory of append-only files per stream queue (``storage.stream_log``)

Why this shape (it is what LavinMQ does): persistent messages are written once
and mostly consumed soon, so appends plus small ack records are the cheapest
durable writes there are; a segment whose every record is acked is deleted as
a whole, which reclaims disk space without compaction.  The active segment (the
one being appended to) is rolled as soon as it is fully acked and at least
``ROLL_EMPTY_AT`` long -- or at any length once a sync has failed -- so a queue
drained while running gives its space back without waiting for 64 MB more.

Durability: ``put_*``/``remove_*``/``delete_*`` only change memory; ``sync`` is
the one place that writes and fsyncs (group commit: one fsync per file for any
number of changes).  Within a sync the order is chosen so that a crash (or a
failure: ENOSPC) anywhere inside it leaves a state that was valid before or
after some prefix of the operations, never messages without their queue or
acks lost behind a queue's deletion -- and so that what frees space comes first:

1. deletion of fully-acked segments (it frees space, and needs none; their
   pending acks and unwritten records are dropped, not written),
2. ack files (tiny; so a ``delete_queue`` drops its messages before the queue is gone),
3. the definitions log (so a new queue exists before messages are written to it),
4. the segment data (acks written in step 2 for records of this batch point at
   offsets that, after a crash, lie past the end of a segment that recovery
   never writes to again, so they are harmless).

Each step is written and fsynced before the next starts; a step that fails stops
the sync, and only what was not durably written goes back in front of newer
writes, in the same order and at the same offsets (records sit at offsets
decided at ``put`` time and are written with ``pwrite``), for the next ``sync``
to write again in full -- which also covers the Linux behaviour of dropping
dirty pages after a failed fsync.  A failed append is cut off again
(``fileio.release_tail``) so the space its partial write took stays free for the
acks and deletions that free more.

The store keeps the index and the buffers and decides what a sync writes and
when; opening a data dir (the scan that rebuilds the index, and what it does
about damage) is ``storage.segment_recovery``, the writing of each step and its
fds ``storage.segment_writer``.

Threads: the broker calls everything from its event loop, but ``sync`` may run
in one other thread: the write buffer is swapped out under ``_buffer_lock`` and
written outside it, and file descriptors are only touched under ``_sync_lock``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import fileio
from .api import (
    BindingRecord,
    ExchangeRecord,
    MessageRecord,
    PolicyRecord,
    QueueRecord,
    Recovered,
    StoredMessage,
    StreamRecord,
)
from .definitions_log import DefinitionsLog
from .fileio import DataDirLocked as DataDirLocked  # re-exported: importers expect it here
from .location_index import LocationIndex
from .record_reader import RecordReader, location, split
from .segment_format import RECORD_HEAD, SEGMENT_HEADER, ack_name, encode_message, segment_name
from .segment_recovery import list_files, read_acks, recover_segment
from .segment_writer import Batch, Chunk, SegmentWriter
from .stream_log import StreamLogs

log = logging.getLogger("storage.segment_store")

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
EAGER_RECORDS = 10_000  # per queue, recovered with their bodies; the rest as StoredMessage (read on demand)
# A fully-acked active segment this long is rolled (and so deleted) at once. Not smaller: each roll creates,
# syncs and deletes files; measured (amqp-perf scenario c, 2 rounds): rolling at 1 MiB cost 6% of throughput
# (30.9k vs 32.7k msg/s) and a third more confirm p99 (21.2 vs 15.3 ms) against never rolling early.
ROLL_EMPTY_AT = 8 * 1024 * 1024


class StoreClosed(RuntimeError):
    """``sync`` after ``close``: nothing would ever be written."""


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Recovery creates millions of acyclic objects; the cyclic GC would rescan them all, for nothing,
    every time its thresholds trip (measured: ~45% of recovery time with 300k messages)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class SegmentStore:
    """A durable ``storage.api.Store``; state is recovered from ``data_dir`` when it is opened."""

    def __init__(self, data_dir: Path | str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._segment_size = segment_size
        self._buffer_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._closed = False
        # definitions, in insertion order like MemoryStore (guarded by _buffer_lock; its file by _sync_lock)
        self._definitions = DefinitionsLog(self.data_dir)
        # messages: owned by the caller's thread
        self._index: dict[tuple[str, str], dict[int, int]] = {}  # (vhost, queue) -> message id -> location
        self._delayed: dict[tuple[str, str], LocationIndex] = {}  # (vhost, exchange) -> delayed id -> location
        self._live: dict[int, int] = {}  # segment -> records not acked yet
        self._active = 0  # segment new records go to
        self._active_size = 0  # its size including buffered records; 0 = not started
        self._pending = Batch()  # guarded by _buffer_lock
        self._writing: Batch | None = None  # the batch a sync is writing (its records are in neither place)
        self._short_of_space = False  # the last sync failed: roll the active segment as soon as it is acked
        self._recovered_sizes: dict[int, int] = {}  # location -> body size, from the open-time scan
        self._recovered_expiry: dict[int, float] = {}  # location -> expiry, for the records that have one
        self._reader = RecordReader(self.data_dir, self._buffered_record)  # for read_message: its own fds and lock
        self._writer = SegmentWriter(self.data_dir, self._reader)  # the files: owned by whoever holds _sync_lock
        self._streams = StreamLogs(self.data_dir)
        self._lock_fd = fileio.lock_data_dir(self.data_dir)
        try:
            with _gc_paused():
                self._open()
                self._streams.open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- opening: rebuild memory from disk ---------------------------------------------------

    def _open(self) -> None:
        self._definitions.open()
        segments, acks = list_files(self.data_dir)
        for number in sorted(set(acks) - set(segments)):
            log.info("removing %s: its segment is gone", self.data_dir / ack_name(number))
            (self.data_dir / ack_name(number)).unlink()
        last = max(segments, default=None)
        for number in sorted(segments):
            self._recover_segment(number, self._read_acks(number) if number in acks else set(), number == last)
        # never append to a recovered segment: its tail may be damaged, or hold records acked by a
        # crashed sync; a number above every existing file also keeps stale ack files from applying.
        self._active = max([*segments, *acks], default=0) + 1
        self._pending.doomed.update(number for number, live in self._live.items() if live == 0)
        for number in self._pending.doomed:
            del self._live[number]

    def _read_acks(self, number: int) -> set[int]:
        acked, size = read_acks(self.data_dir, number)
        if size:
            self._writer.ack_sizes[number] = size  # appended to from there
        return acked

    def _recover_segment(self, number: int, acked: set[int], last: bool) -> None:
        self._live[number] = 0
        readable = recover_segment(
            self.data_dir / segment_name(number),
            number,
            acked,
            last,
            index_message=self._index_message,
            index_delayed=self._index_delayed,
            sizes=self._recovered_sizes,
            expiry=self._recovered_expiry,
        )
        if not readable:  # left untouched, and never deleted as if it were fully acked
            del self._live[number]

    # -- definitions -------------------------------------------------------------------------

    def put_exchange(self, record: ExchangeRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_exchange(record)  # raises TypeError for unstorable arguments, before any change

    def delete_exchange(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._definitions.delete_exchange(vhost, name)
        held = self._delayed.pop((vhost, name), None)
        if held:
            self._release(held.values())

    def put_queue(self, record: QueueRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_queue(record)

    def delete_queue(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._definitions.delete_queue(vhost, name)
        messages = self._index.pop((vhost, name), None)
        if messages:
            self._release(messages.values())
        self._streams.delete(vhost, name)

    def put_binding(self, record: BindingRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_binding(record)

    def delete_binding(self, record: BindingRecord) -> None:
        with self._buffer_lock:
            self._definitions.delete_binding(record)

    def put_policy(self, record: PolicyRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_policy(record)

    def delete_policy(self, vhost: str, name: str, operator: bool = False) -> None:
        with self._buffer_lock:
            self._definitions.delete_policy(vhost, name, operator)

    # -- messages ----------------------------------------------------------------------------

    def put_message(self, vhost: str, queue: str, message_id: int, record: MessageRecord) -> None:
        framed = encode_message(vhost, queue, message_id, record)
        with self._buffer_lock:
            location = self._append(framed)
        self._index_message((vhost, queue), message_id, location)

    def _append(self, framed: bytes) -> int:
        """Buffer a framed record in the active segment (rolling first if it is full); returns its location."""
        if self._active_size >= self._segment_size:
            self._roll()
        elif self._short_of_space:
            self._roll_if_reclaimable()  # emptied before the sync that failed: nothing else would roll it
        if self._active_size == 0:
            self._buffer(SEGMENT_HEADER)
            self._live[self._active] = 0
        at = location(self._active, self._active_size)
        self._buffer(framed)
        return at

    def _buffer(self, data: bytes) -> None:
        chunks = self._pending.chunks
        if not chunks or chunks[-1].segment != self._active:
            chunks.append(Chunk(self._active, self._active_size))
        chunks[-1].data += data
        self._active_size += len(data)

    def _roll(self) -> None:
        finished = self._active
        self._active, self._active_size = finished + 1, 0
        if self._live.get(finished) == 0:
            self._doom(finished)

    def _index_message(self, key: tuple[str, str], message_id: int, location: int) -> None:
        segment, _ = split(location)
        self._live[segment] += 1
        replaced = self._index.setdefault(key, {}).get(message_id)
        self._index[key][message_id] = location
        if replaced is not None:  # the same id stored again: the newer record wins, as in MemoryStore
            self._release((replaced,))

    def remove_messages(self, vhost: str, queue: str, message_ids: Iterable[int]) -> None:
        messages = self._index.get((vhost, queue))
        if messages is None:
            return
        released = []
        for message_id in message_ids:
            location = messages.pop(message_id, None)
            if location is not None:
                released.append(location)
        if not messages:
            del self._index[(vhost, queue)]
        if released:
            self._release(released)

    # -- delayed messages: kind-3 records in the same segments, indexed apart (``LocationIndex``) ----

    def put_delayed(self, vhost: str, exchange: str, delayed_id: int, fire_at: float, record: MessageRecord) -> None:
        framed = encode_message(vhost, exchange, delayed_id, record, fire_at)
        with self._buffer_lock:
            location = self._append(framed)
        self._index_delayed((vhost, exchange), delayed_id, location)

    def _index_delayed(self, key: tuple[str, str], delayed_id: int, location: int) -> None:
        segment, _ = split(location)
        self._live[segment] += 1
        held = self._delayed.get(key)
        if held is None:
            held = self._delayed[key] = LocationIndex()
        replaced = held.put(delayed_id, location)
        if replaced is not None:  # the newer record wins, as in MemoryStore
            self._release((replaced,))

    def remove_delayed(self, vhost: str, exchange: str, delayed_ids: Iterable[int]) -> None:
        held = self._delayed.get((vhost, exchange))
        if held is None:
            return
        released = [at for at in map(held.pop, delayed_ids) if at is not None]
        if not held:
            del self._delayed[(vhost, exchange)]
        if released:
            self._release(released)

    def read_delayed(self, vhost: str, exchange: str, delayed_id: int) -> MessageRecord:
        """A held message read back; its record carries the fire time where a queue message has its expiry."""
        record = self._reader(self._delayed[(vhost, exchange)].get(delayed_id))
        # built directly, not dataclasses.replace: that costs 8 µs of the ~30 µs a fired message takes (profiled)
        return MessageRecord(record.exchange, record.routing_key, record.header, record.body)

    def _release(self, locations: Iterable[int]) -> None:
        """Record acks for these records; segments left without live records are deleted at the next sync."""
        with self._buffer_lock:
            acks = self._pending.acks
            for location in locations:
                segment, offset = split(location)
                self._recovered_sizes.pop(location, None)
                self._recovered_expiry.pop(location, None)
                acks.setdefault(segment, []).append(offset)
                self._live[segment] -= 1
                if self._live[segment] == 0 and segment != self._active:
                    self._doom(segment)
            self._roll_if_reclaimable()

    def _roll_if_reclaimable(self) -> None:
        """Roll a fully-acked active segment, so the next sync deletes it.

        Only from the caller's thread (``_live`` of the active segment is counted
        there, after ``_append``), under ``_buffer_lock``.
        """
        if self._live.get(self._active) == 0 and (self._active_size >= ROLL_EMPTY_AT or self._short_of_space):
            self._roll()

    def _doom(self, segment: int) -> None:
        del self._live[segment]
        self._pending.doomed.add(segment)

    # -- sync: the only place that writes files ------------------------------------------------

    def sync(self) -> None:
        """Write and fsync everything buffered; raises OSError (e.g. ENOSPC) if that failed.

        After a failure nothing is lost from memory: the next ``sync`` writes
        what this one could not, so the caller can hold confirms and retry.
        """
        if self._closed:
            raise StoreClosed(f"store on {self.data_dir} is closed")
        with self._sync_lock:
            with self._buffer_lock:
                batch = self._writing = self._take_batch()
            try:
                self._write_batch(batch)
                self._streams.sync()  # after the definitions: a stream's queue is durable before its records
            except BaseException:
                with self._buffer_lock:
                    self._give_back(batch)
                raise
            finally:
                self._writing = None
            self._short_of_space = False

    def _take_batch(self) -> Batch:
        batch, self._pending = self._pending, Batch()
        doomed = batch.doomed
        if doomed:  # deleted first: what they hold need not be written
            batch.chunks = [chunk for chunk in batch.chunks if chunk.segment not in doomed]
            batch.acks = {segment: offsets for segment, offsets in batch.acks.items() if segment not in doomed}
        batch.definitions = self._definitions.take()
        return batch

    def _give_back(self, failed: Batch) -> None:
        """Put what a failed sync did not write in front of what was buffered since, to be written again."""
        newer = self._pending
        self._pending = failed
        failed.chunks.extend(newer.chunks)
        for segment, offsets in newer.acks.items():
            failed.acks.setdefault(segment, []).extend(offsets)
        failed.doomed |= newer.doomed
        if failed.definitions is not None:
            self._definitions.give_back(failed.definitions)
            failed.definitions = None
        self._short_of_space = True  # rolling is left to the caller's thread, which owns ``_live`` counts

    def _write_batch(self, batch: Batch) -> None:
        """Write the batch in the documented order; each part is removed from it once it is durable."""
        writer = self._writer
        writer.delete_segments(batch.doomed)
        batch.doomed = set()
        writer.write_acks(batch.acks)
        if batch.definitions is not None:
            self._definitions.write(batch.definitions)
            batch.definitions = None
        writer.write_chunks(batch.chunks)
        writer.close_segments_except(self._active)  # read without the lock: see close_segments_except
        batch.chunks = []

    def _buffered_record(self, segment: int, offset: int) -> bytes | None:
        """A framed record that is not in its file yet: in the write buffer or the batch being written."""
        with self._buffer_lock:
            writing = self._writing
            for chunk in [*(writing.chunks if writing is not None else ()), *self._pending.chunks]:
                if chunk.segment == segment and chunk.start <= offset < chunk.start + len(chunk.data):
                    start = offset - chunk.start
                    length = RECORD_HEAD.unpack_from(chunk.data, start)[0]
                    return bytes(chunk.data[start : start + RECORD_HEAD.size + length])
        return None

    def read_message(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        """A stored message read back (from the write buffer or its segment), CRC-checked."""
        return self._reader(self._index[(vhost, queue)][message_id])

    # -- streams: delegated to their own files (``storage.stream_log``) ----------------------

    def append_stream(self, vhost: str, queue: str, record: StreamRecord) -> None:
        self._streams.append(vhost, queue, record)

    def read_stream(self, vhost: str, queue: str, start: int, count: int) -> list[StreamRecord]:
        return self._streams.read(vhost, queue, start, count)

    def truncate_stream(self, vhost: str, queue: str, first: int) -> None:
        self._streams.truncate(vhost, queue, first)

    # -- recover -----------------------------------------------------------------------------

    def recover(self) -> Recovered:
        """The current durable-to-be state: definitions, and every stored message per queue in id order.

        Past the first ``EAGER_RECORDS`` of a queue, messages found by the open-time
        scan are handed out as ``StoredMessage`` (their size only): the broker
        reads them back with ``read_message`` when they reach the head, so a
        restart with millions of messages neither reads every body nor holds it.
        """
        with self._sync_lock, _gc_paused():
            read = RecordReader(self.data_dir, self._buffered_record)
            try:
                messages = {key: self._recover_queue(entries, read) for key, entries in self._index.items() if entries}
                delayed = {
                    key: self._recover_delayed(entries, read) for key, entries in self._delayed.items() if entries
                }
            finally:
                read.close()
            self._recovered_sizes = {}
            self._recovered_expiry = {}
            with self._buffer_lock:
                definitions = self._definitions
                return Recovered(
                    exchanges=list(definitions.exchanges.values()),
                    queues=list(definitions.queues.values()),
                    bindings=list(definitions.bindings.values()),
                    policies=list(definitions.policies.values()),
                    messages=messages,
                    streams=self._streams.indexes(),
                    delayed=delayed,
                )

    def _recover_delayed(self, entries: LocationIndex, read: RecordReader) -> list[tuple[int, float]]:
        """(delayed id, fire time) in id order: from the open-time scan, or read back (held since it opened)."""
        expiry = self._recovered_expiry
        held = []
        for delayed_id, at in entries.items():  # in id order
            fire_at = expiry.get(at)
            if fire_at is None:
                fire_at = read(at).expires_at
            assert fire_at is not None  # a kind-3 record always has one
            held.append((delayed_id, fire_at))
        return held

    def _recover_queue(
        self, entries: dict[int, int], read: RecordReader
    ) -> list[tuple[int, MessageRecord | StoredMessage]]:
        recovered: list[tuple[int, MessageRecord | StoredMessage]] = []
        stored: dict[int, StoredMessage] = {}  # one (immutable) reference per body size, not per message
        sizes, expiry = self._recovered_sizes, self._recovered_expiry
        for message_id, at in sorted(entries.items()):
            size = sizes.get(at)
            if size is None or len(recovered) < EAGER_RECORDS:
                recovered.append((message_id, read(at)))
            elif expiry and at in expiry:  # expiries differ per message: nothing to share
                recovered.append((message_id, StoredMessage(size, expiry[at])))
            else:
                reference = stored.get(size)
                if reference is None:
                    reference = stored[size] = StoredMessage(size)
                recovered.append((message_id, reference))
        return recovered

    def close(self) -> None:
        """Sync (a clean shutdown loses nothing), then release the files and the data dir lock.

        If that last sync fails (a full disk), what it could not write is logged
        and dropped -- everything else was written, in the order ``sync``
        documents -- and the store still closes: it does not raise ``OSError``.
        """
        if self._closed:
            return
        try:
            self.sync()
        except OSError as error:
            log.error(
                "could not write %s to %s at shutdown (%s): lost, as after a crash; everything else is written",
                self._unwritten(),
                self.data_dir,
                error,
            )
        finally:
            self._closed = True
            self._reader.close()
            with self._sync_lock:
                self._writer.close()
                self._definitions.close()
                os.close(self._lock_fd)  # releases the flock

    def _unwritten(self) -> str:
        """What the pending batch holds, for the report of a failed last sync (scans the index: only then)."""
        pending = self._pending
        spans: dict[int, list[tuple[int, int]]] = {}
        for chunk in pending.chunks:
            spans.setdefault(chunk.segment, []).append((chunk.start, chunk.start + len(chunk.data)))
        messages = 0
        for locations in self._index.values():
            for at in locations.values():
                segment, offset = split(at)
                messages += any(start <= offset < end for start, end in spans.get(segment, ()))
        size = sum(len(chunk.data) for chunk in pending.chunks)
        acks = sum(len(offsets) for offsets in pending.acks.values())
        return (
            f"{messages} unacknowledged messages ({size} bytes of records), {acks} acks, "
            f"{self._definitions.unwritten} definition changes"
        )
