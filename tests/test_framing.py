"""amqp_server.wire.framing: FrameReader (splitting a byte stream into frames, rejecting bad framing
with 501 FRAME_ERROR as early as possible) and body_frames (splitting a body at frame_max).

Frames are built with pamqp, independently of the code under test.
"""

from __future__ import annotations

import struct

import pytest
from pamqp import body as pamqp_body
from pamqp import commands, heartbeat
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from amqp_server.errors import AMQPConnectionError
from amqp_server.wire.framing import FRAME_MIN_SIZE, FrameReader, body_frames

METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def sample_stream() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """A stream of one frame of each type, and the (type, channel, payload) triples it holds."""
    frames = [
        pamqp_frame.marshal(commands.Queue.Declare(queue="q1", durable=True), 1),
        pamqp_frame.marshal(pamqp_header.ContentHeader(0, 5, commands.Basic.Properties(delivery_mode=2)), 1),
        pamqp_frame.marshal(pamqp_body.ContentBody(b"hello"), 1),
        pamqp_frame.marshal(heartbeat.Heartbeat(), 0),
        pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=7, multiple=True), 65535),
        raw_frame(BODY, 2, b""),
    ]
    expected = [(f[0], struct.unpack(">H", f[1:3])[0], f[7:-1]) for f in frames]
    return b"".join(frames), expected


def test_one_whole_frame_is_returned_with_type_channel_and_payload():
    data = pamqp_frame.marshal(commands.Channel.Open(), 3)
    reader = FrameReader()

    assert reader.feed(data) == [(METHOD, 3, data[7:-1])]
    assert reader.error is None


def test_several_frames_in_one_feed_are_returned_in_order():
    stream, expected = sample_stream()
    reader = FrameReader()

    assert reader.feed(stream) == expected
    assert reader.error is None


def test_byte_by_byte_feeding_gives_the_same_frames():
    stream, expected = sample_stream()
    reader = FrameReader()

    frames = []
    for i in range(len(stream)):
        frames += reader.feed(stream[i : i + 1])

    assert frames == expected
    assert reader.error is None


def test_a_split_at_every_byte_boundary_gives_the_same_frames():
    stream, expected = sample_stream()
    for split in range(len(stream) + 1):
        reader = FrameReader()
        frames = reader.feed(stream[:split]) + reader.feed(stream[split:])
        assert frames == expected, f"split at {split}"
        assert reader.error is None


def test_a_frame_is_not_returned_until_its_end_byte_arrives():
    data = pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=10), 1)
    reader = FrameReader()

    assert reader.feed(data[:-1]) == []
    assert reader.feed(data[-1:]) == [(METHOD, 1, data[7:-1])]


def test_frame_of_exactly_max_frame_size_is_accepted():
    reader = FrameReader(max_frame_size=4096)
    payload = b"x" * (4096 - 8)

    assert reader.feed(raw_frame(BODY, 1, payload)) == [(BODY, 1, payload)]
    assert reader.error is None


def test_oversized_frame_is_rejected_from_the_header_alone():
    reader = FrameReader(max_frame_size=4096)

    assert reader.feed(struct.pack(">BHI", METHOD, 1, 4096 + 1)) == []

    assert isinstance(reader.error, AMQPConnectionError)
    assert reader.error.reply_code == 501
    # RabbitMQ 3.10: "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,4970,4088}"
    assert reader.error.reply_text.startswith("FRAME_ERROR - type 1, ")


@pytest.mark.parametrize("payload_size", [4096 - 7, 4096])
def test_payload_up_to_frame_max_is_accepted_like_rabbitmq(payload_size):
    # RabbitMQ 3.10 rejects only a payload larger than frame_max itself (probed: 131065 and 131072
    # accepted with frame_max 131072, 131073 refused), so clients that count the frame overhead
    # differently keep working.
    reader = FrameReader(max_frame_size=4096)
    payload = b"p" * payload_size

    assert reader.feed(raw_frame(BODY, 1, payload)) == [(BODY, 1, payload)]
    assert reader.error is None


def test_oversized_frame_limit_follows_the_negotiated_frame_max():
    reader = FrameReader()
    assert reader.max_frame_size == FRAME_MIN_SIZE
    reader.max_frame_size = 131072

    assert reader.feed(struct.pack(">BHI", BODY, 1, 131072 - 8)) == []
    assert reader.error is None
    assert reader.feed(b"y" * (131072 - 8) + b"\xce") == [(BODY, 1, b"y" * (131072 - 8))]

    reader.feed(struct.pack(">BHI", BODY, 1, 131072 + 1))
    assert reader.error is not None and reader.error.reply_code == 501


