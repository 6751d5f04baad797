"""amqp_server.wire.methods and amqp_server.wire.content against pamqp as the reference codec.

* Golden tests: every hand-written encoder (Basic.Deliver, Basic.GetOk, Basic.Return, Basic.Ack,
  Queue.DeclareOk) produces exactly the bytes ``pamqp.frame.marshal`` produces for the same method,
  and names pamqp's validation would refuse (any UTF-8, as RabbitMQ accepts) still decode with pamqp.
* The hand-written Basic.Publish decoder agrees with pamqp's decoder.
* decode_method errors carry RabbitMQ 3.10's reply codes (probed: a truncated or over-long
  method payload is "501 FRAME_ERROR - cannot decode <<...>>" naming the method).
* The content-header peek (delivery_mode) agrees with pamqp's full property decode.
"""

from __future__ import annotations

import datetime
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from amqp_server.errors import AMQPConnectionError
from amqp_server.wire import content
from amqp_server.wire.methods import (
    Publish,
    ack_frame,
    decode_method,
    deliver_content,
    get_ok_frame,
    queue_declare_ok_frame,
    return_frame,
    shortstr,
)

PAMQP_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@#,/+ "

# Names pamqp accepts for exchanges (its regex, at most 127 characters).
pamqp_exchange_names = st.text(alphabet=PAMQP_NAME_ALPHABET, max_size=127)
# Any UTF-8 text that fits a shortstr (what RabbitMQ accepts for routing keys, tags and names).
shortstr_texts = st.text(max_size=255).filter(lambda s: len(s.encode()) <= 255)
channels = st.integers(0, 65535)
delivery_tags = st.integers(0, 2**63 - 1)  # pamqp codes longlong as signed
counts = st.integers(0, 2**32 - 1)

GOLDEN = settings(max_examples=150, deadline=None)

NAMES = [
    "",
    "q",
    "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
    "x" * 255,
    "é" * 127,  # 254 bytes of two-byte UTF-8
    "名前 with spaces",
    "emoji 🐇",
    "tab\tand\nnewline",
]


def unmarshal_one(data: bytes):
    """Decode exactly one frame with pamqp, checking nothing is left over."""
    consumed, channel, value = pamqp_frame.unmarshal(data)
    assert consumed == len(data)
    return channel, value


# ---------------------------------------------------------------- golden encoders


@GOLDEN
@given(
    channel=channels,
    consumer_tag=shortstr_texts,
    delivery_tag=delivery_tags,
    redelivered=st.booleans(),
    exchange=pamqp_exchange_names,
    routing_key=shortstr_texts,
)
def test_deliver_content_matches_pamqp(channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key):
    """Basic.Deliver + content header + body frames, built in one piece, equal pamqp's frames byte for byte."""
    for body in (b"", b"hello", b"x" * 20_000, b"y" * 300_000):
        header = pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties(delivery_mode=2))
        expected = [
            pamqp_frame.marshal(
                commands.Basic.Deliver(consumer_tag, delivery_tag, redelivered, exchange, routing_key), channel
            ),
            pamqp_frame.marshal(header, channel),
        ]
        expected += [
            pamqp_frame.marshal(pamqp_body.ContentBody(body[start : start + 131064]), channel)
            for start in range(0, len(body), 131064)
        ]
        parts = deliver_content(
            channel,
            shortstr(consumer_tag),
            delivery_tag,
            redelivered,
            shortstr(exchange),
            shortstr(routing_key),
            header.marshal(),
            body,
            131072,
        )
        assert b"".join(parts) == b"".join(expected)


@GOLDEN
@given(
    channel=channels,
    delivery_tag=delivery_tags,
    redelivered=st.booleans(),
    exchange=pamqp_exchange_names,
    routing_key=shortstr_texts,
    message_count=counts,
)
def test_get_ok_frame_matches_pamqp(channel, delivery_tag, redelivered, exchange, routing_key, message_count):
    expected = pamqp_frame.marshal(
        commands.Basic.GetOk(delivery_tag, redelivered, exchange, routing_key, message_count), channel
    )

    assert (
        get_ok_frame(channel, delivery_tag, redelivered, shortstr(exchange), shortstr(routing_key), message_count)
        == expected
    )


