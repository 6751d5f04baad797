"""The broker's public operations, for management front ends (the HTTP API): sans-IO, synchronous.

``BrokerOperations`` is the one door through which the management layer reads and
changes the broker.  Reads return plain dicts keyed by RabbitMQ's info-item names
(``messages_ready``, ``peer_host``, ``destination_type`` …) so the HTTP layer only
filters and serialises them.  Writes run the very handlers AMQP methods run
(``declarations.HANDLERS``) on a stand-in channel of the acting user, so the
management API declares, binds and deletes with the same checks, equivalence rules,
permission checks and reply texts as a client would get; failures raise those
``AMQPError``s (``ChannelError`` 404/405/406/403) for the caller to translate.
The dicts themselves are built in ``info``, one function per kind of object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pamqp import commands
from pamqp.header import ContentHeader

from ..errors import internal_exchange, not_found
from . import declarations, tracing
from .access import HASHING_ALGORITHM, AccessControl, Permission, TopicPermission
from .broker import Broker
from .counters import SIZE_BUCKETS as SIZE_BUCKETS  # re-exported, as Snapshot: the Prometheus endpoints read them
from .exchanges import EXCHANGE_TYPES
from .flow import DISK, MEMORY
from .info import (
    binding_info,
    channel_info,
    connection_info,
    connection_name,
    consumer_info,
    exchange_info,
    is_open,
    message_info,
    properties_from_json,
    properties_key,
    queue_info,
)
from .interfaces import ConfirmFlusher, ConnectionPort
from .message import Entry, Message
from .policy_operations import NoSuchVhost as NoSuchVhost  # re-exported: the HTTP layer imports only this module
from .policy_operations import PolicyOperations
from .policy_validation import PolicyError as PolicyError
from .queue import Queue
from .sender_selected import sender_selected
from .snapshot import Snapshot as Snapshot
from .snapshot import take as take_snapshot
from .stats import NO_RANGES
from .stats import RangeError as RangeError  # re-exported: the HTTP layer answers 400 with it
from .stats import Ranges as Ranges  # re-exported for the HTTP layer's type hints
from .tail import TailOperations
from .tail import Watcher as Watcher  # re-exported: what /api/tail reads
from .vhost import VirtualHost
from .writer import Writer

# The facade's public names; the access types are re-exported for the management layer's user/permission edits.
__all__ = [
    "ACK_MODES",
    "HASHING_ALGORITHM",
    "AccessControl",
    "BrokerOperations",
    "Permission",
    "TopicPermission",
    "Watcher",
    "properties_from_json",
    "properties_key",
]

NODE = "rabbit@localhost"
EXCHANGE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
    "x-delayed-message": "Delayed Message Exchange.",  # core.delayed (rabbitmq-delayed-message-exchange)
}
ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")


class _ManagementConnection:
    """A ``ConnectionPort`` for one operation of one user: permission checks are the user's, frames vanish."""

    is_publisher = False

    def __init__(self, broker: Broker, vhost: VirtualHost, username: str | None) -> None:
        self.broker = broker
        self.vhost = vhost
        self.username = username
        self.writer = Writer(None, broker.limits.frame_max)  # the handlers' -ok frames have no one to go to

    def check_access(self, action: str, kind: str, name: str, method: tuple[int, int] = (0, 0)) -> None:
        if self.username is not None:  # None: the broker itself (definitions import), no permission check
            self.broker.access.check(self.username, self.vhost.name, action, kind, name)

    def check_topic_access(self, action: str, exchange: str, routing_key: str) -> None:
        if self.username is not None:
            self.broker.access.check_topic(self.username, self.vhost.name, action, exchange, routing_key)

    def confirm_pending(self, channel: ConfirmFlusher) -> None:
        """Never in confirm mode."""

    def channel_closed(self, channel_id: int) -> None:
        """Never closed by a handler: errors are raised."""


