"""exchange.* and queue.* on the sans-IO core: declare (server-named, passive, equivalence, reserved
names, exclusive and auto-delete queues, counts), bind/unbind routing through amq.direct and declared
direct exchanges, purge, delete (with consumer cancel notification and if-unused/if-empty), and
exchange.delete.  Reply codes and texts are RabbitMQ 3.10's.
"""

from __future__ import annotations

import re

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker
from tests.frames import FakeClock, Peer, open_peer, publish, run_persister

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. It could be "
    "originally declared on another connection or the exclusive property value does not match that of the "
    "original declaration."
)


def of_type(frames: list, kind: type) -> list:
    return [value for _, value in frames if isinstance(value, kind)]


def reply(peer: Peer, channel: int, value) -> list:
    peer.send_method(channel, value)
    return peer.frames()


def ok(peer: Peer, value, channel: int = 1):
    """Send a method that must succeed; return its single -ok reply."""
    frames = reply(peer, channel, value)
    assert of_type(frames, commands.Channel.Close) == [] and of_type(frames, commands.Connection.Close) == [], frames
    [(reply_channel, answer)] = [(ch, v) for ch, v in frames if v.name.endswith("Ok")]
    assert reply_channel == channel
    return answer


def refused(peer: Peer, value, channel: int = 1) -> commands.Channel.Close:
    """Send a method that must fail as a channel error; acknowledge the close and reopen the channel."""
    frames = reply(peer, channel, value)
    closes = [v for ch, v in frames if ch == channel and isinstance(v, commands.Channel.Close)]
    assert len(closes) == 1, frames
    assert (closes[0].class_id, closes[0].method_id) == (value.index >> 16, value.index & 0xFFFF)
    peer.send_method(channel, commands.Channel.CloseOk())
    peer.open_channel(channel)
    return closes[0]


def error(close) -> tuple[int, str]:
    return close.reply_code, close.reply_text


def declare(peer: Peer, queue: str, channel: int = 1, **arguments) -> commands.Queue.DeclareOk:
    return ok(peer, commands.Queue.Declare(queue=queue, **arguments), channel)


def exists(peer: Peer, queue: str) -> bool:
    frames = reply(peer, 1, commands.Queue.Declare(queue=queue, passive=True))
    if of_type(frames, commands.Queue.DeclareOk):
        return True
    assert of_type(frames, commands.Channel.Close)[0].reply_code == 404
    peer.send_method(1, commands.Channel.CloseOk())
    peer.open_channel(1)
    return False


def bind(peer: Peer, queue: str, exchange: str, routing_key: str) -> None:
    ok(peer, commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=routing_key))


def two_peers() -> tuple[Peer, Peer]:
    broker = Broker(clock=FakeClock())
    return open_peer(broker), open_peer(broker)


# ------------------------------------------------------------------ queue.declare


def test_server_named_queues():
    peer = open_peer()
    names = [declare(peer, "", exclusive=True).queue for _ in range(3)]
    for name in names:
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name), name
    assert len(set(names)) == 3
    peer.send(publish(1, names[0], b"to generated"))
    assert peer.drain(names[0]) == [b"to generated"]


def test_empty_queue_name_means_last_declared_on_the_channel():
    peer = open_peer()
    name = declare(peer, "").queue
    assert ok(peer, commands.Queue.Declare(queue=name, passive=True)).queue == name
    consume_ok = ok(peer, commands.Basic.Consume(queue=""))
    assert consume_ok.consumer_tag
    assert declare(peer, name, passive=True).consumer_count == 1


def test_passive_declare_of_missing_queue_is_404():
    peer = open_peer()
    close = refused(peer, commands.Queue.Declare(queue="x", passive=True))
    assert error(close) == (404, "NOT_FOUND - no queue 'x' in vhost '/'")


def test_passive_declare_of_existing_queue_ignores_other_fields():
    peer = open_peer()
    declare(peer, "q")
    assert declare(peer, "q", passive=True, durable=True, auto_delete=True).queue == "q"


@pytest.mark.parametrize("field", ["durable", "auto_delete"])
def test_redeclare_with_different_flag_is_406(field):
    peer = open_peer()
    declare(peer, "q")
    close = refused(peer, commands.Queue.Declare(queue="q", **{field: True}))
    assert error(close) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue 'q' in vhost '/': "
        "received 'true' but current is 'false'",
    )
    assert declare(peer, "q").queue == "q"


