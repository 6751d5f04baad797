"""Streams and delayed messages in the PostgreSQL store: what a sync writes of them, and their SQL.

Kept apart from ``postgres_store`` (queue messages, definitions, when a transaction runs) because
both have their own tables (``postgres_schema`` version 2) and their own net-effect buffering, which
``LogBatch`` holds inside the store's ``Batch``:

- a stream (``amqp_stream``, one row per offset, and ``amqp_stream_head``, its first offset kept,
  which outlives its rows: a stream that retention emptied still recovers at the same offsets) gets
  its appends by binary COPY, as queue messages, and retention (``truncate_stream``) as one ranged
  DELETE run after that COPY, so that it also removes rows of the same transaction;
- a delayed exchange's held messages (``amqp_delayed``) are put by COPY and removed by one DELETE per
  exchange (``id = ANY(...)``), in the same pipeline as the queue messages' removals, before the COPY:
  an id removed and put again is stored again.

A batch retried after a commit whose outcome was lost meets its own rows: the store then writes it
again with upserts (``before_copy(copy=False)``), exactly as for queue messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from .api import MessageRecord, Recovered, StreamIndex, StreamRecord
from .postgres_rows import Statement, as_columns, message_record
from .postgres_schema import from_db, to_db

Key = tuple[str, str]
Held = tuple[float, MessageRecord]  # a delayed message: its fire time and record

_STREAM_COLUMNS = 'vhost, queue, "offset", appended_at, exchange, routing_key, header, body, expires_at'
COPY_STREAM = f"COPY amqp_stream ({_STREAM_COLUMNS}) FROM STDIN (FORMAT BINARY)"
COPY_STREAM_TYPES = ["text", "text", "int8", "float8", "text", "text", "bytea", "bytea", "float8"]
INSERT_STREAM = f"""
INSERT INTO amqp_stream ({_STREAM_COLUMNS})
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::float8[], %s::text[], %s::text[], %s::bytea[],
    %s::bytea[], %s::float8[])
ON CONFLICT (vhost, queue, "offset") DO UPDATE SET appended_at = EXCLUDED.appended_at, exchange = EXCLUDED.exchange,
    routing_key = EXCLUDED.routing_key, header = EXCLUDED.header, body = EXCLUDED.body, expires_at = EXCLUDED.expires_at
"""
# the first append of a stream names its first offset; later ones leave it (retention moves it)
PUT_STREAM_HEAD = """
INSERT INTO amqp_stream_head (vhost, queue, first_offset) VALUES (%s, %s, %s::bigint) ON CONFLICT DO NOTHING
"""
# retention: the first offset moves up to the one asked for, never past the stream's end (as MemoryStore)
TRUNCATE_STREAM_HEAD = """
UPDATE amqp_stream_head SET first_offset = GREATEST(first_offset, LEAST(%s::bigint,
    coalesce((SELECT max("offset") + 1 FROM amqp_stream WHERE vhost = %s AND queue = %s), first_offset)))
WHERE vhost = %s AND queue = %s
"""
TRUNCATE_STREAM = 'DELETE FROM amqp_stream WHERE vhost = %s AND queue = %s AND "offset" < %s::bigint'
READ_STREAM = """
SELECT "offset", appended_at, exchange, routing_key, header, body, expires_at FROM amqp_stream
WHERE vhost = %s AND queue = %s AND "offset" >= %s::bigint ORDER BY "offset" LIMIT %s
"""
SELECT_STREAM_HEADS = "SELECT vhost, queue, first_offset FROM amqp_stream_head"
SELECT_STREAM_SIZES = """
SELECT vhost, queue, octet_length(header) + octet_length(body), appended_at FROM amqp_stream
ORDER BY vhost, queue, "offset"
"""

_DELAYED_COLUMNS = "vhost, exchange, id, fire_at, message_exchange, routing_key, header, body, expires_at"
COPY_DELAYED = f"COPY amqp_delayed ({_DELAYED_COLUMNS}) FROM STDIN (FORMAT BINARY)"
COPY_DELAYED_TYPES = ["text", "text", "int8", "float8", "text", "text", "bytea", "bytea", "float8"]
INSERT_DELAYED = f"""
INSERT INTO amqp_delayed ({_DELAYED_COLUMNS})
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::float8[], %s::text[], %s::text[], %s::bytea[],
    %s::bytea[], %s::float8[])
ON CONFLICT (vhost, exchange, id) DO UPDATE SET fire_at = EXCLUDED.fire_at,
    message_exchange = EXCLUDED.message_exchange, routing_key = EXCLUDED.routing_key, header = EXCLUDED.header,
    body = EXCLUDED.body, expires_at = EXCLUDED.expires_at
