"""The broker's public operations, for management front ends (the HTTP API): sans-IO, synchronous.

``BrokerOperations`` is the one door through which the management layer reads and
changes the broker.  Reads return plain dicts keyed by RabbitMQ's info-item names
(``messages_ready``, ``peer_host``, ``destination_type`` …) so the HTTP layer only
filters and serialises them.  Writes run the very handlers AMQP methods run
(``declarations.HANDLERS``) on a stand-in channel of the acting user, so the
management API declares, binds and deletes with the same checks, equivalence rules,
permission checks and reply texts as a client would get; failures raise those
``AMQPError``s (``ChannelError`` 404/405/406/403) for the caller to translate.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus

from pamqp import commands
from pamqp.header import ContentHeader

from ..errors import internal_exchange, not_found
from . import declarations
from .access import AccessControl
from .broker import Broker
from .connection import Connection, State
from .counters import SIZE_BUCKETS as SIZE_BUCKETS  # re-exported, as Snapshot: the Prometheus endpoints read them
from .exchanges import EXCHANGE_TYPES, Exchange
from .flow import DISK, MEMORY
from .interfaces import ConfirmFlusher, ConnectionPort
from .message import Entry, Message
from .queue import Queue
from .snapshot import Snapshot as Snapshot
from .snapshot import take as take_snapshot
from .stats import NO_RANGES
from .stats import RangeError as RangeError  # re-exported: the HTTP layer answers 400 with it
from .stats import Ranges as Ranges  # re-exported for the HTTP layer's type hints
from .vhost import VirtualHost, sender_selected
from .writer import Writer

NODE = "rabbit@localhost"
PROTOCOL = "AMQP 0-9-1"
EXCHANGE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
}
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)
# Erlang process details RabbitMQ shows per queue, connection and channel; constant here (no Erlang process)
GARBAGE_COLLECTION = {
    "fullsweep_after": 65535,
    "max_heap_size": 0,
    "min_bin_vheap_size": 46422,
    "min_heap_size": 233,
    "minor_gcs": 0,
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

    def check_access(self, action: str, kind: str, name: str) -> None:
        if self.username is not None:  # None: the broker itself (definitions import), no permission check
            self.broker.access.check(self.username, self.vhost.name, action, kind, name)

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

    # ------------------------------------------------------------ totals

    def object_totals(self) -> dict[str, int]:
        broker = self._broker
        open_connections = [c for c in broker.connections if _is_open(c)]
        return {
            "channels": sum(len(c.channels) for c in open_connections),
            "connections": len(open_connections),
            "consumers": sum(len(q.consumers) for v in broker.vhosts.values() for q in v.queues.values()),
            "exchanges": sum(len(v.exchanges) for v in broker.vhosts.values()),
            "queues": sum(len(v.queues) for v in broker.vhosts.values()),
        }

    def queue_totals(self, vhost: str | None = None) -> dict[str, int]:
        """Messages, ready and unacknowledged, over every queue (of ``vhost``)."""
        queues = self.queues(vhost)
        ready = sum(q["messages_ready"] for q in queues)
        unacked = sum(q["messages_unacknowledged"] for q in queues)
        return {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}

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
        return [
            {**self._exchange_info(e), **view.exchange(e)} for v in self._vhosts(vhost) for e in v.exchanges.values()
        ]

    def exchange(self, vhost: str, name: str, ranges: Ranges = NO_RANGES) -> dict[str, Any] | None:
        exchange = self._vhost(vhost).exchanges.get(name)
        if exchange is None:
            return None
        return {**self._exchange_info(exchange), **self._broker.stats.view(ranges).exchange(exchange)}

    def _exchange_info(self, exchange: Exchange) -> dict[str, Any]:
        return {
            "arguments": _json_table(exchange.arguments),
            "auto_delete": exchange.auto_delete,
            "durable": exchange.durable,
            "internal": exchange.internal,
            "name": exchange.name,
            "type": exchange.type_name,
            "user_who_performed_action": "rmq-internal",
            "vhost": exchange.vhost.name,
        }

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
            {**self._queue_info(q, unacked), **view.queue(q)}
            for v in self._vhosts(vhost)
            for q in list(v.queues.values())
        ]

    def queue(self, vhost: str, name: str, ranges: Ranges = NO_RANGES) -> dict[str, Any] | None:
        queue = self._vhost(vhost).queues.get(name)
        if queue is None:
            return None
        return {**self._queue_info(queue, self._unacked_counts()), **self._broker.stats.view(ranges).queue(queue)}

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

    def _queue_info(self, queue: Queue, unacked: Counter[tuple[str, str, str]]) -> dict[str, Any]:
        """RabbitMQ's queue info items.  Every message is held in memory (``*_ram`` = all, ``*_paged_out`` = 0;
        recovered messages still on disk count as in memory too); ``memory`` is the bytes of the bodies held.
        ``messages_persistent`` is not counted here (the queue keeps no such tally) and is left out."""
        ready = queue.message_count
        key = (queue.vhost.name, queue.name)
        unacknowledged, unacked_bytes = unacked[(*key, "messages")], unacked[(*key, "bytes")]
        ready_bytes = queue.ready_bytes
        owner = queue.exclusive_owner
        consumers = len(queue.consumers)
        exclusive_consumer = next((c.tag for c in queue.consumers if c.exclusive), None)
        info: dict[str, Any] = {
            "arguments": _json_table(queue.arguments),
            "auto_delete": queue.auto_delete,
            "consumer_capacity": 1.0 if consumers else 0,
            "consumer_utilisation": 1.0 if consumers else 0,
            "consumers": consumers,
            "durable": queue.durable,
            "exclusive": owner is not None,
            "exclusive_consumer_tag": exclusive_consumer,
            "head_message_timestamp": None,
            "memory": ready_bytes + unacked_bytes,
            "message_bytes": ready_bytes + unacked_bytes,
            "message_bytes_paged_out": 0,
            "message_bytes_ram": ready_bytes + unacked_bytes,
            "message_bytes_ready": ready_bytes,
            "message_bytes_unacknowledged": unacked_bytes,
            "messages": ready + unacknowledged,
            "messages_paged_out": 0,
            "messages_ram": ready + unacknowledged,
            "messages_ready": ready,
            "messages_ready_ram": ready,
            "messages_unacknowledged": unacknowledged,
            "messages_unacknowledged_ram": unacknowledged,
            "name": queue.name,
            "node": self.node,
            "owner_pid_details": _connection_ref(owner) if owner is not None else None,
            "recoverable_slaves": None,
            "reductions": 0,
            "reductions_details": {"rate": 0.0},
            "garbage_collection": dict(GARBAGE_COLLECTION),
            "state": "running",
            "type": queue.options.queue_type,
            "vhost": queue.vhost.name,
        }
        if owner is None:
            del info["owner_pid_details"]  # RabbitMQ shows it for exclusive queues only
        if queue.options.queue_type == "quorum":
            info.update(
                leader=self.node,
                members=[self.node],
                online=[self.node],
                open_files={self.node: 0},
                messages_dlx=0,
                message_bytes_dlx=0,
            )
        else:
            info["backing_queue_status"] = {
                "avg_ack_egress_rate": 0.0,
                "avg_ack_ingress_rate": 0.0,
                "avg_egress_rate": 0.0,
                "avg_ingress_rate": 0.0,
                "delta": ["delta", "undefined", 0, 0, "undefined"],
                "len": ready,
                "mode": "default",
                "next_deliver_seq_id": 0,
                "next_seq_id": 0,
                "q1": 0,
                "q2": 0,
                "q3": 0,
                "q4": ready,
                "target_ram_count": "infinity",
                "version": 1,
            }
        return info

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
        taken: list[Entry] = []
        answers = []
        for _ in range(count):
            entry = queue.get()
            if entry is None:
                break
            taken.append(entry)
            info = _message_info(entry, queue.message_count, encoding, truncate)
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
                found.append(_binding_info(v.name, "", queue.name, "queue", queue.name, {}))
            for exchange in v.exchanges.values():
                if exchange.name:
                    for destination, routing_key, arguments in exchange.bindings.values():
                        found.append(
                            _binding_info(
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
        method: Any
        if destination_type == "queue":
            method = commands.Queue.Bind(
                queue=destination, exchange=source, routing_key=routing_key, arguments=arguments or {}
            )
        else:
            method = commands.Exchange.Bind(
                destination=destination, source=source, routing_key=routing_key, arguments=arguments or {}
            )
        self._run(vhost, user, method)

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
        method: Any
        if destination_type == "queue":
            method = commands.Queue.Unbind(
                queue=destination, exchange=source, routing_key=routing_key, arguments=arguments or {}
            )
        else:
            method = commands.Exchange.Unbind(
                destination=destination, source=source, routing_key=routing_key, arguments=arguments or {}
            )
        self._run(vhost, user, method)

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
        header = ContentHeader(0, len(body), properties_from_json(properties or {})).marshal()
        message = sender_selected(Message(exchange_name, routing_key, header, body))
        queues = host.route(exchange, message)
        for queue in queues:
            queue.publish(message)
        return bool(queues)

    # ------------------------------------------------------------ connections, channels, consumers

    def connections(self, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        view = self._broker.stats.view(ranges)
        return [
            {**_connection_info(c, self.node), **view.connection(c)}
            for c in list(self._broker.connections)
            if _is_open(c)
        ]

    def close_connection(self, name: str, reason: str) -> bool:
        """Close the connection called ``name`` (320 CONNECTION_FORCED with ``reason``); False if there is none."""
        for connection in list(self._broker.connections):
            if _is_open(connection) and _connection_name(connection) == name:
                connection.force_close(reason)
                return True
        return False

    def channels(self, ranges: Ranges = NO_RANGES) -> list[dict[str, Any]]:
        view = self._broker.stats.view(ranges)
        return [
            {**_channel_info(connection, channel, self.node), **view.channel(channel)}
            for connection in list(self._broker.connections)
            if _is_open(connection)
            for channel in connection.channels.values()
        ]

    def consumers(self, vhost: str | None = None) -> list[dict[str, Any]]:
        found = []
        for v in self._vhosts(vhost):
            for queue in v.queues.values():
                for consumer in queue.consumers:
                    found.append(_consumer_info(queue, consumer, self.node))
        return found

    # ------------------------------------------------------------ internals

    def _run(self, vhost: str, user: str | None, method: Any) -> None:
        """Run an exchange.* / queue.* handler as the user's AMQP channel would (raises its AMQPError)."""
        channel = _ManagementChannel(_ManagementConnection(self._broker, self._vhost(vhost), user))
        declarations.HANDLERS[method.index](channel, method)


