"""Definitions in SegmentStore: an append-only log, compacted into the snapshot; O(1) bytes per declare;
recovery from snapshot + log + torn tail; data dirs with only the old snapshot open and migrate."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import pytest

from storage import definitions_log
from storage.api import BindingRecord, ExchangeRecord, PolicyRecord, QueueRecord, Recovered
from storage.memory import MemoryStore
from storage.segment_format import Definitions, encode_definitions, queue_document
from storage.segment_store import SegmentStore


def written_bytes() -> int:
    """Bytes this process has passed to write(2)/pwrite(2) so far (the kernel's count, whoever wrote them)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def definitions_of(recovered: Recovered) -> tuple:
    return recovered.exchanges, recovered.queues, recovered.bindings


def reopen(path: Path) -> Recovered:
    store = SegmentStore(path)
    try:
        return store.recover()
    finally:
        store.close()


def test_a_durable_declare_writes_the_same_few_bytes_with_600_queues_as_with_5(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    costs = []
    for n in range(600):
        before = written_bytes()
        store.put_queue(QueueRecord("/", f"queue-{n:05d}", arguments={"x-queue-type": "classic"}))
        store.sync()
        costs.append(written_bytes() - before)
    store.close()

    assert max(costs) < 300  # one record, not a snapshot of everything
    assert max(costs[-100:]) <= max(costs[:100])
    assert not (tmp_path / "definitions.json").exists()  # never rewritten (no compaction needed yet)
    assert [queue.name for queue in reopen(tmp_path).queues] == [f"queue-{n:05d}" for n in range(600)]


def test_compaction_keeps_the_total_written_linear(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", 4096)
    store = SegmentStore(tmp_path)
    record_bytes = 0
    before = written_bytes()
    for n in range(3000):
        record = QueueRecord("/", f"queue-{n:05d}")
        record_bytes += len(definitions_log._record(definitions_log.PUT_QUEUE, definitions_log.queue_document(record)))
        store.put_queue(record)
        store.sync()
    total = written_bytes() - before
    store.close()

    assert (tmp_path / "definitions.json").exists()  # it did compact
    assert (tmp_path / "definitions.log").stat().st_size < 3 * (tmp_path / "definitions.json").stat().st_size
    assert total < 6 * record_bytes  # appends plus geometrically spaced snapshots, not a snapshot per declare
    assert len(reopen(tmp_path).queues) == 3000


def scripted_changes(store) -> None:
    """Puts, deletes, cascades and re-declarations, so replay order matters."""
    store.put_exchange(ExchangeRecord("/", "ex", "topic", arguments={"alternate-exchange": "ae"}))
    store.put_exchange(ExchangeRecord("/", "ae", "fanout"))
    for name in ("q1", "q2", "q3"):
        store.put_queue(QueueRecord("/", name, arguments={"x-max-length": 10}))
        store.put_binding(BindingRecord("/", "ex", name, f"{name}.#"))
    store.put_binding(BindingRecord("/", "ex", "ae", "", destination_kind="exchange"))
    store.delete_queue("/", "q1")  # and its binding
    store.put_queue(QueueRecord("/", "q1", auto_delete=True))  # declared again, differently
    store.delete_exchange("/", "ae")  # and the exchange-to-exchange binding
    store.delete_binding(BindingRecord("/", "ex", "q2", "q2.#"))
    store.put_queue(QueueRecord("vhost-b", "q2"))


def unordered(definitions: tuple) -> list[list[str]]:
    return [sorted(map(repr, records)) for records in definitions]


def expected(apply) -> tuple:
    memory = MemoryStore()
    apply(memory)
    return definitions_of(memory.recover())


def test_recovery_replays_the_log_over_the_snapshot_and_cuts_a_torn_tail(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", 0)
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "in-the-snapshot"))
    store.sync()  # compacts: the log had outgrown the (empty) snapshot
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", 1 << 30)
    scripted_changes(store)
    store.sync()
    store.put_queue(QueueRecord("/", "torn"))
    store.close()
    log_path = tmp_path / "definitions.log"
    log_path.write_bytes(log_path.read_bytes()[:-5])  # the last record cut short, as by a crash mid-append

    with caplog.at_level(logging.WARNING, logger="storage.definitions_log"):
        recovered = reopen(tmp_path)

    assert definitions_of(recovered) == expected(
        lambda memory: (memory.put_queue(QueueRecord("/", "in-the-snapshot")), scripted_changes(memory))
    )
    assert "cut short" in caplog.text
    store = SegmentStore(tmp_path)  # appends go on from the cut
    store.put_queue(QueueRecord("/", "after"))
    store.close()
    assert [queue.name for queue in reopen(tmp_path).queues][-1] == "after"


def test_a_crash_between_the_new_snapshot_and_the_new_log_recovers_the_same(tmp_path: Path, monkeypatch) -> None:
    real_write_temporary = definitions_log._write_temporary

    def snapshot_only(path: Path, data: bytes) -> Path:
        if path.name == definitions_log.LOG:
            raise OSError(5, "simulated crash before the log is replaced")
        return real_write_temporary(path, data)

    store = SegmentStore(tmp_path)
    scripted_changes(store)
    store.sync()
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", 0)
    monkeypatch.setattr(definitions_log, "_write_temporary", snapshot_only)
    store.delete_queue("/", "q3")
    store.put_queue(QueueRecord("/", "q3", durable=True, arguments={"x-new": True}))
    store.sync()  # the compaction fails half-way; the sync itself does not
    store.put_queue(QueueRecord("/", "after"))  # appended to the old log, by name
    store.sync()
    store.close()

    assert (tmp_path / "definitions.json").exists()
    recovered = reopen(tmp_path)  # new snapshot + the whole old log replayed over it: same records (order may differ)
    assert unordered(definitions_of(recovered)) == unordered(
        expected(
            lambda memory: (
                scripted_changes(memory),
                memory.delete_queue("/", "q3"),
                memory.put_queue(QueueRecord("/", "q3", durable=True, arguments={"x-new": True})),
                memory.put_queue(QueueRecord("/", "after")),
            )
        )
    )


def test_a_data_dir_with_only_the_old_snapshot_opens_and_is_migrated_to_the_log(tmp_path: Path) -> None:
    memory = MemoryStore()
    scripted_changes(memory)
    old = memory.recover()
    snapshot = encode_definitions(Definitions(old.exchanges, old.queues, old.bindings))  # what earlier versions wrote
    (tmp_path / "definitions.json").write_bytes(snapshot)

    store = SegmentStore(tmp_path)
    assert definitions_of(store.recover()) == definitions_of(old)
    store.put_queue(QueueRecord("/", "new"))
    store.delete_queue("/", "q2")
    store.close()

    assert (tmp_path / "definitions.json").read_bytes() == snapshot  # not rewritten: the changes are in the log
    assert (tmp_path / "definitions.log").exists()
    assert definitions_of(reopen(tmp_path)) == expected(
        lambda memory: (
            scripted_changes(memory),
            memory.put_queue(QueueRecord("/", "new")),
            memory.delete_queue("/", "q2"),
        )
    )


def test_a_log_with_a_bad_header_is_set_aside_and_the_snapshot_used(tmp_path: Path, caplog) -> None:
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "q"))
    store.close()
    (tmp_path / "definitions.log").write_bytes(b"NOTALOG!\x01\x00")

    with caplog.at_level(logging.ERROR, logger="storage.definitions_log"):
        assert reopen(tmp_path).queues == []
    assert (tmp_path / "definitions.log.corrupt").exists()