"""
# the id range bounds the index scan (see postgres_rows.DELETE_MESSAGES)
DELETE_DELAYED = """
DELETE FROM amqp_delayed WHERE vhost = %s AND exchange = %s AND id BETWEEN %s::bigint AND %s::bigint
    AND id = ANY(%s::bigint[])
"""
READ_DELAYED = """
SELECT message_exchange, routing_key, header, body, expires_at FROM amqp_delayed
WHERE vhost = %s AND exchange = %s AND id = %s::bigint
"""
SELECT_DELAYED = "SELECT vhost, exchange, id, fire_at FROM amqp_delayed ORDER BY vhost, exchange, id"


@dataclass
class LogBatch:
    """The streams' and delayed messages' part of a sync, as the net effect of the calls since the last one."""

    appends: dict[Key, list[StreamRecord]] = field(default_factory=dict)
    truncations: dict[Key, int] = field(default_factory=dict)  # the highest first offset asked for
    deleted_streams: set[Key] = field(default_factory=set)  # their DELETEs are among the store's definitions
    held: dict[Key, dict[int, Held]] = field(default_factory=dict)
    released: dict[Key, set[int]] = field(default_factory=dict)  # delayed ids to DELETE (stored or not)
    deleted_exchanges: set[Key] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.appends or self.truncations or self.held or self.released)

    def truncate(self, key: Key, first: int) -> None:
        self.truncations[key] = max(first, self.truncations.get(key, first))

    def delete_stream(self, key: Key) -> None:
        self.appends.pop(key, None)
        self.truncations.pop(key, None)
        self.deleted_streams.add(key)

    def release(self, key: Key, delayed_ids: Iterable[int]) -> None:
        """Removed delayed ids: dropped from the buffer, and DELETEd (an id may have been stored before)."""
        held = self.held.get(key)
        released = self.released.setdefault(key, set())
        for delayed_id in delayed_ids:
            released.add(delayed_id)
            if held is not None:
                held.pop(delayed_id, None)
        if held is not None and not held:
            del self.held[key]
        if not released:
            del self.released[key]

    def delete_exchange(self, key: Key) -> None:
        self.held.pop(key, None)
        self.released.pop(key, None)
        self.deleted_exchanges.add(key)

    def then(self, newer: LogBatch) -> None:
        """Fold ``newer`` in after this batch (see ``postgres_store.Batch.then``)."""
        for key in newer.deleted_streams:
            self.delete_stream(key)
        for key in newer.deleted_exchanges:
            self.delete_exchange(key)
        for key, ids in newer.released.items():
            self.release(key, ids)
        for key, held in newer.held.items():
            self.held.setdefault(key, {}).update(held)
        for key, records in newer.appends.items():
            self.appends.setdefault(key, []).extend(records)
        for key, first in newer.truncations.items():
            self.truncate(key, first)

    def lookup(self, key: Key, delayed_id: int) -> MessageRecord | None:
        """A held message of this batch; ``KeyError`` if the batch removed it; None if it does not know it."""
        held = self.held.get(key, {}).get(delayed_id)
        if held is not None:
            return held[1]
        if key in self.deleted_exchanges or delayed_id in self.released.get(key, ()):
            raise KeyError((*key, delayed_id))
        return None

    # -- what the transaction runs -------------------------------------------------------------

    def before_copy(self, copy: bool) -> Iterator[Statement]:
        """Pipelined with the definitions: delayed removals, new streams' heads, and the upserts when not copying."""
        for (vhost, exchange), ids in self.released.items():
            if ids:
                yield DELETE_DELAYED, (to_db(vhost), to_db(exchange), min(ids), max(ids), sorted(ids))
        for (vhost, queue), records in self.appends.items():
            if records:
                yield PUT_STREAM_HEAD, (to_db(vhost), to_db(queue), records[0].offset)
        if not copy:
            if self.appends:
                yield INSERT_STREAM, as_columns(self._stream_rows(), len(COPY_STREAM_TYPES))
            if self.held:
                yield INSERT_DELAYED, as_columns(self._delayed_rows(), len(COPY_DELAYED_TYPES))

    def copy(self, cursor: psycopg.Cursor[TupleRow]) -> None:
        """The new stream records and held messages, by binary COPY."""
        for statement, types, found in (
            (COPY_STREAM, COPY_STREAM_TYPES, self._stream_rows()),
            (COPY_DELAYED, COPY_DELAYED_TYPES, self._delayed_rows()),
        ):
            first = next(found, None)
            if first is None:
                continue
            with cursor.copy(statement) as stream:
                stream.set_types(types)
                stream.write_row(first)
                for row in found:
                    stream.write_row(row)

    def after_copy(self) -> Iterator[Statement]:
        """Retention, after the COPY: it moves the head and removes rows this transaction may have added."""
        for (vhost, queue), first in self.truncations.items():
            key = (to_db(vhost), to_db(queue))
            yield TRUNCATE_STREAM_HEAD, (first, *key, *key)
            yield TRUNCATE_STREAM, (*key, first)

    def _stream_rows(self) -> Iterator[tuple[Any, ...]]:
        for (vhost, queue), records in self.appends.items():
            stored_vhost, stored_queue = to_db(vhost), to_db(queue)
            for r in records:
                m = r.message
                yield (
                    stored_vhost,
                    stored_queue,
                    r.offset,
                    r.timestamp,
                    to_db(m.exchange),
                    to_db(m.routing_key),
                    m.header,
                    m.body,
                    m.expires_at,
                )

    def _delayed_rows(self) -> Iterator[tuple[Any, ...]]:
        for (vhost, exchange), held in self.held.items():
            stored_vhost, stored_exchange = to_db(vhost), to_db(exchange)
            for delayed_id, (fire_at, m) in held.items():
                yield (
                    stored_vhost,
                    stored_exchange,
                    delayed_id,
                    fire_at,
                    to_db(m.exchange),
                    to_db(m.routing_key),
                    m.header,
                    m.body,
                    m.expires_at,
                )


