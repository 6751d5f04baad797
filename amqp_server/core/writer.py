"""One connection's outbox: every frame for the peer goes through here, and here flushes are scheduled.

RabbitMQ's ``rabbit_writer``: frames are batched and the I/O layer writes them
in one go.  ``on_output`` is called when the first frame of a batch is queued
(the I/O layer then drains ``take`` once per loop tick); ``frame_max`` is the
negotiated limit the content encoders split bodies at.  ``Channel.deliver``, the
hottest writer, appends its Basic.Deliver frames to ``outbox`` itself (measured, see there).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pamqp.base import Frame as PamqpMethod

from ..wire.framing import FRAME_END_BYTE, FRAME_HEADER, FRAME_MIN_SIZE, body_frames
from ..wire.methods import method_frame

_FRAME_HEADER = struct.Struct(">BHI")


class Writer:
    """The frames queued for one peer since the I/O layer last took them."""

    __slots__ = ("outbox", "on_output", "frame_max", "writable")

    def __init__(self, on_output: Callable[[], None] | None = None, frame_max: int = FRAME_MIN_SIZE) -> None:
        self.outbox: list[bytes | memoryview] = []  # memoryview: a large body's frames are slices of it, not copies
        self.on_output = on_output
        self.frame_max = frame_max
        self.writable = True  # transport flow control (the I/O layer's pause/resume): no deliveries while False

    def send(self, data: bytes) -> None:
        """Queue encoded frames."""
        if not self.outbox and self.on_output is not None:
            self.on_output()
        self.outbox.append(data)

    def send_frames(self, frames: list[bytes | memoryview]) -> None:
        """Queue the pieces of one encoded command (a delivery: method, header and body frames)."""
        if not self.outbox and self.on_output is not None:
            self.on_output()
        self.outbox += frames

    def send_method(self, channel_id: int, method: PamqpMethod) -> None:
        self.send(method_frame(channel_id, method))

    def send_content(self, channel_id: int, method: bytes, header: bytes, body: bytes) -> None:
        """A content-bearing method frame (GetOk, Return), the publisher's raw header, the body split at frame_max."""
        self.send(method)
        outbox = self.outbox
        outbox.append(_FRAME_HEADER.pack(FRAME_HEADER, channel_id, len(header)) + header + FRAME_END_BYTE)
        outbox.extend(body_frames(channel_id, body, self.frame_max))

    def take(self) -> bytes:
        """Everything queued since the last call (b"" when nothing is)."""
        if not self.outbox:
            return b""
        data = b"".join(self.outbox)
        self.outbox.clear()
        return data
