"""``core.operations.BrokerOperations``, sans-IO: what the management API reads and changes, seen over AMQP."""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core.access import AccessControl, Permission
from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations, properties_key
from amqp_server.errors import AMQPError
from tests.frames import FakeClock, content, method, open_peer


@pytest.fixture
def broker() -> Broker:
    return Broker(clock=FakeClock())


@pytest.fixture
def operations(broker: Broker) -> BrokerOperations:
    return BrokerOperations(broker, "rabbit@test")


def test_declared_queue_is_listed_with_rabbitmqs_info_keys(operations: BrokerOperations) -> None:
    operations.declare_queue("/", "q1", durable=False, arguments={"x-max-length": 3}, user="guest")
    (queue,) = operations.queues("/")
    assert queue["name"] == "q1" and queue["vhost"] == "/" and queue["node"] == "rabbit@test"
    assert (queue["durable"], queue["auto_delete"], queue["exclusive"]) == (False, False, False)
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (0, 0, 0)
    assert (queue["arguments"], queue["state"], queue["type"], queue["consumers"]) == (
        {"x-max-length": 3},
        "running",
        "classic",
        0,
    )


def test_redeclaring_with_other_flags_fails_as_over_amqp(operations: BrokerOperations) -> None:
    operations.declare_queue("/", "q1", durable=False)
    with pytest.raises(AMQPError) as raised:
        operations.declare_queue("/", "q1", durable=True)
    assert raised.value.reply_code == 406
    assert "inequivalent arg 'durable' for queue 'q1' in vhost '/'" in raised.value.reply_text


def test_a_user_without_configure_permission_is_refused(broker: Broker, operations: BrokerOperations) -> None:
    broker.access.add_user("reader", "pw", ["management"])
    broker.access.set_permission("reader", "/", Permission(configure="", write=".*", read=".*"))
    with pytest.raises(AMQPError) as raised:
        operations.declare_queue("/", "q1", user="reader")
    assert raised.value.reply_code == 403
    assert operations.queues("/") == []


def test_publish_routes_and_the_message_is_consumed_over_amqp(broker: Broker, operations: BrokerOperations) -> None:
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q1"))
    peer.methods()
    properties = {"content_type": "text/plain", "headers": {"h": 1}, "delivery_mode": 2}
    assert operations.publish("/", "", "q1", b"hello", properties, user="guest") is True
    assert operations.publish("/", "", "nowhere", b"lost", user="guest") is False
    peer.send_method(1, commands.Basic.Get(queue="q1", no_ack=True))
    frames = peer.frames()
    assert isinstance(frames[0][1], commands.Basic.GetOk)
    assert frames[1][1].properties.content_type == "text/plain"
    assert frames[1][1].properties.headers == {"h": 1}
    assert frames[2][1].value == b"hello"


def test_get_messages_with_each_ackmode(operations: BrokerOperations) -> None:
    operations.declare_queue("/", "q1")
    for body in (b"one", b"\xff\xfe"):
        operations.publish("/", "", "q1", body)
    got = operations.get_messages("/", "q1", 5, "ack_requeue_true", "auto")
    assert [(m["payload"], m["payload_encoding"]) for m in got] == [("one", "string"), ("//4=", "base64")]
    assert [m["message_count"] for m in got] == [1, 0]
    assert got[0]["properties"] == {} and got[0]["redelivered"] is False
    again = operations.get_messages("/", "q1", 1, "reject_requeue_true", "base64", truncate=2)
    assert (again[0]["payload"], again[0]["payload_bytes"], again[0]["redelivered"]) == ("b24=", 3, True)
    assert len(operations.get_messages("/", "q1", 1, "ack_requeue_false", "auto")) == 1
    assert operations.queue("/", "q1")["messages"] == 1
    assert len(operations.get_messages("/", "q1", 1, "reject_requeue_false", "auto")) == 1
    assert operations.queue("/", "q1")["messages"] == 0


def test_unacknowledged_deliveries_are_counted_per_queue(broker: Broker, operations: BrokerOperations) -> None:
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q1"))
    peer.send(method(1, commands.Basic.Publish(routing_key="q1")) + content(1, b"x"))
    peer.send_method(1, commands.Basic.Get(queue="q1"))
    peer.frames()
    queue = operations.queue("/", "q1")
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (1, 0, 1)
    assert operations.queue_totals() == {"messages": 1, "messages_ready": 0, "messages_unacknowledged": 1}


def test_bindings_list_the_default_exchange_and_take_properties_keys(operations: BrokerOperations) -> None:
    operations.declare_queue("/", "q1")
    operations.declare_exchange("/", "x1", "direct")
    operations.bind("/", "x1", "q1", "queue", "a b~c")
    operations.bind("/", "amq.fanout", "x1", "exchange", "", {"k": "v"})
    found = {(b["source"], b["destination"], b["routing_key"]): b for b in operations.bindings("/")}
    assert found[("", "q1", "q1")]["properties_key"] == "q1"
    assert found[("x1", "q1", "a b~c")]["properties_key"] == "a+b%7Ec"  # RabbitMQ's key for this routing key
    e2e = found[("amq.fanout", "x1", "")]
    assert e2e["destination_type"] == "exchange" and e2e["arguments"] == {"k": "v"}
    assert e2e["properties_key"].startswith("~") and e2e["properties_key"] == properties_key("", {"k": "v"})
    operations.unbind("/", "x1", "q1", "queue", "a b~c")
    assert ("x1", "q1", "a b~c") not in {
        (b["source"], b["destination"], b["routing_key"]) for b in operations.bindings()
    }


