"""One publisher and ten consumers at ten offsets on a stream, beside the same fan-out on classic queues.

Why: a stream keeps one log that every consumer reads through its own cursor, so ten readers should
cost little more than one in broker memory; ten classic queues behind a fanout exchange hold ten copies.
Both scenarios publish the same persistent 100-byte messages (``--messages``, half before the consumers
start, half while they run) and deliver the whole backlog to ten consumers with manual acks and a
prefetch of 500:

* stream: one stream, consumer ``i`` starts at offset ``i * half / 10`` (so they read 10 different
  amounts: a consumer at an old offset reads from the store, the newest from memory);
* stream with 1 consumer (at offset 0): what the ten above cost more than one;
* classic: a fanout exchange to ten durable classic queues, one consumer each (every consumer gets every
  message: more deliveries than the stream scenario, reported as such).

Printed per scenario: publish msg/s (the second half, while consuming), deliveries/s over all consumers
(from the consumers' start to the last delivery), deliveries, and the broker's peak RSS (sampled every
0.1 s from /proc; for ``--url`` give ``--rss-pid``).  The client is pika in two processes (publisher; the ten consumers
on one connection), so on a small machine the client may well be the limit: compare the columns, not
absolute numbers.  ``--url`` runs against a running broker (e.g. RabbitMQ) instead of starting ours.

    .venv/bin/python benchmarks/streams.py [--messages 20000] [--url amqp://guest:guest@127.0.0.1:5674/ --rss-pid PID]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from interop_tests.broker_process import BrokerProcess  # noqa: E402

CONSUMERS = 10
PREFETCH = 500
BODY = b"x" * 100
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def publish(url: str, exchange: str, routing_key: str, count: int) -> float:
    """Publish ``count`` messages, then one confirmed round trip; the seconds it took."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish(exchange, routing_key, BODY, PERSISTENT)
    channel.confirm_delivery()  # waits for everything before it to be processed
    channel.basic_publish(exchange, routing_key, BODY, PERSISTENT)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def _publisher(url: str, exchange: str, routing_key: str, count: int, result: Any) -> None:
    result.put(publish(url, exchange, routing_key, count))


def consume(url: str, queues: list[str], arguments: list[dict[str, Any]], expected: list[int]) -> tuple[int, float]:
    """Ten consumers on one connection until each has ``expected[i]`` deliveries: (deliveries, seconds)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    counts = [0] * len(queues)

    def on_message(index: int, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        counts[index] += 1
        if counts[index] % 100 == 0 or counts[index] >= expected[index]:
            ch.basic_ack(method.delivery_tag, multiple=True)

    started = time.perf_counter()
    for index, (queue, args) in enumerate(zip(queues, arguments, strict=True)):
        channel.basic_consume(queue, lambda ch, m, p, b, i=index: on_message(i, ch, m, p, b), arguments=args or None)
    deadline = time.monotonic() + 600
    while any(c < e for c, e in zip(counts, expected, strict=True)) and time.monotonic() < deadline:
        connection.process_data_events(0.05)
    elapsed = time.perf_counter() - started
    connection.close()
    return sum(counts), elapsed


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


class RssSampler(threading.Thread):
    """The broker's peak VmRSS, sampled every 0.1 s (``pid`` None: not measured)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running and self.pid is not None:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.1)


def scenario(url: str, pid: int | None, kind: str, messages: int, consumers: int = CONSUMERS) -> dict[str, Any]:
    half = messages // 2
    name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    if kind == "stream":
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
        exchange, routing_key, queues = "", name, [name] * consumers
        starts = [index * half // CONSUMERS for index in range(consumers)]
        arguments: list[dict[str, Any]] = [{"x-stream-offset": start} for start in starts]
        expected = [messages + 2 - start for start in starts]  # + the two confirmed round-trip messages
    else:
        exchange, routing_key = name, ""
        channel.exchange_declare(name, "fanout", durable=True)
        queues = [f"{name}-{index}" for index in range(CONSUMERS)]
        for queue in queues:
            channel.queue_declare(queue, durable=True)
            channel.queue_bind(queue, name)
        arguments, expected = [{}] * CONSUMERS, [messages + 2] * CONSUMERS
    sampler = RssSampler(pid)
    sampler.start()
    publish(url, exchange, routing_key, half)
    results: Any = multiprocessing.Queue()
    publisher = multiprocessing.Process(target=_publisher, args=(url, exchange, routing_key, messages - half, results))
    publisher.start()
    deliveries, consume_seconds = consume(url, queues, arguments, expected)
    publish_seconds = results.get(timeout=600)
    publisher.join()
    sampler.running = False
    sampler.join()
    for queue in set(queues):
        channel.queue_delete(queue)
    if kind != "stream":
        channel.exchange_delete(name)
    connection.close()
    return {
        "scenario": f"{kind}: 1 publisher, {consumers} consumer(s)"
        + (f" at {consumers} offset(s)" if kind == "stream" else f" on {consumers} queues"),
        "publish msg/s": (messages - half) / publish_seconds,
        "deliveries/s": deliveries / consume_seconds,
        "deliveries": deliveries,
        "peak RSS MiB": sampler.peak / 2**20 if pid is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--url", help="a running broker instead of starting ours")
    parser.add_argument("--rss-pid", type=int, help="with --url: the broker's pid, for its RSS")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        broker = None if options.url else BrokerProcess(Path(data_dir), "--management-port", "-1").start()
        url = options.url or broker.url  # type: ignore[union-attr]
        pid = options.rss_pid if broker is None else broker.process.pid  # type: ignore[union-attr]
        try:
            rows = [
                scenario(url, pid, kind, options.messages, consumers)
                for kind, consumers in (("stream", 1), ("stream", CONSUMERS), ("classic", CONSUMERS))
            ]
        finally:
            if broker is not None:
                broker.stop()
    print(f"{'scenario':52} {'publish msg/s':>14} {'deliveries/s':>13} {'deliveries':>11} {'peak RSS MiB':>13}")
    for row in rows:
        rss = "n/a" if row["peak RSS MiB"] is None else f"{row['peak RSS MiB']:.0f}"
        print(
            f"{row['scenario']:52} {row['publish msg/s']:14.0f} {row['deliveries/s']:13.0f} "
            f"{row['deliveries']:11d} {rss:>13}"
        )


if __name__ == "__main__":
    main()