# ------------------------------------------------------------------ info dicts


def _json_table(table: dict[str, Any]) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in table.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return _json_table(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _binding_info(
    vhost: str, source: str, destination: str, kind: str, routing_key: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": routing_key,
        "arguments": _json_table(arguments),
        "properties_key": properties_key(routing_key, arguments),
    }


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    """A binding's name in URLs, as RabbitMQ builds it: ``~`` for no routing key and no arguments, else the
    routing key quoted (``quote_plus``, ``~`` as ``%7E``), followed by ``~`` and a hash when there are arguments.

    RabbitMQ hashes the arguments with Erlang's ``phash2``; clients take the key from a listing, so any
    stable hash serves: here the first 4 bytes of the SHA-256 of their sorted JSON form, base64url.
    """
    if not routing_key and not arguments:
        return "~"
    key = quote_plus(routing_key, safe="!*'()").replace("~", "%7E")
    if not arguments:
        return key
    text = json.dumps(_json_table(arguments), sort_keys=True)
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:4]).decode().rstrip("=")
    return f"{key}~{digest}"


def _is_open(connection: Connection) -> bool:
    """Past connection.open (and not closed yet): what RabbitMQ lists as a connection."""
    return connection.state in (State.OPEN, State.CLOSING)


def _connection_name(connection: Any) -> str:
    return f"{connection.peer} -> {connection.local_address}"


