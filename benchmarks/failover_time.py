"""Failover time: ``kill -9`` of the active broker → the standby serving, over ``--rounds`` rounds.

Two brokers on one throwaway PostgreSQL (``tests/postgres_cluster.py``), a durable queue holding
``--backlog`` persistent messages (so that recovery has something to read).  Each round kills the
active broker with SIGKILL at a random point of its renewal cycle, then a client polls the standby's
AMQP port (every 10 ms) until a connection opens and a persistent publish is confirmed: that is
"serving".  The killed broker is started again as the next standby.  Printed per round and as
p50/max, split where the time goes, from the moments the standby's log lines were read:

- lease: kill → ``acquired the lease`` (waiting for the dead holder's ttl to run out, plus the poll);
- recover: → ``amqp-server listening on`` (open the store, read every definition and the backlog);
- serve: → the first confirmed publish (connect, handshake, publish, one commit).

    .venv/bin/python benchmarks/failover_time.py [--rounds 10] [--ttl 5] [--backlog 1000]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from interop_tests.failover_helpers import LeaseBroker  # noqa: E402 - after the path
from tests.postgres_cluster import PostgresCluster  # noqa: E402

QUEUE = "failover-bench"


def publish_confirmed(broker: LeaseBroker, count: int = 1) -> None:
    connection = pika.BlockingConnection(broker.parameters(socket_timeout=2))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True)
        for _ in range(count):
            channel.basic_publish("", QUEUE, b"x" * 100, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def until_serving(broker: LeaseBroker, timeout: float = 120.0) -> float:
    """Poll until one publish is confirmed on ``broker``; the monotonic time it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            publish_confirmed(broker)
            return time.monotonic()
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.01)
    raise RuntimeError("the standby did not take over:\n" + broker.text())


def one_round(active: LeaseBroker, standby: LeaseBroker, ttl: float) -> tuple[float, float, float]:
    time.sleep(random.uniform(0, ttl / 3))  # somewhere in the renewal cycle
    killed = time.monotonic()
    active.send(signal.SIGKILL)
    active.wait_exit()
    served = until_serving(standby)
    acquired = standby.seen_at("acquired the lease")
    listening = standby.seen_at("amqp-server listening on")
    assert acquired is not None and listening is not None, standby.text()
    return acquired - killed, listening - acquired, served - listening


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=5.0, help="--lease-ttl of both brokers, seconds")
    parser.add_argument("--backlog", type=int, default=1000, help="persistent messages queued before the rounds")
    args = parser.parse_args()
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        dsn = cluster.create_database()
        active = LeaseBroker(dsn, Path(tmp) / "a", args.ttl).start()
        standby = LeaseBroker(dsn, Path(tmp) / "b", args.ttl)
        try:
            assert active.wait_active(), active.text()
            standby.start()
            assert standby.wait_standby(), standby.text()
            publish_confirmed(active, args.backlog)
            rows = []
            for number in range(1, args.rounds + 1):
                lease, recover, serve = one_round(active, standby, args.ttl)
                rows.append((lease, recover, serve))
                print(
                    f"round {number:2}: serving after {lease + recover + serve:6.2f} s"
                    f" (lease {lease:5.2f} s, recover {recover:5.2f} s, serve {serve:5.2f} s)",
                    flush=True,
                )
                active.start()
                assert active.wait_standby(), active.text()
                active, standby = standby, active
            report(rows, args.ttl)
        finally:
            active.stop()
            standby.stop()


def report(rows: list[tuple[float, float, float]], ttl: float) -> None:
    totals = [sum(row) for row in rows]
    print(f"kill -9 → serving: p50 {statistics.median(totals):.2f} s, max {max(totals):.2f} s (ttl {ttl:g} s)")
    for index, name in enumerate(("lease", "recover", "serve")):
        values = [row[index] for row in rows]
        print(f"  {name:8} p50 {statistics.median(values):5.2f} s, max {max(values):5.2f} s")


if __name__ == "__main__":
    main()