@GOLDEN
@given(
    channel=channels,
    reply_code=st.sampled_from([312, 313, 311, 0, 65535]),
    reply_text=shortstr_texts,
    exchange=pamqp_exchange_names,
    routing_key=shortstr_texts,
)
def test_return_frame_matches_pamqp(channel, reply_code, reply_text, exchange, routing_key):
    expected = pamqp_frame.marshal(commands.Basic.Return(reply_code, reply_text, exchange, routing_key), channel)

    assert return_frame(channel, reply_code, reply_text, shortstr(exchange), shortstr(routing_key)) == expected


@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("delivery_tag", [0, 1, 255, 2**32, 2**63 - 1])
@pytest.mark.parametrize("channel", [0, 1, 65535])
def test_ack_frame_matches_pamqp(channel, delivery_tag, multiple):
    expected = pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=delivery_tag, multiple=multiple), channel)

    assert ack_frame(channel, delivery_tag, multiple) == expected


def test_ack_frame_multiple_flag_decodes_with_pamqp():
    _, single = unmarshal_one(ack_frame(3, 10, False))
    _, multiple = unmarshal_one(ack_frame(3, 10, True))

    assert (single.delivery_tag, single.multiple) == (10, False)
    assert (multiple.delivery_tag, multiple.multiple) == (10, True)


@GOLDEN
@given(
    channel=channels,
    queue=st.text(alphabet=PAMQP_NAME_ALPHABET, max_size=255),
    message_count=counts,
    consumer_count=counts,
)
def test_queue_declare_ok_frame_matches_pamqp(channel, queue, message_count, consumer_count):
    expected = pamqp_frame.marshal(commands.Queue.DeclareOk(queue, message_count, consumer_count), channel)

    assert queue_declare_ok_frame(channel, queue, message_count, consumer_count) == expected


# --------------------------------------------- names pamqp's validation refuses


@pytest.mark.parametrize("name", NAMES)
def test_queue_declare_ok_frame_with_any_utf8_name_decodes_with_pamqp(name):
    channel, value = unmarshal_one(queue_declare_ok_frame(5, name, 3, 1))

    assert channel == 5
    assert isinstance(value, commands.Queue.DeclareOk)
    assert (value.queue, value.message_count, value.consumer_count) == (name, 3, 1)


@pytest.mark.parametrize("name", NAMES)
def test_deliver_with_any_utf8_names_decodes_with_pamqp(name):
    delivery = b"".join(
        deliver_content(
            2,
            shortstr(name),
            9,
            True,
            shortstr(name),
            shortstr(name),
            pamqp_header.ContentHeader(0, 0, commands.Basic.Properties()).marshal(),
            b"",
            131072,
        )
    )
    channel, value = unmarshal_one(delivery[: pamqp_frame.frame_parts(delivery)[2] + 8])

    assert channel == 2
    assert isinstance(value, commands.Basic.Deliver)
    assert (value.consumer_tag, value.delivery_tag, value.redelivered, value.exchange, value.routing_key) == (
        name,
        9,
        True,
        name,
        name,
    )


@pytest.mark.parametrize("name", NAMES)
def test_get_ok_frame_with_any_utf8_names_decodes_with_pamqp(name):
    _, value = unmarshal_one(get_ok_frame(1, 2**63 - 1, False, shortstr(name), shortstr(name), 7))

    assert isinstance(value, commands.Basic.GetOk)
    assert (value.delivery_tag, value.redelivered, value.exchange, value.routing_key, value.message_count) == (
        2**63 - 1,
        False,
        name,
        name,
        7,
    )


@pytest.mark.parametrize("name", NAMES)
def test_return_frame_with_any_utf8_names_decodes_with_pamqp(name):
    _, value = unmarshal_one(return_frame(1, 312, "NO_ROUTE", shortstr(name), shortstr(name)))

    assert isinstance(value, commands.Basic.Return)
    assert (value.reply_code, value.reply_text, value.exchange, value.routing_key) == (312, "NO_ROUTE", name, name)


# ------------------------------------------------------ Basic.Publish decode


