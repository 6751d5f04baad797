"""The free-disk alarm in the sans-IO core: a fake free-space function and a fake clock drive ``DiskMonitor``.

Below the limit, publishing connections are blocked (connection.blocked "low on
disk" to those with the capability, no frame to the others); when space returns
they are unblocked.  With the memory alarm too, the text is RabbitMQ's "low on
disk & memory" and connection.unblocked waits for both to clear.
"""

from __future__ import annotations

import asyncio

from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.core.flow import (
    DISK_CHECK_ALARMED_INTERVAL,
    DISK_CHECK_MAX_INTERVAL,
    DISK_CHECK_MIN_INTERVAL,
)
from amqp_server.server.protocol import AMQPProtocol, Connections
from tests.frames import FakeClock, Peer, open_peer, publish

LIMIT = 50_000_000
PLENTY = 10**12


class Disk:
    """A fake filesystem: ``free`` bytes, and how often it was measured."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.checks = 0

    def __call__(self) -> int:
        self.checks += 1
        if isinstance(self.free, Exception):
            raise self.free
        return self.free


class Node:
    """A broker with peers wired to its alarms as the server wires its protocols, and a way to let time pass."""

    def __init__(self, free: int, limit: int = LIMIT) -> None:
        self.clock = FakeClock()
        self.broker = Broker(clock=self.clock)
        self.peers: list[Peer] = []
        self.broker.alarms.on_change = self._apply
        self.disk = Disk(free)
        self.broker.disk.start(limit, self.disk)

    def _apply(self) -> None:
        for peer in self.peers:
            peer.connection.apply_flow(self.broker.alarms.reason)

    def peer(self, publishes: bool, blocked_capability: bool = True) -> Peer:
        peer = open_peer(self.broker, capabilities={"connection.blocked": blocked_capability})
        peer.send_method(1, commands.Queue.Declare(queue="q"))
        if publishes:
            peer.send(publish(1, "q", b"x"))
        peer.frames()
        self.peers.append(peer)
        return peer

    def next_check_in(self) -> float:
        return round(self.broker.scheduler.next_deadline() - self.clock.now, 6)

    def run_next_check(self) -> None:
        self.broker.scheduler.run_due(self.clock.advance(self.next_check_in()))


def blocked_frames(peer: Peer) -> list:
    return [
        frame
        for _, frame in peer.methods()
        if isinstance(frame, (commands.Connection.Blocked, commands.Connection.Unblocked))
    ]


def test_low_disk_blocks_publishers_and_space_returning_unblocks_them():
    node = Node(free=PLENTY)
    publisher, consumer = node.peer(publishes=True), node.peer(publishes=False)
    assert node.broker.alarms.active == set()

    node.disk.free = LIMIT - 1
    node.run_next_check()
    assert node.broker.alarms.active == {"disk"} and node.broker.disk.free == LIMIT - 1
    frames = blocked_frames(publisher)
    assert [type(frame) for frame in frames] == [commands.Connection.Blocked] and frames[0].reason == "low on disk"
    assert publisher.connection.blocked  # the I/O layer stops reading from it
    assert blocked_frames(consumer) == [] and not consumer.connection.blocked

    node.run_next_check()  # still low: nothing more is sent
    assert blocked_frames(publisher) == []

    node.disk.free = LIMIT  # RabbitMQ: alarmed while free < limit
    node.run_next_check()
    assert node.broker.alarms.active == set()
    assert [type(frame) for frame in blocked_frames(publisher)] == [commands.Connection.Unblocked]
    assert not publisher.connection.blocked


def test_a_publisher_without_the_capability_is_blocked_without_a_frame():
    node = Node(free=PLENTY)
    publisher = node.peer(publishes=True, blocked_capability=False)
    node.disk.free = 0
    node.run_next_check()
    assert publisher.connection.blocked and publisher.frames() == []
    node.disk.free = PLENTY
    node.run_next_check()
    assert not publisher.connection.blocked and publisher.frames() == []


def test_a_full_disk_at_start_raises_the_alarm_at_once():
    node = Node(free=LIMIT // 2)
    assert node.disk.checks == 1 and node.broker.alarms.active == {"disk"}
    assert node.broker.alarms.reason == "low on disk"


def test_disk_and_memory_alarms_together_unblock_only_when_both_clear():
    node = Node(free=PLENTY)
    publisher = node.peer(publishes=True)
    node.disk.free = 0
    node.run_next_check()
    assert [frame.reason for frame in blocked_frames(publisher)] == ["low on disk"]

    node.broker.alarms.set("memory", True)  # what MemoryFlow does above its high watermark
    assert blocked_frames(publisher) == []  # one connection.blocked, as RabbitMQ
    late = node.peer(publishes=True)  # blocked while both are in effect: RabbitMQ's combined text
    late.connection.apply_flow(node.broker.alarms.reason)
    assert [frame.reason for frame in blocked_frames(late)] == ["low on disk & memory"]

    node.disk.free = PLENTY
    node.run_next_check()
    assert node.broker.alarms.active == {"memory"} and node.broker.alarms.reason == "low on memory"
    assert blocked_frames(publisher) == [] and publisher.connection.blocked

    node.broker.alarms.set("memory", False)
    assert [type(frame) for frame in blocked_frames(publisher)] == [commands.Connection.Unblocked]
    assert not publisher.connection.blocked and not late.connection.blocked


def test_the_memory_watermark_raises_the_memory_alarm():
    broker = Broker(clock=FakeClock())
    broker.flow.high_watermark = 1
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q"))
    peer.send(publish(1, "q", b"x"))
    assert broker.alarms.active == {"memory"} and broker.alarms.blocked


def test_a_limit_of_zero_disables_the_alarm():
    node = Node(free=0, limit=0)
    assert node.disk.checks == 0 and node.broker.scheduler.next_deadline() is None
    assert node.broker.alarms.active == set()


def test_the_check_interval_shrinks_near_the_limit():
    node = Node(free=PLENTY)
    assert node.next_check_in() == DISK_CHECK_MAX_INTERVAL  # far from the limit
    node.disk.free = LIMIT + 250_000_000  # 2 x headroom at RabbitMQ's 250 MB/s: 2 s
    node.run_next_check()
    assert node.next_check_in() == 2.0
    node.disk.free = LIMIT + 1000
    node.run_next_check()
    assert node.next_check_in() == DISK_CHECK_MIN_INTERVAL
    node.disk.free = LIMIT - 1
    node.run_next_check()
    assert node.next_check_in() == DISK_CHECK_ALARMED_INTERVAL


def test_a_failed_measurement_keeps_the_alarm_and_retries():
    node = Node(free=0)
    node.disk.free = OSError(2, "No such file or directory")
    node.run_next_check()
    assert node.broker.alarms.active == {"disk"}
    assert node.next_check_in() == DISK_CHECK_MAX_INTERVAL
    node.disk.free = PLENTY
    node.run_next_check()
    assert node.broker.alarms.active == set()


def test_a_blocked_publisher_is_not_dropped_for_the_heartbeats_we_do_not_read():
    """RabbitMQ pauses its heartbeat monitor while a connection is blocked: its peer's heartbeats are unread."""
    clock = FakeClock()
    broker = Broker(clock=clock)
    peer = Peer(broker)
    peer.handshake(heartbeat=10, capabilities={"connection.blocked": True})
    peer.open_channel(1)
    peer.send(publish(1, "", b"x"))
    peer.connection.apply_flow("low on disk")
    peer.frames()
    for _ in range(6):  # a minute blocked, the timer running at every deadline
        peer.connection.handle_timer(clock.advance(peer.connection.next_deadline() - clock.now))
    assert not peer.connection.should_close
    assert (0, commands.Connection.Close) not in [(ch, type(frame)) for ch, frame in peer.frames()]

    peer.connection.apply_flow(None)
    peer.connection.handle_timer(clock.advance(15))  # monitoring restarts from the unblock
    assert not peer.connection.should_close
    peer.connection.handle_timer(clock.advance(10))
    assert peer.connection.should_close


