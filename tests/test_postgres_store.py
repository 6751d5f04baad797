"""The PostgreSQL store against a real PostgreSQL (``tests/postgres_cluster.py`` starts one).

The shared ``Store`` contract runs in ``test_store_contract.py``; here is what is PostgreSQL's own:
the cluster helper, the versioned schema, one transaction per sync, a failed commit (raised, kept,
written by a later sync), fencing by the lease's epoch, and paged recovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pytest
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.ops.config import load_config
from amqp_server.ops.errors import ConfigError
from storage import postgres_rows, postgres_store
from storage.api import BindingRecord, ExchangeRecord, MessageRecord, QueueRecord, StoredMessage, StreamRecord
from storage.factory import open_store
from storage.postgres_schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate, schema_version
from storage.postgres_store import Fenced, PostgresStore, StoreUnavailable
from tests.frames import FakeClock, open_peer

if TYPE_CHECKING:  # imported for real by pytest_plugins (importing it first would stop its assert rewriting)
    from tests.postgres_cluster import PostgresCluster

pytest_plugins = ["tests.postgres_cluster"]  # its fixtures: postgres_cluster, postgres_dsn, postgres_db


def message(n: int, size: int = 2, expires_at: float | None = None) -> MessageRecord:
    header = ContentHeader(0, size, commands.Basic.Properties(delivery_mode=2, message_id=f"m{n}")).marshal()
    return MessageRecord("amq.direct", f"k{n}", header, (b"%02d" % n).ljust(size, b"."), expires_at)


def query(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def store(postgres_db):
    instance = PostgresStore(postgres_db)
    yield instance
    instance.close()


# ------------------------------------------------------------------ the cluster helper


def test_each_test_gets_a_fresh_empty_database(postgres_db, postgres_dsn):
    assert postgres_db != postgres_dsn
    assert query(postgres_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert query(postgres_db, "SHOW fsync") == [("on",)]


def test_restart_keeps_committed_data(postgres_cluster: PostgresCluster, postgres_db):
    query(postgres_db, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    postgres_cluster.restart("immediate")
    assert query(postgres_db, "SELECT n FROM t") == [(1,)]


# ------------------------------------------------------------------ selecting it


def test_a_postgresql_url_from_flag_environment_or_file_opens_the_postgresql_store(postgres_db, tmp_path):
    config_file = tmp_path / "amqp-server.toml"
    config_file.write_text(f'store = "{postgres_db}"\n')
    for config in (
        load_config({"store": postgres_db}, environ={}),
        load_config(environ={"AMQP_SERVER_STORE": postgres_db.replace("postgresql://", "postgres://")}),
        load_config(config_file=config_file, environ={}),
    ):
        store = open_store(config)
        try:
            assert isinstance(store, PostgresStore)
        finally:
            store.close()
    assert load_config(environ={}).store == "segment"
    with pytest.raises(ConfigError, match="must be one of segment, memory or a postgresql:// URL, got 'mysql://x'"):
        load_config({"store": "mysql://x"}, environ={})


# ------------------------------------------------------------------ the schema


def test_opening_creates_the_current_schema_with_the_lease_row(store, postgres_db):
    versions = query(postgres_db, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(n,) for n in range(1, SCHEMA_VERSION + 1)]
    assert query(postgres_db, "SELECT id, holder, epoch, ttl_ms FROM amqp_lease") == [(1, None, 0, 5000)]
    tables = {name for (name,) in query(postgres_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"exchanges", "queues", "bindings", "policies", "messages", "amqp_lease", "amqp_access"} <= tables
    assert {"amqp_stream", "amqp_stream_head", "amqp_delayed"} <= tables


def test_a_newer_migration_is_applied_and_keeps_the_data(store, postgres_db):
    store.put_queue(QueueRecord("/", "kept"))
    store.sync()
    newer = (*MIGRATIONS, "CREATE TABLE added_later (n int)")
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        assert migrate(conn, newer) == SCHEMA_VERSION
        assert migrate(conn, newer) == SCHEMA_VERSION + 1  # applied once: nothing left to do
        assert schema_version(conn) == SCHEMA_VERSION + 1
    assert query(postgres_db, "SELECT name FROM queues") == [("kept",)]
    assert query(postgres_db, "SELECT count(*) FROM added_later") == [(0,)]


def test_a_database_of_a_newer_broker_is_refused_untouched(postgres_db):
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        migrate(conn, (*MIGRATIONS, "CREATE TABLE added_later (n int)"))
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, newer than this broker's {SCHEMA_VERSION}"):
        PostgresStore(postgres_db)
    assert query(postgres_db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION + 1,)]


def test_a_version_1_database_migrates_to_streams_and_delayed_messages_and_keeps_its_data(postgres_db):
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        assert migrate(conn, MIGRATIONS[:1]) == 0  # as the first PostgreSQL store left it
        for statement, parameters in (
            postgres_rows.put_exchange(ExchangeRecord("/", "dx", "x-delayed-message", arguments=DELAYED)),
            postgres_rows.put_queue(QueueRecord("/", "q")),
            postgres_rows.insert_messages({("/", "q"): {1: message(1)}}),
        ):
            conn.execute(statement, parameters, binary=True)
        conn.execute("UPDATE amqp_lease SET epoch = 3, holder = 'leader'")
    store = PostgresStore(postgres_db)
    try:
        assert query(postgres_db, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
        result = store.recover()
        assert [e.name for e in result.exchanges] == ["dx"]
        assert [q.name for q in result.queues] == ["q"]
        assert result.messages[("/", "q")] == [(1, message(1))]
        assert (result.streams, result.delayed) == ({}, {})
        assert query(postgres_db, "SELECT epoch, holder FROM amqp_lease") == [(3, "leader")]
        store.append_stream("/", "s", stream_record(0))
        store.put_delayed("/", "dx", 1, 1_700_000_010.0, message(2))
        store.sync()
        result = store.recover()
        assert (result.streams[("/", "s")].next, result.delayed) == (1, {("/", "dx"): [(1, 1_700_000_010.0)]})
    finally:
        store.close()


# ------------------------------------------------------------------ group commit


def test_a_sync_commits_everything_buffered_in_one_transaction(store, postgres_db):
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    store.put_queue(QueueRecord("/", "q"))
    store.put_binding(BindingRecord("/", "x", "q", "k"))
    for n in range(1, 51):
        store.put_message("/", "q", n, message(n))
    store.remove_messages("/", "q", [3])  # never written: only the other 49 are
    assert query(postgres_db, "SELECT count(*) FROM messages") == [(0,)]  # nothing before the sync
    store.sync()
    # every row written by one transaction carries that transaction's id as xmin
    xmins = query(
        postgres_db,
        "SELECT xmin::text FROM messages UNION SELECT xmin::text FROM queues "
        "UNION SELECT xmin::text FROM exchanges UNION SELECT xmin::text FROM bindings",
    )
    assert len(xmins) == 1
    assert query(postgres_db, "SELECT count(*), min(id), max(id) FROM messages") == [(49, 1, 50)]

    store.remove_messages("/", "q", range(1, 26))
    store.put_message("/", "q", 51, message(51))
    store.sync()
    assert query(postgres_db, "SELECT count(*), count(DISTINCT xmin::text) FROM messages WHERE id > 40") == [(11, 2)]
    assert query(postgres_db, "SELECT count(*) FROM messages") == [(26,)]


def test_rows_already_stored_are_replaced_as_a_retried_batch_would(store, postgres_db):
    store.put_queue(QueueRecord("/", "q"))
    for n in (1, 2):
        store.put_message("/", "q", n, message(n))
    store.sync()
    again = PostgresStore(postgres_db)  # knows nothing of what is stored, like a retry after a lost COMMIT
    try:
        again.put_message("/", "q", 2, message(20))  # the COPY meets row 2: the batch is upserted instead
        again.put_message("/", "q", 3, message(3))
        again.remove_messages("/", "q", [1])
        again.put_message("/", "q", 1, message(10))  # removed, then stored again: the new record
        again.sync()
        assert again.recover().messages[("/", "q")] == [(1, message(10)), (2, message(20)), (3, message(3))]
    finally:
        again.close()


def test_names_postgresql_text_cannot_hold_round_trip(store):
    odd = ["nul\x00inside", "back\\slash", "\\0", "lone\udcffsurrogate", "ünïcode"]
    for name in odd:
        store.put_queue(QueueRecord("/", name, arguments={"x-note": name}))
        store.put_message("/", name, 1, MessageRecord(name, name, b"h", b"b"))
    result = store.recover()
    assert sorted(q.name for q in result.queues) == sorted(odd)
    assert all(q.arguments == {"x-note": q.name} for q in result.queues)
    assert {key[1]: records[0][1].routing_key for key, records in result.messages.items()} == {n: n for n in odd}


# ------------------------------------------------------------------ failed commits


FAIL_INSERTS = """
CREATE TABLE fail_inserts (on_purpose boolean);
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fail_inserts) THEN RAISE EXCEPTION 'refused on purpose'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse();
INSERT INTO fail_inserts VALUES (true);
"""


def test_a_failed_commit_raises_keeps_everything_and_a_later_sync_writes_it(store, postgres_db):
    store.put_queue(QueueRecord("/", "q"))
    for n in (1, 2, 3):
        store.put_message("/", "q", n, message(n))
    store.sync()
    query(postgres_db, FAIL_INSERTS)
    store.put_queue(QueueRecord("/", "gone"))
    store.put_message("/", "gone", 1, message(1))
    store.put_message("/", "q", 4, message(4))
    store.remove_messages("/", "q", [1])
    with pytest.raises(OSError, match="refused on purpose") as failed:
        store.sync()
    assert isinstance(failed.value, StoreUnavailable)
    assert query(postgres_db, "SELECT id FROM messages ORDER BY id") == [(1,), (2,), (3,)]  # nothing of it
    assert store.read_message("/", "q", 4) == message(4)  # still buffered
    # written while the database refused: folded in behind the failed batch, in order
    store.delete_queue("/", "gone")
    store.remove_messages("/", "q", [4, 2])
    store.put_message("/", "q", 5, message(5))
    with pytest.raises(StoreUnavailable):
        store.sync()
    query(postgres_db, "DELETE FROM fail_inserts")
    store.sync()
    result = store.recover()
    assert [q.name for q in result.queues] == ["q"]
    assert [(n, r) for n, r in result.messages[("/", "q")]] == [(3, message(3)), (5, message(5))]


def test_syncs_fail_while_the_database_is_down_and_work_again_after(postgres_cluster: PostgresCluster, store):
    store.put_queue(QueueRecord("/", "q"))
    store.sync()
    postgres_cluster.stop()
    try:
        store.put_message("/", "q", 1, message(1))
        with pytest.raises(StoreUnavailable):
            store.sync()
        with pytest.raises(StoreUnavailable):  # the retry finds it still down
            store.sync()
    finally:
        postgres_cluster.start()
    store.sync()  # a new connection
    store.put_message("/", "q", 2, message(2))
    postgres_cluster.restart("immediate")
    store.sync()  # the old connection broke: committed on a new one at once
    assert [n for n, _ in store.recover().messages[("/", "q")]] == [1, 2]


# ------------------------------------------------------------------ fencing


def test_a_stale_epoch_is_fenced_and_nothing_it_wrote_commits(postgres_db):
    store = PostgresStore(postgres_db, fencing_epoch=1)
    try:
        store.put_queue(QueueRecord("/", "q"))
        store.put_message("/", "q", 1, message(1))
        with pytest.raises(Fenced, match="epoch is 0, this broker's is 1") as fenced:
            store.sync()
        assert isinstance(fenced.value, OSError)  # the persister nacks it like any failed sync
        assert query(postgres_db, "SELECT count(*) FROM queues UNION ALL SELECT count(*) FROM messages") == [(0,), (0,)]
        query(postgres_db, "UPDATE amqp_lease SET epoch = 1, holder = 'me'")  # the lease is ours
        store.sync()  # the kept batch commits
        assert query(postgres_db, "SELECT count(*) FROM messages") == [(1,)]
        query(postgres_db, "UPDATE amqp_lease SET epoch = 2, holder = 'standby'")  # taken over
        store.put_message("/", "q", 2, message(2))
        with pytest.raises(Fenced, match="epoch is 2, this broker's is 1"):
            store.sync()
        store.set_fencing_epoch(2)
        store.sync()
        assert query(postgres_db, "SELECT count(*) FROM messages") == [(2,)]
    finally:
        store.set_fencing_epoch(None)
        store.close()


def test_the_store_sessions_end_idle_transactions(store, postgres_db):
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('idle_in_transaction_session_timeout', 'statement_timeout')"
            ).fetchall()
        )
    assert settings == {"idle_in_transaction_session_timeout": "0", "statement_timeout": "0"}  # server defaults
    store.put_queue(QueueRecord("/", "q"))
    store.sync()
    session = store._writer  # the store's own session: what PostgreSQL enforces on it
    assert session is not None
    assert session.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("3s",)
    assert session.execute("SHOW statement_timeout").fetchone() == ("30s",)


# ------------------------------------------------------------------ paged recovery


def test_recovery_hands_a_backlog_as_references_that_read_message_fetches(monkeypatch, store, postgres_db):
    monkeypatch.setattr(postgres_store, "EAGER_RECORDS", 3)
    monkeypatch.setattr(postgres_store, "READ_AHEAD_ROWS", 4)
    store.put_queue(QueueRecord("/", "q"))
    for n in range(1, 21):
        store.put_message("/", "q", n, message(n, size=10 + n % 2, expires_at=1e10 if n == 7 else None))
    store.put_message("/", "q", 21, message(21, size=100_000))  # too big to read ahead
    store.sync()
    reopened = PostgresStore(postgres_db)
    try:
        entries = reopened.recover().messages[("/", "q")]
        assert [n for n, _ in entries] == list(range(1, 22))
        assert [r for _, r in entries[:3]] == [message(n, 10 + n % 2) for n in (1, 2, 3)]
        assert entries[3][1] == StoredMessage(10)
        assert entries[4][1] is entries[8][1]  # one reference per size (ids 5 and 9)
        assert entries[6][1] == StoredMessage(11, 1e10)
        assert entries[20][1] == StoredMessage(100_000)
        reopened.remove_messages("/", "q", [9])
        read = [reopened.read_message("/", "q", n) for n in (4, 5, 6, 7, 8, 10, 11, 21)]
        assert read[:5] == [message(n, 10 + n % 2, 1e10 if n == 7 else None) for n in (4, 5, 6, 7, 8)]
        assert read[5:] == [message(10, 10), message(11, 11), message(21, 100_000)]
        with pytest.raises(KeyError):
            reopened.read_message("/", "q", 9)
    finally:
        reopened.close()


def test_a_broker_drains_a_paged_backlog_in_order(monkeypatch, store, postgres_db):
    monkeypatch.setattr(postgres_store, "EAGER_RECORDS", 2)
    store.put_queue(QueueRecord("/", "q"))
    for n in range(1, 31):
        store.put_message("/", "q", n, message(n))
    store.sync()
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    bodies = [frame.value for _, frame in peer.frames() if type(frame).__name__ == "ContentBody"]
    assert bodies == [b"%02d" % n for n in range(1, 31)]
    store.sync()
    assert query(postgres_db, "SELECT count(*) FROM messages") == [(0,)]


def test_a_paged_message_unreadable_while_the_database_is_down_is_kept_for_the_next_start(
    monkeypatch, postgres_cluster: PostgresCluster, store, postgres_db
):
    monkeypatch.setattr(postgres_store, "EAGER_RECORDS", 1)
    store.put_queue(QueueRecord("/", "q"))
    for n in (1, 2, 3):
        store.put_message("/", "q", n, message(n))
    store.sync()
    broker = Broker(store=store, clock=FakeClock())
    queue = broker.vhosts["/"].queues["q"]
    postgres_cluster.stop()
    try:
        peer = open_peer(broker)
        peer.send_method(1, commands.Basic.Consume(queue="q"))  # acks would need the database: none here
        bodies = [frame.value for _, frame in peer.frames() if type(frame).__name__ == "ContentBody"]
        assert bodies == [b"01"]  # in memory; 2 and 3 cannot be read back now: they wait at the head (core.paging)
        assert len(queue._ready) == 2
    finally:
        postgres_cluster.start()
    store.sync()  # nothing was deleted
    reopened = PostgresStore(postgres_db)
    try:
        assert [n for n, _ in reopened.recover().messages[("/", "q")]] == [1, 2, 3]
    finally:
        reopened.close()


# ------------------------------------------------------------------ streams and delayed messages

DELAYED = {"x-delayed-type": "direct"}


def stream_record(offset: int, size: int = 2) -> StreamRecord:
    return StreamRecord(offset, 1_700_000_000.0 + offset, message(offset, size))


def test_stream_appends_retention_and_held_messages_commit_with_the_sync_in_one_transaction(store, postgres_db):
    store.put_queue(QueueRecord("/", "s", arguments={"x-queue-type": "stream"}))
    for offset in range(10):
        store.append_stream("/", "s", stream_record(offset))
    store.put_delayed("/", "dx", 1, 1_700_000_001.0, message(1))
    store.put_delayed("/", "dx", 2, 1_700_000_002.0, message(2))
    store.truncate_stream("/", "s", 3)  # in the same batch as the appends: rows 0-2 are never kept
    assert query(postgres_db, "SELECT count(*) FROM amqp_stream UNION ALL SELECT count(*) FROM amqp_delayed") == [
        (0,),
        (0,),
    ]
    store.sync()
    xmins = query(
        postgres_db,
        "SELECT xmin::text FROM amqp_stream UNION SELECT xmin::text FROM amqp_delayed "
        "UNION SELECT xmin::text FROM amqp_stream_head UNION SELECT xmin::text FROM queues",
    )
    assert len(xmins) == 1
    assert query(postgres_db, 'SELECT min("offset"), max("offset") FROM amqp_stream') == [(3, 9)]
    store.truncate_stream("/", "s", 7)  # retention: one ranged DELETE
    store.remove_delayed("/", "dx", [1])
    store.sync()
    assert query(postgres_db, 'SELECT "offset" FROM amqp_stream ORDER BY 1') == [(7,), (8,), (9,)]
    assert query(postgres_db, "SELECT id FROM amqp_delayed") == [(2,)]
    assert store.read_stream("/", "s", 0, 2) == [stream_record(7), stream_record(8)]


def test_a_stream_emptied_by_retention_recovers_at_the_same_offsets(store):
    for offset in range(4):
        store.append_stream("/", "s", stream_record(offset))
    store.sync()
    store.truncate_stream("/", "s", 100)  # past the end: to the end, as MemoryStore
    store.sync()
    index = store.recover().streams[("/", "s")]
    assert (index.first, index.next) == (4, 4)
    store.append_stream("/", "s", stream_record(4))
    store.sync()
    assert store.read_stream("/", "s", 0, 10) == [stream_record(4)]


def test_stream_records_and_held_messages_already_stored_are_upserted_as_a_retried_batch_would(store, postgres_db):
    store.append_stream("/", "s", stream_record(0))
    store.put_delayed("/", "dx", 1, 5.0, message(1))
    store.sync()
    again = PostgresStore(postgres_db)  # knows nothing of what is stored, like a retry after a lost COMMIT
    try:
        again.append_stream("/", "s", stream_record(0))
        again.append_stream("/", "s", stream_record(1))
        again.put_delayed("/", "dx", 1, 6.0, message(10))  # the same id stored again: the newer record wins
        again.sync()
        result = again.recover()
        assert result.streams[("/", "s")].next == 2
        assert result.delayed == {("/", "dx"): [(1, 6.0)]}
        assert again.read_delayed("/", "dx", 1) == message(10)
    finally:
        again.close()


def test_a_stale_epoch_commits_no_stream_record_nor_held_message(postgres_db):
    store = PostgresStore(postgres_db, fencing_epoch=1)
    try:
        store.append_stream("/", "s", stream_record(0))
        store.put_delayed("/", "dx", 1, 5.0, message(1))
        with pytest.raises(Fenced):
            store.sync()
        assert query(postgres_db, "SELECT count(*) FROM amqp_stream UNION ALL SELECT count(*) FROM amqp_delayed") == [
            (0,),
            (0,),
        ]
        assert store.read_stream("/", "s", 0, 10) == [stream_record(0)]  # kept, and still readable
        assert store.read_delayed("/", "dx", 1) == message(1)
        query(postgres_db, "UPDATE amqp_lease SET epoch = 1, holder = 'me'")
        store.sync()
        assert query(postgres_db, "SELECT count(*) FROM amqp_stream UNION ALL SELECT count(*) FROM amqp_delayed") == [
            (1,),
            (1,),
        ]
    finally:
        store.set_fencing_epoch(None)
        store.close()


def test_a_long_stream_recovers_its_sizes_without_bodies_and_reads_back_in_ranges(store):
    for offset in range(3000):
        store.append_stream("/", "s", stream_record(offset, size=1 + offset % 7))
    store.sync()
    index = store.recover().streams[("/", "s")]
    records = [stream_record(offset, size=1 + offset % 7) for offset in range(3000)]
    assert (index.first, index.next) == (0, 3000)
    assert list(index.sizes) == [len(r.message.header) + len(r.message.body) for r in records]
    assert list(index.timestamps) == [r.timestamp for r in records]
    assert store.read_stream("/", "s", 2500, 3) == [stream_record(n, size=1 + n % 7) for n in (2500, 2501, 2502)]
