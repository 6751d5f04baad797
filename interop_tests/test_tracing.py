"""Tracing with real clients: the firehose (tracing on through the API → a queue bound to amq.rabbitmq.trace gets
publish.* and deliver.* copies with RabbitMQ's headers; off → nothing; kept across a restart; the CLI's trace_on and
trace_off), and the live tail (``/api/tail``: a published message's line, filters, a slow reader, permissions).

``AMQP_HTTP_URL`` + ``AMQP_URL`` run the firehose tests against RabbitMQ (the tail is ours alone: its tests always
run against a broker process of ours).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .broker_process import BrokerProcess
from .conftest import TIMEOUT
from .management_client import Api, q

REPO = Path(__file__).resolve().parent.parent
PROPERTIES = pika.BasicProperties(
    content_type="text/plain", headers={"h1": "v", "n": 5}, delivery_mode=2, priority=3, timestamp=1700000000
)


def connect(host: str, port: int, vhost: str, user: str = "guest", password: str = "guest") -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host,
            port,
            vhost,
            pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=TIMEOUT,
            stack_timeout=2 * TIMEOUT,
            blocked_connection_timeout=2 * TIMEOUT,
        )
    )


@pytest.fixture
def vhost(management: SimpleNamespace) -> Iterator[str]:
    """A vhost of the test's own (guest gets every permission on it), deleted afterwards."""
    name = f"trace-{uuid.uuid4().hex[:8]}"
    assert management.api.put(f"/api/vhosts/{q(name)}").status == 201
    yield name
    management.api.delete(f"/api/vhosts/{q(name)}")


def set_tracing(api: Api, vhost: str, on: bool) -> None:
    assert api.put(f"/api/vhosts/{q(vhost)}", {"tracing": on}).status == 204


def trace_queue(channel: BlockingChannel) -> str:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "amq.rabbitmq.trace", "#")
    return queue


def copies(channel: BlockingChannel, queue: str, count: int) -> list[tuple[str, dict[str, Any], bytes]]:
    """The first ``count`` trace copies (RabbitMQ enqueues them a little later: polled), then nothing more."""
    found: list[tuple[str, dict[str, Any], bytes]] = []
    deadline = time.monotonic() + TIMEOUT
    while len(found) < count:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            assert time.monotonic() < deadline, f"{len(found)} trace copies of {count}: {found}"
            channel.connection.sleep(0.02)
            continue
        found.append((method.routing_key, properties.headers, body))
    return found


