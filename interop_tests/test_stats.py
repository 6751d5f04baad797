"""Statistics under a real client: pika over TCP to a broker running in this process (its own event loop
thread), whose 5 s sampler runs on the real clock; the views are read on the broker's loop.

Counts must match what pika did; rates must become non-zero after a burst and fall back to 0.0
once the broker has been idle for a sample interval.  Every wait is a deadline poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from amqp_server.ops.config import Config
from amqp_server.server.embedded import BrokerThread

DEADLINE_S = 20.0  # a rate shows after the next 5 s tick and leaves after the one after that


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    thread = BrokerThread(Config(host="127.0.0.1", port=0, data_dir=tmp_path))
    thread.start()
    assert thread.listening.wait(30) and thread.address is not None, thread.error
    yield thread
    thread.stop(10)


def on_loop(broker: BrokerThread, read: Callable[[Any], Any]) -> Any:
    """``read(core broker)`` on the broker's own thread (the core is not thread-safe)."""

    async def call() -> Any:
        return read(broker.broker)

    assert broker.loop is not None
    return asyncio.run_coroutine_threadsafe(call(), broker.loop).result(10)


def queue_stats(core: Any) -> dict[str, Any]:
    return core.stats.view().queue(core.vhosts["/"].queues["stats-q"])  # type: ignore[no-any-return]


def poll(broker: BrokerThread, read: Callable[[Any], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = on_loop(broker, read)
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_counts_match_the_client_and_rates_rise_and_fall(broker: BrokerThread) -> None:
    assert broker.address is not None
    connection = pika.BlockingConnection(pika.ConnectionParameters(*broker.address, socket_timeout=5))
    try:
        channel = connection.channel()
        channel.queue_declare("stats-q")
        for i in range(50):
            channel.basic_publish("", "stats-q", b"message %d" % i)
        for _ in range(20):
            method, _, _ = channel.basic_get("stats-q")
            assert method is not None
            channel.basic_ack(method.delivery_tag)
        channel.queue_declare("stats-q", passive=True)  # a round trip: the broker has read the acks before it
        assert on_loop(broker, queue_stats)["messages"] == 30

        busy = poll(broker, queue_stats, lambda stats: stats["message_stats"]["publish_details"]["rate"] > 0)
        stats = busy["message_stats"]
        assert stats["publish_details"]["rate"] > 0
        assert (stats["publish"], stats["get"], stats["ack"], stats["deliver_get"]) == (50, 20, 20, 20)
        assert (busy["messages"], busy["messages_ready"], busy["messages_unacknowledged"]) == (30, 30, 0)

        idle = poll(broker, queue_stats, lambda stats: stats["message_stats"]["publish_details"]["rate"] == 0.0)
        assert idle["message_stats"]["publish_details"] == {"rate": 0.0}
        assert idle["message_stats"]["ack_details"] == {"rate": 0.0}
        assert idle["messages_details"] == {"rate": 0.0}
        overview = on_loop(broker, lambda core: core.stats.view().overview())
        assert overview["message_stats"]["publish"] == 50
        assert overview["queue_totals"]["messages"] == 30
    finally:
        connection.close()
