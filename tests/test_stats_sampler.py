"""Statistics end to end in process: bytes in, counts and rates out (``Broker.stats``), with fake clocks.

Each scenario drives connections with AMQP frames, takes samples the way the 5 s timer does
(``tick``), and checks the RabbitMQ-shaped dicts the management API shows: what pika would have
seen counted, and rates that appear under load and fall back to 0.0 once idle.
"""

from __future__ import annotations

from typing import Any

from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.core.stats import Ranges
from tests.frames import FakeClock, Peer, open_peer, publish

T0 = 1_796_171_550.0  # wall clock seconds, on the 5 s grid


class Clocks:
    def __init__(self) -> None:
        self.monotonic = FakeClock(1000.0)
        self.wall = FakeClock(T0)
        self.broker = Broker(clock=self.monotonic, wall_clock=self.wall)

    def tick(self, seconds: float = 5.0) -> None:
        """Let ``seconds`` pass and take the sample the timer would take."""
        self.monotonic.advance(seconds)
        self.wall.advance(seconds)
        self.broker.stats.tick(int(self.wall() * 1000) // 5000 * 5000)

    def view(self, **params: str) -> Any:
        return self.broker.stats.view(Ranges.parse(params, int(self.wall() * 1000)))


def declare(peer: Peer, queue: str, channel: int = 1) -> None:
    peer.send_method(channel, commands.Queue.Declare(queue=queue))
    peer.frames()


def publish_many(peer: Peer, count: int, routing_key: str = "q", body: bytes = b"hello", **kwargs: Any) -> None:
    peer.send(b"".join(publish(1, routing_key, body, **kwargs) for _ in range(count)))


def channel_of(peer: Peer, number: int = 1) -> Any:
    return peer.connection.channels[number]


def vhost_queue(clocks: Clocks, name: str = "q") -> Any:
    return clocks.broker.vhosts["/"].queues[name]


def default_exchange(clocks: Clocks) -> Any:
    return clocks.broker.vhosts["/"].exchanges[""]


def test_an_idle_broker_shows_empty_overview_stats() -> None:
    clocks = Clocks()
    clocks.tick()
    assert clocks.view().overview() == {"message_stats": {}, "churn_rates": {}, "queue_totals": {}}
    assert clocks.view().vhost("/") == {}
    assert clocks.view().exchange(default_exchange(clocks)) == {}


def test_publishes_are_counted_and_their_rate_falls_back_to_zero() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    clocks.tick()
    publish_many(peer, 10)
    clocks.tick()
    publish_many(peer, 20)
    clocks.tick()
    view = clocks.view()
    channel = view.channel(channel_of(peer))["message_stats"]
    assert channel == {
        "publish": 30,
        "publish_details": {"rate": 4.0},  # 20 in the last 5 s
        "confirm": 0,
        "confirm_details": {"rate": 0.0},
        "return_unroutable": 0,
        "return_unroutable_details": {"rate": 0.0},
        "drop_unroutable": 0,
        "drop_unroutable_details": {"rate": 0.0},
    }
    queue = view.queue(vhost_queue(clocks))
    assert queue["message_stats"] == {"publish": 30, "publish_details": {"rate": 4.0}}
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (30, 30, 0)
    assert queue["messages_details"] == queue["messages_ready_details"] == {"rate": 4.0}
    assert queue["message_bytes"] == queue["message_bytes_ready"] == 150
    assert view.exchange(default_exchange(clocks))["message_stats"] == {
        "publish_in": 30,
        "publish_in_details": {"rate": 4.0},
        "publish_out": 30,
        "publish_out_details": {"rate": 4.0},
    }
    overview = view.overview()
    assert overview["message_stats"]["publish"] == 30
    assert overview["message_stats"]["publish_details"] == {"rate": 4.0}
    assert overview["message_stats"]["disk_reads"] == 0
    assert overview["queue_totals"]["messages"] == 30
    assert view.vhost("/")["message_stats"]["publish"] == 30
    clocks.tick()  # nothing happened in the last 5 s
    idle = clocks.view()
    assert idle.channel(channel_of(peer))["message_stats"]["publish_details"] == {"rate": 0.0}
    assert idle.queue(vhost_queue(clocks))["messages_details"] == {"rate": 0.0}
    assert idle.overview()["message_stats"]["publish_details"] == {"rate": 0.0}
    assert "idle_since" in idle.queue(vhost_queue(clocks))
    assert "deliver" not in idle.queue(vhost_queue(clocks))["message_stats"]  # never delivered: no such group


def test_unroutable_and_confirmed_publishes() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    peer.send_method(1, commands.Confirm.Select())
    declare(peer, "q")
    publish_many(peer, 3)
    publish_many(peer, 1, routing_key="nowhere", mandatory=True)
    publish_many(peer, 2, routing_key="nowhere")
    peer.frames()
    stats = clocks.view().channel(channel_of(peer))["message_stats"]
    assert (stats["publish"], stats["confirm"], stats["return_unroutable"], stats["drop_unroutable"]) == (6, 6, 1, 2)
    exchange = clocks.view().exchange(default_exchange(clocks))["message_stats"]
    assert (exchange["publish_in"], exchange["publish_out"]) == (6, 3)


def test_deliveries_acks_and_redeliveries() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    publish_many(peer, 5)
    peer.send_method(1, commands.Basic.Qos(prefetch_count=10))
    peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c"))
    peer.frames()
    view = clocks.view()
    queue = view.queue(vhost_queue(clocks))
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (5, 0, 5)
    assert queue["message_bytes_unacknowledged"] == 25
    assert queue["consumers"] == 1
    assert queue["consumer_utilisation"] == 1.0
    peer.send_method(1, commands.Basic.Ack(delivery_tag=2, multiple=True))
    peer.send_method(1, commands.Basic.Nack(delivery_tag=3, requeue=True))  # comes back, redelivered
    peer.frames()
    expected = {"get": 0, "get_no_ack": 0, "deliver": 6, "deliver_no_ack": 0, "redeliver": 1, "ack": 2}
    expected.update({"deliver_get": 6, "get_empty": 0})
    view = clocks.view()
    for stats in (
        view.channel(channel_of(peer))["message_stats"],
        view.queue(vhost_queue(clocks))["message_stats"],
        view.vhost("/")["message_stats"],
    ):
        assert {key: stats[key] for key in expected} == expected
    assert view.queue(vhost_queue(clocks))["messages_unacknowledged"] == 3


def test_gets_with_and_without_ack_and_empty() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    publish_many(peer, 2)
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.send_method(1, commands.Basic.Ack(delivery_tag=1))
    peer.frames()
    expected = {"get": 1, "get_no_ack": 1, "deliver": 0, "deliver_no_ack": 0, "ack": 1, "deliver_get": 2}
    expected["get_empty"] = 1
    view = clocks.view()
    for stats in (view.channel(channel_of(peer))["message_stats"], view.queue(vhost_queue(clocks))["message_stats"]):
        assert {key: stats[key] for key in expected} == expected


def test_no_ack_deliveries_including_the_direct_hand_off() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    publish_many(peer, 3)  # queued, then drained by the consumer
    peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True))
    publish_many(peer, 4)  # straight to the waiting consumer
    peer.frames()
    view = clocks.view()
    for stats in (view.channel(channel_of(peer))["message_stats"], view.queue(vhost_queue(clocks))["message_stats"]):
        assert (stats["deliver_no_ack"], stats["deliver"], stats["deliver_get"]) == (7, 0, 7)


