"""SegmentStore: the MemoryStore contract on disk, recovery after kill -9 and damage, locking, disk reclaim.

Damage tests write a store cleanly, then cut or flip bytes in its files the way
a crash or a bad disk would, and check what a newly opened store recovers.
Record boundaries are found by parsing the documented segment format here,
independently of the store's own reader.
"""

from __future__ import annotations

import datetime
import decimal
import errno
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import definitions_log, fileio
from storage.api import BindingRecord, ExchangeRecord, MessageRecord, QueueRecord, Recovered
from storage.memory import MemoryStore
from storage.segment_format import Definitions, encode_definitions
from storage.segment_store import DataDirLocked, SegmentStore, StoreClosed

REPO = Path(__file__).resolve().parent.parent
HEADER_SIZE = 10


def message(n: int, size: int = 20) -> MessageRecord:
    body = (b"body-%d-" % n * size)[: max(size, 1)]
    return MessageRecord("amq.direct", f"rk{n}", b"\x00\x3c\x00\x00" + n.to_bytes(8, "big"), body)


def put_messages(store: SegmentStore, ids: range, queue: str = "q", vhost: str = "/") -> None:
    for n in ids:
        store.put_message(vhost, queue, n, message(n))


def recovered_ids(recovered: Recovered, queue: str = "q") -> list[int]:
    return [message_id for message_id, _ in recovered.messages.get(("/", queue), [])]


def reopen(path: Path, **kwargs) -> Recovered:
    store = SegmentStore(path, **kwargs)
    try:
        return store.recover()
    finally:
        store.close()


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("msgs.*"))


def record_ends(segment: Path) -> list[int]:
    """End offsets of every record in a segment, from the documented framing (u32 length, u32 crc, payload)."""
    data = segment.read_bytes()
    ends, offset = [], HEADER_SIZE
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 8 + length
        ends.append(offset)
    return ends


def normalised(recovered: Recovered) -> tuple:
    return (
        recovered.exchanges,
        recovered.queues,
        recovered.bindings,
        {key: value for key, value in recovered.messages.items()},
    )


