"""Topic authorisation on the sans-IO core, frames in and out: what RabbitMQ 3.10 does (probed) with a user's
topic permission on a topic exchange — a publish's routing key must match ``write``, a queue.bind /
queue.unbind / exchange.bind key on a topic source must match ``read`` (403 on the channel, RabbitMQ's
text), patterns are searched (not full-matched) with ``{username}`` / ``{vhost}`` expanded, and exchanges
of other types, or without a topic permission, are not checked at all.
"""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core.access import Permission, TopicPermission
from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.errors import TopicAccessRefused
from tests.frames import FakeClock, Peer, method, open_peer, publish


def refusal(routing_key: str, exchange: str = "tx") -> tuple[int, str]:
    topic = f"topic '{routing_key}' in exchange '{exchange}'"
    return 403, f"ACCESS_REFUSED - access to {topic} in vhost '/' refused for user 'guest'"


def grant(broker: Broker, exchange: str, write: str, read: str) -> None:
    """What PUT /api/topic-permissions and a definitions import leave in effect (one grant per exchange)."""
    broker.access.topic_permissions[("guest", "/", exchange)] = TopicPermission(write, read)


@pytest.fixture
def peer() -> Peer:
    """guest on vhost '/', channel 1 open, with topic exchange ``tx`` and queue ``q``, and nothing granted."""
    peer = open_peer(Broker(clock=FakeClock()))
    for value in (
        commands.Exchange.Declare(exchange="tx", exchange_type="topic"),
        commands.Exchange.Declare(exchange="tx2", exchange_type="topic"),
        commands.Exchange.Declare(exchange="dx", exchange_type="direct"),
        commands.Queue.Declare(queue="q"),
        commands.Queue.Bind(queue="q", exchange="tx", routing_key="#"),
    ):
        peer.send_method(1, value)
    assert all(frame.name.endswith("Ok") for _, frame in peer.methods())
    return peer


def closed_with(peer: Peer, data: bytes) -> tuple[int, str, int, int] | None:
    """Send ``data`` on channel 1; the channel.close it caused (code, text, class, method), reopening the channel,
    or None when the channel stayed open."""
    peer.send(data)
    closes = [frame for channel, frame in peer.methods() if channel == 1 and isinstance(frame, commands.Channel.Close)]
    if not closes:
        return None
    peer.send_method(1, commands.Channel.CloseOk())
    peer.open_channel(1)
    close = closes[0]
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def publish_closes(peer: Peer, exchange: str, routing_key: str) -> tuple[int, str] | None:
    close = closed_with(peer, publish(1, routing_key, b"m", exchange=exchange))
    if close is None:
        return None
    assert close[2:] == (60, 40)  # basic.publish
    return close[:2]


def method_closes(peer: Peer, value: commands.Frame) -> tuple[int, str] | None:
    close = closed_with(peer, method(1, value))
    if close is None:
        return None
    assert close[2:] == (value.index >> 16, value.index & 0xFFFF)
    return close[:2]


def test_a_publish_refused_on_the_exchange_names_basic_publish(peer: Peer) -> None:
    """The plain write check (not the topic one) on basic.publish: RabbitMQ's channel.close says 60, 40 too."""
    peer.broker.access.permissions[("guest", "/")] = Permission(".*", "^amq\\.", ".*")
    assert publish_closes(peer, "dx", "k") == (
        403,
        "ACCESS_REFUSED - access to exchange 'dx' in vhost '/' refused for user 'guest'",
    )


def test_without_a_topic_permission_every_key_is_published(peer: Peer) -> None:
    assert publish_closes(peer, "tx", "any.key") is None
    grant(peer.broker, "tx2", "^a\\.", "^a\\.")  # a grant on another exchange changes nothing here
    assert publish_closes(peer, "tx", "zz") is None
    assert peer.drain("q") == [b"m", b"m"]


def test_publish_routing_key_must_match_write_searched_not_full_matched(peer: Peer) -> None:
    grant(peer.broker, "tx", "^a\\.", "^r\\.")
    assert publish_closes(peer, "tx", "a.b") is None
    assert publish_closes(peer, "tx", "a.b.c") is None  # a search: the rest of the key need not match
    assert publish_closes(peer, "tx", "xa.b") == refusal("xa.b")
    assert publish_closes(peer, "tx", "a.b") is None  # a decision remembered is the same decision
    assert publish_closes(peer, "tx", "r.x") == refusal("r.x")  # read does not grant write
    assert peer.drain("q") == [b"m", b"m", b"m"]


def test_empty_pattern_allows_only_the_empty_key(peer: Peer) -> None:
    grant(peer.broker, "tx", "", "")
    assert publish_closes(peer, "tx", "") is None
    assert publish_closes(peer, "tx", "a") == refusal("a")
    assert method_closes(peer, commands.Queue.Bind(queue="q", exchange="tx", routing_key="")) is None


