"""Fixtures: one broker process per test session (or the broker named by ``AMQP_URL``).

``broker`` yields an object with ``host``, ``port`` and ``url``.  Tests that need
a broker of their own (restarts, signals) use ``BrokerProcess`` directly.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .broker_process import BrokerProcess, external_url

# Brokers the tests start by hand (python -m amqp_server …) take a free port for the management API instead of
# 15672 (and for Prometheus instead of 15692), so that they never collide with each other or with a broker
# already running here. A flag still wins.
os.environ.setdefault("AMQP_SERVER_MANAGEMENT_PORT", "0")
os.environ.setdefault("AMQP_SERVER_PROMETHEUS_PORT", "0")


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
def start_broker() -> Iterator[Callable[[Path], BrokerProcess]]:
    """Starts a broker of the test's own on a data dir (free port); whatever still runs at teardown is killed."""
    started: list[BrokerProcess] = []

    def start(data_dir: Path) -> BrokerProcess:
        process = BrokerProcess(data_dir).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


TIMEOUT = 5.0  # every pika connection a test opens gives up within this (or twice this)


@pytest.fixture
def params(broker: SimpleNamespace) -> pika.ConnectionParameters:
    """pika connection parameters for the session broker (guest/guest, vhost /), with bounded timeouts."""
    params = pika.URLParameters(broker.url)
    params.socket_timeout = TIMEOUT
    params.stack_timeout = 2 * TIMEOUT
    params.blocked_connection_timeout = 2 * TIMEOUT
    return params


@pytest.fixture
def connection(params: pika.ConnectionParameters) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(params)
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> BlockingChannel:
    """A channel in confirm mode: once basic_publish returns, the message has reached its queues.

    (RabbitMQ can answer a passive queue.declare before earlier publishes reach the queue; waiting
    for the confirm makes the tests mean the same on both brokers.)
    """
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


@pytest.fixture
def unique() -> str:
    """A name no other test uses (queues persist across tests on a shared broker)."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def management(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A broker with its management API: ``api`` (``management_client.Api`` as guest), ``url`` (AMQP),
    ``external`` (True when ``AMQP_HTTP_URL`` and ``AMQP_URL`` name a running broker, e.g. RabbitMQ)."""
    from .management_client import Api, external_http_url

    http_url, amqp = external_http_url(), external_url()
    if http_url is not None:
        assert amqp is not None, "AMQP_HTTP_URL needs AMQP_URL for the same broker"
        yield SimpleNamespace(api=Api(http_url), url=amqp[2], host=amqp[0], port=amqp[1], external=True)
        return
    process = BrokerProcess(tmp_path_factory.mktemp("management-data")).start()
    try:
        yield SimpleNamespace(
            api=Api(f"http://127.0.0.1:{process.management_port}"),
            url=process.url,
            host=process.host,
            port=process.port,
            external=False,
            process=process,
        )
    finally:
        process.stop()
