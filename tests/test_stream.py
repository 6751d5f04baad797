"""Stream queues in the sans-IO core: offsets, the x-stream-offset header, cursors, retention, recovery.

Frames in, frames out, on a ``MemoryStore`` (recovery: a second ``Broker`` on the same store) and on
a ``SegmentStore`` reopened from its directory; time is a ``FakeClock`` moved by the test.
"""

from __future__ import annotations

import datetime

import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from amqp_server.core import offset_log
from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.core.policies import Policy
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, Peer, open_peer, publish

STREAM = {"x-queue-type": "stream"}
WALL = 1_800_000_000.0


def broker(store=None, wall: FakeClock | None = None) -> Broker:
    return Broker(store=store or MemoryStore(), clock=FakeClock(), wall_clock=wall or FakeClock(WALL))


def declare(peer: Peer, name: str = "s", **arguments) -> list:
    peer.send_method(1, commands.Queue.Declare(queue=name, durable=True, arguments={**STREAM, **arguments}))
    return peer.methods()


def publish_all(peer: Peer, bodies: list[bytes], queue: str = "s") -> None:
    for body in bodies:
        peer.send(publish(1, queue, body))


def consume(peer: Peer, offset: object = None, prefetch: int = 1000, queue: str = "s", tag: str = "c") -> list:
    peer.send_method(1, commands.Basic.Qos(prefetch_count=prefetch))
    arguments = {} if offset is None else {"x-stream-offset": offset}
    peer.send_method(1, commands.Basic.Consume(queue=queue, consumer_tag=tag, arguments=arguments))
    return deliveries(peer)


def deliveries(peer: Peer) -> list[tuple[str, int, int, bytes]]:
    """``(consumer tag, delivery tag, x-stream-offset, body)`` of each delivery in the output."""
    out, current = [], None
    for _, frame in peer.frames():
        if isinstance(frame, commands.Basic.Deliver):
            current = [frame.consumer_tag, frame.delivery_tag, None, b""]
            out.append(current)
        elif isinstance(frame, ContentHeader) and current is not None:
            current[2] = frame.properties.headers["x-stream-offset"]
        elif isinstance(frame, ContentBody) and current is not None:
            current[3] += frame.value
    return [tuple(item) for item in out]


def bodies(delivered: list) -> list[bytes]:
    return [body for _, _, _, body in delivered]


def closed(peer: Peer) -> tuple[int, str] | None:
    for _, frame in peer.frames():
        if isinstance(frame, (commands.Channel.Close, commands.Connection.Close)):
            return frame.reply_code, frame.reply_text
    return None


TEN = [b"m%d" % n for n in range(10)]
QUEUE_S = "queue 's' in vhost '/'"


@pytest.mark.parametrize(
    ("offset", "first"),
    [("first", 0), ("last", 9), ("next", 10), (None, 10), (4, 4), (-3, 0), (1000, 10)],
)
def test_a_consumer_starts_at_the_offset_it_asked_for(offset, first):
    peer = open_peer(broker())
    declare(peer)
    publish_all(peer, TEN)
    delivered = consume(peer, offset)
    assert [o for _, _, o, _ in delivered] == list(range(first, 10))
    publish_all(peer, [b"later"])
    assert deliveries(peer)[0][2:] == (10, b"later")  # and goes on with what is published next


def test_timestamp_and_interval_offsets_find_the_first_message_at_least_that_new():
    wall = FakeClock(WALL)
    peer = open_peer(broker(wall=wall))
    declare(peer)
    publish_all(peer, [b"old"])
    wall.advance(7200)
    publish_all(peer, [b"new"])
    moment = datetime.datetime.fromtimestamp(WALL + 3600, tz=datetime.UTC)
    assert bodies(consume(peer, moment, tag="t")) == [b"new"]
    assert bodies(consume(peer, "1h", tag="h")) == [b"new"]
    assert bodies(consume(peer, "3h", tag="h3")) == [b"old", b"new"]
    assert bodies(consume(peer, "1D", tag="d")) == [b"old", b"new"]


