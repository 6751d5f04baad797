"""Exchange routing checked against plain reference models (hypothesis).

Every exchange type in ``amqp_server.core.exchanges`` — default, direct, fanout, topic, headers — is
driven through the real objects (a ``VirtualHost`` on a ``MemoryStore``, real ``Queue``s, messages
with a pamqp-encoded content header) and compared with a model written here from RabbitMQ's rules:

* direct: the queues bound with a binding key equal to the routing key; fanout: every bound queue;
  default exchange: the queue named by the routing key.
* topic: keys and patterns split on ``.`` (the empty string is zero words, ``a.`` is ``a`` and an
  empty word); ``*`` is exactly one word, ``#`` zero or more.
* headers: ``x-match`` all (the default) / any / all-with-x / any-with-x; binding keys starting with
  ``x-`` are ignored unless ``*-with-x``; a void binding value only asks for the header to be present.

Both models were checked against RabbitMQ 3.10.8 (every pair of ~100 random patterns × 100 random keys,
and ~70 header bindings × 40 header tables, with pika: no disagreement), as were the typed-value
cases of the headers exchange tested at the end.

A state machine applies random binds, unbinds (duplicates and missing ones included), queue and
exchange deletions and re-declarations, and after every step compares ``route`` with the model
(as sets, each queue at most once, only live queues), which also exercises the topic cache's
invalidation.  Pathological topic patterns run under a hypothesis deadline.
"""

from __future__ import annotations

import struct
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pamqp import commands

from amqp_server.core.exchanges import EXCHANGE_TYPES, DirectExchange, Exchange, TopicExchange, headers_match
from amqp_server.core.message import Message
from amqp_server.core.queue import Queue
from amqp_server.core.topic import TopicTrie, _Node
from amqp_server.core.vhost import VirtualHost
from storage.memory import MemoryStore

# ------------------------------------------------------------------ reference models


def split_words(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


def model_topic_matches(pattern: str, routing_key: str) -> bool:
    """Recursive matcher over (pattern word index, key word index), memoized so it stays polynomial."""
    pattern_words, key_words = split_words(pattern), split_words(routing_key)

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern_words):
            return j == len(key_words)
        if pattern_words[i] == "#":
            return match(i + 1, j) or (j < len(key_words) and match(i, j + 1))
        return j < len(key_words) and pattern_words[i] in ("*", key_words[j]) and match(i + 1, j + 1)

    return match(0, 0)


def model_headers_match(arguments: dict[str, Any], headers: dict[str, Any]) -> bool:
    x_match = arguments.get("x-match", "all")
    with_x = x_match in ("all-with-x", "any-with-x")
    results = [
        key in headers and (value is None or headers[key] == value)
        for key, value in arguments.items()
        if key != "x-match" and (with_x or not key.startswith("x-"))
    ]
    return any(results) if x_match in ("any", "any-with-x") else all(results)


def model_binding_matches(
    type_name: str, binding_key: str, arguments: dict[str, Any], routing_key: str, headers: dict[str, Any]
) -> bool:
    if type_name == "direct":
        return binding_key == routing_key
    if type_name == "fanout":
        return True
    if type_name == "topic":
        return model_topic_matches(binding_key, routing_key)
    return model_headers_match(arguments, headers)


# ------------------------------------------------------------------ real objects


def make_message(routing_key: str = "", headers: dict[str, Any] | None = None, body: bytes = b"body") -> Message:
    header = struct.pack(">HHQ", 60, 0, len(body)) + commands.Basic.Properties(headers=headers).marshal()
    return Message("", routing_key, header, body, persistent=False)


def routed(exchange: Exchange, message: Message) -> set[str]:
    """Names of the queues ``message`` reaches from ``exchange``.

    Checks both levels: the exchange's own ``route`` names each destination at most once, and the
    vhost's ``route`` (what publishing uses) gives each queue once, and only live queue objects.
    """
    destinations = list(exchange.route(message, message.routing_key))
    assert len({id(d) for d in destinations}) == len(destinations), f"a destination repeats: {destinations}"
    queues = exchange.vhost.route(exchange, message)
    names = [queue.name for queue in queues]
    assert len(names) == len(set(names)), f"a queue was routed to more than once: {names}"
    for queue in queues:
        assert exchange.vhost.queues.get(queue.name) is queue, f"routed to a deleted queue object {queue.name!r}"
    assert {d.name for d in destinations} == set(names)
    return set(names)


def new_vhost() -> VirtualHost:
    return VirtualHost("/", MemoryStore())


def declare_queue(vhost: VirtualHost, name: str) -> Queue:
    queue = Queue(vhost, name)
    vhost.add_queue(queue)
    return queue


