"""What a channel needs of its connection, and what the queue.* / exchange.* handlers need of a channel.

Small ``typing.Protocol``s, so that ``channel`` need not import ``connection``
and ``declarations`` need not import ``channel``: the objects still call each
other, but the modules depend only on these interfaces.  What does not change
while the connection is open (who the peer is, what it understands, the
broker's reply-to registry and message size limit) a channel gets once, as its
``Session``, rather than asking the connection each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .reply_to import ReplyToRegistry
    from .vhost import VirtualHost
    from .writer import Writer


class ConfirmFlusher(Protocol):
    """A channel with publisher confirms due: the connection flushes them once its read is handled."""

    def flush_confirms(self) -> None: ...


class ConnectionPort(Protocol):
    """The connection as its channels see it: its vhost and outbox, the user's permissions, and three notices."""

    vhost: VirtualHost
    writer: Writer  # every frame for the peer goes out here (and ``writer.writable`` is its flow control)
    is_publisher: bool  # set by a channel that publishes: the resource alarms apply

    def check_access(self, action: str, kind: str, name: str, method: tuple[int, int] = (0, 0)) -> None: ...

    def check_topic_access(self, action: str, exchange: str, routing_key: str) -> None: ...

    def confirm_pending(self, channel: ConfirmFlusher) -> None: ...

    def channel_closed(self, channel_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """What every channel of an open connection shares and nothing changes: given to each channel at channel.open."""

    peer: str  # for log lines
    cancel_notify: bool  # the client understands a server-sent basic.cancel (capability consumer_cancel_notify)
    reply_to: ReplyToRegistry  # broker-wide: direct reply-to keys → channels
    max_message_size: int
    wake_timeouts: Callable[[], None]  # a delivery needing an ack may follow: run the checks (core/consumer_timeout)


class ChannelPort(Protocol):
    """A channel as the exchange.* / queue.* handlers see it."""

    connection: ConnectionPort
    channel_id: int
    last_queue_name: str  # what '' means in queue methods
    held_cancels: list[bytes] | None  # basic.cancel frames held while this channel's queue.delete runs

    def send_after_sync(self, frame: bytes, ok: bool) -> None: ...
