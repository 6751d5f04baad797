"""Delayed messages (core.delayed, rabbitmq-delayed-message-exchange's x-delayed-message) on a sans-IO broker
whose scheduler runs on a virtual clock: declare refusals, holding and firing in order, routing by
x-delayed-type with the bindings of firing time, mandatory, confirms, deletion, the management figures."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.core.clock import VirtualClock
from amqp_server.core.flow import MESSAGE_OVERHEAD
from amqp_server.core.operations import BrokerOperations
from storage.api import MessageRecord
from storage.memory import MemoryStore
from tests.frames import FakeClock, Peer, open_peer, publish, run_persister

DELAYED = "x-delayed-message"


def broker_on_virtual_clock(store: MemoryStore | None = None) -> tuple[Broker, VirtualClock]:
    clock = VirtualClock(wall_start=1_700_000_000.0)
    return Broker(store=store or MemoryStore(), clock=FakeClock(), virtual_clock=clock), clock


def declare(peer: Peer, name: str, delayed_type: Any = "direct", durable: bool = True) -> list[tuple[int, Any]]:
    arguments = {} if delayed_type is None else {"x-delayed-type": delayed_type}
    peer.send_method(
        1, commands.Exchange.Declare(exchange=name, exchange_type=DELAYED, durable=durable, arguments=arguments)
    )
    return peer.methods()


def setup(peer: Peer, delayed_type: str = "direct", bindings: tuple[tuple[str, str, dict], ...] = ()) -> None:
    assert isinstance(declare(peer, "dx", delayed_type)[-1][1], commands.Exchange.DeclareOk)
    for queue, key, arguments in bindings:
        peer.send_method(1, commands.Queue.Declare(queue=queue, durable=True))
        peer.send_method(1, commands.Queue.Bind(queue=queue, exchange="dx", routing_key=key, arguments=arguments))
    peer.frames()


def props(delay: Any = None, persistent: bool = True, **headers: Any) -> commands.Basic.Properties:
    if delay is not None:
        headers["x-delay"] = delay
    return commands.Basic.Properties(delivery_mode=2 if persistent else 1, headers=headers)


def advance(broker: Broker, clock: VirtualClock, seconds: float) -> None:
    clock.advance(seconds, broker.scheduler)
    run_persister(broker)


# ------------------------------------------------------------------ declaring


@pytest.mark.parametrize(
    ("delayed_type", "text"),
    [
        (None, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (5, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (DELAYED, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
    ],
    ids=["missing", "not-a-string", "itself"],
)
def test_declare_without_a_usable_x_delayed_type_is_refused_as_the_plugin_does(delayed_type: Any, text: str) -> None:
    peer = open_peer()
    [(_, close)] = declare(peer, "dx", delayed_type)
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (406, text, 40, 10)


def test_declare_with_an_unknown_x_delayed_type_is_rabbitmqs_unknown_exchange_type() -> None:
    peer = open_peer()
    [(_, close)] = declare(peer, "dx", "nope")
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (503, "COMMAND_INVALID - invalid exchange type 'nope'")


def test_the_type_is_listed_with_the_plugins_description() -> None:
    types = BrokerOperations(Broker(clock=FakeClock())).exchange_types()
    assert {"name": DELAYED, "description": "Delayed Message Exchange.", "enabled": True} in types


# ------------------------------------------------------------------ holding and firing


def test_messages_are_held_until_their_delay_and_fire_in_delay_order() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    for delay, body in ((3000, b"c"), (1000, b"a"), (2000, b"b"), (2000, b"b2")):
        peer.send(publish(1, "k", body, exchange="dx", properties=props(delay)))
    operations = BrokerOperations(broker)
    assert operations.exchange("/", "dx")["messages_delayed"] == 4
    advance(broker, clock, 0.999)
    assert peer.drain("q") == []
    advance(broker, clock, 0.001)
    assert peer.drain("q") == [b"a"]
    advance(broker, clock, 5)
    assert peer.drain("q") == [b"b", b"b2", b"c"]
    assert operations.exchange("/", "dx")["messages_delayed"] == 0
    assert "messages_delayed" not in operations.exchange("/", "amq.direct")
    exchange = broker.vhosts["/"].exchanges["dx"]
    assert (exchange.stat_publish_in, exchange.stat_publish_out) == (4, 4)  # each publish counted once


@pytest.mark.parametrize("delay", [None, 0, -5000, "soon", "5e3", "-5", 0.5, True, 2**32], ids=repr)
def test_no_usable_x_delay_routes_at_once(delay: Any) -> None:
    peer = open_peer()
    setup(peer, bindings=(("q", "k", {}),))
    peer.send(publish(1, "k", b"now", exchange="dx", properties=props(delay)))
    assert peer.drain("q") == [b"now"]


@pytest.mark.parametrize(
    ("delayed_type", "bindings", "key", "headers", "expected"),
    [
        ("direct", (("a", "k", {}), ("b", "other", {})), "k", {}, {"a"}),
        ("fanout", (("a", "x", {}), ("b", "y", {})), "k", {}, {"a", "b"}),
        ("topic", (("a", "orders.*", {}), ("b", "#.eu", {}), ("c", "x.#", {})), "orders.eu", {}, {"a", "b"}),
        (
            "headers",
            (("a", "", {"x-match": "all", "region": "eu"}), ("b", "", {"x-match": "any", "region": "us"})),
            "",
            {"region": "eu"},
            {"a"},
        ),
    ],
)
def test_a_fired_message_routes_as_its_x_delayed_type(delayed_type, bindings, key, headers, expected) -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, delayed_type, bindings)
    peer.send(publish(1, key, b"m", exchange="dx", properties=props(500, **headers)))
    assert all(peer.drain(queue) == [] for queue, _, _ in bindings)
    advance(broker, clock, 0.5)
    assert {queue for queue, _, _ in bindings if peer.drain(queue) == [b"m"]} == expected


def test_bindings_are_those_of_firing_time_and_the_delivered_message_keeps_its_properties() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("early", "k", {}),))
    peer.send(publish(1, "k", b"m", exchange="dx", properties=props(1000, persistent=False, tag="t")))
    peer.send_method(1, commands.Queue.Unbind(queue="early", exchange="dx", routing_key="k"))
    peer.send_method(1, commands.Queue.Declare(queue="late"))
    peer.send_method(1, commands.Queue.Bind(queue="late", exchange="dx", routing_key="k"))
    advance(broker, clock, 1)
    assert peer.drain("early") == []
    peer.frames()
    peer.send_method(1, commands.Basic.Get(queue="late", no_ack=True))
    [header] = [v for _, v in peer.frames() if isinstance(v, ContentHeader)]
    assert header.properties.headers == {"x-delay": -1000, "tag": "t"}  # the plugin's swap: not held again
    assert header.properties.delivery_mode == 1


@pytest.mark.parametrize("delay", ["1500", 1500.9, Decimal("1500.2")], ids=repr)
def test_a_string_or_float_x_delay_is_read_as_the_plugin_reads_it(delay: Any) -> None:
    """The plugin takes longstr/shortstr (``binary_to_integer``) and float/double/decimal (truncated)."""
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    peer.send(publish(1, "k", b"m", exchange="dx", properties=props(delay)))
    advance(broker, clock, 1.499)
    assert peer.drain("q") == []
    advance(broker, clock, 0.001)
    assert peer.drain("q") == [b"m"]


def test_a_fired_message_reaching_another_delayed_exchange_is_not_held_again() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    assert isinstance(declare(peer, "first")[-1][1], commands.Exchange.DeclareOk)
    peer.send_method(1, commands.Exchange.Bind(destination="dx", source="first", routing_key="k"))
    peer.frames()
    peer.send(publish(1, "k", b"m", exchange="first", properties=props(1000)))
    advance(broker, clock, 1)
    assert peer.drain("q") == [b"m"]  # through dx at once: its x-delay is -1000 now


def test_a_held_mandatory_publish_gets_no_basic_return_but_an_immediate_unroutable_one_does() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer)
    peer.send(publish(1, "nowhere", b"held", exchange="dx", mandatory=True, properties=props(1000)))
    assert peer.methods() == []
    advance(broker, clock, 2)
    assert peer.methods() == []  # fired to no queue: dropped, as the plugin does
    peer.send(publish(1, "nowhere", b"now", exchange="dx", mandatory=True, properties=props()))
    [(_, returned)] = peer.methods()
    assert isinstance(returned, commands.Basic.Return) and returned.reply_code == 312


def test_a_persistent_held_message_is_confirmed_after_the_store_sync_a_transient_one_at_once() -> None:
    broker, _ = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    peer.send_method(1, commands.Confirm.Select())
    peer.frames()
    peer.auto_sync = False
    peer.send(publish(1, "k", b"transient", exchange="dx", properties=props(1000, persistent=False)))
    assert [(type(v), v.delivery_tag) for _, v in peer.methods()] == [(commands.Basic.Ack, 1)]
    peer.send(publish(1, "k", b"persistent", exchange="dx", properties=props(1000)))
    assert peer.methods() == []
    assert broker.store.recover().delayed[("/", "dx")][0][1] == pytest.approx(1_700_000_001.0)
    run_persister(broker)
    assert [(type(v), v.delivery_tag) for _, v in peer.methods()] == [(commands.Basic.Ack, 2)]


def test_deleting_the_exchange_drops_what_it_holds_in_memory_and_in_the_store() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    peer.send(publish(1, "k", b"persistent", exchange="dx", properties=props(1000)))
    peer.send(publish(1, "k", b"transient", exchange="dx", properties=props(1000, persistent=False)))
    peer.send_method(1, commands.Exchange.Delete(exchange="dx"))
    setup(peer, bindings=(("q", "k", {}),))  # declared again, bound again: starts empty
    assert BrokerOperations(broker).exchange("/", "dx")["messages_delayed"] == 0
    advance(broker, clock, 5)
    assert peer.drain("q") == []
    assert not broker.store.recover().delayed


def test_many_due_at_once_fire_in_batches_in_order_within_one_advance() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    for n in range(12_000):  # more than one FIRE_BATCH, all in one millisecond
        peer.connection.receive_data(publish(1, "k", b"%d" % n, exchange="dx", properties=props(100, False)))
    advance(broker, clock, 1)
    assert broker.vhosts["/"].queues["q"].message_count == 12_000
    assert peer.drain("q")[:3] == [b"0", b"1", b"2"]


def test_a_delayed_exchange_reached_by_an_exchange_binding_holds_too() -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    peer.send_method(1, commands.Exchange.Bind(destination="dx", source="amq.fanout", routing_key=""))
    peer.send(publish(1, "k", b"via e2e", exchange="amq.fanout", properties=props(1000)))
    assert peer.drain("q") == []
    advance(broker, clock, 1)
    assert peer.drain("q") == [b"via e2e"]


def test_recovered_delayed_messages_of_a_missing_exchange_are_dropped_from_the_store() -> None:
    store = MemoryStore()
    header = ContentHeader(0, 1, commands.Basic.Properties(delivery_mode=2)).marshal()
    store.put_delayed("/", "gone", 1, 1.0, MessageRecord("gone", "k", header, b"x"))
    broker_on_virtual_clock(store)
    assert not store.recover().delayed


def test_a_held_message_the_store_lost_is_logged_and_the_others_still_fire(caplog) -> None:
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("q", "k", {}),))
    for body in (b"lost", b"kept"):
        peer.send(publish(1, "k", body, exchange="dx", properties=props(1000)))
    broker.store.remove_delayed("/", "dx", [1])  # as if its record were unreadable
    advance(broker, clock, 1)
    assert peer.drain("q") == [b"kept"]
    assert "delayed message 1 of exchange 'dx' could not fire" in caplog.text


@pytest.mark.parametrize("persistent", [True, False], ids=["stored", "in-memory"])
def test_cc_and_bcc_keys_route_when_a_held_message_fires(persistent: bool) -> None:
    """CC and BCC keys route the fired message too, also when it was read back from the store (where BCC,
    already stripped from the header at publish, survives only as the hold kept it)."""
    broker, clock = broker_on_virtual_clock()
    peer = open_peer(broker)
    setup(peer, bindings=(("main", "k", {}), ("copied", "k2", {}), ("blind", "k3", {})))
    properties = props(1000, persistent=persistent, CC=["k2"], BCC=["k3"])
    peer.send(publish(1, "k", b"m", exchange="dx", properties=properties))
    advance(broker, clock, 1)
    assert [peer.drain(queue) for queue in ("main", "copied", "blind")] == [[b"m"]] * 3
    peer.send(publish(1, "k", b"m2", exchange="dx", properties=properties))
    advance(broker, clock, 1)
    peer.send_method(1, commands.Basic.Get(queue="blind", no_ack=True))
    [header] = [v for _, v in peer.frames() if isinstance(v, ContentHeader)]
    assert header.properties.headers == {"x-delay": -1000, "CC": ["k2"]}  # BCC is never delivered


def test_held_transient_messages_count_towards_the_memory_alarm_until_they_fire_or_go() -> None:
    """Messages held in memory (transient, or on a non-durable exchange) raise the memory alarm as queued ones do,
    so a publisher cannot fill the broker's memory through a delayed exchange; firing or deleting releases them."""
    broker, clock = broker_on_virtual_clock()
    broker.flow.high_watermark = 5 * (MESSAGE_OVERHEAD + 100)
    peer = open_peer(broker)
    setup(peer)  # dx, bound to nothing: what fires is dropped, unroutable
    for _ in range(8):
        peer.send(publish(1, "k", b"x" * 60, exchange="dx", properties=props(1000, persistent=False)))
    assert broker.alarms.active == {"memory"}
    advance(broker, clock, 1)
    assert broker.alarms.active == set() and broker.flow.queued_bytes == 0
    for _ in range(8):
        peer.send(publish(1, "k", b"x" * 60, exchange="dx", properties=props(1000, persistent=False)))
    assert broker.alarms.active == {"memory"}
    peer.send_method(1, commands.Exchange.Delete(exchange="dx"))
    assert broker.alarms.active == set() and broker.flow.queued_bytes == 0
