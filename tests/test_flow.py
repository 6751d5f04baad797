"""Memory flow control in the sans-IO core: connection.blocked / unblocked around the watermark."""

from __future__ import annotations

from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.core.flow import MESSAGE_OVERHEAD
from tests.frames import FakeClock, open_peer, publish


def blocked_broker(high_watermark: int) -> Broker:
    broker = Broker(clock=FakeClock())
    broker.flow.high_watermark = high_watermark
    return broker


def methods_of(peer, kind) -> list:
    return [frame for _, frame in peer.methods() if isinstance(frame, kind)]


def test_publisher_is_blocked_above_the_high_watermark_and_unblocked_below_the_low_one():
    broker = blocked_broker(high_watermark=5 * (MESSAGE_OVERHEAD + 100))
    changes: list[str | None] = []
    broker.alarms.on_change = lambda: changes.append(broker.alarms.reason)
    publisher = open_peer(broker, capabilities={"connection.blocked": True})
    publisher.send_method(1, commands.Queue.Declare(queue="q"))
    publisher.frames()

    for _ in range(8):
        publisher.send(publish(1, "q", b"x" * 60))
    assert changes == ["low on memory"] and broker.alarms.active == {"memory"}
    publisher.connection.apply_flow(broker.alarms.reason)
    blocked = methods_of(publisher, commands.Connection.Blocked)
    assert len(blocked) == 1 and blocked[0].reason == "low on memory"

    consumer = open_peer(broker)
    for _ in range(8):
        consumer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    assert changes == ["low on memory", None] and broker.alarms.active == set()
    publisher.connection.apply_flow(broker.alarms.reason)
    assert len(methods_of(publisher, commands.Connection.Unblocked)) == 1


def test_a_connection_that_never_published_is_not_blocked():
    broker = blocked_broker(high_watermark=1)
    consumer = open_peer(broker, capabilities={"connection.blocked": True})
    consumer.connection.apply_flow("low on memory")
    assert not consumer.connection.blocked
    assert methods_of(consumer, commands.Connection.Blocked) == []


def test_clients_without_the_capability_are_blocked_without_a_frame():
    broker = blocked_broker(high_watermark=1)
    publisher = open_peer(broker)
    publisher.send_method(1, commands.Queue.Declare(queue="q"))
    publisher.send(publish(1, "q", b"x"))
    publisher.frames()
    publisher.connection.apply_flow("low on memory")
    assert publisher.connection.blocked
    assert methods_of(publisher, commands.Connection.Blocked) == []


def test_deleting_a_queue_releases_its_messages_from_the_accounting():
    broker = blocked_broker(high_watermark=10**9)
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q"))
    for _ in range(3):
        peer.send(publish(1, "q", b"abc"))
    assert broker.flow.queued_bytes > 0
    peer.send_method(1, commands.Queue.Delete(queue="q"))
    assert broker.flow.queued_bytes == 0
