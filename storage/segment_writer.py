"""The file-writing half of ``SegmentStore``: what one ``sync`` writes, and the fds it writes with.

Kept apart from the store because it is the only code that touches a data
dir's files after opening, and it has its own owner: whoever holds the store's
``_sync_lock`` (the sync may run in another thread than the broker's loop).
The store decides *what* to write and in which order (see the durability notes
in ``storage.segment_store``); each step here writes its part and fsyncs it
before returning, and on a failure cuts off what it partially appended
(``fileio.release_tail``) so the space stays free for the acks and deletions
that free more.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import fileio
from .definitions_log import DefinitionsBatch
from .record_reader import RecordReader
from .segment_format import ACK_HEADER, ack_name, pack_ack_offsets, segment_name


@dataclass
class Chunk:
    """Bytes to write to one segment, starting at ``start``."""

    segment: int
    start: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Batch:
    """Everything one ``sync`` writes; swapped out of the store as a whole."""

    chunks: list[Chunk] = field(default_factory=list)
    acks: dict[int, list[int]] = field(default_factory=dict)  # segment -> record offsets
    definitions: DefinitionsBatch | None = None  # changed definitions, when there are any
    doomed: set[int] = field(default_factory=set)  # fully-acked segments to delete


class SegmentWriter:
    """Writes segment data, ack files and segment deletions durably; owns their write fds."""

    def __init__(self, data_dir: Path, reader: RecordReader) -> None:
        self.data_dir = data_dir
        self._reader = reader  # told to forget a segment before it is deleted
        self._segment_fds: dict[int, int] = {}
        self._ack_fds: dict[int, int] = {}
        self.ack_sizes: dict[int, int] = {}  # segment -> bytes in its ack file (set at open for existing ones)
        self._dir_dirty = False

    def write_acks(self, acks: dict[int, list[int]]) -> None:
        """Append each segment's acks and fsync them; a segment's acks leave ``acks`` once durable."""
        for segment in list(acks):
            fd = self._fd(self._ack_fds, segment, ack_name)
            size = self.ack_sizes.get(segment, 0)
            data = pack_ack_offsets(acks[segment])
            if size == 0:
                data = ACK_HEADER + data
            try:
                fileio.pwrite_all(fd, data, size)
                fileio.datasync(fd)
                self._sync_dir_if_dirty()
            except OSError:
                fileio.release_tail(fd, size)
                raise
            self.ack_sizes[segment] = size + len(data)
            del acks[segment]

    def write_chunks(self, chunks: list[Chunk]) -> None:
        """Write the records at their offsets and fsync every segment they touch."""
        try:
            for chunk in chunks:
                fileio.pwrite_all(self._fd(self._segment_fds, chunk.segment, segment_name), chunk.data, chunk.start)
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

    def close_segments_except(self, active: int) -> None:
        """Close the fds of segments no longer appended to (a stale ``active`` keeps one open a sync longer)."""
        for segment in [segment for segment in self._segment_fds if segment != active]:
            os.close(self._segment_fds.pop(segment))

    def _fd(self, fds: dict[int, int], segment: int, name: Callable[[int], str]) -> int:
        """The write fd of segment ``segment``'s file named by ``name``, opened (created, if need be) once."""
        fd = fds.get(segment)
        if fd is None:
            path = self.data_dir / name(segment)
            self._dir_dirty |= not path.exists()  # a new file: the directory must be fsynced too
            fd = fds[segment] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        return fd

    def delete_segments(self, doomed: set[int]) -> None:
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
            self.ack_sizes.pop(segment, None)
            (self.data_dir / ack_name(segment)).unlink(missing_ok=True)
        self._dir_dirty = True  # fsynced with the next sync's directory update; nothing depends on it sooner

    def _sync_dir_if_dirty(self) -> None:
        if self._dir_dirty:
            fileio.fsync_dir(self.data_dir)
            self._dir_dirty = False

    def close(self) -> None:
        """Close every write fd (nothing is flushed: each write step fsyncs before it returns)."""
        for fd in [*self._segment_fds.values(), *self._ack_fds.values()]:
            os.close(fd)
        self._segment_fds.clear()
        self._ack_fds.clear()
