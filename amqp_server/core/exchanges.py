"""Exchanges: each type is a small class behind one interface, ``route``.

Bindings are kept once, in the base class, keyed by (queue, routing key,
arguments) as RabbitMQ does; each type derives the index it routes with:
direct a dict from routing key to queues, fanout a precomputed tuple, topic a
bounded per-routing-key cache over a trie (``topic``), headers a scan that decodes
the message's headers once.  The default exchange has no bindings of its own:
every queue is implicitly bound to it by name.
"""

from __future__ import annotations

import datetime
import decimal
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Union

from ..errors import FRAME_ERROR, PRECONDITION_FAILED, AMQPConnectionError, ChannelError
from ..wire.content import decode_properties
from .topic import TopicTrie

from storage.api import BindingRecord, ExchangeRecord

if TYPE_CHECKING:
    from .message import Message
    from .queue import Queue
    from .vhost import VirtualHost

BindingKey = tuple[str, str, str, str]  # (destination kind, name, routing key, repr of arguments)
Destination = Union["Queue", "Exchange"]


def binding_key(destination: Destination, routing_key: str, arguments: dict[str, Any]) -> BindingKey:
    return (destination.kind, destination.name, routing_key, repr(sorted(arguments.items())))


def _distinct(destinations: Iterable[Destination]) -> tuple[Destination, ...]:
    return tuple({(d.kind, d.name): d for d in destinations}.values())


