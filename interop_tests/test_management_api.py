"""The management HTTP API against a broker process: status codes, JSON field names and types, and effects
seen over AMQP (pika) and the reverse.  ``AMQP_HTTP_URL`` + ``AMQP_URL`` run it against RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .conftest import TIMEOUT
from .management_client import Api, poll, q


@pytest.fixture
def api(management: SimpleNamespace) -> Api:
    return management.api


@pytest.fixture
def name() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def connect(
    management: SimpleNamespace, vhost: str = "/", user: str = "guest", password: str = "guest", **props: str
) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        management.host,
        management.port,
        vhost,
        pika.PlainCredentials(user, password),
        socket_timeout=TIMEOUT,
        stack_timeout=2 * TIMEOUT,
        client_properties=props or None,
    )
    return pika.BlockingConnection(params)


@pytest.fixture
def amqp(management: SimpleNamespace) -> Iterator[BlockingChannel]:
    connection = connect(management)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


# ------------------------------------------------------------------ node-wide


def test_overview_has_rabbitmqs_fields(api: Api) -> None:
    overview = api.ok("GET", "/api/overview")
    for key in ("management_version", "rabbitmq_version", "product_name", "cluster_name", "node", "erlang_version"):
        assert isinstance(overview[key], str), key
    for key in ("message_stats", "queue_totals", "object_totals", "churn_rates"):
        assert isinstance(overview[key], dict), key
    assert set(overview["object_totals"]) == {"channels", "connections", "consumers", "exchanges", "queues"}
    assert all(isinstance(value, int) for value in overview["object_totals"].values())
    assert {t["name"] for t in overview["exchange_types"]} >= {"direct", "fanout", "topic", "headers"}
    assert isinstance(overview["contexts"], list)
    assert any(listener["protocol"] == "amqp" for listener in overview["listeners"])
    for listener in overview["listeners"]:
        assert {"node", "protocol", "ip_address", "port", "socket_opts"} <= set(listener)


def test_whoami_cluster_name_extensions_and_nodes(api: Api, management: SimpleNamespace) -> None:
    assert api.ok("GET", "/api/whoami") == {"name": "guest", "tags": ["administrator"]}
    assert isinstance(api.ok("GET", "/api/cluster-name")["name"], str)
    assert isinstance(api.ok("GET", "/api/extensions"), list)
    (node,) = api.ok("GET", "/api/nodes")
    for key in ("mem_used", "mem_limit", "disk_free", "disk_free_limit", "fd_used", "fd_total", "uptime"):
        assert isinstance(node[key], int), key
    assert node["running"] is True and isinstance(node["mem_alarm"], bool)
    assert api.ok("GET", f"/api/nodes/{q(node['name'])}")["name"] == node["name"]
    assert api.get("/api/nodes/nobody@nowhere").status == (500 if management.external else 404)  # RabbitMQ: 500


def test_health_checks(api: Api, management: SimpleNamespace) -> None:
    assert api.ok("GET", "/api/aliveness-test/%2F") == {"status": "ok"}
    assert api.ok("GET", "/api/healthchecks/node")["status"] == "ok"
    assert api.ok("GET", "/api/health/checks/alarms") == {"status": "ok"}
    assert api.ok("GET", "/api/health/checks/local-alarms") == {"status": "ok"}
    assert api.ok("GET", f"/api/health/checks/port-listener/{management.port}")["status"] == "ok"
    assert api.get("/api/health/checks/port-listener/1").status == 503
    assert api.ok("GET", "/api/health/checks/protocol-listener/amqp")["status"] == "ok"
    assert api.ok("GET", "/api/health/checks/virtual-hosts") == {"status": "ok"}
    assert api.ok("GET", "/api/health/checks/node-is-quorum-critical") == {
        "status": "ok",
        "reason": "single node cluster",
    }


# ------------------------------------------------------------------ auth and errors


def test_no_credentials_is_a_401_challenge(api: Api) -> None:
    answer = api.get("/api/overview", auth=False)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_a_wrong_password_is_refused(api: Api) -> None:
    answer = api.as_user("guest", "wrong").get("/api/overview")
    assert answer.status == 401
    assert answer.json == {"error": "not_authorized", "reason": "Login failed"}
    assert answer.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_rabbitmqs_error_bodies(api: Api, name: str) -> None:
    for path in ("/api/nonexistent", f"/api/queues/%2F/{name}", f"/api/users/{name}", "/api/vhosts/nope"):
        answer = api.get(path)
        assert (answer.status, answer.json) == (404, {"error": "Object Not Found", "reason": "Not Found"}), path
    assert api.post("/api/overview").status == 405
    answer = api.request("PUT", f"/api/users/{name}", raw=b"not json")
    assert (answer.status, answer.json) == (400, {"error": "bad_request", "reason": "not_json"})
    answer = api.get("/api/overview", headers={"Origin": "http://evil"})
    assert "access-control-allow-origin" not in answer.headers
    assert "aiohttp" not in answer.headers.get("server", "")  # the product, not the library and its version


# ------------------------------------------------------------------ queues


def test_queue_declared_over_the_api_takes_messages_over_amqp(api: Api, amqp: BlockingChannel, name: str) -> None:
    assert api.put(f"/api/queues/%2F/{name}", {"durable": False, "arguments": {"x-max-length": 10}}).status == 201
    assert api.put(f"/api/queues/%2F/{name}", {"durable": False, "arguments": {"x-max-length": 10}}).status == 204
    answer = api.put(f"/api/queues/%2F/{name}", {"durable": True})
    assert answer.status == 400 and answer.json["error"] == "bad_request"
    assert f"inequivalent arg 'durable' for queue '{name}'" in answer.json["reason"]
    for body in (b"one", b"two"):
        amqp.basic_publish("", name, body)
    queue = poll(
        lambda: api.ok("GET", f"/api/queues/%2F/{name}"),
        lambda queue: queue.get("messages") == 2 and "consumers" in queue,
        "queue counts",
    )
    assert (queue["messages_ready"], queue["messages_unacknowledged"], queue["consumers"]) == (2, 0, 0)
    assert (queue["name"], queue["vhost"], queue["durable"], queue["auto_delete"], queue["exclusive"]) == (
        name,
        "/",
        False,
        False,
        False,
    )
    assert queue["arguments"] == {"x-max-length": 10} and queue["state"] == "running" and queue["type"] == "classic"
    assert isinstance(queue["node"], str)
    listed = api.ok("GET", "/api/queues/%2F")
    assert name in [item["name"] for item in listed]


def test_queue_get_with_ackmodes(api: Api, amqp: BlockingChannel, name: str) -> None:
    amqp.queue_declare(name)
    amqp.basic_publish(
        "", name, b"hello", pika.BasicProperties(content_type="text/plain", headers={"h": 1}, delivery_mode=2)
    )
    amqp.basic_publish("", name, b"\xff\xfe")
    get = {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}
    first, second = api.ok("POST", f"/api/queues/%2F/{name}/get", get)
    assert (first["payload"], first["payload_encoding"], first["payload_bytes"]) == ("hello", "string", 5)
    assert (first["exchange"], first["routing_key"], first["redelivered"], first["message_count"]) == (
        "",
        name,
        False,
        1,
    )
    assert first["properties"] == {"content_type": "text/plain", "delivery_mode": 2, "headers": {"h": 1}}
    assert (second["payload"], second["payload_encoding"]) == ("//4=", "base64")
    truncated = api.ok("POST", f"/api/queues/%2F/{name}/get", {**get, "count": 1, "truncate": 2, "encoding": "base64"})
    assert (truncated[0]["payload"], truncated[0]["redelivered"]) == ("aGU=", True)
    api.ok("POST", f"/api/queues/%2F/{name}/get", {**get, "count": 1, "ackmode": "ack_requeue_false"})
    method, _, body = amqp.basic_get(name, auto_ack=True)
    assert body == b"\xff\xfe" and method.redelivered
    answer = api.post(f"/api/queues/%2F/{name}/get", {"count": 1, "ackmode": "ack_requeue_false"})
    assert (answer.status, answer.json["reason"]) == (400, "[{key_missing,encoding}]")


def test_purge_and_conditional_delete(api: Api, amqp: BlockingChannel, name: str) -> None:
    amqp.queue_declare(name)
    amqp.basic_publish("", name, b"x")
    answer = api.delete(f"/api/queues/%2F/{name}?if-empty=true")
    assert answer.status == 400 and answer.json["reason"] == f"queue '{name}' in vhost '/' not empty"
    assert api.delete(f"/api/queues/%2F/{name}/contents").status == 204
    assert amqp.queue_declare(name, passive=True).method.message_count == 0
    amqp.basic_consume(name, lambda *args: None)
    answer = api.delete(f"/api/queues/%2F/{name}?if-unused=true")
    assert answer.status == 400 and answer.json["reason"] == f"queue '{name}' in vhost '/' in use"


def test_deleting_a_queue_over_the_api_is_seen_over_amqp(api: Api, amqp: BlockingChannel, name: str) -> None:
    amqp.queue_declare(name)
    assert api.delete(f"/api/queues/%2F/{name}").status == 204
    assert api.delete(f"/api/queues/%2F/{name}").status == 404
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        amqp.queue_declare(name, passive=True)
    assert raised.value.reply_code == 404


# ------------------------------------------------------------------ exchanges and bindings


def test_exchange_declare_bind_publish_and_unbind(api: Api, amqp: BlockingChannel, name: str) -> None:
    exchange, queue = f"{name}-x", f"{name}-q"
    assert api.put(f"/api/exchanges/%2F/{exchange}", {"type": "direct", "durable": False}).status == 201
    answer = api.put(f"/api/exchanges/%2F/{exchange}", {"type": "fanout", "durable": False})
    assert answer.status == 400 and "inequivalent arg 'type'" in answer.json["reason"]
    answer = api.put(f"/api/exchanges/%2F/{name}-bogus", {"type": "bogus"})
    # RabbitMQ says "unknown" for a type name it has never seen as an atom, "invalid" after that
    assert answer.status == 400
    assert answer.json["reason"] in ("invalid exchange type 'bogus'", "unknown exchange type 'bogus'")
    info = api.ok("GET", f"/api/exchanges/%2F/{exchange}")
    assert (info["name"], info["type"], info["durable"], info["auto_delete"], info["internal"]) == (
        exchange,
        "direct",
        False,
        False,
        False,
    )
    amqp.queue_declare(queue)
    answer = api.post(f"/api/bindings/%2F/e/{exchange}/q/{queue}", {"routing_key": "a b~c"})
    assert answer.status == 201 and answer.headers["location"] == f"{queue}/a%2Bb%257Ec"
    (binding,) = api.ok("GET", f"/api/bindings/%2F/e/{exchange}/q/{queue}")
    assert binding == {
        "source": exchange,
        "vhost": "/",
        "destination": queue,
        "destination_type": "queue",
        "routing_key": "a b~c",
        "arguments": {},
        "properties_key": "a+b%7Ec",
    }
    assert api.ok("GET", f"/api/bindings/%2F/e/{exchange}/q/{queue}/a+b%257Ec") == binding
    assert binding in api.ok("GET", f"/api/exchanges/%2F/{exchange}/bindings/source")
    assert binding in api.ok("GET", f"/api/queues/%2F/{queue}/bindings")
    publish = {"routing_key": "a b~c", "payload": "hi", "payload_encoding": "string", "properties": {}}
    assert api.ok("POST", f"/api/exchanges/%2F/{exchange}/publish", publish) == {"routed": True}
    _, _, body = amqp.basic_get(queue, auto_ack=True)
    assert body == b"hi"
    answer = api.delete(f"/api/exchanges/%2F/{exchange}?if-unused=true")
    assert answer.status == 400 and answer.json["reason"] == f"exchange '{exchange}' in vhost '/' in use"
    assert api.delete(f"/api/bindings/%2F/e/{exchange}/q/{queue}/a+b%257Ec").status == 204
    assert api.delete(f"/api/bindings/%2F/e/{exchange}/q/{queue}/a+b%257Ec").status == 404
    assert api.ok("POST", f"/api/exchanges/%2F/{exchange}/publish", publish) == {"routed": False}
    assert api.delete(f"/api/exchanges/%2F/{exchange}").status == 204
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        amqp.exchange_declare(exchange, passive=True)


def test_exchange_to_exchange_binding_with_arguments(api: Api, amqp: BlockingChannel, name: str) -> None:
    source, destination, queue = f"{name}-s", f"{name}-d", f"{name}-q"
    amqp.exchange_declare(source, "direct")
    amqp.exchange_declare(destination, "fanout")
    amqp.queue_declare(queue)
    amqp.queue_bind(queue, destination)
    answer = api.post(f"/api/bindings/%2F/e/{source}/e/{destination}", {"routing_key": "k", "arguments": {"x": 1}})
    assert answer.status == 201
    props = answer.headers["location"].split("/", 1)[1]
    (binding,) = api.ok("GET", f"/api/exchanges/%2F/{destination}/bindings/destination")
    assert (binding["destination_type"], binding["arguments"], binding["routing_key"]) == ("exchange", {"x": 1}, "k")
    amqp.basic_publish(source, "k", b"through")
    _, _, body = amqp.basic_get(queue, auto_ack=True)
    assert body == b"through"
    assert api.delete(f"/api/bindings/%2F/e/{source}/e/{destination}/{props}").status == 204
    assert api.ok("GET", f"/api/exchanges/%2F/{destination}/bindings/destination") == []


def test_system_exchanges_and_reserved_names_are_refused(api: Api, name: str) -> None:
    for answer in (api.delete("/api/exchanges/%2F/amq.direct"), api.put(f"/api/queues/%2F/amq.{name}", {})):
        assert (answer.status, answer.json) == (401, {"error": "not_authorised", "reason": "Access refused."})
    assert api.ok("GET", "/api/exchanges/%2F/amq.default")["name"] == ""


def test_publish_to_a_missing_exchange(api: Api, name: str) -> None:
    publish = {"routing_key": "", "payload": "x", "payload_encoding": "string", "properties": {}}
    answer = api.post(f"/api/exchanges/%2F/{name}/publish", publish)
    assert (answer.status, answer.json["reason"]) == (400, f"404 NOT_FOUND - no exchange '{name}' in vhost '/'")


# ------------------------------------------------------------------ what AMQP does, seen in the API


def test_connections_channels_and_consumers_of_a_pika_client(api: Api, management: SimpleNamespace, name: str) -> None:
    connection = connect(management, connection_name=name)
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=7)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_consume(queue, lambda *args: None, consumer_tag=f"{name}-tag")
        mine = poll(  # RabbitMQ adds the byte counts at its next statistics tick
            lambda: [c for c in api.ok("GET", "/api/connections") if c.get("user_provided_name") == name],
            lambda found: len(found) == 1 and "recv_oct" in found[0],
            "the pika connection",
        )[0]
        for key, kind in (
            ("peer_port", int),
            ("port", int),
            ("recv_oct", int),
            ("send_oct", int),
            ("connected_at", int),
        ):
            assert isinstance(mine[key], kind), key
        assert (mine["user"], mine["vhost"], mine["protocol"], mine["ssl"], mine["type"]) == (
            "guest",
            "/",
            "AMQP 0-9-1",
            False,
            "network",
        )
        assert mine["client_properties"]["product"] == "Pika Python Client Library"
        assert api.ok("GET", f"/api/connections/{q(mine['name'])}")["name"] == mine["name"]
        channels = poll(
            lambda: api.ok("GET", f"/api/connections/{q(mine['name'])}/channels"),
            lambda found: len(found) == 1 and "prefetch_count" in found[0],
            "the pika channel",
        )
        assert channels[0]["prefetch_count"] == 7 and channels[0]["number"] == 1
        consumers = poll(
            lambda: [c for c in api.ok("GET", "/api/consumers/%2F") if c["consumer_tag"] == f"{name}-tag"],
            lambda found: len(found) == 1,
            "the consumer",
        )
        assert consumers[0]["queue"] == {"name": queue, "vhost": "/"}
        info = poll(
            lambda: api.ok("GET", f"/api/queues/%2F/{q(queue)}"), lambda info: info.get("consumers") == 1, "consumers"
        )
        assert info["exclusive"] is True and info["owner_pid_details"]["name"] == mine["name"]
        closing = api.delete(f"/api/connections/{q(mine['name'])}", headers={"X-Reason": "maintenance window"})
        assert closing.status == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
            connection.process_data_events(TIMEOUT)
            connection.process_data_events(TIMEOUT)
        assert raised.value.reply_code == 320
        assert raised.value.reply_text == "CONNECTION_FORCED - maintenance window"
    finally:
        if connection.is_open:
            connection.close()
    assert api.get(f"/api/connections/{q(mine['name'])}").status == 404 or management.external


# ------------------------------------------------------------------ listing conventions


def test_pagination_filter_sort_and_columns(api: Api, amqp: BlockingChannel, name: str) -> None:
    for suffix in ("a", "B", "c"):
        amqp.queue_declare(f"{name}-{suffix}")
    answer = api.ok("GET", f"/api/queues/%2F?page=1&page_size=2&name={name}&columns=name,vhost&sort=name")
    assert answer["filtered_count"] == 3 and answer["item_count"] == 2 and answer["page_count"] == 2
    assert answer["page"] == 1 and answer["page_size"] == 2 and answer["total_count"] >= 3
    assert answer["items"] == [{"name": f"{name}-B", "vhost": "/"}, {"name": f"{name}-a", "vhost": "/"}]
    answer = api.ok("GET", f"/api/queues/%2F?page=1&name={name}-[ab]$&use_regex=true&columns=name&sort_reverse=true")
    assert answer["items"] == [{"name": f"{name}-a"}, {"name": f"{name}-B"}]
    answer = api.get("/api/queues?page=1&page_size=501")
    assert (answer.status, answer.json["error"]) == (400, "invalid_pagination_parameters")
    answer = api.get(f"/api/queues?page=9&name={name}")
    assert (answer.status, answer.json["error"]) == (400, "page_out_of_range")


def test_request_validation_answers_as_rabbitmq(api: Api, amqp: BlockingChannel, name: str) -> None:
    answer = api.put(f"/api/queues/%2F/{name}", {"durable": "yes"})
    assert (answer.status, answer.json) == (400, {"error": "bad_request", "reason": ["not_boolean", "yes"]})
    # rabbitmqadmin sends its booleans as strings
    assert api.put(f"/api/queues/%2F/{name}-str", {"durable": "false", "auto_delete": "true"}).status == 201
    assert api.ok("GET", f"/api/queues/%2F/{name}-str")["auto_delete"] is True
    api.delete(f"/api/queues/%2F/{name}-str")
    answer = api.put(f"/api/queues/{name}-no-vhost/{name}", {})
    assert (answer.status, answer.json) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    amqp.queue_declare(name)
    amqp.basic_publish("", name, b"body")
    got = api.ok(
        "POST", f"/api/queues/%2F/{name}/get", {"count": "1", "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert [m["payload"] for m in got] == ["body"]
    answer = api.post(f"/api/queues/%2F/{name}/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "rot13"})
    assert (answer.status, answer.json["reason"]) == (400, "Unsupported encoding. Please use auto or base64.")
    publish = {"routing_key": name, "properties": {}, "payload": "!!", "payload_encoding": "base64"}
    answer = api.post("/api/exchanges/%2F/amq.default/publish", publish)
    assert (answer.status, answer.json["reason"]) == (400, ["not_base64", "!!"])
    answer = api.post("/api/exchanges/%2F/amq.default/publish", {**publish, "payload_encoding": "rot13"})
    assert (answer.status, answer.json["reason"]) == (400, ["unsupported_encoding", "rot13"])
    answer = api.post(
        "/api/exchanges/%2F/amq.default/publish",
        {**publish, "payload_encoding": "string", "properties": {"delivery_mode": "x"}},
    )
    assert (answer.status, answer.json["reason"]) == (400, ["not_int", "delivery_mode"])


def test_trailing_slashes_and_authorization_headers(api: Api) -> None:
    assert api.get("/api/exchanges/%2F/").status == 200
    assert api.get("/api/overview", auth=False, headers={"Authorization": "Basic !!!"}).status == 400
    answer = api.get("/api/overview", auth=False, headers={"Authorization": "Bearer abc"})
    assert (answer.status, answer.json) == (401, {"error": "not_authorized", "reason": "Login failed"})
    assert api.ok("GET", "/api/auth")["enable_uaa"] is False
    for path in ("/api/vhost-limits", "/api/user-limits", "/api/feature-flags", "/api/global-parameters"):
        assert isinstance(api.ok("GET", path), list), path


def test_a_body_over_the_size_limit_is_refused(api: Api, management: SimpleNamespace, name: str) -> None:
    answer = api.request("PUT", f"/api/queues/%2F/{name}", raw=b'{"x": "' + b"a" * (21 * 1024 * 1024) + b'"}')
    assert answer.status == (500 if management.external else 413)  # RabbitMQ: a bare 500
    assert api.get(f"/api/queues/%2F/{name}").status == 404


def test_closing_a_connection_without_a_reason(api: Api, management: SimpleNamespace, name: str) -> None:
    connection = connect(management, connection_name=name)
    try:
        mine = poll(
            lambda: [c for c in api.ok("GET", "/api/connections") if c.get("user_provided_name") == name],
            lambda found: len(found) == 1,
            "the pika connection",
        )[0]
        assert api.request("HEAD", f"/api/connections/{q(mine['name'])}").status == 200
        assert api.delete(f"/api/connections/{q(mine['name'])}").status == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
            connection.process_data_events(TIMEOUT)
            connection.process_data_events(TIMEOUT)
        assert raised.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"
    finally:
        if connection.is_open:
            connection.close()


def test_the_per_vhost_and_per_user_views(api: Api, management: SimpleNamespace, name: str) -> None:
    connection = connect(management, connection_name=name)
    try:
        channel = connection.channel()
        mine = poll(
            lambda: [c for c in api.ok("GET", "/api/vhosts/%2F/connections") if c.get("user_provided_name") == name],
            lambda found: len(found) == 1,
            "the connection in its vhost",
        )[0]
        assert mine["name"] in [c["name"] for c in api.ok("GET", "/api/connections/username/guest")]
        channels = poll(
            lambda: [
                c for c in api.ok("GET", "/api/vhosts/%2F/channels") if c["connection_details"]["name"] == mine["name"]
            ],
            lambda found: len(found) == 1,
            "the channel in its vhost",
        )
        assert api.ok("GET", f"/api/channels/{q(channels[0]['name'])}")["number"] == channel.channel_number
        assert api.get(f"/api/channels/{q(mine['name'] + ' (99)')}").status == 404
    finally:
        connection.close()
    assert {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} in api.ok(
        "GET", "/api/users/guest/permissions"
    )
    assert api.ok("GET", "/api/permissions/%2F/guest")["configure"] == ".*"
