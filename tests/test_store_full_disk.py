"""SegmentStore on a really full disk (an 8 MB tmpfs): it makes progress as soon as space is freed,
reclaims acknowledged space while running, and a failed last sync still writes what it can."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from storage.api import MessageRecord, QueueRecord
from storage.segment_store import SegmentStore
from tests.small_disk import free, mounted_tmpfs, used

REPO = Path(__file__).resolve().parent.parent
BODY = 100 * 1024


def message(n: int) -> MessageRecord:
    return MessageRecord("", "q", b"\x00\x3c\x00\x00" + n.to_bytes(8, "big"), bytes([n % 251]) * BODY)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as path:
        yield path


class Filled(NamedTuple):
    synced: dict[str, list[int]]  # per queue
    unsynced: dict[str, list[int]]  # the failed batch, per queue
    free_before: int  # free bytes on the disk just before the failed sync


def fill(store: SegmentStore, queues: list[str], batch: int = 3) -> Filled:
    """Put messages round-robin over ``queues``, syncing every ``batch``, until a sync fails with ENOSPC."""
    synced: dict[str, list[int]] = {queue: [] for queue in queues}
    n = 0
    for _ in range(1000):
        unsynced: dict[str, list[int]] = {queue: [] for queue in queues}
        for _ in range(batch):
            n += 1
            queue = queues[n % len(queues)]
            store.put_message("/", queue, n, message(n))
            unsynced[queue].append(n)
        free_before = free(store.data_dir)
        try:
            store.sync()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            return Filled(synced, unsynced, free_before)
        for queue in queues:
            synced[queue] += unsynced[queue]
    raise AssertionError("the disk never filled up")


def recovered_ids(path: Path, queue: str) -> list[int]:
    store = SegmentStore(path)
    try:
        return [message_id for message_id, _ in store.recover().messages.get(("/", queue), [])]
    finally:
        store.close()


def test_acking_everything_on_a_full_disk_frees_it_and_new_messages_sync_without_restart(disk: Path) -> None:
    store = SegmentStore(disk)  # default 64 MB segments: everything is in the active one
    store.put_queue(QueueRecord("/", "q"))
    synced, unsynced, _ = fill(store, ["q"])
    assert used(disk) > 6 * 1024 * 1024

    store.remove_messages("/", "q", synced["q"] + unsynced["q"])
    store.put_message("/", "q", 10_000, message(10_000))
    store.sync()  # no restart, no error

    assert used(disk) < 1024 * 1024  # reclaimed while running, as df sees it
    store.close()
    assert recovered_ids(disk, "q") == [10_000]


def test_a_failed_append_leaves_room_for_acks_which_a_purge_gets_written_and_close_reports_the_rest(
    disk: Path, caplog
) -> None:
    reserve = disk / "reserve"  # freed below: whatever the fill left, acks have room (and the batch does not)
    reserve.write_bytes(b"\x00" * 65536)
    store = SegmentStore(disk)
    store.put_queue(QueueRecord("/", "keep"))
    store.put_queue(QueueRecord("/", "purge"))
    synced, unsynced, free_before = fill(store, ["keep", "purge"], batch=6)
    assert free(disk) >= free_before - 8192  # the failed batch's partial write was cut off again
    reserve.unlink()

    store.remove_messages("/", "purge", synced["purge"] + unsynced["purge"])  # shares segments with "keep"
    with pytest.raises(OSError):
        store.sync()  # the unwritten "keep" messages still do not fit; the acks do
    with caplog.at_level(logging.ERROR, logger="storage.segment_store"):
        store.close()  # does not raise

    assert f"could not write {len(unsynced['keep'])} unacknowledged messages" in caplog.text
    assert "0 acks" in caplog.text
    assert recovered_ids(disk, "purge") == []
    assert recovered_ids(disk, "keep") == synced["keep"]


def test_space_freed_elsewhere_on_the_disk_lets_the_retried_batch_through(disk: Path) -> None:
    ballast = disk / "ballast"
    ballast.write_bytes(b"\x00" * (2 * 1024 * 1024))
    store = SegmentStore(disk)
    store.put_queue(QueueRecord("/", "q"))
    synced, unsynced, _ = fill(store, ["q"])

    ballast.unlink()
    store.put_message("/", "q", 10_000, message(10_000))
    store.sync()
    store.close()

    assert recovered_ids(disk, "q") == synced["q"] + unsynced["q"] + [10_000]


def test_the_active_segment_is_deleted_once_fully_acked(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "q"))
    ids = range(1, 91)  # 9 MB (over ROLL_EMPTY_AT), in one 64 MB segment
    for n in ids:
        store.put_message("/", "q", n, message(n))
    store.sync()
    store.remove_messages("/", "q", ids)
    store.sync()

    assert sum(path.stat().st_size for path in tmp_path.glob("msgs.*")) < BODY
    store.put_message("/", "q", 100, message(100))
    store.close()
    assert recovered_ids(tmp_path, "q") == [100]


WRITER = r"""
import sys
from storage.api import MessageRecord, QueueRecord
from storage.segment_store import SegmentStore

store = SegmentStore(sys.argv[1], segment_size=1024 * 1024)
store.put_queue(QueueRecord("/", "q"))
store.sync()
put = acked = 0
body = b"x" * 50_000
while True:
    for _ in range(10):
        put += 1
        store.put_message("/", "q", put, MessageRecord("", "q", b"h%d" % put, body))
    try:
        store.sync()
    except OSError:  # the disk is full: a consumer catches up, all but the newest 40 are acked
        print("acking", put - 40, flush=True)
        store.remove_messages("/", "q", range(acked + 1, put - 39))
        acked = put - 40
        continue
    print("synced", put, acked, flush=True)
"""


@pytest.mark.parametrize("lines_after_the_disk_filled", [0, 3, 20])
def test_kill_9_amid_full_disk_failures_loses_no_synced_message_and_resurrects_no_synced_ack(
    disk: Path, lines_after_the_disk_filled: int
) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(disk)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, writer.kill)
    watchdog.start()
    try:
        lines = []
        while sum(line.startswith("acking") for line in lines) < 2:
            lines.append(writer.stdout.readline())
            assert lines[-1], "the writer died"
        lines += [writer.stdout.readline() for _ in range(lines_after_the_disk_filled)]
        os.kill(writer.pid, signal.SIGKILL)  # mid-batch, mid-sync or mid-failure
        writer.wait(timeout=10)
        lines += writer.stdout.readlines()
    finally:
        watchdog.cancel()
        writer.stdout.close()
    synced_put, synced_acked = map(int, [line for line in lines if line.startswith("synced")][-1].split()[1:])
    acks_issued = max(int(line.split()[1]) for line in lines if line.startswith("acking"))

    ids = recovered_ids(disk, "q")
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert ids[0] > synced_acked  # acks made durable by a sync that succeeded stay
    assert set(range(acks_issued + 1, synced_put + 1)) <= set(ids)  # synced and never acked: all there