def test_deliveries_carry_their_offset_as_a_long_header_and_keep_the_others():
    peer = open_peer(broker())
    declare(peer)
    properties = commands.Basic.Properties(headers={"h": "v"}, message_id="id")
    peer.send(publish(1, "s", b"x", properties=properties))
    consume(peer, "first", tag="c1")  # consumed, and drained, by a first consumer
    peer.send_method(1, commands.Basic.Qos(prefetch_count=10))
    peer.send_method(1, commands.Basic.Consume(queue="s", consumer_tag="c2", arguments={"x-stream-offset": "first"}))
    headers = [f for _, f in peer.frames() if isinstance(f, ContentHeader)][0].properties
    assert headers.headers == {"h": "v", "x-stream-offset": 0}
    assert headers.message_id == "id"


def test_acks_give_credit_back_and_remove_nothing():
    peer = open_peer(broker())
    declare(peer)
    publish_all(peer, TEN)
    first = consume(peer, "first", prefetch=3)
    assert [o for _, _, o, _ in first] == [0, 1, 2]
    peer.send_method(1, commands.Basic.Ack(delivery_tag=first[-1][1], multiple=True))
    assert [o for _, _, o, _ in deliveries(peer)] == [3, 4, 5]
    peer.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
    peer.frames()
    assert [o for _, _, o, _ in consume(peer, "first", tag="again")][:3] == [0, 1, 2]  # all still there


def test_ten_consumers_at_ten_offsets_read_one_log():
    peer = open_peer(broker())
    declare(peer)
    publish_all(peer, TEN)
    for n in range(10):
        delivered = consume(peer, n, tag=f"c{n}")
        assert [o for _, _, o, _ in delivered] == list(range(n, 10))
    publish_all(peer, [b"all"])
    assert sorted(tag for tag, *_ in deliveries(peer)) == sorted(f"c{n}" for n in range(10))
    queue = peer.broker.vhosts["/"].queues["s"]
    assert len(queue.log._tail) == 11  # one copy of each message, whatever the number of consumers


def test_consumers_behind_the_in_memory_tail_read_from_the_store(monkeypatch):
    monkeypatch.setattr(offset_log, "TAIL_ENTRIES", 5)
    monkeypatch.setattr(offset_log, "CHUNK", 4)
    monkeypatch.setattr(offset_log, "CACHE_CHUNKS", 2)
    peer = open_peer(broker())
    declare(peer)
    publish_all(peer, [b"%d" % n for n in range(30)])
    delivered = consume(peer, "first")
    assert bodies(delivered) == [b"%d" % n for n in range(30)]
    log = peer.broker.vhosts["/"].queues["s"].log
    assert len(log._tail) == 5 and len(log._cache) <= 2