def test_redeclare_with_an_unhashable_queue_type_is_406_not_541():
    # found by the fuzz test: the equivalence check put the received value in a set
    peer = open_peer()
    declare(peer, "q")
    close = refused(peer, commands.Queue.Declare(queue="q", arguments={"x-queue-type": ["classic"]}))
    assert close.reply_code == 406 and "inequivalent arg 'x-queue-type'" in close.reply_text
    assert declare(peer, "q").queue == "q"


def test_redeclare_non_exclusive_queue_as_exclusive_is_405():
    peer = open_peer()
    declare(peer, "q")
    close = refused(peer, commands.Queue.Declare(queue="q", exclusive=True))
    assert error(close) == (405, LOCKED.format("q"))


def test_reserved_amq_prefix_is_403():
    peer = open_peer()
    close = refused(peer, commands.Queue.Declare(queue="amq.foo"))
    assert error(close) == (403, "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'")
    close = refused(peer, commands.Queue.Declare(queue="amq.foo", passive=True))
    assert error(close) == (404, "NOT_FOUND - no queue 'amq.foo' in vhost '/'")


@pytest.mark.parametrize(
    "value",
    [
        commands.Queue.Declare(queue="excl", exclusive=True),
        commands.Queue.Declare(queue="excl"),
        commands.Queue.Declare(queue="excl", passive=True),
        commands.Basic.Consume(queue="excl"),
        commands.Basic.Get(queue="excl"),
        commands.Queue.Purge(queue="excl"),
        commands.Queue.Delete(queue="excl"),
        commands.Queue.Bind(queue="excl", exchange="amq.direct", routing_key="k"),
    ],
    ids=["declare-exclusive", "declare", "declare-passive", "consume", "get", "purge", "delete", "bind"],
)
def test_exclusive_queue_of_another_connection_is_405(value):
    owner, other = two_peers()
    declare(owner, "excl", exclusive=True)
    close = refused(other, value)
    assert error(close) == (405, LOCKED.format("excl"))
    assert declare(owner, "excl", passive=True).queue == "excl"


def test_others_may_publish_to_an_exclusive_queue():
    owner, other = two_peers()
    declare(owner, "excl", exclusive=True)
    other.send(publish(1, "excl", b"hello owner"))
    assert other.frames() == []
    assert owner.drain("excl") == [b"hello owner"]


