"""exchange.* and queue.* handlers: the rules for declaring, binding and deleting.

Each handler checks (``_check_*`` helpers raise with RabbitMQ's reply texts),
then lets the ``VirtualHost`` make the change and write it through to the store.
Equivalence checks give 406, another connection's exclusive queue 405, the
reserved ``amq.`` prefix and the default exchange 403, missing resources 404.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pamqp import commands

from ..errors import (
    default_exchange_refused,
    in_use,
    inequivalent_arg,
    inequivalent_table_arg,
    invalid_exchange_type,
    no_previous_queue,
    not_found,
    queue_not_empty,
    reserved_name,
    resource_locked,
    system_exchange_deletion,
)
from ..wire.methods import method_frame, queue_declare_ok_frame
from .broker_names import generated_name
from .exchanges import EXCHANGE_TYPES, Exchange, new_exchange
from .interfaces import ChannelPort
from .queue import Queue

# Queue arguments whose values must match on redeclaration (RabbitMQ's equivalence list).
EQUIVALENT_QUEUE_ARGUMENTS = (
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-age",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-stream-max-segment-size-bytes",
)


# ------------------------------------------------------------------ lookups


def lookup_queue(channel: ChannelPort, name: str, action: str | None = None) -> Queue:
    """The queue a method names ('' = the last one declared on this channel), usable by this connection.

    With ``action``, the user's permission for it is checked first: RabbitMQ refuses (403) before it
    looks the queue up, so a forbidden name gets 403 whether or not it exists.
    """
    vhost = channel.connection.vhost
    if not name:
        name = channel.last_queue_name
        if not name:
            raise no_previous_queue()
    if action is not None:
        channel.connection.check_access(action, "queue", name)
    queue = vhost.queues.get(name)
    if queue is None:
        raise not_found("queue", name, vhost.name)
    _check_exclusive_access(channel, queue)
    return queue


def lookup_exchange(channel: ChannelPort, name: str) -> Exchange:
    vhost = channel.connection.vhost
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        raise not_found("exchange", name, vhost.name)
    return exchange


def _check_exclusive_access(channel: ChannelPort, queue: Queue) -> None:
    if queue.exclusive_owner is not None and queue.exclusive_owner is not channel.connection:
        raise resource_locked(queue.name, queue.vhost.name)


def _check_not_default(name: str) -> None:
    if name == "":
        raise default_exchange_refused()


def _check_bind_access(channel: ChannelPort, kind: str, destination: str, source: str) -> None:
    """Binding needs write on the destination and read on the source exchange (RabbitMQ's rule)."""
    channel.connection.check_access("write", kind, destination)
    channel.connection.check_access("read", "exchange", source)


def _check_topic_binding(channel: ChannelPort, source: Exchange | None, routing_key: str) -> None:
    """RabbitMQ's topic authorisation of a binding key: the user's topic ``read`` pattern on a topic source.
    RabbitMQ checks it once the source exists, before it looks at the destination (probed: 403, not 404)."""
    if source is not None and source.type_name == "topic":
        channel.connection.check_topic_access("read", source.name, routing_key)


def _check_exchange_binding(channel: ChannelPort, method: commands.Exchange.Bind | commands.Exchange.Unbind) -> None:
    """exchange.bind's and exchange.unbind's guards, in RabbitMQ's order: neither end the default exchange,
    access to both ends, then the topic permission on the source."""
    _check_not_default(method.source)
    _check_not_default(method.destination)
    _check_bind_access(channel, "exchange", method.destination, method.source)
    _check_topic_binding(channel, channel.connection.vhost.exchanges.get(method.source), method.routing_key)


def _reply(channel: ChannelPort, nowait: bool, method: Any) -> None:
    """Send the -ok; after a durable change, only once the store has synced it (RabbitMQ commits first)."""
    frame = None if nowait else (method if isinstance(method, bytes) else method_frame(channel.channel_id, method))
    vhost = channel.connection.vhost
    if vhost.take_unsynced_definitions():
        if frame is not None:
            vhost.sync_barrier.after_sync(lambda ok: channel.send_after_sync(frame, ok))
    elif frame is not None:
        channel.connection.writer.send(frame)


# ---------------------------------------------------------------- exchange.*


def _on_exchange_declare(channel: ChannelPort, method: commands.Exchange.Declare) -> None:
    vhost = channel.connection.vhost
    name = method.exchange
    _check_not_default(name)
    existing = vhost.exchanges.get(name)
    if method.passive:
        if existing is None:
            raise not_found("exchange", name, vhost.name)
    else:
        if name.startswith("amq.") and existing is None:
            raise reserved_name("exchange", name)
        channel.connection.check_access("configure", "exchange", name)
        exchange_type = EXCHANGE_TYPES.get(method.exchange_type)
        if exchange_type is None:
            raise invalid_exchange_type(method.exchange_type)
        if existing is None:
            vhost.add_exchange(
                new_exchange(
                    vhost,
                    method.exchange_type,
                    name,
                    method.durable,
                    method.auto_delete,
                    method.internal,
                    method.arguments,
                )
            )
        else:
            _check_exchange_equivalent(existing, method, vhost.name)
    _reply(channel, method.nowait, commands.Exchange.DeclareOk())


def _check_exchange_equivalent(exchange: Exchange, method: commands.Exchange.Declare, vhost: str) -> None:
    for arg, received, current in (
        ("type", method.exchange_type, exchange.type_name),
        ("durable", method.durable, exchange.durable),
        ("auto_delete", method.auto_delete, exchange.auto_delete),
        ("internal", method.internal, exchange.internal),
    ):
        if received != current:
            raise inequivalent_arg(arg, "exchange", exchange.name, vhost, received, current)
    received_ae = (method.arguments or {}).get("alternate-exchange")
    current_ae = exchange.arguments.get("alternate-exchange")
    if received_ae != current_ae:
        raise inequivalent_table_arg("alternate-exchange", "exchange", exchange.name, vhost, received_ae, current_ae)


def _on_exchange_delete(channel: ChannelPort, method: commands.Exchange.Delete) -> None:
    vhost = channel.connection.vhost
    _check_not_default(method.exchange)
    channel.connection.check_access("configure", "exchange", method.exchange)
    exchange = vhost.exchanges.get(method.exchange)
    if exchange is not None:
        if exchange.name.startswith("amq."):
            raise system_exchange_deletion(exchange.name, vhost.name)
        if method.if_unused and exchange.bindings:
            raise in_use("exchange", exchange.name, vhost.name)
        vhost.delete_exchange(exchange)
    _reply(channel, method.nowait, commands.Exchange.DeleteOk())


def _on_exchange_bind(channel: ChannelPort, method: commands.Exchange.Bind) -> None:
    vhost = channel.connection.vhost
    _check_exchange_binding(channel, method)
    destination = lookup_exchange(channel, method.destination)
    source = lookup_exchange(channel, method.source)
    source.check_binding(method.arguments or {})
    vhost.bind(source, destination, method.routing_key, dict(method.arguments or {}))
    _reply(channel, method.nowait, commands.Exchange.BindOk())


def _on_exchange_unbind(channel: ChannelPort, method: commands.Exchange.Unbind) -> None:
    """Unbinding what does not exist succeeds, as in RabbitMQ."""
    vhost = channel.connection.vhost
    _check_exchange_binding(channel, method)
    source, destination = vhost.exchanges.get(method.source), vhost.exchanges.get(method.destination)
    if source is not None and destination is not None:
        vhost.unbind(source, destination, method.routing_key, dict(method.arguments or {}))
    _reply(channel, method.nowait, commands.Exchange.UnbindOk())


# ------------------------------------------------------------------ queue.*


def _on_queue_declare(channel: ChannelPort, method: commands.Queue.Declare) -> None:
    connection = channel.connection
    vhost = connection.vhost
    name = method.queue
    if method.passive:
        queue = vhost.queues.get(name)
        if queue is None:
            raise not_found("queue", name, vhost.name)
        _check_exclusive_access(channel, queue)
        queue.redeclared()  # a passive declare is a use too: it renews x-expires
    else:
        if not name:
            name = generated_name("amq.gen-")
        elif name.startswith("amq."):
            raise reserved_name("queue", name)
        channel.connection.check_access("configure", "queue", name)
        vhost.counters.queues_declared += 1
        queue = vhost.queues.get(name)
        if queue is None:
            queue = Queue.with_arguments(
                vhost,
                name,
                method.durable,
                method.auto_delete,
                method.arguments,
                exclusive_owner=connection if method.exclusive else None,
            )
            vhost.add_queue(queue)
        else:
            _check_exclusive_access(channel, queue)
            _check_queue_equivalent(queue, method, connection)
            queue.redeclared()
    channel.last_queue_name = queue.name
    _reply(
        channel,
        method.nowait,
        queue_declare_ok_frame(channel.channel_id, queue.name, queue.message_count, len(queue.consumers)),
    )


def _check_queue_equivalent(queue: Queue, method: commands.Queue.Declare, connection: Any) -> None:
    vhost = queue.vhost.name
    if method.exclusive != (queue.exclusive_owner is not None):
        raise resource_locked(queue.name, vhost)
    for arg, received, current in (
        ("durable", method.durable, queue.durable),
        ("auto_delete", method.auto_delete, queue.auto_delete),
    ):
        if received != current:
            raise inequivalent_arg(arg, "queue", queue.name, vhost, received, current)
    arguments = method.arguments or {}
    for arg in EQUIVALENT_QUEUE_ARGUMENTS:
        received_value, current_value = arguments.get(arg), queue.arguments.get(arg)
        if arg == "x-queue-type" and received_value in (None, "classic") and current_value in (None, "classic"):
            continue  # a classic queue is the same with or without the argument
        if received_value != current_value:
            raise inequivalent_table_arg(arg, "queue", queue.name, vhost, received_value, current_value)


def _on_queue_bind(channel: ChannelPort, method: commands.Queue.Bind) -> None:
    _check_not_default(method.exchange)
    queue_name = method.queue or channel.last_queue_name
    routing_key = method.routing_key if (method.routing_key or method.queue) else queue_name
    if queue_name:  # permissions first, as RabbitMQ
        _check_bind_access(channel, "queue", queue_name, method.exchange)
    exchange = lookup_exchange(channel, method.exchange)  # RabbitMQ reports a missing exchange first
    if queue_name:
        _check_topic_binding(channel, exchange, routing_key)
    queue = lookup_queue(channel, method.queue)
    exchange.check_binding(method.arguments or {})
    channel.connection.vhost.bind(exchange, queue, routing_key, dict(method.arguments or {}))
    _reply(channel, method.nowait, commands.Queue.BindOk())


def _on_queue_unbind(channel: ChannelPort, method: commands.Queue.Unbind) -> None:
    """Unbinding what does not exist (binding, queue or exchange) succeeds, as in RabbitMQ."""
    _check_not_default(method.exchange)
    vhost = channel.connection.vhost
    queue_name = method.queue or channel.last_queue_name
    _check_bind_access(channel, "queue", queue_name, method.exchange)
    exchange = vhost.exchanges.get(method.exchange)
    _check_topic_binding(channel, exchange, method.routing_key)
    queue = vhost.queues.get(queue_name)
    if exchange is not None and queue is not None:
        _check_exclusive_access(channel, queue)
        vhost.unbind(exchange, queue, method.routing_key, dict(method.arguments or {}))
    _reply(channel, False, commands.Queue.UnbindOk())


def _on_queue_purge(channel: ChannelPort, method: commands.Queue.Purge) -> None:
    queue = lookup_queue(channel, method.queue, "read")
    _reply(channel, method.nowait, commands.Queue.PurgeOk(message_count=queue.purge()))


def _on_queue_delete(channel: ChannelPort, method: commands.Queue.Delete) -> None:
    vhost = channel.connection.vhost
    name = method.queue or channel.last_queue_name
    channel.connection.check_access("configure", "queue", name)
    queue = vhost.queues.get(name)
    count = 0
    held: list[bytes] = []  # basic.cancel for this channel's consumers: RabbitMQ sends them after delete-ok
    if queue is not None:
        _check_exclusive_access(channel, queue)
        if method.if_unused and queue.consumers:
            raise in_use("queue", name, vhost.name)
        if method.if_empty and queue.message_count:
            raise queue_not_empty(name, vhost.name)
        channel.held_cancels = held
        try:
            count = vhost.delete_queue(queue)
        finally:
            channel.held_cancels = None
    reply_waits_for_sync = vhost.unsynced_definitions
    _reply(channel, method.nowait, commands.Queue.DeleteOk(message_count=count))
    for frame in held:  # amqplib resolves the delete and then ends the consumer; the other order loses the reply
        if reply_waits_for_sync:
            vhost.sync_barrier.after_sync(partial(channel.send_after_sync, frame))
        else:
            channel.connection.writer.send(frame)


HANDLERS: dict[int, Callable[[ChannelPort, Any], None]] = {
    commands.Exchange.Declare.index: _on_exchange_declare,
    commands.Exchange.Delete.index: _on_exchange_delete,
    commands.Exchange.Bind.index: _on_exchange_bind,
    commands.Exchange.Unbind.index: _on_exchange_unbind,
    commands.Queue.Declare.index: _on_queue_declare,
    commands.Queue.Bind.index: _on_queue_bind,
    commands.Queue.Unbind.index: _on_queue_unbind,
    commands.Queue.Purge.index: _on_queue_purge,
    commands.Queue.Delete.index: _on_queue_delete,
}
