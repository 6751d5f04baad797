"""Durability of the broker's data dir, against real broker processes that are killed and restarted.

Each test runs its own ``python -m amqp_server`` processes on a tmp data dir
(never the session broker nor ``AMQP_URL``: it must kill and restart the
broker), restarting on the same data dir on a new free port.  Covered:

* publisher confirms mean durable: over several rounds, a kill -9 lands at a
  random point while persistent messages (varied properties, bodies from 0
  bytes to several frames) are pipelined under confirms; after the restart
  every confirmed message is back exactly as sent (content header and body
  bytes), once, in publish order, marked redelivered; messages acked before a
  clean (SIGTERM) shutdown never come back;
* durable exchanges (with alternate-exchange), queues with arguments
  (TTL, max-length, dead-lettering, priorities, quorum type) and bindings
  (queue and exchange-to-exchange) survive kill -9 and SIGTERM restarts with
  their arguments and still route; transient exchanges and queues, exclusive
  queues, transient messages, and persistent messages on transient queues do not;
* a second broker on a data dir in use refuses to start and the first keeps serving;
* damaged segment files (a torn tail, a flipped byte) are reported and the
  intact messages served, never a damaged one;
* fully acked segments are deleted while the broker runs.

The random seed of the kill test is in its assertion messages.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from storage.segment_format import RecordScanner, decode_message, segment_name
from storage.segment_store import DEFAULT_SEGMENT_SIZE

from .broker_process import BrokerProcess
from .durability_helpers import (
    AmqpSocket,
    BrokerGone,
    ConfirmPublisher,
    Delivered,
    Sent,
    make_message,
    message_key,
    varied_messages,
)

REPO = Path(__file__).resolve().parent.parent
QUEUE = "durable-queue"


def connect(broker: BrokerProcess) -> AmqpSocket:
    return AmqpSocket(broker.port).handshake()


def pika_connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=broker.port,
            socket_timeout=5,
            blocked_connection_timeout=5,
            connection_attempts=1,
            heartbeat=0,
        )
    )


def drain(
    broker: BrokerProcess, queue: str = QUEUE, ack: Callable[[Delivered], bool] = lambda _: False
) -> list[Delivered]:
    """Every message in ``queue``, in delivery order; acks those ``ack`` picks, requeues the rest."""
    with connect(broker) as conn:
        deliveries = conn.consume_all(queue)
        conn.ack(delivery.delivery_tag for delivery in deliveries if ack(delivery))
        conn.close()
    return deliveries


# -- 1. confirmed means durable ------------------------------------------------------------------


class Ledger:
    """What the broker owes: every message sent, those it must still hold, those it must never return."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.sent: dict[str, Sent] = {}
        self.order: dict[str, int] = {}
        self.owed: set[str] = set()  # confirmed, or served after a restart, and not acked since
        self.acked: set[str] = set()  # acked, then a clean shutdown: gone for good

    def add(self, messages: list[Sent]) -> None:
        for message in messages:
            self.order[message.key] = len(self.order)
            self.sent[message.key] = message

    def check(self, deliveries: list[Delivered], when: str) -> None:
        where = f"{when} (seed {self.seed})"
        counts = Counter(delivery.key for delivery in deliveries)
        unknown = [delivery.key for delivery in deliveries if delivery.key not in self.sent]
        assert not unknown, f"{where}: messages never published: {unknown[:5]}"
        damaged = [delivery.key for delivery in deliveries if not delivery.is_copy_of(self.sent[delivery.key])]
        assert not damaged, f"{where}: content header or body differs from what was published: {damaged[:5]}"
        missing = sorted(self.owed - counts.keys(), key=self.order.__getitem__)
        assert not missing, f"{where}: {len(missing)} confirmed messages lost, first {missing[:5]}"
        doubled = [key for key in self.owed if counts[key] > 1]
        assert not doubled, f"{where}: confirmed messages delivered more than once: {doubled[:5]}"
        back = sorted(self.acked & counts.keys())
        assert not back, f"{where}: {len(back)} messages acked before a clean shutdown came back: {back[:5]}"
        not_redelivered = [delivery.key for delivery in deliveries if not delivery.redelivered]
        assert not not_redelivered, f"{where}: recovered messages not marked redelivered: {not_redelivered[:5]}"
        owed_order = [delivery.key for delivery in deliveries if delivery.key in self.owed]
        assert owed_order == sorted(owed_order, key=self.order.__getitem__), f"{where}: not in publish order"
        self.owed |= counts.keys()  # served from disk: part of the queue from now on


