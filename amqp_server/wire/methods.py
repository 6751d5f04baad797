"""Method frames: pamqp for every method, hand-written codecs for the hot few.

pamqp is reflective (several µs per frame) and its ``marshal`` validates names
against a stricter pattern than RabbitMQ (which accepts any UTF-8 queue name),
so the methods on the hot path or carrying arbitrary names are coded here by
hand: ``Basic.Publish`` in; ``Basic.Deliver``, ``Basic.GetOk``, ``Basic.Return``,
``Basic.Ack`` and ``Queue.DeclareOk`` out.  Each is golden-tested byte-for-byte
against pamqp in ``tests/test_wire_methods.py``.
"""

from __future__ import annotations

import struct

from pamqp import commands, decode
from pamqp.base import Frame as PamqpMethod

from ..errors import COMMAND_INVALID, FRAME_ERROR, AMQPConnectionError, erlang_binary
from .framing import FRAME_END_BYTE, FRAME_METHOD

_FRAME_HEADER = struct.Struct(">BHI")
_INDEX = struct.Struct(">I")
_SHORTSTR_LEN = struct.Struct(">B")

BASIC_PUBLISH = commands.Basic.Publish.index
_DELIVER_PREFIX = struct.pack(">HH", 60, 60)
_GET_OK_PREFIX = struct.pack(">HH", 60, 71)
_RETURN_PREFIX = struct.pack(">HH", 60, 50)
_ACK = struct.Struct(">BHIHHQB")  # whole frame header + Basic.Ack, end byte appended
_DECLARE_OK_PREFIX = struct.pack(">HH", 50, 11)


class Publish:
    """``Basic.Publish`` decoded by hand: the one method a publisher sends per message."""

    __slots__ = ("exchange", "routing_key", "mandatory", "immediate")
    name = "Basic.Publish"

    def __init__(self, exchange: str, routing_key: str, mandatory: bool, immediate: bool) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.immediate = immediate


def _decode_publish(payload: bytes) -> Publish:
    # class, method (4) + ticket (2), then exchange and routing-key shortstrs, then the bit octet
    offset = 6
    length = payload[offset]
    exchange = payload[offset + 1 : offset + 1 + length].decode()
    offset += 1 + length
    length = payload[offset]
    routing_key = payload[offset + 1 : offset + 1 + length].decode()
    offset += 1 + length
    if offset + 1 != len(payload):
        raise ValueError("truncated or followed by extra bytes")
    bits = payload[offset]
    return Publish(exchange, routing_key, bool(bits & 1), bool(bits & 2))


def decode_method(payload: bytes) -> tuple[int, PamqpMethod | Publish]:
    """Decode a method frame's payload into ``(method index, method)``.

    Raises ``AMQPConnectionError`` as RabbitMQ answers: 501 FRAME_ERROR when the
    arguments do not decode exactly (truncated, ill-typed, or trailing bytes),
    503 for an unknown class or method (RabbitMQ 3.10 drops the socket there).
    """
    if len(payload) < 4:
        raise AMQPConnectionError(FRAME_ERROR, f"type 1, all octets = {erlang_binary(payload)}: unknown_frame")
    index = _INDEX.unpack_from(payload)[0]
    method_class = commands.INDEX_MAPPING.get(index) if index != BASIC_PUBLISH else Publish
    if method_class is None:
        raise AMQPConnectionError(COMMAND_INVALID, f"unknown method class {index >> 16} method {index & 0xFFFF}")
    try:
        if index == BASIC_PUBLISH:
            return index, _decode_publish(payload)
        method = method_class()
        _unmarshal_exactly(method, payload[4:])
    except Exception:  # pamqp raises struct.error, ValueError, IndexError, TypeError …
        raise AMQPConnectionError(FRAME_ERROR, f"cannot decode {erlang_binary(payload[4:])}",
                                  index >> 16, index & 0xFFFF) from None
    return index, method


def _unmarshal_exactly(method: PamqpMethod, data: bytes) -> None:
    """pamqp's ``Frame.unmarshal``, but refusing arguments that leave bytes over (as RabbitMQ does)."""
    offset, bit_offset, in_bits = 0, 0, False
    for argument in method.__slots__:
        data_type = method.amqp_type(argument)
        if in_bits and (data_type != "bit" or bit_offset == 8):
            offset, bit_offset, in_bits = offset + 1, 0, False
        consumed, value = decode.by_type(data[offset:], data_type, bit_offset)
        if data_type == "bit":
            bit_offset, in_bits = bit_offset + 1, True
        setattr(method, argument, value)
        offset += consumed
    if in_bits:
        offset += 1
    if offset != len(data):
        raise ValueError("method arguments are truncated or followed by extra bytes")


def method_frame(channel: int, method: PamqpMethod) -> bytes:
    """Encode a method with pamqp (used for everything but the hand-coded methods below)."""
    payload = _INDEX.pack(method.index) + method.marshal()
    return _FRAME_HEADER.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END_BYTE


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    return _SHORTSTR_LEN.pack(len(raw)) + raw


def _frame(channel: int, payload: bytes) -> bytes:
    return _FRAME_HEADER.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END_BYTE


def deliver_frame(channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool,
                  exchange: bytes, routing_key: bytes) -> bytes:
    """``Basic.Deliver``; tag, exchange and routing key come pre-encoded as shortstrs."""
    payload = b"".join((
        _DELIVER_PREFIX, consumer_tag, struct.pack(">QB", delivery_tag, 1 if redelivered else 0),
        exchange, routing_key,
    ))
    return _frame(channel, payload)


def get_ok_frame(channel: int, delivery_tag: int, redelivered: bool, exchange: bytes,
                 routing_key: bytes, message_count: int) -> bytes:
    payload = b"".join((
        _GET_OK_PREFIX, struct.pack(">QB", delivery_tag, 1 if redelivered else 0),
        exchange, routing_key, struct.pack(">I", message_count),
    ))
    return _frame(channel, payload)


def return_frame(channel: int, reply_code: int, reply_text: str, exchange: bytes, routing_key: bytes) -> bytes:
    payload = b"".join((_RETURN_PREFIX, struct.pack(">H", reply_code), _shortstr(reply_text), exchange, routing_key))
    return _frame(channel, payload)


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return _ACK.pack(FRAME_METHOD, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0) + FRAME_END_BYTE


def queue_declare_ok_frame(channel: int, queue: str, message_count: int, consumer_count: int) -> bytes:
    payload = _DECLARE_OK_PREFIX + _shortstr(queue) + struct.pack(">II", message_count, consumer_count)
    return _frame(channel, payload)


def shortstr(value: str) -> bytes:
    """Encode a shortstr once, so hot frames can splice it in without re-encoding."""
    return _shortstr(value)
