"""kombu (py-amqp transport) against the broker: the messaging layer Celery is built on.

Covers kombu-declared direct exchanges and queues (durable and transient,
auto-delete), Producer/Consumer with callbacks and ``drain_events``, message
ack/reject/requeue (made observable with a prefetch of one), SimpleQueue
put/get, ``Connection.ensure`` reconnecting after the socket dies,
``default_channel``, fanout and topic routing, serializers (json and raw bytes
flow, pickle refused by a json-only consumer), publisher confirms through the
``confirm_publish`` transport option, and queues declared with kombu's
``expires``/``message_ttl`` (``x-expires``/``x-message-ttl``: accepted,
compared on redeclare, enforced; a passive declare renews the lease as in
RabbitMQ) plus per-message ``expiration``.

Every wait is bounded: py-amqp gets socket read/write timeouts and each
``drain_events`` call a timeout, inside a deadline.  Everything a test declares
is deleted afterwards over a fresh connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import amqp.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue, binding
from kombu.exceptions import ContentDisallowed
from kombu.message import Message

TIMEOUT = 5.0
ACCEPT = ["json", "text/plain"]  # kombu sends str bodies as text/plain


def connect(broker: SimpleNamespace, **transport_options: object) -> Connection:
    conn = Connection(
        f"amqp://guest:guest@{broker.host}:{broker.port}//",
        connect_timeout=TIMEOUT,
        transport_options={"read_timeout": TIMEOUT, "write_timeout": TIMEOUT, **transport_options},
    )
    conn.connect()
    return conn


@pytest.fixture
def conn(broker: SimpleNamespace) -> Iterator[Connection]:
    connection = connect(broker)
    try:
        yield connection
    finally:
        connection.release()


@pytest.fixture
def confirming(broker: SimpleNamespace) -> Iterator[Connection]:
    """A connection whose publishes return only once confirmed, i.e. once the message is in its queues."""
    connection = connect(broker, confirm_publish=True)
    try:
        yield connection
    finally:
        connection.release()


@pytest.fixture
def declared(broker: SimpleNamespace) -> Iterator[list[Queue | Exchange]]:
    """Queues and exchanges the test declares; deleted (queues first) over a fresh connection afterwards."""
    entities: list[Queue | Exchange] = []
    yield entities
    with connect(broker) as cleanup:
        channel = cleanup.channel()
        for entity in sorted(entities, key=lambda e: isinstance(e, Exchange)):
            entity.bind(channel).delete()


def drain_until(conn: Connection, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {what}"
        try:
            conn.drain_events(timeout=min(0.2, remaining))
        except TimeoutError:
            pass


def consume(conn: Connection, queues: list[Queue], count: int, **consumer_options: object) -> list[Message]:
    """Consume (without acking) until ``count`` messages arrived on ``queues``."""
    received: list[Message] = []
    consumer = Consumer(
        conn.default_channel,
        queues=queues,
        accept=ACCEPT,
        callbacks=[lambda body, message: received.append(message)],
        **consumer_options,
    )
    with consumer:
        drain_until(conn, lambda: len(received) >= count, f"{count} messages")
    return received


def wait_for(predicate: Callable[[], bool], what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def message_count(conn: Connection, queue: Queue) -> int:
    channel = conn.channel()
    try:
        return queue.bind(channel).queue_declare(passive=True).message_count
    finally:
        channel.close()


def queue_exists(conn: Connection, queue: Queue) -> bool:
    channel = conn.channel()
    try:
        queue.bind(channel).queue_declare(passive=True)
    except amqp.exceptions.NotFound:
        return False
    channel.close()
    return True


def test_direct_exchange_routes_to_transient_auto_delete_queue(conn, declared, unique):
    exchange = Exchange(f"{unique}-x", type="direct", durable=False, auto_delete=True)
    queue = Queue(unique, exchange, routing_key="jobs", durable=False, auto_delete=True)
    declared += [queue, exchange]
    producer = Producer(conn.default_channel, exchange=exchange, serializer="json")
    producer.publish({"job": 1}, routing_key="jobs", declare=[queue])
    producer.publish({"job": "unrouted"}, routing_key="other")
    producer.publish({"job": 2}, routing_key="jobs")

    messages = consume(conn, [queue], 2, no_ack=True)

    assert [m.payload for m in messages] == [{"job": 1}, {"job": 2}]
    assert messages[0].delivery_info["exchange"] == exchange.name
    assert messages[0].delivery_info["routing_key"] == "jobs"
    assert messages[0].content_type == "application/json"


def test_durable_exchange_and_queue_keep_persistent_delivery_mode(conn, declared, unique):
    exchange = Exchange(f"{unique}-x", type="direct", durable=True)
    queue = Queue(unique, exchange, routing_key="k", durable=True)
    declared += [queue, exchange]
    Producer(conn.default_channel).publish(
        {"durable": True}, exchange=exchange, routing_key="k", declare=[queue], delivery_mode="persistent"
    )

    [message] = consume(conn, [queue], 1)
    message.ack()

    assert message.payload == {"durable": True}
    assert message.properties["delivery_mode"] == 2
    assert queue.bind(conn.default_channel).queue_declare(passive=True).queue == unique


def test_auto_delete_queue_is_deleted_when_its_last_consumer_cancels(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, auto_delete=True)
    declared.append(queue)
    queue.bind(conn.default_channel).declare()
    with Consumer(conn.default_channel, queues=[queue], callbacks=[lambda body, message: None]):
        assert queue_exists(conn, queue)
    wait_for(lambda: not queue_exists(conn, queue), "the auto-delete queue to go away")


def test_prefetch_one_consumer_sees_ack_reject_and_requeue_take_effect(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, auto_delete=True)
    declared.append(queue)
    producer = Producer(conn.default_channel, routing_key=unique)
    for body in "ABC":
        producer.publish(body, declare=[queue])
    received: list[Message] = []
    consumer = Consumer(
        conn.default_channel,
        queues=[queue],
        prefetch_count=1,
        accept=ACCEPT,
        callbacks=[lambda body, message: received.append(message)],
    )

    with consumer:
        drain_until(conn, lambda: len(received) == 1, "A")
        received[0].ack()  # only frees the single prefetch slot if the broker took the ack
        drain_until(conn, lambda: len(received) == 2, "B after A's ack")
        received[1].reject()  # dropped, not requeued
        drain_until(conn, lambda: len(received) == 3, "C after B's reject")
        received[2].requeue()
        drain_until(conn, lambda: len(received) == 4, "C again after its requeue")
        received[3].ack()
        producer.publish("D")
        drain_until(conn, lambda: len(received) == 5, "D")
        received[4].ack()

    assert [m.payload for m in received] == ["A", "B", "C", "C", "D"]
    assert [m.delivery_info["redelivered"] for m in received] == [False, False, False, True, False]
    assert all(m.acknowledged for m in received)


def test_simple_queue_put_and_get_across_connections(broker, conn, declared, unique):
    declared += [Queue(unique), Exchange(unique)]  # SimpleQueue declares both, durable, named alike
    with conn.SimpleQueue(unique) as sender:
        for n in range(3):
            sender.put({"n": n})

    with connect(broker) as other, other.SimpleQueue(unique) as receiver:
        got = []
        for _ in range(3):
            message = receiver.get(timeout=TIMEOUT)
            got.append(message.payload)
            message.ack()
        with pytest.raises(receiver.Empty):
            receiver.get_nowait()
        assert receiver.qsize() == 0

    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_ensure_republishes_after_the_connection_dies(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique)
    declared.append(queue)
    producer = Producer(conn)  # publishes on conn.default_channel
    producer.publish("before", routing_key=unique, declare=[queue])
    old_channel = conn.default_channel
    conn.connection.transport.sock.shutdown(socket.SHUT_RDWR)

    publish = conn.ensure(producer, producer.publish, max_retries=3, interval_start=0, interval_step=0.1)
    publish("after", routing_key=unique)

    assert conn.default_channel is not old_channel
    messages = consume(conn, [queue], 2)
    for message in messages:
        message.ack()
    assert [m.payload for m in messages] == ["before", "after"]


def test_fanout_exchange_copies_each_message_to_every_bound_queue(conn, declared, unique):
    exchange = Exchange(f"{unique}-fan", type="fanout", durable=False, auto_delete=True)
    first = Queue(f"{unique}-1", exchange, auto_delete=True)
    second = Queue(f"{unique}-2", exchange, routing_key="ignored-by-fanout", auto_delete=True)
    declared += [first, second, exchange]
    producer = Producer(conn.default_channel, exchange=exchange)
    producer.publish({"broadcast": 1}, routing_key="anything", declare=[first, second])

    for queue in (first, second):
        [message] = consume(conn, [queue], 1, no_ack=True)
        assert message.payload == {"broadcast": 1}
        assert message.delivery_info["routing_key"] == "anything"


def test_topic_exchange_matches_star_and_hash_patterns(conn, declared, unique):
    exchange = Exchange(f"{unique}-topic", type="topic", durable=False, auto_delete=True)
    patterns = ("stock.*.nyse", "audit.#", "end")
    queue = Queue(unique, auto_delete=True, bindings=[binding(exchange, routing_key=p) for p in patterns])
    declared += [queue, exchange]
    channel = conn.default_channel
    queue.bind(channel).declare()
    producer = Producer(channel, exchange=exchange)
    keys = ["stock.ibm.nyse", "stock.nyse", "stock.ibm.x.nyse", "audit", "audit.a.b.c", "auditx", "end"]
    for key in keys:
        producer.publish(key, routing_key=key)

    received: list[str] = []
    with Consumer(
        channel, queues=[queue], no_ack=True, accept=ACCEPT, callbacks=[lambda body, message: received.append(body)]
    ):
        drain_until(conn, lambda: "end" in received, "the closing message")  # per-queue order is publish order

    assert received == ["stock.ibm.nyse", "audit", "audit.a.b.c", "end"]


def test_json_and_raw_bodies_round_trip_and_pickle_is_refused(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, auto_delete=True)
    declared.append(queue)
    producer = Producer(conn.default_channel, routing_key=unique)
    document = {"text": "h\u00e9llo \u2603", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    raw = bytes(range(256)) * 3
    producer.publish(document, serializer="json", declare=[queue])
    producer.publish(raw, content_type="application/data", content_encoding="binary")
    producer.publish({"pickled": 1}, serializer="pickle")

    received: list[Message] = []
    refused: list[tuple[Message, Exception]] = []
    consumer = Consumer(
        conn.default_channel,
        queues=[queue],
        accept=["json", "application/data"],
        callbacks=[lambda body, message: received.append(message)],
        on_decode_error=lambda message, exc: refused.append((message, exc)),
    )
    with consumer:
        drain_until(conn, lambda: len(received) + len(refused) == 3, "three messages")
        for message in received:
            message.ack()
        for message, _ in refused:
            message.reject()

    assert [m.payload for m in received] == [document, raw]
    assert received[0].content_type == "application/json"
    assert received[0].content_encoding == "utf-8"
    [(pickled, error)] = refused
    assert pickled.content_type == "application/x-python-serialize"
    assert isinstance(error, ContentDisallowed)


def test_confirm_publish_transport_option_means_published_messages_are_queued(confirming, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique)
    declared.append(queue)
    producer = Producer(confirming.default_channel, routing_key=unique)
    for n in range(5):
        producer.publish({"n": n}, declare=[queue])

    assert message_count(confirming, queue) == 5


def test_queue_declared_with_expires_and_message_ttl_accepts_and_delivers(conn, declared, unique):
    exchange = Exchange(f"{unique}-x", type="direct", auto_delete=True)
    queue = Queue(unique, exchange, routing_key="k", expires=60, message_ttl=30)
    declared += [queue, exchange]
    producer = Producer(conn.default_channel, exchange=exchange)
    producer.publish({"ttl": "long"}, routing_key="k", declare=[queue])
    queue.bind(conn.default_channel).declare()  # an identical redeclare is accepted

    [message] = consume(conn, [queue], 1)
    message.ack()

    assert message.payload == {"ttl": "long"}


def test_redeclare_with_a_different_message_ttl_is_refused(conn, declared, unique):
    declared.append(Queue(unique))
    Queue(unique, expires=60, message_ttl=30).bind(conn.default_channel).declare()

    with pytest.raises(amqp.exceptions.PreconditionFailed) as refused:
        Queue(unique, expires=60, message_ttl=31).bind(conn.channel()).declare()

    assert refused.value.reply_code == 406
    assert refused.value.reply_text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{unique}' in vhost '/'"
    )


def test_message_ttl_drops_messages_nobody_consumed(conn, confirming, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, message_ttl=0.1)
    declared.append(queue)
    Producer(confirming.default_channel, routing_key=unique).publish("short-lived", declare=[queue])

    wait_for(lambda: message_count(conn, queue) == 0, "the message to expire")

    assert queue.bind(conn.default_channel).get(no_ack=True) is None


def test_per_message_expiration_drops_that_message_only(conn, confirming, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique)
    declared.append(queue)
    producer = Producer(confirming.default_channel, routing_key=unique)
    producer.publish("expires", expiration=0.1, declare=[queue])
    producer.publish("stays")

    wait_for(lambda: message_count(conn, queue) == 1, "the expiring message to go")

    [message] = consume(conn, [queue], 1, no_ack=True)
    assert message.payload == "stays"


def test_unused_queue_with_expires_is_deleted(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, expires=0.1)
    declared.append(queue)
    queue.bind(conn.default_channel).declare()

    # RabbitMQ counts a passive declare as use (it renews the lease), so look less often than it expires
    wait_for(lambda: not queue_exists(conn, queue), "the unused queue to expire", interval=0.3)


def test_passive_declare_renews_the_lease_of_a_queue_with_expires(conn, declared, unique):
    queue = Queue(unique, Exchange(""), routing_key=unique, expires=0.5)
    declared.append(queue)
    queue.bind(conn.default_channel).declare()

    end = time.monotonic() + 1.5  # three leases
    while time.monotonic() < end:
        assert queue_exists(conn, queue), "expired although passively declared every 0.1 s"
        time.sleep(0.1)
