"""Editing a content header without re-encoding what the publisher sent.

Dead-lettering adds ``x-death``, direct reply-to rewrites ``reply_to``, BCC is
removed, quorum queues add ``x-delivery-count``.  Decoding the properties and
encoding them again with pamqp would change the wire types of every other
header (pamqp picks the smallest integer type, encodes floats as 32-bit,
cannot encode byte arrays), so here the header is split into raw fields and
raw table entries, and only the changed ones are encoded — with the types
RabbitMQ uses (``l`` for integers, ``S`` for strings, ``T`` for timestamps).

``check_properties`` is the door: a publish whose property list RabbitMQ could
not decode never gets in (RabbitMQ closes the connection with 541), so what is
stored can later be split, edited and decoded in other clients' operations.
"""

from __future__ import annotations

import datetime
import math
import struct
from typing import Any

from pamqp import decode

_FIXED = struct.Struct(">HHQH")
_LONG = struct.Struct(">I")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")

# Basic property flags, in wire order, with how each value is laid out.
SHORTSTR, TABLE, OCTET, TIMESTAMP = "shortstr", "table", "octet", "timestamp"
PROPERTIES = (
    ("content_type", 1 << 15, SHORTSTR),
    ("content_encoding", 1 << 14, SHORTSTR),
    ("headers", 1 << 13, TABLE),
    ("delivery_mode", 1 << 12, OCTET),
    ("priority", 1 << 11, OCTET),
    ("correlation_id", 1 << 10, SHORTSTR),
    ("reply_to", 1 << 9, SHORTSTR),
    ("expiration", 1 << 8, SHORTSTR),
    ("message_id", 1 << 7, SHORTSTR),
    ("timestamp", 1 << 6, TIMESTAMP),
    ("type", 1 << 5, SHORTSTR),
    ("user_id", 1 << 4, SHORTSTR),
    ("app_id", 1 << 3, SHORTSTR),
    ("cluster_id", 1 << 2, SHORTSTR),
)

# Size of a field-table value after its type tag: fixed, or a 4-byte length prefix ("L").
_VALUE_SIZES: dict[bytes, int | str] = {
    b"t": 1,
    b"b": 1,
    b"B": 1,
    b"s": 2,
    b"u": 2,
    b"I": 4,
    b"i": 4,
    b"l": 8,
    b"L": 8,
    b"f": 4,
    b"d": 8,
    b"D": 5,
    b"T": 8,
    b"V": 0,
    b"S": "L",
    b"x": "L",
    b"A": "L",
    b"F": "L",
}


# Field-table value sizes by type tag (as an int, what indexing bytes gives) for check_properties:
# fixed, or -1 for a 4-byte length prefix. The 18 types RabbitMQ 3.10 decodes (rabbit_binary_parser);
# any other tag makes it close the publisher's connection (probed: c, U, N, O, n, NUL, space).
_CHECK_SIZES = {tag[0]: -1 if isinstance(size, str) else size for tag, size in _VALUE_SIZES.items()}
_FLOAT_TAG, _DOUBLE_TAG, _ARRAY_TAG, _TABLE_TAG = b"fdAF"
# Nesting deeper than this is refused too: pamqp's recursive decoder (headers exchange, x-death)
# would overflow Python's stack on it. RabbitMQ has no limit; no client nests tables this deep.
MAX_NESTING = 100


class PropertiesError(ValueError):
    """A content header's property list that RabbitMQ cannot decode (it closes the connection: 541)."""


def check_properties(payload: bytes) -> None:
    """Raise ``PropertiesError`` unless the property list decodes the way RabbitMQ decodes it.

    Each flagged field lies inside the payload, which ends right after the last one (trailing bytes
    are refused); no continuation flag word (basic has 14 properties; the unused bit 1 is ignored,
    as RabbitMQ does); a headers table holds whole entries of known types, nested tables and arrays
    included, with finite floats (Erlang's float match refuses NaN and infinities). Shortstrs and
    keys are not checked for UTF-8 (neither does RabbitMQ). ``payload`` has the 14-byte fixed part.
    """
    flags = _FIXED.unpack_from(payload)[3]
    if flags & 1:
        raise PropertiesError("continuation property flags")
    fixed, layouts = _plan(flags)
    end = len(payload)
    if layouts is None:  # only octets and timestamps: the size says it all
        if end != fixed:
            raise PropertiesError("property list length does not match the content header")
        return
    offset = _FIXED.size
    try:
        for layout in layouts:
            if layout is SHORTSTR:
                offset += 1 + payload[offset]
            elif layout is TABLE:
                start = offset + 4
                if start > end:
                    raise PropertiesError("truncated headers table")
                offset = start + _LONG.unpack_from(payload, offset)[0]
                if offset > end:
                    raise PropertiesError("headers table longer than the content header")
                _check_entries(payload, start, offset, 0, True)
            else:
                offset += 1 if layout is OCTET else 8
    except IndexError:  # a shortstr length byte past the end
        raise PropertiesError("truncated property list") from None
    if offset != end:
        raise PropertiesError("property list length does not match the content header")