def test_username_and_vhost_are_expanded_unescaped_client_id_is_not(peer: Peer) -> None:
    grant(peer.broker, "tx", "^{username}\\.{vhost}\\.", "^{client_id}\\.")
    assert publish_closes(peer, "tx", "guest./.x") is None
    assert publish_closes(peer, "tx", "{username}.{vhost}.x") == refusal("{username}.{vhost}.x")
    # {client_id} is filled for MQTT / STOMP only: over AMQP 0-9-1 it stays literal text
    assert method_closes(peer, commands.Queue.Bind(queue="q", exchange="tx", routing_key="{client_id}.x")) is None
    # RabbitMQ puts the names in as they are: a '.' in one stays regex text (no escaping)
    peer.broker.access.add_user("gu.st", "pw")
    peer.broker.access.topic_permissions[("gu.st", "/", "tx")] = TopicPermission("^{username}$", "")
    peer.broker.access.check_topic("gu.st", "/", "write", "tx", "guXst")


def test_other_exchange_types_are_not_checked(peer: Peer) -> None:
    for exchange in ("dx", "", "amq.direct"):
        grant(peer.broker, exchange, "^a\\.", "^a\\.")
    assert publish_closes(peer, "dx", "zz") is None
    assert publish_closes(peer, "", "q") is None  # the default exchange is a direct one
    assert method_closes(peer, commands.Queue.Bind(queue="q", exchange="dx", routing_key="zz")) is None
    assert publish_closes(peer, "tx2", "zz") is None  # a topic exchange with no grant


def test_queue_bind_and_unbind_key_must_match_read(peer: Peer) -> None:
    grant(peer.broker, "tx", "^a\\.", "^r\\.")
    assert method_closes(peer, commands.Queue.Bind(queue="q", exchange="tx", routing_key="r.x")) is None
    assert method_closes(peer, commands.Queue.Bind(queue="q", exchange="tx", routing_key="a.x")) == refusal("a.x")
    assert method_closes(peer, commands.Queue.Unbind(queue="q", exchange="tx", routing_key="a.x")) == refusal("a.x")
    assert method_closes(peer, commands.Queue.Unbind(queue="q", exchange="tx", routing_key="r.x")) is None
    # the key is checked before the queue is looked up (403, not 404), after the exchange is (404)
    missing_queue = commands.Queue.Bind(queue="nosuch", exchange="tx", routing_key="a.x")
    assert method_closes(peer, missing_queue) == refusal("a.x")
    missing_exchange = commands.Queue.Bind(queue="q", exchange="nosuch", routing_key="a.x")
    assert method_closes(peer, missing_exchange) == (404, "NOT_FOUND - no exchange 'nosuch' in vhost '/'")


def test_exchange_bind_checks_the_topic_source_only(peer: Peer) -> None:
    grant(peer.broker, "tx", "^a\\.", "^r\\.")
    refused = commands.Exchange.Bind(destination="tx2", source="tx", routing_key="a.x")
    assert method_closes(peer, refused) == refusal("a.x")
    assert method_closes(peer, commands.Exchange.Bind(destination="tx2", source="tx", routing_key="r.x")) is None
    assert method_closes(peer, commands.Exchange.Bind(destination="tx", source="tx2", routing_key="a.x")) is None
    unbind = commands.Exchange.Unbind(destination="tx2", source="tx", routing_key="a.x")
    assert method_closes(peer, unbind) == refusal("a.x")
    missing_destination = commands.Exchange.Bind(destination="nosuch", source="tx", routing_key="a.x")
    assert method_closes(peer, missing_destination) == refusal("a.x")


def test_a_changed_or_removed_grant_applies_to_the_next_publish(peer: Peer) -> None:
    grant(peer.broker, "tx", "^a\\.", "")
    assert publish_closes(peer, "tx", "a.1") is None
    grant(peer.broker, "tx", "^b\\.", "")  # a new grant object: the remembered "a.1 passed" no longer counts
    assert publish_closes(peer, "tx", "a.1") == refusal("a.1")
    del peer.broker.access.topic_permissions[("guest", "/", "tx")]
    assert publish_closes(peer, "tx", "a.1") is None


def test_an_expanded_pattern_that_does_not_compile_refuses() -> None:
    broker = Broker(clock=FakeClock())
    broker.access.add_user("a(b", "pw")
    broker.access.topic_permissions[("a(b", "/", "tx")] = TopicPermission("^{username}", "")
    with pytest.raises(TopicAccessRefused):
        broker.access.check_topic("a(b", "/", "write", "tx", "a(b")


def test_management_publish_is_checked_like_basic_publish(peer: Peer) -> None:
    operations = BrokerOperations(peer.broker, "rabbit@test")
    grant(peer.broker, "tx", "^a\\.", "")
    assert operations.publish("/", "tx", "a.1", b"x", user="guest") is True
    with pytest.raises(TopicAccessRefused) as raised:
        operations.publish("/", "tx", "zz", b"x", user="guest")
    assert (raised.value.reply_code, raised.value.reply_text) == refusal("zz")
    assert operations.publish("/", "tx", "zz", b"x") is True  # the broker itself (user None) is not checked
