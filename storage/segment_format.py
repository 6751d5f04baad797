"""On-disk formats of ``SegmentStore``: segment records, ack files, the definitions file.

Kept apart from the store so the byte layouts are in one place, are easy to read
next to their documentation, and can be tested (and parsed by tools) without
opening a store.

Segment file ``msgs.NNNNNNNNNN``::

    header   b"AMQPSEG\\x00" + u16 format version (3; versions 1 and 2 are still read)   10 bytes
    record*  u32 payload length, u32 crc32(payload), payload

    message payload (all integers little-endian):
        u8 kind (1 = message, 2 = message with its expiry, 3 = delayed message)
        u64 message_id
        u16 len(vhost), u16 len(queue), u16 len(exchange), u16 len(routing_key)
        u32 len(header)
        kinds 2 and 3 only: f64 expiry (kind 2: ``MessageRecord.expires_at``) or fire time (kind 3:
            ``Store.put_delayed``'s ``fire_at``), wall-clock seconds since the epoch
        vhost, queue, exchange, routing_key (UTF-8), header bytes, body bytes (the rest)

    Version 2 added kind 2; a version-1 segment holds kind-1 records only.  A
    message without an expiry is still written as kind 1, byte for byte as in
    version 1.  The file version was raised so that an older broker skips (and
    leaves untouched) a segment it cannot read rather than truncating it at the
    first kind-2 record as damage.

    Version 3 added kind 3: a message a delayed exchange (``x-delayed-message``) holds.  Its
    "queue" field names that exchange and its id is the exchange's delayed id; the store indexes
    it apart from queue messages.  Version 3 was raised for the same reason as version 2.

Ack file ``acks.NNNNNNNNNN``: b"AMQPACK\\x00" + u16 version (1), then one u64
per acknowledged record: that record's byte offset in segment N.  Offsets (not
message ids) because a queue deleted and declared again reuses ids from 1.

Definitions snapshot ``definitions.json``: one ASCII line ``AMQPDEFS 1 <crc32 hex>``
then JSON (the changes since it are in ``definitions.log``: see ``storage.definitions_log``).
Its ``policies`` list came later and is optional: a snapshot without it has none, and an
older broker reading one with it keeps its exchanges, queues and bindings (it ignores the key).
The CRC catches damage that still parses as JSON; argument tables go through a tagged encoding
(``encode_value``) because JSON alone would lose bytes, Decimal, datetime and the int/float/bool
distinctions AMQP tables have.
"""

from __future__ import annotations

import array
import base64
import datetime
import decimal
import json
import mmap
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .api import BindingRecord, ExchangeRecord, MessageRecord, PolicyRecord, QueueRecord

FORMAT_VERSION = 1  # of ack files and the definitions snapshot
# Of the definitions log: version 2 added the policy records (see ``storage.definitions_log``).
DEFINITIONS_LOG_VERSION = 2
SEGMENT_VERSION = 3  # of segment files: see the module docstring
SEGMENT_MAGIC = b"AMQPSEG\x00"
ACK_MAGIC = b"AMQPACK\x00"
DEFINITIONS_LOG_MAGIC = b"AMQPDLOG"
_READABLE_VERSIONS = {
    SEGMENT_MAGIC: (1, 2, SEGMENT_VERSION),
    ACK_MAGIC: (FORMAT_VERSION,),
    DEFINITIONS_LOG_MAGIC: (1, DEFINITIONS_LOG_VERSION),
}
SEGMENT_HEADER = SEGMENT_MAGIC + struct.pack("<H", SEGMENT_VERSION)
ACK_HEADER = ACK_MAGIC + struct.pack("<H", FORMAT_VERSION)
FILE_HEADER_SIZE = len(SEGMENT_HEADER)  # both kinds of file have a 10-byte header
assert len(ACK_HEADER) == FILE_HEADER_SIZE

RECORD_HEAD = struct.Struct("<II")  # payload length, crc32(payload)
MESSAGE_HEAD = struct.Struct("<BQHHHHI")
EXPIRY = struct.Struct("<d")
KIND_MESSAGE = 1
KIND_EXPIRING_MESSAGE = 2
KIND_DELAYED_MESSAGE = 3
MIN_PAYLOAD = MESSAGE_HEAD.size
ACK_ENTRY = struct.Struct("<Q")
DEFINITIONS_MAGIC = "AMQPDEFS"
Buffer = bytes | mmap.mmap  # slicing either gives bytes
_TEXT = "utf-8"
_TEXT_ERRORS = "surrogatepass"  # names are stored exactly as the broker holds them, even if not valid UTF-8


