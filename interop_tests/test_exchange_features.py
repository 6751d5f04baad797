"""Exchange features through pika's BlockingConnection, as RabbitMQ 3.10 behaves.

Covers routing by real publishes through direct, fanout, topic (``*``, ``#``,
empty words, a pathological ``#.#.#.#`` pattern) and headers exchanges
(``x-match`` all/any/all-with-x/any-with-x, void values); the built-in
``amq.*`` exchanges; internal exchanges; ``exchange.delete`` with if_unused;
exchange-to-exchange bindings (two hops, unbind, a loop); an unknown exchange
type (connection error 503); alternate exchanges (with and without
mandatory); sender-selected distribution (``CC``/``BCC`` headers); and
auto-delete exchanges, also cascading through exchange-to-exchange bindings.

The test channel is in confirm mode, so when ``basic_publish`` returns the
message is in every queue it was routed to and a ``basic.get`` sees it.  Queues
are exclusive (they go away with the connection); exchanges are deleted over a
fresh connection after each test.  Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

TIMEOUT = 5.0


class Exchanges:
    """Hands out exchange names for one test and deletes those exchanges afterwards."""

    def __init__(self, unique: str) -> None:
        self.unique = unique
        self.names: list[str] = []

    def name(self, suffix: str) -> str:
        name = f"{self.unique}-{suffix}"
        self.names.append(name)
        return name


@pytest.fixture
def exchanges(params: pika.ConnectionParameters, unique: str) -> Iterator[Exchanges]:
    names = Exchanges(unique)
    yield names
    with closing(pika.BlockingConnection(params)) as cleanup:
        cleanup_channel = cleanup.channel()
        for name in names.names:
            cleanup_channel.exchange_delete(name)


def declare_exchange(channel: BlockingChannel, exchanges: Exchanges, suffix: str, kind: str, **kwargs) -> str:
    name = exchanges.name(suffix)
    channel.exchange_declare(name, kind, **kwargs)
    return name


def queue(channel: BlockingChannel, unique: str, suffix: str) -> str:
    """An exclusive queue named ``<unique>-<suffix>``."""
    name = f"{unique}-{suffix}"
    channel.queue_declare(name, exclusive=True)
    return name


def drain(channel: BlockingChannel, queue_name: str) -> list[bytes]:
    """Every ready message's body, taken with basic.get (auto-ack)."""
    bodies = []
    while True:
        method, _, body = channel.basic_get(queue_name, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def get_one(channel: BlockingChannel, queue_name: str) -> tuple[pika.BasicProperties, bytes]:
    method, properties, body = channel.basic_get(queue_name, auto_ack=True)
    assert method is not None, f"queue {queue_name!r} is empty"
    return properties, body


def exchange_exists(params: pika.ConnectionParameters, name: str) -> bool:
    with closing(pika.BlockingConnection(params)) as probe:
        try:
            probe.channel().exchange_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            assert error.reply_code == 404
            assert error.reply_text == f"NOT_FOUND - no exchange '{name}' in vhost '/'"
            return False
        return True


# ------------------------------------------------------------------ direct and fanout


def test_direct_exchange_routes_by_exact_routing_key(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "direct", "direct")
    q1, q2 = queue(channel, unique, "q1"), queue(channel, unique, "q2")
    channel.queue_bind(q1, x, "a")
    channel.queue_bind(q1, x, "c")
    channel.queue_bind(q2, x, "b")
    channel.queue_bind(q2, x, "c")

    for key in ("a", "b", "c", "d", "A", "a.b", ""):
        channel.basic_publish(x, key, key.encode())

    assert drain(channel, q1) == [b"a", b"c"]
    assert drain(channel, q2) == [b"b", b"c"]


def test_direct_exchange_delivers_once_to_a_queue_bound_twice(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "direct", "direct")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "k")
    channel.queue_bind(q, x, "k", arguments={"differs": "only in arguments"})

    channel.basic_publish(x, "k", b"once")

    assert drain(channel, q) == [b"once"]


def test_fanout_exchange_ignores_the_routing_key(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "fanout", "fanout")
    q1, q2 = queue(channel, unique, "q1"), queue(channel, unique, "q2")
    channel.queue_bind(q1, x, "")
    channel.queue_bind(q2, x, "some-key")

    channel.basic_publish(x, "anything", b"m1")
    channel.basic_publish(x, "", b"m2")

    assert drain(channel, q1) == [b"m1", b"m2"]
    assert drain(channel, q2) == [b"m1", b"m2"]


