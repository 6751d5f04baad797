"""One virtual host: its exchanges, queues and bindings, and their life cycle.

Every change to a durable definition is written through to the store here, so
the handlers in ``declarations`` only decide *whether* a change is allowed.
``restore`` rebuilds the vhost from what the store recovered at start.
"""

from __future__ import annotations

from typing import Any

from storage.api import Recovered, Store

from .confirms import SyncBarrier
from .exchanges import EXCHANGE_TYPES, DefaultExchange, Exchange
from .message import Message
from .queue import Queue

BUILTIN_EXCHANGES = (("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                     ("amq.headers", "headers"), ("amq.match", "headers"))


class VirtualHost:
    def __init__(self, name: str, store: Store, sync_barrier: SyncBarrier | None = None) -> None:
        self.name = name
        self.store = store
        self.sync_barrier = sync_barrier or SyncBarrier()
        self.exchanges: dict[str, Exchange] = {"": DefaultExchange(self, "", durable=True)}
        self.queues: dict[str, Queue] = {}
        for exchange_name, type_name in BUILTIN_EXCHANGES:
            self.exchanges[exchange_name] = EXCHANGE_TYPES[type_name](self, exchange_name, durable=True)

    def add_exchange(self, exchange: Exchange) -> None:
        self.exchanges[exchange.name] = exchange
        if exchange.durable:
            self.store.put_exchange(exchange.record())

    def delete_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        for queue, _routing_key, _arguments in exchange.bindings.values():
            queue.bindings.discard((exchange.name, _routing_key))
        if exchange.durable:
            self.store.delete_exchange(self.name, exchange.name)

    def add_queue(self, queue: Queue) -> None:
        self.queues[queue.name] = queue
        if queue.durable:
            self.store.put_queue(queue.record())

    def delete_queue(self, queue: Queue) -> int:
        """Delete a queue: unbind it, cancel its consumers (telling them), drop its messages."""
        queue.deleted = True
        self.queues.pop(queue.name, None)
        for exchange_name, _ in list(queue.bindings):
            exchange = self.exchanges.get(exchange_name)
            if exchange is not None:
                for key in [key for key, (q, _, _) in exchange.bindings.items() if q is queue]:
                    _, routing_key, arguments = exchange.bindings[key]
                    exchange.unbind(queue, routing_key, arguments)
                self._maybe_auto_delete(exchange)
        queue.bindings.clear()
        for consumer in list(queue.consumers):
            consumer.channel.cancel_by_server(consumer)
        count = queue.message_count
        if queue.durable:
            self.store.delete_queue(self.name, queue.name)
        return count

    def bind(self, exchange: Exchange, queue: Queue, routing_key: str, arguments: dict[str, Any]) -> None:
        if exchange.bind(queue, routing_key, arguments):
            queue.bindings.add((exchange.name, routing_key))
            if exchange.durable and queue.durable:
                self.store.put_binding(exchange.binding_record(queue, routing_key, arguments))

    def unbind(self, exchange: Exchange, queue: Queue, routing_key: str, arguments: dict[str, Any]) -> None:
        if exchange.unbind(queue, routing_key, arguments):
            if not any(q is queue and key == routing_key for q, key, _ in exchange.bindings.values()):
                queue.bindings.discard((exchange.name, routing_key))
            if exchange.durable and queue.durable:
                self.store.delete_binding(exchange.binding_record(queue, routing_key, arguments))
            self._maybe_auto_delete(exchange)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        """An auto-delete exchange goes away when its last binding is removed."""
        if exchange.auto_delete and not exchange.bindings and self.exchanges.get(exchange.name) is exchange:
            self.delete_exchange(exchange)

    def restore(self, recovered: Recovered) -> None:
        """Rebuild durable definitions and persistent messages recovered from the store."""
        for record in recovered.exchanges:
            if record.vhost == self.name and record.type in EXCHANGE_TYPES:
                self.exchanges[record.name] = EXCHANGE_TYPES[record.type](
                    self, record.name, record.durable, record.auto_delete, record.internal, dict(record.arguments))
        for record in recovered.queues:
            if record.vhost == self.name:
                self.queues[record.name] = Queue(self, record.name, record.durable, record.auto_delete,
                                                 dict(record.arguments))
        for record in recovered.bindings:
            exchange = self.exchanges.get(record.source)
            queue = self.queues.get(record.destination)
            if record.vhost == self.name and exchange is not None and queue is not None:
                exchange.bind(queue, record.routing_key, dict(record.arguments))
                queue.bindings.add((exchange.name, record.routing_key))
        for (vhost, queue_name), messages in recovered.messages.items():
            queue = self.queues.get(queue_name)
            if vhost == self.name and queue is not None:
                for message_id, record in messages:
                    queue.restore(message_id, Message.from_record(record))
