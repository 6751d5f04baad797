"""Topic authorisation seen by pika, with the grants made through the management API: a publish to a topic
exchange needs a routing key the user's topic ``write`` pattern matches, a binding key on a topic source one
its ``read`` pattern matches; other exchanges, and topic exchanges without a grant, are not checked; a
change through the API applies to the next channel's publishes.  ``AMQP_HTTP_URL`` + ``AMQP_URL`` run the
same tests against RabbitMQ (checked against 3.10.8).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .conftest import TIMEOUT
from .management_client import Api, q

PASSWORD = "topic-pw"


@pytest.fixture
def names(management: SimpleNamespace) -> Iterator[SimpleNamespace]:
    """A user ``u.<id>`` (tag management, every vhost permission on '/') and, declared by guest, topic exchanges
    ``tx`` and ``tx2``, a direct exchange ``dx`` and a queue ``q`` bound to ``tx`` with '#'.  Removed after."""
    api: Api = management.api
    unique = uuid.uuid4().hex[:10]
    spec = SimpleNamespace(
        user=f"u.{unique}", tx=f"tp-{unique}", tx2=f"tp2-{unique}", dx=f"dp-{unique}", q=f"tq-{unique}"
    )
    api.ok("PUT", f"/api/users/{q(spec.user)}", {"password": PASSWORD, "tags": "management"})
    api.ok("PUT", f"/api/permissions/%2F/{q(spec.user)}", {"configure": ".*", "write": ".*", "read": ".*"})
    for exchange, kind in ((spec.tx, "topic"), (spec.tx2, "topic"), (spec.dx, "direct")):
        api.ok("PUT", f"/api/exchanges/%2F/{q(exchange)}", {"type": kind})
    api.ok("PUT", f"/api/queues/%2F/{q(spec.q)}", {})
    api.ok("POST", f"/api/bindings/%2F/e/{q(spec.tx)}/q/{q(spec.q)}", {"routing_key": "#"})
    try:
        yield spec
    finally:
        api.delete(f"/api/users/{q(spec.user)}")  # its permissions and topic permissions go with it
        for exchange in (spec.tx, spec.tx2, spec.dx):
            api.delete(f"/api/exchanges/%2F/{q(exchange)}")
        api.delete(f"/api/queues/%2F/{q(spec.q)}")


def grant(management: SimpleNamespace, names: SimpleNamespace, exchange: str, write: str, read: str) -> None:
    body = {"exchange": exchange, "write": write, "read": read}
    management.api.ok("PUT", f"/api/topic-permissions/%2F/{q(names.user)}", body)


@pytest.fixture
def user_connection(management: SimpleNamespace, names: SimpleNamespace) -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            management.host,
            management.port,
            "/",
            pika.PlainCredentials(names.user, PASSWORD),
            socket_timeout=TIMEOUT,
            stack_timeout=2 * TIMEOUT,
        )
    )
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def refusal(names: SimpleNamespace, routing_key: str, exchange: str) -> tuple[int, str]:
    topic = f"topic '{routing_key}' in exchange '{exchange}'"
    return 403, f"ACCESS_REFUSED - access to {topic} in vhost '/' refused for user '{names.user}'"


def outcome(connection: pika.BlockingConnection, operation: Callable[[BlockingChannel], Any]) -> tuple[int, str]:
    """Run ``operation`` on a new confirm-mode channel: (200, '') when it worked, else the channel.close."""
    channel = connection.channel()
    channel.confirm_delivery()  # a refused publish closes the channel before basic_publish returns
    try:
        operation(channel)
    except pika.exceptions.ChannelClosedByBroker as closed:
        return closed.reply_code, closed.reply_text
    channel.close()
    return 200, ""


def publish(exchange: str, routing_key: str) -> Callable[[BlockingChannel], None]:
    return lambda channel: channel.basic_publish(exchange, routing_key, b"m")


def queued(connection: pika.BlockingConnection, queue: str) -> int:
    channel = connection.channel()
    count = channel.queue_declare(queue, passive=True).method.message_count
    channel.close()
    return int(count)


def test_publish_key_must_match_write(
    management: SimpleNamespace, names: SimpleNamespace, user_connection: pika.BlockingConnection
) -> None:
    assert outcome(user_connection, publish(names.tx, "any.key")) == (200, "")  # no grant: not checked
    grant(management, names, names.tx, "^a\\.", "^r\\.")
    assert outcome(user_connection, publish(names.tx, "a.b.c")) == (200, "")  # searched, not full-matched
    assert outcome(user_connection, publish(names.tx, "xa.b")) == refusal(names, "xa.b", names.tx)
    assert outcome(user_connection, publish(names.tx, "r.x")) == refusal(names, "r.x", names.tx)
    assert queued(user_connection, names.q) == 2


def test_other_exchanges_are_not_checked(
    management: SimpleNamespace, names: SimpleNamespace, user_connection: pika.BlockingConnection
) -> None:
    for exchange in (names.dx, "", names.tx2 + "-none"):
        grant(management, names, exchange, "^a\\.", "^a\\.")
    assert outcome(user_connection, publish(names.dx, "zz")) == (200, "")
    assert outcome(user_connection, publish("", "zz")) == (200, "")  # the default exchange is direct
    assert outcome(user_connection, publish(names.tx2, "zz")) == (200, "")  # a topic exchange with no grant
    bind = lambda channel: channel.queue_bind(names.q, names.dx, "zz")  # noqa: E731
    assert outcome(user_connection, bind) == (200, "")


def test_binding_keys_must_match_read_on_a_topic_source(
    management: SimpleNamespace, names: SimpleNamespace, user_connection: pika.BlockingConnection
) -> None:
    grant(management, names, names.tx, "^a\\.", "^r\\.")
    checks: list[tuple[Callable[[BlockingChannel], Any], tuple[int, str]]] = [
        (lambda channel: channel.queue_bind(names.q, names.tx, "r.x"), (200, "")),
        (lambda channel: channel.queue_bind(names.q, names.tx, "a.x"), refusal(names, "a.x", names.tx)),
        (lambda channel: channel.queue_unbind(names.q, names.tx, "a.x"), refusal(names, "a.x", names.tx)),
        (lambda channel: channel.queue_unbind(names.q, names.tx, "r.x"), (200, "")),
        # checked before the queue is looked up: 403, not 404
        (lambda channel: channel.queue_bind(names.q + "-none", names.tx, "a.x"), refusal(names, "a.x", names.tx)),
        (lambda channel: channel.exchange_bind(names.tx2, names.tx, "a.x"), refusal(names, "a.x", names.tx)),
        (lambda channel: channel.exchange_bind(names.tx2, names.tx, "r.x"), (200, "")),
        (lambda channel: channel.exchange_unbind(names.tx2, names.tx, "a.x"), refusal(names, "a.x", names.tx)),
        (lambda channel: channel.exchange_bind(names.tx, names.tx2, "a.x"), (200, "")),  # the destination is not
    ]
    assert [outcome(user_connection, operation) for operation, _ in checks] == [answer for _, answer in checks]


def test_username_and_vhost_are_expanded(
    management: SimpleNamespace, names: SimpleNamespace, user_connection: pika.BlockingConnection
) -> None:
    grant(management, names, names.tx, "^{username}\\.{vhost}\\.", "^{client_id}\\.")
    assert outcome(user_connection, publish(names.tx, f"{names.user}./.x")) == (200, "")
    literal = "{username}.{vhost}.x"
    assert outcome(user_connection, publish(names.tx, literal)) == refusal(names, literal, names.tx)
    # unescaped: the '.' in the user's name is regex text and matches any character
    unescaped = names.user.replace(".", "X") + "./.x"
    assert outcome(user_connection, publish(names.tx, unescaped)) == (200, "")
    # {client_id} is not filled over AMQP 0-9-1: it stays literal text
    bind = lambda channel: channel.queue_bind(names.q, names.tx, "{client_id}.x")  # noqa: E731
    assert outcome(user_connection, bind) == (200, "")


def test_a_change_through_the_api_applies_to_the_next_channel(
    management: SimpleNamespace, names: SimpleNamespace, user_connection: pika.BlockingConnection
) -> None:
    grant(management, names, names.tx, "^a\\.", ".*")
    assert outcome(user_connection, publish(names.tx, "a.1")) == (200, "")
    grant(management, names, names.tx, "^b\\.", ".*")
    assert outcome(user_connection, publish(names.tx, "a.1")) == refusal(names, "a.1", names.tx)
    assert outcome(user_connection, publish(names.tx, "b.1")) == (200, "")
    management.api.ok("DELETE", f"/api/topic-permissions/%2F/{q(names.user)}?exchange={q(names.tx)}")
    assert outcome(user_connection, publish(names.tx, "zz")) == (200, "")


def test_management_publish_and_bind_are_checked(management: SimpleNamespace, names: SimpleNamespace) -> None:
    grant(management, names, names.tx, "^a\\.", "^r\\.")
    api = management.api.as_user(names.user, PASSWORD)
    body = {"properties": {}, "routing_key": "zz", "payload": "x", "payload_encoding": "string"}
    answer = api.post(f"/api/exchanges/%2F/{q(names.tx)}/publish", body)
    # RabbitMQ's own channel refuses it, and the API passes the refusal on as a 400
    code, text = refusal(names, "zz", names.tx)
    assert (answer.status, answer.json) == (400, {"error": "bad_request", "reason": f"{code} {text}"})
    assert api.ok("POST", f"/api/exchanges/%2F/{q(names.tx)}/publish", {**body, "routing_key": "a.z"}) == {
        "routed": True
    }
    answer = api.post(f"/api/bindings/%2F/e/{q(names.tx)}/q/{q(names.q)}", {"routing_key": "zz"})
    assert (answer.status, answer.json) == (401, {"error": "not_authorised", "reason": "Access refused."})
    assert api.post(f"/api/bindings/%2F/e/{q(names.tx)}/q/{q(names.q)}", {"routing_key": "r.z"}).status == 201
    grant(management, names, names.tx, "^a\\.", "^s\\.")
    answer = api.delete(f"/api/bindings/%2F/e/{q(names.tx)}/q/{q(names.q)}/r.z")
    assert (answer.status, answer.json) == (401, {"error": "not_authorised", "reason": "Access refused."})