def test_unbound_queue_no_longer_receives(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "fanout", "fanout")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "")
    channel.basic_publish(x, "", b"before")

    channel.queue_unbind(q, x, "")
    channel.basic_publish(x, "", b"after")

    assert drain(channel, q) == [b"before"]


# ------------------------------------------------------------------ topic

TOPIC_KEYS = ["a.b.c", "a.c", "a.x.y.c", "a", "", "a..c", "b", "x.b", ".", "a."]

# binding pattern -> the routing keys (from TOPIC_KEYS) it matches, as RabbitMQ 3.10 routes them.
# A routing key "" has no words at all; "a..c" has an empty middle word, "." has two empty words.
TOPIC_MATCHES = {
    "a.b.c": ["a.b.c"],
    "a.*.c": ["a.b.c", "a..c"],
    "a.#": ["a.b.c", "a.c", "a.x.y.c", "a", "a..c", "a."],
    "#": TOPIC_KEYS,
    "*": ["a", "b"],
    "*.*": ["a.c", "x.b", ".", "a."],
    "#.c": ["a.b.c", "a.c", "a.x.y.c", "a..c"],
    "a.#.c": ["a.b.c", "a.c", "a.x.y.c", "a..c"],
    "a..c": ["a..c"],
    "*.b.#": ["a.b.c", "x.b"],
    "": [""],
    "#.#": TOPIC_KEYS,
}


def test_topic_exchange_matches_star_hash_and_empty_words(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "topic", "topic")
    queues = {}
    for index, pattern in enumerate(TOPIC_MATCHES):
        queues[pattern] = queue(channel, unique, f"p{index}")
        channel.queue_bind(queues[pattern], x, pattern)

    for key in TOPIC_KEYS:
        channel.basic_publish(x, key, key.encode())

    routed = {pattern: [body.decode() for body in drain(channel, name)] for pattern, name in queues.items()}
    assert routed == TOPIC_MATCHES


def test_topic_pattern_of_many_hashes_against_a_long_key_routes_quickly(connection, exchanges, unique):
    # RabbitMQ's own trie matcher is polynomial in the key length here (about 0.6 s for a 40-word key),
    # so the key is kept at 30 words; an implementation that backtracks naively or hangs still fails.
    channel = connection.channel()
    x = declare_exchange(channel, exchanges, "topic", "topic")
    matching, failing = queue(channel, unique, "all"), queue(channel, unique, "z")
    channel.queue_bind(matching, x, "#.#.#.#")
    channel.queue_bind(failing, x, "#.#.#.#.z")
    received: list[tuple[str, bytes]] = []
    for name in (matching, failing):
        channel.basic_consume(
            name, lambda ch, method, props, body, name=name: received.append((name, body)), auto_ack=True
        )

    started = time.monotonic()
    channel.basic_publish(x, ".".join(["a"] * 30), b"long")
    channel.basic_publish(x, "a.z", b"short")
    while len(received) < 3 and time.monotonic() - started < 2.0:
        connection.process_data_events(time_limit=0.05)

    assert sorted(received) == sorted([(matching, b"long"), (matching, b"short"), (failing, b"short")])


# ------------------------------------------------------------------ headers

HEADER_BINDINGS = {
    "all-ab": {"x-match": "all", "a": 1, "b": "x"},
    "any-ab": {"x-match": "any", "a": 1, "b": "x"},
    "all-ignores-x": {"x-match": "all", "a": 1, "x-k": "v"},
    "all-with-x": {"x-match": "all-with-x", "a": 1, "x-k": "v"},
    "any-ignores-x": {"x-match": "any", "x-k": "v"},
    "any-with-x": {"x-match": "any-with-x", "x-k": "v"},
    "void-means-present": {"x-match": "all", "a": None},
    "default-is-all": {"a": 1, "b": "x"},
    "all-of-nothing": {"x-match": "all"},
}

