"""A ``storage.api.Store`` in PostgreSQL: ``--store postgresql://user@host/db``.

For brokers whose durable state should live in a database the operator already runs, backs up and
replicates (and for the failover standby, which takes over a database a dead leader left).  Tables
and their versioned migrations: ``storage.postgres_schema``; the SQL of each record:
``storage.postgres_rows``.

Group commit, as in the segment store: ``put_*``/``remove_*``/``delete_*`` only change memory;
``sync`` runs ONE transaction for everything buffered since the last sync and returns only after
COMMIT: the definitions' upserts and deletes in call order and the removed messages' DELETEs
(``id = ANY(...)`` per queue and cluster of ids), pipelined in one round trip, then one binary COPY
of every new message.  A sync that fails (connection lost, server down, even during COMMIT, whose
outcome is then unknown) raises ``StoreUnavailable``, an ``OSError`` like the segment store's
ENOSPC, and puts the batch back in front of newer writes; the persister nacks what it covered and a
later sync writes all of it again.  Writing a batch twice is safe: deletes and definition upserts
are idempotent, and a COPY that meets rows already stored fails as a whole and the batch is written
again with an upserting INSERT.  Nothing unconfirmed is reported as confirmed; a connection found
broken is replaced at once (the first sync after a database restart commits on a new one).

Order: memory keeps the net effect of the calls, so "definitions, removals, inserts" is right — a
message put and removed before a sync is never written; a removal followed by a put of the same id
deletes the old row and inserts the new one; ``delete_queue`` drops the queue's buffered messages
and removals (its DELETE, among the definitions, removes the stored ones).  A failed batch folds the
newer one in behind it (``Batch.then``) keeping that property.  Streams and delayed messages are
buffered and written the same way, in the same transaction (``postgres_logs``: appends and held
messages by COPY, retention as one ranged DELETE after it).

Reads: ``recover`` (which syncs first) hands the first ``EAGER_RECORDS`` messages of each queue
with their bodies and the rest as ``StoredMessage`` (size and expiry only): memory stays bounded
with millions of stored messages.  ``read_message`` reads a message from the buffers, or from the
table together with the next ``READ_AHEAD_ROWS`` small ones of its queue, so a backlog drains at
one round trip per ``READ_AHEAD_ROWS`` messages.  Reads use their own autocommit connection (the
broker's event loop) so that they never wait behind a commit of the sync thread's connection.

Fencing, the contract with the failover standby (``amqp_lease``, schema version 1, one row
``id = 1``): a leader takes the lease by incrementing ``epoch`` (and setting ``holder``,
``renewed_at``) and opens its store with ``fencing_epoch=`` that epoch.  Every write transaction
of a fenced store first runs ``SELECT epoch FROM amqp_lease WHERE id = 1 FOR KEY SHARE`` and raises
``Fenced`` (a ``StoreUnavailable``: the persister nacks, nothing is committed) when the epoch is
not its own, so once a standby has raised the epoch (it locks the row FOR UPDATE first, which waits
for the KEY SHARE lock of any transaction in flight; the holder's renewals, plain UPDATEs, do not
wait: see ``postgres_lease``) no write of the old leader commits.  Sessions set
``idle_in_transaction_session_timeout`` and ``statement_timeout``, so a paused old leader's open
transaction is ended by PostgreSQL and cannot hold the lease row's lock against the takeover.
``set_fencing_epoch`` changes the epoch (a standby that just took over an open store); ``None``
turns fencing off (a single broker, no standby).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from . import postgres_logs as logs
from . import postgres_rows as rows
from .api import (
    BindingRecord,
    ExchangeRecord,
    MessageRecord,
    PolicyRecord,
    QueueRecord,
    Recovered,
    StoredMessage,
    StreamRecord,
)
from .postgres_schema import from_db, migrate, to_db

log = logging.getLogger("storage.postgres_store")

EAGER_RECORDS = 10_000  # per queue, recovered with their bodies (as the segment store); the rest as StoredMessage
READ_AHEAD_ROWS = 256  # rows read_message fetches at once: the message asked for and the next ones of its queue
READ_AHEAD_BODY = 64 * 1024  # larger bodies are not read ahead (they are fetched alone when asked for)
READ_AHEAD_CACHE = 4 * READ_AHEAD_ROWS  # most read-ahead records held at once
READ_RETRY_AFTER = 1.0  # seconds after a failed read during which reads fail at once, without connecting
IDLE_IN_TRANSACTION_TIMEOUT_MS = 3000  # PostgreSQL ends a transaction left open this long (a paused broker)
STATEMENT_TIMEOUT_MS = 30_000  # and any statement running this long
CONNECT_TIMEOUT_S = 10

Connection = psycopg.Connection[TupleRow]
Key = tuple[str, str]
T = TypeVar("T")


class StoreUnavailable(OSError):
    """The database did not take a sync (unreachable, failed, timed out): the persister nacks and retries."""


class Fenced(StoreUnavailable):
    """The lease's epoch is not this store's: another broker leads; nothing of this sync was committed."""


class StoreClosed(RuntimeError):
    """``sync`` after ``close``: nothing would ever be written."""


@dataclass
class Batch:
    """What one sync writes (see the module docstring for why its parts may be applied in this order)."""

    definitions: list[rows.Statement] = field(default_factory=list)
    inserts: dict[Key, dict[int, MessageRecord]] = field(default_factory=dict)
    removals: dict[Key, set[int]] = field(default_factory=dict)
    deleted_queues: set[Key] = field(default_factory=set)
    logs: logs.LogBatch = field(default_factory=logs.LogBatch)  # streams and delayed messages

    def __bool__(self) -> bool:
        return bool(self.definitions or self.inserts or self.removals or self.logs)

    def then(self, newer: Batch) -> None:
        """Fold ``newer`` (buffered while this batch's sync failed) in after this one, for one sync of both."""
        self.definitions.extend(newer.definitions)
        for key in newer.deleted_queues:
            self.inserts.pop(key, None)
            self.removals.pop(key, None)
        for key, ids in newer.removals.items():
            self.removals.setdefault(key, set()).update(ids)
            inserted = self.inserts.get(key)
            if inserted:  # removed after this batch put them: not inserted (the DELETE covers a lost commit's)
                for message_id in ids:
                    inserted.pop(message_id, None)
        for key, messages in newer.inserts.items():
            self.inserts.setdefault(key, {}).update(messages)  # inserted after this batch's removals, as if later
        self.deleted_queues |= newer.deleted_queues
        self.logs.then(newer.logs)


class PostgresStore:
    """A durable ``storage.api.Store`` on a PostgreSQL database; the schema is migrated at open."""

    def __init__(
        self,
        dsn: str,
        *,
        fencing_epoch: int | None = None,
        idle_in_transaction_timeout_ms: int = IDLE_IN_TRANSACTION_TIMEOUT_MS,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.dsn = dsn
        self._fencing_epoch = fencing_epoch
        self._settings = {
            "idle_in_transaction_session_timeout": str(idle_in_transaction_timeout_ms),
            "statement_timeout": str(statement_timeout_ms),
        }
        self._buffer_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._pending = Batch()  # guarded by _buffer_lock
        self._writing: Batch | None = None  # the batch a sync is writing (read_message still finds its records)
        self._read_ahead: dict[tuple[str, str, int], MessageRecord] = {}  # owned by the caller's thread
        self._read_failed_at = -READ_RETRY_AFTER  # time.monotonic() of the last failed read
        self._closed = False
        self._writer: Connection | None = None  # the sync thread's, under _sync_lock
        self._reader: Connection | None = None  # the caller's thread's
        with self._writing_connection() as conn:
            migrate(conn)  # raises SchemaTooNew for a database of a newer broker

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> Connection:
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            for name, value in self._settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        except psycopg.Error as error:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {error}") from error
        return conn

    @contextmanager
    def _writing_connection(self) -> Iterator[Connection]:
        """The write connection (opened again if it broke); a database error leaves as ``StoreUnavailable``."""
        if self._writer is None or self._writer.closed or self._writer.broken:
            self._writer = self._connect()
        try:
            yield self._writer
        except psycopg.Error as error:
            raise StoreUnavailable(f"PostgreSQL did not commit: {error}") from error

    def _reading_connection(self) -> Connection:
        if self._reader is None or self._reader.closed or self._reader.broken:
            self._reader = self._connect()
        return self._reader

    def _read(self, read: Callable[[Connection], T]) -> T:
        """Run a read on the read connection; once more on a new one if it was found broken."""
        try:
            return read(self._reading_connection())
        except psycopg.Error:
            if self._reader is None or not self._reader.broken:
                raise
        return read(self._reading_connection())

    def _read_or_fail(self, what: str, read: Callable[[Connection], T]) -> T:
        """``_read``, a database error leaving as ``StoreUnavailable`` ("cannot read ``what`` from PostgreSQL")."""
        try:
            return self._read(read)
        except psycopg.Error as error:
            raise StoreUnavailable(f"cannot read {what} from PostgreSQL: {error}") from error

    def set_fencing_epoch(self, epoch: int | None) -> None:
        """Write only while the lease's epoch is ``epoch`` (``None``: no fencing); from the next sync on."""
        self._fencing_epoch = epoch

    # -- definitions ---------------------------------------------------------------------------

    def _define(self, *statements: rows.Statement) -> None:
        with self._buffer_lock:
            self._pending.definitions.extend(statements)

    def put_exchange(self, record: ExchangeRecord) -> None:
        self._define(rows.put_exchange(record))  # raises TypeError for unstorable arguments, before any change

    def delete_exchange(self, vhost: str, name: str) -> None:
        with self._buffer_lock:
            self._pending.definitions.extend(rows.delete_exchange(vhost, name))
            self._pending.logs.delete_exchange((vhost, name))

    def put_queue(self, record: QueueRecord) -> None:
        self._define(rows.put_queue(record))

    def delete_queue(self, vhost: str, name: str) -> None:
        key = (vhost, name)
        with self._buffer_lock:
            pending = self._pending
            pending.definitions.extend(rows.delete_queue(vhost, name))
            pending.inserts.pop(key, None)
            pending.removals.pop(key, None)
            pending.deleted_queues.add(key)
            pending.logs.delete_stream(key)
        self._read_ahead = {k: v for k, v in self._read_ahead.items() if k[:2] != key}

    def put_binding(self, record: BindingRecord) -> None:
        self._define(rows.put_binding(record))

    def delete_binding(self, record: BindingRecord) -> None:
        self._define(rows.delete_binding(record))

    def put_policy(self, record: PolicyRecord) -> None:
        self._define(rows.put_policy(record))

    def delete_policy(self, vhost: str, name: str, operator: bool = False) -> None:
        self._define(rows.delete_policy(vhost, name, operator))

    # -- messages ------------------------------------------------------------------------------

    def put_message(self, vhost: str, queue: str, message_id: int, record: MessageRecord) -> None:
        key = (vhost, queue)
        with self._buffer_lock:
            pending = self._pending
            messages = pending.inserts.get(key)
            if messages is None:
                messages = pending.inserts[key] = {}
            messages[message_id] = record  # after a removal of the same id: DELETE then insert, as in call order
        if self._read_ahead:
            self._read_ahead.pop((vhost, queue, message_id), None)

    def remove_messages(self, vhost: str, queue: str, message_ids: Iterable[int]) -> None:
        key = (vhost, queue)
        read_ahead = self._read_ahead
        with self._buffer_lock:
            buffered = self._pending.inserts.get(key)
            removed: set[int] | None = None
            for message_id in message_ids:
                if buffered is not None and buffered.pop(message_id, None) is not None:
                    continue  # never written: nothing to delete
                if removed is None:
                    removed = self._pending.removals.setdefault(key, set())
                removed.add(message_id)
                if read_ahead:
                    read_ahead.pop((vhost, queue, message_id), None)
            if buffered is not None and not buffered:
                del self._pending.inserts[key]

    def read_message(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        """A stored message: from the buffers, the read-ahead, or the table (with the next ones of its queue)."""
        key = (vhost, queue)
        with self._buffer_lock:
            for batch in (self._pending, self._writing):
                if batch is not None:
                    record = batch.inserts.get(key, {}).get(message_id)
                    if record is not None:
                        return record
                    if message_id in batch.removals.get(key, ()):  # removed, the DELETE not committed yet
                        raise KeyError((vhost, queue, message_id))
        cached = self._read_ahead.pop((vhost, queue, message_id), None)
        if cached is not None:
            return cached
        return self._read_from_table(vhost, queue, message_id)

    def _read_from_table(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        """Read from the table, or fail fast within ``READ_RETRY_AFTER`` of a failed read (the caller's thread
        is the event loop: an unreachable database must not stall it for a connect timeout per message).

        A failed read raises ``StoreUnavailable`` (an ``OSError``): the queue then keeps the message paged
        out and waits, retrying (``amqp_server.core.paging``); the row stays in the table.
        """
        stored = (to_db(vhost), to_db(queue), message_id, message_id, READ_AHEAD_BODY, READ_AHEAD_ROWS)
        try:
            if time.monotonic() - self._read_failed_at < READ_RETRY_AFTER:
                raise StoreUnavailable("PostgreSQL could not be read a moment ago")
            found = self._read(lambda conn: conn.execute(rows.READ_AHEAD, stored, binary=True).fetchall())
        except (psycopg.Error, StoreUnavailable) as error:
            self._read_failed_at = time.monotonic()
            raise StoreUnavailable(f"cannot read message {message_id} of {queue!r} from PostgreSQL: {error}") from error
        if len(self._read_ahead) + len(found) > READ_AHEAD_CACHE:
            self._read_ahead = {}
        wanted: MessageRecord | None = None
        for row in found:
            found_id, record = rows.message_from_row(row)
            if found_id == message_id:
                wanted = record
            else:
                self._read_ahead[(vhost, queue, found_id)] = record
        if wanted is None:
            raise KeyError((vhost, queue, message_id))
        return wanted

    # -- streams and delayed messages (their SQL and buffering: postgres_logs) -------------------

    def append_stream(self, vhost: str, queue: str, record: StreamRecord) -> None:
        with self._buffer_lock:
            self._pending.logs.appends.setdefault((vhost, queue), []).append(record)

    def truncate_stream(self, vhost: str, queue: str, first: int) -> None:
        with self._buffer_lock:
            self._pending.logs.truncate((vhost, queue), first)

    def read_stream(self, vhost: str, queue: str, start: int, count: int) -> list[StreamRecord]:
        """Records from the buffers (snapshot first: a sync committing meanwhile leaves them in both) and the table."""
        key = (vhost, queue)
        with self._buffer_lock:
            batches = [batch.logs for batch in (self._writing, self._pending) if batch is not None]
            floor, stored, buffered = logs.buffered_stream(batches, key)
        start = max(start, floor)
        found: list[StreamRecord] = []
        if stored and not (buffered and buffered[0].offset <= start):
            found = self._read_or_fail(f"stream {queue!r}", lambda conn: logs.read_stream(conn, key, start, count))
        after = found[-1].offset if found else start - 1
        found.extend(record for record in buffered if record.offset > after)
        return found[:count]

    def put_delayed(self, vhost: str, exchange: str, delayed_id: int, fire_at: float, record: MessageRecord) -> None:
        with self._buffer_lock:
            self._pending.logs.held.setdefault((vhost, exchange), {})[delayed_id] = (fire_at, record)

    def remove_delayed(self, vhost: str, exchange: str, delayed_ids: Iterable[int]) -> None:
        with self._buffer_lock:
            self._pending.logs.release((vhost, exchange), delayed_ids)

    def read_delayed(self, vhost: str, exchange: str, delayed_id: int) -> MessageRecord:
        """A held message from the buffers (newest first) or the table; ``KeyError`` if there is none."""
        key = (vhost, exchange)
        with self._buffer_lock:
            for batch in (self._pending, self._writing):
                if batch is not None:
                    record = batch.logs.lookup(key, delayed_id)
                    if record is not None:
                        return record
        found = self._read_or_fail(
            f"a delayed message of {exchange!r}", lambda conn: logs.read_delayed(conn, key, delayed_id)
        )
        if found is None:
            raise KeyError((vhost, exchange, delayed_id))
        return found

    # -- sync ----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Commit everything buffered in one transaction; raises ``StoreUnavailable`` (an OSError) if that failed.

        After a failure nothing is lost from memory: the next ``sync`` writes what this one could not.
        """
        if self._closed:
            raise StoreClosed(f"store on {self._safe_dsn()} is closed")
        with self._sync_lock:
            with self._buffer_lock:
                batch = self._writing = self._pending
                self._pending = Batch()
            try:
                if batch:
                    self._commit_or_reconnect(batch)
            except BaseException:
                with self._buffer_lock:
                    batch.then(self._pending)
                    self._pending = batch
                raise
            finally:
                self._writing = None

    def _commit_or_reconnect(self, batch: Batch) -> None:
        """Commit; once more on a new connection if the old one was found broken (the database restarted).

        Safe whatever the first attempt did, since every statement is idempotent; without it the first
        sync after a database restart would always fail (a connection learns it broke only when used).
        """
        try:
            self._commit(batch)
        except StoreUnavailable:
            if self._writer is None or not self._writer.broken:
                raise
            log.info("the connection to PostgreSQL broke; committing again on a new one")
            self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        """One transaction: the fence, definitions and removals (pipelined), then the new messages by COPY."""
        try:
            self._transaction(batch, copy=True)
        except StoreUnavailable as error:
            if not isinstance(error.__cause__, psycopg.errors.UniqueViolation):
                raise
            self._transaction(batch, copy=False)  # some rows are stored already: upsert them

    def _transaction(self, batch: Batch, copy: bool) -> None:
        with self._writing_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            self._fence(conn)
            with conn.pipeline():
                for statement, parameters in batch.definitions:
                    cursor.execute(statement, parameters)
                for (vhost, queue), ids in batch.removals.items():
                    for statement, parameters in rows.delete_messages(vhost, queue, ids):
                        cursor.execute(statement, parameters)
                if batch.inserts and not copy:
                    cursor.execute(*rows.insert_messages(batch.inserts), binary=True)
                for statement, parameters in batch.logs.before_copy(copy):
                    cursor.execute(statement, parameters, binary=True)
            if batch.inserts and copy:
                with cursor.copy(rows.COPY_MESSAGES) as stream:
                    stream.set_types(rows.COPY_TYPES)
                    for row in rows.copy_rows(batch.inserts):
                        stream.write_row(row)
            if copy:
                batch.logs.copy(cursor)
            if batch.logs.truncations:
                with conn.pipeline():
                    for statement, parameters in batch.logs.after_copy():
                        cursor.execute(statement, parameters, binary=True)

    def _fence(self, conn: Connection) -> None:
        """In a write transaction, first: ``Fenced`` unless the lease's epoch is this store's (if it is fenced)."""
        epoch = self._fencing_epoch
        if epoch is None:
            return
        row = conn.execute(rows.FENCE).fetchone()
        current = None if row is None else row[0]
        if current != epoch:
            raise Fenced(f"fenced: the lease's epoch is {current}, this broker's is {epoch}; another broker leads")

    # -- users, vhosts, permissions (amqp_server.ops.access's document) --------------------------

    def load_access_document(self) -> Any | None:
        """The access document saved last, or None before the first save."""
        row = self._read_or_fail("users and vhosts", lambda conn: conn.execute(rows.SELECT_ACCESS).fetchone())
        return None if row is None else row[0]

    def save_access_document(self, document: dict[str, Any]) -> None:
        """Replace the access document: committed (fenced like a sync) before this returns."""
        if self._closed:
            raise StoreClosed(f"store on {self._safe_dsn()} is closed")
        with self._sync_lock, self._writing_connection() as conn, conn.transaction():
            self._fence(conn)
            conn.execute(rows.SAVE_ACCESS, (Jsonb(document),))

    # -- recover -------------------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Every definition and stored message (after syncing what is buffered).

        Past the first ``EAGER_RECORDS`` of a queue, messages come as ``StoredMessage``
        references (size and expiry only), read with ``read_message`` when needed.
        """
        self.sync()
        return self._read_or_fail("the broker's state", self._recover)

    def _recover(self, conn: Connection) -> Recovered:
        recovered = Recovered(
            exchanges=[rows.exchange_from_row(row) for row in conn.execute(rows.SELECT_EXCHANGES)],
            queues=[rows.queue_from_row(row) for row in conn.execute(rows.SELECT_QUEUES)],
            bindings=[rows.binding_from_row(row) for row in conn.execute(rows.SELECT_BINDINGS)],
            policies=[rows.policy_from_row(row) for row in conn.execute(rows.SELECT_POLICIES)],
        )
        logs.recover(conn, recovered)
        messages = recovered.messages
        shared: dict[int, StoredMessage] = {}  # one (immutable) reference per body size, not per message
        with conn.transaction(), conn.cursor(name="amqp_recover") as cursor:  # server-side: streamed
            cursor.itersize = 10_000
            cursor.execute(rows.SELECT_MESSAGE_SIZES)
            current: Key | None = None
            entries: list[tuple[int, MessageRecord | StoredMessage]] = []
            for vhost, queue, message_id, size, expires_at in cursor:
                if current is None or (vhost, queue) != current:
                    current = (vhost, queue)
                    entries = messages[(from_db(vhost), from_db(queue))] = []
                if expires_at is not None:
                    entries.append((message_id, StoredMessage(size, expires_at)))
                else:
                    reference = shared.get(size)
                    if reference is None:
                        reference = shared[size] = StoredMessage(size)
                    entries.append((message_id, reference))
        for (vhost, queue), entries in messages.items():
            first = conn.execute(rows.SELECT_FIRST_MESSAGES, (to_db(vhost), to_db(queue), EAGER_RECORDS), binary=True)
            for index, row in enumerate(first):
                entries[index] = rows.message_from_row(row)
        return recovered

    # -- close ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Sync (a clean shutdown loses nothing), then close the connections.

        If that last sync fails (the database is down), what it could not write is
        logged and dropped, as after a crash, and the store still closes.
        """
        if self._closed:
            return
        try:
            self.sync()
        except OSError as error:
            log.error(
                "could not write %s to %s at shutdown (%s): lost, as after a crash",
                self._unwritten(),
                self._safe_dsn(),
                error,
            )
        finally:
            self._closed = True
            for conn in (self._writer, self._reader):
                if conn is not None:
                    conn.close()

    def _unwritten(self) -> str:
        pending = self._pending
        messages = sum(len(batch) for batch in pending.inserts.values())
        removals = sum(len(ids) for ids in pending.removals.values())
        return f"{messages} messages, {removals} removals, {len(pending.definitions)} definition changes"

    def _safe_dsn(self) -> str:
        """The DSN without its password, for messages."""
        info: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(self.dsn)
        info.pop("password", None)
        return psycopg.conninfo.make_conninfo(**info)
