"""Delayed messages: the exchange type ``x-delayed-message`` of RabbitMQ's rabbitmq-delayed-message-exchange plugin.

An ``x-delayed-message`` exchange routes as the type its ``x-delayed-type`` argument names (direct,
fanout, topic, headers): each concrete class here is that type's class with ``DelayedExchange``'s
hold in front.  A message published with a positive ``x-delay`` header (ms, at most 2^32-1 as in
the plugin; as the plugin reads it: an integer, a string of one, or a float or decimal truncated;
anything else routes at once) is held until then and routed with the exchange's bindings *as they
are when it fires*, its ``x-delay`` turned to minus the delay (the plugin's swap: a fired message
that reaches another delayed exchange is not held again, and consumers see it was delayed).  Like
the plugin, a held message gets no ``basic.return`` (nothing is known about its route yet) and is
confirmed once held: for a persistent message on a durable exchange, once the store has it.

``HeldMessages`` keeps what one exchange holds.  Memory stays small with millions held: the bodies
of stored messages (persistent, durable exchange) stay in the store (``Store.put_delayed``) and are
read back when they fire; in memory is only a compact index, one ``array('q')`` of delayed ids per
fire millisecond plus a heap of those milliseconds (8 bytes a message, not a Python object).
Transient messages (or any on a non-durable exchange) are held in memory and die with the broker,
as the plugin's are.  One scheduler timer per exchange, for its earliest due millisecond, so the
broker's virtual clock (``core.clock``) moves delays as it moves TTLs.  The store keeps fire times
on the wall clock, so a delay counts on across a restart (what is past due fires at once).

A fired message leaves the store only after the sync that wrote it into its queues: a crash in
between delivers it again rather than losing it.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
from array import array
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from storage.api import Store

from ..errors import delayed_type_missing, delayed_type_recursive, invalid_exchange_type
from ..wire.properties import ContentHeader, decode_value
from .dead_letter import with_headers
from .exchanges import (
    EXCHANGE_TYPES,
    DirectExchange,
    Exchange,
    ExchangeHost,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
)
from .message import Message
from .sender_selected import sender_selected, with_bcc_kept

if TYPE_CHECKING:
    from .confirms import SyncBarrier
    from .exchanges import Destination
    from .flow import MemoryFlow
    from .queue import Queue
    from .scheduler import Scheduler, Timer

log = logging.getLogger("amqp_server.delayed")

DELAYED_TYPE = "x-delayed-message"
DESCRIPTION = "Delayed Message Exchange."  # the plugin's, as RabbitMQ lists it in exchange_types
MAX_DELAY = 4294967295  # ms; the plugin routes longer delays at once (Erlang's timer limit)
FIRE_BATCH = 5000  # messages fired per timer pass: the event loop serves others between batches
_X_DELAY = b"x-delay"
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def x_delay(header: bytes) -> int | None:
    """The message's delay in ms, or None to route it now (no, non-integer, non-positive or too long x-delay)."""
    if _X_DELAY not in header:  # most messages: no table decoded
        return None
    try:
        raw = ContentHeader(header).header_entries().get("x-delay")
        value = decode_value(raw) if raw is not None else None
    except (ValueError, IndexError):  # only a message stored before properties were checked at the door
        return None
    if isinstance(value, (str, bytes)):  # the plugin's binary_to_integer: digits with an optional sign
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        value = int(text) if _INTEGER_TEXT.fullmatch(text) else None
    elif isinstance(value, (float, Decimal)) and math.isfinite(value):
        value = math.trunc(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_DELAY else None


def released(message: Message, delay: int) -> Message:
    """``message`` as it leaves the hold: ``x-delay`` set to ``-delay`` (the plugin's ``swap_delay_header``), so
    no delayed exchange it reaches next holds it again."""
    return with_headers(message, {"x-delay": -delay})


def delayed_type_of(arguments: Mapping[str, Any]) -> str:
    """The routing type ``x-delayed-type`` names; raises the plugin's errors (406, or 503 for an unknown type)."""
    named = arguments.get("x-delayed-type")
    if isinstance(named, bytes):
        named = named.decode("utf-8", "replace")
    if not isinstance(named, str):
        raise delayed_type_missing()
    if named == DELAYED_TYPE:
        raise delayed_type_recursive()
    if named not in _CLASSES:
        raise invalid_exchange_type(named)  # RabbitMQ's rabbit_exchange:check_type
    return named


class DelayHost(Protocol):
    """The virtual host a delayed exchange lives in (``core.vhost.VirtualHost``): its store, clocks and routing."""

    name: str
    store: Store
    scheduler: Scheduler
    wall_clock: Callable[[], float]
    sync_barrier: SyncBarrier
    exchanges: dict[str, Exchange]
    flow: MemoryFlow  # held messages in memory count towards the memory alarm, as queued ones do

    def route(self, exchange: Exchange, message: Message) -> list[Queue]: ...


class HeldMessages:
    """The messages one delayed exchange holds: the fire-time index, the timer, and firing.

    Ticks are whole milliseconds of the scheduler's clock, rounded up, so nothing fires early.
    """

    __slots__ = (
        "_exchange",
        "_vhost",
        "_buckets",
        "_ticks",
        "_in_memory",
        "_next_id",
        "_timer",
        "count",
        "firing",
        "last",
    )

    def __init__(self, exchange: Exchange, vhost: DelayHost) -> None:
        self._exchange = exchange
        self._vhost = vhost
        self._buckets: dict[int, array[int]] = {}  # fire tick -> delayed ids, in the order they were held
        self._ticks: list[int] = []  # heap of the buckets' ticks
        self._in_memory: dict[int, Message] = {}  # held messages the store does not have
        self._next_id = 1
        self._timer: tuple[int, Timer] | None = None  # (tick, timer) of the earliest bucket
        self.count = 0  # messages held: the management API's messages_delayed
        self.firing = False  # routing a fired message: the exchange routes it, not holds it again
        self.last: Message | None = None  # the message held last (VirtualHost.route may ask twice about it)

    def hold(self, message: Message, delay_ms: int) -> bool:
        """Hold ``message`` for ``delay_ms``; True if it went to the store (confirm it after the next sync)."""
        vhost, exchange = self._vhost, self._exchange
        self.last = message
        delayed_id = self._next_id
        self._next_id += 1
        stored = message.persistent and exchange.durable
        if stored:
            fire_at = vhost.wall_clock() + delay_ms / 1000
            record = with_bcc_kept(message).to_record()  # its CC/BCC keys route it when it is read back
            vhost.store.put_delayed(vhost.name, exchange.name, delayed_id, fire_at, record)
            vhost.sync_barrier.request()
        else:
            self._in_memory[delayed_id] = message
            vhost.flow.add(_in_memory_size(message))
        self._index(math.ceil(vhost.scheduler.clock() * 1000) + delay_ms, delayed_id)
        return stored

    def restore(self, held: Iterable[tuple[int, float]]) -> None:
        """Index what the store kept (id, wall-clock fire time); what fell due while stopped fires at once."""
        vhost = self._vhost
        now_ms, wall_now = math.ceil(vhost.scheduler.clock() * 1000), vhost.wall_clock()
        for delayed_id, fire_at in held:
            self._index(now_ms + max(0, math.ceil((fire_at - wall_now) * 1000)), delayed_id)
            self._next_id = max(self._next_id, delayed_id + 1)

    def _index(self, tick: int, delayed_id: int) -> None:
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = array("q")
            heapq.heappush(self._ticks, tick)
            if self._timer is None or tick < self._timer[0]:
                self._arm(tick)
        bucket.append(delayed_id)
        self.count += 1

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer[1].cancel()
        self._timer = (tick, self._vhost.scheduler.call_at(tick / 1000, self._fire))

    def _fire(self, now: float) -> None:
        """Route every message due at ``now`` (up to ``FIRE_BATCH``; the rest at the next pass)."""
        self._timer = None
        limit, budget = now * 1000 + 1e-6, FIRE_BATCH  # the epsilon: tick / 1000 * 1000 may round below tick
        fired: list[int] = []  # of stored ones
        ticks = self._ticks
        self.firing = True
        try:
            while ticks and ticks[0] <= limit and budget > 0:
                bucket = self._buckets.pop(heapq.heappop(ticks))
                budget -= len(bucket)
                for delayed_id in bucket:
                    try:
                        self._fire_one(delayed_id, fired)
                    except Exception:  # one unreadable record must not take the others of its millisecond along
                        log.exception(
                            "delayed message %d of exchange '%s' could not fire", delayed_id, self._exchange.name
                        )
        finally:
            self.firing = False
        if ticks:
            self._arm(ticks[0])  # maybe already due: the scheduler runs it at its next pass, not in this one
        if fired:
            self._forget_after_sync(fired)

    def _fire_one(self, delayed_id: int, fired: list[int]) -> None:
        vhost, exchange = self._vhost, self._exchange
        self.count -= 1
        message = self._in_memory.pop(delayed_id, None)
        if message is not None:
            vhost.flow.remove(_in_memory_size(message))
        else:
            message = Message.from_record(vhost.store.read_delayed(vhost.name, exchange.name, delayed_id))
            if b"CC" in message.header:  # also matches BCC (kept in the stored header: see ``hold``)
                message = sender_selected(message)
            fired.append(delayed_id)
        delay = x_delay(message.header)
        if delay is not None:
            message = released(message, delay)
        queues = vhost.route(exchange, message)
        exchange.stat_publish_in -= 1  # counted when it was published, not again now
        for queue in queues:
            queue.publish(message)

    def _forget_after_sync(self, fired: list[int]) -> None:
        """Remove fired messages from the store once a sync has written their queues' copies (a failed sync
        leaves them for the next one)."""
        barrier = self._vhost.sync_barrier

        def forget(synced: bool) -> None:
            if not synced:
                barrier.after_sync(forget)
            elif self._vhost.exchanges.get(self._exchange.name) is self._exchange:  # a deleted one's are gone
                self._vhost.store.remove_delayed(self._vhost.name, self._exchange.name, fired)
                barrier.request()

        barrier.after_sync(forget)

    def drop(self) -> None:
        """The exchange was deleted: its held messages go (the store drops its own with the exchange)."""
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None
        self._buckets.clear()
        self._ticks.clear()
        flow = self._vhost.flow
        for message in self._in_memory.values():
            flow.remove(_in_memory_size(message))
        self._in_memory.clear()
        self.count = 0
        self.last = None


def _in_memory_size(message: Message) -> int:
    """What a held message counts for in the memory alarm (``MemoryFlow``): as a queued entry's ``size``."""
    return len(message.body) + len(message.header)


class DelayedExchange(Exchange):
    """``x-delayed-message``: constructing one builds the class of its ``x-delayed-type`` (see the module doc)."""

    type_name = DELAYED_TYPE
    delays: ClassVar[bool] = True
    __slots__ = ()
    held: HeldMessages  # a slot of each concrete class (two bases with slots cannot be combined)

    def __new__(cls, vhost: ExchangeHost, name: str, *args: Any, **kwargs: Any) -> DelayedExchange:
        if cls is DelayedExchange:
            arguments = kwargs.get("arguments", args[3] if len(args) > 3 else None) or {}
            cls = _CLASSES[delayed_type_of(arguments)]
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the slot is each concrete class's (see ``held`` above): mypy cannot see it from here
        self.held = HeldMessages(self, cast("DelayHost", self.vhost))  # type: ignore[misc]

    @property
    def messages_delayed(self) -> int | None:
        return self.held.count

    def hold(self, message: Message) -> bool | None:
        """The channel's way in: hold ``message`` if it asks for a delay, returning whether it was stored (its
        confirm then waits for the sync); None when it routes now."""
        delay = x_delay(message.header)
        if delay is None or self.held.firing:
            return None
        self.stat_publish_in += 1  # a publish, though it skips VirtualHost.route (which counts the others)
        return self.held.hold(message, delay)

    def route(self, message: Message, routing_key: str) -> Iterable[Destination]:
        """Routing reached here without ``hold`` (exchange-to-exchange, dead-lettering, the HTTP API): hold now."""
        held = self.held
        if not held.firing:
            if message is held.last:  # VirtualHost.route asks again when the first answer was empty
                return ()
            delay = x_delay(message.header) if routing_key == message.routing_key else None
            if delay is not None:
                held.hold(message, delay)
                return ()
        return super().route(message, routing_key)

    def deleted(self) -> None:
        self.held.drop()


class DelayedDirect(DelayedExchange, DirectExchange):
    __slots__ = ("held",)


class DelayedFanout(DelayedExchange, FanoutExchange):
    __slots__ = ("held",)


class DelayedTopic(DelayedExchange, TopicExchange):
    __slots__ = ("held",)


class DelayedHeaders(DelayedExchange, HeadersExchange):
    __slots__ = ("held",)


_CLASSES: dict[str, type[DelayedExchange]] = {
    "direct": DelayedDirect,
    "fanout": DelayedFanout,
    "topic": DelayedTopic,
    "headers": DelayedHeaders,
}
# the exchange type registry (as the plugin registers itself with rabbit_registry at boot); ``vhost`` imports us
EXCHANGE_TYPES[DELAYED_TYPE] = DelayedExchange
