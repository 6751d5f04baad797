"""What ``tx.commit-ok`` and quorum-queue confirms promise about the disk, on the sans-IO core.

RabbitMQ makes committed work durable on commit: commit-ok for persistent
messages on durable queues, or for acks of stored messages, comes only after
the store's sync (the same one publisher confirms wait for); a commit that
wrote nothing answers at once.  Quorum queues store every message whatever its
delivery_mode, so their confirms wait for the sync too, and a recovered message
keeps the properties it was published with.  The persister is played by hand
(``Peer(auto_sync=False)`` and ``sync``) so each test sees what is sent before
and after the sync.
"""

from __future__ import annotations

import asyncio

import pytest
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.core.message import Message
from amqp_server.server.persister import Persister
from storage.api import MessageRecord, Store
from storage.memory import MemoryStore
from tests.frames import FakeClock, Peer, publish
from tests.test_store_contract import STORES, get_all

PERSISTENT = commands.Basic.Properties(delivery_mode=2)
TRANSIENT = commands.Basic.Properties(delivery_mode=1)
QUORUM = {"x-queue-type": "quorum"}


pytest_plugins = ["tests.postgres_cluster"]  # STORES' PostgreSQL store needs its postgres_db fixture


@pytest.fixture(params=STORES)
def store(request, tmp_path) -> Store:
    instance = request.param(request, tmp_path)
    yield instance
    instance.close()


def sync(broker: Broker, ok: bool = True) -> None:
    """One persister round: snapshot, sync the store, release what it covered."""
    snapshot = broker.sync_barrier.begin()
    if ok:
        broker.store.sync()
    broker.sync_barrier.end(snapshot, ok)


def client(broker: Broker, *queues: tuple[str, dict]) -> Peer:
    """A connected peer, channel 1 open, the durable ``queues`` declared and synced, output drained."""
    peer = Peer(broker, auto_sync=False)
    peer.handshake()
    peer.open_channel(1)
    for name, arguments in queues:
        peer.send_method(1, commands.Queue.Declare(queue=name, durable=True, arguments=arguments))
    sync(broker)
    peer.frames()
    return peer


def names(peer: Peer) -> list[str]:
    return [type(frame).__name__ for _, frame in peer.methods()]


def stored_bodies(store: Store, queue: str) -> list[bytes]:
    store.sync()
    return [record.body for _, record in store.recover().messages.get(("/", queue), [])]


