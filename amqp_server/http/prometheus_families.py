"""RabbitMQ's Prometheus metrics as data: names (without prefix), types, HELP texts, and how to read each.

Grouped as RabbitMQ's ``rabbitmq_prometheus`` plugin groups them (the ``family`` names
``/metrics/detailed?family=`` takes); the texts are RabbitMQ 3.10.8's, probed.  Each
``read`` takes one record of a ``core.operations.Snapshot`` (a queue's, a channel's, a
connection's figures) or its dict of counts; ``prometheus`` turns them into metric families.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.operations import Snapshot

PROTOCOL = "amqp091"
QUEUE_TYPE = "rabbit_classic_queue"  # every message count is reported under it: they are not kept per queue type


@dataclass(frozen=True)
class Spec:
    """One metric of a family: its name (without prefix), type, RabbitMQ's HELP text, and how to read it."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str
    read: Callable[[Any], float]


def _gauge(name: str, text: str, read: Callable[[Any], float]) -> Spec:
    return Spec(name, "gauge", text, read)


def _counter(name: str, text: str, read: Callable[[Any], float]) -> Spec:
    return Spec(name, "counter", text, read)


# ------------------------------------------------------------------ the families, as RabbitMQ groups them

CHURN = (
    _counter("connections_opened_total", "Total number of connections opened", lambda s: s["connections_opened"]),
    _counter(
        "connections_closed_total",
        "Total number of connections closed or terminated",
        lambda s: s["connections_closed"],
    ),
    _counter("channels_opened_total", "Total number of channels opened", lambda s: s["channels_opened"]),
    _counter("channels_closed_total", "Total number of channels closed", lambda s: s["channels_closed"]),
    _counter("queues_declared_total", "Total number of queues declared", lambda s: s["queues_declared"]),
    _counter("queues_created_total", "Total number of queues created", lambda s: s["queues_created"]),
    _counter("queues_deleted_total", "Total number of queues deleted", lambda s: s["queues_deleted"]),
)
AUTH: tuple[tuple[str, str, Callable[[dict[str, int]], int]], ...] = (
    ("auth_attempts_total", "Total number of authorization attempts", lambda s: s["auth_attempts"]),
    (
        "auth_attempts_succeeded_total",
        "Total number of successful authentication attempts",
        lambda s: s["auth_attempts"] - s["auth_failed"],
    ),
    ("auth_attempts_failed_total", "Total number of failed authentication attempts", lambda s: s["auth_failed"]),
)
QUEUE_COARSE = (
    _gauge("queue_messages_ready", "Messages ready to be delivered to consumers", lambda q: q.ready),
    _gauge("queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", lambda q: q.unacked),
    _gauge(
        "queue_messages", "Sum of ready and unacknowledged messages - total queue depth", lambda q: q.ready + q.unacked
    ),
)
QUEUE_CONSUMERS = _gauge("queue_consumers", "Consumers on a queue", lambda q: q.consumers)
QUEUE = (
    QUEUE_CONSUMERS,
    _gauge(
        "queue_messages_bytes",
        "Size in bytes of ready and unacknowledged messages",
        lambda q: q.ready_bytes + q.unacked_bytes,
    ),
    _gauge("queue_messages_ready_bytes", "Size in bytes of ready messages", lambda q: q.ready_bytes),
    _gauge("queue_messages_unacked_bytes", "Size in bytes of all unacknowledged messages", lambda q: q.unacked_bytes),
)
CHANNEL = (
    _gauge("channel_consumers", "Consumers on a channel", lambda c: c.consumers),
    _gauge("channel_messages_unacked", "Delivered but not yet acknowledged messages", lambda c: c.unacked),
    _gauge("channel_messages_unconfirmed", "Published but not yet confirmed messages", lambda c: c.unconfirmed),
    _gauge(
        "channel_messages_uncommitted",
        "Messages received in a transaction but not yet committed",
        lambda c: c.uncommitted,
    ),
    _gauge(
        "channel_acks_uncommitted",
        "Message acknowledgements in a transaction not yet committed",
        lambda c: c.acks_uncommitted,
    ),
    _gauge("consumer_prefetch", "Limit of unacknowledged messages for each consumer", lambda c: c.prefetch),
    _gauge(
        "channel_prefetch",
        "Total limit of unacknowledged messages for all consumers on a channel",
        lambda c: c.global_prefetch,
    ),
)
CHANNEL_EXCHANGE = (
    _counter(
        "channel_messages_published_total",
        "Total number of messages published into an exchange on a channel",
        lambda c: c.counts["publish"],
    ),
    _counter(
        "channel_messages_confirmed_total",
        "Total number of messages published into an exchange and confirmed on the channel",
        lambda c: c.counts["confirm"],
    ),
    _counter(
        "channel_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        lambda c: c.counts["return_unroutable"],
    ),
    _counter(
        "channel_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        lambda c: c.counts["drop_unroutable"],
    ),
)


