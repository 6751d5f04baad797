"""The PostgreSQL store's tables, and the versioned migrations that create them.

``schema_version`` holds one row per migration applied (``version``, ``applied_at``); the schema's
version is the highest.  ``migrate`` runs at every open, in one transaction under a transaction-level
advisory lock (two brokers opening the same database at once do not both migrate): it applies the
migrations above the database's version, in order, and refuses a database whose version is newer
than this code knows (``SchemaTooNew``: an older broker must not write into tables whose meaning
changed).  A migration is only ever appended to ``MIGRATIONS``, never edited once released.

Names (vhosts, queues, exchanges, routing keys) are ``text``; PostgreSQL text cannot hold U+0000,
nor lone surrogates (names are kept as the broker decoded them), so they go through
``to_db``/``from_db`` (a backslash escape that leaves every other name unchanged).  Table arguments
are ``json`` in the tagged form of ``segment_format.encode_table`` (``json``, not ``jsonb``: it keeps
key order and accepts ``\\u0000``).
Message expiry is wall-clock seconds since the epoch (``double precision``), as in ``MessageRecord``.

Version 1 also holds two tables other parts of the broker own: ``amqp_lease`` (the leader lease of the
failover standby; one row, ``id = 1``, whose ``epoch`` fences writers: see ``postgres_store``) and
``amqp_access`` (users, vhosts and permissions: the access document, as JSONB).  Version 2 adds the
streams' logs (``amqp_stream``, ``amqp_stream_head``) and delayed exchanges' held messages
(``amqp_delayed``): see ``postgres_logs``.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import TupleRow

SCHEMA_VERSION_1 = """
CREATE TABLE exchanges (
    vhost text NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    durable boolean NOT NULL,
    auto_delete boolean NOT NULL,
    internal boolean NOT NULL,
    arguments json NOT NULL,
    PRIMARY KEY (vhost, name)
);
CREATE TABLE queues (
    vhost text NOT NULL,
    name text NOT NULL,
    durable boolean NOT NULL,
    auto_delete boolean NOT NULL,
    arguments json NOT NULL,
    PRIMARY KEY (vhost, name)
);
CREATE TABLE bindings (
    vhost text NOT NULL,
    source text NOT NULL,
    destination_kind text NOT NULL,
    destination text NOT NULL,
    routing_key text NOT NULL,
    arguments_key text NOT NULL,  -- the arguments' part of storage.api.binding_key: bindings differ by it
    arguments json NOT NULL,
    PRIMARY KEY (vhost, source, destination_kind, destination, routing_key, arguments_key)
);
CREATE INDEX bindings_destination ON bindings (vhost, destination_kind, destination);
CREATE TABLE policies (
    vhost text NOT NULL,
    operator boolean NOT NULL,
    name text NOT NULL,
    pattern text NOT NULL,
    apply_to text NOT NULL,
    priority double precision NOT NULL,
    definition json NOT NULL,
    PRIMARY KEY (vhost, operator, name)
);
CREATE TABLE messages (
    vhost text NOT NULL,
    queue text NOT NULL,
    id bigint NOT NULL,
    exchange text NOT NULL,
    routing_key text NOT NULL,
    header bytea NOT NULL,
    body bytea NOT NULL,
    expires_at double precision,
    PRIMARY KEY (vhost, queue, id)
);
ALTER TABLE messages ALTER COLUMN header SET STORAGE EXTERNAL;  -- already compact: not worth compressing
ALTER TABLE messages ALTER COLUMN body SET STORAGE EXTERNAL;
-- a queue table: rows come and go all the time, so vacuum (space reuse) and analyze far more often than the
-- defaults (a fifth of the table changed)
ALTER TABLE messages SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
CREATE TABLE amqp_lease (
    id int PRIMARY KEY CHECK (id = 1),
    holder text,
    epoch bigint NOT NULL DEFAULT 0,
    renewed_at timestamptz,
    ttl_ms int NOT NULL DEFAULT 5000
);
INSERT INTO amqp_lease (id) VALUES (1);
CREATE TABLE amqp_access (
    id int PRIMARY KEY CHECK (id = 1),
    document jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

# Version 2: streams (x-queue-type stream) and the held messages of delayed exchanges (see postgres_logs).
SCHEMA_VERSION_2 = """
CREATE TABLE amqp_stream_head (
    vhost text NOT NULL,
    queue text NOT NULL,
    first_offset bigint NOT NULL,  -- the first offset kept: retention moves it, and it outlives the rows
    PRIMARY KEY (vhost, queue)
);
CREATE TABLE amqp_stream (
    vhost text NOT NULL,
    queue text NOT NULL,
    "offset" bigint NOT NULL,
    appended_at double precision NOT NULL,  -- StreamRecord.timestamp: wall-clock seconds since the epoch
    exchange text NOT NULL,
    routing_key text NOT NULL,
    header bytea NOT NULL,
    body bytea NOT NULL,
    expires_at double precision,
    PRIMARY KEY (vhost, queue, "offset")
);
ALTER TABLE amqp_stream ALTER COLUMN header SET STORAGE EXTERNAL;
ALTER TABLE amqp_stream ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE amqp_delayed (
    vhost text NOT NULL,
    exchange text NOT NULL,  -- the x-delayed-message exchange holding the message
    id bigint NOT NULL,
    fire_at double precision NOT NULL,  -- wall-clock seconds since the epoch
    message_exchange text NOT NULL,  -- MessageRecord.exchange: where it was published
    routing_key text NOT NULL,
    header bytea NOT NULL,
    body bytea NOT NULL,
    expires_at double precision,
    PRIMARY KEY (vhost, exchange, id)
);
ALTER TABLE amqp_delayed ALTER COLUMN header SET STORAGE EXTERNAL;
ALTER TABLE amqp_delayed ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE amqp_delayed SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
"""

MIGRATIONS: tuple[str, ...] = (SCHEMA_VERSION_1, SCHEMA_VERSION_2)  # MIGRATIONS[n - 1] takes a database to version n
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x616D7170  # pg_advisory_xact_lock key ("amqp") held while migrating

CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaTooNew(OSError):
    """The database was migrated by a newer broker: this one does not know its tables.

    An ``OSError`` as the store's other failures to open (the database unreachable) are: the broker
    and the admin CLI report those in one line and exit 1.
    """


def migrate(conn: psycopg.Connection[TupleRow], migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; returns the version it was at before.

    ``conn`` must be in autocommit mode (the migration is its own transaction).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(CREATE_VERSION_TABLE)
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if found > len(migrations):
            raise SchemaTooNew(
                f"the database's schema is version {found}, newer than this broker's {len(migrations)}: "
                "it was used by a newer amqp-server; upgrade this one (nothing was changed)"
            )
        for version in range(found + 1, len(migrations) + 1):
            conn.execute(migrations[version - 1])
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return found


def schema_version(conn: psycopg.Connection[TupleRow]) -> int:
    """The database's schema version (0 for a database no broker has opened)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


_ESCAPED = re.compile(r"\\(u[0-9a-f]{4}|.)", re.DOTALL)
_UNSTORABLE = re.compile("[\\\\\x00\ud800-\udfff]")  # what a text column cannot hold, and the escape


def to_db(name: str) -> str:
    """A name as stored in a text column: ``\\`` doubled, NUL as ``\\0``, a lone surrogate as ``\\uXXXX``.

    Names of plain characters (all of them, in practice) pass unchanged, and cheaply.
    """
    if name.isascii() and "\\" not in name and "\x00" not in name:
        return name
    return _UNSTORABLE.sub(_escape, name)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return "\\\\" if char == "\\" else "\\0" if char == "\x00" else f"\\u{ord(char):04x}"


def from_db(stored: str) -> str:
    """The name ``to_db`` stored."""
    if "\\" not in stored:
        return stored
    return _ESCAPED.sub(_unescape, stored)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    return "\x00" if code == "0" else chr(int(code[1:], 16)) if len(code) == 5 else code
