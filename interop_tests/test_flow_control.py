"""connection.blocked end to end: a broker with a tiny memory watermark stops reading from a publisher
and tells it (pika's blocked/unblocked callbacks), and resumes once a consumer drains the queue."""

from __future__ import annotations

import time

import pika
import pytest

from .broker_process import BrokerProcess


@pytest.fixture
def small_broker(tmp_path):
    process = BrokerProcess(tmp_path / "data", "--memory-high-watermark", "200000").start()
    yield process
    process.stop()


def test_publisher_is_blocked_then_unblocked(small_broker):
    events: list[str] = []
    params = pika.URLParameters(small_broker.url)
    params.blocked_connection_timeout = 30  # a publish stuck behind a blocked socket fails instead of hanging
    publisher = pika.BlockingConnection(params)
    publisher.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
    publisher.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
    channel = publisher.channel()
    channel.queue_declare("flow")
    # at most 1 MB (5x the watermark): far less than the loopback socket buffers hold once the broker
    # stops reading, so a loaded machine that sees connection.blocked late cannot wedge the publish
    for _ in range(1000):
        if "blocked" in events:
            break
        channel.basic_publish("", "flow", b"x" * 1000)
        publisher.process_data_events(time_limit=0)
    deadline = time.monotonic() + 10
    while "blocked" not in events and time.monotonic() < deadline:
        publisher.process_data_events(time_limit=0.1)
    assert events == ["blocked"]

    consumer = pika.BlockingConnection(pika.URLParameters(small_broker.url))
    consumer_channel = consumer.channel()
    deadline = time.monotonic() + 10
    while "unblocked" not in events and time.monotonic() < deadline:
        consumer_channel.basic_get("flow", auto_ack=True)
        publisher.process_data_events(time_limit=0.01)
    assert events == ["blocked", "unblocked"]
    channel.basic_publish("", "flow", b"after")
    consumer.close()
    publisher.close()