_PLANS: dict[int, tuple[int, tuple[str, ...] | None]] = {}


def _plan(flags: int) -> tuple[int, tuple[str, ...] | None]:
    """``(header size, None)`` when the fields present have fixed sizes, else ``(0, their layouts)``.

    Cached per flag word (at most 2**14 of them): a publish with delivery_mode only is checked
    with a dict lookup and one comparison. measured: check_properties (delivery_mode only) 0.52 → 0.21 µs
    (timeit).
    """
    plan = _PLANS.get(flags)
    if plan is None:
        layouts = tuple(layout for _name, flag, layout in PROPERTIES if flags & flag)
        if SHORTSTR in layouts or TABLE in layouts:
            plan = (0, layouts)
        else:
            plan = (_FIXED.size + sum(1 if layout is OCTET else 8 for layout in layouts), None)
        _PLANS[flags] = plan
    return plan


def _check_entries(buffer: bytes, offset: int, end: int, depth: int, keyed: bool) -> None:
    """Check the values of a table (``keyed``: each after its key) or an array in ``buffer[offset:end]``."""
    if depth > MAX_NESTING:
        raise PropertiesError("field tables nested too deeply")
    sizes = _CHECK_SIZES
    while offset < end:
        if keyed:
            offset += 1 + buffer[offset]
            if offset >= end:
                raise PropertiesError("field table key without a value")
        tag = buffer[offset]
        size = sizes.get(tag)
        if size is None:
            raise PropertiesError(f"unknown field type {bytes((tag,))!r}")
        offset += 1
        if size >= 0:
            if offset + size > end:
                raise PropertiesError("field value longer than its table")
            if tag == _FLOAT_TAG or tag == _DOUBLE_TAG:
                value = (_FLOAT if tag == _FLOAT_TAG else _DOUBLE).unpack_from(buffer, offset)[0]
                if value != value or value in (math.inf, -math.inf):
                    raise PropertiesError("float that is not finite")
            offset += size
            continue
        # The same u32-length bounds check as the headers table's in check_properties, inlined on purpose:
        # one shared helper measured 1.75 -> 2.14 us per check_properties (headers with 5 long values, timeit).
        start = offset + 4
        if start > end:
            raise PropertiesError("field value longer than its table")
        offset = start + _LONG.unpack_from(buffer, offset)[0]
        if offset > end:
            raise PropertiesError("field value longer than its table")
        if tag == _TABLE_TAG or tag == _ARRAY_TAG:
            _check_entries(buffer, start, offset, depth + 1, tag == _TABLE_TAG)


class ContentHeader:
    """A content header split into raw property fields, each editable on its own.

    Raises ValueError when a field runs past the end of ``payload`` (only a message stored
    before the door checked properties can have that; the caller decides what to do with it).
    """

    def __init__(self, payload: bytes) -> None:
        class_id, weight, self.body_size, flags = _FIXED.unpack_from(payload)
        self._prefix = struct.pack(">HH", class_id, weight)
        self.fields: dict[str, bytes] = {}
        offset = _FIXED.size
        for name, flag, layout in PROPERTIES:
            if flags & flag:
                size = _field_size(payload, offset, layout)
                if offset + size > len(payload):
                    raise ValueError(f"content header property {name} runs past the end of the header")
                self.fields[name] = payload[offset : offset + size]
                offset += size

    def encode(self) -> bytes:
        flags = 0
        parts = []
        for name, flag, _ in PROPERTIES:
            raw = self.fields.get(name)
            if raw is not None:
                flags |= flag
                parts.append(raw)
        return self._prefix + struct.pack(">QH", self.body_size, flags) + b"".join(parts)

    def shortstr(self, name: str) -> str | None:
        raw = self.fields.get(name)
        return raw[1:].decode("utf-8", "replace") if raw is not None else None

    def set_shortstr(self, name: str, value: str | None) -> None:
        if value is None:
            self.fields.pop(name, None)
        else:
            encoded = value.encode()
            self.fields[name] = bytes((len(encoded),)) + encoded

    def header_entries(self) -> dict[str, bytes]:
        """The headers table as ``{key: raw typed value}``, in wire order."""
        raw = self.fields.get("headers")
        return table_entries(raw[4:]) if raw is not None else {}

    def set_header_entries(self, entries: dict[str, bytes]) -> None:
        """Replace the headers table; an emptied table stays, empty (RabbitMQ's BCC removal keeps ``{}``)."""
        body = b"".join(_shortstr(key) + value for key, value in entries.items())
        self.fields["headers"] = _LONG.pack(len(body)) + body


