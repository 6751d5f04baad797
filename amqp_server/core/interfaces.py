"""What a channel needs of its connection, and what the queue.* / exchange.* handlers need of a channel.

Small ``typing.Protocol``s, so that ``channel`` need not import ``connection``
and ``declarations`` need not import ``channel``: the objects still call each
other, but the modules depend only on these interfaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pamqp.base import Frame as PamqpMethod

    from .broker import Broker
    from .vhost import VirtualHost
    from .writer import Writer


class ConnectionPort(Protocol):
    """The connection as its channels see it: where frames go, which vhost and user, the negotiated limits."""

    broker: Broker
    vhost: VirtualHost
    peer: str
    client_capabilities: dict[str, Any]
    writer: Writer  # every frame for the peer goes out here
    writable: bool  # transport flow control: no deliveries while False
    is_publisher: bool  # set by a channel that publishes: the resource alarms apply

    def send(self, data: bytes) -> None: ...

    def send_method(self, channel_id: int, method: PamqpMethod) -> None: ...

    def check_access(self, action: str, kind: str, name: str) -> None: ...

    def confirm_pending(self, channel: Any) -> None: ...

    def channel_closed(self, channel_id: int) -> None: ...


class ChannelPort(Protocol):
    """A channel as the exchange.* / queue.* handlers see it."""

    connection: ConnectionPort
    channel_id: int
    last_queue_name: str  # what '' means in queue methods
    held_cancels: list[bytes] | None  # basic.cancel frames held while this channel's queue.delete runs

    def send_after_sync(self, frame: bytes, ok: bool) -> None: ...
