"""RabbitMQ's info items of the broker's objects, as plain dicts: what ``BrokerOperations`` answers.

One function per kind of object (queue, exchange, binding, connection, channel,
consumer, message), named and typed as RabbitMQ 3.10's management API shows them,
so every endpoint that shows an object shows the same fields.  Values that only an
Erlang VM has (garbage collection, reductions) are constants; rates are 0.0 until
statistics are sampled.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections import Counter
from typing import Any
from urllib.parse import quote_plus

from pamqp import commands
from pamqp.header import ContentHeader

from .connection import Connection, State
from .exchanges import Exchange
from .message import Entry
from .policies import exchange_policy_fields, queue_policy_fields
from .queue import Queue
from .stream import StreamConsumer, StreamQueue

PROTOCOL = "AMQP 0-9-1"
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


def exchange_info(exchange: Exchange) -> dict[str, Any]:
    return {
        "arguments": json_table(exchange.arguments),
        "auto_delete": exchange.auto_delete,
        "durable": exchange.durable,
        "internal": exchange.internal,
        "name": exchange.name,
        "type": exchange.type_name,
        "user_who_performed_action": "rmq-internal",
        "vhost": exchange.vhost.name,
        **exchange_policy_fields(exchange),  # policy
        **({} if exchange.messages_delayed is None else {"messages_delayed": exchange.messages_delayed}),
    }


def queue_info(queue: Queue, unacked: Counter[tuple[str, str, str]], node: str) -> dict[str, Any]:
    """RabbitMQ's queue info items.  Every message is held in memory (``*_ram`` = all, ``*_paged_out`` = 0;
    messages still on disk, recovered or paged out, count as in memory too); ``memory`` is the body bytes.
    ``messages_persistent`` is not counted here (the queue keeps no such tally) and is left out."""
    if isinstance(queue, StreamQueue):
        return _stream_info(queue, node)
    ready = queue.message_count
    key = (queue.vhost.name, queue.name)
    unacknowledged, unacked_bytes = unacked[(*key, "messages")], unacked[(*key, "bytes")]
    ready_bytes = queue.ready_bytes
    owner = queue.exclusive_owner
    consumers = len(queue.consumers)
    exclusive_consumer = next((c.tag for c in queue.consumers if c.exclusive), None)
    info: dict[str, Any] = {
        "arguments": json_table(queue.arguments),
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
        "node": node,
        "owner_pid_details": connection_ref(owner) if owner is not None else None,
        "recoverable_slaves": None,
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "garbage_collection": dict(GARBAGE_COLLECTION),
        "state": "running",
        "type": queue.options.queue_type,
        "vhost": queue.vhost.name,
        **queue_policy_fields(queue),  # policy, operator_policy, effective_policy_definition
        **_queue_type_info(queue, node, ready),
    }
    if owner is None:
        del info["owner_pid_details"]  # RabbitMQ shows it for exclusive queues only
    return info


def _stream_info(queue: StreamQueue, node: str) -> dict[str, Any]:
    """The items RabbitMQ 3.10's management API shows for a stream (probed: no backing queue status,
    no message bytes; ``messages`` is the log's length, all of it "ready")."""
    length = len(queue.log)
    return {
        "arguments": json_table(queue.arguments),
        "auto_delete": queue.auto_delete,
        "consumers": len(queue.consumers),
        "durable": queue.durable,
        "exclusive": False,
        "members": [node],
        "memory": queue.log.total_bytes,
        "messages": length,
        "messages_ready": length,
        "messages_unacknowledged": 0,
        "name": queue.name,
        "node": node,
        "online": [node],
        "readers": {node: len(queue.consumers)},
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "state": "running",
        "type": "stream",
        "vhost": queue.vhost.name,
        **queue_policy_fields(queue),  # policy, operator_policy, effective_policy_definition
        "garbage_collection": dict(GARBAGE_COLLECTION),
    }


def _queue_type_info(queue: Queue, node: str, ready: int) -> dict[str, Any]:
    """The items of a quorum queue's Raft state, or of a classic queue's backing queue (fixed where we have no such
    internals, so that tools reading them find the fields)."""
    if queue.options.queue_type == "quorum":
        return {
            "leader": node,
            "members": [node],
            "online": [node],
            "open_files": {node: 0},
            "messages_dlx": 0,
            "message_bytes_dlx": 0,
        }
    return {
        "backing_queue_status": {
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
    }


def json_table(table: dict[str, Any]) -> dict[str, Any]:
    return {key: json_value(value) for key, value in table.items()}


def json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return json_table(value)
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def binding_info(
    vhost: str, source: str, destination: str, kind: str, routing_key: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": routing_key,
        "arguments": json_table(arguments),
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
    text = json.dumps(json_table(arguments), sort_keys=True)
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:4]).decode().rstrip("=")
    return f"{key}~{digest}"


def is_open(connection: Connection) -> bool:
    """Past connection.open (and not closed yet): what RabbitMQ lists as a connection."""
    return connection.state in (State.OPEN, State.CLOSING)


def connection_name(connection: Any) -> str:
    return f"{connection.peer} -> {connection.local_address}"


def connection_ref(connection: Any) -> dict[str, Any]:
    host, _, port = connection.peer.rpartition(":")
    return {"name": connection_name(connection), "peer_host": host, "peer_port": int(port or 0)}


def connection_info(connection: Any, node: str) -> dict[str, Any]:
    host, _, port = connection.peer.rpartition(":")
    local_host, _, local_port = connection.local_address.rpartition(":")
    properties = json_table(connection.client_properties)
    info = {
        "auth_mechanism": connection.auth_mechanism,
        "channel_max": connection.channel_max,
        "channels": len(connection.channels),
        "client_properties": properties,
        "connected_at": int(connection.connected_at * 1000),
        "frame_max": connection.frame_max,
        "host": local_host,
        "name": connection_name(connection),
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


def channel_info(connection: Any, channel: Any, node: str) -> dict[str, Any]:
    name = f"{connection_name(connection)} ({channel.channel_id})"
    return {
        "acks_uncommitted": 0,
        "confirm": channel.confirms is not None,
        "connection_details": connection_ref(connection),
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


def consumer_info(queue: Queue, consumer: Any, node: str) -> dict[str, Any]:
    channel = consumer.channel
    connection = channel.connection
    return {
        "ack_required": not consumer.no_ack,
        "active": not isinstance(consumer, StreamConsumer),  # RabbitMQ 3.10 shows its stream consumers inactive
        "activity_status": "up",
        "arguments": json_table(getattr(consumer, "arguments", {})),  # a stream consumer's x-stream-offset
        "channel_details": {
            "connection_name": connection_name(connection),
            "name": f"{connection_name(connection)} ({channel.channel_id})",
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


def message_info(entry: Entry, remaining: int, encoding: str, truncate: int | None) -> dict[str, Any]:
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
        "properties": properties_info(message.header),
        "payload": payload,
        "payload_encoding": payload_encoding,
    }


def properties_info(header: bytes) -> dict[str, Any]:
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
        found["type" if key == "message_type" else key] = json_value(value)
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
