"""basic.*, confirm.*, tx.* and channel.flow features, as RabbitMQ 3.10 behaves.

Mostly through pika's BlockingConnection, with the raw socket client where a
client library hides the frames (coalesced publisher acks, ``immediate``).
Covers basic.get's message_count, nack (multiple, requeue) and reject,
basic.recover, basic.qos (global vs per-consumer prefetch, prefetch_size),
exclusive consumers, consumer arguments, mandatory returns, ``immediate``,
the server's basic.cancel when a consumed queue is deleted, publisher confirms
(coalesced acks, nacks from a full ``reject-publish`` queue), transactions
(commit, rollback of publishes and of acks, the 406 errors), channel.flow, and
direct reply-to (``amq.rabbitmq.reply-to``) with pika and aio-pika's RPC pattern.

Queues are exclusive (they go away with the connection) unless a second
connection needs them.  Every wait is bounded: pika's timeouts are set on each
connection, delivery waits poll ``process_data_events`` against a deadline,
raw sockets have timeouts and aio-pika calls are wrapped in ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import closing
from types import SimpleNamespace

import aio_pika
import pika
import pika.exceptions
import pytest
from aio_pika.patterns import RPC
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from .pika_helpers import get_all, message_count, publish, wait_for_message_count, wait_until
from .raw_client import RawClient

TIMEOUT = 5.0
QUIET_PERIOD = 0.3  # how long "nothing more arrives" is watched for
REPLY_TO = "amq.rabbitmq.reply-to"


@pytest.fixture
def queue(channel: BlockingChannel, unique: str) -> str:
    channel.queue_declare(unique, exclusive=True)
    return unique


@pytest.fixture
def shared_queue(params: pika.ConnectionParameters, channel: BlockingChannel, unique: str) -> Iterator[str]:
    """A non-exclusive queue (other connections may use it), deleted afterwards."""
    channel.queue_declare(unique)
    yield unique
    with closing(pika.BlockingConnection(params)) as cleanup:
        cleanup.channel().queue_delete(unique)


def settle(connection: BlockingConnection) -> None:
    """Process events for a quiet period, so deliveries that were going to arrive have arrived."""
    deadline = time.monotonic() + QUIET_PERIOD
    while (remaining := deadline - time.monotonic()) > 0:
        connection.process_data_events(time_limit=remaining)


class Collector:
    """A consumer callback recording ``(delivery_tag, body, redelivered)``."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[int, bytes, bool]] = []

    def __call__(self, ch, method, properties, body) -> None:
        self.deliveries.append((method.delivery_tag, body, method.redelivered))


def assert_closed_by_broker(excinfo: pytest.ExceptionInfo, code: int, text: str) -> None:
    assert (excinfo.value.reply_code, excinfo.value.reply_text) == (code, text)


def raw_publish_frames(channel: int, routing_key: str, body: bytes, **publish_args) -> bytes:
    return (
        pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key, **publish_args), channel)
        + pamqp_frame.marshal(pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties()), channel)
        + pamqp_frame.marshal(pamqp_body.ContentBody(body), channel)
    )


# ------------------------------------------------------------------ basic.get


def test_basic_get_reports_the_messages_left(channel, queue):
    publish(channel, queue, b"m1", b"m2", b"m3")

    counts = []
    for expected_body in (b"m1", b"m2", b"m3"):
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert body == expected_body
        counts.append(method.message_count)

    assert counts == [2, 1, 0]
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)


def test_basic_get_message_count_excludes_unacked_messages(channel, queue):
    publish(channel, queue, b"m1", b"m2", b"m3")

    first, _, _ = channel.basic_get(queue, auto_ack=False)
    second, _, _ = channel.basic_get(queue, auto_ack=False)

    assert (first.delivery_tag, first.message_count) == (1, 2)
    assert (second.delivery_tag, second.message_count) == (2, 1)


# ------------------------------------------------------------------ nack and reject


