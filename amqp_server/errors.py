"""One error hierarchy for the whole broker, and RabbitMQ's reply texts in one place.

Handlers raise; exactly one boundary (``core.connection.Connection``) turns a
``ChannelError`` into ``channel.close`` and an ``AMQPConnectionError`` into
``connection.close``.  Reply texts follow RabbitMQ 3.x verbatim ("NOT_FOUND - no
queue 'x' in vhost '/'"), because client code and people grep for them.
"""

from __future__ import annotations

REPLY_NAMES = {
    200: "REPLY_SUCCESS",
    311: "CONTENT_TOO_LARGE",
    312: "NO_ROUTE",
    313: "NO_CONSUMERS",
    320: "CONNECTION_FORCED",
    402: "INVALID_PATH",
    403: "ACCESS_REFUSED",
    404: "NOT_FOUND",
    405: "RESOURCE_LOCKED",
    406: "PRECONDITION_FAILED",
    501: "FRAME_ERROR",
    502: "SYNTAX_ERROR",
    503: "COMMAND_INVALID",
    504: "CHANNEL_ERROR",
    505: "UNEXPECTED_FRAME",
    506: "RESOURCE_ERROR",
    530: "NOT_ALLOWED",
    540: "NOT_IMPLEMENTED",
    541: "INTERNAL_ERROR",
}

CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541


class AMQPError(Exception):
    """An error the protocol reports to the peer, with the method that caused it."""

    def __init__(self, reply_code: int, detail: str, class_id: int = 0, method_id: int = 0) -> None:
        self.reply_code = reply_code
        self.reply_text = f"{REPLY_NAMES[reply_code]} - {detail}"
        self.class_id = class_id
        self.method_id = method_id
        super().__init__(self.reply_text)

    def for_method(self, class_id: int, method_id: int) -> "AMQPError":
        """Attach the offending method unless a handler already named one."""
        if not self.class_id:
            self.class_id, self.method_id = class_id, method_id
        return self


class ChannelError(AMQPError):
    """A soft error: the broker closes only the channel (``channel.close``)."""


class AMQPConnectionError(AMQPError):
    """A hard error: the broker closes the whole connection (``connection.close``)."""


def undecodable_content() -> AMQPConnectionError:
    """What RabbitMQ 3.10 sends for a publish whose content properties it cannot decode (its channel
    process crashes): 541 with the bare name as text and no method — probed: 541 'INTERNAL_ERROR' 0 0."""
    error = AMQPConnectionError(INTERNAL_ERROR, "")
    error.reply_text = REPLY_NAMES[INTERNAL_ERROR]
    error.args = (error.reply_text,)
    return error


def vhost_resource(kind: str, name: str, vhost: str) -> str:
    """RabbitMQ's way of naming a resource in reply texts: ``queue 'q' in vhost '/'``."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def not_found(kind: str, name: str, vhost: str) -> ChannelError:
    return ChannelError(NOT_FOUND, f"no {vhost_resource(kind, name, vhost)}")


def inequivalent_arg(arg: str, kind: str, name: str, vhost: str, received: object, current: object) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"inequivalent arg '{arg}' for {vhost_resource(kind, name, vhost)}: "
        f"received {_show(received)} but current is {_show(current)}",
    )


def inequivalent_table_arg(arg: str, kind: str, name: str, vhost: str, received: object,
                           current: object) -> ChannelError:
    """406 for an ``x-`` argument that differs; RabbitMQ names the table type when one side is absent."""
    def show(value: object) -> str:
        return "none" if value is None else f"the value '{value}' of type '{table_type(value)}'"

    if received is not None and current is not None:
        detail = f"received '{received}' but current is '{current}'"
    else:
        detail = f"received {show(received)} but current is {show(current)}"
    return ChannelError(PRECONDITION_FAILED,
                        f"inequivalent arg '{arg}' for {vhost_resource(kind, name, vhost)}: {detail}")


def table_type(value: object) -> str:
    """The field-table type name RabbitMQ would report for a decoded value.

    The wire type is not kept after decoding; integers are named as pika and
    py-amqp encode them (``signedint`` when they fit 32 bits, else ``long``).
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -2**31 <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "void"
    return "longstr"


def resource_locked(name: str, vhost: str) -> ChannelError:
    return ChannelError(
        RESOURCE_LOCKED,
        f"cannot obtain exclusive access to locked {vhost_resource('queue', name, vhost)}. "
        "It could be originally declared on another connection or the exclusive property "
        "value does not match that of the original declaration.",
    )


def reserved_name(kind: str, name: str) -> ChannelError:
    return ChannelError(ACCESS_REFUSED, f"{kind} name '{name}' contains reserved prefix 'amq.*'")


def default_exchange_refused() -> ChannelError:
    return ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")


def erlang_binary(data: bytes) -> str:
    """Render bytes as RabbitMQ's reply texts do (Erlang binary syntax): ``<<"abc">>`` or ``<<0,20,0,10>>``."""
    if data and all(32 <= byte < 127 and byte not in (34, 92) for byte in data):
        return f'<<"{data.decode()}">>'
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def _show(value: object) -> str:
    """Render a value the way RabbitMQ's reply texts do (booleans as 'true', others quoted)."""
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if value is None:
        return "none"
    return f"'{value}'"
