"""tx.commit-ok and quorum-queue confirms mean on disk, against real broker processes killed with -9.

RabbitMQ's promises checked here: work committed in a transaction is durable
once commit-ok is sent (persistent publishes to durable queues, and acks);
quorum queues keep every message whatever its delivery_mode, so a confirmed
transient message on one survives a clean restart and a kill -9, and comes
back with the properties it was published with.  Each test runs its own
broker on a tmp data dir and restarts it on the same dir.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pika

from .broker_process import BrokerProcess
from .conftest import TIMEOUT

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=broker.port,
            socket_timeout=TIMEOUT,
            blocked_connection_timeout=TIMEOUT,
            connection_attempts=1,
            heartbeat=0,
        )
    )


def drain(broker: BrokerProcess, queue: str) -> list[tuple[bytes, pika.BasicProperties]]:
    """Every message in ``queue`` (taken with basic.get and acked), then a clean close."""
    connection = connect(broker)
    channel = connection.channel()
    got = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((body, properties))
    connection.close()
    return got


def test_200_persistent_messages_committed_in_one_tx_survive_kill_9_right_after_commit_ok(
    tmp_path: Path, start_broker
) -> None:
    broker = start_broker(tmp_path)
    channel = connect(broker).channel()
    channel.queue_declare("tx-q", durable=True)
    channel.tx_select()
    bodies = [b"committed %d" % n for n in range(200)]
    for body in bodies:
        channel.basic_publish("", "tx-q", body, PERSISTENT)
    channel.tx_commit()
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    assert [body for body, _ in drain(broker, "tx-q")] == bodies


def test_acks_committed_in_a_tx_stay_acked_after_kill_9_right_after_commit_ok(tmp_path: Path, start_broker) -> None:
    broker = start_broker(tmp_path)
    channel = connect(broker).channel()
    channel.queue_declare("tx-acks", durable=True)
    channel.confirm_delivery()
    bodies = [b"%d" % n for n in range(100)]
    for body in bodies:
        channel.basic_publish("", "tx-acks", body, PERSISTENT)
    consumer = channel.connection.channel()
    consumer.tx_select()
    tags = []
    for _ in bodies:
        method, _, _ = consumer.basic_get("tx-acks")
        tags.append(method.delivery_tag)
    consumer.basic_ack(tags[59], multiple=True)  # the first 60
    consumer.tx_commit()
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    assert [body for body, _ in drain(broker, "tx-acks")] == bodies[60:]


def test_confirmed_transient_messages_on_a_quorum_queue_survive_a_clean_restart_and_kill_9(
    tmp_path: Path, start_broker
) -> None:
    published = [(b"no delivery_mode", None), (b"delivery_mode 1", 1), (b"delivery_mode 2", 2)]
    broker = start_broker(tmp_path)
    channel = connect(broker).channel()
    channel.queue_declare("quorum-q", durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    for body, mode in published:
        channel.basic_publish("", "quorum-q", body, pika.BasicProperties(delivery_mode=mode, message_id=body.decode()))
    channel.connection.close()
    assert broker.stop() == 0

    broker = start_broker(tmp_path)
    back = drain(broker, "quorum-q")
    assert [(body, properties.delivery_mode, properties.message_id) for body, properties in back] == [
        (body, mode, body.decode()) for body, mode in published
    ]

    channel = connect(broker).channel()
    channel.confirm_delivery()
    channel.basic_publish("", "quorum-q", b"transient, then kill -9", pika.BasicProperties(delivery_mode=1))
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    assert [(body, properties.delivery_mode) for body, properties in drain(broker, "quorum-q")] == [
        (b"transient, then kill -9", 1)
    ]
