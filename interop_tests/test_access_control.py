"""Permissions over the wire, as RabbitMQ enforces them, seen by pika.

A broker of this module's own starts with ``--load-definitions``: vhost ``acl``,
where ``alice`` may configure ``^c-.*``, write ``^w-.*`` and read ``^r-.*``;
``bob`` has no permissions; ``rabbit_alice`` has a password hash made by
RabbitMQ 3.10 itself.  Each method that needs a permission is tried on a
resource the pattern does not match (403 ACCESS_REFUSED naming the resource,
exactly RabbitMQ's text, checked against RabbitMQ 3.10) and on one it matches.
RabbitMQ checks the permission before it looks the resource up, so a refused
name is refused even when it does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
import pytest

from amqp_server.core.access import hash_password

from .broker_process import BrokerProcess
from .pika_helpers import connect

VHOST = "acl"
RABBITMQ_HASH = ("rabbit_alice", "s3cret-pw", "sbIIFBahv37QRYPToQigkn2XwLW+DYwsz3+oz9onAqIMaBwN")  # by RabbitMQ 3.10


def definitions() -> dict[str, Any]:
    def everything(user: str) -> dict[str, str]:
        return {"user": user, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}

    return {
        "users": [
            {"name": "alice", "password_hash": hash_password("alice-pw"), "tags": []},
            {"name": "bob", "password_hash": hash_password("bob-pw"), "tags": ""},
            {"name": "carol", "password_hash": hash_password("carol-pw"), "tags": []},
            {
                "name": RABBITMQ_HASH[0],
                "password_hash": RABBITMQ_HASH[2],
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["management"],
            },
        ],
        "vhosts": [{"name": VHOST}],
        "permissions": [
            {"user": "alice", "vhost": VHOST, "configure": "^c-.*", "write": "^w-.*", "read": "^r-.*"},
            {"user": "carol", "vhost": VHOST, "configure": "cq", "write": "", "read": ""},  # unanchored, empty
            everything("guest"),
            everything(RABBITMQ_HASH[0]),
        ],
    }


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    path = tmp_path_factory.mktemp("acl-definitions") / "definitions.json"
    path.write_text(json.dumps(definitions()))
    process = BrokerProcess(tmp_path_factory.mktemp("acl-data"), "--load-definitions", str(path)).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def names(acl_broker: BrokerProcess, unique: str) -> SimpleNamespace:
    """As guest, a fanout exchange and a queue for each of alice's patterns (c-, w-, r-) and for none (n-)."""
    connection = connect(acl_broker, "guest", "guest", VHOST)
    try:
        channel = connection.channel()
        for prefix in "cwrn":
            channel.exchange_declare(f"{prefix}-x-{unique}", "fanout")
            channel.queue_declare(f"{prefix}-q-{unique}")
    finally:
        connection.close()
    return SimpleNamespace(
        **{f"{prefix}x": f"{prefix}-x-{unique}" for prefix in "cwrn"},
        **{f"{prefix}q": f"{prefix}-q-{unique}" for prefix in "cwrn"},
        unique=unique,
    )


