"""The ``storage.api.Store`` contract, run against every store implementation, and broker recovery.

The ``store`` fixture is parametrized over ``STORES`` (the PostgreSQL store on a fresh database of
``tests.postgres_cluster``'s server); a durable store is added to that list and must pass the same
tests.  The first part exercises the store directly (put/delete of definitions and
messages, what ``recover`` returns); the second builds a ``Broker`` on a store, declares durable and
transient things over the wire, then builds a new ``Broker`` on the same store object and checks what
came back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.core.policies import Policy
from storage.api import BindingRecord, ExchangeRecord, MessageRecord, PolicyRecord, QueueRecord, Recovered, Store
from storage.memory import MemoryStore
from storage.postgres_store import PostgresStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, Peer, open_peer, publish

pytest_plugins = ["tests.postgres_cluster"]  # postgres_db: a fresh database of a throwaway PostgreSQL

STORES: list = [
    pytest.param(lambda request, path: MemoryStore(), id="memory"),
    pytest.param(lambda request, path: SegmentStore(path / "data"), id="segment"),
    pytest.param(lambda request, path: PostgresStore(request.getfixturevalue("postgres_db")), id="postgres"),
]


@pytest.fixture(params=STORES)
def store(request, tmp_path) -> Store:
    factory: Callable[[pytest.FixtureRequest, Path], Store] = request.param
    instance = factory(request, tmp_path)
    yield instance
    instance.close()


def recovered(store: Store) -> Recovered:
    store.sync()
    return store.recover()


def message(n: int) -> MessageRecord:
    header = ContentHeader(0, 2, commands.Basic.Properties(delivery_mode=2, message_id=f"m{n}")).marshal()
    return MessageRecord("amq.direct", "k", header, b"%02d" % n)


def messages_of(result: Recovered, vhost: str, queue: str) -> list[tuple[int, MessageRecord]]:
    return list(result.messages.get((vhost, queue), []))


# ------------------------------------------------------------------ the contract


def test_empty_store_recovers_nothing(store):
    result = recovered(store)
    assert (result.exchanges, result.queues, result.bindings) == ([], [], [])
    assert not any(result.messages.values())


def test_put_and_delete_exchange(store):
    exchange = ExchangeRecord("/", "x", "direct", durable=True, arguments={"alternate-exchange": "ae"})
    store.put_exchange(exchange)
    store.put_exchange(ExchangeRecord("other", "x", "direct"))
    assert sorted(recovered(store).exchanges, key=lambda r: r.vhost) == [
        exchange,
        ExchangeRecord("other", "x", "direct"),
    ]
    store.put_exchange(exchange)  # writing the same definition again keeps one
    store.delete_exchange("/", "x")
    assert recovered(store).exchanges == [ExchangeRecord("other", "x", "direct")]


def test_put_and_delete_queue(store):
    queue = QueueRecord("/", "q", durable=True, arguments={"x-max-length": 10, "x-queue-type": "classic"})
    store.put_queue(queue)
    store.put_queue(QueueRecord("/", "q2"))
    store.put_queue(queue)
    assert sorted(recovered(store).queues, key=lambda r: r.name) == [queue, QueueRecord("/", "q2")]
    store.delete_queue("/", "q")
    assert recovered(store).queues == [QueueRecord("/", "q2")]


def test_put_and_delete_binding(store):
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    store.put_queue(QueueRecord("/", "q"))
    plain = BindingRecord("/", "x", "q", "k")
    with_arguments = BindingRecord("/", "x", "q", "k", {"x-match": "all"})
    store.put_binding(plain)
    store.put_binding(plain)
    store.put_binding(with_arguments)
    assert sorted(recovered(store).bindings, key=lambda r: len(r.arguments)) == [plain, with_arguments]
    store.delete_binding(BindingRecord("/", "x", "q", "k"))
    assert recovered(store).bindings == [with_arguments]
    store.delete_binding(BindingRecord("/", "x", "q", "missing"))  # unknown bindings are ignored
    assert recovered(store).bindings == [with_arguments]


def test_put_and_delete_policy(store):
    ttl = PolicyRecord("/", "ttl", "^q", {"message-ttl": 1000, "dead-letter-exchange": "dlx"}, 1.5, "queues")
    same_name_operator = PolicyRecord("/", "ttl", ".*", {"max-length": 7}, 0, "all", operator=True)
    other_vhost = PolicyRecord("other", "ttl", "", {"alternate-exchange": "ae"}, -3, "exchanges")
    for record in (ttl, same_name_operator, other_vhost):
        store.put_policy(record)
    assert sorted(recovered(store).policies, key=repr) == sorted([ttl, same_name_operator, other_vhost], key=repr)
    changed = PolicyRecord("/", "ttl", "^q", {"message-ttl": 5}, 2, "queues")
    store.put_policy(changed)  # replaces the policy of that name, not the operator policy
    store.delete_policy("other", "ttl")
    store.delete_policy("/", "missing")  # unknown policies are ignored
    assert sorted(recovered(store).policies, key=repr) == sorted([changed, same_name_operator], key=repr)
    store.delete_policy("/", "ttl", operator=True)
    assert recovered(store).policies == [changed]


def test_broker_recovers_policies_and_applies_them(store):
    first = open_peer(Broker(store=store, clock=FakeClock()))
    ok(first, commands.Queue.Declare(queue="limited", durable=True))
    first.broker.vhosts["/"].set_policy(Policy("/", "cap", "^limited$", {"max-length": 2}, 1, "queues"))
    first.broker.vhosts["/"].set_policy(Policy("/", "op", ".", {"message-ttl": 60000}, operator=True))
    store.sync()

    second = Broker(store=store, clock=FakeClock())
    vhost = second.vhosts["/"]
    assert [p.name for p in vhost.policies.listing()] == ["cap"]
    queue = vhost.queues["limited"]
    assert (queue.policy.name, queue.operator_policy.name) == ("cap", "op")
    assert (queue.options.max_length, queue.options.message_ttl) == (2, 60000)
    vhost.clear_policy("cap")
    store.sync()
    assert Broker(store=store, clock=FakeClock()).vhosts["/"].queues["limited"].options.max_length is None


def test_delete_exchange_drops_its_bindings(store):
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    store.put_exchange(ExchangeRecord("/", "y", "direct"))
    store.put_queue(QueueRecord("/", "q"))
    store.put_binding(BindingRecord("/", "x", "q", "k"))
    store.put_binding(BindingRecord("/", "y", "q", "k"))
    store.delete_exchange("/", "x")
    assert recovered(store).bindings == [BindingRecord("/", "y", "q", "k")]


def test_messages_recover_in_queue_order_without_removed_ones(store):
    store.put_queue(QueueRecord("/", "q"))
    for n in range(1, 7):
        store.put_message("/", "q", n, message(n))
    store.remove_messages("/", "q", [2, 4])
    store.remove_messages("/", "q", [4, 99])  # already removed and unknown ids are ignored
    assert messages_of(recovered(store), "/", "q") == [
        (1, message(1)),
        (3, message(3)),
        (5, message(5)),
        (6, message(6)),
    ]


def test_messages_are_kept_per_vhost_and_queue(store):
    for vhost, queue in (("/", "a"), ("/", "b"), ("v2", "a")):
        store.put_queue(QueueRecord(vhost, queue))
    store.put_message("/", "a", 1, message(1))
    store.put_message("/", "b", 1, message(2))
    store.put_message("v2", "a", 1, message(3))
    store.remove_messages("/", "b", [1])
    result = recovered(store)
    assert messages_of(result, "/", "a") == [(1, message(1))]
    assert messages_of(result, "/", "b") == []
    assert messages_of(result, "v2", "a") == [(1, message(3))]


def test_message_record_round_trips_byte_exact(store):
    store.put_queue(QueueRecord("/", "q"))
    record = MessageRecord("ex", "rk", bytes(range(256)), bytes(range(255, -1, -1)) * 100)
    store.put_message("/", "q", 7, record)
    [(message_id, back)] = messages_of(recovered(store), "/", "q")
    assert message_id == 7
    assert (back.exchange, back.routing_key, back.header, back.body) == (
        record.exchange,
        record.routing_key,
        record.header,
        record.body,
    )


def test_stored_messages_read_back_before_and_after_sync(store):
    store.put_message("/", "q", 1, message(1))
    assert store.read_message("/", "q", 1) == message(1)  # still in the write buffer
    store.sync()
    store.put_message("/", "q", 2, message(2))
    store.sync()
    assert [store.read_message("/", "q", n) for n in (1, 2)] == [message(1), message(2)]


def test_reading_a_removed_message_fails(store):
    store.put_message("/", "q", 1, message(1))
    store.remove_messages("/", "q", [1])
    with pytest.raises(KeyError):
        store.read_message("/", "q", 1)


def test_delete_queue_drops_its_messages_and_bindings_only(store):
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    for name in ("q", "keep"):
        store.put_queue(QueueRecord("/", name))
        store.put_binding(BindingRecord("/", "x", name, "k"))
        store.put_message("/", name, 1, message(1))
    store.delete_queue("/", "q")
    result = recovered(store)
    assert result.queues == [QueueRecord("/", "keep")]
    assert result.bindings == [BindingRecord("/", "x", "keep", "k")]
    assert messages_of(result, "/", "q") == []
    assert messages_of(result, "/", "keep") == [(1, message(1))]
    store.put_queue(QueueRecord("/", "q"))  # a queue of the same name starts empty
    assert messages_of(recovered(store), "/", "q") == []


# ------------------------------------------------------------------ broker recovery

PERSISTENT = commands.Basic.Properties(delivery_mode=2, headers={"kind": "persistent"})
TRANSIENT = commands.Basic.Properties(delivery_mode=1)


def ok(peer: Peer, value, channel: int = 1) -> list:
    peer.send_method(channel, value)
    frames = peer.frames()
    assert not any(isinstance(v, (commands.Channel.Close, commands.Connection.Close)) for _, v in frames), frames
    return frames


def get_all(peer: Peer, queue: str) -> list[tuple[bool, bytes, ContentHeader]]:
    """``(redelivered, body, header)`` of every message in ``queue`` (taken and acknowledged)."""
    got = []
    while True:
        peer.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
        frames = peer.frames()
        if any(isinstance(v, commands.Basic.GetEmpty) for _, v in frames):
            return got
        get_ok = next(v for _, v in frames if isinstance(v, commands.Basic.GetOk))
        header = next(v for _, v in frames if isinstance(v, ContentHeader))
        body = b"".join(v.value for _, v in frames if isinstance(v, pamqp_body.ContentBody))
        got.append((get_ok.redelivered, body, header))


def exists(peer: Peer, value) -> bool:
    peer.send_method(1, value)
    frames = peer.frames()
    if any(isinstance(v, (commands.Queue.DeclareOk, commands.Exchange.DeclareOk)) for _, v in frames):
        return True
    [close] = [v for _, v in frames if isinstance(v, commands.Channel.Close)]
    assert close.reply_code == 404
    peer.send_method(1, commands.Channel.CloseOk())
    peer.open_channel(1)
    return False


def test_broker_recovers_durable_definitions_and_persistent_messages(store):
    first = open_peer(Broker(store=store, clock=FakeClock()))
    ok(first, commands.Exchange.Declare(exchange="dx", exchange_type="direct", durable=True))
    ok(first, commands.Exchange.Declare(exchange="tx", exchange_type="direct"))
    ok(first, commands.Queue.Declare(queue="dq", durable=True))
    ok(first, commands.Queue.Declare(queue="tq"))
    ok(first, commands.Queue.Bind(queue="dq", exchange="dx", routing_key="k"))
    for n in range(1, 5):
        first.send(publish(1, "k", b"persistent %d" % n, exchange="dx", properties=PERSISTENT))
    first.send(publish(1, "k", b"transient", exchange="dx", properties=TRANSIENT))
    first.send(publish(1, "tq", b"persistent in transient queue", properties=PERSISTENT))
    # acked: gone for good; delivered but never acked: comes back
    first.send_method(1, commands.Basic.Get(queue="dq"))
    first.send_method(1, commands.Basic.Ack(delivery_tag=1))
    first.send_method(1, commands.Basic.Get(queue="dq"))
    assert [v.delivery_tag for _, v in first.frames() if isinstance(v, commands.Basic.GetOk)] == [1, 2]
    store.sync()

    second = open_peer(Broker(store=store, clock=FakeClock()))  # the first broker is simply abandoned
    assert exists(second, commands.Exchange.Declare(exchange="dx", passive=True))
    assert not exists(second, commands.Exchange.Declare(exchange="tx", passive=True))
    assert not exists(second, commands.Queue.Declare(queue="tq", passive=True))
    ok(second, commands.Queue.Declare(queue="dq", durable=True))  # equivalent: still durable
    back = get_all(second, "dq")
    assert [(redelivered, body) for redelivered, body, _ in back] == [
        (True, b"persistent 2"),
        (True, b"persistent 3"),
        (True, b"persistent 4"),
    ]
    assert all(
        header.properties.delivery_mode == 2 and header.properties.headers == {"kind": "persistent"}
        for _, _, header in back
    )
    second.send(publish(1, "k", b"via recovered binding", exchange="dx"))
    assert [body for _, body, _ in get_all(second, "dq")] == [b"via recovered binding"]


def test_broker_does_not_recover_deleted_or_settled_state(store):
    first = open_peer(Broker(store=store, clock=FakeClock()))
    ok(first, commands.Exchange.Declare(exchange="gone", exchange_type="direct", durable=True))
    ok(first, commands.Exchange.Declare(exchange="dx", exchange_type="direct", durable=True))
    for queue in ("deleted", "purged", "unbound"):
        ok(first, commands.Queue.Declare(queue=queue, durable=True))
    ok(first, commands.Queue.Bind(queue="unbound", exchange="dx", routing_key="k"))
    ok(first, commands.Queue.Unbind(queue="unbound", exchange="dx", routing_key="k"))
    for queue in ("deleted", "purged"):
        first.send(publish(1, queue, b"x", properties=PERSISTENT))
    ok(first, commands.Exchange.Delete(exchange="gone"))
    ok(first, commands.Queue.Delete(queue="deleted"))
    ok(first, commands.Queue.Purge(queue="purged"))
    store.sync()

    second = open_peer(Broker(store=store, clock=FakeClock()))
    assert not exists(second, commands.Exchange.Declare(exchange="gone", passive=True))
    assert not exists(second, commands.Queue.Declare(queue="deleted", passive=True))
    assert get_all(second, "purged") == []
    second.send(publish(1, "k", b"no binding", exchange="dx"))
    assert get_all(second, "unbound") == []


def test_recovered_messages_are_delivered_to_consumers_and_acks_persist(store):
    first = open_peer(Broker(store=store, clock=FakeClock()))
    ok(first, commands.Queue.Declare(queue="dq", durable=True))
    first.send(b"".join(publish(1, "dq", b"%d" % n, properties=PERSISTENT) for n in range(3)))
    store.sync()

    second = open_peer(Broker(store=store, clock=FakeClock()))
    second.send_method(1, commands.Basic.Consume(queue="dq", consumer_tag="c"))
    delivers = [v for _, v in second.frames() if isinstance(v, commands.Basic.Deliver)]
    assert [(d.delivery_tag, d.redelivered) for d in delivers] == [(1, True), (2, True), (3, True)]
    second.send_method(1, commands.Basic.Ack(delivery_tag=2, multiple=True))
    store.sync()

    third = open_peer(Broker(store=store, clock=FakeClock()))
    assert [body for _, body, _ in get_all(third, "dq")] == [b"2"]


def test_durable_declare_ok_waits_for_the_store_sync(store):
    """RabbitMQ commits a durable definition before answering: a kill -9 after declare-ok must not lose it."""
    broker = Broker(store=store, clock=FakeClock())
    peer = Peer(broker, auto_sync=False)
    peer.handshake()
    peer.open_channel(1)
    peer.send_method(1, commands.Queue.Declare(queue="durable-q", durable=True))
    peer.send_method(1, commands.Queue.Declare(queue="transient-q"))
    assert [type(frame).__name__ for _, frame in peer.methods()] == ["DeclareOk"]  # only the transient one

    snapshot = broker.sync_barrier.begin()
    store.sync()
    broker.sync_barrier.end(snapshot, True)
    assert [frame.queue for _, frame in peer.methods()] == ["durable-q"]
    assert [q.name for q in store.recover().queues] == ["durable-q"]


def test_exclusive_durable_queues_are_not_stored(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="mine", durable=True, exclusive=True))
    peer.send(publish(1, "mine", b"p", properties=commands.Basic.Properties(delivery_mode=2)))
    assert store.recover().queues == [] and store.recover().messages == {}


def test_a_delivered_message_stays_in_the_store_until_it_is_acked(store):
    broker = Broker(store=store, clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=False))
    peer.frames()
    peer.send(publish(1, "q", b"keep me", properties=commands.Basic.Properties(delivery_mode=2)))
    assert any(type(frame).__name__ == "Deliver" for _, frame in peer.frames())
    assert [record.body for _, record in store.recover().messages[("/", "q")]] == [b"keep me"]
    peer.send_method(1, commands.Basic.Ack(delivery_tag=1))
    assert ("/", "q") not in store.recover().messages