def declare_exchange(vhost: VirtualHost, name: str, type_name: str) -> Exchange:
    # an x-delayed-message exchange (core.delayed) routes as its x-delayed-type: here the topic index
    arguments = {"x-delayed-type": "topic"} if type_name == "x-delayed-message" else None
    exchange = EXCHANGE_TYPES[type_name](vhost, name, arguments=arguments)
    vhost.add_exchange(exchange)
    return exchange


# ------------------------------------------------------------------ strategies

# Small alphabets so that bindings and keys collide often.
topic_words = st.sampled_from(["a", "a", "b", "b", "*", "#", ""])
topic_keys = st.lists(topic_words, max_size=4).map(".".join)
HEADER_KEYS = ["k1", "k2", "x-k"]
header_values = st.sampled_from([1, 2, "s", None])
header_tables = st.dictionaries(st.sampled_from(HEADER_KEYS), header_values, max_size=3)
x_match_values = st.sampled_from([None, "all", "any", "all-with-x", "any-with-x"])


@st.composite
def binding_arguments(draw: st.DrawFn) -> dict[str, Any]:
    arguments = draw(header_tables)
    x_match = draw(x_match_values)
    if x_match is not None:
        arguments["x-match"] = x_match
    return arguments


# ------------------------------------------------------------------ matchers and single exchanges


@settings(max_examples=300, deadline=None)
@given(pattern=topic_keys, routing_key=topic_keys)
@example(pattern="a.#", routing_key="a")
@example(pattern="#", routing_key="")
@example(pattern="", routing_key="")
@example(pattern="*", routing_key="")
@example(pattern="a.*", routing_key="a.")
@example(pattern="#.a.#", routing_key="a")
@example(pattern="a", routing_key="*")
@example(pattern="#", routing_key="#.#")
def test_topic_trie_matches_one_pattern_like_the_model(pattern: str, routing_key: str) -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "q")
    assert trie.match(routing_key) == (["q"] if model_topic_matches(pattern, routing_key) else [])


# Longer patterns than topic_keys, with runs of ``#`` and empty words (``a..b``, a leading or trailing ``.``).
trie_patterns = st.lists(st.sampled_from(["a", "b", "*", "#", "#", ""]), max_size=7).map(".".join)
trie_keys = st.lists(st.sampled_from(["a", "b", "", "*", "#"]), max_size=8).map(".".join)
# (pattern, destination); a pair may repeat: adding it again changes nothing
trie_bindings = st.lists(st.tuples(trie_patterns, st.sampled_from(["d0", "d1", "d2"])), max_size=12)


@settings(max_examples=300, deadline=None)
@given(bindings=trie_bindings, routing_keys=st.lists(trie_keys, min_size=1, max_size=6), data=st.data())
@example(
    bindings=[
        ("#.#", "d0"),
        ("#.#.#", "d0"),
        ("#", "d1"),
        ("", "d1"),
        (".", "d2"),
        ("a..b", "d2"),
        ("*.#.*", "d0"),
        ("#.*.#", "d1"),
        ("#", "d1"),
        ("a", "d0"),
        ("a", "d1"),
        ("a", "d2"),
        ("b", "d0"),
        ("a.b", "d0"),
    ],
    routing_keys=["", ".", "a..b", "a", "a.b.a.b.a"],
    data=None,
)
def test_topic_trie_matches_many_patterns_like_the_model_while_bound_and_unbound(
    bindings: list[tuple[str, str]], routing_keys: list[str], data: st.DataObject | None
) -> None:
    """Patterns share trie nodes; after removing some (pattern, destination) pairs the rest still match
    as the model says (each destination once per matching pattern), and after removing all the trie is
    empty.  The trie holds each pair once (the exchange counts the bindings behind it)."""
    trie: TopicTrie[str] = TopicTrie()
    for pattern, destination in bindings:
        trie.add(pattern, destination)
    bound = set(bindings)

    def check() -> None:
        for routing_key in routing_keys:
            expected = Counter(
                destination for pattern, destination in bound if model_topic_matches(pattern, routing_key)
            )
            assert Counter(trie.match(routing_key)) == expected, (routing_key, bound)

    check()
    pairs = sorted(bound)
    removed = data.draw(st.lists(st.sampled_from(pairs))) if data is not None and pairs else pairs
    for pair in removed:  # a pair may come twice: removing it again changes nothing
        trie.remove(*pair)
        bound.discard(pair)
    trie.remove("a.missing", "d0")  # removing what is not there changes nothing
    for pattern, _ in bindings:
        trie.remove(pattern, "not bound")
    check()
    for pattern, destination in bound:
        trie.remove(pattern, destination)
    assert trie.nodes == 0 and trie.root.empty()


