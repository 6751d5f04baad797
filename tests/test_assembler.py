"""amqp_server.wire.assembler: every way the same publish can arrive gives the same command and the same bytes.

A publish is fed as one read, one frame per read, and split in two at every byte
boundary; with one body frame (the ``whole`` fast path when it all arrives together)
and with several (the general path).  The command the assembler builds, and what both
the publisher (confirm) and a consumer (delivery) receive, must be identical.
"""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.errors import AMQPConnectionError, ChannelError
from amqp_server.wire.assembler import Assembler
from amqp_server.wire.framing import FrameReader
from amqp_server.wire.methods import decode_method
from tests.frames import FakeClock, content, method, open_peer

PROPERTIES = commands.Basic.Properties(content_type="text/plain", delivery_mode=2, headers={"k": "v"})


def publish_frames(body: bytes, frame_max: int) -> bytes:
    return method(1, commands.Basic.Publish(exchange="", routing_key="q", mandatory=True)) + content(
        1, body, PROPERTIES, frame_max=frame_max
    )


def frame_payloads(data: bytes) -> list[tuple[int, int, bytes]]:
    return FrameReader(131072).feed(data)


def assemble_one_by_one(frames: list[tuple[int, int, bytes]]) -> tuple:
    assembler = Assembler(max_message_size=1 << 20)
    _, publish = decode_method(frames[0][2])
    assembler.start(publish)
    commands_out = [assembler.feed(frame_type, payload, keep=True) for frame_type, _, payload in frames[1:]]
    assert all(command is None for command in commands_out[:-1]) and assembler.method is None
    return commands_out[-1]


def as_fields(command: tuple) -> tuple:
    publish, header, body = command
    return publish.exchange, publish.routing_key, publish.mandatory, publish.immediate, bytes(header), bytes(body)


@pytest.mark.parametrize("body_frames", [1, 3])
def test_the_fast_path_and_the_frame_by_frame_path_give_the_same_command(body_frames: int) -> None:
    body = b"0123456789" * 3
    frames = frame_payloads(publish_frames(body, frame_max=8 + -(-len(body) // body_frames)))
    assert len(frames) == 2 + body_frames
    slow = assemble_one_by_one(frames)
    assert as_fields(slow)[-1] == body
    if body_frames == 1:
        fast = Assembler(1 << 20).whole(frames[0][2], frames[1][2], frames[2][2])
        assert fast is not None and as_fields(fast) == as_fields(slow)


def test_whole_refuses_what_it_cannot_take_and_changes_nothing() -> None:
    frames = frame_payloads(publish_frames(b"abc", 131072))
    assembler = Assembler(max_message_size=2)  # over the limit: the general path raises the 406
    assert assembler.whole(frames[0][2], frames[1][2], frames[2][2]) is None
    assert assembler.method is None
    assembler.start(decode_method(frames[0][2])[1])
    with pytest.raises(ChannelError, match="message size 3 is larger than configured max size 2"):
        assembler.feed(frames[1][0], frames[1][2], keep=True)


def test_a_body_longer_than_its_header_declared_is_a_frame_error() -> None:
    frames = frame_payloads(publish_frames(b"abc", 131072))
    assembler = Assembler(1 << 20)
    assembler.start(decode_method(frames[0][2])[1])
    assembler.feed(frames[1][0], frames[1][2], keep=True)
    with pytest.raises(AMQPConnectionError, match="longer than the 3 bytes"):
        assembler.feed(frames[2][0], frames[2][2] + b"x", keep=True)


def run(reads: list[bytes]) -> tuple[bytes, bytes]:
    """Publish (confirm mode, mandatory) to a queue with a consumer, fed as ``reads``.

    Returns (publisher's, consumer's) bytes out.
    """
    broker = Broker(clock=FakeClock())
    publisher, consumer = open_peer(broker), open_peer(broker)
    publisher.send_method(1, commands.Queue.Declare(queue="q"))
    publisher.send_method(1, commands.Confirm.Select())
    consumer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="ctag"))
    publisher.connection.data_to_send()
    consumer.connection.data_to_send()
    for data in reads:
        publisher.send(data)
    return publisher.connection.data_to_send(), consumer.connection.data_to_send()


@pytest.mark.parametrize("body_frames", [1, 3])
def test_every_split_of_a_publish_gives_the_same_bytes_out(body_frames: int) -> None:
    body = b"0123456789" * 3
    data = publish_frames(body, frame_max=8 + -(-len(body) // body_frames))
    expected = run([data])
    publisher_out, consumer_out = expected
    assert b"ctag" in consumer_out and body[:10] in consumer_out and publisher_out  # a delivery and a confirm
    frame_ends, offset = [], 0
    for _frame_type, _, payload in frame_payloads(data):
        offset += 8 + len(payload)
        frame_ends.append(offset)
    assert run([data[start:end] for start, end in zip([0, *frame_ends], frame_ends)]) == expected
    for cut in range(1, len(data)):
        assert run([data[:cut], data[cut:]]) == expected, cut