def test_nack_multiple_requeues_up_to_the_tag(channel, queue):
    publish(channel, queue, b"m1", b"m2", b"m3")
    tags = [channel.basic_get(queue, auto_ack=False)[0].delivery_tag for _ in range(3)]
    assert tags == [1, 2, 3]

    channel.basic_nack(delivery_tag=2, multiple=True, requeue=True)

    wait_for_message_count(channel, queue, 2)
    assert get_all(channel, queue) == [(b"m1", True), (b"m2", True)]
    channel.basic_ack(delivery_tag=3)  # still outstanding: nack multiple stopped at tag 2
    assert message_count(channel, queue) == 0  # a round trip: an unknown tag would have closed the channel


def test_nack_without_requeue_drops_the_messages(channel, queue):
    publish(channel, queue, b"m1", b"m2")
    channel.basic_get(queue, auto_ack=False)
    method, _, _ = channel.basic_get(queue, auto_ack=False)

    channel.basic_nack(delivery_tag=method.delivery_tag, multiple=True, requeue=False)

    assert get_all(channel, queue) == []
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_ack(delivery_tag=1)
        channel.queue_declare(queue, passive=True)  # a round trip, so the ack's error arrives
    assert_closed_by_broker(excinfo, 406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_reject_without_requeue_drops_the_message(channel, queue):
    publish(channel, queue, b"dropped", b"kept")
    method, _, _ = channel.basic_get(queue, auto_ack=False)

    channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)

    assert get_all(channel, queue) == [(b"kept", False)]


def test_reject_with_requeue_redelivers(channel, queue):
    publish(channel, queue, b"again")
    method, _, _ = channel.basic_get(queue, auto_ack=False)

    channel.basic_reject(delivery_tag=method.delivery_tag, requeue=True)

    wait_for_message_count(channel, queue, 1)
    assert get_all(channel, queue) == [(b"again", True)]


# ------------------------------------------------------------------ basic.recover


def test_recover_with_requeue_redelivers_unacked_messages(connection, channel, queue):
    publish(channel, queue, b"m1", b"m2")
    collector = Collector()
    channel.basic_consume(queue, collector)
    wait_until(connection, lambda: len(collector.deliveries) == 2, "the first deliveries")

    channel.basic_recover(requeue=True)
    wait_until(connection, lambda: len(collector.deliveries) == 4, "the redeliveries")

    assert collector.deliveries[:2] == [(1, b"m1", False), (2, b"m2", False)]
    assert sorted(collector.deliveries[2:]) == [(3, b"m1", True), (4, b"m2", True)]


def test_recover_without_requeue_closes_the_connection_540(connection, channel, queue):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as excinfo:
        channel.basic_recover(requeue=False)

    assert_closed_by_broker(excinfo, 540, "NOT_IMPLEMENTED - requeue=false")
    assert connection.is_closed


# ------------------------------------------------------------------ basic.qos


def consume_two_queues(
    connection: BlockingConnection, unique: str, *qos_before_each: list[tuple[int, bool]]
) -> tuple[BlockingChannel, Collector]:
    """Two queues of five messages each, consumed on one channel; ``qos_before_each[i]`` lists the
    ``(prefetch_count, global_qos)`` settings made just before consumer ``i`` starts."""
    channel = connection.channel()
    channel.confirm_delivery()
    collector = Collector()
    for suffix, qos_settings in zip(("a", "b"), qos_before_each):
        name = channel.queue_declare(f"{unique}-{suffix}", exclusive=True).method.queue
        publish(channel, name, *(f"{suffix}{i}".encode() for i in range(5)))
        for prefetch_count, global_qos in qos_settings:
            channel.basic_qos(prefetch_count=prefetch_count, global_qos=global_qos)
        channel.basic_consume(name, collector)
    settle(connection)
    return channel, collector


def delivered_bodies(collector: Collector) -> list[bytes]:
    return sorted(body for _, body, _ in collector.deliveries)


def test_global_prefetch_is_shared_by_the_consumers_of_a_channel(connection, unique):
    _, collector = consume_two_queues(connection, unique, [(2, True)], [])

    assert delivered_bodies(collector) == [b"a0", b"a1"]


def test_per_consumer_prefetch_applies_to_each_consumer(connection, unique):
    _, collector = consume_two_queues(connection, unique, [(2, False)], [])

    assert delivered_bodies(collector) == [b"a0", b"a1", b"b0", b"b1"]


