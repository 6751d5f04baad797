"""Direct reply-to (``amq.rabbitmq.reply-to``): RPC replies without a reply queue.

A requester consumes the pseudo-queue ``amq.rabbitmq.reply-to`` (no-ack), then
publishes requests with ``reply_to`` set to that name; the broker rewrites it to
a per-channel routing key (``amq.rabbitmq.reply-to.<token>``).  A responder
publishing to that key on the default exchange reaches the requester's consumer
directly.  The registry maps tokens to channels for the whole broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker_names import generated_name

if TYPE_CHECKING:
    from .channel import Channel

PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
KEY_PREFIX = PSEUDO_QUEUE + "."


class ReplyToRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, "Channel"] = {}

    def register(self, channel: "Channel") -> str:
        """A new reply key for ``channel``'s reply consumer."""
        key = generated_name(KEY_PREFIX)
        self._channels[key] = channel
        return key

    def unregister(self, key: str) -> None:
        self._channels.pop(key, None)

    def lookup(self, routing_key: str) -> "Channel | None":
        return self._channels.get(routing_key)