def segment_name(number: int) -> str:
    return f"msgs.{number:010d}"


def ack_name(number: int) -> str:
    return f"acks.{number:010d}"


# -- message records -------------------------------------------------------------------------


def encode_message(
    vhost: str, queue: str, message_id: int, record: MessageRecord, fire_at: float | None = None
) -> bytes:
    """One framed record (length, crc, payload) ready to append to a segment.

    With ``fire_at`` it is a delayed message (kind 3): ``queue`` is then its delayed exchange's name.
    """
    names = [name.encode(_TEXT, _TEXT_ERRORS) for name in (vhost, queue, record.exchange, record.routing_key)]
    lengths = (*(len(name) for name in names), len(record.header))
    if fire_at is not None:
        head = MESSAGE_HEAD.pack(KIND_DELAYED_MESSAGE, message_id, *lengths) + EXPIRY.pack(fire_at)
    elif record.expires_at is None:
        head = MESSAGE_HEAD.pack(KIND_MESSAGE, message_id, *lengths)
    else:
        head = MESSAGE_HEAD.pack(KIND_EXPIRING_MESSAGE, message_id, *lengths) + EXPIRY.pack(record.expires_at)
    payload = b"".join((head, *names, record.header, record.body))
    return RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


DecodedMessage = tuple[str, str, int, MessageRecord]  # vhost, queue, message id, record (a tuple: cheap at 1M)


class RecordError(ValueError):
    """A record that frames correctly but whose payload does not parse (so it cannot be trusted)."""


Offsets = tuple[int, float | None, int, int, int, int, int, int]


def record_kind(data: Buffer, start: int) -> int:
    """The kind of the payload at ``data[start:]`` (``KIND_DELAYED_MESSAGE`` for a delayed message)."""
    return data[start]


def _field_offsets(data: Buffer, start: int, end: int) -> Offsets:
    """``(message id, expiry, vhost_at, queue_at, exchange_at, key_at, header_at, body_at)`` of a payload.

    For a delayed message (kind 3) "expiry" is its fire time.
    """
    kind, message_id, vhost_length, queue_length, exchange_length, key_length, header_length = MESSAGE_HEAD.unpack_from(
        data, start
    )
    if kind == KIND_MESSAGE:
        vhost_at = start + MESSAGE_HEAD.size
    elif kind == KIND_EXPIRING_MESSAGE or kind == KIND_DELAYED_MESSAGE:
        vhost_at = start + MESSAGE_HEAD.size + EXPIRY.size
    else:
        raise RecordError(f"unknown record kind {kind}")
    queue_at = vhost_at + vhost_length
    exchange_at = queue_at + queue_length
    key_at = exchange_at + exchange_length
    header_at = key_at + key_length
    body_at = header_at + header_length
    if body_at > end:
        raise RecordError("field lengths exceed the record")
    expires_at = EXPIRY.unpack_from(data, start + MESSAGE_HEAD.size)[0] if kind != KIND_MESSAGE else None
    return message_id, expires_at, vhost_at, queue_at, exchange_at, key_at, header_at, body_at


def _text(data: Buffer, start: int, stop: int) -> str:
    return data[start:stop].decode(_TEXT, _TEXT_ERRORS)


def decode_message(data: Buffer, start: int, end: int) -> DecodedMessage:
    """Parse the payload at ``data[start:end]`` (CRC already checked), slicing ``data`` directly for speed.

    A delayed message (kind 3) comes back with its fire time as ``expires_at``: ``SegmentStore`` moves it out.
    """
    message_id, expires_at, vhost_at, queue_at, exchange_at, key_at, header_at, body_at = _field_offsets(
        data, start, end
    )
    return (
        _text(data, vhost_at, queue_at),
        _text(data, queue_at, exchange_at),
        message_id,
        MessageRecord(
            _text(data, exchange_at, key_at),
            _text(data, key_at, header_at),
            bytes(data[header_at:body_at]),
            bytes(data[body_at:end]),
            expires_at,
        ),
    )


def decode_message_key(
    data: Buffer, start: int, end: int, names: dict[bytes, tuple[str, str]]
) -> tuple[tuple[str, str], int, int, float | None]:
    """Only ``((vhost, queue), message id, body size, expiry)`` of a payload: what recovery keeps for paged
    messages.

    ``names`` caches the decoded (vhost, queue) per raw bytes: one decode per queue, not two per record.
    """
    message_id, expires_at, vhost_at, queue_at, exchange_at, _, _, body_at = _field_offsets(data, start, end)
    raw = data[vhost_at:exchange_at]
    key = names.get(raw)
    if key is None:
        key = names[raw] = (_text(data, vhost_at, queue_at), _text(data, queue_at, exchange_at))
    return key, message_id, end - body_at, expires_at


