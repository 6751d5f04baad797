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

    def for_method(self, class_id: int, method_id: int) -> AMQPError:
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


def inequivalent_table_arg(
    arg: str, kind: str, name: str, vhost: str, received: object, current: object
) -> ChannelError:
    """406 for an ``x-`` argument that differs; RabbitMQ names the table type when one side is absent."""

    def show(value: object) -> str:
        return "none" if value is None else f"the value '{value}' of type '{table_type(value)}'"

    if received is not None and current is not None:
        detail = f"received '{received}' but current is '{current}'"
    else:
        detail = f"received {show(received)} but current is {show(current)}"
    return ChannelError(
        PRECONDITION_FAILED, f"inequivalent arg '{arg}' for {vhost_resource(kind, name, vhost)}: {detail}"
    )


def table_type(value: object) -> str:
    """The field-table type name RabbitMQ would report for a decoded value.

    The wire type is not kept after decoding; integers are named as pika and
    py-amqp encode them (``signedint`` when they fit 32 bits, else ``long``).
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
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


# ---------------------------------------------------------------- framing (wire/framing.py, wire/methods.py)
# RabbitMQ reports a bad frame with the frame type and its octets in Erlang syntax.


def unknown_frame_type(frame_type: int) -> AMQPConnectionError:
    return AMQPConnectionError(FRAME_ERROR, f"type {frame_type}, all octets = <<>>: unknown_frame")


def frame_too_large(frame_type: int, size: int, max_size: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        FRAME_ERROR, f"type {frame_type}, all octets = <<>>: {{frame_too_large,{size},{max_size}}}"
    )


def invalid_frame_end(frame_type: int, octets: str, marker: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        FRAME_ERROR, f"type {frame_type}, all octets = {octets}: {{invalid_frame_end_marker,{marker}}}"
    )


def unknown_method_frame(frame_type: int, payload: bytes) -> AMQPConnectionError:
    """A method (1) or heartbeat (8) frame too short or malformed to decode at all."""
    return AMQPConnectionError(FRAME_ERROR, f"type {frame_type}, all octets = {erlang_binary(payload)}: unknown_frame")


def unknown_method(class_id: int, method_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(COMMAND_INVALID, f"unknown method class {class_id} method {method_id}")


def undecodable_arguments(arguments: bytes, class_id: int, method_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(FRAME_ERROR, f"cannot decode {erlang_binary(arguments)}", class_id, method_id)


def heartbeat_on_channel() -> AMQPConnectionError:
    return AMQPConnectionError(UNEXPECTED_FRAME, "type 8, all octets = <<>>")


def expected_method_frame() -> AMQPConnectionError:
    return AMQPConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")


def frame_before_open(frame_type: int, payload: bytes) -> AMQPConnectionError:
    return AMQPConnectionError(UNEXPECTED_FRAME, f"type {frame_type}, all octets = {erlang_binary(payload)}")


# ---------------------------------------------------------------- content (wire/assembler.py, publish)
# Content frames belong to basic.publish (60, 40).


def expected_content_header() -> AMQPConnectionError:
    return AMQPConnectionError(
        UNEXPECTED_FRAME, "expected content header for class 60, got non content header frame instead", 60, 40
    )


def content_header_class(class_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        UNEXPECTED_FRAME, f"expected content header for class 60, got one for class {class_id} instead", 60, 40
    )


def bad_content_header(detail: str) -> AMQPConnectionError:
    """``detail`` is the decoder's own text (``wire.content.ContentHeaderError``)."""
    return AMQPConnectionError(FRAME_ERROR, detail, 60, 40)


def message_too_large(size: int, max_size: int) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"message size {size} is larger than configured max size {max_size}", 60, 40
    )


def body_too_long(body_size: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        FRAME_ERROR, f"content body is longer than the {body_size} bytes its header declared", 60, 40
    )


def expected_content_body() -> AMQPConnectionError:
    return AMQPConnectionError(UNEXPECTED_FRAME, "expected content body, got non content body frame instead", 60, 40)


def malformed_properties() -> AMQPConnectionError:
    return AMQPConnectionError(FRAME_ERROR, "malformed content header properties", 60, 40)


def invalid_expiration(detail: str) -> ChannelError:
    """``detail`` is ``core.message.InvalidExpiration``'s text ("invalid expiration '…': …")."""
    return ChannelError(PRECONDITION_FAILED, detail, 60, 40)


def cc_not_array(header: str, type_name: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f'invalid message: {{unacceptable_type_in_header,"{header}",{type_name}}}', 60, 40
    )


def internal_exchange(name: str, vhost: str) -> ChannelError:
    return ChannelError(ACCESS_REFUSED, f"cannot publish to internal {vhost_resource('exchange', name, vhost)}", 60, 40)