def test_a_closed_channel_still_counts_in_its_vhost() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    publish_many(peer, 4)
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    peer.frames()
    assert 1 not in peer.connection.channels
    clocks.tick()
    view = clocks.view()
    assert view.vhost("/")["message_stats"]["publish"] == 4
    assert view.overview()["message_stats"]["publish"] == 4
    peer.connection.connection_lost()
    clocks.tick()
    assert clocks.view().overview()["message_stats"]["publish"] == 4


def test_connection_octets_are_the_bytes_in_and_out() -> None:
    clocks = Clocks()
    peer = Peer(clocks.broker)
    received = sent = reads = writes = 0
    original_send, original_take = peer.connection.receive_data, peer.connection.data_to_send

    def counting_send(data: bytes) -> None:
        nonlocal received, reads
        received, reads = received + len(data), reads + 1
        original_send(data)

    def counting_take() -> bytes:
        nonlocal sent, writes
        data = original_take()
        if data:
            sent, writes = sent + len(data), writes + 1
        return data

    peer.connection.receive_data = counting_send  # type: ignore[method-assign]
    peer.connection.data_to_send = counting_take  # type: ignore[method-assign]
    peer.handshake()
    peer.open_channel()
    declare(peer, "q")
    publish_many(peer, 10, body=b"x" * 100)
    clocks.tick()
    publish_many(peer, 10, body=b"x" * 100)
    clocks.tick()
    stats = clocks.view().connection(peer.connection)
    assert (stats["recv_oct"], stats["send_oct"], stats["recv_cnt"], stats["send_cnt"]) == (
        received,
        sent,
        reads,
        writes,
    )
    assert stats["recv_oct_details"]["rate"] > 0
    vhost = clocks.view().vhost("/")
    assert (vhost["recv_oct"], vhost["send_oct"]) == (received, sent)