@pytest.mark.parametrize(
    ("prefetch", "no_ack", "expected"),
    [
        (0, False, (406, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''")),
        (0, True, (406, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''")),
        (
            10,
            True,
            (540, "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's' in vhost '/'"),
        ),
    ],
)
def test_consume_needs_a_prefetch_count_and_manual_acks(prefetch, no_ack, expected):
    peer = open_peer(broker())
    declare(peer)
    if prefetch:
        peer.send_method(1, commands.Basic.Qos(prefetch_count=prefetch))
    peer.send_method(1, commands.Basic.Consume(queue="s", no_ack=no_ack))
    assert closed(peer) == expected


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("2x", (406, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 's' in vhost '/': "
                     '{invalid_stream_offset_arg,{longstr,<<"2x">>}}')),
        ("0s", (406, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 's' in vhost '/': "
                     '{invalid_stream_offset_arg,{longstr,<<"0s">>}}')),
        ("bogus", (541, "INTERNAL_ERROR")),
        ("-1h", (541, "INTERNAL_ERROR")),
        (True, (541, "INTERNAL_ERROR")),
    ],
)  # fmt: skip
def test_bad_offsets_get_rabbitmqs_answers(offset, expected):
    peer = open_peer(broker())
    declare(peer)
    peer.send_method(1, commands.Basic.Qos(prefetch_count=10))
    peer.frames()
    peer.send_method(1, commands.Basic.Consume(queue="s", arguments={"x-stream-offset": offset}))
    assert closed(peer) == expected


def refused(peer: Peer, value) -> tuple[int, str] | None:
    peer.send_method(1, value)
    return closed(peer)


def test_get_and_purge_are_refused():
    peer = open_peer(broker())
    declare(peer)
    assert refused(peer, commands.Basic.Get(queue="s")) == (
        540,
        "NOT_IMPLEMENTED - basic.get not supported by stream queues queue 's' in vhost '/'",
    )
    peer = open_peer(broker())
    declare(peer)
    assert refused(peer, commands.Queue.Purge(queue="s")) == (
        540,
        "NOT_IMPLEMENTED - queue.purge not supported by stream queues queue 's' in vhost '/'",
    )


@pytest.mark.parametrize("requeue", [True, False])
@pytest.mark.parametrize("kind", ["nack", "reject"])
def test_nack_and_reject_are_refused(kind, requeue):
    peer = open_peer(broker())
    declare(peer)
    publish_all(peer, [b"x"])
    tag = consume(peer, "first")[0][1]
    method = (
        commands.Basic.Nack(delivery_tag=tag, requeue=requeue)
        if kind == "nack"
        else commands.Basic.Reject(delivery_tag=tag, requeue=requeue)
    )
    assert refused(peer, method) == (
        540,
        "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue 's' in vhost '/'",
    )


@pytest.mark.parametrize(
    ("declare_args", "expected"),
    [
        ({"durable": False}, "PRECONDITION_FAILED - invalid property 'non-durable' for queue 's' in vhost '/'"),
        ({"exclusive": True}, "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 's' in vhost '/'"),
        ({"auto_delete": True}, "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 's' in vhost '/'"),
        (
            {"arguments": {**STREAM, "x-max-length": 5}},
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 's' in vhost '/' of queue type "
            "rabbit_stream_queue",
        ),
        (
            {"arguments": {**STREAM, "x-max-age": "1.5h"}},
            "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age",
        ),
        (
            {"arguments": {**STREAM, "x-max-length-bytes": -1}},
            "PRECONDITION_FAILED - invalid arg 'x-max-length-bytes' for queue 's' in vhost '/': {value_negative,-1}",
        ),
    ],
)
def test_declarations_rabbitmq_refuses(declare_args, expected):
    peer = open_peer(broker())
    fields = {"queue": "s", "durable": True, "arguments": STREAM, **declare_args}
    assert refused(peer, commands.Queue.Declare(**fields)) == (406, expected)


def test_declare_ok_counts_no_messages_and_the_management_fields_count_the_log():
    peer = open_peer(broker())
    declare(peer, **{"x-max-age": "7D"})
    publish_all(peer, TEN)
    (_, declare_ok), *_ = declare(peer, **{"x-max-age": "7D"})
    assert declare_ok.message_count == 0
    consume(peer, "first", prefetch=4)
    info = BrokerOperations(peer.broker, "rabbit@test").queue("/", "s")
    assert info is not None
    assert (info["type"], info["messages"], info["messages_ready"], info["messages_unacknowledged"]) == (
        "stream",
        10,
        10,
        0,
    )
    assert (info["members"], info["online"], info["readers"]) == (["rabbit@test"], ["rabbit@test"], {"rabbit@test": 1})
    assert "backing_queue_status" not in info and "message_bytes" not in info


def retention_broker(wall: FakeClock, **arguments) -> Peer:
    peer = open_peer(broker(wall=wall))
    declare(peer, **{"x-stream-max-segment-size-bytes": 1000, **arguments})
    return peer


def test_max_length_bytes_drops_whole_segments_and_never_the_active_one():
    peer = retention_broker(FakeClock(WALL), **{"x-max-length-bytes": 3000})
    publish_all(peer, [b"x" * 100 for _ in range(100)])
    log = peer.broker.vhosts["/"].queues["s"].log
    assert log.first > 0 and log.first in log.segments  # a segment boundary
    assert log.total_bytes <= 3000 + 1000  # at most the limit plus the segment that went over it
    delivered = consume(peer, "first")
    assert [o for _, _, o, _ in delivered] == list(range(log.first, 100))


def test_max_age_drops_segments_whose_newest_message_is_too_old():
    wall = FakeClock(WALL)
    peer = retention_broker(wall, **{"x-max-age": "1h"})
    publish_all(peer, [b"x" * 100 for _ in range(20)])  # a few segments
    wall.advance(7200)
    publish_all(peer, [b"y" * 100 for _ in range(20)])  # new segments roll: the old ones are evaluated
    log = peer.broker.vhosts["/"].queues["s"].log
    assert 10 <= log.first <= 20  # the old segments are gone but the one that was being written then
    delivered = consume(peer, "first")
    assert bodies(delivered)[-20:] == [b"y" * 100] * 20
    assert [o for _, _, o, _ in delivered] == list(range(log.first, 40))


def test_a_recovered_stream_keeps_its_offsets_and_goes_on_from_them():
    store = MemoryStore()
    peer = open_peer(broker(store))
    declare(peer)
    publish_all(peer, TEN)
    again = open_peer(broker(store))
    publish_all(again, [b"after"])
    delivered = consume(again, "first")
    assert [(o, b) for _, _, o, b in delivered] == [(n, b"m%d" % n) for n in range(10)] + [(10, b"after")]


def test_a_stream_survives_a_reopened_segment_store_with_retention(tmp_path):
    store = SegmentStore(tmp_path)
    peer = open_peer(broker(store))
    declare(peer, **{"x-stream-max-segment-size-bytes": 1000, "x-max-length-bytes": 3000})
    publish_all(peer, [b"x%03d" % n for n in range(100)])
    first = peer.broker.vhosts["/"].queues["s"].log.first
    store.close()
    reopened = SegmentStore(tmp_path)
    again = open_peer(broker(reopened))
    delivered = consume(again, "first")
    assert [(o, b) for _, _, o, b in delivered] == [(n, b"x%03d" % n) for n in range(first, 100)]
    log = again.broker.vhosts["/"].queues["s"].log
    assert log.segments[0] == first
    reopened.close()


def test_deleting_a_stream_forgets_its_log():
    store = MemoryStore()
    peer = open_peer(broker(store))
    declare(peer)
    publish_all(peer, TEN)
    peer.send_method(1, commands.Queue.Delete(queue="s"))
    (_, delete_ok), *_ = peer.methods()
    assert delete_ok.message_count == 0
    declare(peer)
    assert consume(peer, "first") == []


@pytest.mark.parametrize("apply_to", ["streams", "queues", "all"])
def test_a_policy_sets_retention_and_segment_size(apply_to):
    peer = open_peer(broker())
    vhost = peer.broker.vhosts["/"]
    definition = {"max-length-bytes": 3000, "stream-max-segment-size-bytes": 1000, "max-age": "1D"}
    vhost.set_policy(Policy("/", "retention", "^s$", definition, apply_to=apply_to))
    declare(peer)
    queue = vhost.queues["s"]
    assert (queue.options.max_length_bytes, queue.options.max_segment_size, queue.options.max_age) == (
        3000,
        1000,
        86400,
    )
    publish_all(peer, [b"x" * 100 for _ in range(100)])
    assert queue.log.first > 0


def test_a_classic_queue_policy_does_not_apply_to_streams():
    peer = open_peer(broker())
    vhost = peer.broker.vhosts["/"]
    vhost.set_policy(Policy("/", "classic", "^s$", {"max-length-bytes": 3000}, apply_to="classic_queues"))
    declare(peer)
    assert vhost.queues["s"].options.max_length_bytes is None