@pytest.mark.parametrize("how", ["connection.close", "connection lost"])
def test_exclusive_queue_is_deleted_when_its_connection_closes(how):
    owner, other = two_peers()
    declare(owner, "excl", exclusive=True)
    if how == "connection.close":
        owner.send_method(0, commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    else:
        owner.connection.connection_lost()
    assert not exists(other, "excl")
    assert declare(other, "excl", exclusive=True).queue == "excl"


def test_exclusive_queue_survives_its_declaring_channel():
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "excl", channel=2, exclusive=True)
    peer.send_method(2, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    peer.frames()
    assert exists(peer, "excl")


def test_auto_delete_queue_is_deleted_after_last_consumer_cancels():
    peer = open_peer()
    declare(peer, "ad", auto_delete=True)
    ok(peer, commands.Basic.Consume(queue="ad", consumer_tag="a"))
    ok(peer, commands.Basic.Consume(queue="ad", consumer_tag="b"))
    ok(peer, commands.Basic.Cancel(consumer_tag="a"))
    assert exists(peer, "ad")
    ok(peer, commands.Basic.Cancel(consumer_tag="b"))
    assert not exists(peer, "ad")


def test_auto_delete_queue_without_consumers_ever_stays():
    peer = open_peer()
    declare(peer, "ad", auto_delete=True)
    assert exists(peer, "ad")


def test_auto_delete_queue_is_deleted_when_consumer_channel_closes():
    peer = open_peer()
    peer.open_channel(2)
    declare(peer, "ad", auto_delete=True)
    ok(peer, commands.Basic.Consume(queue="ad", consumer_tag="a"), channel=2)
    peer.send_method(2, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    peer.frames()
    assert not exists(peer, "ad")


def test_declare_ok_counts_ready_messages_and_consumers():
    peer = open_peer()
    peer.open_channel(2)
    assert (declare(peer, "q").message_count, declare(peer, "q").consumer_count) == (0, 0)
    peer.send(b"".join(publish(1, "q", b"%d" % i) for i in range(3)))
    counts = declare(peer, "q", passive=True)
    assert (counts.message_count, counts.consumer_count) == (3, 0)
    ok(peer, commands.Basic.Qos(prefetch_count=1), channel=2)
    peer.send_method(2, commands.Basic.Consume(queue="q", consumer_tag="c"))
    peer.frames()
    counts = declare(peer, "q")  # the unacked message is not counted
    assert (counts.queue, counts.message_count, counts.consumer_count) == ("q", 2, 1)


# ------------------------------------------------------------------ exchange.declare


def test_declare_direct_exchange_and_redeclare_equivalent():
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    ok(peer, commands.Exchange.Declare(exchange="x", passive=True))


def test_passive_declare_of_missing_exchange_is_404():
    peer = open_peer()
    close = refused(peer, commands.Exchange.Declare(exchange="nox", passive=True))
    assert error(close) == (404, "NOT_FOUND - no exchange 'nox' in vhost '/'")


@pytest.mark.parametrize(
    "field,received,current,changes",
    [
        ("type", "fanout", "direct", {"exchange_type": "fanout"}),
        ("durable", "true", "false", {"durable": True}),
        ("auto_delete", "true", "false", {"auto_delete": True}),
        ("internal", "true", "false", {"internal": True}),
    ],
    ids=["type", "durable", "auto_delete", "internal"],
)
def test_redeclare_exchange_with_different_properties_is_406(field, received, current, changes):
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    close = refused(peer, commands.Exchange.Declare(exchange="x", **{"exchange_type": "direct", **changes}))
    assert error(close) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange 'x' in vhost '/': "
        f"received '{received}' but current is '{current}'",
    )


def test_redeclare_amq_direct_with_its_own_properties_is_ok():
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="amq.direct", exchange_type="direct", durable=True))
    close = refused(peer, commands.Exchange.Declare(exchange="amq.direct", exchange_type="direct"))
    assert error(close) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in "
        "vhost '/': received 'false' but current is 'true'",
    )


def test_unknown_exchange_type_is_a_503_connection_error():
    peer = open_peer()
    frames = reply(peer, 1, commands.Exchange.Declare(exchange="x", exchange_type="foo"))
    [close] = of_type(frames, commands.Connection.Close)
    assert error(close) == (503, "COMMAND_INVALID - invalid exchange type 'foo'")
    assert (close.class_id, close.method_id) == (40, 10)


@pytest.mark.parametrize("passive", [False, True])
def test_declaring_the_default_exchange_is_403(passive):
    peer = open_peer()
    close = refused(peer, commands.Exchange.Declare(exchange="", exchange_type="direct", durable=True, passive=passive))
    assert error(close) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_reserved_amq_exchange_prefix_is_403():
    peer = open_peer()
    close = refused(peer, commands.Exchange.Declare(exchange="amq.foo", exchange_type="direct"))
    assert error(close) == (403, "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'")
    close = refused(peer, commands.Exchange.Declare(exchange="amq.foo", passive=True))
    assert error(close) == (404, "NOT_FOUND - no exchange 'amq.foo' in vhost '/'")


# ------------------------------------------------------------------ bind / unbind


@pytest.mark.parametrize("exchange", ["amq.direct", "x"])
def test_direct_exchange_routes_to_bound_queues_only(exchange):
    peer = open_peer()
    if exchange != "amq.direct":
        ok(peer, commands.Exchange.Declare(exchange=exchange, exchange_type="direct"))
    for queue in ("q1", "q2", "q3"):
        declare(peer, queue)
    bind(peer, "q1", exchange, "k")
    bind(peer, "q2", exchange, "k")
    bind(peer, "q3", exchange, "other")
    peer.send(publish(1, "k", b"for k", exchange=exchange))
    peer.send(publish(1, "other", b"for other", exchange=exchange))
    peer.send(publish(1, "q1", b"no binding", exchange=exchange))
    assert (peer.drain("q1"), peer.drain("q2"), peer.drain("q3")) == ([b"for k"], [b"for k"], [b"for other"])


