"""Where a stored message is (its location), and reading it back from there.

A location is ``segment << 40 | offset``: one int per indexed message, not a
tuple (at millions of messages the difference is tens of megabytes).  The
reader keeps its own read-only fds, one per segment, and is told by the store
to forget a segment before the store deletes it.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from .api import MessageRecord
from .segment_format import RECORD_HEAD, RecordError, decode_message, segment_name

LOCATION_BITS = 40
_OFFSET_MASK = (1 << LOCATION_BITS) - 1


def location(segment: int, offset: int) -> int:
    return segment << LOCATION_BITS | offset


def split(location: int) -> tuple[int, int]:
    return location >> LOCATION_BITS, location & _OFFSET_MASK


class RecordReader:
    """Reads message records back by location: from the store's write buffer (``buffered``) or the files."""

    def __init__(self, data_dir: Path, buffered: Callable[[int, int], bytes | None]) -> None:
        self._data_dir = data_dir
        self._buffered = buffered
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()  # the sync thread may close an fd (segment deleted) meanwhile

    def __call__(self, location: int) -> MessageRecord:
        segment, offset = split(location)
        framed = self._buffered(segment, offset)
        if framed is None:
            framed = self._from_file(segment, offset)
        length, crc = RECORD_HEAD.unpack_from(framed)
        end = RECORD_HEAD.size + length
        if len(framed) != end or zlib.crc32(memoryview(framed)[RECORD_HEAD.size :]) != crc:
            raise RecordError(f"{segment_name(segment)} offset {offset}: record damaged since it was written")
        return decode_message(framed, RECORD_HEAD.size, end)[3]

    def _from_file(self, segment: int, offset: int) -> bytes:
        with self._lock:
            fd = self._fds.get(segment)
            if fd is None:
                fd = self._fds[segment] = os.open(self._data_dir / segment_name(segment), os.O_RDONLY)
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