@settings(max_examples=200, deadline=None)
@given(patterns=st.lists(topic_keys, max_size=6), routing_keys=st.lists(topic_keys, min_size=1, max_size=4))
@example(patterns=["*", "", "#", "#.#", "a.#", ".", "*.*"], routing_keys=["", "a", ".", "a."])
def test_topic_exchange_routes_like_the_model(patterns: list[str], routing_keys: list[str]) -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    for index, pattern in enumerate(patterns):
        vhost.bind(exchange, declare_queue(vhost, f"q{index}"), pattern, {})
    for routing_key in routing_keys:
        expected = {f"q{index}" for index, pattern in enumerate(patterns) if model_topic_matches(pattern, routing_key)}
        assert routed(exchange, make_message(routing_key)) == expected, routing_key


@settings(max_examples=300, deadline=None)
@given(arguments=binding_arguments(), headers=header_tables)
@example(arguments={"x-match": "any"}, headers={"k1": 1})
@example(arguments={"x-k": 1}, headers={})
@example(arguments={"x-match": "all-with-x", "x-k": 1}, headers={})
@example(arguments={"k1": None}, headers={"k1": 2})
def test_headers_match_agrees_with_model(arguments: dict[str, Any], headers: dict[str, Any]) -> None:
    assert headers_match(arguments, headers) == model_headers_match(arguments, headers)


@settings(max_examples=200, deadline=None)
@given(
    bindings=st.lists(binding_arguments(), max_size=6),
    header_sets=st.lists(st.none() | header_tables, min_size=1, max_size=4),
)
def test_headers_exchange_routes_like_the_model(
    bindings: list[dict[str, Any]], header_sets: list[dict[str, Any] | None]
) -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "h", "headers")
    for index, arguments in enumerate(bindings):
        vhost.bind(exchange, declare_queue(vhost, f"q{index}"), "", arguments)
    for headers in header_sets:
        expected = {
            f"q{index}" for index, arguments in enumerate(bindings) if model_headers_match(arguments, headers or {})
        }
        assert routed(exchange, make_message("", headers)) == expected, headers


# ------------------------------------------------------------------ pathological topic patterns

long_keys = st.lists(st.sampled_from(["a", "b"]), min_size=20, max_size=40).map(".".join)
wildcard_patterns = st.lists(st.sampled_from(["#", "#", "*", "a", "b"]), min_size=1, max_size=14).map(".".join)


@settings(max_examples=100, deadline=500)
@given(pattern=wildcard_patterns, routing_key=long_keys)
@example(pattern="#.#.#.#.#.#", routing_key=".".join(["a"] * 40))
@example(pattern="#.#.#.#.#.#.b", routing_key=".".join(["a"] * 40))
@example(pattern="*.#.*.#.*.#.*.#.*.#.b", routing_key=".".join(["a"] * 40))
@example(pattern=".".join(["#", "a"] * 7), routing_key=".".join(["a"] * 39 + ["b"]))
def test_pathological_topic_patterns_route_correctly(pattern: str, routing_key: str) -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    vhost.bind(exchange, declare_queue(vhost, "q"), pattern, {})
    expected = {"q"} if model_topic_matches(pattern, routing_key) else set()
    assert routed(exchange, make_message(routing_key)) == expected


def test_sixty_word_key_against_runs_of_hash_routes_correctly() -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    patterns = {
        "all": ".".join(["#"] * 30),
        "ends-b": ".".join(["#"] * 30 + ["b"]),
        "b-then-a": ".".join(["#"] * 15 + ["b", "a"] + ["#"] * 15),
        "sixty-one": ".".join(["#", "*"] * 30 + ["*"]),
        "sixty": ".".join(["*", "#"] * 30),
        "hash-a-hash": ".".join(["#", "a"] * 20 + ["#"]),
    }
    for name, pattern in patterns.items():
        vhost.bind(exchange, declare_queue(vhost, name), pattern, {})
    for routing_key in [
        ".".join(["a"] * 60),
        ".".join(["a"] * 59 + ["b"]),
        ".".join(["a", "b"] * 30),
        ".".join([""] * 60),
    ]:
        expected = {name for name, pattern in patterns.items() if model_topic_matches(pattern, routing_key)}
        assert routed(exchange, make_message(routing_key)) == expected, routing_key


# ------------------------------------------------------------------ focused cases


def test_default_exchange_routes_to_the_queue_named_by_the_routing_key() -> None:
    vhost = new_vhost()
    default = vhost.exchanges[""]
    declare_queue(vhost, "orders")
    declare_queue(vhost, "a.b")
    assert routed(default, make_message("orders")) == {"orders"}
    assert routed(default, make_message("a.b")) == {"a.b"}
    assert routed(default, make_message("missing")) == set()
    assert routed(default, make_message("")) == set()


def test_default_exchange_forgets_a_deleted_queue_and_finds_its_redeclaration() -> None:
    vhost = new_vhost()
    default = vhost.exchanges[""]
    vhost.delete_queue(declare_queue(vhost, "orders"))
    assert routed(default, make_message("orders")) == set()
    redeclared = declare_queue(vhost, "orders")
    assert vhost.route(default, make_message("orders")) == [redeclared]


