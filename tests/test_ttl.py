"""Message TTL and the timers behind it, on the sans-IO core with fake clocks.

Expiry happens at the head only (RabbitMQ's classic queues): a message with a TTL
behind one without waits, and is dropped (dead-lettered) when it reaches the head.
The scheduler is the error boundary of every timer and never re-runs a timer in the
pass that re-armed it.  Expiries are stored on the wall clock, so a restart (a new
``Broker`` on the same store) keeps each message's original deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import pytest
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.core.scheduler import Scheduler
from amqp_server.server.timer import SchedulerDriver
from storage import segment_store
from storage.api import MessageRecord
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, Peer, open_peer, publish

DLX = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
PERSISTENT = commands.Basic.Properties(delivery_mode=2)


@contextlib.contextmanager
def returns_within(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block does not return in time: the bug was a busy loop."""

    def expired(signum, frame):
        raise TimeoutError(f"did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def declare(peer: Peer, queue: str, **arguments) -> commands.Queue.DeclareOk:
    peer.send_method(1, commands.Queue.Declare(queue=queue, **arguments))
    [ok] = [value for _, value in peer.frames() if isinstance(value, commands.Queue.DeclareOk)]
    return ok


def count(peer: Peer, queue: str) -> int:
    return declare(peer, queue, passive=True).message_count


def get(peer: Peer, queue: str) -> tuple[bytes | None, int | None]:
    """``(body, GetOk.message_count)``, or ``(None, None)`` for GetEmpty."""
    peer.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    frames = peer.frames()
    get_ok = [value for _, value in frames if isinstance(value, commands.Basic.GetOk)]
    if not get_ok:
        assert [value for _, value in frames if isinstance(value, commands.Basic.GetEmpty)]
        return None, None
    body = b"".join(value.value for _, value in frames if type(value).__name__ == "ContentBody")
    return body, get_ok[0].message_count


def expiring(ms: int, **properties) -> commands.Basic.Properties:
    return commands.Basic.Properties(expiration=str(ms), **properties)


def run_timers(broker: Broker, now: float) -> None:
    with returns_within(5):
        broker.scheduler.run_due(now)
    deadline = broker.scheduler.next_deadline()
    assert deadline is None or deadline > now, "a timer is due again right after the pass that ran it"


# ------------------------------------------------------------------ expiry at the head only


def test_expiring_message_behind_a_ttl_less_head_waits_then_is_dead_lettered_at_the_head():
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "dlq")
    declare(peer, "q", arguments=DLX)
    peer.send(publish(1, "q", b"no ttl"))
    peer.send(publish(1, "q", b"expires", properties=expiring(1000)))
    peer.send(publish(1, "q", b"after"))

    run_timers(peer.broker, clock.advance(5))  # froze the broker: a timer for a message not at the head

    assert count(peer, "q") == 3  # RabbitMQ too: only the head expires
    assert get(peer, "q") == (b"no ttl", 1)  # the expired message reached the head and was dropped
    assert count(peer, "dlq") == 1
    assert get(peer, "q") == (b"after", 0)
    assert get(peer, "dlq") == (b"expires", 0)


def test_an_expired_message_reaching_the_head_is_not_delivered_to_a_consumer():
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "q")
    peer.send(publish(1, "q", b"no ttl"))
    peer.send(publish(1, "q", b"expires", properties=expiring(1000)))
    run_timers(peer.broker, clock.advance(5))
    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    assert [value.value for _, value in peer.frames() if type(value).__name__ == "ContentBody"] == [b"no ttl"]
    assert count(peer, "q") == 0


def test_the_expiry_timer_follows_the_head_when_it_changes():
    """The new head's expiry is armed after a get, even if earlier than the old head's timer."""
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "dlq")
    declare(peer, "q", arguments=DLX)
    peer.send(publish(1, "q", b"no ttl"))
    peer.send(publish(1, "q", b"long", properties=expiring(60_000)))
    peer.send(publish(1, "q", b"short", properties=expiring(1000)))
    start = clock.now
    assert get(peer, "q") == (b"no ttl", 2)
    run_timers(peer.broker, clock.advance(0.5))
    assert get(peer, "q") == (b"long", 1)  # "short" is the head now: due at start + 1, not start + 60
    run_timers(peer.broker, start + 2)
    assert count(peer, "dlq") == 1  # moved by the timer alone (the dlq's count does not touch q)


# ------------------------------------------------------------------ the scheduler as error boundary


def test_a_raising_timer_callback_is_logged_once_and_other_queues_still_expire(caplog):
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "dlq")
    declare(peer, "q", arguments={**DLX, "x-message-ttl": 1000})
    peer.send(publish(1, "q", b"expires"))

    def broken(now: float) -> None:
        raise RuntimeError("broken timer")

    peer.broker.scheduler.call_at(clock.now + 0.5, broken)  # due before the queue's expiry, in the same pass

    with caplog.at_level(logging.ERROR, logger="amqp_server.scheduler"):
        run_timers(peer.broker, clock.advance(2))
    assert count(peer, "dlq") == 1
    [record] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert record.exc_info is not None and "broken timer" in caplog.text


