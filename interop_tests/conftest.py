"""Fixtures: one broker process per test session (or the broker named by ``AMQP_URL``).

``broker`` yields an object with ``host``, ``port`` and ``url``.  Tests that need
a broker of their own (restarts, signals) use ``BrokerProcess`` directly.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Iterator

import pika
import pytest

from .broker_process import BrokerProcess, external_url


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    external = external_url()
    if external is not None:
        host, port, url = external
        yield SimpleNamespace(host=host, port=port, url=url, process=None)
        return
    process = BrokerProcess(tmp_path_factory.mktemp("broker-data")).start()
    try:
        yield SimpleNamespace(host=process.host, port=process.port, url=process.url, process=process)
    finally:
        process.stop()


@pytest.fixture
def params(broker: SimpleNamespace) -> pika.ConnectionParameters:
    """pika connection parameters for the session broker (guest/guest, vhost /)."""
    return pika.URLParameters(broker.url)


@pytest.fixture
def connection(params: pika.ConnectionParameters) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(params)
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def unique() -> str:
    """A name no other test uses (queues persist across tests on a shared broker)."""
    return f"t-{uuid.uuid4().hex[:12]}"