def test_per_consumer_prefetch_applies_to_consumers_started_after_it(connection, unique):
    _, collector = consume_two_queues(connection, unique, [(1, False)], [(3, False)])

    assert delivered_bodies(collector) == [b"a0", b"b0", b"b1", b"b2"]


def test_global_and_per_consumer_prefetch_both_apply(connection, unique):
    _, collector = consume_two_queues(connection, unique, [(1, False), (3, True)], [])

    assert delivered_bodies(collector) == [b"a0", b"b0"]


def test_acking_frees_global_prefetch_credit(connection, unique):
    channel, collector = consume_two_queues(connection, unique, [(2, True)], [])

    channel.basic_ack(collector.deliveries[0][0])
    settle(connection)

    assert len(collector.deliveries) == 3


def test_nonzero_prefetch_size_closes_the_connection_540(connection, channel):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as excinfo:
        channel.basic_qos(prefetch_size=1000, prefetch_count=10)

    assert_closed_by_broker(excinfo, 540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")
    assert connection.is_closed


# ------------------------------------------------------------------ consumers


def test_exclusive_consumer_refuses_a_second_consumer_403(connection, channel, queue):
    channel.basic_consume(queue, Collector(), exclusive=True)
    other = connection.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        other.basic_consume(queue, Collector())

    assert_closed_by_broker(excinfo, 403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use")
    assert connection.is_open


def test_exclusive_consume_is_refused_while_another_consumer_exists(connection, channel, queue):
    channel.basic_consume(queue, Collector())
    other = connection.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        other.basic_consume(queue, Collector(), exclusive=True)

    assert_closed_by_broker(excinfo, 403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use")


def test_exclusive_consumer_from_another_connection_is_refused(params, channel, shared_queue):
    channel.basic_consume(shared_queue, Collector(), exclusive=True)

    with closing(pika.BlockingConnection(params)) as other_connection:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            other_connection.channel().basic_consume(shared_queue, Collector())

    assert_closed_by_broker(excinfo, 403, f"ACCESS_REFUSED - queue '{shared_queue}' in vhost '/' in exclusive use")


def test_consumer_arguments_are_accepted(connection, channel, queue):
    collector = Collector()
    channel.basic_consume(queue, collector, arguments={"x-priority": 10, "x-unknown-argument": "ignored"})

    publish(channel, queue, b"delivered")

    wait_until(connection, lambda: len(collector.deliveries) == 1, "the delivery")
    assert collector.deliveries == [(1, b"delivered", False)]


def test_deleting_a_consumed_queue_sends_basic_cancel(connection, unique):
    channel = connection.channel()
    name = channel.queue_declare(unique, exclusive=True).method.queue
    cancels = []
    channel.add_on_cancel_callback(lambda frame: cancels.append(frame.method))
    tag = channel.basic_consume(name, Collector())

    connection.channel().queue_delete(name)

    wait_until(connection, lambda: cancels, "the broker's basic.cancel")
    assert [(cancel.NAME, cancel.consumer_tag) for cancel in cancels] == [("Basic.Cancel", tag)]
    assert channel.is_open
    assert tag not in channel.consumer_tags


# ------------------------------------------------------------------ mandatory and immediate


def test_unroutable_mandatory_message_is_returned_312(connection, unique):
    channel = connection.channel()
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append((method, properties, body)))

    channel.basic_publish(
        "",
        f"{unique}-nowhere",
        b"back to sender",
        pika.BasicProperties(content_type="text/plain", headers={"k": "v"}),
        mandatory=True,
    )

    wait_until(connection, lambda: returns, "basic.return")
    ((method, properties, body),) = returns
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key) == ("", f"{unique}-nowhere")
    assert (properties.content_type, properties.headers, body) == ("text/plain", {"k": "v"}, b"back to sender")


def test_routable_mandatory_message_is_not_returned(connection, queue, channel):
    plain = connection.channel()
    returns = []
    plain.add_on_return_callback(lambda *args: returns.append(args))

    plain.basic_publish("", queue, b"routed", mandatory=True)

    wait_for_message_count(channel, queue, 1)
    settle(connection)
    assert returns == []


def test_immediate_publish_closes_the_connection_540(broker, unique):
    with RawClient(broker.host, broker.port, timeout=TIMEOUT) as client:
        client.handshake()
        client.open_channel(1)
        client.send(raw_publish_frames(1, unique, b"now", immediate=True))

        close = client.expect_connection_close()

    assert (close.reply_code, close.reply_text) == (540, "NOT_IMPLEMENTED - immediate=true")
    assert (close.class_id, close.method_id) == (60, 40)


# ------------------------------------------------------------------ publisher confirms


def test_publisher_acks_cover_every_tag_once_and_coalesce(broker):
    count = 200
    with RawClient(broker.host, broker.port, timeout=TIMEOUT) as client:
        client.handshake()
        client.open_channel(1)
        client.send_method(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk, 1)
        client.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
        queue_name = client.expect(commands.Queue.DeclareOk, 1).queue

        client.send(b"".join(raw_publish_frames(1, queue_name, b"%d" % i) for i in range(count)))
        acks = []
        while not acks or acks[-1].delivery_tag < count:
            acks.append(client.expect(commands.Basic.Ack, 1))

    acked, previous = [], 0
    for ack in acks:
        assert ack.delivery_tag > previous
        acked += list(range(previous + 1, ack.delivery_tag + 1)) if ack.multiple else [ack.delivery_tag]
        previous = ack.delivery_tag
    assert acked == list(range(1, count + 1))
    assert any(ack.multiple for ack in acks)
    assert len(acks) < count


def test_unroutable_message_is_still_acked(channel, unique):
    channel.basic_publish("", f"{unique}-nowhere", b"acked anyway")  # raises NackError on a nack

    assert channel.is_open


def test_full_reject_publish_queue_nacks(channel, unique):
    channel.queue_declare(unique, exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", unique, b"fits")

    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", unique, b"does not fit")

    assert get_all(channel, unique) == [(b"fits", False)]


# ------------------------------------------------------------------ transactions


def test_tx_publishes_appear_only_after_commit(connection, unique):
    observer = connection.channel()
    observer.queue_declare(unique, exclusive=True)
    tx = connection.channel()
    tx.tx_select()

    publish(tx, unique, b"m1", b"m2")
    tx.queue_declare(unique, passive=True)  # a round trip: the publishes have reached the broker
    assert message_count(observer, unique) == 0

    tx.tx_commit()
    assert get_all(observer, unique) == [(b"m1", False), (b"m2", False)]


def test_tx_rollback_discards_publishes(connection, unique):
    observer = connection.channel()
    observer.queue_declare(unique, exclusive=True)
    tx = connection.channel()
    tx.tx_select()

    publish(tx, unique, b"discarded")
    tx.tx_rollback()
    publish(tx, unique, b"committed")
    tx.tx_commit()

    assert get_all(observer, unique) == [(b"committed", False)]


def test_tx_rollback_discards_acks(connection, unique):
    observer = connection.channel()
    observer.queue_declare(unique, exclusive=True)
    publish(observer, unique, b"stays unacked")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(unique, auto_ack=False)

    tx.basic_ack(method.delivery_tag)
    tx.tx_rollback()

    assert message_count(observer, unique) == 0  # still unacked, not requeued
    tx.close()  # the ack was discarded, so closing the channel requeues the message
    wait_for_message_count(observer, unique, 1)
    assert get_all(observer, unique) == [(b"stays unacked", True)]


def test_tx_commit_applies_acks(connection, unique):
    observer = connection.channel()
    observer.queue_declare(unique, exclusive=True)
    publish(observer, unique, b"acked")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(unique, auto_ack=False)

    tx.basic_ack(method.delivery_tag)
    tx.tx_commit()
    tx.close()

    settle(connection)
    assert get_all(observer, unique) == []


@pytest.mark.parametrize(
    "operation, text",
    [
        ("tx_commit", "PRECONDITION_FAILED - channel is not transactional"),
        ("tx_rollback", "PRECONDITION_FAILED - channel is not transactional"),
    ],
)
def test_commit_or_rollback_without_select_is_406(connection, operation, text):
    channel = connection.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        getattr(channel, operation)()

    assert_closed_by_broker(excinfo, 406, text)
    assert connection.is_open


def test_confirm_select_after_tx_select_is_406(connection):
    channel = connection.channel()
    channel.tx_select()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.confirm_delivery()

    assert_closed_by_broker(excinfo, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")


def test_tx_select_after_confirm_select_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.tx_select()

    assert_closed_by_broker(excinfo, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


# ------------------------------------------------------------------ channel.flow


def test_channel_flow_active_is_acknowledged(connection):
    channel = connection.channel()

    assert channel.flow(True) is True
    assert channel.is_open


def test_channel_flow_inactive_closes_the_connection_540(connection):
    channel = connection.channel()

    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as excinfo:
        channel.flow(False)

    assert_closed_by_broker(excinfo, 540, "NOT_IMPLEMENTED - active=false")


# ------------------------------------------------------------------ direct reply-to


def test_direct_reply_to_round_trip(params, connection, shared_queue):
    requester = connection.channel()
    replies = []
    requester.basic_consume(
        REPLY_TO, lambda ch, method, properties, body: replies.append((method, properties, body)), auto_ack=True
    )
    requester.basic_publish(
        "", shared_queue, b"question", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1")
    )

    with closing(pika.BlockingConnection(params)) as responder_connection:
        responder = responder_connection.channel()
        method, properties, body = None, None, None
        deadline = time.monotonic() + TIMEOUT
        while method is None and time.monotonic() < deadline:
            method, properties, body = responder.basic_get(shared_queue, auto_ack=True)
        assert body == b"question"
        assert properties.reply_to.startswith(REPLY_TO + ".")
        assert properties.correlation_id == "c-1"

        responder.basic_publish("", properties.reply_to, b"answer", pika.BasicProperties(correlation_id="c-1"))

    wait_until(connection, lambda: replies, "the reply")
    ((reply_method, reply_properties, reply_body),) = replies
    assert reply_body == b"answer"
    assert reply_properties.correlation_id == "c-1"
    assert (reply_method.exchange, reply_method.routing_key) == ("", properties.reply_to)


def test_direct_reply_to_consumer_must_be_no_ack(connection):
    channel = connection.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_consume(REPLY_TO, Collector(), auto_ack=False)

    assert_closed_by_broker(excinfo, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")


def test_direct_reply_to_publish_without_a_reply_consumer_is_406(connection, queue):
    channel = connection.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_publish("", queue, b"q", pika.BasicProperties(reply_to=REPLY_TO))
        channel.queue_declare(queue, passive=True)  # a round trip, so the publish's error arrives

    assert_closed_by_broker(excinfo, 406, "PRECONDITION_FAILED - fast reply consumer does not exist")


def test_direct_reply_to_name_of_a_gone_requester_is_unroutable(params, channel, queue):
    with closing(pika.BlockingConnection(params)) as requester_connection:
        requester = requester_connection.channel()
        requester.basic_consume(REPLY_TO, Collector(), auto_ack=True)
        requester.basic_publish("", queue, b"question", pika.BasicProperties(reply_to=REPLY_TO))
        wait_for_message_count(channel, queue, 1)
    _, properties, _ = channel.basic_get(queue, auto_ack=True)

    with pytest.raises(pika.exceptions.UnroutableError) as excinfo:
        channel.basic_publish("", properties.reply_to, b"too late", mandatory=True)

    (returned,) = excinfo.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")


async def test_aio_pika_rpc_pattern(broker: SimpleNamespace, unique: str) -> None:
    async def multiply(*, x: int, y: int) -> int:
        return x * y

    connection = await asyncio.wait_for(aio_pika.connect(broker.url), TIMEOUT)
    try:
        channel = await asyncio.wait_for(connection.channel(), TIMEOUT)
        rpc = await asyncio.wait_for(RPC.create(channel), TIMEOUT)
        await asyncio.wait_for(rpc.register(f"{unique}-multiply", multiply, auto_delete=True), TIMEOUT)

        result = await asyncio.wait_for(rpc.call(f"{unique}-multiply", kwargs={"x": 6, "y": 7}), TIMEOUT)

        assert result == 42
        await asyncio.wait_for(rpc.close(), TIMEOUT)
    finally:
        await asyncio.wait_for(connection.close(), TIMEOUT)
