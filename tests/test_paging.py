"""Paging: persistent messages on a durable queue beyond the in-memory window live only in the store
and are read back, in order and byte-exact, when they reach the head."""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core import queue as queue_module
from amqp_server.core.broker import Broker
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, open_peer, publish

PERSISTENT = commands.Basic.Properties(delivery_mode=2, headers={"n": 1})


@pytest.fixture(params=["memory", "segment"])
def store(request, tmp_path):
    instance = MemoryStore() if request.param == "memory" else SegmentStore(tmp_path / "data")
    yield instance
    instance.close()


@pytest.fixture(autouse=True)
def small_window(monkeypatch):
    monkeypatch.setattr(queue_module, "PAGE_OUT_AFTER", 3)


def bodies_received(peer) -> list[bytes]:
    return [frame.value for _, frame in peer.frames() if type(frame).__name__ == "ContentBody"]


def test_messages_beyond_the_window_are_paged_out_and_delivered_in_order(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    for n in range(10):
        peer.send(publish(1, "q", b"m%d" % n, properties=PERSISTENT))
    queue = broker.vhosts["/"].queues["q"]
    paged = [entry for entry in queue._ready if entry.paged_out]
    assert len(paged) == 7
    assert broker.flow.queued_bytes == sum(entry.size + 400 for entry in queue._ready if not entry.paged_out)
    peer.frames()

    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    assert bodies_received(peer) == [b"m%d" % n for n in range(10)]
    assert broker.flow.queued_bytes == 0


def test_transient_messages_are_never_paged_out(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    for n in range(10):
        peer.send(publish(1, "q", b"t%d" % n))
    assert all(not entry.paged_out for entry in broker.vhosts["/"].queues["q"]._ready)


def test_paged_out_messages_keep_their_properties_and_can_be_fetched(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    for n in range(6):
        peer.send(publish(1, "q", b"g%d" % n, properties=PERSISTENT))
    peer.frames()
    got = []
    for _ in range(6):
        peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
        frames = peer.frames()
        headers = [frame for _, frame in frames if type(frame).__name__ == "ContentHeader"]
        assert headers[0].properties.headers == {"n": 1} and headers[0].properties.delivery_mode == 2
        got += [frame.value for _, frame in frames if type(frame).__name__ == "ContentBody"]
    assert got == [b"g%d" % n for n in range(6)]


def test_a_restart_leaves_a_large_backlog_on_disk_and_delivers_it_in_order(tmp_path, monkeypatch):
    from storage import segment_store

    monkeypatch.setattr(segment_store, "EAGER_RECORDS", 2)
    store = SegmentStore(tmp_path / "data")
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    for n in range(8):
        peer.send(publish(1, "q", b"r%d" % n, properties=PERSISTENT))
    store.close()

    store = SegmentStore(tmp_path / "data")
    restarted = Broker(store=store, clock=FakeClock())
    entries = list(restarted.vhosts["/"].queues["q"]._ready)
    assert [entry.paged_out for entry in entries] == [False, False] + [True] * 6
    consumer = open_peer(restarted)
    consumer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    assert bodies_received(consumer) == [b"r%d" % n for n in range(8)]
    store.close()
