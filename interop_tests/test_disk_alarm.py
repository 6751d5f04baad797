"""The free-disk alarm end to end: a broker whose data dir is a real 16 MB tmpfs blocks a pika publisher
when a file the test writes there takes the free space below ``--disk-free-limit``, reads nothing more from
it (the queue and the broker's memory stay put), and unblocks it when the file is deleted.

Mounting needs root; elsewhere the tmpfs tests skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.frames import publish as publish_frames
from tests.small_disk import free, mounted_tmpfs

from .broker_process import BrokerProcess
from .conftest import TIMEOUT
from .pika_helpers import message_count, wait_until
from .raw_client import RawClient

TMPFS_SIZE = 16 * 1024 * 1024
FILLER_SIZE = 6 * 1024 * 1024
HEADROOM = 2 * 1024 * 1024  # the limit sits this far below the free space the broker starts with
BODY = b"x" * 1000
HELD = 20_000  # messages (20 MB) a raw publisher pushes while blocked


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", TMPFS_SIZE) as mount_point:
        yield mount_point


def blocking_connection(url: str, events: list[str]) -> pika.BlockingConnection:
    """A pika connection that records connection.blocked reasons and "unblocked" (and gives up if blocked too long)."""
    params = pika.URLParameters(url)
    params.blocked_connection_timeout = 2 * TIMEOUT
    connection = pika.BlockingConnection(params)
    connection.add_on_connection_blocked_callback(lambda _, frame: events.append(frame.method.reason))
    connection.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
    return connection


def push_until_full(sock: socket.socket, data: bytes) -> int:
    """Write ``data`` without blocking until the socket takes no more for a while; the bytes it took."""
    sock.setblocking(False)
    sent, idle_since = 0, time.monotonic()
    while sent < len(data) and time.monotonic() - idle_since < 0.5:
        try:
            sent += sock.send(data[sent:])
            idle_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    sock.settimeout(TIMEOUT)
    return sent


def test_low_disk_blocks_publishers_and_freed_space_unblocks_them(tmpfs: Path):
    data_dir = tmpfs / "data"
    data_dir.mkdir()
    # what the broker's own files take once it runs (lock, access.json): measured, not guessed
    BrokerProcess(data_dir, "--disk-free-limit", "0").start().stop()
    limit = free(tmpfs) - HEADROOM
    broker = BrokerProcess(data_dir, "--disk-free-limit", str(limit)).start()
    try:
        events: list[str] = []
        publisher = blocking_connection(broker.url, events)
        channel = publisher.channel()
        channel.queue_declare("disk")  # transient: the messages take no disk space
        channel.basic_publish("", "disk", BODY)
        observer = pika.BlockingConnection(pika.URLParameters(broker.url)).channel()
        raw = RawClient(broker.host, broker.port, timeout=TIMEOUT).handshake()  # no connection.blocked capability
        raw.open_channel(1)
        message = publish_frames(1, "disk", BODY)
        raw.send(message)
        wait_until(publisher, lambda: message_count(observer, "disk") == 2, "the first messages")

        filler = tmpfs / "filler"
        filler.write_bytes(b"\0" * FILLER_SIZE)
        assert free(tmpfs) < limit
        channel.basic_publish("", "disk", BODY)
        wait_until(publisher, lambda: bool(events), "connection.blocked")
        assert events == ["low on disk"]

        queued = message_count(observer, "disk")
        memory = broker.rss()
        backlog = message * HELD
        pushed = push_until_full(raw.sock, backlog)  # the kernel's socket buffers take a few MB, the broker none
        assert pushed < len(backlog)
        assert message_count(observer, "disk") == queued
        assert broker.rss() - memory < 4 * 1024 * 1024, (broker.rss() - memory, pushed)

        filler.unlink()
        wait_until(publisher, lambda: "unblocked" in events, "connection.unblocked")
        assert events == ["low on disk", "unblocked"]
        raw.send(backlog[pushed:])
        wait_until(publisher, lambda: message_count(observer, "disk") == 3 + HELD, "the held messages")
        assert "Free disk space is insufficient" in "".join(broker.log)
        with pytest.raises(socket.timeout):  # throttled without a frame: it did not ask for connection.blocked
            raw.read_frame(timeout=0.2)
        raw.close()
        publisher.close()
    finally:
        broker.stop()


def test_a_limit_beyond_the_disk_blocks_publishers_at_once_but_not_consumers(tmp_path: Path):
    data_dir = tmp_path / "data"
    before = BrokerProcess(data_dir, "--disk-free-limit", "0").start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(before.url))
        channel = connection.channel()
        channel.queue_declare("full", durable=True)
        channel.confirm_delivery()
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", "full", body, pika.BasicProperties(delivery_mode=2))
        connection.close()
    finally:
        before.stop()

    broker = BrokerProcess(data_dir, "--disk-free-limit", "1000GB").start()  # more than any disk here has
    try:
        events: list[str] = []
        publisher = blocking_connection(broker.url, events)
        publisher.channel().basic_publish("", "full", b"new")  # its first publish blocks it, as RabbitMQ
        wait_until(publisher, lambda: bool(events), "connection.blocked")
        assert events == ["low on disk"]

        consumer = pika.BlockingConnection(pika.URLParameters(broker.url))
        consumer_channel = consumer.channel()  # a consumer is still read: it opens channels, consumes, acks
        received: list[bytes] = []
        consumer_channel.basic_consume(
            "full", lambda ch, method, _, body: (received.append(body), ch.basic_ack(method.delivery_tag))
        )
        wait_until(consumer, lambda: received[:3] == [b"1", b"2", b"3"], "the stored messages")
        consumer_channel.queue_declare("full", durable=True, passive=True)
        assert "Free disk space is insufficient" in "".join(broker.log)
        consumer.close()
    finally:
        broker.stop()
