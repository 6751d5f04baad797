"""The embedded durable store: an append-only segment log with per-record CRCs and per-segment ack files.

Layout of a data dir (byte formats in ``storage.segment_format``)::

    LOCK                 flock'ed while a store has the dir open; holds the owner's pid
    definitions.json     exchanges, queues, bindings (CRC-checked JSON, replaced atomically)
    msgs.0000000001 ...  message segments, appended to, never rewritten
    acks.0000000001 ...  offsets of the acknowledged records of the segment with the same number

Why this shape (it is what LavinMQ does): persistent messages are written once
and mostly consumed soon, so appends plus small ack records are the cheapest
durable writes there are; a segment whose every record is acked is deleted as
a whole, which reclaims disk space without compaction.

Why definitions live in a JSON snapshot and not in the log: they change rarely
and are small, a snapshot needs no compaction, and a human can read it.  It is
rewritten at most once per ``sync`` (however many definitions changed), to a
temporary file that is fsynced and then renamed over the old one, so it is
always either the old or the new version, never torn.

Durability: ``put_*``/``remove_*``/``delete_*`` only change memory; ``sync`` is
the one place that writes and fsyncs (group commit: one fsync of the segment
for any number of puts).  Within a sync the order is chosen so that a crash
anywhere inside it leaves a state that was valid before or after some prefix of
the operations, never messages without their queue or acks lost behind a
queue's deletion:

1. ack files (so a ``delete_queue`` drops its messages before the queue is gone),
2. the definitions (so a new queue exists before messages are written to it),
3. the segment data (acks written in step 1 for records of this batch point at
   offsets that, after a crash, lie past the end of a segment that recovery
   never writes to again, so they are harmless),
4. deletion of fully-acked segments.

Records sit at fixed offsets decided at ``put`` time and are written with
``pwrite`` there, so a ``sync`` that fails (ENOSPC, EIO) can be retried: the
failed batch is put back in front of newer writes and written again, in full,
by the next ``sync`` — which also covers the Linux behaviour of dropping dirty
pages after a failed fsync.

Threads: the broker calls everything from its event loop, but ``sync`` may run
in one other thread: the write buffer is swapped out under ``_buffer_lock`` and
written outside it, and file descriptors are only touched under ``_sync_lock``.
"""

from __future__ import annotations

import array
import errno
import contextlib
import fcntl
import gc
import logging
import mmap
import os
import sys
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .api import BindingRecord, binding_key, ExchangeRecord, MessageRecord, QueueRecord, Recovered, StoredMessage
from .segment_format import (
    ACK_ENTRY, ACK_HEADER, ACK_MAGIC, ack_name, check_header, decode_definitions, decode_message,
    decode_message_key, Definitions,
    DefinitionsError, encode_definitions, encode_message, encode_table, FILE_HEADER_SIZE, RECORD_HEAD, RecordError,
    RecordScanner, SEGMENT_HEADER, SEGMENT_MAGIC, segment_name,
)

log = logging.getLogger("storage.segment_store")

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
EAGER_RECORDS = 10_000  # per queue, recovered with their bodies; the rest as StoredMessage (read on demand)
DEFINITIONS = "definitions.json"
_LOCATION_BITS = 40  # a location is segment << 40 | offset: one int per indexed message, not a tuple
_OFFSET_MASK = (1 << _LOCATION_BITS) - 1
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # size changes are flushed by both


class DataDirLocked(RuntimeError):
    """Another store (normally another running broker) has this data dir open."""


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
    definitions: Definitions | None = None  # a snapshot, when they changed
    doomed: set[int] = field(default_factory=set)  # fully-acked segments to delete


def _location(segment: int, offset: int) -> int:
    return segment << _LOCATION_BITS | offset


def _split(location: int) -> tuple[int, int]:
    return location >> _LOCATION_BITS, location & _OFFSET_MASK


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view, offset = view[written:], offset + written


def _pack_offsets(offsets: list[int]) -> bytes:
    packed = array.array("Q", offsets)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack_offsets(data: bytes) -> array.array:
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


def _lock_data_dir(data_dir: Path) -> int:
    """flock ``LOCK`` so that two brokers never share a data dir (each would corrupt the other's files)."""
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DataDirLocked(f"data dir {data_dir} is already in use by another store (pid {owner}); "
                            "is another broker running on it?") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


