"""Topic matching: a trie over the words of the binding patterns, as RabbitMQ's.

A pattern is its ``.``-separated words (the empty string is zero words, ``a..b``
has an empty word in the middle); ``*`` matches exactly one word and ``#`` zero
or more.  Each node of the trie is one pattern prefix, with its literal-word
edges and the ``*`` and ``#`` edges apart from them (a key word ``*`` or ``#`` is
just a word).  The destinations bound with a pattern ending at a node hang on it.

How matching works: an NFA walk, one step per key word, over the set of nodes
whose prefix matches the words so far.  A ``#`` node stays in the set while it
eats words, and entering any node also enters its ``#`` child (zero words).  A
node is in the set at most once per step, so a key of n words costs
O(n × live nodes) — ``#.#.#.#`` against 60 words stays small — and the cost
depends on the pattern prefixes that match the key, not on how many bindings
there are (sans-IO, benchmarks/topic_bench.py: a fresh key 0.8 ms → 1.9 µs with
1k bindings, 15 ms → 3 µs with 20k, 79 ms → 4.7 µs with 100k).

Adding and removing touch only the pattern's path (O(words)); removing the last
destination of a pattern prunes the nodes it leaves empty.  The trie holds each
(pattern, destination) pair once: the exchange knows the bindings behind a
pair (they differ in arguments), adds it with the first and removes it with the last.

Memory: most nodes have one literal child and one destination (a pattern's
tail is usually its own), so a lone child or destination is stored as itself
and only a second one makes a dict — a one-entry dict is 224 bytes here — and
the words are interned.  The trie for 100k three-word patterns over 100
destinations (topic_bench.py's) took 59 MB with dicts everywhere, 26 MB with
lone ones stored as themselves, 18 MB with interned words as well
(tracemalloc); a fresh key's match time did not change (topic_bench.py, 100k
bindings: 4.1 → 3.5 µs, within noise).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Generic, TypeVar, final

D = TypeVar("D", bound=Hashable)  # never a _Several: that in ``destinations`` means several


@final
class _Several(dict[D, None]):
    """A node's destinations once there are two or more: a dict used as an ordered set. Its own (final) class so
    that ``type(x) is _Several`` tells it from a lone destination, for mypy too, at the cost of ``type(x) is dict``."""

    __slots__ = ()


def topic_words(key: str) -> list[str]:
    """A routing key or binding pattern as its words (AMQP: ``.``-separated; ``""`` has none)."""
    return key.split(".") if key else []


@final
class _Node(Generic[D]):
    __slots__ = ("word", "words", "star", "hash", "is_hash", "destinations")

    def __init__(self, word: str) -> None:
        self.word = word  # of the edge that leads here, read when this is its parent's lone literal child
        # literal-word edges: None, the lone child itself, or word → child once there are two
        self.words: _Node[D] | dict[str, _Node[D]] | None = None
        self.star: _Node[D] | None = None
        self.hash: _Node[D] | None = None
        self.is_hash = word == "#"  # reached by a ``#`` edge: it may also eat the next word and stay
        # destinations bound with the pattern ending here: None, the lone one, or a dict used as an ordered set
        self.destinations: D | _Several[D] | None = None

    def child(self, word: str) -> _Node[D] | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        words = self.words
        if isinstance(words, dict):
            return words.get(word)
        return words if words is not None and words.word == word else None

    def add_child(self, word: str) -> _Node[D]:
        word = sys.intern(word)  # patterns share words: 100k patterns' trie 26 → 18 MB
        node: _Node[D] = _Node(word)
        if word == "*":
            self.star = node
        elif word == "#":
            self.hash = node
        elif self.words is None:
            self.words = node
        elif isinstance(self.words, dict):
            self.words[word] = node
        else:
            self.words = {self.words.word: self.words, word: node}
        return node

    def remove_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        elif isinstance(self.words, dict):
            del self.words[word]
            if len(self.words) == 1:
                self.words = next(iter(self.words.values()))
        else:
            self.words = None

    def add_destination(self, destination: D) -> None:
        current = self.destinations
        if current is None:
            self.destinations = destination
        elif type(current) is _Several:
            current[destination] = None
        elif current != destination:
            self.destinations = _Several({current: None, destination: None})

    def remove_destination(self, destination: D) -> bool:
        """Remove ``destination`` from this node; False when it was not there."""
        current = self.destinations
        if type(current) is _Several:
            if destination not in current:
                return False
            del current[destination]
            if len(current) == 1:
                self.destinations = next(iter(current))
        elif current is not None and current == destination:
            self.destinations = None
        else:
            return False
        return True

    def empty(self) -> bool:
        return self.destinations is None and self.words is None and self.star is None and self.hash is None


class TopicTrie(Generic[D]):
    """Binding patterns → destinations; ``match`` gives the destinations of every matching pattern."""

    __slots__ = ("root", "nodes")

    def __init__(self) -> None:
        self.root: _Node[D] = _Node("")
        self.nodes = 0  # besides the root: 0 once every binding is gone

    def add(self, pattern: str, destination: D) -> None:
        """Bind ``destination`` with ``pattern`` (a pair already there stays once)."""
        node = self.root
        for word in topic_words(pattern):
            child = node.child(word)
            if child is None:
                child = node.add_child(word)
                self.nodes += 1
            node = child
        node.add_destination(destination)

    def remove(self, pattern: str, destination: D) -> None:
        """Unbind ``destination`` from ``pattern``; prune the nodes that leaves empty."""
        path = [self.root]
        words = topic_words(pattern)
        for word in words:
            child = path[-1].child(word)
            if child is None:
                return
            path.append(child)
        if not path[-1].remove_destination(destination):
            return
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
                words = node.words
                if words is not None:
                    # ``type() is`` on the final class narrows both branches; isinstance(words, dict) costs
                    # 26 ns to say no here, this 13 (timeit)
                    if type(words) is _Node:
                        if words.word == word:
                            following.append(words)
                    else:
                        child = words.get(word)
                        if child is not None:
                            following.append(child)
                if node.star is not None:
                    following.append(node.star)
                if node.is_hash:
                    following.append(node)
            if not following:
                return []
            current = _enter(following)
        matched: list[D] = []
        for node in current:
            destinations = node.destinations
            if destinations is not None:
                if type(destinations) is _Several:
                    matched.extend(destinations)
                else:
                    matched.append(destinations)
        return matched


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
        behind = node.hash
        while behind is not None and behind not in seen:
            seen.add(behind)
            entered.append(behind)
            behind = behind.hash
    return entered
