"""Full-disk benchmark: what the free-disk alarm does for a publisher of persistent messages on a small disk.

A tmpfs (``--tmpfs-size``, default 64 MiB; mounting needs root) is the broker's
data dir; a filler file takes ``--filler`` of it, and the broker runs with
``--disk-free-limit``.  One publisher (raw sockets, publisher confirms, a window
of ``--window`` unconfirmed messages, ``--size``-byte persistent bodies) publishes
until the broker sends ``connection.blocked``; it then keeps pushing for
``--hold`` seconds, which the broker must not read.  A pika consumer drains the
queue meanwhile (consumers are not blocked).  Then the filler is deleted and
the publisher waits for ``connection.unblocked``, after which everything it
pushed is confirmed and it publishes ``--after`` more.

Printed: time to block and the messages confirmed by then, the broker's RSS when
blocked and after the hold (and what was pushed meanwhile), the drain, the time
from deleting the filler to ``connection.unblocked``, and the confirms after it.

    sudo .venv/bin/python benchmarks/full_disk.py [--tmpfs-size 64MiB] [--filler 24MiB] [--limit 16MiB]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
from pamqp import commands

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amqp_server.ops.config import disk_free_limit  # noqa: E402
from interop_tests.broker_process import BrokerProcess  # noqa: E402
from interop_tests.raw_client import CLIENT_PROPERTIES, RawClient  # noqa: E402
from tests.frames import publish  # noqa: E402
from tests.small_disk import free  # noqa: E402

QUEUE = "full_disk"
PERSISTENT = commands.Basic.Properties(delivery_mode=2)
MiB = 1024 * 1024


class Publisher:
    """A raw-socket publisher with confirms that notes connection.blocked / unblocked."""

    def __init__(self, broker: BrokerProcess, size: int) -> None:
        self.client = RawClient(broker.host, broker.port, timeout=10.0)
        self.client.start()
        capabilities = {**CLIENT_PROPERTIES["capabilities"], "connection.blocked": True}
        self.client.start_ok(client_properties={**CLIENT_PROPERTIES, "capabilities": capabilities})
        self.client.expect(commands.Connection.Tune)
        self.client.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
        self.client.send_method(0, commands.Connection.Open(virtual_host="/"))
        self.client.expect(commands.Connection.OpenOk)
        self.client.open_channel(1)
        self.client.send_method(1, commands.Confirm.Select())
        self.client.expect(commands.Confirm.SelectOk, 1)
        self.client.send_method(1, commands.Queue.Declare(queue=QUEUE, durable=True))
        self.client.expect(commands.Queue.DeclareOk, 1)
        self.message = publish(1, QUEUE, b"x" * size, properties=PERSISTENT)
        self.published = self.acked = self.nacked = 0
        self.blocked_at: float | None = None
        self.unblocked_at: float | None = None
        self.reason = ""
        self.pending = b""

    @property
    def outstanding(self) -> int:
        return self.published - self.acked - self.nacked

    def send(self, count: int) -> None:
        self.client.send(self.message * count)
        self.published += count

    def read(self, timeout: float) -> bool:
        """Handle one frame if one comes within ``timeout``."""
        try:
            _, frame = self.client.read_frame(timeout)
        except TimeoutError:
            return False
        if isinstance(frame, (commands.Basic.Ack, commands.Basic.Nack)):
            settled = frame.delivery_tag - self.acked - self.nacked if frame.multiple else 1
            if isinstance(frame, commands.Basic.Ack):
                self.acked += settled
            else:
                self.nacked += settled
        elif isinstance(frame, commands.Connection.Blocked):
            self.blocked_at, self.reason = time.monotonic(), frame.reason
        elif isinstance(frame, commands.Connection.Unblocked):
            self.unblocked_at = time.monotonic()
        return True

    def push_while_blocked(self, seconds: float) -> int:
        """Offer whole messages without blocking for ``seconds``; the bytes the socket took."""
        data = self.message * 1000
        sock = self.client.sock
        sock.setblocking(False)
        pushed, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                pushed += sock.send(data[pushed % len(data) :])
            except BlockingIOError:
                time.sleep(0.05)
        sock.settimeout(10.0)
        whole, partial = divmod(pushed, len(self.message))
        # the rest of the message in flight, sent once the broker reads again so the stream stays valid
        self.pending = self.message[partial:] if partial else b""
        self.published += whole + bool(partial)
        return pushed


def drain(broker: BrokerProcess) -> tuple[int, float]:
    """Consume and ack everything in the queue; (messages, seconds)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    started, count = time.monotonic(), 0
    for method, _, _ in channel.consume(QUEUE, inactivity_timeout=1.0):
        if method is None:
            break
        count += 1
        if count % 500 == 0:
            channel.basic_ack(method.delivery_tag, multiple=True)
        last = method.delivery_tag
    if count % 500:
        channel.basic_ack(last, multiple=True)
    channel.cancel()
    elapsed = time.monotonic() - started - 1.0  # minus the inactivity timeout that ended it
    connection.close()
    return count, elapsed


