"""Who holds a message on its way out: ``Consumer``, ``Unacked`` and the channel's table of unacked deliveries.

The seam between queues and channels.  A ``Queue`` sees only a ``Consumer``:
``has_credit()``, ``deliver(entry)`` and ``cancelled()``; what is behind it (a
channel writing frames) is a ``ConsumerOwner``.  A channel sees the queue only as a
``Source`` to give settled, requeued or rejected entries back to.  This module
imports neither side, so ``queue`` and ``channel`` need not import each other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import expected_integer, invalid_arg, unknown_delivery_tag
from ..wire.methods import shortstr

if TYPE_CHECKING:
    from .message import Entry

# how a delivery is settled (basic.ack; basic.nack / basic.reject with or without requeue)
ACK = "ack"
REQUEUE = "requeue"
REJECT = "reject"


class QueueCounters:
    """What a queue counts for its message_stats: plain ints, bumped where the event is handled already.

    Deliveries are counted by the queue's dispatch loops (in bulk where one consumer drains a
    backlog) into the one-element list the consumer's ``tally`` shares (``delivered`` or
    ``delivered_no_ack``, by its ack mode): no branch or lookup per message.
    """

    __slots__ = ("publish", "get", "get_no_ack", "get_empty", "redeliver", "ack", "delivered", "delivered_no_ack")

    def __init__(self) -> None:
        self.publish = self.get = self.get_no_ack = self.get_empty = self.redeliver = self.ack = 0
        self.delivered = [0]  # basic.deliver to consumers with ack
        self.delivered_no_ack = [0]  # and to no-ack consumers


class ConsumerOwner(Protocol):
    """The channel side of a consumer: writes its deliveries, says whether it may take more, hears cancels."""

    def deliver(self, consumer: Consumer, entry: Entry) -> None: ...

    def can_deliver(self, consumer: Consumer) -> bool: ...

    def cancel_by_server(self, consumer: Consumer) -> None: ...


class Source(Protocol):
    """The queue side of a delivery: where an entry goes back to once it is settled."""

    name: str
    deleted: bool
    counters: QueueCounters  # its statistics: the channel counts acks, gets and redeliveries there

    def settle(self, entries: Iterable[Entry]) -> None: ...

    def requeue(self, entries: list[Entry]) -> None: ...

    def reject(self, entries: list[Entry]) -> None: ...

    def remove_consumer(self, consumer: Consumer) -> None: ...

    def dispatch(self) -> None: ...


class Consumer:
    """One ``basic.consume`` on one channel; prefetch credit is counted here (per-consumer QoS)."""

    __slots__ = (
        "channel",
        "tag",
        "tag_shortstr",
        "queue",
        "no_ack",
        "exclusive",
        "prefetch_count",
        "unacked",
        "priority",
        "timeout",
        "deliver",
        "tally",
    )

    def __init__(
        self,
        channel: ConsumerOwner,
        tag: str,
        queue: Source,
        no_ack: bool,
        exclusive: bool,
        prefetch_count: int,
        priority: int = 0,
        timeout: int | None = None,
    ) -> None:
        self.channel = channel
        self.tag = tag
        self.tag_shortstr = shortstr(tag)  # spliced into every Basic.Deliver
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch_count = 0 if no_ack else prefetch_count
        self.unacked = 0
        self.priority = priority
        self.timeout = timeout  # ms (x-consumer-timeout on basic.consume): beats the queue's and the broker's
        # the queue's delivery count for this consumer's ack mode (a shared one-element list the queue bumps)
        counters = queue.counters if queue is not None else QueueCounters()
        self.tally = counters.delivered_no_ack if no_ack else counters.delivered
        # ``deliver(entry)``: write the delivery through the owner. A partial, not a method calling the owner:
        # one call per delivery, as when the queue called ``consumer.channel.deliver`` itself.
        self.deliver = partial(channel.deliver, self)

    def has_credit(self) -> bool:
        return (not self.prefetch_count or self.unacked < self.prefetch_count) and self.channel.can_deliver(self)

    def cancelled(self) -> None:
        """The queue went away (it has already forgotten this consumer)."""
        self.channel.cancel_by_server(self)


def consume_arguments(arguments: dict[str, Any], queue: str, vhost: str) -> tuple[int, int | None]:
    """A basic.consume's ``x-priority`` (0 when absent) and ``x-consumer-timeout`` (ms; None: the queue's).

    A wrong type is refused as RabbitMQ refuses a bad ``x-priority``: 406 "invalid arg".
    """
    priority = arguments.get("x-priority", 0)
    timeout = arguments.get("x-consumer-timeout")
    for name, value in (("x-priority", priority), ("x-consumer-timeout", timeout)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise invalid_arg(name, "queue", queue, vhost, expected_integer(value))
    if timeout is not None and timeout < 0:
        raise invalid_arg("x-consumer-timeout", "queue", queue, vhost, f"{{value_negative,{timeout}}}")
    return priority, timeout


class Unacked:
    """A delivered message awaiting ack: where it came from and which consumer holds its credit."""

    __slots__ = ("tag", "entry", "queue", "consumer")

    def __init__(self, tag: int, entry: Entry, queue: Source, consumer: Consumer | None) -> None:
        self.tag = tag
        self.entry = entry
        self.queue = queue
        self.consumer = consumer


class UnackedTable(OrderedDict[int, Unacked]):
    """A channel's deliveries awaiting ack, by delivery tag, oldest first (an OrderedDict: C-speed insert)."""

    def take(self, delivery_tag: int, multiple: bool) -> list[Unacked]:
        """Remove and return the deliveries an ack/nack/reject names (406 for an unknown tag)."""
        if multiple:
            if delivery_tag == 0:
                taken = list(self.values())
                self.clear()
                return taken
            if delivery_tag not in self:  # RabbitMQ refuses the whole ack, even if smaller tags exist
                raise unknown_delivery_tag(delivery_tag)
            taken = []
            while self:
                tag = next(iter(self))
                if tag > delivery_tag:
                    break
                taken.append(self.popitem(last=False)[1])
            return taken
        item = self.pop(delivery_tag, None)
        if item is None:
            raise unknown_delivery_tag(delivery_tag)
        return [item]