def test_a_timer_rearmed_at_a_past_deadline_runs_at_the_next_pass_not_in_this_one():
    clock = FakeClock()
    scheduler = Scheduler(clock)
    calls = []

    def again(now: float) -> None:
        calls.append(now)
        if len(calls) < 100:  # bounded, so the old busy loop ends (and the test fails) instead of hanging
            scheduler.call_at(now - 1, again)

    scheduler.call_at(clock.now, again)
    scheduler.run_due(clock.now)
    assert len(calls) == 1
    scheduler.run_due(clock.now)
    assert len(calls) == 2


def test_a_callback_cancelled_by_an_earlier_one_of_the_same_pass_does_not_run():
    clock = FakeClock()
    scheduler = Scheduler(clock)
    ran = []
    later = None

    def first(now: float) -> None:
        ran.append("first")
        later.cancel()

    scheduler.call_at(clock.now, first)
    later = scheduler.call_at(clock.now, lambda now: ran.append("later"))
    scheduler.run_due(clock.now)
    assert ran == ["first"]


async def test_the_driver_runs_timers_registered_before_it_existed():
    """Recovery registers timers before the server starts its driver."""
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(loop.time)
    fired = loop.create_future()
    scheduler.call_at(loop.time(), fired.set_result)
    driver = SchedulerDriver(scheduler)
    try:
        await asyncio.wait_for(fired, 5)
    finally:
        driver.stop()


async def test_the_driver_stays_armed_after_a_callback_raises(caplog):
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(loop.time)
    driver = SchedulerDriver(scheduler)
    fired = loop.create_future()

    def broken(now: float) -> None:
        raise RuntimeError("broken timer")

    try:
        with caplog.at_level(logging.ERROR, logger="amqp_server.scheduler"):
            scheduler.call_at(loop.time(), broken)
            scheduler.call_at(loop.time() + 0.01, fired.set_result)  # due after the pass that raised
            await asyncio.wait_for(fired, 5)
    finally:
        driver.stop()
    assert "broken timer" in caplog.text


# ------------------------------------------------------------------ expiry across a restart


@pytest.fixture(params=["memory", "segment", "segment-paged-out"])
def reopen(request, tmp_path, monkeypatch):
    """A function returning the store to build a broker on: the same one again, or reopened from disk."""
    if request.param == "segment-paged-out":
        monkeypatch.setattr(segment_store, "EAGER_RECORDS", 0)  # recovered as StoredMessage: index only
    opened: list = []

    def store():
        if request.param == "memory":
            if not opened:
                opened.append(MemoryStore())
            return opened[-1]
        if opened:
            opened[-1].close()
        opened.append(SegmentStore(tmp_path / "data"))
        return opened[-1]

    yield store
    opened[-1].close()


def test_a_recovered_message_expires_at_its_original_deadline(reopen):
    wall = FakeClock(1_700_000_000.0)
    first = open_peer(Broker(store=reopen(), clock=FakeClock(1000.0), wall_clock=wall))
    declare(first, "dlq", durable=True)
    declare(first, "q", durable=True, arguments={**DLX, "x-message-ttl": 3000})
    first.send(publish(1, "q", b"queue ttl", properties=PERSISTENT))
    first.send(publish(1, "q", b"own ttl", properties=expiring(2000, delivery_mode=2)))

    wall.advance(1)  # down for a second; the new process's monotonic clock starts anywhere
    clock = FakeClock(50.0)
    second = open_peer(Broker(store=reopen(), clock=clock, wall_clock=wall))
    restart = clock.now
    second.send(publish(1, "q", b"new", properties=PERSISTENT))  # behind recovered heads (the old freeze)
    run_timers(second.broker, clock.advance(0.5))
    assert count(second, "q") == 3
    run_timers(second.broker, restart + 1.5)  # 2.5 s after the publish: both still there
    assert count(second, "dlq") == 0
    run_timers(second.broker, restart + 2.1)  # past 3 s after the publish, long before restart + 3
    assert count(second, "dlq") == 2
    assert get(second, "q") == (b"new", 0)


def test_a_record_stored_without_its_expiry_gets_the_queue_ttl_from_the_restart():
    """Records written before expiries were stored: the publish time is unknown, the TTL still applies."""
    store = MemoryStore()
    first = open_peer(Broker(store=store, clock=FakeClock()))
    declare(first, "dlq", durable=True)
    declare(first, "q", durable=True, arguments={**DLX, "x-message-ttl": 3000})
    store.put_message("/", "q", 1, MessageRecord("", "q", publish_header(), b"old"))  # as an old store had it

    clock = FakeClock(50.0)
    second = open_peer(Broker(store=store, clock=clock))
    run_timers(second.broker, clock.advance(2.9))
    assert count(second, "dlq") == 0
    run_timers(second.broker, clock.advance(0.2))
    assert count(second, "dlq") == 1


def publish_header() -> bytes:
    return ContentHeader(0, 3, PERSISTENT).marshal()
