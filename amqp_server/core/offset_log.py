"""A stream's log as the broker holds it: an index of every offset, the newest messages, a bounded cache.

Every consumer of a stream reads this one log through its own cursor (an offset), so ten consumers
at ten offsets cost ten integers, not ten copies.  Per offset the index keeps only the record's size
and timestamp (16 bytes, in ``array``s): enough for segments, retention and timestamp offsets.
Message bodies are in memory for the newest ``TAIL_ENTRIES`` (what live consumers read) and for a few
recently read ``CHUNK``s of older offsets (an LRU of ``CACHE_CHUNKS``), read back from the store on
demand: memory stays bounded however long the stream and wherever its consumers are.

Segments and retention follow RabbitMQ (osiris): the log is cut into segments of at most
``max_segment_size`` bytes; when a segment fills and a new one starts, whole segments are dropped from
the front while the log is over ``x-max-length-bytes`` or their newest record is older than
``x-max-age`` — never the segment being written.  The store is told to forget what was dropped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from storage.api import StreamIndex, StreamRecord

from .message import Entry, Message

if TYPE_CHECKING:
    from storage.api import Store

DEFAULT_SEGMENT_SIZE = 500_000_000  # bytes: RabbitMQ's default x-stream-max-segment-size-bytes
TAIL_ENTRIES = 4096  # newest messages kept in memory (live consumers read these)
CHUNK = 256  # offsets read from the store at once for a consumer behind the tail
# older chunks kept (LRU; ~16k messages): consumers catching up a few thousand offsets apart share them.
# measured (benchmarks/streams.py, 10 consumers 1000 offsets apart): 16 chunks re-read every record from the
# store once per consumer
CACHE_CHUNKS = 64


class OffsetLog:
    """One stream's offsets ``first`` .. ``next - 1``: index, segments, tail and cache."""

    def __init__(self, store: Store, vhost: str, queue: str, index: StreamIndex | None = None) -> None:
        self._store = store
        self._key = (vhost, queue)
        index = index or StreamIndex(0)
        self.first = index.first
        self.sizes = array("q", index.sizes)
        self.timestamps = array("d", index.timestamps)
        self.total_bytes = sum(self.sizes)
        self.segments: list[int] = []  # first offset of each segment; the last one is being written
        self.segment_bytes = 0  # of the last segment
        self._tail: deque[Entry] = deque(maxlen=TAIL_ENTRIES)  # the newest entries, offsets ending at next - 1
        self._cache: OrderedDict[int, list[Entry]] = OrderedDict()  # chunk number -> entries

    @property
    def next(self) -> int:
        """The offset the next message gets."""
        return self.first + len(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def rebuild_segments(self, max_segment_size: int) -> None:
        """Cut the recovered records into segments again, as ``append`` did when they were written."""
        self.segments, self.segment_bytes = [], 0
        for at, size in enumerate(self.sizes):
            self._place(self.first + at, size, max_segment_size)

    def _place(self, offset: int, size: int, max_segment_size: int) -> bool:
        """Count a record of ``size`` bytes at ``offset`` into the segments; True if it starts a new one (a
        segment holds at least one record, however big)."""
        rolled = not self.segments or bool(self.segment_bytes and self.segment_bytes + size > max_segment_size)
        if rolled:
            self.segments.append(offset)
            self.segment_bytes = 0
        self.segment_bytes += size
        return rolled

    def append(self, message: Message, timestamp: float, max_segment_size: int) -> bool:
        """Add ``message`` (carrying its ``x-stream-offset`` header already) at ``next`` and write it to the
        store; True when a segment filled and a new one started (the moment retention is evaluated)."""
        offset = self.next
        entry = Entry(message, offset, stored=False)  # not settled in the store one by one: never "stored"
        size = entry.size  # len(header) + len(body)
        rolled = self._place(offset, size, max_segment_size)
        self.total_bytes += size
        self.sizes.append(size)
        self.timestamps.append(timestamp)
        self._store.append_stream(*self._key, StreamRecord(offset, timestamp, message.to_record()))
        self._tail.append(entry)
        return rolled and len(self.segments) > 1

    def entry(self, offset: int) -> Entry | None:
        """The entry at ``offset`` (``first`` <= offset < ``next``), from memory or read from the store."""
        tail = self._tail
        tail_first = self.next - len(tail)
        if offset >= tail_first:
            return tail[offset - tail_first]
        chunk = offset // CHUNK
        entries = self._cache.get(chunk)
        if entries is None or offset - entries[0].message_id >= len(entries):  # absent, or read before it filled
            entries = [
                Entry(Message.from_record(record.message), record.offset, stored=False)
                for record in self._store.read_stream(*self._key, chunk * CHUNK, CHUNK)
            ]
            if not entries:
                return None
            self._cache[chunk] = entries
            if len(self._cache) > CACHE_CHUNKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(chunk)
        at = offset - entries[0].message_id
        return entries[at] if 0 <= at < len(entries) else None

    def offset_at(self, timestamp: float) -> int:
        """The first offset whose record is at least as new as ``timestamp`` (``next`` if none is)."""
        return self.first + bisect_left(self.timestamps, timestamp)

    def apply_retention(self, max_bytes: int | None, max_age: int | None, now: float) -> None:
        """Drop whole segments from the front (never the one being written) while the log is longer than
        ``max_bytes`` or a segment's newest record is older than ``max_age`` seconds."""
        dropped = 0
        while len(self.segments) > 1:
            end = self.segments[1]  # the next segment's first offset
            last_timestamp = self.timestamps[end - 1 - self.first]
            too_big = max_bytes is not None and self.total_bytes > max_bytes
            too_old = max_age is not None and last_timestamp < now - max_age
            if not (too_big or too_old):
                break
            count = end - self.first
            self.total_bytes -= sum(self.sizes[:count])
            del self.sizes[:count], self.timestamps[:count], self.segments[0]
            self.first = end
            dropped += count
        if dropped:
            self._store.truncate_stream(*self._key, self.first)
            for chunk in [chunk for chunk in self._cache if (chunk + 1) * CHUNK <= self.first]:
                del self._cache[chunk]