def _connection_ref(connection: Any) -> dict[str, Any]:
    host, _, port = connection.peer.rpartition(":")
    return {"name": _connection_name(connection), "peer_host": host, "peer_port": int(port or 0)}


def _connection_info(connection: Any, node: str) -> dict[str, Any]:
    host, _, port = connection.peer.rpartition(":")
    local_host, _, local_port = connection.local_address.rpartition(":")
    properties = _json_table(connection.client_properties)
    info = {
        "auth_mechanism": connection.auth_mechanism,
        "channel_max": connection.channel_max,
        "channels": len(connection.channels),
        "client_properties": properties,
        "connected_at": int(connection.connected_at * 1000),
        "frame_max": connection.frame_max,
        "host": local_host,
        "name": _connection_name(connection),
        "node": node,
        "peer_cert_issuer": None,
        "peer_cert_subject": None,
        "peer_cert_validity": None,
        "peer_host": host,
        "peer_port": int(port or 0),
        "port": int(local_port or 0),
        "protocol": PROTOCOL,
        "recv_cnt": connection.recv_cnt,
        "recv_oct": connection.recv_oct,
        "recv_oct_details": {"rate": 0.0},
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "send_cnt": connection.send_cnt,
        "send_oct": connection.send_oct,
        "send_oct_details": {"rate": 0.0},
        "send_pend": 0,
        "garbage_collection": dict(GARBAGE_COLLECTION),
        "ssl": connection.tls,
        "ssl_cipher": None,
        "ssl_hash": None,
        "ssl_key_exchange": None,
        "ssl_protocol": None,
        "state": "blocked" if connection.blocked else "running",
        "timeout": connection.heartbeat,
        "type": "network",
        "user": connection.username,
        "user_who_performed_action": connection.username,
        "vhost": connection.vhost.name,
    }
    if isinstance(properties.get("connection_name"), str):  # RabbitMQ shows it only when the client named itself
        info["user_provided_name"] = properties["connection_name"]
    return info


