"""``/api/policies`` and ``/api/operator-policies`` against a broker process, and their effect on live queues
and exchanges over AMQP (pika).  ``AMQP_HTTP_URL`` + ``AMQP_URL`` run it against RabbitMQ 3.10's plugin."""

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
    return f"pol-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(api: Api) -> Iterator[list[str]]:
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        api.delete(path)


@pytest.fixture
def amqp(management: SimpleNamespace) -> Iterator[BlockingChannel]:
    params = pika.ConnectionParameters(
        management.host, management.port, socket_timeout=TIMEOUT, stack_timeout=2 * TIMEOUT
    )
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def count(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def policy_fields(api: Api, queue: str) -> tuple:
    """What the API shows of a queue's policies (RabbitMQ shows them with its next statistics, ~5 s)."""
    info = api.ok("GET", f"/api/queues/%2F/{q(queue)}")
    return (info.get("policy"), info.get("operator_policy"), info.get("effective_policy_definition"))


def test_policy_crud_with_rabbitmqs_status_codes(api: Api, name: str, cleanup: list[str]) -> None:
    path = f"/api/policies/%2F/{name}"
    cleanup.append(path)
    body = {"pattern": f"^{name}$", "definition": {"message-ttl": 1000}, "apply-to": "queues", "priority": 1}
    assert api.put(path, body).status == 201
    assert api.put(path, {**body, "definition": {"message-ttl": 2000}}).status == 204
    expected = {**body, "vhost": "/", "name": name, "definition": {"message-ttl": 2000}}
    assert api.ok("GET", path) == expected
    assert expected in api.ok("GET", "/api/policies")
    assert expected in api.ok("GET", "/api/policies/%2F")
    assert api.post(path).status == 405
    assert api.delete(path).status == 204
    for answer in (api.get(path), api.delete(path)):
        assert (answer.status, answer.json) == (404, {"error": "Object Not Found", "reason": "Not Found"})
    missing = api.put(f"/api/policies/{name}-vhost/p", body)
    assert (missing.status, missing.json) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    assert api.get(f"/api/policies/{name}-vhost").status == 404


def test_invalid_policies_get_rabbitmqs_reasons(api: Api, name: str) -> None:
    answer = api.put(f"/api/policies/%2F/{name}", {"pattern": "^a", "definition": {"message-ttl": "x"}})
    assert (answer.status, answer.json) == (
        400,
        {"error": "bad_request", "reason": 'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid message TTL\n'},
    )
    answer = api.put(f"/api/operator-policies/%2F/{name}", {"pattern": "^a", "definition": {"queue-mode": "lazy"}})
    assert answer.json["reason"] == (
        'Validation failed\n\n[{<<"queue-mode">>,<<"lazy">>}] are not recognised policy settings\n'
    )
    answer = api.put(f"/api/policies/%2F/{name}", {"definition": {"max-length": 1}})
    assert (answer.status, answer.json["reason"]) == (400, "[{key_missing,pattern}]")
    answer = api.put(f"/api/policies/%2F/{name}", raw=b"{nope")
    assert (answer.status, answer.json["reason"]) == (400, "not_json")


def test_a_policy_changes_a_live_queue_and_shows_on_it(
    api: Api, amqp: BlockingChannel, name: str, cleanup: list[str]
) -> None:
    """(RabbitMQ hands a changed policy to its queue processes after answering, so the effects are polled for;
    here they apply before the answer.)"""
    amqp.queue_declare(name, arguments={"x-max-length": 10})
    cleanup.append(f"/api/queues/%2F/{q(name)}")
    for n in range(5):
        amqp.basic_publish("", name, b"%d" % n)
    cleanup.append(f"/api/policies/%2F/{name}-cap")
    cleanup.append(f"/api/operator-policies/%2F/{name}-ops")
    api.ok("PUT", f"/api/policies/%2F/{name}-cap", {"pattern": f"^{name}$", "definition": {"max-length": 3}})
    poll(lambda: count(amqp, name), lambda n: n == 3, "the queue is trimmed to the policy's max-length")
    api.ok("PUT", f"/api/operator-policies/%2F/{name}-ops", {"pattern": f"^{name}", "definition": {"max-length": 2}})
    poll(lambda: count(amqp, name), lambda n: n == 2, "the operator policy's lower max-length wins")
    shown = (f"{name}-cap", f"{name}-ops", {"max-length": 2})
    poll(lambda: policy_fields(api, name), lambda fields: fields == shown, "the queue shows its policies")
    api.ok("DELETE", f"/api/policies/%2F/{name}-cap")
    api.ok("DELETE", f"/api/operator-policies/%2F/{name}-ops")
    poll(lambda: publish_and_count(amqp, name), lambda n: n > 2, "the limit goes with the policies")
    for n in range(10):
        amqp.basic_publish("", name, b"%d" % n)
    assert count(amqp, name) == 10  # only the queue's own x-max-length is left
    poll(lambda: policy_fields(api, name), lambda fields: fields == (None, None, {}), "the policies are gone")


def publish_and_count(channel: BlockingChannel, queue: str) -> int:
    channel.basic_publish("", queue, b"probe")
    return count(channel, queue)


def test_a_message_ttl_policy_expires_what_is_published_while_it_is_set(
    api: Api, amqp: BlockingChannel, name: str, cleanup: list[str]
) -> None:
    """RabbitMQ gives a message its TTL when it is enqueued: one queued before the policy keeps none, one
    published while it is set expires, one published after it is cleared does not.  (Queues declared after
    a change take the policies in effect at once in RabbitMQ too; existing ones later.)"""
    queues = [f"{name}-{n}" for n in range(4)]
    cleanup.extend(f"/api/queues/%2F/{q(queue)}" for queue in queues)
    cleanup.append(f"/api/policies/%2F/{name}")
    amqp.queue_declare(queues[0])
    amqp.basic_publish("", queues[0], b"before")
    api.ok("PUT", f"/api/policies/%2F/{name}", {"pattern": f"^{name}-[01]$", "definition": {"message-ttl": 50}})
    amqp.queue_declare(queues[1])
    amqp.basic_publish("", queues[1], b"under the policy")
    poll(lambda: count(amqp, queues[1]), lambda n: n == 0, "the message published under the TTL policy expires")
    assert count(amqp, queues[0]) == 1  # more than its TTL later: "before" has none
    api.ok("DELETE", f"/api/policies/%2F/{name}")
    amqp.queue_declare(queues[2])
    amqp.basic_publish("", queues[2], b"after")
    api.ok("PUT", f"/api/policies/%2F/{name}", {"pattern": f"^{name}-3$", "definition": {"message-ttl": 50}})
    amqp.queue_declare(queues[3])
    amqp.basic_publish("", queues[3], b"a clock")
    poll(lambda: count(amqp, queues[3]), lambda n: n == 0, "the clock message expires")
    assert [amqp.basic_get(queue, auto_ack=True)[2] for queue in (queues[0], queues[2])] == [b"before", b"after"]


def test_an_alternate_exchange_policy_and_the_exchange_shows_it(
    api: Api, amqp: BlockingChannel, name: str, cleanup: list[str]
) -> None:
    amqp.exchange_declare(name, "direct")
    amqp.exchange_declare(f"{name}-ae", "fanout")
    amqp.queue_declare(f"{name}-unrouted")
    amqp.queue_bind(f"{name}-unrouted", f"{name}-ae")
    cleanup.extend([f"/api/exchanges/%2F/{name}", f"/api/exchanges/%2F/{name}-ae", f"/api/queues/%2F/{name}-unrouted"])
    assert "policy" not in api.ok("GET", f"/api/exchanges/%2F/{name}")
    cleanup.append(f"/api/policies/%2F/{name}")
    policy = {"pattern": f"^{name}$", "definition": {"alternate-exchange": f"{name}-ae"}, "apply-to": "exchanges"}
    api.ok("PUT", f"/api/policies/%2F/{name}", policy)
    assert api.ok("GET", f"/api/exchanges/%2F/{name}")["policy"] == name
    amqp.basic_publish(name, "nowhere", b"caught")
    poll(lambda: count(amqp, f"{name}-unrouted"), lambda n: n == 1, "the unroutable message reaches the AE")


def test_who_may_see_and_change_policies(api: Api, name: str, cleanup: list[str]) -> None:
    for user, tags in (("pm", "policymaker"), ("mg", "management"), ("pmnoperm", "policymaker")):
        cleanup.append(f"/api/users/{name}-{user}")
        api.ok("PUT", f"/api/users/{name}-{user}", {"password": "pw", "tags": tags})
        if user != "pmnoperm":
            api.ok("PUT", f"/api/permissions/%2F/{name}-{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    pm, mg, noperm = (api.as_user(f"{name}-{user}", "pw") for user in ("pm", "mg", "pmnoperm"))
    body = {"pattern": f"^{name}$", "definition": {"max-length": 1}}
    path = f"/api/policies/%2F/{name}"
    cleanup.append(path)
    assert pm.put(path, body).status == 201
    assert pm.get(path).status == 200
    not_object = {"error": "not_authorised", "reason": "User not authorised to access object"}
    for answer in (mg.put(path, body), mg.get(path), mg.delete(path), noperm.put(path, body)):
        assert (answer.status, answer.json) == (401, not_object)
    assert any(p["name"] == name for p in mg.get("/api/policies").json)  # listing is open to management users
    assert noperm.get("/api/policies").json == []  # … for the vhosts they may use
    not_admin = {"error": "not_authorised", "reason": "Not administrator user"}
    answer = pm.put(f"/api/operator-policies/%2F/{name}", body)
    assert (answer.status, answer.json) == (401, not_admin)
    assert pm.delete(path).status == 204