@pytest.mark.parametrize("exchange", ["amq.direct", "x"])
def test_unbind_stops_routing(exchange):
    peer = open_peer()
    if exchange != "amq.direct":
        ok(peer, commands.Exchange.Declare(exchange=exchange, exchange_type="direct"))
    declare(peer, "q")
    bind(peer, "q", exchange, "k")
    bind(peer, "q", exchange, "k2")
    ok(peer, commands.Queue.Unbind(queue="q", exchange=exchange, routing_key="k"))
    peer.send(publish(1, "k", b"unbound", exchange=exchange))
    peer.send(publish(1, "k2", b"still bound", exchange=exchange))
    assert peer.drain("q") == [b"still bound"]


def test_binding_twice_with_the_same_key_delivers_once():
    peer = open_peer()
    declare(peer, "q")
    bind(peer, "q", "amq.direct", "k")
    bind(peer, "q", "amq.direct", "k")
    peer.send(publish(1, "k", b"once", exchange="amq.direct"))
    assert peer.drain("q") == [b"once"]


def test_binding_with_two_keys_matching_different_messages():
    peer = open_peer()
    declare(peer, "q")
    bind(peer, "q", "amq.direct", "a")
    bind(peer, "q", "amq.direct", "b")
    peer.send(publish(1, "a", b"1", exchange="amq.direct") + publish(1, "b", b"2", exchange="amq.direct"))
    assert peer.drain("q") == [b"1", b"2"]


@pytest.mark.parametrize(
    "queue,exchange,text",
    [
        ("noq", "amq.direct", "NOT_FOUND - no queue 'noq' in vhost '/'"),
        ("q", "nox", "NOT_FOUND - no exchange 'nox' in vhost '/'"),
        ("noq", "nox", "NOT_FOUND - no exchange 'nox' in vhost '/'"),
    ],
    ids=["missing-queue", "missing-exchange", "both-missing"],
)
def test_bind_to_missing_queue_or_exchange_is_404(queue, exchange, text):
    peer = open_peer()
    declare(peer, "q")
    close = refused(peer, commands.Queue.Bind(queue=queue, exchange=exchange, routing_key="k"))
    assert error(close) == (404, text)


@pytest.mark.parametrize(
    "value",
    [
        commands.Queue.Bind(queue="q", exchange="", routing_key="q"),
        commands.Queue.Unbind(queue="q", exchange="", routing_key="q"),
    ],
    ids=["bind", "unbind"],
)
def test_binding_to_the_default_exchange_is_403(value):
    peer = open_peer()
    declare(peer, "q")
    close = refused(peer, value)
    assert error(close) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


@pytest.mark.parametrize(
    "queue,exchange,routing_key",
    [
        ("q", "amq.direct", "never-bound"),
        ("noq", "amq.direct", "k"),
        ("q", "nox", "k"),
    ],
    ids=["missing-binding", "missing-queue", "missing-exchange"],
)
def test_unbind_of_something_missing_is_ok(queue, exchange, routing_key):
    peer = open_peer()
    declare(peer, "q")
    ok(peer, commands.Queue.Unbind(queue=queue, exchange=exchange, routing_key=routing_key))


# ------------------------------------------------------------------ purge / delete


def test_purge_reports_and_removes_ready_messages():
    peer = open_peer()
    declare(peer, "q")
    peer.send(b"".join(publish(1, "q", b"%d" % i) for i in range(3)))
    assert ok(peer, commands.Queue.Purge(queue="q")).message_count == 3
    assert declare(peer, "q", passive=True).message_count == 0
    assert ok(peer, commands.Queue.Purge(queue="q")).message_count == 0


def test_purge_of_missing_queue_is_404():
    peer = open_peer()
    close = refused(peer, commands.Queue.Purge(queue="noq"))
    assert error(close) == (404, "NOT_FOUND - no queue 'noq' in vhost '/'")


def test_delete_reports_message_count_and_removes_the_queue():
    peer = open_peer()
    declare(peer, "q")
    bind(peer, "q", "amq.direct", "k")
    peer.send(b"".join(publish(1, "q", b"%d" % i) for i in range(3)))
    assert ok(peer, commands.Queue.Delete(queue="q")).message_count == 3
    assert not exists(peer, "q")
    declare(peer, "q")
    peer.send(publish(1, "k", b"binding went with the queue", exchange="amq.direct"))
    assert peer.drain("q") == []