def _channel_info(connection: Any, channel: Any, node: str) -> dict[str, Any]:
    name = f"{_connection_name(connection)} ({channel.channel_id})"
    return {
        "acks_uncommitted": 0,
        "confirm": channel.confirms is not None,
        "connection_details": _connection_ref(connection),
        "consumer_count": len(channel.consumers),
        "global_prefetch_count": channel.global_prefetch_count,
        "messages_unacknowledged": len(channel.unacked),
        "messages_uncommitted": 0,
        "messages_unconfirmed": 0,
        "name": name,
        "node": node,
        "number": channel.channel_id,
        "pending_raft_commands": 0,
        "prefetch_count": channel.prefetch_count,
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "garbage_collection": dict(GARBAGE_COLLECTION),
        "state": "running",
        "transactional": channel.transaction is not None,
        "user": connection.username,
        "user_who_performed_action": connection.username,
        "vhost": connection.vhost.name,
    }


def _consumer_info(queue: Queue, consumer: Any, node: str) -> dict[str, Any]:
    channel = consumer.channel
    connection = channel.connection
    return {
        "ack_required": not consumer.no_ack,
        "active": True,
        "activity_status": "up",
        "arguments": {},
        "channel_details": {
            "connection_name": _connection_name(connection),
            "name": f"{_connection_name(connection)} ({channel.channel_id})",
            "node": node,
            "number": channel.channel_id,
            "peer_host": connection.peer.rpartition(":")[0],
            "peer_port": int(connection.peer.rpartition(":")[2] or 0),
            "user": connection.username,
        },
        "consumer_tag": consumer.tag,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch_count,
        "queue": {"name": queue.name, "vhost": queue.vhost.name},
    }


def _message_info(entry: Entry, remaining: int, encoding: str, truncate: int | None) -> dict[str, Any]:
    message = entry.message
    assert message is not None  # queue.get pages a message in
    body = message.body
    size = len(body)
    if truncate is not None:
        body = body[:truncate]
    payload: str
    if encoding == "auto":
        try:
            payload, payload_encoding = body.decode("utf-8"), "string"
        except UnicodeDecodeError:
            payload, payload_encoding = base64.b64encode(body).decode(), "base64"
    else:
        payload, payload_encoding = base64.b64encode(body).decode(), "base64"
    return {
        "payload_bytes": size,
        "redelivered": entry.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "message_count": remaining,
        "properties": _properties_info(message.header),
        "payload": payload,
        "payload_encoding": payload_encoding,
    }


def _properties_info(header: bytes) -> dict[str, Any]:
    """The content properties as RabbitMQ's management API shows them: the ones set, headers decoded."""
    content = ContentHeader()
    try:
        content.unmarshal(header)
    except Exception:  # properties were checked at publish: only a message stored by an older broker gets here
        return {}
    found: dict[str, Any] = {}
    for key in PROPERTY_NAMES:
        value = getattr(content.properties, key)
        if value is None or (key == "cluster_id" and not value):
            continue
        if isinstance(value, datetime.datetime):
            value = int(value.replace(tzinfo=datetime.UTC).timestamp())
        found["type" if key == "message_type" else key] = _json_value(value)
    return found


def properties_from_json(properties: dict[str, Any]) -> commands.Basic.Properties:
    """``basic.publish`` properties from the API's ``properties`` object (RabbitMQ's names: ``type`` too)."""
    values = {("message_type" if key == "type" else key): value for key, value in properties.items()}
    unknown = sorted(set(values) - set(PROPERTY_NAMES))
    if unknown:
        raise ValueError(f"unknown properties: {', '.join(unknown)}")
    if isinstance(values.get("timestamp"), int):
        values["timestamp"] = datetime.datetime.fromtimestamp(values["timestamp"], datetime.UTC)
    return commands.Basic.Properties(**values)