def test_topic_cache_sees_bind_unbind_after_a_cached_publish() -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    queue = declare_queue(vhost, "q")
    assert routed(exchange, make_message("a.b")) == set()
    vhost.bind(exchange, queue, "a.*", {})
    assert routed(exchange, make_message("a.b")) == {"q"}
    vhost.bind(exchange, declare_queue(vhost, "r"), "#", {})
    assert routed(exchange, make_message("a.b")) == {"q", "r"}
    vhost.unbind(exchange, queue, "a.*", {})
    assert routed(exchange, make_message("a.b")) == {"r"}


def test_topic_cache_drops_a_deleted_queue() -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    vhost.bind(exchange, declare_queue(vhost, "q"), "a.#", {})
    assert routed(exchange, make_message("a")) == {"q"}
    vhost.delete_queue(vhost.queues["q"])
    assert routed(exchange, make_message("a")) == set()
    declare_queue(vhost, "q")
    assert routed(exchange, make_message("a")) == set()


def test_topic_route_cache_stays_within_its_bound() -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    assert isinstance(exchange, TopicExchange)
    for index in range(50):
        vhost.bind(exchange, declare_queue(vhost, f"q{index}"), f"k{index}.#", {})
    for n in range(exchange.CACHE_LIMIT * 2 + 7):
        assert routed(exchange, make_message(f"k{n % 60}.{n}")) == ({f"q{n % 60}"} if n % 60 < 50 else set())
        assert len(exchange._cache) <= exchange.CACHE_LIMIT
    assert exchange.CACHE_LIMIT <= 10_000