def run(args: argparse.Namespace, mount_point: Path) -> None:
    filler = mount_point / "filler"
    filler.write_bytes(b"\0" * disk_free_limit(args.filler))
    data_dir = mount_point / "data"
    limit = disk_free_limit(args.limit)
    broker = BrokerProcess(data_dir, "--disk-free-limit", str(limit), "--log-level", "warning").start()
    try:
        print(
            f"tmpfs {args.tmpfs_size}, filler {args.filler}, limit {args.limit}: "
            f"{free(mount_point) / MiB:.1f} MiB free at start, {args.size}-byte persistent messages"
        )
        publisher = Publisher(broker, args.size)
        started = time.monotonic()
        while publisher.blocked_at is None and time.monotonic() - started < args.timeout:
            if publisher.outstanding < args.window:
                publisher.send(min(100, args.window - publisher.outstanding))
            while publisher.read(0 if publisher.outstanding < args.window else 0.05):
                pass
        if publisher.blocked_at is None:
            raise SystemExit(f"not blocked within {args.timeout} s")
        while publisher.outstanding and publisher.read(0.5):  # the confirms of what the broker had read
            pass
        print(
            f"blocked ({publisher.reason!r}) after {publisher.blocked_at - started:.2f} s: "
            f"{publisher.acked} confirmed, {publisher.nacked} nacked, {publisher.outstanding} unread; "
            f"{free(mount_point) / MiB:.1f} MiB free"
        )

        rss_blocked = broker.rss()
        before = publisher.published
        pushed = publisher.push_while_blocked(args.hold)
        rss_held = broker.rss()
        print(
            f"RSS when blocked {rss_blocked / MiB:.1f} MiB, after {args.hold:.0f} s more of pushing "
            f"{rss_held / MiB:.1f} MiB ({pushed / MiB:.1f} MiB = {publisher.published - before} messages "
            f"pushed, left in socket buffers)"
        )

        drained, seconds = drain(broker)
        print(
            f"drained {drained} messages in {seconds:.2f} s while blocked; "
            f"{free(mount_point) / MiB:.1f} MiB free after the drain"
        )

        freed_at = time.monotonic()
        filler.unlink()
        while publisher.unblocked_at is None and time.monotonic() - freed_at < args.timeout:
            publisher.read(0.05)
        if publisher.unblocked_at is None:
            raise SystemExit(f"not unblocked within {args.timeout} s of freeing space")
        print(f"unblocked {publisher.unblocked_at - freed_at:.2f} s after the filler was deleted")

        publisher.client.send(publisher.pending)
        resumed = time.monotonic()
        target = publisher.published + args.after
        while (publisher.acked + publisher.nacked < target) and time.monotonic() - resumed < args.timeout:
            if publisher.published < target and publisher.outstanding < args.window:
                publisher.send(min(100, target - publisher.published, args.window - publisher.outstanding))
            publisher.read(0.05)
        print(
            f"after unblocking: {publisher.acked} confirmed in all, {publisher.nacked} nacked, "
            f"{publisher.outstanding} outstanding; {args.after} more in {time.monotonic() - resumed:.2f} s"
        )
        publisher.client.close()
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tmpfs-size", default="64MiB")
    parser.add_argument("--filler", default="24MiB", help="bytes of the tmpfs a filler file takes at start")
    parser.add_argument("--limit", default="16MiB", help="the broker's --disk-free-limit")
    parser.add_argument("--size", type=int, default=4096, help="message body bytes")
    parser.add_argument("--window", type=int, default=1000, help="most unconfirmed messages")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds of pushing while blocked")
    parser.add_argument("--after", type=int, default=1000, help="messages to publish after unblocking")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        mount_point = Path(temp)
        size = disk_free_limit(args.tmpfs_size)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
        if mounted.returncode:
            raise SystemExit(f"cannot mount a tmpfs (run as root): {mounted.stderr.strip()}")
        try:
            run(args, mount_point)
        finally:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


if __name__ == "__main__":
    main()