class SegmentStore:
    """A durable ``storage.api.Store``; state is recovered from ``data_dir`` when it is opened."""

    def __init__(self, data_dir: Path | str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._segment_size = segment_size
        self._buffer_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._closed = False
        # definitions, in insertion order like MemoryStore (guarded by _buffer_lock)
        self._exchanges: dict[tuple[str, str], ExchangeRecord] = {}
        self._queues: dict[tuple[str, str], QueueRecord] = {}
        self._bindings: dict[tuple, BindingRecord] = {}
        self._definitions_dirty = False
        # messages: owned by the caller's thread
        self._index: dict[tuple[str, str], dict[int, int]] = {}  # (vhost, queue) -> message id -> location
        self._live: dict[int, int] = {}  # segment -> records not acked yet
        self._active = 0  # segment new records go to
        self._active_size = 0  # its size including buffered records; 0 = not started
        self._pending = _Batch()  # guarded by _buffer_lock
        # files: owned by whoever holds _sync_lock
        self._segment_fds: dict[int, int] = {}
        self._ack_fds: dict[int, int] = {}
        self._ack_sizes: dict[int, int] = {}
        self._dir_dirty = False
        self._recovered_sizes: dict[int, int] = {}  # location -> body size, from the open-time scan
        self._recovered_expiry: dict[int, float] = {}  # location -> expiry, for the records that have one
        self._reader = _RecordReader(self)  # for read_message (paged-out messages); its own fds and lock
        self._lock_fd = _lock_data_dir(self.data_dir)
        try:
            with _gc_paused():
                self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- opening: rebuild memory from disk ---------------------------------------------------

    def _open(self) -> None:
        (self.data_dir / (DEFINITIONS + ".tmp")).unlink(missing_ok=True)  # a rewrite that never got renamed
        self._load_definitions()
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

    def _load_definitions(self) -> None:
        path = self.data_dir / DEFINITIONS
        try:
            definitions = decode_definitions(path.read_bytes())
        except FileNotFoundError:
            return
        except DefinitionsError as error:
            aside = path.with_name(f"{DEFINITIONS}.corrupt")
            log.error("%s is unusable (%s): starting without durable exchanges, queues and bindings; "
                      "the file is kept as %s", path, error, aside)
            os.replace(path, aside)
            return
        self._exchanges = {(record.vhost, record.name): record for record in definitions.exchanges}
        self._queues = {(record.vhost, record.name): record for record in definitions.queues}
        self._bindings = {binding_key(record): record for record in definitions.bindings}

    def _read_acks(self, number: int) -> set[int]:
        """The acked offsets of segment ``number``; a damaged ack file costs redeliveries, never losses."""
        path = self.data_dir / ack_name(number)
        data = path.read_bytes()
        problem = check_header(data, ACK_MAGIC)
        if problem == "empty":
            return set()  # size 0: the next write starts with a fresh header
        if problem is not None:
            aside = path.with_name(path.name + ".corrupt")
            log.error("%s: %s; its acks are ignored (those messages will be delivered again), "
                      "file kept as %s", path, problem, aside)
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
                log.error("%s: %s; skipping the whole file (its messages are not recovered, "
                          "the file is left untouched)", path, problem)
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
        base = number << _LOCATION_BITS
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
        log.warning("%s: %s at offset %d; kept the %d records before it, dropped the %d bytes from there "
                    "to the end of the file; %s", path, reason, offset, kept, size - offset, what)

    # -- definitions -------------------------------------------------------------------------

    def put_exchange(self, record: ExchangeRecord) -> None:
        encode_table(record.arguments)  # raises TypeError here, not in a later sync
        with self._buffer_lock:
            self._exchanges[(record.vhost, record.name)] = record
            self._definitions_dirty = True

    def delete_exchange(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._exchanges.pop((vhost, name), None)
            self._forget_bindings(lambda b: b.vhost == vhost and (
                b.source == name or (b.destination == name and b.destination_kind == "exchange")))
            self._definitions_dirty = True

    def put_queue(self, record: QueueRecord) -> None:
        encode_table(record.arguments)  # raises TypeError here, not in a later sync
        with self._buffer_lock:
            self._queues[(record.vhost, record.name)] = record
            self._definitions_dirty = True

    def delete_queue(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._queues.pop((vhost, name), None)
            self._forget_bindings(
                lambda b: b.vhost == vhost and b.destination == name and b.destination_kind == "queue")
            self._definitions_dirty = True
        messages = self._index.pop((vhost, name), None)
        if messages:
            self._release(messages.values())

    def put_binding(self, record: BindingRecord) -> None:
        encode_table(record.arguments)  # raises TypeError here, not in a later sync
        with self._buffer_lock:
            self._bindings[binding_key(record)] = record
            self._definitions_dirty = True

    def delete_binding(self, record: BindingRecord) -> None:
        with self._buffer_lock:
            self._bindings.pop(binding_key(record), None)
            self._definitions_dirty = True

    def _forget_bindings(self, doomed: Callable[[BindingRecord], bool]) -> None:
        for key in [key for key, binding in self._bindings.items() if doomed(binding)]:
            del self._bindings[key]

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
        if self._active_size == 0:
            self._buffer(SEGMENT_HEADER)
            self._live[self._active] = 0
        location = _location(self._active, self._active_size)
        self._buffer(framed)
        return location

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
        segment, _ = _split(location)
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
                segment, offset = _split(location)
                self._recovered_sizes.pop(location, None)
                self._recovered_expiry.pop(location, None)
                acks.setdefault(segment, []).append(offset)
                self._live[segment] -= 1
                if self._live[segment] == 0 and segment != self._active:
                    self._doom(segment)

    def _doom(self, segment: int) -> None:
        del self._live[segment]
        self._pending.doomed.add(segment)

    # -- sync: the only place that writes files ------------------------------------------------

    def sync(self) -> None:
        """Write and fsync everything buffered; raises OSError (e.g. ENOSPC) if that failed.

        After a failure nothing is lost from memory: the next ``sync`` writes the
        same batch again, so the caller can hold confirms and retry.
        """
        if self._closed:
            raise StoreClosed(f"store on {self.data_dir} is closed")
        with self._sync_lock:
            with self._buffer_lock:
                batch = self._take_batch()
            try:
                self._write_batch(batch)
            except BaseException:
                with self._buffer_lock:
                    self._give_back(batch)
                raise

    def _take_batch(self) -> _Batch:
        batch, self._pending = self._pending, _Batch()
        if self._definitions_dirty:
            batch.definitions = Definitions(list(self._exchanges.values()), list(self._queues.values()),
                                            list(self._bindings.values()))
            self._definitions_dirty = False
        return batch

    def _give_back(self, failed: _Batch) -> None:
        """Put a batch whose write failed in front of what was buffered since, to be written again."""
        newer = self._pending
        self._pending = failed
        failed.chunks.extend(newer.chunks)
        for segment, offsets in newer.acks.items():
            failed.acks.setdefault(segment, []).extend(offsets)
        failed.doomed |= newer.doomed
        failed.definitions = None
        self._definitions_dirty = True  # rewritten from the current state, which includes both batches

    def _write_batch(self, batch: _Batch) -> None:
        self._write_acks(batch.acks)
        if batch.definitions is not None:
            self._write_definitions(batch.definitions)
        self._write_chunks(batch.chunks)
        self._delete_segments(batch.doomed)

    def _write_acks(self, acks: dict[int, list[int]]) -> None:
        for segment, offsets in acks.items():
            fd = self._ack_fd(segment)
            size = self._ack_sizes.get(segment, 0)
            data = _pack_offsets(offsets)
            if size == 0:
                data = ACK_HEADER + data
            _pwrite_all(fd, data, size)
            self._ack_sizes[segment] = size + len(data)
        for segment in acks:
            _datasync(self._ack_fds[segment])
        self._sync_dir_if_dirty()

    def _ack_fd(self, segment: int) -> int:
        fd = self._ack_fds.get(segment)
        if fd is None:
            path = self.data_dir / ack_name(segment)
            self._dir_dirty |= not path.exists()
            fd = self._ack_fds[segment] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        return fd

    def _write_definitions(self, definitions: Definitions) -> None:
        path = self.data_dir / DEFINITIONS
        temporary = path.with_name(DEFINITIONS + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _pwrite_all(fd, encode_definitions(definitions), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        self._dir_dirty = True
        self._sync_dir_if_dirty()

    def _write_chunks(self, chunks: list[_Chunk]) -> None:
        for chunk in chunks:
            _pwrite_all(self._segment_fd(chunk.segment), chunk.data, chunk.start)
        for segment in {chunk.segment for chunk in chunks}:
            _datasync(self._segment_fds[segment])
        self._sync_dir_if_dirty()
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
        """New, renamed and deleted files only persist once their directory is fsynced."""
        if self._dir_dirty:
            fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._dir_dirty = False

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
            read = _RecordReader(self)
            try:
                messages = {key: self._recover_queue(entries, read)
                            for key, entries in self._index.items() if entries}
            finally:
                read.close()
            self._recovered_sizes = {}
            self._recovered_expiry = {}
            with self._buffer_lock:
                return Recovered(exchanges=list(self._exchanges.values()), queues=list(self._queues.values()),
                                 bindings=list(self._bindings.values()), messages=messages)

    def _recover_queue(self, entries: dict[int, int], read: "_RecordReader") -> list[tuple[int, MessageRecord |
                                                                                         StoredMessage]]:
        recovered: list[tuple[int, MessageRecord | StoredMessage]] = []
        stored: dict[int, StoredMessage] = {}  # one (immutable) reference per body size, not per message
        sizes, expiry = self._recovered_sizes, self._recovered_expiry
        for message_id, location in sorted(entries.items()):
            size = sizes.get(location)
            if size is None or len(recovered) < EAGER_RECORDS:
                recovered.append((message_id, read(location)))
            elif expiry and location in expiry:  # expiries differ per message: nothing to share
                recovered.append((message_id, StoredMessage(size, expiry[location])))
            else:
                reference = stored.get(size)
                if reference is None:
                    reference = stored[size] = StoredMessage(size)
                recovered.append((message_id, reference))
        return recovered

    def close(self) -> None:
        """Sync (a clean shutdown loses nothing), then release the files and the data dir lock."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            self._reader.close()
            with self._sync_lock:
                for fd in [*self._segment_fds.values(), *self._ack_fds.values()]:
                    os.close(fd)
                self._segment_fds.clear()
                self._ack_fds.clear()
                os.close(self._lock_fd)  # releases the flock


class _RecordReader:
    """Reads message records back by location: from the open-time scan, the write buffer, or the files."""

    def __init__(self, store: SegmentStore) -> None:
        self._store = store
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()  # the sync thread may close an fd (segment deleted) meanwhile

    def __call__(self, location: int) -> MessageRecord:
        segment, offset = _split(location)
        framed = self._buffered(segment, offset)
        if framed is None:
            framed = self._from_file(segment, offset)
        length, crc = RECORD_HEAD.unpack_from(framed)
        end = RECORD_HEAD.size + length
        if len(framed) != end or zlib.crc32(memoryview(framed)[RECORD_HEAD.size:]) != crc:
            raise RecordError(f"{segment_name(segment)} offset {offset}: record damaged since it was written")
        return decode_message(framed, RECORD_HEAD.size, end)[3]

    def _buffered(self, segment: int, offset: int) -> bytes | None:
        with self._store._buffer_lock:
            for chunk in self._store._pending.chunks:
                if chunk.segment == segment and chunk.start <= offset < chunk.start + len(chunk.data):
                    start = offset - chunk.start
                    length = RECORD_HEAD.unpack_from(chunk.data, start)[0]
                    return bytes(chunk.data[start:start + RECORD_HEAD.size + length])
        return None

    def _from_file(self, segment: int, offset: int) -> bytes:
        with self._lock:
            fd = self._fds.get(segment)
            if fd is None:
                fd = self._fds[segment] = os.open(self._store.data_dir / segment_name(segment), os.O_RDONLY)
            length = RECORD_HEAD.unpack(os.pread(fd, RECORD_HEAD.size, offset))[0]
            return os.pread(fd, RECORD_HEAD.size + length, offset)

    def forget(self, segment: int) -> None:
        with self._lock:
            fd = self._fds.pop(segment, None)
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