HEADER_MESSAGES = {
    "ab": {"a": 1, "b": "x"},
    "a": {"a": 1},
    "b": {"b": "x"},
    "a-xk": {"a": 1, "x-k": "v"},
    "xk": {"x-k": "v"},
    "a-is-a-string": {"a": "1"},
    "a2-b-c": {"a": 2, "b": "x", "c": 3},
    "a-void": {"a": None},
    "a-is-true": {"a": True},
    "b-is-bytes": {"b": b"x"},
    "none": None,
}

# binding -> the messages it receives, as RabbitMQ 3.10 routes them.  Plain all/any ignore
# binding arguments starting with "x-"; a void binding value matches any value of a present
# header; values of different type classes never match: 1 never equals true or "1".  A byte
# array b"x" (type 'x', as pika sends bytes) does equal the longstr "x".
HEADER_MATCHES = {
    "all-ab": ["ab"],
    "any-ab": ["ab", "a", "b", "a-xk", "a2-b-c", "b-is-bytes"],
    "all-ignores-x": ["ab", "a", "a-xk"],
    "all-with-x": ["a-xk"],
    "any-ignores-x": [],
    "any-with-x": ["a-xk", "xk"],
    "void-means-present": ["ab", "a", "a-xk", "a-is-a-string", "a2-b-c", "a-void", "a-is-true"],
    "default-is-all": ["ab"],
    "all-of-nothing": list(HEADER_MESSAGES),
}


def test_headers_exchange_matches_all_any_with_x_and_void_values(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "headers", "headers")
    queues = {}
    for binding, arguments in HEADER_BINDINGS.items():
        queues[binding] = queue(channel, unique, binding)
        channel.queue_bind(queues[binding], x, "ignored-key", arguments=arguments)

    for name, headers in HEADER_MESSAGES.items():
        channel.basic_publish(x, "any-key", name.encode(), pika.BasicProperties(headers=headers))

    routed = {binding: [body.decode() for body in drain(channel, name)] for binding, name in queues.items()}
    assert routed == HEADER_MATCHES


@pytest.mark.parametrize(
    "x_match, text",
    [
        (
            "some",
            'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
            "expected all, any, all-with-x, or any-with-x",
        ),
        (
            "ALL",
            'PRECONDITION_FAILED - Invalid x-match field value <<"ALL">>; expected all, any, all-with-x, or any-with-x',
        ),
        (5, "PRECONDITION_FAILED - Invalid x-match field type signedint (value 5); expected longstr"),
    ],
)
def test_headers_binding_with_an_invalid_x_match_is_refused(channel, exchanges, unique, x_match, text):
    x = declare_exchange(channel, exchanges, "headers", "headers")
    q = queue(channel, unique, "q")

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.queue_bind(q, x, "", arguments={"x-match": x_match})

    assert (excinfo.value.reply_code, excinfo.value.reply_text) == (406, text)


# ------------------------------------------------------------------ built-in exchanges


@pytest.mark.parametrize(
    "name, kind",
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_builtin_exchange_exists_with_its_type(channel, name, kind):
    channel.exchange_declare(name, passive=True)
    channel.exchange_declare(name, kind, durable=True)

    wrong = "fanout" if kind != "fanout" else "direct"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_declare(name, wrong, durable=True)
    assert excinfo.value.reply_code == 406
    assert excinfo.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': "
        f"received '{wrong}' but current is '{kind}'"
    )


def test_builtin_amq_topic_routes(channel, unique):
    q = queue(channel, unique, "q")
    channel.queue_bind(q, "amq.topic", f"{unique}.*")

    channel.basic_publish("amq.topic", f"{unique}.hello", b"via amq.topic")
    channel.basic_publish("amq.topic", f"{unique}.hello.there", b"not matched")

    assert drain(channel, q) == [b"via amq.topic"]


# ------------------------------------------------------------------ internal exchanges


def test_publishing_to_an_internal_exchange_closes_the_channel_403(connection, channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "internal", "fanout", internal=True)

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_publish(x, "", b"refused")

    assert excinfo.value.reply_code == 403
    assert excinfo.value.reply_text == f"ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'"
    assert connection.is_open


def test_internal_exchange_receives_through_an_exchange_binding(channel, exchanges, unique):
    public = declare_exchange(channel, exchanges, "public", "direct")
    internal = declare_exchange(channel, exchanges, "internal", "fanout", internal=True)
    q = queue(channel, unique, "q")
    channel.queue_bind(q, internal, "")
    channel.exchange_bind(destination=internal, source=public, routing_key="in")

    channel.basic_publish(public, "in", b"through")
    channel.basic_publish(public, "out", b"not bound")

    assert drain(channel, q) == [b"through"]