class RecordScanner:
    """Iterates over the records of a segment's bytes, checking length and CRC.

    Stops at the first record that is cut short or fails its check and leaves
    ``damage = (offset, reason)``: after a bad length nothing further can be
    framed reliably, so everything from there on is untrusted.
    """

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.damage: tuple[int, str] | None = None

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Yields ``(record offset, payload start, payload end)``; offsets into ``data``."""
        data, view, end = self.data, memoryview(self.data), len(self.data)
        try:
            yield from self._records(data, view, end)
        finally:
            view.release()  # an mmap cannot be closed while a view of it exists

    def _records(self, data: Buffer, view: memoryview, end: int) -> Iterator[tuple[int, int, int]]:
        offset = FILE_HEADER_SIZE
        while offset < end:
            if end - offset < RECORD_HEAD.size:
                self.damage = (offset, f"partial record header ({end - offset} bytes)")
                return
            length, crc = RECORD_HEAD.unpack_from(data, offset)
            start = offset + RECORD_HEAD.size
            if length < MIN_PAYLOAD:
                self.damage = (offset, f"impossible record length {length}")
                return
            if start + length > end:
                self.damage = (offset, f"record of {length} bytes cut short at {end - start} bytes")
                return
            if zlib.crc32(view[start : start + length]) != crc:
                self.damage = (offset, "CRC mismatch")
                return
            yield offset, start, start + length
            offset = start + length


def pack_ack_offsets(offsets: list[int]) -> bytes:
    """Ack entries for these record offsets (u64 little-endian each), as appended to an ack file."""
    packed = array.array("Q", offsets)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_ack_offsets(data: bytes) -> array.array[int]:
    """The record offsets of whole ack entries (``data`` past the header, a multiple of ``ACK_ENTRY.size``)."""
    packed = array.array("Q")
    packed.frombytes(data)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed


def check_header(data: bytes, magic: bytes) -> str | None:
    """Why a file's header is unusable, or None if it is a header of the expected kind in a readable version.

    A file shorter than the header that is a prefix of it (the crash came right
    after creating it) is reported as "empty", which callers treat as no records.
    """
    versions = _READABLE_VERSIONS[magic]
    if len(data) < FILE_HEADER_SIZE and any(
        (magic + struct.pack("<H", version)).startswith(data) for version in versions
    ):
        return "empty"
    if data[: len(magic)] != magic:
        return f"bad magic {bytes(data[: len(magic)])!r}"
    version = struct.unpack_from("<H", data, len(magic))[0] if len(data) >= FILE_HEADER_SIZE else None
    if version not in versions:
        return f"unknown format version {version}"
    return None


# -- argument tables -------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A table value as tagged JSON: ``[tag, data]``, lossless for every AMQP field type."""
    if value is None:
        return ["V"]
    if isinstance(value, bool):  # before int: bool is an int subclass
        return ["t", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value.hex()]  # hex: exact, and survives nan/inf
    if isinstance(value, str):
        return ["S", value]
    if isinstance(value, bytearray):
        return ["x", base64.b64encode(value).decode("ascii")]
    if isinstance(value, bytes):
        return ["y", base64.b64encode(value).decode("ascii")]
    if isinstance(value, decimal.Decimal):
        return ["D", str(value)]
    if isinstance(value, datetime.datetime):
        return ["T", value.isoformat()]
    if isinstance(value, dict):
        return ["F", encode_table(value)]
    if isinstance(value, (list, tuple)):
        return ["A" if isinstance(value, list) else "U", [encode_value(item) for item in value]]
    raise TypeError(f"cannot store a table value of type {type(value).__name__}: {value!r}")


def encode_table(table: dict[str, Any]) -> list[list[Any]]:
    """A table as a list of ``[key, tagged value]`` pairs (keeps key order)."""
    for key in table:
        if not isinstance(key, str):
            raise TypeError(f"table keys must be str, got {key!r}")
    return [[key, encode_value(value)] for key, value in table.items()]


