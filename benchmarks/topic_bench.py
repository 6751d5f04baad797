"""Topic routing with many bindings: publishes with fresh (never seen) routing keys per second.

A publisher whose keys vary — order ids, sensor names — misses the route cache on
almost every message, so the cost that matters is the match itself.  It should
stay flat as the number of bindings grows.  Bindings are three-word patterns
from a vocabulary of 1,000 words per position, about 1 in 10 words a ``*`` and
1 in 20 patterns ending in ``.#``; the keys are three words from the same
vocabulary, each used once.

Sans-IO (default): times ``TopicExchange.route`` through the core (a
``VirtualHost`` on a ``MemoryStore``), CPU time, for each binding count, and
also a cached key.  ``--broker`` adds a real ``python -m amqp_server`` process
driven by pika with publisher confirms (one round trip per publish, so the
route time is inside it); ``AMQP_URL`` (or ``--url``) adds a running broker such
as RabbitMQ the same way.

    python benchmarks/topic_bench.py [--bindings 1000,20000,100000] [--broker] [--url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: amqp_server, storage, interop_tests

from amqp_server.core.exchanges import EXCHANGE_TYPES
from amqp_server.core.message import Message
from amqp_server.core.queue import Queue
from amqp_server.core.vhost import VirtualHost
from storage.memory import MemoryStore

VOCABULARY = 1000
QUEUES = 100


def patterns(count: int, rng: random.Random) -> list[str]:
    result = set()
    while len(result) < count:
        words = ["*" if rng.random() < 0.1 else f"w{rng.randrange(VOCABULARY)}" for _ in range(3)]
        if rng.random() < 0.05:
            words[-1] = "#"
        result.add(".".join(words))
    return sorted(result)


def fresh_keys(rng: random.Random) -> Iterator[str]:
    seen: set[str] = set()
    while True:
        key = ".".join(f"w{rng.randrange(VOCABULARY)}" for _ in range(3))
        if key not in seen:
            seen.add(key)
            yield key


def sans_io(binding_count: int, seconds: float) -> tuple[float, float, float]:
    """(fresh-key µs per route, cached-key µs per route, mean destinations per fresh key)."""
    rng = random.Random(binding_count)
    vhost = VirtualHost("/", MemoryStore())
    exchange = EXCHANGE_TYPES["topic"](vhost, "t")
    vhost.add_exchange(exchange)
    queues = [Queue(vhost, f"q{n}") for n in range(QUEUES)]
    for queue in queues:
        vhost.add_queue(queue)
    for n, pattern in enumerate(patterns(binding_count, rng)):
        vhost.bind(exchange, queues[n % QUEUES], pattern, {})
    message = Message("t", "", struct.pack(">HHQH", 60, 0, 1, 0), b"x")  # a content header with no properties
    keys = fresh_keys(rng)
    route, routed, count, elapsed = exchange.route, 0, 0, 0.0
    while count < 50 or elapsed < seconds:
        batch = [next(keys) for _ in range(50 if elapsed < 0.1 else 2000)]  # made outside the timed part
        started = time.process_time()
        for key in batch:
            routed += len(route(message, key))
        elapsed += time.process_time() - started
        count += len(batch)
    fresh = elapsed / count * 1e6
    key = next(keys)
    route(message, key)
    started = time.process_time()
    for _ in range(200_000):
        route(message, key)
    cached = (time.process_time() - started) / 200_000 * 1e6
    return fresh, cached, routed / count


def over_amqp(url: str, binding_count: int, publishes: int) -> float:
    """Fresh-key publishes per second with confirms (one round trip each) on a broker at ``url``."""
    import pika

    rng = random.Random(binding_count)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    try:
        channel.exchange_declare("topic-bench", "topic", auto_delete=False)
        names = [f"topic-bench-{n}" for n in range(QUEUES)]
        for name in names:
            channel.queue_declare(name, arguments={"x-max-length": 10})
        for n, pattern in enumerate(patterns(binding_count, rng)):
            channel.queue_bind(names[n % QUEUES], "topic-bench", pattern)
        channel.confirm_delivery()
        keys = fresh_keys(rng)
        started = time.perf_counter()
        for _ in range(publishes):
            channel.basic_publish("topic-bench", next(keys), b"x")
        rate = publishes / (time.perf_counter() - started)
    finally:
        channel.exchange_delete("topic-bench")
        for name in names:
            channel.queue_delete(name)
        connection.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", default="1000,20000,100000", help="comma-separated binding counts")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds of fresh keys per count (sans-IO)")
    parser.add_argument("--broker", action="store_true", help="also a python -m amqp_server process, via pika")
    parser.add_argument("--url", action="append", default=[], help="also this running broker (repeatable)")
    parser.add_argument("--publishes", type=int, default=2000, help="confirmed publishes per count over AMQP")
    args = parser.parse_args()
    counts = [int(n) for n in args.bindings.split(",")]
    urls = [("url", url) for url in args.url]
    if os.environ.get("AMQP_URL"):
        urls.append(("AMQP_URL", os.environ["AMQP_URL"]))

    print(f"{'bindings':>9} {'fresh keys/s':>13} {'µs/route':>9} {'cached µs':>10} {'dests/key':>10}   (sans-IO, CPU)")
    for count in counts:
        fresh, cached, destinations = sans_io(count, args.seconds)
        print(f"{count:>9,} {1e6 / fresh:>13,.0f} {fresh:>9.2f} {cached:>10.3f} {destinations:>10.2f}")

    if args.broker:
        from interop_tests.broker_process import BrokerProcess

        with tempfile.TemporaryDirectory(prefix="topic-bench-") as data_dir:
            broker = BrokerProcess(Path(data_dir)).start()
            try:
                over_brokers([("ours", broker.url)], counts, args.publishes)
            finally:
                broker.stop()
    if urls:
        over_brokers(urls, counts, args.publishes)


def over_brokers(urls: list[tuple[str, str]], counts: list[int], publishes: int) -> None:
    for label, url in urls:
        print(f"\n{label}: confirmed publishes with fresh keys ({publishes} per count, pika, wall clock)")
        print(f"{'bindings':>9} {'publishes/s':>12} {'ms/publish':>11}")
        for count in counts:
            rate = over_amqp(url, count, publishes)
            print(f"{count:>9,} {rate:>12,.0f} {1e3 / rate:>11.3f}")


if __name__ == "__main__":
    main()
