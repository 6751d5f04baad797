"""Capture what RabbitMQ's management API answers, as shapes, into ``reference.json``.

Run it against a real RabbitMQ with the management plugin (from the repository root)::

    REF_MGMT_PORT=15690 ../shared/tools/rabbitmq-ref.sh start 5690
    .venv/bin/python -m interop_tests.management.capture_reference \\
        --amqp-url amqp://guest:guest@127.0.0.1:5690/ --http-url http://127.0.0.1:15690/

It builds a standard state (below, ``build_state``), waits for the statistics to tick, then sends every
request of ``REQUESTS``' sequence and records its answer.  Our tests compare our answers with the record,
in CI, without RabbitMQ.  The state is built in the vhost ``ref-vh`` (dropped and made again) and with
users ``ref-*``, plus the queue ``ref-default-q`` in ``/``.  Run it on a freshly started node: the
management database keeps a deleted queue's statistics for a while, so a second run right after a first
one sees the old queues' ``message_stats`` keys on the new ones of the same name.

``reference.json``::

    {"format": 1, "rabbitmq_version": "3.10.8", "requests": [record, ...]}

each record (in the order sent, which matters: the second PUT of a thing answers 204, not 201)::

    {"id": "queues.vhost.item",               # unique, stable: what a test looks a record up by
     "method": "GET", "path": "/api/queues/ref-vh/ref-classic",     # as sent, names quoted
     "request": {"headers": {...}, "body": ...},  # what was sent beside the path (absent when nothing)
     "auth": "guest",                          # the user whose credentials were sent, null for none
     "status": 200,
     "headers": {"content-type": "application/json", ...},  # lower-cased; date/content-length dropped
     "shape": <shape of the JSON body, see shapes.py>,      # absent when the body is empty
     "values": {path: [distinct values]},      # fixed strings/enums/counts the state makes predictable
     "body": <the body itself>,                # for errors and small fixed answers (publish, get, ...)
     "amqp": {...}}                            # what the AMQP side saw, for DELETE connection

``values`` keeps, from ``shapes.leaf_values``, only paths whose last key is in ``VALUE_KEYS`` or that lie
under a ``VALUE_CONTAINERS`` key (arguments, definition, properties, ...), and never a string that looks
volatile (a node name, an address with a port, a pid, a date).  Compare a path's values only where they
do not depend on timing (``messages*`` counts do not, ``consumer_utilisation`` would).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika

from interop_tests.management.shapes import leaf_values, shape_of

VHOST = "ref-vh"
MGMT_USER, MONITORING_USER, NO_TAG_USER = "ref-mgmt", "ref-monitoring", "ref-notag"
PASSWORD = "ref-secret"
CLASSIC, QUORUM, GET_QUEUE, DEFAULT_QUEUE = "ref-classic", "ref-quorum", "ref-get", "ref-default-q"
EXCHANGES = {  # name -> (type, arguments)
    "ref-direct": ("direct", {}),
    "ref-fanout": ("fanout", {}),
    "ref-topic": ("topic", {}),
    "ref-headers": ("headers", {}),
    "ref-with-args": ("direct", {"alternate-exchange": "ref-fanout"}),
}
E2Q_ARGS = {"x-match": "any", "ref-header": "yes"}
E2E_ARGS = {"ref-arg": "value"}
CONSUMER_TAG = "ref-ctag"
STATS_TICK = 5.0  # RabbitMQ's collect_statistics_interval
TIMEOUT = 60.0

VALUE_KEYS = frozenset(
    """
    ack_required ackmode apply-to auth_mechanism auto_delete channels configure confirm consumer_count
    consumer_tag consumers description destination destination_type durable enabled error exchange exclusive
    exclusive_consumer_tag hashing_algorithm internal limit message_count messages messages_ready
    messages_unacknowledged name number operator_policy pattern payload payload_bytes payload_encoding policy
    prefetch_count priority product_name properties_key protocol queue rates_mode read reason redelivered
    routed routing_key single_active_consumer_tag source ssl state status tags transactional type user vhost
    write
    """.split()
)
VALUE_CONTAINERS = {"arguments", "definition", "effective_policy_definition", "properties", "exchange_types"}
VOLATILE = re.compile(r"@|\d+\.\d+\.\d+\.\d+:\d+|<.*\.\d+>|\d{4}-\d\d-\d\d|^amq\.gen-|^amq\.ctag-")
DROPPED_HEADERS = {"date", "content-length"}


class Api:
    """A tiny HTTP client over urllib that records every answer."""

    def __init__(self, base: str, users: dict[str, str], amqp_port: int) -> None:
        self.base = base.rstrip("/")
        self.amqp_port = amqp_port
        self.users = users  # name -> password
        self.records: list[dict[str, Any]] = []

    def call(
        self,
        rid: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: str | None = "guest",
        password: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        literal: bool = False,
    ) -> tuple[int, dict[str, str], Any]:
        """Send one request and record it as ``rid``; ``raw`` is sent as the body byte for byte."""
        assert all(record["id"] != rid for record in self.records), rid
        sent_headers = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent_headers.setdefault("content-type", "application/json")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent_headers)
        if auth is not None:
            secret = password if password is not None else self.users[auth]
            token = base64.b64encode(f"{auth}:{secret}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status, answer_headers, content = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, content = error.code, error.headers, error.read()
        answer = {k.lower(): v for k, v in answer_headers.items() if k.lower() not in DROPPED_HEADERS}
        decoded = json.loads(content) if content else None
        record: dict[str, Any] = {"id": rid, "method": method, "path": path}
        sent: dict[str, Any] = {}
        if headers:
            sent["headers"] = headers
        if body is not None:
            sent["body"] = body
        elif raw is not None:
            sent["body_raw"] = raw.decode("latin-1")
        if sent:
            record["request"] = sent
        record.update(auth=auth, status=status, headers=answer)
        if content:
            record["shape"] = shape_of(decoded)
            values = {path: vs for path, vs in leaf_values(decoded).items() if _predictable(path, vs)}
            if values:
                record["values"] = values
            if literal or status >= 400:
                record["body"] = decoded
        self.records.append(record)
        print(f"{status} {method} {path}", file=sys.stderr)
        return status, answer, decoded

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET without recording (polling, looking names up)."""
        token = base64.b64encode(b"guest:" + self.users["guest"].encode()).decode()
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())


