"""What the statistics sampler costs off the hot path: one 5 s tick, and one view of every queue.

A tick blocks the event loop while it reads every object's counters, so its time with many
queues bounds the latency it adds every 5 s; the view is what ``GET /api/queues`` pays.

    python benchmarks/stats_bench.py [--queues 10000] [--ticks 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: tests.frames builds the frames

from pamqp import commands

from amqp_server.core.broker import Broker
from tests.frames import FakeClock, open_peer, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    wall = FakeClock(1_796_171_550.0)
    broker = Broker(clock=FakeClock(), wall_clock=wall)
    peer = open_peer(broker)
    for i in range(args.queues):
        peer.send_method(1, commands.Queue.Declare(queue=f"q{i}"))
    peer.connection.data_to_send()
    stats = broker.stats
    timings = []
    for tick in range(args.ticks):
        # half the queues get a message each interval: their series grow, the others' do not
        peer.send(b"".join(publish(1, f"q{i}", b"x") for i in range(tick % 2, args.queues, 2)))
        wall.advance(5)
        started = time.perf_counter()
        stats.tick(int(wall() * 1000) // 5000 * 5000)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    view = stats.view()
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            view.queue(queue)
    listing = time.perf_counter() - started
    ticks = ", ".join(f"{t * 1e3:.1f}" for t in timings)
    print(
        f"{args.queues:,} queues: ticks {ticks} ms (the first makes the series),"
        f" view of every queue {listing * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
