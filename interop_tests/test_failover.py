"""Standby and failover: brokers on one real PostgreSQL, one active, the others on standby.

Real broker processes (``failover_helpers.LeaseBroker``), a real PostgreSQL from
``tests/postgres_cluster.py`` and pika publishers with confirms.  What a user can observe: the
standby's AMQP port refuses connections and its health check says standby; after ``kill -9`` of the
active the standby serves every confirmed message; a paused ex-leader that wakes after the takeover
confirms nothing, closes its clients with 320 and exits, and left nothing in the database; a
database restart under load stalls confirms, never fakes one, and they resume.  No timed
assertions: waits are generous timeouts, the takeover time is ``benchmarks/failover_time.py``'s.
"""

from __future__ import annotations

import collections
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import kombu
import pika
import pika.exceptions
import pytest

from .failover_helpers import FailoverPublisher, LeaseBroker, drain

if TYPE_CHECKING:  # imported for real by pytest_plugins (importing it first would stop its assert rewriting)
    from tests.postgres_cluster import PostgresCluster

pytest_plugins = ["tests.postgres_cluster"]  # its fixtures: postgres_cluster, postgres_db

QUEUE = "failover"


@pytest.fixture
def brokers(postgres_db: str, tmp_path: Path) -> Iterator[list[LeaseBroker]]:
    """Two brokers on one database, not started; stopped after the test."""
    made = [LeaseBroker(postgres_db, tmp_path / name, 2.0) for name in ("a", "b")]
    yield made
    for broker in made:
        broker.stop()


def start_pair(brokers: list[LeaseBroker]) -> tuple[LeaseBroker, LeaseBroker]:
    """Start the first (it takes the lease), then the second (standby)."""
    active, standby = brokers
    active.start()
    assert active.wait_active(), active.text()
    standby.start()
    assert standby.wait_standby(), standby.text()
    return active, standby


def check_delivered(publishers: list[FailoverPublisher], bodies: list[str]) -> None:
    """Every confirmed body is there; a body is there twice only if it was sent twice."""
    counts = collections.Counter(bodies)

    for publisher in publishers:
        missing = [body for body in publisher.confirmed if counts[body] == 0]
        assert not missing, f"confirmed but lost: {missing[:10]} ({len(missing)} of {len(publisher.confirmed)})"
    resent = set().union(*(publisher.resent for publisher in publishers))
    duplicated = {body for body, count in counts.items() if count > 1}
    assert duplicated <= resent, f"stored twice but sent once: {sorted(duplicated - resent)[:10]}"


def test_second_broker_is_standby(brokers: list[LeaseBroker]) -> None:
    active, standby = start_pair(brokers)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", standby.port), timeout=5).close()
    assert "amqp-server listening on" not in standby.text()
    status, body = standby.health("alarms")
    assert status == 503 and body["status"] == "failed" and "standby" in body["reason"]
    for check in ("local-alarms", "virtual-hosts", "port-listener/5672"):
        assert standby.health(check)[0] == 503
    assert active.health("alarms") == (200, {"status": "ok"})
    connection = pika.BlockingConnection(active.parameters())
    assert connection.is_open
    connection.close()
    assert standby.stop() == 0  # SIGTERM ends the wait cleanly
    assert "stopped" in standby.text()


def test_clean_stop_hands_over_at_once(brokers: list[LeaseBroker]) -> None:
    """A SIGTERM'd active releases the lease: the standby serves its messages (and exit codes are 0)."""
    active, standby = start_pair(brokers)
    publisher = FailoverPublisher("p", [active, standby], QUEUE)
    publisher.start()
    assert publisher.wait_confirms(50)
    publisher.halt()
    assert active.stop() == 0
    assert standby.wait_active(), standby.text()
    check_delivered([publisher], drain(standby, QUEUE))