def test_commit_ok_waits_for_the_sync_of_the_committed_persistent_messages(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send_method(1, commands.Tx.Select())
    peer.send(b"".join(publish(1, "q", b"%d" % n, properties=PERSISTENT) for n in range(200)))
    peer.send_method(1, commands.Tx.Commit())
    assert names(peer) == ["SelectOk"]  # not commit-ok: nothing is on disk yet
    assert broker.sync_barrier.requested

    sync(broker)
    assert names(peer) == ["CommitOk"]
    assert stored_bodies(store, "q") == [b"%d" % n for n in range(200)]


def test_a_commit_that_wrote_nothing_answers_at_once_without_a_sync():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send_method(1, commands.Queue.Declare(queue="transient-q"))
    peer.frames()
    peer.send_method(1, commands.Tx.Select())
    peer.send(publish(1, "q", b"transient", properties=TRANSIENT))
    peer.send(publish(1, "transient-q", b"persistent, transient queue", properties=PERSISTENT))
    peer.send(publish(1, "nowhere", b"unroutable", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Commit())
    assert names(peer) == ["SelectOk", "CommitOk"]
    peer.send_method(1, commands.Tx.Commit())  # an empty one
    assert names(peer) == ["CommitOk"]
    assert not broker.sync_barrier.requested


def test_commit_ok_for_acks_of_stored_messages_waits_for_the_sync(store):
    """Durability on commit covers acks (RabbitMQ's semantics page): an acked message must not come back."""
    broker = Broker(store=store, clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send(publish(1, "q", b"persistent", properties=PERSISTENT) + publish(1, "q", b"transient"))
    sync(broker)
    peer.send_method(1, commands.Tx.Select())
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.frames()

    peer.send_method(1, commands.Basic.Ack(delivery_tag=2))  # the transient one: nothing to write
    peer.send_method(1, commands.Tx.Commit())
    assert names(peer) == ["CommitOk"]
    peer.send_method(1, commands.Basic.Ack(delivery_tag=1))
    peer.send_method(1, commands.Tx.Commit())
    assert names(peer) == []
    sync(broker)
    assert names(peer) == ["CommitOk"]
    assert stored_bodies(store, "q") == []


def test_a_requeue_in_a_commit_writes_nothing_and_does_not_wait():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send(publish(1, "q", b"persistent", properties=PERSISTENT))
    sync(broker)
    peer.send_method(1, commands.Tx.Select())
    peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.frames()
    peer.send_method(1, commands.Basic.Nack(delivery_tag=1, requeue=True))
    peer.send_method(1, commands.Tx.Commit())
    assert names(peer) == ["CommitOk"]


def test_tx_replies_keep_their_order_behind_a_commit_waiting_for_the_sync():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send_method(1, commands.Tx.Select())
    peer.frames()
    peer.send(publish(1, "q", b"durable", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Commit())
    peer.send(publish(1, "q", b"rolled back", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Rollback())
    peer.send_method(1, commands.Tx.Commit())  # empty, but behind the first
    assert names(peer) == []
    sync(broker)
    assert names(peer) == ["CommitOk", "RollbackOk", "CommitOk"]
    peer.send_method(1, commands.Tx.Commit())  # nothing waits any more
    assert names(peer) == ["CommitOk"]


def test_a_failed_sync_closes_the_committing_channel_instead_of_commit_ok():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send_method(1, commands.Tx.Select())
    peer.frames()
    peer.send(publish(1, "q", b"durable", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Commit())
    sync(broker, ok=False)
    [(_, close)] = peer.methods()
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (506, 90, 20)
    assert close.reply_text == "RESOURCE_ERROR - could not write the transaction to disk"


def test_a_channel_closed_while_its_commit_waits_gets_no_commit_ok():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("q", {}))
    peer.send_method(1, commands.Tx.Select())
    peer.send(publish(1, "q", b"durable", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Commit())
    peer.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    sync(broker)
    assert names(peer) == ["SelectOk", "CloseOk"]


# ------------------------------------------------------------------ quorum queues


def test_quorum_queue_stores_a_transient_message_and_confirms_it_after_the_sync(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = client(broker, ("qq", QUORUM), ("cq", {}))
    peer.send_method(1, commands.Confirm.Select())
    peer.frames()
    peer.send(publish(1, "qq", b"transient", properties=TRANSIENT))
    assert names(peer) == []  # not confirmed before it is on disk
    sync(broker)
    acks = [frame for _, frame in peer.methods() if isinstance(frame, commands.Basic.Ack)]
    assert [(ack.delivery_tag, ack.multiple) for ack in acks] == [(1, False)]
    peer.send(publish(1, "cq", b"transient, classic"))
    assert names(peer) == ["Ack"]  # a classic queue still keeps transient messages in memory only
    assert stored_bodies(store, "qq") == [b"transient"]
    assert stored_bodies(store, "cq") == []


def test_quorum_queue_with_a_consumer_still_stores_a_transient_message():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    peer = client(broker, ("qq", QUORUM))
    peer.send_method(1, commands.Basic.Consume(queue="qq", consumer_tag="c"))
    peer.frames()
    peer.send(publish(1, "qq", b"transient"))
    assert names(peer) == ["Deliver"]
    assert stored_bodies(broker.store, "qq") == [b"transient"]
    peer.send_method(1, commands.Basic.Ack(delivery_tag=1))
    assert stored_bodies(broker.store, "qq") == []


def test_recovered_quorum_messages_keep_their_published_delivery_mode(store):
    """RabbitMQ 3.10 returns them as published: no delivery_mode stays absent, 1 stays 1."""
    first = Broker(store=store, clock=FakeClock())
    peer = client(first, ("qq", QUORUM))
    peer.send(
        publish(1, "qq", b"no mode")
        + publish(1, "qq", b"mode 1", properties=TRANSIENT)
        + publish(1, "qq", b"mode 2", properties=PERSISTENT)
    )
    sync(first)

    second = client(Broker(store=store, clock=FakeClock()))
    back = get_all(second, "qq")
    assert [(body, header.properties.delivery_mode) for _, body, header in back] == [
        (b"no mode", None),
        (b"mode 1", 1),
        (b"mode 2", 2),
    ]


def test_a_message_read_back_from_the_store_is_persistent_only_if_published_so():
    """A recovered transient quorum message dead-lettered to a classic durable queue stays in memory there."""
    header = ContentHeader(0, 1, TRANSIENT).marshal()
    assert not Message.from_record(MessageRecord("", "qq", header, b"x")).persistent
    header = ContentHeader(0, 1, PERSISTENT).marshal()
    assert Message.from_record(MessageRecord("", "qq", header, b"x")).persistent


# ------------------------------------------------------------------ the persister


async def test_a_sync_requested_before_the_persister_is_attached_still_runs():
    """Recovery can write (a recovered message expiring at start) before the server attaches the persister:
    that request must not be lost, or no sync, confirm or commit-ok would ever come."""
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    broker.sync_barrier.request()
    Persister(broker.store, broker.sync_barrier)
    peer = Peer(broker, auto_sync=False)
    peer.handshake()
    peer.open_channel(1)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    peer.send_method(1, commands.Tx.Select())
    peer.send(publish(1, "q", b"durable", properties=PERSISTENT))
    peer.send_method(1, commands.Tx.Commit())
    sent: list[str] = []
    for _ in range(50):
        await asyncio.sleep(0.01)
        sent += names(peer)
        if "CommitOk" in sent:
            break
    assert sorted(sent) == ["CommitOk", "DeclareOk", "SelectOk"]