def publish_payload(exchange: str, routing_key: str, mandatory: bool, immediate: bool, ticket: int = 0) -> bytes:
    """Basic.Publish method payload built by hand (pamqp would refuse some of these exchange names)."""
    return (
        struct.pack(">HHH", 60, 40, ticket)
        + shortstr(exchange)
        + shortstr(routing_key)
        + bytes([mandatory | immediate << 1])
    )


def pamqp_decode(payload: bytes):
    return unmarshal_one(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")[1]


def assert_same_publish(payload: bytes) -> Publish:
    index, ours = decode_method(payload)
    reference = pamqp_decode(payload)
    assert index == commands.Basic.Publish.index
    assert isinstance(ours, Publish)
    assert (ours.exchange, ours.routing_key, ours.mandatory, ours.immediate) == (
        reference.exchange,
        reference.routing_key,
        reference.mandatory,
        reference.immediate,
    )
    return ours


@pytest.mark.parametrize("exchange", NAMES)
@pytest.mark.parametrize("routing_key", NAMES)
def test_publish_decode_matches_pamqp_for_any_names(exchange, routing_key):
    ours = assert_same_publish(publish_payload(exchange, routing_key, False, False))

    assert (ours.exchange, ours.routing_key) == (exchange, routing_key)


@pytest.mark.parametrize("mandatory", [False, True])
@pytest.mark.parametrize("immediate", [False, True])
def test_publish_decode_matches_pamqp_for_flags(mandatory, immediate):
    ours = assert_same_publish(publish_payload("amq.direct", "rk", mandatory, immediate))

    assert (ours.mandatory, ours.immediate) == (mandatory, immediate)


@GOLDEN
@given(exchange=pamqp_exchange_names, routing_key=shortstr_texts, mandatory=st.booleans(), immediate=st.booleans())
def test_publish_decode_of_pamqp_marshalled_publish_matches_pamqp(exchange, routing_key, mandatory, immediate):
    data = pamqp_frame.marshal(
        commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate), 1
    )

    ours = assert_same_publish(data[7:-1])

    assert (ours.exchange, ours.routing_key, ours.mandatory, ours.immediate) == (
        exchange,
        routing_key,
        mandatory,
        immediate,
    )


def test_other_methods_decode_through_pamqp():
    method = commands.Queue.Declare(queue="q", durable=True, arguments={"x-max-length": 10})
    payload = pamqp_frame.marshal(method, 1)[7:-1]

    index, value = decode_method(payload)

    assert index == commands.Queue.Declare.index
    assert isinstance(value, commands.Queue.Declare)
    assert (value.queue, value.durable, value.arguments) == ("q", True, {"x-max-length": 10})


# ------------------------------------------------------ decode_method errors


@pytest.mark.parametrize("class_id, method_id", [(99, 1), (50, 99), (10, 99), (0, 0), (65535, 65535)])
def test_unknown_class_or_method_is_command_invalid(class_id, method_id):
    # RabbitMQ 3.10's reader crashes on these (RST, no close frame); 503 is the spec's answer.
    with pytest.raises(AMQPConnectionError) as caught:
        decode_method(struct.pack(">HH", class_id, method_id) + b"\x00" * 8)

    assert caught.value.reply_code == 503


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x32", b"\x00\x32\x00"])
def test_method_payload_shorter_than_its_ids_is_a_frame_error(payload):
    with pytest.raises(AMQPConnectionError) as caught:
        decode_method(payload)

    assert caught.value.reply_code == 501


def test_method_payload_shorter_than_its_ids_reply_text_like_rabbitmq():
    # RabbitMQ 3.10: "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame"
    with pytest.raises(AMQPConnectionError) as caught:
        decode_method(b"\x00\x32")

    assert caught.value.reply_text.startswith("FRAME_ERROR - type 1, ")


QUEUE_DECLARE = pamqp_frame.marshal(commands.Queue.Declare(queue="abcdef"), 1)[7:-1]


def decode_error(payload: bytes) -> tuple[int, int, int, str]:
    """(reply code, class id, method id, reply text) of the error decode_method raises for ``payload``."""
    with pytest.raises(AMQPConnectionError) as caught:
        decode_method(payload)
    error = caught.value
    return error.reply_code, error.class_id, error.method_id, error.reply_text


