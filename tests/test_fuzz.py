"""Property tests: core.Connection survives arbitrary input and reports it the AMQP way.

Whatever a peer sends — garbage before the protocol header, garbage after the handshake, well-framed
frames of any type/channel/payload, or real methods with random arguments (encoded without pamqp's
validation) — ``receive_data`` never raises, everything the broker writes decodes as AMQP frames
(with pamqp), errors are ``connection.close`` with a hard-error code or ``channel.close`` with a
4xx code, never 541 INTERNAL_ERROR (a leaked Python exception), and nothing but ``close-ok``
follows a ``connection.close``.  Another connection on the same Broker keeps working afterwards.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands, encode
from pamqp.base import Frame as PamqpMethod

from amqp_server.core.broker import Broker
from tests.frames import PROTOCOL_HEADER, FakeClock, Peer, content, method, open_peer, parse, publish

HARD_ERROR_CODES = {501, 502, 503, 504, 505, 506, 530, 540, 541}
INTERNAL_ERROR = 541

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

NAMES = ["", "q", "x", "amq.direct", "amq.gen-abc", "amq.fanout", "missing", "direct", "fanout", "topic", "ctag", "é"]
names = st.sampled_from(NAMES) | st.text(max_size=12)
table_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2),
    max_leaves=4,
)
tables = st.dictionaries(
    st.sampled_from(
        [
            "x-max-length",
            "x-message-ttl",
            "x-expires",
            "x-queue-type",
            "x-dead-letter-exchange",
            "x-max-priority",
            "x-single-active-consumer",
            "x-priority",
            "alternate-exchange",
        ]
    )
    | st.text(max_size=8),
    table_values,
    max_size=3,
)

ARGUMENT_VALUES = {
    "bit": st.booleans(),
    "octet": st.integers(0, 255),
    "short": st.sampled_from([0, 1, 2, 312, 406]) | st.integers(0, 65535),
    "long": st.integers(0, 3) | st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 3) | st.integers(0, 2**64 - 1),
    "shortstr": names,
    "longstr": st.text(max_size=20),
    "table": tables,
}
NUMBER_FORMATS = {"octet": ">B", "short": ">H", "long": ">I", "longlong": ">Q"}
METHOD_CLASSES = sorted(commands.INDEX_MAPPING.values(), key=lambda cls: cls.index)
# What clients send on an open channel: drawn most of the time, so examples get past the first error.
CHANNEL_METHODS = [
    commands.Basic.Ack,
    commands.Basic.Cancel,
    commands.Basic.Consume,
    commands.Basic.Get,
    commands.Basic.Nack,
    commands.Basic.Qos,
    commands.Basic.Recover,
    commands.Basic.RecoverAsync,
    commands.Basic.Reject,
    commands.Channel.Flow,
    commands.Confirm.Select,
    commands.Exchange.Declare,
    commands.Exchange.Delete,
    commands.Queue.Bind,
    commands.Queue.Declare,
    commands.Queue.Delete,
    commands.Queue.Purge,
    commands.Queue.Unbind,
]


def encode_arguments(cls: type[PamqpMethod], values: dict) -> bytes:
    """Marshal a method's arguments like pamqp does, but without its validation (any name goes)."""
    out, bits, nbits = [], 0, 0
    for name in cls.__slots__:
        kind = cls.amqp_type(name)
        if kind == "bit":
            bits |= values[name] << nbits
            nbits += 1
            if nbits == 8:
                out.append(bytes([bits]))
                bits = nbits = 0
            continue
        if nbits:
            out.append(bytes([bits]))
            bits = nbits = 0
        value = values[name]
        if kind in NUMBER_FORMATS:
            out.append(struct.pack(NUMBER_FORMATS[kind], value))
        elif kind == "shortstr":
            out.append(encode.short_string(value) if len(value.encode()) <= 255 else b"\x00")
        elif kind == "longstr":
            out.append(encode.long_string(value))
        else:
            out.append(encode.field_table(value))
    if nbits:
        out.append(bytes([bits]))
    return struct.pack(">I", cls.index) + b"".join(out)


