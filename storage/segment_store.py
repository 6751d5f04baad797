"""The embedded durable store: an append-only segment log with per-record CRCs and per-segment ack files.

Layout of a data dir (byte formats in ``storage.segment_format``)::

    LOCK                 flock'ed while a store has the dir open; holds the owner's pid
    definitions.json     snapshot of exchanges, queues, bindings (see ``storage.definitions_log``)
    definitions.log      the changes since that snapshot, appended to
    msgs.0000000001 ...  message segments, appended to, never rewritten
    acks.0000000001 ...  offsets of the acknowledged records of the segment with the same number

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

Threads: the broker calls everything from its event loop, but ``sync`` may run
in one other thread: the write buffer is swapped out under ``_buffer_lock`` and
written outside it, and file descriptors are only touched under ``_sync_lock``.
"""

from __future__ import annotations

import array
import contextlib
import gc
import logging
import mmap
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import fileio
from .api import BindingRecord, ExchangeRecord, MessageRecord, PolicyRecord, QueueRecord, Recovered, StoredMessage
from .definitions_log import DefinitionsBatch, DefinitionsLog
from .fileio import DataDirLocked as DataDirLocked  # re-exported: importers expect it here
from .record_reader import LOCATION_BITS, RecordReader, location, split
from .segment_format import (
    ACK_ENTRY,
    ACK_HEADER,
    ACK_MAGIC,
    FILE_HEADER_SIZE,
    RECORD_HEAD,
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    RecordError,
    RecordScanner,
    ack_name,
    check_header,
    decode_message_key,
    encode_message,
    segment_name,
)

log = logging.getLogger("storage.segment_store")

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
EAGER_RECORDS = 10_000  # per queue, recovered with their bodies; the rest as StoredMessage (read on demand)
# A fully-acked active segment this long is rolled (and so deleted) at once. Not smaller: each roll creates,
# syncs and deletes files; measured (amqp-perf scenario c, 2 rounds): rolling at 1 MiB cost 6% of throughput
# (30.9k vs 32.7k msg/s) and a third more confirm p99 (21.2 vs 15.3 ms) against never rolling early.
ROLL_EMPTY_AT = 8 * 1024 * 1024


class StoreClosed(RuntimeError):
    """``sync`` after ``close``: nothing would ever be written."""


@dataclass
class _Chunk:
    """Bytes to write to one segment, starting at ``start``."""

    segment: int
    start: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Batch:
    """Everything one ``sync`` writes; swapped out of the store as a whole."""

    chunks: list[_Chunk] = field(default_factory=list)
    acks: dict[int, list[int]] = field(default_factory=dict)  # segment -> record offsets
    definitions: DefinitionsBatch | None = None  # changed definitions, when there are any
    doomed: set[int] = field(default_factory=set)  # fully-acked segments to delete