class Exchange:
    type_name: ClassVar[str] = ""
    kind: ClassVar[str] = "exchange"
    __slots__ = ("vhost", "name", "durable", "auto_delete", "internal", "arguments", "bindings")

    def __init__(self, vhost: "VirtualHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict[str, Any] | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.bindings: dict[BindingKey, tuple[Destination, str, dict[str, Any]]] = {}

    @property
    def persisted(self) -> bool:
        return self.durable

    def record(self) -> ExchangeRecord:
        return ExchangeRecord(self.vhost.name, self.name, self.type_name, self.durable, self.auto_delete,
                              self.internal, dict(self.arguments))

    @property
    def alternate_exchange(self) -> str | None:
        name = self.arguments.get("alternate-exchange")
        return name.decode() if isinstance(name, bytes) else name

    def binding_record(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> BindingRecord:
        return BindingRecord(self.vhost.name, self.name, destination.name, routing_key, dict(arguments),
                             destination.kind)

    def bind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        """Add a binding; False when it already existed."""
        key = binding_key(destination, routing_key, arguments)
        if key in self.bindings:
            return False
        self.bindings[key] = (destination, routing_key, arguments)
        self._reindex(routing_key)
        return True

    def unbind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        """Remove a binding; False when there was none."""
        if self.bindings.pop(binding_key(destination, routing_key, arguments), None) is None:
            return False
        self._reindex(routing_key)
        return True

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        """Where a message published with ``routing_key`` goes: queues and exchanges, each once."""
        raise NotImplementedError

    def check_binding(self, arguments: dict[str, Any]) -> None:
        """Refuse binding arguments this type cannot use (406); most types accept anything."""

    def _bound_destinations(self) -> tuple[Destination, ...]:
        return _distinct(destination for destination, _, _ in self.bindings.values())

    def _reindex(self, routing_key: str) -> None:
        """Bindings under ``routing_key`` changed; types with an index rebuild that part."""


class DirectExchange(Exchange):
    """Routes to queues bound with exactly the message's routing key: one dict lookup."""

    type_name = "direct"
    __slots__ = ("_routes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: dict[str, tuple[Destination, ...]] = {}

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        return self._routes.get(routing_key, ())

    def _reindex(self, routing_key: str) -> None:
        destinations = _distinct(d for d, key, _ in self.bindings.values() if key == routing_key)
        if destinations:
            self._routes[routing_key] = destinations
        else:
            self._routes.pop(routing_key, None)


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is bound to by its own name."""

    type_name = "direct"
    __slots__ = ()

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        queue = self.vhost.queues.get(routing_key)
        return (queue,) if queue is not None else ()


class FanoutExchange(Exchange):
    """Routes to every bound queue, ignoring the routing key."""

    type_name = "fanout"
    __slots__ = ("_destinations",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._destinations: tuple[Destination, ...] = ()

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        return self._destinations

    def _reindex(self, routing_key: str) -> None:
        self._destinations = self._bound_destinations()


class TopicExchange(Exchange):
    """Routes by dot-separated patterns (``*`` one word, ``#`` zero or more) through a trie, cached per key.

    The cache is a dict emptied when full, not an LRU: a hit stays one
    ``dict.get``.  Measured per route, 20k bindings, bound 4096: a hot key 0.044 µs
    against 0.072 (OrderedDict.move_to_end) and 0.070 (functools.lru_cache); 8k
    keys in turn 0.71 against 0.65 / 0.57; 40k keys 0.98 against 1.13 / 1.03.
    A miss is a trie walk of a few µs, so a bound of a few thousand keys is enough.
    """

    type_name = "topic"
    __slots__ = ("_trie", "_cache")
    CACHE_LIMIT = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trie: TopicTrie[Destination] = TopicTrie()
        self._cache: dict[str, tuple[Destination, ...]] = {}

    def bind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        if not super().bind(destination, routing_key, arguments):
            return False
        self._trie.add(routing_key, destination)
        return True

    def unbind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        if not super().unbind(destination, routing_key, arguments):
            return False
        self._trie.remove(routing_key, destination)
        return True

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        destinations = self._cache.get(routing_key)
        if destinations is None:
            destinations = _distinct(self._trie.match(routing_key))
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[routing_key] = destinations
        return destinations

    def _reindex(self, routing_key: str) -> None:
        self._cache.clear()


class HeadersExchange(Exchange):
    """Routes by message headers against binding arguments (``x-match`` all / any / all-with-x / any-with-x)."""

    type_name = "headers"
    __slots__ = ()

    def check_binding(self, arguments: dict[str, Any]) -> None:
        x_match = arguments.get("x-match", "all")
        if isinstance(x_match, bytes):
            x_match = x_match.decode("utf-8", "replace")
        if not isinstance(x_match, str):
            kind = "signedint" if isinstance(x_match, int) and not isinstance(x_match, bool) else type(x_match).__name__
            raise ChannelError(PRECONDITION_FAILED, f"Invalid x-match field type {kind} (value {x_match}); "
                                                    "expected longstr")
        if x_match not in X_MATCH_VALUES:
            raise ChannelError(PRECONDITION_FAILED, f'Invalid x-match field value <<"{x_match}">>; expected all, '
                                                    "any, all-with-x, or any-with-x")

    def route(self, message: "Message", routing_key: str) -> Iterable[Destination]:
        if not self.bindings:
            return ()
        try:
            headers = decode_properties(message.header).headers or {}
        except Exception:  # pamqp raises ValueError, struct.error, IndexError … on malformed tables
            raise AMQPConnectionError(FRAME_ERROR, "malformed content header properties", 60, 40) from None
        return _distinct(d for d, _, arguments in self.bindings.values() if headers_match(arguments, headers))


X_MATCH_VALUES = ("all", "any", "all-with-x", "any-with-x")


def headers_match(arguments: dict[str, Any], headers: dict[str, Any]) -> bool:
    """RabbitMQ's headers matching; a binding value of void only asks for the header to be present."""
    x_match = _text(arguments.get("x-match", "all"))
    with_x = x_match in ("all-with-x", "any-with-x")
    wanted = [(key, value) for key, value in arguments.items()
              if key != "x-match" and (with_x or not key.startswith("x-"))]

    def matches(key: str, value: Any) -> bool:
        if key not in headers:
            return False
        return value is None or _erlang_value(headers[key]) == _erlang_value(value)

    if x_match in ("any", "any-with-x"):
        return any(matches(key, value) for key, value in wanted)
    return all(matches(key, value) for key, value in wanted)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


def _erlang_value(value: Any) -> Any:
    """A comparison key with RabbitMQ's (Erlang's ``==``) semantics for header values.

    Numbers compare by value across integer and float, and a timestamp is an
    integer there; booleans and decimals are not numbers; longstr and byte
    arrays are both binaries, compared byte for byte.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, decimal.Decimal):
        return ("decimal", value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}
