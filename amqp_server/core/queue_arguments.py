"""Queue arguments (``x-…``): validated once at declaration into a ``QueueOptions``.

RabbitMQ refuses an invalid argument with 406 "invalid arg 'x-…' for queue …";
unknown ``x-`` arguments are accepted and ignored, as there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ChannelError,
    arg_unsupported_by_type,
    argument_crash,
    expected_integer,
    invalid_arg,
    invalid_arg_type,
    invalid_property,
    table_type,
)

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum", "stream")


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
    consumer_timeout: int | None = None  # ms (x-consumer-timeout, RabbitMQ 3.12); None: the broker's
    max_age: int | None = None  # s: a stream's x-max-age ("7D" and the like, see ``age_seconds``)
    max_segment_size: int | None = None  # bytes: a stream's x-stream-max-segment-size-bytes; None: the default


MAX_TIMER = 2**32 - 1  # ms: RabbitMQ's limit for x-message-ttl and x-expires
MAX_PRIORITY = 255
# Arguments a queue type refuses (RabbitMQ 3.10): "invalid arg … of queue type rabbit_…_queue".
UNSUPPORTED = {
    "classic": ("x-delivery-limit", "x-quorum-initial-group-size", "x-dead-letter-strategy"),
    "quorum": ("x-max-priority", "x-queue-mode", "x-queue-master-locator", "x-queue-version"),
    "stream": (
        "x-max-priority",
        "x-message-ttl",
        "x-expires",
        "x-max-length",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-overflow",
        "x-single-active-consumer",
        "x-delivery-limit",
        "x-queue-mode",
        "x-queue-master-locator",
        "x-queue-version",
        "x-quorum-initial-group-size",
        "x-dead-letter-strategy",
    ),
}


class _Arguments:
    """One declaration's arguments, read with the check (and the 406 text) RabbitMQ applies to each kind."""

    def __init__(self, arguments: dict[str, Any], name: str, vhost: str) -> None:
        self.arguments = arguments
        self.name = name
        self.vhost = vhost

    def invalid(self, arg: str, reason: str) -> ChannelError:
        return invalid_arg(arg, "queue", self.name, self.vhost, reason)

    def integer(
        self, arg: str, minimum: int, maximum: int | None = None, too_large: str = "value_too_large"
    ) -> int | None:
        value = self.arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.invalid(arg, expected_integer(value))
        if value < minimum:
            raise self.invalid(arg, f"{{value_negative,{value}}}" if value < 0 else f"{{value_zero,{value}}}")
        if maximum is not None and value > maximum:
            raise self.invalid(arg, f"{{{too_large},{value}}}")
        return value

    def string(self, arg: str, wrong_type: str = "unacceptable") -> str | None:
        value = self.arguments.get(arg)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            if wrong_type == "dead_letter":
                raise invalid_arg_type(arg, self.name, self.vhost, value)
            raise self.invalid(arg, f"{{unacceptable_type,{table_type(value)}}}")
        return value


def _queue_type(args: _Arguments, durable: bool, exclusive: bool, auto_delete: bool) -> str:
    """``x-queue-type``, checked against the queue's properties and the arguments that type refuses."""
    queue_type = args.string("x-queue-type") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise args.invalid("x-queue-type", f"\"unsupported queue type '{queue_type}'\"")
    if queue_type in ("quorum", "stream"):  # both are replicated logs: durable, shared, kept
        for prop, refused in (
            ("non-durable", not durable),
            ("exclusive-owner", exclusive),
            ("auto-delete", auto_delete),
        ):
            if refused:
                raise invalid_property(prop, args.name, args.vhost)
    for arg in UNSUPPORTED[queue_type]:
        if arg in args.arguments:
            raise arg_unsupported_by_type(arg, args.name, args.vhost, queue_type)
    return queue_type


def parse_queue_arguments(
    arguments: dict[str, Any], name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool = False
) -> QueueOptions:
    """Validate ``arguments`` as RabbitMQ does (in its order: the first failing check answers) and return the
    options they set."""
    args = _Arguments(arguments, name, vhost)
    queue_type = _queue_type(args, durable, exclusive, auto_delete)
    overflow = args.string("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_MODES:
        raise args.invalid("x-overflow", "invalid_overflow")
    sac = arguments.get("x-single-active-consumer", False)
    if not isinstance(sac, bool):
        raise args.invalid("x-single-active-consumer", f"{{unacceptable_type,{table_type(sac)}}}")
    dead_letter_exchange = args.string("x-dead-letter-exchange", "dead_letter")
    dead_letter_routing_key = args.string("x-dead-letter-routing-key", "dead_letter")
    if dead_letter_routing_key is not None and dead_letter_exchange is None:
        raise args.invalid("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined")
    integer = args.integer
    if queue_type == "stream":
        return QueueOptions(
            queue_type=queue_type,
            max_length_bytes=integer("x-max-length-bytes", 0),
            max_age=max_age(args.string("x-max-age"), args.invalid),
            max_segment_size=integer("x-stream-max-segment-size-bytes", 0),
        )
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
        consumer_timeout=integer("x-consumer-timeout", 0),
    )


# RabbitMQ's units for x-max-age and x-stream-offset intervals, in seconds (rabbit_amqqueue:check_max_age)
AGE_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}
_LEADING_INTEGER = re.compile(r"[+-]?\d+")


def age_seconds(value: str) -> int | None:
    """``"7D"`` → seconds, parsed as RabbitMQ does (Erlang's string:to_integer, then the unit); None for a
    zero or an unknown unit (RabbitMQ's 406); raises RabbitMQ's bare 541 where its parser crashes (no
    leading integer, or a negative one) — probed on 3.10: "h", "" and "-1h" close the connection."""
    match = _LEADING_INTEGER.match(value)
    if match is None or int(match.group()) < 0:
        raise argument_crash()
    unit = AGE_UNITS.get(value[match.end() :])
    amount = int(match.group())
    return amount * unit if unit is not None and amount > 0 else None


def max_age(value: str | None, invalid: Callable[[str, str], ChannelError]) -> int | None:
    if value is None:
        return None
    seconds = age_seconds(value)
    if seconds is None:
        raise invalid("x-max-age", "invalid_max_age")
    return seconds
