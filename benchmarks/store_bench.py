"""Durable store benchmark: ``SegmentStore`` next to a minimal sqlite3 (WAL) store doing the same work.

Why: the segment log is hand-written; this checks it is worth it against the
obvious alternative, on the broker's write pattern — puts in batches of 256
then one group-commit ``sync`` (what the persister does before releasing
publisher confirms), then removes (acks) in batches of 256 then ``sync`` —
and measures how long a restart with a large backlog takes (open + recover).

The sqlite store keeps one open transaction and commits it in ``sync`` with
``synchronous=FULL``: in WAL mode NORMAL would not be durable at commit, which
would not be a fair comparison.  Run ``python benchmarks/store_bench.py --help``.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.api import MessageRecord  # noqa: E402
from storage.segment_store import SegmentStore  # noqa: E402

HEADER = b"\x00\x3c\x00\x00" + bytes(8) + b"\x10\x00\x02"  # class 60, weight 0, size, delivery-mode 2


class SqliteStore:
    """Just the message part of ``storage.api.Store`` on sqlite3, for comparison."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path / "store.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS messages (vhost TEXT, queue TEXT, id INTEGER, exchange TEXT, "
            "routing_key TEXT, header BLOB, body BLOB, PRIMARY KEY (vhost, queue, id)) WITHOUT ROWID"
        )
        self._db.execute("BEGIN")

    def put_message(self, vhost: str, queue: str, message_id: int, record: MessageRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            (vhost, queue, message_id, record.exchange, record.routing_key, record.header, record.body),
        )

    def remove_messages(self, vhost: str, queue: str, message_ids: Iterable[int]) -> None:
        self._db.executemany(
            "DELETE FROM messages WHERE vhost = ? AND queue = ? AND id = ?",
            [(vhost, queue, message_id) for message_id in message_ids],
        )

    def sync(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def recover(self) -> dict[tuple[str, str], list[tuple[int, MessageRecord]]]:
        messages: dict[tuple[str, str], list[tuple[int, MessageRecord]]] = {}
        for vhost, queue, message_id, exchange, routing_key, header, body in self._db.execute(
            "SELECT * FROM messages ORDER BY vhost, queue, id"
        ):
            messages.setdefault((vhost, queue), []).append(
                (message_id, MessageRecord(exchange, routing_key, header, body))
            )
        return messages

    def close(self) -> None:
        self.sync()
        self._db.execute("COMMIT")
        self._db.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_phase(store, count: int, batch: int, step: Callable[[object, range], None]) -> tuple[float, list[float]]:
    """``step`` on batches of ids, one sync after each; returns (messages/s, sync latencies)."""
    latencies: list[float] = []
    started = time.perf_counter()
    for first in range(1, count + 1, batch):
        step(store, range(first, min(first + batch, count + 1)))
        before = time.perf_counter()
        store.sync()
        latencies.append(time.perf_counter() - before)
    return count / (time.perf_counter() - started), latencies


def put_batch(body: bytes) -> Callable[[object, range], None]:
    record = MessageRecord("", "bench", HEADER, body)

    def step(store, ids: range) -> None:
        for message_id in ids:
            store.put_message("/", "bench", message_id, record)

    return step


def remove_batch(store, ids: range) -> None:
    store.remove_messages("/", "bench", ids)


def throughput(opener: Callable[[Path], object], directory: Path, count: int, batch: int, size: int) -> dict:
    store = opener(directory)
    put_rate, put_syncs = run_phase(store, count, batch, put_batch(bytes(size)))
    remove_rate, remove_syncs = run_phase(store, count, batch, remove_batch)
    store.close()
    return {"put": put_rate, "put_syncs": put_syncs, "remove": remove_rate, "remove_syncs": remove_syncs}


def recovery(opener: Callable[[Path], object], directory: Path, count: int, batch: int, size: int) -> float:
    """Seconds to open a store holding ``count`` messages and recover them all."""
    store = opener(directory)
    run_phase(store, count, batch, put_batch(bytes(size)))
    store.close()
    started = time.perf_counter()
    store = opener(directory)
    recovered = store.recover()
    elapsed = time.perf_counter() - started
    messages = recovered.messages if hasattr(recovered, "messages") else recovered
    assert sum(len(entries) for entries in messages.values()) == count
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages put then removed (100_000)")
    parser.add_argument("--size", type=int, default=100, help="body size for put/remove (100)")
    parser.add_argument("--batch", type=int, default=256, help="puts or removes per sync (256)")
    parser.add_argument(
        "--recovery-messages",
        type=int,
        default=100_000,
        help="messages in the store when measuring recovery (100_000; try 1_000_000)",
    )
    parser.add_argument("--recovery-size", type=int, default=1024, help="body size for recovery (1024)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the stores (a temp dir)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    openers: dict[str, Callable[[Path], object]] = {"segment": SegmentStore, "sqlite-wal": SqliteStore}
    try:
        rows = []
        for name, opener in openers.items():
            result = throughput(opener, root / f"{name}-throughput", args.messages, args.batch, args.size)
            seconds = recovery(
                opener, root / f"{name}-recovery", args.recovery_messages, args.batch, args.recovery_size
            )
            rows.append((name, result, seconds))
            shutil.rmtree(root / f"{name}-recovery")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"{args.messages} x {args.size} B messages, {args.batch} per sync; "
        f"recovery of {args.recovery_messages} x {args.recovery_size} B"
    )
    print(
        f"{'store':<11} {'put msg/s':>10} {'sync p50':>9} {'sync p99':>9} "
        f"{'remove msg/s':>13} {'sync p50':>9} {'sync p99':>9} {'recovery s':>11}"
    )
    for name, result, seconds in rows:
        print(
            f"{name:<11} {result['put']:>10,.0f} {percentile(result['put_syncs'], 0.5) * 1e3:>7.2f}ms "
            f"{percentile(result['put_syncs'], 0.99) * 1e3:>7.2f}ms {result['remove']:>13,.0f} "
            f"{percentile(result['remove_syncs'], 0.5) * 1e3:>7.2f}ms "
            f"{percentile(result['remove_syncs'], 0.99) * 1e3:>7.2f}ms {seconds:>11.2f}"
        )


if __name__ == "__main__":
    main()
