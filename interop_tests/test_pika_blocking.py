"""pika's BlockingConnection against the broker: what a typical synchronous client does.

Covers the connection lifecycle (open/close, many channels, heartbeats, refused
logins and vhosts), queue and exchange declarations with their error codes,
direct routing through amq.direct, purge/delete, message properties, consumers
(round robin, auto-ack, acks, prefetch, cancel, requeue on channel/connection
close), basic.get, nack/reject, publisher confirms with mandatory returns, and
that a channel error leaves the connection usable.

Every wait is bounded: pika's socket/stack/blocked timeouts are set for each
connection, and delivery waits poll ``process_data_events`` against a deadline.
Where RabbitMQ processes a step asynchronously (requeue after a channel or
connection goes away) the test polls the queue's message count instead of
assuming it is immediate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .pika_helpers import get_all, message_count, publish, wait_for_message_count, wait_until

TIMEOUT = 5.0
QUIET_PERIOD = 0.3  # how long "nothing more arrives" is watched for


@pytest.fixture
def queue(params: pika.ConnectionParameters, channel: BlockingChannel, unique: str) -> Iterator[str]:
    """A plain (non-exclusive, non-durable) queue, deleted afterwards over a fresh connection."""
    channel.queue_declare(unique)
    yield unique
    with closing(pika.BlockingConnection(params)) as cleanup:
        cleanup.channel().queue_delete(unique)


@pytest.fixture
def exchange(params: pika.ConnectionParameters, unique: str) -> Iterator[str]:
    """A name for a user-declared exchange, deleted afterwards if the test declared it."""
    name = f"{unique}-x"
    yield name
    with closing(pika.BlockingConnection(params)) as cleanup:
        cleanup.channel().exchange_delete(name)


class Collector:
    """A consumer callback that records ``(delivery_tag, body, redelivered)``."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[int, bytes, bool]] = []

    def __call__(self, ch, method, properties, body) -> None:
        self.deliveries.append((method.delivery_tag, body, method.redelivered))

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body, _ in self.deliveries]


def assert_channel_closed_by_broker(excinfo: pytest.ExceptionInfo, code: int, text_prefix: str) -> None:
    assert excinfo.value.reply_code == code
    assert excinfo.value.reply_text.startswith(text_prefix), excinfo.value.reply_text


# ------------------------------------------------------------------ connection and channels


def test_connect_and_close(params):
    connection = pika.BlockingConnection(params)
    assert connection.is_open

    connection.close()

    assert connection.is_closed


def test_many_channels_work_independently(connection):
    channels = [connection.channel() for _ in range(20)]
    assert len({ch.channel_number for ch in channels}) == 20

    names = []
    for i, ch in enumerate(channels):
        name = ch.queue_declare("", exclusive=True).method.queue
        publish(ch, name, f"on channel {i}".encode())
        names.append(name)
    for i, (ch, name) in enumerate(zip(channels, names)):
        assert get_all(ch, name) == [(f"on channel {i}".encode(), False)]
        ch.close()

    assert all(ch.is_closed for ch in channels)
    assert connection.is_open


def test_channel_error_closes_only_that_channel(connection, channel, unique):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare(unique, passive=True)

    assert channel.is_closed
    assert connection.is_open
    other = connection.channel()
    name = other.queue_declare("", exclusive=True).method.queue
    publish(other, name, b"still works")
    assert get_all(other, name) == [(b"still works", False)]


def test_heartbeats_keep_an_idle_connection_open(params):
    params.heartbeat = 1
    with closing(pika.BlockingConnection(params)) as connection:
        received_before = connection._impl.bytes_received  # pika's own counter; the heartbeat checker reads it too
        deadline = time.monotonic() + 3.5
        while (remaining := deadline - time.monotonic()) > 0:
            connection.process_data_events(time_limit=remaining)

        assert connection.is_open
        # only the broker's heartbeat frames (8 bytes each) arrive on an idle connection
        assert connection._impl.bytes_received - received_before >= 2 * 8
        channel = connection.channel()
        assert channel.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_bad_credentials_are_refused(params):
    params.credentials = pika.PlainCredentials("guest", "not-the-password")

    with pytest.raises((pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)):
        pika.BlockingConnection(params)