def test_unbinding_every_topic_binding_empties_the_trie() -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "t", "topic")
    assert isinstance(exchange, TopicExchange)
    queues = [declare_queue(vhost, name) for name in ["q0", "q1"]]
    other = declare_exchange(vhost, "e2e", "fanout")
    bindings = [
        (queue, pattern, arguments)
        for queue in queues
        for pattern in ["a.b.c", "a.b", "a.*.c", "a.#", "#", "#.#", "", "a..b", "*.b.#"]
        for arguments in [{}, {"x-any": 1}]
    ]
    for queue, pattern, arguments in bindings:
        vhost.bind(exchange, queue, pattern, arguments)
    vhost.bind(exchange, other, "a.#", {})
    assert sorted(d.name for d in exchange.route(make_message("a.b.c"), "a.b.c")) == ["e2e", "q0", "q1"]
    for queue, pattern, arguments in bindings[: len(bindings) // 2]:
        vhost.unbind(exchange, queue, pattern, arguments)
    vhost.unbind(exchange, other, "a.#", {})
    assert exchange._trie.nodes > 0
    vhost.delete_queue(queues[1])  # the rest go with their queue
    assert exchange._trie.nodes == 0 and exchange._trie.root.empty()
    assert routed(exchange, make_message("a.b.c")) == set()


def test_topic_routes_to_exchanges_and_each_destination_once() -> None:
    vhost = new_vhost()
    topic = declare_exchange(vhost, "t", "topic")
    downstream = declare_exchange(vhost, "down", "fanout")
    queue, other = declare_queue(vhost, "q"), declare_queue(vhost, "other")
    vhost.bind(topic, queue, "a.*", {})
    vhost.bind(topic, queue, "#.b", {})
    vhost.bind(topic, downstream, "#", {})
    vhost.bind(topic, downstream, "a.b", {})
    vhost.bind(downstream, other, "", {})
    vhost.bind(downstream, queue, "", {})
    assert sorted(d.name for d in topic.route(make_message("a.b"), "a.b")) == ["down", "q"]
    assert sorted(q.name for q in vhost.route(topic, make_message("a.b"))) == ["other", "q"]
    assert sorted(q.name for q in vhost.route(topic, make_message("c"))) == ["other", "q"]


def test_queue_bound_by_several_matching_bindings_is_routed_once() -> None:
    vhost = new_vhost()
    queue = declare_queue(vhost, "q")
    for type_name, keys in [
        ("direct", ["k", "k"]),
        ("fanout", ["x", "y"]),
        ("topic", ["a.*", "#", "a.b"]),
        ("headers", ["1", "2"]),
    ]:
        exchange = declare_exchange(vhost, type_name, type_name)
        for index, key in enumerate(keys):
            vhost.bind(exchange, queue, key, {"x-match": "any", "k1": 1, f"x-{index}": index})
        assert routed(exchange, make_message("a.b" if type_name == "topic" else "k", {"k1": 1})) == {"q"}


def test_unbind_removes_only_the_binding_with_the_same_arguments() -> None:
    vhost = new_vhost()
    queue = declare_queue(vhost, "q")
    exchange = declare_exchange(vhost, "d", "direct")
    vhost.bind(exchange, queue, "k", {})
    vhost.bind(exchange, queue, "k", {"x-any": 1})
    vhost.unbind(exchange, queue, "k", {})
    assert routed(exchange, make_message("k")) == {"q"}
    vhost.unbind(exchange, queue, "k", {"x-any": 1})
    assert routed(exchange, make_message("k")) == set()


def test_deleting_a_queue_removes_its_bindings_from_every_exchange() -> None:
    vhost = new_vhost()
    exchanges = [declare_exchange(vhost, type_name, type_name) for type_name in EXCHANGE_TYPES]
    queue, other = declare_queue(vhost, "q"), declare_queue(vhost, "other")
    for exchange in exchanges:
        vhost.bind(exchange, queue, "k", {})
        vhost.bind(exchange, queue, "#", {"x-match": "all"})
        vhost.bind(exchange, other, "k", {})
    vhost.delete_queue(queue)
    declare_queue(vhost, "q")
    for exchange in exchanges:
        assert routed(exchange, make_message("k")) == {"other"}, exchange.type_name


@pytest.mark.parametrize("type_name", sorted(EXCHANGE_TYPES))
def test_deleting_an_exchange_drops_its_bindings(type_name: str) -> None:
    vhost = new_vhost()
    queue = declare_queue(vhost, "q")
    vhost.bind(declare_exchange(vhost, "x", type_name), queue, "k", {})
    vhost.delete_exchange(vhost.exchanges["x"])
    assert "x" not in vhost.exchanges
    redeclared = declare_exchange(vhost, "x", type_name)
    assert routed(redeclared, make_message("k")) == set()
    vhost.bind(redeclared, queue, "k", {})
    assert routed(redeclared, make_message("k")) == {"q"}
    vhost.delete_queue(queue)
    assert routed(redeclared, make_message("k")) == set()


# What RabbitMQ 3.10.8 routes when binding and header values have different AMQP types (checked with
# pika and aio-pika): it compares field values with Erlang's ``==``, so a boolean never equals a number
# and a decimal is not an integer, but an integer equals the same float, a longstr equals a byte array
# with the same bytes (both are binaries, compared byte for byte) and a timestamp equals the integer
# number of seconds.  pamqp decodes a byte array as ``bytearray`` and encodes a float as a float32.
TYPED_VALUE_CASES = [
    ({"k": 1}, {"k": True}, False),
    ({"k": True}, {"k": 1}, False),
    ({"k": 0}, {"k": False}, False),
    ({"k": True}, {"k": True}, True),
    ({"k": 1}, {"k": Decimal(1)}, False),
    ({"k": 1}, {"k": 1.0}, True),
    ({"k": 1.0}, {"k": 1}, True),
    ({"k": 1}, {"k": 2**40}, False),
    ({"k": 2**40}, {"k": 2**40}, True),
    ({"k": "s"}, {"k": bytearray(b"s")}, True),
    ({"k": bytearray(b"s")}, {"k": "s"}, True),
    ({"k": bytearray(b"\xff")}, {"k": bytearray(b"\xff")}, True),
    ({"k": bytearray(b"\xfe")}, {"k": bytearray(b"\xff")}, False),
    ({"k": 1700000000}, {"k": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)}, True),
    ({"k": 1}, {"k": None}, False),
    ({"k": None}, {"k": None}, True),
]


@pytest.mark.parametrize(("arguments", "headers", "expected"), TYPED_VALUE_CASES, ids=repr)
def test_headers_exchange_compares_typed_values_like_rabbitmq(
    arguments: dict[str, Any], headers: dict[str, Any], expected: bool
) -> None:
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "h", "headers")
    vhost.bind(exchange, declare_queue(vhost, "q"), "", arguments)
    assert routed(exchange, make_message("", headers)) == ({"q"} if expected else set())


# ------------------------------------------------------------------ random operation sequences

QUEUE_NAMES = ["q0", "q1", "q2"]
EXCHANGE_NAMES = {"ex-direct": "direct", "ex-fanout": "fanout", "ex-topic": "topic", "ex-headers": "headers"}
Binding = tuple[str, str, str, tuple[tuple[str, Any], ...]]  # (exchange, queue, key, sorted arguments)

# Checked on every exchange after every step: routing keys from the topic alphabet for the exchanges
# that look at the key, header tables satisfying different subsets of the bindings for the headers one.
KEY_PROBES = [(key, None, make_message(key)) for key in ["", "a", "b", "a.b", "a.a.b", "a.", "q0"]]
HEADER_PROBES = [
    ("", headers, make_message("", headers))
    for headers in [None, {"k1": 1}, {"k1": 2, "k2": "s", "x-k": None}, {"k2": 1, "x-k": "s"}]
]


# ------------------------------------------------------------------ indexes recomputed from scratch

ModelBinding = tuple[str, str, tuple[tuple[str, Any], ...]]  # (queue, key, sorted arguments) on one exchange