def table_entries(table: bytes) -> dict[str, bytes]:
    """Split a field table's contents (without its length prefix) into raw typed values."""
    entries: dict[str, bytes] = {}
    offset = 0
    while offset < len(table):
        key_length = table[offset]
        key = table[offset + 1 : offset + 1 + key_length].decode("utf-8", "replace")
        offset += 1 + key_length
        size = _value_size(table, offset)
        entries[key] = table[offset : offset + size]
        offset += size
    if offset != len(table):
        raise ValueError("malformed field table")
    return entries


def decode_value(raw: bytes) -> Any:
    """Decode one raw typed value with pamqp."""
    return decode.embedded_value(raw)[1]


def encode_value(value: Any) -> bytes:
    """Encode a value as RabbitMQ types it (integers as signed 64-bit ``l``)."""
    if isinstance(value, bool):
        return b"t" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"l" + struct.pack(">q", value)
    if isinstance(value, str):
        encoded = value.encode()
        return b"S" + _LONG.pack(len(encoded)) + encoded
    if isinstance(value, bytes):
        return b"S" + _LONG.pack(len(value)) + value
    if isinstance(value, datetime.datetime):
        return b"T" + struct.pack(">Q", int(value.timestamp()))
    if isinstance(value, list):
        body = b"".join(item if isinstance(item, RawValue) else encode_value(item) for item in value)
        return b"A" + _LONG.pack(len(body)) + body
    if isinstance(value, dict):
        body = b"".join(
            _shortstr(key) + (item if isinstance(item, RawValue) else encode_value(item)) for key, item in value.items()
        )
        return b"F" + _LONG.pack(len(body)) + body
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode {type(value).__name__} in a field table")


_TYPE_NAMES = {
    b"t": "bool",
    b"b": "byte",
    b"B": "unsignedbyte",
    b"s": "short",
    b"u": "unsignedshort",
    b"I": "signedint",
    b"i": "unsignedint",
    b"l": "long",
    b"L": "unsignedlong",
    b"f": "float",
    b"d": "double",
    b"D": "decimal",
    b"T": "timestamp",
    b"V": "void",
    b"S": "longstr",
    b"x": "binary",
    b"A": "array",
    b"F": "table",
}


def type_name(raw: bytes) -> str:
    """RabbitMQ's name for the type of a raw typed value (as in its error texts)."""
    return _TYPE_NAMES.get(raw[:1], "unknown")


class RawValue(bytes):
    """An already-encoded typed value, kept as it arrived when a table is rebuilt."""


def _value_size(table: bytes, offset: int) -> int:
    tag = table[offset : offset + 1]
    size = _VALUE_SIZES.get(tag)
    if size is None:
        raise ValueError(f"unknown field type {tag!r}")
    if isinstance(size, str):  # "L": a 4-byte length prefix
        if offset + 5 > len(table):
            raise ValueError("malformed field table")
        length: int = _LONG.unpack_from(table, offset + 1)[0]
        return 5 + length
    return 1 + size


def _field_size(payload: bytes, offset: int, layout: str) -> int:
    if layout == SHORTSTR:
        if offset >= len(payload):
            raise ValueError("content header property runs past the end of the header")
        return 1 + payload[offset]
    if layout == TABLE:
        if offset + 4 > len(payload):
            raise ValueError("content header property runs past the end of the header")
        length: int = _LONG.unpack_from(payload, offset)[0]
        return 4 + length
    return 1 if layout == OCTET else 8


def _shortstr(value: str) -> bytes:
    encoded = value.encode()
    return bytes((len(encoded),)) + encoded
