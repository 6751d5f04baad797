"""Durable queue declares per second, with 1k, 10k and 50k durable queues already declared.

Why this exists: each durable ``queue.declare`` is answered only after the
store has synced it, so the cost of one sync of the definitions is the cost of
a declare.  When that sync rewrote the whole definitions snapshot, declares got
slower as queues accumulated (quadratic in total); with the append-only
definitions log the rate should stay flat.

For each level the broker (``python -m amqp_server`` on a free loopback port,
fresh data dir under ``--data-root``) is filled to that many queues with
pipelined declares (many in flight: they share syncs), then ``--samples``
declares are made one at a time, each waiting for its ``declare-ok`` -- the
rate a client that declares its queues in a loop sees.  With ``AMQP_URL`` set
the same sequential measurement also runs against that broker (e.g. RabbitMQ),
at the levels given by ``--external-levels`` (its queues are deleted after).

    .venv/bin/python benchmarks/declare_bench.py [--levels 1000,10000,50000] [--samples 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from pamqp import commands, frame

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from interop_tests.broker_process import BrokerProcess  # noqa: E402
from interop_tests.durability_helpers import AmqpSocket  # noqa: E402

FILL_BATCH = 1000  # declares in flight while filling


def fill(conn: AmqpSocket, prefix: str, start: int, stop: int) -> None:
    """Declare durable queues ``prefix-start .. prefix-stop-1``, pipelined."""
    for batch_start in range(start, stop, FILL_BATCH):
        names = range(batch_start, min(stop, batch_start + FILL_BATCH))
        conn.send(b"".join(_declare_frame(f"{prefix}-{n}") for n in names))
        for _ in names:
            conn.expect(1, commands.Queue.DeclareOk, timeout=120)


def _declare_frame(queue: str) -> bytes:
    return frame.marshal(commands.Queue.Declare(queue=queue, durable=True), 1)


def sequential_rate(conn: AmqpSocket, prefix: str, samples: int) -> float:
    """Declares per second, one at a time, each waiting for its declare-ok."""
    started = time.perf_counter()
    for n in range(samples):
        conn.declare_queue(f"{prefix}-sample-{n}")
    return samples / (time.perf_counter() - started)


def run_levels(port: int, levels: list[int], samples: int, prefix: str) -> list[tuple[int, float]]:
    results = []
    with AmqpSocket(port, timeout=120) as conn:
        conn.handshake()
        existing = 0
        for level in levels:
            fill(conn, prefix, existing, level)
            existing = level
            rate = sequential_rate(conn, f"{prefix}-{level}", samples)
            results.append((level, rate))
            print(f"  {level:>6} existing queues: {rate:7.0f} durable declares/s", flush=True)
        conn.close()
    return results


def delete_queues(port: int, names: list[str]) -> None:
    with AmqpSocket(port, timeout=120) as conn:
        conn.handshake()
        for name in names:
            conn.call(1, commands.Queue.Delete(queue=name), commands.Queue.DeleteOk)
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1000,10000,50000")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--external-levels", default="1000,10000")
    parser.add_argument("--data-root", default=None, help="where the fresh data dir goes (default: TMPDIR)")
    args = parser.parse_args()
    levels = sorted(int(level) for level in args.levels.split(","))

    print(f"amqp-server (python -m amqp_server), {args.samples} sequential durable declares per level:")
    with tempfile.TemporaryDirectory(dir=args.data_root) as data_dir:
        broker = BrokerProcess(Path(data_dir)).start()
        try:
            run_levels(broker.port, levels, args.samples, "bench")
        finally:
            broker.stop()

    url = os.environ.get("AMQP_URL")
    if url:
        parsed = urlparse(url)
        external = sorted(int(level) for level in args.external_levels.split(","))
        print(f"{parsed.hostname}:{parsed.port} (AMQP_URL):")
        prefix = f"declare-bench-{os.getpid()}"
        try:
            run_levels(parsed.port or 5672, external, args.samples, prefix)
        finally:
            names = [f"{prefix}-{n}" for n in range(max(external))]
            names += [f"{prefix}-{level}-sample-{n}" for level in external for n in range(args.samples)]
            delete_queues(parsed.port or 5672, names)


if __name__ == "__main__":
    main()