def test_delete_of_missing_queue_is_ok():
    peer = open_peer()
    assert ok(peer, commands.Queue.Delete(queue="noq")).message_count == 0


@pytest.mark.parametrize("notify", [True, False])
def test_delete_cancels_consumers_and_notifies_clients_that_asked(notify):
    broker = Broker(clock=FakeClock())
    consumer = open_peer(broker, capabilities={"consumer_cancel_notify": notify})
    deleter = open_peer(broker)
    declare(consumer, "q")
    ok(consumer, commands.Basic.Consume(queue="q", consumer_tag="c"))
    ok(deleter, commands.Queue.Delete(queue="q"))
    cancels = [(ch, v.consumer_tag) for ch, v in consumer.frames() if isinstance(v, commands.Basic.Cancel)]
    assert cancels == ([(1, "c")] if notify else [])
    declare(deleter, "q")
    deleter.send(publish(1, "q", b"after delete"))
    assert consumer.frames() == []


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_delete_ok_comes_before_the_cancel_of_the_deleting_channels_own_consumer(durable):
    """RabbitMQ's order (probed): delete-ok, then basic.cancel on the same channel; amqplib depends on it."""
    peer = open_peer()
    declare(peer, "q", durable=durable)
    ok(peer, commands.Basic.Consume(queue="q", consumer_tag="c"))
    peer.auto_sync = False
    peer.send_method(1, commands.Queue.Delete(queue="q"))
    if durable:
        assert peer.frames() == []  # both wait for the store
        run_persister(peer.broker)
    assert [(ch, type(v)) for ch, v in peer.frames()] == [(1, commands.Queue.DeleteOk), (1, commands.Basic.Cancel)]


def test_delete_if_unused_with_consumer_is_406():
    peer = open_peer()
    declare(peer, "q")
    peer.open_channel(2)
    ok(peer, commands.Basic.Consume(queue="q", consumer_tag="c"), channel=2)
    close = refused(peer, commands.Queue.Delete(queue="q", if_unused=True))
    assert error(close) == (406, "PRECONDITION_FAILED - queue 'q' in vhost '/' in use")
    assert exists(peer, "q")


def test_delete_if_empty_with_messages_is_406():
    peer = open_peer()
    declare(peer, "q")
    peer.send(publish(1, "q", b"x"))
    close = refused(peer, commands.Queue.Delete(queue="q", if_empty=True))
    assert error(close) == (406, "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty")
    assert declare(peer, "q", passive=True).message_count == 1


def test_delete_if_unused_and_if_empty_when_satisfied():
    peer = open_peer()
    declare(peer, "q")
    assert ok(peer, commands.Queue.Delete(queue="q", if_unused=True, if_empty=True)).message_count == 0
    assert not exists(peer, "q")


# ------------------------------------------------------------------ exchange.delete


def test_exchange_delete_removes_exchange_and_its_bindings():
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    declare(peer, "q")
    bind(peer, "q", "x", "k")
    ok(peer, commands.Exchange.Delete(exchange="x"))
    close = refused(peer, commands.Exchange.Declare(exchange="x", passive=True))
    assert error(close) == (404, "NOT_FOUND - no exchange 'x' in vhost '/'")
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    peer.send(publish(1, "k", b"old binding", exchange="x"))
    assert peer.drain("q") == []


def test_exchange_delete_of_missing_exchange_is_ok():
    peer = open_peer()
    ok(peer, commands.Exchange.Delete(exchange="nox"))


def test_exchange_delete_if_unused_with_binding_is_406():
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    declare(peer, "q")
    bind(peer, "q", "x", "k")
    close = refused(peer, commands.Exchange.Delete(exchange="x", if_unused=True))
    assert error(close) == (406, "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use")


@pytest.mark.parametrize(
    "exchange,text",
    [
        ("", "ACCESS_REFUSED - operation not permitted on the default exchange"),
        ("amq.direct", "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"),
    ],
    ids=["default", "amq.direct"],
)
def test_deleting_builtin_exchanges_is_403(exchange, text):
    peer = open_peer()
    close = refused(peer, commands.Exchange.Delete(exchange=exchange))
    assert error(close) == (403, text)