def immediate_unsupported() -> AMQPConnectionError:
    return AMQPConnectionError(NOT_IMPLEMENTED, "immediate=true", 60, 40)


def delivery_ack_timeout(channel_id: int, timeout_ms: int) -> ChannelError:
    """A delivery was not acknowledged within the consumer timeout (RabbitMQ 3.10's text)."""
    return ChannelError(
        PRECONDITION_FAILED,
        f"delivery acknowledgement on channel {channel_id} timed out. Timeout value used: {timeout_ms} ms. "
        "This timeout value can be configured, see consumers doc guide to learn more",
    )


def no_reply_consumer() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist", 60, 40)


# ---------------------------------------------------------------- connection handshake and limits


def node_connection_limit(limit: int) -> AMQPConnectionError:
    return AMQPConnectionError(NOT_ALLOWED, f"connection refused: node connection limit ({limit}) is reached", 10, 40)


def unknown_mechanism(mechanism: str) -> AMQPConnectionError:
    return AMQPConnectionError(COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'", 10, 11)


def invalid_auth_response() -> AMQPConnectionError:
    return AMQPConnectionError(COMMAND_INVALID, "invalid authentication response", 10, 11)


def login_refused(mechanism: str) -> AMQPConnectionError:
    return AMQPConnectionError(
        ACCESS_REFUSED,
        f"Login was refused using authentication mechanism {mechanism}. For details see the broker logfile.",
    )


def frame_max_too_low(frame_max: int, minimum: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        NOT_ALLOWED, f"negotiated frame_max = {frame_max} is lower than the minimum allowed value ({minimum})", 10, 31
    )


def frame_max_too_high(frame_max: int, maximum: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        NOT_ALLOWED, f"negotiated frame_max = {frame_max} is higher than the maximum allowed value ({maximum})", 10, 31
    )


def channel_max_too_high(channel_max: int, maximum: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        NOT_ALLOWED,
        f"negotiated channel_max = {channel_max} is higher than the maximum allowed value ({maximum})",
        10,
        31,
    )


def vhost_not_found(vhost: str) -> AMQPConnectionError:
    return AMQPConnectionError(NOT_ALLOWED, f"vhost {vhost} not found", 10, 40)


def vhost_access_refused(vhost: str, username: str) -> AMQPConnectionError:
    return AMQPConnectionError(NOT_ALLOWED, f"access to vhost '{vhost}' refused for user '{username}'", 10, 40)


def unexpected_connection_method(state_name: str, class_id: int, method_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        CHANNEL_ERROR, f"unexpected method in connection state {state_name}", class_id, method_id
    )


def connection_forced(detail: str) -> AMQPConnectionError:
    """The broker closes the connection itself (shutdown); ``detail`` is the operator's reason."""
    return AMQPConnectionError(CONNECTION_FORCED, detail)


def internal_error() -> AMQPConnectionError:
    return AMQPConnectionError(INTERNAL_ERROR, "internal error")


# ---------------------------------------------------------------- channels (open, flow, modes, qos)


def expected_channel_open(class_id: int, method_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(CHANNEL_ERROR, "expected 'channel.open'", class_id, method_id)


def second_channel_open() -> AMQPConnectionError:
    return AMQPConnectionError(CHANNEL_ERROR, "second 'channel.open' seen", 20, 10)


def channel_max_reached(opened: int, channel_max: int) -> AMQPConnectionError:
    return AMQPConnectionError(
        NOT_ALLOWED, f"number of channels opened ({opened}) has reached the negotiated channel_max ({channel_max})"
    )


def unimplemented_method(class_id: int, method_id: int) -> AMQPConnectionError:
    return AMQPConnectionError(COMMAND_INVALID, "unimplemented method", class_id, method_id)


def flow_inactive_unsupported() -> AMQPConnectionError:
    return AMQPConnectionError(NOT_IMPLEMENTED, "active=false")


def prefetch_size_unsupported(prefetch_size: int) -> AMQPConnectionError:
    return AMQPConnectionError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({prefetch_size})")


def recover_without_requeue() -> AMQPConnectionError:
    return AMQPConnectionError(NOT_IMPLEMENTED, "requeue=false")


def tx_to_confirm() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")


def confirm_to_tx() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")


def not_transactional() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "channel is not transactional")


def definition_write_failed() -> ChannelError:
    return ChannelError(RESOURCE_ERROR, "could not write the definition to disk")


def transaction_write_failed() -> ChannelError:
    return ChannelError(RESOURCE_ERROR, "could not write the transaction to disk", 90, 20)


# ---------------------------------------------------------------- consumers and acknowledgements


def consumer_tag_reused(tag: str) -> AMQPConnectionError:
    return AMQPConnectionError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")


def queue_exclusive_use(name: str, vhost: str) -> ChannelError:
    return ChannelError(ACCESS_REFUSED, f"{vhost_resource('queue', name, vhost)} in exclusive use")


def reply_consumer_acks() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")


def reply_consumer_set() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "reply consumer already set")