# ------------------------------------------------------------------ exchange.delete


def test_exchange_delete_if_unused_refuses_an_exchange_with_bindings(connection, channel, exchanges, unique, params):
    x = declare_exchange(channel, exchanges, "x", "direct")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "k")

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_delete(x, if_unused=True)

    assert excinfo.value.reply_code == 406
    assert excinfo.value.reply_text == f"PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"
    assert exchange_exists(params, x)


def test_exchange_delete_if_unused_deletes_once_unbound(channel, exchanges, unique, params):
    x = declare_exchange(channel, exchanges, "x", "direct")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "k")
    channel.queue_unbind(q, x, "k")

    channel.exchange_delete(x, if_unused=True)

    assert not exchange_exists(params, x)


def test_exchange_delete_if_unused_counts_only_bindings_from_the_exchange(channel, exchanges, unique, params):
    source = declare_exchange(channel, exchanges, "source", "fanout")
    destination = declare_exchange(channel, exchanges, "destination", "fanout")
    channel.exchange_bind(destination=destination, source=source)

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_delete(source, if_unused=True)
    assert excinfo.value.reply_code == 406

    other = channel.connection.channel()
    other.exchange_delete(destination, if_unused=True)
    assert not exchange_exists(params, destination)


def test_deleting_an_exchange_removes_its_bindings(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "x", "fanout")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "")
    channel.exchange_delete(x)

    channel.exchange_declare(x, "fanout")
    channel.basic_publish(x, "", b"to the new exchange")

    assert drain(channel, q) == []


# ------------------------------------------------------------------ exchange-to-exchange bindings


def test_exchange_binding_routes_through_two_hops(channel, exchanges, unique):
    first = declare_exchange(channel, exchanges, "first", "direct")
    second = declare_exchange(channel, exchanges, "second", "topic")
    q = queue(channel, unique, "q")
    channel.exchange_bind(destination=second, source=first, routing_key="k.one")
    channel.queue_bind(q, second, "k.*")

    channel.basic_publish(first, "k.one", b"two hops")
    channel.basic_publish(first, "k.two", b"stopped at the first hop")
    channel.basic_publish(second, "k.two", b"one hop")

    assert drain(channel, q) == [b"two hops", b"one hop"]


def test_exchange_unbind_stops_routing(channel, exchanges, unique):
    first = declare_exchange(channel, exchanges, "first", "fanout")
    second = declare_exchange(channel, exchanges, "second", "fanout")
    q = queue(channel, unique, "q")
    channel.queue_bind(q, second, "")
    channel.exchange_bind(destination=second, source=first, routing_key="r")
    channel.basic_publish(first, "", b"bound")

    channel.exchange_unbind(destination=second, source=first, routing_key="r")
    channel.basic_publish(first, "", b"unbound")

    assert drain(channel, q) == [b"bound"]


def test_exchange_binding_loop_delivers_once_per_queue(channel, exchanges, unique):
    a = declare_exchange(channel, exchanges, "a", "fanout")
    b = declare_exchange(channel, exchanges, "b", "fanout")
    channel.exchange_bind(destination=b, source=a)
    channel.exchange_bind(destination=a, source=b)
    on_a, on_b, on_both = queue(channel, unique, "on-a"), queue(channel, unique, "on-b"), queue(channel, unique, "both")
    channel.queue_bind(on_a, a, "")
    channel.queue_bind(on_b, b, "")
    channel.queue_bind(on_both, a, "")
    channel.queue_bind(on_both, b, "")

    channel.basic_publish(a, "", b"to a")
    channel.basic_publish(b, "", b"to b")

    assert drain(channel, on_a) == [b"to a", b"to b"]
    assert drain(channel, on_b) == [b"to a", b"to b"]
    assert drain(channel, on_both) == [b"to a", b"to b"]


def test_exchange_bind_to_a_missing_exchange_is_404(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "x", "fanout")
    missing = f"{unique}-missing"

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.exchange_bind(destination=missing, source=x)

    assert excinfo.value.reply_code == 404
    assert excinfo.value.reply_text == f"NOT_FOUND - no exchange '{missing}' in vhost '/'"