def trie_pairs(node: _Node[Any], words: tuple[str, ...] = ()) -> set[tuple[str, Any]]:
    """Every (pattern, destination) the trie holds, checking each node is in its canonical form:
    a dict of children or of destinations only from two up, literal children keyed by their own
    word, ``is_hash`` exactly on ``#`` nodes, and no empty node below the root."""
    pairs: set[tuple[str, Any]] = set()
    destinations = node.destinations
    if isinstance(destinations, dict):  # topic._Several, a dict
        assert len(destinations) >= 2, "a lone destination should be stored as itself"
        pairs.update((".".join(words), destination) for destination in destinations)
    elif destinations is not None:
        pairs.add((".".join(words), destinations))
    children = []
    if type(node.words) is dict:
        assert len(node.words) >= 2, "a lone child should be stored as itself"
        for word, child in node.words.items():
            assert child.word == word
            children.append(child)
    elif node.words is not None:
        children.append(node.words)
    for child in children:
        assert child.word not in ("*", "#") and not child.is_hash
    for child, word in ((node.star, "*"), (node.hash, "#")):
        if child is not None:
            assert child.word == word and child.is_hash == (word == "#")
            children.append(child)
    for child in children:
        assert not child.empty(), f"an empty node left under {words}"
        pairs |= trie_pairs(child, (*words, child.word))
    return pairs


def assert_indexes_match(
    exchange: Exchange, expected: set[ModelBinding], queues: dict[str, Queue], gone: list[Queue]
) -> None:
    """Every incremental index of ``exchange`` equals what its model bindings give when rebuilt from
    scratch: the base's bindings and per-destination index (through ``is_bound`` and ``bindings_of``,
    and its canonical form), direct's per-key destinations, topic's trie, each queue's own set of
    (exchange, key).  ``gone`` are deleted queue objects: nothing may still point at them."""
    assert {
        (d.name, key, tuple(sorted(arguments.items()))) for d, key, arguments in exchange.bindings.values()
    } == expected
    per_queue: dict[str, dict[str, set[tuple[tuple[str, Any], ...]]]] = {}
    for queue_name, key, arguments in expected:
        per_queue.setdefault(queue_name, {}).setdefault(key, set()).add(arguments)
    assert {id(d) for d in exchange._by_destination} == {id(queues[name]) for name in per_queue}
    for destination, held in exchange._by_destination.items():  # canonical: a dict only from two bindings
        if isinstance(held, tuple):
            assert held in exchange.bindings and exchange.bindings[held][0] is destination
        else:
            assert sum(1 if isinstance(variants, str) else len(variants) for variants in held.values()) >= 2
            for variants in held.values():
                assert isinstance(variants, str) or len(variants) >= 2
    probe_keys = {key for _, key, _ in expected} | {probe for probe, _, _ in KEY_PROBES}
    for queue in [*queues.values(), *gone]:
        mine = per_queue.get(queue.name, {}) if queues.get(queue.name) is queue else {}
        assert {(key, tuple(sorted(arguments.items()))) for key, arguments in exchange.bindings_of(queue)} == {
            (key, arguments) for key, variants in mine.items() for arguments in variants
        }
        for key in probe_keys:
            assert exchange.is_bound(queue, key) == (key in mine), (queue.name, key)
        if queues.get(queue.name) is queue:
            assert {key for name, key in queue.bindings if name == exchange.name} == set(mine)
    pairs = {(key, queue_name) for queue_name, key, _ in expected}
    if isinstance(exchange, DirectExchange):
        routes: dict[str, set[str]] = {}
        for key, queue_name in pairs:
            routes.setdefault(key, set()).add(queue_name)
        for destinations in exchange._routes.values():
            assert isinstance(destinations, tuple) == (len(destinations) == 1) and destinations
            for destination in destinations:
                assert queues.get(destination.name) is destination
        assert {key: {d.name for d in destinations} for key, destinations in exchange._routes.items()} == routes
    if isinstance(exchange, TopicExchange):
        held = trie_pairs(exchange._trie.root)
        for _, destination in held:
            assert queues.get(destination.name) is destination
        assert {(pattern, destination.name) for pattern, destination in held} == pairs


# keys many bindings share (several queues on one direct key, trie nodes with several children)
COMMON_KEYS = st.sampled_from(["a", "b", "a.b", "a.a", "#", ""])