def _pack_offsets(offsets: list[int]) -> bytes:
    packed = array.array("Q", offsets)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack_offsets(data: bytes) -> array.array[int]:
    packed = array.array("Q")
    packed.frombytes(data)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed


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
        self._live: dict[int, int] = {}  # segment -> records not acked yet
        self._active = 0  # segment new records go to
        self._active_size = 0  # its size including buffered records; 0 = not started
        self._pending = _Batch()  # guarded by _buffer_lock
        self._writing: _Batch | None = None  # the batch a sync is writing (its records are in neither place)
        self._short_of_space = False  # the last sync failed: roll the active segment as soon as it is acked
        # files: owned by whoever holds _sync_lock
        self._segment_fds: dict[int, int] = {}
        self._ack_fds: dict[int, int] = {}
        self._ack_sizes: dict[int, int] = {}
        self._dir_dirty = False
        self._recovered_sizes: dict[int, int] = {}  # location -> body size, from the open-time scan
        self._recovered_expiry: dict[int, float] = {}  # location -> expiry, for the records that have one
        self._reader = RecordReader(self.data_dir, self._buffered_record)  # for read_message: its own fds and lock
        self._lock_fd = fileio.lock_data_dir(self.data_dir)
        try:
            with _gc_paused():
                self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- opening: rebuild memory from disk ---------------------------------------------------

    def _open(self) -> None:
        self._definitions.open()
        segments, acks = self._list_files()
        for number in sorted(set(acks) - set(segments)):
            log.info("removing %s: its segment is gone", self.data_dir / ack_name(number))
            (self.data_dir / ack_name(number)).unlink()
        last = max(segments, default=None)
        for number in sorted(segments):
            acked = self._read_acks(number) if number in acks else set()
            self._recover_segment(number, acked, number == last)
        # never append to a recovered segment: its tail may be damaged, or hold records acked by a
        # crashed sync; a number above every existing file also keeps stale ack files from applying.
        self._active = max([*segments, *acks], default=0) + 1
        self._pending.doomed.update(number for number, live in self._live.items() if live == 0)
        for number in self._pending.doomed:
            del self._live[number]

    def _list_files(self) -> tuple[set[int], set[int]]:
        segments: set[int] = set()
        acks: set[int] = set()
        for path in self.data_dir.iterdir():
            kind, _, number = path.name.partition(".")
            if len(number) == 10 and number.isdigit() and kind in ("msgs", "acks"):
                (segments if kind == "msgs" else acks).add(int(number))
        return segments, acks

    def _read_acks(self, number: int) -> set[int]:
        """The acked offsets of segment ``number``; a damaged ack file costs redeliveries, never losses."""
        path = self.data_dir / ack_name(number)
        data = path.read_bytes()
        problem = check_header(data, ACK_MAGIC)
        if problem == "empty":
            return set()  # size 0: the next write starts with a fresh header
        if problem is not None:
            aside = path.with_name(path.name + ".corrupt")
            log.error(
                "%s: %s; its acks are ignored (those messages will be delivered again), file kept as %s",
                path,
                problem,
                aside,
            )
            os.replace(path, aside)
            return set()
        usable = FILE_HEADER_SIZE + (len(data) - FILE_HEADER_SIZE) // ACK_ENTRY.size * ACK_ENTRY.size
        if usable != len(data):
            log.warning("%s: dropping a partial ack entry at offset %d (torn write)", path, usable)
            os.truncate(path, usable)
        self._ack_sizes[number] = usable
        return set(_unpack_offsets(data[FILE_HEADER_SIZE:usable]))

    def _recover_segment(self, number: int, acked: set[int], last: bool) -> None:
        path = self.data_dir / segment_name(number)
        with open(path, "rb") as file:
            header = file.read(FILE_HEADER_SIZE)
            problem = check_header(header, SEGMENT_MAGIC)
            if problem == "empty":
                log.warning("%s: no complete header (%d bytes); treating it as empty", path, len(header))
                self._live[number] = 0
                return
            if problem is not None:
                log.error(
                    "%s: %s; skipping the whole file (its messages are not recovered, the file is left untouched)",
                    path,
                    problem,
                )
                return
            # mapped, not read: bodies are copied once, straight from the page cache
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                scanner = RecordScanner(data)
                kept = self._index_records(number, scanner, acked)
                size = len(data)
        if scanner.damage is not None:
            self._report_damage(path, size, kept, scanner.damage, last)

    def _index_records(self, number: int, scanner: RecordScanner, acked: set[int]) -> int:
        """Index the unacked records the scanner yields; returns how many records were intact."""
        self._live[number] = 0
        names: dict[bytes, tuple[str, str]] = {}  # one tuple (and strings) per queue, not per message
        count = 0
        data = scanner.data
        sizes = self._recovered_sizes
        base = number << LOCATION_BITS
        for offset, start, end in scanner:
            count += 1
            if offset in acked:
                continue
            try:
                key, message_id, body_size, expires_at = decode_message_key(data, start, end, names)
            except (RecordError, UnicodeDecodeError, ValueError) as error:
                scanner.damage = (offset, f"unparsable record ({error})")
                return count - 1
            location = base | offset
            sizes[location] = body_size  # the record itself stays on disk (CRC checked)
            if expires_at is not None:
                self._recovered_expiry[location] = expires_at
            self._index_message(key, message_id, location)
        return count

    def _report_damage(self, path: Path, size: int, kept: int, damage: tuple[int, str], last: bool) -> None:
        offset, reason = damage
        if last:
            os.truncate(path, offset)
            what = f"truncated the file to {offset} bytes"
        else:
            what = "reading continues with the next segment"
        log.warning(
            "%s: %s at offset %d; kept the %d records before it, dropped the %d bytes from there "
            "to the end of the file; %s",
            path,
            reason,
            offset,
            kept,
            size - offset,
            what,
        )

    # -- definitions -------------------------------------------------------------------------

    def put_exchange(self, record: ExchangeRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_exchange(record)  # raises TypeError for unstorable arguments, before any change

    def delete_exchange(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._definitions.delete_exchange(vhost, name)

    def put_queue(self, record: QueueRecord) -> None:
        with self._buffer_lock:
            self._definitions.put_queue(record)

    def delete_queue(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._definitions.delete_queue(vhost, name)
        messages = self._index.pop((vhost, name), None)
        if messages:
            self._release(messages.values())

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
            chunks.append(_Chunk(self._active, self._active_size))
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
            except BaseException:
                with self._buffer_lock:
                    self._give_back(batch)
                raise
            finally:
                self._writing = None
            self._short_of_space = False

    def _take_batch(self) -> _Batch:
        batch, self._pending = self._pending, _Batch()
        doomed = batch.doomed
        if doomed:  # deleted first: what they hold need not be written
            batch.chunks = [chunk for chunk in batch.chunks if chunk.segment not in doomed]
            batch.acks = {segment: offsets for segment, offsets in batch.acks.items() if segment not in doomed}
        batch.definitions = self._definitions.take()
        return batch

    def _give_back(self, failed: _Batch) -> None:
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

    def _write_batch(self, batch: _Batch) -> None:
        """Write the batch in the documented order; each part is removed from it once it is durable."""
        self._delete_segments(batch.doomed)
        batch.doomed = set()
        self._write_acks(batch.acks)
        if batch.definitions is not None:
            self._definitions.write(batch.definitions)
            batch.definitions = None
        self._write_chunks(batch.chunks)
        batch.chunks = []

    def _write_acks(self, acks: dict[int, list[int]]) -> None:
        """Append each segment's acks and fsync them; a segment's acks leave ``acks`` once durable."""
        for segment in list(acks):
            fd = self._ack_fd(segment)
            size = self._ack_sizes.get(segment, 0)
            data = _pack_offsets(acks[segment])
            if size == 0:
                data = ACK_HEADER + data
            try:
                fileio.pwrite_all(fd, data, size)
                fileio.datasync(fd)
                self._sync_dir_if_dirty()
            except OSError:
                fileio.release_tail(fd, size)
                raise
            self._ack_sizes[segment] = size + len(data)
            del acks[segment]

    def _ack_fd(self, segment: int) -> int:
        fd = self._ack_fds.get(segment)
        if fd is None:
            path = self.data_dir / ack_name(segment)
            self._dir_dirty |= not path.exists()
            fd = self._ack_fds[segment] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        return fd

    def _write_chunks(self, chunks: list[_Chunk]) -> None:
        try:
            for chunk in chunks:
                fileio.pwrite_all(self._segment_fd(chunk.segment), chunk.data, chunk.start)
            for segment in {chunk.segment for chunk in chunks}:
                fileio.datasync(self._segment_fds[segment])
            self._sync_dir_if_dirty()
        except OSError:
            starts: dict[int, int] = {}
            for chunk in chunks:
                starts.setdefault(chunk.segment, chunk.start)
            for segment, start in starts.items():
                if segment in self._segment_fds:
                    fileio.release_tail(self._segment_fds[segment], start)
            raise
        active = self._active  # read without the lock: a stale value only keeps an fd open one sync longer
        for segment in [segment for segment in self._segment_fds if segment != active]:
            os.close(self._segment_fds.pop(segment))

    def _segment_fd(self, segment: int) -> int:
        fd = self._segment_fds.get(segment)
        if fd is None:
            path = self.data_dir / segment_name(segment)
            self._dir_dirty |= not path.exists()
            fd = self._segment_fds[segment] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        return fd

    def _delete_segments(self, doomed: set[int]) -> None:
        """Unlink segments, make that durable, then unlink their ack files.

        In this order an ack file can outlive its segment (it is removed at the
        next open) but a segment never outlives its acks, which would bring acked
        messages back.
        """
        if not doomed:
            return
        for segment in doomed:
            fd = self._segment_fds.pop(segment, None)
            if fd is not None:
                os.close(fd)
            self._reader.forget(segment)
            (self.data_dir / segment_name(segment)).unlink(missing_ok=True)
        self._dir_dirty = True
        self._sync_dir_if_dirty()
        for segment in doomed:
            fd = self._ack_fds.pop(segment, None)
            if fd is not None:
                os.close(fd)
            self._ack_sizes.pop(segment, None)
            (self.data_dir / ack_name(segment)).unlink(missing_ok=True)
        self._dir_dirty = True  # fsynced with the next sync's directory update; nothing depends on it sooner

    def _sync_dir_if_dirty(self) -> None:
        if self._dir_dirty:
            fileio.fsync_dir(self.data_dir)
            self._dir_dirty = False

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
                )

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
                for fd in [*self._segment_fds.values(), *self._ack_fds.values()]:
                    os.close(fd)
                self._segment_fds.clear()
                self._ack_fds.clear()
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
