"""Direct reply-to (``amq.rabbitmq.reply-to``): RPC replies without a reply queue.

A requester consumes the pseudo-queue ``amq.rabbitmq.reply-to`` (no-ack), then
publishes requests with ``reply_to`` set to that name; the broker rewrites it to
a per-channel routing key (``amq.rabbitmq.reply-to.<token>``).  A responder
publishing to that key on the default exchange reaches the requester's consumer
directly.  The registry maps tokens to channels for the whole broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .broker_names import generated_name

if TYPE_CHECKING:
    from .message import Message

PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
KEY_PREFIX = PSEUDO_QUEUE + "."


class ReplyConsumer(Protocol):
    """A channel with a reply consumer: replies published to its key go straight to it."""

    def deliver_reply(self, message: Message) -> None: ...


class ReplyToRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, ReplyConsumer] = {}

    def register(self, channel: ReplyConsumer) -> str:
        """A new reply key for ``channel``'s reply consumer."""
        key = generated_name(KEY_PREFIX)
        self._channels[key] = channel
        return key

    def unregister(self, key: str) -> None:
        self._channels.pop(key, None)

    def lookup(self, routing_key: str) -> ReplyConsumer | None:
        return self._channels.get(routing_key)
