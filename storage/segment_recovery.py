"""Opening a data dir: reading ack files and scanning segments to rebuild ``SegmentStore``'s index.

Kept apart from the store because it runs once, before the store serves
anything, and is where damage is found and dealt with: a torn tail is cut off
the last segment (the one a crash interrupted), a damaged record elsewhere ends
the reading of that segment, a damaged ack file is set aside (costing
redeliveries, never losses), and a file that is not a segment of a readable
version is left untouched.  The store owns what is indexed: each intact,
unacked record is handed to its ``index_message``, so a message id stored twice
is resolved exactly as at run time (the newer record wins).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from .record_reader import LOCATION_BITS
from .segment_format import (
    ACK_ENTRY,
    ACK_MAGIC,
    FILE_HEADER_SIZE,
    KIND_DELAYED_MESSAGE,
    SEGMENT_MAGIC,
    RecordError,
    RecordScanner,
    ack_name,
    check_header,
    decode_message_key,
    record_kind,
    unpack_ack_offsets,
)

log = logging.getLogger("storage.segment_store")  # the store's logger: operators grep for one name

IndexMessage = Callable[[tuple[str, str], int, int], None]  # (vhost, queue), message id, location
# a delayed message (record kind 3): (vhost, exchange), delayed id, location
IndexDelayed = Callable[[tuple[str, str], int, int], None]


def list_files(data_dir: Path) -> tuple[set[int], set[int]]:
    """The numbers of the segment files and of the ack files in ``data_dir``."""
    segments: set[int] = set()
    acks: set[int] = set()
    for path in data_dir.iterdir():
        kind, _, number = path.name.partition(".")
        if len(number) == 10 and number.isdigit() and kind in ("msgs", "acks"):
            (segments if kind == "msgs" else acks).add(int(number))
    return segments, acks


def read_acks(data_dir: Path, number: int) -> tuple[set[int], int]:
    """The acked offsets of segment ``number`` and the usable size of its ack file (0: start it afresh).

    A damaged ack file costs redeliveries, never losses.
    """
    path = data_dir / ack_name(number)
    data = path.read_bytes()
    problem = check_header(data, ACK_MAGIC)
    if problem == "empty":
        return set(), 0  # size 0: the next write starts with a fresh header
    if problem is not None:
        aside = path.with_name(path.name + ".corrupt")
        log.error(
            "%s: %s; its acks are ignored (those messages will be delivered again), file kept as %s",
            path,
            problem,
            aside,
        )
        os.replace(path, aside)
        return set(), 0
    usable = FILE_HEADER_SIZE + (len(data) - FILE_HEADER_SIZE) // ACK_ENTRY.size * ACK_ENTRY.size
    if usable != len(data):
        log.warning("%s: dropping a partial ack entry at offset %d (torn write)", path, usable)
        os.truncate(path, usable)
    return set(unpack_ack_offsets(data[FILE_HEADER_SIZE:usable])), usable


def recover_segment(
    path: Path,
    number: int,
    acked: set[int],
    last: bool,
    *,
    index_message: IndexMessage,
    index_delayed: IndexDelayed,
    sizes: dict[int, int],
    expiry: dict[int, float],
) -> bool:
    """Index segment ``number``'s unacked records; False if the file is not a readable segment (skipped).

    ``sizes`` and ``expiry`` get each indexed record's body size and expiry (by
    location; a delayed message's fire time is its expiry): the records themselves
    stay on disk, read on demand.  Delayed messages go to ``index_delayed``.
    """
    with open(path, "rb") as file:
        header = file.read(FILE_HEADER_SIZE)
        problem = check_header(header, SEGMENT_MAGIC)
        if problem == "empty":
            log.warning("%s: no complete header (%d bytes); treating it as empty", path, len(header))
            return True
        if problem is not None:
            log.error(
                "%s: %s; skipping the whole file (its messages are not recovered, the file is left untouched)",
                path,
                problem,
            )
            return False
        # mapped, not read: bodies are copied once, straight from the page cache
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            scanner = RecordScanner(data)
            kept = _index_records(number, scanner, acked, (index_message, index_delayed), sizes, expiry)
            size = len(data)
    if scanner.damage is not None:
        _report_damage(path, size, kept, scanner.damage, last)
    return True


def _index_records(
    number: int,
    scanner: RecordScanner,
    acked: set[int],
    indexers: tuple[IndexMessage, IndexDelayed],
    sizes: dict[int, int],
    expiry: dict[int, float],
) -> int:
    """Index the unacked records the scanner yields; returns how many records were intact."""
    index_message, index_delayed = indexers
    names: dict[bytes, tuple[str, str]] = {}  # one tuple (and strings) per queue, not per message
    count = 0
    data = scanner.data
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
        if expires_at is not None:
            expiry[location] = expires_at
        if record_kind(data, start) == KIND_DELAYED_MESSAGE:
            index_delayed(key, message_id, location)
            continue
        sizes[location] = body_size  # the record itself stays on disk (CRC checked)
        index_message(key, message_id, location)
    return count


def _report_damage(path: Path, size: int, kept: int, damage: tuple[int, str], last: bool) -> None:
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
