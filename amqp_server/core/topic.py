"""Topic matching: a trie over the words of the binding patterns, as RabbitMQ's.

A pattern is its ``.``-separated words (the empty string is zero words, ``a..b``
has an empty word in the middle); ``*`` matches exactly one word and ``#`` zero
or more.  Each node of the trie is one pattern prefix, with literal-word edges
in a dict and the ``*`` and ``#`` edges apart from them (a key word ``*`` or
``#`` is just a word).  The bindings whose pattern ends at a node hang on it.

How matching works: an NFA walk, one step per key word, over the set of nodes
whose prefix matches the words so far.  A ``#`` node stays in the set while it
eats words, and entering any node also enters its ``#`` child (zero words).  A
node is in the set at most once per step, so a key of n words costs
O(n × live nodes) — ``#.#.#.#`` against 60 words stays small — and the cost
depends on the pattern prefixes that match the key, not on how many bindings
there are (sans-IO, benchmarks/topic_bench.py: a fresh key 0.8 ms → 1.9 µs with
1k bindings, 15 ms → 3 µs with 20k, 79 ms → 4.7 µs with 100k).

Binding and unbinding touch only the pattern's path (O(words)); removing the
last binding of a pattern prunes the nodes it leaves empty.
"""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

D = TypeVar("D", bound=Hashable)


def topic_words(key: str) -> list[str]:
    """A routing key or binding pattern as its words (AMQP: ``.``-separated; ``""`` has none)."""
    return key.split(".") if key else []


class _Node(Generic[D]):
    __slots__ = ("words", "star", "hash", "is_hash", "bindings")

    def __init__(self, is_hash: bool = False) -> None:
        self.words: dict[str, _Node[D]] | None = None  # literal-word edges, None until the first
        self.star: _Node[D] | None = None
        self.hash: _Node[D] | None = None
        self.is_hash = is_hash  # reached by a ``#`` edge: it may also eat the next word and stay
        # destinations bound with the pattern ending here → how many bindings (they differ in arguments)
        self.bindings: dict[D, int] | None = None

    def child(self, word: str) -> _Node[D] | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        return self.words.get(word) if self.words is not None else None

    def add_child(self, word: str) -> _Node[D]:
        node: _Node[D] = _Node(is_hash=word == "#")
        if word == "*":
            self.star = node
        elif word == "#":
            self.hash = node
        else:
            if self.words is None:
                self.words = {}
            self.words[word] = node
        return node

    def remove_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        else:
            assert self.words is not None
            del self.words[word]
            if not self.words:
                self.words = None

    def empty(self) -> bool:
        return self.bindings is None and self.words is None and self.star is None and self.hash is None


class TopicTrie(Generic[D]):
    """Binding patterns → destinations; ``match`` gives the destinations of every matching pattern."""

    __slots__ = ("root", "nodes")

    def __init__(self) -> None:
        self.root: _Node[D] = _Node()
        self.nodes = 0  # besides the root: 0 once every binding is gone

    def add(self, pattern: str, destination: D) -> None:
        """One more binding of ``destination`` with ``pattern`` (the exchange knows they are distinct)."""
        node = self.root
        for word in topic_words(pattern):
            child = node.child(word)
            if child is None:
                child = node.add_child(word)
                self.nodes += 1
            node = child
        if node.bindings is None:
            node.bindings = {}
        node.bindings[destination] = node.bindings.get(destination, 0) + 1

    def remove(self, pattern: str, destination: D) -> None:
        """One binding fewer of ``destination`` with ``pattern``; prune the nodes the last one leaves empty."""
        path = [self.root]
        words = topic_words(pattern)
        for word in words:
            child = path[-1].child(word)
            if child is None:
                return
            path.append(child)
        bindings = path[-1].bindings
        if bindings is None or destination not in bindings:
            return
        if bindings[destination] > 1:
            bindings[destination] -= 1
            return
        del bindings[destination]
        if not bindings:
            path[-1].bindings = None
        for depth in range(len(words), 0, -1):
            if not path[depth].empty():
                break
            path[depth - 1].remove_child(words[depth - 1])
            self.nodes -= 1

    def match(self, routing_key: str) -> list[D]:
        """Destinations bound with a pattern matching ``routing_key``: once per matching pattern."""
        current = _enter([self.root])
        for word in topic_words(routing_key):
            following: list[_Node[D]] = []
            for node in current:
                if node.words is not None:
                    child = node.words.get(word)
                    if child is not None:
                        following.append(child)
                if node.star is not None:
                    following.append(node.star)
                if node.is_hash:
                    following.append(node)
            if not following:
                return []
            current = _enter(following)
        return [destination for node in current if node.bindings is not None
                for destination in node.bindings]


def _enter(nodes: list[_Node[D]]) -> list[_Node[D]]:
    """``nodes`` and the ``#`` nodes reachable from them by zero words, each once.

    Only ``#`` nodes can be reached twice in one step (a node has one parent, and
    only a ``#`` node stays put), so only they are deduplicated; without any,
    the list is returned as it is.
    """
    for node in nodes:
        if node.is_hash or node.hash is not None:
            break
    else:
        return nodes
    entered: list[_Node[D]] = []
    seen: set[_Node[D]] = set()
    for node in nodes:
        if node.is_hash:
            if node in seen:
                continue
            seen.add(node)
        entered.append(node)
        node = node.hash
        while node is not None and node not in seen:
            seen.add(node)
            entered.append(node)
            node = node.hash
    return entered