def test_unknown_vhost_is_refused(params, unique):
    params.virtual_host = unique

    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        pika.BlockingConnection(params)


# ------------------------------------------------------------------ queue.declare


def test_server_named_queue(channel):
    declared = channel.queue_declare("", exclusive=True).method

    assert declared.queue.startswith("amq.gen-")
    assert (declared.message_count, declared.consumer_count) == (0, 0)
    assert channel.queue_declare(declared.queue, passive=True).method.queue == declared.queue


def test_passive_declare_of_a_missing_queue_is_404(connection, channel, unique):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.queue_declare(unique, passive=True)

    assert_channel_closed_by_broker(excinfo, 404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")
    assert connection.is_open


def test_exclusive_queue_is_locked_for_other_connections(params, channel, unique):
    channel.queue_declare(unique, exclusive=True)

    with closing(pika.BlockingConnection(params)) as other:
        other_channel = other.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            other_channel.queue_declare(unique)

        assert_channel_closed_by_broker(
            excinfo, 405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{unique}' in vhost '/'"
        )
        assert other.is_open


def test_exclusive_queue_is_deleted_with_its_connection(params, connection, unique):
    with closing(pika.BlockingConnection(params)) as owner:
        owner.channel().queue_declare(unique, exclusive=True)

    # RabbitMQ deletes it once it notices the owner is gone: poll with a fresh channel per attempt
    deadline = time.monotonic() + TIMEOUT
    while True:
        probe = connection.channel()
        try:
            probe.queue_declare(unique, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            assert error.reply_code == 404
            return
        probe.close()
        assert time.monotonic() < deadline, f"exclusive queue {unique!r} outlived its connection"
        connection.sleep(0.02)


def test_redeclaring_with_a_different_durable_flag_is_406(channel, queue):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.queue_declare(queue, durable=True)

    assert_channel_closed_by_broker(
        excinfo,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{queue}' in vhost '/': "
        "received 'true' but current is 'false'",
    )


def test_declare_reports_message_and_consumer_counts(connection, channel, queue):
    publish(channel, queue, b"one", b"two")
    declared = channel.queue_declare(queue, passive=True).method
    assert (declared.message_count, declared.consumer_count) == (2, 0)

    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    collector = Collector()
    consumer_channel.basic_consume(queue, collector)
    wait_until(connection, lambda: collector.bodies == [b"one"], "the first delivery")

    redeclared = channel.queue_declare(queue).method
    assert (redeclared.message_count, redeclared.consumer_count) == (1, 1)


# ------------------------------------------------------------------ exchanges and routing


def test_direct_exchange_declare_and_passive_declare(channel, queue, exchange):
    channel.exchange_declare(exchange, exchange_type="direct")
    channel.exchange_declare(exchange, passive=True)
    channel.exchange_declare(exchange, exchange_type="direct")  # an equivalent redeclaration is fine

    channel.queue_bind(queue, exchange, routing_key="k")
    channel.basic_publish(exchange, "k", b"routed")
    channel.basic_publish(exchange, "other", b"dropped")
    assert get_all(channel, queue) == [(b"routed", False)]


def test_passive_declare_of_a_missing_exchange_is_404(channel, unique):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_declare(unique, passive=True)

    assert_channel_closed_by_broker(excinfo, 404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


def test_redeclaring_an_exchange_with_another_type_is_406(connection, channel, exchange):
    channel.exchange_declare(exchange, exchange_type="direct")

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_declare(exchange, exchange_type="fanout")

    assert_channel_closed_by_broker(
        excinfo,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{exchange}' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    )
    assert connection.is_open


def test_amq_direct_routes_by_binding_key_until_unbound(channel, queue):
    channel.queue_bind(queue, "amq.direct", routing_key="key-a")
    channel.basic_publish("amq.direct", "key-a", b"bound")
    channel.basic_publish("amq.direct", "key-b", b"not bound")
    assert get_all(channel, queue) == [(b"bound", False)]

    channel.queue_unbind(queue, "amq.direct", routing_key="key-a")
    channel.basic_publish("amq.direct", "key-a", b"after unbind")
    assert message_count(channel, queue) == 0


def test_queue_purge_reports_and_removes_ready_messages(channel, queue):
    publish(channel, queue, b"a", b"b", b"c")

    assert channel.queue_purge(queue).method.message_count == 3
    assert message_count(channel, queue) == 0


def test_queue_delete_reports_messages_and_removes_the_queue(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    publish(channel, unique, b"a", b"b")

    assert channel.queue_delete(unique).method.message_count == 2
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.queue_declare(unique, passive=True)
    assert excinfo.value.reply_code == 404


# ------------------------------------------------------------------ publishing and properties


def test_all_basic_properties_arrive_unchanged(channel, queue):
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers={
            "str": "text ü",
            "int": 42,
            "negative": -7,
            "big": 2**40,
            "true": True,
            "false": False,
            "bytes": b"\x00\x01\xff",
            "list": [1, "two", [3], {"four": 4}],
            "table": {"nested": {"deeper": "yes"}, "n": 1},
        },
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply-queue",
        expiration="60000",
        message_id="msg-1",
        timestamp=1_700_000_000,
        type="example.type",
        app_id="interop-tests",
    )

    channel.basic_publish("", queue, b'{"k": 1}', properties=sent)
    method, received, body = channel.basic_get(queue, auto_ack=True)

    assert body == b'{"k": 1}'
    assert vars(received) == vars(sent)


def test_publisher_confirms_ack_each_publish(connection, queue):
    channel = connection.channel()
    channel.confirm_delivery()

    for i in range(10):
        channel.basic_publish("", queue, f"m{i}".encode())  # raises NackError on a nack

    assert message_count(channel, queue) == 10


def test_mandatory_unroutable_publish_raises_unroutable_error_in_confirm_mode(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()

    with pytest.raises(pika.exceptions.UnroutableError) as excinfo:
        channel.basic_publish("", unique, b"nowhere", mandatory=True)

    [returned] = excinfo.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("", unique)
    assert returned.body == b"nowhere"
    assert channel.is_open and connection.is_open


# ------------------------------------------------------------------ consumers and acknowledgements


def test_round_robin_across_two_consumers_on_two_channels(connection, channel, queue):
    first, second = Collector(), Collector()
    connection.channel().basic_consume(queue, first, auto_ack=True)
    connection.channel().basic_consume(queue, second, auto_ack=True)

    bodies = [f"m{i}".encode() for i in range(6)]
    publish(channel, queue, *bodies)
    wait_until(connection, lambda: len(first.bodies) + len(second.bodies) == 6, "six deliveries")

    assert sorted([first.bodies, second.bodies]) == [bodies[0::2], bodies[1::2]]


def test_auto_ack_deliveries_are_not_requeued(connection, channel, queue):
    consumer_channel = connection.channel()
    collector = Collector()
    consumer_channel.basic_consume(queue, collector, auto_ack=True)
    publish(channel, queue, b"a", b"b", b"c")
    wait_until(connection, lambda: len(collector.deliveries) == 3, "three deliveries")

    consumer_channel.close()

    assert collector.deliveries == [(1, b"a", False), (2, b"b", False), (3, b"c", False)]
    assert message_count(channel, queue) == 0


def test_basic_ack_multiple_acknowledges_everything_up_to_the_tag(channel, queue):
    publish(channel, queue, b"a", b"b", b"c", b"d")
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(3)]

    channel.basic_ack(tags[-1], multiple=True)
    channel.basic_recover(requeue=True)  # would put back anything still unacknowledged

    assert get_all(channel, queue) == [(b"d", False)]


def test_prefetch_one_holds_back_deliveries_from_a_consumer_with_an_unacked_message(connection, channel, queue):
    first_channel, second_channel = connection.channel(), connection.channel()
    first, second = Collector(), Collector()
    for consumer_channel, collector in ((first_channel, first), (second_channel, second)):
        consumer_channel.basic_qos(prefetch_count=1)
        consumer_channel.basic_consume(queue, collector)

    publish(channel, queue, b"m0", b"m1", b"m2", b"m3")
    wait_until(connection, lambda: len(first.deliveries) + len(second.deliveries) == 2, "two deliveries")
    connection.sleep(QUIET_PERIOD)
    assert (len(first.deliveries), len(second.deliveries)) == (1, 1)
    assert message_count(channel, queue) == 2

    first_channel.basic_ack(first.deliveries[0][0])
    wait_until(connection, lambda: len(first.deliveries) == 2, "a delivery after the ack")

    assert first.bodies[1] == b"m2"
    assert len(second.deliveries) == 1


def test_unacked_messages_are_requeued_in_order_when_the_channel_closes(connection, channel, queue):
    publish(channel, queue, b"m0", b"m1", b"m2", b"m3", b"m4")
    consumer_channel = connection.channel()
    for _ in range(3):
        consumer_channel.basic_get(queue)

    consumer_channel.close()

    wait_for_message_count(channel, queue, 5)
    assert get_all(channel, queue) == [(b"m0", True), (b"m1", True), (b"m2", True), (b"m3", False), (b"m4", False)]


def test_unacked_messages_are_requeued_in_order_when_the_connection_closes(params, channel, queue):
    publish(channel, queue, b"m0", b"m1", b"m2", b"m3", b"m4")
    consumer_connection = pika.BlockingConnection(params)
    consumer_channel = consumer_connection.channel()
    collector = Collector()
    consumer_channel.basic_qos(prefetch_count=3)
    consumer_channel.basic_consume(queue, collector)
    wait_until(consumer_connection, lambda: len(collector.deliveries) == 3, "three deliveries")

    consumer_connection.close()

    wait_for_message_count(channel, queue, 5)
    assert get_all(channel, queue) == [(b"m0", True), (b"m1", True), (b"m2", True), (b"m3", False), (b"m4", False)]


def test_basic_cancel_stops_deliveries(connection, channel, queue):
    consumer_channel = connection.channel()
    collector = Collector()
    tag = consumer_channel.basic_consume(queue, collector, auto_ack=True)
    publish(channel, queue, b"before")
    wait_until(connection, lambda: collector.bodies == [b"before"], "the delivery before cancel")

    consumer_channel.basic_cancel(tag)
    publish(channel, queue, b"after")

    declared = channel.queue_declare(queue, passive=True).method
    assert (declared.message_count, declared.consumer_count) == (1, 0)
    assert collector.bodies == [b"before"]
    assert get_all(channel, queue) == [(b"after", False)]


def test_basic_get_returns_messages_then_empty(channel, queue):
    assert channel.basic_get(queue) == (None, None, None)
    publish(channel, queue, b"first", b"second")

    method, _, body = channel.basic_get(queue)

    assert body == b"first"
    assert (method.exchange, method.routing_key, method.redelivered, method.message_count) == ("", queue, False, 1)
    channel.basic_ack(method.delivery_tag)


def test_nack_with_requeue_redelivers(channel, queue):
    publish(channel, queue, b"a", b"b")
    channel.basic_get(queue)
    second = channel.basic_get(queue)[0]

    channel.basic_nack(second.delivery_tag, multiple=True, requeue=True)

    assert get_all(channel, queue) == [(b"a", True), (b"b", True)]


def test_reject_with_requeue_redelivers(channel, queue):
    publish(channel, queue, b"a")
    method = channel.basic_get(queue)[0]

    channel.basic_reject(method.delivery_tag, requeue=True)

    assert get_all(channel, queue) == [(b"a", True)]


def test_reject_without_requeue_drops_the_message(channel, queue):
    publish(channel, queue, b"a", b"b")
    method = channel.basic_get(queue)[0]

    channel.basic_reject(method.delivery_tag, requeue=False)

    assert get_all(channel, queue) == [(b"b", False)]
