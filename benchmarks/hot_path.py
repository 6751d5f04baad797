"""Microbenchmarks of the broker's hot path, in process and without sockets (CPU time per message).

Drives the sans-IO core directly — the same code the server runs — so the
numbers show where time goes per message without the network or the event
loop: frame decoding, publish → route → enqueue → deliver, a consumer draining
a queued backlog, and encoding.

    python benchmarks/hot_path.py [--messages 200000] [--size 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: tests.frames builds the frames

from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.broker import Broker
from amqp_server.wire.framing import FrameReader
from amqp_server.wire.methods import decode_method, deliver_content, shortstr
from tests.frames import FakeClock, open_peer, publish


def per_message(label: str, count: int, run: Callable[[], None]) -> tuple[str, float]:
    started = time.process_time()
    run()
    return label, (time.process_time() - started) / count * 1e6


def bench_framing(count: int, size: int) -> tuple[str, float]:
    data = publish(1, "q", b"x" * size) * 1000
    reader = FrameReader(131072)

    def run() -> None:
        for _ in range(count // 1000):
            reader.feed(data)

    return per_message("frame reader (3 frames)", count, run)


def bench_decode_publish(count: int) -> tuple[str, float]:
    payload = FrameReader(131072).feed(publish(1, "routing.key", b""))[0][2]

    def run() -> None:
        for _ in range(count):
            decode_method(payload)

    return per_message("decode Basic.Publish", count, run)


def bench_encode_deliver(count: int) -> tuple[str, float]:
    tag, exchange, key = shortstr("amq.ctag-x"), shortstr(""), shortstr("q")
    body = b"x" * 100
    header = ContentHeader(0, len(body), commands.Basic.Properties()).marshal()

    def run() -> None:
        for n in range(count):
            deliver_content(1, tag, n, False, exchange, key, header, body, 131072)

    return per_message("encode Deliver + header + body", count, run)


def bench_publish_to_deliver(count: int, size: int, consume: bool) -> tuple[str, float]:
    broker = Broker(clock=FakeClock())
    publisher = open_peer(broker)
    publisher.send_method(1, commands.Queue.Declare(queue="q"))
    consumer = open_peer(broker)
    if consume:
        consumer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
    publisher.connection.data_to_send()
    consumer.connection.data_to_send()
    batch = publish(1, "q", b"x" * size) * 1000

    def run() -> None:
        for _ in range(count // 1000):
            publisher.connection.receive_data(batch)
            consumer.connection.data_to_send()

    label = "publish → route → deliver (no-ack)" if consume else "publish → route → enqueue"
    return per_message(label, count, run)


def bench_drain_backlog(count: int, size: int) -> tuple[str, float]:
    """A consumer arriving at a queue with a backlog: the dispatch loop (no hand-off), deliver, flush."""
    broker = Broker(clock=FakeClock())
    publisher = open_peer(broker)
    publisher.send_method(1, commands.Queue.Declare(queue="q"))
    batch = publish(1, "q", b"x" * size) * 1000
    for _ in range(count // 1000):
        publisher.connection.receive_data(batch)
    consumer = open_peer(broker)
    consumer.connection.data_to_send()

    def run() -> None:
        consumer.send_method(1, commands.Basic.Consume(queue="q", no_ack=True))
        consumer.connection.data_to_send()

    return per_message("queued backlog → deliver (no-ack)", count, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    results = [
        bench_framing(args.messages, args.size),
        bench_decode_publish(args.messages),
        bench_encode_deliver(args.messages),
        bench_publish_to_deliver(args.messages, args.size, consume=False),
        bench_publish_to_deliver(args.messages, args.size, consume=True),
        bench_drain_backlog(args.messages, args.size),
    ]
    print(f"{'stage':<40} {'µs/msg':>8}   ({args.messages:,} messages of {args.size} B, CPU time)")
    for label, micros in results:
        print(f"{label:<40} {micros:>8.2f}")


if __name__ == "__main__":
    main()
