"""Content headers kept raw: the properties a publisher sent are delivered byte-for-byte.

Only the fields the broker acts on are peeked from the property flags
(``delivery_mode``, ``priority``, ``expiration``); the full table is decoded with
pamqp only when something needs it (a headers exchange, an ``x-`` feature).
"""

from __future__ import annotations

import struct

from pamqp import commands

_HEADER_FIXED = struct.Struct(">HHQH")  # class id, weight, body size, first flag word
_LONG = struct.Struct(">I")

FLAG_CONTENT_TYPE = 1 << 15
FLAG_CONTENT_ENCODING = 1 << 14
FLAG_HEADERS = 1 << 13
FLAG_DELIVERY_MODE = 1 << 12
FLAG_PRIORITY = 1 << 11
FLAG_CORRELATION_ID = 1 << 10
FLAG_REPLY_TO = 1 << 9
FLAG_EXPIRATION = 1 << 8

BASIC_CLASS_ID = 60


class ContentHeaderError(ValueError):
    """The content header frame is malformed."""


def parse_header(payload: bytes) -> tuple[int, int, int]:
    """Return ``(class_id, body_size, flags)`` of a content header payload."""
    if len(payload) < _HEADER_FIXED.size:
        raise ContentHeaderError("content header too short")
    class_id, _weight, body_size, flags = _HEADER_FIXED.unpack_from(payload)
    return class_id, body_size, flags


def peek_properties(payload: bytes) -> tuple[int, int, str | None]:
    """Peek ``(delivery_mode, priority, expiration)`` by walking the flag word, skipping the rest.

    Raises IndexError or struct.error on a truncated property list.
    """
    flags = _HEADER_FIXED.unpack_from(payload)[3]
    if not flags & 0b0001_1111_1000_0000:  # none of the fields up to expiration: the common case
        return 1, 0, None
    offset = _HEADER_FIXED.size
    if flags & 1:  # continuation flag words never occur for basic, but skip them if sent
        while struct.unpack_from(">H", payload, offset - 2)[0] & 1:
            offset += 2
    delivery, priority, expiration = 1, 0, None
    if flags & FLAG_CONTENT_TYPE:
        offset += 1 + payload[offset]
    if flags & FLAG_CONTENT_ENCODING:
        offset += 1 + payload[offset]
    if flags & FLAG_HEADERS:
        offset += 4 + _LONG.unpack_from(payload, offset)[0]
    if flags & FLAG_DELIVERY_MODE:
        delivery = payload[offset]
        offset += 1
    if flags & FLAG_PRIORITY:
        priority = payload[offset]
        offset += 1
    if flags & FLAG_EXPIRATION:
        for flag in (FLAG_CORRELATION_ID, FLAG_REPLY_TO):
            if flags & flag:
                offset += 1 + payload[offset]
        length = payload[offset]
        raw = payload[offset + 1 : offset + 1 + length]
        if len(raw) != length:
            raise IndexError("truncated expiration")
        expiration = raw.decode("utf-8", "replace")
    return delivery, priority, expiration


def decode_properties(payload: bytes) -> commands.Basic.Properties:
    """Decode the full property list with pamqp (slow path, for features that need it)."""
    flags = _HEADER_FIXED.unpack_from(payload)[3]
    properties = commands.Basic.Properties()
    properties.unmarshal(flags, payload[_HEADER_FIXED.size :])
    return properties
