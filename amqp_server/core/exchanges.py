"""Exchanges: each type is a small class behind one interface, ``route``.

Bindings are kept once, in the base class, keyed by (queue, routing key,
arguments) as RabbitMQ does; each type derives the index it routes with:
direct a dict from routing key to queues, fanout a precomputed tuple, topic a
per-routing-key cache over a linear-time matcher, headers a scan that decodes
the message's headers once.  The default exchange has no bindings of its own:
every queue is implicitly bound to it by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from ..errors import SYNTAX_ERROR, AMQPConnectionError
from ..wire.content import decode_properties

from storage.api import BindingRecord, ExchangeRecord

if TYPE_CHECKING:
    from .message import Message
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

    def route(self, message: "Message") -> Iterable["Queue"]:
        """The queues ``message`` goes to (each once)."""
        raise NotImplementedError

    def _bound_queues(self) -> tuple["Queue", ...]:
        return tuple({queue.name: queue for queue, _, _ in self.bindings.values()}.values())

    def _reindex(self, routing_key: str) -> None:
        """Bindings under ``routing_key`` changed; types with an index rebuild that part."""


class DirectExchange(Exchange):
    """Routes to queues bound with exactly the message's routing key: one dict lookup."""

    type_name = "direct"
    __slots__ = ("_routes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: dict[str, tuple["Queue", ...]] = {}

    def route(self, message: "Message") -> Iterable["Queue"]:
        return self._routes.get(message.routing_key, ())

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

    def route(self, message: "Message") -> Iterable["Queue"]:
        queue = self.vhost.queues.get(message.routing_key)
        return (queue,) if queue is not None else ()


class FanoutExchange(Exchange):
    """Routes to every bound queue, ignoring the routing key."""

    type_name = "fanout"
    __slots__ = ("_queues",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queues: tuple["Queue", ...] = ()

    def route(self, message: "Message") -> Iterable["Queue"]:
        return self._queues

    def _reindex(self, routing_key: str) -> None:
        self._queues = self._bound_queues()


class TopicExchange(Exchange):
    """Routes by dot-separated patterns (``*`` one word, ``#`` zero or more), cached per routing key."""

    type_name = "topic"
    __slots__ = ("_cache",)
    CACHE_LIMIT = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[str, tuple["Queue", ...]] = {}

    def route(self, message: "Message") -> Iterable["Queue"]:
        routing_key = message.routing_key
        queues = self._cache.get(routing_key)
        if queues is None:
            words = _words(routing_key)
            queues = tuple({queue.name: queue for queue, pattern, _ in self.bindings.values()
                            if topic_matches(_words(pattern), words)}.values())
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[routing_key] = queues
        return queues

    def _reindex(self, routing_key: str) -> None:
        self._cache.clear()


def _words(key: str) -> list[str]:
    return key.split(".") if key else []


def topic_matches(pattern: list[str], words: list[str]) -> bool:
    """Whether a topic binding pattern matches a routing key, in O(len(pattern) × len(words)).

    Tracks the set of pattern positions reachable after each word, so patterns
    like ``#.#.#.#`` cannot blow up the way naive backtracking does.
    """
    def closure(states: set[int]) -> set[int]:
        result = set(states)
        for i in sorted(states):
            while i < len(pattern) and pattern[i] == "#":
                i += 1
                result.add(i)
        return result

    states = closure({0})
    for word in words:
        following = set()
        for i in states:
            if i < len(pattern):
                token = pattern[i]
                if token == "#":
                    following.add(i)
                elif token == "*" or token == word:
                    following.add(i + 1)
        if not following:
            return False
        states = closure(following)
    return len(pattern) in states


class HeadersExchange(Exchange):
    """Routes by message headers against binding arguments (``x-match`` all / any / all-with-x / any-with-x)."""

    type_name = "headers"
    __slots__ = ()

    def route(self, message: "Message") -> Iterable["Queue"]:
        if not self.bindings:
            return ()
        try:
            headers = decode_properties(message.header).headers or {}
        except Exception:  # pamqp raises ValueError, struct.error, IndexError … on malformed tables
            raise AMQPConnectionError(SYNTAX_ERROR, "malformed content header properties", 60, 40) from None
        return tuple({queue.name: queue for queue, _, arguments in self.bindings.values()
                      if headers_match(arguments, headers)}.values())


def headers_match(arguments: dict[str, Any], headers: dict[str, Any]) -> bool:
    """RabbitMQ's headers matching; a binding value of void only asks for the header to be present."""
    x_match = arguments.get("x-match", "all")
    with_x = x_match in ("all-with-x", "any-with-x")
    wanted = [(key, value) for key, value in arguments.items()
              if key != "x-match" and (with_x or not key.startswith("x-"))]

    def matches(key: str, value: Any) -> bool:
        return key in headers and (value is None or headers[key] == value)

    if x_match in ("any", "any-with-x"):
        return any(matches(key, value) for key, value in wanted)
    return all(matches(key, value) for key, value in wanted)


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}