class FakeTransport:
    """What ``AMQPProtocol`` calls on its transport: writes are collected, reading is paused or not."""

    def __init__(self) -> None:
        self.reading = True
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class ProtocolPeer(Peer):
    """A ``Peer`` whose bytes go through ``AMQPProtocol.data_received`` (its checks included) to a fake transport."""

    def __init__(self, broker: Broker, connections: Connections) -> None:
        self.protocol = AMQPProtocol(broker, connections)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)
        self.broker = broker
        self.connection = self.protocol.connection
        self.auto_sync = True

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)


def test_the_protocol_stops_reading_from_publishers_during_a_disk_alarm():
    async def scenario() -> None:
        clock = FakeClock()
        broker = Broker(clock=clock)
        connections = Connections()
        broker.alarms.on_change = lambda: [protocol.apply_flow() for protocol in list(connections.protocols)]
        disk = Disk(PLENTY)
        broker.disk.start(LIMIT, disk)
        publisher, consumer, late = (ProtocolPeer(broker, connections) for _ in range(3))
        for peer in (publisher, consumer, late):
            peer.handshake()
            peer.open_channel(1)
        publisher.send(publish(1, "", b"x"))

        disk.free = 0
        broker.scheduler.run_due(clock.advance(DISK_CHECK_MAX_INTERVAL))
        assert not publisher.transport.reading and consumer.transport.reading and late.transport.reading
        late.send(publish(1, "", b"x"))  # its first publish during the alarm: it stops being read
        assert not late.transport.reading and consumer.transport.reading

        disk.free = PLENTY
        broker.scheduler.run_due(clock.advance(DISK_CHECK_ALARMED_INTERVAL))
        assert publisher.transport.reading and late.transport.reading
        for peer in (publisher, consumer, late):
            peer.protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_new_limit_replaces_the_old_one():
    """What a management call like rabbitmqctl set_disk_free_limit would do."""
    node = Node(free=LIMIT - 1)
    assert node.broker.alarms.active == {"disk"}
    node.broker.disk.start(LIMIT - 2, node.disk)
    assert node.broker.alarms.active == set() and node.broker.disk.limit == LIMIT - 2
    node.broker.disk.start(0, node.disk)
    node.disk.free = 0
    assert node.broker.scheduler.next_deadline() is None and node.broker.alarms.active == set()
