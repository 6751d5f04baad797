"""Queue features driven through pika's BlockingConnection, as RabbitMQ 3.10 behaves.

Covers message TTL (``x-message-ttl``, the ``expiration`` property, both together,
and TTL 0), queue expiry (``x-expires``), length limits (``x-max-length``,
``x-max-length-bytes``, ``x-overflow`` drop-head / reject-publish), priority
queues (``x-max-priority``), consumer priorities (``x-priority``), single active
consumer, the ``x-queue-type`` argument (classic and quorum, quorum's
``x-delivery-limit`` and ``x-delivery-count``) and the 406 answers to invalid
queue arguments.  Dead-lettering is in ``test_dead_lettering.py``, which reuses
the helpers and fixtures here.

Every wait is bounded: time-based behaviour is observed by polling (basic.get,
passive declares) against a deadline, and "nothing happens" is watched for a
short quiet period only.  TTLs are 100-300 ms so the file stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

TIMEOUT = 3.0  # how long something that must happen is waited for
QUIET_PERIOD = 0.4  # how long "nothing (more) happens" is watched for
POLL = 0.02


class Names:
    """Per-test queue and exchange names; everything named here is deleted after the test."""

    def __init__(self, unique: str) -> None:
        self.unique = unique
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def queue(self, suffix: str = "q") -> str:
        name = f"{self.unique}-{suffix}"
        self.queues.append(name)
        return name

    def exchange(self, suffix: str = "x") -> str:
        name = f"{self.unique}-{suffix}"
        self.exchanges.append(name)
        return name


@pytest.fixture
def names(params: pika.ConnectionParameters, unique: str) -> Iterator[Names]:
    names = Names(unique)
    yield names
    with closing(pika.BlockingConnection(params)) as cleanup:
        channel = cleanup.channel()
        for queue in names.queues:
            channel.queue_delete(queue)
        for exchange in names.exchanges:
            channel.exchange_delete(exchange)


# ------------------------------------------------------------------ helpers


def wait_until(
    connection: BlockingConnection,
    predicate: Callable[[], Any],
    what: str,
    timeout: float = TIMEOUT,
    interval: float = POLL,
) -> Any:
    """Poll ``predicate`` (processing pika's events in between) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        connection.process_data_events(time_limit=interval)
    return result


def stays_true(
    connection: BlockingConnection, predicate: Callable[[], bool], what: str, period: float = QUIET_PERIOD
) -> None:
    """Assert ``predicate`` holds throughout ``period`` seconds."""
    deadline = time.monotonic() + period
    while time.monotonic() < deadline:
        assert predicate(), what
        connection.process_data_events(time_limit=POLL)
    assert predicate(), what


def message_count(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def publish(channel: BlockingChannel, queue: str, *bodies: bytes, **properties: Any) -> None:
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**properties))


def get_body(channel: BlockingChannel, queue: str) -> bytes | None:
    """One message's body by basic.get with auto-ack, or None if the queue is empty."""
    method, _, body = channel.basic_get(queue, auto_ack=True)
    return None if method is None else body


def get_bodies(channel: BlockingChannel, queue: str) -> list[bytes]:
    """Drain the queue by basic.get with auto-ack."""
    bodies = []
    while (body := get_body(channel, queue)) is not None:
        bodies.append(body)
    return bodies


def wait_for_message(
    channel: BlockingChannel, queue: str, auto_ack: bool = True
) -> tuple[pika.spec.Basic.GetOk, pika.BasicProperties, bytes]:
    """Poll basic.get until a message arrives (dead-lettering is asynchronous in RabbitMQ)."""

    def fetch():
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        return None if method is None else (method, properties, body)

    return wait_until(channel.connection, fetch, f"a message in {queue!r}")


def wait_for_empty(channel: BlockingChannel, queue: str) -> None:
    wait_until(channel.connection, lambda: message_count(channel, queue) == 0, f"{queue!r} to become empty")


def queue_exists(connection: BlockingConnection, queue: str) -> bool:
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert (error.reply_code, error.reply_text) == (404, f"NOT_FOUND - no queue '{queue}' in vhost '/'")
        return False
    channel.close()
    return True


