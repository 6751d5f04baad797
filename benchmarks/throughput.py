"""Single-queue throughput and latency benchmark for AMQP 0-9-1 brokers.

Why this exists: to compare our broker (``amqp_server``) with a real RabbitMQ on
the same workload -- one queue, one publisher connection, one consumer
connection, small transient messages -- and to see end-to-end latency at that
load.  A Python load generator easily becomes the bottleneck, so the client
side is written by hand over plain sockets: pamqp only encodes/decodes the
handshake and the few RPCs, the publisher writes pre-built frames in large
batches (patching in one send timestamp per batch), and the consumer parses
Basic.Deliver/header/body frames with ``struct`` over a bytearray.  Publisher
and consumer run in their own processes so they use separate CPUs, and the
publisher sleeps (instead of spinning) whenever it is throttled.

By default the script starts our broker itself on 127.0.0.1 with a throw-away
data dir and stops it with SIGTERM at the end; ``--url`` (repeatable) targets an
already-running broker instead, and ``--rabbitmq-url`` adds a second column next
to our self-started broker.  Run ``python benchmarks/throughput.py --help``.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pamqp import commands, frame
from pamqp.base import Frame

# The broker's management API on a free port (not 15672, which another broker here may hold), unless the
# caller's environment chooses (AMQP_SERVER_MANAGEMENT_PORT=-1 measures without the API).
MANAGEMENT_ENV = {"AMQP_SERVER_MANAGEMENT_PORT": "0", **os.environ}

REPO_ROOT = Path(__file__).resolve().parent.parent
LISTENING_RE = re.compile(r"listening on ([0-9.]+):(\d+)")
FRAME_END = 0xCE
FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size
CHANNEL = 1
OUR_FRAME_MAX = 131072
WRITE_BYTES = 64 * 1024  # target size of one publisher write()
CONNECT_TIMEOUT_S = 10.0
BROKER_START_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 5.0  # how long the consumer keeps draining after the window
PERCENTILES = (50, 90, 99)


class BenchmarkError(Exception):
    """The broker refused something or the benchmark could not run."""


# --------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class AmqpUrl:
    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, url: str) -> AmqpUrl:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "amqp":
            raise BenchmarkError(f"only amqp:// URLs are supported, got {url!r}")
        vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            user=urllib.parse.unquote(parts.username or "guest"),
            password=urllib.parse.unquote(parts.password or "guest"),
            vhost=vhost,
        )


# --------------------------------------------------------------- connection


class Connection:
    """A blocking AMQP connection with channel 1 open; pamqp for the slow path only."""

    def __init__(self, url: AmqpUrl) -> None:
        self.sock = socket.create_connection((url.host, url.port), timeout=CONNECT_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.frame_max = OUR_FRAME_MAX
        self._handshake(url)

    def _handshake(self, url: AmqpUrl) -> None:
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = self.wait_for(commands.Connection.Start)
        if b"PLAIN" not in start.mechanisms.encode().split():
            raise BenchmarkError(f"broker does not offer PLAIN auth: {start.mechanisms}")
        self.send(
            commands.Connection.StartOk(
                client_properties={
                    "product": "amqp-throughput-benchmark",
                    "capabilities": {"authentication_failure_close": True},
                },
                mechanism="PLAIN",
                response=f"\0{url.user}\0{url.password}",
            ),
            channel=0,
        )
        tune = self.wait_for(commands.Connection.Tune)
        if tune.frame_max:
            self.frame_max = min(tune.frame_max, OUR_FRAME_MAX)
        self.send(
            commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0),
            channel=0,
        )
        self.send(commands.Connection.Open(virtual_host=url.vhost), channel=0)
        self.wait_for(commands.Connection.OpenOk)
        self.send(commands.Channel.Open())
        self.wait_for(commands.Channel.OpenOk)

    def send(self, method: Frame, channel: int = CHANNEL) -> None:
        self.sock.sendall(frame.marshal(method, channel))

    def rpc(self, method: Frame, reply: type[Frame]) -> Any:
        self.send(method)
        return self.wait_for(reply)

    def wait_for(self, wanted: type[Frame]) -> Any:
        """Read frames until a `wanted` method arrives; skip content and heartbeats."""
        while True:
            frame_type, raw = self._read_frame()
            if frame_type != 1:
                continue
            method = frame.unmarshal(raw)[2]
            if isinstance(method, wanted):
                return method
            raise_if_close(method)

    def _read_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 7:
                frame_type, _, size = FRAME_HEADER.unpack_from(self.buf)
                end = 7 + size + 1
                if len(self.buf) >= end:
                    raw = bytes(self.buf[:end])
                    del self.buf[:end]
                    return frame_type, raw
            self._recv()

    def _recv(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise BenchmarkError("broker closed the connection")
        self.buf += data

    def raise_if_closed(self) -> None:
        """Without blocking, surface a Channel/Connection.Close the broker may have sent."""
        if not select.select([self.sock], [], [], 0)[0]:
            return
        self._recv()
        while len(self.buf) >= 7:
            frame_type, _, size = FRAME_HEADER.unpack_from(self.buf)
            if len(self.buf) < size + 8:
                return
            raw = bytes(self.buf[: size + 8])
            del self.buf[: size + 8]
            if frame_type == 1:
                raise_if_close(frame.unmarshal(raw)[2])

    def close(self) -> None:
        """Close politely (waiting for Close-Ok also flushes what we sent), then the socket."""
        try:
            self.sock.settimeout(CONNECT_TIMEOUT_S)
            self.send(commands.Connection.Close(200, "bye", 0, 0), channel=0)
            self.wait_for(commands.Connection.CloseOk)
        except (OSError, BenchmarkError):
            pass
        finally:
            self.sock.close()


def raise_if_close(method: Frame) -> None:
    if isinstance(method, (commands.Connection.Close, commands.Channel.Close)):
        raise BenchmarkError(f"broker sent {method.name}: {method.reply_code} {method.reply_text}")
    if isinstance(method, commands.Basic.Cancel):
        raise BenchmarkError("broker cancelled the consumer")


# ------------------------------------------------------------------ workers


@dataclass
class Shared:
    """Cross-process state; the counters are lock-free (one writer each)."""

    start_ns: Any
    deadline_ns: Any
    published: Any
    consumed: Any
    go: Any
    publisher_done: Any

    @classmethod
    def create(cls, ctx: Any) -> Shared:
        return cls(*(ctx.RawValue("q", 0) for _ in range(4)), ctx.Event(), ctx.Event())


@dataclass(frozen=True)
class Workload:
    size: int
    duration: float
    rate: float
    max_backlog: int
    ack: bool
    prefetch: int


def build_message(queue: str, size: int, frame_max: int) -> tuple[bytearray, int]:
    """Frames of one Basic.Publish with a `size`-byte body; returns them and the timestamp offset."""
    publish = frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), CHANNEL)
    header = struct.pack(">HHQH", 60, 0, size, 0)  # class, weight, body size, no properties
    message = bytearray(publish)
    message += FRAME_HEADER.pack(2, CHANNEL, len(header)) + header + bytes([FRAME_END])
    ts_offset = len(message) + 7
    body = bytes(size)
    chunk = frame_max - 8
    for pos in range(0, size, chunk):
        part = body[pos : pos + chunk]
        message += FRAME_HEADER.pack(3, CHANNEL, len(part)) + part + bytes([FRAME_END])
    return message, ts_offset


def publisher_main(
    url: AmqpUrl, queue: str, load: Workload, shared: Shared, ready: multiprocessing.connection.Connection
) -> None:
    try:
        conn = Connection(url)
        ready.send(("ready", None))
        shared.go.wait(READY_TIMEOUT_S)
        publish_loop(conn, queue, load, shared)
        shared.publisher_done.set()
        conn.close()
        ready.send(("done", None))
    except Exception as exc:  # reported to the parent, which prints it
        ready.send(("error", f"publisher: {exc!r}"))


def publish_loop(conn: Connection, queue: str, load: Workload, shared: Shared) -> None:
    message, ts_offset = build_message(queue, load.size, conn.frame_max)
    per_write = max(1, WRITE_BYTES // len(message))
    start, deadline = shared.start_ns.value, shared.deadline_ns.value
    sleep_until(start)
    published = 0
    while (now := time.monotonic_ns()) < deadline:
        n = min(per_write, load.max_backlog - (published - shared.consumed.value))
        if load.rate:
            n = min(n, int(load.rate * (now - start) / 1e9) + 1 - published)
        if n <= 0:
            time.sleep(throttle_pause(load, published, start, now))
            continue
        struct.pack_into(">q", message, ts_offset, now)
        conn.sock.sendall(message * n)
        published += n
        shared.published.value = published
        conn.raise_if_closed()


def throttle_pause(load: Workload, published: int, start: int, now: int) -> float:
    """Seconds to sleep when throttled: until the next message is due, at most 1 ms."""
    if load.rate:
        due = start + (published + 1) * 1e9 / load.rate
        if due > now:
            return min((due - now) / 1e9, 0.001)
    return 0.0002


def sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def consumer_main(
    url: AmqpUrl, queue: str, load: Workload, shared: Shared, ready: multiprocessing.connection.Connection
) -> None:
    try:
        conn = Connection(url)
        if load.ack:
            conn.rpc(commands.Basic.Qos(prefetch_count=load.prefetch), commands.Basic.QosOk)
        conn.rpc(commands.Basic.Consume(queue=queue, no_ack=not load.ack), commands.Basic.ConsumeOk)
        ready.send(("ready", None))
        shared.go.wait(READY_TIMEOUT_S)
        consumer = Consumer(conn, max(1, load.prefetch // 2) if load.ack else 0)
        result = consumer.run(shared)
        conn.close()
        ready.send(("done", result))
    except Exception as exc:  # reported to the parent, which prints it
        ready.send(("error", f"consumer: {exc!r}"))


class Consumer:
    """Receives deliveries with a minimal struct-based frame parser and records latencies."""

    def __init__(self, conn: Connection, ack_every: int) -> None:
        """`ack_every`: send a multi-ack once this many deliveries are unacked; 0 for no-ack."""
        self.conn = conn
        self.ack_every = ack_every
        self.consumed = 0
        self.latencies = array.array("q")
        self.delivery_tag = 0
        self.acked_tag = 0
        self.body_left = 0
        self.want_timestamp = False

    def run(self, shared: Shared) -> dict[str, Any]:
        deadline = shared.deadline_ns.value
        drain_until = deadline + int(DRAIN_TIMEOUT_S * 1e9)
        in_window: int | None = None
        sock = self.conn.sock
        sock.settimeout(0.05)
        while True:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                data = None
            now = time.monotonic_ns()
            if in_window is None and now >= deadline:
                in_window = self.consumed
            if data == b"":
                raise BenchmarkError("broker closed the consumer connection")
            if data:
                self.conn.buf += data
                self.parse(now)
                shared.consumed.value = self.consumed
            if now >= drain_until or (
                in_window is not None and shared.publisher_done.is_set() and self.consumed >= shared.published.value
            ):
                break
        return {"consumed_in_window": in_window, "consumed": self.consumed, **latency_summary(self.latencies)}

    def parse(self, now: int) -> None:
        buf = self.conn.buf
        n, pos = len(buf), 0
        unpack = FRAME_HEADER.unpack_from
        while pos + 7 <= n:
            frame_type, _, size = unpack(buf, pos)
            end = pos + 7 + size
            if end >= n:
                break
            if buf[end] != FRAME_END:
                raise BenchmarkError(f"bad frame end byte {buf[end]:#x}")
            if frame_type == 3:
                self.on_body(buf, pos + 7, size, now)
            elif frame_type == 2:
                self.body_left = struct.unpack_from(">Q", buf, pos + 11)[0]
                self.want_timestamp = True
            elif frame_type == 1:
                self.on_method(buf, pos + 7, end)
            pos = end + 1
        del buf[:pos]
        if self.ack_every and self.delivery_tag - self.acked_tag >= self.ack_every:
            self.send_ack()

    def on_body(self, buf: bytearray, start: int, size: int, now: int) -> None:
        if self.want_timestamp:
            self.latencies.append(now - struct.unpack_from(">q", buf, start)[0])
            self.want_timestamp = False
        self.body_left -= size
        if self.body_left <= 0:
            self.consumed += 1

    def on_method(self, buf: bytearray, start: int, end: int) -> None:
        if buf[start : start + 4] == b"\x00\x3c\x00\x3c":  # Basic.Deliver (60, 60)
            tag_pos = start + 5 + buf[start + 4]  # after the consumer-tag shortstr
            self.delivery_tag = struct.unpack_from(">Q", buf, tag_pos)[0]
            return
        raise_if_close(frame.unmarshal(bytes(buf[start - 7 : end + 1]))[2])

    def send_ack(self) -> None:
        # Basic.Ack(delivery_tag, multiple=True): class 60, method 80
        payload = struct.pack(">HHQB", 60, 80, self.delivery_tag, 1)
        self.conn.sock.sendall(FRAME_HEADER.pack(1, CHANNEL, len(payload)) + payload + b"\xce")
        self.acked_tag = self.delivery_tag


def latency_summary(latencies: array.array) -> dict[str, float | None]:
    """Nearest-rank percentiles and max, in milliseconds."""
    ordered = sorted(latencies)
    summary: dict[str, float | None] = {}
    for p in PERCENTILES:
        rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)
        summary[f"p{p}_ms"] = ordered[rank] / 1e6 if ordered else None
    summary["max_ms"] = ordered[-1] / 1e6 if ordered else None
    return summary


# ---------------------------------------------------------------- one run


def run_benchmark(label: str, url: AmqpUrl, load: Workload) -> dict[str, Any]:
    """Declare a unique queue, measure through it, and delete it again (also on failure)."""
    queue = f"bench-throughput-{uuid.uuid4().hex[:12]}"
    control = Connection(url)
    try:
        control.rpc(commands.Queue.Declare(queue=queue, durable=False, auto_delete=False), commands.Queue.DeclareOk)
        try:
            return {"target": label, **measure(url, queue, load)}
        finally:
            control.rpc(commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)
    finally:
        control.close()


def measure(url: AmqpUrl, queue: str, load: Workload) -> dict[str, Any]:
    """Run consumer and publisher processes through one timed window and collect their numbers."""
    ctx = multiprocessing.get_context("spawn")
    shared = Shared.create(ctx)
    with (
        Worker(ctx, consumer_main, url, queue, load, shared) as consumer,
        Worker(ctx, publisher_main, url, queue, load, shared) as publisher,
    ):
        await_message(consumer, "ready", READY_TIMEOUT_S)
        await_message(publisher, "ready", READY_TIMEOUT_S)
        shared.start_ns.value = time.monotonic_ns() + 50_000_000
        shared.deadline_ns.value = shared.start_ns.value + int(load.duration * 1e9)
        shared.go.set()
        budget = load.duration + DRAIN_TIMEOUT_S + READY_TIMEOUT_S
        await_message(publisher, "done", budget)
        consumed = await_message(consumer, "done", budget)
    published = shared.published.value
    return {
        "published_per_s": published / load.duration,
        "consumed_per_s": consumed["consumed_in_window"] / load.duration,
        **{k: v for k, v in consumed.items() if k.endswith("_ms")},
        "published": published,
        "undelivered": published - consumed["consumed"],
    }


class Worker:
    """Context manager running `target` in a child process; yields the parent end of its pipe."""

    def __init__(self, ctx: Any, target: Any, *args: Any) -> None:
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, args=(*args, sender), daemon=True)

    def __enter__(self) -> multiprocessing.connection.Connection:
        self.process.start()
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        self.process.join(READY_TIMEOUT_S if exc[0] is None else 1.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)


def await_message(pipe: multiprocessing.connection.Connection, kind: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise BenchmarkError(f"timed out after {timeout:.0f}s waiting for a worker to be {kind}")
    got, payload = pipe.recv()
    if got == "error":
        raise BenchmarkError(payload)
    if got != kind:
        raise BenchmarkError(f"worker sent {got!r}, expected {kind!r}")
    return payload


# ------------------------------------------------------------ our broker


class OwnBroker:
    """Runs `python -m amqp_server` on 127.0.0.1 with an ephemeral port and a temp data dir."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.tmp = tempfile.TemporaryDirectory(prefix="amqp-bench-")
        self.process: subprocess.Popen[str] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=30)

    def __enter__(self) -> AmqpUrl:
        self.process = subprocess.Popen(
            [
                self.python,
                "-m",
                "amqp_server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data-dir",
                self.tmp.name,
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=MANAGEMENT_ENV,
            text=True,
        )
        port = self._await_port()
        threading.Thread(target=self._drain, daemon=True).start()
        return AmqpUrl("127.0.0.1", port, "guest", "guest", "/")

    def _await_port(self) -> int:
        found: list[int] = []
        reader = threading.Thread(target=self._scan_for_port, args=(found,), daemon=True)
        reader.start()
        reader.join(BROKER_START_TIMEOUT_S)
        if not found:
            self.__exit__()
            tail = "".join(self.stderr_tail)
            raise BenchmarkError(f"amqp_server did not report 'listening on' in time; stderr:\n{tail}")
        return found[0]

    def _scan_for_port(self, found: list[int]) -> None:
        assert self.process and self.process.stderr
        for line in self.process.stderr:
            self.stderr_tail.append(line)
            if match := LISTENING_RE.search(line):
                found.append(int(match.group(2)))
                return

    def _drain(self) -> None:
        """Keep reading stderr so the broker never blocks on a full pipe."""
        assert self.process and self.process.stderr
        for line in self.process.stderr:
            self.stderr_tail.append(line)

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.tmp.cleanup()


# ------------------------------------------------------------------ output


ROWS = (
    ("published msg/s", "published_per_s", "{:,.0f}"),
    ("consumed msg/s", "consumed_per_s", "{:,.0f}"),
    ("latency p50 ms", "p50_ms", "{:.2f}"),
    ("latency p90 ms", "p90_ms", "{:.2f}"),
    ("latency p99 ms", "p99_ms", "{:.2f}"),
    ("latency max ms", "max_ms", "{:.2f}"),
    ("undelivered", "undelivered", "{:,}"),
)


def format_table(load: Workload, results: list[dict[str, Any]]) -> str:
    mode = f"manual ack, prefetch {load.prefetch}" if load.ack else "no-ack"
    rate = f"{load.rate:,.0f} msg/s" if load.rate else "unlimited"
    lines = [
        f"1 queue, 1 publisher, 1 consumer; {load.size} B bodies, {load.duration:g} s, "
        f"{mode}, rate {rate}, max backlog {load.max_backlog:,}"
    ]
    width = max(14, *(len(r["target"]) for r in results))
    lines.append(" " * 16 + "".join(f"{r['target']:>{width + 2}}" for r in results))
    for title, key, fmt in ROWS:
        cells = ("-" if r.get(key) is None else fmt.format(r[key]) for r in results)
        lines.append(f"{title:<16}" + "".join(f"{c:>{width + 2}}" for c in cells))
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        help="benchmark an already-running broker (repeatable); without it, our amqp_server is started on 127.0.0.1",
    )
    parser.add_argument("--rabbitmq-url", help="also benchmark this broker, shown as 'rabbitmq'")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--size", type=int, default=100, help="body bytes, >= 8 (default 100)")
    parser.add_argument("--rate", type=float, default=0.0, help="publish rate limit in msg/s (default 0 = unlimited)")
    parser.add_argument(
        "--max-backlog", type=int, default=10000, help="publisher pauses while published - consumed exceeds this"
    )
    parser.add_argument("--ack", action="store_true", help="manual multi-acks with a prefetch window instead of no-ack")
    parser.add_argument("--prefetch", type=int, default=1000, help="prefetch count with --ack")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter used to start amqp_server (default: this one)"
    )
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8 (the body carries a timestamp)")
    if args.duration <= 0 or args.max_backlog < 1 or args.prefetch < 1:
        parser.error("--duration, --max-backlog and --prefetch must be positive")
    return args


def targets(args: argparse.Namespace) -> Iterator[tuple[str, AmqpUrl | None]]:
    """(label, url) pairs; a None url means 'start our own broker'."""
    if not args.url:
        yield "amqp_server", None
    for url in args.url:
        parsed = AmqpUrl.parse(url)
        yield f"{parsed.host}:{parsed.port}", parsed
    if args.rabbitmq_url:
        yield "rabbitmq", AmqpUrl.parse(args.rabbitmq_url)


def run_target(label: str, url: AmqpUrl | None, load: Workload, python: str) -> dict[str, Any]:
    print(f"running against {label} for {load.duration:g} s ...", file=sys.stderr, flush=True)
    if url is not None:
        return run_benchmark(label, url, load)
    with OwnBroker(python) as own_url:
        return run_benchmark(label, own_url, load)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = Workload(args.size, args.duration, args.rate, args.max_backlog, args.ack, args.prefetch)
    try:
        results = [run_target(label, url, load, args.python) for label, url in targets(args)]
    except (BenchmarkError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"workload": asdict(load), "results": results}))
    else:
        print(format_table(load, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