def raw_frame(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


fuzz_channels = st.sampled_from([1] * 6 + [0, 2, 3, 2047, 2048, 65535])


@st.composite
def random_methods(draw) -> bytes:
    """A method frame for a known method (mostly one a client sends on a channel), every argument random."""
    cls = draw(st.sampled_from(CHANNEL_METHODS * 4 + METHOD_CLASSES))
    values = {name: draw(ARGUMENT_VALUES[cls.amqp_type(name)]) for name in cls.__slots__}
    channel = draw(st.sampled_from([1] * 20 + [0, 2, 65535]))
    return raw_frame(1, channel, encode_arguments(cls, values))


@st.composite
def random_frames(draw) -> bytes:
    """A well-framed frame of any type, channel and payload (and, sometimes, a wrong end byte)."""
    frame_type = draw(st.sampled_from([1, 2, 3, 8]) | st.integers(0, 255))
    payload = draw(st.binary(max_size=40))
    end = draw(st.just(0xCE) | st.integers(0, 255))
    return raw_frame(frame_type, draw(fuzz_channels), payload, end)


@st.composite
def publishes(draw) -> bytes:
    """basic.publish + content whose declared and actual sizes may disagree."""
    channel = draw(st.sampled_from([1] * 9 + [2]))
    if draw(st.booleans()):
        head = raw_frame(
            1,
            channel,
            encode_arguments(
                commands.Basic.Publish,
                {
                    "ticket": 0,
                    "exchange": draw(names),
                    "routing_key": draw(names),
                    "mandatory": draw(st.booleans()),
                    "immediate": draw(st.sampled_from([False] * 9 + [True])),
                },
            ),
        )
    else:
        head = method(channel, commands.Basic.Publish(routing_key="q"))
    body = draw(st.binary(max_size=60))
    properties = commands.Basic.Properties(delivery_mode=draw(st.sampled_from([1, 2])), headers=draw(tables) or None)
    frames = content(channel, body, properties, frame_max=draw(st.sampled_from([9, 20, 131072])))
    if draw(st.integers(0, 3)) == 0:  # a property list cut short or with bytes after it: RabbitMQ refuses both
        header_size = struct.unpack_from(">I", frames, 3)[0]
        header = frames[7 : 7 + header_size]
        cut = draw(st.integers(0, header_size - 14))
        header = header[: header_size - cut] if cut else header + draw(st.binary(min_size=1, max_size=5))
        frames = struct.pack(">BHI", 2, channel, len(header)) + header + b"\xce" + frames[8 + header_size :]
    declared = draw(st.none() | st.integers(0, 100))
    if declared is not None:  # overwrite body_size (after the frame header, class id and weight)
        frames = frames[:11] + struct.pack(">Q", declared) + frames[19:]
    return head + frames


fuzz_frames = st.one_of(random_frames(), random_methods(), publishes())


@st.composite
def chunked(draw, stream: st.SearchStrategy[bytes]) -> list[bytes]:
    """The bytes of ``stream`` split into reads at random points."""
    data = draw(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


# -------------------------------------------------------------------- checks


def send_all(peer: Peer, chunks: list[bytes]) -> bytes:
    """Feed each read to the connection; return all it wrote."""
    out = []
    for chunk in chunks:
        peer.send(chunk)
        out.append(peer.connection.data_to_send())
    return b"".join(out)


def check_output(peer: Peer, output: bytes) -> list:
    """The broker's output decodes with pamqp and reports errors correctly; returns its method frames."""
    frames = parse(output)  # raises if anything is not a valid AMQP frame
    methods = [(ch, f) for ch, f in frames if isinstance(f, PamqpMethod)]
    for i, (channel, value) in enumerate(methods):
        if isinstance(value, commands.Connection.Close):
            # RabbitMQ's reply to content properties it cannot decode is 541 with the bare name;
            # a leaked Python exception says "INTERNAL_ERROR - internal error"
            assert value.reply_code != INTERNAL_ERROR or value.reply_text == "INTERNAL_ERROR", (
                f"a Python exception leaked: {value.reply_text}"
            )
            assert channel == 0
            assert value.reply_code in HARD_ERROR_CODES, value.reply_text
            after = [f for _, f in methods[i + 1 :]]
            assert all(isinstance(f, commands.Connection.CloseOk) for f in after), after
        elif isinstance(value, commands.Channel.Close):
            assert 400 <= value.reply_code < 500, value.reply_text
    if peer.connection.state.name == "CLOSING":
        assert methods and isinstance(methods[-1][1], commands.Connection.Close), methods[-3:]
    return methods


def bystander(broker: Broker) -> Peer:
    """A second connection that owns the queues and exchange the fuzzer aims at."""
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q"))
    peer.send_method(1, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    peer.send_method(1, commands.Queue.Bind(queue="q", exchange="x", routing_key="q"))
    peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="bystander"))
    peer.frames()
    return peer


def assert_still_works(peer: Peer, fuzzed: Peer) -> None:
    """After the fuzzed connection is gone, ``peer`` can still declare, publish and get."""
    fuzzed.connection.connection_lost()
    check_output(peer, peer.connection.data_to_send())
    peer.send_method(1, commands.Queue.Declare(queue="after-fuzz"))
    peer.send(publish(1, "after-fuzz", b"still here"))
    peer.send_method(1, commands.Basic.Get(queue="after-fuzz", no_ack=True))
    frames = peer.frames()
    methods = [f for _, f in frames if isinstance(f, PamqpMethod)]
    assert isinstance(methods[0], commands.Queue.DeclareOk)
    assert isinstance(methods[1], commands.Basic.GetOk)
    assert frames[-1][1].value == b"still here"
    assert not peer.connection.should_close


def fuzzed_pair() -> tuple[Peer, Peer]:
    """(connection to fuzz, bystander) on one Broker; the fuzzed one holds unacked deliveries 1 and 2."""
    broker = Broker(clock=FakeClock())
    other = bystander(broker)
    fuzzed = open_peer(broker)
    fuzzed.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="ctag"))
    for i in range(4):
        other.send(publish(1, "q", b"m%d" % i))
    delivered = [f for _, f in fuzzed.frames() if isinstance(f, commands.Basic.Deliver)]
    assert [d.delivery_tag for d in delivered] == [1, 2]
    other.frames()
    return fuzzed, other


