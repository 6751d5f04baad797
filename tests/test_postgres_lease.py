"""The failover lease (``storage.postgres_lease``) against a real PostgreSQL: who holds it, and its locks.

The lock claims are checked in the database itself (``pg_stat_activity`` shows a session waiting for
a lock), not by timing: a takeover waits for a write transaction of the holder in flight, a renewal
does not.
"""

from __future__ import annotations

import threading
import time

import psycopg

from storage import postgres_rows
from storage.postgres_lease import Cancelled, Lease

pytest_plugins = ["tests.postgres_cluster"]  # its fixtures: postgres_cluster, postgres_db

EXPIRE = "UPDATE amqp_lease SET renewed_at = now() - interval '1 hour'"  # as if the holder died an hour ago


def acquire_in_thread(lease: Lease) -> tuple[threading.Thread, threading.Event, dict[str, object]]:
    cancel = threading.Event()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["epoch"] = lease.acquire(cancel, poll=0.05)
        except Cancelled:
            result["cancelled"] = True

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, cancel, result


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_one_holder_at_a_time_and_release_hands_over(postgres_db: str) -> None:
    first, second = Lease(postgres_db, ttl=30), Lease(postgres_db, ttl=30)
    assert first.acquire(threading.Event()) == 1
    thread, cancel, result = acquire_in_thread(second)
    with psycopg.connect(postgres_db) as conn:
        wait_until(lambda: conn.execute("SELECT holder FROM amqp_lease").fetchone() == (first.holder,))
    cancel.set()
    thread.join(30)
    assert result == {"cancelled": True}
    first.release()
    assert second.acquire(threading.Event()) == 2
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT holder, epoch FROM amqp_lease").fetchone() == (second.holder, 2)
    second.release()


def test_takeover_waits_for_the_holders_transaction_but_renewal_does_not(postgres_db: str) -> None:
    holder, standby = Lease(postgres_db, ttl=30), Lease(postgres_db, ttl=30)
    holder.acquire(threading.Event())
    with psycopg.connect(postgres_db) as writer, psycopg.connect(postgres_db, autocommit=True) as observer:
        writer.execute(postgres_rows.FENCE)  # the store's write transaction, open: it holds the row FOR KEY SHARE
        holder._renew()  # returns: a renewal does not wait for it
        assert holder.lost is None
        observer.execute(EXPIRE)
        thread, _cancel, result = acquire_in_thread(standby)
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'amqp-server lease' AND wait_event_type = 'Lock'"
        )
        wait_until(lambda: observer.execute(waiting).fetchone() == (1,))
        assert result == {}
        writer.commit()  # the old leader's transaction ends: the takeover goes through
        thread.join(30)
        assert result == {"epoch": 2}
        assert writer.execute(postgres_rows.FENCE).fetchone() == (2,)  # the old leader's next sync is fenced
    holder._renew()
    assert holder.lost == "another broker took the lease"
    holder.release()  # frees nothing: the row is the standby's
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT holder FROM amqp_lease").fetchone() == (standby.holder,)
    standby.release()


def test_a_lease_not_renewed_in_time_counts_as_lost(postgres_db: str) -> None:
    lease = Lease(postgres_db, ttl=0.5)
    lease.acquire(threading.Event())  # not started: nothing renews it
    wait_until(lambda: lease.lost is not None)
    assert lease.lost == "no renewal of the lease succeeded for 0.4 s"
    lease.release()