def unknown_delivery_tag(delivery_tag: int) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}")


# ---------------------------------------------------------------- declarations, deletions, access


def no_previous_queue() -> ChannelError:
    return ChannelError(NOT_FOUND, "no previously declared queue")


def invalid_exchange_type(exchange_type: str) -> AMQPConnectionError:
    return AMQPConnectionError(COMMAND_INVALID, f"invalid exchange type '{exchange_type}'")


def system_exchange_deletion(name: str, vhost: str) -> ChannelError:
    return ChannelError(ACCESS_REFUSED, f"deletion of system {vhost_resource('exchange', name, vhost)} not allowed")


def in_use(kind: str, name: str, vhost: str) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"{vhost_resource(kind, name, vhost)} in use")


def queue_not_empty(name: str, vhost: str) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"{vhost_resource('queue', name, vhost)} not empty")


def resource_access_refused(kind: str, name: str, vhost: str, username: str) -> ChannelError:
    return ChannelError(ACCESS_REFUSED, f"access to {vhost_resource(kind, name, vhost)} refused for user '{username}'")


class TopicAccessRefused(ChannelError):
    """A routing key the user's topic permission refuses.  Its own class because the management API's
    publish reports it as RabbitMQ's does (400 with this text), where other refusals are 401."""


def topic_access_refused(routing_key: str, exchange: str, vhost: str, username: str) -> TopicAccessRefused:
    """RabbitMQ 3.10's text, probed: "access to topic 'k' in exchange 'x' in vhost '/' refused for user 'u'"."""
    return TopicAccessRefused(
        ACCESS_REFUSED,
        f"access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{username}'",
    )


def x_match_type(kind: str, value: object) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"Invalid x-match field type {kind} (value {value}); expected longstr")


def delayed_type_missing() -> ChannelError:
    """x-delayed-message without a string ``x-delayed-type`` (rabbitmq-delayed-message-exchange's words)."""
    return ChannelError(PRECONDITION_FAILED, "Invalid argument, 'x-delayed-type' must be an existing exchange type")


def delayed_type_recursive() -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'")


def x_match_value(value: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f'Invalid x-match field value <<"{value}">>; expected all, any, all-with-x, or any-with-x'
    )


# ---------------------------------------------------------------- queue and consumer arguments (x-…)
# ``reason`` is RabbitMQ's Erlang term for the problem, e.g. ``{value_negative,-1}``.


def invalid_arg(arg: str, kind: str, name: str, vhost: str, reason: str) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"invalid arg '{arg}' for {vhost_resource(kind, name, vhost)}: {reason}")


def expected_integer(value: object) -> str:
    return f'"expected integer, got {table_type(value)}"'


def invalid_arg_type(arg: str, name: str, vhost: str, value: object) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"invalid type '{table_type(value)}' for arg '{arg}' in {vhost_resource('queue', name, vhost)}",
    )


def invalid_property(prop: str, name: str, vhost: str) -> ChannelError:
    return ChannelError(PRECONDITION_FAILED, f"invalid property '{prop}' for {vhost_resource('queue', name, vhost)}")


def arg_unsupported_by_type(arg: str, name: str, vhost: str, queue_type: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"invalid arg '{arg}' for {vhost_resource('queue', name, vhost)} of queue type rabbit_{queue_type}_queue",
    )


def argument_crash() -> AMQPConnectionError:
    """An argument RabbitMQ 3.10's parser crashes on (an ``x-max-age`` or ``x-stream-offset`` without a leading
    non-negative integer, a boolean offset): its channel process dies, so the same bare 541 as
    ``undecodable_content`` — probed."""
    return undecodable_content()


def stream_unsupported(what: str, name: str, vhost: str) -> AMQPConnectionError:
    """basic.get, no-ack consumers, queue.purge, basic.nack/reject on a stream (rabbit_stream_queue, 3.10)."""
    resource = vhost_resource("queue", name, vhost)
    return AMQPConnectionError(NOT_IMPLEMENTED, f"{what} not supported by stream queues {resource}")


def stream_prefetch_not_set(name: str, vhost: str) -> ChannelError:
    """A stream consumer needs a per-consumer basic.qos prefetch count (a global one does not count)."""
    resource = vhost_resource("queue", name, vhost)
    return ChannelError(PRECONDITION_FAILED, f"consumer prefetch count is not set for '{resource}'")


def invalid_stream_offset(name: str, vhost: str, value: str) -> ChannelError:
    return invalid_arg(
        "x-stream-offset", "queue", name, vhost, f'{{invalid_stream_offset_arg,{{longstr,<<"{value}">>}}}}'
    )
