"""What the connection handshake announces and checks: connection.start's properties, the client's
credentials in start-ok, and the limits tune-ok may ask for.

Pure functions over the methods, so that ``Connection`` keeps only the state
machine (which method is allowed when, and what each one changes).
"""

from __future__ import annotations

import platform

from pamqp import commands
from pamqp.common import FieldTable

from .. import __version__
from ..errors import (
    channel_max_too_high,
    frame_max_too_high,
    frame_max_too_low,
    invalid_auth_response,
    unknown_mechanism,
)
from ..wire.framing import FRAME_MIN_SIZE
from .auth import parse_credentials

# What we advertise in connection.start; only what works (see README's compatibility notes).
CAPABILITIES: FieldTable = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


def start_method() -> commands.Connection.Start:
    """connection.start: RabbitMQ's version and locale, the mechanisms we take, who we are."""
    server_properties: FieldTable = {
        "capabilities": CAPABILITIES,
        "cluster_name": "amqp-server",
        "copyright": "amqp-server contributors",
        "information": "A RabbitMQ-compatible AMQP 0-9-1 broker in Python",
        "platform": f"Python {platform.python_version()}",
        "product": "amqp-server",
        "version": __version__,
    }
    return commands.Connection.Start(
        version_major=0,
        version_minor=9,
        server_properties=server_properties,
        mechanisms="PLAIN AMQPLAIN",
        locales="en_US",
    )


def credentials(method: commands.Connection.StartOk) -> tuple[str, str]:
    """(username, password) of start-ok; RabbitMQ's errors for an unknown mechanism or an unreadable response."""
    found = parse_credentials(method.mechanism, method.response)
    if found is None:
        raise (
            unknown_mechanism(method.mechanism)
            if method.mechanism not in ("PLAIN", "AMQPLAIN")
            else invalid_auth_response()
        )
    return found


def check_tune(method: commands.Connection.TuneOk, frame_max: int, channel_max: int) -> None:
    """tune-ok may lower what we proposed, not raise it (as RabbitMQ: 0, "no limit", exceeds a limit too)."""
    if method.frame_max < FRAME_MIN_SIZE:
        raise frame_max_too_low(method.frame_max, FRAME_MIN_SIZE)
    if method.frame_max > frame_max:
        raise frame_max_too_high(method.frame_max, frame_max)
    if not 0 < method.channel_max <= channel_max:
        raise channel_max_too_high(method.channel_max, channel_max)