class RoutingMachine(RuleBasedStateMachine):
    """One vhost with one exchange of each type and a few queues, mirrored by a set of bindings."""

    def __init__(self) -> None:
        super().__init__()
        self.vhost = new_vhost()
        self.bindings: set[Binding] = set()
        self.deleted_queues: list[Queue] = []  # old objects of deleted queues, which no index may keep
        for name in QUEUE_NAMES:
            declare_queue(self.vhost, name)
        for name, type_name in EXCHANGE_NAMES.items():
            declare_exchange(self.vhost, name, type_name)

    def check(
        self, exchange_name: str, routing_key: str, headers: dict[str, Any] | None, message: Message | None = None
    ) -> None:
        if exchange_name == "":
            expected = {routing_key} & set(self.vhost.queues)
        else:
            expected = {
                queue
                for exchange, queue, key, arguments in self.bindings
                if exchange == exchange_name
                and model_binding_matches(
                    EXCHANGE_NAMES[exchange_name], key, dict(arguments), routing_key, headers or {}
                )
            }
        actual = routed(self.vhost.exchanges[exchange_name], message or make_message(routing_key, headers))
        assert actual == expected, (exchange_name, routing_key, headers, sorted(self.bindings, key=repr))

    @rule(
        exchange=st.sampled_from(sorted(EXCHANGE_NAMES)),
        queue=st.sampled_from(QUEUE_NAMES),
        key=COMMON_KEYS | topic_keys,
        arguments=st.just({}) | binding_arguments(),
    )
    def bind(self, exchange: str, queue: str, key: str, arguments: dict[str, Any]) -> None:
        if exchange in self.vhost.exchanges and queue in self.vhost.queues:
            self.vhost.bind(self.vhost.exchanges[exchange], self.vhost.queues[queue], key, arguments)
            self.bindings.add((exchange, queue, key, tuple(sorted(arguments.items()))))

    @rule(
        exchange=st.sampled_from(sorted(EXCHANGE_NAMES)),
        queue=st.sampled_from(QUEUE_NAMES),
        key=topic_keys,
        arguments=st.just({}) | binding_arguments(),
    )
    def unbind_maybe_missing(self, exchange: str, queue: str, key: str, arguments: dict[str, Any]) -> None:
        if exchange in self.vhost.exchanges and queue in self.vhost.queues:
            self.vhost.unbind(self.vhost.exchanges[exchange], self.vhost.queues[queue], key, arguments)
            self.bindings.discard((exchange, queue, key, tuple(sorted(arguments.items()))))

    @precondition(lambda self: self.bindings)
    @rule(data=st.data(), again=st.booleans())
    def unbind_or_rebind_existing(self, data: st.DataObject, again: bool) -> None:
        binding = data.draw(st.sampled_from(sorted(self.bindings, key=repr)))
        exchange, queue, key, arguments = binding
        if again:
            self.vhost.bind(self.vhost.exchanges[exchange], self.vhost.queues[queue], key, dict(arguments))
        else:
            self.vhost.unbind(self.vhost.exchanges[exchange], self.vhost.queues[queue], key, dict(arguments))
            self.bindings.discard(binding)

    @precondition(lambda self: self.bindings)
    @rule(data=st.data(), queue=st.sampled_from(QUEUE_NAMES), arguments=st.just({}) | binding_arguments())
    def bind_an_existing_key_again(self, data: st.DataObject, queue: str, arguments: dict[str, Any]) -> None:
        """Another queue, or other arguments, with a key already bound: keys with several destinations
        and bindings that differ only in arguments, which a random key rarely gives."""
        exchange, _, key, _ = data.draw(st.sampled_from(sorted(self.bindings, key=repr)))
        self.bind(exchange, queue, key, arguments)

    @rule(
        exchange=st.sampled_from(["", *sorted(EXCHANGE_NAMES)]),
        key=topic_keys | st.sampled_from(QUEUE_NAMES),
        headers=st.none() | header_tables,
    )
    def publish(self, exchange: str, key: str, headers: dict[str, Any] | None) -> None:
        if exchange in self.vhost.exchanges:
            self.check(exchange, key, headers)

    @rule(name=st.sampled_from(QUEUE_NAMES))
    def delete_queue(self, name: str) -> None:
        if name in self.vhost.queues:
            self.deleted_queues.append(self.vhost.queues[name])
            self.vhost.delete_queue(self.vhost.queues[name])
            self.bindings = {binding for binding in self.bindings if binding[1] != name}

    @rule(name=st.sampled_from(QUEUE_NAMES))
    def redeclare_queue(self, name: str) -> None:
        if name not in self.vhost.queues:
            declare_queue(self.vhost, name)

    @rule(name=st.sampled_from(sorted(EXCHANGE_NAMES)))
    def delete_exchange(self, name: str) -> None:
        if name in self.vhost.exchanges:
            self.vhost.delete_exchange(self.vhost.exchanges[name])
            self.bindings = {binding for binding in self.bindings if binding[0] != name}

    @rule(name=st.sampled_from(sorted(EXCHANGE_NAMES)))
    def redeclare_exchange(self, name: str) -> None:
        if name not in self.vhost.exchanges:
            declare_exchange(self.vhost, name, EXCHANGE_NAMES[name])

    @invariant()
    def every_exchange_routes_like_the_model(self) -> None:
        for exchange_name in ["", *EXCHANGE_NAMES]:
            if exchange_name in self.vhost.exchanges:
                probes = HEADER_PROBES if EXCHANGE_NAMES.get(exchange_name) == "headers" else KEY_PROBES
                for key, headers, message in probes:
                    self.check(exchange_name, key, headers, message)

    @invariant()
    def every_index_equals_one_rebuilt_from_the_bindings(self) -> None:
        for name in EXCHANGE_NAMES:
            exchange = self.vhost.exchanges.get(name)
            if exchange is not None:
                expected = {
                    (queue, key, arguments) for source, queue, key, arguments in self.bindings if source == name
                }
                assert_indexes_match(exchange, expected, self.vhost.queues, self.deleted_queues[-5:])

    @invariant()
    def the_topic_trie_holds_only_the_bound_patterns(self) -> None:
        """Incremental bind/unbind keeps one trie node per distinct prefix of a bound pattern: no leftovers."""
        exchange = self.vhost.exchanges.get("ex-topic")
        if isinstance(exchange, TopicExchange):
            words = [split_words(key) for name, _, key, _ in self.bindings if name == "ex-topic"]
            prefixes = {pattern[:length] for pattern in words for length in range(1, len(pattern) + 1)}
            assert exchange._trie.nodes == len(prefixes)


RoutingMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRoutingMatchesModel = RoutingMachine.TestCase


@pytest.mark.parametrize("type_name", sorted(EXCHANGE_TYPES))
def test_indexes_follow_each_change_of_representation(type_name: str) -> None:
    """Walk every index through its shapes — one destination or child stored as itself, a dict from two,
    back to one, to none — checking each against a recomputation after every step."""
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "x", type_name)
    queues = {name: declare_queue(vhost, name) for name in ["q0", "q1", "q2"]}
    bound: set[ModelBinding] = set()
    gone: list[Queue] = []
    steps = [
        ("bind", "q0", "a.b", {}),
        ("bind", "q1", "a.b", {}),
        ("bind", "q2", "a.b", {}),
        ("bind", "q0", "a.b", {"x-k": 1}),
        ("bind", "q0", "a.b", {"x-k": 2}),
        ("bind", "q0", "a.c", {}),
        ("bind", "q0", "a", {}),
        ("bind", "q1", "a.#", {}),
        ("bind", "q1", "#", {}),
        ("unbind", "q0", "a.b", {"x-k": 1}),
        ("unbind", "q0", "a.b", {}),
        ("unbind", "q1", "a.b", {}),
        ("unbind", "q0", "a.c", {}),
        ("unbind", "q0", "a.b", {"x-k": 2}),
        ("delete", "q2", "", {}),
        ("unbind", "q1", "#", {}),
        ("unbind", "q1", "a.#", {}),
        ("delete", "q0", "", {}),
    ]
    for action, name, key, arguments in steps:
        if action == "bind":
            vhost.bind(exchange, queues[name], key, arguments)
            bound.add((name, key, tuple(sorted(arguments.items()))))
        elif action == "unbind":
            vhost.unbind(exchange, queues[name], key, arguments)
            bound.discard((name, key, tuple(sorted(arguments.items()))))
        else:
            gone.append(queues.pop(name))
            vhost.delete_queue(gone[-1])
            bound = {binding for binding in bound if binding[0] != name}
        assert_indexes_match(exchange, bound, vhost.queues, gone)
    assert not exchange.bindings and not exchange._by_destination


class ScanCountingDict(dict):  # type: ignore[type-arg]
    """An exchange's ``bindings`` that counts the walks over all of it."""

    scans = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().__iter__()

    def values(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().values()

    def items(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().items()

    def keys(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().keys()


@pytest.mark.parametrize("type_name", sorted(EXCHANGE_TYPES))
def test_bind_unbind_and_queue_delete_never_walk_the_other_bindings(type_name: str) -> None:
    """Their cost must not grow with the exchange's other bindings (a walk made binding or unbinding N
    queues O(N²)): none of them may iterate over all of the exchange's bindings."""
    vhost = new_vhost()
    exchange = declare_exchange(vhost, "x", type_name)
    exchange.bindings = ScanCountingDict()
    queues = [declare_queue(vhost, f"q{n}") for n in range(10)]
    for n in range(50):
        vhost.bind(exchange, queues[n % 10], f"k{n % 7}.{n}", {"x-match": "any", "n": n % 3})
    for n in range(0, 50, 3):
        vhost.unbind(exchange, queues[n % 10], f"k{n % 7}.{n}", {"x-match": "any", "n": n % 3})
    vhost.unbind(exchange, queues[0], "not.bound", {})
    for queue in queues[:4]:
        vhost.delete_queue(queue)
    assert exchange.bindings.scans == 0
    assert len(exchange.bindings) == sum(1 for n in range(50) if n % 3 and n % 10 >= 4)