@pytest.fixture
def alice(acl_broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    connection = connect(acl_broker, "alice", "alice-pw", VHOST)
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def refusal(kind: str, name: str) -> tuple[int, str]:
    return 403, f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{VHOST}' refused for user 'alice'"


def refused(connection: pika.BlockingConnection, operation: Callable[[Any], Any]) -> tuple[int, str]:
    """Run ``operation`` on a new channel; the (reply code, reply text) the broker closed the channel with."""
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        operation(channel)
    return caught.value.reply_code, caught.value.reply_text


def allowed(connection: pika.BlockingConnection, operation: Callable[[Any], Any]) -> Any:
    channel = connection.channel()
    result = operation(channel)
    assert channel.is_open
    channel.close()
    return result


def publish(exchange: str, routing_key: str = "k", body: bytes = b"m") -> Callable[[Any], None]:
    def operation(channel: Any) -> None:
        channel.confirm_delivery()  # so that a refusal arrives before basic_publish returns
        channel.basic_publish(exchange, routing_key, body)

    return operation


# ------------------------------------------------------------------ configure


def test_exchange_declare_needs_configure(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.exchange_declare(names.nx, "fanout")) == refusal("exchange", names.nx)
    allowed(alice, lambda ch: ch.exchange_declare(f"c-new-{names.unique}", "direct"))


def test_passive_exchange_declare_needs_no_permission(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    allowed(alice, lambda ch: ch.exchange_declare(names.nx, "fanout", passive=True))


def test_exchange_delete_needs_configure(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.exchange_delete(names.nx)) == refusal("exchange", names.nx)
    allowed(alice, lambda ch: ch.exchange_delete(names.cx))
    assert refused(alice, lambda ch: ch.exchange_declare(names.cx, "fanout", passive=True))[0] == 404


def test_queue_declare_needs_configure(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.queue_declare(names.nq)) == refusal("queue", names.nq)
    allowed(alice, lambda ch: ch.queue_declare(f"c-new-{names.unique}"))


def test_server_named_queue_needs_configure_on_the_generated_name(alice: pika.BlockingConnection) -> None:
    code, text = refused(alice, lambda ch: ch.queue_declare(""))
    assert code == 403
    assert text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    assert text.endswith(f"' in vhost '{VHOST}' refused for user 'alice'")


def test_passive_queue_declare_needs_no_permission(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    allowed(alice, lambda ch: ch.queue_declare(names.nq, passive=True))


def test_queue_delete_needs_configure(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.queue_delete(names.nq)) == refusal("queue", names.nq)
    allowed(alice, lambda ch: ch.queue_delete(names.cq))
    assert refused(alice, lambda ch: ch.queue_declare(names.cq, passive=True))[0] == 404


# --------------------------------------------------------------- bindings: write on the destination, read on the source


def test_queue_bind_needs_write_on_the_queue(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.queue_bind(names.nq, names.rx)) == refusal("queue", names.nq)


def test_queue_bind_needs_read_on_the_exchange(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.queue_bind(names.wq, names.nx)) == refusal("exchange", names.nx)


def test_queue_bind_allowed(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    allowed(alice, lambda ch: ch.queue_bind(names.wq, names.rx))


def test_queue_unbind_needs_write_on_the_queue_and_read_on_the_exchange(
    alice: pika.BlockingConnection, names: SimpleNamespace
) -> None:
    assert refused(alice, lambda ch: ch.queue_unbind(names.nq, names.rx)) == refusal("queue", names.nq)
    assert refused(alice, lambda ch: ch.queue_unbind(names.wq, names.nx)) == refusal("exchange", names.nx)
    allowed(alice, lambda ch: ch.queue_bind(names.wq, names.rx))
    allowed(alice, lambda ch: ch.queue_unbind(names.wq, names.rx))


def test_exchange_bind_needs_write_on_the_destination_and_read_on_the_source(
    alice: pika.BlockingConnection, names: SimpleNamespace
) -> None:
    assert refused(alice, lambda ch: ch.exchange_bind(names.nx, names.rx)) == refusal("exchange", names.nx)
    assert refused(alice, lambda ch: ch.exchange_bind(names.wx, names.nx)) == refusal("exchange", names.nx)
    allowed(alice, lambda ch: ch.exchange_bind(names.wx, names.rx))


def test_exchange_unbind_needs_write_on_the_destination(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    allowed(alice, lambda ch: ch.exchange_bind(names.wx, names.rx))
    assert refused(alice, lambda ch: ch.exchange_unbind(names.nx, names.rx)) == refusal("exchange", names.nx)
    allowed(alice, lambda ch: ch.exchange_unbind(names.wx, names.rx))


# ------------------------------------------------------------------ write and read


def test_publish_needs_write_on_the_exchange(
    acl_broker: BrokerProcess, alice: pika.BlockingConnection, names: SimpleNamespace
) -> None:
    assert refused(alice, publish(names.nx)) == refusal("exchange", names.nx)
    guest = connect(acl_broker, "guest", "guest", VHOST)
    try:
        guest.channel().queue_bind(names.rq, names.wx)
    finally:
        guest.close()
    allowed(alice, publish(names.wx, body=b"written"))
    assert allowed(alice, lambda ch: ch.basic_get(names.rq, auto_ack=True))[2] == b"written"


def test_publish_to_the_default_exchange_needs_write_on_amq_default(
    alice: pika.BlockingConnection, names: SimpleNamespace
) -> None:
    assert refused(alice, publish("", routing_key=names.wq)) == refusal("exchange", "amq.default")


def test_consume_needs_read_on_the_queue(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.basic_consume(names.nq, lambda *args: None)) == refusal("queue", names.nq)
    allowed(alice, lambda ch: ch.basic_consume(names.rq, lambda *args: None))


def test_get_needs_read_on_the_queue(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.basic_get(names.nq)) == refusal("queue", names.nq)
    assert allowed(alice, lambda ch: ch.basic_get(names.rq)) == (None, None, None)


def test_purge_needs_read_on_the_queue(alice: pika.BlockingConnection, names: SimpleNamespace) -> None:
    assert refused(alice, lambda ch: ch.queue_purge(names.nq)) == refusal("queue", names.nq)
    allowed(alice, lambda ch: ch.queue_purge(names.rq))


# ------------------------------------------------------------------ permission before existence


@pytest.mark.parametrize(
    "kind, operation",
    [
        ("exchange", lambda ch, name: ch.exchange_delete(name)),
        ("queue", lambda ch, name: ch.queue_delete(name)),
        ("queue", lambda ch, name: ch.queue_bind(name, "amq.fanout")),
        ("queue", lambda ch, name: ch.queue_unbind(name, "amq.fanout")),
        ("exchange", lambda ch, name: publish(name)(ch)),
        ("queue", lambda ch, name: ch.basic_consume(name, lambda *args: None)),
        ("queue", lambda ch, name: ch.basic_get(name)),
        ("queue", lambda ch, name: ch.queue_purge(name)),
    ],
    ids=[
        "exchange.delete",
        "queue.delete",
        "queue.bind",
        "queue.unbind",
        "basic.publish",
        "basic.consume",
        "basic.get",
        "queue.purge",
    ],
)
def test_refused_even_when_the_resource_does_not_exist(
    alice: pika.BlockingConnection, unique: str, kind: str, operation: Callable[[Any, str], Any]
) -> None:
    missing = f"n-missing-{unique}"
    assert refused(alice, lambda ch: operation(ch, missing)) == refusal(kind, missing)


def test_patterns_are_searched_in_the_name_not_anchored(acl_broker: BrokerProcess, unique: str) -> None:
    """RabbitMQ runs a permission's regex over the name unanchored (probed on 3.10: ``^a`` allows
    ``a-queue``, ``q`` allows ``xqx``); an empty pattern allows nothing (it means ``^$``)."""
    connection = connect(acl_broker, "carol", "carol-pw", VHOST)
    try:
        for name in (f"cq-{unique}", f"x-cq-{unique}", f"{unique}-cq"):
            allowed(connection, lambda ch, name=name: ch.queue_declare(name, auto_delete=True))
        code, text = refused(connection, lambda ch: ch.queue_declare(f"c-q-{unique}"))
        assert (code, text.replace("'carol'", "'alice'")) == refusal("queue", f"c-q-{unique}")
        code, _ = refused(connection, publish("amq.fanout"))
        assert code == 403  # write "" allows no exchange
    finally:
        if connection.is_open:
            connection.close()


def test_allowed_name_that_does_not_exist_is_not_found(alice: pika.BlockingConnection, unique: str) -> None:
    assert refused(alice, lambda ch: ch.basic_get(f"r-missing-{unique}")) == (
        404,
        f"NOT_FOUND - no queue 'r-missing-{unique}' in vhost '{VHOST}'",
    )


# ------------------------------------------------------------------ logging in and opening vhosts


def open_refusal(broker: BrokerProcess, user: str, password: str, vhost: str) -> str:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        connect(broker, user, password, vhost)
    return str(caught.value)


def test_vhost_without_permission_is_refused_with_530(acl_broker: BrokerProcess) -> None:
    assert "(530) \"NOT_ALLOWED - access to vhost 'acl' refused for user 'bob'\"" in open_refusal(
        acl_broker, "bob", "bob-pw", VHOST
    )
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'alice'\"" in open_refusal(
        acl_broker, "alice", "alice-pw", "/"
    )


def test_missing_vhost_is_refused_with_530(acl_broker: BrokerProcess) -> None:
    assert "(530) 'NOT_ALLOWED - vhost nope not found'" in open_refusal(acl_broker, "alice", "alice-pw", "nope")


def test_user_with_a_rabbitmq_made_hash_logs_in(acl_broker: BrokerProcess) -> None:
    connection = connect(acl_broker, RABBITMQ_HASH[0], RABBITMQ_HASH[1], VHOST)
    assert connection.is_open
    connection.close()


def test_wrong_password_is_refused(acl_broker: BrokerProcess) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        connect(acl_broker, "alice", "not-her-password", VHOST)
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(caught.value)


def test_guest_keeps_its_default_permissions_on_slash(acl_broker: BrokerProcess) -> None:
    connection = connect(acl_broker, "guest", "guest", "/")
    assert connection.is_open
    connection.close()


def test_definitions_loaded_at_start_are_saved_to_the_data_dir(acl_broker: BrokerProcess) -> None:
    stored = json.loads((Path(acl_broker.data_dir) / "access.json").read_text())
    assert {user["name"] for user in stored["users"]} == {"guest", "alice", "bob", "carol", RABBITMQ_HASH[0]}
    assert {"name": VHOST} in stored["vhosts"]