def _predictable(path: str, values: list[Any]) -> bool:
    keys = path.replace("[]", "").split(".")
    if keys[-1] not in VALUE_KEYS and not VALUE_CONTAINERS.intersection(keys[:-1]):
        return False
    if {"client_properties", "applications", "message_stats"}.intersection(keys) or keys[0] in (
        "node",
        "listeners",
        "contexts",
    ):
        return False  # the client library's version, Erlang applications, counters kept across runs, node, ports
    return not any(isinstance(value, str) and VOLATILE.search(value) for value in values)


def q(name: str) -> str:
    """A name as one URL path segment (``/`` becomes ``%2F``)."""
    return quote(name, safe="")


def wait(what: str, predicate: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def reset(api: Api) -> None:
    """Drop what a previous capture left, without recording."""
    for path in (
        f"/api/vhosts/{VHOST}",
        *(
            f"/api/users/{user}"
            for user in (MGMT_USER, MONITORING_USER, NO_TAG_USER, "ref-bulk-1", "ref-bulk-2", "ref-bad")
        ),
        f"/api/queues/%2F/{DEFAULT_QUEUE}",
        "/api/queues/%2F/aliveness-test",
        "/api/vhosts/ref-vh-other",
    ):
        request = urllib.request.Request(api.base + path, method="DELETE")
        token = base64.b64encode(b"guest:" + api.users["guest"].encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            urllib.request.urlopen(request, timeout=TIMEOUT).close()
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise


def build_state(api: Api, amqp_url: str) -> dict[str, Any]:
    """The standard state; the definitions through HTTP (recorded: 201 on create, 204 on update)."""
    vh = q(VHOST)
    api.call("vhosts.put.create", "PUT", f"/api/vhosts/{vh}", {"description": "reference vhost", "tags": "ref"})
    api.call("vhosts.put.update", "PUT", f"/api/vhosts/{vh}", {"description": "reference vhost", "tags": "ref"})
    api.call("vhosts.put.other", "PUT", "/api/vhosts/ref-vh-other", {})
    api.call("users.put.create", "PUT", f"/api/users/{MGMT_USER}", {"password": PASSWORD, "tags": "management"})
    api.call("users.put.update", "PUT", f"/api/users/{MGMT_USER}", {"password": PASSWORD, "tags": "management"})
    api.call(
        "users.put.monitoring", "PUT", f"/api/users/{MONITORING_USER}", {"password": PASSWORD, "tags": "monitoring"}
    )
    api.call("users.put.notag", "PUT", f"/api/users/{NO_TAG_USER}", {"password": PASSWORD, "tags": ""})
    api.call("users.put.hash", "PUT", "/api/users/ref-bulk-1", {"password_hash": "", "tags": ""})
    api.call("users.put.bulk2", "PUT", "/api/users/ref-bulk-2", {"password": "x", "tags": "administrator"})
    api.call("users.put.no-password", "PUT", "/api/users/ref-bad", {"tags": ""})
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    api.call("permissions.put.create", "PUT", f"/api/permissions/{vh}/guest", everything)
    api.call("permissions.put.update", "PUT", f"/api/permissions/{vh}/guest", everything)
    api.call("permissions.put.mgmt", "PUT", f"/api/permissions/{vh}/{MGMT_USER}", everything)
    api.call(
        "permissions.put.monitoring",
        "PUT",
        f"/api/permissions/{vh}/{MONITORING_USER}",
        {"configure": "", "write": "", "read": ".*"},
    )
    api.call(
        "permissions.put.bad-regex",
        "PUT",
        f"/api/permissions/{vh}/{MGMT_USER}",
        {"configure": "(", "write": "", "read": ""},
    )
    api.call(
        "topic-permissions.put",
        "PUT",
        f"/api/topic-permissions/{vh}/{MGMT_USER}",
        {"exchange": "amq.topic", "write": "^ref", "read": ".*"},
    )
    api.call(
        "policies.put.create",
        "PUT",
        f"/api/policies/{vh}/ref-policy",
        {
            "pattern": f"^{CLASSIC}$",
            "definition": {"max-length": 100, "overflow": "reject-publish"},
            "priority": 1,
            "apply-to": "queues",
        },
    )
    api.call(
        "policies.put.update",
        "PUT",
        f"/api/policies/{vh}/ref-policy",
        {
            "pattern": f"^{CLASSIC}$",
            "definition": {"max-length": 100, "overflow": "reject-publish"},
            "priority": 1,
            "apply-to": "queues",
        },
    )
    api.call(
        "policies.put.exchanges",
        "PUT",
        f"/api/policies/{vh}/ref-ae-policy",
        {"pattern": "^ref-topic$", "definition": {"alternate-exchange": "ref-fanout"}, "apply-to": "exchanges"},
    )
    api.call(
        "policies.put.bad-key",
        "PUT",
        f"/api/policies/{vh}/ref-bad",
        {"pattern": ".*", "definition": {"no-such-key": 1}},
    )
    api.call(
        "policies.put.bad-value",
        "PUT",
        f"/api/policies/{vh}/ref-bad",
        {"pattern": ".*", "definition": {"max-length": "ten"}},
    )
    api.call(
        "policies.put.bad-apply-to",
        "PUT",
        f"/api/policies/{vh}/ref-bad",
        {"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "nothing"},
    )
    api.call("policies.put.no-pattern", "PUT", f"/api/policies/{vh}/ref-bad", {"definition": {"max-length": 1}})
    api.call(
        "operator-policies.put.create",
        "PUT",
        f"/api/operator-policies/{vh}/ref-op-policy",
        {
            "pattern": "^ref-",
            "definition": {"max-length": 1000, "message-ttl": 3600000},
            "priority": 0,
            "apply-to": "queues",
        },
    )
    api.call(
        "operator-policies.put.bad-key",
        "PUT",
        f"/api/operator-policies/{vh}/ref-op-bad",
        {"pattern": "^ref-", "definition": {"alternate-exchange": "x"}, "apply-to": "queues"},
    )

    for name, (kind, arguments) in EXCHANGES.items():
        api.call(
            f"exchanges.put.{name}",
            "PUT",
            f"/api/exchanges/{vh}/{name}",
            {"type": kind, "durable": True, "auto_delete": False, "internal": False, "arguments": arguments},
        )
    api.call("exchanges.put.update", "PUT", f"/api/exchanges/{vh}/ref-direct", {"type": "direct", "durable": True})
    api.call(
        "exchanges.put.inequivalent", "PUT", f"/api/exchanges/{vh}/ref-direct", {"type": "fanout", "durable": True}
    )
    api.call("exchanges.put.bad-type", "PUT", f"/api/exchanges/{vh}/ref-bad", {"type": "no-such-type"})
    api.call("exchanges.put.amq-prefix", "PUT", f"/api/exchanges/{vh}/amq.ref", {"type": "direct"})
    api.call("exchanges.put.default", "PUT", f"/api/exchanges/{vh}/amq.default", {"type": "direct"})
    api.call(
        "exchanges.put.unused",
        "PUT",
        f"/api/exchanges/{vh}/ref-unused",
        {"type": "fanout", "durable": False, "auto_delete": True},
    )
    api.call(
        "queues.put.classic",
        "PUT",
        f"/api/queues/{vh}/{CLASSIC}",
        {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "classic", "x-max-priority": 5}},
    )
    api.call(
        "queues.put.update",
        "PUT",
        f"/api/queues/{vh}/{CLASSIC}",
        {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "classic", "x-max-priority": 5}},
    )
    api.call(
        "queues.put.quorum",
        "PUT",
        f"/api/queues/{vh}/{QUORUM}",
        {"durable": True, "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 3}},
    )
    api.call("queues.put.get-queue", "PUT", f"/api/queues/{vh}/{GET_QUEUE}", {"durable": False})
    api.call("queues.put.default-vhost", "PUT", f"/api/queues/%2F/{DEFAULT_QUEUE}", {"durable": True})
    api.call("queues.put.inequivalent", "PUT", f"/api/queues/{vh}/{CLASSIC}", {"durable": False})
    api.call(
        "queues.put.bad-json",
        "PUT",
        f"/api/queues/{vh}/ref-bad",
        raw=b'{"durable": tru',
        headers={"content-type": "application/json"},
    )
    api.call(
        "queues.put.bad-argument-type",
        "PUT",
        f"/api/queues/{vh}/ref-bad",
        {"durable": True, "arguments": {"x-max-length": "ten"}},
    )
    api.call(
        "queues.put.bad-argument-value",
        "PUT",
        f"/api/queues/{vh}/ref-bad",
        {"durable": True, "arguments": {"x-queue-type": "no-such-type"}},
    )
    api.call("queues.put.durable-not-bool", "PUT", f"/api/queues/{vh}/ref-bad", {"durable": "yes"})
    api.call("queues.put.arguments-not-object", "PUT", f"/api/queues/{vh}/ref-bad", {"arguments": [1]})
    api.call("queues.put.body-not-object", "PUT", f"/api/queues/{vh}/ref-bad", [1, 2])
    api.call(
        "queues.put.text-plain",
        "PUT",
        f"/api/queues/{vh}/ref-text-plain",
        raw=b'{"durable": true}',
        headers={"content-type": "text/plain"},
    )
    api.call("queues.put.no-content-type", "PUT", f"/api/queues/{vh}/ref-no-content-type", raw=b'{"durable": true}')
    api.call(
        "queues.put.empty-body",
        "PUT",
        f"/api/queues/{vh}/ref-empty-body",
        raw=b"",
        headers={"content-type": "application/json"},
    )
    api.call("queues.put.unknown-vhost", "PUT", "/api/queues/no-such-vh/ref-bad", {"durable": True})
    api.call("queues.put.amq-prefix", "PUT", f"/api/queues/{vh}/amq.ref", {"durable": True})
    api.call("queues.put.exclusive", "PUT", f"/api/queues/{vh}/ref-exclusive", {"exclusive": True})

    api.call(
        "bindings.post.e2q",
        "POST",
        f"/api/bindings/{vh}/e/ref-headers/q/{CLASSIC}",
        {"routing_key": "", "arguments": E2Q_ARGS},
    )
    api.call(
        "bindings.post.e2q-no-args", "POST", f"/api/bindings/{vh}/e/ref-direct/q/{CLASSIC}", {"routing_key": "ref-rk"}
    )
    api.call("bindings.post.e2q-empty", "POST", f"/api/bindings/{vh}/e/ref-fanout/q/{QUORUM}", {})
    api.call(
        "bindings.post.e2e",
        "POST",
        f"/api/bindings/{vh}/e/ref-topic/e/ref-fanout",
        {"routing_key": "ref.#", "arguments": E2E_ARGS},
    )
    api.call(
        "bindings.post.unknown-queue", "POST", f"/api/bindings/{vh}/e/ref-direct/q/no-such-q", {"routing_key": "x"}
    )
    api.call(
        "bindings.post.default-exchange", "POST", f"/api/bindings/{vh}/e/amq.default/q/{CLASSIC}", {"routing_key": "x"}
    )
    api.call("bindings.post.unknown-vhost", "POST", "/api/bindings/no-such-vh/e/x/q/y", {"routing_key": "x"})

    # messages, a connection with two channels (one consumer, one in confirm mode)
    params = pika.URLParameters(amqp_url)
    params.virtual_host = VHOST
    params.heartbeat = 0  # the capture does not serve the connection while it talks HTTP
    params.client_properties = {"connection_name": "ref-connection", "product": "ref-capture"}
    connection = pika.BlockingConnection(params)
    publisher = connection.channel()
    publisher.confirm_delivery()
    properties = pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        delivery_mode=2,
        priority=3,
        correlation_id="ref-corr",
        reply_to="ref-reply",
        expiration="3600000",
        message_id="ref-msg",
        timestamp=1700000000,
        type="ref-type",
        user_id="guest",
        app_id="ref-app",
        headers={"ref-str": "v", "ref-int": 7, "ref-bool": True, "ref-list": [1, "a"], "ref-table": {"k": "v"}},
    )
    for index in range(4):
        publisher.basic_publish("ref-direct", "ref-rk", f"ready {index}".encode(), properties)
    publisher.basic_publish("", QUORUM, b"quorum body", pika.BasicProperties(delivery_mode=2))
    publisher.basic_publish("", GET_QUEUE, b"text body", pika.BasicProperties(content_type="text/plain"))
    publisher.basic_publish("", GET_QUEUE, bytes(range(250, 256)) + b"\x00binary", properties)
    publisher.basic_publish("", GET_QUEUE, b"x" * 100, pika.BasicProperties(headers={"h": "v"}))
    for index in range(5):
        publisher.basic_publish("", GET_QUEUE, f"filler {index}".encode())
    publisher.basic_publish("", DEFAULT_QUEUE, b"unroutable here")  # no such queue in ref-vh: drop_unroutable
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(CLASSIC, lambda *_: None, auto_ack=False, consumer_tag=CONSUMER_TAG)
    connection.process_data_events(time_limit=1.0)  # the one delivery: unacked from now on

    default_params = pika.URLParameters(amqp_url)
    default_params.heartbeat = 0
    default_connection = pika.BlockingConnection(default_params)
    default_connection.channel().basic_publish("", DEFAULT_QUEUE, b"in the default vhost")

    def settled() -> bool:
        queue = api.get(f"/api/queues/{vh}/{CLASSIC}")
        channels = api.get(f"/api/vhosts/{vh}/channels")
        return (
            queue.get("messages_ready") == 3
            and queue.get("messages_unacknowledged") == 1
            and "message_stats" in queue
            and len(channels) == 2
            and all("message_stats" in channel for channel in channels)
        )

    wait("the statistics to tick", settled)
    time.sleep(STATS_TICK + 1)  # one more tick: rates and details
    return {"connection": connection, "default_connection": default_connection}


def capture_reads(api: Api) -> None:
    """GET of every collection and of one item of each, as guest (administrator)."""
    vh = q(VHOST)
    for rid, path in [
        ("overview", "/api/overview"),
        ("cluster-name", "/api/cluster-name"),
        ("nodes", "/api/nodes"),
        ("extensions", "/api/extensions"),
        ("whoami", "/api/whoami"),
        ("auth", "/api/auth"),
        ("definitions", "/api/definitions"),
        ("definitions.vhost", f"/api/definitions/{vh}"),
        ("connections", "/api/connections"),
        ("connections.vhost", f"/api/vhosts/{vh}/connections"),
        ("connections.username", "/api/connections/username/guest"),
        ("channels", "/api/channels"),
        ("channels.vhost", f"/api/vhosts/{vh}/channels"),
        ("consumers", "/api/consumers"),
        ("consumers.vhost", f"/api/consumers/{vh}"),
        ("exchanges", "/api/exchanges"),
        ("exchanges.vhost", f"/api/exchanges/{vh}"),
        ("exchanges.vhost.default-vhost", "/api/exchanges/%2F"),
        ("exchanges.item", f"/api/exchanges/{vh}/ref-with-args"),
        ("exchanges.item.direct", f"/api/exchanges/{vh}/ref-direct"),
        ("exchanges.item.amq-default", "/api/exchanges/%2F/amq.default"),
        ("exchanges.item.amq-direct", f"/api/exchanges/{vh}/amq.direct"),
        ("exchanges.bindings.source", f"/api/exchanges/{vh}/ref-topic/bindings/source"),
        ("exchanges.bindings.destination", f"/api/exchanges/{vh}/ref-fanout/bindings/destination"),
        ("exchanges.bindings.source.default", f"/api/exchanges/{vh}/amq.default/bindings/source"),
        ("queues", "/api/queues"),
        ("queues.vhost", f"/api/queues/{vh}"),
        ("queues.vhost.default-vhost", "/api/queues/%2F"),
        ("queues.item.classic", f"/api/queues/{vh}/{CLASSIC}"),
        ("queues.item.quorum", f"/api/queues/{vh}/{QUORUM}"),
        ("queues.item.default-vhost", f"/api/queues/%2F/{DEFAULT_QUEUE}"),
        (
            "queues.item.lengths-age",
            f"/api/queues/{vh}/{CLASSIC}?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5",
        ),
        ("queues.bindings", f"/api/queues/{vh}/{CLASSIC}/bindings"),
        ("bindings", "/api/bindings"),
        ("bindings.vhost", f"/api/bindings/{vh}"),
        ("bindings.e2q", f"/api/bindings/{vh}/e/ref-headers/q/{CLASSIC}"),
        ("bindings.e2e", f"/api/bindings/{vh}/e/ref-topic/e/ref-fanout"),
        ("vhosts", "/api/vhosts"),
        ("vhosts.item", f"/api/vhosts/{vh}"),
        ("vhosts.item.default", "/api/vhosts/%2F"),
        ("vhosts.permissions", f"/api/vhosts/{vh}/permissions"),
        ("vhosts.topic-permissions", f"/api/vhosts/{vh}/topic-permissions"),
        ("users", "/api/users"),
        ("users.without-permissions", "/api/users/without-permissions"),
        ("users.item", f"/api/users/{MGMT_USER}"),
        ("users.item.guest", "/api/users/guest"),
        ("users.permissions", f"/api/users/{MGMT_USER}/permissions"),
        ("users.topic-permissions", f"/api/users/{MGMT_USER}/topic-permissions"),
        ("permissions", "/api/permissions"),
        ("permissions.item", f"/api/permissions/{vh}/{MGMT_USER}"),
        ("topic-permissions", "/api/topic-permissions"),
        ("topic-permissions.item", f"/api/topic-permissions/{vh}/{MGMT_USER}"),
        ("policies", "/api/policies"),
        ("policies.vhost", f"/api/policies/{vh}"),
        ("policies.item", f"/api/policies/{vh}/ref-policy"),
        ("operator-policies", "/api/operator-policies"),
        ("operator-policies.vhost", f"/api/operator-policies/{vh}"),
        ("operator-policies.item", f"/api/operator-policies/{vh}/ref-op-policy"),
        ("parameters", "/api/parameters"),
        ("global-parameters", "/api/global-parameters"),
        ("vhost-limits", "/api/vhost-limits"),
        ("user-limits", "/api/user-limits"),
        ("feature-flags", "/api/feature-flags"),
        ("healthchecks.node", "/api/healthchecks/node"),
        ("health.alarms", "/api/health/checks/alarms"),
        ("health.local-alarms", "/api/health/checks/local-alarms"),
        ("health.port-listener", f"/api/health/checks/port-listener/{api.amqp_port}"),
        ("health.port-listener.unused", "/api/health/checks/port-listener/1"),
        ("health.protocol-listener", "/api/health/checks/protocol-listener/amqp"),
        ("health.protocol-listener.missing", "/api/health/checks/protocol-listener/mqtt"),
        ("health.virtual-hosts", "/api/health/checks/virtual-hosts"),
        ("health.node-is-quorum-critical", "/api/health/checks/node-is-quorum-critical"),
        ("health.node-is-mirror-sync-critical", "/api/health/checks/node-is-mirror-sync-critical"),
        ("health.ready-to-serve-clients", "/api/health/checks/ready-to-serve-clients"),
    ]:
        small = rid.startswith(("health", "healthchecks", "aliveness", "whoami", "auth", "extensions"))
        api.call(rid, "GET", path, literal=small)
    node = api.get("/api/overview")["node"]
    api.call("nodes.item", "GET", f"/api/nodes/{q(node)}")
    api.call("nodes.item.memory", "GET", f"/api/nodes/{q(node)}?memory=true&binary=true")
    connection = next(
        c for c in api.get(f"/api/vhosts/{vh}/connections") if c["client_properties"].get("product") == "ref-capture"
    )
    api.call("connections.item", "GET", f"/api/connections/{q(connection['name'])}")
    api.call("connections.channels", "GET", f"/api/connections/{q(connection['name'])}/channels")
    channel = api.get(f"/api/connections/{q(connection['name'])}/channels")[0]["name"]
    api.call("channels.item", "GET", f"/api/channels/{q(channel)}")


def capture_listing(api: Api) -> None:
    """Pagination, filtering, sorting, columns."""
    vh = q(VHOST)
    for rid, query in [
        ("page", "?page=1&page_size=2"),
        ("page.2", "?page=2&page_size=2"),
        ("page.beyond", "?page=50&page_size=2"),
        ("page.size-too-big", "?page=1&page_size=501"),
        ("page.zero", "?page=0&page_size=2"),
        ("page.not-a-number", "?page=abc"),
        ("page.name", "?page=1&page_size=10&name=classic"),
        ("page.name.regex", "?page=1&page_size=10&name=%5Eref-(classic%7Cquorum)%24&use_regex=true"),
        ("page.name.regex.bad", "?page=1&page_size=10&name=(&use_regex=true"),
        ("page.pagination-false", "?page=1&page_size=2&pagination=false"),
        ("name-without-page", "?name=classic"),
        ("columns", "?columns=name,messages"),
        ("columns.dotted", "?columns=name,message_stats.publish,arguments.x-queue-type"),
        ("columns.unknown", "?columns=name,no_such_column"),
        ("columns.page", "?page=1&page_size=2&columns=name,messages"),
        ("sort", "?sort=name"),
        ("sort.reverse", "?sort=name&sort_reverse=true"),
        ("sort.dotted", "?sort=message_stats.publish&columns=name,message_stats.publish"),
        ("sort.messages", "?sort=messages&sort_reverse=true&columns=name,messages"),
        ("sort.unknown", "?sort=no_such_field&columns=name"),
    ]:
        api.call(f"listing.queues.{rid}", "GET", f"/api/queues/{vh}{query}")
    api.call("listing.queues.all.page", "GET", "/api/queues?page=1&page_size=2")
    api.call("listing.exchanges.page", "GET", f"/api/exchanges/{vh}?page=1&page_size=3&name=amq&sort=name")
    api.call("listing.exchanges.columns", "GET", f"/api/exchanges/{vh}?columns=name,type")
    api.call("listing.connections.columns", "GET", "/api/connections?columns=user,vhost,client_properties.product")
    api.call("listing.vhosts.page", "GET", "/api/vhosts?page=1&page_size=1")
    api.call("listing.trailing-slash", "GET", f"/api/exchanges/{vh}/")
    api.call("listing.lower-case-2f", "GET", "/api/exchanges/%2f")


def capture_errors(api: Api) -> None:
    """404s, 401s (with their headers), 405s."""
    vh = q(VHOST)
    api.call("errors.404.vhost", "GET", "/api/vhosts/no-such-vh")
    api.call("errors.404.queues-of-unknown-vhost", "GET", "/api/queues/no-such-vh")
    api.call("errors.404.queue", "GET", f"/api/queues/{vh}/no-such-q")
    api.call("errors.404.queue-in-unknown-vhost", "GET", "/api/queues/no-such-vh/no-such-q")
    api.call("errors.404.exchange", "GET", f"/api/exchanges/{vh}/no-such-x")
    api.call("errors.404.user", "GET", "/api/users/no-such-user")
    api.call("errors.404.connection", "GET", "/api/connections/no-such-connection")
    api.call("errors.404.channel", "GET", "/api/channels/no-such-channel")
    api.call("errors.404.binding", "GET", f"/api/bindings/{vh}/e/ref-direct/q/{CLASSIC}/no-such-key")
    api.call("errors.404.permission", "GET", f"/api/permissions/{vh}/{NO_TAG_USER}")
    api.call("errors.404.policy", "GET", f"/api/policies/{vh}/no-such-policy")
    api.call("errors.404.path", "GET", "/api/no-such-endpoint")
    api.call("errors.404.node", "GET", "/api/nodes/no-such-node@nowhere")
    api.call("errors.404.delete-queue", "DELETE", f"/api/queues/{vh}/no-such-q")
    api.call("errors.404.aliveness", "GET", "/api/aliveness-test/no-such-vh")
    api.call("errors.401.no-credentials", "GET", "/api/overview", auth=None)
    api.call("errors.401.bad-password", "GET", "/api/overview", password="wrong")
    api.call("errors.401.unknown-user", "GET", "/api/overview", auth="no-such-user", password="x")
    api.call("errors.401.no-tag", "GET", "/api/overview", auth=NO_TAG_USER)
    api.call("errors.401.malformed-header", "GET", "/api/overview", auth=None, headers={"authorization": "Basic !!!"})
    api.call("errors.401.bearer", "GET", "/api/overview", auth=None, headers={"authorization": "Bearer abc"})
    api.call("errors.405.post-overview", "POST", "/api/overview", {})
    api.call("errors.405.put-queues", "PUT", f"/api/queues/{vh}", {})
    api.call("errors.405.patch-queue", "PATCH", f"/api/queues/{vh}/{CLASSIC}", {})
    api.call("errors.405.post-queue", "POST", f"/api/queues/{vh}/{CLASSIC}", {})
    api.call("errors.405.delete-overview", "DELETE", "/api/overview")
    api.call("errors.405.get-publish", "GET", f"/api/exchanges/{vh}/ref-direct/publish")
    api.call("errors.405.get-queue-get", "GET", f"/api/queues/{vh}/{CLASSIC}/get")


def capture_tags(api: Api) -> None:
    """What a management-, a monitoring- and a tagless user see."""
    vh = q(VHOST)
    for user in (MGMT_USER, MONITORING_USER):
        for rid, method, path in [
            ("overview", "GET", "/api/overview"),
            ("whoami", "GET", "/api/whoami"),
            ("queues", "GET", "/api/queues"),
            ("queues.own-vhost", "GET", f"/api/queues/{vh}"),
            ("queues.other-vhost", "GET", "/api/queues/%2F"),
            ("queue.other-vhost", "GET", f"/api/queues/%2F/{DEFAULT_QUEUE}"),
            ("queues.unknown-vhost", "GET", "/api/queues/no-such-vh"),
            ("exchanges", "GET", "/api/exchanges"),
            ("vhosts", "GET", "/api/vhosts"),
            ("vhosts.other", "GET", "/api/vhosts/ref-vh-other"),
            ("connections", "GET", "/api/connections"),
            ("channels", "GET", "/api/channels"),
            ("consumers", "GET", "/api/consumers"),
            ("users", "GET", "/api/users"),
            ("user", "GET", f"/api/users/{user}"),
            ("permissions", "GET", "/api/permissions"),
            ("policies", "GET", "/api/policies"),
            ("policies.own-vhost", "GET", f"/api/policies/{vh}"),
            ("definitions", "GET", "/api/definitions"),
            ("nodes", "GET", "/api/nodes"),
            ("put-queue.other-vhost", "PUT", "/api/queues/%2F/ref-tag-q"),
            ("put-vhost", "PUT", "/api/vhosts/ref-tag-vh"),
            ("put-policy", "PUT", f"/api/policies/{vh}/ref-tag-policy"),
        ]:
            body = (
                {"pattern": "^x$", "definition": {"max-length": 1}}
                if "policy" in rid
                else {}
                if method == "PUT"
                else None
            )
            api.call(f"tags.{user.removeprefix('ref-')}.{rid}", method, path, body, auth=user)
    api.call("tags.mgmt.put-queue.own-vhost", "PUT", f"/api/queues/{vh}/ref-mgmt-q", {"durable": False}, auth=MGMT_USER)
    api.call("tags.mgmt.delete-queue.own-vhost", "DELETE", f"/api/queues/{vh}/ref-mgmt-q", auth=MGMT_USER)


def capture_messages(api: Api) -> None:
    """queues/{vh}/{q}/get with each ackmode and encoding, exchanges publish, purge."""
    vh = q(VHOST)
    get = f"/api/queues/{vh}/{GET_QUEUE}/get"
    for rid, body in [
        ("requeue-true", {"count": 3, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        ("reject-requeue-true", {"count": 1, "ackmode": "reject_requeue_true", "encoding": "auto"}),
        ("base64", {"count": 3, "ackmode": "ack_requeue_true", "encoding": "base64"}),
        ("truncate", {"count": 3, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 4}),
        ("ack-requeue-false", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        ("reject-requeue-false", {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"}),
        ("count-beyond", {"count": 100, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        ("bad-ackmode", {"count": 1, "ackmode": "nope", "encoding": "auto"}),
        ("bad-encoding", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "nope"}),
        ("no-count", {"ackmode": "ack_requeue_true", "encoding": "auto"}),
        ("no-ackmode", {"count": 1, "encoding": "auto"}),
        ("count-string", {"count": "1", "ackmode": "ack_requeue_true", "encoding": "auto"}),
        ("truncate-string", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": "4"}),
    ]:
        api.call(f"queues.get.{rid}", "POST", get, body, literal=True)
    api.call(
        "queues.get.quorum",
        "POST",
        f"/api/queues/{vh}/{QUORUM}/get",
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        literal=True,
    )
    api.call(
        "queues.get.empty",
        "POST",
        f"/api/queues/{vh}/ref-empty-body/get",
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        literal=True,
    )
    api.call(
        "queues.get.unknown-queue",
        "POST",
        f"/api/queues/{vh}/no-such-q/get",
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
    )

    publish = f"/api/exchanges/{vh}/ref-direct/publish"
    message = {
        "properties": {"delivery_mode": 2, "headers": {"h": "v"}},
        "routing_key": "ref-rk",
        "payload": "published over HTTP",
        "payload_encoding": "string",
    }
    api.call("exchanges.publish.routed", "POST", publish, message, literal=True)
    api.call("exchanges.publish.unroutable", "POST", publish, {**message, "routing_key": "nowhere"}, literal=True)
    api.call(
        "exchanges.publish.base64",
        "POST",
        publish,
        {**message, "payload": "aGVsbG8=", "payload_encoding": "base64"},
        literal=True,
    )
    api.call(
        "exchanges.publish.bad-base64", "POST", publish, {**message, "payload": "!!", "payload_encoding": "base64"}
    )
    api.call("exchanges.publish.bad-encoding", "POST", publish, {**message, "payload_encoding": "rot13"})
    api.call(
        "exchanges.publish.no-properties", "POST", publish, {k: v for k, v in message.items() if k != "properties"}
    )
    api.call(
        "exchanges.publish.no-routing-key", "POST", publish, {k: v for k, v in message.items() if k != "routing_key"}
    )
    api.call("exchanges.publish.bad-property", "POST", publish, {**message, "properties": {"delivery_mode": "x"}})
    api.call(
        "exchanges.publish.default-exchange",
        "POST",
        f"/api/exchanges/{vh}/amq.default/publish",
        {**message, "routing_key": GET_QUEUE},
        literal=True,
    )
    api.call("exchanges.publish.unknown-exchange", "POST", f"/api/exchanges/{vh}/no-such-x/publish", message)
    api.call("queues.contents.delete", "DELETE", f"/api/queues/{vh}/{GET_QUEUE}/contents")
    api.call(
        "queues.get.after-purge",
        "POST",
        get,
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        literal=True,
    )


def capture_deletes(api: Api, state: dict[str, Any]) -> None:
    """Bindings by properties key, refusals, DELETEs, DELETE connection with X-Reason."""
    vh = q(VHOST)
    status, headers, _ = api.call(
        "bindings.post.for-delete",
        "POST",
        f"/api/bindings/{vh}/e/ref-fanout/q/{GET_QUEUE}",
        {"routing_key": "del", "arguments": {"a": 1}},
    )
    key = headers["location"].rsplit("/", 1)[-1]
    api.call("bindings.item.by-props", "GET", f"/api/bindings/{vh}/e/ref-fanout/q/{GET_QUEUE}/{key}")
    api.call("bindings.item.delete", "DELETE", f"/api/bindings/{vh}/e/ref-fanout/q/{GET_QUEUE}/{key}")
    api.call("bindings.item.delete-again", "DELETE", f"/api/bindings/{vh}/e/ref-fanout/q/{GET_QUEUE}/{key}")
    api.call("bindings.item.plain-key", "GET", f"/api/bindings/{vh}/e/ref-direct/q/{CLASSIC}/ref-rk")
    e2e_key = api.get(f"/api/bindings/{vh}/e/ref-topic/e/ref-fanout")[0]["properties_key"]
    api.call("bindings.item.e2e", "GET", f"/api/bindings/{vh}/e/ref-topic/e/ref-fanout/{q(e2e_key)}")

    api.call("queues.delete.if-empty.refused", "DELETE", f"/api/queues/{vh}/{CLASSIC}?if-empty=true")
    api.call("queues.delete.if-unused.refused", "DELETE", f"/api/queues/{vh}/{CLASSIC}?if-unused=true")
    api.call("exchanges.delete.if-unused.refused", "DELETE", f"/api/exchanges/{vh}/ref-direct?if-unused=true")
    api.call("exchanges.delete.if-unused", "DELETE", f"/api/exchanges/{vh}/ref-unused?if-unused=true")
    api.call("exchanges.delete.amq-default", "DELETE", f"/api/exchanges/{vh}/amq.default")
    api.call("exchanges.delete.amq-direct", "DELETE", f"/api/exchanges/{vh}/amq.direct")
    api.call("exchanges.delete.unknown", "DELETE", f"/api/exchanges/{vh}/no-such-x")
    api.call("queues.delete.if-empty", "DELETE", f"/api/queues/{vh}/{GET_QUEUE}?if-empty=true")
    api.call("queues.delete", "DELETE", f"/api/queues/{vh}/ref-empty-body")
    api.call("policies.delete", "DELETE", f"/api/policies/{vh}/ref-ae-policy")
    api.call("policies.delete.unknown", "DELETE", f"/api/policies/{vh}/no-such-policy")
    api.call("permissions.delete", "DELETE", f"/api/permissions/{vh}/{MONITORING_USER}")
    api.call("users.bulk-delete.unknown", "POST", "/api/users/bulk-delete", {"users": ["ref-bulk-1", "no-such-user"]})
    api.call("users.after-bulk-delete.unknown", "GET", "/api/users/ref-bulk-1")  # deleted all the same
    api.call("users.bulk-delete", "POST", "/api/users/bulk-delete", {"users": ["ref-bulk-2"]})
    api.call("users.bulk-delete.not-a-list", "POST", "/api/users/bulk-delete", {"users": "ref-bad"})
    api.call("users.delete.unknown", "DELETE", "/api/users/no-such-user")
    api.call("definitions.post", "POST", f"/api/definitions/{vh}", api.get(f"/api/definitions/{vh}"))
    api.call("definitions.post.bad", "POST", f"/api/definitions/{vh}", {"queues": "not a list"})

    connection = state["connection"]
    name = next(
        c["name"]
        for c in api.get(f"/api/vhosts/{vh}/connections")
        if c["client_properties"].get("product") == "ref-capture"
    )
    api.call(
        "connections.delete",
        "DELETE",
        f"/api/connections/{q(name)}",
        headers={"x-reason": "closed by the reference capture"},
    )
    api.records[-1]["amqp"] = _closed_by_broker(connection)
    default_connection = state["default_connection"]
    name = next(c["name"] for c in api.get("/api/vhosts/%2F/connections"))
    api.call("connections.delete.no-reason", "DELETE", f"/api/connections/{q(name)}")
    api.records[-1]["amqp"] = _closed_by_broker(default_connection)
    api.call("connections.delete.unknown", "DELETE", "/api/connections/no-such-connection")

    # last: it declares a queue "aliveness-test" in the vhost, which would show in the listings above
    api.call("aliveness-test", "GET", f"/api/aliveness-test/{vh}", literal=True)
    api.call("aliveness-test.default", "GET", "/api/aliveness-test/%2F", literal=True)
    api.call("vhosts.delete", "DELETE", "/api/vhosts/ref-vh-other")
    api.call("vhosts.delete.unknown", "DELETE", "/api/vhosts/ref-vh-other")
    api.call("users.delete", "DELETE", f"/api/users/{NO_TAG_USER}")


def _closed_by_broker(connection: pika.BlockingConnection) -> dict[str, Any]:
    """Serve the connection until the broker closes it: the reply code and text the client got."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
    except pika.exceptions.ConnectionClosedByBroker as closed:
        return {"reply_code": closed.reply_code, "reply_text": closed.reply_text}
    raise SystemExit("the broker did not close the connection")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5690/")
    parser.add_argument("--http-url", default="http://127.0.0.1:15690/")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reference.json"))
    parser.add_argument("--keep", action="store_true", help="leave the state in place (less the connections)")
    args = parser.parse_args()
    amqp = pika.URLParameters(args.amqp_url)
    api = Api(
        args.http_url,
        {"guest": amqp.credentials.password, MGMT_USER: PASSWORD, MONITORING_USER: PASSWORD, NO_TAG_USER: PASSWORD},
        amqp.port,
    )
    version = api.get("/api/overview")["rabbitmq_version"]
    reset(api)
    state = build_state(api, args.amqp_url)
    capture_reads(api)
    capture_listing(api)
    capture_errors(api)
    capture_tags(api)
    capture_messages(api)
    capture_deletes(api, state)
    if not args.keep:
        reset(api)
    args.out.write_text(
        json.dumps({"format": 1, "rabbitmq_version": version, "requests": api.records}, indent=1) + "\n"
    )
    print(f"{len(api.records)} requests written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
