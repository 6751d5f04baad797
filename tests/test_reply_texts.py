"""Reply texts live in ``amqp_server/errors.py`` only, and stay RabbitMQ's byte for byte.

The guard parses the package (``ast``, nothing imported): outside errors.py no code builds a
``ChannelError`` / ``AMQPConnectionError`` / ``AMQPError`` itself, so every raise site names its
error.  The pinned texts are the ones no other test asserts (RabbitMQ 3.x wording, copied from the
raise sites before they moved).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from amqp_server import errors
from amqp_server.errors import AMQPError

PACKAGE = Path(__file__).resolve().parent.parent / "amqp_server"
ERROR_CLASSES = {"ChannelError", "AMQPConnectionError", "AMQPError"}


def test_only_errors_module_constructs_protocol_errors() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERROR_CLASSES:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


PINNED: list[tuple[AMQPError, int, str, int, int]] = [
    (
        errors.body_too_long(10),
        501,
        "FRAME_ERROR - content body is longer than the 10 bytes its header declared",
        60,
        40,
    ),
    (errors.invalid_auth_response(), 503, "COMMAND_INVALID - invalid authentication response", 10, 11),
    (errors.unknown_mechanism("X"), 503, "COMMAND_INVALID - unknown authentication mechanism 'X'", 10, 11),
    (
        errors.invalid_frame_end(1, "<<1,2>>", 7),
        501,
        "FRAME_ERROR - type 1, all octets = <<1,2>>: {invalid_frame_end_marker,7}",
        0,
        0,
    ),
    (
        errors.frame_too_large(3, 200, 120),
        501,
        "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,200,120}",
        0,
        0,
    ),
    (
        errors.frame_max_too_low(100, 4096),
        530,
        "NOT_ALLOWED - negotiated frame_max = 100 is lower than the minimum allowed value (4096)",
        10,
        31,
    ),
    (errors.malformed_properties(), 501, "FRAME_ERROR - malformed content header properties", 60, 40),
    (errors.no_previous_queue(), 404, "NOT_FOUND - no previously declared queue", 0, 0),
    (errors.reply_consumer_set(), 406, "PRECONDITION_FAILED - reply consumer already set", 0, 0),
    (errors.heartbeat_on_channel(), 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0),
    (errors.unknown_method_frame(8, b"\x01"), 501, "FRAME_ERROR - type 8, all octets = <<1>>: unknown_frame", 0, 0),
    (errors.unimplemented_method(60, 110), 503, "COMMAND_INVALID - unimplemented method", 60, 110),
    (errors.unknown_method(60, 99), 503, "COMMAND_INVALID - unknown method class 60 method 99", 0, 0),
    (errors.definition_write_failed(), 506, "RESOURCE_ERROR - could not write the definition to disk", 0, 0),
    (errors.transaction_write_failed(), 506, "RESOURCE_ERROR - could not write the transaction to disk", 90, 20),
    (
        errors.system_exchange_deletion("amq.direct", "/"),
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        0,
        0,
    ),
    (
        errors.invalid_arg_type("x-dead-letter-exchange", "q", "/", 1),
        406,
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'",
        0,
        0,
    ),
]


@pytest.mark.parametrize(("error", "code", "text", "class_id", "method_id"), PINNED)
def test_pinned_reply_texts(error: AMQPError, code: int, text: str, class_id: int, method_id: int) -> None:
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (code, text, class_id, method_id)
