"""Direct reply-to (``amq.rabbitmq.reply-to``): RPC replies without a reply queue.

A requester consumes the pseudo-queue ``amq.rabbitmq.reply-to`` (no-ack), then
publishes requests with ``reply_to`` set to that name; the broker rewrites it to
a per-channel routing key (``amq.rabbitmq.reply-to.<token>``).  A responder
publishing to that key on the default exchange reaches the requester's consumer
directly.  The registry maps tokens to channels for the whole broker; a
channel's own side (its reply consumer and key) is a ``DirectReplies``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pamqp import commands

from ..errors import no_reply_consumer, reply_consumer_acks, reply_consumer_set
from ..wire.methods import deliver_content, shortstr
from ..wire.properties import ContentHeader
from .broker_names import generated_name
from .message import Message

if TYPE_CHECKING:
    from .writer import Writer

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


class DirectReplies:
    """One channel's consumer of the pseudo-queue, and the reply key its requests are rewritten to carry.

    Not a ``delivery.Consumer``: replies come from no queue, need no ack and use no credit,
    so they are written here, as the channel numbers them (``Channel.deliver_reply``).
    """

    __slots__ = ("_registry", "_channel", "tag", "tag_shortstr", "key")

    def __init__(self, registry: ReplyToRegistry, channel: ReplyConsumer) -> None:
        self._registry = registry
        self._channel = channel
        self.tag: str | None = None  # the reply consumer's tag, while it consumes
        self.tag_shortstr = b""  # spliced into its Basic.Deliver frames
        self.key: str | None = None  # this channel's reply routing key, while registered

    def consume(self, method: commands.Basic.Consume, tag: str) -> None:
        """``basic.consume`` of the pseudo-queue: no-ack only, one per channel (RabbitMQ's 406s otherwise)."""
        if not method.no_ack:
            raise reply_consumer_acks()
        if self.tag is not None:
            raise reply_consumer_set()
        self.key = self._registry.register(self._channel)
        self.tag, self.tag_shortstr = tag, shortstr(tag)

    def deliver(self, writer: Writer, channel_id: int, tag: int, message: Message) -> None:
        """Write a reply to the reply consumer as Basic.Deliver ``tag`` (no ack, no credit: nothing to track)."""
        writer.send_frames(
            deliver_content(
                channel_id,
                self.tag_shortstr,
                tag,
                False,
                message.exchange_shortstr,
                message.routing_key_shortstr,
                message.header,
                message.body,
                writer.frame_max,
            )
        )

    def stop(self) -> None:
        if self.key is not None:
            self._registry.unregister(self.key)
        self.key = self.tag = None

    def rewrite(self, message: Message) -> Message:
        """``reply_to=amq.rabbitmq.reply-to`` becomes this channel's reply key (406 without a reply consumer)."""
        header = ContentHeader(message.header)
        if header.shortstr("reply_to") != PSEUDO_QUEUE:
            return message
        if self.key is None:
            raise no_reply_consumer()
        header.set_shortstr("reply_to", self.key)
        copy = Message(message.exchange, message.routing_key, header.encode(), message.body, message.persistent)
        copy.extra_routing_keys = message.extra_routing_keys
        return copy