def test_huge_declared_size_is_rejected_before_any_payload_is_buffered():
    reader = FrameReader(max_frame_size=131072)

    reader.feed(struct.pack(">BHI", BODY, 1, 0xFFFFFFFF))

    assert reader.error is not None and reader.error.reply_code == 501
    assert reader.feed(b"z" * 100_000) == []  # a stopped reader ignores further input


@pytest.mark.parametrize("end_byte", [b"\x00", b"\xcd", b"\xff", b"A"])
def test_bad_frame_end_byte_is_a_frame_error(end_byte):
    reader = FrameReader()

    frames = reader.feed(raw_frame(METHOD, 1, b"\x00\x14\x00\x0a\x00", end=end_byte))

    assert frames == []
    assert reader.error is not None
    assert reader.error.reply_code == 501
    assert reader.error.reply_text.startswith("FRAME_ERROR - type 1, ")


@pytest.mark.parametrize("frame_type", [0, 4, 7, 9, 65, 206, 255])
def test_unknown_frame_type_is_a_frame_error(frame_type):
    reader = FrameReader()

    frames = reader.feed(raw_frame(frame_type, 0, b"abc"))

    assert frames == []
    assert reader.error is not None and reader.error.reply_code == 501


def test_unknown_frame_type_reply_text_names_the_type_like_rabbitmq():
    # RabbitMQ 3.10: "FRAME_ERROR - type 9, all octets = <<\"abc\">>: unknown_frame"
    reader = FrameReader()

    reader.feed(raw_frame(9, 1, b"abc"))

    assert reader.error is not None
    assert reader.error.reply_text.startswith("FRAME_ERROR - type 9, ")


def test_unknown_frame_type_is_detected_from_the_header_alone():
    reader = FrameReader()

    reader.feed(struct.pack(">BHI", 9, 0, 3))

    assert reader.error is not None and reader.error.reply_code == 501


@pytest.mark.parametrize(
    "bad",
    [
        raw_frame(METHOD, 1, b"\x00\x14\x00\x0a\x00", end=b"\x00"),
        raw_frame(9, 1, b"abc"),
        struct.pack(">BHI", BODY, 1, FRAME_MIN_SIZE + 1),
    ],
)
def test_frames_before_a_bad_frame_are_still_returned(bad):
    stream, expected = sample_stream()
    good_after = pamqp_frame.marshal(commands.Channel.Open(), 9)
    reader = FrameReader()

    assert reader.feed(stream + bad + good_after) == expected
    assert reader.error is not None and reader.error.reply_code == 501
    assert reader.feed(good_after) == []


def test_frames_before_a_bad_frame_fed_separately_are_still_returned():
    good = pamqp_frame.marshal(commands.Basic.Get(queue="q"), 1)
    reader = FrameReader()

    frames = reader.feed(good + good[:5])
    frames += reader.feed(good[5:] + raw_frame(HEADER, 1, b"", end=b"\x01"))

    assert frames == [(METHOD, 1, good[7:-1])] * 2
    assert reader.error is not None and reader.error.reply_code == 501


def parse_body_frames(parts: list[bytes]) -> list[tuple[int, bytes]]:
    """Decode body_frames output with pamqp: [(channel, body chunk)]."""
    data = b"".join(parts)
    out = []
    while data:
        consumed, channel, value = pamqp_frame.unmarshal(data)
        assert isinstance(value, pamqp_body.ContentBody)
        out.append((channel, value.value))
        data = data[consumed:]
    return out


def test_body_frames_of_an_empty_body_is_no_frame():
    assert body_frames(1, b"", 4096) == []


@pytest.mark.parametrize("frame_max", [4096, 131072])
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_body_frames_around_one_frame_max(frame_max, extra):
    chunk = frame_max - 8
    body = bytes(range(256)) * ((chunk + extra) // 256 + 1)
    body = body[: chunk + extra]

    frames = parse_body_frames(body_frames(7, body, frame_max))

    assert [len(piece) for _, piece in frames] == ([chunk + extra] if extra <= 0 else [chunk, 1])
    assert {channel for channel, _ in frames} == {7}
    assert b"".join(piece for _, piece in frames) == body


def test_body_frames_splits_a_large_body_into_full_frames_then_the_rest():
    frame_max = 4096
    chunk = frame_max - 8
    body = b"".join(struct.pack(">I", i) for i in range(10_000))  # 40000 bytes

    parts = body_frames(65535, body, frame_max)
    frames = parse_body_frames(parts)

    sizes = [len(piece) for _, piece in frames]
    assert sizes == [chunk] * (len(body) // chunk) + [len(body) % chunk]
    assert b"".join(piece for _, piece in frames) == body
    assert {channel for channel, _ in frames} == {65535}
    reader = FrameReader(max_frame_size=frame_max)
    assert [payload for _, _, payload in reader.feed(b"".join(parts))] == [piece for _, piece in frames]
    assert reader.error is None
