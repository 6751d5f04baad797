"""Requests as real management tools send them, answered as RabbitMQ answers them (in-process app, no socket
of the broker's own): the fixes interop_tests/test_management_tools.py found, one test each.

- Celery Flower asks for ``/api/queues/`` on the default vhost: a trailing slash is the same resource.
- rabbitmqadmin sends every field as a string: ``"durable": "false"``, ``"count": "2"``.
- pyrabbit2's ``create_binding`` without a routing key sends ``"routing_key": null``.
- interop_tests/test_management_shapes_vs_rabbitmq.py: a connection has ``ssl_*`` (null without TLS) and no
  ``user_provided_name`` when the client gave none, as RabbitMQ lists it.
- nagios' check_rabbitmq_server: ``proc_used``/``proc_total`` was 1/1, a CRITICAL.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http.app import create_app
from amqp_server.http.context import Context
from tests.frames import FakeClock, open_peer

GUEST = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


@pytest.fixture
def broker() -> Broker:
    return Broker(clock=FakeClock())


@pytest.fixture
def operations(broker: Broker) -> BrokerOperations:
    return BrokerOperations(broker, "rabbit@test")


@pytest.fixture
async def http(operations: BrokerOperations, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(Context(operations, tmp_path)), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_a_trailing_slash_names_the_same_resource(
    http: TestClient[Any, Any], operations: BrokerOperations
) -> None:
    operations.declare_queue("/", "q1", durable=False)
    for path in ("/api/queues/", "/api/queues/%2F/", "/api/queues/%2F/q1/"):
        answer = await http.get(path, headers=GUEST)
        assert answer.status == 200, path
    assert [q["name"] for q in await (await http.get("/api/queues/", headers=GUEST)).json()] == ["q1"]
    columns = await (await http.get("/api/queues/%2F/?columns=name", headers=GUEST)).json()
    assert columns == [{"name": "q1"}]  # the query string goes along


async def test_only_one_trailing_slash_goes_and_auth_still_applies(http: TestClient[Any, Any]) -> None:
    assert (await http.get("/api/queues//", headers=GUEST)).status == 404  # the vhost "" (RabbitMQ: 404 too)
    assert (await http.get("/api/no-such-endpoint/", headers=GUEST)).status == 404
    wrong_method = await http.post("/api/overview/", headers=GUEST)
    assert wrong_method.status == 405 and "GET" in wrong_method.headers["Allow"]
    refused = await http.get("/api/queues/")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")


async def test_flags_given_as_strings_as_rabbitmqadmin_sends_them(
    http: TestClient[Any, Any], operations: BrokerOperations
) -> None:
    answer = await http.put("/api/queues/%2F/q1", json={"durable": "false", "auto_delete": "true"}, headers=GUEST)
    assert answer.status == 201
    queue = operations.queue("/", "q1")
    assert queue is not None and (queue["durable"], queue["auto_delete"]) == (False, True)
    body = {"type": "topic", "durable": "true", "auto_delete": "false", "internal": "false", "arguments": {}}
    assert (await http.put("/api/exchanges/%2F/x1", json=body, headers=GUEST)).status == 201
    exchange = operations.exchange("/", "x1")
    assert exchange is not None and (exchange["durable"], exchange["internal"]) == (True, False)
    assert (await http.put("/api/queues/%2F/q2", json={"durable": "yes"}, headers=GUEST)).status == 400


async def test_get_takes_count_and_truncate_as_strings(
    http: TestClient[Any, Any], operations: BrokerOperations
) -> None:
    operations.declare_queue("/", "q1", durable=False)
    for body in (b"first", b"second", b"third"):
        operations.publish("/", "", "q1", body)
    request = {"count": "2", "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": "3"}
    answer = await http.post("/api/queues/%2F/q1/get", json=request, headers=GUEST)
    assert answer.status == 200
    assert [(m["payload"], m["payload_bytes"]) for m in await answer.json()] == [("fir", 5), ("sec", 6)]
    bad = {"count": "two", "ackmode": "ack_requeue_false", "encoding": "auto"}
    assert (await http.post("/api/queues/%2F/q1/get", json=bad, headers=GUEST)).status == 400


async def test_a_null_routing_key_binds_with_the_empty_key(
    http: TestClient[Any, Any], operations: BrokerOperations
) -> None:
    operations.declare_queue("/", "q1", durable=False)
    answer = await http.post(
        "/api/bindings/%2F/e/amq.direct/q/q1", json={"routing_key": None, "arguments": []}, headers=GUEST
    )
    assert answer.status == 201
    assert [(b["source"], b["routing_key"]) for b in operations.bindings("/") if b["source"]] == [("amq.direct", "")]


async def test_an_unnamed_plain_connection_is_listed_as_rabbitmq_lists_it(
    http: TestClient[Any, Any], broker: Broker
) -> None:
    open_peer(broker)
    (connection,) = await (await http.get("/api/connections", headers=GUEST)).json()
    assert "user_provided_name" not in connection
    ssl_fields = ("ssl", "ssl_cipher", "ssl_hash", "ssl_key_exchange", "ssl_protocol")
    assert [connection[key] for key in ssl_fields] == [False, None, None, None, None]


async def test_the_node_is_far_from_its_process_limit(http: TestClient[Any, Any]) -> None:
    """nagios' check_rabbitmq_server divides proc_used by proc_total: 1 of 1 was CRITICAL."""
    (node,) = await (await http.get("/api/nodes", headers=GUEST)).json()
    assert 1 <= node["proc_used"] < node["proc_total"] == 1048576