class _ManagementChannel:
    """A ``ChannelPort`` the queue.* / exchange.* handlers run on."""

    channel_id = 1

    def __init__(self, connection: _ManagementConnection) -> None:
        self.connection: ConnectionPort = connection
        self.last_queue_name = ""
        self.held_cancels: list[bytes] | None = None

    def send_after_sync(self, frame: bytes, ok: bool) -> None:
        """The reply would go nowhere."""


class BrokerOperations:
    """Reads and changes of one ``Broker`` for management front ends."""

    def __init__(self, broker: Broker, node: str = NODE) -> None:
        self._broker = broker
        self.node = node
        self.policies = PolicyOperations(broker)  # policies and operator policies: list, get, set, clear
        self.tail = TailOperations(broker)  # live-tail watchers: watch, unwatch, watching
        self._origin = tracing.Origin(f"<{node}.management>", 1, "")  # the API's messages, as tracing shows them

    # ------------------------------------------------------------ users and vhosts

    @property
    def access(self) -> AccessControl:
        """The users and permissions in effect (read-only use: change them with ``install_access``)."""
        return self._broker.access

    def vhost_names(self) -> list[str]:
        return list(self._broker.vhosts)

    def authenticate(self, username: str, password: str, peer_host: str) -> dict[str, Any] | None:
        """``{"name", "tags"}`` of the user if the password is right and the user may log in from ``peer_host``."""
        user = self._broker.access.authenticate(username, password, peer_host)
        return None if user is None else {"name": user.name, "tags": list(user.tags)}

    def install_access(self, access: AccessControl, vhosts: list[str]) -> list[str]:
        """Put new users, vhosts and permissions into effect; returns the vhosts that were removed.

        The connections of a removed vhost are closed (320 CONNECTION_FORCED, as RabbitMQ), then its
        queues (with their messages) and exchanges are deleted, from memory and from the store.
        """
        broker = self._broker
        broker.access = access
        for name in vhosts:
            broker.add_vhost(name)
        tracing.apply(broker, self.node)
        removed = [name for name in broker.vhosts if name not in vhosts]
        for name in removed:
            for connection in list(broker.connections):
                if connection.vhost.name == name:
                    connection.force_close(f"vhost '{name}' is deleted")
            vhost = broker.vhosts.pop(name)
            for queue in list(vhost.queues.values()):
                vhost.delete_queue(queue)
            for exchange in list(vhost.exchanges.values()):
                if exchange.name and not exchange.name.startswith("amq.") and exchange.name in vhost.exchanges:
                    vhost.delete_exchange(exchange)
        return removed

    def after_pending_writes(self, done: Callable[[bool], None]) -> bool:
        """Have ``done(ok)`` called once the store has synced every write made so far (the same group commit
        an AMQP declare-ok or publisher confirm waits for); False, and no call, when nothing waits for a sync,
        or when no persister syncs this broker (an in-process broker under test)."""
        barrier = self._broker.sync_barrier
        if not barrier.requested or barrier.on_request is None:
            return False
        barrier.after_sync(done)
        return True

    # ------------------------------------------------------------ totals

    def object_totals(self) -> dict[str, int]:
        broker = self._broker
        open_connections = [c for c in broker.connections if is_open(c)]
        return {
            "channels": sum(len(c.channels) for c in open_connections),
            "connections": len(open_connections),
            "consumers": sum(len(q.consumers) for v in broker.vhosts.values() for q in v.queues.values()),
            "exchanges": sum(len(v.exchanges) for v in broker.vhosts.values()),
            "queues": sum(len(v.queues) for v in broker.vhosts.values()),
        }

    def queue_totals(self, vhost: str | None = None) -> dict[str, int]:
        """Messages, ready and unacknowledged, over every queue (of ``vhost``)."""
        vhosts = self._vhosts(vhost)
        names = {v.name for v in vhosts}
        ready = sum(q.message_count for v in vhosts for q in v.queues.values())
        unacked = sum(n for (v, _, kind), n in self._unacked_counts().items() if kind == "messages" and v in names)
        return {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}

    def queue_count(self, vhost: str) -> int:
        return len(self._vhost(vhost).queues)

    def resources(self) -> dict[str, Any]:
        """Memory (bytes of queued messages) and disk figures with their limits and alarms, RabbitMQ's names."""
        broker = self._broker
        active = broker.alarms.active
        return {
            "mem_used": broker.flow.queued_bytes,
            "mem_limit": broker.flow.high_watermark or 0,
            "mem_alarm": MEMORY in active,
            "disk_free": getattr(broker.disk, "free", 0),
            "disk_free_limit": broker.disk.limit,
            "disk_free_alarm": DISK in active,
        }

    def snapshot(self) -> Snapshot:
        """Every figure the Prometheus endpoints export, copied now (``core.snapshot``): safe to read off the loop."""
        return take_snapshot(self._broker)

    def exchange_types(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "description": EXCHANGE_DESCRIPTIONS.get(name, ""), "enabled": True}
            for name in sorted(EXCHANGE_TYPES)
        ]

    # ------------------------------------------------------------ statistics

    def stats_ranges(self, query: Mapping[str, str], ceil_lengths: bool = False) -> Ranges:
        """The ``lengths_*``, ``msg_rates_*`` and ``data_rates_*`` ranges a request's query asks for (RabbitMQ's
        ``*_age``/``*_incr``, seconds); ``ceil_lengths`` for one queue, as RabbitMQ. Raises ``RangeError`` (400)."""
        return Ranges.parse(query, int(self._broker.wall_clock() * 1000), ceil_lengths)

    def overview_stats(self, vhosts: Iterable[str] | None = None, ranges: Ranges = NO_RANGES) -> dict[str, Any]:
        """The overview's ``message_stats``, ``churn_rates`` and ``queue_totals``, over ``vhosts`` (None: all)."""
        return self._broker.stats.view(ranges).overview(vhosts)

    def vhost_stats(self, name: str, ranges: Ranges = NO_RANGES) -> dict[str, Any]:
        """A vhost's ``message_stats``, ``messages*`` and ``recv_oct``/``send_oct``, with their ``*_details``."""
        return self._broker.stats.view(ranges).vhost(name)

    # ------------------------------------------------------------ exchanges

    def _vhost(self, name: str) -> VirtualHost:
        vhost = self._broker.vhosts.get(name)
        if vhost is None:
            raise not_found("vhost", name, name)
        return vhost

    def _vhosts(self, name: str | None) -> list[VirtualHost]:
        return list(self._broker.vhosts.values()) if name is None else [self._vhost(name)]

    def exchanges(self, vhost: str | None = None, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        view = self._broker.stats.view(ranges)
        return [{**exchange_info(e), **view.exchange(e)} for v in self._vhosts(vhost) for e in v.exchanges.values()]

    def exchange(self, vhost: str, name: str, ranges: Ranges = NO_RANGES) -> dict[str, Any] | None:
        exchange = self._vhost(vhost).exchanges.get(name)
        if exchange is None:
            return None
        return {**exchange_info(exchange), **self._broker.stats.view(ranges).exchange(exchange)}

    def declare_exchange(
        self,
        vhost: str,
        name: str,
        exchange_type: str,
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> None:
        method = commands.Exchange.Declare(
            exchange=name,
            exchange_type=exchange_type,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments or {},
        )
        self._run(vhost, user, method)

    def delete_exchange(self, vhost: str, name: str, *, if_unused: bool = False, user: str | None = None) -> None:
        self._run(vhost, user, commands.Exchange.Delete(exchange=name, if_unused=if_unused))

    # ------------------------------------------------------------ queues

    def queues(self, vhost: str | None = None, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        """Each queue's info, with its statistics (message_stats, lengths with rates, utilisation, idle_since)."""
        unacked = self._unacked_counts()
        view = self._broker.stats.view(ranges)
        return [
            {**queue_info(q, unacked, self.node), **view.queue(q)}
            for v in self._vhosts(vhost)
            for q in list(v.queues.values())
        ]

    def queue(self, vhost: str, name: str, ranges: Ranges = NO_RANGES) -> dict[str, Any] | None:
        queue = self._vhost(vhost).queues.get(name)
        if queue is None:
            return None
        return {**queue_info(queue, self._unacked_counts(), self.node), **self._broker.stats.view(ranges).queue(queue)}

    def _unacked_counts(self) -> Counter[tuple[str, str, str]]:
        """Deliveries awaiting ack, by (vhost, queue, "messages" or "bytes"): counted from the channels, which
        hold them (the queues do not)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for connection in self._broker.connections:
            for channel in connection.channels.values():
                for item in channel.unacked.values():
                    key = (item.queue.vhost.name, item.queue.name)
                    counts[(*key, "messages")] += 1
                    counts[(*key, "bytes")] += item.entry.body_size
        return counts

    def declare_queue(
        self,
        vhost: str,
        name: str,
        *,
        durable: bool = True,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> None:
        method = commands.Queue.Declare(queue=name, durable=durable, auto_delete=auto_delete, arguments=arguments or {})
        self._run(vhost, user, method)

    def delete_queue(
        self, vhost: str, name: str, *, if_unused: bool = False, if_empty: bool = False, user: str | None = None
    ) -> None:
        if name not in self._vhost(vhost).queues:
            raise not_found("queue", name, vhost)
        self._run(vhost, user, commands.Queue.Delete(queue=name, if_unused=if_unused, if_empty=if_empty))

    def purge_queue(self, vhost: str, name: str, *, user: str | None = None) -> None:
        self._run(vhost, user, commands.Queue.Purge(queue=name))

    def get_messages(
        self,
        vhost: str,
        name: str,
        count: int,
        ackmode: str,
        encoding: str = "auto",
        truncate: int | None = None,
        *,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Take up to ``count`` messages as basic.get would, then ack, requeue or reject them per ``ackmode``."""
        queue = self._lookup_queue(vhost, name, user, "read")
        taps = self._vhost(vhost).taps  # basic.get is traced: so is this
        taken: list[Entry] = []
        answers = []
        for _ in range(count):
            entry = queue.get()
            if entry is None:
                break
            taken.append(entry)
            if taps:
                origin = self._origin._replace(user=user or "")
                tracing.delivered(taps, origin, entry.message, queue.name, entry.redelivered)
            info = message_info(entry, queue.message_count, encoding, truncate)
            if queue.options.queue_type == "quorum":  # as basic.get on a quorum queue: the count is a header
                headers = info["properties"].setdefault("headers", {})
                headers["x-delivery-count"] = entry.delivery_count
            answers.append(info)
        if ackmode in ("ack_requeue_true", "reject_requeue_true"):
            queue.requeue(taken)
        elif ackmode == "reject_requeue_false":
            queue.reject(taken)
        else:
            queue.settle(taken)
        return answers

    def _lookup_queue(self, vhost: str, name: str, user: str | None, action: str) -> Queue:
        connection = _ManagementConnection(self._broker, self._vhost(vhost), user)
        return declarations.lookup_queue(_ManagementChannel(connection), name, action)

    # ------------------------------------------------------------ bindings

    def bindings(self, vhost: str | None = None) -> list[dict[str, Any]]:
        found = []
        for v in self._vhosts(vhost):
            for queue in v.queues.values():  # the default exchange's implicit binding, as RabbitMQ lists it
                found.append(binding_info(v.name, "", queue.name, "queue", queue.name, {}))
            for exchange in v.exchanges.values():
                if exchange.name:
                    for destination, routing_key, arguments in exchange.bindings.values():
                        found.append(
                            binding_info(
                                v.name, exchange.name, destination.name, destination.kind, routing_key, arguments
                            )
                        )
        return found

    def bind(
        self,
        vhost: str,
        source: str,
        destination: str,
        destination_type: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        *,
        user: str | None = None,
    ) -> None:
        self._run(vhost, user, _binding_method(True, source, destination, destination_type, routing_key, arguments))

    def unbind(
        self,
        vhost: str,
        source: str,
        destination: str,
        destination_type: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        *,
        user: str | None = None,
    ) -> None:
        self._run(vhost, user, _binding_method(False, source, destination, destination_type, routing_key, arguments))

    # ------------------------------------------------------------ publish

    def publish(
        self,
        vhost: str,
        exchange_name: str,
        routing_key: str,
        body: bytes,
        properties: dict[str, Any] | None = None,
        *,
        user: str | None = None,
    ) -> bool:
        """Publish as basic.publish would; True if the message reached a queue."""
        host = self._vhost(vhost)
        connection = _ManagementConnection(self._broker, host, user)
        connection.check_access("write", "exchange", exchange_name or "amq.default")  # as basic.publish checks
        exchange = host.exchanges.get(exchange_name)
        if exchange is None:
            raise not_found("exchange", exchange_name, vhost)
        if exchange.internal:
            raise internal_exchange(exchange_name, vhost)
        if exchange.type_name == "topic":
            connection.check_topic_access("write", exchange_name, routing_key)
        header = ContentHeader(0, len(body), properties_from_json(properties or {})).marshal()
        message = sender_selected(Message(exchange_name, routing_key, header, body))
        queues = host.route(exchange, message)
        if host.taps:
            tracing.published(host.taps, self._origin._replace(user=user or ""), message, queues)
        for queue in queues:
            queue.publish(message)
        return bool(queues)

    # ------------------------------------------------------------ connections, channels, consumers

    def connections(self, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        view = self._broker.stats.view(ranges)
        return [
            {**connection_info(c, self.node), **view.connection(c)}
            for c in list(self._broker.connections)
            if is_open(c)
        ]

    def close_connection(self, name: str, reason: str) -> bool:
        """Close the connection called ``name`` (320 CONNECTION_FORCED with ``reason``); False if there is none."""
        for connection in list(self._broker.connections):
            if is_open(connection) and connection_name(connection) == name:
                connection.force_close(reason)
                return True
        return False

    def channels(self, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        view = self._broker.stats.view(ranges)
        return [
            {**channel_info(connection, channel, self.node), **view.channel(channel)}
            for connection in list(self._broker.connections)
            if is_open(connection)
            for channel in connection.channels.values()
        ]

    def consumers(self, vhost: str | None = None) -> list[dict[str, Any]]:
        found = []
        for v in self._vhosts(vhost):
            for queue in v.queues.values():
                for consumer in queue.consumers:
                    found.append(consumer_info(queue, consumer, self.node))
        return found

    # ------------------------------------------------------------ internals

    def _run(self, vhost: str, user: str | None, method: Any) -> None:
        """Run an exchange.* / queue.* handler as the user's AMQP channel would (raises its AMQPError)."""
        channel = _ManagementChannel(_ManagementConnection(self._broker, self._vhost(vhost), user))
        declarations.HANDLERS[method.index](channel, method)


def _binding_method(
    bind: bool, source: str, destination: str, destination_type: str, key: str, arguments: dict[str, Any] | None
) -> Any:
    """The queue.bind / exchange.bind (or unbind) method AMQP would carry for this binding."""
    if destination_type == "queue":
        queue_method = commands.Queue.Bind if bind else commands.Queue.Unbind
        return queue_method(queue=destination, exchange=source, routing_key=key, arguments=arguments or {})
    exchange_method = commands.Exchange.Bind if bind else commands.Exchange.Unbind
    return exchange_method(destination=destination, source=source, routing_key=key, arguments=arguments or {})