def test_unstorable_arguments_change_nothing(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    with pytest.raises(TypeError):
        store.put_queue(QueueRecord("/", "q", arguments={"x": object()}))
    store.close()
    assert reopen(tmp_path).queues == []


# ------------------------------------------------------------------ policy records (log version 2)


def log_version(path: Path) -> int:
    data = (path / definitions_log.LOG).read_bytes()
    return int.from_bytes(data[len(definitions_log.LOG_MAGIC) : definitions_log.FILE_HEADER_SIZE], "little")


def test_a_log_without_policies_stays_version_1_for_older_brokers(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "q"))
    store.sync()
    store.close()
    assert log_version(tmp_path) == 1


def test_the_first_policy_raises_an_existing_log_to_version_2_and_everything_replays(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.put_queue(QueueRecord("/", "q"))
    store.sync()
    store.close()
    store = SegmentStore(tmp_path)  # a version-1 log, opened again and appended to
    policy = PolicyRecord("/", "ttl", "^q$", {"message-ttl": 5, "x": [1, 2.5, None]}, 1.5, "queues")
    store.put_policy(policy)
    store.put_policy(PolicyRecord("/", "ttl", "", {"max-length": 1}, operator=True))
    store.delete_policy("/", "ttl", operator=True)
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    store.sync()
    store.close()
    assert log_version(tmp_path) == 2
    recovered = reopen(tmp_path)
    assert recovered.policies == [policy]
    assert [q.name for q in recovered.queues] == ["q"] and [e.name for e in recovered.exchanges] == ["x"]


def test_compaction_keeps_the_policies_in_the_snapshot(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(definitions_log, "COMPACT_MIN_BYTES", 2048)
    store = SegmentStore(tmp_path)
    policy = PolicyRecord("v", "cap", "", {"max-length": 3})
    store.put_policy(policy)
    for n in range(100):
        store.put_queue(QueueRecord("/", f"queue-{n:05d}"))
        store.sync()
    store.close()
    assert (tmp_path / "definitions.json").exists()
    assert log_version(tmp_path) == 1  # the log restarted empty; the policy is in the snapshot now
    assert reopen(tmp_path).policies == [policy]


def test_a_snapshot_from_before_policies_opens_with_none(tmp_path: Path) -> None:
    body = json.dumps({"exchanges": [], "queues": [queue_document(QueueRecord("/", "q"))], "bindings": []}).encode()
    (tmp_path / "definitions.json").write_bytes(b"AMQPDEFS 1 %08x\n" % zlib.crc32(body) + body)  # as 1.x wrote it
    recovered = reopen(tmp_path)
    assert recovered.policies == [] and [q.name for q in recovered.queues] == ["q"]
