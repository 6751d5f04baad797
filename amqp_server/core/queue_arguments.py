"""Queue arguments (``x-…``): validated once at declaration into a ``QueueOptions``.

RabbitMQ refuses an invalid argument with 406 "invalid arg 'x-…' for queue …";
unknown ``x-`` arguments are accepted and ignored, as there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import (
    ChannelError,
    arg_unsupported_by_type,
    expected_integer,
    invalid_arg,
    invalid_arg_type,
    invalid_property,
    table_type,
)

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum")


@dataclass(frozen=True)
class QueueOptions:
    message_ttl: int | None = None  # ms
    expires: int | None = None  # ms
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    max_priority: int | None = None
    single_active_consumer: bool = False
    queue_type: str = "classic"
    delivery_limit: int | None = None


MAX_TIMER = 2**32 - 1  # ms: RabbitMQ's limit for x-message-ttl and x-expires
MAX_PRIORITY = 255
# Arguments a queue type refuses (RabbitMQ 3.10): "invalid arg … of queue type rabbit_…_queue".
UNSUPPORTED = {
    "classic": ("x-delivery-limit", "x-quorum-initial-group-size", "x-dead-letter-strategy"),
    "quorum": ("x-max-priority", "x-queue-mode", "x-queue-master-locator", "x-queue-version"),
}


def parse_queue_arguments(
    arguments: dict[str, Any], name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool = False
) -> QueueOptions:
    """Validate ``arguments`` as RabbitMQ does and return the options they set."""

    def invalid(arg: str, reason: str) -> ChannelError:
        return invalid_arg(arg, "queue", name, vhost, reason)

    def integer(arg: str, minimum: int, maximum: int | None = None, too_large: str = "value_too_large") -> int | None:
        value = arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(arg, expected_integer(value))
        if value < minimum:
            raise invalid(arg, f"{{value_negative,{value}}}" if value < 0 else f"{{value_zero,{value}}}")
        if maximum is not None and value > maximum:
            raise invalid(arg, f"{{{too_large},{value}}}")
        return value

    def string(arg: str, wrong_type: str = "unacceptable") -> str | None:
        value = arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            if wrong_type == "dead_letter":
                raise invalid_arg_type(arg, name, vhost, value)
            raise invalid(arg, f"{{unacceptable_type,{table_type(value)}}}")
        return value

    queue_type = string("x-queue-type") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise invalid("x-queue-type", f"\"unsupported queue type '{queue_type}'\"")
    if queue_type == "quorum":
        for prop, refused in (
            ("non-durable", not durable),
            ("exclusive-owner", exclusive),
            ("auto-delete", auto_delete),
        ):
            if refused:
                raise invalid_property(prop, name, vhost)
    for arg in UNSUPPORTED[queue_type]:
        if arg in arguments:
            raise arg_unsupported_by_type(arg, name, vhost, queue_type)
    overflow = string("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_MODES:
        raise invalid("x-overflow", "invalid_overflow")
    sac = arguments.get("x-single-active-consumer", False)
    if not isinstance(sac, bool):
        raise invalid("x-single-active-consumer", f"{{unacceptable_type,{table_type(sac)}}}")
    dead_letter_exchange = string("x-dead-letter-exchange", "dead_letter")
    dead_letter_routing_key = string("x-dead-letter-routing-key", "dead_letter")
    if dead_letter_routing_key is not None and dead_letter_exchange is None:
        raise invalid("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined")
    return QueueOptions(
        message_ttl=integer("x-message-ttl", 0, MAX_TIMER),
        expires=integer("x-expires", 1, MAX_TIMER),
        dead_letter_exchange=dead_letter_exchange,
        dead_letter_routing_key=dead_letter_routing_key,
        max_length=integer("x-max-length", 0),
        max_length_bytes=integer("x-max-length-bytes", 0),
        overflow=overflow,
        max_priority=integer("x-max-priority", 0, MAX_PRIORITY, "max_value_exceeded"),
        single_active_consumer=sac,
        queue_type=queue_type,
        delivery_limit=integer("x-delivery-limit", 0) if queue_type == "quorum" else None,
    )
