"""Where the management tools' tests find the management API, and small helpers to run and poll them.

The session broker (``conftest.broker``: a process of ours, with a free management port) by default;
``AMQP_URL`` with ``AMQP_HTTP_URL`` (``http://guest:guest@127.0.0.1:15695``) name a running broker
instead, e.g. RabbitMQ with its management plugin, so the very same tests check the tools against it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import urlparse

import pytest

T = TypeVar("T")
POLL_TIMEOUT = 20.0  # RabbitMQ's management database shows a change within one stats tick (5 s)


@dataclass
class Target:
    """A broker and its management API."""

    amqp_url: str
    amqp_host: str
    amqp_port: int
    http_host: str
    http_port: int
    user: str = "guest"
    password: str = "guest"

    @property
    def http_base(self) -> str:
        """``http://user:password@host:port`` (no trailing slash)."""
        return f"http://{self.user}:{self.password}@{self.http_host}:{self.http_port}"


def target_of(broker: SimpleNamespace) -> Target:
    """The management API of the session broker, or the one ``AMQP_HTTP_URL`` names beside ``AMQP_URL``."""
    if broker.process is not None:
        return Target(broker.url, broker.host, broker.port, broker.host, broker.process.management_port)
    http_url = os.environ.get("AMQP_HTTP_URL")
    if not http_url:
        pytest.skip("AMQP_URL is set without AMQP_HTTP_URL: no management API to point the tools at")
    parsed = urlparse(http_url)
    return Target(
        broker.url,
        broker.host,
        broker.port,
        parsed.hostname or "127.0.0.1",
        parsed.port or 15672,
        parsed.username or "guest",
        parsed.password or "guest",
    )


def eventually(fetch: Callable[[], T], holds: Callable[[T], bool], what: str) -> T:
    """``fetch()`` again until ``holds`` its answer (bounded): RabbitMQ's counts lag behind the AMQP side."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        value = fetch()
        if holds(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last seen: {value!r}"
        time.sleep(0.2)


def free_port() -> int:
    """A loopback port nothing listens on now (for a tool that cannot pick its own, such as Flower)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((item for item in items if item.get("name") == name), None)