def publish_and_kill(broker: BrokerProcess, messages: list[Sent], delay: float) -> ConfirmPublisher:
    publisher = ConfirmPublisher(broker.port, QUEUE, messages)
    killer = threading.Timer(delay, broker.stop, (signal.SIGKILL,))
    publisher.start()
    killer.start()
    killer.join(15)
    publisher.join(15)
    assert not publisher.is_alive(), "the publisher did not notice the broker's death"
    assert publisher.error is None or isinstance(publisher.error, (BrokerGone, OSError)), repr(publisher.error)
    assert not publisher.nacked, f"publishes nacked: {publisher.nacked[:5]}"
    return publisher


def test_confirmed_persistent_messages_survive_kill_9_at_random_points(tmp_path: Path, start_broker) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ledger = Ledger(seed)
    broker = start_broker(tmp_path)
    first = make_message("first", b"synced with the queue's declaration")
    ledger.add([first])
    with connect(broker) as conn:
        conn.declare_queue(QUEUE)
        conn.publish_confirmed([first], QUEUE)  # the queue is on disk before any kill
        conn.close()
    ledger.owed.add(first.key)
    for round_number in range(3):
        messages = varied_messages(rng, f"round{round_number}", 3000)
        ledger.add(messages)
        publisher = publish_and_kill(broker, messages, delay=rng.uniform(0.05, 0.4))
        ledger.owed.update(publisher.confirmed)

        broker = start_broker(tmp_path)
        to_ack = set(rng.sample(sorted(ledger.owed), len(ledger.owed) // 2))
        ledger.check(
            drain(broker, ack=lambda delivery: delivery.key in to_ack),
            f"round {round_number}, after kill -9 ({len(publisher.confirmed)} confirmed)",
        )
        ledger.owed -= to_ack
        ledger.acked |= to_ack
        assert broker.stop() == 0

        broker = start_broker(tmp_path)
        ledger.check(drain(broker), f"round {round_number}, after acking {len(to_ack)} and a clean restart")
    assert broker.stop() == 0


# -- 2. durable definitions ----------------------------------------------------------------------

DURABLE_EXCHANGES: list[tuple[str, str, dict[str, Any]]] = [
    ("d.ae", "fanout", {}),
    ("d.direct", "direct", {"alternate-exchange": "d.ae"}),
    ("d.fanout", "fanout", {}),
    ("d.topic", "topic", {}),
    ("d.headers", "headers", {}),
    ("d.e2e", "fanout", {}),
    ("d.dlx", "direct", {}),
]
DURABLE_QUEUES: dict[str, dict[str, Any]] = {
    "d.ae-q": {},
    "d.direct-q": {},
    "d.fanout-q": {},
    "d.topic-q": {},
    "d.headers-q": {},
    "d.e2e-q": {},
    "d.dead-q": {},
    "d.messages-q": {},
    "d.ttl-q": {"x-message-ttl": 3600000},
    "d.maxlen-q": {"x-max-length": 2},
    "d.dlx-q": {"x-dead-letter-exchange": "d.dlx", "x-dead-letter-routing-key": "dead"},
    "d.prio-q": {"x-max-priority": 5},
    "d.quorum-q": {"x-queue-type": "quorum"},
}
QUEUE_BINDINGS = [  # queue, exchange, routing key, arguments
    ("d.ae-q", "d.ae", "", {}),
    ("d.direct-q", "d.direct", "k", {}),
    ("d.fanout-q", "d.fanout", "", {}),
    ("d.topic-q", "d.topic", "a.*.c", {}),
    ("d.headers-q", "d.headers", "", {"x-match": "all", "h": "v"}),
    ("d.e2e-q", "d.e2e", "", {}),
    ("d.dead-q", "d.dlx", "dead", {}),
]
ROUTES = [  # exchange, routing key, headers -> the one queue the message must land in
    ("d.direct", "k", None, "d.direct-q"),
    ("d.direct", "unbound", None, "d.ae-q"),  # via the alternate exchange
    ("d.fanout", "anything", None, "d.fanout-q"),
    ("d.topic", "a.b.c", None, "d.topic-q"),
    ("d.topic", "e2e.x", None, "d.e2e-q"),  # via the exchange-to-exchange binding
    ("d.headers", "", {"h": "v"}, "d.headers-q"),
]
INEQUIVALENT_REDECLARES: list[tuple[str, dict[str, Any]]] = [
    ("d.ttl-q", {"x-message-ttl": 1000}),
    ("d.ttl-q", {}),
    ("d.maxlen-q", {}),
    ("d.dlx-q", {"x-dead-letter-exchange": "elsewhere", "x-dead-letter-routing-key": "dead"}),
    ("d.prio-q", {"x-max-priority": 4}),
    ("d.quorum-q", {}),
]
TRANSIENT_QUEUES = ["t.queue", "t.auto-delete"]


def declare_durable_definitions(channel: Any) -> None:
    for name, kind, arguments in DURABLE_EXCHANGES:
        channel.exchange_declare(name, kind, durable=True, arguments=arguments)
    for name, arguments in DURABLE_QUEUES.items():
        channel.queue_declare(name, durable=True, arguments=arguments)
    for queue, exchange, routing_key, arguments in QUEUE_BINDINGS:
        channel.queue_bind(queue, exchange, routing_key, arguments)
    channel.exchange_bind(destination="d.e2e", source="d.topic", routing_key="e2e.#")


def declare_transient_things(connection: pika.BlockingConnection, tag: str) -> None:
    """A transient exchange and transient queues, with bindings and messages that must not survive."""
    channel = connection.channel()
    channel.exchange_declare("t.exchange", "fanout", durable=False)
    channel.queue_bind("d.fanout-q", "t.exchange")
    channel.queue_declare("t.queue", durable=False)
    channel.queue_declare("t.auto-delete", durable=False, auto_delete=True)
    channel.queue_bind("t.queue", "d.fanout")  # a binding that must go with its queue
    transient = pika.BasicProperties(delivery_mode=1)
    persistent = pika.BasicProperties(delivery_mode=2)
    channel.basic_publish("", "d.messages-q", f"transient {tag}".encode(), transient)
    for queue in TRANSIENT_QUEUES:
        channel.basic_publish("", queue, f"persistent {tag}".encode(), persistent)
    channel.confirm_delivery()  # the confirm of a persistent message is the point where everything is synced
    channel.basic_publish("", "d.messages-q", f"persistent {tag}".encode(), persistent)


def channel_error(connection: pika.BlockingConnection, action: Callable[[Any], Any]) -> tuple[int, str] | None:
    """``(code, text)`` if ``action`` on a fresh channel makes the broker close it, else None."""
    channel = connection.channel()
    try:
        action(channel)
    except pika.exceptions.ChannelClosedByBroker as error:
        return error.reply_code, error.reply_text
    channel.close()
    return None


def inequivalence_errors(connection: pika.BlockingConnection) -> list[tuple[int, str] | None]:
    return [
        channel_error(connection, lambda channel: channel.queue_declare(name, durable=True, arguments=arguments))
        for name, arguments in INEQUIVALENT_REDECLARES
    ]


def get_bodies(channel: Any, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def check_definitions(connection: pika.BlockingConnection, expected_errors: list, tag: str, when: str) -> None:
    """Everything durable is back as declared and works; ``tag``'s transient things are gone (consumes its message)."""
    for name, kind, arguments in DURABLE_EXCHANGES:
        assert (
            channel_error(
                connection, lambda channel: channel.exchange_declare(name, kind, durable=True, arguments=arguments)
            )
            is None
        ), f"{when}: exchange {name} not as declared"
    for name, arguments in DURABLE_QUEUES.items():
        assert (
            channel_error(connection, lambda channel: channel.queue_declare(name, durable=True, arguments=arguments))
            is None
        ), f"{when}: queue {name} not as declared"
    assert inequivalence_errors(connection) == expected_errors, f"{when}: stored arguments differ"
    assert channel_error(connection, lambda channel: channel.exchange_declare("t.exchange", passive=True)) == (
        404,
        "NOT_FOUND - no exchange 't.exchange' in vhost '/'",
    ), when
    for queue in TRANSIENT_QUEUES:
        assert channel_error(connection, lambda channel: channel.queue_declare(queue, passive=True)) == (
            404,
            f"NOT_FOUND - no queue '{queue}' in vhost '/'",
        ), f"{when}: {queue} survived"

    channel = connection.channel()
    assert get_bodies(channel, "d.messages-q") == [f"persistent {tag}".encode()], f"{when}: persistent/transient"
    for queue in DURABLE_QUEUES:
        channel.queue_purge(queue)
    for exchange, routing_key, headers, _queue in ROUTES:
        channel.basic_publish(
            exchange, routing_key, f"{exchange} {routing_key}".encode(), pika.BasicProperties(headers=headers)
        )
    landed = {queue: get_bodies(channel, queue) for queue in DURABLE_QUEUES}
    expected = {queue: [] for queue in DURABLE_QUEUES}
    for exchange, routing_key, _, queue in ROUTES:
        expected[queue].append(f"{exchange} {routing_key}".encode())
    assert landed == expected, f"{when}: routing after restart"

    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "d.maxlen-q", body)
    assert get_bodies(channel, "d.maxlen-q") == [b"2", b"3"], f"{when}: x-max-length not applied"
    for priority in (1, 5, 3):
        channel.basic_publish("", "d.prio-q", str(priority).encode(), pika.BasicProperties(priority=priority))
    assert get_bodies(channel, "d.prio-q") == [b"5", b"3", b"1"], f"{when}: x-max-priority not applied"
    channel.basic_publish("", "d.dlx-q", b"dead letter")
    method, _, _ = channel.basic_get("d.dlx-q")
    channel.basic_reject(method.delivery_tag, requeue=False)
    deadline = time.monotonic() + 5
    while not (dead := get_bodies(channel, "d.dead-q")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead == [b"dead letter"], f"{when}: dead-lettering not applied"
    channel.close()


def test_durable_definitions_survive_kill_9_and_sigterm_and_transient_ones_do_not(tmp_path: Path, start_broker) -> None:
    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    declare_durable_definitions(connection.channel())
    expected_errors = inequivalence_errors(connection)
    assert all(error is not None and error[0] == 406 for error in expected_errors), expected_errors
    declare_transient_things(connection, "first")
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    check_definitions(connection, expected_errors, "first", "after kill -9")
    declare_transient_things(connection, "second")
    assert broker.stop() == 0  # the connection is still open: the broker closes it

    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    check_definitions(connection, expected_errors, "second", "after SIGTERM")
    connection.close()


def test_declare_ok_means_the_durable_definition_survives_kill_9(tmp_path: Path, start_broker) -> None:
    """RabbitMQ commits durable definitions before answering declare-ok/bind-ok; nothing else is needed."""
    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    channel = connection.channel()
    channel.exchange_declare("d.exchange", "topic", durable=True)
    channel.queue_declare("d.queue", durable=True)
    channel.queue_bind("d.queue", "d.exchange", "a.#")
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    channel = connection.channel()
    channel.basic_publish("d.exchange", "a.b", b"routed")
    assert get_bodies(channel, "d.queue") == [b"routed"]
    connection.close()


def test_durable_exclusive_queue_is_gone_after_kill_9(tmp_path: Path, start_broker) -> None:
    """Its owner connection died with the broker; RabbitMQ deletes such a queue when it recovers it."""
    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    channel = connection.channel()
    channel.queue_declare("d.exclusive", durable=True, exclusive=True)
    channel.queue_bind("d.exclusive", "amq.fanout")
    channel.confirm_delivery()
    channel.basic_publish("", "d.exclusive", b"persistent", pika.BasicProperties(delivery_mode=2))
    broker.stop(signal.SIGKILL)

    broker = start_broker(tmp_path)
    connection = pika_connect(broker)
    assert channel_error(connection, lambda channel: channel.queue_declare("d.exclusive", passive=True)) == (
        404,
        "NOT_FOUND - no queue 'd.exclusive' in vhost '/'",
    )
    channel = connection.channel()
    channel.queue_declare("d.exclusive", durable=True, exclusive=True)  # a new owner, not a leftover
    assert channel.queue_declare("d.exclusive", passive=True).method.message_count == 0
    connection.close()


# -- 3. one broker per data dir ------------------------------------------------------------------


def test_second_broker_on_a_data_dir_in_use_exits_1_and_the_first_keeps_serving(tmp_path: Path, start_broker) -> None:
    first = start_broker(tmp_path)
    with connect(first) as conn:
        conn.declare_queue(QUEUE)
        conn.publish_confirmed([make_message("before", b"kept")], QUEUE)
        conn.close()

    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=15,
        cwd=REPO,
    )
    assert second.returncode == 1, second.stderr
    assert time.monotonic() - started < 10
    assert str(tmp_path) in second.stderr and "in use" in second.stderr, second.stderr
    assert "listening" not in second.stderr

    with connect(first) as conn:
        conn.publish_confirmed([make_message("after", b"also kept")], QUEUE)
        conn.close()
    assert first.stop() == 0
    assert [(delivery.key, delivery.body) for delivery in drain(start_broker(tmp_path))] == [
        ("before", b"kept"),
        ("after", b"also kept"),
    ]


# -- 4. damaged segment files --------------------------------------------------------------------


def segment_records(path: Path) -> list[tuple[str, int, int, int]]:
    """``(message key, record offset, payload start, payload end)`` of each record of a segment file."""
    data = path.read_bytes()
    records = []
    for offset, start, end in RecordScanner(data):
        header = decode_message(data, start, end)[3].header
        records.append((message_key(header), offset, start, end))
    return records


def publish_in_own_run(start_broker, data_dir: Path, messages: list[Sent]) -> None:
    broker = start_broker(data_dir)
    with connect(broker) as conn:
        conn.declare_queue(QUEUE)
        conn.publish_confirmed(messages, QUEUE)
        conn.close()
    assert broker.stop() == 0


def test_damaged_segments_are_reported_and_only_intact_messages_served(tmp_path: Path, start_broker) -> None:
    rng = random.Random(7)
    first = [make_message(f"first-{index}", rng.randbytes(2000)) for index in range(10)]
    second = [make_message(f"second-{index}", rng.randbytes(2000)) for index in range(10)]
    publish_in_own_run(start_broker, tmp_path, first)
    publish_in_own_run(start_broker, tmp_path, second)
    segments = sorted(tmp_path.glob("msgs.*"))
    assert [path.name for path in segments] == [segment_name(1), segment_name(2)]
    first_records, second_records = (segment_records(path) for path in segments)
    assert [record[0] for record in first_records] == [message.key for message in first]
    assert [record[0] for record in second_records] == [message.key for message in second]

    end = first_records[4][3]  # flip a byte in the body of first-4
    with open(segments[0], "r+b") as file:
        file.seek(end - 100)
        byte = file.read(1)
        file.seek(end - 100)
        file.write(bytes([byte[0] ^ 0x5A]))
    _, _, start, end = second_records[6]  # tear the last segment in the middle of second-6
    os.truncate(segments[1], (start + end) // 2)

    broker = start_broker(tmp_path)
    warnings = [line for line in broker.log if "WARNING" in line]
    for path in segments:
        assert any(str(path) in line for line in warnings), f"no warning naming {path}: {broker.log}"
    sent = {message.key: message for message in first + second}
    deliveries = drain(broker)
    damaged = [
        delivery.key
        for delivery in deliveries
        if delivery.key not in sent or not delivery.is_copy_of(sent[delivery.key])
    ]
    assert not damaged, f"served damaged messages: {damaged}"
    keys = [delivery.key for delivery in deliveries]
    intact = [message.key for message in first[:4] + second[:6]]
    assert [key for key in keys if key in intact] == intact
    assert "first-4" not in keys and "second-6" not in keys

    with connect(broker) as conn:  # still serves: a new publish is stored and comes back after a restart
        conn.publish_confirmed([make_message("later", b"after the damage")], QUEUE)
        conn.close()
    assert broker.stop() == 0
    assert [delivery.key for delivery in drain(start_broker(tmp_path))] == [*keys, "later"]


# -- 5. disk space -------------------------------------------------------------------------------


def data_dir_size(data_dir: Path) -> int:
    size = 0
    for path in data_dir.iterdir():
        try:
            size += path.stat().st_size
        except FileNotFoundError:  # a segment the broker deleted while we looked
            continue
    return size


def deleted_files_held_open(pid: int, data_dir: Path) -> list[str]:
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith(str(data_dir)) and target.endswith(" (deleted)"):
            held.append(target)
    return held


def test_acked_messages_disk_space_is_reclaimed_while_running(tmp_path: Path, start_broker) -> None:
    broker = start_broker(tmp_path)
    body = random.Random(3).randbytes(16_000)
    batches, batch_size = 20, 1000
    published = batches * batch_size * len(body)
    assert published > 4 * DEFAULT_SEGMENT_SIZE
    peak = 0
    with connect(broker) as conn:
        conn.declare_queue(QUEUE)
        for batch in range(batches):
            conn.publish_confirmed([make_message(f"{batch}-{index}", body) for index in range(batch_size)], QUEUE)
            peak = max(peak, data_dir_size(tmp_path))
            deliveries = conn.consume_all(QUEUE)
            assert len(deliveries) == batch_size
            conn.ack(delivery.delivery_tag for delivery in deliveries)
            peak = max(peak, data_dir_size(tmp_path))
        conn.close()
    assert peak <= 2 * DEFAULT_SEGMENT_SIZE + len(body) * batch_size, (
        f"data dir reached {peak} bytes after {published} bytes published and acked"
    )
    assert broker.process is not None
    assert deleted_files_held_open(broker.process.pid, tmp_path) == []
    assert broker.stop() == 0
    assert data_dir_size(tmp_path) < DEFAULT_SEGMENT_SIZE + len(body) * batch_size