def test_truncated_method_is_a_frame_error_naming_the_method():
    # RabbitMQ 3.10: 501 "FRAME_ERROR - cannot decode <<0,0,6,97>>", class_id=50, method_id=10
    for cut in range(4, len(QUEUE_DECLARE)):
        code, class_id, method_id, text = decode_error(QUEUE_DECLARE[:cut])
        assert (code, class_id, method_id) == (501, 50, 10), f"cut at {cut}: {text}"
        assert text.startswith("FRAME_ERROR - cannot decode"), f"cut at {cut}"


def test_method_with_trailing_bytes_is_a_frame_error_naming_the_method():
    # RabbitMQ 3.10 refuses extra bytes after the last argument the same way as missing ones.
    code, class_id, method_id, text = decode_error(QUEUE_DECLARE + b"zzzz")

    assert (code, class_id, method_id) == (501, 50, 10)
    assert text.startswith("FRAME_ERROR - cannot decode")


PUBLISH = publish_payload("exchange-é", "routing.key", True, False)


def test_truncated_publish_is_a_frame_error_naming_basic_publish():
    for cut in range(4, len(PUBLISH)):
        code, class_id, method_id, text = decode_error(PUBLISH[:cut])
        assert (code, class_id, method_id) == (501, 60, 40), f"cut at {cut}: {text}"


def test_publish_with_trailing_bytes_is_a_frame_error_naming_basic_publish():
    code, class_id, method_id, _ = decode_error(PUBLISH + b"\x00")

    assert (code, class_id, method_id) == (501, 60, 40)


# ------------------------------------------------------ content header peek

short_texts = st.text(max_size=40)
table_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": short_texts,
        "content_encoding": short_texts,
        "headers": st.dictionaries(st.text(max_size=20), table_values, max_size=5),
        "delivery_mode": st.sampled_from([1, 2]),  # pamqp refuses other values
        "priority": st.integers(0, 255),
        "correlation_id": short_texts,
        "reply_to": short_texts,
        "expiration": st.integers(0, 10**9).map(str),
        "message_id": short_texts,
        "timestamp": st.datetimes(
            min_value=datetime.datetime(1970, 1, 1),
            max_value=datetime.datetime(2100, 1, 1),
            timezones=st.just(datetime.UTC),
        ).map(lambda d: d.replace(microsecond=0)),
        "message_type": short_texts,
        "user_id": short_texts,
        "app_id": short_texts,
    },
)


@settings(max_examples=300, deadline=None)
@given(props=properties, body_size=st.integers(0, 2**63 - 1))
def test_delivery_mode_peek_matches_pamqp(props, body_size):
    payload = pamqp_header.ContentHeader(0, body_size, commands.Basic.Properties(**props)).marshal()
    decoded = pamqp_header.ContentHeader()
    decoded.unmarshal(payload)

    expected = decoded.properties.delivery_mode
    assert content.peek_properties(payload)[0] == (1 if expected is None else expected)
    assert content.parse_header(payload)[:2] == (60, body_size)
    assert content.decode_properties(payload) == decoded.properties


def test_delivery_mode_defaults_to_transient_without_properties():
    payload = pamqp_header.ContentHeader(0, 3, commands.Basic.Properties()).marshal()

    assert content.peek_properties(payload)[0] == 1


def test_delivery_mode_after_a_large_headers_table():
    props = commands.Basic.Properties(
        content_type="application/json",
        content_encoding="gzip",
        headers={"k" * 200: "v" * 70_000, "n": 1},
        delivery_mode=2,
        priority=9,
    )
    payload = pamqp_header.ContentHeader(0, 1, props).marshal()

    assert content.peek_properties(payload)[0] == 2


def test_parse_header_rejects_a_short_payload():
    with pytest.raises(content.ContentHeaderError):
        content.parse_header(b"\x00\x3c\x00\x00")


@given(delivery_tag=st.integers(min_value=0, max_value=2**63 - 1), multiple=st.booleans())
def test_hand_decoded_basic_ack_equals_pamqp(delivery_tag, multiple):
    payload = pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=delivery_tag, multiple=multiple), 1)[7:-1]
    index, method = decode_method(payload)
    assert index == commands.Basic.Ack.index
    assert (method.delivery_tag, method.multiple) == (delivery_tag, multiple)
