"""Auto-delete exchanges through exchange-to-exchange bindings, as RabbitMQ 3.10.8 does it (probed).

An auto-delete exchange goes when its last binding goes, whatever removed that binding: an
unbind, a deleted queue, or a deleted destination exchange.  So with
outer (auto-delete) -> inner (auto-delete) -> queue, deleting the queue removes inner, which
removes outer's last binding, so outer goes too; an explicit exchange.delete of inner removes
outer the same way.  Durable definitions leave the store with them, so a restart does not
bring them back.
"""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker
from tests.frames import FakeClock, Peer, open_peer
from tests.test_declarations import declare, ok, reply


def exchange_exists(peer: Peer, name: str) -> bool:
    frames = reply(peer, 1, commands.Exchange.Declare(exchange=name, passive=True))
    if any(isinstance(v, commands.Exchange.DeclareOk) for _, v in frames):
        return True
    [close] = [v for _, v in frames if isinstance(v, commands.Channel.Close)]
    assert (close.reply_code, close.reply_text) == (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")
    peer.send_method(1, commands.Channel.CloseOk())
    peer.open_channel(1)
    return False


def chain(peer: Peer, durable: bool = False) -> None:
    """outer (auto-delete) -> inner (auto-delete) -> q (auto-delete)."""
    for name in ("outer", "inner"):
        ok(peer, commands.Exchange.Declare(exchange=name, exchange_type="fanout", auto_delete=True, durable=durable))
    declare(peer, "q", auto_delete=True, durable=durable)
    ok(peer, commands.Exchange.Bind(destination="inner", source="outer"))
    ok(peer, commands.Queue.Bind(queue="q", exchange="inner"))


def stored_definitions(broker: Broker) -> tuple[set[str], int]:
    recovered = broker.store.recover()
    return {record.name for record in recovered.exchanges}, len(recovered.bindings)


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_deleting_the_queue_removes_inner_and_then_outer(durable):
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    chain(peer, durable)
    ok(peer, commands.Queue.Delete(queue="q"))
    assert not exchange_exists(peer, "inner")
    assert not exchange_exists(peer, "outer")
    names, bindings = stored_definitions(broker)
    assert not names & {"outer", "inner"} and bindings == 0


def test_last_consumer_leaving_the_auto_delete_queue_cascades_up_the_chain():
    peer = open_peer()
    chain(peer)
    ok(peer, commands.Basic.Consume(queue="q", consumer_tag="c"))
    ok(peer, commands.Basic.Cancel(consumer_tag="c"))
    assert not exchange_exists(peer, "inner")
    assert not exchange_exists(peer, "outer")


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_deleting_the_inner_exchange_removes_the_auto_delete_source(durable):
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    chain(peer, durable)
    ok(peer, commands.Exchange.Delete(exchange="inner"))
    assert not exchange_exists(peer, "outer")
    assert declare(peer, "q", passive=True).queue == "q"  # a queue does not auto-delete for losing bindings
    names, bindings = stored_definitions(broker)
    assert not names & {"outer", "inner"} and bindings == 0


def test_a_source_with_another_binding_stays_until_that_one_goes():
    peer = open_peer()
    for name in ("outer", "inner"):
        ok(peer, commands.Exchange.Declare(exchange=name, exchange_type="fanout", auto_delete=True))
    declare(peer, "q")
    ok(peer, commands.Exchange.Bind(destination="inner", source="outer"))
    ok(peer, commands.Queue.Bind(queue="q", exchange="outer"))
    ok(peer, commands.Exchange.Delete(exchange="inner"))
    assert exchange_exists(peer, "outer")
    ok(peer, commands.Queue.Delete(queue="q"))
    assert not exchange_exists(peer, "outer")


def test_a_source_that_is_not_auto_delete_stays():
    peer = open_peer()
    ok(peer, commands.Exchange.Declare(exchange="outer", exchange_type="fanout"))
    ok(peer, commands.Exchange.Declare(exchange="inner", exchange_type="fanout", auto_delete=True))
    declare(peer, "q")
    ok(peer, commands.Exchange.Bind(destination="inner", source="outer"))
    ok(peer, commands.Queue.Bind(queue="q", exchange="inner"))
    ok(peer, commands.Queue.Delete(queue="q"))
    assert not exchange_exists(peer, "inner")
    assert exchange_exists(peer, "outer")


def test_a_cycle_of_auto_delete_exchanges_goes_away_without_looping():
    peer = open_peer()
    for name in ("a", "b"):
        ok(peer, commands.Exchange.Declare(exchange=name, exchange_type="fanout", auto_delete=True))
    ok(peer, commands.Exchange.Bind(destination="b", source="a"))
    ok(peer, commands.Exchange.Bind(destination="a", source="b"))
    ok(peer, commands.Exchange.Delete(exchange="a"))
    assert not exchange_exists(peer, "b")
    assert not exchange_exists(peer, "a")