def test_kombu_failover_url_follows_the_active(brokers: list[LeaseBroker]) -> None:
    """The README's kombu example: a ``;`` list, ``ensure``'d publishes under confirms, across a takeover."""
    active, standby = start_pair(brokers)
    url = f"{standby.url};{active.url}"  # the standby first: kombu must move on past its closed port
    with kombu.Connection(url, failover_strategy="round-robin", transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        publish = conn.ensure(producer, producer.publish, max_retries=60, interval_start=0.5, interval_step=0)
        queue = kombu.Queue(QUEUE, routing_key=QUEUE, durable=True)
        publish("before", routing_key=QUEUE, declare=[queue], delivery_mode=2)
        active.send(signal.SIGKILL)
        assert active.wait_exit() == -signal.SIGKILL
        publish("after", routing_key=QUEUE, declare=[queue], delivery_mode=2)  # waits out the takeover
    assert standby.wait_active(), standby.text()
    assert drain(standby, QUEUE) == ["before", "after"]  # a str goes as text, unserialised


def test_kill_active_under_confirmed_publishing(brokers: list[LeaseBroker]) -> None:
    active, standby = start_pair(brokers)
    publishers = [FailoverPublisher(f"p{n}", brokers, QUEUE) for n in range(4)]
    for publisher in publishers:
        publisher.start()
    for _round in range(3):
        for publisher in publishers:  # each has been publishing to the current active
            assert publisher.wait_confirms(len(publisher.confirmed) + 20), (publisher.errors, active.text())
        active.send(signal.SIGKILL)
        assert active.wait_exit() == -signal.SIGKILL
        assert standby.wait_active(), standby.text()
        active.start()  # back as the new standby, same ports and data dir
        assert active.wait_standby(), active.text()
        active, standby = standby, active
    for publisher in publishers:
        assert publisher.wait_confirms(len(publisher.confirmed) + 20)
        publisher.halt()
    assert all(publisher.failovers >= 3 for publisher in publishers), [p.errors for p in publishers]
    check_delivered(publishers, drain(active, QUEUE))


class LatePublisher(threading.Thread):
    """Publishes one message on a confirm channel opened before the broker was paused; records how it ended."""

    def __init__(self, connection: pika.BlockingConnection, body: str) -> None:
        super().__init__(daemon=True)
        self.connection = connection
        self.channel = connection.channel()
        self.channel.confirm_delivery()
        self.body = body
        self.confirmed = False
        self.closed: BaseException | None = None

    def run(self) -> None:
        try:
            try:
                self.channel.basic_publish("", QUEUE, self.body, pika.BasicProperties(delivery_mode=2))
                self.confirmed = True
            except pika.exceptions.NackError:
                pass  # refused: honest; the connection.close is still to come
            self.connection.process_data_events(30)
        except pika.exceptions.AMQPError as error:
            self.closed = error


def test_paused_leader_cannot_commit_after_takeover(
    brokers: list[LeaseBroker],
    postgres_cluster: PostgresCluster,
    postgres_db: str,
) -> None:
    active, standby = start_pair(brokers)
    publisher = FailoverPublisher("before", [active], QUEUE)
    publisher.start()
    assert publisher.wait_confirms(30)
    publisher.halt()
    late = []
    for n in range(3):  # connections and channels opened before the pause
        late.append(LatePublisher(pika.BlockingConnection(active.parameters(heartbeat=0)), f"late-{n}"))
    active.send(signal.SIGSTOP)
    for thread in late:
        thread.start()  # their publishes wait in the paused broker's socket buffers
    assert standby.wait_active(), standby.text()
    active.send(signal.SIGCONT)
    assert active.wait_exit() == 1, active.text()  # for its supervisor to start it again, as a standby
    assert "lost the lease" in active.text()
    for thread in late:
        thread.join(60)
        assert not thread.confirmed
        assert isinstance(thread.closed, pika.exceptions.ConnectionClosedByBroker), thread.closed
        assert thread.closed.reply_code == 320, thread.closed
        assert "broker forced connection closure with reason 'shutdown'" in thread.closed.reply_text
    dbname = postgres_db.rsplit("/", 1)[1]
    stored = postgres_cluster.psql("SELECT convert_from(body, 'UTF8') FROM messages", dbname).split()
    assert not [body for body in stored if body.startswith("late-")]
    check_delivered([publisher], drain(standby, QUEUE))


def test_database_restart_under_load(
    postgres_cluster: PostgresCluster,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    """Confirms stall while PostgreSQL restarts, never come for what was not stored, then resume."""
    broker = LeaseBroker(postgres_db, tmp_path / "a", 60.0).start()  # a ttl the restart cannot outlast
    try:
        assert broker.wait_active(), broker.text()
        publishers = [FailoverPublisher(f"p{n}", [broker], QUEUE) for n in range(3)]
        for publisher in publishers:
            publisher.start()
        for publisher in publishers:
            assert publisher.wait_confirms(20)
        postgres_cluster.restart()
        for publisher in publishers:  # confirms again, from the database that came back
            assert publisher.wait_confirms(len(publisher.confirmed) + 20), broker.text()
            publisher.halt()
        broker.send(signal.SIGKILL)  # what counts is what the database holds
        assert broker.wait_exit() == -signal.SIGKILL
    finally:
        broker.stop()
    postgres_cluster.psql("UPDATE amqp_lease SET holder = NULL", postgres_db.rsplit("/", 1)[1])  # it is dead
    again = LeaseBroker(postgres_db, tmp_path / "b", 60.0).start()
    try:
        assert again.wait_active(), again.text()
        check_delivered(publishers, drain(again, QUEUE))
    finally:
        again.stop()


def test_database_gone_longer_than_the_ttl_stops_the_active(
    postgres_cluster: PostgresCluster,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    """Unreachable past 80% of the ttl, the lease may be another's: clients get 320, the broker exits 1."""
    broker = LeaseBroker(postgres_db, tmp_path / "a", 2.0).start()
    try:
        assert broker.wait_active(), broker.text()
        publisher = FailoverPublisher("p", [broker], QUEUE)
        publisher.start()
        assert publisher.wait_confirms(20)
        publisher.halt()
        connection = pika.BlockingConnection(broker.parameters(heartbeat=0))
        postgres_cluster.stop()
        try:
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
                connection.process_data_events(60)
            assert closed.value.reply_code == 320
            assert broker.wait_exit() == 1, broker.text()
            assert "no renewal of the lease succeeded" in broker.text()
        finally:
            postgres_cluster.start()
        broker.start()  # as its supervisor would: the lease ran out meanwhile, so it takes it again
        assert broker.wait_active(), broker.text()
        check_delivered([publisher], drain(broker, QUEUE))
    finally:
        broker.stop()
