"""Broker state that must not grow with churn: after many cycles it is back to (or stays under) a bound.

Found by the chaos soak (benchmarks/chaos_soak.py), whose RSS grew for minutes while its queues stayed
empty.  Each test repeats one cycle of ordinary traffic many times and asserts on the size of the
structure that grew, not on memory or time.
"""

from __future__ import annotations

from pamqp import commands

from amqp_server.core.access import ALLOWED_CACHE_LIMIT
from amqp_server.core.broker import Broker
from amqp_server.core.scheduler import COMPACT_MIN, Scheduler
from tests.frames import FakeClock, Peer, open_peer, publish


def _methods(peer: Peer) -> list:
    return [value for _, value in peer.methods()]


def test_permission_cache_stays_bounded_while_names_churn():
    """Every passed check was remembered by resource name (up to 100,000): names of deleted queues and
    exchanges stayed in memory.  Declare/bind/publish/delete of fresh names keeps it under its limit."""
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    for index in range(ALLOWED_CACHE_LIMIT):  # ≥ 3 distinct checks per cycle: well past the limit
        exchange = f"churn.x.{index}"
        peer.send_method(1, commands.Exchange.Declare(exchange=exchange, exchange_type="fanout"))
        peer.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
        queue = _methods(peer)[-1].queue
        peer.send_method(1, commands.Queue.Bind(queue=queue, exchange=exchange))
        peer.send(publish(1, "", b"x", exchange=exchange))
        peer.send_method(1, commands.Queue.Delete(queue=queue))
        peer.send_method(1, commands.Exchange.Delete(exchange=exchange))
        assert isinstance(_methods(peer)[-1], commands.Exchange.DeleteOk)
    assert len(broker.access._allowed) <= ALLOWED_CACHE_LIMIT
    assert not broker.vhosts["/"].queues and len(broker.vhosts["/"].exchanges) == 7  # only the built-ins


def test_cancelled_timers_do_not_pile_up_behind_a_live_one():
    """A cancelled timer left the heap only on reaching its top: behind a live earlier timer, cancelled
    ones with later deadlines stayed (with the queue their callback is bound to)."""
    scheduler = Scheduler(FakeClock())
    fired = []
    scheduler.call_at(1_800.0, fired.append)  # live, earlier than every cancelled one
    for index in range(10_000):
        scheduler.call_at(3_600.0 + index, fired.append).cancel()
    assert len(scheduler._heap) <= 2 * COMPACT_MIN + 2
    assert scheduler.next_deadline() == 1_800.0
    scheduler.run_due(10_000_000.0)
    assert fired == [10_000_000.0] and scheduler.next_deadline() is None


def test_queue_head_ttl_changes_leave_no_cancelled_timers():
    """The soak's confirm publishers: an hour's TTL and a few ms mixed on one consumed queue.  Each short
    head cancelled the hour's timer and armed a new one, and the cancelled one stayed an hour in the heap
    whenever any live timer was earlier (here: a parked message with a 30-minute TTL on another queue)."""
    clock = FakeClock()
    broker = Broker(clock=clock)
    peer = open_peer(broker)
    for queue in ("parked", "busy"):
        peer.send_method(1, commands.Queue.Declare(queue=queue))
    peer.send(publish(1, "parked", b"p", properties=commands.Basic.Properties(expiration="1800000")))
    for _ in range(1_000):
        for expiration in ("3600000", "10"):
            peer.send(publish(1, "busy", b"b", properties=commands.Basic.Properties(expiration=expiration)))
            peer.send_method(1, commands.Basic.Get(queue="busy", no_ack=True))
        clock.advance(0.02)
        broker.scheduler.run_due(clock.now)
    assert sum(isinstance(value, commands.Basic.GetOk) for value in _methods(peer)) == 2_000
    assert len(broker.scheduler._heap) <= 2 * COMPACT_MIN + 3
    clock.advance(1800)
    broker.scheduler.run_due(clock.now)  # the parked message still expires on time
    peer.send_method(1, commands.Queue.Declare(queue="parked", passive=True))
    assert _methods(peer)[-1].message_count == 0