AWKWARD_ARGUMENTS = {
    "bytes": b"\x00\xff raw",
    "bytearray": bytearray(b"\x01\x02"),
    "naive": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "aware": datetime.datetime(2020, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    "decimal": decimal.Decimal("-12.3450"),
    "nested": {"list": [1, "two", [3.5, None], {"deep": True}], "empty": {}},
    "true": True,
    "zero": 0,
    "false": False,
    "big": -(2**63),
    "float": 0.1,
    "infinity": float("inf"),
    "none": None,
    "text": "ünïcødé \u2603",
}


# -- the MemoryStore contract ------------------------------------------------------------------


def test_definitions_round_trip_with_awkward_argument_types(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.put_exchange(ExchangeRecord("/", "ex", "direct", True, False, True, dict(AWKWARD_ARGUMENTS)))
    store.put_queue(QueueRecord("/", "q", True, False, dict(AWKWARD_ARGUMENTS)))
    store.put_binding(BindingRecord("/", "ex", "q", "key", dict(AWKWARD_ARGUMENTS)))
    store.close()

    recovered = reopen(tmp_path)

    assert recovered.exchanges == [ExchangeRecord("/", "ex", "direct", True, False, True, AWKWARD_ARGUMENTS)]
    assert recovered.queues == [QueueRecord("/", "q", True, False, AWKWARD_ARGUMENTS)]
    assert recovered.bindings == [BindingRecord("/", "ex", "q", "key", AWKWARD_ARGUMENTS)]
    arguments = recovered.queues[0].arguments
    assert {key: type(value) for key, value in arguments.items()} == {
        key: type(value) for key, value in AWKWARD_ARGUMENTS.items()
    }
    assert arguments["aware"].utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert type(arguments["nested"]["list"][3]["deep"]) is bool


def test_unstorable_argument_type_is_refused_at_put(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    with pytest.raises(TypeError, match="set"):
        store.put_queue(QueueRecord("/", "q", arguments={"x": {1, 2}}))
    store.close()
    assert reopen(tmp_path).queues == []


def apply_scripted_operations(store) -> None:
    store.put_exchange(ExchangeRecord("/", "ex", "direct"))
    store.put_exchange(ExchangeRecord("/", "ex2", "direct", arguments={"alternate-exchange": "ex"}))
    store.put_queue(QueueRecord("/", "a"))
    store.put_queue(QueueRecord("/", "b", arguments={"x-max-length": 10}))
    store.put_queue(QueueRecord("other", "a"))
    store.put_binding(BindingRecord("/", "ex", "a", "ka"))
    store.put_binding(BindingRecord("/", "ex", "b", "kb"))
    store.put_binding(BindingRecord("/", "ex2", "ex", "kx", destination_kind="exchange"))
    store.put_binding(BindingRecord("/", "ex", "a", "ka", {"x-match": "all"}))
    for n in range(1, 40):
        store.put_message("/", "a", n, message(n))
        store.put_message("/", "b", n, message(1000 + n))
        store.put_message("other", "a", n, message(2000 + n))
    store.remove_messages("/", "a", [1, 5, 7, 999])
    store.remove_messages("/", "nowhere", [1])
    store.delete_binding(BindingRecord("/", "ex", "a", "ka"))
    store.delete_exchange("/", "ex2")
    store.delete_queue("/", "b")
    store.put_queue(QueueRecord("/", "b"))  # same name again: message ids start over
    store.put_message("/", "b", 1, message(3001))
    store.put_message("/", "a", 2, message(4002))  # same id stored again replaces it


def test_recover_matches_memory_store_before_and_after_reopen(tmp_path: Path) -> None:
    memory, store = MemoryStore(), SegmentStore(tmp_path, segment_size=2048)
    apply_scripted_operations(memory)
    apply_scripted_operations(store)
    assert normalised(store.recover()) == normalised(memory.recover())
    store.close()

    recovered = reopen(tmp_path, segment_size=2048)

    assert normalised(recovered) == normalised(memory.recover())
    assert recovered_ids(recovered, "a") == [n for n in range(1, 40) if n not in (1, 5, 7)]
    assert recovered.messages[("/", "b")] == [(1, message(3001))]
    assert dict(recovered.messages[("/", "a")])[2] == message(4002)


def test_messages_come_back_in_id_order_per_queue(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    for n in (3, 1, 2):
        store.put_message("/", "q", n, message(n))
    store.close()
    assert recovered_ids(reopen(tmp_path)) == [1, 2, 3]


def test_reopen_after_close_recovers_the_same_and_can_continue(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_size=1000)
    store.put_queue(QueueRecord("/", "q"))
    put_messages(store, range(1, 101))
    store.remove_messages("/", "q", range(1, 51))
    store.close()
    store = SegmentStore(tmp_path, segment_size=1000)
    assert recovered_ids(store.recover()) == list(range(51, 101))
    put_messages(store, range(101, 111))
    store.remove_messages("/", "q", [51, 52])
    store.close()

    recovered = reopen(tmp_path, segment_size=1000)

    assert recovered_ids(recovered) == list(range(53, 111))
    assert all(record == message(n) for n, record in recovered.messages[("/", "q")])


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put_queue"), st.sampled_from("ab"), st.integers(0, 3)),
        st.tuples(st.just("delete_queue"), st.sampled_from("ab")),
        st.tuples(st.just("put_exchange"), st.sampled_from("xy"), st.booleans()),
        st.tuples(st.just("delete_exchange"), st.sampled_from("xy")),
        st.tuples(st.just("put_binding"), st.sampled_from("xy"), st.sampled_from("abxy"), st.sampled_from("kl")),
        st.tuples(st.just("delete_binding"), st.sampled_from("xy"), st.sampled_from("abxy"), st.sampled_from("kl")),
        st.tuples(st.just("put_message"), st.sampled_from("ab"), st.integers(1, 30), st.binary(max_size=300)),
        st.tuples(st.just("remove"), st.sampled_from("ab"), st.lists(st.integers(1, 30), max_size=8)),
        st.tuples(st.just("sync")),
        st.tuples(st.just("failing_sync"), st.integers(0, 6)),
        st.tuples(st.just("reopen")),
    ),
    max_size=60,
)


def failing_sync(store: SegmentStore, writes_before_failure: int) -> None:
    """A sync whose write number ``writes_before_failure`` (0-based) writes half, then fails with ENOSPC."""
    real = fileio.pwrite_all
    calls = iter(range(1_000_000))

    def pwrite_all(fd: int, data, offset: int) -> None:
        if next(calls) == writes_before_failure:
            real(fd, bytes(data)[: len(data) // 2], offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    fileio.pwrite_all = pwrite_all
    try:
        store.sync()
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        fileio.pwrite_all = real


def apply(store, operation: tuple) -> None:
    kind, *args = operation
    if kind == "put_queue":
        store.put_queue(QueueRecord("/", args[0], arguments={"v": args[1]}))
    elif kind == "delete_queue":
        store.delete_queue("/", args[0])
    elif kind == "put_exchange":
        store.put_exchange(ExchangeRecord("/", args[0], "direct", auto_delete=args[1]))
    elif kind == "delete_exchange":
        store.delete_exchange("/", args[0])
    elif kind in ("put_binding", "delete_binding"):
        destination_kind = "exchange" if args[1] in "xy" else "queue"
        record = BindingRecord("/", args[0], args[1], args[2], destination_kind=destination_kind)
        getattr(store, kind)(record)
    elif kind == "put_message":
        store.put_message("/", args[0], args[1], MessageRecord("", args[0], b"h", args[2]))
    elif kind == "remove":
        store.remove_messages("/", args[0], args[1])
    elif kind == "sync":
        store.sync()


@pytest.mark.parametrize("compact_at", [definitions_log.COMPACT_MIN_BYTES, 0], ids=["log", "compacting"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_any_operation_sequence_recovers_like_memory_store(
    tmp_path_factory, monkeypatch, compact_at: int, operations: list[tuple]
) -> None:
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", compact_at)  # 0: compact whenever the log outgrows 2x
    path = tmp_path_factory.mktemp("store")
    memory, store = MemoryStore(), SegmentStore(path, segment_size=512)
    try:
        for operation in operations:
            if operation[0] == "reopen":
                store.close()
                store = SegmentStore(path, segment_size=512)
            elif operation[0] == "failing_sync":
                failing_sync(store, operation[1])
            else:
                apply(memory, operation)
                apply(store, operation)
        assert normalised(store.recover()) == normalised(memory.recover())
    finally:
        store.close()
    assert normalised(reopen(path, segment_size=512)) == normalised(memory.recover())


# -- crashes -----------------------------------------------------------------------------------

WRITER = r"""
import sys
from storage.api import MessageRecord, QueueRecord
from storage.segment_store import SegmentStore

store = SegmentStore(sys.argv[1], segment_size=16384)
store.put_queue(QueueRecord("/", "q"))
store.sync()
put = acked = 0
while True:
    for _ in range(50):
        put += 1
        store.put_message("/", "q", put, MessageRecord("", "q", b"h%d" % put, b"body-%d" % put * 5))
    store.remove_messages("/", "q", range(acked + 1, put - 199))
    acked = max(acked, put - 200)
    store.sync()
    print(put, acked, flush=True)
"""


@pytest.mark.parametrize("lines_before_kill", [1, 7, 40])
def test_kill_9_loses_no_synced_message_and_resurrects_no_synced_ack(tmp_path: Path, lines_before_kill: int) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(20, writer.kill)
    watchdog.start()
    try:
        lines = [writer.stdout.readline() for _ in range(lines_before_kill)]
        os.kill(writer.pid, signal.SIGKILL)  # the writer keeps going until here: killed mid-batch or mid-sync
        writer.wait(timeout=10)
        lines += writer.stdout.readlines()  # syncs it confirmed before it died
    finally:
        watchdog.cancel()
        writer.stdout.close()
    synced, acked = map(int, lines[-1].split())

    recovered = reopen(tmp_path)

    # the sync in flight at the kill (50 more puts, 50 more acks) may or may not have made it
    ids = recovered_ids(recovered)
    assert recovered.queues == [QueueRecord("/", "q")]
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert acked < ids[0] <= acked + 51
    assert synced <= ids[-1] <= synced + 50
    for n, record in recovered.messages[("/", "q")]:
        assert record == MessageRecord("", "q", b"h%d" % n, b"body-%d" % n * 5)


def test_unsynced_writes_may_be_lost_but_synced_ones_are_not(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from storage.api import MessageRecord\n"
        "from storage.segment_store import SegmentStore\n"
        "store = SegmentStore(sys.argv[1])\n"
        "for n in range(1, 11): store.put_message('/', 'q', n, MessageRecord('', 'q', b'', b'%d' % n))\n"
        "store.sync()\n"
        "for n in range(11, 21): store.put_message('/', 'q', n, MessageRecord('', 'q', b'', b'%d' % n))\n"
        "store.remove_messages('/', 'q', [1, 2])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, timeout=20)
    assert result.returncode == -signal.SIGKILL

    ids = recovered_ids(reopen(tmp_path))

    assert set(range(3, 11)) <= set(ids) <= set(range(1, 21))


# -- damaged files -----------------------------------------------------------------------------


def write_store(path: Path, count: int, segment_size: int = 64 * 1024 * 1024) -> None:
    store = SegmentStore(path, segment_size=segment_size)
    store.put_queue(QueueRecord("/", "q"))
    put_messages(store, range(1, count + 1))
    store.close()


def test_torn_tail_at_random_points_keeps_every_earlier_record(tmp_path: Path, caplog) -> None:
    original = tmp_path / "original"
    write_store(original, 30)
    segment = segment_files(original)[-1]
    ends = record_ends(segment)
    cuts = sorted(set(random.Random(7).sample(range(HEADER_SIZE, ends[-1]), 40) + ends[-3:] + [HEADER_SIZE]))
    for cut in cuts:
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(original, copy)
        os.truncate(copy / segment.name, cut)
        caplog.clear()

        ids = recovered_ids(reopen(copy))

        whole = sum(1 for end in ends if end <= cut)
        assert ids == list(range(1, whole + 1)), f"cut at {cut}"
        if cut not in ends and cut != HEADER_SIZE:
            assert f"{segment.name}" in caplog.text and f"offset {([HEADER_SIZE] + ends)[whole]}" in caplog.text
            assert (copy / segment.name).stat().st_size == ([HEADER_SIZE] + ends)[whole]


def test_after_a_torn_tail_new_writes_go_to_a_fresh_segment(tmp_path: Path) -> None:
    write_store(tmp_path, 10)
    [segment] = segment_files(tmp_path)
    ends = record_ends(segment)
    os.truncate(segment, ends[-1] - 3)
    store = SegmentStore(tmp_path)
    assert recovered_ids(store.recover()) == list(range(1, 10))
    put_messages(store, range(10, 13))
    store.close()

    assert recovered_ids(reopen(tmp_path)) == list(range(1, 13))
    assert segment.stat().st_size == ends[-2]
    assert len(segment_files(tmp_path)) == 2


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_bit_flip_in_a_middle_segment_drops_that_record_and_the_rest_of_that_segment(tmp_path: Path, caplog) -> None:
    write_store(tmp_path, 60, segment_size=1024)
    segments = segment_files(tmp_path)
    assert len(segments) >= 3
    first_count, middle_ends = len(record_ends(segments[0])), record_ends(segments[1])
    flip_byte(segments[1], middle_ends[2] + 20)  # inside the 4th record of the middle segment
    size_before = segments[1].stat().st_size

    with caplog.at_level(logging.WARNING, logger="storage.segment_store"):
        ids = recovered_ids(reopen(tmp_path, segment_size=1024))

    dropped = range(first_count + 4, first_count + len(middle_ends) + 1)
    assert ids == [n for n in range(1, 61) if n not in dropped]
    assert f"{segments[1]}: CRC mismatch at offset {middle_ends[2]}" in caplog.text
    assert segments[1].stat().st_size == size_before


def test_bit_flip_in_the_last_segment_truncates_it_there(tmp_path: Path, caplog) -> None:
    write_store(tmp_path, 10)
    [segment] = segment_files(tmp_path)
    ends = record_ends(segment)
    flip_byte(segment, ends[-1] - 1)  # the last body byte of record 10
    flip_byte(segment, ends[4] + 12)  # the message id of record 6

    with caplog.at_level(logging.WARNING, logger="storage.segment_store"):
        ids = recovered_ids(reopen(tmp_path))

    assert ids == [1, 2, 3, 4, 5]
    assert segment.stat().st_size == ends[4]
    assert "CRC mismatch" in caplog.text and "truncated the file" in caplog.text


def test_record_with_a_valid_crc_but_unparsable_payload_counts_as_damage(tmp_path: Path, caplog) -> None:
    write_store(tmp_path, 3)
    [segment] = segment_files(tmp_path)
    payload = struct.pack("<BQHHHHI", 9, 4, 1, 1, 0, 0, 0) + b"/q"  # record kind 9 does not exist
    with segment.open("ab") as file:
        file.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    size_before = segment.stat().st_size
    store = SegmentStore(tmp_path)
    put_messages(store, range(4, 6))
    store.close()

    assert recovered_ids(reopen(tmp_path)) == [1, 2, 3, 4, 5]
    assert "unknown record kind 9" in caplog.text
    assert segment.stat().st_size == size_before - len(payload) - 8


@pytest.mark.parametrize(
    "header", [b"AMQPSEG\x00\x09\x00", b"NOTASEG\x00\x01\x00"], ids=["unknown-version", "bad-magic"]
)
def test_unreadable_segment_is_skipped_untouched_and_never_written_to(tmp_path: Path, caplog, header: bytes) -> None:
    write_store(tmp_path, 5)
    alien = tmp_path / "msgs.0000000002"
    alien_bytes = header + os.urandom(100)
    alien.write_bytes(alien_bytes)

    with caplog.at_level(logging.ERROR, logger="storage.segment_store"):
        store = SegmentStore(tmp_path)
    assert recovered_ids(store.recover()) == [1, 2, 3, 4, 5]
    put_messages(store, range(6, 9))
    store.close()

    assert str(alien) in caplog.text and "skipping the whole file" in caplog.text
    assert alien.read_bytes() == alien_bytes
    assert [path.name for path in segment_files(tmp_path)] == ["msgs.0000000001", "msgs.0000000002", "msgs.0000000003"]
    assert recovered_ids(reopen(tmp_path)) == list(range(1, 9))


def test_corrupt_definitions_file_is_set_aside_and_the_store_still_opens(tmp_path: Path, caplog) -> None:
    write_store(tmp_path, 3)
    (tmp_path / "definitions.log").unlink()  # the queue only in the snapshot, as an older version wrote it
    (tmp_path / "definitions.json").write_bytes(encode_definitions(Definitions([], [QueueRecord("/", "q")], [])))
    flip_byte(tmp_path / "definitions.json", 40)

    with caplog.at_level(logging.ERROR, logger="storage.definitions_log"):
        recovered = reopen(tmp_path)

    assert recovered.queues == []
    assert recovered_ids(recovered) == [1, 2, 3]
    assert "definitions.json is unusable" in caplog.text
    assert (tmp_path / "definitions.json.corrupt").exists()


def test_torn_ack_entry_is_ignored_and_whole_entries_still_apply(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    put_messages(store, range(1, 6))
    store.sync()
    store.remove_messages("/", "q", [2, 4])
    store.close()
    [acks] = tmp_path.glob("acks.*")
    os.truncate(acks, acks.stat().st_size - 3)

    assert recovered_ids(reopen(tmp_path)) == [1, 3, 4, 5]


# -- locking -----------------------------------------------------------------------------------


def test_second_store_on_the_same_dir_is_refused_in_the_same_process(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    try:
        with pytest.raises(DataDirLocked, match=f"data dir {tmp_path} is already in use"):
            SegmentStore(tmp_path)
    finally:
        store.close()
    reopen(tmp_path)  # released by close


def test_second_store_on_the_same_dir_is_refused_in_another_process(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    try:
        script = (
            "import sys\nfrom storage.segment_store import SegmentStore, DataDirLocked\n"
            "try:\n    SegmentStore(sys.argv[1])\nexcept DataDirLocked as error:\n    print(error)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, timeout=20, capture_output=True, text=True
        )
    finally:
        store.close()
    assert f"data dir {tmp_path} is already in use by another store (pid {os.getpid()})" in result.stdout


# -- segments and disk space -------------------------------------------------------------------


def data_dir_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.iterdir())


def test_segments_roll_and_fully_acked_ones_are_deleted_so_disk_use_stays_bounded(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_size=4096)
    store.put_queue(QueueRecord("/", "q"))
    sizes, segment_counts, first = [], [], 1
    for _cycle in range(300):
        last = first + 30
        put_messages(store, range(first, last))
        store.sync()
        store.remove_messages("/", "q", range(first - 30, first))  # ack the previous cycle's messages
        store.sync()
        first = last
        sizes.append(data_dir_size(tmp_path))
        segment_counts.append(len(segment_files(tmp_path)))
    store.close()

    assert max(int(path.name[5:]) for path in segment_files(tmp_path)) > 100  # it rolled, many times
    assert max(segment_counts) <= 3
    assert max(sizes) < 4 * 4096 + 2048
    assert recovered_ids(reopen(tmp_path, segment_size=4096)) == list(range(first - 30, first))


def test_deleting_a_queue_reclaims_its_segments(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_size=1024)
    store.put_queue(QueueRecord("/", "q"))
    put_messages(store, range(1, 200))
    store.sync()
    assert len(segment_files(tmp_path)) > 5
    store.delete_queue("/", "q")
    store.sync()

    assert len(segment_files(tmp_path)) <= 1
    assert len(list(tmp_path.glob("acks.*"))) <= 1
    store.close()
    assert reopen(tmp_path).messages == {}


# -- sync --------------------------------------------------------------------------------------


def test_sync_may_run_in_another_thread_while_puts_continue(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, segment_size=8192)
    done = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        try:
            while not done.is_set():
                store.sync()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        for n in range(1, 6001):
            store.put_message("/", "q", n, message(n))
            if n % 3 == 0:
                store.remove_messages("/", "q", [n - 1])
    finally:
        done.set()
        thread.join(timeout=20)
    store.close()

    assert errors == []
    recovered = reopen(tmp_path, segment_size=8192)
    assert recovered_ids(recovered) == [n for n in range(1, 6001) if n % 3 != 2]
    assert all(record == message(n) for n, record in recovered.messages[("/", "q")])


def test_a_failed_sync_raises_and_the_next_sync_writes_the_same_data(tmp_path: Path, monkeypatch) -> None:
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "q"))
    put_messages(store, range(1, 11))
    store.sync()
    put_messages(store, range(11, 21))
    store.remove_messages("/", "q", [1, 2])
    real_pwrite_all = fileio.pwrite_all

    def half_then_enospc(fd: int, data, offset: int) -> None:
        real_pwrite_all(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "pwrite_all", half_then_enospc)
    with pytest.raises(OSError) as raised:
        store.sync()
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.setattr(fileio, "pwrite_all", real_pwrite_all)
    put_messages(store, range(21, 23))
    store.sync()
    store.close()

    recovered = reopen(tmp_path)
    assert recovered_ids(recovered) == list(range(3, 23))
    assert all(record == message(n) for n, record in recovered.messages[("/", "q")])


def test_a_failed_fsync_raises_and_is_retried(tmp_path: Path, monkeypatch) -> None:
    store = SegmentStore(tmp_path)
    put_messages(store, range(1, 6))
    failures = iter([OSError(errno.EIO, "Input/output error")])
    real_datasync = fileio.datasync

    def failing_once(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_datasync(fd)

    monkeypatch.setattr(fileio, "datasync", failing_once)
    with pytest.raises(OSError):
        store.sync()
    store.sync()
    store.close()

    assert recovered_ids(reopen(tmp_path)) == [1, 2, 3, 4, 5]


def test_sync_after_close_is_an_error(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosed):
        store.sync()
