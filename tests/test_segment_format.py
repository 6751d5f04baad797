"""Segment record formats: a message's expiry on disk (record kind 2, segment version 2), a delayed message
(kind 3, version 3), and data dirs written before them (version-1 segments of kind-1 records, version-2
ones) still recovering.

The old bytes are built here from the documented layout, not with the current encoder, so the test
keeps meaning "what an older broker wrote" whatever the encoder turns into.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from storage import segment_store
from storage.api import MessageRecord, StoredMessage
from storage.segment_format import RECORD_HEAD, decode_message, encode_message
from storage.segment_store import SegmentStore

HEADER = b"\x00\x3c\x00\x00" + bytes(8) + b"\x00\x00"  # a content header payload: class 60, no properties


def version_1_record(
    vhost: str, queue: str, message_id: int, exchange: str, routing_key: str, header: bytes, body: bytes
) -> bytes:
    """A record as version 1 wrote it: u32 length, u32 crc, then kind 1, id, four u16 and one u32 length."""
    names = [name.encode() for name in (vhost, queue, exchange, routing_key)]
    payload = struct.pack("<BQHHHHI", 1, message_id, *map(len, names), len(header)) + b"".join(names) + header + body
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def write_version_1_data_dir(path: Path) -> None:
    path.mkdir()
    records = [version_1_record("/", "q", n, "amq.direct", "k", HEADER, b"old %d" % n) for n in (1, 2, 3)]
    (path / "msgs.0000000001").write_bytes(b"AMQPSEG\x00\x01\x00" + b"".join(records))
    acked = struct.pack("<Q", 10)  # the first record (right after the 10-byte header) was acknowledged
    (path / "acks.0000000001").write_bytes(b"AMQPACK\x00\x01\x00" + acked)


@pytest.mark.parametrize("eager", [True, False], ids=["read-at-recovery", "left-on-disk"])
def test_a_version_1_data_dir_recovers_and_new_segments_are_the_current_version(
    tmp_path: Path, monkeypatch, eager
) -> None:
    if not eager:
        monkeypatch.setattr(segment_store, "EAGER_RECORDS", 0)
    data = tmp_path / "data"
    write_version_1_data_dir(data)

    store = SegmentStore(data)
    recovered = store.recover().messages[("/", "q")]
    assert [message_id for message_id, _ in recovered] == [2, 3]
    for message_id, record in recovered:
        if not eager:
            assert record == StoredMessage(len(b"old 2"), None)
            record = store.read_message("/", "q", message_id)
        assert record == MessageRecord("amq.direct", "k", HEADER, b"old %d" % message_id, None)
    store.put_message("/", "q", 4, MessageRecord("", "q", HEADER, b"new", expires_at=1_700_000_123.25))
    store.close()

    assert (data / "msgs.0000000002").read_bytes()[:10] == b"AMQPSEG\x00\x03\x00"
    store = SegmentStore(data)
    try:
        recovered = dict(store.recover().messages[("/", "q")])
        assert sorted(recovered) == [2, 3, 4]
        if eager:
            assert recovered[4] == MessageRecord("", "q", HEADER, b"new", 1_700_000_123.25)
        else:
            assert recovered[4] == StoredMessage(3, 1_700_000_123.25)
            assert store.read_message("/", "q", 4).expires_at == 1_700_000_123.25
    finally:
        store.close()


def test_a_message_without_expiry_is_written_byte_for_byte_as_version_1_did() -> None:
    record = MessageRecord("amq.direct", "k", HEADER, b"body")
    assert encode_message("/", "q", 7, record) == version_1_record("/", "q", 7, "amq.direct", "k", HEADER, b"body")


def test_a_message_with_expiry_is_kind_2_with_the_expiry_after_the_lengths() -> None:
    framed = encode_message("/", "q", 7, MessageRecord("amq.direct", "k", HEADER, b"body", expires_at=12.5))
    payload = framed[RECORD_HEAD.size :]
    assert payload[0] == 2
    assert struct.unpack_from("<d", payload, struct.calcsize("<BQHHHHI")) == (12.5,)
    assert decode_message(framed, RECORD_HEAD.size, len(framed)) == (
        "/",
        "q",
        7,
        MessageRecord("amq.direct", "k", HEADER, b"body", 12.5),
    )


def version_2_expiring_record(vhost: str, queue: str, message_id: int, expires_at: float, body: bytes) -> bytes:
    """A kind-2 record as version 2 wrote it: the version-1 head with kind 2, then the f64 expiry."""
    names = [name.encode() for name in (vhost, queue, "", queue)]
    head = struct.pack("<BQHHHHI", 2, message_id, *map(len, names), len(HEADER)) + struct.pack("<d", expires_at)
    payload = head + b"".join(names) + HEADER + body
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def test_a_version_2_data_dir_recovers_beside_delayed_messages_of_version_3(tmp_path: Path) -> None:
    """Version 3 added kind 3 (a delayed exchange's held message): older segments still read, and a delayed
    record comes back from disk with its fire time, apart from the queue messages of the same name."""
    data = tmp_path / "data"
    data.mkdir()
    old = version_2_expiring_record("/", "dx", 1, 1_700_000_000.5, b"queued")
    (data / "msgs.0000000001").write_bytes(b"AMQPSEG\x00\x02\x00" + old)
    store = SegmentStore(data)
    store.put_delayed("/", "dx", 1, 1_800_000_000.25, MessageRecord("dx", "k", HEADER, b"held"))
    store.close()

    assert (data / "msgs.0000000002").read_bytes()[:10] == b"AMQPSEG\x00\x03\x00"
    store = SegmentStore(data)
    try:
        recovered = store.recover()
        assert recovered.messages[("/", "dx")] == [(1, MessageRecord("", "dx", HEADER, b"queued", 1_700_000_000.5))]
        assert recovered.delayed == {("/", "dx"): [(1, 1_800_000_000.25)]}
        assert store.read_delayed("/", "dx", 1) == MessageRecord("dx", "k", HEADER, b"held")
        store.remove_delayed("/", "dx", [1])
    finally:
        store.close()
    store = SegmentStore(data)
    try:
        assert store.recover().delayed == {}
    finally:
        store.close()


def test_a_delayed_record_is_kind_3_with_its_fire_time_in_the_expiry_slot() -> None:
    framed = encode_message("/", "dx", 9, MessageRecord("dx", "k", HEADER, b"body"), fire_at=12.5)
    payload = framed[RECORD_HEAD.size :]
    assert payload[0] == 3 and struct.unpack_from("<d", payload, 21)[0] == 12.5
    assert decode_message(payload, 0, len(payload)) == ("/", "dx", 9, MessageRecord("dx", "k", HEADER, b"body", 12.5))
