"""Real tools pointed at the management API: Celery Flower's broker view (its RabbitMQ client, unchanged)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pika
from flower.utils.broker import Broker

from .conftest import TIMEOUT
from .management_client import Api, poll


def test_flower_reads_queue_lengths(management: SimpleNamespace) -> None:
    api: Api = management.api
    vhost, queue = f"flower-{uuid.uuid4().hex[:8]}", "celery"
    api.ok("PUT", f"/api/vhosts/{vhost}")
    try:
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(management.host, management.port, vhost, socket_timeout=TIMEOUT)
        )
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue)
        for _ in range(3):
            channel.basic_publish("", queue, b"task")
        connection.close()
        broker_url = f"amqp://guest:guest@{management.host}:{management.port}/{vhost}"
        flower = Broker(broker_url, http_api=f"{api.base.replace('://', '://guest:guest@')}/api/")

        async def lengths() -> list[dict[str, object]]:
            return await asyncio.wait_for(flower.queues([queue]), TIMEOUT)

        found = poll(  # RabbitMQ's counts lag its statistics tick
            lambda: asyncio.run(lengths()), lambda found: bool(found) and found[0].get("messages") == 3, "Flower"
        )
        assert [(item["name"], item["messages"], item["messages_ready"]) for item in found] == [(queue, 3, 3)]
    finally:
        api.delete(f"/api/vhosts/{vhost}")