def test_ranges_give_samples_and_averages() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    for _ in range(4):
        clocks.tick()
        publish_many(peer, 10)
    clocks.tick()
    view = clocks.view(msg_rates_age="20", msg_rates_incr="5", lengths_age="10", lengths_incr="5")
    details = view.queue(vhost_queue(clocks))["message_stats"]["publish_details"]
    assert [point["sample"] for point in details["samples"]] == [40, 30, 20, 10, 0]
    assert (details["rate"], details["avg_rate"], details["avg"]) == (2.0, 2.0, 20.0)
    assert [point["sample"] for point in view.queue(vhost_queue(clocks))["messages_details"]["samples"]] == [40, 30, 20]


def test_churn_rates() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    declare(peer, "q")
    peer.send_method(1, commands.Queue.Delete(queue="q"))
    peer.open_channel(2)
    peer.frames()
    churn = clocks.view().overview()["churn_rates"]
    counts = {key: value for key, value in churn.items() if not key.endswith("_details")}
    assert counts == {
        "connection_created": 1,
        "connection_closed": 0,
        "channel_created": 2,
        "channel_closed": 0,
        "queue_declared": 2,
        "queue_created": 1,
        "queue_deleted": 1,
    }
    peer.connection.connection_lost()
    churn = clocks.view().overview()["churn_rates"]
    assert (churn["connection_closed"], churn["channel_closed"]) == (1, 2)


def test_the_scheduler_samples_every_five_seconds_on_the_wall_grid() -> None:
    clocks = Clocks()
    clocks.wall.advance(1.5)  # start between two grid points
    clocks.broker.stats.start()
    scheduler = clocks.broker.scheduler
    deadline = scheduler.next_deadline()
    assert deadline is not None and 3.5 <= deadline - clocks.monotonic() < 3.6
    for _ in range(3):
        step = scheduler.next_deadline() - clocks.monotonic()  # type: ignore[operator]
        clocks.monotonic.advance(step)
        clocks.wall.advance(step)
        scheduler.run_due(clocks.monotonic())
    assert clocks.broker.stats.last == int(T0 * 1000) + 15000
    assert clocks.broker.stats.previous == int(T0 * 1000) + 10000

    clocks.broker.stats.stop()
    assert scheduler.next_deadline() is None


def test_a_second_tick_in_one_slot_is_ignored_and_deleted_queues_are_forgotten() -> None:
    clocks = Clocks()
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    clocks.tick()
    stats = clocks.broker.stats
    last = stats.last
    stats.tick(last)  # type: ignore[arg-type]
    assert (stats.last, stats.previous) == (last, None)
    queue = vhost_queue(clocks)
    assert queue in stats._tracks
    peer.send_method(1, commands.Queue.Delete(queue="q"))
    peer.frames()
    clocks.tick()
    assert queue not in stats._tracks


def test_a_direct_reply_counts_as_a_no_ack_delivery() -> None:
    clocks = Clocks()
    requester, responder = open_peer(clocks.broker), open_peer(clocks.broker)
    requester.send_method(1, commands.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True))
    requester.frames()
    key = channel_of(requester).replies.key
    assert key is not None
    responder.send(publish(1, key, b"answer"))
    requester.frames()
    stats = clocks.view().channel(channel_of(requester))["message_stats"]
    assert (stats["deliver_no_ack"], stats["deliver"]) == (1, 0)


def test_starting_takes_the_baseline_of_the_first_rates() -> None:
    clocks = Clocks()
    clocks.broker.stats.start()
    assert clocks.broker.stats.last == int(T0 * 1000)
    peer = open_peer(clocks.broker)
    declare(peer, "q")
    publish_many(peer, 10)
    clocks.tick()
    rate = clocks.view().queue(vhost_queue(clocks))["message_stats"]["publish_details"]["rate"]
    assert rate == 2.0  # the queue did not exist at the baseline: it counts from zero there