_DECODERS: dict[str, Any] = {
    "V": lambda: None,
    "t": bool,
    "i": int,
    "f": float.fromhex,
    "S": str,
    "x": lambda data: bytearray(base64.b64decode(data)),
    "y": base64.b64decode,
    "D": decimal.Decimal,
    "T": datetime.datetime.fromisoformat,
    "F": lambda data: decode_table(data),
    "A": lambda data: [decode_value(item) for item in data],
    "U": lambda data: tuple(decode_value(item) for item in data),
}


def decode_value(tagged: list[Any]) -> Any:
    return _DECODERS[tagged[0]](*tagged[1:])


def decode_table(pairs: list[list[Any]]) -> dict[str, Any]:
    return {key: decode_value(value) for key, value in pairs}


# -- definitions -----------------------------------------------------------------------------


@dataclass
class Definitions:
    exchanges: list[ExchangeRecord]
    queues: list[QueueRecord]
    bindings: list[BindingRecord]
    policies: list[PolicyRecord] = field(default_factory=list)


def exchange_document(e: ExchangeRecord) -> dict[str, Any]:
    return {
        "vhost": e.vhost,
        "name": e.name,
        "type": e.type,
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "arguments": encode_table(e.arguments),
    }


def queue_document(q: QueueRecord) -> dict[str, Any]:
    return {
        "vhost": q.vhost,
        "name": q.name,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "arguments": encode_table(q.arguments),
    }


def binding_document(b: BindingRecord) -> dict[str, Any]:
    return {
        "vhost": b.vhost,
        "source": b.source,
        "destination": b.destination,
        "destination_kind": b.destination_kind,
        "routing_key": b.routing_key,
        "arguments": encode_table(b.arguments),
    }


def policy_document(p: PolicyRecord) -> dict[str, Any]:
    """A policy's definition is plain JSON already (no AMQP table types)."""
    return {
        "vhost": p.vhost,
        "name": p.name,
        "operator": p.operator,
        "pattern": p.pattern,
        "apply_to": p.apply_to,
        "priority": p.priority,
        "definition": p.definition,
    }


def policy_from_document(p: dict[str, Any]) -> PolicyRecord:
    if not isinstance(p["definition"], dict):
        raise TypeError("a policy definition must be an object")
    return PolicyRecord(
        p["vhost"], p["name"], p["pattern"], p["definition"], p["priority"], p["apply_to"], p["operator"]
    )


def exchange_from_document(e: dict[str, Any]) -> ExchangeRecord:
    return ExchangeRecord(
        e["vhost"], e["name"], e["type"], e["durable"], e["auto_delete"], e["internal"], decode_table(e["arguments"])
    )


def queue_from_document(q: dict[str, Any]) -> QueueRecord:
    return QueueRecord(q["vhost"], q["name"], q["durable"], q["auto_delete"], decode_table(q["arguments"]))


def binding_from_document(b: dict[str, Any]) -> BindingRecord:
    return BindingRecord(
        b["vhost"], b["source"], b["destination"], b["routing_key"], decode_table(b["arguments"]), b["destination_kind"]
    )


def encode_definitions(definitions: Definitions) -> bytes:
    document = {
        "exchanges": [exchange_document(e) for e in definitions.exchanges],
        "queues": [queue_document(q) for q in definitions.queues],
        "bindings": [binding_document(b) for b in definitions.bindings],
        "policies": [policy_document(p) for p in definitions.policies],
    }
    body = json.dumps(document, indent=1, ensure_ascii=True).encode("ascii")
    return f"{DEFINITIONS_MAGIC} {FORMAT_VERSION} {zlib.crc32(body):08x}\n".encode("ascii") + body


class DefinitionsLogError(ValueError):
    """The definitions file is damaged or of an unknown version."""


def decode_definitions(data: bytes) -> Definitions:
    first_line, _, body = data.partition(b"\n")
    parts = first_line.split(b" ")
    if len(parts) != 3 or parts[0] != DEFINITIONS_MAGIC.encode():
        raise DefinitionsLogError("bad header line")
    if parts[1] != str(FORMAT_VERSION).encode():
        raise DefinitionsLogError(f"unknown format version {parts[1]!r}")
    if f"{zlib.crc32(body):08x}".encode() != parts[2]:
        raise DefinitionsLogError("checksum mismatch")
    try:
        document = json.loads(body)
        return Definitions(
            exchanges=[exchange_from_document(e) for e in document["exchanges"]],
            queues=[queue_from_document(q) for q in document["queues"]],
            bindings=[binding_from_document(b) for b in document["bindings"]],
            policies=[policy_from_document(p) for p in document.get("policies", [])],
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise DefinitionsLogError(f"unreadable content: {error}") from error