# ------------------------------------------------------------------ unknown exchange type


def test_unknown_exchange_type_closes_the_connection_503(connection, channel, unique, params):
    name = f"{unique}-x"

    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as excinfo:
        channel.exchange_declare(name, "foo")

    assert excinfo.value.reply_code == 503
    assert excinfo.value.reply_text == "COMMAND_INVALID - invalid exchange type 'foo'"
    assert connection.is_closed
    assert not exchange_exists(params, name)


# ------------------------------------------------------------------ alternate exchanges


def alternate_setup(channel: BlockingChannel, exchanges: Exchanges, unique: str) -> tuple[str, str, str]:
    """A direct exchange (binding 'known' -> main queue) whose alternate exchange fans out to a queue."""
    alternate = declare_exchange(channel, exchanges, "alternate", "fanout")
    main = declare_exchange(channel, exchanges, "main", "direct", arguments={"alternate-exchange": alternate})
    main_queue, alternate_queue = queue(channel, unique, "main"), queue(channel, unique, "alternate")
    channel.queue_bind(main_queue, main, "known")
    channel.queue_bind(alternate_queue, alternate, "")
    return main, main_queue, alternate_queue


def test_unroutable_messages_go_to_the_alternate_exchange(channel, exchanges, unique):
    main, main_queue, alternate_queue = alternate_setup(channel, exchanges, unique)

    channel.basic_publish(main, "known", b"routed")
    channel.basic_publish(main, "unknown", b"unroutable")

    assert drain(channel, main_queue) == [b"routed"]
    assert drain(channel, alternate_queue) == [b"unroutable"]


def test_mandatory_message_taken_by_the_alternate_exchange_is_not_returned(channel, exchanges, unique):
    main, _, alternate_queue = alternate_setup(channel, exchanges, unique)

    channel.basic_publish(main, "unknown", b"mandatory", mandatory=True)  # raises UnroutableError if returned

    assert drain(channel, alternate_queue) == [b"mandatory"]


def test_mandatory_message_the_alternate_exchange_cannot_route_is_returned(channel, exchanges, unique):
    alternate = declare_exchange(channel, exchanges, "alternate", "direct")
    main = declare_exchange(channel, exchanges, "main", "direct", arguments={"alternate-exchange": alternate})

    with pytest.raises(pika.exceptions.UnroutableError) as excinfo:
        channel.basic_publish(main, "nowhere", b"lost", mandatory=True)

    (returned,) = excinfo.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == (main, "nowhere")
    assert returned.body == b"lost"


def test_mandatory_message_with_a_missing_alternate_exchange_is_returned(channel, exchanges, unique):
    main = declare_exchange(channel, exchanges, "main", "direct", arguments={"alternate-exchange": f"{unique}-missing"})

    with pytest.raises(pika.exceptions.UnroutableError) as excinfo:
        channel.basic_publish(main, "nowhere", b"lost", mandatory=True)

    (returned,) = excinfo.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")


# ------------------------------------------------------------------ CC and BCC


def test_cc_header_adds_routing_keys_and_is_kept(channel, exchanges, unique):
    x = declare_exchange(channel, exchanges, "x", "direct")
    q1, q2, q3 = (queue(channel, unique, name) for name in ("q1", "q2", "q3"))
    channel.queue_bind(q1, x, "k1")
    channel.queue_bind(q2, x, "k2")
    channel.queue_bind(q3, x, "k3")

    channel.basic_publish(x, "k1", b"cc", pika.BasicProperties(headers={"CC": ["k2", "k1"]}))

    for name in (q1, q2):
        properties, body = get_one(channel, name)
        assert body == b"cc"
        assert properties.headers == {"CC": ["k2", "k1"]}
    assert drain(channel, q1) == drain(channel, q2) == drain(channel, q3) == []


def test_bcc_header_adds_routing_keys_and_is_removed(channel, unique):
    q1, q2 = queue(channel, unique, "q1"), queue(channel, unique, "q2")

    channel.basic_publish("", q1, b"bcc", pika.BasicProperties(headers={"BCC": [q2], "other": "kept"}))

    for name in (q1, q2):
        properties, body = get_one(channel, name)
        assert body == b"bcc"
        assert properties.headers == {"other": "kept"}


