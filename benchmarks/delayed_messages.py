"""Delayed messages at scale: memory held and firing lateness of an x-delayed-message exchange.

Starts the broker as a process (temp data dir), declares a durable delayed exchange (``x-delayed-type``
direct) bound to a transient queue, and schedules ``--count`` persistent messages (confirmed) whose fire
times are spread uniformly over ``--min-delay``..``--max-delay`` seconds after a lead time long enough
for the scheduling to finish first (``--lead``; by default one second per 8,000 messages), so that at
the end of scheduling every message is held at once.  A consumer in another process receives them as
they fire; each body carries its due time (wall clock), so lateness = receive time - (publish time +
x-delay).  Prints the broker's RSS before and after scheduling and its peak while firing, how many the
management API says are held, and the lateness percentiles.

    .venv/bin/python benchmarks/delayed_messages.py                 # 1,000,000 messages
    .venv/bin/python benchmarks/delayed_messages.py --count 200000  # a smaller run

Frames are built and parsed by hand (``throughput.Connection`` for the handshake) so the client keeps up.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import multiprocessing
import random
import struct
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from pamqp import commands, frame  # noqa: E402
from throughput import CHANNEL, FRAME_HEADER, AmqpUrl, BenchmarkError, Connection, raise_if_close  # noqa: E402

from interop_tests.broker_process import BrokerProcess  # noqa: E402

EXCHANGE, QUEUE, KEY = "bench-delayed", "bench-delayed-out", "k"
BODY_SIZE = 64  # the due time (8 bytes) and padding
BATCH = 50  # messages per write
# unconfirmed publishes in flight: a message's lateness counts from when the client sent it, so time spent in
# the broker's socket buffer behind this many others counts too (20,000 made p50 ~300 ms at 37k msg/s, 1,000 17 ms)
WINDOW = 200
PERCENTILES = (50, 90, 99, 99.9)
# content header: class 60, body size, flags headers (0x2000) + delivery_mode (0x1000), then the headers table
# {x-delay: signed 32-bit} (13 bytes: shortstr "x-delay", type 'I', int32) and delivery_mode 2
_HEADER_PREFIX = struct.pack(">HHQH", 60, 0, BODY_SIZE, 0x3000) + struct.pack(">I", 13) + b"\x07x-delayI"
_HEADER_FRAME = FRAME_HEADER.pack(2, CHANNEL, len(_HEADER_PREFIX) + 5)


def header_frame(delay_ms: int) -> bytes:
    return _HEADER_FRAME + _HEADER_PREFIX + struct.pack(">i", delay_ms) + b"\x02\xce"


def body_frame(due: float) -> bytes:
    payload = struct.pack(">d", due) + bytes(BODY_SIZE - 8)
    return FRAME_HEADER.pack(3, CHANNEL, len(payload)) + payload + b"\xce"


class Publisher:
    """Publishes with confirms over one connection, ``WINDOW`` unconfirmed at most."""

    def __init__(self, url: AmqpUrl) -> None:
        self.conn = Connection(url)
        self.conn.rpc(commands.Confirm.Select(), commands.Confirm.SelectOk)
        self.method = frame.marshal(commands.Basic.Publish(exchange=EXCHANGE, routing_key=KEY), CHANNEL)
        self.published = 0
        self.confirmed = 0

    def schedule(self, count: int, first_fire: float, spread: float, seed: int) -> None:
        rng = random.Random(seed)
        while self.published < count:
            parts = []
            for _ in range(min(BATCH, count - self.published)):
                now = time.time()
                delay_ms = max(1, math.ceil((first_fire + rng.random() * spread - now) * 1000))
                parts += (self.method, header_frame(delay_ms), body_frame(now + delay_ms / 1000))
            self.published += len(parts) // 3
            self.conn.sock.sendall(b"".join(parts))
            while self.published - self.confirmed > WINDOW:
                self.read_confirms()
        while self.confirmed < self.published:
            self.read_confirms()

    def read_confirms(self) -> None:
        conn = self.conn
        conn._recv()
        buf, pos = conn.buf, 0
        while pos + 7 <= len(buf):
            frame_type, _, size = FRAME_HEADER.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= len(buf):
                break
            if frame_type == 1:
                class_id, method_id = struct.unpack_from(">HH", buf, pos + 7)
                if (class_id, method_id) == (60, 80):
                    self.confirmed = max(self.confirmed, struct.unpack_from(">Q", buf, pos + 11)[0])
                else:
                    raise_if_close(frame.unmarshal(bytes(buf[pos : end + 1]))[2])
                    raise BenchmarkError(f"unexpected method {class_id}.{method_id} (a nack?)")
            pos = end + 1
        del buf[:pos]


def consumer_main(url: AmqpUrl, count: int, timeout: float, out: Any) -> None:
    """Receive ``count`` deliveries (no-ack); send back lateness percentiles (ms) over ``out``."""
    conn = Connection(url)
    conn.rpc(commands.Basic.Consume(queue=QUEUE, no_ack=True), commands.Basic.ConsumeOk)
    out.send("ready")
    lateness = array.array("d")
    sock, deadline = conn.sock, time.monotonic() + timeout
    sock.settimeout(0.5)
    in_body = False
    while len(lateness) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        now = time.time()
        if not data:
            break
        buf = conn.buf
        buf += data
        pos = 0
        while pos + 7 <= len(buf):
            frame_type, _, size = FRAME_HEADER.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= len(buf):
                break
            if frame_type == 2:
                in_body = True
            elif frame_type == 3 and in_body:
                lateness.append((now - struct.unpack_from(">d", buf, pos + 7)[0]) * 1000)
                in_body = False
            pos = end + 1
        del buf[:pos]
    out.send({"received": len(lateness), **percentiles(lateness)})


def percentiles(values: array.array[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    found: dict[str, float | None] = {}
    for p in PERCENTILES:
        found[f"p{p}_ms"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else None
    found["max_ms"] = ordered[-1] if ordered else None
    found["min_ms"] = ordered[0] if ordered else None
    return found


def messages_delayed(process: BrokerProcess) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{process.management_port}/api/exchanges/%2F/{EXCHANGE}")
    request.add_header("Authorization", "Basic " + b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(json.load(answer)["messages_delayed"])


def declare(url: AmqpUrl) -> None:
    conn = Connection(url)
    arguments = {"x-delayed-type": "direct"}
    declare_exchange = commands.Exchange.Declare(
        exchange=EXCHANGE, exchange_type="x-delayed-message", durable=True, arguments=arguments
    )
    conn.rpc(declare_exchange, commands.Exchange.DeclareOk)
    conn.rpc(commands.Queue.Declare(queue=QUEUE), commands.Queue.DeclareOk)
    conn.rpc(commands.Queue.Bind(queue=QUEUE, exchange=EXCHANGE, routing_key=KEY), commands.Queue.BindOk)
    conn.close()


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-delayed-") as data_dir:
        process = BrokerProcess(Path(data_dir)).start()
        try:
            measure(process, args)
        finally:
            process.stop()


def measure(process: BrokerProcess, args: argparse.Namespace) -> None:
    url = AmqpUrl.parse(process.url)
    declare(url)
    lead = args.lead if args.lead is not None else max(5.0, args.count / 8000)
    spread = args.max_delay - args.min_delay
    ours, theirs = multiprocessing.Pipe()
    consumer = multiprocessing.Process(
        target=consumer_main, args=(url, args.count, lead + args.max_delay + 600, theirs), daemon=True
    )
    consumer.start()
    assert ours.recv() == "ready"
    rss_before = process.rss()
    started = time.time()
    publisher = Publisher(url)
    publisher.schedule(args.count, started + lead + args.min_delay, spread, args.seed)
    scheduled = time.time() - started
    rss_scheduled, held = process.rss(), messages_delayed(process)
    peak = rss_scheduled
    while consumer.is_alive() and not ours.poll(0.5):
        peak = max(peak, process.rss())
    result = ours.recv()
    publisher.conn.close()
    print(f"messages                 {args.count:,} persistent, {BODY_SIZE}-byte bodies, durable exchange")
    print(f"delays                   {args.min_delay}-{args.max_delay} s after a {lead:.0f} s lead")
    print(f"scheduling               {scheduled:.1f} s ({args.count / scheduled:,.0f} msg/s, confirmed)")
    print(f"held after scheduling    {held:,} (messages_delayed)")
    print(f"broker RSS before        {mib(rss_before)}")
    print(f"broker RSS scheduled     {mib(rss_scheduled)} (+{(rss_scheduled - rss_before) / args.count:.0f} B/message)")
    print(f"broker RSS peak firing   {mib(peak)}")
    print(f"received                 {result['received']:,}")
    print(
        "lateness ms              "
        + " ".join(
            f"{key[:-3]}={value:.1f}" for key, value in result.items() if key.endswith("_ms") and value is not None
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--min-delay", type=float, default=1.0, help="seconds (after the lead)")
    parser.add_argument("--max-delay", type=float, default=60.0, help="seconds (after the lead)")
    parser.add_argument("--lead", type=float, default=None, help="seconds before the first fire time")
    parser.add_argument("--seed", type=int, default=1)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
