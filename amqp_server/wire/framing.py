"""AMQP 0-9-1 framing: split a byte stream into frames, and build frames to send.

How it works: ``FrameReader.feed`` walks the received bytes by offset with a
prebuilt ``struct.Struct`` (straight over ``data`` when nothing is buffered, else
over one ``bytearray`` holding the partial frame left from the last read).  The 7-byte header is checked (type,
size against the negotiated ``frame_max``) *before* waiting for the payload, so
a peer cannot make us buffer a huge frame; the 0xCE end byte is checked before
the payload is handed on.  The consumed prefix is trimmed once per ``feed``.
Payloads are returned as complete, checked ``bytes`` for pamqp or the fast codecs.
"""

from __future__ import annotations

import struct

from ..errors import (
    AMQPConnectionError,
    erlang_binary,
    frame_too_large,
    invalid_frame_end,
    unknown_frame_type,
)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
FRAME_OVERHEAD = 8  # 7-byte header + end byte
FRAME_MIN_SIZE = 4096  # the largest frame accepted before tune-ok (spec: frame-min-size)

KNOWN_FRAME_TYPES = frozenset((FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT))

_HEADER = struct.Struct(">BHI")
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

Frame = tuple[int, int, bytes]  # (frame type, channel, payload)


class FrameReader:
    """Turns received bytes into whole frames.

    Bad framing stops the reader: the frames before the fault are still returned
    (they were valid and must be acted on), and ``error`` holds the 501 to send.
    """

    __slots__ = ("_buffer", "max_frame_size", "error")

    def __init__(self, max_frame_size: int = FRAME_MIN_SIZE) -> None:
        self._buffer = bytearray()
        self.max_frame_size = max_frame_size
        self.error: AMQPConnectionError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """Return every frame completed by ``data``, in order; keep the partial rest buffered."""
        if self.error is not None:
            return []
        buffer = self._buffer
        # Nothing buffered (the usual case: reads end on frame boundaries): slice the payloads straight
        # out of ``data``, one copy each, instead of appending it to the buffer and copying twice.
        # measured: frame reader 2.4 → 2.0 µs per 3-frame message (same-process A/B, medians)
        direct = not buffer and type(data) is bytes
        if direct:
            source: bytes | bytearray = data
        else:
            buffer += data
            source = buffer
        frames: list[Frame] = []
        offset = 0
        end = len(source)
        unpack_from = _HEADER.unpack_from
        # RabbitMQ refuses a payload larger than frame_max itself (it allows the 8 bytes of frame
        # overhead as fudge, though its error text reports frame_max - 8); we accept the same.
        max_payload = self.max_frame_size
        try:
            while end - offset >= 7:
                frame_type, channel, size = unpack_from(source, offset)
                if frame_type not in KNOWN_FRAME_TYPES:
                    raise unknown_frame_type(frame_type)
                if size > max_payload:
                    raise frame_too_large(frame_type, size, max_payload - FRAME_OVERHEAD)
                frame_end = offset + 7 + size
                if frame_end >= end:
                    break  # wait for the rest of the payload and the end byte
                if source[frame_end] != FRAME_END:
                    octets = erlang_binary(bytes(source[offset + 7 : frame_end]))
                    raise invalid_frame_end(frame_type, octets, source[frame_end])
                payload = source[offset + 7 : frame_end]
                # direct: source is data, a bytes, so the slice is one (mypy sees bytes | bytearray)
                frames.append((frame_type, channel, payload if direct else bytes(payload)))  # type: ignore[arg-type]
                offset = frame_end + 1
        except AMQPConnectionError as error:
            self.error = error
            buffer.clear()
            return frames
        if direct:
            if offset < end:
                buffer += memoryview(data)[offset:]
        elif offset:
            del buffer[:offset]
        return frames


def body_frames(channel: int, body: bytes, frame_max: int) -> list[bytes | memoryview]:
    """Split ``body`` into content-body frames that each fit in ``frame_max``.

    The pieces of a large body are memoryview slices, not copies: the outbox is joined
    once when it is written, so each byte of a 1 MiB body is copied once instead of twice.
    """
    if not body:
        return []
    chunk = frame_max - FRAME_OVERHEAD
    if len(body) <= chunk:
        return [_HEADER.pack(FRAME_BODY, channel, len(body)), body, FRAME_END_BYTE]
    parts: list[bytes | memoryview] = []
    view = memoryview(body)
    for start in range(0, len(body), chunk):
        piece = view[start : start + chunk]
        parts.append(_HEADER.pack(FRAME_BODY, channel, len(piece)))
        parts.append(piece)
        parts.append(FRAME_END_BYTE)
    return parts