def _consumed_with_ack(counts: dict[str, int]) -> int:
    """basic.deliver in manual-ack mode: what the delivery tags leave over (they count every delivery and get-ok)."""
    return counts["deliveries"] - counts["get"] - counts["get_no_ack"] - counts["deliver_no_ack"]


CHANNEL_QUEUE = (
    _counter(
        "channel_get_ack_total",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
        lambda c: c.counts["get"],
    ),
    _counter(
        "channel_get_total",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
        lambda c: c.counts["get_no_ack"],
    ),
    _counter(
        "channel_messages_delivered_ack_total",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
        lambda c: _consumed_with_ack(c.counts),
    ),
    _counter(
        "channel_messages_delivered_total",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
        lambda c: c.counts["deliver_no_ack"],
    ),
    _counter(
        "channel_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        lambda c: c.counts["redeliver"],
    ),
    _counter(
        "channel_messages_acked_total", "Total number of messages acknowledged by consumers", lambda c: c.counts["ack"]
    ),
    _counter(
        "channel_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        lambda c: c.counts["get_empty"],
    ),
)
CONNECTION_COARSE = (
    _counter("connection_incoming_bytes_total", "Total number of bytes received on a connection", lambda c: c.recv_oct),
    _counter("connection_outgoing_bytes_total", "Total number of bytes sent on a connection", lambda c: c.send_oct),
)
CONNECTION = (_gauge("connection_channels", "Channels on a connection", lambda c: c.channels),)

# family name (RabbitMQ's, for ?family=) -> (objects of the snapshot, label names, label values, metrics)
Objects = Callable[[Snapshot], Sequence[Any]]
Labels = Callable[[Any], tuple[str, ...]]


def _queue_labels(queue: Any) -> tuple[str, ...]:
    return (queue.vhost, queue.name)


def _channel_labels(channel: Any) -> tuple[str, ...]:
    return (channel.name,)


OBJECT_FAMILIES: dict[str, tuple[Objects, tuple[str, ...], Labels, tuple[Spec, ...]]] = {
    "queue_coarse_metrics": (lambda s: s.queues, ("vhost", "queue"), _queue_labels, QUEUE_COARSE),
    "queue_metrics": (lambda s: s.queues, ("vhost", "queue"), _queue_labels, QUEUE),
    "channel_metrics": (lambda s: s.channels, ("channel",), _channel_labels, CHANNEL),
    "channel_exchange_metrics": (lambda s: s.channels, ("channel",), _channel_labels, CHANNEL_EXCHANGE),
    "channel_queue_metrics": (lambda s: s.channels, ("channel",), _channel_labels, CHANNEL_QUEUE),
    # RabbitMQ labels its connection metrics "channel" too (with the connection's pid)
    "connection_coarse_metrics": (lambda s: s.connections, ("channel",), _channel_labels, CONNECTION_COARSE),
    "connection_metrics": (lambda s: s.connections, ("channel",), _channel_labels, CONNECTION),
}
TOTALS = (
    ("connections", "Connections currently open", lambda s: len(s.connections)),
    ("channels", "Channels currently open", lambda s: len(s.channels)),
    ("consumers", "Consumers currently connected", lambda s: s.consumers),
    ("queues", "Queues available", lambda s: len(s.queues)),
)

# rabbitmq_global_*: (name, HELP, labelled by queue type, value from the broker-wide counts)
GLOBAL: tuple[tuple[str, str, bool, Callable[[dict[str, int]], int]], ...] = (
    (
        "messages_acknowledged_total",
        "Total number of messages acknowledged by consumers",
        True,
        lambda c: c["ack"],
    ),
    ("messages_confirmed_total", "Total number of messages confirmed to publishers", False, lambda c: c["confirm"]),
    (
        "messages_delivered_consume_auto_ack_total",
        "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
        True,
        lambda c: c["deliver_no_ack"],
    ),
    (
        "messages_delivered_consume_manual_ack_total",
        "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
        True,
        _consumed_with_ack,
    ),
    (
        "messages_delivered_get_auto_ack_total",
        "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
        True,
        lambda c: c["get_no_ack"],
    ),
    (
        "messages_delivered_get_manual_ack_total",
        "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
        True,
        lambda c: c["get"],
    ),
    (
        "messages_delivered_total",
        "Total number of messages delivered to consumers",
        True,
        lambda c: c["deliveries"],
    ),
    (
        "messages_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        True,
        lambda c: c["get_empty"],
    ),
    (
        "messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        False,
        lambda c: c["confirm_publish"],
    ),
    (
        "messages_received_total",
        "Total number of messages received from publishers",
        False,
        lambda c: c["publish"],
    ),
    (
        "messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        True,
        lambda c: c["redeliver"],
    ),
    (
        "messages_routed_total",
        "Total number of messages routed to queues or streams",
        False,
        lambda c: c["publish"] - c["return_unroutable"] - c["drop_unroutable"],
    ),
    (
        "messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        False,
        lambda c: c["drop_unroutable"],
    ),
    (
        "messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        False,
        lambda c: c["return_unroutable"],
    ),
)
