"""The PostgreSQL store next to the segment store, on the broker's hot durable paths, in one interleaved run.

Starts a throwaway PostgreSQL (``tests/postgres_cluster.py``: Debian's binaries, fsync on) and two
brokers: A on the segment store (a temp data dir), B on ``--store postgresql://…``.  Then:

1. amqp-perf's ``compare.sh`` over both, interleaved: scenario c (persistent, durable queue,
   confirms 256, manual acks) and g (a transient backlog published, then drained);
2. a persistent variant of g (``-persistent -confirm 256``): the backlog goes through the store,
   and is paged out of memory and read back from it while draining;

and prints the rates and latencies side by side (ratios of one run are what survive the noise of a
shared machine).  ``--profile`` runs broker B under cProfile and prints its top functions at the end.

    .venv/bin/python benchmarks/postgres_store.py [--rounds 2] [--duration 5] [--backlog 200000] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from interop_tests.broker_process import BrokerProcess  # noqa: E402
from tests.postgres_cluster import PostgresCluster  # noqa: E402

AMQP_PERF = Path(os.environ.get("AMQP_PERF", "/work/shared/tools/amqp-perf"))
AMQP_PERF_BIN = Path(os.environ.get("AMQP_PERF_HOME", "/tmp/amqp-perf")) / "bin" / "amqp-perf"


def persistent_backlog(broker: BrokerProcess, backlog: int) -> dict:
    """Scenario g with persistent messages under confirms: its JSON summary."""
    command = [str(AMQP_PERF_BIN), "-uri", broker.url, "-quiet", "-timeout", "900", "-drain-timeout", "300"]
    command += ["-producers", "1", "-consumers", "1", "-size", "100", "-persistent", "-confirm", "256"]
    command += ["-pmessages", str(backlog), "-phased", "-prefetch", "1000", "-multiack", "100"]
    command += ["-queue", f"pg-bench-{uuid.uuid4().hex[:8]}", "-broker-pid", str(broker.process.pid)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1200).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_profile(path: Path, top: int = 25) -> None:
    stats = pstats.Stats(str(path))
    print(f"\n# broker B (postgres) under cProfile: top {top} by own time")
    stats.sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="seconds of scenario c")
    parser.add_argument("--backlog", type=int, default=200_000, help="messages of scenario g and its variant")
    parser.add_argument("--scenarios", default="cg", help="amqp-perf scenario letters for compare.sh")
    parser.add_argument("--profile", action="store_true", help="run broker B under cProfile")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    profile = work / "broker-b.prof"
    with PostgresCluster() as cluster:
        dsn = cluster.create_database("bench")
        segment = BrokerProcess(work / "segment", "--management-port", "-1", "--prometheus-port", "-1").start()
        postgres = BrokerProcess(
            work / "postgres", "--management-port", "-1", "--prometheus-port", "-1", "--store", dsn
        )
        try:
            if args.profile:
                start_profiled(postgres, profile)
            else:
                postgres.start()
            env = dict(os.environ, LABEL_A="segment", LABEL_B="postgres", DURATION=str(args.duration))
            env.update(BACKLOG=str(args.backlog), PID_A=str(segment.process.pid), PID_B=str(postgres.process.pid))
            subprocess.run(
                [
                    str(AMQP_PERF / "compare.sh"),
                    str(segment.port),
                    str(postgres.port),
                    str(args.rounds),
                    args.scenarios,
                ],
                env=env,
                check=False,
            )
            print(f"\n# persistent backlog: {args.backlog} x 100 B, confirms 256, then drained (interleaved)")
            print(f"{'round':>5} {'store':>9} {'publish/s':>10} {'drain/s':>9} {'confirm p50/p99 ms':>19}")
            for round_number in range(1, args.rounds + 1):
                order = [("segment", segment), ("postgres", postgres)]
                for label, broker in order if round_number % 2 else order[::-1]:
                    result = persistent_backlog(broker, args.backlog)
                    latency = result.get("confirm_latency_ms", {})
                    print(
                        f"{round_number:>5} {label:>9} {result.get('publish_rate', 0):>10.0f} "
                        f"{result.get('drain_rate', 0):>9.0f} "
                        f"{latency.get('p50', 0):>9.1f}/{latency.get('p99', 0):<9.1f}"
                        + ("" if result.get("ok", True) else f" errors: {result.get('errors')}")
                    )
        finally:
            segment.stop()
            postgres.stop(signal.SIGTERM, timeout=60)
    if args.profile and profile.exists():
        print_profile(profile)
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


def start_profiled(broker: BrokerProcess, profile: Path) -> None:
    """Start ``broker`` as ``python -m cProfile -o profile -m amqp_server …`` (written at its SIGTERM exit)."""
    python = sys.executable
    wrapper = profile.with_suffix(".sh")  # BrokerProcess runs [sys.executable, "-m", "amqp_server", ...]
    wrapper.write_text(f'#!/bin/sh\nshift 2\nexec {python} -m cProfile -o {profile} -m amqp_server "$@"\n')
    wrapper.chmod(0o755)
    sys.executable = str(wrapper)
    try:
        broker.start()
    finally:
        sys.executable = python


if __name__ == "__main__":
    sys.exit(main())
