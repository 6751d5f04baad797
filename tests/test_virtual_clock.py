"""The virtual clock (core.clock): time stands still until advance(), which runs due timers in deadline order."""

from __future__ import annotations

import pytest

from amqp_server.core.broker import Broker
from amqp_server.core.clock import VirtualClock
from amqp_server.core.scheduler import Scheduler


def test_time_stands_still_until_advanced_and_wall_time_moves_with_it() -> None:
    clock = VirtualClock(wall_start=1_000_000.0, start=5.0)
    assert (clock.now(), clock.wall_now()) == (5.0, 1_000_000.0)
    clock.advance(30)
    assert (clock.now(), clock.wall_now()) == (35.0, 1_000_030.0)


def test_time_does_not_go_back() -> None:
    with pytest.raises(ValueError):
        VirtualClock(0.0).advance(-1)


def test_advance_runs_timers_due_by_then_each_at_its_own_time() -> None:
    clock = VirtualClock(0.0)
    scheduler = Scheduler(clock.now)
    ran: list[tuple[str, float]] = []
    scheduler.call_at(30.0, lambda now: ran.append(("ttl", now)))
    scheduler.call_at(10.0, lambda now: ran.append(("expires", now)))
    clock.advance(29.9, scheduler)
    assert ran == [("expires", 10.0)]
    clock.advance(0.1, scheduler)
    assert ran == [("expires", 10.0), ("ttl", 30.0)]
    assert clock.now() == 30.0


def test_a_timer_set_by_a_timer_runs_within_the_same_advance() -> None:
    """A message dead-lettered at 30 s into a queue with a 20 s TTL is gone after advance(60)."""
    clock = VirtualClock(0.0)
    scheduler = Scheduler(clock.now)
    ran: list[float] = []
    scheduler.call_at(30.0, lambda now: scheduler.call_at(now + 20.0, ran.append))
    clock.advance(60, scheduler)
    assert ran == [50.0]
    assert clock.now() == 60.0


def test_a_broker_on_a_virtual_clock_expires_messages_on_it_and_keeps_connection_time_real() -> None:
    clock = VirtualClock(wall_start=2_000_000.0)
    broker = Broker(virtual_clock=clock, clock=lambda: 123.0)
    assert broker.scheduler.clock() == 0.0
    assert broker.wall_clock() == 2_000_000.0
    assert broker.vhosts["/"].wall_clock() == 2_000_000.0
    assert broker.clock() == 123.0  # heartbeats and handshake deadlines: real time
    clock.advance(10)
    assert broker.scheduler.clock() == 10.0
    assert broker.wall_clock() == 2_000_010.0
