"""The lease on a PostgreSQL store: one active broker per database, the others on standby.

ActiveMQ's JDBC master/slave, with a lease instead of a lock held by an open transaction: the one
row of ``amqp_lease`` names its holder, its ``epoch`` and when it last renewed, all by the
database's clock (the brokers' clocks never enter: they may disagree).  A broker takes the row
when it is free or when its holder has not renewed within the holder's ttl, and bumps ``epoch``;
the store checks that epoch in every write transaction (``SELECT … FOR KEY SHARE``, see
``storage.postgres_store``), so an ex-leader that was paused or cut off cannot commit once another
broker took over: the fence holds even when the ex-leader does not know yet.

The holder renews every ttl/3 on a connection of its own, in a thread, so the broker's event loop
never waits for the database.  It counts the lease as lost when a renewal finds the row taken (it
updates no row) or when no renewal succeeded for ttl minus a margin, measured on its monotonic
clock from the moment the last good renewal was *sent* (the database stamped it no earlier), so it
stops serving before a standby can take over.  ``release`` at a clean shutdown frees the row at
once, so the standby need not wait out the ttl.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import psycopg

from .postgres_schema import migrate

log = logging.getLogger("amqp_server.lease")

DEFAULT_TTL = 5.0  # seconds
MARGIN = 0.2  # of the ttl: the holder gives up this much before a standby may take the row
POLL = 0.2  # seconds between a standby's attempts (the takeover waits at most this past the ttl)
FREE = "(holder IS NULL OR renewed_at IS NULL OR renewed_at < now() - ttl_ms * interval '1 ms')"
LOOKS_FREE = f"SELECT holder FROM amqp_lease WHERE id = 1 AND NOT {FREE}"  # no lock: polled by every standby
LOCK = f"SELECT 1 FROM amqp_lease WHERE id = 1 AND {FREE} FOR UPDATE"  # waits for the holder's commits
ACQUIRE = (
    "UPDATE amqp_lease SET holder = %s, epoch = epoch + 1, renewed_at = now(), ttl_ms = %s WHERE id = 1 RETURNING epoch"
)
RENEW = "UPDATE amqp_lease SET renewed_at = now() WHERE id = 1 AND holder = %s AND epoch = %s"
RELEASE = "UPDATE amqp_lease SET holder = NULL, renewed_at = NULL WHERE id = 1 AND holder = %s AND epoch = %s"


class Cancelled(Exception):
    """``acquire`` was cancelled (the broker is stopping while on standby)."""


def default_holder() -> str:
    """Who holds the lease, as shown in the row: host, pid and a random part (pids repeat across hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One broker's claim on the store at ``dsn``: ``acquire``, then ``start`` renewing, ``release`` at the end."""

    def __init__(self, dsn: str, ttl: float = DEFAULT_TTL, holder: str | None = None) -> None:
        self.dsn = dsn
        self.ttl = ttl
        self.holder = holder or default_holder()
        self.epoch: int | None = None
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._valid_until = 0.0  # monotonic: past it, a standby may have taken the row
        self._lost: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ standby

    def acquire(self, cancel: threading.Event, poll: float = POLL) -> int:
        """Block until the row is ours (raise ``Cancelled`` once ``cancel`` is set); returns the new epoch.

        Database errors (not up yet, restarting) are logged once and retried: a standby waits them out.
        """
        failing = False
        last_holder: str | None = None
        while not cancel.is_set():
            try:
                sent = time.monotonic()
                holder, epoch = self._try_acquire(self._connect())
                if epoch is not None:
                    self.epoch = epoch
                    self._valid_until = sent + self.ttl * (1 - MARGIN)
                    return epoch
                if holder is not None and holder != last_holder:
                    last_holder = holder
                    log.info("standby: the lease is held by %s", holder)
                failing = False
            except psycopg.errors.QueryCanceled:
                pass  # the lock waited past statement_timeout behind a paused holder's transaction: try again
            except psycopg.Error as error:
                self._disconnect()
                if not failing:
                    log.warning("standby: cannot reach the store's database (%s); retrying", _first_line(error))
                failing = True
            cancel.wait(poll)
        raise Cancelled()

    def _try_acquire(self, connection: psycopg.Connection[tuple[object, ...]]) -> tuple[str | None, int | None]:
        """(the holder, None) while the lease is held; (None, the new epoch) once taken.

        The cheap look comes first, without a lock.  Only a lease that looks free is locked FOR
        UPDATE: that lock waits for every write transaction of the holder in flight (they hold the
        row FOR KEY SHARE), and the holder's renewals (plain UPDATEs) neither wait for those nor
        for each other's polls, so a standby never slows the active broker down.
        """
        held = connection.execute(LOOKS_FREE).fetchone()
        if held is not None:
            return str(held[0]), None
        with connection.transaction():
            if connection.execute(LOCK).fetchone() is None:  # renewed while we waited for the lock
                return None, None
            row = connection.execute(ACQUIRE, (self.holder, int(self.ttl * 1000))).fetchone()
            assert row is not None  # the row is locked: it is still there
            return None, int(str(row[0]))

    # ------------------------------------------------------------ holder

    def start(self) -> None:
        """Renew every ttl/3 in a daemon thread until ``release`` (or until the lease is lost)."""
        self._thread = threading.Thread(target=self._renew_loop, name="amqp-lease", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> str | None:
        """Why the lease is no longer ours (None while it is): read it often, it costs no I/O."""
        if self._lost is None and time.monotonic() > self._valid_until:
            self._lost = f"no renewal of the lease succeeded for {self.ttl * (1 - MARGIN):.1f} s"
        return self._lost

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        while not self._stopping.wait(interval):
            if self.lost is not None:
                return
            try:
                self._renew()
                interval = self.ttl / 3
            except psycopg.Error as error:
                self._disconnect()
                log.warning("cannot renew the lease (%s); retrying", _first_line(error))
                interval = min(self.ttl / 10, 0.5)  # retry soon: the margin is short
        self._disconnect()

    def _renew(self) -> None:
        sent = time.monotonic()
        cursor = self._connect().execute(RENEW, (self.holder, self.epoch))
        if cursor.rowcount == 1:
            if self._lost is None:
                self._valid_until = sent + self.ttl * (1 - MARGIN)
        elif self._lost is None:
            self._lost = "another broker took the lease"

    def release(self) -> None:
        """Stop renewing and, if the row is still ours, free it so that a standby takes over at once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.epoch is not None:  # even once lost: the WHERE frees the row only if it is still ours
            try:
                self._connect().execute(RELEASE, (self.holder, self.epoch))
            except psycopg.Error as error:  # the standby then takes over after the ttl instead
                log.warning("could not release the lease (%s)", _first_line(error))
        self._disconnect()

    # ------------------------------------------------------------ connection

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """The lease's own autocommit connection, opened (with its schema) on first use and after an error."""
        if self._connection is None or self._connection.closed:
            timeout_ms = max(int(self.ttl * 1000 / 3), 100)
            connection = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.ttl / 3)),
                tcp_user_timeout=timeout_ms,  # a vanished database host fails a renewal instead of hanging it
                application_name="amqp-server lease",
                options=f"-c statement_timeout={timeout_ms}",
            )
            try:
                migrate(connection)  # the store's schema, amqp_lease among its tables: a standby may come first
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def active_holder(dsn: str) -> str | None:
    """Who holds the lease on the store at ``dsn`` now (renewed within its ttl), or None: for tools that edit
    the store while no broker serves it, as the data dir's lock guards the segment store."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="amqp-server admin") as db:
            migrate(db)  # a database no broker has used yet: no lease table, and nobody holds it
            row = db.execute(LOOKS_FREE).fetchone()
    except psycopg.Error as error:  # an OSError, as the store's own failures, for the admin CLI's one line
        raise ConnectionError(f"cannot read the lease from PostgreSQL: {_first_line(error)}") from None
    return None if row is None else str(row[0])


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
