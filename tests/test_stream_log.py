"""The segment store's stream logs across a reopen: synced records come back at their offsets, a torn
tail is cut off, retention's ``first`` and the files it deleted stay so, and files roll."""

from __future__ import annotations

import os
from pathlib import Path

from pamqp import commands
from pamqp.header import ContentHeader

from storage import stream_log
from storage.api import MessageRecord, StreamRecord
from storage.segment_store import SegmentStore


def record(offset: int, body: bytes = b"body") -> StreamRecord:
    header = ContentHeader(0, len(body), commands.Basic.Properties(message_id=f"m{offset}")).marshal()
    return StreamRecord(offset, 1_700_000_000.0 + offset, MessageRecord("", "s", header, body))


def reopened(path: Path) -> SegmentStore:
    return SegmentStore(path)


def test_synced_records_survive_a_reopen_and_unsynced_ones_do_not(tmp_path):
    store = SegmentStore(tmp_path)
    for offset in range(3):
        store.append_stream("/", "s", record(offset))
    store.sync()
    store.append_stream("/", "s", record(3))  # never synced: as after kill -9
    os.close(store._lock_fd)  # as after kill -9: the flock goes with the process, nothing more is written
    again = reopened(tmp_path)
    assert again.read_stream("/", "s", 0, 10) == [record(n) for n in range(3)]
    assert again.recover().streams[("/", "s")].next == 3
    again.append_stream("/", "s", record(3, b"new"))
    assert again.read_stream("/", "s", 3, 1) == [record(3, b"new")]
    again.close()


def test_a_torn_tail_is_cut_off(tmp_path):
    store = SegmentStore(tmp_path)
    for offset in range(3):
        store.append_stream("/", "s", record(offset))
    store.close()
    (log,) = (tmp_path / "streams" / "%2F" / "s").glob("*.log")
    data = log.read_bytes()
    log.write_bytes(data[:-3])
    again = reopened(tmp_path)
    assert again.read_stream("/", "s", 0, 10) == [record(0), record(1)]
    again.append_stream("/", "s", record(2))
    again.close()
    third = reopened(tmp_path)
    assert third.read_stream("/", "s", 0, 10) == [record(n) for n in range(3)]
    third.close()


def test_retention_survives_a_reopen_and_deletes_whole_files(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_log, "FILE_SIZE", 200)  # a few records per file
    store = SegmentStore(tmp_path)
    for offset in range(20):
        store.append_stream("/", "s", record(offset))
    store.sync()
    directory = tmp_path / "streams" / "%2F" / "s"
    files = sorted(directory.glob("*.log"))
    assert len(files) > 3
    store.truncate_stream("/", "s", 15)
    store.close()
    left = sorted(directory.glob("*.log"))
    assert len(left) < len(files) and int(left[0].stem) <= 15
    again = reopened(tmp_path)
    index = again.recover().streams[("/", "s")]
    assert (index.first, index.next) == (15, 20)
    assert [r.offset for r in again.read_stream("/", "s", 0, 100)] == list(range(15, 20))
    again.close()


def test_a_read_spans_files_and_buffered_records(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_log, "FILE_SIZE", 200)
    store = SegmentStore(tmp_path)
    for offset in range(12):
        store.append_stream("/", "s", record(offset))
    store.sync()
    for offset in range(12, 15):
        store.append_stream("/", "s", record(offset))  # buffered, not written yet
    assert len(list((tmp_path / "streams" / "%2F" / "s").glob("*.log"))) > 2
    assert store.read_stream("/", "s", 0, 100) == [record(n) for n in range(15)]
    assert store.read_stream("/", "s", 3, 7) == [record(n) for n in range(3, 10)]
    assert store.read_stream("/", "s", 10, 4) == [record(n) for n in range(10, 14)]
    store.close()
