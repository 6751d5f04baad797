"""A paged backlog drains across a PostgreSQL outage without losing a message.

A broker on ``--store postgresql://…`` holds more persistent messages than its in-memory window
(``core.queue.PAGE_OUT_AFTER``): the tail lives only in the database.  The database is stopped just
before the consumer reaches that tail, and started again a few seconds later: every committed message
must still arrive, once and in order, and the client never sees an error (the queue waits and retries).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pika
import pytest

from amqp_server.core.queue import PAGE_OUT_AFTER

from .broker_process import BrokerProcess

pytest_plugins = ["tests.postgres_cluster"]  # postgres_db: a fresh database of a throwaway PostgreSQL

PAGED = 300  # messages beyond the window: read back from PostgreSQL
PREFETCH = 100
PAUSE_AT = PAGE_OUT_AFTER - 2 * PREFETCH  # acked when the database stops: no paged-out message was read yet
QUIET = 3.0  # seconds without a delivery that show the queue waiting for the database


@pytest.fixture
def broker(postgres_db: str, tmp_path: Path):
    # a lease longer than the outage: a database gone past the lease's ttl stops the broker (test_failover.py)
    process = BrokerProcess(tmp_path / "data", "--store", postgres_db, "--lease-ttl", "60").start()
    yield process
    process.stop(signal.SIGKILL)


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    parameters = pika.ConnectionParameters(
        host="127.0.0.1", port=broker.port, socket_timeout=10, connection_attempts=1, heartbeat=0
    )
    return pika.BlockingConnection(parameters)


def drain_across_an_outage(broker: BrokerProcess, postgres_cluster) -> tuple[list[bytes], list[bytes]]:
    """Publish the backlog in one transaction, consume it with the database stopped as the consumer nears the
    paged-out tail and started again once deliveries have stopped; (published, received)."""
    bodies = [b"%05d" % n for n in range(PAGE_OUT_AFTER + PAGED)]
    with connect(broker) as connection:
        channel = connection.channel()
        channel.queue_declare("backlog", durable=True)
        channel.tx_select()
        for body in bodies:
            channel.basic_publish("", "backlog", body, pika.BasicProperties(delivery_mode=2))
        channel.tx_commit()  # on disk (in PostgreSQL) from here on

        channel = connection.channel()  # not transactional: its acks take effect at once
        channel.basic_qos(prefetch_count=PREFETCH)
        got: list[bytes] = []
        stopped = False
        try:
            for method, _, body in channel.consume("backlog", inactivity_timeout=QUIET):
                if method is None:  # quiet: waiting for the database (or done)
                    if stopped:
                        postgres_cluster.start()
                        stopped = False
                        continue
                    break
                got.append(body)
                channel.basic_ack(method.delivery_tag)
                if len(got) == PAUSE_AT:
                    postgres_cluster.stop()
                    stopped = True
        finally:
            if not postgres_cluster.running:
                postgres_cluster.start()
    return bodies, got


def test_every_committed_message_arrives_when_the_database_was_down_while_the_backlog_was_paged(
    broker, postgres_cluster
):
    bodies, got = drain_across_an_outage(broker, postgres_cluster)
    assert got == bodies
    log = "".join(broker.log)
    assert "could not be read back from the store" in log and "deliveries resume" in log, log
    assert "Traceback" not in log, log


def test_what_was_acked_across_the_outage_does_not_come_back_after_a_restart(broker, postgres_cluster):
    drain_across_an_outage(broker, postgres_cluster)
    assert broker.stop() == 0
    broker.port = broker.management_port = broker.prometheus_port = 0
    broker.start()
    with connect(broker) as connection:
        assert connection.channel().queue_declare("backlog", passive=True).method.message_count == 0
