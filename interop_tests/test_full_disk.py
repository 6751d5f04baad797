"""The broker process on a really full disk (its data dir on an 8 MB tmpfs).

Freeing space (a purge) lets persistent publishes be confirmed again at once,
without a restart; SIGTERM on a full disk is a clean shutdown (exit code 0)
that writes what it can, says what it could not, and does not bring purged
messages back.  These need our broker's data dir, so they never run against AMQP_URL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.small_disk import mounted_tmpfs, used

from .broker_process import BrokerProcess
from .conftest import TIMEOUT
from .pika_helpers import message_count

BODY = b"x" * (100 * 1024)
PERSISTENT = pika.BasicProperties(delivery_mode=2)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as path:
        yield path


@pytest.fixture
def brokers() -> Iterator[list[BrokerProcess]]:
    started: list[BrokerProcess] = []
    yield started
    for broker in started:
        broker.stop()


def start(brokers: list[BrokerProcess], data_dir: Path) -> BrokerProcess:
    broker = BrokerProcess(data_dir, "--disk-free-limit", "0").start()  # the out-of-space path under the alarm
    brokers.append(broker)
    return broker


def open_channel(broker: BrokerProcess) -> BlockingChannel:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url + f"?blocked_connection_timeout={TIMEOUT}"))
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def publish_until_nacked(channel: BlockingChannel, queue: str, limit: int = 500) -> int:
    """Publish persistent messages until the broker nacks one; returns how many were confirmed."""
    for confirmed in range(limit):
        try:
            channel.basic_publish("", queue, BODY, PERSISTENT)
        except pika.exceptions.NackError:
            return confirmed
    raise AssertionError(f"{limit} messages of {len(BODY)} bytes fitted on an 8 MB disk")


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_purge_on_a_full_disk_lets_publishes_confirm_again_without_restart(disk: Path, brokers) -> None:
    broker = start(brokers, disk)
    channel = open_channel(broker)
    channel.queue_declare("q", durable=True)
    assert publish_until_nacked(channel, "q") > 0
    assert used(disk) > 6 * 1024 * 1024

    channel.queue_purge("q")
    channel.basic_publish("", "q", b"after the purge", PERSISTENT)  # confirmed: no NackError

    wait_for(lambda: used(disk) < 1024 * 1024, "the purged messages' space to be reclaimed")
    channel.connection.close()
    assert broker.stop() == 0


def test_sigterm_on_a_full_disk_exits_0_says_what_was_lost_and_keeps_the_purge(disk: Path, brokers) -> None:
    broker = start(brokers, disk)
    channel = open_channel(broker)
    channel.queue_declare("purged", durable=True)
    channel.queue_declare("kept", durable=True)
    for _ in range(20):
        channel.basic_publish("", "purged", BODY, PERSISTENT)
    confirmed = publish_until_nacked(channel, "kept")
    published = confirmed + 1
    assert channel.queue_purge("purged").method.message_count == 20  # their space is shared with "kept"'s

    assert broker.stop() == 0
    log = "".join(broker.log)
    assert "could not write 1 unacknowledged messages" in log
    assert "Traceback" not in log

    restarted = start(brokers, disk)
    channel = open_channel(restarted)
    assert message_count(channel, "purged") == 0
    assert confirmed <= message_count(channel, "kept") <= published
    channel.connection.close()
