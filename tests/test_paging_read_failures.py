"""A paged-out message whose read from the store fails for a while is kept, not lost: the queue waits at that
message, retries on a timer, and delivers everything, in order, once the store can be read again.

The stores here are real ``MemoryStore`` / ``SegmentStore`` instances whose ``read_message`` raises ``OSError``
a set number of times first: a disk read error or an unreachable database on demand, which a test cannot
cause in the real thing (interop_tests/test_paging_outage.py does it for real with PostgreSQL stopped).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pamqp import commands

from amqp_server.core import paging
from amqp_server.core import queue as queue_module
from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from storage.api import MessageRecord
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, open_peer, publish

PERSISTENT = commands.Basic.Properties(delivery_mode=2)


class FailingReads:
    """Mixed into a store: ``read_message`` raises ``OSError`` while ``failures`` is above zero."""

    failures = 0
    attempts = 0
    damaged: set[int] = set()  # message ids whose record cannot ever be read (as a CRC mismatch)

    def read_message(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        self.attempts += 1
        if message_id in self.damaged:
            raise ValueError(f"record {message_id} damaged since it was written")
        if self.failures > 0:
            self.failures -= 1
            raise OSError(5, "Input/output error")
        return super().read_message(vhost, queue, message_id)  # type: ignore[misc]


class FailingMemoryStore(FailingReads, MemoryStore):
    pass


class FailingSegmentStore(FailingReads, SegmentStore):
    pass


@pytest.fixture(params=["memory", "segment"])
def store(request: Any, tmp_path: Any) -> Any:
    instance = FailingMemoryStore() if request.param == "memory" else FailingSegmentStore(tmp_path / "data")
    yield instance
    instance.close()


@pytest.fixture(autouse=True)
def small_window(monkeypatch: Any) -> None:
    monkeypatch.setattr(queue_module, "PAGE_OUT_AFTER", 3)


def bodies(peer: Any) -> list[bytes]:
    return [frame.value for _, frame in peer.frames() if type(frame).__name__ == "ContentBody"]


def with_backlog(store: Any, queues: tuple[str, ...] = ("q",), count: int = 8) -> tuple[Broker, FakeClock, Any]:
    """A broker whose queues each hold ``count`` persistent messages, all but the first 3 paged out."""
    clock = FakeClock()
    broker = Broker(store=store, clock=clock)
    peer = open_peer(broker)
    for name in queues:
        peer.send_method(1, commands.Queue.Declare(queue=name, durable=True))
        for n in range(count):
            peer.send(publish(1, name, b"%s-%d" % (name.encode(), n), properties=PERSISTENT))
    peer.frames()
    return broker, clock, peer


def retry(broker: Broker, clock: FakeClock) -> None:
    broker.scheduler.run_due(clock.advance(paging.RETRY_AFTER))


def test_a_consumer_gets_every_message_once_the_store_reads_again(store):
    broker, clock, peer = with_backlog(store)
    store.failures = 3
    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    assert bodies(peer) == [b"q-0", b"q-1", b"q-2"]  # in memory; the next one could not be read: it waits
    assert broker.vhosts["/"].queues["q"].message_count == 5
    retry(broker, clock)
    retry(broker, clock)
    assert bodies(peer) == []  # still failing: nothing skipped
    retry(broker, clock)
    assert bodies(peer) == [b"q-%d" % n for n in range(3, 8)]
    assert broker.vhosts["/"].queues["q"].message_count == 0
    assert broker.flow.queued_bytes == 0


def test_while_a_read_fails_basic_get_answers_get_empty_and_then_the_message(store):
    broker, clock, peer = with_backlog(store)
    for _ in range(3):
        peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    peer.frames()
    store.failures = 1
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    assert [type(frame) for _, frame in peer.methods()] == [commands.Basic.GetEmpty]
    attempts = store.attempts
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))  # before the retry: no new read either
    assert [type(frame) for _, frame in peer.methods()] == [commands.Basic.GetEmpty]
    assert store.attempts == attempts
    retry(broker, clock)
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    assert bodies(peer) == [b"q-3"]


def test_the_management_get_finds_nothing_while_the_read_fails_and_loses_nothing(store):
    broker, clock, peer = with_backlog(store, count=4)
    operations = BrokerOperations(broker)
    assert [m["payload"] for m in operations.get_messages("/", "q", 3, "ack_requeue_false")] == ["q-0", "q-1", "q-2"]
    store.failures = 1
    assert operations.get_messages("/", "q", 1, "ack_requeue_false") == []
    retry(broker, clock)
    assert [m["payload"] for m in operations.get_messages("/", "q", 5, "ack_requeue_false")] == ["q-3"]


def test_other_queues_deliver_while_one_waits_for_the_store(store):
    broker, clock, peer = with_backlog(store, queues=("a", "b"))
    store.failures = 1
    peer.send_method(1, commands.Basic.Consume(queue="a", no_ack=True))
    assert bodies(peer) == [b"a-0", b"a-1", b"a-2"]
    peer.send_method(1, commands.Basic.Consume(queue="b", no_ack=True))
    assert bodies(peer) == [b"b-%d" % n for n in range(8)]
    retry(broker, clock)
    assert bodies(peer) == [b"a-%d" % n for n in range(3, 8)]


def test_an_outage_is_logged_once_and_its_end_once(store, caplog):
    broker, clock, peer = with_backlog(store)
    store.failures = 4
    with caplog.at_level(logging.INFO, logger="amqp_server.queue"):
        peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
        for _ in range(4):
            retry(broker, clock)
    assert bodies(peer) == [b"q-%d" % n for n in range(8)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "could not be read back" in errors[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert ["deliveries resume" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [True]


def test_an_expired_head_waits_to_be_dead_lettered_until_it_can_be_read(store):
    broker, clock, peer = with_backlog(store, count=0)
    peer.send_method(1, commands.Queue.Declare(queue="dead", durable=True))
    arguments = {"x-message-ttl": 1000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    peer.send_method(1, commands.Queue.Declare(queue="ttl", durable=True, arguments=arguments))
    for n in range(5):
        peer.send(publish(1, "ttl", b"t%d" % n, properties=PERSISTENT))
    peer.frames()
    store.failures = 1
    broker.scheduler.run_due(clock.advance(2))  # all expire; the 4th must be read back for its dead-letter copy
    assert broker.vhosts["/"].queues["dead"].message_count == 3
    retry(broker, clock)
    peer.send_method(1, commands.Basic.Consume(queue="dead", no_ack=True))
    assert bodies(peer) == [b"t%d" % n for n in range(5)]


def test_a_record_that_can_never_be_read_is_dropped_and_the_queue_goes_on(store, caplog):
    broker, clock, peer = with_backlog(store)
    store.damaged = {5}
    peer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    assert bodies(peer) == [b"q-%d" % n for n in range(8) if n != 4]  # message id 5 is the fifth
    assert any("cannot be read back" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