# ------------------------------------------------------- (1) first input


first_inputs = st.one_of(
    st.binary(max_size=40),
    st.integers(0, 8).flatmap(lambda n: st.binary(max_size=30).map(lambda b: PROTOCOL_HEADER[:n] + b)),
    st.lists(fuzz_frames, max_size=5).map(lambda frames: PROTOCOL_HEADER + b"".join(frames)),
)


@FUZZ
@given(data=first_inputs)
def test_any_first_input_gets_nothing_the_protocol_header_or_valid_frames(data):
    peer = Peer(Broker(clock=FakeClock()))

    peer.send(data)
    output = peer.connection.data_to_send()

    if len(data) < 8 and PROTOCOL_HEADER.startswith(data):
        assert output == b""
        assert not peer.connection.should_close
    elif data[:8] != PROTOCOL_HEADER:
        assert output == PROTOCOL_HEADER
        assert peer.connection.should_close
    else:
        methods = check_output(peer, output)
        assert isinstance(methods[0][1], commands.Connection.Start)


# ------------------------------------------- (2) after handshake + channel.open


@FUZZ
@given(chunks=chunked(st.binary(max_size=300)))
def test_arbitrary_bytes_after_handshake_are_handled(chunks):
    fuzzed, other = fuzzed_pair()

    check_output(fuzzed, send_all(fuzzed, chunks))

    assert_still_works(other, fuzzed)


@FUZZ
@given(chunks=chunked(st.lists(random_frames(), min_size=1, max_size=8).map(b"".join)))
def test_random_frames_after_handshake_are_handled(chunks):
    fuzzed, other = fuzzed_pair()

    check_output(fuzzed, send_all(fuzzed, chunks))

    assert_still_works(other, fuzzed)


@FUZZ
@given(chunks=chunked(st.lists(st.one_of(random_methods(), publishes()), min_size=1, max_size=12).map(b"".join)))
def test_random_methods_and_publishes_after_handshake_are_handled(chunks):
    fuzzed, other = fuzzed_pair()

    check_output(fuzzed, send_all(fuzzed, chunks))

    assert_still_works(other, fuzzed)


@FUZZ
@given(frames=st.lists(random_methods(), min_size=1, max_size=6))
def test_random_methods_one_read_each_are_handled(frames):
    fuzzed, other = fuzzed_pair()

    output = send_all(fuzzed, frames)

    check_output(fuzzed, output)
    assert_still_works(other, fuzzed)


# ------------------------------------- (3) the other connection survives an error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(fuzz_frames, max_size=8))
def test_other_connection_keeps_working_after_a_connection_error(frames):
    fuzzed, other = fuzzed_pair()

    output = send_all(fuzzed, [b"".join(frames) + raw_frame(1, 0, b"\x00\x0a\x00\x33", end=0)])

    methods = check_output(fuzzed, output)
    assert fuzzed.connection.should_close or isinstance(methods[-1][1], commands.Connection.Close)
    assert_still_works(other, fuzzed)


def test_no_publisher_confirm_follows_connection_close():
    """Shrunk from the fuzzer: a publish confirmed in the same read as a connection error."""
    fuzzed, _ = fuzzed_pair()
    fuzzed.send_method(1, commands.Confirm.Select())
    fuzzed.frames()

    output = send_all(
        fuzzed, [publish(1, "q", b"") + method(1, commands.Connection.CloseOk()), b"\x08\x00\x00\x00\x00\x00\x00\xce"]
    )

    methods = check_output(fuzzed, output)
    assert isinstance(methods[-1][1], commands.Connection.Close)