def test_properties_key_of_no_key_and_no_arguments_is_a_tilde() -> None:
    assert properties_key("", {}) == "~"


def test_delete_queue_if_empty_and_if_unused(operations: BrokerOperations) -> None:
    operations.declare_queue("/", "q1")
    operations.publish("/", "", "q1", b"x")
    with pytest.raises(AMQPError) as raised:
        operations.delete_queue("/", "q1", if_empty=True)
    assert raised.value.reply_code == 406
    operations.purge_queue("/", "q1")
    operations.delete_queue("/", "q1", if_empty=True, if_unused=True)
    assert operations.queue("/", "q1") is None
    with pytest.raises(AMQPError) as raised:
        operations.delete_queue("/", "q1")
    assert raised.value.reply_code == 404


def test_connections_and_channels_are_listed_and_closed_with_connection_forced(
    broker: Broker, operations: BrokerOperations
) -> None:
    peer = open_peer(broker)
    peer.connection.local_address = "127.0.0.1:5672"
    peer.send_method(1, commands.Basic.Qos(prefetch_count=7))
    peer.frames()
    (connection,) = operations.connections()
    assert connection["name"] == "127.0.0.1:5555 -> 127.0.0.1:5672"
    assert (connection["user"], connection["vhost"], connection["peer_host"], connection["peer_port"]) == (
        "guest",
        "/",
        "127.0.0.1",
        5555,
    )
    assert connection["channels"] == 1 and connection["protocol"] == "AMQP 0-9-1" and connection["recv_oct"] > 0
    (channel,) = operations.channels()
    assert channel["name"] == "127.0.0.1:5555 -> 127.0.0.1:5672 (1)" and channel["prefetch_count"] == 7
    assert operations.object_totals()["connections"] == 1
    assert operations.close_connection(connection["name"], "bye now") is True
    (_, close), *_ = peer.methods()
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (320, "CONNECTION_FORCED - bye now")
    assert operations.close_connection("nobody", "x") is False


def test_a_finished_connection_leaves_the_registry(broker: Broker, operations: BrokerOperations) -> None:
    peer = open_peer(broker)
    peer.connection.connection_lost()
    assert operations.connections() == [] and broker.connections == set()


def test_consumers_are_listed_with_their_channel(broker: Broker, operations: BrokerOperations) -> None:
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q1"))
    peer.send_method(1, commands.Basic.Consume(queue="q1", consumer_tag="ctag"))
    peer.frames()
    (consumer,) = operations.consumers("/")
    assert consumer["consumer_tag"] == "ctag" and consumer["queue"] == {"name": "q1", "vhost": "/"}
    assert consumer["ack_required"] is True and consumer["channel_details"]["number"] == 1


def test_install_access_deletes_removed_vhosts_and_closes_their_connections(
    broker: Broker, operations: BrokerOperations
) -> None:
    broker.add_vhost("v1")
    broker.access.set_permission("guest", "v1", Permission())
    peer = open_peer(broker, vhost="v1")
    operations.declare_queue("v1", "q1")
    access = AccessControl.default()
    access.add_user("new", "pw", ["monitoring"])
    assert operations.install_access(access, ["/"]) == ["v1"]
    assert operations.vhost_names() == ["/"]
    assert operations.authenticate("new", "pw", "127.0.0.1") == {"name": "new", "tags": ["monitoring"]}
    (_, close), *_ = peer.methods()
    assert (close.reply_code, close.reply_text) == (320, "CONNECTION_FORCED - vhost 'v1' is deleted")


def test_authenticate_applies_the_loopback_rule(operations: BrokerOperations) -> None:
    assert operations.authenticate("guest", "guest", "127.0.0.1") is not None
    assert operations.authenticate("guest", "guest", "10.0.0.1") is None
    assert operations.authenticate("guest", "wrong", "127.0.0.1") is None


def test_an_unknown_vhost_is_a_404(operations: BrokerOperations) -> None:
    with pytest.raises(AMQPError) as raised:
        operations.queues("nope")
    assert raised.value.reply_code == 404


def test_publish_checks_like_basic_publish(broker: Broker, operations: BrokerOperations) -> None:
    operations.declare_exchange("/", "inner", "fanout", internal=True)
    with pytest.raises(AMQPError) as raised:
        operations.publish("/", "inner", "", b"x", user="guest")
    assert raised.value.reply_code == 403 and "cannot publish to internal exchange 'inner'" in raised.value.reply_text
    broker.access.add_user("ro", "pw", ["management"])
    broker.access.set_permission("ro", "/", Permission(configure=".*", write="", read=".*"))
    with pytest.raises(AMQPError) as raised:
        operations.publish("/", "", "q", b"x", user="ro")
    assert raised.value.reply_code == 403 and "amq.default" in raised.value.reply_text
    with pytest.raises(ValueError, match="unknown properties: bogus"):
        operations.publish("/", "", "q", b"x", {"bogus": 1})