def declare_error(connection: BlockingConnection, queue: str, **kwargs: Any) -> tuple[int, str]:
    """Declare on a fresh channel, which the broker must close; return its (reply_code, reply_text)."""
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.queue_declare(queue, **kwargs)
    return excinfo.value.reply_code, excinfo.value.reply_text


class Collector:
    """A consumer callback recording ``(method, properties, body)`` per delivery."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[pika.spec.Basic.Deliver, pika.BasicProperties, bytes]] = []

    def __call__(self, channel, method, properties, body) -> None:
        self.deliveries.append((method, properties, body))

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, _, body in self.deliveries]


def wait_for_deliveries(connection: BlockingConnection, count: int, *collectors: Collector) -> None:
    wait_until(connection, lambda: sum(len(c.deliveries) for c in collectors) >= count, f"{count} deliveries")


# ------------------------------------------------------------------ per-queue message TTL


def test_queue_ttl_expires_a_message_nobody_consumes(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 300})
    publish(channel, queue, b"short-lived")
    assert message_count(channel, queue) == 1

    wait_for_empty(channel, queue)

    assert get_body(channel, queue) is None


def test_queue_ttl_does_not_drop_messages_fetched_in_time(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 300})
    publish(channel, queue, b"a", b"b")

    assert get_bodies(channel, queue) == [b"a", b"b"]


def test_queue_ttl_applies_to_messages_already_queued_behind_others(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 150})
    publish(channel, queue, b"1", b"2", b"3")

    wait_for_empty(channel, queue)

    assert get_body(channel, queue) is None


# ------------------------------------------------------------------ per-message TTL (expiration)


def test_expiration_property_expires_the_message(channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    publish(channel, queue, b"short-lived", expiration="300")
    assert message_count(channel, queue) == 1

    wait_for_empty(channel, queue)

    assert get_body(channel, queue) is None


def test_message_fetched_before_expiry_keeps_its_expiration_property(channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    publish(channel, queue, b"m", expiration="60000")

    _, properties, body = channel.basic_get(queue, auto_ack=True)

    assert (body, properties.expiration) == (b"m", "60000")


def test_expired_message_behind_a_live_one_is_never_delivered(channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    publish(channel, queue, b"long", expiration="60000")
    publish(channel, queue, b"short", expiration="100")
    channel.connection.sleep(0.3)

    assert get_bodies(channel, queue) == [b"long"]


def test_messages_without_expiration_are_unaffected_by_others_expiring(channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    publish(channel, queue, b"expiring", expiration="100")
    publish(channel, queue, b"forever")

    wait_until(channel.connection, lambda: message_count(channel, queue) == 1, "the expiring message to go")

    assert get_bodies(channel, queue) == [b"forever"]


TTL_ZERO = [
    pytest.param({"x-message-ttl": 0}, {}, id="x-message-ttl-0"),
    pytest.param({}, {"expiration": "0"}, id="expiration-0"),
]


@pytest.mark.parametrize(("arguments", "properties"), TTL_ZERO)
def test_ttl_zero_drops_the_message_when_no_consumer_is_waiting(channel, names, arguments, properties):
    queue = names.queue()
    channel.queue_declare(queue, arguments=arguments)
    publish(channel, queue, b"now or never", **properties)

    wait_for_empty(channel, queue)

    assert get_body(channel, queue) is None


@pytest.mark.parametrize(("arguments", "properties"), TTL_ZERO)
def test_ttl_zero_delivers_to_a_waiting_consumer(connection, channel, names, arguments, properties):
    queue = names.queue()
    channel.queue_declare(queue, arguments=arguments)
    collector = Collector()
    channel.basic_consume(queue, collector, auto_ack=True)

    publish(channel, queue, b"now or never", **properties)

    wait_for_deliveries(connection, 1, collector)
    assert collector.bodies == [b"now or never"]


@pytest.mark.parametrize(
    ("queue_ttl", "expiration"), [(300, "60000"), (60000, "300")], ids=["queue-ttl-smaller", "expiration-smaller"]
)
def test_the_smaller_of_queue_ttl_and_expiration_wins(channel, names, queue_ttl, expiration):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": queue_ttl})
    publish(channel, queue, b"m", expiration=expiration)
    assert message_count(channel, queue) == 1

    wait_for_empty(channel, queue)

    assert get_body(channel, queue) is None


@pytest.mark.parametrize(
    ("expiration", "reply_text"),
    [
        ("abc", "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
        ("-1", "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"),
        ("1.5", "PRECONDITION_FAILED - invalid expiration '1.5': {leftover_string,\".5\"}"),
        ("", "PRECONDITION_FAILED - invalid expiration '': no_integer"),
    ],
)
def test_invalid_expiration_closes_the_channel(connection, channel, names, expiration, reply_text):
    queue = names.queue()
    channel.queue_declare(queue)

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        publish(channel, queue, b"m", expiration=expiration)

    assert (excinfo.value.reply_code, excinfo.value.reply_text) == (406, reply_text)
    assert message_count(connection.channel(), queue) == 0


# ------------------------------------------------------------------ queue expiry (x-expires)


def test_unused_queue_is_deleted_after_x_expires(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-expires": 200})
    assert queue_exists(connection, queue)

    # poll less often than the expiry interval: a declare counts as use and renews the lease
    wait_until(connection, lambda: not queue_exists(connection, queue), "the queue to expire", interval=0.3)


def test_queue_with_ready_messages_but_no_consumer_still_expires(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-expires": 200})
    publish(channel, queue, b"m1", b"m2")

    wait_until(connection, lambda: not queue_exists(connection, queue), "the queue to expire", interval=0.3)


def test_queue_with_a_consumer_does_not_expire(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-expires": 100})
    tag = channel.basic_consume(queue, Collector())

    connection.sleep(0.5)
    assert queue_exists(connection, queue)

    channel.basic_cancel(tag)
    wait_until(connection, lambda: not queue_exists(connection, queue), "the queue to expire", interval=0.2)


def test_redeclaring_renews_the_x_expires_lease(connection, channel, names):
    queue = names.queue()
    arguments = {"x-expires": 300}
    channel.queue_declare(queue, arguments=arguments)

    for _ in range(8):  # 0.8 s in all, far beyond the 300 ms lease
        connection.sleep(0.1)
        channel.queue_declare(queue, arguments=arguments)

    assert queue_exists(connection, queue)


# ------------------------------------------------------------------ length limits


def test_max_length_drop_head_drops_the_oldest(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 2})

    publish(channel, queue, b"1", b"2", b"3", b"4")

    assert message_count(channel, queue) == 2
    assert get_bodies(channel, queue) == [b"3", b"4"]


def test_explicit_drop_head_overflow_is_the_default_behaviour(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "drop-head"})

    publish(channel, queue, b"old", b"new")

    assert get_bodies(channel, queue) == [b"new"]


def test_max_length_bytes_counts_body_bytes_and_drops_the_oldest(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length-bytes": 10})

    publish(channel, queue, b"aaaa", b"bbbb", headers={"padding": "x" * 100})
    assert get_bodies(channel, queue) == [b"aaaa", b"bbbb"]  # headers do not count toward the limit
    publish(channel, queue, b"aaaa", b"bbbb", b"cccc")

    assert get_bodies(channel, queue) == [b"bbbb", b"cccc"]


def test_unacknowledged_messages_do_not_count_toward_max_length(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1})
    publish(channel, queue, b"taken")
    taken, _, _ = channel.basic_get(queue, auto_ack=False)

    publish(channel, queue, b"ready")

    assert message_count(channel, queue) == 1
    channel.basic_ack(taken.delivery_tag)
    assert get_bodies(channel, queue) == [b"ready"]


def test_reject_publish_nacks_the_overflowing_publish(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(channel, queue, b"kept")

    with pytest.raises(pika.exceptions.NackError):
        publish(channel, queue, b"refused")

    assert channel.is_open
    assert get_bodies(channel, queue) == [b"kept"]


def test_reject_publish_without_confirms_drops_silently(connection, names):
    channel = connection.channel()
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})

    publish(channel, queue, b"1", b"2", b"3", b"4")

    assert get_bodies(channel, queue) == [b"1", b"2"]
    assert channel.is_open


def test_reject_publish_accepts_again_once_there_is_room(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(channel, queue, b"first")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, queue, b"refused")

    assert get_body(channel, queue) == b"first"
    publish(channel, queue, b"second")

    assert get_bodies(channel, queue) == [b"second"]


def test_reject_publish_by_bytes(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
    publish(channel, queue, b"12345")

    with pytest.raises(pika.exceptions.NackError):
        publish(channel, queue, b"6")

    assert get_bodies(channel, queue) == [b"12345"]


# ------------------------------------------------------------------ priority queues


def test_priority_queue_delivers_higher_priority_first(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 10})
    for body, priority in [(b"p1", 1), (b"p5-a", 5), (b"none", None), (b"p10", 10), (b"p5-b", 5), (b"p0", 0)]:
        publish(channel, queue, body, priority=priority)

    assert get_bodies(channel, queue) == [b"p10", b"p5-a", b"p5-b", b"p1", b"none", b"p0"]


def test_priority_above_the_maximum_counts_as_the_maximum(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 5})
    for body, priority in [(b"p4", 4), (b"p9", 9), (b"p5", 5), (b"p7", 7)]:
        publish(channel, queue, body, priority=priority)

    assert get_bodies(channel, queue) == [b"p9", b"p5", b"p7", b"p4"]


def test_priority_is_ignored_without_x_max_priority(channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    for body, priority in [(b"p1", 1), (b"p9", 9), (b"p5", 5)]:
        publish(channel, queue, body, priority=priority)

    assert get_bodies(channel, queue) == [b"p1", b"p9", b"p5"]


def test_priority_orders_ready_messages_for_a_consumer(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 10})
    channel.basic_qos(prefetch_count=1)
    collector = Collector()
    channel.basic_consume(queue, collector)
    publish(channel, queue, b"first", priority=1)
    wait_for_deliveries(connection, 1, collector)

    publish(channel, queue, b"low", priority=1)
    publish(channel, queue, b"high", priority=9)
    for expected in (2, 3):
        channel.basic_ack(collector.deliveries[-1][0].delivery_tag)
        wait_for_deliveries(connection, expected, collector)

    assert collector.bodies == [b"first", b"high", b"low"]


# ------------------------------------------------------------------ consumer priorities (x-priority)


def test_higher_priority_consumer_gets_messages_while_it_has_credit(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    low_channel, high_channel = connection.channel(), connection.channel()
    low_channel.basic_qos(prefetch_count=10)
    high_channel.basic_qos(prefetch_count=2)
    low, high = Collector(), Collector()
    low_channel.basic_consume(queue, low)  # registered first: round robin would serve it first
    high_channel.basic_consume(queue, high, arguments={"x-priority": 10})

    publish(channel, queue, b"1", b"2", b"3")
    wait_for_deliveries(connection, 3, low, high)

    assert (high.bodies, low.bodies) == ([b"1", b"2"], [b"3"])
    high_channel.basic_ack(high.deliveries[0][0].delivery_tag)
    publish(channel, queue, b"4")
    wait_for_deliveries(connection, 4, low, high)
    assert (high.bodies, low.bodies) == ([b"1", b"2", b"4"], [b"3"])


def test_negative_consumer_priority_ranks_below_the_default(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue)
    below, default = Collector(), Collector()
    channel.basic_consume(queue, below, auto_ack=True, arguments={"x-priority": -5})
    channel.basic_consume(queue, default, auto_ack=True)

    publish(channel, queue, b"1", b"2", b"3")
    wait_for_deliveries(connection, 3, below, default)

    assert (default.bodies, below.bodies) == ([b"1", b"2", b"3"], [])


def test_invalid_consumer_priority_closes_the_channel(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue)

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_consume(queue, Collector(), arguments={"x-priority": "abc"})

    assert (excinfo.value.reply_code, excinfo.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{queue}' in vhost '/': "
        '"expected integer, got longstr"',
    )


# ------------------------------------------------------------------ single active consumer


def test_single_active_consumer_only_the_first_consumer_receives(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-single-active-consumer": True})
    first, second = Collector(), Collector()
    connection.channel().basic_consume(queue, first, auto_ack=True)
    connection.channel().basic_consume(queue, second, auto_ack=True)

    publish(channel, queue, b"1", b"2", b"3", b"4")
    wait_for_deliveries(connection, 4, first, second)
    stays_true(connection, lambda: len(second.deliveries) == 0, "the second consumer got a message")

    assert first.bodies == [b"1", b"2", b"3", b"4"]
    assert channel.queue_declare(queue, passive=True).method.consumer_count == 2


def test_single_active_consumer_next_consumer_takes_over_after_cancel(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-single-active-consumer": True})
    first_channel = connection.channel()
    first, second = Collector(), Collector()
    first_tag = first_channel.basic_consume(queue, first, auto_ack=True)
    connection.channel().basic_consume(queue, second, auto_ack=True)
    publish(channel, queue, b"1")
    wait_for_deliveries(connection, 1, first)

    first_channel.basic_cancel(first_tag)
    publish(channel, queue, b"2", b"3")
    wait_for_deliveries(connection, 3, first, second)

    assert (first.bodies, second.bodies) == ([b"1"], [b"2", b"3"])


def test_single_active_consumer_unacked_messages_go_to_the_next_consumer(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-single-active-consumer": True})
    first_channel = connection.channel()
    first, second = Collector(), Collector()
    first_channel.basic_consume(queue, first)
    connection.channel().basic_consume(queue, second)
    publish(channel, queue, b"1", b"2")
    wait_for_deliveries(connection, 2, first)

    first_channel.close()
    wait_for_deliveries(connection, 4, first, second)

    assert second.bodies == [b"1", b"2"]
    assert all(method.redelivered for method, _, _ in second.deliveries)


# ------------------------------------------------------------------ x-queue-type


def test_classic_queue_type_is_accepted_and_equivalent_to_no_type(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, arguments={"x-queue-type": "classic"})
    channel.queue_declare(queue)  # redeclaring without the argument is equivalent

    publish(channel, queue, b"m")

    assert get_bodies(channel, queue) == [b"m"]


def test_durable_quorum_queue_round_trip(channel, names):
    queue = names.queue()
    declared = channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    assert (declared.method.message_count, declared.method.consumer_count) == (0, 0)

    publish(channel, queue, b"1", b"2")

    assert message_count(channel, queue) == 2
    assert get_bodies(channel, queue) == [b"1", b"2"]


@pytest.mark.parametrize(
    ("flags", "property_name"),
    [
        ({"durable": False}, "non-durable"),
        ({"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"durable": True, "auto_delete": True}, "auto-delete"),
    ],
    ids=["non-durable", "exclusive", "auto-delete"],
)
def test_quorum_queue_must_be_durable_not_exclusive_not_auto_delete(connection, names, flags, property_name):
    queue = names.queue()

    assert declare_error(connection, queue, arguments={"x-queue-type": "quorum"}, **flags) == (
        406,
        f"PRECONDITION_FAILED - invalid property '{property_name}' for queue '{queue}' in vhost '/'",
    )


def test_quorum_queue_redeclared_without_its_type_is_inequivalent(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})

    assert declare_error(connection, queue, durable=True) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{queue}' in vhost '/': "
        "received none but current is the value 'quorum' of type 'longstr'",
    )


@pytest.mark.parametrize(
    ("flags", "arguments", "queue_type"),
    [
        ({"durable": True}, {"x-queue-type": "quorum", "x-max-priority": 5}, "rabbit_quorum_queue"),
        ({}, {"x-queue-type": "classic", "x-delivery-limit": 2}, "rabbit_classic_queue"),
    ],
    ids=["quorum-x-max-priority", "classic-x-delivery-limit"],
)
def test_argument_unsupported_by_the_queue_type(connection, names, flags, arguments, queue_type):
    queue = names.queue()
    argument = next(key for key in arguments if key != "x-queue-type")

    assert declare_error(connection, queue, arguments=arguments, **flags) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{argument}' for queue '{queue}' in vhost '/' of queue type {queue_type}",
    )


def test_quorum_redelivery_carries_x_delivery_count(connection, channel, names):
    queue = names.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    consumer_channel = connection.channel()
    collector = Collector()
    consumer_channel.basic_consume(queue, collector)
    publish(channel, queue, b"m", headers={"app": "kept"})
    wait_for_deliveries(connection, 1, collector)

    consumer_channel.basic_reject(collector.deliveries[0][0].delivery_tag, requeue=True)
    wait_for_deliveries(connection, 2, collector)

    (first, first_properties, _), (second, second_properties, _) = collector.deliveries
    assert (first.redelivered, first_properties.headers) == (False, {"app": "kept"})
    assert (second.redelivered, second_properties.headers) == (True, {"app": "kept", "x-delivery-count": 1})


def test_quorum_basic_get_always_carries_x_delivery_count(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    publish(channel, queue, b"m")

    counts = []
    for _ in range(3):
        method, properties, _ = wait_for_message(channel, queue, auto_ack=False)
        counts.append((method.redelivered, properties.headers))
        channel.basic_nack(method.delivery_tag, requeue=True)

    assert counts == [
        (False, {"x-delivery-count": 0}),
        (True, {"x-delivery-count": 1}),
        (True, {"x-delivery-count": 2}),
    ]


def test_quorum_delivery_limit_drops_the_message_after_the_limit(channel, names):
    queue = names.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 1})
    publish(channel, queue, b"poison")

    for _ in range(2):  # delivered limit + 1 times
        method, _, _ = wait_for_message(channel, queue, auto_ack=False)
        channel.basic_nack(method.delivery_tag, requeue=True)

    stays_true(channel.connection, lambda: get_body(channel, queue) is None, "the message came back")
    assert message_count(channel, queue) == 0


# ------------------------------------------------------------------ argument validation and plain queues

INVALID_ARGUMENTS = [
    ("x-message-ttl", -1, "{value_negative,-1}"),
    ("x-message-ttl", "abc", '"expected integer, got longstr"'),
    ("x-message-ttl", 2**40, "{value_too_large,1099511627776}"),
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -5, "{value_negative,-5}"),
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-overflow", "foo", "invalid_overflow"),
    ("x-max-priority", 256, "{max_value_exceeded,256}"),
    ("x-max-priority", -1, "{value_negative,-1}"),
    ("x-queue-type", "foo", "\"unsupported queue type 'foo'\""),
    ("x-queue-type", 5, "{unacceptable_type,signedint}"),
    ("x-single-active-consumer", "yes", "{unacceptable_type,longstr}"),
]


@pytest.mark.parametrize(
    ("argument", "value", "reason"),
    INVALID_ARGUMENTS,
    ids=[f"{argument}={value!r}" for argument, value, _ in INVALID_ARGUMENTS],
)
def test_invalid_queue_argument_is_refused(connection, names, argument, value, reason):
    queue = names.queue()

    assert declare_error(connection, queue, arguments={argument: value}) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{argument}' for queue '{queue}' in vhost '/': {reason}",
    )
    assert not queue_exists(connection, queue)


def test_dead_letter_exchange_of_the_wrong_type_is_refused(connection, names):
    queue = names.queue()

    assert declare_error(connection, queue, arguments={"x-dead-letter-exchange": 5}) == (
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
        f"in queue '{queue}' in vhost '/'",
    )


def test_dead_letter_routing_key_needs_a_dead_letter_exchange(connection, names):
    queue = names.queue()

    assert declare_error(connection, queue, arguments={"x-dead-letter-routing-key": "k"}) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{queue}' "
        "in vhost '/': routing_key_but_no_dlx_defined",
    )


@pytest.mark.parametrize(
    "arguments",
    [{"x-max-length": 0}, {"x-max-priority": 0}, {"x-message-ttl": 0}, {"x-foo": "unknown arguments are accepted"}],
    ids=["x-max-length-0", "x-max-priority-0", "x-message-ttl-0", "x-foo"],
)
def test_boundary_queue_arguments_are_accepted(channel, names, arguments):
    queue = names.queue()

    declared = channel.queue_declare(queue, arguments=arguments)

    assert declared.method.queue == queue


def test_non_durable_non_exclusive_queue_outlives_its_declaring_connection(params, names):
    queue = names.queue()
    with closing(pika.BlockingConnection(params)) as declaring:
        channel = declaring.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=False, exclusive=False, auto_delete=False)
        publish(channel, queue, b"left behind")

    with closing(pika.BlockingConnection(params)) as other:
        channel = other.channel()
        assert channel.queue_declare(queue, durable=False).method.message_count == 1
        assert get_bodies(channel, queue) == [b"left behind"]
