"""Queue arguments (``x-…``): validated once at declaration into a ``QueueOptions``.

RabbitMQ refuses an invalid argument with 406 "invalid arg 'x-…' for queue …";
unknown ``x-`` arguments are accepted and ignored, as there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PRECONDITION_FAILED, ChannelError, vhost_resource

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


def parse_queue_arguments(arguments: dict[str, Any], name: str, vhost: str, durable: bool,
                          exclusive: bool) -> QueueOptions:
    """Validate ``arguments`` as RabbitMQ does and return the options they set."""
    def invalid(arg: str, reason: str) -> ChannelError:
        return ChannelError(PRECONDITION_FAILED, f"invalid arg '{arg}' for {vhost_resource('queue', name, vhost)}: "
                                                 f"{reason}")

    def integer(arg: str, minimum: int) -> int | None:
        value = arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(arg, f'"expected integer, got {_type_name(value)}"')
        if value < minimum:
            raise invalid(arg, f"{{value_negative,{value}}}" if value < 0 else f"{{value_zero,{value}}}")
        return value

    def string(arg: str) -> str | None:
        value = arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            raise invalid(arg, f'"expected string, got {_type_name(value)}"')
        return value

    overflow = string("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_MODES:
        raise invalid("x-overflow", f"{{unknown_overflow_type,<<\"{overflow}\">>}}")
    queue_type = string("x-queue-type") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise invalid("x-queue-type", f"\"unsupported queue type '{queue_type}'\"")
    if queue_type == "quorum" and (not durable or exclusive):
        prop = "non-durable" if not durable else "exclusive"
        raise ChannelError(PRECONDITION_FAILED, f"invalid property '{prop}' for "
                                                f"{vhost_resource('queue', name, vhost)}")
    max_priority = integer("x-max-priority", 0)
    sac = arguments.get("x-single-active-consumer", False)
    if not isinstance(sac, bool):
        raise invalid("x-single-active-consumer", f'"expected bool, got {_type_name(sac)}"')
    return QueueOptions(
        message_ttl=integer("x-message-ttl", 0),
        expires=integer("x-expires", 1),
        dead_letter_exchange=string("x-dead-letter-exchange"),
        dead_letter_routing_key=string("x-dead-letter-routing-key"),
        max_length=integer("x-max-length", 0),
        max_length_bytes=integer("x-max-length-bytes", 0),
        overflow=overflow,
        max_priority=min(max_priority, 255) if max_priority is not None else None,
        single_active_consumer=sac,
        queue_type=queue_type,
        delivery_limit=integer("x-delivery-limit", 0) if queue_type == "quorum" else None,
    )


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (str, bytes)):
        return "longstr"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
