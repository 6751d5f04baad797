"""Binding churn with many bindings: bind+unbind and queue deletes per second, and the memory of the bindings.

The issue: "a declare costs the same with 50,000 queues as with 5".  A bind, an
unbind or a queue delete should cost the same however many other bindings the
exchange holds.  For each existing binding count (spread over 100 queues, as
topic_bench.py's patterns for topic, distinct keys for direct), this times,
sans-IO through ``VirtualHost`` on a ``MemoryStore`` (CPU time):

* bind+unbind: ``vhost.bind`` then ``vhost.unbind`` of a binding not yet there;
* queue delete: declare a queue, bind it once, delete it (the delete walks its bindings).

Then the memory (tracemalloc) that 100,000 topic bindings (and direct ones) add
to a vhost whose queues already exist.  Runs against whichever checkout it sits
in, so the same file copied into an old checkout gives the "before" numbers.

    python benchmarks/binding_bench.py [--bindings 1000,20000,100000] [--seconds 1] [--memory 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: amqp_server, storage

from amqp_server.core.exchanges import EXCHANGE_TYPES, Exchange
from amqp_server.core.queue import Queue
from amqp_server.core.vhost import VirtualHost
from storage.memory import MemoryStore

VOCABULARY = 1000
QUEUES = 100


def topic_patterns(count: int, rng: random.Random) -> list[str]:
    """topic_bench.py's patterns: three words, 1 in 10 a ``*``, 1 in 20 ending in ``.#``."""
    result: set[str] = set()
    while len(result) < count:
        words = ["*" if rng.random() < 0.1 else f"w{rng.randrange(VOCABULARY)}" for _ in range(3)]
        if rng.random() < 0.05:
            words[-1] = "#"
        result.add(".".join(words))
    return sorted(result)


def keys_for(type_name: str, count: int, rng: random.Random) -> list[str]:
    return topic_patterns(count, rng) if type_name == "topic" else [f"key-{n}" for n in range(count)]


def populated(type_name: str, count: int) -> tuple[VirtualHost, Exchange, list[Queue]]:
    vhost = VirtualHost("/", MemoryStore())
    exchange = EXCHANGE_TYPES[type_name](vhost, "x")
    vhost.add_exchange(exchange)
    queues = [Queue(vhost, f"q{n}") for n in range(QUEUES)]
    for queue in queues:
        vhost.add_queue(queue)
    for n, key in enumerate(keys_for(type_name, count, random.Random(count))):
        vhost.bind(exchange, queues[n % QUEUES], key, {})
    return vhost, exchange, queues


def per_second(operation: Callable[[int], None], seconds: float) -> float:
    """Operations per CPU second: at least 20 of them, and at least ``seconds`` of CPU."""
    done, elapsed = 0, 0.0
    while done < 20 or elapsed < seconds:
        batch = 5 if elapsed < 0.05 else 200
        started = time.process_time()
        for n in range(done, done + batch):
            operation(n)
        elapsed += time.process_time() - started
        done += batch
    return done / elapsed


def churn(type_name: str, count: int, seconds: float) -> tuple[float, float]:
    """(bind+unbind pairs per second, queue declare+bind+delete per second) with ``count`` bindings present."""
    vhost, exchange, queues = populated(type_name, count)
    key = "fresh.new.key" if type_name == "topic" else "fresh-key"

    def bind_unbind(n: int) -> None:
        queue = queues[n % QUEUES]
        vhost.bind(exchange, queue, key, {})
        vhost.unbind(exchange, queue, key, {})

    def delete_queue(n: int) -> None:
        queue = Queue(vhost, f"extra{n}")
        vhost.add_queue(queue)
        vhost.bind(exchange, queue, key, {})
        vhost.delete_queue(queue)

    pairs = per_second(bind_unbind, seconds)
    deletes = per_second(delete_queue, seconds)
    assert len(exchange.bindings) == count
    return pairs, deletes


def binding_memory(type_name: str, count: int) -> float:
    """MB that ``count`` bindings over 100 existing queues take (tracemalloc, keys made beforehand)."""
    vhost = VirtualHost("/", MemoryStore())
    exchange = EXCHANGE_TYPES[type_name](vhost, "x")
    vhost.add_exchange(exchange)
    queues = [Queue(vhost, f"q{n}") for n in range(QUEUES)]
    for queue in queues:
        vhost.add_queue(queue)
    keys = keys_for(type_name, count, random.Random(count))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n, key in enumerate(keys):
        vhost.bind(exchange, queues[n % QUEUES], key, {})
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", default="1000,20000,100000", help="comma-separated existing binding counts")
    parser.add_argument("--types", default="direct,topic", help="comma-separated exchange types")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per measurement")
    parser.add_argument("--memory", type=int, default=100_000, help="bindings for the memory measurement (0: skip)")
    args = parser.parse_args()
    counts = [int(n) for n in args.bindings.split(",")]
    print(
        f"{'type':>7} {'bindings':>9} {'bind+unbind/s':>14} {'µs/pair':>9} {'q delete/s':>11} {'µs/delete':>10}"
        "   (sans-IO, CPU)"
    )
    for type_name in args.types.split(","):
        for count in counts:
            pairs, deletes = churn(type_name, count, args.seconds)
            print(
                f"{type_name:>7} {count:>9,} {pairs:>14,.0f} {1e6 / pairs:>9.1f} {deletes:>11,.0f} "
                f"{1e6 / deletes:>10.1f}"
            )
    if args.memory:
        for type_name in args.types.split(","):
            print(
                f"memory of {args.memory:,} {type_name} bindings: {binding_memory(type_name, args.memory):.1f} MB "
                "(tracemalloc)"
            )


if __name__ == "__main__":
    main()
