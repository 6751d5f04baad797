"""Statistics under a real client: pika over TCP to a broker running in this process (its own event loop
thread), whose 5 s sampler runs on the real clock; the views are read on the broker's loop.

Counts must match what pika did; rates must become non-zero after a burst and fall back to 0.0
once the broker has been idle for a sample interval.  Every wait is a deadline poll.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from amqp_server.ops.config import Config
from amqp_server.server.embedded import BrokerThread

from .management_client import poll as poll_api

DEADLINE_S = 20.0  # a rate shows after the next 5 s tick and leaves after the one after that


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    thread = BrokerThread(Config(host="127.0.0.1", port=0, data_dir=tmp_path, management_port=-1, prometheus_port=-1))
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


# ------------------------------------------------------------------ through the management API


def _publish_rate(queue: dict[str, Any]) -> float:
    rate: float = queue.get("message_stats", {}).get("publish_details", {}).get("rate", 0.0)
    return rate


def test_the_api_shows_counts_and_rates_that_rise_and_fall(management: SimpleNamespace) -> None:
    """Through HTTP, as Flower or a dashboard reads them (also runs against RabbitMQ: ``AMQP_HTTP_URL``)."""
    api, name = management.api, f"stats-{uuid.uuid4().hex[:8]}"
    path = f"/api/queues/%2F/{name}"
    connection = pika.BlockingConnection(pika.URLParameters(management.url))
    try:
        channel = connection.channel()
        channel.queue_declare(name)
        # two bursts a sample apart: RabbitMQ shows no rate for a queue's first sample
        for i in range(50):
            channel.basic_publish("", name, b"message %d" % i)
        poll_api(lambda: api.ok("GET", path), lambda q: q.get("messages") == 50, "the first burst", DEADLINE_S)
        for i in range(50, 100):
            channel.basic_publish("", name, b"message %d" % i)
        for _ in range(10):
            method, _, _ = channel.basic_get(name)
            assert method is not None
            channel.basic_ack(method.delivery_tag)
        channel.queue_declare(name, passive=True)  # a round trip: the acks were read
        busy = poll_api(
            lambda: api.ok("GET", path),
            lambda q: _publish_rate(q) > 0 and q["message_stats"]["publish"] == 100,
            "a publish rate",
            timeout=DEADLINE_S,
        )
        stats = busy["message_stats"]
        assert (stats["get"], stats["ack"], stats["deliver_get"]) == (10, 10, 10)
        assert (busy["messages"], busy["messages_ready"], busy["messages_unacknowledged"]) == (90, 90, 0)
        windowed = api.ok("GET", f"{path}?msg_rates_age=30&msg_rates_incr=5&lengths_age=30&lengths_incr=5")
        samples = windowed["message_stats"]["publish_details"]["samples"]
        assert len(samples) == 7 and all(point["timestamp"] % 5000 == 0 for point in samples)
        assert {"rate", "avg_rate", "avg"} <= set(windowed["messages_details"])
        idle = poll_api(
            lambda: api.ok("GET", path), lambda q: _publish_rate(q) == 0.0, "the rate back to 0.0", DEADLINE_S
        )
        assert idle["message_stats"]["publish"] == 100
        assert api.ok("GET", "/api/overview")["message_stats"]["publish"] >= 100
        refused = api.get("/api/queues?msg_rates_age=0&msg_rates_incr=5")
        assert (refused.status, refused.json) == (
            400,
            {"error": "invalid_range_parameters", "reason": "Invalid range parameters: age 0, incr 5"},
        )
        refused = api.get(f"{path}?msg_rates_age=5000&msg_rates_incr=5")
        assert (refused.status, refused.json["error"]) == (400, "bad_request")
    finally:
        connection.close()
