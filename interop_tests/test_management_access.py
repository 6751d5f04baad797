"""Users, vhosts, permissions and tags through the management API: live over AMQP, persisted in access.json,
and what each tag may see.  ``AMQP_HTTP_URL`` + ``AMQP_URL`` run the API-level tests against RabbitMQ."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest

from .broker_process import BrokerProcess
from .conftest import TIMEOUT
from .management_client import Api, q


@pytest.fixture
def api(management: SimpleNamespace) -> Api:
    return management.api


@pytest.fixture
def name() -> str:
    return f"a-{uuid.uuid4().hex[:10]}"


def connect(management: SimpleNamespace, vhost: str, user: str, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            management.host,
            management.port,
            vhost,
            pika.PlainCredentials(user, password),
            socket_timeout=TIMEOUT,
            stack_timeout=2 * TIMEOUT,
        )
    )


@pytest.fixture
def cleanup(api: Api) -> Iterator[list[str]]:
    """Paths to DELETE after the test (users and vhosts outlive it on a shared broker otherwise)."""
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        api.delete(path)


def test_vhost_lifecycle_over_the_api_and_amqp(api: Api, management: SimpleNamespace, name: str) -> None:
    assert api.put(f"/api/vhosts/{name}").status == 201
    assert api.put(f"/api/vhosts/{name}", {"description": "again", "tags": "a,b"}).status == 204
    vhost = api.ok("GET", f"/api/vhosts/{name}")
    assert vhost["name"] == name and vhost["tracing"] is False and isinstance(vhost["cluster_state"], dict)
    assert (vhost["description"], vhost["tags"]) == ("again", ["a", "b"])
    assert vhost["metadata"] == {"description": "again", "tags": ["a", "b"]}
    assert name in [v["name"] for v in api.ok("GET", "/api/vhosts")]
    # the creator may use it at once (RabbitMQ grants its creator full permissions)
    assert {"vhost": name, "user": "guest", "configure": ".*", "write": ".*", "read": ".*"} in api.ok(
        "GET", f"/api/vhosts/{q(name)}/permissions"
    )
    connection = connect(management, name, "guest", "guest")
    try:
        connection.channel().queue_declare("inside")
        assert [item["name"] for item in api.ok("GET", f"/api/queues/{q(name)}")] == ["inside"]
        assert api.delete(f"/api/vhosts/{name}").status == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
            connection.process_data_events(TIMEOUT)
            connection.process_data_events(TIMEOUT)
        assert raised.value.reply_code == 320
    finally:
        if connection.is_open:
            connection.close()
    assert api.get(f"/api/vhosts/{name}").status == 404
    assert api.delete(f"/api/vhosts/{name}").status == 404


def test_a_user_created_over_the_api_logs_in_over_amqp(
    api: Api, management: SimpleNamespace, name: str, cleanup: list[str]
) -> None:
    cleanup.append(f"/api/users/{name}")
    assert api.put(f"/api/users/{name}", {"password": "s3cret", "tags": "monitoring"}).status == 201
    user = api.ok("GET", f"/api/users/{name}")
    assert (user["name"], user["tags"], user["hashing_algorithm"]) == (
        name,
        ["monitoring"],
        "rabbit_password_hashing_sha256",
    )
    assert isinstance(user["password_hash"], str) and "s3cret" not in user["password_hash"]
    assert name in [u["name"] for u in api.ok("GET", "/api/users/without-permissions")]
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(management, "/", name, "s3cret")  # no permission on "/" yet
    answer = api.put(f"/api/permissions/%2F/{name}", {"configure": ".*"})
    assert (answer.status, answer.json["reason"]) == (400, "[{key_missing,write},{key_missing,read}]")
    assert api.put(f"/api/permissions/%2F/{name}", {"configure": "", "write": ".*", "read": ".*"}).status == 201
    assert api.ok("GET", f"/api/permissions/%2F/{name}") == {
        "user": name,
        "vhost": "/",
        "configure": "",
        "write": ".*",
        "read": ".*",
    }
    connection = connect(management, "/", name, "s3cret")
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            connection.channel().queue_declare(f"{name}-q")  # no configure permission
        assert raised.value.reply_code == 403
    finally:
        connection.close()
    assert api.as_user(name, "s3cret").ok("GET", "/api/whoami") == {"name": name, "tags": ["monitoring"]}
    assert api.put(f"/api/users/{name}", {"password": "changed", "tags": "monitoring"}).status == 204
    assert api.as_user(name, "s3cret").get("/api/whoami").status == 401
    assert api.delete(f"/api/permissions/%2F/{name}").status == 204
    assert api.delete(f"/api/permissions/%2F/{name}").status == 404
    assert api.delete(f"/api/users/{name}").status == 204
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(management, "/", name, "changed")
    assert api.get(f"/api/users/{name}").status == 404


def test_user_and_permission_errors(api: Api, name: str, cleanup: list[str]) -> None:
    answer = api.put(f"/api/users/{name}", {"password": "x"})
    assert (answer.status, answer.json) == (400, {"error": "bad_request", "reason": "tags_not_present"})
    answer = api.put(f"/api/permissions/{name}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    assert (answer.status, answer.json["reason"]) == (400, "vhost_or_user_not_found")
    cleanup.append(f"/api/users/{name}-1")
    api.ok("PUT", f"/api/users/{name}-1", {"password": "p", "tags": ""})
    answer = api.post("/api/users/bulk-delete", {"users": [f"{name}-1", f"{name}-missing"]})
    assert (answer.status, answer.json["reason"]) == (400, ["no_such_user", f"{name}-missing"])
    assert api.get(f"/api/users/{name}-1").status == 404  # those before the missing one are gone


def test_what_each_tag_may_see(api: Api, management: SimpleNamespace, name: str, cleanup: list[str]) -> None:
    vhost = f"{name}-v"
    cleanup.extend([f"/api/vhosts/{vhost}", f"/api/users/{name}-m", f"/api/users/{name}-mon", f"/api/users/{name}-no"])
    api.ok("PUT", f"/api/vhosts/{vhost}")
    for suffix, tags in (("m", "management"), ("mon", "monitoring"), ("no", "")):
        api.ok("PUT", f"/api/users/{name}-{suffix}", {"password": "p", "tags": tags})
    api.ok("PUT", f"/api/permissions/{vhost}/{name}-m", {"configure": ".*", "write": ".*", "read": ".*"})
    api.ok("PUT", f"/api/queues/{vhost}/{name}-q", {"durable": False})
    api.ok("PUT", f"/api/queues/%2F/{name}-root", {"durable": False})
    managing, monitoring = api.as_user(f"{name}-m", "p"), api.as_user(f"{name}-mon", "p")

    answer = api.as_user(f"{name}-no", "p").get("/api/overview")
    assert (answer.status, answer.json) == (401, {"error": "not_authorised", "reason": "Not management user"})

    assert [v["name"] for v in managing.ok("GET", "/api/vhosts")] == [vhost]
    assert [item["name"] for item in managing.ok("GET", "/api/queues")] == [f"{name}-q"]
    assert {item["vhost"] for item in managing.ok("GET", "/api/exchanges")} == {vhost}
    answer = managing.get("/api/queues/%2F")
    assert (answer.status, answer.json["reason"]) == (401, "User not authorised to access virtual host")
    for path in ("/api/users", "/api/permissions", "/api/definitions", f"/api/vhosts/{vhost}"):
        answer = managing.get(path)
        assert (answer.status, answer.json["reason"]) == (401, "Not administrator user"), path
    answer = managing.get("/api/nodes")
    assert (answer.status, answer.json["reason"]) == (401, "Not monitor user")
    overview = managing.ok("GET", "/api/overview")
    assert "listeners" not in overview and "consumers" not in overview["object_totals"]

    # monitoring sees every vhost, node and connection, but the objects of permitted vhosts only (RabbitMQ)
    assert monitoring.ok("GET", "/api/queues") == []
    assert {vhost, "/"} <= {v["name"] for v in monitoring.ok("GET", "/api/vhosts")}
    assert monitoring.ok("GET", "/api/nodes")
    assert monitoring.get("/api/users").status == 401
    api.delete(f"/api/queues/%2F/{name}-root")


def test_definitions_export_and_import(api: Api, name: str, cleanup: list[str]) -> None:
    cleanup.extend([f"/api/queues/%2F/{name}-q", f"/api/exchanges/%2F/{name}-x"])
    exported = api.ok("GET", "/api/definitions")
    for section in ("users", "vhosts", "permissions", "queues", "exchanges", "bindings", "policies"):
        assert isinstance(exported[section], list), section
    definitions = {
        "queues": [{"name": f"{name}-q", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [
            {
                "name": f"{name}-x",
                "vhost": "/",
                "type": "fanout",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "bindings": [
            {
                "source": f"{name}-x",
                "vhost": "/",
                "destination": f"{name}-q",
                "destination_type": "queue",
                "routing_key": "",
                "arguments": {},
            }
        ],
    }
    assert api.post("/api/definitions", definitions).status in (201, 204)
    assert api.ok("GET", f"/api/queues/%2F/{name}-q")["durable"] is True
    assert api.ok("GET", f"/api/exchanges/%2F/{name}-x/bindings/source")[0]["destination"] == f"{name}-q"
    per_vhost = api.ok("GET", "/api/definitions/%2F")
    assert f"{name}-q" in [queue["name"] for queue in per_vhost["queues"]]


# ------------------------------------------------------------------ our broker only: the process and its files


def test_api_changes_persist_in_access_json_and_survive_a_restart(tmp_path: Path, management: SimpleNamespace) -> None:
    if management.external:
        pytest.skip("reads the data dir of a broker process of ours")
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        api = Api(f"http://127.0.0.1:{broker.management_port}")
        api.ok("PUT", "/api/vhosts/kept", {"description": "stays"})
        api.ok("PUT", "/api/users/alice", {"password": "pw", "tags": ["management"]})
        api.ok("PUT", "/api/permissions/kept/alice", {"configure": ".*", "write": ".*", "read": ".*"})
        stored = json.loads((tmp_path / "data" / "access.json").read_text())
        assert {"name": "kept", "description": "stays"} in stored["vhosts"]
        assert "alice" in [user["name"] for user in stored["users"]]
        assert not any("pw" == user.get("password") for user in stored["users"])
    finally:
        broker.stop()
    log = "".join(broker.log)
    assert "pw" not in log.replace("password_hash", "")  # no secret in the log
    broker = BrokerProcess(tmp_path / "data").start(port=broker.port)
    try:
        api = Api(f"http://127.0.0.1:{broker.management_port}")
        assert api.as_user("alice", "pw").ok("GET", "/api/whoami")["name"] == "alice"
        assert api.ok("GET", "/api/vhosts/kept")["description"] == "stays"
        pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", broker.port, "kept", pika.PlainCredentials("alice", "pw"))
        ).close()
    finally:
        broker.stop()


def test_management_port_minus_one_turns_the_api_off(tmp_path: Path, management: SimpleNamespace) -> None:
    if management.external:
        pytest.skip("starts a broker process of ours")
    broker = BrokerProcess(tmp_path / "data", "--management-port", "-1").start()
    try:
        assert broker.management_port == 0
        assert not any("management listening" in line for line in broker.log)
    finally:
        broker.stop()


def test_the_listening_line_names_the_management_port(management: SimpleNamespace) -> None:
    if management.external:
        pytest.skip("reads the output of a broker process of ours")
    line = next(line for line in management.process.log if "management listening on" in line)
    assert line.rstrip() == f"amqp-server management listening on 127.0.0.1:{management.process.management_port}"
    assert Api(f"http://127.0.0.1:{management.process.management_port}").get("/api/whoami").status == 200


def test_topic_permissions_are_stored_and_listed(api: Api, name: str, cleanup: list[str]) -> None:
    cleanup.append(f"/api/users/{name}")
    api.ok("PUT", f"/api/users/{name}", {"password": "p", "tags": ""})
    body = {"exchange": "amq.topic", "write": "^orders", "read": ".*"}
    assert api.put(f"/api/topic-permissions/%2F/{name}", body).status == 201
    assert api.put(f"/api/topic-permissions/%2F/{name}", body).status == 204
    expected = {"user": name, "vhost": "/", **body}
    assert api.ok("GET", f"/api/topic-permissions/%2F/{name}") == [expected]
    assert expected in api.ok("GET", "/api/topic-permissions")
    assert api.ok("GET", f"/api/users/{name}/topic-permissions") == [expected]
    assert {"vhost": "/", "user": name, **body} in api.ok("GET", "/api/vhosts/%2F/topic-permissions")
    assert expected in api.ok("GET", "/api/definitions")["topic_permissions"]
    answer = api.put(f"/api/topic-permissions/%2F/{name}", {"exchange": "amq.topic"})
    assert (answer.status, answer.json["reason"]) == (400, "[{key_missing,write},{key_missing,read}]")
    assert api.delete(f"/api/topic-permissions/%2F/{name}").status == 204
    assert api.get(f"/api/topic-permissions/%2F/{name}").status == 404


def test_a_taken_management_port_stops_the_start_with_a_clear_error(
    tmp_path: Path, management: SimpleNamespace
) -> None:
    if management.external:
        pytest.skip("starts a broker process of ours")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = BrokerProcess(tmp_path / "data", "--management-port", str(port))
        with pytest.raises(RuntimeError, match=f"management API on 127.0.0.1:{port}"):
            broker.start()
    assert broker.process is not None and broker.process.wait(TIMEOUT) == 1