def test_bcc_alone_leaves_an_empty_headers_table(channel, unique):
    """RabbitMQ removes BCC from the table and keeps the table, empty: a consumer sees ``headers == {}``."""
    q1, q2 = queue(channel, unique, "q1"), queue(channel, unique, "q2")

    channel.basic_publish("", q1, b"bcc", pika.BasicProperties(headers={"BCC": [q2]}))

    for name in (q1, q2):
        properties, body = get_one(channel, name)
        assert body == b"bcc"
        assert properties.headers == {}


def test_cc_and_bcc_together(channel, unique):
    q1, q2, q3 = (queue(channel, unique, name) for name in ("q1", "q2", "q3"))

    channel.basic_publish("", q1, b"both", pika.BasicProperties(headers={"CC": [q2], "BCC": [q3]}))

    for name in (q1, q2, q3):
        properties, body = get_one(channel, name)
        assert body == b"both"
        assert properties.headers == {"CC": [q2]}


def test_cc_ignores_non_string_entries_and_other_header_cases(channel, unique):
    q1, q2, q3 = (queue(channel, unique, name) for name in ("q1", "q2", "q3"))

    channel.basic_publish("", q1, b"m", pika.BasicProperties(headers={"CC": [5, q2], "cc": [q3]}))

    assert drain(channel, q1) == drain(channel, q2) == [b"m"]
    assert drain(channel, q3) == []


@pytest.mark.parametrize(
    "headers, text",
    [
        ({"CC": "k"}, 'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}'),
        ({"BCC": 5}, 'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"BCC",signedint}'),
    ],
)
def test_cc_or_bcc_that_is_not_an_array_closes_the_channel_406(connection, channel, unique, headers, text):
    q = queue(channel, unique, "q")

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        channel.basic_publish("", q, b"m", pika.BasicProperties(headers=headers))

    assert (excinfo.value.reply_code, excinfo.value.reply_text) == (406, text)
    assert connection.is_open


# ------------------------------------------------------------------ auto-delete exchanges


def test_auto_delete_exchange_is_deleted_when_its_last_binding_goes(channel, exchanges, unique, params):
    x = declare_exchange(channel, exchanges, "auto", "direct", auto_delete=True)
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "a")
    channel.queue_bind(q, x, "b")

    channel.queue_unbind(q, x, "a")
    assert exchange_exists(params, x)

    channel.queue_unbind(q, x, "b")
    assert not exchange_exists(params, x)


def test_auto_delete_exchange_without_bindings_stays(channel, exchanges, params):
    x = declare_exchange(channel, exchanges, "auto", "fanout", auto_delete=True)

    channel.basic_publish(x, "", b"nobody listens")

    assert exchange_exists(params, x)


def test_auto_delete_exchange_is_deleted_with_its_last_bound_queue(channel, exchanges, unique, params):
    x = declare_exchange(channel, exchanges, "auto", "fanout", auto_delete=True)
    q = queue(channel, unique, "q")
    channel.queue_bind(q, x, "")

    channel.queue_delete(q)

    assert not exchange_exists(params, x)


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_auto_delete_cascades_through_an_exchange_binding_when_the_queue_goes(
    channel, exchanges, unique, params, durable
):
    """outer (auto-delete) -> inner (auto-delete) -> queue: deleting the queue removes inner, then outer."""
    outer = declare_exchange(channel, exchanges, "outer", "fanout", auto_delete=True, durable=durable)
    inner = declare_exchange(channel, exchanges, "inner", "fanout", auto_delete=True, durable=durable)
    q = f"{unique}-q"
    channel.queue_declare(q, auto_delete=True, durable=durable)
    channel.exchange_bind(destination=inner, source=outer)
    channel.queue_bind(q, inner)

    channel.queue_delete(q)

    assert not exchange_exists(params, inner)
    assert not exchange_exists(params, outer)


def test_deleting_the_inner_exchange_removes_its_auto_delete_source(channel, exchanges, unique, params):
    outer = declare_exchange(channel, exchanges, "outer", "fanout", auto_delete=True)
    inner = declare_exchange(channel, exchanges, "inner", "fanout", auto_delete=True)
    q = queue(channel, unique, "q")
    channel.exchange_bind(destination=inner, source=outer)
    channel.queue_bind(q, inner)

    channel.exchange_delete(inner)

    assert not exchange_exists(params, outer)
