"""Message tracing on the sans-IO core: the firehose's copies on amq.rabbitmq.trace, byte for byte as RabbitMQ 3.10
sends them (probed: routing keys, header entries, their order and wire types, the body), when they are made (every
publish, basic.deliver and basic.get-ok; never for the trace copies themselves), on/off per vhost and kept in
access.json; and the live tail's watchers (filters, the bounded queue, the lines they make)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pamqp import commands

from amqp_server.core import tracing
from amqp_server.core.access import Permission
from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.core.tail import PREVIEW_BYTES, Watcher
from amqp_server.http import app as http_app
from amqp_server.http import tail_api
from amqp_server.http.context import Context
from amqp_server.ops import access as ops_access
from amqp_server.wire.properties import table_entries
from tests.frames import FakeClock, Peer, content, method, open_peer, parse, publish
from tests.test_channel import messages, raw_frames

NODE = "rabbit@testhost"


def traced_broker(*vhosts: str) -> Broker:
    broker = Broker(clock=FakeClock(), wall_clock=lambda: 1700000000.5)
    broker.access.traced_vhosts.update(vhosts or ("/",))
    tracing.apply(broker, NODE)
    return broker


def peer_of(broker: Broker, peer: str = "127.0.0.1:5555") -> Peer:
    client = Peer(broker, peer=peer)
    client.handshake()
    client.connection.local_address = "127.0.0.1:5672"
    client.open_channel(1)
    return client


def declare(peer: Peer, queue: str, *, bind_trace: bool = False) -> None:
    peer.send_method(1, commands.Queue.Declare(queue=queue))
    if bind_trace:
        peer.send_method(1, commands.Queue.Bind(queue=queue, exchange="amq.rabbitmq.trace", routing_key="#"))
    peer.frames()


def trace_copies(peer: Peer, queue: str = "trace") -> list[tuple[str, bytes, bytes]]:
    """Every copy in ``queue``, taken with basic.get no-ack: (routing key, raw content header payload, body)."""
    found = []
    while True:
        peer.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
        output = peer.connection.data_to_send()
        frames = raw_frames(output)
        got = [m for m in messages(parse(output)) if isinstance(m[1], commands.Basic.GetOk)]
        if not got:
            return found
        header_payload = next(payload for frame_type, _, payload in frames if frame_type == 2)
        found.append((got[0][1].routing_key, header_payload, got[0][3]))


def bodies_of(peer: Peer) -> list[bytes]:
    return [body for _, _, _, body in messages(peer.frames())]


# what RabbitMQ puts in the table, built by hand here (not with tracing.py's helpers)
def longstr(text: str) -> bytes:
    return b"S" + struct.pack(">I", len(text.encode())) + text.encode()


def signed(number: int) -> bytes:
    return b"I" + struct.pack(">i", number)


def array(*texts: str) -> bytes:
    body = b"".join(longstr(text) for text in texts)
    return b"A" + struct.pack(">I", len(body)) + body


def table(*entries: tuple[str, bytes]) -> bytes:
    body = b"".join(bytes((len(key),)) + key.encode() + value for key, value in entries)
    return b"F" + struct.pack(">I", len(body)) + body


CONNECTION = "127.0.0.1:5555 -> 127.0.0.1:5672"
PROPERTIES = commands.Basic.Properties(
    content_type="text/plain",
    headers={"h1": "v"},
    delivery_mode=2,
    priority=3,
    expiration="60000",
    timestamp=datetime.datetime.fromtimestamp(1700000000, datetime.UTC),
)
# RabbitMQ's properties table for PROPERTIES: the last property first; octets and the timestamp as signed ints,
# strings as longstr, the headers table as it came (pamqp encodes "v" as a longstr)
PROPERTIES_TABLE = table(
    ("timestamp", signed(1700000000)),
    ("expiration", longstr("60000")),
    ("priority", signed(3)),
    ("delivery_mode", signed(2)),
    ("headers", table(("h1", longstr("v")))),
    ("content_type", longstr("text/plain")),
)


def test_a_publish_is_copied_with_rabbitmqs_routing_key_headers_and_body() -> None:
    broker = traced_broker()
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    declare(client, "work")
    client.send(publish(1, "work", b"hello", properties=PROPERTIES))
    [(routing_key, header, body)] = trace_copies(client)
    assert (routing_key, body) == ("publish.", b"hello")  # the default exchange: "publish." and nothing after
    class_id, weight, body_size, flags = struct.unpack_from(">HHQH", header)
    assert (class_id, weight, body_size, flags) == (60, 0, 5, 0x2000)  # the headers table only: transient
    expected = table(
        ("exchange_name", longstr("")),
        ("routing_keys", array("work")),
        ("properties", PROPERTIES_TABLE),
        ("node", longstr(NODE)),
        ("vhost", longstr("/")),
        ("connection", longstr(CONNECTION)),
        ("channel", signed(1)),
        ("user", longstr("guest")),
        ("routed_queues", array("work")),
    )
    assert b"F" + header[14:] == expected


def test_deliveries_and_gets_are_copied_as_deliver_with_redelivered() -> None:
    broker = traced_broker()
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    declare(client, "work")
    client.send(publish(1, "work", b"m", properties=commands.Basic.Properties(headers={"h1": "v"})))
    client.send_method(1, commands.Basic.Get(queue="work"))
    client.send_method(1, commands.Basic.Nack(delivery_tag=1, requeue=True))
    client.send_method(1, commands.Basic.Consume(queue="work", consumer_tag="c", no_ack=True))
    client.frames()
    copies = trace_copies(client)
    assert [key for key, _, _ in copies] == ["publish.", "deliver.work", "deliver.work"]
    redelivered = [table_entries(header[18:])["redelivered"] for _, header, _ in copies[1:]]
    assert redelivered == [signed(0), signed(1)]  # basic.get, then basic.deliver after the requeue
    entries = list(table_entries(copies[1][1][18:]))
    assert entries == [
        "exchange_name",
        "routing_keys",
        "properties",
        "node",
        "redelivered",
        "vhost",
        "connection",
        "channel",
        "user",
    ]


def test_a_mandatory_unroutable_publish_is_copied_with_no_routed_queues_then_returned() -> None:
    broker = traced_broker()
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    client.send(publish(1, "nowhere", b"lost", exchange="amq.direct", mandatory=True))
    assert isinstance(client.methods()[-1][1], commands.Basic.Return)
    [(routing_key, header, body)] = trace_copies(client)
    entries = table_entries(header[18:])
    assert (routing_key, body) == ("publish.amq.direct", b"lost")
    assert entries["routed_queues"] == array() and entries["properties"] == table()


def test_cc_and_bcc_keys_are_routing_keys_of_the_copy() -> None:
    broker = traced_broker()
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    declare(client, "a")
    declare(client, "b")
    client.send(publish(1, "a", b"x", properties=commands.Basic.Properties(headers={"CC": ["b"], "BCC": ["c"]})))
    [(_, header, _)] = trace_copies(client)
    entries = table_entries(header[18:])
    assert entries["routing_keys"] == array("a", "b", "c")
    assert entries["routed_queues"] == array("a", "b")


def test_consuming_the_trace_queue_is_not_traced_again() -> None:
    broker = traced_broker()
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    client.send_method(1, commands.Basic.Consume(queue="trace", consumer_tag="t", no_ack=True))
    client.send(publish(1, "nowhere", b"once"))
    deliveries = [m for m in messages(client.frames()) if isinstance(m[1], commands.Basic.Deliver)]
    assert [(m[1].routing_key, m[3]) for m in deliveries] == [("publish.", b"once")]
    assert broker.vhosts["/"].queues["trace"].message_count == 0


def test_tracing_off_copies_nothing_and_leaves_the_channels_list_empty() -> None:
    broker = Broker(clock=FakeClock())
    client = peer_of(broker)
    declare(client, "trace", bind_trace=True)
    declare(client, "work")
    client.send(publish(1, "work", b"hello"))
    client.send_method(1, commands.Basic.Get(queue="work", no_ack=True))
    assert bodies_of(client) == [b"hello"]
    assert trace_copies(client) == []
    channel = client.connection.channels[1]
    assert channel.taps is broker.vhosts["/"].taps and channel.taps == []  # the one test a publish pays


def test_tracing_is_per_vhost_and_follows_the_access_data() -> None:
    broker = traced_broker("other")
    broker.access.set_permission("guest", "other", Permission())
    broker.add_vhost("other")
    tracing.apply(broker, NODE)
    home = peer_of(broker)
    declare(home, "trace", bind_trace=True)
    home.send(publish(1, "x", b"not traced here"))
    assert trace_copies(home) == []
    assert len(broker.vhosts["other"].taps) == 1
    broker.access.traced_vhosts.clear()
    tracing.apply(broker, NODE)
    assert broker.vhosts["other"].taps == []


def test_the_trace_exchange_is_a_builtin_internal_durable_topic_exchange() -> None:
    broker = Broker(clock=FakeClock())
    trace = broker.vhosts["/"].exchanges["amq.rabbitmq.trace"]
    assert (trace.type_name, trace.internal, trace.durable) == ("topic", True, True)
    client = open_peer(broker)
    client.send(method(1, commands.Basic.Publish(exchange="amq.rabbitmq.trace", routing_key="x")) + content(1, b""))
    close = client.methods()[-1][1]
    assert isinstance(close, commands.Channel.Close) and close.reply_code == 403
    client.open_channel(2)
    client.send_method(2, commands.Exchange.Delete(exchange="amq.rabbitmq.trace"))
    assert client.methods()[-1][1].reply_code == 403


def test_management_api_publish_and_get_are_traced() -> None:
    broker = traced_broker()
    operations = BrokerOperations(broker, NODE)
    operations.declare_queue("/", "trace")
    operations.bind("/", "amq.rabbitmq.trace", "trace", "queue", "#")
    operations.declare_queue("/", "work")
    operations.publish("/", "", "work", b"via api", {"delivery_mode": 2}, user="guest")
    operations.get_messages("/", "work", 1, "ack_requeue_false", user="guest")
    copies = operations.get_messages("/", "trace", 5, "ack_requeue_false")
    assert [c["routing_key"] for c in copies] == ["publish.", "deliver.work"]
    headers = copies[0]["properties"]["headers"]
    assert headers["connection"] == f"<{NODE}.management>" and headers["user"] == "guest"
    assert headers["properties"] == {"delivery_mode": 2}


def test_tracing_is_kept_in_access_json(tmp_path: Path) -> None:
    access, vhosts = ops_access.default_access()
    access.traced_vhosts.add("/")
    ops_access.save_access(tmp_path, access, vhosts)
    loaded, _ = ops_access.load_access(tmp_path)
    assert loaded.traced_vhosts == {"/"}
    ops_access.set_tracing(loaded, "/", False)
    ops_access.save_access(tmp_path, loaded, vhosts)
    assert ops_access.load_access(tmp_path)[0].traced_vhosts == set()
    assert "tracing" not in (tmp_path / "access.json").read_text()


# ------------------------------------------------------------------ the live tail's watchers


def watch(broker: Broker, **kwargs: Any) -> Watcher:
    return BrokerOperations(broker).tail.watch("/", **kwargs)


def test_a_watcher_sees_publishes_and_deliveries_as_lines_without_consuming() -> None:
    broker = Broker(clock=FakeClock(), wall_clock=lambda: 1700000000.5)
    watcher = watch(broker)
    client = open_peer(broker)
    declare(client, "work")
    client.send(publish(1, "work", "héllo".encode(), properties=commands.Basic.Properties(content_type="text/plain")))
    client.send_method(1, commands.Basic.Get(queue="work"))
    publish_line, deliver_line = watcher.take()
    assert publish_line == {
        "kind": "publish",
        "exchange": "",
        "routing_keys": ["work"],
        "queue": None,
        "properties": {"content_type": "text/plain"},
        "payload": "héllo",
        "payload_encoding": "string",
        "payload_bytes": 6,
        "timestamp": 1700000000500.0,
        "routed_queues": ["work"],
    }
    assert deliver_line["kind"] == "deliver" and deliver_line["queue"] == "work"
    assert deliver_line["redelivered"] is False
    assert watcher.take() == []
    assert len(client.connection.channels[1].unacked) == 1  # the get's message, not taken by the watcher


def test_watchers_filter_by_exchange_or_queue() -> None:
    broker = Broker(clock=FakeClock())
    client = open_peer(broker)
    declare(client, "a")
    declare(client, "b")
    by_exchange = watch(broker, exchange="amq.fanout")
    by_queue = watch(broker, queue="b")
    client.send_method(1, commands.Queue.Bind(queue="b", exchange="amq.fanout"))
    client.send(publish(1, "a", b"1"))
    client.send(publish(1, "", b"2", exchange="amq.fanout"))
    client.send_method(1, commands.Basic.Get(queue="a", no_ack=True))
    client.send_method(1, commands.Basic.Get(queue="b", no_ack=True))
    assert [(line["kind"], line["payload"]) for line in by_exchange.take()] == [("publish", "2"), ("deliver", "2")]
    assert [(line["kind"], line["payload"]) for line in by_queue.take()] == [("publish", "2"), ("deliver", "2")]


def test_a_watcher_that_falls_behind_drops_the_oldest_and_says_how_many() -> None:
    broker = Broker(clock=FakeClock())
    watcher = Watcher(broker.vhosts["/"], limit=3)
    broker.vhosts["/"].taps.append(watcher)
    client = open_peer(broker)
    for number in range(5):
        client.send(publish(1, "nowhere", str(number).encode()))
    lines = watcher.take()
    assert lines[0] == {"kind": "dropped", "count": 2}
    assert [line["payload"] for line in lines[1:]] == ["2", "3", "4"]
    assert watcher.take() == []


def test_previews_are_cut_at_2_kib_and_binary_bodies_are_base64() -> None:
    broker = Broker(clock=FakeClock())
    watcher = watch(broker)
    client = open_peer(broker)
    client.send(publish(1, "x", "é".encode() * 2000))  # 4000 bytes; the cut at 2048 falls between two
    client.send(publish(1, "x", b"\xff\x00"))
    text, binary = watcher.take()
    assert text["payload"] == "é" * (PREVIEW_BYTES // 2) and text["payload_bytes"] == 4000
    assert (binary["payload"], binary["payload_encoding"]) == ("/wA=", "base64")


def test_a_reader_without_the_tag_sees_only_what_it_may_read() -> None:
    broker = Broker(clock=FakeClock())
    broker.access.add_user("ann", "pw", ["management"])
    broker.access.set_permission("ann", "/", Permission(read="^mine$"))
    watcher = watch(broker, reader="ann")
    client = open_peer(broker)
    declare(client, "mine")
    declare(client, "theirs")
    client.send(publish(1, "mine", b"1"))
    client.send_method(1, commands.Basic.Get(queue="mine", no_ack=True))
    client.send_method(1, commands.Basic.Get(queue="theirs", no_ack=True))
    assert [(line["kind"], line["queue"]) for line in watcher.take()] == [("deliver", "mine")]  # no exchange read


def test_unwatching_empties_the_vhosts_tap_list() -> None:
    broker = Broker(clock=FakeClock())
    operations = BrokerOperations(broker)
    watcher = operations.tail.watch("/")
    assert operations.tail.watching(watcher) and broker.vhosts["/"].taps == [watcher]
    operations.tail.unwatch(watcher)
    assert broker.vhosts["/"].taps == []


# ------------------------------------------------------------------ the /api/tail endpoint (aiohttp, in process)


async def next_line(response: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(await asyncio.wait_for(response.content.readline(), 5.0))
    return found


async def test_the_tail_endpoint_streams_lines_and_heartbeats_and_unwatches_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_api, "HEARTBEAT_SECONDS", 0.05)
    broker = Broker(clock=FakeClock())
    app = http_app.create_app(Context(BrokerOperations(broker), tmp_path))
    token = base64.b64encode(b"guest:guest").decode()
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/tail/%2F", headers={"Authorization": f"Basic {token}"})
        assert (response.status, response.headers["Content-Type"]) == (200, "application/x-ndjson")
        assert await next_line(response) == {"kind": "heartbeat"}
        open_peer(broker).send(publish(1, "nowhere", b"seen"))
        assert (await next_line(response))["payload"] == "seen"
        assert await next_line(response) == {"kind": "heartbeat"}  # and again while nothing passes
        assert len(broker.vhosts["/"].taps) == 1
        response.close()
        for _ in range(500):  # the handler notices at its next write: a heartbeat away
            if not broker.vhosts["/"].taps:
                break
            await asyncio.sleep(0.01)
        assert broker.vhosts["/"].taps == []


def test_a_watcher_also_bounds_the_bytes_it_holds() -> None:
    broker = Broker(clock=FakeClock())
    watcher = Watcher(broker.vhosts["/"], limit_bytes=3 * PREVIEW_BYTES)
    broker.vhosts["/"].taps.append(watcher)
    client = open_peer(broker)
    for number in range(5):
        client.send(publish(1, "nowhere", bytes([65 + number]) * 10_000))
    assert watcher.held <= 3 * PREVIEW_BYTES
    dropped, *kept = watcher.take()
    assert dropped["count"] == 5 - len(kept) and [line["payload"][0] for line in kept] == ["C", "D", "E"][-len(kept) :]


def test_a_deleted_vhosts_watchers_stop_watching() -> None:
    broker = Broker(clock=FakeClock())
    operations = BrokerOperations(broker)
    access = broker.access
    operations.install_access(access, ["/", "gone"])
    watcher = operations.tail.watch("gone")
    operations.install_access(access, ["/"])
    assert not operations.tail.watching(watcher)