def test_tracing_on_copies_publishes_and_deliveries_with_rabbitmqs_headers(
    management: SimpleNamespace, vhost: str
) -> None:
    set_tracing(management.api, vhost, True)
    assert management.api.ok("GET", f"/api/vhosts/{q(vhost)}")["tracing"] is True
    assert {v["name"]: v["tracing"] for v in management.api.ok("GET", "/api/vhosts")}[vhost] is True
    connection = connect(management.host, management.port, vhost)
    try:
        channel = connection.channel()
        traces = trace_queue(channel)
        channel.queue_declare("work", exclusive=True)
        channel.basic_publish("", "work", b"hello", PROPERTIES)
        method, _, _ = channel.basic_get("work", auto_ack=False)
        channel.basic_nack(method.delivery_tag, requeue=True)
        channel.basic_get("work", auto_ack=True)
        published, got, regot = copies(channel, traces, 3)
        local = "%s:%s" % connection._impl._transport._sock.getsockname()[:2]  # noqa: UP031
    finally:
        connection.close()
    assert [published[0], got[0], regot[0]] == ["publish.", "deliver.work", "deliver.work"]
    assert published[2] == got[2] == b"hello"
    headers = published[1]
    assert list(headers) == [
        "exchange_name",
        "routing_keys",
        "properties",
        "node",
        "vhost",
        "connection",
        "channel",
        "user",
        "routed_queues",
    ]
    assert headers["exchange_name"] == "" and headers["routing_keys"] == ["work"]
    assert headers["properties"] == {
        "timestamp": 1700000000,
        "priority": 3,
        "delivery_mode": 2,
        "headers": {"h1": "v", "n": 5},
        "content_type": "text/plain",
    }
    assert list(headers["properties"]) == ["timestamp", "priority", "delivery_mode", "headers", "content_type"]
    assert headers["node"].startswith(("rabbit@", "ref")) and "@" in headers["node"]
    assert headers["connection"] == f"{local} -> {management.host}:{management.port}"
    assert (headers["vhost"], headers["channel"], headers["user"]) == (vhost, 1, "guest")
    assert headers["routed_queues"] == ["work"]
    assert list(got[1]) == [
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
    assert (got[1]["redelivered"], regot[1]["redelivered"]) == (0, 1)


def test_tracing_is_a_boolean_or_its_string(management: SimpleNamespace, vhost: str) -> None:
    for bad in ("yes", 1, None):
        answer = management.api.put(f"/api/vhosts/{q(vhost)}", {"tracing": bad})
        assert (answer.status, answer.json) == (400, {"error": "bad_request", "reason": ["not_boolean", bad]})
    assert management.api.ok("GET", f"/api/vhosts/{q(vhost)}")["tracing"] is False
    assert management.api.put(f"/api/vhosts/{q(vhost)}", {"tracing": "true"}).status == 204
    assert management.api.ok("GET", f"/api/vhosts/{q(vhost)}")["tracing"] is True


def test_tracing_off_copies_nothing(management: SimpleNamespace, vhost: str) -> None:
    connection = connect(management.host, management.port, vhost)
    try:
        channel = connection.channel()
        traces = trace_queue(channel)
        channel.queue_declare("work", exclusive=True)
        channel.basic_publish("", "work", b"untraced")
        channel.basic_get("work", auto_ack=True)
        channel.queue_declare("work", passive=True)  # a round trip: the publish and the get are handled
        set_tracing(management.api, vhost, True)
        channel.basic_publish("", "work", b"traced")
        # the copies of one channel reach the trace queue in order: had the first been traced, it came first
        [(routing_key, _, body)] = copies(channel, traces, 1)
        assert (routing_key, body) == ("publish.", b"traced")
        set_tracing(management.api, vhost, False)
        channel.basic_publish("", "work", b"untraced again")
        channel.queue_declare("work", passive=True)
        set_tracing(management.api, vhost, True)
        channel.basic_publish("", "work", b"traced again")
        assert [body for _, _, body in copies(channel, traces, 1)] == [b"traced again"]
    finally:
        connection.close()


def test_a_mandatory_unroutable_publish_is_traced_with_no_routed_queues(
    management: SimpleNamespace, vhost: str
) -> None:
    set_tracing(management.api, vhost, True)
    connection = connect(management.host, management.port, vhost)
    try:
        channel = connection.channel()
        traces = trace_queue(channel)
        returned: list[bytes] = []
        channel.add_on_return_callback(lambda _channel, _method, _properties, body: returned.append(body))
        channel.basic_publish("amq.direct", "nowhere", b"lost", mandatory=True)
        [(routing_key, headers, _)] = copies(channel, traces, 1)
        channel.connection.process_data_events(0)
    finally:
        connection.close()
    assert routing_key == "publish.amq.direct"
    assert headers["routed_queues"] == [] and headers["properties"] == {}
    assert returned == [b"lost"]


# ------------------------------------------------------------------ ours only: restarts, the CLI, the tail


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqp_server", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_tracing_is_kept_across_a_restart_and_the_cli_turns_it_on_and_off(start_broker: Any, tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    url = f"http://127.0.0.1:{broker.management_port}"
    on = cli("trace_on", "--vhost", "/", "--url", url)
    assert (on.returncode, on.stdout) == (0, "Trace enabled for vhost /\n"), on.stderr
    missing = cli("trace_on", "--vhost", "nosuch", "--url", url)
    assert (missing.returncode, missing.stderr) == (1, "amqp-server: no vhost 'nosuch'\n")
    assert json.loads((tmp_path / "access.json").read_text())["vhosts"][0].get("tracing") is True
    broker.stop()
    broker = start_broker(tmp_path)
    api = Api(f"http://127.0.0.1:{broker.management_port}")
    assert api.ok("GET", "/api/vhosts/%2F")["tracing"] is True
    connection = connect(broker.host, broker.port, "/")
    try:
        channel = connection.channel()
        traces = trace_queue(channel)
        channel.basic_publish("amq.fanout", "", b"after the restart")
        assert [key for key, _, _ in copies(channel, traces, 1)] == ["publish.amq.fanout"]
        off = cli("trace_off", "--url", f"http://127.0.0.1:{broker.management_port}")
        assert (off.returncode, off.stdout) == (0, "Trace disabled for vhost /\n"), off.stderr
        channel.basic_publish("amq.fanout", "", b"not traced")
        assert channel.queue_declare(traces, passive=True).method.message_count == 0
    finally:
        connection.close()
    assert api.ok("GET", "/api/vhosts/%2F")["tracing"] is False


@pytest.fixture(scope="module")
def ours(management: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A broker process of ours with its API (the management fixture's, unless that one is RabbitMQ)."""
    if not management.external:
        yield management
        return
    process = BrokerProcess(tmp_path_factory.mktemp("tail-data")).start()
    try:
        api = Api(f"http://127.0.0.1:{process.management_port}")
        yield SimpleNamespace(api=api, host=process.host, port=process.port, external=False)
    finally:
        process.stop()


class Tail:
    """One ``GET /api/tail/…`` stream, read line by line (every read bounded by the socket timeout)."""

    def __init__(self, api: Api, path: str, user: str = "guest", password: str = "guest") -> None:
        host, port = api.base.removeprefix("http://").rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.connection.request("GET", path, headers={"Authorization": f"Basic {token}"})
        self.response = self.connection.getresponse()

    def line(self) -> dict[str, Any]:
        raw = self.response.readline()
        assert raw.endswith(b"\n"), raw
        found: dict[str, Any] = json.loads(raw)
        return found

    def message_line(self) -> dict[str, Any]:
        """The next line that is not a heartbeat."""
        while (found := self.line())["kind"] == "heartbeat":
            pass
        return found

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    opened: list[Tail] = []
    yield opened
    for tail in opened:
        tail.close()


def open_tail(tails: list[Tail], api: Api, path: str, **kwargs: Any) -> Tail:
    tail = Tail(api, path, **kwargs)
    tails.append(tail)
    if tail.response.status == 200:
        assert tail.response.getheader("Content-Type") == "application/x-ndjson"
        assert tail.line() == {"kind": "heartbeat"}  # the first line: the watcher is in place
    return tail


def test_the_tail_streams_a_published_message_and_its_delivery(ours: SimpleNamespace, tails: list[Tail]) -> None:
    tail = open_tail(tails, ours.api, "/api/tail/%2F")
    connection = connect(ours.host, ours.port, "/")
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"watched", pika.BasicProperties(content_type="text/plain"))
        published = tail.message_line()
        channel.basic_get(queue, auto_ack=True)
        delivered = tail.message_line()
    finally:
        connection.close()
    assert published["kind"] == "publish" and published["routing_keys"] == [queue] and published["queue"] is None
    assert (published["payload"], published["payload_encoding"], published["payload_bytes"]) == ("watched", "string", 7)
    assert published["properties"] == {"content_type": "text/plain"} and published["exchange"] == ""
    assert isinstance(published["timestamp"], float) and abs(published["timestamp"] / 1000 - time.time()) < 600
    assert (delivered["kind"], delivered["queue"], delivered["payload"]) == ("deliver", queue, "watched")


def test_the_tail_filters_by_exchange_and_by_queue(ours: SimpleNamespace, tails: list[Tail]) -> None:
    connection = connect(ours.host, ours.port, "/")
    try:
        channel = connection.channel()
        first = channel.queue_declare("", exclusive=True).method.queue
        second = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(second, "amq.fanout")
        by_exchange = open_tail(tails, ours.api, "/api/tail/%2F?exchange=amq.fanout")
        by_queue = open_tail(tails, ours.api, f"/api/tail/%2F?queue={q(first)}")
        by_default = open_tail(tails, ours.api, "/api/tail/%2F?exchange=amq.default")
        channel.basic_publish("", first, b"to the first")
        channel.basic_publish("amq.fanout", "", b"fanned out")
        channel.basic_publish("", first, b"to the first again")
    finally:
        connection.close()
    assert by_exchange.message_line()["payload"] == "fanned out"
    assert [by_queue.message_line()["payload"] for _ in range(2)] == ["to the first", "to the first again"]
    assert [by_default.message_line()["payload"] for _ in range(2)] == ["to the first", "to the first again"]
    assert ours.api.get("/api/tail/%2F?queue=no-such-queue").status == 404


def test_a_slow_tail_reader_does_not_block_publishers(ours: SimpleNamespace, tails: list[Tail]) -> None:
    tail = open_tail(tails, ours.api, "/api/tail/%2F?exchange=amq.direct")
    connection = connect(ours.host, ours.port, "/")
    try:
        channel = connection.channel()
        body = os.urandom(1024) * 4  # lines of ~2.8 KiB (the preview in base64): far more than the socket buffers
        for _ in range(8000):
            channel.basic_publish("amq.direct", "nowhere", body)
        channel.queue_declare("", exclusive=True)  # a round trip: every publish was handled, none waited
    finally:
        connection.close()
    deadline = time.monotonic() + 2 * TIMEOUT
    while (line := tail.message_line())["kind"] != "dropped":
        assert time.monotonic() < deadline, "no dropped line"
    assert line["count"] > 0
    assert ours.api.ok("GET", "/api/overview")["object_totals"]["connections"] >= 0  # the API still answers


def test_the_tail_asks_the_apis_permissions(ours: SimpleNamespace, tails: list[Tail]) -> None:
    api = ours.api
    user = f"tail-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/users/{user}", {"password": "pw", "tags": "management"}).status == 201
    try:
        assert api.get("/api/tail/%2F", auth=False).status == 401
        no_permissions = open_tail(tails, api, "/api/tail/%2F", user=user, password="pw")
        assert no_permissions.response.status == 401
        assert json.loads(no_permissions.response.read())["reason"] == "User not authorised to access virtual host"
        permission = {"configure": "", "write": ".*", "read": "^mine$"}
        assert api.put(f"/api/permissions/%2F/{user}", permission).status == 201
        connection = connect(ours.host, ours.port, "/")
        try:
            channel = connection.channel()
            channel.queue_declare("mine", auto_delete=True)
            channel.queue_declare("theirs", auto_delete=True)
            theirs = open_tail(tails, api, "/api/tail/%2F?queue=theirs", user=user, password="pw")
            assert theirs.response.status == 401
            assert json.loads(theirs.response.read()) == {"error": "not_authorised", "reason": "Access refused."}
            mine = open_tail(tails, api, "/api/tail/%2F?queue=mine", user=user, password="pw")
            assert mine.response.status == 200
            whole = open_tail(tails, api, "/api/tail/%2F", user=user, password="pw")
            channel.basic_publish("", "theirs", b"not for them")
            channel.basic_publish("", "mine", b"for them")
            channel.basic_get("theirs", auto_ack=True)
            channel.basic_get("mine", auto_ack=True)
            assert [(line["kind"], line["payload"]) for line in (mine.message_line(), mine.message_line())] == [
                ("publish", "for them"),
                ("deliver", "for them"),
            ]
            # the whole vhost: only what the user may read (no exchange, so no publish; the one queue's delivery)
            line = whole.message_line()
            assert (line["kind"], line["queue"], line["payload"]) == ("deliver", "mine", "for them")
        finally:
            connection.close()
    finally:
        api.delete(f"/api/users/{user}")
