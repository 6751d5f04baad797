"""Prometheus scrapes of a broker holding many queues: ms per scrape, and whether AMQP stalls meanwhile.

Two parts:

1. In process (no sockets): a ``Broker`` with ``--queues`` queues, some messages in every tenth;
   the time of one snapshot (taken in the event loop) and of rendering it with prometheus_client
   (done in a worker thread), for ``/metrics`` and ``/metrics/per-object``.
2. Against a broker process (``python -m amqp_server``): the same queues declared over AMQP, then a
   prober connection publishes with confirms back to back (each publish a round trip) while the
   endpoints are scraped ``--scrapes`` times each. Printed: ms per scrape, and the probe's round
   trips idle and during the scrapes (median and max): a stalled event loop shows as a max round
   trip as long as a scrape.

    .venv/bin/python benchmarks/prometheus_scrape.py [--queues 10000] [--scrapes 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from amqp_server.core.broker import Broker  # noqa: E402
from amqp_server.core.operations import BrokerOperations  # noqa: E402
from amqp_server.http import prometheus  # noqa: E402
from interop_tests.broker_process import BrokerProcess  # noqa: E402 - the repository root is on the path now

FACTS = prometheus.NodeFacts("rabbit@bench", "amqp-server", "rabbitmq-cluster-id-bench", time.time())


def in_process(queues: int, repeat: int) -> None:
    broker = Broker()
    operations = BrokerOperations(broker)
    for i in range(queues):
        operations.declare_queue("/", f"scrape.q{i}", durable=False)
        if i % 10 == 0:
            operations.publish("/", "", f"scrape.q{i}", b"x" * 100)
    exporter = prometheus.Exporter(operations, FACTS)
    for endpoint in (prometheus.AGGREGATED, prometheus.PER_OBJECT):
        snapshots, renders, size = [], [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            snapshot = operations.snapshot()
            snapshots.append(time.perf_counter() - started)
            started = time.perf_counter()
            size = len(exporter.text(prometheus.Scrape(snapshot, endpoint)))
            renders.append(time.perf_counter() - started)
        print(
            f"in process, {queues} queues, {endpoint:>10}: snapshot (in the loop) {_ms(snapshots)} ms, "
            f"render (worker thread) {_ms(renders)} ms, {size / 1024:.0f} KiB"
        )


def _ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.1f}"


class Prober(threading.Thread):
    """Confirmed publishes back to back on its own connection, each round trip timed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float]] = []  # (finished at, round trip s)
        self.stop = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        channel.queue_declare("scrape.probe", auto_delete=True)
        channel.confirm_delivery()
        while not self.stop.is_set():
            started = time.perf_counter()
            channel.basic_publish("", "scrape.probe", b"p")
            finished = time.perf_counter()
            self.samples.append((finished, finished - started))
            if len(self.samples) % 1000 == 0:
                channel.queue_purge("scrape.probe")
        connection.close()

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for at, rtt in list(self.samples) if start <= at <= end]


def against_process(queues: int, scrapes: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        broker = BrokerProcess(Path(data_dir), "--management-port", "-1").start()
        try:
            connection = pika.BlockingConnection(pika.URLParameters(broker.url))
            channel = connection.channel()
            started = time.perf_counter()
            for i in range(queues):
                channel.queue_declare(f"scrape.q{i}")
                if i % 10 == 0:
                    channel.basic_publish("", f"scrape.q{i}", b"x" * 100)
            print(f"declared {queues} queues over AMQP in {time.perf_counter() - started:.1f} s")
            prober = Prober(broker.url)
            prober.start()
            time.sleep(2.0)
            idle_end = time.perf_counter()
            idle = prober.between(idle_end - 1.5, idle_end)
            print(f"probe round trip idle: median {_ms(idle)} ms, max {max(idle) * 1000:.1f} ms")
            for path in ("/metrics", "/metrics/per-object"):
                durations = []
                first = time.perf_counter()
                for _ in range(scrapes):
                    started = time.perf_counter()
                    url = f"http://127.0.0.1:{broker.prometheus_port}{path}"
                    with urllib.request.urlopen(url, timeout=60) as response:
                        size = len(response.read())
                    durations.append(time.perf_counter() - started)
                during = prober.between(first, time.perf_counter())
                print(
                    f"{path:>20}: {_ms(durations)} ms per scrape ({size / 1024:.0f} KiB); probe round trip meanwhile: "
                    f"median {_ms(during)} ms, max {max(during) * 1000:.1f} ms, {len(during)} round trips"
                )
            prober.stop.set()
            prober.join(10)
            connection.close()
        finally:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    in_process(args.queues, args.scrapes)
    against_process(args.queues, args.scrapes)


if __name__ == "__main__":
    main()
