"""Exchanges: each type is a small class behind one interface, ``route``.

Bindings are kept once, in the base class, keyed by (queue, routing key,
arguments) as RabbitMQ does; each type derives the index it routes with
(direct: a dict from routing key to queues).  The default exchange has no
bindings of its own: every queue is implicitly bound to it by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from storage.api import BindingRecord, ExchangeRecord

if TYPE_CHECKING:
    from .queue import Queue
    from .vhost import VirtualHost

BindingKey = tuple[str, str, str]  # (queue name, routing key, repr of arguments)


def binding_key(queue: "Queue", routing_key: str, arguments: dict[str, Any]) -> BindingKey:
    return (queue.name, routing_key, repr(sorted(arguments.items())))


class Exchange:
    type_name: ClassVar[str] = ""
    __slots__ = ("vhost", "name", "durable", "auto_delete", "internal", "arguments", "bindings")

    def __init__(self, vhost: "VirtualHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict[str, Any] | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.bindings: dict[BindingKey, tuple["Queue", str, dict[str, Any]]] = {}

    def record(self) -> ExchangeRecord:
        return ExchangeRecord(self.vhost.name, self.name, self.type_name, self.durable, self.auto_delete,
                              self.internal, dict(self.arguments))

    def binding_record(self, queue: "Queue", routing_key: str, arguments: dict[str, Any]) -> BindingRecord:
        return BindingRecord(self.vhost.name, self.name, queue.name, routing_key, dict(arguments))

    def bind(self, queue: "Queue", routing_key: str, arguments: dict[str, Any]) -> bool:
        """Add a binding; False when it already existed."""
        key = binding_key(queue, routing_key, arguments)
        if key in self.bindings:
            return False
        self.bindings[key] = (queue, routing_key, arguments)
        self._reindex(routing_key)
        return True

    def unbind(self, queue: "Queue", routing_key: str, arguments: dict[str, Any]) -> bool:
        """Remove a binding; False when there was none."""
        if self.bindings.pop(binding_key(queue, routing_key, arguments), None) is None:
            return False
        self._reindex(routing_key)
        return True

    def route(self, routing_key: str) -> Iterable["Queue"]:
        """The queues a message with this routing key goes to (each once)."""
        raise NotImplementedError

    def _reindex(self, routing_key: str) -> None:
        """Bindings under ``routing_key`` changed; types with an index rebuild that part."""


class DirectExchange(Exchange):
    """Routes to queues bound with exactly the message's routing key: one dict lookup."""

    type_name = "direct"
    __slots__ = ("_routes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: dict[str, tuple["Queue", ...]] = {}

    def route(self, routing_key: str) -> Iterable["Queue"]:
        return self._routes.get(routing_key, ())

    def _reindex(self, routing_key: str) -> None:
        queues = {queue.name: queue for queue, key, _ in self.bindings.values() if key == routing_key}
        if queues:
            self._routes[routing_key] = tuple(queues.values())
        else:
            self._routes.pop(routing_key, None)


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is bound to by its own name."""

    type_name = "direct"
    __slots__ = ()

    def route(self, routing_key: str) -> Iterable["Queue"]:
        queue = self.vhost.queues.get(routing_key)
        return (queue,) if queue is not None else ()


EXCHANGE_TYPES: dict[str, type[Exchange]] = {"direct": DirectExchange}
