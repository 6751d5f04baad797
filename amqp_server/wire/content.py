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

BASIC_CLASS_ID = 60


class ContentHeaderError(ValueError):
    """The content header frame is malformed."""


def parse_header(payload: bytes) -> tuple[int, int, int]:
    """Return ``(class_id, body_size, flags)`` of a content header payload."""
    if len(payload) < _HEADER_FIXED.size:
        raise ContentHeaderError("content header too short")
    class_id, _weight, body_size, flags = _HEADER_FIXED.unpack_from(payload)
    return class_id, body_size, flags


def delivery_mode(payload: bytes) -> int:
    """Peek ``delivery_mode`` (2 = persistent) without decoding the property table."""
    flags = _HEADER_FIXED.unpack_from(payload)[3]
    if not flags & FLAG_DELIVERY_MODE:
        return 1
    offset = _HEADER_FIXED.size
    if flags & 1:  # continuation flag words never occur for basic, but skip them if sent
        while struct.unpack_from(">H", payload, offset - 2)[0] & 1:
            offset += 2
    if flags & FLAG_CONTENT_TYPE:
        offset += 1 + payload[offset]
    if flags & FLAG_CONTENT_ENCODING:
        offset += 1 + payload[offset]
    if flags & FLAG_HEADERS:
        offset += 4 + _LONG.unpack_from(payload, offset)[0]
    return payload[offset]


def decode_properties(payload: bytes) -> commands.Basic.Properties:
    """Decode the full property list with pamqp (slow path, for features that need it)."""
    flags = _HEADER_FIXED.unpack_from(payload)[3]
    properties = commands.Basic.Properties()
    properties.unmarshal(flags, payload[_HEADER_FIXED.size :])
    return properties