def buffered_stream(batches: list[LogBatch], key: Key) -> tuple[int, bool, list[StreamRecord]]:
    """What buffers (oldest first) say of a stream: the first offset retention kept, whether the table's rows
    still count (not if the stream was deleted since), and the buffered records in offset order."""
    floor, stored = 0, True
    records: list[StreamRecord] = []
    for batch in batches:
        if key in batch.deleted_streams:
            floor, stored, records = 0, False, []
        floor = max(floor, batch.truncations.get(key, 0))
        records.extend(batch.appends.get(key, ()))
    return floor, stored, records


def read_stream(conn: psycopg.Connection[TupleRow], key: Key, start: int, count: int) -> list[StreamRecord]:
    """Up to ``count`` stored records of the stream from offset ``start`` on."""
    found = conn.execute(READ_STREAM, (to_db(key[0]), to_db(key[1]), start, count), binary=True)
    return [
        StreamRecord(offset, timestamp, message_record(exchange, routing_key, header, body, expires_at))
        for offset, timestamp, exchange, routing_key, header, body, expires_at in found
    ]


def read_delayed(conn: psycopg.Connection[TupleRow], key: Key, delayed_id: int) -> MessageRecord | None:
    row = conn.execute(READ_DELAYED, (to_db(key[0]), to_db(key[1]), delayed_id), binary=True).fetchone()
    return None if row is None else message_record(*row)


def recover(conn: psycopg.Connection[TupleRow], recovered: Recovered) -> None:
    """Fill ``recovered.streams`` (offset range, sizes, timestamps) and ``recovered.delayed`` (ids, fire times),
    reading no bodies; the rows are streamed by server-side cursors (a stream may hold millions)."""
    streams = recovered.streams
    for vhost, queue, first in conn.execute(SELECT_STREAM_HEADS):
        streams[(from_db(vhost), from_db(queue))] = StreamIndex(first)
    current: Key | None = None
    index: StreamIndex | None = None
    for vhost, queue, size, timestamp in _streamed(conn, SELECT_STREAM_SIZES):
        if current != (vhost, queue):
            current = (vhost, queue)
            index = streams.get((from_db(vhost), from_db(queue)))
        if index is not None:
            index.sizes.append(size)
            index.timestamps.append(timestamp)
    delayed = recovered.delayed
    entries: list[tuple[int, float]] = []
    current = None
    for vhost, exchange, delayed_id, fire_at in _streamed(conn, SELECT_DELAYED):
        if current != (vhost, exchange):
            current = (vhost, exchange)
            entries = delayed[(from_db(vhost), from_db(exchange))] = []
        entries.append((delayed_id, fire_at))


def _streamed(conn: psycopg.Connection[TupleRow], query: str) -> Iterator[tuple[Any, ...]]:
    with conn.transaction(), conn.cursor(name="amqp_recover_logs") as cursor:
        cursor.itersize = 10_000
        cursor.execute(query)
        yield from cursor
